//! **Where a room decides things.** The room as a pure state machine: an [`Input`] goes in (a
//! join, a post, another node's envelope, the result of a store read, a timer), a list of
//! [`Effect`]s comes out (deliver these frames, append this batch, publish this envelope, answer
//! that post, read that range, wake me in 100 ms). No actor, no socket, no task, no clock of its
//! own: the time comes with every input ([`Now`]). The Room actor (`room/actor.rs`) only feeds
//! inputs and carries out effects; the tests in `core/tests/` drive this machine directly, and
//! read as the room's behaviour.
//!
//! Its parts are two smaller machines with tests of their own, the
//! [`Sequencer`](super::sequencer::Sequencer) (what is delivered, what waits, what to repair,
//! whether the history went backwards) and the [`Presence`](super::presence::Presence) (who is
//! here, across nodes), and two [`Batcher`]s (appends and read cursors, each one round trip per
//! batch).
//!
//! Invariants (PROTOCOL §3, §6, §7):
//! - Entries go to members as `delivered + 1, + 2, …`, never skipping: an early arrival waits in
//!   the sequencer, and a gap older than `room.gap_repair_ms` is read from the store
//!   ([`Effect::Repair`]). Nobody is disconnected for a gap.
//! - One append in flight; posts that arrive meanwhile form the next batch. A post is answered
//!   ([`Effect::Answer`]) only after its commit, and before its entry is broadcast.
//! - A join with `since` is answered only after its backfill is read; entries that go live
//!   meanwhile wait in that member's backlog, so the seam has no gap and no duplicate.
//! - A batch the store refuses for one entry's data is retried one entry at a time; only that one
//!   fails. A commit or head read showing that the history went backwards under its epoch gives
//!   the room a new epoch before anything is acked, and members get a `reset`.
//! - Each frame is encoded once per broadcast; every member gets the same bytes.
//!
//! **Blocking reads.** Some reads must finish before the room may look at anything else: the
//! first head read (start), the head read for joins that found no head, a join's catch-up to the
//! committed head, the confirmation of another epoch, an epoch reset. While one runs the room is
//! *blocked* ([`RoomCore::blocked`]): every other input is kept, in order, and handled as soon as
//! the read's result comes in. (The actor also holds its mailbox meanwhile, which keeps posters
//! waiting instead of queueing without bound.)

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use super::batcher::Batcher;
use super::delivery::{Delivery, DropReason, Fanout, JoinPoint, ToSession};
use super::presence::Presence;
use super::sequencer::Sequencer;
use crate::domain::{Message, NewMessage, PresenceUser};
use crate::ids::{Epoch, RoomId, Seq, SessionId, UserId};
use crate::store::{AppendOutcome, StoreError};

mod cluster;
mod commit;
mod effects;
mod inputs;
mod join;
mod members;
#[cfg(test)]
mod tests;

pub use effects::{Count, Effect};
pub use inputs::{Done, Handles, HeadWhy, Input, JoinRequest, Now, Settings, Timer};

/// One session's membership.
struct Member<M> {
    handle: M,
    user: UserId,
    /// `Some` while the member's backfill is being read: live frames wait here.
    backlog: Option<Vec<Delivery>>,
    /// Which join made it (a backfill that comes back for an earlier one is dropped).
    join: u64,
}

/// A join whose reads are out.
struct JoinInFlight {
    session: SessionId,
    point: JoinPoint,
    r#ref: Option<String>,
}

/// A read that holds the room (see the module doc), with what it needs when it ends.
enum Block<H: Handles> {
    /// The first head read.
    Attaching,
    /// The head read for joins that found none.
    LoadingHead,
    /// A join's catch-up to the committed head.
    CatchingUp {
        join: JoinRequest<H::Member>,
        floor: Seq,
    },
    /// A commit came back under another epoch: the store's head says which one holds.
    Confirming {
        base: Option<Seq>,
        outcome: AppendOutcome,
        replies: Vec<H::PostReply>,
    },
    /// A new epoch is being taken; `stash` is a commit to ack once it is.
    Resetting {
        old: Epoch,
        base: Option<Seq>,
        stash: Option<(AppendOutcome, Vec<H::PostReply>)>,
    },
}

