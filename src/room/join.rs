//! Joining: a plain join goes live at the head; a join with `since` gets its backfill read from the
//! store while live frames wait in the member's backlog, then one reply carries joined, presence,
//! backfill and backlog, so the seam between backfill and live has no gap and no duplicate.

use actix::prelude::*;
use bytestring::ByteString;

use super::{Join, Member, Room, SessionId, ToSession};
use crate::protocol::{ErrorCode, ServerFrame};
use crate::store::{Message, StoreError};

impl Room {
    pub(super) fn join(&mut self, msg: Join, ctx: &mut Context<Self>) {
        let Some(head) = &self.head else {
            // The store was down when the room started: fail this join, try the head again.
            let frame = Self::error_frame(
                msg.r#ref.as_deref(),
                ErrorCode::Unavailable,
                "history store unavailable, retry",
            );
            msg.outbox.reply(ToSession::Reply(frame));
            msg.outbox.reply(ToSession::Dropped {
                room: self.id.clone(),
                slow: false,
            });
            self.load_head(ctx);
            return;
        };
        let delivered = head.delivered;
        let max_catchup = self.registry.deps.settings.max_catchup;
        let epoch_ok = msg.epoch.as_ref().is_none_or(|e| *e == head.epoch);
        let from = match msg.since {
            Some(s) if epoch_ok && s <= delivered && delivered - s <= max_catchup => Some(s),
            _ => None,
        };
        let epoch = head.epoch.clone();
        if let Some(old) = self.members.remove(&msg.session) {
            self.announce_leave(&old.user, old.hidden);
        }
        if !msg.hidden {
            self.announce_join(&msg.user);
        }
        let catching_up = from.is_some_and(|s| s < delivered);
        self.members.insert(
            msg.session.clone(),
            Member {
                outbox: msg.outbox.clone(),
                user: msg.user.clone(),
                hidden: msg.hidden,
                backlog: catching_up.then(Vec::new),
            },
        );
        self.check_idle(ctx);

        let joined = ServerFrame::Joined {
            r#ref: msg.r#ref.as_deref(),
            room: &self.id,
            epoch: &epoch,
            last_seq: delivered,
            recovered: from.is_some(),
        }
        .encode();
        if !catching_up {
            let presence = ServerFrame::Presence {
                room: &self.id,
                users: &self.presence(),
            }
            .encode();
            self.send_frames(&msg.session, vec![joined, presence], 0);
            return;
        }
        let since = from.unwrap_or(delivered);
        let (store, room) = (self.registry.deps.store.clone(), self.id.clone());
        ctx.spawn(
            async move { store.range(&room, since, delivered).await }
                .into_actor(self)
                .map(move |res, act, ctx| act.finish_join(msg, joined, res, ctx)),
        );
    }

    /// Sends the reply to a join with `since`: joined, presence, the backfill, then what went live.
    pub(super) fn finish_join(
        &mut self,
        msg: Join,
        joined: ByteString,
        backfill: Result<Vec<Message>, StoreError>,
        ctx: &mut Context<Self>,
    ) {
        let presence = self.presence();
        let Some(member) = self.members.get_mut(&msg.session) else {
            return; // left while the backfill was read
        };
        let backlog = member.backlog.take().unwrap_or_default();
        match backfill {
            Ok(messages) => {
                let mut frames = Vec::with_capacity(2 + messages.len() + backlog.len());
                frames.push(joined);
                frames.push(
                    ServerFrame::Presence {
                        room: &self.id,
                        users: &presence,
                    }
                    .encode(),
                );
                frames.extend(messages.iter().map(|m| ServerFrame::Message(m).encode()));
                let live = backlog.iter().filter(|d| d.committed.is_some()).count();
                frames.extend(backlog.into_iter().map(|d| d.frame));
                let n = messages.len() as u64;
                self.registry.deps.metrics.backfill_messages.inc_by(n);
                self.send_frames(&msg.session, frames, n + live as u64);
            }
            Err(e) => {
                tracing::warn!(room = %self.id, error = %e, "backfill failed");
                let frame = Self::error_frame(
                    msg.r#ref.as_deref(),
                    ErrorCode::Unavailable,
                    "history store unavailable, retry the join",
                );
                member.outbox.reply(ToSession::Reply(frame));
                member.outbox.reply(ToSession::Dropped {
                    room: self.id.clone(),
                    slow: false,
                });
                let (user, hidden) = (member.user.clone(), member.hidden);
                self.members.remove(&msg.session);
                self.announce_leave(&user, hidden);
                self.check_idle(ctx);
            }
        }
    }

    /// The reply to a join: a direct reply, so a long backfill is not counted as a slow reader.
    pub(super) fn send_frames(
        &mut self,
        session: &SessionId,
        frames: Vec<ByteString>,
        messages: u64,
    ) {
        if let Some(member) = self.members.get(session) {
            member.outbox.reply(ToSession::Replies { frames, messages });
        }
    }
}
