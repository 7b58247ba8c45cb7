//! Identity (PROTOCOL.md §2): HS256 JWTs verified with `jsonwebtoken`, and the room rights they carry.
//!
//! Only HS256 is accepted (so `alg: none` and every asymmetric trick fail), `sub` and `exp` are required,
//! `aud`/`iss` are checked when configured, `nbf` in the future is refused, and the leeway is small.
//! `sub` and `name` are stored with messages, so a token carrying a NUL is refused here. Tokens are never logged.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config;
use crate::ids::{RoomId, UserId, storable, valid_user_id};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rooms: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
}

impl Claims {
    /// Just the required claims: `sub` and `exp` (seconds since the epoch).
    pub fn new(sub: &str, exp: u64) -> Claims {
        Claims {
            sub: sub.to_owned(),
            exp,
            iat: None,
            nbf: None,
            name: None,
            rooms: None,
            role: None,
            aud: None,
            iss: None,
        }
    }
}

/// Who is on the other end of a connection or request, and what they may touch.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user: UserId,
    pub name: Option<String>,
    /// Room patterns (`*` only trailing); `None` = all rooms.
    pub rooms: Option<Vec<String>>,
    /// `role = service`: may post to and read any room.
    pub service: bool,
    /// `role = moderator` or `service`: may delete any message in the rooms it may access (§2).
    pub moderator: bool,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
}

impl Identity {
    pub fn may_access(&self, room: &RoomId) -> bool {
        if self.service {
            return true;
        }
        match &self.rooms {
            None => true,
            Some(patterns) => patterns.iter().any(|p| room.matches(p)),
        }
    }

