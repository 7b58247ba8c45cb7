//! Server → client frames (PROTOCOL.md §3, §7). A frame is serialised once into a shared [`ByteString`]
//! and the same bytes go to every recipient: `type` is always the first key.

use bytestring::ByteString;
use serde::Serialize;

use crate::domain::{Message, PresenceUser};
use crate::ids::{RoomId, Seq};

/// Its schema (`utoipa`) is the AsyncAPI document's description of these frames
/// (`/api/asyncapi.json`); the integration suite validates every frame it receives against it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame<'a> {
    Hello {
        protocol: u32,
        node: &'a str,
        session: &'a str,
        user: &'a str,
        heartbeat_ms: u64,
    },
    Joined {
        #[serde(skip_serializing_if = "Option::is_none")]
        r#ref: Option<&'a str>,
        room: &'a RoomId,
        epoch: &'a str,
        last_seq: Seq,
        recovered: bool,
        /// The joining user's read cursor and unread count at `last_seq` (§7; absent when the
        /// store could not say).
        #[serde(skip_serializing_if = "Option::is_none")]
        read_seq: Option<Seq>,
        #[serde(skip_serializing_if = "Option::is_none")]
        unread: Option<i64>,
    },
    /// A log entry (message, edit, delete, react): the entry's own JSON, `type` first.
    #[serde(skip)]
    Entry(&'a Message),
    /// A user's read cursor moved (§7).
    Read {
        #[serde(skip_serializing_if = "Option::is_none")]
        r#ref: Option<&'a str>,
        room: &'a RoomId,
        user: &'a str,
        seq: Seq,
        unread: i64,
        /// The head `unread` runs to: entries after it adjust the count.
        last_seq: Seq,
    },
    Ack {
        #[serde(skip_serializing_if = "Option::is_none")]
        r#ref: Option<&'a str>,
        room: &'a RoomId,
        seq: Seq,
        id: &'a str,
        ts: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        client_msg_id: Option<&'a str>,
        duplicate: bool,
    },
    Left {
        #[serde(skip_serializing_if = "Option::is_none")]
        r#ref: Option<&'a str>,
        room: &'a RoomId,
    },
    /// The room's history was reset (its head went backwards): a new epoch; everything the client
    /// holds for the room is stale. Live delivery continues after `last_seq` (PROTOCOL §6).
    Reset {
        room: &'a RoomId,
        epoch: &'a str,
        last_seq: Seq,
    },
    History {
        #[serde(skip_serializing_if = "Option::is_none")]
        r#ref: Option<&'a str>,
        room: &'a RoomId,
        messages: &'a [Message],
    },
    Presence {
        room: &'a RoomId,
        users: &'a [PresenceUser],
    },
    PresenceDiff {
        room: &'a RoomId,
        joins: &'a [PresenceUser],
        leaves: &'a [PresenceUser],
    },
    Typing {
        room: &'a RoomId,
        user: &'a str,
    },
    Pong {
        #[serde(skip_serializing_if = "Option::is_none")]
        r#ref: Option<&'a str>,
    },
    Error {
        #[serde(skip_serializing_if = "Option::is_none")]
        r#ref: Option<&'a str>,
        code: &'static str,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
}

impl ServerFrame<'_> {
    /// Serialises the frame once; clone the result to share it (a reference-count bump, no copy).
    pub fn encode(&self) -> ByteString {
        let json = match self {
            ServerFrame::Entry(m) => serde_json::to_string(m),
            other => serde_json::to_string(other),
        };
        match json {
            Ok(s) => ByteString::from(s),
            // Serialising these plain structs cannot fail; keep actor code free of panics anyway.
            Err(_) => ByteString::from_static(
                r#"{"type":"error","code":"internal","message":"encoding failed"}"#,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_comes_first_and_absent_options_are_omitted() {
        let room = RoomId::parse("r").unwrap();
        let f = ServerFrame::Joined {
            r#ref: Some("1"),
            room: &room,
            epoch: "e",
            last_seq: Seq::new(4),
            recovered: true,
            read_seq: None,
            unread: None,
        }
        .encode();
        assert_eq!(
            &*f,
            r#"{"type":"joined","ref":"1","room":"r","epoch":"e","last_seq":4,"recovered":true}"#
        );
        let f = ServerFrame::Pong { r#ref: None }.encode();
        assert_eq!(&*f, r#"{"type":"pong"}"#);
    }
}
