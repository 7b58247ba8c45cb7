//! The cluster bridge: relays room events between nodes over a [`Bus`] (Redis pub/sub in
//! production), tracks which nodes are alive, and keeps presence cluster-wide.
//!
//! ```text
//! Room ──Cluster::publish(RoomEnvelope)──▶ bus  PUBLISH <prefix>:room:<id>   (pipelined, at most once)
//! bus ──BusEvent──▶ Bridge actor ──drops origin == self──▶ Registry ──FromCluster──▶ Room
//!                   │  heartbeats on <prefix>:nodes every cluster.heartbeat_ms; dead after dead_after_ms
//!                   └─ on (re)connect or lag: renew subscriptions, then every room Resyncs:
//!                      repair from the store, re-read presence, re-announce its own, publish its head
//! ```
//!
//! Two halves: the [`Cluster`] handle is what rooms call (publish, subscribe, presence; cheap to clone,
//! no actor hop on the hot path), and the [`Bridge`] actor consumes the bus's events, beats, and
//! decides when nodes are dead.
//!
//! Guarantee (the seam's, written where it is defined): the bridge delivers another node's events
//! to this node's rooms **at most once** and drops its own; it never promises delivery. Every loss it
//! can cause is followed by a Resync (reconnect, lag, failed publish) or shows as a seq gap, and the
//! room fills it from the store, which is the truth. Nobody is disconnected for it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::mpsc;

pub mod bus;
pub mod envelope;
pub mod liveness;
pub mod loopback;
pub mod redis;

pub use bus::{Bus, BusError, BusEvent};
pub use loopback::{LoopbackBus, LoopbackHub};
pub use redis::RedisBus;

use crate::ids::{RoomId, Seq};
use crate::metrics::Metrics;
use crate::protocol::PresenceUser;
use crate::room::{FromCluster, Registry};
use envelope::{Names, NodeEvent, NodeNotice, RoomEnvelope, RoomEvent, VERSION};
use liveness::Liveness;

/// Changes to the shared presence hash, applied in order by one task, each followed by its
/// announcement, so a node that reads the hash after subscribing never misses an entry.
enum PresenceOp {
    /// Users whose first socket on this node joined the room.
    Here {
        room: RoomId,
        users: Vec<PresenceUser>,
    },
    /// Users whose last socket on this node left the room.
    Gone {
        room: RoomId,
        users: Vec<PresenceUser>,
    },
    /// Entries to drop without announcement: a dead node's, or this node's own stale ones.
    Forget {
        room: RoomId,
        entries: Vec<(String, String)>,
    },
}

/// The bridge as rooms see it. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    node: String,
    names: Names,
    bus: Arc<dyn Bus>,
    metrics: Metrics,
    /// Channels this node wants, with how many rooms want each (a room restarting while its
    /// predecessor unsubscribes must not lose the subscription). The lock orders the commands.
    wanted: tokio::sync::Mutex<HashMap<String, usize>>,
    /// The last renewal of every subscription succeeded.
    subscribed: AtomicBool,
    /// This node's own heartbeats come back through the bus (see [`Bridge::tick`]).
    echoing: AtomicBool,
    liveness: Mutex<Liveness>,
    ops: mpsc::Sender<PresenceOp>,
}

const OPS_CAPACITY: usize = 65_536;

impl Cluster {
    pub fn new(
        node: &str,
        prefix: &str,
        bus: Arc<dyn Bus>,
        metrics: Metrics,
        dead_after: Duration,
    ) -> Cluster {
        let (ops, rx) = mpsc::channel(OPS_CAPACITY);
        let cluster = Cluster {
            inner: Arc::new(Inner {
                node: node.to_owned(),
                names: Names::new(prefix),
                bus,
                metrics,
                wanted: tokio::sync::Mutex::new(HashMap::new()),
                subscribed: AtomicBool::new(false),
                echoing: AtomicBool::new(true),
                liveness: Mutex::new(Liveness::new(dead_after)),
                ops,
            }),
        };
        tokio::spawn(apply_presence_ops(cluster.clone(), rx));
        cluster
    }

    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// Connected, subscribed, and this node hears its own heartbeats: what `/readyz` and
    /// `chorus_bridge_connected` report.
    pub fn ready(&self) -> bool {
        self.inner.bus.connected()
            && self.inner.subscribed.load(Ordering::SeqCst)
            && self.inner.echoing.load(Ordering::SeqCst)
    }

