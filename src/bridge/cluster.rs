//! The [`Cluster`] handle: what rooms and handlers call to reach the other nodes (publish,
//! subscribe, presence, read notices, kicks). Cheap to clone; no actor hop on the hot path. The
//! bus's own events go to the [`Bridge`](super::Bridge) actor instead.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::bus::{Bus, BusError, BusEvent};
use super::envelope::{
    self, Names, NodeEvent, NodeNotice, ReadNotice, RoomEnvelope, RoomEvent, VERSION,
};
use super::liveness::Liveness;
use crate::domain::PresenceUser;
use crate::ids::{NodeId, RoomId, Seq, UserId};
use crate::metrics::Metrics;

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
        entries: Vec<(NodeId, UserId)>,
    },
}

/// A room someone is present in, somewhere in the cluster (`GET /api/admin/rooms`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct ActiveRoom {
    pub room: RoomId,
    /// Distinct users present.
    pub members: usize,
    /// Nodes serving them.
    pub nodes: usize,
}

/// The bridge as rooms see it. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    node: NodeId,
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
    /// Set by `shutdown`: no more heartbeats. The lock orders the goodbye after the last one.
    leaving: tokio::sync::Mutex<bool>,
}

const OPS_CAPACITY: usize = 65_536;

impl Cluster {
    /// `names`: [`Names::new`] on one Redis, [`Names::sharded`] on a Redis Cluster.
    pub fn new(
        node: &str,
        names: Names,
        bus: Arc<dyn Bus>,
        metrics: Metrics,
        dead_after: Duration,
    ) -> Cluster {
        let (ops, rx) = mpsc::channel(OPS_CAPACITY);
        let cluster = Cluster {
            inner: Arc::new(Inner {
                node: NodeId::from(node),
                names,
                bus,
                metrics,
                wanted: tokio::sync::Mutex::new(HashMap::new()),
                subscribed: AtomicBool::new(false),
                echoing: AtomicBool::new(true),
                liveness: Mutex::new(Liveness::new(dead_after)),
                ops,
                leaving: tokio::sync::Mutex::new(false),
            }),
        };
        tokio::spawn(apply_presence_ops(cluster.clone(), rx));
        cluster
    }

    pub fn node(&self) -> &NodeId {
        &self.inner.node
    }

    /// Connected, subscribed, and this node hears its own heartbeats: what `/readyz` and
    /// `chorus_bridge_connected` report.
    pub fn ready(&self) -> bool {
        self.inner.bus.connected()
            && self.inner.subscribed.load(Ordering::SeqCst)
            && self.inner.echoing.load(Ordering::SeqCst)
    }

    /// The bus's events, once (the bridge actor consumes them).
    pub(super) fn take_events(&self) -> Option<mpsc::Receiver<BusEvent>> {
        self.inner.bus.take_events()
    }

    pub(super) fn nodes_channel(&self) -> String {
        self.inner.names.nodes_channel()
    }

    pub(super) fn is_users_channel(&self, channel: &str) -> bool {
        self.inner.names.is_users_channel(channel)
    }

    /// Tells every other node that `user`'s read cursor in `room` moved (at most once, like every
    /// publish; a node that misses it refreshes its members' cursors on its next Resync).
    pub fn publish_read(&self, room: &RoomId, user: &UserId, seq: Seq, unread: i64, last_seq: Seq) {
        let notice = ReadNotice {
            v: VERSION,
            origin: self.inner.node.clone(),
            room: room.clone(),
            user: user.clone(),
            seq,
            unread,
            last_seq,
        };
        self.inner
            .bus
            .publish(self.inner.names.users_channel(user), notice.encode());
    }

    /// Tells every other node to close `user`'s sessions in `room` (at most once, like every
    /// publish: the admin API answers with how many sessions this node closed, and says so).
    pub fn publish_kick(&self, room: &RoomId, user: &UserId) {
        let notice = envelope::KickNotice {
            v: VERSION,
            origin: self.inner.node.clone(),
            kick: true,
            room: room.clone(),
            user: user.clone(),
        };
        self.inner
            .bus
            .publish(self.inner.names.users_channel(user), notice.encode());
    }

