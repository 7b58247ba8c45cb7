//! The open WebSocket sessions of a node, and the messages that reach them from outside their
//! rooms: a drain's close, an operator's kick, a `read` frame for the user's other devices. Each
//! session registers a [`Handle`] (its recipients), so nothing here needs the Session type.

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

/// How to reach one session.
#[derive(Clone)]
pub struct Handle {
    pub frames: Recipient<ToSession>,
    pub kick: Recipient<Kick>,
    pub close: Recipient<CloseSession>,
}

/// The open WebSocket sessions of a node, by id and by user: what a drain closes,
/// `chorus_sessions` counts, and a user's `read` frames reach.
#[derive(Clone)]
pub struct Sessions {
    map: Arc<std::sync::Mutex<Open>>,
    metrics: Metrics,
}

#[derive(Default)]
struct Open {
    by_id: HashMap<SessionId, (UserId, Arc<Handle>)>,
    by_user: HashMap<UserId, HashMap<SessionId, Arc<Handle>>>,
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
        // One handle per session, shared by both maps (its recipients are allocations).
        let addr = Arc::new(addr);
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
    pub fn of_user(&self, user: &UserId) -> Vec<(SessionId, Arc<Handle>)> {
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
    pub fn all(&self) -> Vec<Arc<Handle>> {
        self.lock().by_id.values().map(|(_, a)| a.clone()).collect()
    }
}