    fn liveness(&self) -> std::sync::MutexGuard<'_, Liveness> {
        self.inner
            .liveness
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Sends a room event to the other nodes (queued and pipelined; never waits).
    pub fn publish(&self, room: &RoomId, seq: Option<Seq>, event: RoomEvent) {
        let envelope = RoomEnvelope {
            v: VERSION,
            origin: self.inner.node.clone(),
            room: room.clone(),
            seq,
            event,
        };
        self.inner
            .bus
            .publish(self.inner.names.room_channel(room), envelope.encode());
        self.inner.metrics.bridge_published.inc();
    }

    /// Subscribes this node to a room's channel (a room does this before it reads its head, so no
    /// message committed after that read can pass unseen). False if the bus is down: the next
    /// reconnect subscribes and makes the room resync.
    pub async fn subscribe(&self, room: &RoomId) -> bool {
        let channel = self.inner.names.room_channel(room);
        let mut wanted = self.inner.wanted.lock().await;
        let count = wanted.entry(channel.clone()).or_insert(0);
        *count += 1;
        if *count > 1 {
            return true;
        }
        match self.inner.bus.subscribe(vec![channel]).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(room = %room, error = %e, "subscribe failed; will resubscribe on reconnect");
                false
            }
        }
    }

    pub async fn unsubscribe(&self, room: &RoomId) {
        let channel = self.inner.names.room_channel(room);
        let mut wanted = self.inner.wanted.lock().await;
        match wanted.get_mut(&channel) {
            Some(n) if *n > 1 => *n -= 1,
            Some(_) => {
                wanted.remove(&channel);
                // Best effort: a stale subscription only costs a few dropped envelopes.
                let _ = self.inner.bus.unsubscribe(vec![channel]).await;
            }
            None => {}
        }
    }

    /// Marks this node alive, then subscribes to the node channel and every wanted room channel
    /// again (after a reconnect). The mark comes first: a node that announces users before its
    /// alive key exists could have them taken for a dead node's leftovers.
    async fn renew(&self, dead_after: Duration) -> bool {
        let alive = self.inner.names.alive_key(&self.inner.node);
        if self
            .inner
            .bus
            .set_expiring(&alive, dead_after)
            .await
            .is_err()
        {
            self.inner.subscribed.store(false, Ordering::SeqCst);
            return false;
        }
        let wanted = self.inner.wanted.lock().await;
        let mut channels: Vec<String> = wanted.keys().cloned().collect();
        channels.push(self.inner.names.nodes_channel());
        let ok = self.inner.bus.subscribe(channels).await.is_ok();
        self.inner.subscribed.store(ok, Ordering::SeqCst);
        ok
    }

    fn queue(&self, op: PresenceOp) {
        if self.inner.ops.try_send(op).is_err() {
            tracing::warn!("presence queue full; the next resync rewrites presence");
        }
    }

    /// These users' first sockets on this node joined `room`.
    pub fn here(&self, room: &RoomId, users: Vec<PresenceUser>) {
        if !users.is_empty() {
            self.queue(PresenceOp::Here {
                room: room.clone(),
                users,
            });
        }
    }

    /// These users' last sockets on this node left `room`.
    pub fn gone(&self, room: &RoomId, users: Vec<PresenceUser>) {
        if !users.is_empty() {
            self.queue(PresenceOp::Gone {
                room: room.clone(),
                users,
            });
        }
    }

    /// Drops hash entries (node, user) of `room` without announcing anything.
    pub fn forget(&self, room: &RoomId, entries: Vec<(String, String)>) {
        if !entries.is_empty() {
            self.queue(PresenceOp::Forget {
                room: room.clone(),
                entries,
            });
        }
    }

    /// Who the shared hash says is in `room`, by node, without the entries of dead nodes: a node is
    /// alive while its heartbeats arrive here or its alive key exists. Dead nodes' entries are
    /// deleted on the way (the node that died may have been the room's only server, and nobody
    /// else would ever clean them). Nodes found here start a liveness clock, so rooms hear when one
    /// dies.
    pub async fn presence(&self, room: &RoomId) -> Result<Vec<(String, PresenceUser)>, BusError> {
        let raw = self
            .inner
            .bus
            .hgetall(&self.inner.names.presence_key(room))
            .await?;
        let entries: Vec<(String, PresenceUser)> = raw
            .iter()
            .filter_map(|(f, v)| envelope::parse_presence_entry(f, v))
            .collect();
        let mut unsure: Vec<String> = entries
            .iter()
            .map(|(n, _)| n)
            .filter(|n| **n != self.inner.node && !self.liveness().is_beating(n))
            .cloned()
            .collect();
        unsure.sort();
        unsure.dedup();
        let keys = unsure
            .iter()
            .map(|n| self.inner.names.alive_key(n))
            .collect();
        let alive = self.inner.bus.exist(keys).await?;
        let dead: Vec<&String> = unsure
            .iter()
            .zip(alive)
            .filter(|(_, alive)| !alive)
            .map(|(n, _)| n)
            .collect();
        let (live, gone): (Vec<_>, Vec<_>) =
            entries.into_iter().partition(|(n, _)| !dead.contains(&n));
        self.forget(room, gone.into_iter().map(|(n, u)| (n, u.user)).collect());
        let now = Instant::now();
        let mut liveness = self.liveness();
        for (node, _) in live.iter().filter(|(n, _)| *n != self.inner.node) {
            liveness.mention(node, now);
        }
        Ok(live)
    }

    /// Who is in `room` on the other nodes, each user once (for a node not serving the room).
    pub async fn presence_elsewhere(&self, room: &RoomId) -> Result<Vec<PresenceUser>, BusError> {
        let mut users: Vec<PresenceUser> = self
            .presence(room)
            .await?
            .into_iter()
            .filter(|(node, _)| *node != self.inner.node)
            .map(|(_, u)| u)
            .collect();
        users.sort_by(|a, b| a.user.cmp(&b.user));
        users.dedup_by(|a, b| a.user == b.user);
        Ok(users)
    }

    /// Says goodbye (so the others drop this node's presence at once) and closes the bus.
    pub async fn shutdown(&self) {
        let bye = NodeNotice {
            v: VERSION,
            origin: self.inner.node.clone(),
            event: NodeEvent::Bye,
        };
        let _ = self
            .inner
            .bus
            .publish_now(self.inner.names.nodes_channel(), bye.encode())
            .await;
        self.inner.bus.close().await;
    }
}

