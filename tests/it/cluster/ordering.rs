//! Order across nodes: posts on any node reach every member on every node in seq order, exactly
//! once, and a client resuming on another node gets exactly what it missed.

use serde_json::json;

use crate::support::*;

#[actix_web::test]
async fn post_on_node_a_reaches_members_on_b_and_c() {
    let cluster = TestCluster::start(3).await;
    let [a, b, c] = [&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]];
    let mut on_b = b.ws("bob").await;
    let mut on_c = c.ws("carol").await;
    on_b.join("x").await;
    on_c.join("x").await;
    let mut writer = a.ws("ann").await;
    writer.join("x").await;
    let ack = writer.post("x", "hello from a").await;
    for ws in [&mut on_b, &mut on_c] {
        let m = ws.recv_type("message").await;
        assert_eq!(
            (&m["seq"], &m["id"], &m["body"], &m["user"]),
            (
                &ack["seq"],
                &ack["id"],
                &json!("hello from a"),
                &json!("ann")
            )
        );
    }
    // And back: C posts, A and B see it (C's members once, A's after its own).
    let ack = on_c.post("x", "from c").await;
    assert_eq!(ack["seq"], 2);
    assert_eq!(seqs(&mut on_b, 1).await, vec![2]);
    assert_eq!(seqs(&mut writer, 1).await, vec![2]);
    assert!(a.metric("chorus_bridge_published_total") >= 1.0);
    assert!(b.metric("chorus_bridge_received_total") >= 2.0);
    assert_eq!(b.metric("chorus_bridge_connected"), 1.0);
    eventually("three nodes see each other", || {
        [a, b, c]
            .iter()
            .all(|n| n.metric("chorus_cluster_nodes") == 3.0)
    })
    .await;
    cluster.stop().await;
}

#[actix_web::test]
async fn eight_writers_on_three_nodes_into_one_room_every_client_sees_exactly_1_to_n() {
    let cluster = TestCluster::start(3).await;
    let nodes = &cluster.nodes;
    let mut readers = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        for j in 0..2 {
            let mut ws = node.ws(&format!("reader{i}{j}")).await;
            ws.join("busy").await;
            readers.push(ws);
        }
    }
    const WRITERS: usize = 8;
    const EACH: usize = 40;
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let mut ws = nodes[w % 3].ws(&format!("writer{w}")).await;
        ws.join("busy").await;
        writers.push(ws);
    }
    flood(&mut writers, "busy", EACH).await;
    let n = (WRITERS * EACH) as i64;
    for (i, ws) in readers.iter_mut().enumerate() {
        assert_eq!(seqs(ws, n as usize).await, one_to(n), "reader {i}");
    }
    for (w, ws) in writers.iter_mut().enumerate() {
        assert_eq!(seqs(ws, n as usize).await, one_to(n), "writer {w}");
    }
    cluster.stop().await;
}

#[actix_web::test]
async fn a_head_notice_makes_a_node_repair_what_it_never_heard_of() {
    let cluster = TestCluster::start(1).await;
    let b = &cluster.nodes[0];
    let mut member = b.ws("bob").await;
    member.join("h").await;
    // Commits B cannot hear of: a node on the same database without the bridge.
    let outsider = TestNode::start(&cluster.db, &[]).await;
    for body in ["x", "y", "z"] {
        rest_post(&outsider, "h", body).await;
    }
    // What a reconnecting node publishes for each of its rooms.
    let notice = json!({"v":1,"origin":"elsewhere","room":"h","seq":3,"event":{"kind":"head"}});
    let channel = format!("{}:room:h", cluster.prefix);
    let receivers = cluster
        .redis
        .command(&["PUBLISH", &channel, &notice.to_string()])
        .await;
    assert_eq!(receivers, ":1", "B's room is subscribed");
    assert_eq!(seqs(&mut member, 3).await, vec![1, 2, 3]);
    assert_eq!(b.metric("chorus_gaps_repaired_total"), 3.0);
    outsider.stop().await;
    cluster.stop().await;
}

#[actix_web::test]
async fn reconnecting_to_another_node_with_since_gets_exactly_the_missed_messages() {
    let cluster = TestCluster::start(2).await;
    let [a, b] = [&cluster.nodes[0], &cluster.nodes[1]];
    let mut writer = b.ws("w").await;
    writer.join("resume").await;
    let mut reader = a.ws("r").await;
    let joined = reader.join("resume").await;
    for i in 1..=3 {
        writer.post("resume", &format!("m{i}")).await;
    }
    assert_eq!(seqs(&mut reader, 3).await, vec![1, 2, 3]);
    drop(reader);
    for i in 4..=6 {
        writer.post("resume", &format!("m{i}")).await;
    }
    let mut back = b.ws("r").await;
    back.send(json!({"type":"join","room":"resume","since":3,"epoch":joined["epoch"]}))
        .await;
    let rejoined = back.recv_type("joined").await;
    assert_eq!(rejoined["recovered"], true);
    assert_eq!(seqs(&mut back, 3).await, vec![4, 5, 6]);
    // Live after the seam, posted on the other node.
    let mut late = a.ws("late").await;
    late.join("resume").await;
    late.post("resume", "m7").await;
    assert_eq!(seqs(&mut back, 1).await, vec![7]);
    cluster.stop().await;
}
