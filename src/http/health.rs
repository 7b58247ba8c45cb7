//! `/healthz` (alive), `/readyz` (can serve: store reachable and migrated, bridge connected and
//! subscribed when configured, not draining; answered at once from the last checks) and `/metrics`.

use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use super::Shared;

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok`, `ready` or `unavailable`.
    pub status: &'static str,
    /// Why it is not ready (`/readyz` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// This node's id (`/readyz` when ready).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// Liveness: the process answers (no dependency is checked).
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    security(()),
    responses((status = 200, body = Health))
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health {
        status: "ok",
        reason: None,
        node: None,
    })
}

fn unready(reason: &'static str) -> HttpResponse {
    HttpResponse::ServiceUnavailable().json(Health {
        status: "unavailable",
        reason: Some(reason),
        node: None,
    })
}

/// Readiness, for the load balancer: the store reachable and migrated, the cluster bridge
/// subscribed (when configured), not draining.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    security(()),
    responses(
        (status = 200, description = "ready", body = Health),
        (status = 503, description = "not ready: `reason` says why", body = Health),
    )
)]
pub async fn readyz(shared: web::Data<Shared>) -> HttpResponse {
    if shared.draining() {
        return unready("draining");
    }
    if shared.cluster.as_ref().is_some_and(|c| !c.ready()) {
        return unready("cluster bridge disconnected");
    }
    // The last background check (crate::health), never a query here: a blackholed database
    // must not hold the load balancer's probe for the whole store timeout.
    if !shared.health.store_ok() {
        return unready("store unreachable");
    }
    HttpResponse::Ok().json(Health {
        status: "ready",
        reason: None,
        node: Some(shared.node_id.clone()),
    })
}

/// Prometheus metrics (PROTOCOL §5).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    security(()),
    responses((status = 200, description = "the text exposition format", body = String,
        content_type = "text/plain"))
)]
pub async fn metrics(shared: web::Data<Shared>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(shared.metrics.render())
}
