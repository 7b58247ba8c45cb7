//! The room registry: one Room actor per active room on this node, started on first use on one of
//! the node's room arbiters (threads), chosen by hashing the room id. A room removes itself when it
//! idles out; callers that raced with that retry on a fresh actor ([`Registry::post`], [`Registry::join`]).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};

use actix::prelude::*;
use tokio::sync::oneshot;

use super::Room;
use super::messages::{Join, MarkRead, Outbox, Post, PostReply};
use crate::bridge::Cluster;
use crate::config;
use crate::ids::{RoomId, Seq, UserId};
use crate::metrics::Metrics;
use crate::store::{Appended, NewMessage, ReadState, Store, StoreError};

/// What every room of a node shares.
#[derive(Clone)]
pub struct RoomDeps {
    pub store: Arc<dyn Store>,
    pub metrics: Metrics,
    pub settings: config::Room,
    /// The bridge to the other nodes; `None` on a single node.
    pub cluster: Option<Cluster>,
}

#[derive(Clone)]
pub struct Registry {
    rooms: Arc<Mutex<HashMap<RoomId, Addr<Room>>>>,
    arbiters: Arc<Vec<ArbiterHandle>>,
    hasher: RandomState,
    pub deps: RoomDeps,
}

const ATTEMPTS: usize = 3;

impl Registry {
    pub fn new(deps: RoomDeps, arbiters: Vec<ArbiterHandle>) -> Registry {
        Registry {
            rooms: Arc::default(),
            arbiters: Arc::new(arbiters),
            hasher: RandomState::new(),
            deps,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RoomId, Addr<Room>>> {
        // A poisoned map is still a valid map: recover it rather than take the node down.
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The running room actor, started if absent (or if the previous one stopped).
    pub fn get_or_start(&self, room: &RoomId) -> Addr<Room> {
        let mut rooms = self.lock();
        if let Some(addr) = rooms.get(room).filter(|a| a.connected()) {
            return addr.clone();
        }
        // On the caller's own thread when it is an actix worker: the room's members are mostly
        // sessions of that worker, and a fan-out that stays on one thread costs no thread hop per
        // delivery (measured: loadtest/RESULTS.md). Otherwise on a room thread chosen by hash.
        let arbiter = Arbiter::try_current().unwrap_or_else(|| {
            self.arbiters[(self.hasher.hash_one(room) as usize) % self.arbiters.len()].clone()
        });
        let (id, registry) = (room.clone(), self.clone());
        let addr = Room::start_in_arbiter(&arbiter, move |_| Room::new(id, registry));
        rooms.insert(room.clone(), addr.clone());
        addr
    }

    pub fn get(&self, room: &RoomId) -> Option<Addr<Room>> {
        self.lock().get(room).filter(|a| a.connected()).cloned()
    }

    /// Called by a room that is stopping; only removes the entry if it is still that room's.
    pub fn remove(&self, room: &RoomId, addr: &Addr<Room>) {
        let mut rooms = self.lock();
        if rooms.get(room) == Some(addr) {
            rooms.remove(room);
        }
    }

    /// Every running room (the bridge tells them all about reconnects and dead nodes).
    pub fn rooms(&self) -> Vec<Addr<Room>> {
        self.lock().values().cloned().collect()
    }

    /// Every running room with its id (the admin API on a node without a cluster).
    pub fn running(&self) -> Vec<(RoomId, Addr<Room>)> {
        self.lock()
            .iter()
            .map(|(id, addr)| (id.clone(), addr.clone()))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Posts through the room actor (so local members see it) and waits for the commit.
    pub async fn post(&self, room: &RoomId, message: NewMessage) -> Result<Appended, StoreError> {
        for _ in 0..ATTEMPTS {
            let (reply, outcome) = oneshot::channel();
            let post = Post {
                message: message.clone(),
                reply: PostReply::Channel(reply),
            };
            if self.get_or_start(room).send(post).await.is_ok() {
                return outcome
                    .await
                    .unwrap_or_else(|_| Err(StoreError::Internal("room stopped".into())));
            }
        }
        Err(StoreError::Unavailable("room could not be started".into()))
    }

    /// Moves `user`'s read cursor through the room (batched with the room's other reads).
    pub async fn mark_read(
        &self,
        room: &RoomId,
        user: &UserId,
        seq: Seq,
    ) -> Result<(ReadState, bool), StoreError> {
        for _ in 0..ATTEMPTS {
            let (reply, outcome) = oneshot::channel();
            let read = MarkRead {
                user: user.clone(),
                seq,
                reply,
            };
            if self.get_or_start(room).send(read).await.is_ok() {
                return outcome
                    .await
                    .unwrap_or_else(|_| Err(StoreError::Internal("room stopped".into())));
            }
        }
        Err(StoreError::Unavailable("room could not be started".into()))
    }

    /// Posts for a WebSocket session: the room answers into `outbox`. False if no room would take it.
    pub async fn post_for_session(
        &self,
        room: &RoomId,
        message: NewMessage,
        outbox: Outbox,
        r#ref: Option<String>,
    ) -> bool {
        for _ in 0..ATTEMPTS {
            let post = Post {
                message: message.clone(),
                reply: PostReply::Session {
                    outbox: outbox.clone(),
                    r#ref: r#ref.clone(),
                },
            };
            if self.get_or_start(room).send(post).await.is_ok() {
                return true;
            }
        }
        false
    }

    /// Delivers a join to the room, retrying on a fresh actor if the old one was stopping.
    pub async fn join(&self, room: &RoomId, join: Join) -> Option<Addr<Room>> {
        for _ in 0..ATTEMPTS {
            let addr = self.get_or_start(room);
            if addr.send(join.clone()).await.is_ok() {
                return Some(addr);
            }
        }
        None
    }
}
