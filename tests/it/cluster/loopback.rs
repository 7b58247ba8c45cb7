//! The ordering and presence scenarios on the in-process loopback bus ([`LoopCluster`]): real nodes
//! on real sockets and real Postgres, no redis-server. Fast enough to run many writers and cuts;
//! the Redis-specific faults stay in `outages.rs`.

use serde_json::json;

use crate::support::*;

#[actix_web::test]
async fn writers_on_three_loopback_nodes_every_client_sees_exactly_1_to_n() {
    let cluster = LoopCluster::start(3).await;
    let mut readers = Vec::new();
    for (i, node) in cluster.nodes.iter().enumerate() {
        let mut ws = node.ws(&format!("reader{i}")).await;
        ws.join("loop").await;
        readers.push(ws);
    }
    let mut writers = Vec::new();
    for w in 0..6 {
        let mut ws = cluster.nodes[w % 3].ws(&format!("writer{w}")).await;
        ws.join("loop").await;
        writers.push(ws);
    }
    const EACH: usize = 50;
    flood(&mut writers, "loop", EACH).await;
    let n = (writers.len() * EACH) as i64;
    for (i, ws) in readers.iter_mut().chain(writers.iter_mut()).enumerate() {
        assert_eq!(seqs(ws, n as usize).await, one_to(n), "client {i}");
    }
    cluster.stop().await;
}

#[actix_web::test]
async fn a_node_cut_off_the_bus_still_delivers_everything_in_order_and_after_it_returns() {
    let cluster = LoopCluster::start(2).await;
    let [a, b] = [&cluster.nodes[0], &cluster.nodes[1]];
    let (mut writer, mut member) = writer_on_a_member_on_b(a, b, "cut").await;
    cluster.cut(1, true);
    wait_ready(b, false).await;
    // While B hears nothing from the bus, it catches up from Postgres (once a heartbeat).
    for i in 0..5 {
        writer.post("cut", &format!("while cut {i}")).await;
    }
    assert_eq!(seqs(&mut member, 5).await, vec![2, 3, 4, 5, 6]);
    // Writers on both sides of the cut, then the bus returns.
    let mut other = b.ws("carl").await;
    other.join("cut").await;
    let mut writers = [writer, other];
    flood(&mut writers, "cut", 20).await;
    cluster.cut(1, false);
    wait_ready(b, true).await;
    let [mut writer, other] = writers;
    for ws in [&mut member] {
        assert_eq!(seqs(ws, 40).await, (7..=46).collect::<Vec<i64>>());
    }
    writer
        .send(json!({"type":"send","room":"cut","body":"after"}))
        .await;
    assert_eq!(seqs(&mut member, 1).await, vec![47]);
    drop(other);
    cluster.stop().await;
}

#[actix_web::test]
async fn presence_across_loopback_nodes_counts_a_user_once_and_follows_a_dead_node() {
    let mut cluster = LoopCluster::start(2).await;
    let mut watcher = cluster.nodes[0].ws("watcher").await;
    watcher.join("p").await;
    let mut ann_b = cluster.nodes[1].ws("ann").await;
    ann_b.join("p").await;
    let diff = next_diff(&mut watcher).await;
    assert_eq!(users(&diff["joins"]), vec!["ann"]);
    // Ann's second socket, on a third node: no news for anyone.
    cluster.add_node().await;
    let mut ann_c = cluster.nodes[2].ws("ann").await;
    ann_c.join("p").await;
    assert_eq!(
        rest_presence(&cluster.nodes[0], "p").await,
        vec!["ann", "watcher"]
    );
    // The node with her first socket goes away: she is still here (on the third).
    let b = cluster.nodes.remove(1);
    b.stop().await;
    drop(ann_b);
    let a = &cluster.nodes[0];
    eventually("A hears B left", || a.metric("chorus_cluster_nodes") == 2.0).await;
    assert_eq!(rest_presence(a, "p").await, vec!["ann", "watcher"]);
    // Her last socket leaves: everyone hears she left.
    drop(ann_c);
    let diff = next_diff(&mut watcher).await;
    assert_eq!(users(&diff["leaves"]), vec!["ann"]);
    cluster.stop().await;
}
