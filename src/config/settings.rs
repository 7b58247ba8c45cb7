//! The settings, typed: every key of `config/default.toml` as the value a node uses (an address is
//! a `SocketAddr`, a duration a `Duration`, a list a `Vec`), with the rule that makes it valid on
//! the field itself (`de.rs`). Rules between keys are in `validate.rs`.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::de::{self, LogFilter, LogFormat};
use super::webhooks::{Webhook, WebhookDispatch};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub http: Http,
    pub node: Node,
    pub database: Database,
    pub redis: Redis,
    pub auth: Auth,
    pub limits: Limits,
    pub session: Session,
    pub room: Room,
    pub cluster: Cluster,
    pub shutdown: Shutdown,
    pub log: Log,
    pub webhook: WebhookDispatch,
    /// `[[webhooks]]`: endpoints of the application's services (PROTOCOL §8). None by default.
    #[serde(default)]
    pub webhooks: Vec<Webhook>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http {
    #[serde(with = "de::address")]
    pub bind: SocketAddr,
    /// Worker threads; 0 = one per CPU core.
    pub workers: usize,
    #[serde(rename = "sse_heartbeat_ms", with = "de::positive_millis")]
    pub sse_heartbeat: Duration,
    #[serde(rename = "handshake_timeout_ms", with = "de::millis")]
    pub handshake_timeout: Duration,
    #[serde(with = "de::networks")]
    pub trusted_proxies: Vec<IpNet>,
    pub echo_endpoint: bool,
    /// PEM certificate chain and key for in-process HTTPS/WSS (empty = plain HTTP).
    pub tls_cert: String,
    pub tls_key: String,
    /// Warn (at start and on every reload) when the certificate expires within this many days.
    pub tls_warn_days: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    pub url: String,
    pub read_url: String,
    #[serde(deserialize_with = "de::positive")]
    pub pool_size: usize,
    #[serde(rename = "timeout_ms", with = "de::positive_millis")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redis {
    pub url: String,
    pub prefix: String,
    /// PEM file of the CA that signed Redis's certificate (with `rediss://`); empty = system roots.
    pub ca_file: String,
    /// Redis Cluster with sharded pub/sub (also implied by several comma-separated URLs).
    pub cluster: bool,
}

impl Redis {
    /// The URLs in `url` (several = seed nodes of a Redis Cluster).
    pub fn urls(&self) -> Vec<&str> {
        self.url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect()
    }

    /// Whether the bridge talks to a Redis Cluster.
    pub fn clustered(&self) -> bool {
        self.cluster || self.urls().len() > 1
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    pub jwt_secret: String,
    /// Exact origins allowed to open `/ws` (and to call the API); empty = any.
    #[serde(with = "de::list")]
    pub allowed_origins: Vec<String>,
    pub audience: String,
    pub issuer: String,
    pub leeway_s: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    #[serde(deserialize_with = "de::positive")]
    pub max_frame_bytes: usize,
    #[serde(deserialize_with = "de::positive")]
    pub max_body_bytes: usize,
    /// A request whose line and headers are larger gets 431 (a load balancer's limit).
    #[serde(deserialize_with = "de::positive")]
    pub max_header_bytes: usize,
    pub msgs_per_sec: NonZeroU32,
    pub burst: NonZeroU32,
    #[serde(deserialize_with = "de::positive")]
    pub max_connections_per_user: usize,
    #[serde(deserialize_with = "de::positive")]
    pub max_connections_per_ip: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Session {
    #[serde(rename = "heartbeat_ms", with = "de::positive_millis")]
    pub heartbeat: Duration,
    #[serde(rename = "timeout_ms", with = "de::millis")]
    pub timeout: Duration,
    #[serde(deserialize_with = "de::positive")]
    pub queue_max: usize,
    #[serde(rename = "write_timeout_ms", with = "de::positive_millis")]
    pub write_timeout: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Room {
    #[serde(deserialize_with = "de::positive")]
    pub max_catchup: i64,
    #[serde(rename = "idle_stop_ms", with = "de::millis")]
    pub idle_stop: Duration,
    #[serde(deserialize_with = "de::positive")]
    pub batch_max: usize,
    #[serde(rename = "gap_repair_ms", with = "de::millis")]
    pub gap_repair: Duration,
    pub read_receipts: bool,
    /// Days of history kept (Postgres); 0 = forever. Dropped a week-partition at a time.
    pub retention_days: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    #[serde(rename = "heartbeat_ms", with = "de::positive_millis")]
    pub heartbeat: Duration,
    #[serde(rename = "dead_after_ms", with = "de::millis")]
    pub dead_after: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shutdown {
    #[serde(rename = "drain_ms", with = "de::positive_millis")]
    pub drain: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    pub format: LogFormat,
    pub level: LogFilter,
}

impl Settings {
    /// Standalone = no Postgres and no Redis: the embedded demo mode.
    pub fn standalone(&self) -> bool {
        self.database.url.is_empty() && self.redis.url.is_empty()
    }

    /// The effective settings as TOML with secrets replaced, for `chorus check-config` and logs.
    pub fn masked(&self) -> String {
        let mut copy = self.clone();
        if !copy.auth.jwt_secret.is_empty() {
            copy.auth.jwt_secret = "***".into();
        }
        copy.database.url = mask_url(&copy.database.url);
        copy.database.read_url = mask_url(&copy.database.read_url);
        copy.redis.url = copy
            .redis
            .urls()
            .into_iter()
            .map(mask_url)
            .collect::<Vec<_>>()
            .join(",");
        for w in &mut copy.webhooks {
            w.secret = "***".into();
        }
        toml::to_string(&copy).unwrap_or_else(|e| format!("# cannot render settings: {e}"))
    }
}

/// Replaces the password in `scheme://user:password@host/...` with `***`.
fn mask_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let Some(at) = rest.rfind('@') else {
        return url.to_owned();
    };
    let creds = &rest[..at];
    match creds.find(':') {
        Some(colon) => format!(
            "{}://{}:***@{}",
            &url[..scheme_end],
            &creds[..colon],
            &rest[at + 1..]
        ),
        None => url.to_owned(),
    }
}
