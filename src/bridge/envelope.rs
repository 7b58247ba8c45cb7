//! What nodes say to each other over the bus, and the names it travels under.
//!
//! - Room channel `<prefix>:room:<id>`: a [`RoomEnvelope`] (version, origin node, room, seq, event).
//!   `seq` is the highest seq the event is about (a batch's last message, or a room head).
//! - Node channel `<prefix>:nodes`: a [`NodeNotice`] (heartbeat or goodbye) from every node.
//! - Users channel `<prefix>:users` (Redis Cluster: `<prefix>:users:{u<k>}`, 16 sharded channels
//!   by user): a [`ReadNotice`] whenever a user's read cursor moves, so every node can tell that
//!   user's sessions (and, with read receipts, the room's members). And a [`KickNotice`] when an
//!   operator disconnects a user from a room.
//! - Presence hash `<prefix>:presence:<room>`: one field per (node, user) present on that node, so a
//!   node that starts serving a room can read who is there without asking every node.
//! - Alive key `<prefix>:node:<id>`: refreshed every heartbeat, expiring after `dead_after_ms`, so
//!   a node that never heard another one can still tell a dead node's leftover presence entries.
//!
//! Every payload is JSON and starts with `v`; a node ignores (and logs) a version it does not know,
//! so a rolling deploy of a newer protocol never crashes an older node.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::domain::Message;
use crate::domain::PresenceUser;
use crate::ids::{Epoch, NodeId, RoomId, Seq, UserId};

/// The envelope format version this node writes and reads.
pub const VERSION: u32 = 1;

/// A room event, published by the node where it happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomEnvelope {
    pub v: u32,
    pub origin: NodeId,
    pub room: RoomId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<Seq>,
    pub event: RoomEvent,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RoomEvent {
    /// Messages one commit made, ascending by seq.
    Messages { messages: Vec<Arc<Message>> },
    /// "This room's head is at least `seq`": sent after a reconnect, so a node that missed
    /// messages while this node could not publish repairs them from the store.
    Head,
    /// Users whose first socket on the origin node joined, or whose last one left.
    Presence {
        #[serde(default)]
        joins: Vec<PresenceUser>,
        #[serde(default)]
        leaves: Vec<PresenceUser>,
    },
    /// Ephemeral: `user` is typing.
    Typing { user: UserId },
    /// The room's history went backwards and the origin gave it a new `epoch`; live delivery
    /// continues after the envelope's `seq`. Receivers reset their members too.
    Reset { epoch: Epoch },
}

/// A node's announcement on the node channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeNotice {
    pub v: u32,
    pub origin: NodeId,
    pub event: NodeEvent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeEvent {
    /// "I am alive", every `cluster.heartbeat_ms`.
    Heartbeat,
    /// "I am leaving": the others drop this node's presence at once instead of after `dead_after_ms`.
    Bye,
}

/// A user's read cursor moved in a room (PROTOCOL §7 `read`): `unread` counts the entries up to
/// `last_seq`, the room's head when it was computed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadNotice {
    pub v: u32,
    pub origin: NodeId,
    pub room: RoomId,
    pub user: UserId,
    pub seq: Seq,
    pub unread: i64,
    pub last_seq: Seq,
}

impl ReadNotice {
    pub fn encode(&self) -> bytes::Bytes {
        bytes::Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }
}

/// An operator removed `user` from `room` (`POST /api/admin/rooms/{room}/disconnect`): every node
/// closes that user's sessions in the room with 4003. `kick` tells it from a [`ReadNotice`] on the
/// same channel (a node of the previous version logs it as a read notice it cannot decode).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KickNotice {
    pub v: u32,
    pub origin: NodeId,
    pub kick: bool,
    pub room: RoomId,
    pub user: UserId,
}

impl KickNotice {
    pub fn encode(&self) -> bytes::Bytes {
        bytes::Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }
}

/// What travels on the users channel.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum UserNotice {
    Kick(KickNotice),
    Read(ReadNotice),
}

impl UserNotice {
    pub fn origin(&self) -> &NodeId {
        match self {
            UserNotice::Kick(k) => &k.origin,
            UserNotice::Read(r) => &r.origin,
        }
    }
}

