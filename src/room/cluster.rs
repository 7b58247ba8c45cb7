//! The room's side of the cluster: subscribing before reading the head, applying other nodes'
//! messages (through the same ordering and gap repair as local commits), presence across nodes
//! (a user counts once, however many sockets on however many nodes), typing relay, and the resync
//! after the bus comes back.
//!
//! Presence decisions are the [`Presence`](super::presence::Presence) state machine's; this file
//! carries its inputs from the bus and its outputs to the bus ([`Room::apply_presence`]).

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use chrono::{DateTime, Utc};

use super::presence::Change;
use super::{Room, ToSession};
use crate::bridge::envelope::{RoomEnvelope, RoomEvent};
use crate::bridge::{Cluster, Directory, FromCluster};
use crate::domain::{Message, PresenceUser};
use crate::ids::{NodeId, Seq, UserId};
use crate::protocol::ServerFrame;
use crate::store::{RoomHead, StoreError};

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
            Ok(h) => {
                self.seq.start(&h.epoch, h.last_seq);
            }
            Err(e) => tracing::warn!(room = %self.id, error = %e, "room head unavailable"),
        }
    }

    /// Carries out a presence change: the other nodes hear of this node's users (and the shared
    /// hash drops what is stale), then the members get one `presence_diff`.
    pub(super) fn apply_presence(&mut self, change: Change) {
        if let Some(cluster) = self.cluster() {
            cluster.here(&self.id, change.here);
            cluster.gone(&self.id, change.gone);
            cluster.forget(&self.id, change.forget);
        }
        self.presence_diff(&change.joins, &change.leaves);
    }

    /// Replaces what is known of other nodes with the shared hash's entries.
    fn apply_snapshot(&mut self, entries: Vec<(NodeId, PresenceUser)>) {
        let Some(me) = self.cluster().map(|c| c.node().clone()) else {
            return;
        };
        let change = self.presence.snapshot(&me, entries);
        self.apply_presence(change);
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

    fn on_remote_messages(&mut self, messages: Vec<Arc<Message>>, ctx: &mut Context<Self>) {
        for m in messages {
            let at = committed_at(&m.ts);
            self.seq.offer(m, at);
        }
        self.flush(ctx);
    }

    /// Learns that the room's head is at least `seq`; a repair follows if that is ahead of what
    /// was delivered and nothing fills it first.
    pub(super) fn learn_head(&mut self, seq: Seq, ctx: &mut Context<Self>) {
        self.seq.learn_head(seq);
        self.flush(ctx);
    }

    /// Reads the room's head from the store and repairs up to it (while the bus is down).
    fn catch_up(&mut self, ctx: &mut Context<Self>) {
        if self.seq.delivered().is_none() || self.members.is_empty() {
            return;
        }
        let (store, room) = (self.registry.deps.store.clone(), self.id.clone());
        let floor = self.seq.known_committed();
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
        let floor = self.seq.known_committed();
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
                if let (Some(cluster), Some(delivered)) = (act.cluster(), act.seq.delivered()) {
                    cluster.publish(&act.id, Some(delivered), RoomEvent::Head);
                }
                match head {
                    Ok(h) => act.observe_head(h, floor, ctx),
                    other => act.set_head(other),
                }
                act.refresh_reads(ctx);
            }),
        );
    }

    /// After a bus outage, `read` notices from other nodes may have been lost: re-read the cursor
    /// of every member's user (as of what this room delivered) and send each its `read` frame.
    fn refresh_reads(&mut self, ctx: &mut Context<Self>) {
        let Some(upto) = self.seq.delivered() else {
            return;
        };
        let mut users: Vec<UserId> = self.members.values().map(|m| m.user.clone()).collect();
        users.sort();
        users.dedup();
        let (store, room) = (self.registry.deps.store.clone(), self.id.clone());
        ctx.spawn(
            async move {
                let mut states = Vec::with_capacity(users.len());
                for user in users {
                    // A cursor still at 0 never moved, so no notice about it was lost.
                    match store.read_state(&room, &user, upto).await {
                        Ok(state) if state.read_seq > Seq::ZERO => states.push((user, state)),
                        _ => {}
                    }
                }
                states
            }
            .into_actor(self)
            .map(|states, act, _| {
                for (user, state) in states {
                    let frame = ServerFrame::Read {
                        r#ref: None,
                        room: &act.id,
                        user: &user,
                        seq: state.read_seq,
                        unread: state.unread,
                        last_seq: state.last_seq,
                    }
                    .encode();
                    for m in act.members.values().filter(|m| m.user == user) {
                        m.outbox.reply(ToSession::Reply(frame.clone()));
                    }
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

    fn on_envelope(&mut self, env: RoomEnvelope, ctx: &mut Context<Self>) {
        match env.event {
            RoomEvent::Messages { messages } => self.on_remote_messages(messages, ctx),
            RoomEvent::Head => {
                if let Some(seq) = env.seq {
                    self.learn_head(seq, ctx);
                }
            }
            RoomEvent::Presence { joins, leaves } => {
                let change = self.presence.remote(&env.origin, joins, leaves);
                self.apply_presence(change);
            }
            RoomEvent::Reset { epoch } => {
                let base = env.seq.unwrap_or_default();
                if self.seq.epoch().is_some_and(|e| e != epoch) {
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

/// The bridge reaches this node's rooms through the registry.
impl Directory for super::Registry {
    fn tell(&self, room: &crate::ids::RoomId, msg: FromCluster) {
        if let Some(addr) = self.get(room) {
            addr.do_send(msg);
        }
    }

    fn tell_all(&self, msg: &dyn Fn() -> FromCluster) {
        for room in self.rooms() {
            room.do_send(msg());
        }
    }
}

impl Handler<FromCluster> for Room {
    type Result = ();

    fn handle(&mut self, msg: FromCluster, ctx: &mut Context<Self>) {
        match msg {
            FromCluster::Event(env) => self.on_envelope(env, ctx),
            FromCluster::NodeDown(node) => {
                let change = self.presence.node_down(&node);
                self.apply_presence(change);
            }
            FromCluster::Resync => self.resync(ctx),
            FromCluster::CatchUp => self.catch_up(ctx),
        }
    }
}
