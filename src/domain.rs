//! Domain types every layer shares: a stored log entry ([`Message`]: a message, edit, delete or
//! reaction, PROTOCOL §7), a [`NewMessage`] before it has a seq, a [`PresenceUser`], and the one
//! timestamp format. They sit below the store, the wire protocol
//! and the bridge (see the layering in `lib.rs`), so none of those imports another for them.

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::ToSchema;

use crate::ids::{RoomId, Seq, UserId};

/// What a log entry is (PROTOCOL §7). On the wire, the frame's `type`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    #[default]
    Message,
    Edit,
    Delete,
    React,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Message => "message",
            Kind::Edit => "edit",
            Kind::Delete => "delete",
            Kind::React => "react",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "message" => Kind::Message,
            "edit" => Kind::Edit,
            "delete" => Kind::Delete,
            "react" => Kind::React,
            _ => return None,
        })
    }
}

/// A reaction's direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReactOp {
    Add,
    Remove,
}

impl ReactOp {
    pub fn as_str(self) -> &'static str {
        match self {
            ReactOp::Add => "add",
            ReactOp::Remove => "remove",
        }
    }

    pub fn parse(s: &str) -> Option<ReactOp> {
        match s {
            "add" => Some(ReactOp::Add),
            "remove" => Some(ReactOp::Remove),
            _ => None,
        }
    }
}

/// One reaction key on a message in its folded state: how many hold it, and up to 20 of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Reaction {
    pub key: String,
    pub count: i64,
    pub users: Vec<UserId>,
}

/// Most user ids a folded reaction lists.
pub const REACTION_USERS_MAX: usize = 20;

/// A stored log entry, as clients see it (PROTOCOL §3 `message`, §7 entries). `type` comes first on
/// the wire, so the entry itself is the frame. A `message` entry read from the store is in its
/// current state: the last edit's body with `edited_ts`, or `deleted` with an empty body, and its
/// `reactions`; an `edit` entry whose target was deleted is `deleted` with an empty body too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Message {
    #[serde(rename = "type", default)]
    pub kind: Kind,
    pub room: RoomId,
    pub seq: Seq,
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Seq>,
    pub user: UserId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub body: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<ReactOp>,
    #[serde(serialize_with = "serialize_ts", deserialize_with = "deserialize_ts")]
    #[schema(value_type = String, format = DateTime)]
    pub ts: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_msg_id: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_opt_ts",
        deserialize_with = "deserialize_opt_ts"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub edited_ts: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reactions: Vec<Reaction>,
}

impl Message {
    /// A new `message` entry (the fields of §7 absent).
    pub fn new(room: RoomId, seq: Seq, id: String, user: UserId, body: String) -> Message {
        Message {
            kind: Kind::Message,
            room,
            seq,
            id,
            target: None,
            user,
            name: None,
            body,
            key: None,
            op: None,
            ts: now_ts(),
            client_msg_id: None,
            edited_ts: None,
            deleted: false,
            reactions: Vec::new(),
        }
    }

    /// The entry as a server frame: the same JSON, `type` first.
    pub fn frame(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// RFC 3339 UTC with milliseconds, e.g. `2026-11-22T10:00:00.123Z`.
pub fn format_ts(ts: &DateTime<Utc>) -> String {
    use chrono::{Datelike, Timelike};
    // Written digit by digit: chrono's `format` parses its pattern on every call, which was 2.5 %
    // of the node's profile at full ingest (every entry's ack and frame carry a timestamp).
    let year = ts.year();
    if !(0..=9999).contains(&year) || ts.nanosecond() >= 1_000_000_000 {
        return ts.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    }
    let millis = ts.nanosecond() / 1_000_000;
    let mut out = [0u8; 24];
    let mut put = |at: usize, width: usize, mut n: u32| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    put(0, 4, year as u32);
    put(5, 2, ts.month());
    put(8, 2, ts.day());
    put(11, 2, ts.hour());
    put(14, 2, ts.minute());
    put(17, 2, ts.second());
    put(20, 3, millis);
    for (at, sep) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
    ] {
        out[at] = sep;
    }
    out[23] = b'Z';
    out.iter().map(|&b| b as char).collect()
}

pub fn serialize_ts<S: Serializer>(ts: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_ts(ts))
}

pub fn serialize_opt_ts<S: Serializer>(
    ts: &Option<DateTime<Utc>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match ts {
        Some(ts) => serialize_ts(ts, s),
        None => s.serialize_none(),
    }
}

fn deserialize_opt_ts<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    deserialize_ts(d).map(Some)
}

fn deserialize_ts<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
    DateTime::parse_from_rfc3339(&s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(serde::de::Error::custom)
}

/// The commit timestamp: milliseconds, so every backend round-trips it exactly.
pub fn now_ts() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

/// What a new entry does.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Message {
        body: String,
    },
    Edit {
        target: Seq,
        body: String,
    },
    Delete {
        target: Seq,
    },
    React {
        target: Seq,
        key: String,
        op: ReactOp,
    },
}

impl Change {
    pub fn kind(&self) -> Kind {
        match self {
            Change::Message { .. } => Kind::Message,
            Change::Edit { .. } => Kind::Edit,
            Change::Delete { .. } => Kind::Delete,
            Change::React { .. } => Kind::React,
        }
    }

    pub fn target(&self) -> Option<Seq> {
        match self {
            Change::Message { .. } => None,
            Change::Edit { target, .. }
            | Change::Delete { target }
            | Change::React { target, .. } => Some(*target),
        }
    }

    /// The body it stores (empty for a delete or a reaction).
    pub fn body(&self) -> &str {
        match self {
            Change::Message { body } | Change::Edit { body, .. } => body,
            _ => "",
        }
    }
}

/// An entry to append, before it has a seq.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub user: UserId,
    pub name: Option<String>,
    pub client_msg_id: Option<String>,
    pub change: Change,
    /// The poster may delete others' messages (role `moderator` or `service`).
    pub moderator: bool,
}

impl NewMessage {
    /// A plain message by `user`.
    pub fn message(user: UserId, body: impl Into<String>) -> NewMessage {
        NewMessage {
            user,
            name: None,
            client_msg_id: None,
            change: Change::Message { body: body.into() },
            moderator: false,
        }
    }
}

/// Why the log refused an entry (PROTOCOL §7 errors); nothing was committed for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No such message.
    NotFound,
    /// Not the author, not allowed.
    Forbidden,
    /// The target is deleted.
    Gone,
}

/// Someone present in a room, as `presence` frames show them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub struct PresenceUser {
    pub user: UserId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn timestamps_are_formatted_as_chrono_formats_them(ms in -62_000_000_000_000i64..300_000_000_000_000) {
            let ts = DateTime::<Utc>::from_timestamp_millis(ms).unwrap();
            prop_assert_eq!(format_ts(&ts), ts.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string());
        }
    }

    #[test]
    fn a_timestamp_has_millisecond_precision_and_a_z() {
        let ts = DateTime::<Utc>::from_timestamp_millis(1_764_720_000_123).unwrap();
        assert_eq!(format_ts(&ts), "2025-12-03T00:00:00.123Z");
    }
}
