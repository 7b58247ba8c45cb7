//! The admin API (PROTOCOL §8), for tokens with role `service`: the webhook endpoints with their
//! circuit, backlog and dead letters; replaying a dead letter; the cluster's active rooms; and
//! disconnecting a user from a room on every node (4003).

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::answers::*;
use super::{ApiError, Shared, authenticate};
use crate::auth::Identity;
use crate::bridge::ActiveRoom;
use crate::ids::{RoomId, UserId};
use crate::protocol::ErrorCode;
use crate::room::GetPresence;
use crate::store::postgres::outbox::DeadLetter;
use crate::webhook::EndpointStatus;

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

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Limit {
    /// Rows to list (default 100).
    #[param(minimum = 1, maximum = 1000)]
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

#[derive(Serialize, ToSchema)]
pub struct WebhookList {
    pub endpoints: Vec<EndpointStatus>,
}

/// The webhook endpoints: configuration, this node's circuit, backlog and dead letters.
#[utoipa::path(
    get,
    path = "/api/admin/webhooks",
    tag = "admin",
    responses((status = 200, body = WebhookList), Unauthorized, Forbidden, Unavailable)
)]
pub async fn webhooks(
    req: HttpRequest,
    shared: web::Data<Shared>,
) -> Result<HttpResponse, ApiError> {
    service_only(&req, &shared)?;
    let endpoints = match &shared.webhooks {
        Some(w) => w.status().await?,
        None => Vec::new(),
    };
    Ok(HttpResponse::Ok().json(WebhookList { endpoints }))
}

#[derive(Serialize, ToSchema)]
pub struct DeadList {
    /// Newest first.
    pub dead: Vec<DeadLetter>,
}

/// The dead letters: events whose every attempt failed, newest first.
#[utoipa::path(
    get,
    path = "/api/admin/webhooks/dead",
    tag = "admin",
    params(Limit),
    responses(
        (status = 200, body = DeadList),
        BadRequest, Unauthorized, Forbidden, Unavailable,
    )
)]
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
    Ok(HttpResponse::Ok().json(DeadList { dead }))
}

/// `POST /api/admin/webhooks/dead/{id}/replay`: the event goes back to its queue, ahead of its
/// room's later events, with fresh attempts.
#[utoipa::path(
    post,
    path = "/api/admin/webhooks/dead/{id}/replay",
    tag = "admin",
    params(("id" = i64, Path, description = "a dead letter's `id`")),
    responses(
        (status = 200, body = Replayed),
        BadRequest, Unauthorized, Forbidden, NotFound, Unavailable,
    )
)]
pub async fn replay(
    req: HttpRequest,
    path: web::Path<i64>,
    shared: web::Data<Shared>,
) -> Result<HttpResponse, ApiError> {
    service_only(&req, &shared)?;
    let webhooks = shared.webhooks.as_ref().ok_or_else(no_outbox)?;
    match webhooks.outbox().replay(path.into_inner()).await? {
        Some(replayed) => Ok(HttpResponse::Ok().json(Replayed { replayed })),
        None => Err(ApiError::new(ErrorCode::NotFound, "no such dead letter")),
    }
}

#[derive(Serialize, ToSchema)]
pub struct Replayed {
    /// The letter as it was; its event is queued again.
    pub replayed: DeadLetter,
}

#[derive(Serialize, ToSchema)]
pub struct ActiveRooms {
    /// Most members first.
    pub rooms: Vec<ActiveRoom>,
}

/// Rooms with someone present, most members first. With a cluster, from the presence hashes
/// every node keeps in Redis; on a single node, its own rooms.
#[utoipa::path(
    get,
    path = "/api/admin/rooms",
    tag = "admin",
    params(Limit),
    responses(
        (status = 200, body = ActiveRooms),
        BadRequest, Unauthorized, Forbidden, Unavailable,
    )
)]
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
    Ok(HttpResponse::Ok().json(ActiveRooms { rooms }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Disconnect {
    /// The user to disconnect (a token's `sub`).
    #[schema(min_length = 1, max_length = 128, pattern = r"^[^\x00]*$")]
    user: String,
}

#[derive(Serialize, ToSchema)]
pub struct Disconnected {
    pub room: RoomId,
    pub user: UserId,
    /// Sessions closed on this node.
    pub closed_here: usize,
    /// Whether the other nodes were told (a cluster is configured).
    pub cluster: bool,
}

/// `POST /api/admin/rooms/{room}/disconnect {"user"}`: closes that user's sessions in the room
/// with 4003 on every node. `closed_here` counts this node's; the other nodes are told over the
/// bus (at most once: a node that misses it while Redis is down keeps the session).
#[utoipa::path(
    post,
    path = "/api/admin/rooms/{room}/disconnect",
    tag = "admin",
    params(("room" = RoomId, Path)),
    request_body = Disconnect,
    responses(
        (status = 200, body = Disconnected),
        BadRequest, Unauthorized, Forbidden,
    )
)]
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
    Ok(HttpResponse::Ok().json(Disconnected {
        room,
        user,
        closed_here: closed,
        cluster: shared.cluster.is_some(),
    }))
}