/// An input kept while the room was blocked.
enum Kept<H: Handles> {
    Input(Input<H>),
    /// A join that already caught up to the committed head.
    CaughtUpJoin(JoinRequest<H::Member>),
}

/// The append in flight: who to answer, and what the room knew was committed when it was sent.
struct InCommit<R> {
    replies: Vec<R>,
    floor: Seq,
}

/// A room (see the module doc).
pub struct RoomCore<H: Handles> {
    id: RoomId,
    settings: Settings,
    seq: Sequencer,
    presence: Presence,
    /// Ordered: the same inputs give the same effects in the same order (simulations replay).
    members: BTreeMap<SessionId, Member<H::Member>>,
    posts: Batcher<(NewMessage, H::PostReply)>,
    commit: Option<InCommit<H::PostReply>>,
    reads: Batcher<(UserId, Seq, H::ReadReply)>,
    reading: Vec<H::ReadReply>,
    /// Joins that arrived while the room had no head; answered when the head read ends.
    waiting: Vec<JoinRequest<H::Member>>,
    joins: HashMap<u64, JoinInFlight>,
    next_join: u64,
    block: Option<Block<H>>,
    /// A catch-up's head read in flight, with its floor (see [`HeadWhy::CatchUp`]).
    catching: Option<Seq>,
    /// A catch-up still owed (its read failed, or was asked for while one was in flight): the
    /// lowest floor it was asked with. The room does not stop while one is owed.
    owed: Option<Seq>,
    kept: VecDeque<Kept<H>>,
    timers: HashSet<Timer>,
    stopped: bool,
    out: Vec<Effect<H>>,
    now: Now,
}

/// Most entries one repair reads; a longer gap is repaired in several reads.
const REPAIR_MAX: i64 = 1000;
/// Most entries a join reads to bring a lagging node up to the committed head at once.
const CATCH_UP_MAX: i64 = 1000;

impl<H: Handles> RoomCore<H> {
    pub fn new(id: RoomId, settings: Settings) -> RoomCore<H> {
        let batch_max = settings.batch_max;
        RoomCore {
            id,
            settings,
            seq: Sequencer::new(),
            presence: Presence::new(),
            members: BTreeMap::new(),
            posts: Batcher::new(batch_max),
            commit: None,
            reads: Batcher::new(batch_max),
            reading: Vec::new(),
            waiting: Vec::new(),
            joins: HashMap::new(),
            next_join: 0,
            block: None,
            catching: None,
            owed: None,
            kept: VecDeque::new(),
            timers: HashSet::new(),
            stopped: false,
            out: Vec::new(),
            now: Now::system(),
        }
    }

    pub fn id(&self) -> &RoomId {
        &self.id
    }

    /// Handles one input; the effects to carry out, in order.
    pub fn step(&mut self, now: Now, input: Input<H>) -> Vec<Effect<H>> {
        let mut out = Vec::new();
        self.step_into(now, input, &mut out);
        out
    }

    /// [`RoomCore::step`] into a buffer the caller reuses.
    pub fn step_into(&mut self, now: Now, input: Input<H>, out: &mut Vec<Effect<H>>) {
        std::mem::swap(&mut self.out, out);
        self.now = now;
        if self.stopped {
            self.refuse_after_stop(input);
        } else if self.block.is_some() && !self.resolves_block(&input) {
            self.kept.push_back(Kept::Input(input));
        } else {
            self.handle(input);
            // Whatever waited behind a block, in order, until the next one.
            while self.block.is_none() {
                match self.kept.pop_front() {
                    Some(Kept::Input(input)) => self.handle(input),
                    Some(Kept::CaughtUpJoin(join)) => self.join(join, true),
                    None => break,
                }
            }
            if self.block.is_none() {
                self.maybe_commit();
                self.maybe_read();
            }
            self.check_idle();
        }
        std::mem::swap(&mut self.out, out);
    }

