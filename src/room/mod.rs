//! The Room actor: one per active room per node. It owns the room's local members, commits posts in
//! groups, and fans out every committed message in strict `seq` order.
//!
//! Lifecycle: started by the [`Registry`] on first use; loads the room head (epoch, last seq) before
//! handling anything; stops itself after `room.idle_stop_ms` with no members and no commit in flight.
//!
//! Invariants:
//! - `head.delivered` is the highest seq fanned out; messages go out as `delivered + 1, + 2, …`, never
//!   skipping: an early arrival waits in `reorder`, and a gap older than `room.gap_repair_ms` is
//!   fetched from the store (`chorus_gaps_repaired_total`). Nobody is disconnected for a gap.
//! - One commit in flight at a time; posts that arrive meanwhile form the next batch (group commit).
//! - A join with `since` is answered only after its backfill is read; live messages that commit
//!   meanwhile wait in that member's backlog, so the seam between backfill and live has no gap and
//!   no duplicate.
//! - Each message is serialised once; members receive clones of the same bytes. Delivery uses the
//!   session's bounded mailbox: a full one makes the member a slow consumer (closed with 1013).
//! - Failure stays here: a store error becomes an `unavailable` reply, never a panic.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytestring::ByteString;

use crate::ids::{RoomId, Seq};
use crate::protocol::{ErrorCode, PresenceUser, ServerFrame};
use crate::store::{Appended, Message, NewMessage, StoreError, format_ts};

pub mod messages;
pub mod registry;

pub use messages::{
    Delivery, GetPresence, Join, Leave, Outbox, Post, PostReply, SessionId, ToSession, Typing,
    Undeliverable,
};
pub use registry::{Registry, RoomDeps};

pub struct Room {
    id: RoomId,
    registry: Registry,
    head: Option<Head>,
    members: HashMap<SessionId, Member>,
    pending: VecDeque<(NewMessage, PostReply)>,
    committing: bool,
    /// Committed messages waiting for the ones before them.
    reorder: BTreeMap<Seq, (Arc<Message>, Instant)>,
    repair: Option<SpawnHandle>,
    idle: Option<SpawnHandle>,
}

/// What one broadcast carries: a single frame, or a flush's batch shared by every member.
enum Fanout {
    One(Delivery),
    Many(Arc<[Delivery]>),
}

struct Head {
    epoch: String,
    delivered: Seq,
}

struct Member {
    outbox: Outbox,
    user: PresenceUser,
    hidden: bool,
    /// `Some` while the member's backfill is being read: live frames wait here.
    backlog: Option<Vec<Delivery>>,
}

impl Actor for Room {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.registry.deps.metrics.rooms_active.inc();
        ctx.set_mailbox_capacity(4096);
        self.load_head(ctx);
        self.check_idle(ctx);
    }

    fn stopped(&mut self, ctx: &mut Context<Self>) {
        self.registry.deps.metrics.rooms_active.dec();
        self.registry.remove(&self.id, &ctx.address());
    }
}

impl Room {
    pub fn new(id: RoomId, registry: Registry) -> Room {
        Room {
            id,
            registry,
            head: None,
            members: HashMap::new(),
            pending: VecDeque::new(),
            committing: false,
            reorder: BTreeMap::new(),
            repair: None,
            idle: None,
        }
    }

