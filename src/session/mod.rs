//! The Session actor: one per WebSocket connection (actix-web-actors).
//!
//! Lifecycle: the HTTP handler authenticates and starts it; `started` sends `hello`, starts the
//! heartbeat and the token-expiry timer; frames are decoded by [`frames`], checked (rights, joined,
//! rate limit) and turned into room messages; `stopped` leaves every room.
//!
//! Close codes it uses: 1000 (client asked), 1002/1007/1008/1009 (bad frames), 1012 (drain),
//! 1013 (slow consumer: its bounded mailbox, `session.queue_max`, overflowed), 4001 (token expired),
//! 4008 (no pong or traffic for `session.timeout_ms`), 4029 (flooding far beyond the rate limit).
//! Anything else that goes wrong for one request is an `error` frame; the connection stays open.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::web::Payload;
use actix_web_actors::ws;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::auth::Identity;
use crate::ids::{RoomId, Seq, random_id};
use crate::node::Shared;
use crate::protocol::{
    self, ClientFrame, CloseCode, ErrorCode, PROTOCOL_VERSION, PresenceUser, ServerFrame,
};
use crate::room::{Join, Leave, Outbox, Room, SessionId, ToSession, Typing};
use crate::store::{NewMessage, StoreError};

pub mod frames;

use frames::{Assembler, FrameStream, Inbound};

pub struct Session {
    id: SessionId,
    identity: Identity,
    shared: Arc<Shared>,
    payload: Option<Payload>,
    rooms: HashMap<RoomId, Addr<Room>>,
    limiter: DefaultDirectRateLimiter,
    /// Rate-limited frames since the last accepted one; too many → 4029.
    refused: u32,
    last_seen: Instant,
    assembler: Assembler,
    closing: bool,
    /// Set in `started` (it needs the actor's address).
    outbox: Option<Outbox>,
}

/// Tells a session to close (drain, shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct CloseSession(pub CloseCode);

impl Session {
    pub fn new(shared: Arc<Shared>, identity: Identity, payload: Payload) -> Session {
        let limits = &shared.settings.limits;
        let quota =
            Quota::per_second(nonzero(limits.msgs_per_sec)).allow_burst(nonzero(limits.burst));
        Session {
            id: Arc::from(random_id().as_str()),
            identity,
            payload: Some(payload),
            rooms: HashMap::new(),
            limiter: RateLimiter::direct(quota),
            refused: 0,
            last_seen: Instant::now(),
            assembler: Assembler::new(limits.max_frame_bytes),
            closing: false,
            outbox: None,
            shared,
        }
    }

    fn outbox(&mut self, ctx: &mut ws::WebsocketContext<Self>) -> Outbox {
        let queue_max = self.shared.settings.session.queue_max;
        self.outbox
            .get_or_insert_with(|| Outbox::new(ctx.address().recipient(), queue_max))
            .clone()
    }

    fn close(&mut self, ctx: &mut ws::WebsocketContext<Self>, code: CloseCode, reason: &str) {
        if self.closing {
            return;
        }
        self.closing = true;
        self.shared
            .metrics
            .session_closes
            .with_label_values(&[code.label()])
            .inc();
        tracing::debug!(session = %self.id, code = code.code(), reason, "closing session");
        ctx.close(Some(ws::CloseReason {
            code: ws::CloseCode::from(code.code()),
            description: Some(reason.to_owned()),
        }));
        ctx.stop();
    }

    /// An `error` reply; the connection stays open.
    fn error(
        &self,
        ctx: &mut ws::WebsocketContext<Self>,
        r#ref: Option<&str>,
        code: ErrorCode,
        message: &str,
    ) {
        ctx.text(
            ServerFrame::Error {
                r#ref,
                code: code.as_str(),
                message,
                retry_after_ms: None,
            }
            .encode(),
        );
    }

    /// Token bucket for `send` and `typing`. False = refused (and answered).
    fn allow(&mut self, ctx: &mut ws::WebsocketContext<Self>, r#ref: Option<&str>) -> bool {
        match self.limiter.check() {
            Ok(()) => {
                self.refused = 0;
                true
            }
            Err(not_until) => {
                self.refused += 1;
                self.shared.metrics.rate_limited.inc();
                if self.refused > 2 * self.shared.settings.limits.burst.max(5) {
                    self.close(ctx, CloseCode::Flooding, "flooding");
                } else {
                    let wait = not_until.wait_time_from(DefaultClock::default().now());
                    let frame = ServerFrame::Error {
                        r#ref,
                        code: ErrorCode::RateLimited.as_str(),
                        message: "slow down",
                        retry_after_ms: Some((wait.as_millis() as u64).max(1)),
                    };
                    ctx.text(frame.encode());
                }
                false
            }
        }
    }

