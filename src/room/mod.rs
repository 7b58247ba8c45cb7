//! The Room actor: one per active room per node. It owns the room's local members, commits posts in
//! groups, and fans out every committed message in strict `seq` order.
//!
//! Lifecycle: started by the [`Registry`] on first use; loads the room head (epoch, last seq) before
//! handling anything; stops itself after `room.idle_stop_ms` with no members and no commit in flight.
//!
//! The decisions live in two plain state machines with their own unit and property tests: the
//! [`Sequencer`](sequencer::Sequencer) (what is delivered, what waits, what to repair, whether the
//! history went backwards) and the [`Presence`](presence::Presence) (who is here, across nodes).
//! The actor is the glue: mailbox, timers, store and bus I/O, and sending frames.
//!
//! Invariants:
//! - Messages go out as `delivered + 1, + 2, …`, never skipping: an early arrival waits in the
//!   sequencer, and a gap older than `room.gap_repair_ms` is fetched from the store
//!   (`chorus_gaps_repaired_total`). Nobody is disconnected for a gap.
//! - One commit in flight at a time; posts that arrive meanwhile form the next batch (group commit).
//! - A join with `since` is answered only after its backfill is read; live messages that commit
//!   meanwhile wait in that member's backlog, so the seam between backfill and live has no gap and
//!   no duplicate.
//! - Each message is serialised once; members receive clones of the same bytes. Delivery uses the
//!   session's bounded mailbox: a full one makes the member a slow consumer (closed with 1013).
//! - Failure stays here: a store error becomes an `unavailable` reply, never a panic.
//! - In a cluster (`cluster.rs`), messages committed on other nodes enter the same `reorder` buffer
//!   as local commits, so order and gap repair do not care where a message was posted; the room
//!   subscribes to its channel before it reads its head and unsubscribes when it stops.
//!
//! Failure containment: each room is its own task on its arbiter. A panic in a room ends that
//! task only (tokio catches it); the members' sessions learn it from the dropped memberships (see
//! [`Member`]) and rejoin, and the registry starts a fresh actor on next use. Nothing else on the
//! thread is affected (`tests`: `a_room_that_panics_is_replaced_and_the_others_go_on`).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crate::bridge::envelope::RoomEvent;
use crate::ids::{RoomId, UserId};
use crate::protocol::ServerFrame;
use crate::store::NewMessage;
use actix::prelude::*;

mod cluster;
mod commit;
mod fanout;
mod join;
pub mod messages;
pub mod presence;
mod reads;
pub mod registry;
pub mod sequencer;

use presence::Presence;
use sequencer::Sequencer;

pub use crate::ids::SessionId;
pub use messages::{
    Delivery, DropReason, GetPresence, Join, Leave, MarkRead, Outbox, Post, PostReply, ReadReceipt,
    ToSession, Typing, Undeliverable,
};
pub use registry::{Registry, RoomDeps};

pub struct Room {
    id: RoomId,
    registry: Registry,
    /// Ordering: head, held messages, known head, repairs.
    seq: Sequencer,
    /// Who is here, on this node and the others.
    presence: Presence,
    members: HashMap<SessionId, Member>,
    pending: VecDeque<(NewMessage, PostReply)>,
    committing: bool,
    /// Read cursors to move, written together like a group commit (one statement in flight).
    reads: Vec<MarkRead>,
    reading: bool,
    repair: Option<SpawnHandle>,
    idle: Option<SpawnHandle>,
    /// Joins that arrived while the head could not be read; answered when the read (retried for
    /// them) ends. A failed join leaves no membership behind.
    waiting: Vec<Join>,
    head_loading: bool,
    /// After a batch failed for one message's data: this many next posts commit one by one, so
    /// only the bad one fails (PROTOCOL §6).
    solo: usize,
    /// `chorus_rooms_active` counts this room (decremented when it is dropped, even by a panic).
    members_gauge: bool,
}

/// What one broadcast carries: a single frame, or a flush's batch shared by every member.
enum Fanout {
    One(Delivery),
    Many(Arc<[Delivery]>),
}

/// One session's membership.
struct Member {
    outbox: Outbox,
    user: UserId,
    /// `Some` while the member's backfill is being read: live frames wait here.
    backlog: Option<Vec<Delivery>>,
}

/// A room dropped with members still in it went away under them (a panic unwinds through here;
/// a room that stops normally has none): each session is told where its stream ended, so it
/// joins a fresh room actor and resumes from there without a gap.
impl Drop for Room {
    fn drop(&mut self) {
        let (epoch, delivered) = (self.seq.epoch().map(str::to_owned), self.seq.delivered());
        for (_, member) in self.members.drain() {
            member.outbox.reply(ToSession::Dropped {
                room: self.id.clone(),
                why: DropReason::Lost {
                    epoch: epoch.clone(),
                    last_seq: delivered.filter(|_| member.backlog.is_none()),
                },
            });
        }
        if self.members_gauge {
            self.registry.deps.metrics.rooms_active.dec();
        }
    }
}

