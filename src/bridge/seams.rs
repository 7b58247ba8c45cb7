//! How the bridge sees the rest of the node, so it needs nothing from the layers above it: the
//! rooms through a [`Directory`] (the room registry implements it) and the users' sessions through
//! [`Users`] (the session layer implements it).

use super::envelope::{ReadNotice, RoomEnvelope};
use crate::ids::{NodeId, RoomId, UserId};

/// What the bridge tells a room.
#[derive(actix::Message)]
#[rtype(result = "()")]
pub enum FromCluster {
    /// Another node's event for this room.
    Event(RoomEnvelope),
    /// A node died or left: its users are no longer here.
    NodeDown(NodeId),
    /// The bus is down: read the head from the store and repair up to it.
    CatchUp,
    /// The bus came back or lost envelopes: repair from the store, re-read and re-announce
    /// presence, and tell the others this room's head.
    Resync,
}

/// The rooms running on this node, as the bridge sees them (the room registry implements it), so
/// the bridge needs nothing from the room module.
pub trait Directory: Send + Sync + 'static {
    /// Hands `msg` to the room if it runs on this node; otherwise drops it.
    fn tell(&self, room: &RoomId, msg: FromCluster);
    /// Hands a fresh `msg()` to every running room.
    fn tell_all(&self, msg: &dyn Fn() -> FromCluster);
}

/// The node's sessions, as the bridge sees them (the session layer implements it): where another
/// node's [`ReadNotice`] goes.
pub trait Users: Send + Sync + 'static {
    /// A user's read cursor moved on another node: tell that user's sessions here (and the room's
    /// members, with read receipts on).
    fn read_moved(&self, notice: ReadNotice);
    /// An operator disconnected `user` from `room` (on any node): close that user's sessions
    /// here that joined the room, with 4003.
    fn kick(&self, room: &RoomId, user: &UserId);
}
