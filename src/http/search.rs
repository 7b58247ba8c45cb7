//! `GET /api/search` (PROTOCOL §13): messages matching a text in the rooms the caller's token may
//! read now (or one of them, `room`), newest first, paged by `before` = the `next` of the page
//! before. The store answers (Postgres full-text search; the in-memory store's word match).

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::answers::*;
use super::rest::authorize;
use super::{ApiError, Shared, authenticate};
use crate::auth::Identity;
use crate::protocol::ErrorCode;
use crate::store::{Hit, RoomScope, SearchCursor, SearchQuery};

/// The longest `q`, in characters: a search is a few words, and a long text of operators would
/// only make Postgres work for nothing.
pub const QUERY_MAX_CHARS: usize = 256;
/// Default and largest page.
const PAGE_DEFAULT: usize = 20;
const PAGE_MAX: usize = 100;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// The words to look for, all of them, at most 256 characters (with Postgres: `"a phrase"`,
    /// `-word` and `or` as in web search).
    #[param(required = true, max_length = 256, pattern = r"\S")]
    q: Option<String>,
    /// Only this room (else every room your token may read).
    #[param(value_type = Option<crate::ids::RoomId>)]
    room: Option<String>,
    /// The `next` of the page before.
    #[param(pattern = r"^(|[0-9]{1,16}\.[0-9]{1,18}\.[A-Za-z0-9_.:-]{1,128})$")]
    before: Option<String>,
    /// Results per page (clamped to 1-100; default 20).
    limit: Option<i64>,
}

/// A page of search results, newest first.
#[derive(Serialize, ToSchema)]
pub struct SearchPage {
    pub results: Vec<Hit>,
    /// The `before` of the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// Every room `identity` may read: its token's `rooms` patterns (PROTOCOL §2), all for a service.
fn scope_of(identity: &Identity) -> RoomScope {
    match (&identity.rooms, identity.service) {
        (None, _) | (_, true) => RoomScope::All,
        (Some(patterns), false) => {
            let (mut rooms, mut prefixes) = (Vec::new(), Vec::new());
            for p in patterns {
                match p.strip_suffix('*') {
                    Some(prefix) => prefixes.push(prefix.to_owned()),
                    None => rooms.extend(crate::ids::RoomId::parse(p)),
                }
            }
            RoomScope::Only { rooms, prefixes }
        }
    }
}

/// Full-text search over the messages of the rooms your token may read now (PROTOCOL §13): edits
/// are found by their new text, deleted messages never.
#[utoipa::path(
    get,
    path = "/api/search",
    tag = "search",
    params(SearchParams),
    responses(
        (status = 200, body = SearchPage),
        BadRequest, Unauthorized, Forbidden, Unavailable,
    )
)]
pub async fn search(
    req: HttpRequest,
    params: web::Query<SearchParams>,
    shared: web::Data<Shared>,
) -> Result<HttpResponse, ApiError> {
    let scope = match params.room.as_deref() {
        Some(room) => RoomScope::one(authorize(&req, &shared, room)?.0),
        None => scope_of(&authenticate(&req, &shared)?),
    };
    let text = params.q.as_deref().unwrap_or("").trim();
    if text.is_empty() {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "`q` is required: the words to search for",
        ));
    }
    if text.chars().count() > QUERY_MAX_CHARS {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!("`q` is at most {QUERY_MAX_CHARS} characters"),
        ));
    }
    let before = match params.before.as_deref() {
        None | Some("") => None,
        Some(text) => Some(SearchCursor::parse(text).ok_or_else(|| {
            ApiError::new(
                ErrorCode::BadRequest,
                "`before` must be the `next` of an earlier page",
            )
        })?),
    };
    let limit = match params.limit {
        None => PAGE_DEFAULT,
        Some(n) => (n.max(1) as usize).min(PAGE_MAX),
    };
    let query = SearchQuery {
        text: text.to_owned(),
        scope,
        before,
        limit,
    };
    let results = shared.store.search(&query).await?;
    let next = (results.len() == limit)
        .then(|| results.last().map(|last| last.cursor().encode()))
        .flatten();
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(SearchPage { results, next }))
}
