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
use std::time::Instant;

use actix::prelude::*;
use actix_web::web::Payload;
use actix_web_actors::ws;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::auth::Identity;
use crate::config::Settings;
use crate::edge::admission::Permit;
use crate::edge::conn::ConnSocket;
use crate::ids::{RoomId, SessionId};
use crate::metrics::Metrics;
use crate::protocol::{CloseCode, ErrorCode, PROTOCOL_VERSION, ServerFrame};
use crate::room::{DropReason, Leave, Outbox, Registry, Room, ToSession};
use crate::store::Store;

pub mod echo;
pub mod frames;
mod open;
pub mod reads;
mod requests;

pub use open::{CloseSession, Handle, Kick, SessionControl, Sessions};

use frames::{Assembler, FrameStream, Inbound};

/// What every session of a node shares (built once by the node, as `RoomDeps` is for rooms).
pub struct SessionDeps {
    pub settings: Settings,
    pub node_id: String,
    pub rooms: Registry,
    pub store: Arc<dyn Store>,
    pub metrics: Metrics,
    /// The node's open sessions (to drain them, and to reach a user's).
    pub sessions: Sessions,
    /// Where a moved read cursor is announced (this node's sessions and the other nodes).
    pub reads: reads::ReadRelay,
}

pub struct Session {
    id: SessionId,
    identity: Identity,
    deps: Arc<SessionDeps>,
    payload: Option<Payload>,
    rooms: HashMap<RoomId, Addr<Room>>,
    limiter: DefaultDirectRateLimiter,
    /// Rate-limited frames since the last accepted one; too many → 4029.
    refused: u32,
    last_seen: Instant,
    assembler: Assembler,
    closing: bool,
    /// The connection, ended by the server when the session stops with [`Session::hang_up`] set.
    conn: Option<ConnSocket>,
    /// Close the TCP connection when the actor stops (see `close`).
    hang_up: bool,
    /// Set in `started` (it needs the actor's address).
    outbox: Option<Outbox>,
    /// This socket's slot under the per-user and per-IP limits, freed when the actor is dropped.
    _permit: Permit,
    /// For the line logged when the session ends.
    started: Instant,
    frames_in: u64,
    frames_out: u64,
    /// The close code this session ended with (1006: the connection ended without one).
    close_code: u16,
}

impl Handler<Kick> for Session {
    type Result = bool;

    fn handle(&mut self, msg: Kick, ctx: &mut Self::Context) -> bool {
        if !self.rooms.contains_key(&msg.0) || self.closing {
            return false;
        }
        self.close(
            ctx,
            CloseCode::Forbidden,
            "removed from the room by an operator",
        );
        true
    }
}

impl Session {
    pub fn new(
        deps: Arc<SessionDeps>,
        identity: Identity,
        payload: Payload,
        permit: Permit,
        conn: Option<ConnSocket>,
    ) -> Session {
        let limits = &deps.settings.limits;
        let quota = Quota::per_second(limits.msgs_per_sec).allow_burst(limits.burst);
        Session {
            id: SessionId::random(),
            identity,
            payload: Some(payload),
            rooms: HashMap::new(),
            limiter: RateLimiter::direct(quota),
            refused: 0,
            last_seen: Instant::now(),
            assembler: Assembler::new(limits.max_frame_bytes),
            closing: false,
            conn,
            hang_up: false,
            outbox: None,
            _permit: permit,
            started: Instant::now(),
            frames_in: 0,
            frames_out: 0,
            close_code: 1006,
            deps,
        }
    }

    fn outbox(&mut self, ctx: &mut ws::WebsocketContext<Self>) -> Outbox {
        let queue_max = self.deps.settings.session.queue_max;
        self.outbox
            .get_or_insert_with(|| Outbox::new(ctx.address().recipient(), queue_max))
            .clone()
    }

    fn close(&mut self, ctx: &mut ws::WebsocketContext<Self>, code: CloseCode, reason: &str) {
        if self.closing {
            return;
        }
        self.closing = true;
        self.close_code = code.code();
        // A frame that breaks the protocol fails the connection (RFC 6455 §7.1.7): the server
        // closes the TCP connection right after its Close. Any other close is one the peer should
        // answer with its own Close: the session keeps reading (and ignoring) what the peer still
        // sends until that Close arrives, then hangs up at once (`StreamHandler::handle`), or
        // after `conn::LINGER` if it never does. Hanging up before the peer's Close would make a
        // peer that writes in the meantime (a pong) meet a reset, and may cost it our Close.
        let failed = matches!(
            code,
            CloseCode::Protocol | CloseCode::InvalidUtf8 | CloseCode::Policy | CloseCode::TooBig
        );
        self.hang_up = failed;
        self.leave_rooms();
        self.deps
            .metrics
            .session_closes
            .with_label_values(&[code.label()])
            .inc();
        tracing::debug!(session = %self.id, code = code.code(), reason, "closing session");
        ctx.close(Some(ws::CloseReason {
            code: ws::CloseCode::from(code.code()),
            description: Some(reason.to_owned()),
        }));
        if failed {
            ctx.stop();
        } else {
            ctx.run_later(crate::edge::conn::LINGER, |act, ctx| {
                act.hang_up = true;
                ctx.stop();
            });
        }
    }

    /// Leaves every room (when closing: nothing more is delivered to a closing socket).
    fn leave_rooms(&mut self) {
        for (_, addr) in self.rooms.drain() {
            addr.do_send(Leave {
                session: self.id.clone(),
                r#ref: None,
                reply: false,
            });
        }
    }

