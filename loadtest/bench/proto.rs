//! The two wire protocols the bench speaks: Chorus (PROTOCOL.md §2) and, for the comparison,
//! Socket.IO 4 (Engine.IO v4 over a plain WebSocket) as served by `loadtest/socketio/server.js`.
//! Everything protocol-specific lives here: the URL, the join handshake, the send frame and how an
//! incoming text frame is read, so the scenarios measure both servers the same way.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum Proto {
    Chorus,
    #[value(name = "socketio")]
    SocketIo,
}

/// What an incoming text frame means to the bench.
pub enum Incoming<'a> {
    /// Chorus, `--mix`: the ack of a message (sent with `ref` "m"), with its seq.
    AckSeq(i64),
    Message {
        body: Option<&'a str>,
        /// Chorus: the room's seq. Socket.IO: none (it has no per-room order to check).
        seq: Option<i64>,
    },
    Ack,
    Error(String),
    Other,
}

#[derive(Deserialize)]
struct ChorusFrame<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(default)]
    body: Option<&'a str>,
    #[serde(default)]
    seq: Option<i64>,
    #[serde(default)]
    code: Option<&'a str>,
    #[serde(default, rename = "ref")]
    r#ref: Option<&'a str>,
}

#[derive(Deserialize)]
struct SioMessage<'a> {
    #[serde(default)]
    body: Option<&'a str>,
}

impl Proto {
    pub fn url(self, base: &str, token: &str) -> String {
        match self {
            Proto::Chorus => format!("{base}/ws?access_token={token}"),
            Proto::SocketIo => format!("{base}/socket.io/?EIO=4&transport=websocket"),
        }
    }

    /// Connects and joins `room` (Chorus: with `since` when given); returns the socket, the room's
    /// last seq and `recovered` from the join reply (Chorus only: 0 and false for Socket.IO).
    pub async fn connect_and_join(
        self,
        url: &str,
        room: &str,
        since: Option<i64>,
    ) -> anyhow::Result<(Ws, i64, bool)> {
        // No Nagle: as a browser's WebSocket, every frame leaves at once.
        let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true).await?;
        let deadline = Duration::from_secs(60);
        match self {
            Proto::Chorus => {
                let since = since
                    .map(|s| format!(r#","since":{s}"#))
                    .unwrap_or_default();
                ws.send(Message::text(format!(
                    r#"{{"type":"join","room":"{room}"{since}}}"#
                )))
                .await?;
                let joined =
                    wait_for(&mut ws, deadline, |t| t.contains(r#""type":"joined""#)).await?;
                let v: serde_json::Value = serde_json::from_str(&joined)?;
                let recovered = v["recovered"].as_bool().unwrap_or(false);
                Ok((ws, v["last_seq"].as_i64().unwrap_or(0), recovered))
            }
            Proto::SocketIo => {
                // Engine.IO open ("0{...}"), then connect to the default namespace ("40").
                wait_for(&mut ws, deadline, |t| t.starts_with('0')).await?;
                ws.send(Message::text("40")).await?;
                wait_for(&mut ws, deadline, |t| t.starts_with("40")).await?;
                // An emit with ack id 0; the ack is "430[...]".
                ws.send(Message::text(format!(r#"420["join","{room}"]"#)))
                    .await?;
                wait_for(&mut ws, deadline, |t| t.starts_with("430")).await?;
                Ok((ws, 0, false))
            }
        }
    }

    /// One operation of the room log mix (Chorus only, `--mix`): `n` picks it so that of every 40
    /// operations 28 are messages, 6 reactions, 4 reads, 1 an edit and 1 a delete (70/15/10/5 %).
    /// `own` are this socket's acked messages (edit the newest, delete the oldest); `seen` is the
    /// room's last seq this socket received.
    pub fn mix_frame(
        room: &str,
        body: &str,
        n: u64,
        own: &mut std::collections::VecDeque<i64>,
        seen: i64,
    ) -> String {
        let slot = (n * 17) % 40;
        let target = seen.max(1);
        match slot {
            0..28 => format!(r#"{{"type":"send","room":"{room}","body":"{body}","ref":"m"}}"#),
            28..34 => {
                let op = if n % 3 == 2 { "remove" } else { "add" };
                let key = ["ok", "fire", "eyes", "heart"][(n % 4) as usize];
                format!(
                    r#"{{"type":"react","room":"{room}","target":{target},"key":"{key}","op":"{op}"}}"#
                )
            }
            34..38 => format!(r#"{{"type":"read","room":"{room}","seq":{target}}}"#),
            38 => match own.back() {
                Some(t) => {
                    format!(r#"{{"type":"edit","room":"{room}","target":{t},"body":"edited {n}"}}"#)
                }
                None => format!(r#"{{"type":"send","room":"{room}","body":"{body}","ref":"m"}}"#),
            },
            _ => match own.pop_front() {
                Some(t) => format!(r#"{{"type":"delete","room":"{room}","target":{t}}}"#),
                None => format!(r#"{{"type":"send","room":"{room}","body":"{body}","ref":"m"}}"#),
            },
        }
    }

    /// The frame that posts `body` to `room`; `n` numbers the sender's posts (Socket.IO ack id).
    pub fn send_frame(self, room: &str, body: &str, n: u64) -> String {
        match self {
            Proto::Chorus => format!(r#"{{"type":"send","room":"{room}","body":"{body}"}}"#),
            Proto::SocketIo => {
                // Ack ids 0 is the join's; posts use 1, 2, ...
                format!(r#"42{}["send",{{"room":"{room}","body":"{body}"}}]"#, n + 1)
            }
        }
    }

    pub fn parse(self, text: &str) -> Incoming<'_> {
        match self {
            Proto::Chorus => match serde_json::from_str::<ChorusFrame>(text) {
                Ok(f) => match f.kind {
                    "message" => Incoming::Message {
                        body: f.body,
                        seq: f.seq,
                    },
                    // The room log's other entries (--mix): no latency, but in the seq order.
                    "edit" | "delete" | "react" => Incoming::Message {
                        body: None,
                        seq: f.seq,
                    },
                    "ack" => match (f.seq, f.r#ref) {
                        (Some(seq), Some("m")) => Incoming::AckSeq(seq),
                        _ => Incoming::Ack,
                    },
                    // The reply to a `read` (the room log mix): counted as an ack.
                    "read" => Incoming::Ack,
                    "error" => Incoming::Error(f.code.unwrap_or("?").to_owned()),
                    _ => Incoming::Other,
                },
                Err(_) => Incoming::Other,
            },
            Proto::SocketIo => {
                if let Some(event) = text.strip_prefix("42") {
                    match serde_json::from_str::<(&str, SioMessage)>(event) {
                        Ok(("message", m)) => Incoming::Message {
                            body: m.body,
                            seq: None,
                        },
                        _ => Incoming::Other,
                    }
                } else if text.starts_with("43") {
                    if text.contains(r#""seq""#) {
                        Incoming::Ack
                    } else {
                        Incoming::Error(text.to_owned())
                    }
                } else {
                    Incoming::Other
                }
            }
        }
    }
}

/// Reads text frames until one satisfies `done`; returns it.
async fn wait_for(
    ws: &mut Ws,
    deadline: Duration,
    done: impl Fn(&str) -> bool,
) -> anyhow::Result<String> {
    tokio::time::timeout(deadline, async {
        while let Some(msg) = ws.next().await {
            if let Message::Text(t) = msg?
                && done(&t)
            {
                return Ok(t.to_string());
            }
        }
        anyhow::bail!("connection closed during the handshake")
    })
    .await?
}
