//! The Room actor: one per active room per node. It owns the room's local members, commits posts in
//! groups, and fans out every committed message in strict `seq` order.
//!
//! Lifecycle: started by the [`Registry`] on first use; loads the room head (epoch, last seq) before
//! handling anything; stops itself after `room.idle_stop_ms` with no members and no commit in flight.
//!
//! Invariants:
//! - `head.delivered` is the highest seq fanned out; messages go out as `delivered + 1, + 2, …`, never
//!   skipping: an early arrival waits in `reorder`, and a gap older than `room.gap_repair_ms` is
//!   fetched from the store (`chorus_gaps_repaired_total`). Nobody is disconnected for a gap.
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

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::bridge::envelope::RoomEvent;
use crate::ids::{RoomId, Seq};
use crate::protocol::{PresenceUser, ServerFrame};
use crate::store::{Message, NewMessage};
use actix::prelude::*;

mod cluster;
mod commit;
mod fanout;
mod join;
pub mod messages;
pub mod registry;

pub use messages::{
    Delivery, FromCluster, GetPresence, Join, Leave, Outbox, Post, PostReply, SessionId, ToSession,
    Typing, Undeliverable,
};
pub use registry::{Registry, RoomDeps};

pub struct Room {
    id: RoomId,
    registry: Registry,
    head: Option<Head>,
    members: HashMap<SessionId, Member>,
    pending: VecDeque<(NewMessage, PostReply)>,
    committing: bool,
    /// Committed messages waiting for the ones before them.
    reorder: BTreeMap<Seq, (Arc<Message>, Instant)>,
    repair: Option<SpawnHandle>,
    idle: Option<SpawnHandle>,
    /// Users present on other nodes, by node (empty without a cluster).
    remote: HashMap<String, HashMap<String, PresenceUser>>,
    /// The highest seq known to be committed (from other nodes' head notices and resyncs); a
    /// repair fetches up to it when nothing else fills the gap.
    known_head: Seq,
    /// Joins that arrived while the head could not be read; answered when the read (retried for
    /// them) ends. A failed join leaves no membership behind.
    waiting: Vec<Join>,
    head_loading: bool,
    /// After a batch failed for one message's data: this many next posts commit one by one, so
    /// only the bad one fails (PROTOCOL §6).
    solo: usize,
}

/// What one broadcast carries: a single frame, or a flush's batch shared by every member.
enum Fanout {
    One(Delivery),
    Many(Arc<[Delivery]>),
}

struct Head {
    epoch: String,
    delivered: Seq,
}

struct Member {
    outbox: Outbox,
    user: PresenceUser,
    hidden: bool,
    /// `Some` while the member's backfill is being read: live frames wait here.
    backlog: Option<Vec<Delivery>>,
}

impl Actor for Room {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.registry.deps.metrics.rooms_active.inc();
        ctx.set_mailbox_capacity(4096);
        self.attach(ctx);
        self.check_idle(ctx);
    }

    fn stopped(&mut self, ctx: &mut Context<Self>) {
        self.registry.deps.metrics.rooms_active.dec();
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
            head: None,
            members: HashMap::new(),
            pending: VecDeque::new(),
            committing: false,
            reorder: BTreeMap::new(),
            repair: None,
            idle: None,
            remote: HashMap::new(),
            known_head: 0,
            waiting: Vec::new(),
            head_loading: false,
            solo: 0,
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
                        if act.head.is_some() {
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
            || self.committing;
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
        let member = self.members.remove(&msg.session);
        if let Some(member) = &member {
            if msg.reply {
                let frame = ServerFrame::Left {
                    r#ref: msg.r#ref.as_deref(),
                    room: &self.id,
                }
                .encode();
                member.outbox.reply(ToSession::Reply(frame));
            }
            self.announce_leave(&member.user, member.hidden);
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

impl Handler<GetPresence> for Room {
    type Result = MessageResult<GetPresence>;

    fn handle(&mut self, _: GetPresence, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.presence())
    }
}
