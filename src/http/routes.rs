//! Every route of a node, the CORS policy, and the access log. The access log (at `info`; health
//! probes and scrapes at `debug`) records method, path (never the query, which may hold
//! `access_token`), status, time and the authenticated user id: no tokens or bodies are ever
//! logged.

use std::time::Instant;

use actix_cors::Cors;
use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpResponse, ResponseError, web};
use futures_util::FutureExt;

use super::error::{AccessUser, ApiError};
use super::state::Shared;
use super::{admin, asyncapi, demo, health, openapi, rest, room_log, search, stream, ws};
use crate::protocol::ErrorCode;

/// Every route of a node. `cors_origins` are the origins allowed to call the API and load
/// `/chorus.js` from another site (empty = any origin; auth is a bearer token, never a cookie).
/// `/ws` is left out of CORS: it has its own Origin check (403 before the upgrade).
pub fn routes(cfg: &mut web::ServiceConfig, cors_origins: &[String]) {
    cfg.app_data(web::QueryConfig::default().error_handler(|e, _| {
        ApiError::new(ErrorCode::BadRequest, format!("bad query: {e}")).into()
    }))
    .app_data(web::PathConfig::default().error_handler(|e, _| {
        ApiError::new(ErrorCode::BadRequest, format!("bad path: {e}")).into()
    }))
    .app_data(
        web::JsonConfig::default()
            .limit(4096)
            .error_handler(|e, _| {
                ApiError::new(ErrorCode::BadRequest, format!("bad JSON body: {e}")).into()
            }),
    )
    .service(
        web::scope("")
            .wrap(actix_web::middleware::from_fn(head_limit))
            .wrap_fn(|req, srv| {
                let (start, method, path) =
                    (Instant::now(), req.method().clone(), req.path().to_owned());
                let responses = req
                    .app_data::<web::Data<Shared>>()
                    .map(|s| s.metrics.http_responses.clone());
                srv.call(req).map(move |res| {
                    if let Ok(r) = &res {
                        let status = r.status().as_u16();
                        if let Some(c) = &responses {
                            c.with_label_values(&[status_class(status)]).inc();
                        }
                        let ms = start.elapsed().as_millis() as u64;
                        let user = r
                            .request()
                            .extensions()
                            .get::<AccessUser>()
                            .map(|u| u.0.clone());
                        let user = user.as_deref().unwrap_or("-");
                        // Probes and scrapes every few seconds would drown the log at info.
                        if matches!(path.as_str(), "/healthz" | "/readyz" | "/metrics")
                            && status < 400
                        {
                            tracing::debug!(%method, %path, status, ms, user, "http request");
                        } else {
                            tracing::info!(%method, %path, status, ms, user, "http request");
                        }
                    }
                    res
                })
            })
            .route("/", web::get().to(demo::index))
            .route("/favicon.ico", web::get().to(demo::favicon))
            .route("/ws", web::get().to(ws::upgrade))
            .route("/echo", web::get().to(ws::echo))
            .route("/healthz", web::get().to(health::healthz))
            .route("/readyz", web::get().to(health::readyz))
            .route("/metrics", web::get().to(health::metrics))
            .service(
                web::resource("/chorus.js")
                    .wrap(cors(cors_origins))
                    .route(web::get().to(demo::client_js)),
            )
            .service(
                web::scope("/api")
                    .wrap(cors(cors_origins))
                    .route("/openapi.json", web::get().to(openapi::openapi_json))
                    .route("/asyncapi.json", web::get().to(asyncapi::asyncapi_json))
                    .route("/demo/login", web::post().to(demo::demo_login))
                    .route("/rooms/{room}/messages", web::post().to(rest::post_message))
                    .route("/rooms/{room}/messages", web::get().to(rest::history))
                    .route("/rooms/{room}/presence", web::get().to(rest::presence))
                    .route(
                        "/rooms/{room}/messages/{seq}",
                        web::patch().to(room_log::edit),
                    )
                    .route(
                        "/rooms/{room}/messages/{seq}",
                        web::delete().to(room_log::delete),
                    )
                    .route(
                        "/rooms/{room}/messages/{seq}/reactions/{key}",
                        web::put().to(room_log::react),
                    )
                    .route(
                        "/rooms/{room}/messages/{seq}/reactions/{key}",
                        web::delete().to(room_log::react),
                    )
                    .route("/rooms/{room}/read", web::put().to(room_log::read))
                    .route("/me/rooms", web::get().to(room_log::my_rooms))
                    .route("/search", web::get().to(search::search))
                    .route("/admin/webhooks", web::get().to(admin::webhooks))
                    .route("/admin/webhooks/dead", web::get().to(admin::dead))
                    .route(
                        "/admin/webhooks/dead/{id}/replay",
                        web::post().to(admin::replay),
                    )
                    .route("/admin/rooms", web::get().to(admin::rooms))
                    .route(
                        "/admin/rooms/{room}/disconnect",
                        web::post().to(admin::disconnect),
                    )
                    .route("/rooms/{room}/events", web::get().to(stream::events))
                    .route("/rooms/{room}/poll", web::get().to(stream::poll))
                    .default_service(web::to(not_found)),
            )
            .default_service(web::to(not_found)),
    );
}

