//! The demo page (`/`) and the browser client (`/chorus.js`), embedded in the binary, and the
//! standalone-only demo login (`POST /api/demo/login`). The login exists only when the node made its
//! own random secret (standalone mode without `auth.jwt_secret`); with a configured secret it is a
//! 404, so nothing in a production configuration weakens auth.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ApiError;
use super::Shared;
use super::error::answers::*;
use crate::protocol::ErrorCode;

const INDEX_HTML: &str = include_str!("web/index.html");
// The SDK's bundle (clients/js), built with `npm run build` there and checked in; CI rebuilds it
// and fails if the checked-in file differs, so what the node serves is always the current source.
const CHORUS_JS: &str = include_str!("../../clients/js/dist/chorus.js");

pub async fn index() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((
            "content-security-policy",
            "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; \
             connect-src 'self' ws: wss:",
        ))
        .body(INDEX_HTML)
}

/// Browsers ask for it on every page; answer without a 404 in their console.
pub async fn favicon() -> HttpResponse {
    HttpResponse::NoContent().finish()
}

pub async fn client_js() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .body(CHORUS_JS)
}

#[derive(Deserialize, ToSchema)]
pub struct Login {
    /// 1-64 characters (not only spaces, no NUL): the token's user id and display name.
    #[schema(max_length = 64, pattern = r"^[^\x00]*[^\s\x00][^\x00]*$")]
    name: String,
}

#[derive(Serialize, ToSchema)]
pub struct LoginToken<'a> {
    /// A bearer token valid for 24 hours.
    pub token: String,
    pub user: &'a str,
}

/// Standalone mode only (no `auth.jwt_secret`): a token for any name, for the demo and scripts.
#[utoipa::path(
    post,
    path = "/api/demo/login",
    tag = "demo",
    security(()),
    request_body = Login,
    responses(
        (status = 200, body = LoginToken),
        BadRequest,
        (status = 404, description = "`not_found`: this node has a configured secret, so no demo login",
            body = super::error::ErrorBody),
    )
)]
pub async fn demo_login(
    body: web::Json<Login>,
    shared: web::Data<Shared>,
) -> Result<HttpResponse, ApiError> {
    if !shared.demo_login {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "demo login is off: this node has a configured auth.jwt_secret, so its tokens come from \
             your backend (or `chorus token`); it exists only while the node makes its own secret",
        ));
    }
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 64 || !crate::ids::storable(name) {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "name must be 1-64 characters, no NUL",
        ));
    }
    let token = shared
        .auth
        .issue(name, Some(name), Duration::from_secs(24 * 3600), None, None);
    Ok(HttpResponse::Ok().json(LoginToken { token, user: name }))
}
