//! Decoding one client text frame into a [`Request`] (PROTOCOL.md §3, "Client → server").
//!
//! Every failure becomes a [`FrameError`] carrying the frame's `ref` when it could be read, so the
//! session replies with an `error` frame and keeps the connection open. Unknown fields are ignored
//! (forward compatibility); `null` counts as absent. The same field rules serve the REST API.

use serde_json::{Map, Value};

use super::codes::ErrorCode;
use crate::domain::{Change, ReactOp};
use crate::ids::{Epoch, RoomId, Seq, storable};

pub const MAX_REF_CHARS: usize = 64;
pub const MAX_CLIENT_MSG_ID_CHARS: usize = 128;
pub const DEFAULT_HISTORY_LIMIT: usize = 50;
pub const MAX_HISTORY_LIMIT: usize = 200;
pub const MAX_REACTION_KEY_CHARS: usize = 32;

#[derive(Debug, Clone, PartialEq)]
pub enum ClientFrame {
    Join {
        room: RoomId,
        since: Option<Seq>,
        epoch: Option<Epoch>,
    },
    Leave {
        room: RoomId,
    },
    Send {
        room: RoomId,
        body: String,
        client_msg_id: Option<String>,
    },
    History {
        room: RoomId,
        before: Option<Seq>,
        limit: usize,
    },
    Typing {
        room: RoomId,
    },
    Ping,
    /// A log entry other than a message (PROTOCOL §7): edit, delete, react.
    Entry {
        room: RoomId,
        change: Change,
        client_msg_id: Option<String>,
    },
    /// Move this user's read cursor.
    Read {
        room: RoomId,
        seq: Seq,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub r#ref: Option<String>,
    pub frame: ClientFrame,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FrameError {
    pub r#ref: Option<String>,
    pub code: ErrorCode,
    pub message: String,
}

fn err(code: ErrorCode, message: impl Into<String>) -> FrameError {
    FrameError {
        r#ref: None,
        code,
        message: message.into(),
    }
}

/// Decodes one text frame. `max_body_bytes` is `limits.max_body_bytes`.
pub fn decode(text: &str, max_body_bytes: usize) -> Result<Request, FrameError> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| err(ErrorCode::BadRequest, format!("malformed JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(err(ErrorCode::BadRequest, "a frame must be a JSON object"));
    };
    let r#ref = match obj.get("ref") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.chars().count() <= MAX_REF_CHARS => Some(s.clone()),
        Some(_) => {
            return Err(err(
                ErrorCode::BadRequest,
                "`ref` must be a string of at most 64 characters",
            ));
        }
    };
    decode_frame(&obj, max_body_bytes)
        .map(|frame| Request {
            r#ref: r#ref.clone(),
            frame,
        })
        .map_err(|mut e| {
            e.r#ref = r#ref;
            e
        })
}

fn decode_frame(obj: &Map<String, Value>, max_body: usize) -> Result<ClientFrame, FrameError> {
    let kind = match obj.get("type") {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(err(ErrorCode::BadRequest, "`type` must be a string")),
        None => return Err(err(ErrorCode::BadRequest, "missing field `type`")),
    };
    Ok(match kind {
        "join" => ClientFrame::Join {
            room: room(obj)?,
            since: opt_seq(obj, "since")?,
            epoch: opt_string(obj, "epoch")?.map(Epoch::from),
        },
        "leave" => ClientFrame::Leave { room: room(obj)? },
        "send" => ClientFrame::Send {
            room: room(obj)?,
            body: body(obj, max_body)?,
            client_msg_id: client_msg_id(obj)?,
        },
        "history" => ClientFrame::History {
            room: room(obj)?,
            before: opt_seq(obj, "before")?,
            limit: history_limit(opt_count(obj, "limit")?),
        },
        "typing" => ClientFrame::Typing { room: room(obj)? },
        "edit" | "delete" | "react" => {
            let room = room(obj)?;
            let target = required_seq(obj, "target")?;
            let change = match kind {
                "edit" => {
                    let body = body(obj, max_body)?;
                    Change::Edit { target, body }
                }
                "delete" => Change::Delete { target },
                _ => {
                    let key = match obj.get("key") {
                        Some(Value::String(k)) => k.clone(),
                        None | Some(Value::Null) => {
                            return Err(err(ErrorCode::BadRequest, "missing field `key`"));
                        }
                        Some(_) => {
                            return Err(err(ErrorCode::BadRequest, "`key` must be a string"));
                        }
                    };
                    validate_reaction_key(&key).map_err(|(c, m)| err(c, m))?;
                    let op = match obj.get("op") {
                        Some(Value::String(op)) => ReactOp::parse(op),
                        _ => None,
                    }
                    .ok_or_else(|| {
                        err(ErrorCode::BadRequest, "`op` must be \"add\" or \"remove\"")
                    })?;
                    Change::React { target, key, op }
                }
            };
            ClientFrame::Entry {
                room,
                change,
                client_msg_id: client_msg_id(obj)?,
            }
        }
        "read" => ClientFrame::Read {
            room: room(obj)?,
            seq: required_seq(obj, "seq")?,
        },
        "ping" => ClientFrame::Ping,
        other => {
            let shown: String = other.chars().take(32).collect();
            return Err(err(
                ErrorCode::BadRequest,
                format!("unknown frame type `{shown}`"),
            ));
        }
    })
}

fn body(obj: &Map<String, Value>, max_body: usize) -> Result<String, FrameError> {
    let body = match obj.get("body") {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => {
            return Err(err(ErrorCode::BadRequest, "missing field `body`"));
        }
        Some(_) => return Err(err(ErrorCode::InvalidBody, "`body` must be a string")),
    };
    validate_body(&body, max_body).map_err(|(c, m)| err(c, m))?;
    Ok(body)
}

fn client_msg_id(obj: &Map<String, Value>) -> Result<Option<String>, FrameError> {
    let client_msg_id = opt_string(obj, "client_msg_id")?;
    if let Some(id) = &client_msg_id {
        validate_client_msg_id(id).map_err(|(c, m)| err(c, m))?;
    }
    Ok(client_msg_id)
}

fn required_seq(obj: &Map<String, Value>, key: &str) -> Result<Seq, FrameError> {
    opt_seq(obj, key)?.ok_or_else(|| err(ErrorCode::BadRequest, format!("missing field `{key}`")))
}

/// A reaction key: an emoji or a short name, 1–32 characters, no NUL, no whitespace or controls.
pub fn validate_reaction_key(key: &str) -> Result<(), (ErrorCode, String)> {
    let n = key.chars().count();
    if n == 0
        || n > MAX_REACTION_KEY_CHARS
        || key.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err((
            ErrorCode::BadRequest,
            "`key` must be 1-32 characters without spaces or control characters".into(),
        ));
    }
    Ok(())
}