/// `2xx`, `4xx`, …: the label of `chorus_http_responses_total`.
fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// No route took the request: 405 with `Allow` when the path is an operation of the API
/// document under another method (the document lists every route: its tests check), else 404.
async fn not_found(req: actix_web::HttpRequest) -> HttpResponse {
    match openapi::methods_of(req.path()) {
        Some(methods) => {
            let allow = methods.join(", ");
            HttpResponse::build(actix_web::http::StatusCode::METHOD_NOT_ALLOWED)
                .insert_header((header::ALLOW, allow.clone()))
                .json(serde_json::json!({"error": {
                    "code": ErrorCode::BadRequest.as_str(),
                    "message": format!("{} is not served here; use {allow}", req.method()),
                }}))
        }
        None => ApiError::new(ErrorCode::NotFound, "no such route").error_response(),
    }
}

fn cors(origins: &[String]) -> Cors {
    let base = Cors::default()
        .allowed_methods(["GET", "POST", "PUT", "PATCH", "DELETE"])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::HeaderName::from_static("idempotency-key"),
            header::HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([header::RETRY_AFTER])
        .max_age(3600);
    if origins.is_empty() {
        base.allow_any_origin().send_wildcard()
    } else {
        origins.iter().fold(base, |c, o| c.allowed_origin(o))
    }
}

/// The size of a request's head as it came on the wire: the request line and every header line.
fn head_bytes(req: &ServiceRequest) -> usize {
    // `GET /path?query HTTP/1.1\r\n`, then `name: value\r\n` per header, then `\r\n`.
    let target = req.uri().path_and_query().map_or(1, |pq| pq.as_str().len());
    let line = req.method().as_str().len() + 1 + target + 11;
    let headers: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + 2 + value.len() + 2)
        .sum();
    line + headers + 2
}

/// `limits.max_header_bytes`: a larger request head gets 431, as the load balancer in front
/// would answer it (the HTTP parser itself buffers up to 128 KiB).
async fn head_limit(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let max = req
        .app_data::<web::Data<Shared>>()
        .map(|s| s.settings.limits.max_header_bytes);
    let size = head_bytes(&req);
    match max {
        Some(max) if size > max => {
            let message = format!(
                "the request line and headers are {size} bytes; at most {max} are accepted \
                 (limits.max_header_bytes)"
            );
            let res = HttpResponse::build(actix_web::http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
                .json(serde_json::json!({"error": {"code": ErrorCode::BadRequest.as_str(), "message": message}}));
            Ok(req.into_response(res).map_into_right_body())
        }
        _ => next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body),
    }
}
