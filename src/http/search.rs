//! `GET /api/search` (PROTOCOL §13): messages matching a text in the rooms the caller's token may
//! read now (or one of them, `room`), newest first, paged by `before` = the `next` of the page
//! before. The store answers (Postgres full-text search; the in-memory store's word match).

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::rest::authorize;
use super::{ApiError, Shared, authenticate};
use crate::auth::Identity;
use crate::protocol::ErrorCode;
use crate::store::{RoomScope, SearchCursor, SearchQuery};

/// The longest `q`, in characters: a search is a few words, and a long text of operators would
/// only make Postgres work for nothing.
pub const QUERY_MAX_CHARS: usize = 256;
/// Default and largest page.
const PAGE_DEFAULT: usize = 20;
const PAGE_MAX: usize = 100;

#[derive(Deserialize)]
pub struct SearchParams {
    q: Option<String>,
    room: Option<String>,
    before: Option<String>,
    limit: Option<i64>,
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
    let mut body = json!({ "results": results });
    if results.len() == limit
        && let Some(last) = results.last()
    {
        body["next"] = last.cursor().encode().into();
    }
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body))
}
