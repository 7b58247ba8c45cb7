//! The room's behaviour, driven through [`RoomCore`] alone: inputs in, effects checked. Members
//! are named by plain strings and answers by numbers; the store and the bus are whatever a test
//! says they answered. Each file is one part of PROTOCOL: `commits` (§3, §6: group commit, acks,
//! the two faults), `gaps` (ordering across nodes and repair), `joins` (§3 join, backfill, §7
//! read state), `members` (presence, typing, slow consumers, leaving), `blocking`, `reads` (§7
//! cursors), `cluster`, `lifecycle` (idle stop, abandon) and `properties` (any interleaving).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::*;
use crate::bridge::FromCluster;
use crate::bridge::envelope::RoomEvent;
use crate::domain::{Change, Refusal};
use crate::ids::NodeId;
use crate::room::delivery::{Carries, JoinReply};
use crate::store::{Appended, ReadState, RoomHead};

mod blocking;
mod cluster;
mod commits;
mod gaps;
mod joins;
mod lifecycle;
mod members;
mod properties;
mod reads;
mod simulation;

/// Members are their session's name; answers are numbered.
pub(super) struct Probe;

impl Handles for Probe {
    type Member = &'static str;
    type PostReply = u32;
    type ReadReply = u32;
}

pub(super) type Fx = Vec<Effect<Probe>>;

pub(super) fn room_id() -> RoomId {
    RoomId::parse("r").expect("valid")
}

pub(super) fn epoch(name: &str) -> Epoch {
    Epoch::from(name)
}

pub(super) fn head(epoch_name: &str, last: i64) -> RoomHead {
    RoomHead {
        epoch: epoch(epoch_name),
        last_seq: Seq::new(last),
    }
}

pub(super) fn q(n: i64) -> Seq {
    Seq::new(n)
}

/// A stored `message` entry `seq` by `user`, committed at `ts`.
pub(super) fn entry_at(seq: i64, user: &str, ts: DateTime<Utc>) -> Message {
    let mut m = Message::new(
        room_id(),
        q(seq),
        format!("id{seq}"),
        user.into(),
        format!("m{seq}"),
    );
    m.ts = ts;
    m
}

pub(super) fn entry(seq: i64) -> Message {
    entry_at(seq, "ann", crate::domain::now_ts())
}

pub(super) fn post(body: &str) -> NewMessage {
    NewMessage::message("ann".into(), body)
}

/// The store's answer to an append of `n` posts: seqs `first..first+n`, all new.
pub(super) fn appended(epoch_name: &str, first: i64, n: usize) -> AppendOutcome {
    AppendOutcome {
        epoch: epoch(epoch_name),
        appended: (0..n as i64)
            .map(|i| {
                Ok(Appended {
                    message: Arc::new(entry(first + i)),
                    duplicate: false,
                })
            })
            .collect(),
    }
}

pub(super) fn user(name: &str) -> PresenceUser {
    PresenceUser {
        user: name.into(),
        name: None,
    }
}

pub(super) fn join_req(
    session: &'static str,
    who: &str,
    since: Option<i64>,
) -> JoinRequest<&'static str> {
    JoinRequest {
        session: SessionId::from(session),
        member: session,
        user: user(who),
        since: since.map(q),
        epoch: None,
        r#ref: None,
        hidden: false,
    }
}

pub(super) fn read_state(read: i64, unread: i64, last: i64) -> ReadState {
    ReadState {
        read_seq: q(read),
        unread,
        last_seq: q(last),
    }
}

/// A room under test, with a clock that moves only when told.
pub(super) struct Sim {
    pub core: RoomCore<Probe>,
    t0: Instant,
    wall0: DateTime<Utc>,
    pub ms: u64,
}

pub(super) fn settings(clustered: bool) -> Settings {
    Settings {
        max_catchup: 5,
        batch_max: 3,
        gap_repair: Duration::from_millis(100),
        idle_stop: Duration::from_millis(1000),
        node: clustered.then(|| NodeId::from("n1")),
    }
}

impl Sim {
    pub fn new(clustered: bool) -> Sim {
        Sim {
            core: RoomCore::new(room_id(), settings(clustered)),
            t0: Instant::now(),
            wall0: crate::domain::now_ts(),
            ms: 0,
        }
    }

