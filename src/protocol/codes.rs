//! Error codes (`error.code` on WebSocket and REST) and WebSocket close codes, numbered as in
//! PROTOCOL.md §3 so clients can decide between reconnecting and giving up.

use actix_web::http::StatusCode;

/// On the wire, [`ErrorCode::as_str`] (serde's name for it is the same: a test checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    InvalidRoom,
    InvalidBody,
    BodyTooLarge,
    NotJoined,
    Forbidden,
    RateLimited,
    Unavailable,
    Internal,
    /// REST only: missing or invalid token.
    Unauthorized,
    /// No such message (an edit/delete/react target, §7), or (REST) an unknown route.
    NotFound,
    /// The target message is deleted (§7).
    Gone,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 12] = [
        ErrorCode::BadRequest,
        ErrorCode::InvalidRoom,
        ErrorCode::InvalidBody,
        ErrorCode::BodyTooLarge,
        ErrorCode::NotJoined,
        ErrorCode::Forbidden,
        ErrorCode::RateLimited,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
        ErrorCode::Unauthorized,
        ErrorCode::NotFound,
        ErrorCode::Gone,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::InvalidRoom => "invalid_room",
            ErrorCode::InvalidBody => "invalid_body",
            ErrorCode::BodyTooLarge => "body_too_large",
            ErrorCode::NotJoined => "not_joined",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Gone => "gone",
        }
    }

    /// The HTTP status a REST reply with this code carries.
    pub fn http_status(self) -> StatusCode {
        match self {
            ErrorCode::BadRequest | ErrorCode::InvalidRoom | ErrorCode::InvalidBody => {
                StatusCode::BAD_REQUEST
            }
            ErrorCode::NotJoined => StatusCode::CONFLICT,
            ErrorCode::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::Gone => StatusCode::GONE,
        }
    }
}

/// WebSocket close codes (PROTOCOL.md §3, "Close codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCode {
    Normal = 1000,
    GoingAway = 1001,
    Protocol = 1002,
    InvalidUtf8 = 1007,
    Policy = 1008,
    TooBig = 1009,
    Internal = 1011,
    Draining = 1012,
    SlowConsumer = 1013,
    TokenExpired = 4001,
    Forbidden = 4003,
    HeartbeatTimeout = 4008,
    Flooding = 4029,
}

impl CloseCode {
    pub const ALL: [CloseCode; 13] = [
        CloseCode::Normal,
        CloseCode::GoingAway,
        CloseCode::Protocol,
        CloseCode::InvalidUtf8,
        CloseCode::Policy,
        CloseCode::TooBig,
        CloseCode::Internal,
        CloseCode::Draining,
        CloseCode::SlowConsumer,
        CloseCode::TokenExpired,
        CloseCode::Forbidden,
        CloseCode::HeartbeatTimeout,
        CloseCode::Flooding,
    ];

    pub fn code(self) -> u16 {
        self as u16
    }

    /// Label value for `chorus_session_closes_total{code}`.
    pub fn label(self) -> &'static str {
        match self {
            CloseCode::Normal => "1000",
            CloseCode::GoingAway => "1001",
            CloseCode::Protocol => "1002",
            CloseCode::InvalidUtf8 => "1007",
            CloseCode::Policy => "1008",
            CloseCode::TooBig => "1009",
            CloseCode::Internal => "1011",
            CloseCode::Draining => "1012",
            CloseCode::SlowConsumer => "1013",
            CloseCode::TokenExpired => "4001",
            CloseCode::Forbidden => "4003",
            CloseCode::HeartbeatTimeout => "4008",
            CloseCode::Flooding => "4029",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_names_the_codes_as_the_wire_does() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }
}
