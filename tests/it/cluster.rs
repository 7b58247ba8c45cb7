//! The cluster (issue: bridge over Redis pub/sub): several real nodes on one Postgres and a private
//! `redis-server`, real WebSocket clients. Posts on any node reach every member on every node in
//! seq order, exactly once, through Redis outages, dropped pub/sub connections and dead nodes.

use std::time::{Duration, Instant};

use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::processes::{RedisServer, spawn_node};
use crate::support::*;

pub const HEARTBEAT_MS: u64 = 200;
pub const DEAD_AFTER_MS: u64 = 1200;

/// Where a node finds Redis: the test's server, or a proxy in front of it.
pub trait RedisUrl {
    fn url(&self) -> String;
}

impl RedisUrl for RedisServer {
    fn url(&self) -> String {
        RedisServer::url(self)
    }
}

struct RedisAt(String);

impl RedisUrl for RedisAt {
    fn url(&self) -> String {
        self.0.clone()
    }
}

/// A node of a test cluster: the shared database and Redis, a prefix unique to the test, fast
/// heartbeats. Waits until its bridge is connected and subscribed.
pub async fn cluster_node(db: &str, redis: &impl RedisUrl, prefix: &str) -> TestNode {
    let (hb, dead) = (HEARTBEAT_MS.to_string(), DEAD_AFTER_MS.to_string());
    let url = redis.url();
    let node = TestNode::start(
        db,
        &[
            ("redis.url", url.as_str()),
            ("redis.prefix", prefix),
            ("cluster.heartbeat_ms", hb.as_str()),
            ("cluster.dead_after_ms", dead.as_str()),
            ("limits.msgs_per_sec", "10000"),
            ("limits.burst", "10000"),
        ],
    )
    .await;
    wait_ready(&node, true).await;
    node
}

pub fn prefix() -> String {
    format!("it{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

/// A test's cluster: its database, its own redis-server, a prefix of its own, and `n` ready nodes.
struct TestCluster {
    db: String,
    redis: RedisServer,
    prefix: String,
    nodes: Vec<TestNode>,
}

impl TestCluster {
    async fn start(n: usize) -> TestCluster {
        let (db, redis, prefix) = (fresh_db().await, RedisServer::start().await, prefix());
        let mut nodes = Vec::with_capacity(n);
        for _ in 0..n {
            nodes.push(cluster_node(&db, &redis, &prefix).await);
        }
        TestCluster {
            db,
            redis,
            prefix,
            nodes,
        }
    }

    async fn add_node(&self) -> TestNode {
        cluster_node(&self.db, &self.redis, &self.prefix).await
    }

    async fn stop(self) {
        for n in self.nodes {
            n.stop().await;
        }
    }
}

/// Reads message frames until `n` arrived; fails on anything but presence/typing noise and acks.
async fn seqs(ws: &mut Ws, n: usize) -> Vec<i64> {
    recv_seqs(ws, n).await
}

fn one_to(n: i64) -> Vec<i64> {
    (1..=n).collect()
}

/// Reads frames until a `presence_diff` arrives (skipping everything else) and returns it.
async fn next_diff(ws: &mut Ws) -> Value {
    loop {
        let v = ws.recv().await;
        if v["type"] == "presence_diff" {
            return v;
        }
    }
}

/// `GET /api/rooms/{room}/presence` on `node`: the user ids, sorted.
pub async fn rest_presence(node: &TestNode, room: &str) -> Vec<String> {
    let res: Value = http()
        .get(node.http(&format!("/api/rooms/{room}/presence")))
        .bearer_auth(token("x"))
        .send()
        .await
        .expect("presence")
        .json()
        .await
        .expect("json");
    users(&res["users"])
}

/// Bob listening on `b`, Ann writing on `a`, both in `room`, and Ann's first message seen by Bob.
pub async fn writer_on_a_member_on_b(a: &TestNode, b: &TestNode, room: &str) -> (Ws, Ws) {
    let mut member = b.ws("bob").await;
    member.join(room).await;
    let mut writer = a.ws("ann").await;
    writer.join(room).await;
    writer.post(room, "before").await;
    assert_eq!(seqs(&mut member, 1).await, vec![1]);
    (writer, member)
}

fn users(list: &Value) -> Vec<String> {
    let mut u: Vec<String> = list
        .as_array()
        .expect("user list")
        .iter()
        .map(|u| u["user"].as_str().expect("user").to_owned())
        .collect();
    u.sort();
    u
}

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
    // Every writer pipelines all of its sends at once, all writers concurrently.
    let sends = writers.iter_mut().enumerate().map(|(w, ws)| async move {
        for i in 0..EACH {
            let frame = json!({"type":"send","room":"busy","body":format!("{w}-{i}"),
                               "client_msg_id":format!("{w}-{i}")});
            ws.stream
                .feed(WsMessage::text(frame.to_string()))
                .await
                .expect("feed");
        }
        ws.stream.flush().await.expect("flush");
    });
    futures_util::future::join_all(sends).await;
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
