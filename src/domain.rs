//! Domain types every layer shares: a stored [`Message`], a [`NewMessage`] before it has a seq,
//! a [`PresenceUser`], and the one timestamp format. They sit below the store, the wire protocol
//! and the bridge (see the layering in `lib.rs`), so none of those imports another for them.

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ids::{RoomId, Seq, UserId};

/// A stored message, as clients see it (PROTOCOL.md §3 `message`, §4 message JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub room: RoomId,
    pub seq: Seq,
    pub id: String,
    pub user: UserId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub body: String,
    #[serde(serialize_with = "serialize_ts", deserialize_with = "deserialize_ts")]
    pub ts: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_msg_id: Option<String>,
}

/// RFC 3339 UTC with milliseconds, e.g. `2026-11-22T10:00:00.123Z`.
pub fn format_ts(ts: &DateTime<Utc>) -> String {
    ts.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

fn serialize_ts<S: Serializer>(ts: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_ts(ts))
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

/// A message to append, before it has a seq.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub user: UserId,
    pub name: Option<String>,
    pub body: String,
    pub client_msg_id: Option<String>,
}

/// Someone present in a room, as `presence` frames show them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PresenceUser {
    pub user: UserId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}
