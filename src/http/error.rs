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
        res.json(
            serde_json::json!({"error": {"code": self.code.as_str(), "message": self.message}}),
        )
    }
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
