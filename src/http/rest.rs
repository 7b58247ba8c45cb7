//! REST send, history and presence (PROTOCOL.md §4). Sends go through the room actor exactly like
//! WebSocket sends (same group commit, same fan-out), so REST and WS clients see one ordered stream.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use governor::clock::{Clock, DefaultClock};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::Shared;
use super::error::answers::*;
use super::{ApiError, authenticate};
use crate::auth::Identity;
use crate::domain::{Message, PresenceUser};
use crate::ids::{RoomId, Seq};
use crate::protocol::ErrorCode;
use crate::protocol::client::{history_limit, validate_body, validate_client_msg_id};
use crate::room::GetPresence;
use crate::store::{Change, NewMessage};

/// Parses the room and checks the caller's token and rights, in the order a client can act on:
/// 400 (bad room) → 401 (token) → 403 (rights).
pub(super) fn authorize(
    req: &HttpRequest,
    shared: &Shared,
    room: &str,
) -> Result<(RoomId, Identity), ApiError> {
    let room = RoomId::parse(room).ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidRoom,
            "room ids match ^[A-Za-z0-9_.:-]{1,128}$",
        )
    })?;
    let identity = authenticate(req, shared)?;
    if !identity.may_access(&room) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "your token does not allow this room",
        ));
    }
    Ok((room, identity))
}

/// Reads the request body, refusing it with 413 as soon as it passes `limit` bytes.
pub(super) async fn read_body(
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::BytesMut, ApiError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::new(ErrorCode::BadRequest, format!("reading body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::new(
                ErrorCode::BodyTooLarge,
                "request body too large",
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// What `POST /api/rooms/{room}/messages` reads ([`body_of`], [`client_msg_id_of`]; the same
/// checks as a WebSocket `send`).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SendBody {
    /// The text: 1 to `limits.max_body_bytes` bytes of UTF-8 (4096 by default), not only
    /// whitespace, no NUL.
    #[schema(pattern = r"^[^\x00]*[^\s\x00][^\x00]*$")]
    body: String,
    /// Makes the send idempotent forever in its room (else the `Idempotency-Key` header).
    #[schema(min_length = 1, max_length = 128, pattern = r"^[^\x00]*$")]
    client_msg_id: Option<String>,
}

/// Sends a message: it is committed with its seq before this answers, and delivered to every
/// member on every node.
#[utoipa::path(
    post,
    path = "/api/rooms/{room}/messages",
    tag = "messages",
    params(
        ("room" = RoomId, Path),
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 128,
            description = "the `client_msg_id`, when the body has none"),
    ),
    request_body = SendBody,
    responses(
        (status = 201, description = "committed", body = Message),
        (status = 200, description = "a repeat of an earlier `client_msg_id`: the entry it made",
            body = Message),
        BadRequest, Unauthorized, Forbidden, TooLarge, RateLimited, Unavailable,
    )
)]
pub async fn post_message(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    shared: web::Data<Shared>,
) -> Result<HttpResponse, ApiError> {
    let (room, identity) = authorize(&req, &shared, &path)?;
    rate_limit(&shared, &identity)?;
    let max_body = shared.settings.limits.max_body_bytes;
    let obj = json_object(payload, max_body).await?;
    let body = body_of(&obj, max_body)?;
    let client_msg_id = client_msg_id_of(&req, &obj)?;
    let message = NewMessage {
        user: identity.user,
        name: identity.name,
        client_msg_id,
        change: Change::Message { body },
        moderator: identity.moderator,
    };
    let appended = shared.rooms.post(&room, message).await?;
    let status = if appended.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok(HttpResponse::build(status)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(&*appended.message))
}

/// The per-user REST token bucket (`limits.msgs_per_sec`, `limits.burst`): 429 with Retry-After.
pub(super) fn rate_limit(shared: &Shared, identity: &Identity) -> Result<(), ApiError> {
    if let Err(not_until) = shared.rest_limiter.check_key(&identity.user) {
        shared.metrics.rate_limited.inc();
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        let mut e = ApiError::new(ErrorCode::RateLimited, "slow down");
        e.retry_after_s = Some(wait.as_secs_f64().ceil().max(1.0) as u64);
        return Err(e);
    }
    Ok(())
}

/// A JSON object request body of at most what a `max_body` message needs.
pub(super) async fn json_object(
    payload: web::Payload,
    max_body: usize,
) -> Result<serde_json::Map<String, Value>, ApiError> {
    // JSON escapes can make a legal body up to 6x longer on the wire (\uXXXX).
    let raw = read_body(payload, max_body * 6 + 1024).await?;
    let value: Value = serde_json::from_slice(&raw)
        .map_err(|e| ApiError::new(ErrorCode::BadRequest, format!("malformed JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "the body must be a JSON object",
        ));
    };
    Ok(obj)
}

/// The `body` field, checked like a WebSocket `send`'s.
pub(super) fn body_of(
    obj: &serde_json::Map<String, Value>,
    max_body: usize,
) -> Result<String, ApiError> {
    let body = match obj.get("body") {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => {
            return Err(ApiError::new(ErrorCode::BadRequest, "missing field `body`"));
        }
        Some(_) => {
            return Err(ApiError::new(
                ErrorCode::InvalidBody,
                "`body` must be a string",
            ));
        }
    };
    validate_body(&body, max_body).map_err(|(c, m)| ApiError::new(c, m))?;
    Ok(body)
}

