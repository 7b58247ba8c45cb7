//! REST for the room log (PROTOCOL §7): edit, delete and react as entries through the room actor
//! (the same group commit, rules and fan-out as WebSocket), read cursors, and the user's rooms.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};

use super::rest::{authorize, body_of, client_msg_id_of, json_object, rate_limit};
use super::{ApiError, Shared, authenticate};
use crate::auth::Identity;
use crate::ids::{RoomId, Seq};
use crate::protocol::ErrorCode;
use crate::protocol::client::{parse_cursor, validate_reaction_key};
use crate::store::{Change, NewMessage, ReactOp, RoomsCursor};

/// Commits one entry and answers 200 with it, plus `duplicate` (true when it already held).
async fn commit(
    shared: &Shared,
    room: &RoomId,
    identity: Identity,
    change: Change,
    client_msg_id: Option<String>,
) -> Result<HttpResponse, ApiError> {
    let entry = NewMessage {
        user: identity.user,
        name: identity.name,
        client_msg_id,
        change,
        moderator: identity.moderator,
    };
    let appended = shared.rooms.post(room, entry).await?;
    let mut json = serde_json::to_value(&*appended.message)
        .map_err(|_| ApiError::new(ErrorCode::Internal, "encoding failed"))?;
    if let Value::Object(obj) = &mut json {
        obj.insert("duplicate".into(), Value::Bool(appended.duplicate));
    }
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json))
}

fn target(text: &str) -> Result<Seq, ApiError> {
    parse_cursor(text)
        .filter(|s| *s > Seq::ZERO)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::BadRequest,
                "the message seq must be a positive integer",
            )
        })
}

/// `PATCH /api/rooms/{room}/messages/{seq}` `{"body","client_msg_id"?}`
pub async fn edit(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    shared: web::Data<Shared>,
) -> Result<HttpResponse, ApiError> {
    let (room, identity) = authorize(&req, &shared, &path.0)?;
    let target = target(&path.1)?;
    rate_limit(&shared, &identity)?;
    let max_body = shared.settings.limits.max_body_bytes;
    let obj = json_object(payload, max_body).await?;
    let body = body_of(&obj, max_body)?;
    let cid = client_msg_id_of(&req, &obj)?;
    commit(&shared, &room, identity, Change::Edit { target, body }, cid).await
}

/// `DELETE /api/rooms/{room}/messages/{seq}` (`Idempotency-Key` optional)
pub async fn delete(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    shared: web::Data<Shared>,
) -> Result<HttpResponse, ApiError> {
    let (room, identity) = authorize(&req, &shared, &path.0)?;
    let target = target(&path.1)?;
    rate_limit(&shared, &identity)?;
    let cid = client_msg_id_of(&req, &Default::default())?;
    commit(&shared, &room, identity, Change::Delete { target }, cid).await
}

/// `PUT` (add) and `DELETE` (remove) `/api/rooms/{room}/messages/{seq}/reactions/{key}`
pub async fn react(
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    shared: web::Data<Shared>,
) -> Result<HttpResponse, ApiError> {
    let (room, identity) = authorize(&req, &shared, &path.0)?;
    let target = target(&path.1)?;
    let key = path.2.clone();
    validate_reaction_key(&key).map_err(|(c, m)| ApiError::new(c, m))?;
    let op = if req.method() == actix_web::http::Method::PUT {
        ReactOp::Add
    } else {
        ReactOp::Remove
    };
    rate_limit(&shared, &identity)?;
    let cid = client_msg_id_of(&req, &Default::default())?;
    commit(
        &shared,
        &room,
        identity,
        Change::React { target, key, op },
        cid,
    )
    .await
}

#[derive(Deserialize)]
pub struct ReadBody {
    seq: Seq,
}

/// `PUT /api/rooms/{room}/read` `{"seq"}` → `{"room","read_seq","unread","last_seq"}`
pub async fn read(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Json<ReadBody>,
    shared: web::Data<Shared>,
) -> Result<HttpResponse, ApiError> {
    let (room, identity) = authorize(&req, &shared, &path)?;
    if body.seq < Seq::ZERO {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "`seq` must be a non-negative integer",
        ));
    }
    rate_limit(&shared, &identity)?;
    let (state, moved) = shared
        .rooms
        .mark_read(&room, &identity.user, body.seq)
        .await?;
    if moved {
        shared
            .session
            .reads
            .moved(&room, &identity.user, state, None);
    }
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({
            "room": room,
            "read_seq": state.read_seq,
            "unread": state.unread,
            "last_seq": state.last_seq,
        })))
}

#[derive(Deserialize)]
pub struct MyRoomsQuery {
    after: Option<String>,
    limit: Option<i64>,
}

/// Default and largest page of `GET /api/me/rooms`.
const MY_ROOMS_DEFAULT: usize = 100;
const MY_ROOMS_MAX: usize = 1000;

/// `GET /api/me/rooms`: the user's rooms, most recently active first (PROTOCOL §7, §10). With
/// `after` (empty for the first page) the answer is a page, `{"rooms", "next"?}`, where `next`
/// is the `after` of the following page; without it, v2's bare array of the first `limit`.
pub async fn my_rooms(
    req: HttpRequest,
    query: web::Query<MyRoomsQuery>,
    shared: web::Data<Shared>,
) -> Result<HttpResponse, ApiError> {
    let identity = authenticate(&req, &shared)?;
    let limit = match query.limit {
        None => MY_ROOMS_DEFAULT,
        Some(n) => (n.max(1) as usize).min(MY_ROOMS_MAX),
    };
    let after = match query.after.as_deref() {
        None | Some("") => None,
        Some(text) => Some(RoomsCursor::parse(text).ok_or_else(|| {
            ApiError::new(
                ErrorCode::BadRequest,
                "`after` must be the `next` of an earlier page",
            )
        })?),
    };
    let page = shared
        .store
        .my_rooms(&identity.user, after.as_ref(), limit)
        .await?;
    // The next page starts after the last room the store returned, seen or not.
    let next = (page.len() == limit)
        .then(|| page.last().map(|r| r.cursor().encode()))
        .flatten();
    // A token limited to some rooms sees only those.
    let rooms: Vec<_> = page
        .into_iter()
        .filter(|r| identity.may_access(&r.room))
        .collect();
    if query.after.is_some() {
        let mut body = serde_json::json!({ "rooms": rooms });
        if let Some(next) = next {
            body["next"] = next.into();
        }
        return Ok(HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(body));
    }
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(rooms))
}
