//! SSE (`GET /api/rooms/{room}/events`) and long-poll (`GET /api/rooms/{room}/poll`), PROTOCOL.md §4.
//! Both use the room's seq as the cursor, exactly like a WebSocket `since`, so a client can switch
//! transport or node mid-stream. Both are served by a [`Listener`] that joins the room; long-poll
//! uses it only as a wake-up and reads the messages from the store (no busy polling).
//!
//! SSE events: `event: joined` (data: room, epoch, last_seq, recovered — `recovered:false` after a
//! cursor means "reload via history"), `id: <seq>` + `event: <entry type>` (`message`, `edit`,
//! `delete`, `react`; data: the entry's frame),
//! `event: reset` (data: the `reset` frame: the history was reset, reload), and `: heartbeat`
//! comments every `http.sse_heartbeat_ms`.
//!
//! When the node drains (SIGTERM), each stream ends at its own moment inside `shutdown.drain_ms`
//! ([`super::drain`]): an SSE stream with `event: draining` (and a `retry:` for EventSource), a
//! waiting long-poll with its answer so far; both with `Connection: close`, so the client's next
//! request opens a new connection, which the load balancer sends to a node that is ready. New
//! streams on a draining node get 503; a long-poll is answered at once.
//!
//! Both count against the connection limits like a WebSocket (429 past them), and both notice a
//! client that hung up within a second ([`ConnSocket::gone`]), freeing the slot and the listener.

use std::convert::Infallible;
use std::time::Duration;

use actix::Actor;
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use utoipa::{IntoParams, ToSchema};

use super::Shared;
use super::drain::StreamGuard;
use super::error::answers::*;
use super::listener::{Event, Listener};
use super::rest::authorize;
use super::{ApiError, admission};
use crate::auth::Identity;
use crate::edge::conn::ConnSocket;
use crate::ids::{RoomId, Seq};
use crate::protocol::client::parse_cursor;
use crate::protocol::{ErrorCode, PresenceUser};

/// Most messages one long-poll returns.
const POLL_PAGE: usize = 200;
/// The `retry:` a draining SSE stream ends with: how long EventSource waits to reconnect.
const DRAIN_RETRY_MS: u64 = 1000;

fn refuse_while_draining(shared: &Shared) -> Result<(), ApiError> {
    match shared.draining() {
        true => Err(ApiError::new(
            ErrorCode::Unavailable,
            "node is draining; connect to another",
        )),
        false => Ok(()),
    }
}

/// What an SSE stream holds while it is open.
struct SseStream {
    rx: mpsc::Receiver<Event>,
    room: RoomId,
    conn: Option<ConnSocket>,
    /// Resolves when the drain wants this stream to end.
    ending: std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>,
    ended: bool,
    _permit: crate::edge::admission::Permit,
    _open: StreamGuard,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Resume after this seq (as a WebSocket `since`); `Last-Event-ID` wins when both are sent.
    #[param(value_type = Option<i64>, minimum = 0)]
    after: Option<Seq>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PollQuery {
    /// Entries after this seq (absent: only what comes next).
    #[param(value_type = Option<i64>, minimum = 0)]
    after: Option<Seq>,
    /// Seconds to wait for something new (default 30, at most 60; 0 answers at once).
    timeout: Option<u64>,
}

/// One server-sent event as a client's EventSource parses it (its `data` is the JSON of the
/// frame `event` names; see `/api/asyncapi.json`). Heartbeats are comments, not events.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SseEvent {
    /// `joined`, an entry's type (`message`, `edit`, `delete`, `react`), `reset` or `draining`.
    event: String,
    /// The entry's seq (entries only): EventSource's `Last-Event-ID` on reconnect.
    id: Option<String>,
    data: String,
    /// Milliseconds EventSource waits before reconnecting (`draining` only).
    retry: Option<String>,
}

