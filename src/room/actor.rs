//! The Room actor: one per active room per node, a thin interpreter around the room's pure core
//! ([`RoomCore`]). It turns each message it receives into an [`Input`], and carries out the
//! [`Effect`]s the core returns: store reads and appends (as futures whose results go back in as
//! [`Done`]), deliveries to session outboxes (a refusal goes back in as
//! [`Input::Undeliverable`]), bus publishes, timers and metrics. It decides nothing.
//!
//! Lifecycle: started by the [`Registry`](super::Registry) on first use; the core reads the head
//! before anything else; the core asks to stop after `room.idle_stop_ms` with no members and
//! nothing in flight. While the core is blocked on a read, the actor runs that read with
//! `ctx.wait`, holding its mailbox, so posters wait (backpressure) instead of queueing.
//!
//! Failure containment: each room is its own task on its arbiter. A panic in a room ends that
//! task only (tokio catches it); dropping the actor tells every member where its stream ended
//! ([`RoomCore::abandon`]), the sessions join again, and the registry starts a fresh actor on
//! next use (`tests`: `a_room_that_panics_is_replaced_and_the_others_go_on`).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::oneshot;

use super::core::{
    Count, Done, Effect, Handles, Input, JoinRequest, Now, RoomCore, Settings, Timer,
};
use super::delivery::ToSession;
use super::messages::{
    GetPresence, Join, Leave, MarkRead, Outbox, Post, PostReply, ReadReceipt, Typing, Undeliverable,
};
use super::running::Running;
use crate::bridge::{Cluster, FromCluster};
use crate::config;
use crate::ids::RoomId;
use crate::metrics::Metrics;
use crate::protocol::ServerFrame;
use crate::store::{Appended, ReadState, Store, StoreError, format_ts};

/// What every room of a node shares.
#[derive(Clone)]
pub struct RoomDeps {
    pub store: Arc<dyn Store>,
    pub metrics: Metrics,
    pub settings: config::Room,
    /// The bridge to the other nodes; `None` on a single node.
    pub cluster: Option<Cluster>,
}

/// The actor's handles: members are session outboxes, answers go to channels or outboxes.
pub struct Outboxes;

impl Handles for Outboxes {
    type Member = Outbox;
    type PostReply = PostReply;
    type ReadReply = oneshot::Sender<Result<(ReadState, bool), StoreError>>;
}

pub struct Room {
    core: RoomCore<Outboxes>,
    deps: RoomDeps,
    running: Running<Room>,
    timers: HashMap<Timer, SpawnHandle>,
    /// Reused for every step's effects.
    effects: Vec<Effect<Outboxes>>,
    /// `chorus_rooms_active` counts this room (decremented when it is dropped, even by a panic).
    counted: bool,
}

impl Room {
    pub fn new(id: RoomId, deps: RoomDeps, running: Running<Room>) -> Room {
        let s = &deps.settings;
        let settings = Settings {
            max_catchup: s.max_catchup,
            batch_max: s.batch_max,
            gap_repair: s.gap_repair,
            idle_stop: s.idle_stop,
            node: deps.cluster.as_ref().map(|c| c.node().clone()),
        };
        Room {
            core: RoomCore::new(id, settings),
            deps,
            running,
            timers: HashMap::new(),
            effects: Vec::new(),
            counted: false,
        }
    }

    /// Runs `input` through the core and carries out its effects, then any input they gave back
    /// (refused deliveries), until none is left.
    fn feed(&mut self, input: Input<Outboxes>, ctx: &mut Context<Self>) {
        let mut feedback = VecDeque::from([input]);
        while let Some(input) = feedback.pop_front() {
            let mut effects = std::mem::take(&mut self.effects);
            self.core.step_into(Now::system(), input, &mut effects);
            let blocked = self.core.blocked();
            for effect in effects.drain(..) {
                self.run(effect, blocked, ctx, &mut feedback);
            }
            self.effects = effects;
        }
    }

    fn run(
        &mut self,
        effect: Effect<Outboxes>,
        blocked: bool,
        ctx: &mut Context<Self>,
        feedback: &mut VecDeque<Input<Outboxes>>,
    ) {
        if effect.is_io() {
            let (store, cluster) = (self.deps.store.clone(), self.deps.cluster.clone());
            if let Ok(fut) = super::io::start(effect, store, cluster, self.core.id().clone()) {
                self.io(blocked, ctx, fut);
            }
            return;
        }
        match effect {
            Effect::Deliver {
                session,
                to,
                frames,
            } => {
                if let Err(e) = to.deliver(frames.into_message()) {
                    let slow = e == Undeliverable::Slow;
                    feedback.push_back(Input::Undeliverable { session, slow });
                }
            }
            Effect::Send { to, message } => to.reply(message),
            Effect::Answer { to, outcome } => self.answer(to, outcome),
            Effect::AnswerRead { to, outcome } => {
                let _ = to.send(outcome);
            }
            Effect::Publish { seq, event } => {
                if let Some(cluster) = &self.deps.cluster {
                    cluster.publish(self.core.id(), seq, event);
                }
            }
            Effect::Announce { here, gone, forget } => {
                if let Some(cluster) = &self.deps.cluster {
                    let room = self.core.id();
                    cluster.here(room, here);
                    cluster.gone(room, gone);
                    cluster.forget(room, forget);
                }
            }
            Effect::Count(count) => self.count(count),
            Effect::Schedule { timer, after } if blocked && timer == Timer::ResetRetry => {
                // Retrying a reset holds the room like the reset itself.
                let wake = tokio::time::sleep(after).into_actor(self);
                ctx.wait(wake.map(move |_, act, ctx| act.feed(Input::Timer(timer), ctx)));
            }
            Effect::Schedule { timer, after } => {
                let handle = ctx.run_later(after, move |act, ctx| {
                    act.timers.remove(&timer);
                    act.feed(Input::Timer(timer), ctx);
                });
                if let Some(old) = self.timers.insert(timer, handle) {
                    ctx.cancel_future(old);
                }
            }
            Effect::Cancel(timer) => {
                if let Some(handle) = self.timers.remove(&timer) {
                    ctx.cancel_future(handle);
                }
            }
            Effect::Stop => {
                self.running.remove(self.core.id(), &ctx.address());
                ctx.stop();
            }
            _io => {} // carried out above
        }
    }

