//! Any interleaving at once: local posts whose appends succeed or fail, entries committed on
//! another node whose envelopes arrive late, twice or never, members who join (with or without
//! `since`, some from another node that saw more), leave and come back, store reads that finish
//! in any order, timers that fire whenever they are due, resyncs. After every step:
//! - every member receives entries `from + 1, + 2, …` with nothing skipped, repeated or reordered,
//!   where `from` is its `since` when the join says `recovered:true` and its join point otherwise;
//! - nothing reaches a member before its `joined`; every entry delivered is committed;
//! - every post is answered once, after its commit, with a seq nobody else got.
//!
//! At the end, once the bus says the head (as heartbeats and resyncs do) and the reads finish,
//! every member has everything the store has.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;

const SESSIONS: [&str; 3] = ["s0", "s1", "s2"];

#[derive(Debug, Clone)]
enum Step {
    /// A local post.
    Post,
    /// Another node commits `n` entries and publishes them in one envelope.
    Remote(u8),
    /// Envelope `i` (mod the number published) arrives, again if it already did.
    Arrive(u8),
    /// Read or append `i` (mod the number in flight) finishes; appends fail when `fail`.
    Finish(u8, bool),
    /// A due timer fires.
    Fire(u8),
    /// Session `i` joins: afresh, resuming from what it saw, or having seen the store's head on
    /// another node.
    Join(u8, u8),
    Leave(u8),
    Resync,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => Just(Step::Post),
        2 => (1u8..4).prop_map(Step::Remote),
        3 => any::<u8>().prop_map(Step::Arrive),
        6 => (any::<u8>(), prop::bool::weighted(0.15)).prop_map(|(i, f)| Step::Finish(i, f)),
        2 => any::<u8>().prop_map(Step::Fire),
        2 => (any::<u8>(), 0u8..3).prop_map(|(i, how)| Step::Join(i, how)),
        1 => any::<u8>().prop_map(Step::Leave),
        1 => Just(Step::Resync),
    ]
}

/// A member's stream as it checks it.
#[derive(Default)]
struct Stream {
    /// Joined and its reply came: the next entry it must get.
    next: Option<i64>,
    /// A join is out (no reply yet).
    joining: bool,
    /// A leave is out: entries still come, in order, until `left`.
    leaving: bool,
    /// The last entry it saw (what it resumes from).
    seen: Option<i64>,
}

/// The store, the bus and the sessions around one room.
struct World {
    sim: Sim,
    /// The store's head: entries 1..=head exist.
    head: i64,
    envelopes: Vec<Vec<i64>>,
    in_flight: Vec<Effect<Probe>>,
    timers: BTreeSet<Timer>,
    streams: BTreeMap<&'static str, Stream>,
    /// The `since` of each session's last join.
    since: BTreeMap<&'static str, Option<i64>>,
    posts: u32,
    answered: BTreeMap<u32, Option<i64>>,
    acked: BTreeSet<i64>,
}

impl World {
    fn new() -> World {
        World {
            sim: Sim::started(true, 0),
            head: 0,
            envelopes: Vec::new(),
            in_flight: Vec::new(),
            timers: BTreeSet::new(),
            streams: SESSIONS.iter().map(|s| (*s, Stream::default())).collect(),
            since: BTreeMap::new(),
            posts: 0,
            answered: BTreeMap::new(),
            acked: BTreeSet::new(),
        }
    }

    fn entries(after: i64, upto: i64) -> Vec<Message> {
        (after + 1..=upto).map(entry).collect()
    }

    fn feed(&mut self, input: Input<Probe>) -> Result<(), TestCaseError> {
        let fx = self.sim.step(input);
        self.apply(fx)
    }

