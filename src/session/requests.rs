//! Request handling for a session: each decoded client frame is checked (rights, membership,
//! rate limit) and turned into a room message, a store read, or an `error` reply.

use actix::prelude::*;
use actix_web_actors::ws;
use governor::clock::{Clock, DefaultClock};

use super::Session;
use crate::ids::{RoomId, Seq};
use crate::protocol::{self, ClientFrame, CloseCode, ErrorCode, PresenceUser, ServerFrame};
use crate::room::{Join, Leave, Post, PostReply, Typing};
use crate::store::{Change, NewMessage, StoreError};

impl Session {
    /// Token bucket for `send` and `typing`. False = refused (and answered).
    pub(super) fn allow(
        &mut self,
        ctx: &mut ws::WebsocketContext<Self>,
        r#ref: Option<&str>,
    ) -> bool {
        match self.limiter.check() {
            Ok(()) => {
                self.refused = 0;
                true
            }
            Err(not_until) => {
                self.refused += 1;
                self.deps.metrics.rate_limited.inc();
                if self.refused > 2 * self.deps.settings.limits.burst.get().max(5) {
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

    pub(super) fn on_text(&mut self, text: &str, ctx: &mut ws::WebsocketContext<Self>) {
        let request = match protocol::decode(text, self.deps.settings.limits.max_body_bytes) {
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
            } => self.post(room, Change::Message { body }, client_msg_id, r#ref, ctx),
            ClientFrame::Entry {
                room,
                change,
                client_msg_id,
            } => self.post(room, change, client_msg_id, r#ref, ctx),
            ClientFrame::Read { room, seq } => {
                if self.joined_and_allowed(&room, r#ref.as_deref(), ctx) {
                    self.read(room, seq, r#ref, ctx);
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

    /// The token's room rights; a refusal is answered with `forbidden`.
    fn may_access(
        &self,
        room: &RoomId,
        r#ref: Option<&str>,
        ctx: &mut ws::WebsocketContext<Self>,
    ) -> bool {
        let allowed = self.identity.may_access(room);
        if !allowed {
            self.error(
                ctx,
                r#ref,
                ErrorCode::Forbidden,
                "your token does not allow this room",
            );
        }
        allowed
    }

    pub(super) fn join(
        &mut self,
        room: RoomId,
        since: Option<Seq>,
        epoch: Option<crate::ids::Epoch>,
        r#ref: Option<String>,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        if !self.may_access(&room, r#ref.as_deref(), ctx) {
            return;
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
        let registry = self.deps.rooms.clone();
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
                    // Only refresh the address (a stopping room was replaced): if the room
                    // refused the join, its `Dropped` has already ended the membership and must
                    // not be undone here.
                    Some(addr) => {
                        if let Some(entry) = act.rooms.get_mut(&room) {
                            *entry = addr;
                        }
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

    /// A write to `room` needs its membership and a token from the bucket; false = answered.
    fn joined_and_allowed(
        &mut self,
        room: &RoomId,
        r#ref: Option<&str>,
        ctx: &mut ws::WebsocketContext<Self>,
    ) -> bool {
        if !self.rooms.contains_key(room) {
            self.error(ctx, r#ref, ErrorCode::NotJoined, "join the room first");
            return false;
        }
        self.allow(ctx, r#ref)
    }

    /// Moves this user's read cursor; the reply is the `read` frame, and every other session of
    /// the user (on any node) gets it too.
    fn read(
        &mut self,
        room: RoomId,
        seq: Seq,
        r#ref: Option<String>,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        let (rooms, user) = (self.deps.rooms.clone(), self.identity.user.clone());
        ctx.spawn(
            async move { (rooms.mark_read(&room, &user, seq).await, room) }
                .into_actor(self)
                .map(move |(res, room), act, ctx| match res {
                    Ok((state, moved)) => {
                        ctx.text(
                            ServerFrame::Read {
                                r#ref: r#ref.as_deref(),
                                room: &room,
                                user: &act.identity.user,
                                seq: state.read_seq,
                                unread: state.unread,
                                last_seq: state.last_seq,
                            }
                            .encode(),
                        );
                        if moved {
                            let user = &act.identity.user;
                            act.deps.reads.moved(&room, user, state, Some(&act.id));
                        }
                    }
                    Err(e) => act.store_error(ctx, r#ref.as_deref(), &e),
                }),
        );
    }

    /// `send`, `edit`, `delete`, `react`: a log entry for a room this session joined.
    fn post(
        &mut self,
        room: RoomId,
        change: Change,
        client_msg_id: Option<String>,
        r#ref: Option<String>,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        if !self.joined_and_allowed(&room, r#ref.as_deref(), ctx) {
            return;
        }
        let registry = self.deps.rooms.clone();
        let held = self.rooms.get(&room).cloned();
        let message = NewMessage {
            user: self.identity.user.clone(),
            name: self.identity.name.clone(),
            client_msg_id,
            change,
            moderator: self.identity.moderator,
        };
        let outbox = self.outbox(ctx);
        ctx.spawn(
            async move {
                // Straight to the room this session joined; only if that actor has gone (idled
                // out between the check and the post, or failed) through the registry's lookup.
                if let Some(addr) = held {
                    let post = Post {
                        message: message.clone(),
                        reply: PostReply::Session {
                            outbox: outbox.clone(),
                            r#ref: r#ref.clone(),
                        },
                    };
                    if addr.send(post).await.is_ok() {
                        return Ok(());
                    }
                }
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

    pub(super) fn history(
        &mut self,
        room: RoomId,
        before: Option<Seq>,
        limit: usize,
        r#ref: Option<String>,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        if !self.may_access(&room, r#ref.as_deref(), ctx) {
            return;
        }
        let store = self.deps.store.clone();
        ctx.spawn(
            async move { (store.before(&room, before, limit).await, room) }
                .into_actor(self)
                .map(move |(res, room), act, ctx| match res {
                    Ok(_) if act.closing => {}
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

    pub(super) fn store_error(
        &self,
        ctx: &mut ws::WebsocketContext<Self>,
        r#ref: Option<&str>,
        e: &StoreError,
    ) {
        tracing::warn!(session = %self.id, error = %e, "store request failed");
        let (code, text) = e.wire();
        self.error(ctx, r#ref, code, text);
    }
}
