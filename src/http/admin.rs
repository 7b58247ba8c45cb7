//! The admin API (PROTOCOL §8), for tokens with role `service`: the webhook endpoints with their
//! circuit, backlog and dead letters; replaying a dead letter; the cluster's active rooms; and
//! disconnecting a user from a room on every node (4003).

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, Shared, authenticate};
use crate::auth::Identity;
use crate::bridge::ActiveRoom;
use crate::ids::UserId;
use crate::protocol::ErrorCode;
use crate::room::GetPresence;

/// Most rows one admin listing returns.
const LIST_MAX: usize = 1000;

fn service_only(req: &HttpRequest, shared: &Shared) -> Result<(), ApiError> {
    require_service(&authenticate(req, shared)?)
}

fn require_service(identity: &Identity) -> Result<(), ApiError> {
    if !identity.service {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "the admin API needs a token with role `service`",
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
pub struct Limit {
    limit: Option<usize>,
}

impl Limit {
    fn get(&self) -> Result<usize, ApiError> {
        match self.limit {
            None => Ok(100),
            Some(n) if (1..=LIST_MAX).contains(&n) => Ok(n),
            Some(_) => Err(ApiError::new(
                ErrorCode::BadRequest,
                format!("`limit` must be 1-{LIST_MAX}"),
            )),
        }
    }
}

fn no_outbox() -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        "webhooks need the Postgres store (database.url); this node has none",
    )
}

/// `GET /api/admin/webhooks`
pub async fn webhooks(
    req: HttpRequest,
    shared: web::Data<Shared>,
) -> Result<HttpResponse, ApiError> {
    service_only(&req, &shared)?;
    let endpoints = match &shared.webhooks {
        Some(w) => w.status().await?,
        None => Vec::new(),
    };
    Ok(HttpResponse::Ok().json(json!({ "endpoints": endpoints })))
}

/// `GET /api/admin/webhooks/dead?limit=N`: newest first.
pub async fn dead(
    req: HttpRequest,
    query: web::Query<Limit>,
    shared: web::Data<Shared>,
) -> Result<HttpResponse, ApiError> {
    service_only(&req, &shared)?;
    let limit = query.get()?;
    let dead = match &shared.webhooks {
        Some(w) => w.outbox().dead(limit).await?,
        None => Vec::new(),
    };
    Ok(HttpResponse::Ok().json(json!({ "dead": dead })))
}

/// `POST /api/admin/webhooks/dead/{id}/replay`: the event goes back to its queue, ahead of its
/// room's later events, with fresh attempts.
pub async fn replay(
    req: HttpRequest,
    path: web::Path<i64>,
    shared: web::Data<Shared>,
) -> Result<HttpResponse, ApiError> {
    service_only(&req, &shared)?;
    let webhooks = shared.webhooks.as_ref().ok_or_else(no_outbox)?;
    match webhooks.outbox().replay(path.into_inner()).await? {
        Some(letter) => Ok(HttpResponse::Ok().json(json!({ "replayed": letter }))),
        None => Err(ApiError::new(ErrorCode::NotFound, "no such dead letter")),
    }
}

/// `GET /api/admin/rooms?limit=N`: rooms with someone present, most members first. With a
/// cluster, from the presence hashes every node keeps in Redis; on a single node, its own rooms.
pub async fn rooms(
    req: HttpRequest,
    query: web::Query<Limit>,
    shared: web::Data<Shared>,
) -> Result<HttpResponse, ApiError> {
    service_only(&req, &shared)?;
    let limit = query.get()?;
    let mut rooms = match &shared.cluster {
        Some(cluster) => cluster.active_rooms(LIST_MAX * 10).await.map_err(|e| {
            tracing::warn!(error = %e, "active rooms read failed");
            ApiError::new(
                ErrorCode::Unavailable,
                "cluster presence unavailable, retry",
            )
        })?,
        None => {
            let mut found = Vec::new();
            for (room, addr) in shared.rooms.running() {
                let members = addr.send(GetPresence).await.unwrap_or_default().len();
                if members > 0 {
                    found.push(ActiveRoom {
                        room,
                        members,
                        nodes: 1,
                    });
                }
            }
            found.sort_by(|a, b| b.members.cmp(&a.members).then(a.room.cmp(&b.room)));
            found
        }
    };
    rooms.truncate(limit);
    Ok(HttpResponse::Ok().json(json!({ "rooms": rooms })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Disconnect {
    user: String,
}

/// `POST /api/admin/rooms/{room}/disconnect {"user"}`: closes that user's sessions in the room
/// with 4003 on every node. `closed_here` counts this node's; the other nodes are told over the
/// bus (at most once: a node that misses it while Redis is down keeps the session).
pub async fn disconnect(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Json<Disconnect>,
    shared: web::Data<Shared>,
) -> Result<HttpResponse, ApiError> {
    // As every room route: 400 (bad room) → 401 (token) → 403 (not a service).
    let (room, identity) = super::rest::authorize(&req, &shared, &path)?;
    require_service(&identity)?;
    // The same rule as a token's `sub` (PROTOCOL §2): nobody else can be connected.
    if !crate::ids::valid_user_id(&body.user) {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "`user` must be a user id (1-128 characters, no NUL)",
        ));
    }
    let user = UserId::from(body.user.as_str());
    let closed = shared.session.reads.kick(&room, &user).await;
    Ok(HttpResponse::Ok().json(json!({
        "room": room,
        "user": user,
        "closed_here": closed,
        "cluster": shared.cluster.is_some(),
    })))
}