    /// Carries out effects: I/O waits in `in_flight`, everything else is checked now.
    fn apply(&mut self, fx: Fx) -> Result<(), TestCaseError> {
        for effect in fx {
            match effect {
                Effect::Deliver { to, frames, .. } => {
                    for d in frames.frames() {
                        self.received(to, d)?;
                    }
                }
                Effect::Send { to, message } => match message {
                    ToSession::Joined(reply) => {
                        let stream = self.streams.get_mut(to).expect("known session");
                        prop_assert!(stream.joining, "{to} got a joined it did not ask for");
                        stream.joining = false;
                        let since = self.since[to];
                        let point = &reply.point;
                        prop_assert!(point.last_seq.get() <= self.head);
                        stream.next = Some(match (point.recovered, since) {
                            (true, Some(s)) => s + 1,
                            _ => point.last_seq.get() + 1,
                        });
                        for d in &reply.frames {
                            self.received(to, d)?;
                        }
                    }
                    ToSession::Reply(frame) if json(&frame)["type"] == "left" => {
                        let stream = self.streams.get_mut(to).expect("known session");
                        prop_assert!(stream.leaving, "{to} got a left it did not ask for");
                        stream.leaving = false;
                        stream.next = None;
                    }
                    ToSession::Dropped { .. } => {
                        let stream = self.streams.get_mut(to).expect("known session");
                        stream.joining = false;
                        stream.next = None;
                    }
                    _ => {}
                },
                Effect::Answer { to, outcome } => {
                    prop_assert!(!self.answered.contains_key(&to), "post {to} answered twice");
                    let seq = outcome.ok().map(|a| a.message.seq.get());
                    if let Some(s) = seq {
                        prop_assert!(s <= self.head, "acked {s} before it was committed");
                        prop_assert!(self.acked.insert(s), "seq {s} acked twice");
                    }
                    self.answered.insert(to, seq);
                }
                Effect::Schedule { timer, .. } => {
                    self.timers.insert(timer);
                }
                Effect::Cancel(timer) => {
                    self.timers.remove(&timer);
                }
                Effect::Stop => prop_assert!(false, "stopped while in use"),
                io if io.is_io() => self.in_flight.push(io),
                _ => {}
            }
        }
        Ok(())
    }

    fn received(
        &mut self,
        to: &'static str,
        d: &crate::room::Delivery,
    ) -> Result<(), TestCaseError> {
        let Carries::Entry { seq, .. } = d.carries else {
            return Ok(());
        };
        let seq = seq.get();
        let stream = self.streams.get_mut(to).expect("known session");
        let Some(next) = stream.next else {
            return Err(TestCaseError::fail(format!(
                "{to} got {seq} before its joined"
            )));
        };
        prop_assert_eq!(seq, next, "{} skipped, repeated or reordered", to);
        prop_assert!(
            seq <= self.head,
            "{} got {} which is not committed",
            to,
            seq
        );
        stream.next = Some(seq + 1);
        stream.seen = Some(seq);
        Ok(())
    }

    /// Finishes the read or append `i`.
    fn finish(&mut self, i: usize, fail: bool) -> Result<(), TestCaseError> {
        if self.in_flight.is_empty() {
            return Ok(());
        }
        let done = match self.in_flight.remove(i % self.in_flight.len()) {
            Effect::Append(batch) => {
                let result = if fail {
                    Err(StoreError::Unavailable("down".into()))
                } else {
                    let first = self.head + 1;
                    self.head += batch.len() as i64;
                    Ok(appended("e1", first, batch.len()))
                };
                Done::Appended { batch, result }
            }
            Effect::ReadHead(why) => Done::Head {
                why,
                result: Ok(head("e1", self.head)),
            },
            Effect::Repair { after, upto } => Done::Repaired {
                result: Ok(World::entries(after.get(), upto.get())),
            },
            Effect::CatchUp { delivered, max } => {
                let upto = self.head.min(delivered.get() + max);
                Done::CaughtUp {
                    result: Ok((head("e1", self.head), World::entries(delivered.get(), upto))),
                }
            }
            Effect::ReadForJoin {
                join,
                upto,
                backfill,
                ..
            } => Done::JoinRead {
                join,
                read: Some(read_state(0, 0, upto.get())),
                backfill: Ok(backfill
                    .map(|(a, b)| World::entries(a.get(), b.get()))
                    .unwrap_or_default()),
            },
            Effect::Resync { floor } => Done::Resynced {
                floor,
                head: Ok(head("e1", self.head)),
                presence: Some(Vec::new()),
            },
            Effect::RefreshReads { .. } => Done::ReadsRefreshed { states: Vec::new() },
            _ => unreachable!("only I/O is in flight"),
        };
        self.feed(Input::Done(done))
    }

