//! The room actors running on a node, by room id: the registry starts them into it, and each
//! room takes itself out when it stops (only its own entry: a successor may already be there).
//! Generic over the actor type, so the Room actor and the registry can both use it without
//! using each other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use actix::{Actor, Addr};

use crate::ids::RoomId;

pub struct Running<A: Actor> {
    rooms: Arc<Mutex<HashMap<RoomId, Addr<A>>>>,
}

impl<A: Actor> Clone for Running<A> {
    fn clone(&self) -> Self {
        Running {
            rooms: self.rooms.clone(),
        }
    }
}

impl<A: Actor> Default for Running<A> {
    fn default() -> Self {
        Running {
            rooms: Arc::default(),
        }
    }
}

impl<A: Actor> Running<A> {
    pub fn lock(&self) -> MutexGuard<'_, HashMap<RoomId, Addr<A>>> {
        // A poisoned map is still a valid map: recover it rather than take the node down.
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The room's actor, if one runs.
    pub fn get(&self, room: &RoomId) -> Option<Addr<A>> {
        self.lock().get(room).filter(|a| a.connected()).cloned()
    }

    /// Takes `room` out, if `addr` is still the actor registered for it.
    pub fn remove(&self, room: &RoomId, addr: &Addr<A>) {
        let mut rooms = self.lock();
        if rooms.get(room) == Some(addr) {
            rooms.remove(room);
        }
    }
}
