//! Presence across nodes: a user counts once however many sockets on however many nodes, and a
//! dead node's users leave within its dead-after time.

use std::time::{Duration, Instant};

use crate::processes::spawn_node;
use serde_json::json;

use crate::support::*;

#[actix_web::test]
async fn a_sigkilled_node_leaves_presence_within_dead_after_plus_a_heartbeat() {
    let cluster = TestCluster::start(1).await;
    let survivor = &cluster.nodes[0];
    let (hb, dead, url, p) = (
        HEARTBEAT_MS.to_string(),
        DEAD_AFTER_MS.to_string(),
        cluster.redis.url(),
        cluster.prefix.clone(),
    );
    let (mut child, addr) = spawn_node(
        &cluster.db,
        &[
            ("CHORUS__REDIS__URL", &url),
            ("CHORUS__REDIS__PREFIX", &p),
            ("CHORUS__CLUSTER__HEARTBEAT_MS", &hb),
            ("CHORUS__CLUSTER__DEAD_AFTER_MS", &dead),
        ],
    );
    let mut watcher = survivor.ws("watcher").await;
    watcher.join("lobby").await;
    eventually("the survivor hears the doomed node", || {
        survivor.metric("chorus_cluster_nodes") == 2.0
    })
    .await;
    let mut doomed = Ws::connect(addr.parse().expect("addr"), &token("bob")).await;
    // A room only the doomed node serves: nobody but a later reader can clean it up.
    doomed.send(json!({"type":"join","room":"lonely"})).await;
    doomed.recv_type("joined").await;
    doomed.send(json!({"type":"join","room":"lobby"})).await;
    doomed.recv_type("joined").await;
    let snapshot = doomed.recv_type("presence").await;
    assert_eq!(users(&snapshot["users"]), vec!["bob", "watcher"]);
    let diff = next_diff(&mut watcher).await;
    assert_eq!(users(&diff["joins"]), vec!["bob"]);

    child.kill().expect("SIGKILL");
    let killed = Instant::now();
    let _ = child.wait();
    let diff = next_diff(&mut watcher).await;
    let took = killed.elapsed();
    assert_eq!(users(&diff["leaves"]), vec!["bob"]);
    let bound = Duration::from_millis(DEAD_AFTER_MS + HEARTBEAT_MS);
    // One more heartbeat of slack: expiry is checked on the survivor's own heartbeat tick.
    assert!(
        took <= bound + Duration::from_millis(HEARTBEAT_MS),
        "bob left after {took:?}, bound {bound:?} (+ one tick)"
    );
    eventually("the dead node is no longer counted", || {
        survivor.metric("chorus_cluster_nodes") == 1.0
    })
    .await;
    // And the shared presence no longer lists bob for a node that starts serving the room now.
    let late = cluster.add_node().await;
    assert_eq!(rest_presence(&late, "lobby").await, vec!["watcher"]);
    // No ghost in the room nobody else served either, once the dead node's alive key expired.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let present = rest_presence(&late, "lonely").await;
        if present.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a dead node's user stays in presence: {present:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let key = format!("{}:presence:lonely", cluster.prefix);
    assert_eq!(
        cluster.redis.command(&["HLEN", &key]).await,
        ":0",
        "the leftover entry is deleted"
    );
    late.stop().await;
    cluster.stop().await;
}

#[actix_web::test]
async fn a_user_on_two_nodes_counts_once_and_leaves_with_the_last_socket() {
    let cluster = TestCluster::start(3).await;
    let [a, b, c] = [&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]];
    let mut watcher = c.ws("watcher").await;
    watcher.join("p").await;
    let mut alice_a = a.ws("alice").await;
    alice_a.join("p").await;
    assert_eq!(
        users(&next_diff(&mut watcher).await["joins"]),
        vec!["alice"]
    );
    let mut alice_b = b.ws("alice").await;
    alice_b.send(json!({"type":"join","room":"p"})).await;
    alice_b.recv_type("joined").await;
    let snapshot = alice_b.recv_type("presence").await;
    assert_eq!(users(&snapshot["users"]), vec!["alice", "watcher"]);

    // REST presence on a third node: alice once.
    assert_eq!(rest_presence(c, "p").await, vec!["alice", "watcher"]);

    // Typing crosses nodes too, and not back to the typist's own sockets.
    alice_a.send(json!({"type":"typing","room":"p"})).await;
    let typing = watcher.recv_type("typing").await;
    assert_eq!(typing["user"], "alice");

    // The first socket leaving changes nothing; the last one is a leave.
    alice_a.send(json!({"type":"leave","room":"p"})).await;
    alice_a.recv_type("left").await;
    alice_b.send(json!({"type":"leave","room":"p"})).await;
    alice_b.recv_type("left").await;
    let diff = next_diff(&mut watcher).await;
    assert_eq!(users(&diff["leaves"]), vec!["alice"]);
    assert!(diff["joins"].as_array().expect("joins").is_empty());
    cluster.stop().await;
}