    /// An `error` reply; the connection stays open.
    fn error(
        &self,
        ctx: &mut ws::WebsocketContext<Self>,
        r#ref: Option<&str>,
        code: ErrorCode,
        message: &str,
    ) {
        if self.closing {
            return; // nothing may follow our Close frame
        }
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
}

impl Actor for Session {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let settings = &self.deps.settings;
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
                node: &self.deps.node_id,
                session: &self.id,
                user: &self.identity.user,
                heartbeat_ms: settings.session.heartbeat.as_millis() as u64,
            }
            .encode(),
        );
        let timeout = settings.session.timeout;
        ctx.run_interval(settings.session.heartbeat, move |act, ctx| {
            if act.closing {
                // Nothing may follow our Close frame.
            } else if act.last_seen.elapsed() >= timeout {
                act.close(ctx, CloseCode::HeartbeatTimeout, "heartbeat timeout");
            } else {
                ctx.ping(b"");
            }
        });
        ctx.run_later(self.identity.expires_in(), |act, ctx| {
            act.close(ctx, CloseCode::TokenExpired, "token expired");
        });
        let handle: Handle = Arc::new(ctx.address());
        self.deps
            .sessions
            .register(self.id.clone(), self.identity.user.clone(), handle);
        tracing::debug!(session = %self.id, user = %self.identity.user, "session started");
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        tracing::info!(
            session = %self.id,
            user = %self.identity.user,
            ms = self.started.elapsed().as_millis() as u64,
            code = self.close_code,
            frames_in = self.frames_in,
            frames_out = self.frames_out,
            "session ended"
        );
        self.leave_rooms();
        self.deps.sessions.unregister(&self.id);
        if self.hang_up
            && let Some(conn) = &self.conn
        {
            conn.hang_up();
        }
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
            Err(_) if self.closing => {
                self.hang_up = true;
                return ctx.stop();
            }
            Err(e) => {
                let (code, reason) = frames::close_for(&e);
                return self.close(ctx, code, reason);
            }
        };
        if self.closing {
            // Our Close is out: everything but the peer's answer is ignored, and that answer
            // completes the closing handshake, so the connection ends now (not after a linger).
            if matches!(frame, actix_http::ws::Frame::Close(_)) {
                self.hang_up = true;
                ctx.stop();
            }
            return;
        }
        match self.assembler.accept(frame) {
            Inbound::Text(text) => {
                self.frames_in += 1;
                self.on_text(&text, ctx)
            }
            // The chat assembler refuses binary before it gets here.
            Inbound::Binary(_) => {
                self.close(ctx, CloseCode::Policy, "binary frames are not supported")
            }
            Inbound::Ping(data) => ctx.pong(&data),
            Inbound::Pong | Inbound::Partial => {}
            Inbound::Close(reason) => {
                self.close_code = reason.as_ref().map_or(1005, |r| u16::from(r.code));
                // The peer started the closing handshake; our answer completes it.
                self.hang_up = true;
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
        let metrics = &self.deps.metrics;
        let counted = msg.counted();
        self.frames_out += match &msg {
            ToSession::Live(_) | ToSession::Reply(_) => 1,
            ToSession::LiveBatch(batch) => batch.len() as u64,
            ToSession::Joined(reply) => reply.frames.len() as u64,
            ToSession::Dropped { .. } => 0,
        };
        // Nothing may follow our Close frame; what was queued for the socket is dropped.
        let closing = self.closing;
        let mut write = |d: &crate::room::Delivery| {
            if let Some(at) = d.committed {
                let took = at.elapsed().as_secs_f64();
                metrics.delivery_seconds.observe(took);
                if took > crate::metrics::SLOW_DELIVERY_S {
                    metrics.delivery_slow.inc();
                }
                metrics.messages_delivered.inc();
            }
            if !closing {
                ctx.text(d.frame.clone());
            }
        };
        match msg {
            ToSession::Live(d) => write(&d),
            ToSession::LiveBatch(batch) => batch.iter().for_each(write),
            ToSession::Reply(_) | ToSession::Joined(_) if closing => {}
            ToSession::Reply(frame) => ctx.text(frame),
            ToSession::Joined(reply) => {
                metrics.messages_delivered.inc_by(reply.messages);
                for d in reply.frames {
                    ctx.text(d.frame);
                }
            }
            ToSession::Dropped { room, why } => {
                self.rooms.remove(&room);
                match why {
                    DropReason::Refused => {}
                    DropReason::Slow => self.close(ctx, CloseCode::SlowConsumer, "slow consumer"),
                    // The room actor went away (a panic): join its successor, resuming where this
                    // session's stream ended. The client sees a `joined` without `ref`.
                    DropReason::Lost { epoch, last_seq } if !closing => {
                        tracing::warn!(room = %room, "room went away under this session; joining again");
                        self.join(room, last_seq, epoch, None, ctx);
                    }
                    DropReason::Lost { .. } => {}
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

/// How the node's open-session list reaches a session, through its address.
impl SessionControl for Addr<Session> {
    fn frame(&self, message: ToSession) {
        self.do_send(message);
    }

    fn kick(&self, room: RoomId) -> futures_util::future::BoxFuture<'static, bool> {
        let send = self.send(Kick(room));
        Box::pin(async move { send.await.unwrap_or(false) })
    }

    fn kick_unanswered(&self, room: RoomId) {
        self.do_send(Kick(room));
    }

    fn close(&self, code: CloseCode) {
        self.do_send(CloseSession(code));
    }
}