    fn run(&mut self, step: Step) -> Result<(), TestCaseError> {
        match step {
            Step::Post => {
                self.posts += 1;
                let reply = self.posts;
                self.feed(Input::Post {
                    entry: post("p"),
                    reply,
                })
            }
            Step::Remote(n) => {
                let seqs: Vec<i64> = (self.head + 1..=self.head + n as i64).collect();
                self.head += n as i64;
                self.envelopes.push(seqs);
                Ok(())
            }
            Step::Arrive(i) if !self.envelopes.is_empty() => {
                let seqs = self.envelopes[i as usize % self.envelopes.len()].clone();
                let fx = self.sim.remote(&seqs);
                self.apply(fx)
            }
            Step::Arrive(_) => Ok(()),
            Step::Finish(i, fail) => self.finish(i as usize, fail),
            Step::Fire(i) if !self.timers.is_empty() => {
                let timer = *self
                    .timers
                    .iter()
                    .nth(i as usize % self.timers.len())
                    .expect("some");
                if timer == Timer::Idle {
                    return Ok(()); // members come and go: idling is lifecycle's test
                }
                self.timers.remove(&timer);
                self.feed(Input::Timer(timer))
            }
            Step::Fire(_) => Ok(()),
            Step::Join(i, how) => {
                let session = SESSIONS[i as usize % SESSIONS.len()];
                let stream = &self.streams[session];
                if stream.joining || stream.leaving || stream.next.is_some() {
                    return Ok(());
                }
                let since = match how {
                    0 => None,
                    1 => stream.seen,
                    _ => Some(self.head), // it saw everything, on another node
                };
                self.since.insert(session, since);
                self.streams.get_mut(session).expect("known").joining = true;
                let join = join_req(session, session, since);
                self.feed(Input::Join(join))
            }
            Step::Leave(i) => {
                let session = SESSIONS[i as usize % SESSIONS.len()];
                let stream = self.streams.get_mut(session).expect("known");
                if stream.next.is_none() {
                    return Ok(()); // a session leaves a room it joined
                }
                stream.leaving = true;
                self.feed(Input::Leave {
                    session: SessionId::from(session),
                    r#ref: None,
                    reply: true,
                })
            }
            Step::Resync => self.feed(Input::Cluster(FromCluster::Resync)),
        }
    }

    /// The bus says the head; reads finish and due timers fire until nothing is left.
    fn settle(&mut self) -> Result<(), TestCaseError> {
        let fx = self.sim.envelope(Some(self.head), RoomEvent::Head);
        self.apply(fx)?;
        for _ in 0..10_000 {
            if !self.in_flight.is_empty() {
                self.finish(0, false)?;
            } else if let Some(timer) = self.timers.iter().copied().find(|t| *t != Timer::Idle) {
                self.timers.remove(&timer);
                self.feed(Input::Timer(timer))?;
            } else {
                return Ok(());
            }
        }
        Err(TestCaseError::fail("never settled"))
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_interleaving_keeps_every_stream_gap_free_and_every_ack_after_its_commit(
        steps in proptest::collection::vec(step(), 0..120),
    ) {
        let mut world = World::new();
        for step in steps {
            world.run(step)?;
        }
        world.settle()?;
        for (session, stream) in &world.streams {
            if let Some(next) = stream.next {
                prop_assert_eq!(next, world.head + 1, "{} did not catch up", session);
            }
            prop_assert!(!stream.joining, "{}'s join was never answered", session);
            prop_assert!(!stream.leaving, "{}'s leave was never answered", session);
        }
        prop_assert_eq!(world.answered.len() as u32, world.posts, "every post is answered");
    }
}
