//! Admission at the HTTP edge: a refused socket slot ([`crate::edge::admission`]) becomes a 429
//! `rate_limited` that names the full limit, before any upgrade or stream starts.

use actix_web::HttpRequest;

use super::ApiError;
use crate::edge::admission::{Admission, Permit, Refused};
use crate::protocol::ErrorCode;

/// Takes a slot for `user` on the connection of `req`, or answers 429 naming the full limit.
pub fn admit(admission: &Admission, req: &HttpRequest, user: &str) -> Result<Permit, ApiError> {
    let forwarded = req
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok());
    let ip = admission.client_ip(req.peer_addr().map(|a| a.ip()), forwarded);
    admission.admit(user, ip).map_err(|refused| {
        let what = match refused {
            Refused::User => "too many open connections for this user",
            Refused::Ip => "too many open connections from this address",
        };
        let mut e = ApiError::new(ErrorCode::RateLimited, what);
        e.retry_after_s = Some(5);
        e
    })
}
