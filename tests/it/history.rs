//! Partitioned history (migration V5, PROTOCOL §9): a database of the previous schema moves into
//! partitions without renumbering, retention drops whole partitions, a `since` older than what is
//! kept gets `recovered:false`, and every node keeps the coming weeks' partitions made.

use serde_json::{Value, json};

use crate::support::*;

/// Joins `room` resuming after `since`; returns the `joined` frame and the seqs of the `backfill`
/// entries that follow (of any type).
async fn join_since(ws: &mut Ws, room: &str, since: i64, backfill: usize) -> (Value, Vec<i64>) {
    ws.send(json!({"type":"join","room":room,"since":since,"ref":"j"}))
        .await;
    let joined = ws.recv_type("joined").await;
    assert_eq!(ws.recv().await["type"], "presence");
    let mut seqs = Vec::new();
    while seqs.len() < backfill {
        let v = ws.recv().await;
        if matches!(
            v["type"].as_str(),
            Some("message" | "edit" | "delete" | "react")
        ) {
            seqs.push(v["seq"].as_i64().expect("seq"));
        }
    }
    (joined, seqs)
}

/// Seqs of the room's history over REST.
async fn history(node: &TestNode, room: &str) -> Vec<i64> {
    let page = get_json(node, &format!("/api/rooms/{room}/messages?after=0"), "ann").await;
    page_seqs(&page)
}

