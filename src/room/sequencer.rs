//! The room's ordering as a plain state machine: what has been delivered, what waits for the seqs
//! before it, what is known to be committed elsewhere, and therefore what to repair and when the
//! history went backwards. No actor, no clock, no I/O: the [`Room`](super::Room) feeds it inputs
//! (a local commit, another node's envelope, a store read, a head notice) and acts on its outputs
//! (messages ready in order, a range to repair, a verdict on a commit or a head).
//!
//! Invariant: [`Sequencer::ready`] yields `delivered + 1, + 2, …` and nothing else, so whatever
//! the inputs' order, duplication or loss, every member sees each seq once, in order; a seq that
//! never arrives is a gap that [`Sequencer::repair_range`] names until a store read fills it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use crate::domain::Message;
use crate::ids::{Epoch, Seq};

/// A room's ordering state (see the module doc).
#[derive(Default)]
pub struct Sequencer {
    head: Option<Head>,
    /// Committed messages waiting for the ones before them, with their commit instant.
    held: BTreeMap<Seq, (Arc<Message>, Instant)>,
    /// The highest seq known to be committed (other nodes' head notices, store reads).
    known: Seq,
}

struct Head {
    epoch: Epoch,
    delivered: Seq,
}

/// What to do with a commit's result (see [`Sequencer::check_commit`]).
#[derive(Debug, PartialEq, Eq)]
pub enum CommitVerdict {
    /// Ack and deliver.
    Deliver,
    /// The store handed out a seq already known to be committed: its history went backwards (a
    /// restore from backup). Take a new epoch before acking; live delivery continues after `base`.
    Rewound { base: Option<Seq> },
    /// The commit came back under another epoch: read the store's to tell whether this room
    /// missed a reset made elsewhere, then ack.
    OtherEpoch { base: Option<Seq> },
}

/// What a read of the store's head means (see [`Sequencer::check_head`]).
#[derive(Debug, PartialEq, Eq)]
pub enum HeadVerdict {
    /// The room had no head yet: it now starts there.
    Started,
    /// Another node reset the room's history: adopt its epoch (the members are told to reload).
    Adopt { epoch: Epoch, last_seq: Seq },
    /// The store is behind what this room knew was committed: take a new epoch.
    Rewound,
    /// Same history: repair up to `last_seq` if behind.
    Ahead(Seq),
}

/// How to answer a join (see [`Sequencer::plan_join`]).
#[derive(Debug, PartialEq, Eq)]
pub enum JoinPlan {
    /// The room has no head yet: read it first.
    NoHead,
    /// The client saw more than this node delivered: catch up from the store first.
    CatchUp,
    /// Join at `last_seq`; `backfill` is the range `(after, upto]` to read first, if any.
    Join {
        epoch: Epoch,
        last_seq: Seq,
        recovered: bool,
        backfill: Option<(Seq, Seq)>,
    },
}

impl Sequencer {
    pub fn new() -> Sequencer {
        Sequencer::default()
    }

    /// The room's epoch, once its head is known.
    pub fn epoch(&self) -> Option<&Epoch> {
        self.head.as_ref().map(|h| &h.epoch)
    }

    /// The highest seq delivered, once the head is known.
    pub fn delivered(&self) -> Option<Seq> {
        self.head.as_ref().map(|h| h.delivered)
    }

    /// Starts at the store's head, if the room has none yet (a later read is not a start).
    pub fn start(&mut self, epoch: &Epoch, last_seq: Seq) -> bool {
        if self.head.is_some() {
            return false;
        }
        self.head = Some(Head {
            epoch: epoch.clone(),
            delivered: last_seq,
        });
        self.known = self.known.max(last_seq);
        true
    }

    /// The highest seq this room knows to be committed: delivered, held, or announced. Whatever the
    /// store commits after this is read must come after it (else the history went backwards).
    pub fn known_committed(&self) -> Seq {
        let delivered = self.delivered().unwrap_or_default();
        let held = self.held.last_key_value().map_or(Seq::ZERO, |(&s, _)| s);
        delivered.max(held).max(self.known)
    }