pub fn decode_user_notice(payload: &[u8]) -> Result<UserNotice, DecodeError> {
    check_version(payload)?;
    Ok(serde_json::from_slice(payload)?)
}

/// Names of channels and keys under one prefix.
#[derive(Debug, Clone)]
pub struct Names {
    prefix: Arc<str>,
    sharded: bool,
}

impl Names {
    /// Single-Redis names (the default, and what every earlier version used).
    pub fn new(prefix: &str) -> Names {
        Names {
            prefix: Arc::from(prefix),
            sharded: false,
        }
    }

    /// Redis Cluster names: a room's channel and presence hash carry the room as a hash tag
    /// (`<prefix>:room:{<id>}`, `<prefix>:presence:{<id>}`), so both live on the shard that owns the
    /// room; every alive key carries the prefix as its tag (`{<prefix>}:node:<id>`), so one MGET
    /// reads them all. Room ids and (checked in config) the prefix hold no braces.
    pub fn sharded(prefix: &str) -> Names {
        Names {
            prefix: Arc::from(prefix),
            sharded: true,
        }
    }

    /// Whether room channels are sharded (Redis Cluster).
    pub fn is_sharded(&self) -> bool {
        self.sharded
    }

    /// What every room channel starts with (the room id, or `{id}` when sharded, follows).
    pub fn room_channel_prefix(&self) -> String {
        format!("{}:room:", self.prefix)
    }

    fn tagged(&self, kind: &str, room: &RoomId) -> String {
        if self.sharded {
            format!("{}:{kind}:{{{room}}}", self.prefix)
        } else {
            format!("{}:{kind}:{room}", self.prefix)
        }
    }

    /// What follows `<prefix>:<kind>` in `name` (no allocation: this runs for every envelope).
    fn after<'a>(&self, name: &'a str, kind: &str) -> Option<&'a str> {
        name.strip_prefix(&*self.prefix)?
            .strip_prefix(':')?
            .strip_prefix(kind)
    }

    /// The room in what follows a room channel's or presence key's prefix.
    fn untag(&self, rest: &str) -> Option<RoomId> {
        if self.sharded {
            RoomId::parse(rest.strip_prefix('{')?.strip_suffix('}')?)
        } else {
            RoomId::parse(rest)
        }
    }

    pub fn room_channel(&self, room: &RoomId) -> String {
        self.tagged("room", room)
    }

    /// The room a channel name belongs to, if it is one of this prefix's room channels.
    pub fn room_of(&self, channel: &str) -> Option<RoomId> {
        self.untag(self.after(channel, "room")?.strip_prefix(':')?)
    }

    pub fn nodes_channel(&self) -> String {
        format!("{}:nodes", self.prefix)
    }

    /// The users channel that carries `user`'s notices. One Redis: `<prefix>:users`. Redis
    /// Cluster: one of [`USER_SHARDS`] sharded channels `<prefix>:users:{u<k>}` by a hash of the
    /// user, so read notices spread over the shards instead of reaching every shard (classic
    /// pub/sub in a cluster is forwarded to all of them); one user's notices keep their order.
    pub fn users_channel(&self, user: &str) -> String {
        if self.sharded {
            format!("{}:users:{{u{}}}", self.prefix, user_shard(user))
        } else {
            format!("{}:users", self.prefix)
        }
    }

    /// Every users channel (a node subscribes to all of them).
    pub fn users_channels(&self) -> Vec<String> {
        if self.sharded {
            (0..USER_SHARDS)
                .map(|k| format!("{}:users:{{u{k}}}", self.prefix))
                .collect()
        } else {
            vec![format!("{}:users", self.prefix)]
        }
    }

    /// Whether `channel` is one of the users channels.
    pub fn is_users_channel(&self, channel: &str) -> bool {
        match self.after(channel, "users") {
            Some("") => !self.sharded,
            Some(rest) => self.sharded && rest.starts_with(":{u") && rest.ends_with('}'),
            None => false,
        }
    }

    /// What the channels that use sharded pub/sub on a Redis Cluster start with: rooms' and the
    /// users shards'.
    pub fn sharded_prefixes(&self) -> Vec<String> {
        vec![
            self.room_channel_prefix(),
            format!("{}:users:", self.prefix),
        ]
    }

    /// Exists while the node is alive: set with a `dead_after_ms` expiry every heartbeat.
    pub fn alive_key(&self, node: &str) -> String {
        if self.sharded {
            format!("{{{}}}:node:{}", self.prefix, node)
        } else {
            format!("{}:node:{}", self.prefix, node)
        }
    }

    pub fn presence_key(&self, room: &RoomId) -> String {
        self.tagged("presence", room)
    }

    /// What every presence key starts with (the room follows).
    pub fn presence_key_prefix(&self) -> String {
        format!("{}:presence:", self.prefix)
    }

    /// The room a presence key is about.
    pub fn room_of_presence_key(&self, key: &str) -> Option<RoomId> {
        self.untag(self.after(key, "presence")?.strip_prefix(':')?)
    }
}