/// Which partition holds each of the room's rows, by seq.
async fn partitions_of(pg: &tokio_postgres::Client, room: &str) -> Vec<(i64, String)> {
    pg.query(
        "SELECT seq, tableoid::regclass::text FROM messages WHERE room = $1 ORDER BY seq",
        &[&room],
    )
    .await
    .expect("query")
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

#[actix_web::test]
async fn v4_history_moves_into_partitions_unrenumbered_and_retention_drops_whole_weeks() {
    let db = empty_db().await;
    chorus::store::migrate::run_to(&db, Some(4))
        .await
        .expect("migrate to V4");
    let pg = db_client(&db).await;
    // Three messages written by the previous schema, 100 days ago, one with an idempotency key.
    let ids: Vec<String> = (0..3).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let users = vec!["ann", "bob", "ann"];
    let names: Vec<Option<&str>> = vec![None; 3];
    let bodies = vec!["one", "two", "three"];
    let cids = vec![Some("c0"), None, None];
    let kinds = vec!["message"; 3];
    let none_i: Vec<Option<i64>> = vec![None; 3];
    let none_s: Vec<Option<&str>> = vec![None; 3];
    let mods = vec![false; 3];
    pg.query(
        "SELECT * FROM chorus_log_append('aged', 'epoch1', $1, $2, $3, $4, \
         now() - interval '100 days', $5, $6, $7, $8, $9, $10)",
        &[
            &ids, &users, &names, &bodies, &cids, &kinds, &none_i, &none_s, &none_s, &mods,
        ],
    )
    .await
    .expect("append with the previous schema");

    let node = TestNode::start(&db, &[]).await; // applies V5 at start
    assert_eq!(
        partitions_of(&pg, "aged").await,
        [1, 2, 3].map(|s| (s, "messages_legacy".to_owned())),
        "the old table is the first partition, rows unchanged"
    );
    let ids_after: Vec<String> = pg
        .query(
            "SELECT id FROM messages WHERE room = 'aged' ORDER BY seq",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids_after, ids, "same ids, same seqs");

    // Everything works across the old partition and the new ones.
    let mut ann = node.ws("ann").await;
    let (joined, backfill) = join_since(&mut ann, "aged", 1, 2).await;
    assert_eq!(
        (joined["recovered"].as_bool(), backfill),
        (Some(true), vec![2, 3])
    );
    let dup = http()
        .post(node.http("/api/rooms/aged/messages"))
        .bearer_auth(token("ann"))
        .json(&json!({"body":"one","client_msg_id":"c0"}))
        .send()
        .await
        .unwrap();
    assert_eq!(dup.status(), 200, "the old idempotency key still answers");
    assert_eq!(dup.json::<Value>().await.unwrap()["seq"], 1);
    assert_eq!(ann.post("aged", "four").await["seq"], 4);
    ann.send(json!({"type":"edit","room":"aged","target":1,"body":"ONE"}))
        .await;
    assert_eq!(ann.recv_type("ack").await["seq"], 5);
    assert_eq!(ann.recv_type("edit").await["seq"], 5);
    let parts = partitions_of(&pg, "aged").await;
    assert_eq!(parts[0].1, "messages_legacy");
    assert!(
        parts[3..].iter().all(|(_, p)| p.starts_with("messages_2")),
        "new entries go to a weekly partition: {parts:?}"
    );
    let body: String = pg
        .query_one(
            "SELECT body FROM messages WHERE room = 'aged' AND seq = 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(body, "ONE", "an edit reaches a row in the old partition");

    // Retention 30 days, 30 days after the migration: the old partition is dropped whole.
    let legacy_end: chrono::DateTime<chrono::Utc> = pg
        .query_one(
            "SELECT upper FROM history_partitions WHERE name = 'messages_legacy'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let row = pg
        .query_one(
            "SELECT created, dropped FROM chorus_history_partitions(30, $1::timestamptz + interval '30 days')",
            &[&legacy_end],
        )
        .await
        .expect("retention");
    assert_eq!(row.get::<_, i32>(1), 1, "exactly the old partition dropped");
    assert_eq!(partitions_of(&pg, "aged").await, parts[3..].to_vec());

    // A `since` inside what was dropped cannot be recovered; at its edge it can. History starts
    // where the kept history does, and the numbering goes on.
    let mut bob = node.ws("bob").await;
    let (joined, _) = join_since(&mut bob, "aged", 1, 0).await;
    assert_eq!(joined["recovered"], false, "{joined}");
    assert_eq!(joined["last_seq"], 5);
    // Bob never read: only the kept messages of others count (4; not 1 and 3, which are gone:
    // counting from the room's first message would say 4).
    assert_eq!(
        (joined["read_seq"].as_i64(), joined["unread"].as_i64()),
        (Some(0), Some(1))
    );
    let mut cy = node.ws("cy").await;
    let (joined, backfill) = join_since(&mut cy, "aged", 3, 2).await;
    assert_eq!(
        (joined["recovered"].as_bool(), backfill),
        (Some(true), vec![4, 5])
    );
    assert_eq!(history(&node, "aged").await, [4, 5]);
    assert_eq!(ann.post("aged", "six").await["seq"], 6);
    // The dropped week's idempotency keys went with it: the key is new again.
    let keys: i64 = pg
        .query_one(
            "SELECT count(*) FROM message_keys WHERE client_msg_id = 'c0'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(keys, 0, "the dropped entries' keys are dropped too");
    let again = http()
        .post(node.http("/api/rooms/aged/messages"))
        .bearer_auth(token("ann"))
        .json(&json!({"body":"one again","client_msg_id":"c0"}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 201);
    assert_eq!(again.json::<Value>().await.unwrap()["seq"], 7);
    node.stop().await;
}

#[actix_web::test]
async fn every_node_keeps_the_coming_weeks_partitions_made() {
    let db = fresh_db().await;
    let pg = db_client(&db).await;
    // Take away the last partition, as if two weeks had passed with no node running.
    let last: String = pg
        .query_one(
            "SELECT name FROM history_partitions ORDER BY upper DESC LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    pg.batch_execute(&format!(
        "DROP TABLE {last}; DELETE FROM history_partitions WHERE name = '{last}'"
    ))
    .await
    .unwrap();
    let node = TestNode::start(&db, &[("room.retention_days", "30")]).await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let back: i64 = pg
            .query_one("SELECT count(*) FROM pg_class WHERE relname = $1", &[&last])
            .await
            .unwrap()
            .get(0);
        if back == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the node did not make partition {last} again"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // And posting works in the present week.
    let mut ann = node.ws("ann").await;
    ann.join("now").await;
    assert_eq!(ann.post("now", "hello").await["seq"], 1);
    node.stop().await;
}
