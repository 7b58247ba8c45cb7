//! Identifier newtypes parsed at the boundary: a [`RoomId`] that exists is valid
//! (`^[A-Za-z0-9_.:-]{1,128}$`, PROTOCOL.md §2), so nothing inside the node re-checks it.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::ToSchema;

/// A position in a room's log: starts at 1, gap-free, assigned in the commit; 0 is "before the
/// first". A count of positions (how far apart two are, how many to read) is a plain `i64`:
/// `Seq + i64 → Seq`, `Seq - i64 → Seq`, `Seq - Seq → i64`. On the wire and in Postgres, a bigint.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, ToSchema)]
#[serde(transparent)]
pub struct Seq(i64);

/// An integer, as JSON Schema counts them: `7` and `7.0` alike (a JSON number with no fraction),
/// so a client whose JSON library writes every number as a double is not refused.
impl<'de> Deserialize<'de> for Seq {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = Seq;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a seq (an integer)")
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Seq, E> {
                Ok(Seq(n))
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Seq, E> {
                i64::try_from(n)
                    .map(Seq)
                    .map_err(|_| E::custom("seq out of range"))
            }
            fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Seq, E> {
                // Exactly representable, no fraction, in range (2^63 itself is not).
                if n.fract() == 0.0 && n >= i64::MIN as f64 && n < i64::MAX as f64 {
                    Ok(Seq(n as i64))
                } else {
                    Err(E::custom("a seq is an integer"))
                }
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Seq, E> {
                // Query strings and headers carry numbers as text.
                s.parse()
                    .map(Seq)
                    .map_err(|_| E::custom("a seq is an integer"))
            }
        }
        d.deserialize_any(Visit)
    }
}

impl Seq {
    /// Before the first message.
    pub const ZERO: Seq = Seq(0);

    pub const fn new(n: i64) -> Seq {
        Seq(n)
    }

    pub const fn get(self) -> i64 {
        self.0
    }
}

impl From<i64> for Seq {
    fn from(n: i64) -> Seq {
        Seq(n)
    }
}

impl std::ops::Add<i64> for Seq {
    type Output = Seq;
    fn add(self, n: i64) -> Seq {
        Seq(self.0 + n)
    }
}

impl std::ops::AddAssign<i64> for Seq {
    fn add_assign(&mut self, n: i64) {
        self.0 += n;
    }
}

impl std::ops::Sub<i64> for Seq {
    type Output = Seq;
    fn sub(self, n: i64) -> Seq {
        Seq(self.0 - n)
    }
}

impl std::ops::Sub for Seq {
    type Output = i64;
    fn sub(self, other: Seq) -> i64 {
        self.0 - other.0
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What [`RoomId::parse`] accepts, for API descriptions.
pub const ROOM_PATTERN: &str = "^[A-Za-z0-9_.:-]{1,128}$";

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

    /// Room patterns, as in tokens and `[[webhooks]]`: `*` is only a trailing wildcard, so
    /// `team-*` matches `team-1`, and `*` alone matches every room.
    pub fn matches(&self, pattern: &str) -> bool {
        match pattern.strip_suffix('*') {
            Some(prefix) => self.0.starts_with(prefix),
            None => pattern == &*self.0,
        }
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

/// In API descriptions (`/api/openapi.json`): a string of the id's pattern.
impl utoipa::PartialSchema for RoomId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(ROOM_PATTERN))
            .description(Some("A room id (PROTOCOL §2)"))
            .into()
    }
}

impl ToSchema for RoomId {}

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

/// Defines a shared-string id: cheap to clone, compared and hashed by value, serialised as the
/// plain string. These ids are trusted once made (their checks are at the boundary that makes
/// them: the token for a user, the configuration for a node).
macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
        #[serde(transparent)]
        #[schema(value_type = String)]
        pub struct $name(Arc<str>);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(Arc::from(s))
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                $name(Arc::from(s))
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                &*self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                &*self.0 == *other
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), &self.0)
            }
        }
    };
}

string_id!(
    /// One connection's session on this node (a WebSocket, or an SSE/long-poll listener).
    SessionId
);
string_id!(
    /// A node of the cluster (`node.id`): the origin of its envelopes and heartbeats, the owner of
    /// its presence entries.
    NodeId
);
string_id!(
    /// A user: the token's `sub` ([`valid_user_id`] checked it when the token was read).
    UserId
);
string_id!(
    /// A room history's identity (PROTOCOL §6): a `since` read under another epoch cannot be
    /// trusted. Made by the store when it creates a room or resets its history.
    Epoch
);

impl SessionId {
    pub fn random() -> SessionId {
        SessionId::from(random_id())
    }
}

impl Epoch {
    /// A new epoch: 12 random hex digits.
    pub fn random() -> Epoch {
        Epoch::from(random_hex(12))
    }
}

/// The one source of random ids: `len` (at most 32) hex digits of a v4 UUID. Sessions and
/// outbox leases take 32, epochs 12, node-id suffixes 6.
pub fn random_hex(len: usize) -> String {
    let mut id = uuid::Uuid::new_v4().simple().to_string();
    id.truncate(len);
    id
}

/// A random 32-hex-digit id (sessions, leases, secrets).
pub fn random_id() -> String {
    random_hex(32)
}

/// A log entry's `id`: a UUIDv7, so ids sort by creation time across nodes.
pub fn entry_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seq_is_an_integer_written_either_way() {
        let seq = |json: &str| serde_json::from_str::<Seq>(json).ok();
        assert_eq!(seq("7"), Some(Seq(7)));
        assert_eq!(seq("7.0"), Some(Seq(7)));
        assert_eq!(seq("-3"), Some(Seq(-3)));
        assert_eq!(seq("7.5"), None);
        assert_eq!(seq("1e300"), None);
        assert_eq!(seq("18446744073709551615"), None);
        assert_eq!(seq("\"x\""), None);
        let q: std::collections::HashMap<String, Seq> = serde_urlencoded_like("after=12");
        assert_eq!(q["after"], Seq(12));
    }

    /// A query string as actix reads one (`web::Query`).
    fn serde_urlencoded_like(q: &str) -> std::collections::HashMap<String, Seq> {
        actix_web::web::Query::<std::collections::HashMap<String, Seq>>::from_query(q)
            .unwrap()
            .into_inner()
    }

    #[test]
    fn random_ids_have_the_length_asked_for() {
        assert_eq!(random_id().len(), 32);
        assert_eq!(Epoch::random().len(), 12);
        assert_ne!(Epoch::random(), Epoch::random());
        assert!(random_hex(6).bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn a_user_id_is_1_to_128_characters_the_store_can_take() {
        assert!(valid_user_id("a") && valid_user_id(&"é".repeat(128)));
        assert!(!valid_user_id("") && !valid_user_id(&"u".repeat(129)));
        assert!(!valid_user_id("nul\0byte"));
    }

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