    /// Blocks the mailbox until the head is known (or the store failed: then joins retry it).
    fn load_head(&mut self, ctx: &mut Context<Self>) {
        let (store, room) = (self.registry.deps.store.clone(), self.id.clone());
        ctx.wait(async move { store.head(&room).await }.into_actor(self).map(
            |res, act, _| match res {
                Ok(h) if act.head.is_none() => {
                    act.head = Some(Head {
                        epoch: h.epoch,
                        delivered: h.last_seq,
                    })
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(room = %act.id, error = %e, "room head unavailable"),
            },
        ));
    }

    fn check_idle(&mut self, ctx: &mut Context<Self>) {
        let busy = !self.members.is_empty() || !self.pending.is_empty() || self.committing;
        if busy {
            if let Some(h) = self.idle.take() {
                ctx.cancel_future(h);
            }
        } else if self.idle.is_none() {
            let after = Duration::from_millis(self.registry.deps.settings.idle_stop_ms);
            self.idle = Some(ctx.run_later(after, |act, ctx| {
                act.idle = None;
                if act.members.is_empty() && act.pending.is_empty() && !act.committing {
                    act.registry.remove(&act.id, &ctx.address());
                    ctx.stop();
                }
            }));
        }
    }

    // ----- sending to members -------------------------------------------------------------

    /// Sends to one member, honouring its backlog.
    fn push(member: &mut Member, frames: &Fanout) -> Result<(), Undeliverable> {
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
    fn broadcast(&mut self, frames: Fanout, skip: Option<&SessionId>, skip_user: Option<&str>) {
        let mut gone: Vec<(SessionId, bool)> = Vec::new();
        for (id, member) in self.members.iter_mut() {
            if skip == Some(id) || skip_user == Some(member.user.user.as_str()) {
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
    fn broadcast_frame(
        &mut self,
        frame: ByteString,
        skip: Option<&SessionId>,
        skip_user: Option<&str>,
    ) {
        let one = Fanout::One(Delivery {
            frame,
            committed: None,
        });
        self.broadcast(one, skip, skip_user);
    }

    /// Ends a membership the room could not keep (slow or vanished session).
    fn evict(&mut self, session: &SessionId, slow: bool) {
        if let Some(member) = self.members.remove(session) {
            if slow {
                self.registry.deps.metrics.slow_consumers.inc();
                tracing::info!(room = %self.id, session = %session, "slow consumer evicted");
                // A notice is never refused for size: the session learns it must close with 1013.
                member.outbox.reply(ToSession::Dropped {
                    room: self.id.clone(),
                    slow: true,
                });
            }
            self.announce_leave(&member.user, member.hidden);
        }
    }

    fn presence(&self) -> Vec<PresenceUser> {
        let mut seen: HashMap<&str, &PresenceUser> = HashMap::new();
        for m in self.members.values().filter(|m| !m.hidden) {
            seen.entry(m.user.user.as_str()).or_insert(&m.user);
        }
        let mut users: Vec<PresenceUser> = seen.into_values().cloned().collect();
        users.sort_by(|a, b| a.user.cmp(&b.user));
        users
    }

    fn has_user(&self, user: &str) -> bool {
        self.members
            .values()
            .any(|m| !m.hidden && m.user.user == user)
    }

    fn announce_leave(&mut self, user: &PresenceUser, hidden: bool) {
        if !hidden && !self.has_user(&user.user) {
            let frame = ServerFrame::PresenceDiff {
                room: &self.id,
                joins: &[],
                leaves: std::slice::from_ref(user),
            }
            .encode();
            self.broadcast_frame(frame, None, None);
        }
    }

    fn error_frame(r#ref: Option<&str>, code: ErrorCode, message: &str) -> ByteString {
        ServerFrame::Error {
            r#ref,
            code: code.as_str(),
            message,
            retry_after_ms: None,
        }
        .encode()
    }

    // ----- joining ------------------------------------------------------------------------

    fn join(&mut self, msg: Join, ctx: &mut Context<Self>) {
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
        if !msg.hidden && !self.has_user(&msg.user.user) {
            let frame = ServerFrame::PresenceDiff {
                room: &self.id,
                joins: std::slice::from_ref(&msg.user),
                leaves: &[],
            }
            .encode();
            self.broadcast_frame(frame, None, None);
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
    fn finish_join(
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
    fn send_frames(&mut self, session: &SessionId, frames: Vec<ByteString>, messages: u64) {
        if let Some(member) = self.members.get(session) {
            member.outbox.reply(ToSession::Replies { frames, messages });
        }
    }

    // ----- committing and delivering ------------------------------------------------------

    fn maybe_commit(&mut self, ctx: &mut Context<Self>) {
        if self.committing || self.pending.is_empty() {
            return;
        }
        self.committing = true;
        let n = self
            .pending
            .len()
            .min(self.registry.deps.settings.batch_max);
        let (batch, replies): (Vec<NewMessage>, Vec<PostReply>) = self.pending.drain(..n).unzip();
        let (store, room) = (self.registry.deps.store.clone(), self.id.clone());
        ctx.spawn(
            async move { store.append(&room, batch).await }
                .into_actor(self)
                .map(move |res, act, ctx| {
                    act.committing = false;
                    act.committed(res, replies, ctx);
                    act.maybe_commit(ctx);
                    act.check_idle(ctx);
                }),
        );
    }

    fn committed(
        &mut self,
        res: Result<crate::store::AppendOutcome, StoreError>,
        replies: Vec<PostReply>,
        ctx: &mut Context<Self>,
    ) {
        let outcome = match res {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(room = %self.id, error = %e, "append failed");
                for reply in replies {
                    self.answer(reply, Err(e.clone()));
                }
                return;
            }
        };
        let now = Instant::now();
        if self.head.is_none() {
            // No member can have joined without a head, so the first new seq is a safe start.
            let first = outcome
                .appended
                .iter()
                .filter(|a| !a.duplicate)
                .map(|a| a.message.seq)
                .min();
            if let Some(first) = first {
                self.head = Some(Head {
                    epoch: outcome.epoch.clone(),
                    delivered: first - 1,
                });
            }
        }
        for (appended, reply) in outcome.appended.into_iter().zip(replies) {
            if !appended.duplicate {
                self.registry.deps.metrics.messages_posted.inc();
                self.reorder
                    .insert(appended.message.seq, (appended.message.clone(), now));
            }
            self.answer(reply, Ok(appended));
        }
        self.flush(ctx);
    }

    /// Reports one post's outcome (before its message is broadcast).
    fn answer(&self, reply: PostReply, outcome: Result<Appended, StoreError>) {
        match reply {
            PostReply::Channel(tx) => {
                let _ = tx.send(outcome);
            }
            PostReply::Session { outbox, r#ref } => {
                let frame = match &outcome {
                    Ok(a) => ServerFrame::Ack {
                        r#ref: r#ref.as_deref(),
                        room: &self.id,
                        seq: a.message.seq,
                        id: &a.message.id,
                        ts: &format_ts(&a.message.ts),
                        client_msg_id: a.message.client_msg_id.as_deref(),
                        duplicate: a.duplicate,
                    }
                    .encode(),
                    Err(StoreError::Unavailable(_)) => Self::error_frame(
                        r#ref.as_deref(),
                        ErrorCode::Unavailable,
                        "store unavailable; retry with the same client_msg_id",
                    ),
                    Err(StoreError::Internal(_)) => {
                        Self::error_frame(r#ref.as_deref(), ErrorCode::Internal, "internal error")
                    }
                };
                outbox.reply(ToSession::Reply(frame));
            }
        }
    }

    /// Delivers every message that is next in order, in one shared batch; schedules a repair if a
    /// gap remains.
    pub fn flush(&mut self, ctx: &mut Context<Self>) {
        let mut ready: Vec<Delivery> = Vec::new();
        while let Some(head) = &mut self.head {
            let Some(entry) = self.reorder.first_entry() else {
                break;
            };
            let seq = *entry.key();
            if seq <= head.delivered {
                entry.remove(); // already delivered (e.g. repaired and then arrived)
                continue;
            }
            if seq != head.delivered + 1 {
                break;
            }
            head.delivered = seq;
            let (message, committed) = entry.remove();
            ready.push(Delivery {
                frame: ServerFrame::Message(&message).encode(),
                committed: Some(committed),
            });
        }
        match ready.len() {
            0 => {}
            1 => {
                let one = ready.pop().map(Fanout::One);
                if let Some(one) = one {
                    self.broadcast(one, None, None);
                }
            }
            _ => self.broadcast(Fanout::Many(ready.into()), None, None),
        }
        if self.reorder.is_empty() {
            if let Some(h) = self.repair.take() {
                ctx.cancel_future(h);
            }
        } else if self.repair.is_none() {
            let after = Duration::from_millis(self.registry.deps.settings.gap_repair_ms);
            self.repair = Some(ctx.run_later(after, |act, ctx| {
                act.repair = None;
                act.repair_gap(ctx);
            }));
        }
    }

    /// Fetches the missing seqs between what was delivered and the first held message.
    fn repair_gap(&mut self, ctx: &mut Context<Self>) {
        let (Some(head), Some((&first, _))) = (&self.head, self.reorder.first_key_value()) else {
            return;
        };
        let (after, upto) = (head.delivered, first - 1);
        if upto <= after {
            return self.flush(ctx);
        }
        let (store, room) = (self.registry.deps.store.clone(), self.id.clone());
        ctx.spawn(
            async move { store.range(&room, after, upto).await }
                .into_actor(self)
                .map(|res, act, ctx| {
                    match res {
                        Ok(messages) => {
                            let now = Instant::now();
                            act.registry
                                .deps
                                .metrics
                                .gaps_repaired
                                .inc_by(messages.len() as u64);
                            for m in messages {
                                act.reorder.insert(m.seq, (Arc::new(m), now));
                            }
                        }
                        Err(e) => tracing::warn!(room = %act.id, error = %e, "gap repair failed"),
                    }
                    act.flush(ctx);
                }),
        );
    }
}

impl Handler<Join> for Room {
    type Result = ();

    fn handle(&mut self, msg: Join, ctx: &mut Context<Self>) {
        self.join(msg, ctx);
    }
}

impl Handler<Leave> for Room {
    type Result = ();

    fn handle(&mut self, msg: Leave, ctx: &mut Context<Self>) {
        let member = self.members.remove(&msg.session);
        if let Some(member) = &member {
            if msg.reply {
                let frame = ServerFrame::Left {
                    r#ref: msg.r#ref.as_deref(),
                    room: &self.id,
                }
                .encode();
                member.outbox.reply(ToSession::Reply(frame));
            }
            self.announce_leave(&member.user, member.hidden);
        }
        self.check_idle(ctx);
    }
}

impl Handler<Post> for Room {
    type Result = ();

    fn handle(&mut self, msg: Post, ctx: &mut Context<Self>) {
        self.pending.push_back((msg.message, msg.reply));
        self.check_idle(ctx);
        self.maybe_commit(ctx);
    }
}

impl Handler<Typing> for Room {
    type Result = ();

    fn handle(&mut self, msg: Typing, _: &mut Context<Self>) {
        if !self.members.contains_key(&msg.session) {
            return;
        }
        let frame = ServerFrame::Typing {
            room: &self.id,
            user: &msg.user,
        }
        .encode();
        self.broadcast_frame(frame, Some(&msg.session), Some(&msg.user));
    }
}

impl Handler<GetPresence> for Room {
    type Result = MessageResult<GetPresence>;

    fn handle(&mut self, _: GetPresence, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.presence())
    }
}
