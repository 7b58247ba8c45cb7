//! One conformance suite for every Store backend: the in-memory one and Postgres (real database).
//! Each check states a guarantee written on the `Store` trait.

use std::sync::Arc;

use chorus::config;
use chorus::ids::{RoomId, Seq};
use chorus::store::{
    Change, Kind, MemoryStore, Message, NewMessage, PostgresStore, ReactOp, Refusal, RoomScope,
    SearchQuery, Store, StoreError,
};

use crate::support::*;

fn msg(user: &str, body: &str, cid: Option<&str>) -> NewMessage {
    entry(user, Change::Message { body: body.into() }, cid)
}

fn entry(user: &str, change: Change, cid: Option<&str>) -> NewMessage {
    NewMessage {
        user: user.into(),
        name: Some(format!("N {user}")),
        client_msg_id: cid.map(str::to_owned),
        change,
        moderator: false,
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
            .map(|x| x.as_ref().unwrap().message.seq.get())
            .collect::<Vec<_>>(),
        vec![1, 2]
    );
    let out = store.append(&a, &[msg("v", "3", None)]).await.unwrap();
    assert_eq!(out.appended[0].as_ref().unwrap().message.seq.get(), 3);
    assert_eq!(
        store
            .append(&b, &[msg("u", "x", None)])
            .await
            .unwrap()
            .appended[0]
            .as_ref()
            .unwrap()
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
        .remove(0)
        .unwrap();
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
    assert!(out.appended[0].as_ref().unwrap().duplicate);
    assert_eq!(
        out.appended[0].as_ref().unwrap().message,
        first.message,
        "the original comes back"
    );
    assert!(!out.appended[1].as_ref().unwrap().duplicate);
    assert_eq!(out.appended[1].as_ref().unwrap().message.seq.get(), 2);
    assert!(out.appended[2].as_ref().unwrap().duplicate);
    assert_eq!(out.appended[2].as_ref().unwrap().message.seq.get(), 2);
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
        written.push((*out.appended[0].as_ref().unwrap().message).clone());
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
                    let s: Vec<i64> = out
                        .appended
                        .iter()
                        .map(|a| a.as_ref().unwrap().message.seq.get())
                        .collect();
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

/// Appends one entry: its seq (`Ok`), or the refusal.
async fn one(store: &Arc<dyn Store>, r: &RoomId, e: NewMessage) -> Result<(i64, bool), Refusal> {
    let mut out = store.append(r, &[e]).await.unwrap();
    out.appended
        .remove(0)
        .map(|a| (a.message.seq.get(), a.duplicate))
}

fn edit(user: &str, target: i64, body: &str) -> NewMessage {
    let target = Seq::new(target);
    entry(
        user,
        Change::Edit {
            target,
            body: body.into(),
        },
        None,
    )
}

fn delete(user: &str, target: i64) -> NewMessage {
    entry(
        user,
        Change::Delete {
            target: Seq::new(target),
        },
        None,
    )
}

fn react(user: &str, target: i64, key: &str, op: ReactOp) -> NewMessage {
    let (target, key) = (Seq::new(target), key.to_owned());
    entry(user, Change::React { target, key, op }, None)
}

async fn edits_follow_their_rules_and_fold_into_the_message(store: Arc<dyn Store>) {
    let r = room("edits");
    assert_eq!(
        one(&store, &r, msg("ann", "first", None)).await,
        Ok((1, false))
    );
    assert_eq!(
        one(&store, &r, edit("ann", 1, "second")).await,
        Ok((2, false))
    );
    assert_eq!(
        one(&store, &r, edit("bob", 1, "mine")).await,
        Err(Refusal::Forbidden)
    );
    assert_eq!(
        one(&store, &r, edit("ann", 9, "x")).await,
        Err(Refusal::NotFound)
    );
    assert_eq!(
        one(&store, &r, edit("ann", 2, "x")).await,
        Err(Refusal::NotFound),
        "an edit is not a message"
    );
    // Idempotent by client_msg_id like a message.
    let e = entry(
        "ann",
        Change::Edit {
            target: Seq::new(1),
            body: "third".into(),
        },
        Some("e1"),
    );
    assert_eq!(one(&store, &r, e.clone()).await, Ok((3, false)));
    assert_eq!(one(&store, &r, e).await, Ok((3, true)));
    let log = store.after(&r, Seq::ZERO, 10).await.unwrap();
    let kinds: Vec<Kind> = log.iter().map(|m| m.kind).collect();
    assert_eq!(kinds, vec![Kind::Message, Kind::Edit, Kind::Edit]);
    assert_eq!(
        (log[0].body.as_str(), log[0].edited_ts.is_some()),
        ("third", true),
        "the message in its current state"
    );
    assert_eq!(
        (log[1].body.as_str(), log[1].target),
        ("second", Some(Seq::new(1)))
    );
    let history = store.before(&r, None, 10).await.unwrap();
    assert_eq!(history.len(), 1, "history holds messages only");
    assert_eq!(history[0].body, "third");
    assert_eq!(
        store.head(&r).await.unwrap().last_seq.get(),
        3,
        "refusals take no seq"
    );
}

async fn deletes_erase_and_only_the_author_or_a_moderator_may(store: Arc<dyn Store>) {
    let r = room("deletes");
    one(&store, &r, msg("ann", "secret", None)).await.unwrap();
    one(&store, &r, edit("ann", 1, "secret 2")).await.unwrap();
    one(&store, &r, msg("bob", "hello", None)).await.unwrap();
    assert_eq!(
        one(&store, &r, delete("bob", 1)).await,
        Err(Refusal::Forbidden)
    );
    assert_eq!(one(&store, &r, delete("ann", 1)).await, Ok((4, false)));
    assert_eq!(
        one(&store, &r, delete("ann", 1)).await,
        Ok((4, true)),
        "deleting again holds: the delete entry"
    );
    assert_eq!(
        one(&store, &r, edit("ann", 1, "back")).await,
        Err(Refusal::Gone)
    );
    assert_eq!(
        one(&store, &r, react("bob", 1, "x", ReactOp::Add)).await,
        Err(Refusal::Gone)
    );
    let mut by_mod = delete("mod", 3);
    by_mod.moderator = true;
    assert_eq!(one(&store, &r, by_mod).await, Ok((5, false)));
    let log = store.after(&r, Seq::ZERO, 10).await.unwrap();
    for m in &log[..3] {
        assert!(m.deleted && m.body.is_empty(), "erased: {m:?}");
    }
    assert_eq!(
        (log[3].kind, log[3].target),
        (Kind::Delete, Some(Seq::new(1)))
    );
    let history = store.before(&r, None, 10).await.unwrap();
    assert!(history.iter().all(|m| m.deleted && m.body.is_empty()));
}

async fn one_reaction_per_message_user_and_key(store: Arc<dyn Store>) {
    let r = room("reacts");
    one(&store, &r, msg("ann", "hi", None)).await.unwrap();
    assert_eq!(
        one(&store, &r, react("bob", 1, "👍", ReactOp::Add)).await,
        Ok((2, false))
    );
    assert_eq!(
        one(&store, &r, react("bob", 1, "👍", ReactOp::Add)).await,
        Ok((2, true)),
        "held: the adding entry"
    );
    assert_eq!(
        one(&store, &r, react("cy", 1, "👍", ReactOp::Add)).await,
        Ok((3, false))
    );
    assert_eq!(
        one(&store, &r, react("cy", 1, "party", ReactOp::Add)).await,
        Ok((4, false))
    );
    assert_eq!(
        one(&store, &r, react("cy", 1, "party", ReactOp::Remove)).await,
        Ok((5, false))
    );
    assert_eq!(
        one(&store, &r, react("cy", 1, "party", ReactOp::Remove)).await,
        Ok((1, true)),
        "nothing held: the target"
    );
    assert_eq!(
        one(&store, &r, react("cy", 7, "party", ReactOp::Add)).await,
        Err(Refusal::NotFound)
    );
    let history = store.before(&r, None, 10).await.unwrap();
    assert_eq!(history.len(), 1);
    let reactions = &history[0].reactions;
    assert_eq!(reactions.len(), 1, "{reactions:?}");
    assert_eq!((reactions[0].key.as_str(), reactions[0].count), ("👍", 2));
    let users: Vec<&str> = reactions[0].users.iter().map(|u| u.as_str()).collect();
    assert_eq!(users, vec!["bob", "cy"]);
    assert_eq!(
        store.after(&r, Seq::ZERO, 1).await.unwrap()[0].reactions,
        *reactions,
        "backfill folds too"
    );
    assert_eq!(
        store.head(&r).await.unwrap().last_seq.get(),
        5,
        "duplicates commit nothing"
    );
}

async fn a_deleted_message_shows_no_reactions_on_any_read(store: Arc<dyn Store>) {
    let r = room("gone-reacts");
    one(&store, &r, msg("ann", "hi", Some("c1"))).await.unwrap();
    one(&store, &r, react("bob", 1, "👍", ReactOp::Add))
        .await
        .unwrap();
    one(&store, &r, msg("bob", "still here", None))
        .await
        .unwrap();
    one(&store, &r, react("ann", 3, "party", ReactOp::Add))
        .await
        .unwrap();
    one(&store, &r, delete("ann", 1)).await.unwrap(); // 5
    let deleted = |m: &Message| {
        assert!(m.deleted && m.body.is_empty(), "{m:?}");
        assert!(
            m.reactions.is_empty(),
            "reactions linger on a deleted message: {m:?}"
        );
    };
    let folded = store.before(&r, None, 10).await.unwrap();
    deleted(&folded[0]);
    assert_eq!(
        folded[1].reactions.len(),
        1,
        "the other message keeps its own"
    );
    deleted(&store.after(&r, Seq::ZERO, 10).await.unwrap()[0]);
    deleted(&store.range(&r, Seq::ZERO, Seq::new(5)).await.unwrap()[0]);
    // The original's key answers with the original, in its current state.
    let again = store
        .append(&r, &[msg("ann", "hi", Some("c1"))])
        .await
        .unwrap();
    let original = again.appended[0].as_ref().unwrap();
    assert!(original.duplicate);
    deleted(&original.message);
    let mine = store.my_rooms(&"bob".into(), None, 10).await.unwrap();
    let last = mine[0].last_message.as_ref().expect("a last message");
    assert_eq!(last.seq, Seq::new(3));
    assert_eq!(
        last.reactions.len(),
        1,
        "the room list folds the last message too"
    );
}

async fn a_users_rooms_page_by_activity_without_gaps_or_repeats(store: Arc<dyn Store>) {
    let me: chorus::ids::UserId = "pager".into();
    let names: Vec<String> = (0..7).map(|i| format!("page-{i}")).collect();
    for name in &names {
        one(&store, &room(name), msg("pager", "x", None))
            .await
            .unwrap();
    }
    // Activity order: the last posted first; post again in page-2 so it moves to the front.
    one(&store, &room("page-2"), msg("pager", "again", None))
        .await
        .unwrap();
    let all: Vec<String> = store
        .my_rooms(&me, None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.room.to_string())
        .collect();
    assert_eq!(all[0], "page-2");
    assert_eq!(all[1], "page-6");
    assert_eq!(all.len(), 7);
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = store.my_rooms(&me, after.as_ref(), 3).await.unwrap();
        paged.extend(page.iter().map(|r| r.room.to_string()));
        match page.last() {
            Some(last) if page.len() == 3 => {
                let cursor = last.cursor();
                assert_eq!(
                    chorus::store::RoomsCursor::parse(&cursor.encode()),
                    Some(cursor.clone())
                );
                after = Some(cursor);
            }
            _ => break,
        }
    }
    assert_eq!(paged, all, "the pages, joined, are the list");
}

async fn read_cursors_are_monotonic_and_unread_counts_exact(store: Arc<dyn Store>) {
    let (r, quiet) = (room("unread"), room("quiet"));
    let me: chorus::ids::UserId = "ann".into();
    for (i, user) in ["bob", "ann", "bob", "bob", "cy"].iter().enumerate() {
        one(&store, &r, msg(user, &format!("m{i}"), None))
            .await
            .unwrap();
    }
    one(&store, &quiet, msg("ann", "only mine", None))
        .await
        .unwrap();
    one(&store, &r, react("bob", 1, "k", ReactOp::Add))
        .await
        .unwrap(); // 6: not a message
    let state = store.read_state(&r, &me, Seq::new(6)).await.unwrap();
    assert_eq!(
        (state.read_seq.get(), state.unread),
        (0, 4),
        "own messages do not count"
    );
    let read = |seq: i64| [(me.clone(), Seq::new(seq))];
    let (s, moved) = store.mark_read(&r, &read(3)).await.unwrap()[0];
    assert_eq!(
        (s.read_seq.get(), s.unread, s.last_seq.get(), moved),
        (3, 2, 6, true)
    );
    let (s, moved) = store.mark_read(&r, &read(1)).await.unwrap()[0];
    assert_eq!((s.read_seq.get(), moved), (3, false), "never backwards");
    let (_, moved) = store.mark_read(&r, &read(3)).await.unwrap()[0];
    assert!(!moved, "the same seq does not move it");
    // A batch: each answer is the user's state afterwards; the highest seq is the one that moved.
    let cy = chorus::ids::UserId::from("cy");
    let batch = [
        (cy.clone(), Seq::new(2)),
        (me.clone(), Seq::new(4)),
        (cy, Seq::new(1)),
    ];
    let out = store.mark_read(&r, &batch).await.unwrap();
    let got: Vec<(i64, bool)> = out.iter().map(|(s, m)| (s.read_seq.get(), *m)).collect();
    assert_eq!(got, vec![(2, true), (4, true), (2, false)]);
    one(&store, &r, delete("cy", 5)).await.unwrap(); // 7
    let s = store.read_state(&r, &me, Seq::new(7)).await.unwrap();
    assert_eq!(
        s.unread, 0,
        "a deleted message no longer counts (cursor at 4, cy's 5 deleted)"
    );
    let s = store.read_state(&r, &me, Seq::new(6)).await.unwrap();
    assert_eq!(s.unread, 1, "as of seq 6 the delete at 7 has not happened");
    let (s, _) = store.mark_read(&r, &read(99)).await.unwrap()[0];
    assert_eq!((s.read_seq.get(), s.unread), (7, 0), "clamped to the head");
    let mine = store.my_rooms(&me, None, 10).await.unwrap();
    let rooms: Vec<&str> = mine.iter().map(|m| m.room.as_str()).collect();
    assert_eq!(rooms, vec!["unread", "quiet"], "most recent first");
    assert_eq!(
        (
            mine[0].last_seq.get(),
            mine[0].read_seq.get(),
            mine[0].unread
        ),
        (7, 7, 0)
    );
    assert_eq!(mine[0].last_message.as_ref().map(|m| m.seq.get()), Some(5));
    assert!(mine[0].last_message.as_ref().unwrap().deleted);
    assert_eq!(store.my_rooms(&me, None, 1).await.unwrap().len(), 1);
    assert!(
        store
            .my_rooms(&"nobody".into(), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let bob = store.my_rooms(&"bob".into(), None, 10).await.unwrap();
    assert_eq!(
        (bob.len(), bob[0].unread),
        (1, 1),
        "bob posted in one room; ann's one message is unread"
    );
}

async fn heads_ranges_and_epoch_resets(store: Arc<dyn Store>) {
    let r = room("heads");
    let head = store.head(&r).await.unwrap();
    assert_eq!(
        head.last_seq,
        Seq::ZERO,
        "a new room starts before its first entry"
    );
    assert_eq!(store.head(&r).await.unwrap(), head, "and keeps its epoch");
    for i in 0..3 {
        one(&store, &r, msg("ann", &format!("m{i}"), None))
            .await
            .unwrap();
    }
    let got = store.range(&r, Seq::new(1), Seq::new(3)).await.unwrap();
    let seqs: Vec<i64> = got.iter().map(|m| m.seq.get()).collect();
    assert_eq!(seqs, [2, 3], "exactly after+1 ..= upto");
    assert!(
        matches!(
            store.range(&r, Seq::new(1), Seq::new(5)).await,
            Err(StoreError::Internal(_))
        ),
        "a range past the head is not complete"
    );
    let reset = store.reset_epoch(&r, &head.epoch).await.unwrap();
    assert_ne!(reset.epoch, head.epoch);
    assert_eq!(reset.last_seq, Seq::new(3), "the numbering is kept");
    let again = store.reset_epoch(&r, &head.epoch).await.unwrap();
    assert_eq!(
        again.epoch, reset.epoch,
        "a second node noticing the same rewind agrees"
    );
    assert_eq!(store.head(&r).await.unwrap().epoch, reset.epoch);
    store.ping().await.unwrap();
}

/// Searches `text` in `scope`, every page of `limit`, and returns the hits as (room, seq, body)
/// in the order the pages gave them, checking that order is newest first without repeats.
async fn search_all(
    store: &Arc<dyn Store>,
    text: &str,
    scope: RoomScope,
    limit: usize,
) -> Vec<(String, i64, String)> {
    let (mut got, mut before, mut keys) = (Vec::new(), None, Vec::new());
    loop {
        let q = SearchQuery {
            text: text.into(),
            scope: scope.clone(),
            before: before.clone(),
            limit,
        };
        let page = store.search(&q).await.unwrap();
        for h in &page {
            assert!(h.highlight.contains("<mark>"), "{h:?}");
            keys.push((h.ts, h.room.to_string(), h.seq));
            got.push((h.room.to_string(), h.seq.get(), h.body.clone()));
        }
        if page.len() < limit {
            break;
        }
        before = page.last().map(|h| h.cursor());
    }
    assert!(
        keys.windows(2).all(|w| w[0] > w[1]),
        "newest first, no repeats: {keys:?}"
    );
    got
}

async fn search_finds_current_text_in_scope_never_deleted(store: Arc<dyn Store>) {
    let (a, b, t) = (room("srch-a"), room("srch-b"), room("team-srch"));
    one(&store, &a, msg("ann", "Deploy on Friday", None))
        .await
        .unwrap(); // 1
    one(&store, &a, msg("bob", "lunch on friday?", None))
        .await
        .unwrap(); // 2
    one(&store, &a, msg("ann", "deploy monday <b>maybe</b>", None))
        .await
        .unwrap(); // 3
    one(&store, &b, msg("cat", "deploy friday evening", None))
        .await
        .unwrap();
    one(&store, &t, msg("dan", "deploy now", None))
        .await
        .unwrap();
    let all = |text: &'static str| search_all(&store, text, RoomScope::All, 2);
    let mut deploys: Vec<(String, i64)> = all("deploy")
        .await
        .into_iter()
        .map(|(r, s, _)| (r, s))
        .collect();
    deploys.sort();
    let want = |v: &[(&str, i64)]| {
        v.iter()
            .map(|(r, s)| (r.to_string(), *s))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        deploys,
        want(&[
            ("srch-a", 1),
            ("srch-a", 3),
            ("srch-b", 1),
            ("team-srch", 1)
        ]),
        "every room, each hit once over pages of 2"
    );
    let scoped = RoomScope::Only {
        rooms: vec![a.clone()],
        prefixes: vec!["team-".into()],
    };
    let mut in_scope: Vec<(String, i64)> = search_all(&store, "deploy", scoped, 10)
        .await
        .into_iter()
        .map(|(r, s, _)| (r, s))
        .collect();
    in_scope.sort();
    assert_eq!(
        in_scope,
        want(&[("srch-a", 1), ("srch-a", 3), ("team-srch", 1)]),
        "a token's rooms and prefixes only"
    );
    assert_eq!(all("deploy friday").await.len(), 2, "every word must match");
    // An edit is found by its new words only; a deleted message never.
    one(&store, &a, edit("ann", 1, "postponed to monday"))
        .await
        .unwrap();
    one(&store, &a, delete("bob", 2)).await.unwrap();
    assert_eq!(
        all("postponed").await,
        vec![("srch-a".to_string(), 1, "postponed to monday".to_string())]
    );
    let fridays: Vec<(String, i64)> = all("friday")
        .await
        .into_iter()
        .map(|(r, s, _)| (r, s))
        .collect();
    assert_eq!(
        fridays,
        want(&[("srch-b", 1)]),
        "not the old text, not the deleted"
    );
    assert!(all("lunch").await.is_empty(), "deleted");
    // Operators only, or nothing that is a word: no hit, no error.
    assert!(all("&& || !! ()").await.is_empty());
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
    concurrent_appends_to_one_room_never_share_or_skip_a_seq,
    edits_follow_their_rules_and_fold_into_the_message,
    deletes_erase_and_only_the_author_or_a_moderator_may,
    one_reaction_per_message_user_and_key,
    read_cursors_are_monotonic_and_unread_counts_exact,
    heads_ranges_and_epoch_resets,
    a_deleted_message_shows_no_reactions_on_any_read,
    a_users_rooms_page_by_activity_without_gaps_or_repeats,
    search_finds_current_text_in_scope_never_deleted
);