/// Body rules shared by WebSocket and REST: a non-empty string of at most `max` bytes that the
/// store can take (no U+0000: Postgres refuses it, and it would fail the whole group commit).
pub fn validate_body(body: &str, max: usize) -> Result<(), (ErrorCode, String)> {
    if body.trim().is_empty() {
        // A message of spaces or newlines shows as nothing: refused like an empty one.
        return Err((
            ErrorCode::InvalidBody,
            "`body` must not be empty or only whitespace".into(),
        ));
    }
    if !storable(body) {
        return Err((
            ErrorCode::InvalidBody,
            "`body` must not contain the NUL character (U+0000)".into(),
        ));
    }
    if body.len() > max {
        return Err((
            ErrorCode::BodyTooLarge,
            format!("`body` is larger than {max} bytes"),
        ));
    }
    Ok(())
}

pub fn validate_client_msg_id(id: &str) -> Result<(), (ErrorCode, String)> {
    let n = id.chars().count();
    if n == 0 || n > MAX_CLIENT_MSG_ID_CHARS {
        return Err((
            ErrorCode::BadRequest,
            "`client_msg_id` must be 1-128 characters".into(),
        ));
    }
    if !storable(id) {
        return Err((
            ErrorCode::InvalidBody,
            "`client_msg_id` must not contain the NUL character (U+0000)".into(),
        ));
    }
    Ok(())
}

