//! REST for the room log (PROTOCOL §7): edit, delete and react as entries through the room actor
//! (the same group commit, rules and fan-out as WebSocket), read cursors, and the user's rooms.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::answers::*;
use super::rest::{authorize, body_of, client_msg_id_of, json_object, rate_limit};
use super::{ApiError, Shared, authenticate};
use crate::auth::Identity;
use crate::domain::Message;
use crate::ids::{RoomId, Seq};
use crate::protocol::ErrorCode;
use crate::protocol::client::{parse_cursor, validate_reaction_key};
use crate::store::{Change, MyRoom, NewMessage, ReactOp, RoomsCursor};

/// An edit, delete or react entry as committed, and whether it was a repeat.
#[derive(Serialize, ToSchema)]
pub struct Committed<'a> {
    #[serde(flatten)]
    pub entry: &'a Message,
    /// True when the `client_msg_id` had already made this entry (nothing new committed).
    pub duplicate: bool,
}

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
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(Committed {
            entry: &appended.message,
            duplicate: appended.duplicate,
        }))
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

/// What an edit reads: the new text, checked like a send's.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct EditBody {
    /// The text: 1 to `limits.max_body_bytes` bytes of UTF-8 (4096 by default), not only
    /// whitespace, no NUL.
    #[schema(pattern = r"^[^\x00]*[^\s\x00][^\x00]*$")]
    body: String,
    #[schema(min_length = 1, max_length = 128, pattern = r"^[^\x00]*$")]
    client_msg_id: Option<String>,
}

/// Edits a message of yours: an `edit` entry in the room's log (PROTOCOL §7).
#[utoipa::path(
    patch,
    path = "/api/rooms/{room}/messages/{seq}",
    tag = "room log",
    params(
        ("room" = RoomId, Path),
        ("seq" = i64, Path, minimum = 1, description = "the message to edit"),
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 128),
    ),
    request_body = EditBody,
    responses(
        (status = 200, description = "the `edit` entry", body = Committed),
        BadRequest, Unauthorized, Forbidden, NotFound, Gone, TooLarge, RateLimited, Unavailable,
    )
)]
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

/// Deletes a message (yours, or any with a moderator's token): a `delete` entry. Deleting it
/// again answers the `delete` entry that deleted it.
#[utoipa::path(
    delete,
    path = "/api/rooms/{room}/messages/{seq}",
    tag = "room log",
    params(
        ("room" = RoomId, Path),
        ("seq" = i64, Path, minimum = 1, description = "the message to delete"),
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 128),
    ),
    responses(
        (status = 200, description = "the `delete` entry", body = Committed),
        BadRequest, Unauthorized, Forbidden, NotFound, RateLimited, Unavailable,
    )
)]
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

/// Adds (`PUT`) or removes (`DELETE`) your reaction `key` on a message: a `react` entry.
#[utoipa::path(
    method(put, delete),
    path = "/api/rooms/{room}/messages/{seq}/reactions/{key}",
    tag = "room log",
    params(
        ("room" = RoomId, Path),
        ("seq" = i64, Path, minimum = 1, description = "the message reacted to"),
        ("key" = String, Path, pattern = r"^[^\s\x00-\x1f\x7f-\x9f]{1,32}$",
            description = "1-32 characters, no whitespace or control characters"),
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 128),
    ),
    responses(
        (status = 200, description = "the `react` entry", body = Committed),
        BadRequest, Unauthorized, Forbidden, NotFound, Gone, RateLimited, Unavailable,
    )
)]
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

#[derive(Deserialize, ToSchema)]
pub struct ReadBody {
    /// Read up to here (a cursor never moves backwards).
    #[schema(value_type = i64, minimum = 0)]
    seq: Seq,
}

/// A user's read cursor in a room, and what is unread after it.
#[derive(Serialize, ToSchema)]
pub struct ReadCursor {
    pub room: RoomId,
    pub read_seq: Seq,
    /// Messages after `read_seq` up to `last_seq` (edits, deletes and reactions do not count).
    pub unread: i64,
    pub last_seq: Seq,
}

/// Moves your read cursor (every session of yours hears a `read` frame).
#[utoipa::path(
    put,
    path = "/api/rooms/{room}/read",
    tag = "room log",
    params(("room" = RoomId, Path)),
    request_body = ReadBody,
    responses(
        (status = 200, body = ReadCursor),
        BadRequest, Unauthorized, Forbidden, RateLimited, Unavailable,
    )
)]
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
        .json(ReadCursor {
            room,
            read_seq: state.read_seq,
            unread: state.unread,
            last_seq: state.last_seq,
        }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MyRoomsQuery {
    /// The `next` of the page before (empty for the first page). With it the answer is a page
    /// object; without it, v2's bare array.
    #[param(pattern = r"^(|-?[0-9]{1,18}\.[A-Za-z0-9_.:-]{1,128})$")]
    after: Option<String>,
    /// Rooms per page (clamped to 1-1000; default 100).
    limit: Option<i64>,
}

/// `GET /api/me/rooms`'s answer: a page (with `after`) or v2's bare array (without).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum MyRooms {
    Page {
        rooms: Vec<MyRoom>,
        /// The `after` of the next page; absent on the last.
        #[serde(skip_serializing_if = "Option::is_none")]
        next: Option<String>,
    },
    Bare(Vec<MyRoom>),
}

/// Default and largest page of `GET /api/me/rooms`.
const MY_ROOMS_DEFAULT: usize = 100;
const MY_ROOMS_MAX: usize = 1000;

/// `GET /api/me/rooms`: the user's rooms, most recently active first (PROTOCOL §7, §10). With
/// `after` (empty for the first page) the answer is a page, `{"rooms", "next"?}`, where `next`
/// is the `after` of the following page; without it, v2's bare array of the first `limit`.
#[utoipa::path(
    get,
    path = "/api/me/rooms",
    tag = "room log",
    params(MyRoomsQuery),
    responses(
        (status = 200, description = "your rooms, most recently active first", body = MyRooms),
        BadRequest, Unauthorized, Unavailable,
    )
)]
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
    let body = match query.after {
        Some(_) => MyRooms::Page { rooms, next },
        None => MyRooms::Bare(rooms),
    };
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body))
}
