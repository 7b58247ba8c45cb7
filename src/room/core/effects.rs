//! What comes out of a room: the [`Effect`]s its interpreter carries out, in order.

use std::time::Duration;

use super::inputs::{Handles, HeadWhy, Timer};
use crate::bridge::envelope::RoomEvent;
use crate::domain::{Kind, NewMessage, PresenceUser};
use crate::ids::{Epoch, NodeId, Seq, SessionId, UserId};
use crate::room::delivery::{Fanout, ToSession};
use crate::store::{Appended, ReadState, StoreError};

/// What a room asks its interpreter to do, in order.
pub enum Effect<H: Handles> {
    /// Subscribe to the room's channel (in a cluster), then read the head, then who is present
    /// on other nodes: [`Done::Attached`]. Subscribing first means every entry committed after
    /// the head read arrives, or shows as a gap.
    Attach,
    ReadHead(HeadWhy),
    Append(Vec<NewMessage>),
    /// Read exactly `after+1 ..= upto` ([`Done::Repaired`]).
    Repair {
        after: Seq,
        upto: Seq,
    },
    /// Read the committed head, then `delivered+1 ..= min(head, delivered + max)`.
    CatchUp {
        delivered: Seq,
        max: i64,
    },
    /// For join `join`: `user`'s read state as of `upto`, and the backfill range, if any.
    ReadForJoin {
        join: u64,
        user: Option<UserId>,
        upto: Seq,
        backfill: Option<(Seq, Seq)>,
    },
    MarkRead(Vec<(UserId, Seq)>),
    /// A new epoch if the room's is still `old`.
    ResetEpoch {
        old: Epoch,
    },
    /// Read the head and the presence hash again (after the bus came back).
    Resync {
        floor: Seq,
    },
    /// Read these users' cursors as of `upto` (notices the bus may have lost).
    RefreshReads {
        users: Vec<UserId>,
        upto: Seq,
    },
    /// Broadcast frames to one member; a refusal comes back as [`Input::Undeliverable`].
    Deliver {
        session: SessionId,
        to: H::Member,
        frames: Fanout,
    },
    /// A direct reply or notice to one member (never refused for size).
    Send {
        to: H::Member,
        message: ToSession,
    },
    /// A post's outcome.
    Answer {
        to: H::PostReply,
        outcome: Result<Appended, StoreError>,
    },
    /// A read cursor's outcome.
    AnswerRead {
        to: H::ReadReply,
        outcome: Result<(ReadState, bool), StoreError>,
    },
    /// An envelope for the other nodes (only in a cluster).
    Publish {
        seq: Option<Seq>,
        event: RoomEvent,
    },
    /// The bus side of a presence change: this node's users that arrived or left, and entries of
    /// the shared hash to drop (only in a cluster).
    Announce {
        here: Vec<PresenceUser>,
        gone: Vec<PresenceUser>,
        forget: Vec<(NodeId, UserId)>,
    },
    Schedule {
        timer: Timer,
        after: Duration,
    },
    Cancel(Timer),
    Count(Count),
    /// Idle: the room is done.
    Stop,
}

impl<H: Handles> Effect<H> {
    /// Whether it reads or writes the store or the bus's presence hash (it ends in a [`Done`]).
    ///
    /// [`Done`]: super::inputs::Done
    pub fn is_io(&self) -> bool {
        matches!(
            self,
            Effect::Attach
                | Effect::ReadHead(_)
                | Effect::Append(_)
                | Effect::Repair { .. }
                | Effect::CatchUp { .. }
                | Effect::ReadForJoin { .. }
                | Effect::MarkRead(_)
                | Effect::ResetEpoch { .. }
                | Effect::Resync { .. }
                | Effect::RefreshReads { .. }
        )
    }
}

/// Metrics the room moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    Posted(Kind),
    GapsRepaired(u64),
    Backfill(u64),
    SlowConsumer,
}