    /// Judges a commit issued when [`Sequencer::known_committed`] was `floor`: `first_new` is its
    /// lowest new seq (none if every post was a duplicate), `epoch` the epoch it came back with.
    /// Knowledge gained while the append ran proves nothing (another node may have committed after
    /// it, or a repair may have read this very commit), hence the floor.
    pub fn check_commit(&self, first_new: Option<Seq>, epoch: &Epoch, floor: Seq) -> CommitVerdict {
        let Some(head) = &self.head else {
            return CommitVerdict::Deliver;
        };
        let base = first_new.map(|s| s - 1);
        if first_new.is_some_and(|s| s <= floor) {
            CommitVerdict::Rewound { base }
        } else if *epoch != head.epoch {
            CommitVerdict::OtherEpoch { base }
        } else {
            CommitVerdict::Deliver
        }
    }

    /// A local commit's new messages (in seq order). A room without a head starts just before the
    /// first of them: no member can have joined without a head.
    pub fn committed(&mut self, epoch: &Epoch, messages: &[Arc<Message>], now: Instant) {
        if let Some(first) = messages.first() {
            self.start(epoch, first.seq - 1);
        }
        for m in messages {
            self.held.insert(m.seq, (m.clone(), now));
        }
    }

    /// A committed message from elsewhere (another node's envelope, a repair, a catch-up read).
    /// Ignored without a head (the head read includes it) or if already delivered; a message
    /// already held keeps its own commit instant. True if it was new here.
    pub fn offer(&mut self, message: Arc<Message>, committed: Instant) -> bool {
        let Some(delivered) = self.delivered() else {
            return false;
        };
        if message.seq <= delivered || self.held.contains_key(&message.seq) {
            return false;
        }
        self.held.insert(message.seq, (message, committed));
        true
    }

    /// Learns that the room's head is at least `seq` (a repair fetches up to it).
    pub fn learn_head(&mut self, seq: Seq) {
        self.known = self.known.max(seq);
    }

    /// Takes every message that is next in order, advancing `delivered`.
    pub fn ready(&mut self) -> Vec<(Arc<Message>, Instant)> {
        let mut out = Vec::new();
        let Some(head) = &mut self.head else {
            return out;
        };
        while let Some(entry) = self.held.first_entry() {
            let seq = *entry.key();
            if seq <= head.delivered {
                entry.remove(); // delivered meanwhile (a reset moved the base past it)
                continue;
            }
            if seq != head.delivered + 1 {
                break;
            }
            head.delivered = seq;
            out.push(entry.remove());
        }
        out
    }

    /// Whether something is missing: a message held behind a gap, or a head known to be ahead.
    pub fn has_gap(&self) -> bool {
        match &self.head {
            Some(h) => !self.held.is_empty() || self.known > h.delivered,
            None => false,
        }
    }

    /// The range `(after, upto]` to read from the store to fill every gap at once, at most `max`
    /// seqs. All gaps in one read: when two nodes interleave commits while the bus is down, every
    /// other seq is a gap, and one read per gap would fall further behind with every message.
    pub fn repair_range(&self, max: i64) -> Option<(Seq, Seq)> {
        let after = self.delivered()?;
        let held = self.held.last_key_value().map_or(Seq::ZERO, |(&s, _)| s);
        let upto = held.max(self.known).min(after + max);
        (upto > after).then_some((after, upto))
    }

    /// Judges a read of the store's head issued when [`Sequencer::known_committed`] was `floor`,
    /// and applies what needs no I/O (a start, or learning the head).
    pub fn check_head(&mut self, epoch: &Epoch, last_seq: Seq, floor: Seq) -> HeadVerdict {
        let Some(head) = &self.head else {
            self.start(epoch, last_seq);
            return HeadVerdict::Started;
        };
        if *epoch != head.epoch {
            HeadVerdict::Adopt {
                epoch: epoch.clone(),
                last_seq,
            }
        } else if last_seq < floor {
            HeadVerdict::Rewound
        } else {
            self.learn_head(last_seq);
            HeadVerdict::Ahead(last_seq)
        }
    }

