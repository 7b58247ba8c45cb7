//! A WebSocket client that reads with deadlines and fails loudly, and the check that every
//! frame it (or the SSE reader) receives matches `/api/asyncapi.json`.

use std::sync::OnceLock;

use chorus::http::asyncapi::{Frames, frame_schema};

use super::*;

/// Fails the test unless `frame` matches `/api/asyncapi.json` (every frame the suite's
/// WebSocket and SSE readers receive goes through here, so the document cannot drift from what
/// the node sends).
pub fn conforms(frames: Frames, frame: &Value) {
    static CHECKS: OnceLock<Vec<(Frames, jsonschema::Validator)>> = OnceLock::new();
    let checks = CHECKS.get_or_init(|| {
        [Frames::Client, Frames::Server, Frames::Sse]
            .into_iter()
            .map(|f| {
                (
                    f,
                    jsonschema::draft202012::new(&frame_schema(f)).expect("schema"),
                )
            })
            .collect()
    });
    let (_, v) = checks
        .iter()
        .find(|(f, _)| *f == frames)
        .expect("a validator");
    if let Err(e) = v.validate(frame) {
        panic!("{frames:?} frame does not match /api/asyncapi.json: {e}\n{frame}");
    }
}

/// A WebSocket client that reads with deadlines and fails loudly.
pub struct Ws {
    pub stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub hello: Value,
}

impl Ws {
    pub async fn connect(addr: SocketAddr, token: &str) -> Ws {
        let tcp = TcpStream::connect(addr).await.expect("tcp connect");
        Ws::handshake(addr, token, tcp).await
    }

    /// A client whose socket receive buffer is tiny, so that not reading backs up into the server fast.
    pub async fn connect_small_buffer(addr: SocketAddr, token: &str) -> Ws {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        let tcp = socket.connect(addr).await.expect("tcp connect");
        Ws::handshake(addr, token, tcp).await
    }

    /// Upgrades `tcp` with the token as a bearer header; the first frame must be `hello`.
    async fn handshake(addr: SocketAddr, token: &str, tcp: TcpStream) -> Ws {
        let mut req = format!("ws://{addr}/ws")
            .into_client_request()
            .expect("request");
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("header"),
        );
        let (stream, _) = tokio_tungstenite::client_async(req, MaybeTlsStream::Plain(tcp))
            .await
            .expect("ws handshake");
        let mut ws = Ws {
            stream,
            hello: Value::Null,
        };
        ws.hello = ws.recv().await;
        assert_eq!(ws.hello["type"], "hello", "first frame is hello");
        ws
    }

    pub async fn send(&mut self, v: Value) {
        self.stream
            .send(WsMessage::text(v.to_string()))
            .await
            .expect("ws send");
    }

    /// Sends a frame the protocol accepts, checked against `/api/asyncapi.json` first.
    pub async fn send_valid(&mut self, v: Value) {
        conforms(Frames::Client, &v);
        self.send(v).await;
    }

    pub async fn send_raw(&mut self, m: WsMessage) {
        self.stream.send(m).await.expect("ws send");
    }

    pub async fn send_frame(&mut self, payload: &[u8], opcode: Data, fin: bool) {
        let frame = Frame::message(payload.to_vec(), OpCode::Data(opcode), fin);
        self.stream
            .send(WsMessage::Frame(frame))
            .await
            .expect("ws send frame");
    }

    /// Next JSON frame (ping/pong skipped); fails on close or after the deadline.
    pub async fn recv(&mut self) -> Value {
        // One deadline for the whole call: server pings must not keep extending it.
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .expect("timed out waiting for a frame")
                .expect("connection ended")
                .expect("ws error");
            match msg {
                WsMessage::Text(t) => {
                    let frame: Value = serde_json::from_str(&t).expect("server sends JSON");
                    conforms(Frames::Server, &frame);
                    return frame;
                }
                WsMessage::Ping(_) | WsMessage::Pong(_) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// Next frame of type `kind`, skipping only presence/typing noise (and `read` frames, which a
    /// room sends its members after a bus outage).
    pub async fn recv_type(&mut self, kind: &str) -> Value {
        loop {
            let v = self.recv().await;
            if v["type"] == kind {
                return v;
            }
            let t = v["type"].as_str().unwrap_or("");
            assert!(
                matches!(t, "presence" | "presence_diff" | "typing" | "read"),
                "expected {kind}, got {v}"
            );
        }
    }

    /// Joins and returns the `joined` frame (and consumes the presence snapshot).
    pub async fn join(&mut self, room: &str) -> Value {
        self.send_valid(json!({"type":"join","room":room,"ref":"j"}))
            .await;
        let joined = self.recv_type("joined").await;
        assert_eq!(self.recv().await["type"], "presence");
        joined
    }

    /// Sends a message and returns its ack.
    pub async fn post(&mut self, room: &str, body: &str) -> Value {
        self.send_valid(json!({"type":"send","room":room,"body":body,"ref":"s"}))
            .await;
        // The protocol's order: the ack first, then the sender's own copy of the message
        // (use this helper only where this client is the room's only writer).
        let ack = self.recv_type("ack").await;
        let own = self.recv_type("message").await;
        assert_eq!(
            (&own["seq"], &own["id"]),
            (&ack["seq"], &ack["id"]),
            "own copy follows the ack"
        );
        ack
    }

    /// Reads until the server closes; returns the close code.
    pub async fn closed(&mut self) -> u16 {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .expect("timed out waiting for close");
            match msg {
                Some(Ok(WsMessage::Close(Some(frame)))) => return u16::from(frame.code),
                Some(Ok(WsMessage::Close(None))) => return 1005,
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("connection broke without a close frame: {e}"),
                None => panic!("connection ended without a close frame"),
            }
        }
    }
}

/// The `seq`s of a history or poll page's `messages` (a page without them fails).
pub fn page_seqs(page: &Value) -> Vec<i64> {
    page["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("no messages in {page}"))
        .iter()
        .map(|m| m["seq"].as_i64().expect("seq"))
        .collect()
}

/// The `seq`s of `n` message frames read from `ws` (anything else but presence noise fails).
pub async fn recv_seqs(ws: &mut Ws, n: usize) -> Vec<i64> {
    let mut seqs = Vec::with_capacity(n);
    while seqs.len() < n {
        let v = ws.recv().await;
        match v["type"].as_str() {
            Some("message") => seqs.push(v["seq"].as_i64().expect("seq")),
            Some("presence" | "presence_diff" | "ack" | "typing" | "read") => {}
            _ => panic!("unexpected frame {v}"),
        }
    }
    seqs
}
