//! Committing and delivering: group commit (one append in flight, the next batch accumulating),
//! replies to posters before the broadcast, and delivery in strict `seq` order with gap repair.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::{Delivery, Fanout, Head, PostReply, Room, ToSession};
use crate::protocol::{ErrorCode, ServerFrame};
use crate::store::{AppendOutcome, Appended, NewMessage, StoreError, format_ts};

/// Most messages one repair reads; a longer gap is repaired in several reads.
const REPAIR_MAX: i64 = 1000;

impl Room {
    pub(super) fn maybe_commit(&mut self, ctx: &mut Context<Self>) {
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

    pub(super) fn committed(
        &mut self,
        res: Result<AppendOutcome, StoreError>,
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
        let mut new = Vec::with_capacity(outcome.appended.len());
        for (appended, reply) in outcome.appended.into_iter().zip(replies) {
            if !appended.duplicate {
                self.registry.deps.metrics.messages_posted.inc();
                new.push(appended.message.clone());
                self.reorder
                    .insert(appended.message.seq, (appended.message.clone(), now));
            }
            self.answer(reply, Ok(appended));
        }
        // Local members first (below), the other nodes through the bridge: never wait for Redis.
        self.publish_committed(new);
        self.flush(ctx);
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
    pub(super) fn flush(&mut self, ctx: &mut Context<Self>) {
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
                seq: Some(seq),
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
        let behind = self
            .head
            .as_ref()
            .is_some_and(|h| self.known_head > h.delivered);
        if self.reorder.is_empty() && !behind {
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

    /// Fetches every missing seq up to the highest held message (or the highest seq known to be
    /// committed, if higher), at most `REPAIR_MAX` at a time, in one read. All gaps at once: when
    /// two nodes interleave commits in one room while Redis is down, every other seq is a gap, and
    /// filling one per read would fall further behind with every message.
    pub(super) fn repair_gap(&mut self, ctx: &mut Context<Self>) {
        let Some(head) = &self.head else {
            return;
        };
        let after = head.delivered;
        let held = self.reorder.last_key_value().map_or(0, |(&last, _)| last);
        let upto = held.max(self.known_head).min(after + REPAIR_MAX);
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
                            let delivered = act.head.as_ref().map_or(0, |h| h.delivered);
                            let mut filled = 0;
                            for m in messages.into_iter().filter(|m| m.seq > delivered) {
                                // Held messages keep their own commit instant.
                                act.reorder.entry(m.seq).or_insert_with(|| {
                                    filled += 1;
                                    (Arc::new(m), now)
                                });
                            }
                            act.registry.deps.metrics.gaps_repaired.inc_by(filled);
                        }
                        Err(e) => tracing::warn!(room = %act.id, error = %e, "gap repair failed"),
                    }
                    act.flush(ctx);
                }),
        );
    }
}
