//! What a room sends its members, as plain values (no actor in sight): frames encoded once per
//! broadcast and shared by every recipient, each with what it carries (an entry's seq and type, a
//! reset's epoch) so that no listener ever parses a frame the room built, and the reasons a
//! membership ends.
//!
//! The Room actor hands these to each member's `Outbox`; WebSocket sessions write the frames,
//! HTTP listeners (SSE, long-poll) turn them into events by what they carry.

use std::sync::Arc;
use std::time::Instant;

use bytestring::ByteString;

use crate::domain::Kind;
use crate::ids::{Epoch, RoomId, Seq};
use crate::store::ReadState;

/// One frame on its way to members, encoded once and shared.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub frame: ByteString,
    /// When a live entry was committed (`chorus_message_delivery_seconds`); `None` for backfill
    /// and control frames.
    pub committed: Option<Instant>,
    pub carries: Carries,
}

/// What a frame is about, known to the room when it encodes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Carries {
    /// A log entry with its seq (the SSE `id:`) and type (the SSE `event:`).
    Entry { seq: Seq, kind: Kind },
    /// The room's history was reset (PROTOCOL §6): reload; live delivery goes on after `last_seq`.
    Reset { epoch: Epoch, last_seq: Seq },
    /// Presence, typing, read receipts, `joined`: for WebSocket clients only.
    Control,
}

impl Delivery {
    /// A control frame (presence, typing, a `joined`).
    pub fn control(frame: ByteString) -> Delivery {
        Delivery {
            frame,
            committed: None,
            carries: Carries::Control,
        }
    }

    /// The seq of the entry this frame carries, if it carries one.
    pub fn seq(&self) -> Option<Seq> {
        match self.carries {
            Carries::Entry { seq, .. } => Some(seq),
            _ => None,
        }
    }
}

/// Where a join goes live: what its `joined` frame says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinPoint {
    pub epoch: Epoch,
    pub last_seq: Seq,
    pub recovered: bool,
    /// The joining user's read cursor and unread count as of `last_seq` (§7); `None` for hidden
    /// listeners, and when the store could not say (never guessed).
    pub read: Option<ReadState>,
}

/// The answer to a join: its `joined` frame, `presence`, the backfill, then whatever went live
/// while the backfill was read, in that order (`frames`), with what the join point says.
#[derive(Debug, Clone)]
pub struct JoinReply {
    pub point: JoinPoint,
    pub frames: Vec<Delivery>,
    /// How many entries `frames` holds (`chorus_messages_delivered_total`).
    pub messages: u64,
}

/// Room → member, always through the member's outbox, in order.
#[derive(Debug)]
pub enum ToSession {
    /// One broadcast frame (counted against `session.queue_max`).
    Live(Delivery),
    /// Several broadcast frames from one flush, shared by every member (counted).
    LiveBatch(Arc<[Delivery]>),
    /// A direct reply: ack, error, left, read (not counted: one per request, and requests are
    /// rate-limited).
    Reply(ByteString),
    /// A join's reply with its backfill, in one piece (not counted: bounded by `room.max_catchup`).
    Joined(Box<JoinReply>),
    /// The room ended this membership.
    Dropped { room: RoomId, why: DropReason },
}

impl ToSession {
    /// How many frames this adds to the member's queue.
    pub fn counted(&self) -> usize {
        match self {
            ToSession::Live(_) => 1,
            ToSession::LiveBatch(b) => b.len(),
            _ => 0,
        }
    }
}

/// Why a room ended a membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DropReason {
    /// The join failed (its `error` reply was sent first).
    Refused,
    /// The session fell `session.queue_max` frames behind: it closes with 1013.
    Slow,
    /// The room actor went away under the member (it panicked): join again, resuming after
    /// `last_seq` of `epoch` (`None`: the member's backfill had not been sent yet).
    Lost {
        epoch: Option<Epoch>,
        last_seq: Option<Seq>,
    },
}

/// What one broadcast carries: a single frame, or a flush's batch shared by every member.
#[derive(Debug, Clone)]
pub enum Fanout {
    One(Delivery),
    Many(Arc<[Delivery]>),
}

impl Fanout {
    /// As a member receives it.
    pub fn into_message(self) -> ToSession {
        match self {
            Fanout::One(d) => ToSession::Live(d),
            Fanout::Many(batch) => ToSession::LiveBatch(batch),
        }
    }

    /// Appends the frames to a backlog (a member whose backfill is still being read).
    pub fn extend_into(&self, backlog: &mut Vec<Delivery>) {
        match self {
            Fanout::One(d) => backlog.push(d.clone()),
            Fanout::Many(batch) => backlog.extend(batch.iter().cloned()),
        }
    }

    /// The frames, in order.
    pub fn frames(&self) -> &[Delivery] {
        match self {
            Fanout::One(d) => std::slice::from_ref(d),
            Fanout::Many(batch) => batch,
        }
    }
}
