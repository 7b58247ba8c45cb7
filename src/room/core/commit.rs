//! Committing and delivering: group commit (one append in flight, the next batch waiting),
//! answers to posters before the broadcast, delivery in strict `seq` order with gap repair, the
//! two faults of PROTOCOL §6 (one entry's data failing its batch; a history that went backwards
//! under its epoch), and read cursors, batched the same way.

use std::sync::Arc;

use super::cluster::committed_at;
use super::{Block, Count, Effect, Handles, HeadWhy, InCommit, REPAIR_MAX, RoomCore, Timer};
use crate::bridge::envelope::RoomEvent;
use crate::domain::{Message, NewMessage};
use crate::ids::{Epoch, Seq};
use crate::protocol::ServerFrame;
use crate::room::delivery::{Carries, Delivery, Fanout};
use crate::room::sequencer::{CommitVerdict, HeadVerdict};
use crate::store::{AppendOutcome, RoomHead, StoreError};

impl<H: Handles> RoomCore<H> {
    /// Sends the next batch of posts, if none is in flight.
    pub(super) fn maybe_commit(&mut self) {
        let Some(batch) = self.posts.take_batch() else {
            return;
        };
        let (entries, replies): (Vec<NewMessage>, Vec<H::PostReply>) = batch.into_iter().unzip();
        let floor = self.seq.known_committed();
        self.commit = Some(InCommit { replies, floor });
        self.emit(Effect::Append(entries));
    }

