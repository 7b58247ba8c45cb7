//! A member that stops reading: its bounded queue fills, it is evicted and closed with 1013, and
//! the other members keep receiving every message in order.

use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::support::*;

/// Floods room "flood" with 4 KB bodies in windows of 50 (the writer reads its acks, so it is
/// never slow) until the server reports a slow consumer; bounded at 20 000 messages. Returns how
/// many were sent.
async fn flood_until_slow(node: &TestNode, writer: &mut Ws) -> u64 {
    flood_until(node, writer, "a slow consumer", |n| {
        n.metric("chorus_slow_consumers_total") >= 1.0
    })
    .await
}

/// As [`flood_until_slow`], until `done` holds.
async fn flood_until(
    node: &TestNode,
    writer: &mut Ws,
    what: &str,
    done: impl Fn(&TestNode) -> bool,
) -> u64 {
    let body = "x".repeat(4000);
    let mut sent = 0u64;
    while !done(node) {
        assert!(sent < 20_000, "no {what} after {sent} messages");
        for _ in 0..50 {
            let f = json!({"type":"send","room":"flood","body":body}).to_string();
            writer.stream.feed(WsMessage::text(f)).await.unwrap();
        }
        writer.stream.flush().await.unwrap();
        sent += 50;
        let mut acks = 0;
        while acks < 50 {
            let v = writer.recv().await;
            assert_ne!(v["type"], "error", "{v}");
            if v["type"] == "ack" {
                acks += 1;
            }
        }
    }
    sent
}

#[actix_web::test]
async fn a_reader_that_stops_reading_is_closed_with_1013_and_others_lose_nothing() {
    let node = TestNode::start(
        &fresh_db().await,
        &[
            ("session.queue_max", "256"),
            ("limits.msgs_per_sec", "100000"),
            ("limits.burst", "100000"),
        ],
    )
    .await;
    let mut slow = Ws::connect_small_buffer(node.addr(), &token("slow")).await;
    slow.join("flood").await;
    // The well-behaved member reads everything on its own thread, so the flood below cannot
    // starve it of CPU in this test process.
    let addr = node.addr();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let good_reader = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut good = Ws::connect(addr, &token("good")).await;
            good.join("flood").await;
            ready_tx.send(()).unwrap();
            let mut seqs = Vec::new();
            loop {
                let v = good.recv().await;
                if v["type"] == "message" {
                    seqs.push(v["seq"].as_i64().unwrap());
                    if v["body"] == "last" {
                        return seqs;
                    }
                }
            }
        })
    });
    ready_rx.await.unwrap();
    let mut writer = node.ws("writer").await;
    writer.join("flood").await;

    let mut sent = flood_until_slow(&node, &mut writer).await;
    writer
        .send(json!({"type":"send","room":"flood","body":"last"}))
        .await;
    sent += 1;
    // Its own copies of earlier messages may still be ahead of this ack.
    while writer.recv().await["type"] != "ack" {}

    let seqs = good_reader.join().unwrap();
    assert_eq!(
        seqs,
        (1..=sent as i64).collect::<Vec<_>>(),
        "the good reader got everything, in order"
    );
    // The slow reader, reading again, finds its buffered frames and then the 1013 close.
    assert_eq!(slow.closed().await, 1013);
    assert_eq!(
        node.metric("chorus_session_closes_total{code=\"1013\"}"),
        1.0
    );
    node.stop().await;
}

#[actix_web::test]
async fn a_reader_that_never_reads_again_is_disconnected_and_its_session_freed() {
    let node = TestNode::start(
        &fresh_db().await,
        &[
            ("session.queue_max", "256"),
            ("session.write_timeout_ms", "1000"),
            ("limits.msgs_per_sec", "100000"),
            ("limits.burst", "100000"),
        ],
    )
    .await;
    let mut stuck = Ws::connect_small_buffer(node.addr(), &token("stuck")).await;
    stuck.join("flood").await;
    let mut writer = node.ws("writer").await;
    writer.join("flood").await;
    assert_eq!(node.metric("chorus_sessions"), 2.0);
    // Whichever comes first ends it for the stuck reader: the room evicts it as slow, or the
    // kernel gives up on a peer that accepted nothing for write_timeout_ms (the two race when the
    // machine is busy).
    flood_until(
        &node,
        &mut writer,
        "slow consumer or dropped connection",
        |n| n.metric("chorus_slow_consumers_total") >= 1.0 || n.metric("chorus_sessions") == 1.0,
    )
    .await;
    // The stuck reader never reads again: its 1013 can never be written, so the kernel must drop
    // the connection once nothing has been accepted for write_timeout_ms, and the session ends.
    eventually("the stuck session is gone", || {
        node.metric("chorus_sessions") == 1.0
    })
    .await;
    // The writer is untouched (its own copies of the flood may still be ahead of the pong).
    writer.send(json!({"type":"ping","ref":"ok"})).await;
    loop {
        let v = writer.recv().await;
        if v["type"] == "pong" {
            assert_eq!(v["ref"], "ok");
            break;
        }
        assert!(
            matches!(v["type"].as_str(), Some("message" | "presence_diff")),
            "{v}"
        );
    }
    drop(stuck);
    node.stop().await;
}