async fn apply_presence_ops(cluster: Cluster, mut rx: mpsc::Receiver<PresenceOp>) {
    let (bus, names, node) = (
        cluster.inner.bus.clone(),
        cluster.inner.names.clone(),
        cluster.inner.node.clone(),
    );
    while let Some(op) = rx.recv().await {
        // Failures are only logged: the resync after the bus returns rewrites every entry.
        let result = match op {
            PresenceOp::Here { room, users } => {
                let key = names.presence_key(&room);
                let mut result = Ok(());
                for u in &users {
                    let value = serde_json::to_string(u).unwrap_or_default();
                    result = result.and(
                        bus.hset(&key, envelope::presence_field(&node, &u.user), value)
                            .await,
                    );
                }
                cluster.publish(
                    &room,
                    None,
                    RoomEvent::Presence {
                        joins: users,
                        leaves: vec![],
                    },
                );
                result
            }
            PresenceOp::Gone { room, users } => {
                let fields = users
                    .iter()
                    .map(|u| envelope::presence_field(&node, &u.user))
                    .collect();
                let result = bus.hdel(&names.presence_key(&room), fields).await;
                cluster.publish(
                    &room,
                    None,
                    RoomEvent::Presence {
                        joins: vec![],
                        leaves: users,
                    },
                );
                result
            }
            PresenceOp::Forget { room, entries } => {
                let fields = entries
                    .iter()
                    .map(|(n, u)| envelope::presence_field(n, u))
                    .collect();
                bus.hdel(&names.presence_key(&room), fields).await
            }
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "presence update not stored");
        }
    }
}

