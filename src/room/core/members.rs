//! Members: fan-out to them (the same bytes to each; a member whose backfill is still being read
//! keeps what goes live in its backlog), direct replies, leaving, eviction of the slow, typing,
//! and presence changes told to the members and the other nodes.

use bytestring::ByteString;

use super::{Count, Effect, Handles, RoomCore};
use crate::bridge::envelope::RoomEvent;
use crate::ids::{SessionId, UserId};
use crate::protocol::{ErrorCode, ServerFrame};
use crate::room::delivery::{Delivery, DropReason, Fanout, ToSession};
use crate::room::presence::Change;

impl<H: Handles> RoomCore<H> {
    /// Fans frames out (the same bytes to everyone); `skip_user` leaves out that user's sessions.
    /// A member whose backfill is being read keeps them in its backlog.
    pub(super) fn broadcast(
        &mut self,
        frames: Fanout,
        skip: Option<&SessionId>,
        skip_user: Option<&str>,
    ) {
        for (id, member) in self.members.iter_mut() {
            if skip == Some(id) || skip_user == Some(member.user.as_str()) {
                continue;
            }
            match &mut member.backlog {
                Some(backlog) => frames.extend_into(backlog),
                None => self.out.push(Effect::Deliver {
                    session: id.clone(),
                    to: member.handle.clone(),
                    frames: frames.clone(),
                }),
            }
        }
    }

    pub(super) fn broadcast_frame(&mut self, frame: ByteString, skip_user: Option<&str>) {
        self.broadcast(Fanout::One(Delivery::control(frame)), None, skip_user);
    }

    /// A direct reply to one member.
    pub(super) fn send(&mut self, to: H::Member, message: ToSession) {
        self.emit(Effect::Send { to, message });
    }

    pub(super) fn error_frame(r#ref: Option<&str>, code: ErrorCode, message: &str) -> ByteString {
        ServerFrame::Error {
            r#ref,
            code: code.as_str(),
            message,
            retry_after_ms: None,
        }
        .encode()
    }

    /// Ends a membership the room could not keep (a slow or vanished session).
    pub(super) fn evict(&mut self, session: &SessionId, slow: bool) {
        let Some(member) = self.members.remove(session) else {
            return;
        };
        if slow {
            self.emit(Effect::Count(Count::SlowConsumer));
            tracing::info!(room = %self.id, session = %session, "slow consumer evicted");
            // A notice is never refused for size: the session learns it must close with 1013.
            let why = DropReason::Slow;
            let room = self.id.clone();
            self.send(member.handle, ToSession::Dropped { room, why });
        }
        let change = self.presence.leave(session);
        self.apply_presence(change);
    }

    pub(super) fn leave(&mut self, session: &SessionId, r#ref: Option<String>, reply: bool) {
        let Some(member) = self.members.remove(session) else {
            return;
        };
        if reply {
            let frame = ServerFrame::Left {
                r#ref: r#ref.as_deref(),
                room: &self.id,
            }
            .encode();
            self.send(member.handle, ToSession::Reply(frame));
        }
        let change = self.presence.leave(session);
        self.apply_presence(change);
    }

    pub(super) fn typing(&mut self, session: &SessionId, user: UserId) {
        if !self.members.contains_key(session) {
            return;
        }
        let frame = ServerFrame::Typing {
            room: &self.id,
            user: &user,
        }
        .encode();
        self.broadcast(
            Fanout::One(Delivery::control(frame)),
            Some(session),
            Some(&user),
        );
        if self.clustered() {
            let event = RoomEvent::Typing { user };
            self.emit(Effect::Publish { seq: None, event });
        }
    }

    /// Carries out a presence change: the other nodes hear of this node's users (and the shared
    /// hash drops what is stale), then the members get one `presence_diff`.
    pub(super) fn apply_presence(&mut self, change: Change) {
        let for_others =
            !(change.here.is_empty() && change.gone.is_empty() && change.forget.is_empty());
        if self.clustered() && for_others {
            self.emit(Effect::Announce {
                here: change.here,
                gone: change.gone,
                forget: change.forget,
            });
        }
        if change.joins.is_empty() && change.leaves.is_empty() {
            return;
        }
        let frame = ServerFrame::PresenceDiff {
            room: &self.id,
            joins: &change.joins,
            leaves: &change.leaves,
        }
        .encode();
        self.broadcast_frame(frame, None);
    }
}
