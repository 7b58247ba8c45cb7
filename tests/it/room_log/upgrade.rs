//! The schema upgrade from v1 (migrations V1–V2) keeps every message and its seq, and a delete
//! erases bodies in the database itself, not only on the wire.

use chorus::ids::RoomId;
use serde_json::json;

use super::ask;
use crate::support::*;

#[actix_web::test]
async fn a_database_written_by_the_previous_schema_upgrades_without_renumbering() {
    let db = empty_db().await;
    chorus::store::migrate::run_to(&db, Some(2))
        .await
        .expect("migrate to V2");
    let pg = db_client(&db).await;
    // Written the way the previous version wrote: its chorus_append, two rooms, an idempotency key.
    for (room, users, bodies) in [
        (
            "old",
            vec!["ann", "bob", "ann"],
            vec!["one", "two", "three"],
        ),
        ("other", vec!["cy"], vec!["solo"]),
    ] {
        let ids: Vec<String> = bodies
            .iter()
            .map(|_| uuid::Uuid::new_v4().to_string())
            .collect();
        let names: Vec<Option<&str>> = bodies.iter().map(|_| None).collect();
        let cids: Vec<Option<&str>> = bodies
            .iter()
            .enumerate()
            .map(|(i, _)| (i == 0).then_some("c0"))
            .collect();
        pg.query(
            "SELECT * FROM chorus_append($1, 'epoch1', $2, $3, $4, $5, now(), $6)",
            &[&room, &ids, &users, &names, &bodies, &cids],
        )
        .await
        .expect("append with the v1 function");
    }
    let before: Vec<(i64, String)> = pg
        .query(
            "SELECT seq, body FROM messages WHERE room = 'old' ORDER BY seq",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();

    let node = TestNode::start(&db, &[]).await; // migrates the rest at start
    let after = get_json(&node, "/api/rooms/old/messages?after=0", "ann").await;
    let got: Vec<(i64, String)> = after["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["seq"].as_i64().unwrap(),
                m["body"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(got, before, "every message kept with its seq");
    assert_eq!(
        after["epoch"], "epoch1",
        "the epoch is unchanged, so clients' cursors stay valid"
    );
    assert!(
        after["messages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["type"] == "message")
    );
    // The old idempotency key still answers; the new entry types continue the numbering.
    let res = http()
        .post(node.http("/api/rooms/old/messages"))
        .bearer_auth(token("ann"))
        .json(&json!({"body":"one","client_msg_id":"c0"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "a duplicate of a v1 message");
    let mut ann = node.ws("ann").await;
    ann.join("old").await;
    let ack = ask(
        &mut ann,
        json!({"type":"edit","room":"old","target":1,"body":"ONE"}),
    )
    .await;
    assert_eq!(ack["seq"], 4);
    // Both earlier posters have the room in their list, with exact counts.
    let bob = get_json(&node, "/api/me/rooms", "bob").await;
    assert_eq!(
        (bob[0]["room"].as_str(), bob[0]["unread"].as_i64()),
        (Some("old"), Some(2))
    );
    node.stop().await;
}

#[actix_web::test]
async fn a_delete_erases_the_body_and_every_edit_body_from_postgres() {
    let db = fresh_db().await;
    let node = TestNode::start(&db, &[]).await;
    let mut ann = node.ws("ann").await;
    ann.join("erase").await;
    let m = ann.post("erase", "my secret").await["seq"]
        .as_i64()
        .unwrap();
    ask(
        &mut ann,
        json!({"type":"edit","room":"erase","target":m,"body":"my secret, v2"}),
    )
    .await;
    ask(
        &mut ann,
        json!({"type":"edit","room":"erase","target":m,"body":"my secret, v3"}),
    )
    .await;
    let keep = ask(
        &mut ann,
        json!({"type":"send","room":"erase","body":"not secret"}),
    )
    .await["seq"]
        .as_i64()
        .unwrap();
    let pg = db_client(&db).await;
    let secret_rows = || async {
        pg.query_one(
            "SELECT count(*) FROM messages WHERE room = 'erase' AND body LIKE '%secret%' AND body NOT LIKE 'not%'",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0)
    };
    assert_eq!(
        secret_rows().await,
        3,
        "the message and its two edits hold the text"
    );
    let ack = ask(&mut ann, json!({"type":"delete","room":"erase","target":m})).await;
    assert_eq!(ack["type"], "ack");
    assert_eq!(secret_rows().await, 0, "no row holds the text any more");
    let bodies: Vec<(i64, String, String)> = pg
        .query(
            "SELECT seq, kind, body FROM messages WHERE room = 'erase' ORDER BY seq",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(bodies.len(), 5);
    assert_eq!(bodies[3], (keep, "message".into(), "not secret".into()));
    let store = &node.node.shared.store;
    let log = store
        .after(&RoomId::parse("erase").unwrap(), chorus::ids::Seq::ZERO, 10)
        .await
        .unwrap();
    assert!(log[..3].iter().all(|e| e.deleted && e.body.is_empty()));
    node.stop().await;
}