/// How many sharded users channels a Redis Cluster deployment spreads read notices over.
pub const USER_SHARDS: u32 = 16;

/// A user's users-channel shard: FNV-1a of the id (stable across nodes and versions).
fn user_shard(user: &str) -> u32 {
    let hash = user.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    hash % USER_SHARDS
}

/// The presence-hash field of `user` on `node` (a JSON pair: both ids may hold any character).
pub fn presence_field(node: &str, user: &str) -> String {
    serde_json::to_string(&(node, user)).unwrap_or_default()
}

/// Reads a presence-hash entry back; `None` for anything malformed (it is skipped, not fatal).
pub fn parse_presence_entry(field: &str, value: &str) -> Option<(NodeId, PresenceUser)> {
    let (node, user): (NodeId, UserId) = serde_json::from_str(field).ok()?;
    let presence: PresenceUser = serde_json::from_str(value).ok()?;
    (presence.user == user).then_some((node, presence))
}

impl RoomEnvelope {
    pub fn encode(&self) -> bytes::Bytes {
        bytes::Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }
}

impl NodeNotice {
    pub fn encode(&self) -> bytes::Bytes {
        bytes::Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }
}

/// Why an inbound payload was ignored.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("malformed envelope: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("envelope version {0} is not {VERSION}")]
    Version(u32),
}

#[derive(Deserialize)]
struct VersionOnly {
    v: u32,
}

fn check_version(payload: &[u8]) -> Result<(), DecodeError> {
    let VersionOnly { v } = serde_json::from_slice(payload)?;
    if v == VERSION {
        Ok(())
    } else {
        Err(DecodeError::Version(v))
    }
}

pub fn decode_room(payload: &[u8]) -> Result<RoomEnvelope, DecodeError> {
    check_version(payload)?;
    Ok(serde_json::from_slice(payload)?)
}