    /// Rooms with someone present on a live node, most members first, from the presence hashes:
    /// a key scan, so an operator's question, not a hot path. At most `limit` rooms are read.
    pub async fn active_rooms(&self, limit: usize) -> Result<Vec<ActiveRoom>, BusError> {
        use futures_util::StreamExt;
        let prefix = self.inner.names.presence_key_prefix();
        let keys = self.inner.bus.keys(&prefix, limit).await?;
        let rooms: Vec<RoomId> = keys
            .iter()
            .filter_map(|k| self.inner.names.room_of_presence_key(k))
            .collect();
        let mut found: Vec<ActiveRoom> = futures_util::stream::iter(rooms)
            .map(|room| async move {
                let entries = self.presence(&room).await?;
                let mut users: Vec<&UserId> = entries.iter().map(|(_, p)| &p.user).collect();
                let mut nodes: Vec<&NodeId> = entries.iter().map(|(n, _)| n).collect();
                users.sort();
                users.dedup();
                nodes.sort();
                nodes.dedup();
                Ok::<_, BusError>(ActiveRoom {
                    members: users.len(),
                    nodes: nodes.len(),
                    room,
                })
            })
            .buffer_unordered(16)
            .filter_map(|r| async move { r.ok().filter(|a| a.members > 0) })
            .collect()
            .await;
        found.sort_by(|a, b| b.members.cmp(&a.members).then(a.room.cmp(&b.room)));
        Ok(found)
    }

    pub(super) fn room_of(&self, channel: &str) -> Option<RoomId> {
        self.inner.names.room_of(channel)
    }

    pub(super) fn backend(&self) -> &'static str {
        self.inner.bus.backend()
    }

    pub(super) fn bus_connected(&self) -> bool {
        self.inner.bus.connected()
    }

    pub(super) fn subscribed(&self) -> bool {
        self.inner.subscribed.load(Ordering::SeqCst)
    }

    /// The connection dropped: every subscription must be renewed.
    pub(super) fn lost_subscriptions(&self) {
        self.inner.subscribed.store(false, Ordering::SeqCst);
        self.inner.metrics.bridge_connected.set(0);
    }

    /// Records whether this node hears its own heartbeats; returns what was recorded before.
    pub(super) fn set_echoing(&self, echoing: bool) -> bool {
        self.inner.echoing.swap(echoing, Ordering::SeqCst)
    }

    pub(super) fn report_connected(&self) {
        self.inner.metrics.bridge_connected.set(self.ready() as i64);
    }

    pub(super) fn report_nodes(&self) {
        let beating = self.liveness().beating();
        self.inner.metrics.cluster_nodes.set(beating as i64 + 1);
    }

    pub(super) fn count_received(&self) {
        self.inner.metrics.bridge_received.inc();
    }

    /// One heartbeat: renew this node's alive key for `ttl`, and publish on the node channel.
    pub(super) async fn beat(&self, ttl: Duration) {
        // Held until the heartbeat is out, so a goodbye never overtakes one (see `shutdown`).
        let leaving = self.inner.leaving.lock().await;
        if *leaving {
            return;
        }
        let notice = NodeNotice {
            v: VERSION,
            origin: self.inner.node.clone(),
            event: NodeEvent::Heartbeat,
        };
        let alive = self.inner.names.alive_key(&self.inner.node);
        let _ = self.inner.bus.set_expiring(&alive, ttl).await;
        let _ = self
            .inner
            .bus
            .publish_now(self.inner.names.nodes_channel(), notice.encode())
            .await;
    }

    pub(super) fn liveness(&self) -> std::sync::MutexGuard<'_, Liveness> {
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
    pub(super) async fn renew(&self, dead_after: Duration) -> bool {
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
        channels.extend(self.inner.names.users_channels());
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
    pub fn forget(&self, room: &RoomId, entries: Vec<(NodeId, UserId)>) {
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
    pub async fn presence(&self, room: &RoomId) -> Result<Vec<(NodeId, PresenceUser)>, BusError> {
        let raw = self
            .inner
            .bus
            .hgetall(&self.inner.names.presence_key(room))
            .await?;
        let entries: Vec<(NodeId, PresenceUser)> = raw
            .iter()
            .filter_map(|(f, v)| envelope::parse_presence_entry(f, v))
            .collect();
        let mut unsure: Vec<NodeId> = entries
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
        let dead: Vec<&NodeId> = unsure
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
        // After any heartbeat in flight, and no heartbeat after it: a heartbeat published after
        // the goodbye would make the others count this node alive again until `dead_after_ms`.
        let mut leaving = self.inner.leaving.lock().await;
        *leaving = true;
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
