//! Messages a Room handles (verbs) and what it sends back to sessions.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use actix::prelude::*;
use bytestring::ByteString;
use tokio::sync::oneshot;

use crate::domain::Kind;
use crate::ids::{RoomId, Seq, SessionId, UserId};
use crate::protocol::PresenceUser;
use crate::store::{Appended, NewMessage, ReadState, StoreError};

/// One frame on its way to a session. For a `message` frame, `seq` and `committed` are set once
/// per broadcast, so no recipient has to parse the frame to learn them (`committed` feeds
/// `chorus_message_delivery_seconds`; `seq` is the SSE `id:`).
#[derive(Clone)]
pub struct Delivery {
    pub frame: ByteString,
    pub committed: Option<Instant>,
    pub seq: Option<Seq>,
    /// The entry's type when `seq` is set (the SSE `event:`).
    pub kind: Kind,
}

/// Room → session, always through the session's [`Outbox`], in order.
#[derive(Message)]
#[rtype(result = "()")]
pub enum ToSession {
    /// One broadcast frame (counted against `session.queue_max`).
    Live(Delivery),
    /// Several broadcast frames from one flush, shared by every member (counted).
    LiveBatch(Arc<[Delivery]>),
    /// A direct reply: ack, error, left (not counted: one per request, and requests are rate-limited).
    Reply(ByteString),
    /// A join's reply with its backfill, in one piece (not counted: bounded by `room.max_catchup`).
    Replies {
        frames: Vec<ByteString>,
        messages: u64,
    },
    /// The room ended this membership.
    Dropped { room: RoomId, why: DropReason },
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
        epoch: Option<String>,
        last_seq: Option<Seq>,
    },
}

impl ToSession {
    /// How many frames this adds to the session's queue.
    pub fn counted(&self) -> usize {
        match self {
            ToSession::Live(_) => 1,
            ToSession::LiveBatch(b) => b.len(),
            _ => 0,
        }
    }
}

/// Why a delivery was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Undeliverable {
    /// The session has `session.queue_max` frames it has not written yet: a slow consumer.
    Slow,
    /// The session is gone.
    Gone,
}

/// A session's outbound queue as rooms see it: its mailbox plus the number of broadcast frames
/// queued but not yet written to the socket. When a client stops reading, the HTTP layer stops
/// polling the session, the count climbs, and the next delivery past the limit is refused.
#[derive(Clone)]
pub struct Outbox {
    recipient: Recipient<ToSession>,
    queued: Arc<AtomicUsize>,
    limit: usize,
}

impl Outbox {
    pub fn new(recipient: Recipient<ToSession>, limit: usize) -> Outbox {
        Outbox {
            recipient,
            queued: Arc::default(),
            limit,
        }
    }

    /// Queues broadcast frames, or refuses them if the session is slow or gone.
    pub fn deliver(&self, msg: ToSession) -> Result<(), Undeliverable> {
        let n = msg.counted();
        if self.queued.fetch_add(n, Ordering::AcqRel) + n > self.limit {
            self.queued.fetch_sub(n, Ordering::AcqRel);
            return Err(Undeliverable::Slow);
        }
        self.recipient.try_send(msg).map_err(|e| {
            self.queued.fetch_sub(n, Ordering::AcqRel);
            match e {
                SendError::Full(_) => Undeliverable::Slow,
                SendError::Closed(_) => Undeliverable::Gone,
            }
        })
    }

    /// Direct replies and notices: never refused for size (see [`ToSession::Reply`]).
    pub fn reply(&self, msg: ToSession) {
        self.recipient.do_send(msg);
    }

    /// Called by the session for every frame it has written.
    pub fn written(&self, n: usize) {
        self.queued.fetch_sub(n, Ordering::AcqRel);
    }
}

/// Subscribe a session. Replies (`joined`, `presence`, backfill, or an `error`) arrive as [`ToSession`].
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Join {
    pub session: SessionId,
    pub outbox: Outbox,
    pub user: PresenceUser,
    pub since: Option<Seq>,
    pub epoch: Option<String>,
    pub r#ref: Option<String>,
    /// Not shown in presence (HTTP streams: SSE and long-poll listeners).
    pub hidden: bool,
}

/// Unsubscribe. With `reply`, the room sends `left` (ordered after every frame it sent before).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave {
    pub session: SessionId,
    pub r#ref: Option<String>,
    pub reply: bool,
}

/// Append a message; the outcome is reported through `reply` only after the commit (or its failure).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Post {
    pub message: NewMessage,
    pub reply: PostReply,
}

/// Where a post's outcome goes.
pub enum PostReply {
    /// REST: the outcome on a channel.
    Channel(oneshot::Sender<Result<Appended, StoreError>>),
    /// WebSocket: an `ack` (or `error`) frame into the sender's outbox. It is queued before the
    /// message is broadcast, so a sender always sees its `ack` before its own copy of the message.
    Session {
        outbox: Outbox,
        r#ref: Option<String>,
    },
}

/// Ephemeral typing notice for the room's other users.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Typing {
    pub session: SessionId,
    pub user: UserId,
}

/// Move `user`'s read cursor to `seq` (§7); answered once the batch it joined is written: the
/// cursor and unread count afterwards, and whether this request moved it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct MarkRead {
    pub user: UserId,
    pub seq: Seq,
    pub reply: oneshot::Sender<Result<(ReadState, bool), StoreError>>,
}

/// A user's read cursor moved (§7, `room.read_receipts` on): the `read` frame for the room's
/// members other than that user's own sessions (those get it from the session layer).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReadReceipt {
    pub user: UserId,
    pub frame: ByteString,
}

/// Who is in the room (each user once).
#[derive(Message)]
#[rtype(result = "Vec<PresenceUser>")]
pub struct GetPresence;
