//! Messages a Room handles (verbs) and what it sends back to sessions.

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use bytestring::ByteString;
use tokio::sync::oneshot;

use crate::ids::{RoomId, Seq};
use crate::protocol::PresenceUser;
use crate::store::{Appended, NewMessage, StoreError};

pub type SessionId = Arc<str>;

/// Room → session. Always through the session's bounded mailbox (`try_send`), in order.
#[derive(Message)]
#[rtype(result = "()")]
pub enum ToSession {
    /// One pre-serialised frame shared by all recipients. `committed` is set on `message` frames
    /// (for `chorus_message_delivery_seconds`).
    Frame {
        frame: ByteString,
        committed: Option<Instant>,
    },
    /// A join's reply and backfill in one piece, so a long backfill cannot overflow the mailbox.
    Frames {
        frames: Vec<ByteString>,
        messages: u64,
    },
    /// The room ended this membership: a failed join, or (slow) the session fell too far behind.
    Dropped { room: RoomId, slow: bool },
}

/// Subscribe a session. Replies (`joined`, `presence`, backfill, or an `error`) arrive as [`ToSession`].
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Join {
    pub session: SessionId,
    pub outbox: Recipient<ToSession>,
    pub user: PresenceUser,
    pub since: Option<Seq>,
    pub epoch: Option<String>,
    pub r#ref: Option<String>,
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
    /// Sent with `do_send`: replies are one per request and requests are rate-limited.
    Session {
        outbox: Recipient<ToSession>,
        r#ref: Option<String>,
    },
}

/// Ephemeral typing notice for the room's other users.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Typing {
    pub session: SessionId,
    pub user: String,
}

/// Who is in the room (each user once).
#[derive(Message)]
#[rtype(result = "Vec<PresenceUser>")]
pub struct GetPresence;
