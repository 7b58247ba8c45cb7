//! Turns the raw request payload into WebSocket frames with actix-http's codec, and reassembles
//! fragmented messages. Kept separate from the actor so every limit is decided in one place:
//! a frame or reassembled message over `limits.max_frame_bytes` → 1009, invalid UTF-8 → 1007,
//! binary → 1008 (accepted only by the test-only echo endpoint), other protocol violations → 1002.

use std::pin::Pin;
use std::task::{Context, Poll};

use actix_http::ws::{Codec, Frame, Item, ProtocolError};
use actix_web::error::PayloadError;
use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use tokio_util::codec::Decoder;

use crate::protocol::CloseCode;

/// Decoded frames from a request payload.
pub struct FrameStream<S> {
    inner: S,
    codec: Codec,
    buf: BytesMut,
    eof: bool,
    failed: bool,
}

impl<S> FrameStream<S> {
    pub fn new(inner: S, max_frame_bytes: usize) -> Self {
        Self {
            inner,
            codec: Codec::new().max_size(max_frame_bytes),
            buf: BytesMut::new(),
            eof: false,
            failed: false,
        }
    }
}

impl<S> Stream for FrameStream<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Frame, ProtocolError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if this.failed {
                return Poll::Ready(None);
            }
            match this.codec.decode(&mut this.buf) {
                Ok(Some(frame)) => return Poll::Ready(Some(Ok(frame))),
                Ok(None) => {}
                Err(e) => {
                    this.failed = true;
                    return Poll::Ready(Some(Err(e)));
                }
            }
            if this.eof {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.inner).poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => this.buf.extend_from_slice(&chunk),
                Poll::Ready(Some(Err(e))) => {
                    this.failed = true;
                    return Poll::Ready(Some(Err(ProtocolError::Io(std::io::Error::other(
                        e.to_string(),
                    )))));
                }
                Poll::Ready(None) => this.eof = true,
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// What the session should do with one decoded frame.
#[derive(Debug, PartialEq)]
pub enum Inbound {
    /// A complete text message.
    Text(String),
    /// A complete binary message (only where binary is accepted: the Autobahn echo endpoint).
    Binary(Bytes),
    Ping(Bytes),
    Pong,
    /// The client closes; echo its code.
    Close(Option<actix_http::ws::CloseReason>),
    /// A fragment was buffered; nothing to do yet.
    Partial,
    /// The connection must close with this code.
    Violation(CloseCode, &'static str),
}

/// Reassembles continuation frames, enforcing the size cap on the whole message.
pub struct Assembler {
    max: usize,
    /// The message being reassembled, and whether it is binary.
    partial: Option<BytesMut>,
    partial_binary: bool,
    /// Binary messages are accepted (echo endpoint) instead of closing with 1008 (chat).
    binary: bool,
}

impl Assembler {
    /// For chat sessions: text only.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            partial: None,
            partial_binary: false,
            binary: false,
        }
    }

    /// Text and binary (the echo endpoint used for protocol conformance).
    pub fn with_binary(max: usize) -> Self {
        Self {
            binary: true,
            ..Self::new(max)
        }
    }

    fn binary_refused() -> Inbound {
        Inbound::Violation(CloseCode::Policy, "binary frames are not supported")
    }

    pub fn accept(&mut self, frame: Frame) -> Inbound {
        match frame {
            Frame::Text(data) => {
                if self.partial.is_some() {
                    return Inbound::Violation(
                        CloseCode::Protocol,
                        "text frame inside a fragmented message",
                    );
                }
                text(data.to_vec())
            }
            Frame::Binary(data) if self.binary => {
                if self.partial.is_some() {
                    return Inbound::Violation(
                        CloseCode::Protocol,
                        "binary frame inside a fragmented message",
                    );
                }
                Inbound::Binary(data)
            }
            Frame::Binary(_) => Self::binary_refused(),
            Frame::Ping(data) => Inbound::Ping(data),
            Frame::Pong(_) => Inbound::Pong,
            Frame::Close(reason) => Inbound::Close(reason),
            Frame::Continuation(item) => self.continuation(item),
        }
    }

    fn continuation(&mut self, item: Item) -> Inbound {
        match item {
            Item::FirstText(data) => self.first(data, false),
            Item::FirstBinary(data) if self.binary => self.first(data, true),
            Item::FirstBinary(_) => Self::binary_refused(),
            Item::Continue(data) => match &mut self.partial {
                Some(buf) => {
                    buf.extend_from_slice(&data);
                    self.check_size()
                }
                None => {
                    Inbound::Violation(CloseCode::Protocol, "continuation without a first frame")
                }
            },
            Item::Last(data) => match self.partial.take() {
                Some(mut buf) => {
                    buf.extend_from_slice(&data);
                    if buf.len() > self.max {
                        return Inbound::Violation(CloseCode::TooBig, "message too big");
                    }
                    if self.partial_binary {
                        Inbound::Binary(buf.freeze())
                    } else {
                        text(buf.to_vec())
                    }
                }
                None => {
                    Inbound::Violation(CloseCode::Protocol, "continuation without a first frame")
                }
            },
        }
    }

    fn first(&mut self, data: Bytes, binary: bool) -> Inbound {
        if self.partial.is_some() {
            return Inbound::Violation(CloseCode::Protocol, "new message before the last ended");
        }
        self.partial = Some(BytesMut::from(&data[..]));
        self.partial_binary = binary;
        self.check_size()
    }

    fn check_size(&self) -> Inbound {
        match &self.partial {
            Some(buf) if buf.len() > self.max => {
                Inbound::Violation(CloseCode::TooBig, "message too big")
            }
            _ => Inbound::Partial,
        }
    }
}

