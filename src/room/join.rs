//! Joining: a plain join goes live at the head; a join with `since` gets its backfill read from the
//! store while live frames wait in the member's backlog, then one reply carries joined, presence,
//! backfill and backlog, so the seam between backfill and live has no gap and no duplicate. The
//! joining user's read cursor and unread count (§7) are read the same way, as of the join point.
//!
//! `since` is judged against the room's *committed* head, never only against what this node
//! happened to deliver: a node that is behind (its bus was down, or is slow) first catches up
//! from the store, so a client resuming there gets `recovered:true` and no duplicates.
//! A join that cannot be served (the store is down) is refused with `unavailable` and leaves no
//! membership behind; the head is read again for the next join.

use actix::prelude::*;
use bytestring::ByteString;

use super::sequencer::JoinPlan;
use super::{DropReason, Join, Member, Room, SessionId, ToSession};
use crate::domain::Message;
use crate::ids::{RoomId, Seq};
use crate::protocol::{ErrorCode, ServerFrame};
use crate::store::{ReadState, StoreError};

/// Where a join goes live: what its `joined` frame says.
struct JoinPoint {
    epoch: String,
    last_seq: Seq,
    recovered: bool,
}

impl JoinPoint {
    fn frame(&self, r#ref: Option<&str>, room: &RoomId, read: Option<ReadState>) -> ByteString {
        ServerFrame::Joined {
            r#ref,
            room,
            epoch: &self.epoch,
            last_seq: self.last_seq,
            recovered: self.recovered,
            read_seq: read.map(|r| r.read_seq),
            unread: read.map(|r| r.unread),
        }
        .encode()
    }
}

/// Most messages a join reads to bring a lagging node up to the committed head at once.
const CATCH_UP_MAX: i64 = 1000;

impl Room {
    pub(super) fn join(&mut self, msg: Join, ctx: &mut Context<Self>) {
        self.join_checked(msg, false, ctx);
    }

    /// Answers a join with `error: unavailable` and tells the session it is not a member.
    pub(super) fn refuse_join(&mut self, msg: Join, why: &str) {
        let frame = Self::error_frame(msg.r#ref.as_deref(), ErrorCode::Unavailable, why);
        msg.outbox.reply(ToSession::Reply(frame));
        msg.outbox.reply(ToSession::Dropped {
            room: self.id.clone(),
            why: DropReason::Refused,
        });
    }

    /// `behind_checked`: this node already caught up to the committed head for this join.
    fn join_checked(&mut self, msg: Join, behind_checked: bool, ctx: &mut Context<Self>) {
        let max_catchup = self.registry.deps.settings.max_catchup;
        let plan = self
            .seq
            .plan_join(msg.since, msg.epoch.as_deref(), max_catchup, behind_checked);
        let (epoch, delivered, recovered, backfill) = match plan {
            JoinPlan::NoHead => {
                // The store was down when the room started: read the head again; this join waits.
                self.waiting.push(msg);
                return self.load_head(ctx);
            }
            JoinPlan::CatchUp => return self.catch_up_then_join(msg, ctx),
            JoinPlan::Join {
                epoch,
                last_seq,
                recovered,
                backfill,
            } => (epoch, last_seq, recovered, backfill),
        };
        // Told before the member is added: a joiner learns who is here from its `presence` frame.
        self.members.remove(&msg.session);
        let change = self
            .presence
            .join(msg.session.clone(), msg.user.clone(), msg.hidden);
        self.apply_presence(change);
        // A visible member learns its read cursor and unread count as of the join point, so the
        // entries it receives after `joined` adjust the count exactly (§7): read from the store
        // while live frames wait in the member's backlog, as for a backfill.
        let read_for = (!msg.hidden).then(|| msg.user.user.clone());
        let waiting = backfill.is_some() || read_for.is_some();
        self.members.insert(
            msg.session.clone(),
            Member {
                outbox: msg.outbox.clone(),
                user: msg.user.user.clone(),
                backlog: waiting.then(Vec::new),
            },
        );
        self.check_idle(ctx);

        let point = JoinPoint {
            epoch,
            last_seq: delivered,
            recovered,
        };
        if !waiting {
            let joined = point.frame(msg.r#ref.as_deref(), &self.id, None);
            let presence = ServerFrame::Presence {
                room: &self.id,
                users: &self.presence.users(),
            }
            .encode();
            self.send_frames(&msg.session, vec![joined, presence], 0);
            return;
        }
        let (store, room) = (self.registry.deps.store.clone(), self.id.clone());
        ctx.spawn(
            async move {
                let read = match read_for {
                    // Unknown (the store is down) is left out of `joined`, never guessed.
                    Some(user) => store.read_state(&room, &user, delivered).await.ok(),
                    None => None,
                };
                let backfill = match backfill {
                    Some((since, upto)) => store.range(&room, since, upto).await,
                    None => Ok(Vec::new()),
                };
                (read, backfill)
            }
            .into_actor(self)
            .map(move |(read, res), act, ctx| {
                let mut point = point;
                let res = match res {
                    Err(StoreError::Truncated) => {
                        // Retention dropped history after `since`: the gap cannot be filled, the
                        // client reloads through `history` (PROTOCOL §9).
                        point.recovered = false;
                        Ok(Vec::new())
                    }
                    res => res,
                };
                let joined = point.frame(msg.r#ref.as_deref(), &act.id, read);
                act.finish_join(msg, joined, res, ctx)
            }),
        );
    }

    /// The client saw more than this node delivered: read the committed head and what this node
    /// missed (mailbox blocked, so nothing overtakes it), deliver that to the members, then join.
    fn catch_up_then_join(&mut self, msg: Join, ctx: &mut Context<Self>) {
        let delivered = self.seq.delivered().unwrap_or_default();
        let floor = self.seq.known_committed();
        let (store, room) = (self.registry.deps.store.clone(), self.id.clone());
        ctx.wait(
            async move {
                let head = store.head(&room).await?;
                let upto = head.last_seq.min(delivered + CATCH_UP_MAX);
                let missed = if upto > delivered {
                    store.range(&room, delivered, upto).await?
                } else {
                    Vec::new()
                };
                Ok::<_, StoreError>((head, missed))
            }
            .into_actor(self)
            .map(move |res, act, ctx| match res {
                Ok((head, missed)) => {
                    let filled = act.offer_all(missed);
                    act.registry.deps.metrics.gaps_repaired.inc_by(filled);
                    act.observe_head(head, floor, ctx);
                    act.join_checked(msg, true, ctx);
                }
                Err(e) => {
                    tracing::warn!(room = %act.id, error = %e, "catching up for a join failed");
                    act.refuse_join(msg, "history store unavailable, retry the join");
                }
            }),
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
        let presence = self.presence.users();
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
                frames.extend(messages.iter().map(|m| ServerFrame::Entry(m).encode()));
                let live = backlog.iter().filter(|d| d.committed.is_some()).count();
                frames.extend(backlog.into_iter().map(|d| d.frame));
                let n = messages.len() as u64;
                self.registry.deps.metrics.backfill_messages.inc_by(n);
                self.send_frames(&msg.session, frames, n + live as u64);
            }
            Err(e) => {
                tracing::warn!(room = %self.id, error = %e, "backfill failed");
                self.members.remove(&msg.session);
                let change = self.presence.leave(&msg.session);
                self.refuse_join(msg, "history store unavailable, retry the join");
                self.apply_presence(change);
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