    /// An append's outcome, for a batch sent when the room knew `floor` was committed.
    pub(super) fn appended(
        &mut self,
        batch: Vec<NewMessage>,
        result: Result<AppendOutcome, StoreError>,
    ) {
        self.posts.done();
        let Some(InCommit { replies, floor }) = self.commit.take() else {
            return;
        };
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(StoreError::Invalid(e)) if replies.len() > 1 => {
                // One entry's data failed the whole batch: its entries go again one by one, in
                // their order and before anything newer, so only that one fails.
                tracing::warn!(room = %self.id, error = %e, batch = replies.len(),
                    "a batch failed for one message's data; retrying its messages one by one");
                self.posts
                    .retry_one_by_one(batch.into_iter().zip(replies).collect());
                return;
            }
            Err(e) => {
                tracing::warn!(room = %self.id, error = %e, "append failed");
                for to in replies {
                    let outcome = Err(e.clone());
                    self.emit(Effect::Answer { to, outcome });
                }
                // It may have committed before the answer was lost: if nobody retried it, its
                // entries would reach nobody until the room's next message.
                if !matches!(e, StoreError::Invalid(_) | StoreError::Refused(_)) {
                    self.catch_up_from(floor);
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
            CommitVerdict::Deliver => self.deliver_committed(outcome, replies),
            CommitVerdict::Rewound { base } => self.reset_epoch(base, Some((outcome, replies))),
            CommitVerdict::OtherEpoch { base } => {
                // Did this room miss a reset made elsewhere, or make one after the append was
                // sent? The store's head says; nothing is acked until it does.
                self.block = Some(Block::Confirming {
                    base,
                    outcome,
                    replies,
                });
                self.emit(Effect::ReadHead(HeadWhy::Confirm));
            }
        }
    }

    /// The head read that [`Block::Confirming`] waited for.
    pub(super) fn confirmed(&mut self, result: Result<RoomHead, StoreError>) {
        let Some(Block::Confirming {
            base,
            mut outcome,
            replies,
        }) = self.block.take()
        else {
            return;
        };
        if let (Ok(h), Some(epoch)) = (result, self.seq.epoch()) {
            if h.epoch != *epoch {
                self.apply_reset(h.epoch.clone(), base.unwrap_or(h.last_seq), h.last_seq);
            }
            outcome.epoch = h.epoch;
        }
        self.deliver_committed(outcome, replies);
    }

    /// Answers a commit's posts, then delivers its new entries: locally at once, to the other
    /// nodes through the bus (never waiting for it).
    fn deliver_committed(&mut self, outcome: AppendOutcome, replies: Vec<H::PostReply>) {
        let mut new: Vec<Arc<Message>> = Vec::with_capacity(outcome.appended.len());
        let mut again: Vec<Arc<Message>> = Vec::new();
        for (appended, to) in outcome.appended.into_iter().zip(replies) {
            let outcome = match appended {
                Ok(appended) => {
                    if appended.duplicate {
                        again.push(appended.message.clone());
                    } else {
                        self.emit(Effect::Count(Count::Posted(appended.message.kind)));
                        new.push(appended.message.clone());
                    }
                    Ok(appended)
                }
                Err(refusal) => Err(StoreError::Refused(refusal)),
            };
            self.emit(Effect::Answer { to, outcome });
        }
        self.seq.committed(&outcome.epoch, &new, self.now.at);
        // A retry of a post whose first answer was lost: its entry was committed then, and was
        // perhaps never delivered nor published. Delivered here if it was not, and published
        // again (the other nodes ignore what they have).
        for m in &again {
            let at = committed_at(self.now, &m.ts);
            self.seq.offer(m.clone(), at);
        }
        new.extend(again);
        new.sort_by_key(|m| m.seq);
        if let (true, Some(last)) = (self.clustered(), new.last()) {
            let seq = Some(last.seq);
            let event = RoomEvent::Messages { messages: new };
            self.emit(Effect::Publish { seq, event });
        }
        self.flush();
    }

    /// The history went backwards under the room's epoch (or another node already gave it a new
    /// one): take a new epoch in the store, retried until the store answers, then tell the members
    /// and the other nodes and answer `stash`. Live delivery continues after `base` (default: the
    /// store's head).
    pub(super) fn reset_epoch(
        &mut self,
        base: Option<Seq>,
        stash: Option<(AppendOutcome, Vec<H::PostReply>)>,
    ) {
        let Some(old) = self.seq.epoch().cloned() else {
            // No epoch to replace (callers have one): never drop the posts' answers.
            if let Some((outcome, replies)) = stash {
                self.deliver_committed(outcome, replies);
            }
            return;
        };
        self.block = Some(Block::Resetting {
            old: old.clone(),
            base,
            stash,
        });
        self.emit(Effect::ResetEpoch { old });
    }

    /// The store's answer to [`Effect::ResetEpoch`].
    pub(super) fn epoch_reset(&mut self, result: Result<RoomHead, StoreError>) {
        let head = match result {
            Ok(head) => head,
            Err(e) => {
                tracing::warn!(room = %self.id, error = %e, "cannot reset the room's epoch yet");
                let retry = self
                    .settings
                    .gap_repair
                    .max(std::time::Duration::from_millis(100));
                return self.schedule(Timer::ResetRetry, retry);
            }
        };
        let Some(Block::Resetting { base, stash, .. }) = self.block.take() else {
            return;
        };
        let base = base.unwrap_or(head.last_seq);
        self.apply_reset(head.epoch.clone(), base, head.last_seq);
        if self.clustered() {
            let event = RoomEvent::Reset {
                epoch: head.epoch.clone(),
            };
            self.emit(Effect::Publish {
                seq: Some(base),
                event,
            });
        }
        if let Some((mut outcome, replies)) = stash {
            outcome.epoch = head.epoch;
            self.deliver_committed(outcome, replies);
        }
        self.flush();
    }

    /// Starts the room over under `epoch`: what was held is dropped, members are told to reload
    /// (`reset`), and live delivery continues after `base`; `known` is the committed head.
    pub(super) fn apply_reset(&mut self, epoch: Epoch, base: Seq, known: Seq) {
        let old = self.seq.epoch().cloned();
        tracing::warn!(room = %self.id, old_epoch = ?old, epoch = %epoch, last_seq = base.get(),
            "room history was reset: new epoch, members told to reload");
        self.seq.reset(&epoch, base, known);
        let frame = ServerFrame::Reset {
            room: &self.id,
            epoch: &epoch,
            last_seq: base,
        }
        .encode();
        let reset = Delivery {
            frame,
            committed: None,
            carries: Carries::Reset {
                epoch,
                last_seq: base,
            },
        };
        self.broadcast(Fanout::One(reset), None, None);
    }

    pub(super) fn set_head(&mut self, result: Result<RoomHead, StoreError>) {
        match result {
            Ok(h) => {
                self.seq.start(&h.epoch, h.last_seq);
            }
            Err(e) => tracing::warn!(room = %self.id, error = %e, "room head unavailable"),
        }
    }

    /// Reads the head to find what was committed beyond `floor` unseen; one read at a time (a
    /// request during one is owed, and read after it: it may have committed after that read).
    pub(super) fn catch_up_from(&mut self, floor: Seq) {
        if self.catching.is_some() {
            self.owed = Some(self.owed.map_or(floor, |f| f.min(floor)));
        } else {
            self.catching = Some(floor);
            self.emit(Effect::ReadHead(HeadWhy::CatchUp { floor }));
        }
    }

    /// Reads the head again later (the store is down): until it answers, entries committed
    /// beyond `floor` may be unseen.
    pub(super) fn owe_catch_up(&mut self, floor: Seq) {
        self.owed = Some(self.owed.map_or(floor, |f| f.min(floor)));
        let retry = self
            .settings
            .gap_repair
            .max(std::time::Duration::from_millis(100));
        self.schedule(Timer::Recheck, retry);
    }

    /// A catch-up's head: entries beyond what the room knew were committed unseen (a lost
    /// answer, a node that died before publishing, envelopes the bus lost): repaired here, and
    /// the other nodes told the head, since they missed them too.
    pub(super) fn caught_up_head(&mut self, h: RoomHead, floor: Seq) {
        let known = self.seq.known_committed();
        if self.clustered() && h.last_seq > known && self.seq.epoch() == Some(&h.epoch) {
            let event = RoomEvent::Head;
            self.emit(Effect::Publish {
                seq: Some(h.last_seq),
                event,
            });
        }
        self.observe_head(h, floor);
    }

    /// What a read of the store's head says, for a read sent when the room knew `floor` was
    /// committed: another epoch (a reset elsewhere) is adopted; a head below `floor` is a rewind
    /// (new epoch); otherwise the room repairs up to it.
    pub(super) fn observe_head(&mut self, h: RoomHead, floor: Seq) {
        match self.seq.check_head(&h.epoch, h.last_seq, floor) {
            HeadVerdict::Started => {}
            HeadVerdict::Adopt { epoch, last_seq } => {
                self.apply_reset(epoch, last_seq, last_seq);
                self.flush();
            }
            HeadVerdict::Rewound => self.reset_epoch(None, None),
            HeadVerdict::Ahead(_) => self.flush(),
        }
    }

    /// Delivers every entry that is next in order, in one shared batch; a gap left over is
    /// repaired after `room.gap_repair_ms` unless something fills it first.
    pub(super) fn flush(&mut self) {
        let mut ready: Vec<Delivery> = self
            .seq
            .ready()
            .into_iter()
            .map(|(message, committed)| Delivery {
                frame: ServerFrame::Entry(&message).encode(),
                committed: Some(committed),
                carries: Carries::Entry {
                    seq: message.seq,
                    kind: message.kind,
                },
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
        if self.seq.has_gap() {
            self.schedule(Timer::Repair, self.settings.gap_repair);
        } else {
            self.cancel(Timer::Repair);
        }
    }

    /// Reads the range the sequencer names (every gap at once, at most `REPAIR_MAX` seqs).
    pub(super) fn repair_gap(&mut self) {
        match self.seq.repair_range(REPAIR_MAX) {
            Some((after, upto)) => self.emit(Effect::Repair { after, upto }),
            None => self.flush(),
        }
    }

    pub(super) fn repaired(&mut self, result: Result<Vec<Message>, StoreError>) {
        match result {
            Ok(messages) => {
                let filled = self.offer_all(messages);
                if filled > 0 {
                    self.emit(Effect::Count(Count::GapsRepaired(filled)));
                }
            }
            Err(e) => tracing::warn!(room = %self.id, error = %e, "gap repair failed"),
        }
        self.flush();
    }

    /// Sends the next batch of read-cursor moves, if none is in flight.
    pub(super) fn maybe_read(&mut self) {
        let Some(batch) = self.reads.take_batch() else {
            return;
        };
        let mut pairs = Vec::with_capacity(batch.len());
        for (user, seq, reply) in batch {
            pairs.push((user, seq));
            self.reading.push(reply);
        }
        self.emit(Effect::MarkRead(pairs));
    }

    pub(super) fn reads_marked(
        &mut self,
        result: Result<Vec<(crate::store::ReadState, bool)>, StoreError>,
    ) {
        self.reads.done();
        let replies = std::mem::take(&mut self.reading);
        match result {
            Ok(states) if states.len() == replies.len() => {
                for (to, state) in replies.into_iter().zip(states) {
                    self.emit(Effect::AnswerRead {
                        to,
                        outcome: Ok(state),
                    });
                }
            }
            other => {
                let e = match other {
                    Err(e) => e,
                    Ok(_) => StoreError::Internal("mark_read answered short".into()),
                };
                tracing::warn!(room = %self.id, error = %e, "moving read cursors failed");
                for to in replies {
                    let outcome = Err(e.clone());
                    self.emit(Effect::AnswerRead { to, outcome });
                }
            }
        }
    }
}
