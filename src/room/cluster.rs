//! The room's side of the cluster: subscribing before reading the head, applying other nodes'
//! messages (through the same ordering and gap repair as local commits), presence across nodes
//! (a user counts once, however many sockets on however many nodes), typing relay, and the resync
//! after the bus comes back.
//!
//! Presence model: `members` holds this node's sessions; `remote` holds, per other node, the users
//! that node announced. A user is present while any of the two has them. This node announces a user
//! to the others when their first socket here joins and when their last one leaves.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use chrono::{DateTime, Utc};

use super::{FromCluster, Head, Room};
use crate::bridge::Cluster;
use crate::bridge::envelope::{RoomEnvelope, RoomEvent};
use crate::protocol::{PresenceUser, ServerFrame};
use crate::store::{Message, RoomHead, StoreError};

/// When a message from another node was committed, as an `Instant` on this node's clock (for
/// `chorus_message_delivery_seconds`, which measures commit → socket across nodes too).
fn committed_at(ts: &DateTime<Utc>) -> Instant {
    let age = (Utc::now() - *ts).to_std().unwrap_or_default();
    Instant::now().checked_sub(age).unwrap_or_else(Instant::now)
}

impl Room {
    pub(super) fn cluster(&self) -> Option<&Cluster> {
        self.registry.deps.cluster.as_ref()
    }

    /// Start-up, mailbox blocked until done: subscribe to the room's channel *before* reading the
    /// head (so every message committed after the read arrives or shows as a gap), then read who is
    /// present on other nodes.
    pub(super) fn attach(&mut self, ctx: &mut Context<Self>) {
        let Some(cluster) = self.cluster().cloned() else {
            return self.load_head(ctx);
        };
        let (store, room) = (self.registry.deps.store.clone(), self.id.clone());
        ctx.wait(
            async move {
                cluster.subscribe(&room).await;
                let head = store.head(&room).await;
                let presence = cluster.presence(&room).await;
                (head, presence)
            }
            .into_actor(self)
            .map(|(head, presence), act, _| {
                act.set_head(head);
                if let Ok(entries) = presence {
                    act.apply_snapshot(entries);
                }
            }),
        );
    }