    /// Starts over under `epoch`: what was held is dropped, delivery continues after `base`, and
    /// `known` is the committed head.
    pub fn reset(&mut self, epoch: &Epoch, base: Seq, known: Seq) {
        self.head = Some(Head {
            epoch: epoch.clone(),
            delivered: base,
        });
        self.held.clear();
        self.known = known;
    }

    /// How to answer a join with `since` (and the epoch it was read under): from the committed
    /// head, never only from what this node delivered (`caught_up`: this node already read the
    /// store's head for this join). A `since` more than `max_catchup` behind, or from another
    /// epoch, joins at the head with `recovered: false`.
    pub fn plan_join(
        &self,
        since: Option<Seq>,
        epoch: Option<&Epoch>,
        max_catchup: i64,
        caught_up: bool,
    ) -> JoinPlan {
        let Some(head) = &self.head else {
            return JoinPlan::NoHead;
        };
        let delivered = head.delivered;
        let epoch_ok = epoch.is_none_or(|e| *e == head.epoch);
        if !caught_up && epoch_ok && since.is_some_and(|s| s > delivered) {
            return JoinPlan::CatchUp;
        }
        let from = match since {
            Some(s) if epoch_ok && s <= delivered && delivered - s <= max_catchup => Some(s),
            _ => None,
        };
        JoinPlan::Join {
            epoch: head.epoch.clone(),
            last_seq: delivered,
            recovered: from.is_some(),
            backfill: from.filter(|&s| s < delivered).map(|s| (s, delivered)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::RoomId;
    use proptest::prelude::*;

    fn q(n: i64) -> Seq {
        Seq::new(n)
    }

    fn e(name: &str) -> Epoch {
        Epoch::from(name)
    }

    /// A repair range as plain numbers.
    fn range(r: Option<(Seq, Seq)>) -> Option<(i64, i64)> {
        r.map(|(a, b)| (a.get(), b.get()))
    }

    fn msg(n: i64) -> Arc<Message> {
        let seq = q(n);
        Arc::new(Message::new(
            RoomId::parse("r").expect("valid"),
            seq,
            format!("m{seq}"),
            "u".into(),
            String::new(),
        ))
    }

    fn seqs(ready: Vec<(Arc<Message>, Instant)>) -> Vec<i64> {
        ready.into_iter().map(|(m, _)| m.seq.get()).collect()
    }

    fn started(last: i64) -> Sequencer {
        let mut s = Sequencer::new();
        s.start(&e("e1"), q(last));
        s
    }

    #[test]
    fn messages_wait_for_the_ones_before_them_and_go_out_in_order() {
        let mut s = started(0);
        let now = Instant::now();
        assert!(s.offer(msg(2), now));
        assert!(s.offer(msg(3), now));
        assert_eq!(seqs(s.ready()), Vec::<i64>::new());
        assert!(s.has_gap());
        assert_eq!(range(s.repair_range(1000)), Some((0, 3)));
        assert!(s.offer(msg(1), now));
        assert_eq!(seqs(s.ready()), vec![1, 2, 3]);
        assert!(!s.has_gap());
        assert_eq!(range(s.repair_range(1000)), None);
    }

    #[test]
    fn a_duplicate_or_an_already_delivered_message_is_not_offered_twice() {
        let mut s = started(5);
        let now = Instant::now();
        assert!(!s.offer(msg(5), now));
        assert!(s.offer(msg(6), now));
        assert!(!s.offer(msg(6), now));
        assert_eq!(seqs(s.ready()), vec![6]);
        assert!(!s.offer(msg(6), now));
    }

    #[test]
    fn a_room_without_a_head_ignores_other_nodes_and_starts_at_its_first_commit() {
        let mut s = Sequencer::new();
        assert!(!s.offer(msg(3), Instant::now()));
        assert_eq!(range(s.repair_range(1000)), None);
        s.committed(&e("e1"), &[msg(4), msg(5)], Instant::now());
        assert_eq!(s.delivered(), Some(q(3)));
        assert_eq!(seqs(s.ready()), vec![4, 5]);
    }

    #[test]
    fn a_known_head_ahead_of_delivery_is_a_gap_repaired_up_to_it_in_bounded_reads() {
        let mut s = started(10);
        s.learn_head(q(2500));
        assert!(s.has_gap());
        assert_eq!(range(s.repair_range(1000)), Some((10, 1010)));
        s.learn_head(q(12));
        assert_eq!(s.known_committed(), q(2500));
    }

    #[test]
    fn a_commit_below_what_was_known_committed_is_a_rewind() {
        let s = started(10);
        assert_eq!(
            s.check_commit(Some(q(8)), &e("e1"), q(10)),
            CommitVerdict::Rewound { base: Some(q(7)) }
        );
        assert_eq!(
            s.check_commit(Some(q(11)), &e("e1"), q(10)),
            CommitVerdict::Deliver
        );
        assert_eq!(
            s.check_commit(None, &e("e1"), q(10)),
            CommitVerdict::Deliver
        );
        assert_eq!(
            s.check_commit(Some(q(11)), &e("e2"), q(10)),
            CommitVerdict::OtherEpoch { base: Some(q(10)) }
        );
    }

    #[test]
    fn a_head_read_adopts_another_epoch_spots_a_rewind_and_otherwise_learns_the_head() {
        let mut s = started(10);
        assert_eq!(
            s.check_head(&e("e2"), q(3), q(10)),
            HeadVerdict::Adopt {
                epoch: e("e2"),
                last_seq: q(3)
            }
        );
        assert_eq!(s.check_head(&e("e1"), q(9), q(10)), HeadVerdict::Rewound);
        assert_eq!(
            s.check_head(&e("e1"), q(12), q(10)),
            HeadVerdict::Ahead(q(12))
        );
        assert_eq!(range(s.repair_range(1000)), Some((10, 12)));
        let mut fresh = Sequencer::new();
        assert_eq!(fresh.check_head(&e("e1"), q(4), q(0)), HeadVerdict::Started);
        assert_eq!(fresh.delivered(), Some(q(4)));
    }

    #[test]
    fn a_reset_drops_what_was_held_and_continues_after_its_base() {
        let mut s = started(10);
        let now = Instant::now();
        s.offer(msg(12), now);
        s.reset(&e("e2"), q(3), q(3));
        assert_eq!(s.epoch(), Some(&e("e2")));
        assert!(!s.has_gap());
        s.offer(msg(4), now);
        assert_eq!(seqs(s.ready()), vec![4]);
    }

    #[test]
    fn joins_are_planned_against_the_committed_head() {
        let s = started(10);
        let plan =
            |since: Option<i64>, epoch, caught_up| s.plan_join(since.map(q), epoch, 5, caught_up);
        let join = |last_seq, recovered, backfill: Option<(i64, i64)>| JoinPlan::Join {
            epoch: e("e1"),
            last_seq: q(last_seq),
            recovered,
            backfill: backfill.map(|(a, b)| (q(a), q(b))),
        };
        assert_eq!(plan(None, None, false), join(10, false, None));
        let (e0, e1) = (e("e0"), e("e1"));
        assert_eq!(plan(Some(10), Some(&e1), false), join(10, true, None));
        assert_eq!(plan(Some(7), None, false), join(10, true, Some((7, 10))));
        // Too far behind, or another epoch: joined at the head, not recovered.
        assert_eq!(plan(Some(2), None, false), join(10, false, None));
        assert_eq!(plan(Some(7), Some(&e0), false), join(10, false, None));
        // Ahead of this node: catch up first, then judge again.
        assert_eq!(plan(Some(12), None, false), JoinPlan::CatchUp);
        assert_eq!(plan(Some(12), None, true), join(10, false, None));
        assert_eq!(plan(Some(12), Some(&e0), false), join(10, false, None));
        assert_eq!(
            Sequencer::new().plan_join(None, None, 5, false),
            JoinPlan::NoHead
        );
    }

    /// One step of a cluster as this room sees it (the property test below).
    #[derive(Debug, Clone)]
    enum Step {
        /// This node commits `n` posts.
        Commit(u8),
        /// Another node commits `n` posts and publishes one envelope with them.
        Remote(u8),
        /// Envelope `i` (mod the number published) arrives (again, if it already did).
        Arrive(u8),
        /// Another node announces the committed head (a heartbeat's head notice, a resync).
        HeadNotice,
        /// The repair timer fires: read the range the sequencer names from the store.
        Repair,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (1u8..4).prop_map(Step::Commit),
            (1u8..4).prop_map(Step::Remote),
            any::<u8>().prop_map(Step::Arrive),
            Just(Step::HeadNotice),
            Just(Step::Repair),
        ]
    }

    proptest! {
        /// For any interleaving of local commits, other nodes' envelopes (reordered, duplicated,
        /// lost: an envelope that never arrives) and repairs, the members receive exactly
        /// 1..=N in order, once, as soon as the store's head is known and repairs run.
        #[test]
        fn any_interleaving_delivers_every_seq_once_in_order(
            steps in proptest::collection::vec(step(), 0..80),
            start in 0i64..3,
        ) {
            let mut s = started(start);
            let mut committed = start; // the store's head
            let mut envelopes: Vec<Vec<i64>> = Vec::new();
            let mut out: Vec<i64> = Vec::new();
            let now = Instant::now();
            let drain = |s: &mut Sequencer, out: &mut Vec<i64>| {
                for seq in seqs(s.ready()) {
                    out.push(seq);
                }
            };
            for step in steps {
                match step {
                    Step::Commit(n) => {
                        let floor = s.known_committed();
                        let batch: Vec<_> =
                            (committed + 1..=committed + n as i64).map(msg).collect();
                        committed += n as i64;
                        prop_assert_eq!(
                            s.check_commit(Some(batch[0].seq), &e("e1"), floor),
                            CommitVerdict::Deliver
                        );
                        s.committed(&e("e1"), &batch, now);
                    }
                    Step::Remote(n) => {
                        envelopes.push((committed + 1..=committed + n as i64).collect());
                        committed += n as i64;
                    }
                    Step::Arrive(i) if !envelopes.is_empty() => {
                        for &seq in &envelopes[i as usize % envelopes.len()] {
                            s.offer(msg(seq), now);
                        }
                    }
                    Step::Arrive(_) => {}
                    Step::HeadNotice => s.learn_head(q(committed)),
                    Step::Repair => {
                        if let Some((after, upto)) = range(s.repair_range(1000)) {
                            prop_assert!(upto <= committed, "repair past the store's head");
                            for seq in after + 1..=upto {
                                s.offer(msg(seq), now);
                            }
                        }
                    }
                }
                drain(&mut s, &mut out);
                // Never out of order, never twice, never a skipped seq.
                let expected: Vec<i64> = (start + 1..=start + out.len() as i64).collect();
                prop_assert_eq!(&out, &expected);
            }
            // The head becomes known (a heartbeat's notice, or a catch-up read) and repairs run.
            s.learn_head(q(committed));
            while let Some((after, upto)) = range(s.repair_range(7)) {
                for seq in after + 1..=upto {
                    s.offer(msg(seq), now);
                }
                drain(&mut s, &mut out);
            }
            let all: Vec<i64> = (start + 1..=committed).collect();
            prop_assert_eq!(out, all);
            prop_assert!(!s.has_gap());
        }
    }
}
