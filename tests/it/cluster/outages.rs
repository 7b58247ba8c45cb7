//! Redis going away under a cluster: down, stalled, one node's link cut, a dropped pub/sub
//! connection. Members keep getting every message once, in order, repaired from Postgres.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

#[actix_web::test]
async fn redis_down_for_seconds_b_still_gets_every_message_once_in_order() {
    let mut cluster = TestCluster::start(2).await;
    let [a, b] = [&cluster.nodes[0], &cluster.nodes[1]];
    let (mut writer, mut member) = writer_on_a_member_on_b(a, b, "outage").await;

    cluster.redis.kill();
    wait_ready(a, false).await;
    wait_ready(b, false).await;
    assert_eq!(a.metric("chorus_bridge_connected"), 0.0);
    // Posting goes on: commits and local delivery do not need Redis, and B's member still gets
    // every message: while the bus is down, rooms catch up from Postgres every heartbeat.
    let down_since = Instant::now();
    let mut posted = 1;
    while down_since.elapsed() < Duration::from_secs(3) {
        posted += 1;
        assert_eq!(writer.post("outage", "during").await["seq"], posted);
    }
    assert_eq!(
        seqs(&mut member, posted as usize - 1).await,
        (2..=posted).collect::<Vec<_>>()
    );
    assert_eq!(readyz(a).await, 503, "still 503 while Redis is down");

    cluster.redis.restart().await;
    wait_ready(a, true).await;
    wait_ready(b, true).await;
    for _ in 0..3 {
        posted += 1;
        writer.post("outage", "after").await;
    }
    assert_eq!(
        seqs(&mut member, 3).await,
        ((posted - 2)..=posted).collect::<Vec<_>>()
    );
    assert!(b.metric("chorus_gaps_repaired_total") > 0.0);
    cluster.stop().await;
}

#[actix_web::test]
async fn writers_on_both_nodes_while_redis_is_down_every_member_still_sees_1_to_n() {
    let mut cluster = TestCluster::start(2).await;
    let nodes = &cluster.nodes;
    let (mut readers, mut writers) = (Vec::new(), Vec::new());
    for (i, node) in nodes.iter().enumerate() {
        let mut ws = node.ws(&format!("reader{i}")).await;
        ws.join("both").await;
        readers.push(ws);
        let mut ws = node.ws(&format!("writer{i}")).await;
        ws.join("both").await;
        writers.push(ws);
    }
    cluster.redis.kill();
    for node in nodes {
        wait_ready(node, false).await;
    }
    // The two nodes take turns, so every other seq is the other node's: with Redis gone, each
    // node sees a gap after every message of its own, and must fill them all from Postgres.
    const N: i64 = 120;
    for seq in 1..=N {
        let ws = &mut writers[(seq % 2) as usize];
        ws.send(json!({"type":"send","room":"both","body":"turn"}))
            .await;
        loop {
            let v = ws.recv().await;
            if v["type"] == "ack" {
                assert_eq!(v["seq"], seq);
                break;
            }
        }
    }
    for (i, ws) in readers.iter_mut().enumerate() {
        assert_eq!(seqs(ws, N as usize).await, one_to(N), "reader {i}");
    }
    for (i, node) in nodes.iter().enumerate() {
        // Every other seq was a gap on each node: N/2 messages repaired. A repair reads all gaps
        // up to the highest held message at once (seen: 3 reads per node); one read per gap (N/2)
        // falls further behind with every message.
        assert_eq!(node.metric("chorus_gaps_repaired_total"), (N / 2) as f64);
        let reads = node.metric("chorus_store_seconds_count{op=\"range\"}");
        assert!(
            reads <= (N / 4) as f64,
            "node {i} needed {reads} repair reads for {} gaps",
            N / 2
        );
    }
    cluster.redis.restart().await;
    cluster.stop().await;
}

#[actix_web::test]
async fn a_stalled_redis_is_noticed_and_members_still_get_everything() {
    let cluster = TestCluster::start(2).await;
    let [a, b] = [&cluster.nodes[0], &cluster.nodes[1]];
    let (mut writer, mut member) = writer_on_a_member_on_b(a, b, "stall").await;

    // Frozen, not dead: sockets stay open, nothing answers. The nodes must notice on their own
    // (commands time out) and fall back to Postgres.
    cluster.redis.signal("-STOP");
    for seq in 2..=4 {
        assert_eq!(writer.post("stall", "frozen").await["seq"], seq);
    }
    wait_ready(b, false).await;
    assert_eq!(seqs(&mut member, 3).await, vec![2, 3, 4]);

    cluster.redis.signal("-CONT");
    wait_ready(a, true).await;
    wait_ready(b, true).await;
    writer.post("stall", "thawed").await;
    assert_eq!(seqs(&mut member, 1).await, vec![5]);
    cluster.stop().await;
}

#[actix_web::test]
async fn only_the_posting_nodes_redis_link_cut_the_others_still_get_everything() {
    let cluster = TestCluster::start(1).await;
    let b = &cluster.nodes[0];
    // A reaches Redis through a proxy the test can cut; B stays connected all along, so B has no
    // outage of its own to catch up after: A's publishes (replayed or head notice) must do it.
    let proxy = FaultProxy::start(cluster.redis.addr()).await;
    let a = cluster_node(
        &cluster.db,
        &RedisAt(format!("redis://{}", proxy.addr)),
        &cluster.prefix,
    )
    .await;
    let (mut writer, mut member) = writer_on_a_member_on_b(&a, b, "cut").await;

    proxy.cut();
    wait_ready(&a, false).await;
    for i in 2..=6 {
        assert_eq!(writer.post("cut", "while cut").await["seq"], i);
    }
    assert_eq!(readyz(b).await, 200, "B never lost Redis");
    proxy.restore();
    wait_ready(&a, true).await;
    assert_eq!(seqs(&mut member, 5).await, vec![2, 3, 4, 5, 6]);
    a.stop().await;
    cluster.stop().await;
}

#[actix_web::test]
async fn a_dropped_pubsub_connection_is_repaired_from_postgres_without_reconnecting_the_client() {
    let cluster = TestCluster::start(2).await;
    let [a, b] = [&cluster.nodes[0], &cluster.nodes[1]];
    let mut member = b.ws("bob").await;
    member.join("drop").await;
    rest_post(a, "drop", "one").await;
    assert_eq!(seqs(&mut member, 1).await, vec![1]);

    // Kill every subscriber connection: what is published before they resubscribe is lost to them.
    let killed = cluster
        .redis
        .command(&["CLIENT", "KILL", "TYPE", "pubsub"])
        .await;
    assert_ne!(killed, ":0", "no pub/sub connection was killed");
    for body in ["two", "three", "four"] {
        rest_post(a, "drop", body).await;
    }
    assert_eq!(seqs(&mut member, 3).await, vec![2, 3, 4]);
    // Still the same socket: it answers, and live delivery continues.
    member.send(json!({"type":"ping","ref":"p"})).await;
    assert_eq!(member.recv_type("pong").await["ref"], "p");
    rest_post(a, "drop", "five").await;
    assert_eq!(seqs(&mut member, 1).await, vec![5]);
    cluster.stop().await;
}
