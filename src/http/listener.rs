//! The Listener actor: joins a room on behalf of an HTTP stream (SSE or long-poll) as a hidden
//! member (not in presence) and turns the room's frames into [`Event`]s on a bounded channel.
//!
//! Lifecycle: started by the handler, joins with the stream's cursor as `since` (so the room's
//! backfill-then-live seam serves SSE and long-poll exactly as it serves WebSocket), and stops when
//! the HTTP side goes away (channel closed), when the channel is full (a slow SSE reader), or when
//! the room drops it. On stop it leaves the room.

use std::borrow::Cow;
use std::time::Duration;

use actix::prelude::*;
use bytestring::ByteString;
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::domain::Kind;
use crate::ids::{RoomId, Seq, SessionId};
use crate::protocol::PresenceUser;
use crate::room::{Delivery, Join, Leave, Outbox, Registry, Room, ToSession};

pub enum Event {
    Joined {
        recovered: bool,
        last_seq: Seq,
        epoch: String,
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

const RESET_PREFIX: &str = r#"{"type":"reset""#;

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

    /// A broadcast frame: only messages matter, and their seq travels with the frame.
    fn forward_live(&mut self, d: &Delivery, ctx: &mut Context<Self>) {
        if let Some(seq) = d.seq {
            let (frame, kind) = (d.frame.clone(), d.kind);
            self.emit(Event::Message { seq, kind, frame }, ctx);
        } else if d.frame.starts_with(RESET_PREFIX) {
            // `type` is always the first key (protocol/server.rs), so this is the reset frame.
            let frame = d.frame.clone();
            self.emit(Event::Reset { frame }, ctx);
        }
    }

    /// A direct reply (the join's reply and backfill): parsed, once per join.
    fn forward_reply(&mut self, frame: ByteString, ctx: &mut Context<Self>) {
        if let Some(event) = classify(frame) {
            self.emit(event, ctx);
        }
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
            ToSession::Live(d) => self.forward_live(&d, ctx),
            ToSession::LiveBatch(batch) => {
                for d in batch.iter() {
                    self.forward_live(d, ctx);
                }
            }
            ToSession::Reply(frame) => self.forward_reply(frame, ctx),
            ToSession::Replies { frames, .. } => {
                for frame in frames {
                    self.forward_reply(frame, ctx);
                }
            }
            ToSession::Dropped { .. } => ctx.stop(),
        }
        if let Some(outbox) = &self.outbox {
            outbox.written(counted);
        }
    }
}

/// Picks the frames an HTTP stream cares about out of the room's WebSocket frames.
fn classify(frame: ByteString) -> Option<Event> {
    #[derive(Deserialize)]
    struct Head<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
        seq: Option<Seq>,
        last_seq: Option<Seq>,
        recovered: Option<bool>,
        #[serde(borrow)]
        epoch: Option<Cow<'a, str>>,
    }
    let head: Head = serde_json::from_str(&frame).ok()?;
    match head.kind {
        "joined" => Some(Event::Joined {
            recovered: head.recovered.unwrap_or(false),
            last_seq: head.last_seq.unwrap_or_default(),
            epoch: head.epoch.map(Cow::into_owned).unwrap_or_default(),
        }),
        entry => Kind::parse(entry).and_then(|kind| {
            Some(Event::Message {
                seq: head.seq?,
                kind,
                frame: frame.clone(),
            })
        }),
    }
}