    /// A room that started at `last` under epoch `e1`.
    pub fn started(clustered: bool, last: i64) -> Sim {
        let mut sim = Sim::new(clustered);
        let fx = sim.step(Input::Start);
        assert!(
            matches!(io(&fx)[..], [Effect::Attach]),
            "a room attaches first"
        );
        sim.done(Done::Attached {
            head: Ok(head("e1", last)),
            presence: clustered.then(Vec::new),
        });
        sim
    }

    pub fn now(&self) -> Now {
        Now {
            at: self.t0 + Duration::from_millis(self.ms),
            wall: self.wall0 + chrono::Duration::milliseconds(self.ms as i64),
        }
    }

    pub fn step(&mut self, input: Input<Probe>) -> Fx {
        let now = self.now();
        self.core.step(now, input)
    }

    pub fn done(&mut self, done: Done) -> Fx {
        self.step(Input::Done(done))
    }

    pub fn post(&mut self, reply: u32, body: &str) -> Fx {
        self.step(Input::Post {
            entry: post(body),
            reply,
        })
    }

    /// A visible member joins at the head; its read state comes back at once (0 unread).
    pub fn member(&mut self, session: &'static str, who: &str) -> Fx {
        let mut fx = self.step(Input::Join(join_req(session, who, None)));
        let (join, upto) = read_for_join(&fx).expect("a visible join reads its state");
        fx.extend(self.done(Done::JoinRead {
            join,
            read: Some(read_state(upto.get(), 0, upto.get())),
            backfill: Ok(Vec::new()),
        }));
        fx
    }

    /// Commits `n` posts: posted, appended at `first..` (in as many batches as it takes),
    /// answered.
    pub fn commit(&mut self, first: i64, n: usize) -> Fx {
        let mut fx = Vec::new();
        for i in 0..n {
            fx.extend(self.post(first as u32 + i as u32, &format!("m{}", first + i as i64)));
        }
        let mut next = first;
        let mut pending = appends(&fx);
        while let Some(batch) = pending.pop() {
            let more = self.done(Done::Appended {
                result: Ok(appended("e1", next, batch.len())),
                batch: batch.clone(),
            });
            next += batch.len() as i64;
            pending = appends(&more);
            fx.extend(more);
        }
        assert_eq!(next, first + n as i64, "every post committed");
        fx
    }

    /// Posts `body` (answered to `reply`) and fails its append: the store did not answer (it
    /// may have committed all the same).
    pub fn failed_post(&mut self, reply: u32, body: &str) -> Fx {
        let fx = self.post(reply, body);
        let batch = appends(&fx).remove(0);
        self.done(Done::Appended {
            batch,
            result: Err(StoreError::Unavailable("connection reset".into())),
        })
    }

    pub fn envelope(&mut self, seq: Option<i64>, event: RoomEvent) -> Fx {
        let env = crate::bridge::envelope::RoomEnvelope {
            v: 1,
            origin: NodeId::from("n2"),
            room: room_id(),
            seq: seq.map(q),
            event,
        };
        self.step(Input::Cluster(FromCluster::Event(env)))
    }

    /// Entries committed on another node, in one envelope.
    pub fn remote(&mut self, seqs: &[i64]) -> Fx {
        let messages = seqs.iter().map(|&s| Arc::new(entry(s))).collect();
        let last = seqs.last().copied();
        self.envelope(last, RoomEvent::Messages { messages })
    }

    pub fn advance(&mut self, ms: u64) {
        self.ms += ms;
    }
}

/// The seqs of the entries delivered to `to`: live, and in join replies.
pub(super) fn seqs_to(fx: &Fx, to: &str) -> Vec<i64> {
    frames_to(fx, to)
        .iter()
        .filter_map(|d| match d.carries {
            Carries::Entry { seq, .. } => Some(seq.get()),
            _ => None,
        })
        .collect()
}

/// Every frame `to` receives, in order (live broadcasts, join replies and direct replies).
pub(super) fn frames_to(fx: &Fx, to: &str) -> Vec<crate::room::delivery::Delivery> {
    let mut out = Vec::new();
    for e in fx {
        match e {
            Effect::Deliver { to: t, frames, .. } if *t == to => {
                out.extend(frames.frames().iter().cloned())
            }
            Effect::Send {
                to: t,
                message: ToSession::Joined(reply),
            } if *t == to => out.extend(reply.frames.iter().cloned()),
            Effect::Send {
                to: t,
                message: ToSession::Reply(frame),
            } if *t == to => out.push(crate::room::delivery::Delivery::control(frame.clone())),
            _ => {}
        }
    }
    out
}