/// Clamps a requested page size to 1..=200 (default 50).
/// A cursor written as text (SSE `Last-Event-ID`): a non-negative seq, surrounding spaces
/// allowed. `None` for anything else.
pub fn parse_cursor(text: &str) -> Option<Seq> {
    text.trim()
        .parse::<i64>()
        .ok()
        .filter(|s| *s >= 0)
        .map(Seq::new)
}

pub fn history_limit(requested: Option<i64>) -> usize {
    match requested {
        None => DEFAULT_HISTORY_LIMIT,
        Some(n) => (n.max(1) as usize).min(MAX_HISTORY_LIMIT),
    }
}

fn room(obj: &Map<String, Value>) -> Result<RoomId, FrameError> {
    match obj.get("room") {
        Some(Value::String(s)) => RoomId::parse(s).ok_or_else(|| {
            err(
                ErrorCode::InvalidRoom,
                "room ids match ^[A-Za-z0-9_.:-]{1,128}$",
            )
        }),
        None | Some(Value::Null) => Err(err(ErrorCode::BadRequest, "missing field `room`")),
        Some(_) => Err(err(ErrorCode::InvalidRoom, "`room` must be a string")),
    }
}

fn opt_seq(obj: &Map<String, Value>, key: &str) -> Result<Option<Seq>, FrameError> {
    Ok(opt_count(obj, key)?.map(Seq::new))
}

/// A non-negative integer field (a seq, or a count).
fn opt_count(obj: &Map<String, Value>, key: &str) -> Result<Option<i64>, FrameError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(v) if v >= 0 => Ok(Some(v)),
            _ => Err(err(
                ErrorCode::BadRequest,
                format!("`{key}` must be a non-negative integer"),
            )),
        },
        Some(_) => Err(err(
            ErrorCode::BadRequest,
            format!("`{key}` must be a non-negative integer"),
        )),
    }
}

