//! The client frames as a JSON Schema (`utoipa`), for the AsyncAPI document
//! (`/api/asyncapi.json`). [`super::client::decode`] reads frames field by field (so each bad
//! field gets its own error), so this enum is the description, not the parser; the tests below
//! hold the two together: every frame the schema accepts in its examples decodes, and frames
//! the decoder refuses for a field's type or bounds are refused by the schema too.
//! (Server frames are described by [`super::ServerFrame`]'s own derive.)

use utoipa::ToSchema;

use crate::domain::ReactOp;
use crate::ids::RoomId;

/// A frame a client sends over the WebSocket (PROTOCOL §3, §7). `ref`, when given (at most 64
/// characters), comes back on the answer. `null` counts as absent; unknown fields are ignored.
#[derive(ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(dead_code)]
pub enum ClientFrameSchema {
    /// Join a room; with `since` (the last seq you have) the missed entries come first.
    Join {
        room: RoomId,
        #[schema(max_length = 64)]
        r#ref: Option<String>,
        #[schema(minimum = 0)]
        since: Option<i64>,
        /// The epoch `since` belongs to (from `joined`): another epoch means a reset.
        #[schema(max_length = 256)]
        epoch: Option<String>,
    },
    Leave {
        room: RoomId,
        #[schema(max_length = 64)]
        r#ref: Option<String>,
    },
    /// Post a message: acked after commit with its seq.
    Send {
        room: RoomId,
        #[schema(max_length = 64)]
        r#ref: Option<String>,
        /// 1 to `limits.max_body_bytes` bytes, not only whitespace, no NUL.
        #[schema(pattern = r"^[^\x00]*[^\s\x00][^\x00]*$")]
        body: String,
        #[schema(min_length = 1, max_length = 128, pattern = r"^[^\x00]*$")]
        client_msg_id: Option<String>,
    },
    /// A page of the room's log before `before` (default: the newest).
    History {
        room: RoomId,
        #[schema(max_length = 64)]
        r#ref: Option<String>,
        #[schema(minimum = 0)]
        before: Option<i64>,
        /// Clamped to 1-200 (default 50).
        #[schema(minimum = 0)]
        limit: Option<i64>,
    },
    Typing {
        room: RoomId,
    },
    Ping {
        #[schema(max_length = 64)]
        r#ref: Option<String>,
    },
    /// Edit your message `target`.
    Edit {
        room: RoomId,
        #[schema(max_length = 64)]
        r#ref: Option<String>,
        #[schema(minimum = 0)]
        target: i64,
        #[schema(pattern = r"^[^\x00]*[^\s\x00][^\x00]*$")]
        body: String,
        #[schema(min_length = 1, max_length = 128, pattern = r"^[^\x00]*$")]
        client_msg_id: Option<String>,
    },
    /// Delete a message (yours; any, for a moderator).
    Delete {
        room: RoomId,
        #[schema(max_length = 64)]
        r#ref: Option<String>,
        #[schema(minimum = 0)]
        target: i64,
        #[schema(min_length = 1, max_length = 128, pattern = r"^[^\x00]*$")]
        client_msg_id: Option<String>,
    },
    /// Add or remove your reaction `key` on `target`.
    React {
        room: RoomId,
        #[schema(max_length = 64)]
        r#ref: Option<String>,
        #[schema(minimum = 0)]
        target: i64,
        #[schema(pattern = r"^[^\s\x00-\x1f\x7f-\x9f]{1,32}$")]
        key: String,
        op: ReactOp,
        #[schema(min_length = 1, max_length = 128, pattern = r"^[^\x00]*$")]
        client_msg_id: Option<String>,
    },
    /// Move your read cursor to `seq`.
    Read {
        room: RoomId,
        #[schema(max_length = 64)]
        r#ref: Option<String>,
        #[schema(minimum = 0)]
        seq: i64,
    },
}
