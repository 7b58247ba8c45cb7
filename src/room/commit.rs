//! Committing and delivering: group commit (one append in flight, the next batch accumulating),
//! replies to posters before the broadcast, and delivery in strict `seq` order with gap repair.
//!
//! Two faults are handled here (PROTOCOL §6): a batch that the store refuses for one message's data
//! is retried one message at a time, so only that message fails; and a commit or head read that
//! shows the room's history went backwards under its epoch (a restore from backup) gives the room
//! a new epoch before anything is acked, and tells every member with a `reset` frame.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::sequencer::{CommitVerdict, HeadVerdict};
use super::{Delivery, Fanout, PostReply, Room, ToSession};
use crate::bridge::envelope::RoomEvent;
use crate::ids::Seq;
use crate::protocol::ServerFrame;
use crate::store::{AppendOutcome, Appended, NewMessage, RoomHead, StoreError, format_ts};

/// Most messages one repair reads; a longer gap is repaired in several reads.
const REPAIR_MAX: i64 = 1000;

impl Room {
    pub(super) fn maybe_commit(&mut self, ctx: &mut Context<Self>) {
        if self.committing || self.pending.is_empty() {
            return;
        }
        self.committing = true;
        let n = if self.solo > 0 {
            self.solo -= 1;
            1
        } else {
            self.pending
                .len()
                .min(self.registry.deps.settings.batch_max)
        };
        let (batch, replies): (Vec<NewMessage>, Vec<PostReply>) = self.pending.drain(..n).unzip();
        let (store, room) = (self.registry.deps.store.clone(), self.id.clone());
        let floor = self.seq.known_committed();
        ctx.spawn(
            async move {
                let res = store.append(&room, &batch).await;
                (res, batch)
            }
            .into_actor(self)
            .map(move |(res, batch), act, ctx| {
                act.committing = false;
                act.committed(res, batch, replies, floor, ctx);
                act.maybe_commit(ctx);
                act.check_idle(ctx);
            }),
        );
    }

    /// The outcome of an append issued when the room knew `floor` was committed.
    pub(super) fn committed(
        &mut self,
        res: Result<AppendOutcome, StoreError>,
        batch: Vec<NewMessage>,
        replies: Vec<PostReply>,
        floor: Seq,
        ctx: &mut Context<Self>,
    ) {
        let outcome = match res {
            Ok(o) => o,
            Err(StoreError::Invalid(e)) if replies.len() > 1 => {
                // One message's data failed the whole batch: commit its messages one by one, in
                // their order and before anything newer, so only that one fails.
                tracing::warn!(room = %self.id, error = %e, batch = replies.len(),
                    "a batch failed for one message's data; retrying its messages one by one");
                self.solo += replies.len();
                for post in batch.into_iter().zip(replies).rev() {
                    self.pending.push_front(post);
                }
                return;
            }
            Err(e) => {
                tracing::warn!(room = %self.id, error = %e, "append failed");
                for reply in replies {
                    self.answer(reply, Err(e.clone()));
                }
                return;
            }
        };
        let first_new = outcome
            .appended
            .iter()
            .flatten()
            .filter(|a| !a.duplicate)
            .map(|a| a.message.seq)
            .min();
        match self.seq.check_commit(first_new, &outcome.epoch, floor) {
            CommitVerdict::Deliver => {}
            CommitVerdict::Rewound { base } => {
                return self.reset_epoch(base, Some((outcome, replies)), ctx);
            }
            CommitVerdict::OtherEpoch { base } => {
                return self.confirm_epoch(base, outcome, replies, ctx);
            }
        }
        self.deliver_committed(outcome, replies, ctx);
    }

    /// A commit came back under another epoch than the room's: read the store's to tell whether
    /// this room missed a reset made elsewhere (adopt it) or made one after the append was issued
    /// (nothing to do), then ack.
    fn confirm_epoch(
        &mut self,
        base: Option<Seq>,
        outcome: AppendOutcome,
        replies: Vec<PostReply>,
        ctx: &mut Context<Self>,
    ) {
        let (store, room) = (self.registry.deps.store.clone(), self.id.clone());
        self.committing = true;
        ctx.wait(async move { store.head(&room).await }.into_actor(self).map(
            move |res, act, ctx| {
                act.committing = false;
                let mut outcome = outcome;
                if let (Ok(h), Some(epoch)) = (res, act.seq.epoch()) {
                    if h.epoch != epoch {
                        act.apply_reset(h.epoch.clone(), base.unwrap_or(h.last_seq), h.last_seq);
                    }
                    outcome.epoch = h.epoch;
                }
                act.deliver_committed(outcome, replies, ctx);
                act.maybe_commit(ctx);
            },
        ));
    }

    /// Acks a commit's posts, then delivers its new messages (locally first, then to the others).
    fn deliver_committed(
        &mut self,
        outcome: AppendOutcome,
        replies: Vec<PostReply>,
        ctx: &mut Context<Self>,
    ) {
        let now = Instant::now();
        let mut new = Vec::with_capacity(outcome.appended.len());
        for (appended, reply) in outcome.appended.into_iter().zip(replies) {
            match appended {
                Ok(appended) => {
                    if !appended.duplicate {
                        let kind = appended.message.kind.as_str();
                        self.registry.deps.metrics.posted(kind);
                        new.push(appended.message.clone());
                    }
                    self.answer(reply, Ok(appended));
                }
                Err(refusal) => self.answer(reply, Err(StoreError::Refused(refusal))),
            }
        }
        self.seq.committed(&outcome.epoch, &new, now);
        // Local members first (below), the other nodes through the bridge: never wait for Redis.
        self.publish_committed(new);
        self.flush(ctx);
    }