fn text(bytes: Vec<u8>) -> Inbound {
    match String::from_utf8(bytes) {
        Ok(s) => Inbound::Text(s),
        Err(_) => Inbound::Violation(CloseCode::InvalidUtf8, "invalid UTF-8 in a text message"),
    }
}

/// Maps a codec error to the close code the protocol names for it.
pub fn close_for(error: &ProtocolError) -> (CloseCode, &'static str) {
    match error {
        ProtocolError::Overflow => (CloseCode::TooBig, "frame too big"),
        ProtocolError::Io(_) => (CloseCode::Protocol, "connection error"),
        _ => (CloseCode::Protocol, "WebSocket protocol violation"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_are_joined_and_capped() {
        let mut a = Assembler::new(10);
        assert_eq!(
            a.accept(Frame::Continuation(Item::FirstText(Bytes::from_static(
                b"{\"a\""
            )))),
            Inbound::Partial
        );
        assert_eq!(
            a.accept(Frame::Continuation(Item::Continue(Bytes::from_static(
                b":"
            )))),
            Inbound::Partial
        );
        assert_eq!(
            a.accept(Frame::Continuation(Item::Last(Bytes::from_static(b"1}")))),
            Inbound::Text("{\"a\":1}".into())
        );
        let r = a.accept(Frame::Continuation(Item::FirstText(Bytes::from_static(
            b"0123456789x",
        ))));
        assert_eq!(r, Inbound::Violation(CloseCode::TooBig, "message too big"));
    }

    #[test]
    fn bad_frames_map_to_close_codes() {
        let mut a = Assembler::new(100);
        assert!(matches!(
            a.accept(Frame::Binary(Bytes::new())),
            Inbound::Violation(CloseCode::Policy, _)
        ));
        assert!(matches!(
            a.accept(Frame::Text(Bytes::from_static(b"\xff\xfe"))),
            Inbound::Violation(CloseCode::InvalidUtf8, _)
        ));
        assert!(matches!(
            a.accept(Frame::Continuation(Item::Last(Bytes::new()))),
            Inbound::Violation(CloseCode::Protocol, _)
        ));
        assert_eq!(close_for(&ProtocolError::Overflow).0, CloseCode::TooBig);
    }
}
