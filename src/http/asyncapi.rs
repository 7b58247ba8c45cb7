//! `GET /api/asyncapi.json` (PROTOCOL §13): an AsyncAPI 3.1 document of the WebSocket (`/ws`)
//! and SSE (`/api/rooms/{room}/events`) frames. The payload schemas are generated (`utoipa`) from
//! the types the node serialises — [`ServerFrame`], the log entry [`Message`], the SSE events'
//! [`SseJoined`] and [`SseDraining`] — and, for what clients send, from [`ClientFrameSchema`],
//! which the decoder's tests hold to the decoder. Each frame `type` is one AsyncAPI message.
//!
//! Checked against the frames the server actually sends: the integration suite's WebSocket and
//! SSE readers validate every frame they receive against [`frame_schema`]; the SDK's tests
//! check its frame types against the document.

use std::sync::OnceLock;

use actix_web::HttpResponse;
use serde_json::{Map, Value, json};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::Schema;
use utoipa::{PartialSchema, ToSchema};

use super::stream::{SseDraining, SseJoined};
use crate::domain::{Kind, Message};
use crate::protocol::ServerFrame;
use crate::protocol::schema::ClientFrameSchema;

/// The document, built once.
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(build)
}

/// The AsyncAPI 3 document of the WebSocket and SSE frames.
#[utoipa::path(
    get,
    path = "/api/asyncapi.json",
    tag = "operations",
    security(()),
    responses((status = 200, description = "AsyncAPI 3.1", content_type = "application/json"))
)]
pub async fn asyncapi_json() -> HttpResponse {
    static TEXT: OnceLock<String> = OnceLock::new();
    let text = TEXT.get_or_init(|| serde_json::to_string_pretty(document()).unwrap_or_default());
    HttpResponse::Ok()
        .content_type("application/json")
        .body(text.as_str())
}

/// Which frames a JSON Schema in [`frame_schema`] covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frames {
    /// What a client may send on `/ws`.
    Client,
    /// What the node sends on `/ws`.
    Server,
    /// The `data` of each SSE event, by event name (`joined`, an entry type, `reset`, `draining`).
    Sse,
}

/// A standalone JSON Schema (draft 2020-12, with the document's components inside) that a frame
/// of `frames` must match: for `Sse`, `{"event": name, "data": <parsed data>}`.
pub fn frame_schema(frames: Frames) -> Value {
    let doc = document();
    let names: Vec<&str> = match frames {
        Frames::Client => operation_messages(doc, "clientSends"),
        Frames::Server => operation_messages(doc, "nodeSends"),
        Frames::Sse => operation_messages(doc, "nodeStreams"),
    };
    let any_of: Vec<Value> = names
        .iter()
        .map(|name| {
            let payload = json!({"$ref": format!("#/components/messages/{name}/payload")});
            match frames {
                Frames::Sse => json!({
                    "type": "object",
                    "required": ["event", "data"],
                    "properties": {"event": {"const": sse_event(name)}, "data": payload},
                }),
                _ => payload,
            }
        })
        .collect();
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": doc["components"].clone(),
        "anyOf": any_of,
    })
}

/// The message names an operation of the document lists.
fn operation_messages<'a>(doc: &'a Value, operation: &str) -> Vec<&'a str> {
    doc["operations"][operation]["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["$ref"].as_str())
        .filter_map(|r| r.rsplit('/').next())
        .collect()
}

/// SSE messages are named `sse_<event>` (the WebSocket's `joined` and SSE's differ).
fn sse_event(message: &str) -> &str {
    message.strip_prefix("sse_").unwrap_or(message)
}

fn schema_json(schema: RefOr<Schema>) -> Value {
    serde_json::to_value(schema).unwrap_or_default()
}

/// Every schema `T` refers to, and `T` itself, into `out` by name.
fn collect<T: ToSchema>(out: &mut Map<String, Value>) {
    let mut found = Vec::new();
    T::schemas(&mut found);
    found.push((T::name().into_owned(), T::schema()));
    for (name, schema) in found {
        out.insert(name, schema_json(schema));
    }
}

/// The `type` constant of each variant of a `oneOf` over frames tagged by `type`, with the
/// variant's schema.
fn variants(schema: &Value) -> Vec<(String, Value)> {
    schema["oneOf"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|variant| {
            let tag = &variant["properties"]["type"];
            let name = tag["enum"][0].as_str().or(tag["const"].as_str())?;
            Some((name.to_owned(), variant.clone()))
        })
        .collect()
}