    /// Time left before the token expires (zero if already past).
    pub fn expires_in(&self) -> Duration {
        Duration::from_secs(self.exp.saturating_sub(now_secs()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing token")]
    Missing,
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// Verifies and issues tokens with one secret.
#[derive(Clone)]
pub struct Auth {
    decoding: DecodingKey,
    encoding: EncodingKey,
    validation: Validation,
    audience: Option<String>,
    issuer: Option<String>,
}

impl Auth {
    pub fn new(secret: &[u8], settings: &config::Auth) -> Auth {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = settings.leeway_s;
        // A token that is not valid yet is refused, with the same leeway as `exp` (PROTOCOL §2).
        validation.validate_nbf = true;
        let audience = Some(settings.audience.clone()).filter(|a| !a.is_empty());
        let issuer = Some(settings.issuer.clone()).filter(|i| !i.is_empty());
        // A configured aud/iss must also be *present*: jsonwebtoken only checks claims that exist
        // unless they are listed as required.
        let mut required = vec!["exp", "sub"];
        required.extend(audience.as_ref().map(|_| "aud"));
        required.extend(issuer.as_ref().map(|_| "iss"));
        validation.set_required_spec_claims(&required);
        match &audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &issuer {
            validation.set_issuer(&[iss]);
        }
        Auth {
            decoding: DecodingKey::from_secret(secret),
            encoding: EncodingKey::from_secret(secret),
            validation,
            audience,
            issuer,
        }
    }

    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        let c = data.claims;
        if !valid_user_id(&c.sub) {
            return Err(AuthError::Invalid(
                "sub must be 1-128 characters without NUL".into(),
            ));
        }
        // The name is stored with every message: it must be something the store can take.
        if c.name.as_deref().is_some_and(|n| !storable(n)) {
            return Err(AuthError::Invalid("name must not contain NUL".into()));
        }
        Ok(Identity {
            user: UserId::from(c.sub),
            name: c.name.filter(|n| !n.is_empty()),
            rooms: c.rooms,
            service: c.role.as_deref() == Some("service"),
            moderator: matches!(c.role.as_deref(), Some("service" | "moderator")),
            exp: c.exp,
        })
    }

    /// Signs a token for `user`, valid for `ttl` (used by `chorus token` and the standalone demo).
    pub fn issue(
        &self,
        user: &str,
        name: Option<&str>,
        ttl: Duration,
        rooms: Option<Vec<String>>,
        role: Option<&str>,
    ) -> String {
        let now = now_secs();
        let claims = Claims {
            iat: Some(now),
            name: name.map(str::to_owned),
            rooms,
            role: role.map(str::to_owned),
            aud: self.audience.clone(),
            iss: self.issuer.clone(),
            ..Claims::new(user, now + ttl.as_secs())
        };
        // Encoding an HS256 token with an in-memory key cannot fail.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .unwrap_or_default()
    }
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> config::Auth {
        config::Auth {
            jwt_secret: String::new(),
            allowed_origins: Vec::new(),
            audience: String::new(),
            issuer: String::new(),
            leeway_s: 30,
        }
    }

    #[test]
    fn issued_tokens_verify_and_carry_rights() {
        let auth = Auth::new(b"0123456789abcdef", &settings());
        let t = auth.issue(
            "u1",
            Some("Ann"),
            Duration::from_secs(60),
            Some(vec!["team-*".into(), "lobby".into()]),
            None,
        );
        let id = auth.verify(&t).unwrap();
        assert_eq!(id.user, "u1");
        assert_eq!(id.name.as_deref(), Some("Ann"));
        assert!(id.may_access(&RoomId::parse("team-1").unwrap()));
        assert!(id.may_access(&RoomId::parse("lobby").unwrap()));
        assert!(!id.may_access(&RoomId::parse("lobby2").unwrap()));
        assert!(!id.may_access(&RoomId::parse("other").unwrap()));
    }

    #[test]
    fn service_role_reaches_every_room() {
        let auth = Auth::new(b"0123456789abcdef", &settings());
        let t = auth.issue(
            "svc",
            None,
            Duration::from_secs(60),
            Some(vec![]),
            Some("service"),
        );
        assert!(
            auth.verify(&t)
                .unwrap()
                .may_access(&RoomId::parse("any").unwrap())
        );
    }

    #[test]
    fn wrong_secret_expired_and_alg_none_are_rejected() {
        let auth = Auth::new(b"0123456789abcdef", &settings());
        let other = Auth::new(b"another-secret-0000", &settings());
        let t = other.issue("u", None, Duration::from_secs(60), None, None);
        assert!(auth.verify(&t).is_err());

        let expired = Claims::new("u", now_secs() - 120);
        assert!(auth.verify(&signed(&expired)).is_err());

        // {"alg":"none","typ":"JWT"} . {"sub":"u","exp":9999999999} . (no signature)
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ1IiwiZXhwIjo5OTk5OTk5OTk5fQ.";
        assert!(auth.verify(none).is_err());
    }

    fn signed(claims: &Claims) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(b"0123456789abcdef"),
        )
        .unwrap()
    }

    fn claims(sub: &str) -> Claims {
        Claims::new(sub, now_secs() + 600)
    }

    #[test]
    fn a_token_not_valid_yet_is_refused_within_the_same_leeway_as_exp() {
        let auth = Auth::new(b"0123456789abcdef", &settings());
        let mut c = claims("u");
        c.nbf = Some(now_secs() + 600);
        assert!(auth.verify(&signed(&c)).is_err(), "nbf in the future");
        c.nbf = Some(now_secs() + 10);
        assert!(auth.verify(&signed(&c)).is_ok(), "within the 30 s leeway");
        c.nbf = Some(now_secs() - 10);
        assert!(auth.verify(&signed(&c)).is_ok(), "already valid");
    }

    #[test]
    fn a_token_whose_sub_or_name_the_store_cannot_take_is_refused() {
        let auth = Auth::new(b"0123456789abcdef", &settings());
        assert!(auth.verify(&signed(&claims("a\0b"))).is_err());
        let mut c = claims("u");
        c.name = Some("Nul\0Name".into());
        assert!(auth.verify(&signed(&c)).is_err());
        c.name = Some("Ünïcode ✓".into());
        assert!(auth.verify(&signed(&c)).is_ok());
    }

    #[test]
    fn audience_and_issuer_are_checked_when_configured() {
        let mut s = settings();
        s.audience = "chat".into();
        s.issuer = "me".into();
        let strict = Auth::new(b"0123456789abcdef", &s);
        let loose = Auth::new(b"0123456789abcdef", &settings());
        let t = loose.issue("u", None, Duration::from_secs(60), None, None);
        assert!(strict.verify(&t).is_err());
        let t = strict.issue("u", None, Duration::from_secs(60), None, None);
        assert!(strict.verify(&t).is_ok());
    }
}