    /// While blocked, the interpreter holds the mailbox and runs I/O one read at a time.
    pub fn blocked(&self) -> bool {
        self.block.is_some()
    }

    /// Who is in the room, each user once.
    pub fn presence(&self) -> Vec<PresenceUser> {
        self.presence.users()
    }

    /// How many members (sessions and listeners) the room has on this node.
    pub fn members(&self) -> usize {
        self.members.len()
    }

    /// The room's epoch and last delivered seq, once its head is known.
    pub fn head(&self) -> Option<(&Epoch, Seq)> {
        Some((self.seq.epoch()?, self.seq.delivered()?))
    }

    /// The room is going away under its members (the actor is dropped, e.g. after a panic): each
    /// is told where its stream ended, so it joins a fresh room and resumes without a gap.
    pub fn abandon(&mut self) -> Vec<(H::Member, ToSession)> {
        let (epoch, delivered) = (self.seq.epoch().cloned(), self.seq.delivered());
        std::mem::take(&mut self.members)
            .into_values()
            .map(|m| {
                let why = DropReason::Lost {
                    epoch: epoch.clone(),
                    last_seq: delivered.filter(|_| m.backlog.is_none()),
                };
                let room = self.id.clone();
                (m.handle, ToSession::Dropped { room, why })
            })
            .collect()
    }

    fn emit(&mut self, effect: Effect<H>) {
        self.out.push(effect);
    }

    fn clustered(&self) -> bool {
        self.settings.node.is_some()
    }

    fn resolves_block(&self, input: &Input<H>) -> bool {
        let Some(block) = &self.block else {
            return true;
        };
        matches!(
            (block, input),
            (Block::Attaching, Input::Done(Done::Attached { .. }))
                | (
                    Block::LoadingHead,
                    Input::Done(Done::Head {
                        why: HeadWhy::Joins,
                        ..
                    })
                )
                | (
                    Block::Confirming { .. },
                    Input::Done(Done::Head {
                        why: HeadWhy::Confirm,
                        ..
                    })
                )
                | (Block::CatchingUp { .. }, Input::Done(Done::CaughtUp { .. }))
                | (
                    Block::Resetting { .. },
                    Input::Done(Done::EpochReset { .. }) | Input::Timer(Timer::ResetRetry)
                )
        ) || matches!(input, Input::Undeliverable { .. })
    }