/// The per-node actor that consumes the bus's events, beats, and declares nodes dead.
///
/// Lifecycle: started by the node on one of its room threads; runs until the node stops. It owns no
/// connections (the [`Bus`] does) and closes nothing (the node calls [`Cluster::shutdown`]).
pub struct Bridge {
    cluster: Cluster,
    registry: Registry,
    heartbeat: Duration,
    events: Option<mpsc::Receiver<BusEvent>>,
    nodes_channel: String,
    /// A renewal is under way.
    renewing: bool,
    /// How long this node's alive key lives after each heartbeat.
    dead_after: Duration,
    /// When this node last heard its own heartbeat come back. A client library may believe a
    /// connection is up while the server is frozen (SIGSTOP, a stalled host): hearing ourselves is
    /// the end-to-end proof that publishing and receiving both work.
    last_echo: Instant,
}

impl Bridge {
    pub fn new(
        cluster: Cluster,
        registry: Registry,
        heartbeat: Duration,
        dead_after: Duration,
    ) -> Bridge {
        let events = cluster.inner.bus.take_events();
        let nodes_channel = cluster.inner.names.nodes_channel();
        Bridge {
            cluster,
            registry,
            heartbeat,
            events,
            nodes_channel,
            renewing: false,
            dead_after,
            last_echo: Instant::now(),
        }
    }

