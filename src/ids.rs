//! Identifier newtypes parsed at the boundary: a [`RoomId`] that exists is valid
//! (`^[A-Za-z0-9_.:-]{1,128}$`, PROTOCOL.md §2), so nothing inside the node re-checks it.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Per-room message sequence number: starts at 1, gap-free, assigned in the commit.
pub type Seq = i64;

/// A validated room id. Cheap to clone (shared string).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomId(Arc<str>);

impl RoomId {
    pub fn parse(s: &str) -> Option<RoomId> {
        let ok = (1..=128).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
        ok.then(|| RoomId(Arc::from(s)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RoomId({})", &self.0)
    }
}

impl Serialize for RoomId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// Parsed like every other boundary: an invalid id is a deserialisation error.
impl<'de> Deserialize<'de> for RoomId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        RoomId::parse(&s).ok_or_else(|| serde::de::Error::custom("invalid room id"))
    }
}

/// A user id is the token's `sub`: 1-128 characters the store can take.
pub fn valid_user_id(s: &str) -> bool {
    (1..=128).contains(&s.chars().count()) && storable(s)
}

/// Whether Postgres can store `s` as `text`: every Unicode scalar value except U+0000 (SQLSTATE
/// 22021). Every string a client sends that reaches the store passes this check at the boundary
/// (bodies, `client_msg_id`, a token's `sub` and `name`), so one bad message never fails a batch.
pub fn storable(s: &str) -> bool {
    !s.contains('\0')
}

/// A short random id for sessions, messages' epochs and node suffixes.
pub fn random_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_ids_follow_the_protocol_pattern() {
        for ok in ["a", "general", "team-1:chat.room_2", &"x".repeat(128)] {
            assert!(RoomId::parse(ok).is_some(), "{ok}");
        }
        for bad in ["", "has space", "slash/no", "ünï", &"x".repeat(129), "a*"] {
            assert!(RoomId::parse(bad).is_none(), "{bad}");
        }
    }
}