/// The `type`s of the frames `to` receives, in order.
pub(super) fn types_to(fx: &Fx, to: &str) -> Vec<String> {
    frames_to(fx, to)
        .iter()
        .map(|d| json(&d.frame)["type"].as_str().unwrap_or("?").to_owned())
        .collect()
}

pub(super) fn json(frame: &str) -> serde_json::Value {
    serde_json::from_str(frame).expect("frames are JSON")
}

/// The join replies `to` got.
pub(super) fn joined_to<'a>(fx: &'a Fx, to: &str) -> Vec<&'a JoinReply> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Send {
                to: t,
                message: ToSession::Joined(reply),
            } if *t == to => Some(&**reply),
            _ => None,
        })
        .collect()
}

pub(super) fn dropped_to(fx: &Fx, to: &str) -> Vec<DropReason> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Send {
                to: t,
                message: ToSession::Dropped { why, .. },
            } if *t == to => Some(why.clone()),
            _ => None,
        })
        .collect()
}

/// The effects that reach outside (store, bus, sessions), without timers and counters.
pub(super) fn io(fx: &Fx) -> Vec<&Effect<Probe>> {
    fx.iter()
        .filter(|e| {
            !matches!(
                e,
                Effect::Schedule { .. } | Effect::Cancel(_) | Effect::Count(_)
            )
        })
        .collect()
}

/// The floors of the catch-up head reads among `fx`.
pub(super) fn head_reads(fx: &Fx) -> Vec<Seq> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::ReadHead(HeadWhy::CatchUp { floor }) => Some(*floor),
            _ => None,
        })
        .collect()
}

pub(super) fn appends(fx: &Fx) -> Vec<Vec<NewMessage>> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Append(batch) => Some(batch.clone()),
            _ => None,
        })
        .collect()
}

/// Which post got which outcome: `Ok(seq)` or the error.
/// A post's outcome: (seq, duplicate), or the error.
pub(super) type Answer = Result<(i64, bool), StoreError>;

pub(super) fn answers(fx: &Fx) -> Vec<(u32, Answer)> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Answer { to, outcome } => Some((
                *to,
                outcome
                    .as_ref()
                    .map(|a| (a.message.seq.get(), a.duplicate))
                    .map_err(Clone::clone),
            )),
            _ => None,
        })
        .collect()
}

pub(super) fn read_for_join(fx: &Fx) -> Option<(u64, Seq)> {
    fx.iter().find_map(|e| match e {
        Effect::ReadForJoin { join, upto, .. } => Some((*join, *upto)),
        _ => None,
    })
}

pub(super) fn published(fx: &Fx) -> Vec<(Option<Seq>, &RoomEvent)> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Publish { seq, event } => Some((*seq, event)),
            _ => None,
        })
        .collect()
}

pub(super) fn scheduled(fx: &Fx, timer: Timer) -> bool {
    fx.iter()
        .any(|e| matches!(e, Effect::Schedule { timer: t, .. } if *t == timer))
}

pub(super) fn cancelled(fx: &Fx, timer: Timer) -> bool {
    fx.iter()
        .any(|e| matches!(e, Effect::Cancel(t) if *t == timer))
}

pub(super) fn repairs(fx: &Fx) -> Vec<(i64, i64)> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Repair { after, upto } => Some((after.get(), upto.get())),
            _ => None,
        })
        .collect()
}

/// A presence diff's joins and leaves seen by `to`, as user ids.
pub(super) fn presence_diffs_to(fx: &Fx, to: &str) -> Vec<(Vec<String>, Vec<String>)> {
    frames_to(fx, to)
        .iter()
        .map(|d| json(&d.frame))
        .filter(|v| v["type"] == "presence_diff")
        .map(|v| {
            let ids = |k: &str| {
                v[k].as_array()
                    .into_iter()
                    .flatten()
                    .map(|u| u["user"].as_str().unwrap_or_default().to_owned())
                    .collect()
            };
            (ids("joins"), ids("leaves"))
        })
        .collect()
}

/// An edit of `target`, for tests that need an entry other than a message.
pub(super) fn edit(target: i64) -> NewMessage {
    NewMessage {
        change: Change::Edit {
            target: q(target),
            body: "changed".into(),
        },
        ..post("")
    }
}

pub(super) fn refused(r: Refusal) -> Result<Appended, Refusal> {
    Err(r)
}