    fn on_text(&mut self, text: &str, ctx: &mut ws::WebsocketContext<Self>) {
        let request = match protocol::decode(text, self.shared.settings.limits.max_body_bytes) {
            Ok(r) => r,
            Err(e) => return self.error(ctx, e.r#ref.as_deref(), e.code, &e.message),
        };
        let r#ref = request.r#ref;
        match request.frame {
            ClientFrame::Ping => ctx.text(
                ServerFrame::Pong {
                    r#ref: r#ref.as_deref(),
                }
                .encode(),
            ),
            ClientFrame::Join { room, since, epoch } => self.join(room, since, epoch, r#ref, ctx),
            ClientFrame::Leave { room } => match self.rooms.remove(&room) {
                Some(addr) if addr.connected() => addr.do_send(Leave {
                    session: self.id.clone(),
                    r#ref,
                    reply: true,
                }),
                Some(_) => ctx.text(
                    ServerFrame::Left {
                        r#ref: r#ref.as_deref(),
                        room: &room,
                    }
                    .encode(),
                ),
                None => self.error(
                    ctx,
                    r#ref.as_deref(),
                    ErrorCode::NotJoined,
                    "not joined to that room",
                ),
            },
            ClientFrame::Send {
                room,
                body,
                client_msg_id,
            } => {
                if !self.rooms.contains_key(&room) {
                    return self.error(
                        ctx,
                        r#ref.as_deref(),
                        ErrorCode::NotJoined,
                        "join the room before sending",
                    );
                }
                if self.allow(ctx, r#ref.as_deref()) {
                    self.send(room, body, client_msg_id, r#ref, ctx);
                }
            }
            ClientFrame::History {
                room,
                before,
                limit,
            } => self.history(room, before, limit, r#ref, ctx),
            ClientFrame::Typing { room } => {
                let Some(addr) = self.rooms.get(&room).cloned() else {
                    return self.error(
                        ctx,
                        r#ref.as_deref(),
                        ErrorCode::NotJoined,
                        "not joined to that room",
                    );
                };
                if self.allow(ctx, r#ref.as_deref()) {
                    addr.do_send(Typing {
                        session: self.id.clone(),
                        user: self.identity.user.clone(),
                    });
                }
            }
        }
    }

    fn join(
        &mut self,
        room: RoomId,
        since: Option<Seq>,
        epoch: Option<String>,
        r#ref: Option<String>,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        if !self.identity.may_access(&room) {
            return self.error(
                ctx,
                r#ref.as_deref(),
                ErrorCode::Forbidden,
                "your token does not allow this room",
            );
        }
        if self.rooms.contains_key(&room) {
            return self.error(
                ctx,
                r#ref.as_deref(),
                ErrorCode::BadRequest,
                "already joined; leave first",
            );
        }
        // Record membership now, so a `send` right after `joined` is never refused.
        let registry = self.shared.rooms.clone();
        self.rooms
            .insert(room.clone(), registry.get_or_start(&room));
        let join = Join {
            session: self.id.clone(),
            outbox: self.outbox(ctx),
            user: PresenceUser {
                user: self.identity.user.clone(),
                name: self.identity.name.clone(),
            },
            since,
            epoch,
            r#ref,
            hidden: false,
        };
        let r#ref = join.r#ref.clone();
        ctx.spawn(
            async move { (registry.join(&room, join).await, room) }
                .into_actor(self)
                .map(move |(addr, room), act, ctx| match addr {
                    Some(addr) => {
                        act.rooms.insert(room, addr);
                    }
                    None => {
                        act.rooms.remove(&room);
                        act.error(
                            ctx,
                            r#ref.as_deref(),
                            ErrorCode::Unavailable,
                            "room unavailable, retry",
                        );
                    }
                }),
        );
    }

    fn send(
        &mut self,
        room: RoomId,
        body: String,
        client_msg_id: Option<String>,
        r#ref: Option<String>,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        let registry = self.shared.rooms.clone();
        let message = NewMessage {
            user: self.identity.user.clone(),
            name: self.identity.name.clone(),
            body,
            client_msg_id,
        };
        let outbox = self.outbox(ctx);
        ctx.spawn(
            async move {
                registry
                    .post_for_session(&room, message, outbox, r#ref.clone())
                    .await
                    .then_some(())
                    .ok_or(r#ref)
            }
            .into_actor(self)
            .map(|taken, act, ctx| {
                if let Err(r#ref) = taken {
                    act.error(
                        ctx,
                        r#ref.as_deref(),
                        ErrorCode::Unavailable,
                        "room unavailable, retry",
                    );
                }
            }),
        );
    }

    fn history(
        &mut self,
        room: RoomId,
        before: Option<Seq>,
        limit: usize,
        r#ref: Option<String>,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        if !self.identity.may_access(&room) {
            return self.error(
                ctx,
                r#ref.as_deref(),
                ErrorCode::Forbidden,
                "your token does not allow this room",
            );
        }
        let store = self.shared.store.clone();
        ctx.spawn(
            async move { (store.before(&room, before, limit).await, room) }
                .into_actor(self)
                .map(move |(res, room), act, ctx| match res {
                    Ok(messages) => ctx.text(
                        ServerFrame::History {
                            r#ref: r#ref.as_deref(),
                            room: &room,
                            messages: &messages,
                        }
                        .encode(),
                    ),
                    Err(e) => act.store_error(ctx, r#ref.as_deref(), &e),
                }),
        );
    }

    fn store_error(
        &self,
        ctx: &mut ws::WebsocketContext<Self>,
        r#ref: Option<&str>,
        e: &StoreError,
    ) {
        tracing::warn!(session = %self.id, error = %e, "store request failed");
        let (code, text) = match e {
            StoreError::Unavailable(_) => (
                ErrorCode::Unavailable,
                "store unavailable; retry with the same client_msg_id",
            ),
            StoreError::Internal(_) => (ErrorCode::Internal, "internal error"),
        };
        self.error(ctx, r#ref, code, text);
    }
}

fn nonzero(n: u32) -> std::num::NonZeroU32 {
    std::num::NonZeroU32::new(n.max(1)).unwrap_or(std::num::NonZeroU32::MIN)
}

impl Actor for Session {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let settings = &self.shared.settings;
        // The frame count in `Outbox` is the real limit; the mailbox only needs room for it plus
        // direct replies.
        ctx.set_mailbox_capacity(settings.session.queue_max + 256);
        self.outbox = Some(Outbox::new(
            ctx.address().recipient(),
            settings.session.queue_max,
        ));
        if let Some(payload) = self.payload.take() {
            ctx.add_stream(FrameStream::new(payload, settings.limits.max_frame_bytes));
        }
        ctx.text(
            ServerFrame::Hello {
                protocol: PROTOCOL_VERSION,
                node: &self.shared.node_id,
                session: &self.id,
                user: &self.identity.user,
                heartbeat_ms: settings.session.heartbeat_ms,
            }
            .encode(),
        );
        let timeout = Duration::from_millis(settings.session.timeout_ms);
        ctx.run_interval(
            Duration::from_millis(settings.session.heartbeat_ms),
            move |act, ctx| {
                if act.last_seen.elapsed() >= timeout {
                    act.close(ctx, CloseCode::HeartbeatTimeout, "heartbeat timeout");
                } else {
                    ctx.ping(b"");
                }
            },
        );
        ctx.run_later(self.identity.expires_in(), |act, ctx| {
            act.close(ctx, CloseCode::TokenExpired, "token expired");
        });
        self.shared.register_session(self.id.clone(), ctx.address());
        tracing::debug!(session = %self.id, user = %self.identity.user, "session started");
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        for addr in self.rooms.values() {
            addr.do_send(Leave {
                session: self.id.clone(),
                r#ref: None,
                reply: false,
            });
        }
        self.shared.unregister_session(&self.id);
    }
}

impl StreamHandler<Result<actix_http::ws::Frame, ws::ProtocolError>> for Session {
    fn handle(
        &mut self,
        item: Result<actix_http::ws::Frame, ws::ProtocolError>,
        ctx: &mut Self::Context,
    ) {
        self.last_seen = Instant::now();
        let frame = match item {
            Ok(frame) => frame,
            Err(e) => {
                let (code, reason) = frames::close_for(&e);
                return self.close(ctx, code, reason);
            }
        };
        match self.assembler.accept(frame) {
            Inbound::Text(text) => self.on_text(&text, ctx),
            Inbound::Ping(data) => ctx.pong(&data),
            Inbound::Pong | Inbound::Partial => {}
            Inbound::Close(reason) => {
                ctx.close(reason);
                ctx.stop();
            }
            Inbound::Violation(code, reason) => self.close(ctx, code, reason),
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

/// Required by actix-web-actors' builder; the real payload goes through [`FrameStream`] instead.
impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for Session {
    fn handle(&mut self, _: Result<ws::Message, ws::ProtocolError>, _: &mut Self::Context) {}

    fn finished(&mut self, _: &mut Self::Context) {}
}

impl Handler<ToSession> for Session {
    type Result = ();

    fn handle(&mut self, msg: ToSession, ctx: &mut Self::Context) {
        let metrics = &self.shared.metrics;
        let counted = msg.counted();
        let mut write = |d: &crate::room::Delivery| {
            if let Some(at) = d.committed {
                metrics.delivery_seconds.observe(at.elapsed().as_secs_f64());
                metrics.messages_delivered.inc();
            }
            ctx.text(d.frame.clone());
        };
        match msg {
            ToSession::Live(d) => write(&d),
            ToSession::LiveBatch(batch) => batch.iter().for_each(write),
            ToSession::Reply(frame) => ctx.text(frame),
            ToSession::Replies { frames, messages } => {
                metrics.messages_delivered.inc_by(messages);
                for frame in frames {
                    ctx.text(frame);
                }
            }
            ToSession::Dropped { room, slow } => {
                self.rooms.remove(&room);
                if slow {
                    self.close(ctx, CloseCode::SlowConsumer, "slow consumer");
                }
            }
        }
        if let Some(outbox) = &self.outbox {
            outbox.written(counted);
        }
    }
}

impl Handler<CloseSession> for Session {
    type Result = ();

    fn handle(&mut self, msg: CloseSession, ctx: &mut Self::Context) {
        self.close(ctx, msg.0, "server closing");
    }
}
