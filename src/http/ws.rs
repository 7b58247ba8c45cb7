//! `GET /ws`: checks draining, Origin and token before the upgrade (401/403/503 are plain HTTP
//! answers), then hands the connection to a [`Session`] actor.

use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use actix_web_actors::ws::WsResponseBuilder;
use bytes::Bytes;

use super::{ApiError, authenticate};
use crate::node::Shared;
use crate::protocol::ErrorCode;
use crate::session::Session;

pub async fn upgrade(
    req: HttpRequest,
    payload: web::Payload,
    shared: web::Data<Shared>,
) -> Result<HttpResponse, ApiError> {
    if shared.draining() {
        return Err(ApiError::new(
            ErrorCode::Unavailable,
            "node is draining; connect to another",
        ));
    }
    if !shared.allowed_origins.is_empty() {
        let origin = req
            .headers()
            .get(header::ORIGIN)
            .and_then(|o| o.to_str().ok());
        // No Origin header = not a browser; the allow-list guards against cross-site pages.
        if let Some(origin) = origin
            && !shared.allowed_origins.iter().any(|o| o == origin)
        {
            return Err(ApiError::new(ErrorCode::Forbidden, "origin not allowed"));
        }
    }
    let identity = authenticate(&req, &shared)?;
    let session = Session::new(shared.into_inner(), identity, payload);
    // The builder wants a stream for its own decoder; the real payload goes to our FrameStream.
    let unused = futures_util::stream::pending::<Result<Bytes, PayloadError>>();
    WsResponseBuilder::new(session, &req, unused)
        .start()
        .map_err(|e| {
            ApiError::new(
                ErrorCode::BadRequest,
                format!("not a WebSocket handshake: {e}"),
            )
        })
}
