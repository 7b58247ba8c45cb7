//! Several nodes at once: on a private `redis-server` ([`TestCluster`], [`cluster_node`]), or in
//! this process on the loopback bus ([`LoopCluster`]: no Redis, fast, for the ordering and presence
//! scenarios), and the helpers cluster tests share.

use super::*;
use crate::processes::RedisServer;
use chorus::bridge::{Bus, LoopbackBus, LoopbackHub};
use chorus::node::Parts;
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message as WsMessage;

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

pub struct RedisAt(pub String);

impl RedisUrl for crate::processes::RedisCluster {
    fn url(&self) -> String {
        crate::processes::RedisCluster::url(self)
    }
}

impl RedisUrl for RedisAt {
    fn url(&self) -> String {
        self.0.clone()
    }
}

/// A node of a test cluster: the shared database and Redis, a prefix unique to the test, fast
/// heartbeats. Waits until its bridge is connected and subscribed.
pub async fn cluster_node(db: &str, redis: &impl RedisUrl, prefix: &str) -> TestNode {
    cluster_node_with(db, redis, prefix, &[]).await
}

/// [`cluster_node`] with more settings.
pub async fn cluster_node_with(
    db: &str,
    redis: &impl RedisUrl,
    prefix: &str,
    extra: &[(&str, &str)],
) -> TestNode {
    let (hb, dead) = (HEARTBEAT_MS.to_string(), DEAD_AFTER_MS.to_string());
    let url = redis.url();
    let mut settings = vec![
        ("redis.url", url.as_str()),
        ("redis.prefix", prefix),
        ("cluster.heartbeat_ms", hb.as_str()),
        ("cluster.dead_after_ms", dead.as_str()),
        ("limits.msgs_per_sec", "10000"),
        ("limits.burst", "10000"),
    ];
    settings.extend_from_slice(extra);
    let node = TestNode::start(db, &settings).await;
    wait_ready(&node, true).await;
    node
}

pub fn prefix() -> String {
    format!("it{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

/// A test's cluster: its database, its own redis-server, a prefix of its own, and `n` ready nodes.
pub struct TestCluster {
    pub db: String,
    pub redis: RedisServer,
    pub prefix: String,
    pub nodes: Vec<TestNode>,
}

impl TestCluster {
    pub async fn start(n: usize) -> TestCluster {
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

    pub async fn add_node(&self) -> TestNode {
        cluster_node(&self.db, &self.redis, &self.prefix).await
    }

    pub async fn stop(self) {
        for n in self.nodes {
            n.stop().await;
        }
    }
}

/// Reads message frames until `n` arrived; fails on anything but presence/typing noise and acks.
pub async fn seqs(ws: &mut Ws, n: usize) -> Vec<i64> {
    recv_seqs(ws, n).await
}

pub fn one_to(n: i64) -> Vec<i64> {
    (1..=n).collect()
}

/// Reads frames until a `presence_diff` arrives (skipping everything else) and returns it.
pub async fn next_diff(ws: &mut Ws) -> Value {
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

pub fn users(list: &Value) -> Vec<String> {
    let mut u: Vec<String> = list
        .as_array()
        .expect("user list")
        .iter()
        .map(|u| u["user"].as_str().expect("user").to_owned())
        .collect();
    u.sort();
    u
}

/// Nodes in this process on one Postgres database and one loopback bus (no redis-server): the
/// cluster logic end to end, over real sockets, in a fraction of the time. A node's bus can be
/// cut and restored ([`LoopCluster::cut`]) to rehearse a Redis outage.
pub struct LoopCluster {
    pub db: String,
    pub nodes: Vec<TestNode>,
    buses: Vec<Arc<LoopbackBus>>,
    hub: LoopbackHub,
}

impl LoopCluster {
    pub async fn start(n: usize) -> LoopCluster {
        let mut cluster = LoopCluster {
            db: fresh_db().await,
            nodes: Vec::new(),
            buses: Vec::new(),
            hub: LoopbackHub::new(),
        };
        for _ in 0..n {
            cluster.add_node().await;
        }
        cluster
    }

    /// Starts one more node on the hub and waits until its bridge is ready.
    pub async fn add_node(&mut self) {
        let bus = Arc::new(self.hub.bus());
        let (hb, dead) = (HEARTBEAT_MS.to_string(), DEAD_AFTER_MS.to_string());
        let s = settings(
            &self.db,
            &[
                ("cluster.heartbeat_ms", hb.as_str()),
                ("cluster.dead_after_ms", dead.as_str()),
                ("limits.msgs_per_sec", "10000"),
                ("limits.burst", "10000"),
            ],
        );
        chorus::telemetry::init(&s.log, &s.node.id);
        let parts = Parts {
            store: None,
            bus: Some(bus.clone() as Arc<dyn Bus>),
        };
        let node = TestNode {
            node: chorus::node::Node::start_with(s, parts)
                .await
                .expect("node starts"),
        };
        wait_ready(&node, true).await;
        self.nodes.push(node);
        self.buses.push(bus);
    }

    /// Cuts node `i` off the bus (`false`) or brings it back (`true`), as a Redis outage would.
    pub fn cut(&self, i: usize, cut: bool) {
        self.buses[i].set_connected(!cut);
    }

    pub async fn stop(self) {
        for n in self.nodes {
            n.stop().await;
        }
    }
}

/// Every writer pipelines all its sends at once, all writers concurrently.
pub async fn flood(writers: &mut [Ws], room: &str, each: usize) {
    let sends = writers.iter_mut().enumerate().map(|(w, ws)| async move {
        for i in 0..each {
            let frame = json!({"type":"send","room":room,"body":format!("{w}-{i}"),
                               "client_msg_id":format!("{w}-{i}")});
            ws.stream
                .feed(WsMessage::text(frame.to_string()))
                .await
                .expect("feed");
        }
        ws.stream.flush().await.expect("flush");
    });
    futures_util::future::join_all(sends).await;
}