/// The `data` of an SSE `joined` event: where the stream starts (`recovered: false` after a
/// cursor means the missed entries cannot all be replayed: reload through history).
#[derive(Serialize, ToSchema)]
pub struct SseJoined<'a> {
    pub room: &'a RoomId,
    pub epoch: &'a str,
    pub last_seq: Seq,
    pub recovered: bool,
}

/// The `data` of an SSE `draining` event: the node is leaving; reconnect (to another).
#[derive(Serialize, ToSchema)]
pub struct SseDraining {
    /// 1012, as the WebSocket's close code.
    pub code: u16,
    pub reason: &'static str,
}

/// A long-poll's answer: what came after the cursor, and the cursor of the next poll.
#[derive(Serialize, ToSchema)]
pub struct PollPage {
    /// In seq order; empty when the wait ended with nothing new.
    pub messages: Vec<crate::store::Message>,
    /// The `after` of the next poll.
    pub last_seq: Seq,
}

fn listen(
    shared: &Shared,
    room: &RoomId,
    identity: Identity,
    since: Option<Seq>,
    heartbeat: Option<Duration>,
) -> mpsc::Receiver<Event> {
    let queue = shared.settings.session.queue_max;
    let (tx, rx) = mpsc::channel(queue);
    let user = PresenceUser {
        user: identity.user,
        name: identity.name,
    };
    Listener::new(
        shared.rooms.clone(),
        room.clone(),
        user,
        since,
        queue,
        heartbeat,
        tx,
    )
    .start();
    rx
}

fn cursor(value: Option<Seq>) -> Result<Option<Seq>, ApiError> {
    match value {
        Some(s) if s < Seq::ZERO => Err(ApiError::new(
            ErrorCode::BadRequest,
            "cursors are non-negative integers",
        )),
        other => Ok(other),
    }
}

/// Server-sent events: the room's entries live, from the cursor on (`id:` is the seq; the event
/// names and data are described in `/api/asyncapi.json`).
#[utoipa::path(
    get,
    path = "/api/rooms/{room}/events",
    tag = "streams",
    params(
        ("room" = RoomId, Path),
        ("Last-Event-ID" = Option<i64>, Header, minimum = 0,
            description = "EventSource's resume cursor"),
        EventsQuery,
    ),
    responses(
        (status = 200, description = "an event stream that lasts until the client leaves or the node drains",
            body = SseEvent, content_type = "text/event-stream"),
        BadRequest, Unauthorized, Forbidden, RateLimited, Unavailable,
    )
)]
pub async fn events(
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<EventsQuery>,
    shared: web::Data<Shared>,
) -> Result<HttpResponse, ApiError> {
    let (room, identity) = authorize(&req, &shared, &path)?;
    let last_event_id = match req.headers().get("last-event-id") {
        Some(v) => Some(v.to_str().ok().and_then(parse_cursor).ok_or_else(|| {
            ApiError::new(
                ErrorCode::BadRequest,
                "Last-Event-ID must be a non-negative seq",
            )
        })?),
        None => None,
    };
    // Both checked, whichever wins: a malformed cursor is a client's bug either way.
    let after = cursor(query.after)?;
    let since = cursor(last_event_id)?.or(after);
    refuse_while_draining(&shared)?;
    let permit = admission::admit(&shared.admission, &req, &identity.user)?;
    let conn = ConnSocket::of(&req);
    let heartbeat = shared.settings.http.sse_heartbeat;
    let rx = listen(&shared, &room, identity, since, Some(heartbeat));
    let drain = shared.drain.clone();
    // The permit lives as long as the stream: a client that hangs up frees it within a check.
    let state = SseStream {
        rx,
        room,
        conn,
        _open: drain.open(),
        ending: Box::pin(async move { drain.turn().await }),
        ended: false,
        _permit: permit,
    };
    let body = futures_util::stream::unfold(state, |mut st| async move {
        if st.ended {
            return None;
        }
        let event = tokio::select! {
            event = st.rx.recv() => Some(event?),
            () = ConnSocket::gone(st.conn.as_ref()) => return None,
            () = &mut st.ending => None,
        };
        let Some(event) = event else {
            st.ended = true;
            let data = SseDraining {
                code: crate::protocol::CloseCode::Draining.code(),
                reason: "node draining; reconnect",
            };
            let data = serde_json::to_string(&data).unwrap_or_default();
            let text = format!("event: draining\nretry: {DRAIN_RETRY_MS}\ndata: {data}\n\n");
            return Some((Ok::<_, Infallible>(Bytes::from(text)), st));
        };
        let room = &st.room;
        let text = match event {
            Event::Message { seq, kind, frame } => {
                let kind = kind.as_str();
                format!("id: {seq}\nevent: {kind}\ndata: {frame}\n\n")
            }
            Event::Joined {
                recovered,
                last_seq,
                epoch,
            } => {
                let data = SseJoined {
                    room,
                    epoch: &epoch,
                    last_seq,
                    recovered,
                };
                let data = serde_json::to_string(&data).unwrap_or_default();
                format!("event: joined\ndata: {data}\n\n")
            }
            Event::Reset { frame } => format!("event: reset\ndata: {frame}\n\n"),
            Event::Heartbeat => ": heartbeat\n\n".to_owned(),
        };
        Some((Ok(Bytes::from(text)), st))
    });
    Ok(HttpResponse::Ok()
        // A stream ends only when the node drains or the client leaves: the connection is not
        // worth keeping, and the reconnect must be free to reach another node.
        .force_close()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(body))
}

