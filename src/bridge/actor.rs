//! The [`Bridge`] actor: consumes the bus's events, routes other nodes' envelopes to rooms,
//! sends heartbeats (and listens for its own echo), declares nodes dead, and makes every room
//! resync after a reconnect, a loss or a stall. Outgoing traffic does not pass through it (rooms
//! publish through the [`Cluster`] handle); incoming traffic does: each envelope is decoded here
//! once, then handed to its room through the node's [`Directory`] (one mailbox hop per envelope
//! per room, not per member).

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::mpsc;

use super::envelope::{self, NodeEvent};
use super::{BusEvent, Cluster, Directory, FromCluster, Users};

/// The per-node actor that consumes the bus's events, beats, and declares nodes dead.
///
/// Lifecycle: started by the node on one of its room threads; runs until the node stops. It owns no
/// connections (the [`Bus`] does) and closes nothing (the node calls [`Cluster::shutdown`]).
pub struct Bridge {
    cluster: Cluster,
    rooms: Arc<dyn Directory>,
    users: Arc<dyn Users>,
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
        rooms: Arc<dyn Directory>,
        users: Arc<dyn Users>,
        heartbeat: Duration,
        dead_after: Duration,
    ) -> Bridge {
        let events = cluster.take_events();
        let nodes_channel = cluster.nodes_channel();
        Bridge {
            cluster,
            rooms,
            users,
            heartbeat,
            events,
            nodes_channel,
            renewing: false,
            dead_after,
            last_echo: Instant::now(),
        }
    }

    fn tell_rooms(&self, msg: impl Fn() -> FromCluster) {
        self.rooms.tell_all(&msg);
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        let cluster = &self.cluster;
        if cluster.bus_connected() && !cluster.subscribed() && !self.renewing {
            // Connected but not (re)subscribed: a renewal failed or an error was reported without
            // a reconnect. Heal here rather than wait for the next connection event.
            self.resync(ctx);
        }
        // Not hearing ourselves for dead_after: the bus is stalled even if the client thinks it is
        // connected. Treat it as down (503, catch up from the store) until the echo returns, then
        // resync as after any outage.
        let echoing = self.last_echo.elapsed() < self.dead_after;
        let was_echoing = self.cluster.set_echoing(echoing);
        if was_echoing && !echoing {
            tracing::warn!(
                "bridge stalled: own heartbeats are not coming back; rooms catch up from the store"
            );
        } else if echoing && !was_echoing && !self.renewing {
            tracing::info!("bridge heard itself again");
            self.resync(ctx);
        }
        self.cluster.report_connected();
        if self.cluster.bus_connected() {
            let (cluster, ttl) = (self.cluster.clone(), self.dead_after);
            ctx.spawn(async move { cluster.beat(ttl).await }.into_actor(self));
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
        self.cluster.report_nodes();
    }

    fn on_node_notice(&mut self, payload: &[u8]) {
        let notice = match envelope::decode_node(payload) {
            Ok(n) => n,
            Err(e) => return tracing::warn!(error = %e, "ignoring node notice"),
        };
        if notice.origin == *self.cluster.node() {
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
        self.cluster.report_nodes();
    }

    fn on_room_envelope(&mut self, channel: &str, payload: &[u8]) {
        let Some(room) = self.cluster.room_of(channel) else {
            return;
        };
        let envelope = match envelope::decode_room(payload) {
            Ok(e) if e.room == room => e,
            Ok(_) => return tracing::warn!(%channel, "envelope names another room; ignored"),
            Err(e) => return tracing::warn!(%channel, error = %e, "ignoring envelope"),
        };
        if envelope.origin == *self.cluster.node() {
            return; // this node delivered it locally at commit time
        }
        self.cluster.count_received();
        self.cluster
            .liveness()
            .mention(&envelope.origin, Instant::now());
        // One message per envelope per room (not per member), bounded by the cluster's commit
        // rate; refusing it would only turn into a gap to repair. A room not served here drops it.
        self.rooms.tell(&room, FromCluster::Event(envelope));
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
                    act.cluster.report_connected();
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
                } else if self.cluster.is_users_channel(&channel) {
                    match envelope::decode_user_notice(&payload) {
                        Ok(n) if n.origin() == self.cluster.node() => {}
                        Ok(envelope::UserNotice::Read(n)) => {
                            self.cluster.count_received();
                            self.users.read_moved(n);
                        }
                        Ok(envelope::UserNotice::Kick(k)) => {
                            self.cluster.count_received();
                            self.users.kick(&k.room, &k.user);
                        }
                        Err(e) => tracing::warn!(error = %e, "ignoring user notice"),
                    }
                } else {
                    self.on_room_envelope(&channel, &payload);
                }
            }
            BusEvent::Connected => {
                tracing::info!(bus = self.cluster.backend(), "bridge connected");
                self.cluster.liveness().grace(Instant::now());
                // A fresh connection gets a full dead_after to prove itself (this resync covers
                // the stall, if there was one).
                self.last_echo = Instant::now();
                self.cluster.set_echoing(true);
                self.resync(ctx);
            }
            BusEvent::Disconnected => {
                tracing::warn!(
                    "bridge disconnected: local delivery continues, rooms repair on reconnect"
                );
                self.cluster.lost_subscriptions();
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
