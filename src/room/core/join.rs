//! Joining: a plain join goes live at the head; a join with `since` has its backfill read while
//! live frames wait in the member's backlog, then one reply carries `joined`, `presence`, the
//! backfill and the backlog, so the seam between backfill and live has no gap and no duplicate.
//! A visible member's read cursor and unread count (§7) are read the same way, as of the join
//! point.
//!
//! `since` is judged against the room's *committed* head, never only against what this node
//! happened to deliver: a node that is behind (its bus was down, or is slow) first catches up
//! from the store, so a client resuming there gets `recovered:true` and no duplicates.
//! A join that cannot be served (the store is down) is refused with `unavailable` and leaves no
//! membership behind; the head is read again for the next join.

use super::{
    Block, CATCH_UP_MAX, Count, Effect, Handles, HeadWhy, JoinInFlight, JoinRequest, Kept, Member,
    RoomCore,
};
use crate::domain::Message;
use crate::protocol::{ErrorCode, ServerFrame};
use crate::room::delivery::{Delivery, DropReason, JoinPoint, JoinReply, ToSession};
use crate::room::sequencer::JoinPlan;
use crate::store::{ReadState, RoomHead, StoreError};

const UNAVAILABLE: &str = "history store unavailable, retry the join";

impl<H: Handles> RoomCore<H> {
    /// `caught_up`: this node already read the committed head for this join.
    pub(super) fn join(&mut self, join: JoinRequest<H::Member>, caught_up: bool) {
        if self.block.is_some() {
            // A read holds the room (this join's own catch-up may have started a reset): the join
            // is judged once it ends, against what it found.
            let kept = match caught_up {
                true => Kept::CaughtUpJoin(join),
                false => Kept::Input(super::Input::Join(join)),
            };
            return self.kept.push_front(kept);
        }
        let max_catchup = self.settings.max_catchup;
        let plan = self
            .seq
            .plan_join(join.since, join.epoch.as_ref(), max_catchup, caught_up);
        let (epoch, last_seq, recovered, backfill) = match plan {
            JoinPlan::NoHead => {
                // The store was down when the room started: read the head again; this join waits.
                self.waiting.push(join);
                self.block = Some(Block::LoadingHead);
                return self.emit(Effect::ReadHead(HeadWhy::Joins));
            }
            JoinPlan::CatchUp => {
                let delivered = self.seq.delivered().unwrap_or_default();
                let floor = self.seq.known_committed();
                self.block = Some(Block::CatchingUp { join, floor });
                let max = CATCH_UP_MAX;
                return self.emit(Effect::CatchUp { delivered, max });
            }
            JoinPlan::Join {
                epoch,
                last_seq,
                recovered,
                backfill,
            } => (epoch, last_seq, recovered, backfill),
        };
        // Told before the member is added: a joiner learns who is here from its `presence` frame.
        self.members.remove(&join.session);
        let change = self
            .presence
            .join(join.session.clone(), join.user.clone(), join.hidden);
        self.apply_presence(change);
        let point = JoinPoint {
            epoch,
            last_seq,
            recovered,
            read: None,
        };
        // A visible member learns its read cursor and unread count as of the join point, so the
        // entries it receives after `joined` adjust the count exactly (§7).
        let read_for = (!join.hidden).then(|| join.user.user.clone());
        let waiting = backfill.is_some() || read_for.is_some();
        self.next_join += 1;
        let id = self.next_join;
        self.members.insert(
            join.session.clone(),
            Member {
                handle: join.member.clone(),
                user: join.user.user.clone(),
                backlog: waiting.then(Vec::new),
                join: id,
            },
        );
        if !waiting {
            let reply = self.join_reply(join.r#ref.as_deref(), point, Vec::new(), Vec::new());
            return self.send(join.member, ToSession::Joined(Box::new(reply)));
        }
        self.joins.insert(
            id,
            JoinInFlight {
                session: join.session,
                point,
                r#ref: join.r#ref,
            },
        );
        self.emit(Effect::ReadForJoin {
            join: id,
            user: read_for,
            upto: last_seq,
            backfill,
        });
    }

    /// `joined`, `presence`, the backfill, then what went live meanwhile.
    fn join_reply(
        &self,
        r#ref: Option<&str>,
        point: JoinPoint,
        backfill: Vec<Message>,
        backlog: Vec<Delivery>,
    ) -> JoinReply {
        let joined = ServerFrame::Joined {
            r#ref,
            room: &self.id,
            epoch: &point.epoch,
            last_seq: point.last_seq,
            recovered: point.recovered,
            read_seq: point.read.map(|r| r.read_seq),
            unread: point.read.map(|r| r.unread),
        }
        .encode();
        let presence = ServerFrame::Presence {
            room: &self.id,
            users: &self.presence.users(),
        }
        .encode();
        let live = backlog.iter().filter(|d| d.committed.is_some()).count() as u64;
        let messages = backfill.len() as u64 + live;
        let mut frames = Vec::with_capacity(2 + backfill.len() + backlog.len());
        frames.push(Delivery::control(joined));
        frames.push(Delivery::control(presence));
        frames.extend(backfill.iter().map(|m| Delivery {
            frame: ServerFrame::Entry(m).encode(),
            committed: None,
            carries: crate::room::delivery::Carries::Entry {
                seq: m.seq,
                kind: m.kind,
            },
        }));
        frames.extend(backlog);
        JoinReply {
            point,
            frames,
            messages,
        }
    }

    /// Answers a join with `error: unavailable` and tells the session it is not a member.
    pub(super) fn refuse_join(&mut self, member: H::Member, r#ref: Option<&str>) {
        let frame = Self::error_frame(r#ref, ErrorCode::Unavailable, UNAVAILABLE);
        self.send(member.clone(), ToSession::Reply(frame));
        let room = self.id.clone();
        let why = DropReason::Refused;
        self.send(member, ToSession::Dropped { room, why });
    }

    /// The head read that [`Block::LoadingHead`] waited for: the waiting joins proceed, or are
    /// refused and leave no membership behind (the next join tries again).
    pub(super) fn head_for_joins(&mut self, result: Result<RoomHead, StoreError>) {
        self.block = None;
        self.set_head(result);
        let mut waiting = std::mem::take(&mut self.waiting).into_iter();
        while let Some(join) = waiting.next() {
            if self.block.is_some() {
                // One of them started a catch-up: the rest wait for it, in their order.
                let rest: Vec<_> = std::iter::once(join).chain(waiting).collect();
                for join in rest.into_iter().rev() {
                    self.kept.push_front(Kept::Input(super::Input::Join(join)));
                }
                break;
            }
            if self.seq.delivered().is_some() {
                self.join(join, false);
            } else {
                self.refuse_join(join.member, join.r#ref.as_deref());
            }
        }
    }

    /// The catch-up that [`Block::CatchingUp`] waited for: deliver what this node missed, then
    /// judge the join again.
    pub(super) fn caught_up(&mut self, result: Result<(RoomHead, Vec<Message>), StoreError>) {
        let Some(Block::CatchingUp { join, floor }) = self.block.take() else {
            return;
        };
        match result {
            Ok((head, missed)) => {
                let filled = self.offer_all(missed);
                if filled > 0 {
                    self.emit(Effect::Count(Count::GapsRepaired(filled)));
                }
                self.observe_head(head, floor);
                self.join(join, true);
            }
            Err(e) => {
                tracing::warn!(room = %self.id, error = %e, "catching up for a join failed");
                self.refuse_join(join.member, join.r#ref.as_deref());
            }
        }
    }

    /// The reads of join `id` came back: answer it, unless the member left (or joined again)
    /// meanwhile.
    pub(super) fn join_read(
        &mut self,
        id: u64,
        read: Option<ReadState>,
        backfill: Result<Vec<Message>, StoreError>,
    ) {
        let Some(JoinInFlight {
            session,
            mut point,
            r#ref,
        }) = self.joins.remove(&id)
        else {
            return;
        };
        point.read = read;
        let backfill = match backfill {
            // Retention dropped history after `since`: the gap cannot be filled, the client
            // reloads through `history` (PROTOCOL §9).
            Err(StoreError::Truncated) => {
                point.recovered = false;
                Ok(Vec::new())
            }
            other => other,
        };
        let Some(member) = self.members.get_mut(&session).filter(|m| m.join == id) else {
            return;
        };
        let backlog = member.backlog.take().unwrap_or_default();
        let handle = member.handle.clone();
        match backfill {
            Ok(entries) => {
                self.emit(Effect::Count(Count::Backfill(entries.len() as u64)));
                let reply = self.join_reply(r#ref.as_deref(), point, entries, backlog);
                self.send(handle, ToSession::Joined(Box::new(reply)));
            }
            Err(e) => {
                tracing::warn!(room = %self.id, error = %e, "backfill failed");
                self.members.remove(&session);
                let change = self.presence.leave(&session);
                self.refuse_join(handle, r#ref.as_deref());
                self.apply_presence(change);
            }
        }
    }
}
