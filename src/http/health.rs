//! `/healthz` (alive), `/readyz` (can serve: store reachable and migrated, bridge connected and
//! subscribed when configured, not draining; answered at once from the last checks) and `/metrics`.

use actix_web::{HttpResponse, web};
use serde_json::json;

use super::Shared;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

pub async fn readyz(shared: web::Data<Shared>) -> HttpResponse {
    if shared.draining() {
        return HttpResponse::ServiceUnavailable()
            .json(json!({"status": "unavailable", "reason": "draining"}));
    }
    if shared.cluster.as_ref().is_some_and(|c| !c.ready()) {
        return HttpResponse::ServiceUnavailable()
            .json(json!({"status": "unavailable", "reason": "cluster bridge disconnected"}));
    }
    // The last background check (crate::health), never a query here: a blackholed database
    // must not hold the load balancer's probe for the whole store timeout.
    if !shared.health.store_ok() {
        return HttpResponse::ServiceUnavailable()
            .json(json!({"status": "unavailable", "reason": "store unreachable"}));
    }
    HttpResponse::Ok().json(json!({"status": "ready", "node": shared.node_id}))
}

pub async fn metrics(shared: web::Data<Shared>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(shared.metrics.render())
}
