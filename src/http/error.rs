//! The JSON error shape of every HTTP answer (`{"error":{"code","message"}}`, PROTOCOL §4) and
//! the bearer token's extraction ([`authenticate`]).

use std::collections::HashMap;
use std::fmt;

use actix_web::http::header;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, ResponseError, web};

use super::state::Shared;
use crate::auth::Identity;
use crate::protocol::ErrorCode;
use crate::store::StoreError;

/// `{"error":{"code","message"}}` with the status the code implies (PROTOCOL.md §4).
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub retry_after_s: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after_s: None,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::warn!(error = %e, "store request failed");
        let (code, text) = e.wire();
        ApiError::new(code, text)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> actix_web::http::StatusCode {
        self.code.http_status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        if let Some(s) = self.retry_after_s {
            res.insert_header((header::RETRY_AFTER, s.to_string()));
        }
        res.json(ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message.clone(),
            },
        })
    }
}

/// Every HTTP error's body (PROTOCOL §4).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    /// For people: what was wrong and what to do.
    pub message: String,
}

/// The token from `Authorization: Bearer …` or, for browsers, `?access_token=…`.
pub fn authenticate(req: &HttpRequest, shared: &Shared) -> Result<Identity, ApiError> {
    let from_header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|t| t.trim().to_owned());
    let token = from_header.or_else(|| {
        web::Query::<HashMap<String, String>>::from_query(req.query_string())
            .ok()
            .and_then(|q| q.get("access_token").cloned())
    });
    let token =
        token.ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "missing bearer token"))?;
    let identity = shared
        .auth
        .verify(&token)
        .map_err(|_| ApiError::new(ErrorCode::Unauthorized, "invalid or expired token"))?;
    req.extensions_mut()
        .insert(AccessUser(identity.user.clone()));
    Ok(identity)
}

/// The authenticated user of a request, for the access log.
pub(super) struct AccessUser(pub(super) crate::ids::UserId);

/// The error answers an operation can give, for its `responses(...)` in `/api/openapi.json`
/// (each is `ErrorBody` with the status its codes imply, [`ErrorCode::http_status`]).
pub mod answers {
    use super::ErrorBody;

    /// `bad_request`, `invalid_room` or `invalid_body`: the message says which field and why.
    #[derive(utoipa::IntoResponses)]
    #[response(status = 400)]
    pub struct BadRequest(#[allow(dead_code)] ErrorBody);

    /// `unauthorized`: no bearer token, or one that is invalid, expired or revoked.
    #[derive(utoipa::IntoResponses)]
    #[response(status = 401)]
    pub struct Unauthorized(#[allow(dead_code)] ErrorBody);

    /// `forbidden`: the token does not allow this room or action.
    #[derive(utoipa::IntoResponses)]
    #[response(status = 403)]
    pub struct Forbidden(#[allow(dead_code)] ErrorBody);

    /// `not_found`: no such message, dead letter or feature on this node.
    #[derive(utoipa::IntoResponses)]
    #[response(status = 404)]
    pub struct NotFound(#[allow(dead_code)] ErrorBody);

    /// `gone`: the target message is deleted.
    #[derive(utoipa::IntoResponses)]
    #[response(status = 410)]
    pub struct Gone(#[allow(dead_code)] ErrorBody);

    /// `body_too_large`: the request body, or the message in it, is over the limit.
    #[derive(utoipa::IntoResponses)]
    #[response(status = 413)]
    pub struct TooLarge(#[allow(dead_code)] ErrorBody);

    /// `rate_limited`: slow down; `Retry-After` says when to try again (seconds).
    #[derive(utoipa::IntoResponses)]
    #[response(status = 429, headers(("Retry-After" = u64, description = "seconds to wait")))]
    pub struct RateLimited(#[allow(dead_code)] ErrorBody);

    /// `unavailable`: the store (or the cluster bus) cannot answer now, or the node is draining;
    /// retry (elsewhere). Nothing was committed.
    #[derive(utoipa::IntoResponses)]
    #[response(status = 503)]
    pub struct Unavailable(#[allow(dead_code)] ErrorBody);
}
