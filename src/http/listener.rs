//! The Listener actor: joins a room on behalf of an HTTP stream (SSE or long-poll) as a hidden
//! member (not in presence) and turns the room's frames into [`Event`]s on a bounded channel.
//!
//! Lifecycle: started by the handler, joins with the stream's cursor as `since` (so the room's
//! backfill-then-live seam serves SSE and long-poll exactly as it serves WebSocket), and stops when
//! the HTTP side goes away (channel closed), when the channel is full (a slow SSE reader), or when
//! the room drops it. On stop it leaves the room.
//!
//! Nothing is parsed: the room says what each frame carries ([`Carries`]) and what a join's
//! reply means ([`JoinReply::point`]).

use std::time::Duration;

use actix::prelude::*;
use bytestring::ByteString;
use tokio::sync::mpsc;

use crate::domain::Kind;
use crate::ids::{Epoch, RoomId, Seq, SessionId};
use crate::protocol::PresenceUser;
use crate::room::{Carries, Delivery, Join, Leave, Outbox, Registry, Room, ToSession};

pub enum Event {
    Joined {
        recovered: bool,
        last_seq: Seq,
        epoch: Epoch,
    },
    /// A log entry frame (message, edit, delete, react), as serialised for WebSocket.
    Message {
        seq: Seq,
        kind: Kind,
        frame: ByteString,
    },
    /// The room's history was reset (PROTOCOL §6): the `reset` frame, as serialised.
    Reset {
        frame: ByteString,
    },
    Heartbeat,
}

pub struct Listener {
    id: SessionId,
    room: RoomId,
    user: PresenceUser,
    since: Option<Seq>,
    registry: Registry,
    queue_max: usize,
    heartbeat: Option<Duration>,
    tx: mpsc::Sender<Event>,
    outbox: Option<Outbox>,
    joined: Option<Addr<Room>>,
}

impl Listener {
    /// `heartbeat`: emit [`Event::Heartbeat`] this often (SSE); `None` for long-poll.
    pub fn new(
        registry: Registry,
        room: RoomId,
        user: PresenceUser,
        since: Option<Seq>,
        queue_max: usize,
        heartbeat: Option<Duration>,
        tx: mpsc::Sender<Event>,
    ) -> Listener {
        Listener {
            id: SessionId::random(),
            room,
            user,
            since,
            registry,
            queue_max,
            heartbeat,
            tx,
            outbox: None,
            joined: None,
        }
    }

    fn emit(&mut self, event: Event, ctx: &mut Context<Self>) {
        if self.tx.try_send(event).is_err() {
            ctx.stop(); // the HTTP side is gone, or it reads too slowly
        }
    }

    /// Entries and resets matter to an HTTP stream; presence and typing do not.
    fn forward(&mut self, d: &Delivery, ctx: &mut Context<Self>) {
        let event = match &d.carries {
            Carries::Entry { seq, kind } => Event::Message {
                seq: *seq,
                kind: *kind,
                frame: d.frame.clone(),
            },
            Carries::Reset { .. } => Event::Reset {
                frame: d.frame.clone(),
            },
            Carries::Control => return,
        };
        self.emit(event, ctx);
    }
}

impl Actor for Listener {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let outbox = Outbox::new(ctx.address().recipient(), self.queue_max);
        self.outbox = Some(outbox.clone());
        let join = Join {
            session: self.id.clone(),
            outbox,
            user: self.user.clone(),
            since: self.since,
            epoch: None,
            r#ref: None,
            hidden: true,
        };
        let (registry, room) = (self.registry.clone(), self.room.clone());
        ctx.spawn(
            async move { registry.join(&room, join).await }
                .into_actor(self)
                .map(|addr, act, ctx| match addr {
                    Some(addr) => act.joined = Some(addr),
                    None => ctx.stop(),
                }),
        );
        // Heartbeats double as the check that the HTTP side is still there.
        let every = self.heartbeat.unwrap_or(Duration::from_secs(1));
        ctx.run_interval(every, |act, ctx| {
            let gone = act.tx.is_closed()
                || (act.heartbeat.is_some() && act.tx.try_send(Event::Heartbeat).is_err());
            if gone {
                ctx.stop();
            }
        });
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        if let Some(room) = &self.joined {
            room.do_send(Leave {
                session: self.id.clone(),
                r#ref: None,
                reply: false,
            });
        }
    }
}

impl Handler<ToSession> for Listener {
    type Result = ();

    fn handle(&mut self, msg: ToSession, ctx: &mut Context<Self>) {
        let counted = msg.counted();
        match msg {
            ToSession::Live(d) => self.forward(&d, ctx),
            ToSession::LiveBatch(batch) => {
                for d in batch.iter() {
                    self.forward(d, ctx);
                }
            }
            // Direct replies to a listener are errors of its join, followed by `Dropped`.
            ToSession::Reply(_) => {}
            ToSession::Joined(reply) => {
                let point = &reply.point;
                let joined = Event::Joined {
                    recovered: point.recovered,
                    last_seq: point.last_seq,
                    epoch: point.epoch.clone(),
                };
                self.emit(joined, ctx);
                for d in &reply.frames {
                    self.forward(d, ctx);
                }
            }
            ToSession::Dropped { .. } => ctx.stop(),
        }
        if let Some(outbox) = &self.outbox {
            outbox.written(counted);
        }
    }
}
