//! The echo endpoint (`GET /echo`, only with `http.echo_endpoint = true`): every text or binary
//! message comes back unchanged. It exists for protocol conformance testing (the Autobahn
//! testsuite, `tests/autobahn/run`) and goes through the same frame decoding, reassembly and
//! limits as a chat [`Session`](super::Session): frames over `limits.max_frame_bytes` → 1009,
//! invalid UTF-8 → 1007, protocol violations → 1002, pings answered, closes echoed. No auth,
//! no rooms: never enable it on a public node.

use actix::prelude::*;
use actix_web::web::Payload;
use actix_web_actors::ws;

use super::frames::{Assembler, FrameStream, Inbound, close_for};
use crate::edge::conn::ConnSocket;
use crate::protocol::CloseCode;

pub struct Echo {
    payload: Option<Payload>,
    assembler: Assembler,
    max_frame_bytes: usize,
    conn: Option<ConnSocket>,
}

impl Echo {
    pub fn new(payload: Payload, max_frame_bytes: usize, conn: Option<ConnSocket>) -> Echo {
        Echo {
            payload: Some(payload),
            assembler: Assembler::with_binary(max_frame_bytes),
            max_frame_bytes,
            conn,
        }
    }

    fn close(ctx: &mut ws::WebsocketContext<Self>, code: CloseCode, reason: &str) {
        ctx.close(Some(ws::CloseReason {
            code: ws::CloseCode::from(code.code()),
            description: Some(reason.to_owned()),
        }));
        ctx.stop();
    }
}

impl Actor for Echo {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some(payload) = self.payload.take() {
            ctx.add_stream(FrameStream::new(payload, self.max_frame_bytes));
        }
    }

    /// Every way this actor ends is a finished handshake or a failed connection: close the TCP
    /// connection first, as RFC 6455 §7.1.1 asks of a server.
    fn stopped(&mut self, _: &mut Self::Context) {
        if let Some(conn) = &self.conn {
            conn.hang_up();
        }
    }
}

impl StreamHandler<Result<actix_http::ws::Frame, ws::ProtocolError>> for Echo {
    fn handle(
        &mut self,
        item: Result<actix_http::ws::Frame, ws::ProtocolError>,
        ctx: &mut Self::Context,
    ) {
        let frame = match item {
            Ok(frame) => frame,
            Err(e) => {
                let (code, reason) = close_for(&e);
                return Self::close(ctx, code, reason);
            }
        };
        match self.assembler.accept(frame) {
            Inbound::Text(text) => ctx.text(text),
            Inbound::Binary(data) => ctx.binary(data),
            Inbound::Ping(data) => ctx.pong(&data),
            Inbound::Pong | Inbound::Partial => {}
            Inbound::Close(reason) => {
                ctx.close(reason);
                ctx.stop();
            }
            Inbound::Violation(code, reason) => Self::close(ctx, code, reason),
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

/// Required by actix-web-actors' builder; the real payload goes through [`FrameStream`] instead.
impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for Echo {
    fn handle(&mut self, _: Result<ws::Message, ws::ProtocolError>, _: &mut Self::Context) {}

    fn finished(&mut self, _: &mut Self::Context) {}
}
