//! Read cursors on the move (PROTOCOL §7): when a user's cursor moves, the `read` frame goes to
//! every session of that user on every node, so all their devices agree, and to the room's other
//! members when `room.read_receipts` is on.
//!
//! ```text
//! read frame / PUT …/read ─▶ store.mark_read ─▶ ReadRelay::moved ─┬▶ this node: the user's sessions
//!                                                                 │   (+ the room, for receipts)
//!                                                                 └▶ Cluster::publish_read ─▶ <prefix>:users
//! other node: Bridge ─▶ ReadRelay (bridge::Users) ─▶ that node's sessions of the user (+ receipts)
//! ```
//!
//! A notice the bus loses (Redis down) is made good by the rooms: on every Resync after an
//! outage, each room re-reads its members' cursors and sends them a fresh `read` frame.
//!
//! The same channel carries an operator's kick (`POST /api/admin/rooms/{room}/disconnect`): every
//! node closes the user's sessions that joined the room with 4003 ([`ReadRelay::kick`]).

use crate::bridge::Cluster;
use crate::bridge::envelope::{ReadNotice, VERSION};
use crate::ids::{NodeId, RoomId, SessionId, UserId};
use crate::protocol::ServerFrame;
use crate::room::{ReadReceipt, Registry, ToSession};
use crate::store::ReadState;

use super::open::Sessions;

/// Announces moved read cursors; cheap to clone.
#[derive(Clone)]
pub struct ReadRelay {
    node: NodeId,
    sessions: Sessions,
    rooms: Registry,
    cluster: Option<Cluster>,
    receipts: bool,
}

impl ReadRelay {
    pub fn new(
        node: NodeId,
        sessions: Sessions,
        rooms: Registry,
        cluster: Option<Cluster>,
        receipts: bool,
    ) -> ReadRelay {
        ReadRelay {
            node,
            sessions,
            rooms,
            cluster,
            receipts,
        }
    }

    /// `user`'s cursor in `room` moved to `state` on this node: tell this node's sessions of the
    /// user except `skip` (the one that asked gets the frame as its reply), then the other nodes.
    pub fn moved(&self, room: &RoomId, user: &UserId, state: ReadState, skip: Option<&SessionId>) {
        let notice = ReadNotice {
            v: VERSION,
            origin: self.node.clone(),
            room: room.clone(),
            user: user.clone(),
            seq: state.read_seq,
            unread: state.unread,
            last_seq: state.last_seq,
        };
        self.deliver(&notice, skip);
        if let Some(cluster) = &self.cluster {
            cluster.publish_read(room, user, state.read_seq, state.unread, state.last_seq);
        }
    }

    fn deliver(&self, n: &ReadNotice, skip: Option<&SessionId>) {
        let frame = ServerFrame::Read {
            r#ref: None,
            room: &n.room,
            user: &n.user,
            seq: n.seq,
            unread: n.unread,
            last_seq: n.last_seq,
        }
        .encode();
        for (id, addr) in self.sessions.of_user(&n.user) {
            if Some(&id) != skip {
                addr.frame(ToSession::Reply(frame.clone()));
            }
        }
        if self.receipts
            && let Some(room) = self.rooms.get(&n.room)
        {
            room.do_send(ReadReceipt {
                user: n.user.clone(),
                frame,
            });
        }
    }
}

impl ReadRelay {
    /// Closes `user`'s sessions in `room` on every node; answers how many of them were on this
    /// node (the others are told at most once, like every notice on the bus).
    pub async fn kick(&self, room: &RoomId, user: &UserId) -> usize {
        if let Some(cluster) = &self.cluster {
            cluster.publish_kick(room, user);
        }
        self.kick_here(room, user).await
    }

    async fn kick_here(&self, room: &RoomId, user: &UserId) -> usize {
        let asks = self
            .sessions
            .of_user(user)
            .into_iter()
            .map(|(_, addr)| addr.kick(room.clone()));
        futures_util::future::join_all(asks)
            .await
            .into_iter()
            .filter(|closed| *closed)
            .count()
    }
}

impl crate::bridge::Users for ReadRelay {
    fn read_moved(&self, notice: ReadNotice) {
        self.deliver(&notice, None);
    }

    fn kick(&self, room: &RoomId, user: &UserId) {
        for (_, addr) in self.sessions.of_user(user) {
            addr.kick_unanswered(room.clone());
        }
    }
}