/// Long-poll: answers at once when something is after the cursor, else when something comes or
/// `timeout` passes.
#[utoipa::path(
    get,
    path = "/api/rooms/{room}/poll",
    tag = "streams",
    params(("room" = RoomId, Path), PollQuery),
    responses(
        (status = 200, body = PollPage),
        BadRequest, Unauthorized, Forbidden, RateLimited, Unavailable,
    )
)]
pub async fn poll(
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<PollQuery>,
    shared: web::Data<Shared>,
) -> Result<HttpResponse, ApiError> {
    let (room, identity) = authorize(&req, &shared, &path)?;
    let _permit = admission::admit(&shared.admission, &req, &identity.user)?;
    let _open = shared.drain.open();
    let conn = ConnSocket::of(&req);
    let timeout = Duration::from_secs(query.timeout.unwrap_or(30).min(60));
    let after = match cursor(query.after)? {
        Some(after) => after,
        None => shared.store.head(&room).await?.last_seq,
    };
    let reply = |messages: Vec<crate::store::Message>| {
        let last_seq = messages.last().map(|m| m.seq).unwrap_or(after);
        let mut res = HttpResponse::Ok();
        if shared.draining() {
            res.force_close(); // the next poll should reach another node
        }
        res.json(PollPage { messages, last_seq })
    };
    let messages = shared.store.after(&room, after, POLL_PAGE).await?;
    if !messages.is_empty() || timeout.is_zero() || shared.draining() {
        return Ok(reply(messages));
    }
    // Nothing yet: wait for the room to deliver something after the cursor. The listener joins with
    // `since = after`, so a message committed between the read above and the join still wakes us.
    let mut rx = listen(&shared, &room, identity, Some(after), None);
    let wait = tokio::time::timeout(timeout, async {
        while let Some(event) = rx.recv().await {
            if let Event::Message { seq, .. } = event
                && seq > after
            {
                return true;
            }
        }
        false
    });
    let woken = tokio::select! {
        woken = wait => woken.unwrap_or(false),
        // The node drains: answer what there is (nothing yet), so the client polls elsewhere.
        () = shared.drain.turn() => false,
        // The client left: free its slot and the listener now, not at the timeout.
        () = ConnSocket::gone(conn.as_ref()) => return Ok(HttpResponse::NoContent().finish()),
    };
    drop(rx); // the listener sees the closed channel and leaves
    if !woken {
        return Ok(reply(Vec::new()));
    }
    Ok(reply(shared.store.after(&room, after, POLL_PAGE).await?))
}
