//! The open WebSocket sessions of a node, and the messages that reach them from outside their
//! rooms: a drain's close, an operator's kick, a `read` frame for the user's other devices. Each
//! session registers itself as a [`Handle`] (one shared reference to its address, behind the
//! [`SessionControl`] trait), so nothing here needs the Session type.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;

use crate::ids::{RoomId, SessionId, UserId};
use crate::metrics::Metrics;
use crate::protocol::CloseCode;
use crate::room::ToSession;

/// An operator removed the session's user from `room` (PROTOCOL §8 admin API): a session that
/// joined it closes with 4003. Answers whether it did.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Kick(pub RoomId);

/// Tells a session to close (drain, shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct CloseSession(pub CloseCode);

/// What can be done to an open session from outside its rooms.
pub trait SessionControl: Send + Sync {
    /// A frame for the session (a `read` for the user's other devices).
    fn frame(&self, message: ToSession);
    /// Closes it with 4003 if it joined `room`; resolves with whether it did.
    fn kick(&self, room: RoomId) -> futures_util::future::BoxFuture<'static, bool>;
    /// The same, without waiting for the answer (another node's kick).
    fn kick_unanswered(&self, room: RoomId);
    fn close(&self, code: CloseCode);
}

/// How to reach one session: one allocation, shared by both maps of [`Sessions`].
pub type Handle = Arc<dyn SessionControl>;

/// The open WebSocket sessions of a node, by id and by user: what a drain closes,
/// `chorus_sessions` counts, and a user's `read` frames reach.
#[derive(Clone)]
pub struct Sessions {
    map: Arc<std::sync::Mutex<Open>>,
    metrics: Metrics,
}

#[derive(Default)]
struct Open {
    by_id: HashMap<SessionId, (UserId, Handle)>,
    by_user: HashMap<UserId, HashMap<SessionId, Handle>>,
}

impl Sessions {
    pub fn new(metrics: Metrics) -> Sessions {
        Sessions {
            map: Arc::default(),
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        // A poisoned map is still a valid map.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn register(&self, id: SessionId, user: UserId, addr: Handle) {
        self.metrics.sessions.inc();
        let mut open = self.lock();
        open.by_user
            .entry(user.clone())
            .or_default()
            .insert(id.clone(), addr.clone());
        open.by_id.insert(id, (user, addr));
    }

    pub(super) fn unregister(&self, id: &SessionId) {
        let mut open = self.lock();
        if let Some((user, _)) = open.by_id.remove(id) {
            self.metrics.sessions.dec();
            if let Some(of_user) = open.by_user.get_mut(&user) {
                of_user.remove(id);
                if of_user.is_empty() {
                    open.by_user.remove(&user);
                }
            }
        }
    }

    /// The open sessions of `user` on this node.
    pub fn of_user(&self, user: &UserId) -> Vec<(SessionId, Handle)> {
        self.lock()
            .by_user
            .get(user)
            .map(|s| s.iter().map(|(id, a)| (id.clone(), a.clone())).collect())
            .unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every open session.
    pub fn all(&self) -> Vec<Handle> {
        self.lock().by_id.values().map(|(_, a)| a.clone()).collect()
    }
}