pub fn decode_node(payload: &[u8]) -> Result<NodeNotice, DecodeError> {
    check_version(payload)?;
    Ok(serde_json::from_slice(payload)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::now_ts;

    fn message(seq: Seq) -> Arc<Message> {
        let mut m = Message::new(
            RoomId::parse("r1").unwrap(),
            seq,
            format!("id{seq}"),
            "u\"1".into(),
            "hi \n there".into(),
        );
        m.name = Some("Ü".into());
        m.ts = now_ts();
        Arc::new(m)
    }

    #[test]
    fn room_envelopes_round_trip() {
        let room = RoomId::parse("r1").unwrap();
        for event in [
            RoomEvent::Messages {
                messages: vec![message(Seq::new(1)), message(Seq::new(2))],
            },
            RoomEvent::Head,
            RoomEvent::Presence {
                joins: vec![PresenceUser {
                    user: "a".into(),
                    name: None,
                }],
                leaves: vec![],
            },
            RoomEvent::Typing { user: "b".into() },
        ] {
            let env = RoomEnvelope {
                v: VERSION,
                origin: "node-1".into(),
                room: room.clone(),
                seq: Some(Seq::new(2)),
                event,
            };
            assert_eq!(decode_room(&env.encode()).unwrap(), env);
        }
    }

    #[test]
    fn unknown_versions_and_garbage_are_refused() {
        let env = br#"{"v":2,"origin":"n","room":"r","event":{"kind":"head"}}"#;
        assert!(matches!(decode_room(env), Err(DecodeError::Version(2))));
        assert!(decode_room(b"not json").is_err());
        let bad_room = br#"{"v":1,"origin":"n","room":"no spaces","event":{"kind":"head"}}"#;
        assert!(decode_room(bad_room).is_err());
        let notice = NodeNotice {
            v: VERSION,
            origin: "n".into(),
            event: NodeEvent::Bye,
        };
        assert_eq!(decode_node(&notice.encode()).unwrap(), notice);
        let read = ReadNotice {
            v: VERSION,
            origin: "n".into(),
            room: RoomId::parse("r").unwrap(),
            user: "u".into(),
            seq: Seq::new(4),
            unread: 2,
            last_seq: Seq::new(7),
        };
        assert_eq!(
            decode_user_notice(&read.encode()).unwrap(),
            UserNotice::Read(read.clone())
        );
        let kick = KickNotice {
            v: VERSION,
            origin: read.origin.clone(),
            kick: true,
            room: read.room.clone(),
            user: read.user.clone(),
        };
        assert_eq!(
            decode_user_notice(&kick.encode()).unwrap(),
            UserNotice::Kick(kick)
        );
    }

    #[test]
    fn channel_names_map_back_to_rooms_under_their_prefix_only() {
        let names = Names::new("t1");
        let room = RoomId::parse("a:b").unwrap();
        assert_eq!(names.room_channel(&room), "t1:room:a:b");
        assert_eq!(names.room_of("t1:room:a:b"), Some(room.clone()));
        assert_eq!(names.room_of("t2:room:a:b"), None);
        assert_eq!(names.room_of("t1:nodes"), None);
        assert_eq!(
            names.room_of_presence_key("t1:presence:a:b"),
            Some(room.clone())
        );

        let sharded = Names::sharded("t1");
        assert_eq!(sharded.room_channel(&room), "t1:room:{a:b}");
        assert_eq!(sharded.room_of("t1:room:{a:b}"), Some(room.clone()));
        assert_eq!(sharded.room_of("t1:room:a:b"), None);
        assert_eq!(sharded.presence_key(&room), "t1:presence:{a:b}");
        assert_eq!(
            sharded.room_of_presence_key("t1:presence:{a:b}"),
            Some(room.clone())
        );
        assert_eq!(sharded.alive_key("n1"), "{t1}:node:n1");
        // Users channels: one on one Redis; 16 shards by user on a cluster, each recognised.
        assert_eq!(names.users_channel("bob"), "t1:users");
        assert_eq!(names.users_channels(), ["t1:users"]);
        assert!(names.is_users_channel("t1:users") && !names.is_users_channel("t1:users:{u1}"));
        let all = sharded.users_channels();
        assert_eq!(all.len(), USER_SHARDS as usize);
        assert!(all.contains(&sharded.users_channel("bob")));
        assert!(all.iter().all(|c| sharded.is_users_channel(c)));
        assert!(!sharded.is_users_channel("t1:users") && !sharded.is_users_channel("t1:nodes"));
        let spread: std::collections::HashSet<String> = (0..200)
            .map(|i| sharded.users_channel(&format!("user{i}")))
            .collect();
        assert_eq!(
            spread.len(),
            USER_SHARDS as usize,
            "users spread over every shard"
        );
        // The room's channel and presence hash share a shard; all alive keys share one.
        let slot = fred::util::redis_keyslot;
        assert_eq!(
            slot(sharded.room_channel(&room).as_bytes()),
            slot(sharded.presence_key(&room).as_bytes())
        );
        assert_eq!(
            slot(sharded.alive_key("n1").as_bytes()),
            slot(sharded.alive_key("another-node").as_bytes())
        );
    }

    #[test]
    fn presence_fields_survive_any_characters() {
        let field = presence_field("node\t1", "user \"x\"");
        let value = serde_json::to_string(&PresenceUser {
            user: "user \"x\"".into(),
            name: Some("X".into()),
        })
        .unwrap();
        let (node, user) = parse_presence_entry(&field, &value).unwrap();
        assert_eq!(
            (node.as_str(), user.user.as_str()),
            ("node\t1", "user \"x\"")
        );
        assert!(parse_presence_entry("garbage", &value).is_none());
    }
}
