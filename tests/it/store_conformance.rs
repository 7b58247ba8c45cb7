//! One conformance suite for every Store backend: the in-memory one and Postgres (real database).
//! Each check states a guarantee written on the `Store` trait.

use std::sync::Arc;

use chorus::config;
use chorus::ids::{RoomId, Seq};
use chorus::store::{MemoryStore, NewMessage, PostgresStore, Store};

use crate::support::*;

fn msg(user: &str, body: &str, cid: Option<&str>) -> NewMessage {
    NewMessage {
        user: user.into(),
        name: Some(format!("N {user}")),
        body: body.into(),
        client_msg_id: cid.map(str::to_owned),
    }
}

fn room(s: &str) -> RoomId {
    RoomId::parse(s).unwrap()
}

async fn postgres() -> Arc<dyn Store> {
    let url = fresh_db().await;
    let s = settings(&url, &[]);
    Arc::new(PostgresStore::new(&config::Database { url, ..s.database }).unwrap())
}

async fn seqs_are_gap_free_per_room_and_batches_keep_order(store: Arc<dyn Store>) {
    let (a, b) = (room("a"), room("b"));
    let out = store
        .append(&a, &[msg("u", "1", None), msg("u", "2", None)])
        .await
        .unwrap();
    assert_eq!(
        out.appended
            .iter()
            .map(|x| x.message.seq.get())
            .collect::<Vec<_>>(),
        vec![1, 2]
    );
    let out = store.append(&a, &[msg("v", "3", None)]).await.unwrap();
    assert_eq!(out.appended[0].message.seq.get(), 3);
    assert_eq!(
        store
            .append(&b, &[msg("u", "x", None)])
            .await
            .unwrap()
            .appended[0]
            .message
            .seq
            .get(),
        1
    );
    let head = store.head(&a).await.unwrap();
    assert_eq!(head.last_seq.get(), 3);
    assert_eq!(head.epoch, out.epoch, "epoch is stable");
    assert_eq!(store.head(&room("fresh")).await.unwrap().last_seq.get(), 0);
}

async fn repeated_client_msg_ids_return_the_original(store: Arc<dyn Store>) {
    let r = room("idem");
    let first = store
        .append(&r, &[msg("u", "hi", Some("c1"))])
        .await
        .unwrap()
        .appended
        .remove(0);
    assert!(!first.duplicate);
    // Across batches, and twice within one batch; another user's same id is new.
    let out = store
        .append(
            &r,
            &[
                msg("u", "hi again", Some("c1")),
                msg("v", "x", Some("c1")),
                msg("v", "y", Some("c1")),
            ],
        )
        .await
        .unwrap();
    assert!(out.appended[0].duplicate);
    assert_eq!(
        out.appended[0].message, first.message,
        "the original comes back"
    );
    assert!(!out.appended[1].duplicate);
    assert_eq!(out.appended[1].message.seq.get(), 2);
    assert!(out.appended[2].duplicate);
    assert_eq!(out.appended[2].message.seq.get(), 2);
    assert_eq!(
        store.head(&r).await.unwrap().last_seq.get(),
        2,
        "duplicates take no seq"
    );
}

async fn reads_are_ascending_and_round_trip_exactly(store: Arc<dyn Store>) {
    let r = room("reads");
    let mut written = Vec::new();
    for i in 1..=10 {
        let out = store
            .append(&r, &[msg("u", &format!("m{i}"), Some(&format!("c{i}")))])
            .await
            .unwrap();
        written.push((*out.appended[0].message).clone());
    }
    let after = store.after(&r, Seq::new(3), 4).await.unwrap();
    assert_eq!(
        after,
        written[3..7].to_vec(),
        "after returns exactly what was written"
    );
    let before = store.before(&r, Some(Seq::new(6)), 3).await.unwrap();
    assert_eq!(
        before.iter().map(|m| m.seq.get()).collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    let newest = store.before(&r, None, 2).await.unwrap();
    assert_eq!(
        newest.iter().map(|m| m.seq.get()).collect::<Vec<_>>(),
        vec![9, 10]
    );
    assert_eq!(
        store
            .range(&r, Seq::new(2), Seq::new(5))
            .await
            .unwrap()
            .iter()
            .map(|m| m.seq.get())
            .collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    assert!(
        store.range(&r, Seq::new(8), Seq::new(12)).await.is_err(),
        "a range past the head is an error, not a short read"
    );
    assert!(store.after(&r, Seq::new(10), 5).await.unwrap().is_empty());
}

async fn concurrent_appends_to_one_room_never_share_or_skip_a_seq(store: Arc<dyn Store>) {
    let r = room("busy");
    let tasks: Vec<_> = (0..8)
        .map(|w| {
            let (store, r) = (store.clone(), r.clone());
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..25 {
                    let batch = vec![
                        msg(&format!("w{w}"), &format!("{i}a"), None),
                        msg(&format!("w{w}"), &format!("{i}b"), None),
                    ];
                    let out = store.append(&r, &batch).await.unwrap();
                    let s: Vec<i64> = out.appended.iter().map(|a| a.message.seq.get()).collect();
                    assert_eq!(s[1], s[0] + 1, "a batch is contiguous");
                    seqs.extend(s);
                }
                seqs
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    assert_eq!(all, (1..=400).collect::<Vec<_>>());
    let stored = store.after(&r, Seq::new(0), 1000).await.unwrap();
    assert_eq!(stored.len(), 400);
}

macro_rules! conformance {
    ($($check:ident),*) => {
        mod memory {
            use super::*;
            $( #[actix_web::test] async fn $check() { super::$check(Arc::new(MemoryStore::new())).await; } )*
        }
        mod postgres {
            $( #[actix_web::test] async fn $check() { super::$check(super::postgres().await).await; } )*
        }
    };
}

conformance!(
    seqs_are_gap_free_per_room_and_batches_keep_order,
    repeated_client_msg_ids_return_the_original,
    reads_are_ascending_and_round_trip_exactly,
    concurrent_appends_to_one_room_never_share_or_skip_a_seq
);