    pub(super) fn set_head(&mut self, res: Result<RoomHead, StoreError>) {
        match res {
            Ok(h) if self.head.is_none() => {
                self.head = Some(Head {
                    epoch: h.epoch,
                    delivered: h.last_seq,
                })
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(room = %self.id, error = %e, "room head unavailable"),
        }
    }

    /// Users with a visible session on this node.
    pub(super) fn local_users(&self) -> Vec<PresenceUser> {
        let mut seen = HashSet::new();
        self.members
            .values()
            .filter(|m| !m.hidden && seen.insert(m.user.user.as_str()))
            .map(|m| m.user.clone())
            .collect()
    }

    /// Replaces what is known of other nodes with the shared hash's entries; members see the
    /// difference. This node's own entries for users no longer here are stale and removed.
    fn apply_snapshot(&mut self, entries: Vec<(String, PresenceUser)>) {
        let Some(cluster) = self.cluster().cloned() else {
            return;
        };
        let before: Vec<PresenceUser> = self.presence();
        let local: HashSet<String> = self.local_users().into_iter().map(|u| u.user).collect();
        let mut remote: HashMap<String, HashMap<String, PresenceUser>> = HashMap::new();
        let mut stale = Vec::new();
        for (node, user) in entries {
            if node == cluster.node() {
                if !local.contains(&user.user) {
                    stale.push((node, user.user));
                }
            } else {
                remote
                    .entry(node)
                    .or_default()
                    .insert(user.user.clone(), user);
            }
        }
        self.remote = remote;
        cluster.forget(&self.id, stale);
        let after: Vec<PresenceUser> = self.presence();
        let (was, is) = (
            before.iter().map(|u| &u.user).collect::<HashSet<_>>(),
            after.iter().map(|u| &u.user).collect::<HashSet<_>>(),
        );
        let joins: Vec<PresenceUser> = after
            .iter()
            .filter(|u| !was.contains(&u.user))
            .cloned()
            .collect();
        let leaves: Vec<PresenceUser> = before
            .iter()
            .filter(|u| !is.contains(&u.user))
            .cloned()
            .collect();
        self.presence_diff(&joins, &leaves);
    }

    pub(super) fn presence_diff(&mut self, joins: &[PresenceUser], leaves: &[PresenceUser]) {
        if joins.is_empty() && leaves.is_empty() {
            return;
        }
        let frame = ServerFrame::PresenceDiff {
            room: &self.id,
            joins,
            leaves,
        }
        .encode();
        self.broadcast_frame(frame, None, None);
    }

    fn on_remote_presence(
        &mut self,
        origin: String,
        joins: Vec<PresenceUser>,
        leaves: Vec<PresenceUser>,
    ) {
        let mut joined = Vec::new();
        for u in joins {
            let was = self.has_user(&u.user);
            self.remote
                .entry(origin.clone())
                .or_default()
                .insert(u.user.clone(), u.clone());
            if !was {
                joined.push(u);
            }
        }
        let mut left = Vec::new();
        for u in leaves {
            let removed = self
                .remote
                .get_mut(&origin)
                .and_then(|users| users.remove(&u.user))
                .is_some();
            if removed && !self.has_user(&u.user) {
                left.push(u);
            }
        }
        if self.remote.get(&origin).is_some_and(|u| u.is_empty()) {
            self.remote.remove(&origin);
        }
        self.presence_diff(&joined, &left);
    }

    fn on_node_down(&mut self, node: &str) {
        let Some(users) = self.remote.remove(node) else {
            return;
        };
        let entries = users.keys().map(|u| (node.to_owned(), u.clone())).collect();
        if let Some(cluster) = self.cluster() {
            cluster.forget(&self.id, entries);
        }
        let left: Vec<PresenceUser> = users
            .into_values()
            .filter(|u| !self.has_user(&u.user))
            .collect();
        self.presence_diff(&[], &left);
    }

    fn on_remote_messages(&mut self, messages: Vec<Arc<Message>>, ctx: &mut Context<Self>) {
        let Some(head) = &self.head else {
            return; // no member can have joined yet; the head read will include these
        };
        let delivered = head.delivered;
        for m in messages {
            if m.seq > delivered {
                let at = committed_at(&m.ts);
                self.reorder.insert(m.seq, (m, at));
            }
        }
        self.flush(ctx);
    }

    /// Learns that the room's head is at least `seq`; a repair follows if that is ahead of what
    /// was delivered and nothing fills it first.
    pub(super) fn learn_head(&mut self, seq: i64, ctx: &mut Context<Self>) {
        self.known_head = self.known_head.max(seq);
        self.flush(ctx);
    }

    /// Reads the room's head from the store and repairs up to it (while the bus is down).
    fn catch_up(&mut self, ctx: &mut Context<Self>) {
        if self.head.is_none() || self.members.is_empty() {
            return;
        }
        let (store, room) = (self.registry.deps.store.clone(), self.id.clone());
        let floor = self.known_committed();
        ctx.spawn(async move { store.head(&room).await }.into_actor(self).map(
            move |head, act, ctx| match head {
                Ok(h) => act.observe_head(h, floor, ctx),
                Err(e) => {
                    tracing::debug!(room = %act.id, error = %e, "catch-up head read failed")
                }
            },
        ));
    }

    /// After the bus came back (or lost envelopes): read the head and presence again, re-announce
    /// this node's users (the hash may have been lost with a Redis restart), tell the others this
    /// room's head so they repair what this node could not publish, and repair from the store.
    fn resync(&mut self, ctx: &mut Context<Self>) {
        let Some(cluster) = self.cluster().cloned() else {
            return;
        };
        let (store, room) = (self.registry.deps.store.clone(), self.id.clone());
        let floor = self.known_committed();
        ctx.spawn(
            async move {
                let head = store.head(&room).await;
                let presence = cluster.presence(&room).await;
                (head, presence)
            }
            .into_actor(self)
            .map(move |(head, presence), act, ctx| {
                if let Ok(entries) = presence {
                    act.apply_snapshot(entries);
                }
                if let Some(cluster) = act.cluster().cloned() {
                    cluster.here(&act.id, act.local_users());
                    if let Some(h) = &act.head {
                        cluster.publish(&act.id, Some(h.delivered), RoomEvent::Head);
                    }
                }
                match head {
                    Ok(h) => act.observe_head(h, floor, ctx),
                    other => act.set_head(other),
                }
            }),
        );
    }

    /// Local commit done: the other nodes get the new messages in one envelope.
    pub(super) fn publish_committed(&self, messages: Vec<Arc<Message>>) {
        if let (Some(cluster), Some(last)) = (self.cluster(), messages.last()) {
            let seq = last.seq;
            cluster.publish(&self.id, Some(seq), RoomEvent::Messages { messages });
        }
    }

    /// Whether any node (this one included) has a visible session of `user`.
    pub(super) fn has_remote_user(&self, user: &str) -> bool {
        self.remote.values().any(|users| users.contains_key(user))
    }

    pub(super) fn remote_users(&self) -> impl Iterator<Item = &PresenceUser> {
        self.remote.values().flat_map(|users| users.values())
    }

    fn on_envelope(&mut self, env: RoomEnvelope, ctx: &mut Context<Self>) {
        match env.event {
            RoomEvent::Messages { messages } => self.on_remote_messages(messages, ctx),
            RoomEvent::Head => {
                if let Some(seq) = env.seq {
                    self.learn_head(seq, ctx);
                }
            }
            RoomEvent::Presence { joins, leaves } => {
                self.on_remote_presence(env.origin, joins, leaves)
            }
            RoomEvent::Reset { epoch } => {
                let base = env.seq.unwrap_or(0);
                if self.head.as_ref().is_some_and(|h| h.epoch != epoch) {
                    self.apply_reset(epoch, base, base);
                    self.flush(ctx);
                }
            }
            RoomEvent::Typing { user } => {
                let frame = ServerFrame::Typing {
                    room: &self.id,
                    user: &user,
                }
                .encode();
                self.broadcast_frame(frame, None, Some(&user));
            }
        }
    }
}

impl Handler<FromCluster> for Room {
    type Result = ();

    fn handle(&mut self, msg: FromCluster, ctx: &mut Context<Self>) {
        match msg {
            FromCluster::Event(env) => self.on_envelope(env, ctx),
            FromCluster::NodeDown(node) => self.on_node_down(&node),
            FromCluster::Resync => self.resync(ctx),
            FromCluster::CatchUp => self.catch_up(ctx),
        }
    }
}
