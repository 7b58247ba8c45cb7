//! Room actor lifecycle and the store paths behind it: idle rooms stop and restart cleanly,
//! concurrent posts share commits (group commit), and backfill survives a dead reader pool.

use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::support::*;

#[actix_web::test]
async fn an_idle_room_stops_and_a_later_join_starts_it_again() {
    let node = TestNode::start(&fresh_db().await, &[("room.idle_stop_ms", "100")]).await;
    let mut ws = node.ws("u").await;
    ws.join("idle").await;
    ws.post("idle", "one").await;
    ws.send(json!({"type":"leave","room":"idle"})).await;
    ws.recv_type("left").await;
    eventually("room actor stopped", || {
        node.metric("chorus_rooms_active") == 0.0
    })
    .await;
    assert!(node.node.shared.rooms.is_empty());
    // A fresh actor picks up where the store is.
    let joined = ws.join("idle").await;
    assert_eq!(joined["last_seq"], 1);
    assert_eq!(ws.post("idle", "two").await["seq"], 2);
    node.stop().await;
}

#[actix_web::test]
async fn concurrent_posts_to_one_room_share_commits() {
    let node = TestNode::start(
        &fresh_db().await,
        &[("limits.msgs_per_sec", "10000"), ("limits.burst", "10000")],
    )
    .await;
    let mut ws = node.ws("u").await;
    ws.join("gc").await;
    for i in 0..300 {
        ws.stream
            .feed(WsMessage::text(
                json!({"type":"send","room":"gc","body":format!("m{i}")}).to_string(),
            ))
            .await
            .unwrap();
    }
    ws.stream.flush().await.unwrap();
    let mut acks = 0;
    while acks < 300 {
        if ws.recv().await["type"] == "ack" {
            acks += 1;
        }
    }
    let appends = node.metric("chorus_store_seconds_count{op=\"append\"}");
    assert_eq!(
        node.metric("chorus_messages_posted_total{type=\"message\"}"),
        300.0
    );
    assert!(
        appends < 300.0 / 2.0,
        "300 pipelined posts took {appends} commits: no group commit"
    );
    node.stop().await;
}

#[actix_web::test]
async fn history_and_backfill_fall_back_to_the_writer_when_the_reader_is_down() {
    let db = fresh_db().await;
    let proxy = FaultProxy::start(pg_addr()).await;
    let node = TestNode::start(
        &db,
        &[
            ("database.read_url", &via_proxy(&db, &proxy)),
            ("database.timeout_ms", "1000"),
        ],
    )
    .await;
    let mut ws = node.ws("u").await;
    ws.join("rp").await;
    for i in 1..=5 {
        ws.post("rp", &format!("m{i}")).await;
    }
    // History reads go to the reader: with it cut, the writer answers the page (after the
    // reader's time-out), with every entry...
    proxy.cut();
    ws.send(json!({"type":"history","room":"rp","ref":"h"}))
        .await;
    let page = ws.recv().await;
    assert_eq!(page["type"], "history", "{page}");
    assert_eq!(page_seqs(&page), vec![1, 2, 3, 4, 5], "{page}");
    // ...and a join with `since` still recovers exactly, from the writer.
    let mut other = node.ws("v").await;
    other
        .send(json!({"type":"join","room":"rp","since":2}))
        .await;
    assert_eq!(other.recv().await["recovered"], true);
    assert_eq!(recv_seqs(&mut other, 3).await, vec![3, 4, 5]);
    node.stop().await;
}
