//! `[webhook]` (how every node's dispatcher works) and `[[webhooks]]` (the endpoints, PROTOCOL §8),
//! each endpoint checked on its own ([`Webhook::check`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::de;
use super::error::ConfigError;

/// `[webhook]`: how every node's dispatcher treats the `[[webhooks]]` endpoints.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookDispatch {
    #[serde(deserialize_with = "de::positive")]
    pub concurrency: usize,
    #[serde(rename = "retry_min_ms", with = "de::positive_millis")]
    pub retry_min: Duration,
    #[serde(rename = "retry_max_ms", with = "de::millis")]
    pub retry_max: Duration,
    #[serde(deserialize_with = "de::positive")]
    pub circuit_failures: u32,
    #[serde(rename = "circuit_cooldown_ms", with = "de::positive_millis")]
    pub circuit_cooldown: Duration,
    #[serde(rename = "poll_ms", with = "de::positive_millis")]
    pub poll: Duration,
}

impl WebhookDispatch {
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.retry_max < self.retry_min {
            return Err(ConfigError::new(
                "webhook.retry_max_ms",
                "must be at least webhook.retry_min_ms",
            ));
        }
        Ok(())
    }
}

/// Entry types a webhook may ask for.
pub const WEBHOOK_EVENTS: [&str; 4] = ["message", "edit", "delete", "react"];

/// One `[[webhooks]]` endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    /// What the outbox, the admin API and the logs call it; empty = the url. Keep it when the url
    /// changes and the backlog follows the endpoint to its new address.
    #[serde(default)]
    pub name: String,
    pub url: String,
    pub secret: String,
    #[serde(default = "all_events")]
    pub events: Vec<String>,
    #[serde(default = "all_rooms")]
    pub rooms: Vec<String>,
    #[serde(
        rename = "timeout_ms",
        default = "five_seconds",
        with = "de::positive_millis"
    )]
    pub timeout: Duration,
    #[serde(default = "ten", deserialize_with = "de::positive")]
    pub max_attempts: u32,
}

fn all_events() -> Vec<String> {
    WEBHOOK_EVENTS.iter().map(|e| e.to_string()).collect()
}

fn all_rooms() -> Vec<String> {
    vec!["*".into()]
}

fn five_seconds() -> Duration {
    Duration::from_secs(5)
}

fn ten() -> u32 {
    10
}

impl Webhook {
    /// The endpoint's name (its url when no name is set).
    pub fn id(&self) -> &str {
        if self.name.is_empty() {
            &self.url
        } else {
            &self.name
        }
    }

    /// Checks endpoint `i` (`webhooks[i]` in errors).
    pub fn check(&self, i: usize) -> Result<(), ConfigError> {
        let err = |k: &str, m: String| Err(ConfigError::new(&format!("webhooks[{i}].{k}"), m));
        match url::Url::parse(&self.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => return err("url", format!("`{}` is not an http(s) URL", self.url)),
        }
        if self.secret.len() < 16 {
            return err("secret", "must be at least 16 bytes".into());
        }
        if self.id().len() > 200 {
            return err("name", format!("`{}` is longer than 200 bytes", self.id()));
        }
        if self.events.is_empty() {
            return err("events", "must list at least one entry type".into());
        }
        for e in &self.events {
            if e == "presence" {
                return err(
                    "events",
                    "`presence` events are not delivered by this version (PROTOCOL §8 lists \
                     them as optional); remove it"
                        .into(),
                );
            }
            if !WEBHOOK_EVENTS.contains(&e.as_str()) {
                return err(
                    "events",
                    format!("`{e}` is not one of {}", WEBHOOK_EVENTS.join(", ")),
                );
            }
        }
        if self.rooms.is_empty()
            || self
                .rooms
                .iter()
                .any(|p| p.trim_end_matches('*').contains('*'))
        {
            return err(
                "rooms",
                "must list room patterns (`*` only at the end, `*` alone for every room)".into(),
            );
        }
        Ok(())
    }
}