/// `client_msg_id` from the body, else the `Idempotency-Key` header (checked whenever it is
/// sent: a malformed one is a client's bug even when the body's wins).
pub(super) fn client_msg_id_of(
    req: &HttpRequest,
    obj: &serde_json::Map<String, Value>,
) -> Result<Option<String>, ApiError> {
    let header = match req.headers().get("idempotency-key") {
        None => None,
        Some(v) => {
            let text = v.to_str().map_err(|_| {
                ApiError::new(
                    ErrorCode::BadRequest,
                    "`Idempotency-Key` must be visible ASCII",
                )
            })?;
            validate_client_msg_id(text).map_err(|(c, m)| ApiError::new(c, m))?;
            Some(text.to_owned())
        }
    };
    let client_msg_id = match obj.get("client_msg_id") {
        Some(Value::String(s)) => Some(s.clone()),
        None | Some(Value::Null) => header,
        Some(_) => {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                "`client_msg_id` must be a string",
            ));
        }
    };
    if let Some(id) = &client_msg_id {
        validate_client_msg_id(id).map_err(|(c, m)| ApiError::new(c, m))?;
    }
    Ok(client_msg_id)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// The oldest page after this seq (a reconnect's cursor); with `before` too, the oldest
    /// page between the two.
    #[param(value_type = Option<i64>, minimum = 0)]
    after: Option<Seq>,
    /// The page before this seq, newest last (absent: the newest page).
    #[param(value_type = Option<i64>, minimum = 0)]
    before: Option<Seq>,
    /// Entries per page (clamped to 1-200; default 50).
    limit: Option<i64>,
}

/// A page of a room's log.
#[derive(Serialize, ToSchema)]
pub struct HistoryPage {
    pub room: RoomId,
    /// Changes when the room's history is reset: drop what you hold (PROTOCOL §6).
    pub epoch: crate::ids::Epoch,
    /// The room's head: the seq of its newest entry.
    pub last_seq: Seq,
    /// In seq order.
    pub messages: Vec<Message>,
}

/// History: a page of the room's entries, folded (edits applied, deletes empty, reactions).
#[utoipa::path(
    get,
    path = "/api/rooms/{room}/messages",
    tag = "messages",
    params(("room" = RoomId, Path), HistoryQuery),
    responses(
        (status = 200, body = HistoryPage),
        BadRequest, Unauthorized, Forbidden, Unavailable,
    )
)]

pub async fn history(
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<HistoryQuery>,
    shared: web::Data<Shared>,
) -> Result<HttpResponse, ApiError> {
    let (room, _) = authorize(&req, &shared, &path)?;
    let q = query.into_inner();
    if q.after.is_some_and(|s| s < Seq::ZERO) || q.before.is_some_and(|s| s < Seq::ZERO) {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "cursors are non-negative integers",
        ));
    }
    let limit = history_limit(q.limit);
    let head = shared.store.head(&room).await?;
    let messages = match (q.after, q.before) {
        // A window: the oldest page after `after` that is still before `before`.
        (Some(after), Some(before)) => {
            let window = usize::try_from(before - after - 1).unwrap_or(0).min(limit);
            match window {
                0 => Vec::new(),
                n => shared.store.after(&room, after, n).await?,
            }
        }
        (Some(after), None) => shared.store.after(&room, after, limit).await?,
        (None, before) => shared.store.before(&room, before, limit).await?,
    };
    Ok(HttpResponse::Ok().json(HistoryPage {
        room,
        epoch: head.epoch,
        last_seq: head.last_seq,
        messages,
    }))
}

/// Who is in a room now, on every node.
#[derive(Serialize, ToSchema)]
pub struct PresenceList {
    pub room: RoomId,
    pub users: Vec<PresenceUser>,
}

/// Presence: the users with a live session in the room, on any node.
#[utoipa::path(
    get,
    path = "/api/rooms/{room}/presence",
    tag = "messages",
    params(("room" = RoomId, Path)),
    responses(
        (status = 200, body = PresenceList),
        BadRequest, Unauthorized, Forbidden, Unavailable,
    )
)]
pub async fn presence(
    req: HttpRequest,
    path: web::Path<String>,
    shared: web::Data<Shared>,
) -> Result<HttpResponse, ApiError> {
    let (room, _) = authorize(&req, &shared, &path)?;
    let users = match (shared.rooms.get(&room), &shared.cluster) {
        (Some(addr), _) => addr.send(GetPresence).await.unwrap_or_default(),
        // Not served here: the other nodes' entries in the shared presence hash.
        (None, Some(cluster)) => cluster.presence_elsewhere(&room).await.map_err(|e| {
            tracing::warn!(error = %e, "presence read failed");
            ApiError::new(
                ErrorCode::Unavailable,
                "cluster presence unavailable, retry",
            )
        })?,
        (None, None) => Vec::new(),
    };
    Ok(HttpResponse::Ok().json(PresenceList { room, users }))
}