    fn handle(&mut self, input: Input<H>) {
        match input {
            Input::Start => {
                self.block = Some(Block::Attaching);
                self.emit(Effect::Attach);
            }
            Input::Join(join) => self.join(join, false),
            Input::Leave {
                session,
                r#ref,
                reply,
            } => self.leave(&session, r#ref, reply),
            Input::Post { entry, reply } => self.posts.push((entry, reply)),
            Input::Typing { session, user } => self.typing(&session, user),
            Input::MarkRead { user, seq, reply } => self.reads.push((user, seq, reply)),
            Input::ReadReceipt { user, frame } => {
                self.broadcast(Fanout::One(Delivery::control(frame)), None, Some(&user));
            }
            Input::Cluster(event) => self.on_cluster(event),
            Input::Undeliverable { session, slow } => self.evict(&session, slow),
            Input::Timer(timer) => self.on_timer(timer),
            Input::Done(done) => self.on_done(done),
        }
    }

    fn on_done(&mut self, done: Done) {
        match done {
            Done::Attached { head, presence } => {
                self.block = None;
                self.set_head(head);
                if let Some(entries) = presence {
                    self.apply_snapshot(entries);
                }
            }
            Done::Head {
                why: HeadWhy::Joins,
                result,
            } => self.head_for_joins(result),
            Done::Head {
                why: HeadWhy::Confirm,
                result,
            } => self.confirmed(result),
            Done::Head {
                why: HeadWhy::CatchUp { floor },
                result,
            } => {
                self.catching = None;
                match result {
                    Ok(h) => {
                        self.caught_up_head(h, floor);
                        if let Some(floor) = self.owed.take() {
                            self.catch_up_from(floor);
                        }
                    }
                    Err(e) => {
                        tracing::debug!(room = %self.id, error = %e, "catch-up head read failed");
                        self.owe_catch_up(floor);
                    }
                }
            }
            Done::Appended { batch, result } => self.appended(batch, result),
            Done::Repaired { result } => self.repaired(result),
            Done::CaughtUp { result } => self.caught_up(result),
            Done::JoinRead {
                join,
                read,
                backfill,
            } => self.join_read(join, read, backfill),
            Done::ReadsMarked { result } => self.reads_marked(result),
            Done::EpochReset { result } => self.epoch_reset(result),
            Done::Resynced {
                floor,
                head,
                presence,
            } => self.resynced(floor, head, presence),
            Done::ReadsRefreshed { states } => self.reads_refreshed(states),
        }
    }

    fn on_timer(&mut self, timer: Timer) {
        self.timers.remove(&timer);
        match timer {
            Timer::Repair => self.repair_gap(),
            Timer::Idle => {
                if !self.busy() {
                    self.stopped = true;
                    self.emit(Effect::Stop);
                }
            }
            Timer::ResetRetry => {
                if let Some(Block::Resetting { old, .. }) = &self.block {
                    let old = old.clone();
                    self.emit(Effect::ResetEpoch { old });
                }
            }
            Timer::Recheck => {
                if let Some(floor) = self.owed.take() {
                    self.catch_up_from(floor);
                }
            }
        }
    }

    /// A stopped room takes nothing: posts and joins that reach it anyway are refused so the
    /// sender retries on a fresh room (the registry starts one).
    fn refuse_after_stop(&mut self, input: Input<H>) {
        match input {
            Input::Post { reply, .. } => self.emit(Effect::Answer {
                to: reply,
                outcome: Err(StoreError::Unavailable("room stopped; retry".into())),
            }),
            Input::MarkRead { reply, .. } => self.emit(Effect::AnswerRead {
                to: reply,
                outcome: Err(StoreError::Unavailable("room stopped; retry".into())),
            }),
            Input::Join(join) => self.refuse_join(join.member, join.r#ref.as_deref()),
            _ => {}
        }
    }

    fn schedule(&mut self, timer: Timer, after: Duration) {
        if self.timers.insert(timer) {
            self.emit(Effect::Schedule { timer, after });
        }
    }

    fn cancel(&mut self, timer: Timer) {
        if self.timers.remove(&timer) {
            self.emit(Effect::Cancel(timer));
        }
    }

    fn busy(&self) -> bool {
        !self.members.is_empty()
            || !self.posts.is_idle()
            || !self.reads.is_idle()
            || !self.waiting.is_empty()
            || self.block.is_some()
            || self.catching.is_some()
            || self.owed.is_some()
            || !self.kept.is_empty()
    }

    /// Stops after `room.idle_stop_ms` with no members and nothing in flight.
    fn check_idle(&mut self) {
        if self.stopped {
            return;
        }
        if self.busy() {
            self.cancel(Timer::Idle);
        } else {
            self.schedule(Timer::Idle, self.settings.idle_stop);
        }
    }

    /// Hands entries read from the store to the sequencer; how many were new here.
    fn offer_all(&mut self, messages: Vec<Message>) -> u64 {
        let at = self.now.at;
        messages
            .into_iter()
            .map(|m| u64::from(self.seq.offer(Arc::new(m), at)))
            .sum()
    }
}
