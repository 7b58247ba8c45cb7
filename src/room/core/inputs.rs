//! What goes into a room: the [`Input`]s, the [`Done`] results of its own effects, and the small
//! types they carry. The room's world is abstract here ([`Handles`]): the actor uses session
//! outboxes and channels, tests use plain names and numbers.

use std::time::{Duration, Instant};

use bytestring::ByteString;
use chrono::{DateTime, Utc};

use crate::bridge::FromCluster;
use crate::domain::{Message, NewMessage, PresenceUser};
use crate::ids::{Epoch, NodeId, Seq, SessionId, UserId};
use crate::store::{AppendOutcome, ReadState, RoomHead, StoreError};

/// What the room holds of the world outside: how to reach a member, where a post's or a read's
/// outcome goes. The actor uses session outboxes and channels; tests use plain numbers.
pub trait Handles {
    type Member: Clone;
    type PostReply;
    type ReadReply;
}

/// The time, given with every input: the room has no clock.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub at: Instant,
    pub wall: DateTime<Utc>,
}

impl Now {
    pub fn system() -> Now {
        Now {
            at: Instant::now(),
            wall: Utc::now(),
        }
    }
}

/// The settings a room decides with (`[room]`, and whether it is part of a cluster).
#[derive(Debug, Clone)]
pub struct Settings {
    pub max_catchup: i64,
    pub batch_max: usize,
    pub gap_repair: Duration,
    pub idle_stop: Duration,
    /// This node's id when it is part of a cluster (presence and envelopes); `None` alone.
    pub node: Option<NodeId>,
}

/// A join as the room receives it.
#[derive(Debug, Clone)]
pub struct JoinRequest<M> {
    pub session: SessionId,
    pub member: M,
    pub user: PresenceUser,
    pub since: Option<Seq>,
    pub epoch: Option<Epoch>,
    pub r#ref: Option<String>,
    /// Not shown in presence (HTTP streams: SSE and long-poll listeners).
    pub hidden: bool,
}

/// Everything that can happen to a room.
pub enum Input<H: Handles> {
    /// The room starts (before anything else).
    Start,
    Join(JoinRequest<H::Member>),
    /// A session leaves; with `reply`, it gets `left` (after every frame sent to it before).
    Leave {
        session: SessionId,
        r#ref: Option<String>,
        reply: bool,
    },
    /// A log entry to append; its outcome goes to `reply` after the commit.
    Post {
        entry: NewMessage,
        reply: H::PostReply,
    },
    Typing {
        session: SessionId,
        user: UserId,
    },
    /// Move `user`'s read cursor (batched like appends).
    MarkRead {
        user: UserId,
        seq: Seq,
        reply: H::ReadReply,
    },
    /// A `read` frame for the members other than `user`'s own sessions (read receipts).
    ReadReceipt {
        user: UserId,
        frame: ByteString,
    },
    /// From the cluster bridge: an envelope, a dead node, a resync or catch-up request.
    Cluster(FromCluster),
    /// A delivery was refused: the member is slow (`slow`) or gone.
    Undeliverable {
        session: SessionId,
        slow: bool,
    },
    /// A timer this room scheduled went off.
    Timer(Timer),
    /// The result of an effect.
    Done(Done),
}

/// Results of the effects that read or write the store (and the bus's presence hash).
#[derive(Debug)]
pub enum Done {
    /// [`Effect::Attach`]: the head, and (in a cluster) who is present on other nodes.
    Attached {
        head: Result<RoomHead, StoreError>,
        presence: Option<Vec<(NodeId, PresenceUser)>>,
    },
    /// [`Effect::ReadHead`].
    Head {
        why: HeadWhy,
        result: Result<RoomHead, StoreError>,
    },
    /// [`Effect::Append`]: the batch comes back with its outcome (to retry it, if need be).
    Appended {
        batch: Vec<NewMessage>,
        result: Result<AppendOutcome, StoreError>,
    },
    /// [`Effect::Repair`].
    Repaired {
        result: Result<Vec<Message>, StoreError>,
    },
    /// [`Effect::CatchUp`]: the committed head and what this node had not delivered up to it.
    CaughtUp {
        result: Result<(RoomHead, Vec<Message>), StoreError>,
    },
    /// [`Effect::ReadForJoin`].
    JoinRead {
        join: u64,
        read: Option<ReadState>,
        backfill: Result<Vec<Message>, StoreError>,
    },
    /// [`Effect::MarkRead`]: per request, the cursor afterwards and whether it moved.
    ReadsMarked {
        result: Result<Vec<(ReadState, bool)>, StoreError>,
    },
    /// [`Effect::ResetEpoch`].
    EpochReset {
        result: Result<RoomHead, StoreError>,
    },
    /// [`Effect::Resync`].
    Resynced {
        floor: Seq,
        head: Result<RoomHead, StoreError>,
        presence: Option<Vec<(NodeId, PresenceUser)>>,
    },
    /// [`Effect::RefreshReads`]: cursors that moved past 0.
    ReadsRefreshed { states: Vec<(UserId, ReadState)> },
}

/// Why the head is read (it comes back with the result).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadWhy {
    /// Joins are waiting for a head (the store was down when the room started). Blocking.
    Joins,
    /// A commit came back under another epoch. Blocking.
    Confirm,
    /// Something may have committed unseen: the bridge asked for a catch-up (its own heartbeats
    /// stopped coming back), a node died (perhaps between a commit and its publish), an append
    /// failed (perhaps after its commit, the answer lost on the way back). `floor` is what the
    /// room knew was committed when it asked; what the head shows beyond it is repaired here and
    /// announced to the other nodes. Read again later until the store answers.
    CatchUp { floor: Seq },
}

/// The room's timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    /// A gap is older than `room.gap_repair_ms`: read it from the store.
    Repair,
    /// No members and nothing in flight for `room.idle_stop_ms`: stop.
    Idle,
    /// An epoch reset failed: try again.
    ResetRetry,
    /// A catch-up's head read (or a resync's) failed: read it again.
    Recheck,
}