impl Actor for Room {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.registry.deps.metrics.rooms_active.inc();
        self.members_gauge = true;
        ctx.set_mailbox_capacity(4096);
        self.attach(ctx);
        self.check_idle(ctx);
    }

    fn stopped(&mut self, ctx: &mut Context<Self>) {
        self.registry.remove(&self.id, &ctx.address());
        if let Some(cluster) = self.cluster().cloned() {
            let room = self.id.clone();
            actix::spawn(async move { cluster.unsubscribe(&room).await });
        }
    }
}

impl Room {
    pub fn new(id: RoomId, registry: Registry) -> Room {
        Room {
            id,
            registry,
            seq: Sequencer::new(),
            presence: Presence::new(),
            members: HashMap::new(),
            pending: VecDeque::new(),
            committing: false,
            reads: Vec::new(),
            reading: false,
            repair: None,
            idle: None,
            waiting: Vec::new(),
            head_loading: false,
            solo: 0,
            members_gauge: false,
        }
    }

    /// Reads the head, blocking the mailbox until it is known (or the store failed), then answers
    /// the joins that waited for it: they proceed, or are refused with `unavailable` and leave no
    /// membership behind. The next join tries again.
    fn load_head(&mut self, ctx: &mut Context<Self>) {
        if self.head_loading {
            return;
        }
        self.head_loading = true;
        let (store, room) = (self.registry.deps.store.clone(), self.id.clone());
        ctx.wait(
            async move { store.head(&room).await }
                .into_actor(self)
                .map(|res, act, ctx| {
                    act.head_loading = false;
                    act.set_head(res);
                    for join in std::mem::take(&mut act.waiting) {
                        if act.seq.delivered().is_some() {
                            act.join(join, ctx);
                        } else {
                            act.refuse_join(join, "history store unavailable, retry the join");
                        }
                    }
                    act.check_idle(ctx);
                }),
        );
    }

    fn check_idle(&mut self, ctx: &mut Context<Self>) {
        let busy = !self.members.is_empty()
            || !self.pending.is_empty()
            || !self.waiting.is_empty()
            || self.committing
            || self.reading
            || !self.reads.is_empty();
        if busy {
            if let Some(h) = self.idle.take() {
                ctx.cancel_future(h);
            }
        } else if self.idle.is_none() {
            let after = Duration::from_millis(self.registry.deps.settings.idle_stop_ms);
            self.idle = Some(ctx.run_later(after, |act, ctx| {
                act.idle = None;
                if act.members.is_empty()
                    && act.pending.is_empty()
                    && act.waiting.is_empty()
                    && !act.committing
                    && !act.reading
                    && act.reads.is_empty()
                {
                    act.registry.remove(&act.id, &ctx.address());
                    ctx.stop();
                }
            }));
        }
    }
}

impl Handler<Join> for Room {
    type Result = ();

    fn handle(&mut self, msg: Join, ctx: &mut Context<Self>) {
        self.join(msg, ctx);
    }
}

impl Handler<Leave> for Room {
    type Result = ();

    fn handle(&mut self, msg: Leave, ctx: &mut Context<Self>) {
        if let Some(member) = self.members.remove(&msg.session) {
            if msg.reply {
                let frame = ServerFrame::Left {
                    r#ref: msg.r#ref.as_deref(),
                    room: &self.id,
                }
                .encode();
                member.outbox.reply(ToSession::Reply(frame));
            }
            let change = self.presence.leave(&msg.session);
            self.apply_presence(change);
        }
        self.check_idle(ctx);
    }
}

impl Handler<Post> for Room {
    type Result = ();

    fn handle(&mut self, msg: Post, ctx: &mut Context<Self>) {
        self.pending.push_back((msg.message, msg.reply));
        self.check_idle(ctx);
        self.maybe_commit(ctx);
    }
}

impl Handler<Typing> for Room {
    type Result = ();

    fn handle(&mut self, msg: Typing, _: &mut Context<Self>) {
        if !self.members.contains_key(&msg.session) {
            return;
        }
        let frame = ServerFrame::Typing {
            room: &self.id,
            user: &msg.user,
        }
        .encode();
        self.broadcast_frame(frame, Some(&msg.session), Some(&msg.user));
        if let Some(cluster) = self.cluster() {
            cluster.publish(&self.id, None, RoomEvent::Typing { user: msg.user });
        }
    }
}

impl Handler<MarkRead> for Room {
    type Result = ();

    fn handle(&mut self, msg: MarkRead, ctx: &mut Context<Self>) {
        self.reads.push(msg);
        self.check_idle(ctx);
        self.maybe_read(ctx);
    }
}

impl Handler<ReadReceipt> for Room {
    type Result = ();

    fn handle(&mut self, msg: ReadReceipt, _: &mut Context<Self>) {
        self.broadcast_frame(msg.frame, None, Some(&msg.user));
    }
}

impl Handler<GetPresence> for Room {
    type Result = MessageResult<GetPresence>;

    fn handle(&mut self, _: GetPresence, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.presence.users())
    }
}

#[cfg(test)]
mod tests {
    //! What contains a room's failure: the room's own task. Run on the in-memory store (a unit
    //! test of the actor's glue; the integration tests run rooms on Postgres).
    use std::collections::HashMap;
    use std::time::Duration;

    use tokio::sync::mpsc;

    use super::*;
    use crate::config::Settings;
    use crate::domain::PresenceUser;
    use crate::ids::Seq;
    use crate::metrics::Metrics;
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
