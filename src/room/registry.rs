//! The room registry: one Room actor per active room on this node, started on first use on one of
//! the node's room arbiters (threads), chosen by hashing the room id. A room removes itself when it
//! idles out; callers that raced with that retry on a fresh actor ([`Registry::post`], [`Registry::join`]).

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::oneshot;

use super::actor::{Room, RoomDeps};
use super::messages::{Join, MarkRead, Outbox, Post, PostReply};
use super::running::Running;
use crate::bridge::{Directory, FromCluster};
use crate::ids::{RoomId, Seq, UserId};
use crate::store::{Appended, NewMessage, ReadState, StoreError};

#[derive(Clone)]
pub struct Registry {
    rooms: Running<Room>,
    arbiters: Arc<Vec<ArbiterHandle>>,
    hasher: RandomState,
    pub deps: RoomDeps,
}

const ATTEMPTS: usize = 3;

impl Registry {
    pub fn new(deps: RoomDeps, arbiters: Vec<ArbiterHandle>) -> Registry {
        Registry {
            rooms: Running::default(),
            arbiters: Arc::new(arbiters),
            hasher: RandomState::new(),
            deps,
        }
    }

    /// The running room actor, started if absent (or if the previous one stopped).
    pub fn get_or_start(&self, room: &RoomId) -> Addr<Room> {
        let mut rooms = self.rooms.lock();
        if let Some(addr) = rooms.get(room).filter(|a| a.connected()) {
            return addr.clone();
        }
        // On the caller's own thread when it is an actix worker: the room's members are mostly
        // sessions of that worker, and a fan-out that stays on one thread costs no thread hop per
        // delivery (measured: loadtest/RESULTS.md). Otherwise on a room thread chosen by hash.
        let arbiter = Arbiter::try_current().unwrap_or_else(|| {
            self.arbiters[(self.hasher.hash_one(room) as usize) % self.arbiters.len()].clone()
        });
        let (id, deps, running) = (room.clone(), self.deps.clone(), self.rooms.clone());
        let addr = Room::start_in_arbiter(&arbiter, move |_| Room::new(id, deps, running));
        rooms.insert(room.clone(), addr.clone());
        addr
    }

    pub fn get(&self, room: &RoomId) -> Option<Addr<Room>> {
        self.rooms.get(room)
    }

    /// Every running room (the bridge tells them all about reconnects and dead nodes).
    pub fn rooms(&self) -> Vec<Addr<Room>> {
        self.rooms.lock().values().cloned().collect()
    }

    /// Every running room with its id (the admin API on a node without a cluster).
    pub fn running(&self) -> Vec<(RoomId, Addr<Room>)> {
        self.rooms
            .lock()
            .iter()
            .map(|(id, addr)| (id.clone(), addr.clone()))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.rooms.lock().len()
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

/// The bridge reaches this node's rooms through the registry.
impl Directory for Registry {
    fn tell(&self, room: &RoomId, msg: FromCluster) {
        if let Some(addr) = self.get(room) {
            addr.do_send(msg);
        }
    }

    fn tell_all(&self, msg: &dyn Fn() -> FromCluster) {
        for room in self.rooms() {
            room.do_send(msg());
        }
    }
}

#[cfg(test)]
mod tests {
    //! What contains a room's failure: the room's own task. Run on the in-memory store (a unit
    //! test of the actor and the registry; the integration tests run rooms on Postgres).
    use std::collections::HashMap;
    use std::time::Duration;

    use tokio::sync::mpsc;

    use super::*;
    use crate::config::Settings;
    use crate::domain::PresenceUser;
    use crate::ids::{Seq, SessionId};
    use crate::metrics::Metrics;
    use crate::room::{DropReason, ToSession};
    use crate::store::MemoryStore;

    /// Makes the room panic, as a bug in a handler would.
    #[derive(Message)]
    #[rtype(result = "()")]
    struct Explode;

    impl Handler<Explode> for Room {
        type Result = ();
        fn handle(&mut self, _: Explode, _: &mut Context<Self>) {
            panic!("a bug in a room (this panic is the test's)");
        }
    }

    /// A session stand-in: everything rooms send it goes to a channel.
    struct Probe(mpsc::UnboundedSender<ToSession>);

    impl Actor for Probe {
        type Context = Context<Self>;
    }

    impl Handler<ToSession> for Probe {
        type Result = ();
        fn handle(&mut self, msg: ToSession, _: &mut Context<Self>) {
            let _ = self.0.send(msg);
        }
    }

    fn post(text: &str) -> NewMessage {
        NewMessage::message("ann".into(), text)
    }

    /// The next `Dropped`, or the next message frame, within a deadline.
    async fn next(rx: &mut mpsc::UnboundedReceiver<ToSession>, want: &str) -> ToSession {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let got = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .unwrap_or_else(|_| panic!("no {want} within 5 s"))
                .expect("probe alive");
            let hit = match (&got, want) {
                (ToSession::Dropped { .. }, "dropped") => true,
                (ToSession::Live(d), body) => d.frame.contains(body),
                (ToSession::LiveBatch(b), body) => b.iter().any(|d| d.frame.contains(body)),
                _ => false,
            };
            if hit {
                return got;
            }
        }
    }

    #[actix::test]
    async fn a_room_that_panics_is_replaced_and_the_others_go_on() {
        let settings = Settings::load(None, &HashMap::new(), &[]).expect("defaults");
        let deps = RoomDeps {
            store: Arc::new(MemoryStore::new()),
            metrics: Metrics::new(),
            settings: settings.room.clone(),
            cluster: None,
        };
        let registry = Registry::new(deps, vec![Arbiter::current()]);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let probe = Probe(tx).start();
        let (a, b) = (RoomId::parse("a").unwrap(), RoomId::parse("b").unwrap());
        for room in [&a, &b] {
            let join = Join {
                session: SessionId::from("s1"),
                outbox: Outbox::new(probe.clone().recipient(), 100),
                user: PresenceUser {
                    user: "ann".into(),
                    name: None,
                },
                since: None,
                epoch: None,
                r#ref: None,
                hidden: false,
            };
            assert!(registry.join(room, join).await.is_some());
        }
        registry.post(&a, post("first in a")).await.expect("posted");
        next(&mut rx, "first in a").await;

        let old = registry.get(&a).expect("room a runs");
        old.do_send(Explode);
        match next(&mut rx, "dropped").await {
            ToSession::Dropped { room, why } => {
                assert_eq!(room, a);
                let DropReason::Lost { last_seq, epoch } = why else {
                    panic!("dropped for another reason: {why:?}");
                };
                assert_eq!(
                    last_seq,
                    Some(Seq::new(1)),
                    "where the member's stream ended"
                );
                assert!(epoch.is_some());
            }
            _ => unreachable!(),
        }

        // The other room, on the same thread, never noticed.
        let ack = registry.post(&b, post("b goes on")).await.expect("b posts");
        assert_eq!(ack.message.seq, Seq::new(1));
        next(&mut rx, "b goes on").await;
        // The failed room is started again on next use, with its history intact.
        let ack = registry
            .post(&a, post("a again"))
            .await
            .expect("a restarted");
        assert_eq!(ack.message.seq, Seq::new(2));
        let new = registry.get(&a).expect("room a runs again");
        assert!(new != old && !old.connected());
    }
}