    /// Runs a store effect; its result goes back to the core. While the core is blocked, the
    /// mailbox waits for it.
    fn io(
        &mut self,
        blocked: bool,
        ctx: &mut Context<Self>,
        fut: impl Future<Output = Done> + 'static,
    ) {
        let fut = fut
            .into_actor(self)
            .map(|done, act, ctx| act.feed(Input::Done(done), ctx));
        if blocked {
            ctx.wait(fut);
        } else {
            ctx.spawn(fut);
        }
    }

    fn count(&self, count: Count) {
        let m = &self.deps.metrics;
        match count {
            Count::Posted(kind) => m.posted(kind.as_str()),
            Count::GapsRepaired(n) => m.gaps_repaired.inc_by(n),
            Count::Backfill(n) => m.backfill_messages.inc_by(n),
            Count::SlowConsumer => m.slow_consumers.inc(),
        }
    }

    /// Reports one post's outcome (before its entry is broadcast).
    fn answer(&self, reply: PostReply, outcome: Result<Appended, StoreError>) {
        match reply {
            PostReply::Channel(tx) => {
                let _ = tx.send(outcome);
            }
            PostReply::Session { outbox, r#ref } => {
                let frame = match &outcome {
                    Ok(a) => ServerFrame::Ack {
                        r#ref: r#ref.as_deref(),
                        room: self.core.id(),
                        seq: a.message.seq,
                        id: &a.message.id,
                        ts: &format_ts(&a.message.ts),
                        client_msg_id: a.message.client_msg_id.as_deref(),
                        duplicate: a.duplicate,
                    }
                    .encode(),
                    Err(e) => {
                        let (code, text) = e.wire();
                        ServerFrame::Error {
                            r#ref: r#ref.as_deref(),
                            code: code.as_str(),
                            message: text,
                            retry_after_ms: None,
                        }
                        .encode()
                    }
                };
                outbox.reply(ToSession::Reply(frame));
            }
        }
    }
}

/// A room dropped with members still in it went away under them (a panic unwinds through here;
/// a room that stops normally has none).
impl Drop for Room {
    fn drop(&mut self) {
        for (member, message) in self.core.abandon() {
            member.reply(message);
        }
        if self.counted {
            self.deps.metrics.rooms_active.dec();
        }
    }
}

impl Actor for Room {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.deps.metrics.rooms_active.inc();
        self.counted = true;
        ctx.set_mailbox_capacity(4096);
        self.feed(Input::Start, ctx);
    }

    fn stopped(&mut self, ctx: &mut Context<Self>) {
        let room = self.core.id().clone();
        self.running.remove(&room, &ctx.address());
        if let Some(cluster) = self.deps.cluster.clone() {
            actix::spawn(async move { cluster.unsubscribe(&room).await });
        }
    }
}

impl Handler<Join> for Room {
    type Result = ();

    fn handle(&mut self, msg: Join, ctx: &mut Context<Self>) {
        let join = JoinRequest {
            session: msg.session,
            member: msg.outbox,
            user: msg.user,
            since: msg.since,
            epoch: msg.epoch,
            r#ref: msg.r#ref,
            hidden: msg.hidden,
        };
        self.feed(Input::Join(join), ctx);
    }
}

impl Handler<Leave> for Room {
    type Result = ();

    fn handle(&mut self, msg: Leave, ctx: &mut Context<Self>) {
        let (session, r#ref, reply) = (msg.session, msg.r#ref, msg.reply);
        self.feed(
            Input::Leave {
                session,
                r#ref,
                reply,
            },
            ctx,
        );
    }
}

impl Handler<Post> for Room {
    type Result = ();

    fn handle(&mut self, msg: Post, ctx: &mut Context<Self>) {
        let (entry, reply) = (msg.message, msg.reply);
        self.feed(Input::Post { entry, reply }, ctx);
    }
}

impl Handler<Typing> for Room {
    type Result = ();

    fn handle(&mut self, msg: Typing, ctx: &mut Context<Self>) {
        let (session, user) = (msg.session, msg.user);
        self.feed(Input::Typing { session, user }, ctx);
    }
}

impl Handler<MarkRead> for Room {
    type Result = ();

    fn handle(&mut self, msg: MarkRead, ctx: &mut Context<Self>) {
        let (user, seq, reply) = (msg.user, msg.seq, msg.reply);
        self.feed(Input::MarkRead { user, seq, reply }, ctx);
    }
}

impl Handler<ReadReceipt> for Room {
    type Result = ();

    fn handle(&mut self, msg: ReadReceipt, ctx: &mut Context<Self>) {
        let (user, frame) = (msg.user, msg.frame);
        self.feed(Input::ReadReceipt { user, frame }, ctx);
    }
}

impl Handler<FromCluster> for Room {
    type Result = ();

    fn handle(&mut self, msg: FromCluster, ctx: &mut Context<Self>) {
        self.feed(Input::Cluster(msg), ctx);
    }
}

impl Handler<GetPresence> for Room {
    type Result = MessageResult<GetPresence>;

    fn handle(&mut self, _: GetPresence, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.core.presence())
    }
}