fn opt_string(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, FrameError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() <= 256 => Ok(Some(s.clone())),
        Some(_) => Err(err(
            ErrorCode::BadRequest,
            format!("`{key}` must be a string of at most 256 bytes"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(text: &str) -> ErrorCode {
        decode(text, 16).unwrap_err().code
    }

    #[test]
    fn nothing_the_store_cannot_take_and_no_blank_body_passes_the_send_validation() {
        for frame in [
            r#"{"type":"send","room":"a","body":"\u0000"}"#,
            r#"{"type":"send","room":"a","body":"before\u0000after"}"#,
            r#"{"type":"send","room":"a","body":"ok","client_msg_id":"c\u0000"}"#,
            r#"{"type":"send","room":"a","body":""}"#,
            r#"{"type":"send","room":"a","body":" \n\t "}"#,
        ] {
            assert_eq!(code(frame), ErrorCode::InvalidBody, "{frame}");
        }
        // Everything else Unicode has is fine: other controls, astral planes, RTL marks.
        let ok = r#"{"type":"send","room":"a","body":"\u0001\u001f\ud83d\ude00\u200f","client_msg_id":"\u0007"}"#;
        assert!(decode(ok, 4096).is_ok());
    }

    #[test]
    fn decodes_every_client_frame() {
        let r = decode(
            r#"{"type":"join","room":"a","since":3,"epoch":"e","ref":"1"}"#,
            16,
        )
        .unwrap();
        assert_eq!(r.r#ref.as_deref(), Some("1"));
        assert!(matches!(r.frame, ClientFrame::Join { since: Some(s), .. } if s == Seq::new(3)));
        let r = decode(
            r#"{"type":"send","room":"a","body":"hi","client_msg_id":"c"}"#,
            16,
        )
        .unwrap();
        assert!(matches!(r.frame, ClientFrame::Send { ref body, .. } if body == "hi"));
        let r = decode(r#"{"type":"history","room":"a","limit":1000}"#, 16).unwrap();
        assert!(matches!(
            r.frame,
            ClientFrame::History {
                limit: 200,
                before: None,
                ..
            }
        ));
        assert_eq!(
            decode(r#"{"type":"ping"}"#, 16).unwrap().frame,
            ClientFrame::Ping
        );
        assert!(decode(r#"{"type":"leave","room":"a"}"#, 16).is_ok());
        assert!(decode(r#"{"type":"typing","room":"a","extra":[1]}"#, 16).is_ok());
    }

    #[test]
    fn decodes_the_room_log_frames() {
        let r = decode(
            r#"{"type":"edit","room":"a","target":3,"body":"x","client_msg_id":"c"}"#,
            16,
        )
        .unwrap();
        assert_eq!(
            r.frame,
            ClientFrame::Entry {
                room: RoomId::parse("a").unwrap(),
                change: Change::Edit {
                    target: Seq::new(3),
                    body: "x".into()
                },
                client_msg_id: Some("c".into()),
            }
        );
        let r = decode(
            r#"{"type":"react","room":"a","target":1,"key":"👍","op":"remove"}"#,
            16,
        )
        .unwrap();
        assert!(matches!(
            r.frame,
            ClientFrame::Entry {
                change: Change::React {
                    op: ReactOp::Remove,
                    ..
                },
                ..
            }
        ));
        assert!(matches!(
            decode(r#"{"type":"read","room":"a","seq":9}"#, 16).unwrap().frame,
            ClientFrame::Read { seq, .. } if seq == Seq::new(9)
        ));
        for bad in [
            r#"{"type":"edit","room":"a","body":"x"}"#,
            r#"{"type":"delete","room":"a","target":-2}"#,
            r#"{"type":"react","room":"a","target":1,"key":"","op":"add"}"#,
            r#"{"type":"react","room":"a","target":1,"key":"a b","op":"add"}"#,
            r#"{"type":"react","room":"a","target":1,"key":"k","op":"toggle"}"#,
            r#"{"type":"react","room":"a","target":1,"key":"0123456789012345678901234567890123","op":"add"}"#,
            r#"{"type":"read","room":"a"}"#,
        ] {
            assert_eq!(code(bad), ErrorCode::BadRequest, "{bad}");
        }
        assert_eq!(
            code(r#"{"type":"edit","room":"a","target":1,"body":""}"#),
            ErrorCode::InvalidBody
        );
    }

    #[test]
    fn bad_frames_get_their_codes_and_keep_the_ref() {
        assert_eq!(code("{not json"), ErrorCode::BadRequest);
        assert_eq!(code("[1,2]"), ErrorCode::BadRequest);
        assert_eq!(code(r#"{"type":"dance"}"#), ErrorCode::BadRequest);
        assert_eq!(code(r#"{"type":"join"}"#), ErrorCode::BadRequest);
        assert_eq!(
            code(r#"{"type":"join","room":"a b"}"#),
            ErrorCode::InvalidRoom
        );
        assert_eq!(
            code(r#"{"type":"send","room":"a","body":5}"#),
            ErrorCode::InvalidBody
        );
        assert_eq!(
            code(r#"{"type":"send","room":"a","body":""}"#),
            ErrorCode::InvalidBody
        );
        assert_eq!(
            code(r#"{"type":"send","room":"a","body":"0123456789abcdefX"}"#),
            ErrorCode::BodyTooLarge
        );
        assert_eq!(
            code(r#"{"type":"join","room":"a","since":-1}"#),
            ErrorCode::BadRequest
        );
        assert_eq!(
            code(r#"{"type":"join","room":"a","since":1e40}"#),
            ErrorCode::BadRequest
        );
        let e = decode(r#"{"type":"join","ref":"r7"}"#, 16).unwrap_err();
        assert_eq!(e.r#ref.as_deref(), Some("r7"));
        let long_ref = format!(r#"{{"type":"ping","ref":"{}"}}"#, "x".repeat(65));
        assert_eq!(code(&long_ref), ErrorCode::BadRequest);
    }

    #[test]
    fn cursors_are_non_negative_seqs() {
        assert_eq!(parse_cursor(" 42 "), Some(Seq::new(42)));
        assert_eq!(parse_cursor("0"), Some(Seq::ZERO));
        for bad in ["-1", "", "4.2", "1e3", "99999999999999999999", "x"] {
            assert_eq!(parse_cursor(bad), None, "{bad}");
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(code(&deep), ErrorCode::BadRequest);
    }
}