    /// The room's history went backwards under its epoch (or another node already gave it a new
    /// one): take a new epoch in the store (retried until the store answers; the mailbox waits, so
    /// nothing is acked meanwhile), tell the members and the other nodes, then ack `stash`.
    /// Live delivery continues after `base` (default: the store's head).
    pub(super) fn reset_epoch(
        &mut self,
        base: Option<Seq>,
        stash: Option<(AppendOutcome, Vec<PostReply>)>,
        ctx: &mut Context<Self>,
    ) {
        let Some(old) = self.seq.epoch().map(str::to_owned) else {
            // No epoch to replace (callers have one): never drop the posts' answers.
            if let Some((outcome, replies)) = stash {
                self.deliver_committed(outcome, replies, ctx);
            }
            return;
        };
        let (store, room) = (self.registry.deps.store.clone(), self.id.clone());
        let retry = Duration::from_millis(self.registry.deps.settings.gap_repair_ms.max(100));
        self.committing = true;
        ctx.wait(
            async move {
                loop {
                    match store.reset_epoch(&room, &old).await {
                        Ok(head) => return head,
                        Err(e) => {
                            tracing::warn!(room = %room, error = %e, "cannot reset the room's epoch yet");
                            tokio::time::sleep(retry).await;
                        }
                    }
                }
            }
            .into_actor(self)
            .map(move |head, act, ctx| {
                act.committing = false;
                let base = base.unwrap_or(head.last_seq);
                act.apply_reset(head.epoch.clone(), base, head.last_seq);
                if let Some(cluster) = act.cluster() {
                    let event = RoomEvent::Reset { epoch: head.epoch.clone() };
                    cluster.publish(&act.id, Some(base), event);
                }
                if let Some((mut outcome, replies)) = stash {
                    outcome.epoch = head.epoch;
                    act.deliver_committed(outcome, replies, ctx);
                }
                act.flush(ctx);
                act.maybe_commit(ctx);
            }),
        );
    }

    /// Starts the room over under `epoch`: what was held is dropped, members are told to reload
    /// (`reset`), and live delivery continues after `base`; `known` is the committed head.
    pub(super) fn apply_reset(&mut self, epoch: String, base: Seq, known: Seq) {
        let old = self.seq.epoch().unwrap_or_default().to_owned();
        tracing::warn!(room = %self.id, old_epoch = %old, epoch = %epoch, last_seq = base.get(),
            "room history was reset: new epoch, members told to reload");
        self.seq.reset(&epoch, base, known);
        let frame = ServerFrame::Reset {
            room: &self.id,
            epoch: &epoch,
            last_seq: base,
        }
        .encode();
        self.broadcast_frame(frame, None, None);
    }

    /// What a read of the store's head says about this room, for a read issued when the room knew
    /// `floor` was committed: another epoch (a reset elsewhere) is adopted; a head below `floor` is
    /// a rewind (new epoch); otherwise the room repairs up to it.
    pub(super) fn observe_head(&mut self, h: RoomHead, floor: Seq, ctx: &mut Context<Self>) {
        match self.seq.check_head(&h.epoch, h.last_seq, floor) {
            HeadVerdict::Started => {}
            HeadVerdict::Adopt { epoch, last_seq } => {
                self.apply_reset(epoch, last_seq, last_seq);
                self.flush(ctx);
            }
            HeadVerdict::Rewound => self.reset_epoch(None, None, ctx),
            HeadVerdict::Ahead(_) => self.flush(ctx),
        }
    }

    /// Reports one post's outcome (before its message is broadcast).
    pub(super) fn answer(&self, reply: PostReply, outcome: Result<Appended, StoreError>) {
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
                    Err(e) => {
                        let (code, text) = e.wire();
                        Self::error_frame(r#ref.as_deref(), code, text)
                    }
                };
                outbox.reply(ToSession::Reply(frame));
            }
        }
    }

    /// Delivers every message that is next in order, in one shared batch; schedules a repair if a
    /// gap remains.
    pub(super) fn flush(&mut self, ctx: &mut Context<Self>) {
        let mut ready: Vec<Delivery> = self
            .seq
            .ready()
            .into_iter()
            .map(|(message, committed)| Delivery {
                frame: ServerFrame::Entry(&message).encode(),
                committed: Some(committed),
                seq: Some(message.seq),
                kind: message.kind,
            })
            .collect();
        match ready.len() {
            0 => {}
            1 => {
                if let Some(one) = ready.pop() {
                    self.broadcast(Fanout::One(one), None, None);
                }
            }
            _ => self.broadcast(Fanout::Many(ready.into()), None, None),
        }
        if !self.seq.has_gap() {
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

    /// Reads the range the sequencer names (every gap at once, at most `REPAIR_MAX` seqs).
    pub(super) fn repair_gap(&mut self, ctx: &mut Context<Self>) {
        let Some((after, upto)) = self.seq.repair_range(REPAIR_MAX) else {
            return self.flush(ctx);
        };
        let (store, room) = (self.registry.deps.store.clone(), self.id.clone());
        ctx.spawn(
            async move { store.range(&room, after, upto).await }
                .into_actor(self)
                .map(|res, act, ctx| {
                    match res {
                        Ok(messages) => {
                            let filled = act.offer_all(messages);
                            act.registry.deps.metrics.gaps_repaired.inc_by(filled);
                        }
                        Err(e) => tracing::warn!(room = %act.id, error = %e, "gap repair failed"),
                    }
                    act.flush(ctx);
                }),
        );
    }

    /// Hands messages read from the store to the sequencer; how many were new here.
    pub(super) fn offer_all(&mut self, messages: Vec<crate::domain::Message>) -> u64 {
        let now = Instant::now();
        let mut filled = 0;
        for m in messages {
            filled += u64::from(self.seq.offer(Arc::new(m), now));
        }
        filled
    }
}