fn build() -> Value {
    let mut schemas = Map::new();
    collect::<ServerFrame>(&mut schemas);
    collect::<Message>(&mut schemas);
    collect::<ClientFrameSchema>(&mut schemas);
    collect::<SseJoined>(&mut schemas);
    collect::<SseDraining>(&mut schemas);

    let mut messages = Map::new();
    let mut message = |name: &str, title: &str, payload: Value| {
        messages.insert(
            name.to_owned(),
            json!({"name": name, "title": title, "contentType": "application/json",
                   "payload": payload}),
        );
        json!({"$ref": format!("#/channels/{}/messages/{name}",
            if name.starts_with("sse_") { "events" } else { "socket" })})
    };
    let client: Vec<Value> = variants(&schema_json(ClientFrameSchema::schema()))
        .into_iter()
        .map(|(name, schema)| {
            message(
                &format!("client_{name}"),
                &format!("client: {name}"),
                schema,
            )
        })
        .collect();
    let mut server: Vec<Value> = variants(&schema_json(ServerFrame::schema()))
        .into_iter()
        .map(|(name, schema)| message(&name, &format!("node: {name}"), schema))
        .collect();
    let entry = json!({"$ref": "#/components/schemas/Message"});
    let entry_kinds = [Kind::Message, Kind::Edit, Kind::Delete, Kind::React];
    // `edit`, `delete` and `react` are both a client frame and a log entry: one name each, the
    // entry's prefixed.
    let entry_name = |k: Kind| match k {
        Kind::Message => "message".to_owned(),
        other => format!("entry_{}", other.as_str()),
    };
    for kind in entry_kinds {
        let name = entry_name(kind);
        let title = format!("node: a `{}` log entry", kind.as_str());
        server.push(message(&name, &title, entry.clone()));
    }
    let mut sse = vec![message(
        "sse_joined",
        "SSE `joined`",
        json!({"$ref": "#/components/schemas/SseJoined"}),
    )];
    for kind in entry_kinds {
        let name = format!("sse_{}", kind.as_str());
        let title = format!("SSE `{}` (the entry; `id:` is its seq)", kind.as_str());
        sse.push(message(&name, &title, entry.clone()));
    }
    let reset = variants(&schema_json(ServerFrame::schema()))
        .into_iter()
        .find(|(n, _)| n == "reset")
        .map(|(_, s)| s)
        .unwrap_or_default();
    sse.push(message("sse_reset", "SSE `reset`", reset));
    sse.push(message(
        "sse_draining",
        "SSE `draining` (then the stream ends)",
        json!({"$ref": "#/components/schemas/SseDraining"}),
    ));

    // Channel messages: the ones the channel carries, as references to components.
    let channel_messages = |refs: &[&Vec<Value>]| -> Map<String, Value> {
        refs.iter()
            .flat_map(|r| r.iter())
            .filter_map(|r| r["$ref"].as_str())
            .filter_map(|r| r.rsplit('/').next())
            .map(|n| {
                (
                    n.to_owned(),
                    json!({"$ref": format!("#/components/messages/{n}")}),
                )
            })
            .collect()
    };
    let socket_messages = channel_messages(&[&client, &server]);
    let events_messages = channel_messages(&[&sse]);

    json!({
        "asyncapi": "3.1.0",
        "info": {
            "title": "Chorus realtime frames",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The WebSocket protocol (PROTOCOL.md §3, §6, §7) and the SSE events (§4) \
                of a Chorus node. Every frame is one JSON object whose `type` names it (SSE: the \
                event name). Log entries (`message`, `edit`, `delete`, `react`) are delivered in \
                seq order, gap-free, after commit; on reconnect `join` with `since` replays the \
                missed ones first.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "node": {
                "host": "localhost:8080",
                "protocol": "ws",
                "description": "any node (behind a load balancer: wss)",
                "security": [{"$ref": "#/components/securitySchemes/bearer"},
                             {"$ref": "#/components/securitySchemes/access_token"}],
            },
        },
        "channels": {
            "socket": {
                "address": "/ws",
                "title": "The WebSocket",
                "description": "The first frame is `hello`. Close codes: PROTOCOL.md §3.",
                "messages": socket_messages,
            },
            "events": {
                "address": "/api/rooms/{room}/events",
                "title": "A room's server-sent events",
                "description": "`id:` is the entry's seq (EventSource resumes with \
                    Last-Event-ID); heartbeats are comments.",
                "parameters": {"room": {"description": "a room id (^[A-Za-z0-9_.:-]{1,128}$)"}},
                "messages": events_messages,
            },
        },
        "operations": {
            "clientSends": {
                "action": "receive",
                "title": "Frames a client sends",
                "channel": {"$ref": "#/channels/socket"},
                "messages": client,
            },
            "nodeSends": {
                "action": "send",
                "title": "Frames the node sends",
                "channel": {"$ref": "#/channels/socket"},
                "messages": server,
            },
            "nodeStreams": {
                "action": "send",
                "title": "Events of a room's SSE stream",
                "channel": {"$ref": "#/channels/events"},
                "messages": sse,
            },
        },
        "components": {
            "schemas": schemas,
            "messages": messages,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "access_token": {"type": "httpApiKey", "name": "access_token", "in": "query"},
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::protocol::decode;

    fn validator(frames: Frames) -> jsonschema::Validator {
        jsonschema::draft202012::new(&frame_schema(frames)).expect("a valid schema")
    }

    #[test]
    fn the_document_is_asyncapi_3_with_a_message_per_frame_type() {
        let doc = document();
        assert_eq!(doc["asyncapi"], "3.1.0");
        let names: BTreeSet<&str> = operation_messages(doc, "nodeSends").into_iter().collect();
        for t in [
            "hello",
            "joined",
            "ack",
            "left",
            "reset",
            "history",
            "presence",
            "presence_diff",
            "typing",
            "pong",
            "error",
            "read",
            "message",
            "entry_edit",
            "entry_delete",
            "entry_react",
        ] {
            assert!(names.contains(t), "{t} missing from {names:?}");
        }
        let client: BTreeSet<&str> = operation_messages(doc, "clientSends").into_iter().collect();
        assert_eq!(client.len(), 10, "{client:?}");
        // Every operation's message is one of its channel's.
        for (op, channel) in [
            ("clientSends", "socket"),
            ("nodeSends", "socket"),
            ("nodeStreams", "events"),
        ] {
            for name in operation_messages(doc, op) {
                assert!(
                    doc["channels"][channel]["messages"][name].is_object(),
                    "{name}"
                );
                assert!(doc["components"]["messages"][name]["payload"].is_object());
            }
        }
    }

    #[test]
    fn frames_the_decoder_takes_match_the_client_schema_and_bad_fields_do_not() {
        let v = validator(Frames::Client);
        let good = [
            r#"{"type":"join","room":"r","since":4,"epoch":"e","ref":"1"}"#,
            r#"{"type":"join","room":"r"}"#,
            r#"{"type":"leave","room":"r"}"#,
            r#"{"type":"send","room":"r","body":"hi","client_msg_id":"c1"}"#,
            r#"{"type":"history","room":"r","before":10,"limit":20}"#,
            r#"{"type":"typing","room":"r"}"#,
            r#"{"type":"ping"}"#,
            r#"{"type":"edit","room":"r","target":3,"body":"new"}"#,
            r#"{"type":"delete","room":"r","target":3}"#,
            r#"{"type":"react","room":"r","target":3,"key":"👍","op":"add"}"#,
            r#"{"type":"read","room":"r","seq":7}"#,
        ];
        for text in good {
            assert!(decode(text, 4096).is_ok(), "decoder refused {text}");
            let json: Value = serde_json::from_str(text).unwrap();
            assert!(v.is_valid(&json), "schema refused {text}");
        }
        let bad = [
            r#"{"type":"join","room":"bad room"}"#,
            r#"{"type":"join","room":"r","since":-1}"#,
            r#"{"type":"send","room":"r","body":"   "}"#,
            r#"{"type":"send","room":"r"}"#,
            r#"{"type":"send","room":"r","body":"x","client_msg_id":""}"#,
            r#"{"type":"react","room":"r","target":3,"key":"a b","op":"add"}"#,
            r#"{"type":"react","room":"r","target":3,"key":"k","op":"toggle"}"#,
            r#"{"type":"read","room":"r"}"#,
            r#"{"type":"nope","room":"r"}"#,
            r#"{"room":"r"}"#,
        ];
        for text in bad {
            assert!(decode(text, 4096).is_err(), "decoder took {text}");
            let json: Value = serde_json::from_str(text).unwrap();
            assert!(!v.is_valid(&json), "schema took {text}");
        }
    }

    #[test]
    fn frames_the_node_encodes_match_the_server_schema() {
        let v = validator(Frames::Server);
        let room = crate::ids::RoomId::parse("r").unwrap();
        let seq = crate::ids::Seq::new(3);
        let frames = [
            ServerFrame::Pong { r#ref: None },
            ServerFrame::Ack {
                r#ref: Some("1"),
                room: &room,
                seq,
                id: "id",
                ts: "2026-01-01T00:00:00.000Z",
                client_msg_id: None,
                duplicate: false,
            },
            ServerFrame::Error {
                r#ref: None,
                code: "bad_request",
                message: "no",
                retry_after_ms: Some(5),
            },
        ];
        for f in frames {
            let json: Value = serde_json::from_str(&f.encode()).unwrap();
            assert!(v.is_valid(&json), "schema refused {json}");
        }
        let entry = Message::new(room, seq, "id".into(), "u".into(), "hi".into());
        let json: Value = serde_json::from_str(&ServerFrame::Entry(&entry).encode()).unwrap();
        assert!(v.is_valid(&json), "schema refused {json}");
        assert!(!v.is_valid(&json!({"type": "ack", "room": "r"})));
        assert!(!v.is_valid(&json!({"type": "unheard_of"})));
    }
}
