//! Sending to members: the same pre-serialised bytes to everyone, through each member's bounded
//! [`Outbox`](super::Outbox); evicting members that are slow or gone.

use bytestring::ByteString;

use super::messages::DropReason;
use super::{Delivery, Fanout, Member, Room, SessionId, ToSession, Undeliverable};
use crate::protocol::{ErrorCode, ServerFrame};

impl Room {
    /// Sends to one member, honouring its backlog.
    pub(super) fn push(member: &mut Member, frames: &Fanout) -> Result<(), Undeliverable> {
        if let Some(backlog) = &mut member.backlog {
            match frames {
                Fanout::One(d) => backlog.push(d.clone()),
                Fanout::Many(batch) => backlog.extend(batch.iter().cloned()),
            }
            return Ok(());
        }
        member.outbox.deliver(match frames {
            Fanout::One(d) => ToSession::Live(d.clone()),
            Fanout::Many(batch) => ToSession::LiveBatch(batch.clone()),
        })
    }

    /// Fans frames out (the same bytes to everyone); `skip_user` leaves out that user's sessions.
    pub(super) fn broadcast(
        &mut self,
        frames: Fanout,
        skip: Option<&SessionId>,
        skip_user: Option<&str>,
    ) {
        let mut gone: Vec<(SessionId, bool)> = Vec::new();
        for (id, member) in self.members.iter_mut() {
            if skip == Some(id) || skip_user == Some(member.user.as_str()) {
                continue;
            }
            if let Err(e) = Self::push(member, &frames) {
                gone.push((id.clone(), e == Undeliverable::Slow));
            }
        }
        for (id, slow) in gone {
            self.evict(&id, slow);
        }
    }

    /// Broadcasts one control frame (presence, typing).
    pub(super) fn broadcast_frame(
        &mut self,
        frame: ByteString,
        skip: Option<&SessionId>,
        skip_user: Option<&str>,
    ) {
        let one = Fanout::One(Delivery {
            frame,
            committed: None,
            seq: None,
            kind: crate::domain::Kind::Message,
        });
        self.broadcast(one, skip, skip_user);
    }

    /// Ends a membership the room could not keep (slow or vanished session).
    pub(super) fn evict(&mut self, session: &SessionId, slow: bool) {
        if let Some(member) = self.members.remove(session) {
            if slow {
                self.registry.deps.metrics.slow_consumers.inc();
                tracing::info!(room = %self.id, session = %session, "slow consumer evicted");
                // A notice is never refused for size: the session learns it must close with 1013.
                member.outbox.reply(ToSession::Dropped {
                    room: self.id.clone(),
                    why: DropReason::Slow,
                });
            }
            let change = self.presence.leave(session);
            self.apply_presence(change);
        }
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
}
