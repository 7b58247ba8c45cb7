//! The room's side of the cluster: other nodes' entries (through the same ordering and gap repair
//! as local commits), their presence announcements, a dead node, typing, a reset made elsewhere,
//! and the resync after the bus comes back (head, presence and read cursors read again).

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{Effect, Handles, Now, RoomCore};
use crate::bridge::FromCluster;
use crate::bridge::envelope::{RoomEnvelope, RoomEvent};
use crate::domain::{Message, PresenceUser};
use crate::ids::{NodeId, Seq, UserId};
use crate::protocol::ServerFrame;
use crate::room::delivery::ToSession;
use crate::store::{ReadState, RoomHead, StoreError};

/// When an entry from another node was committed, as an instant of this node's clock (for
/// `chorus_message_delivery_seconds`, which measures commit → socket across nodes too).
pub(super) fn committed_at(now: Now, ts: &DateTime<Utc>) -> std::time::Instant {
    let age = (now.wall - *ts).to_std().unwrap_or_default();
    now.at.checked_sub(age).unwrap_or(now.at)
}

impl<H: Handles> RoomCore<H> {
    pub(super) fn on_cluster(&mut self, event: FromCluster) {
        match event {
            FromCluster::Event(env) => self.on_envelope(env),
            FromCluster::NodeDown(node) => {
                let change = self.presence.node_down(&node);
                self.apply_presence(change);
                // It may have died between a commit and its publish: what it committed unseen
                // is in the store's head, and nobody else would read it before the room's next
                // message.
                self.catch_up();
            }
            FromCluster::Resync => {
                if self.clustered() {
                    let floor = self.seq.known_committed();
                    self.emit(Effect::Resync { floor });
                }
            }
            // The bus may be losing envelopes.
            FromCluster::CatchUp => self.catch_up(),
        }
    }

    /// Reads the head and repairs up to it, if anyone here is listening.
    fn catch_up(&mut self) {
        if self.seq.delivered().is_some() && !self.members.is_empty() {
            self.catch_up_from(self.seq.known_committed());
        }
    }

    fn on_envelope(&mut self, env: RoomEnvelope) {
        match env.event {
            RoomEvent::Messages { messages } => self.on_remote_entries(messages),
            RoomEvent::Head => {
                if let Some(seq) = env.seq {
                    self.seq.learn_head(seq);
                    self.flush();
                }
            }
            RoomEvent::Presence { joins, leaves } => {
                let change = self.presence.remote(&env.origin, joins, leaves);
                self.apply_presence(change);
            }
            RoomEvent::Reset { epoch } => {
                let base = env.seq.unwrap_or_default();
                if self.seq.epoch().is_some_and(|e| *e != epoch) {
                    self.apply_reset(epoch, base, base);
                    self.flush();
                }
            }
            RoomEvent::Typing { user } => {
                let frame = ServerFrame::Typing {
                    room: &self.id,
                    user: &user,
                }
                .encode();
                self.broadcast_frame(frame, Some(&user));
            }
        }
    }

    fn on_remote_entries(&mut self, entries: Vec<Arc<Message>>) {
        for m in entries {
            let at = committed_at(self.now, &m.ts);
            self.seq.offer(m, at);
        }
        self.flush();
    }

    /// Replaces what is known of other nodes with the shared hash's entries.
    pub(super) fn apply_snapshot(&mut self, entries: Vec<(NodeId, PresenceUser)>) {
        let Some(me) = self.settings.node.clone() else {
            return;
        };
        let change = self.presence.snapshot(&me, entries);
        self.apply_presence(change);
    }

    /// After the bus came back (or lost envelopes): presence from the hash again (this node's
    /// users re-announced: the hash may have gone with a Redis restart), this room's head told to
    /// the others so they repair what this node could not publish, a repair from the store, and
    /// every member's read cursor read again (notices the bus lost).
    pub(super) fn resynced(
        &mut self,
        floor: Seq,
        head: Result<RoomHead, StoreError>,
        presence: Option<Vec<(NodeId, PresenceUser)>>,
    ) {
        if let Some(entries) = presence {
            self.apply_snapshot(entries);
        }
        if let (true, Some(delivered)) = (self.clustered(), self.seq.delivered()) {
            let event = RoomEvent::Head;
            self.emit(Effect::Publish {
                seq: Some(delivered),
                event,
            });
        }
        match head {
            Ok(h) => self.observe_head(h, floor),
            Err(e) if self.seq.delivered().is_some() => {
                tracing::debug!(room = %self.id, error = %e, "resync head read failed");
                self.owe_catch_up(floor);
            }
            other => self.set_head(other),
        }
        let Some(upto) = self.seq.delivered() else {
            return;
        };
        let mut users: Vec<UserId> = self.members.values().map(|m| m.user.clone()).collect();
        users.sort();
        users.dedup();
        if !users.is_empty() {
            self.emit(Effect::RefreshReads { users, upto });
        }
    }

    /// Fresh `read` frames for each member of these users.
    pub(super) fn reads_refreshed(&mut self, states: Vec<(UserId, ReadState)>) {
        for (user, state) in states {
            let frame = ServerFrame::Read {
                r#ref: None,
                room: &self.id,
                user: &user,
                seq: state.read_seq,
                unread: state.unread,
                last_seq: state.last_seq,
            }
            .encode();
            let to: Vec<H::Member> = self
                .members
                .values()
                .filter(|m| m.user == user)
                .map(|m| m.handle.clone())
                .collect();
            for member in to {
                self.send(member, ToSession::Reply(frame.clone()));
            }
        }
    }
}
