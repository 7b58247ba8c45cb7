//! REST send, history and presence (PROTOCOL.md §4). Sends go through the room actor exactly like
//! WebSocket sends (same group commit, same fan-out), so REST and WS clients see one ordered stream.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use governor::clock::{Clock, DefaultClock};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Shared;
use super::{ApiError, authenticate};
use crate::auth::Identity;
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

/// `client_msg_id` from the body, else the `Idempotency-Key` header.
pub(super) fn client_msg_id_of(
    req: &HttpRequest,
    obj: &serde_json::Map<String, Value>,
) -> Result<Option<String>, ApiError> {
    let client_msg_id = match obj.get("client_msg_id") {
        Some(Value::String(s)) => Some(s.clone()),
        None | Some(Value::Null) => req
            .headers()
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
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

#[derive(Deserialize)]
pub struct HistoryQuery {
    after: Option<Seq>,
    before: Option<Seq>,
    limit: Option<i64>,
}

pub async fn history(
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<HistoryQuery>,
    shared: web::Data<Shared>,
) -> Result<HttpResponse, ApiError> {
    let (room, _) = authorize(&req, &shared, &path)?;
    let q = query.into_inner();
    if q.after.is_some() && q.before.is_some() {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "use either `after` or `before`, not both",
        ));
    }
    if q.after.is_some_and(|s| s < Seq::ZERO) || q.before.is_some_and(|s| s < Seq::ZERO) {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "cursors are non-negative integers",
        ));
    }
    let limit = history_limit(q.limit);
    let head = shared.store.head(&room).await?;
    let messages = match q.after {
        Some(after) => shared.store.after(&room, after, limit).await?,
        None => shared.store.before(&room, q.before, limit).await?,
    };
    Ok(HttpResponse::Ok().json(json!({
        "room": room,
        "epoch": head.epoch,
        "last_seq": head.last_seq,
        "messages": messages,
    })))
}

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
    Ok(HttpResponse::Ok().json(json!({"room": room, "users": users})))
}