    fn tell_rooms(&self, msg: impl Fn() -> FromCluster) {
        for room in self.registry.rooms() {
            room.do_send(msg());
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        let inner = &self.cluster.inner;
        if inner.bus.connected() && !inner.subscribed.load(Ordering::SeqCst) && !self.renewing {
            // Connected but not (re)subscribed: a renewal failed or an error was reported without
            // a reconnect. Heal here rather than wait for the next connection event.
            self.resync(ctx);
        }
        // Not hearing ourselves for dead_after: the bus is stalled even if the client thinks it is
        // connected. Treat it as down (503, catch up from the store) until the echo returns, then
        // resync as after any outage.
        let echoing = self.last_echo.elapsed() < self.dead_after;
        let was_echoing = self.cluster.inner.echoing.swap(echoing, Ordering::SeqCst);
        if was_echoing && !echoing {
            tracing::warn!(
                "bridge stalled: own heartbeats are not coming back; rooms catch up from the store"
            );
        } else if echoing && !was_echoing && !self.renewing {
            tracing::info!("bridge heard itself again");
            self.resync(ctx);
        }
        let inner = &self.cluster.inner;
        inner
            .metrics
            .bridge_connected
            .set(self.cluster.ready() as i64);
        if inner.bus.connected() {
            let notice = NodeNotice {
                v: VERSION,
                origin: inner.node.clone(),
                event: NodeEvent::Heartbeat,
            };
            let (bus, channel) = (inner.bus.clone(), self.nodes_channel.clone());
            let alive = inner.names.alive_key(&inner.node);
            let ttl = self.dead_after;
            ctx.spawn(
                async move {
                    let _ = bus.set_expiring(&alive, ttl).await;
                    let _ = bus.publish_now(channel, notice.encode()).await;
                }
                .into_actor(self),
            );
            // While this node is cut off it hears nobody: only judge others while it hears itself.
            if echoing {
                let dead = self.cluster.liveness().expire(Instant::now());
                for node in dead {
                    tracing::warn!(dead = %node, "node missed its heartbeats: removing its presence");
                    self.tell_rooms(|| FromCluster::NodeDown(node.clone()));
                }
            } else {
                self.tell_rooms(|| FromCluster::CatchUp);
            }
        } else {
            // Redis is only the fast path: while it is away, every room re-reads its head from the
            // store once a heartbeat and repairs, so members on different nodes still see each
            // other's messages (a heartbeat late) instead of waiting for Redis to come back.
            self.tell_rooms(|| FromCluster::CatchUp);
        }
        let beating = self.cluster.liveness().beating();
        inner.metrics.cluster_nodes.set(beating as i64 + 1);
    }

    fn on_node_notice(&mut self, payload: &[u8]) {
        let notice = match envelope::decode_node(payload) {
            Ok(n) => n,
            Err(e) => return tracing::warn!(error = %e, "ignoring node notice"),
        };
        if notice.origin == self.cluster.inner.node {
            self.last_echo = Instant::now();
            return;
        }
        match notice.event {
            NodeEvent::Heartbeat => {
                if self
                    .cluster
                    .liveness()
                    .heartbeat(&notice.origin, Instant::now())
                {
                    tracing::info!(peer = %notice.origin, "node joined the cluster");
                }
            }
            NodeEvent::Bye => {
                self.cluster.liveness().forget(&notice.origin);
                tracing::info!(peer = %notice.origin, "node left the cluster");
                self.tell_rooms(|| FromCluster::NodeDown(notice.origin.clone()));
            }
        }
        let beating = self.cluster.liveness().beating();
        self.cluster
            .inner
            .metrics
            .cluster_nodes
            .set(beating as i64 + 1);
    }

    fn on_room_envelope(&mut self, channel: &str, payload: &[u8]) {
        let Some(room) = self.cluster.inner.names.room_of(channel) else {
            return;
        };
        let envelope = match envelope::decode_room(payload) {
            Ok(e) if e.room == room => e,
            Ok(_) => return tracing::warn!(%channel, "envelope names another room; ignored"),
            Err(e) => return tracing::warn!(%channel, error = %e, "ignoring envelope"),
        };
        if envelope.origin == self.cluster.inner.node {
            return; // this node delivered it locally at commit time
        }
        self.cluster.inner.metrics.bridge_received.inc();
        self.cluster
            .liveness()
            .mention(&envelope.origin, Instant::now());
        if let Some(addr) = self.registry.get(&room) {
            // One message per envelope per room (not per member), bounded by the cluster's commit
            // rate; refusing it would only turn into a gap to repair.
            addr.do_send(FromCluster::Event(envelope));
        }
    }

    /// After a reconnect or a loss: subscribe again, then have every room repair and re-announce.
    fn resync(&mut self, ctx: &mut Context<Self>) {
        let (cluster, dead_after) = (self.cluster.clone(), self.dead_after);
        self.renewing = true;
        ctx.spawn(
            async move { cluster.renew(dead_after).await }
                .into_actor(self)
                .map(|renewed, act, _| {
                    act.renewing = false;
                    act.cluster
                        .inner
                        .metrics
                        .bridge_connected
                        .set(act.cluster.ready() as i64);
                    if renewed {
                        act.tell_rooms(|| FromCluster::Resync);
                    }
                }),
        );
    }
}

impl Actor for Bridge {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(mut rx) = self.events.take() {
            ctx.add_stream(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
        }
        ctx.run_interval(self.heartbeat, |act, ctx| act.tick(ctx));
        self.resync(ctx);
    }
}

impl StreamHandler<BusEvent> for Bridge {
    fn handle(&mut self, event: BusEvent, ctx: &mut Context<Self>) {
        match event {
            BusEvent::Message { channel, payload } => {
                if channel == self.nodes_channel {
                    self.on_node_notice(&payload);
                } else {
                    self.on_room_envelope(&channel, &payload);
                }
            }
            BusEvent::Connected => {
                tracing::info!(bus = self.cluster.inner.bus.backend(), "bridge connected");
                self.cluster.liveness().grace(Instant::now());
                // A fresh connection gets a full dead_after to prove itself (this resync covers
                // the stall, if there was one).
                self.last_echo = Instant::now();
                self.cluster.inner.echoing.store(true, Ordering::SeqCst);
                self.resync(ctx);
            }
            BusEvent::Disconnected => {
                tracing::warn!(
                    "bridge disconnected: local delivery continues, rooms repair on reconnect"
                );
                self.cluster.inner.subscribed.store(false, Ordering::SeqCst);
                self.cluster.inner.metrics.bridge_connected.set(0);
            }
            BusEvent::Lagged => {
                tracing::warn!("bridge lost envelopes: every room repairs from the store");
                self.resync(ctx);
            }
        }
    }

    fn finished(&mut self, _: &mut Context<Self>) {
        // The bus closed (node stopping); nothing more will arrive.
    }
}
