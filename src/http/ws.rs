//! `GET /ws`: checks draining, Origin, token and the connection limits before the upgrade
//! (401/403/429/503 are plain HTTP answers), then hands the connection to a [`Session`] actor.

use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use actix_web_actors::ws::WsResponseBuilder;
use bytes::Bytes;

use super::Shared;
use super::admission;
use super::{ApiError, authenticate};
use crate::edge::conn::ConnSocket;
use crate::protocol::ErrorCode;
use crate::session::Session;
use crate::session::echo::Echo;

/// `GET /echo` (only with `http.echo_endpoint`): the conformance-test echo, see [`Echo`].
pub async fn echo(
    req: HttpRequest,
    payload: web::Payload,
    shared: web::Data<Shared>,
) -> Result<HttpResponse, ApiError> {
    if !shared.settings.http.echo_endpoint {
        return Err(ApiError::new(ErrorCode::NotFound, "no such route"));
    }
    let echo = Echo::new(
        payload,
        shared.settings.limits.max_frame_bytes,
        ConnSocket::of(&req),
    );
    start(echo, &req)
}

/// Answers the handshake and starts `actor` on the connection. The actor reads the real payload
/// through its own `FrameStream`; the builder wants a stream for its decoder, so it gets one that
/// never yields.
fn start<A>(actor: A, req: &HttpRequest) -> Result<HttpResponse, ApiError>
where
    A: actix::Actor<Context = actix_web_actors::ws::WebsocketContext<A>>
        + actix::StreamHandler<
            Result<actix_web_actors::ws::Message, actix_web_actors::ws::ProtocolError>,
        >,
{
    let unused = futures_util::stream::pending::<Result<Bytes, PayloadError>>();
    WsResponseBuilder::new(actor, req, unused)
        .start()
        .map_err(|e| {
            ApiError::new(
                ErrorCode::BadRequest,
                format!("not a WebSocket handshake: {e}"),
            )
        })
}

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
    let permit = admission::admit(&shared.admission, &req, &identity.user)?;
    let session = Session::new(
        shared.session.clone(),
        identity,
        payload,
        permit,
        ConnSocket::of(&req),
    );
    start(session, &req)
}
