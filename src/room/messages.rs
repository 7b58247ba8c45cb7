//! Messages the Room actor handles (verbs), and the [`Outbox`] through which it reaches a
//! session: what sessions and HTTP handlers send to a room, and how the room answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use actix::prelude::*;
use bytestring::ByteString;
use tokio::sync::oneshot;

use super::delivery::ToSession;
use crate::ids::{Epoch, Seq, SessionId, UserId};
use crate::protocol::PresenceUser;
use crate::store::{Appended, NewMessage, ReadState, StoreError};

impl Message for ToSession {
    type Result = ();
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
    pub epoch: Option<Epoch>,
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
