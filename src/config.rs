//! Typed settings and the layered loader (PROTOCOL.md §1).
//!
//! Layers, later wins: the embedded `config/default.toml` → `<dir>/default.toml` → `<dir>/$CHORUS_ENV.toml`
//! → environment variables `CHORUS__SECTION__KEY` → CLI overrides. The environment is passed in as a map
//! so tests never call `set_var`. [`Settings::validate`] names the offending key on every error, and
//! [`Settings::masked`] is the only way settings are printed (secrets hidden).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The defaults, compiled in so the binary runs from anywhere.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

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
    pub bind: String,
    pub workers: usize,
    pub sse_heartbeat_ms: u64,
    pub handshake_timeout_ms: u64,
    pub trusted_proxies: String,
    pub echo_endpoint: bool,
    /// PEM certificate chain and key for in-process HTTPS/WSS (empty = plain HTTP).
    pub tls_cert: String,
    pub tls_key: String,
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
    pub pool_size: usize,
    pub timeout_ms: u64,
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
    pub allowed_origins: String,
    pub audience: String,
    pub issuer: String,
    pub leeway_s: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub max_frame_bytes: usize,
    pub max_body_bytes: usize,
    pub msgs_per_sec: u32,
    pub burst: u32,
    pub max_connections_per_user: usize,
    pub max_connections_per_ip: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Session {
    pub heartbeat_ms: u64,
    pub timeout_ms: u64,
    pub queue_max: usize,
    pub write_timeout_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Room {
    pub max_catchup: i64,
    pub idle_stop_ms: u64,
    pub batch_max: usize,
    pub gap_repair_ms: u64,
    pub read_receipts: bool,
    /// Days of history kept (Postgres); 0 = forever. Dropped a week-partition at a time.
    pub retention_days: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    pub heartbeat_ms: u64,
    pub dead_after_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shutdown {
    pub drain_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    pub format: String,
    pub level: String,
}

/// `[webhook]`: how every node's dispatcher treats the `[[webhooks]]` endpoints.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookDispatch {
    pub concurrency: usize,
    pub retry_min_ms: u64,
    pub retry_max_ms: u64,
    pub circuit_failures: u32,
    pub circuit_cooldown_ms: u64,
    pub poll_ms: u64,
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
    #[serde(default = "five_seconds")]
    pub timeout_ms: u64,
    #[serde(default = "ten")]
    pub max_attempts: u32,
}

fn all_events() -> Vec<String> {
    WEBHOOK_EVENTS.iter().map(|e| e.to_string()).collect()
}

fn all_rooms() -> Vec<String> {
    vec!["*".into()]
}

fn five_seconds() -> u64 {
    5000
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
}

/// A configuration problem, always naming the key at fault.
#[derive(Debug, thiserror::Error)]
#[error("config key `{key}`: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl ConfigError {
    fn new(key: &str, message: impl Into<String>) -> Self {
        Self {
            key: key.to_owned(),
            message: message.into(),
        }
    }
}

/// The sections and keys of the embedded `config/default.toml`: every key there is.
fn known_keys() -> Vec<(String, Vec<String>)> {
    let table: toml::Table = toml::from_str(DEFAULT_TOML).unwrap_or_default();
    table
        .into_iter()
        .map(|(section, v)| {
            let keys = v
                .as_table()
                .map(|t| t.keys().cloned().collect())
                .unwrap_or_default();
            (section, keys)
        })
        .collect()
}

/// Every key of the merged layers that `config/default.toml` does not have, as `section.key`
/// (all of them, not only the first one serde would stop at).
fn unknown_keys(raw: &config::Config) -> Vec<String> {
    let known = known_keys();
    let Ok(tree) = raw
        .clone()
        .try_deserialize::<HashMap<String, config::Value>>()
    else {
        return Vec::new();
    };
    let mut unknown = Vec::new();
    for (section, value) in tree {
        let keys: Vec<String> = value
            .into_table()
            .map(|t| t.into_keys().collect())
            .unwrap_or_default();
        if section == "webhooks" {
            // An array of tables: serde checks each table's keys (`deny_unknown_fields`).
            continue;
        }
        match known.iter().find(|(s, _)| *s == section) {
            None if keys.is_empty() => unknown.push(section),
            None => unknown.extend(keys.iter().map(|k| format!("{section}.{k}"))),
            Some((_, allowed)) => unknown.extend(
                keys.iter()
                    .filter(|k| !allowed.contains(k))
                    .map(|k| format!("{section}.{k}")),
            ),
        }
    }
    unknown.sort();
    unknown
}

/// Environment variables that look meant for Chorus but are ignored, each with the name that
/// would work: `CHORUS_DATABASE_URL` (one underscore) is `CHORUS__DATABASE__URL`.
pub fn env_typos(env: &HashMap<String, String>) -> Vec<String> {
    let sections: Vec<String> = known_keys().into_iter().map(|(s, _)| s).collect();
    let mut warnings: Vec<String> = env
        .keys()
        .filter(|k| k.starts_with("CHORUS_") && !k.starts_with("CHORUS__") && *k != "CHORUS_ENV")
        .map(|k| {
            let rest = k["CHORUS_".len()..].to_lowercase();
            let meant = sections.iter().find_map(|s| {
                let key = rest.strip_prefix(s.as_str())?.strip_prefix('_')?;
                Some(format!(
                    "CHORUS__{}__{}",
                    s.to_uppercase(),
                    key.to_uppercase()
                ))
            });
            match meant {
                Some(m) => format!("{k} is ignored: did you mean {m} (double underscores)?"),
                None => format!(
                    "{k} is ignored: settings are CHORUS__SECTION__KEY (double underscores)"
                ),
            }
        })
        .collect();
    warnings.sort();
    warnings
}

/// Where to look for `default.toml` and `$CHORUS_ENV.toml`: the given folder, else `./config`, else the
/// package's own `config/` folder; `None` means only the embedded defaults apply.
pub fn find_config_dir(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(dir) = explicit {
        return Some(dir.to_path_buf());
    }
    let candidates = [
        PathBuf::from("config"),
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/config")),
    ];
    candidates
        .into_iter()
        .find(|d| d.join("default.toml").is_file())
}

impl Settings {
    /// Builds settings from the layers. `env` is the process environment (or a test's map);
    /// `overrides` are `section.key = value` pairs from the CLI, applied last.
    pub fn load(
        dir: Option<&Path>,
        env: &HashMap<String, String>,
        overrides: &[(String, String)],
    ) -> Result<Settings, ConfigError> {
        use config::{Config, Environment, File, FileFormat};
        let mut builder =
            Config::builder().add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml));
        if let Some(dir) = dir.filter(|d| !d.is_dir()) {
            return Err(ConfigError::new(
                "--config-dir",
                format!("{} is not a folder", dir.display()),
            ));
        }
        if let Some(dir) = dir {
            builder = builder.add_source(File::from(dir.join("default.toml")).required(false));
            if let Some(name) = env.get("CHORUS_ENV").filter(|n| !n.is_empty()) {
                let path = dir.join(format!("{name}.toml"));
                if !path.is_file() {
                    return Err(ConfigError::new(
                        "CHORUS_ENV",
                        format!("{} does not exist", path.display()),
                    ));
                }
                builder = builder.add_source(File::from(path));
            }
        }
        let chorus_env: HashMap<String, String> = env
            .iter()
            .filter(|(k, _)| k.starts_with("CHORUS__"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        builder = builder.add_source(
            Environment::with_prefix("CHORUS")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .source(Some(chorus_env)),
        );
        for (key, value) in overrides {
            builder = builder
                .set_override(key.as_str(), value.as_str())
                .map_err(|e| ConfigError::new(key, e.to_string()))?;
        }
        let raw = builder.build().map_err(from_config_error)?;
        let unknown = unknown_keys(&raw);
        if let Some(first) = unknown.first() {
            return Err(ConfigError::new(
                first,
                format!(
                    "unknown key{} {} (config/default.toml lists every key)",
                    if unknown.len() > 1 { "s" } else { "" },
                    unknown.join(", ")
                ),
            ));
        }
        let mut settings: Settings = raw.try_deserialize().map_err(from_config_error)?;
        if settings.node.id.is_empty() {
            settings.node.id = default_node_id();
        }
        settings.validate()?;
        Ok(settings)
    }

    /// Standalone = no Postgres and no Redis: the embedded demo mode.
    pub fn standalone(&self) -> bool {
        self.database.url.is_empty() && self.redis.url.is_empty()
    }

    pub fn bind_addr(&self) -> SocketAddr {
        // validate() guarantees this parses.
        self.http
            .bind
            .parse()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8080)))
    }

    pub fn allowed_origins(&self) -> Vec<String> {
        self.auth
            .allowed_origins
            .split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// The signing secret a serving node needs (not `chorus migrate`: a migration job should not
    /// hold it). Checked by `serve`, `check-config` and [``Node::start``].
    pub fn validate_secret(&self) -> Result<(), ConfigError> {
        if !self.standalone() && self.auth.jwt_secret.len() < 16 {
            return Err(ConfigError::new(
                "auth.jwt_secret",
                "must be set (at least 16 bytes) when database.url or redis.url is set",
            ));
        }
        Ok(())
    }

    /// Checks every value a running node relies on, except the secret ([`Self::validate_secret`]);
    /// the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.http.bind.parse::<SocketAddr>().is_err() {
            return Err(ConfigError::new(
                "http.bind",
                format!("`{}` is not an address like 127.0.0.1:8080", self.http.bind),
            ));
        }
        if self.node.id.is_empty() || self.node.id.len() > 128 {
            return Err(ConfigError::new("node.id", "must be 1-128 characters"));
        }
        for (key, url) in [
            ("database.url", &self.database.url),
            ("database.read_url", &self.database.read_url),
        ] {
            if !url.is_empty()
                && let Err(e) = crate::tls::postgres::parse(url)
            {
                return Err(ConfigError::new(
                    key,
                    format!("is not a valid Postgres URL: {e}"),
                ));
            }
        }
        if !self.database.read_url.is_empty() && self.database.url.is_empty() {
            return Err(ConfigError::new(
                "database.read_url",
                "needs database.url (a reader without a writer)",
            ));
        }
        let urls = self.redis.urls();
        let redis_scheme = |u: &&str| ["redis://", "rediss://"].iter().any(|s| u.starts_with(s));
        if !urls.iter().all(redis_scheme) {
            return Err(ConfigError::new(
                "redis.url",
                "must start with redis:// (or rediss:// for TLS)",
            ));
        }
        let tls = |u: &&str| u.starts_with("rediss://");
        if urls.iter().any(tls) && !urls.iter().all(tls) {
            return Err(ConfigError::new(
                "redis.url",
                "cluster seed URLs must all use the same scheme (redis:// or rediss://)",
            ));
        }
        if self.redis.clustered() && self.redis.url.is_empty() {
            return Err(ConfigError::new(
                "redis.cluster",
                "needs redis.url (a seed node of the cluster)",
            ));
        }
        if self.redis.clustered() && self.redis.prefix.contains(['{', '}']) {
            // Keys and channels carry hash tags ({room}, {prefix}) that decide their shard.
            return Err(ConfigError::new(
                "redis.prefix",
                "must not contain { or } with redis.cluster (they would change which shard holds a key)",
            ));
        }
        if !self.redis.ca_file.is_empty() && !std::path::Path::new(&self.redis.ca_file).is_file() {
            return Err(ConfigError::new(
                "redis.ca_file",
                format!("{} is not a readable file", self.redis.ca_file),
            ));
        }
        // Nodes with separate in-memory histories would hand out the same seqs for different
        // messages: a cluster needs the shared Postgres.
        if !self.redis.url.is_empty() && self.database.url.is_empty() {
            return Err(ConfigError::new(
                "redis.url",
                "a cluster needs database.url too (the in-memory store is per node)",
            ));
        }
        if self.room.retention_days > 0 && self.database.url.is_empty() {
            return Err(ConfigError::new(
                "room.retention_days",
                "needs database.url (the in-memory store keeps everything until the node stops)",
            ));
        }
        if self.redis.prefix.is_empty() {
            return Err(ConfigError::new("redis.prefix", "must not be empty"));
        }
        if self.http.handshake_timeout_ms < 1000 {
            // actix's timers read a clock that ticks every 500 ms: shorter budgets fire early.
            return Err(ConfigError::new(
                "http.handshake_timeout_ms",
                "must be at least 1000",
            ));
        }
        match (self.http.tls_cert.is_empty(), self.http.tls_key.is_empty()) {
            (true, true) => {}
            (false, false) => {
                if let Err(e) = crate::tls::server::load(&self.http.tls_cert, &self.http.tls_key) {
                    return Err(ConfigError::new("http.tls_cert", e));
                }
            }
            (true, false) => {
                return Err(ConfigError::new("http.tls_cert", "needs http.tls_key too"));
            }
            (false, true) => {
                return Err(ConfigError::new("http.tls_key", "needs http.tls_cert too"));
            }
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return Err(ConfigError::new(
                "log.level",
                format!("`{}` is not a log filter: {e}", self.log.level),
            ));
        }
        if let Err(e) = crate::edge::admission::parse_trusted(&self.http.trusted_proxies) {
            return Err(ConfigError::new("http.trusted_proxies", e));
        }
        let positive: [(&str, u64); 16] = [
            ("database.pool_size", self.database.pool_size as u64),
            ("database.timeout_ms", self.database.timeout_ms),
            ("limits.max_frame_bytes", self.limits.max_frame_bytes as u64),
            ("limits.max_body_bytes", self.limits.max_body_bytes as u64),
            ("limits.msgs_per_sec", self.limits.msgs_per_sec as u64),
            ("limits.burst", self.limits.burst as u64),
            ("session.heartbeat_ms", self.session.heartbeat_ms),
            ("http.sse_heartbeat_ms", self.http.sse_heartbeat_ms),
            ("session.queue_max", self.session.queue_max as u64),
            ("session.write_timeout_ms", self.session.write_timeout_ms),
            ("room.max_catchup", self.room.max_catchup.max(0) as u64),
            ("room.batch_max", self.room.batch_max as u64),
            ("cluster.heartbeat_ms", self.cluster.heartbeat_ms),
            ("shutdown.drain_ms", self.shutdown.drain_ms),
            (
                "limits.max_connections_per_user",
                self.limits.max_connections_per_user as u64,
            ),
            (
                "limits.max_connections_per_ip",
                self.limits.max_connections_per_ip as u64,
            ),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(ConfigError::new(key, "must be greater than 0"));
            }
        }
        if self.limits.max_body_bytes >= self.limits.max_frame_bytes {
            return Err(ConfigError::new(
                "limits.max_body_bytes",
                "must be smaller than limits.max_frame_bytes",
            ));
        }
        if self.session.timeout_ms <= self.session.heartbeat_ms {
            return Err(ConfigError::new(
                "session.timeout_ms",
                "must be greater than session.heartbeat_ms",
            ));
        }
        if self.cluster.dead_after_ms <= self.cluster.heartbeat_ms {
            return Err(ConfigError::new(
                "cluster.dead_after_ms",
                "must be greater than cluster.heartbeat_ms",
            ));
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(ConfigError::new(
                "log.format",
                "must be \"text\" or \"json\"",
            ));
        }
        self.validate_webhooks()
    }

    fn validate_webhooks(&self) -> Result<(), ConfigError> {
        let d = &self.webhook;
        for (key, value) in [
            ("webhook.concurrency", d.concurrency as u64),
            ("webhook.retry_min_ms", d.retry_min_ms),
            ("webhook.circuit_failures", d.circuit_failures as u64),
            ("webhook.circuit_cooldown_ms", d.circuit_cooldown_ms),
            ("webhook.poll_ms", d.poll_ms),
        ] {
            if value == 0 {
                return Err(ConfigError::new(key, "must be greater than 0"));
            }
        }
        if d.retry_max_ms < d.retry_min_ms {
            return Err(ConfigError::new(
                "webhook.retry_max_ms",
                "must be at least webhook.retry_min_ms",
            ));
        }
        if !self.webhooks.is_empty() && self.database.url.is_empty() {
            // The outbox is written in the append's own commit: it needs the Postgres store.
            return Err(ConfigError::new(
                "webhooks",
                "need database.url (the outbox is written in the same Postgres commit as the entry)",
            ));
        }
        let mut names = std::collections::HashSet::new();
        for (i, w) in self.webhooks.iter().enumerate() {
            let key = |k: &str| format!("webhooks[{i}].{k}");
            let err = |k: &str, m: String| Err(ConfigError::new(&key(k), m));
            match url::Url::parse(&w.url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                _ => return err("url", format!("`{}` is not an http(s) URL", w.url)),
            }
            if w.secret.len() < 16 {
                return err("secret", "must be at least 16 bytes".into());
            }
            if w.id().len() > 200 || !names.insert(w.id().to_owned()) {
                return err(
                    "name",
                    format!("`{}` is used twice or longer than 200 bytes", w.id()),
                );
            }
            if w.events.is_empty() {
                return err("events", "must list at least one entry type".into());
            }
            for e in &w.events {
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
            if w.rooms.is_empty()
                || w.rooms
                    .iter()
                    .any(|p| p.trim_end_matches('*').contains('*'))
            {
                return err(
                    "rooms",
                    "must list room patterns (`*` only at the end, `*` alone for every room)"
                        .into(),
                );
            }
            if w.timeout_ms == 0 || w.max_attempts == 0 {
                return err(
                    if w.timeout_ms == 0 {
                        "timeout_ms"
                    } else {
                        "max_attempts"
                    },
                    "must be greater than 0".into(),
                );
            }
        }
        Ok(())
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

fn default_node_id() -> String {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..6];
    format!("{host}-{suffix}")
}

/// config-rs errors mention the key in their text (`... for key `limits.burst``); keep that text and
/// pull the key out so `check-config` can name it on its own line.
fn from_config_error(e: config::ConfigError) -> ConfigError {
    if let config::ConfigError::FileParse { uri, cause } = &e {
        // The parser's message has the line and column; the key is the file.
        let file = uri.clone().unwrap_or_else(|| "a configuration file".into());
        return ConfigError {
            message: format!("syntax error in {file}: {cause}"),
            key: file,
        };
    }
    let text = e.to_string();
    let key = text
        .split("key `")
        .nth(1)
        .and_then(|s| s.split('`').next())
        .or_else(|| {
            text.split("field `")
                .nth(1)
                .and_then(|s| s.split('`').next())
        })
        .unwrap_or("?")
        .to_owned();
    ConfigError { key, message: text }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_load_and_are_standalone() {
        let s = Settings::load(None, &env(&[]), &[]).expect("defaults are valid");
        assert_eq!(s.http.bind, "127.0.0.1:8080");
        assert!(s.standalone());
        assert_eq!(s.limits.max_frame_bytes, 65536);
        assert_eq!(s.session.queue_max, 1024);
        assert!(!s.node.id.is_empty());
    }

    #[test]
    fn env_overrides_file_and_cli_overrides_env() {
        let e = env(&[
            ("CHORUS__HTTP__BIND", "0.0.0.0:9000"),
            ("CHORUS__LIMITS__BURST", "7"),
            ("CHORUS__REDIS__PREFIX", "t1"),
        ]);
        let s = Settings::load(None, &e, &[("limits.burst".into(), "9".into())]).unwrap();
        assert_eq!(s.http.bind, "0.0.0.0:9000");
        assert_eq!(s.redis.prefix, "t1");
        assert_eq!(s.limits.burst, 9);
    }

    #[test]
    fn every_unknown_key_is_named_with_its_full_path() {
        let e = env(&[
            ("CHORUS__LIMITS__BURSTS", "1"),
            ("CHORUS__NOPE__X", "1"),
            ("CHORUS__HTTP__BIND", "127.0.0.1:1"),
        ]);
        let err = Settings::load(None, &e, &[]).unwrap_err();
        assert_eq!(err.key, "limits.bursts", "{err}");
        assert!(err.message.contains("limits.bursts, nope.x"), "{err}");
    }

    #[test]
    fn single_underscore_variables_are_pointed_at_the_right_name() {
        let e = env(&[
            ("CHORUS_DATABASE_URL", "postgres://x/y"),
            ("CHORUS_ENV", "production"),
            ("CHORUS__HTTP__BIND", "x"),
            ("CHORUS_WHATEVER", "1"),
        ]);
        let w = env_typos(&e);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("did you mean CHORUS__DATABASE__URL"), "{w:?}");
        assert!(w[1].contains("CHORUS_WHATEVER is ignored"), "{w:?}");
    }

    #[test]
    fn a_missing_config_dir_and_a_bad_log_level_are_errors() {
        let missing = Path::new("/nonexistent/chorus-config");
        let err = Settings::load(Some(missing), &env(&[]), &[]).unwrap_err();
        assert_eq!(err.key, "--config-dir");
        let e = env(&[("CHORUS__LOG__LEVEL", "info,chorus=loud")]);
        assert_eq!(Settings::load(None, &e, &[]).unwrap_err().key, "log.level");
    }

    #[test]
    fn errors_name_the_key() {
        let e = env(&[("CHORUS__LIMITS__BURST", "lots")]);
        let err = Settings::load(None, &e, &[]).unwrap_err();
        assert_eq!(err.key, "limits.burst", "{err}");

        let e = env(&[("CHORUS__HTTP__BIND", "nowhere")]);
        assert_eq!(Settings::load(None, &e, &[]).unwrap_err().key, "http.bind");

        // The secret is a serving node's need, not a migration job's.
        let e = env(&[("CHORUS__DATABASE__URL", "postgres://localhost/x")]);
        let s = Settings::load(None, &e, &[]).expect("loads without the secret");
        assert_eq!(s.validate_secret().unwrap_err().key, "auth.jwt_secret");
    }

    #[test]
    fn several_redis_urls_or_cluster_true_mean_a_redis_cluster() {
        let secret = ("CHORUS__AUTH__JWT_SECRET", "0123456789abcdef-secret");
        let db = ("CHORUS__DATABASE__URL", "postgres://localhost/x");
        let e = env(&[secret, db, ("CHORUS__REDIS__URL", "redis://a:7000")]);
        assert!(!Settings::load(None, &e, &[]).unwrap().redis.clustered());
        let e = env(&[
            secret,
            db,
            (
                "CHORUS__REDIS__URL",
                "redis://u:pw@a:7000, redis://u:pw@b:7001",
            ),
        ]);
        let s = Settings::load(None, &e, &[]).unwrap();
        assert!(s.redis.clustered());
        assert_eq!(
            s.redis.urls(),
            ["redis://u:pw@a:7000", "redis://u:pw@b:7001"]
        );
        assert!(!s.masked().contains("pw@"), "{}", s.masked());
        let e = env(&[
            secret,
            db,
            ("CHORUS__REDIS__URL", "redis://a:7000"),
            ("CHORUS__REDIS__CLUSTER", "true"),
        ]);
        assert!(Settings::load(None, &e, &[]).unwrap().redis.clustered());
        let e = env(&[
            secret,
            db,
            ("CHORUS__REDIS__URL", "redis://a:7000"),
            ("CHORUS__REDIS__CLUSTER", "true"),
            ("CHORUS__REDIS__PREFIX", "{x}"),
        ]);
        assert_eq!(
            Settings::load(None, &e, &[]).unwrap_err().key,
            "redis.prefix"
        );
        let e = env(&[
            secret,
            db,
            ("CHORUS__REDIS__URL", "rediss://a:7000,redis://b:7001"),
        ]);
        assert_eq!(Settings::load(None, &e, &[]).unwrap_err().key, "redis.url");
        let e = env(&[("CHORUS__ROOM__RETENTION_DAYS", "30")]);
        assert_eq!(
            Settings::load(None, &e, &[]).unwrap_err().key,
            "room.retention_days"
        );
        let e = env(&[secret, db, ("CHORUS__REDIS__CLUSTER", "true")]);
        assert_eq!(
            Settings::load(None, &e, &[]).unwrap_err().key,
            "redis.cluster"
        );
    }

    #[test]
    fn a_cluster_needs_postgres_and_a_redis_url() {
        let secret = ("CHORUS__AUTH__JWT_SECRET", "0123456789abcdef-secret");
        let e = env(&[secret, ("CHORUS__REDIS__URL", "redis://127.0.0.1:6379")]);
        assert_eq!(Settings::load(None, &e, &[]).unwrap_err().key, "redis.url");
        let e = env(&[
            secret,
            ("CHORUS__DATABASE__URL", "postgres://localhost/x"),
            ("CHORUS__REDIS__URL", "http://cache:6380"),
        ]);
        assert_eq!(Settings::load(None, &e, &[]).unwrap_err().key, "redis.url");
        let e = env(&[
            secret,
            (
                "CHORUS__DATABASE__URL",
                "postgres://localhost/x?sslmode=verify-full",
            ),
            ("CHORUS__REDIS__URL", "rediss://cache:6380"),
            ("CHORUS__REDIS__CA_FILE", "/nonexistent/ca.pem"),
        ]);
        assert_eq!(
            Settings::load(None, &e, &[]).unwrap_err().key,
            "redis.ca_file"
        );
        let e = env(&[
            secret,
            ("CHORUS__DATABASE__URL", "postgres://localhost/x"),
            ("CHORUS__REDIS__URL", "redis://cache:6379/0"),
        ]);
        assert!(Settings::load(None, &e, &[]).is_ok());
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = Settings::load(None, &env(&[("CHORUS__HTTP__BINDD", "x")]), &[]).unwrap_err();
        assert!(err.message.contains("bindd"), "{err}");
    }

    #[test]
    fn webhooks_load_from_a_config_file_and_every_mistake_names_its_key() {
        let dir = std::env::temp_dir().join(format!("chorus-cfg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |hook: &str| {
            std::fs::write(dir.join("default.toml"), format!("[[webhooks]]\n{hook}\n")).unwrap()
        };
        let db = env(&[("CHORUS__DATABASE__URL", "postgres://localhost/x")]);
        let valid = "url = \"https://hooks.example/chorus\"\nsecret = \"0123456789abcdef\"";
        write(valid);
        let s = Settings::load(Some(&dir), &db, &[]).expect("a minimal endpoint loads");
        let hook = &s.webhooks[0];
        assert_eq!(
            hook.id(),
            "https://hooks.example/chorus",
            "named by its url"
        );
        assert_eq!(hook.events, WEBHOOK_EVENTS);
        assert_eq!(
            (hook.rooms.as_slice(), hook.timeout_ms, hook.max_attempts),
            (&["*".to_string()][..], 5000, 10)
        );
        assert!(
            !s.masked().contains("0123456789abcdef"),
            "the secret is masked"
        );
        let standalone = Settings::load(Some(&dir), &env(&[]), &[]).unwrap_err();
        assert_eq!(standalone.key, "webhooks", "the outbox needs Postgres");
        let secret = "secret = \"0123456789abcdef\"";
        for (hook, key) in [
            (format!("url = \"ftp://x/\"\n{secret}"), "webhooks[0].url"),
            (
                "url = \"http://x/\"\nsecret = \"short\"".to_string(),
                "webhooks[0].secret",
            ),
            (
                format!("url = \"http://x/\"\n{secret}\nevents = [\"presence\"]"),
                "webhooks[0].events",
            ),
            (
                format!("url = \"http://x/\"\n{secret}\nevents = [\"typing\"]"),
                "webhooks[0].events",
            ),
            (
                format!("url = \"http://x/\"\n{secret}\nrooms = [\"a*b\"]"),
                "webhooks[0].rooms",
            ),
            (
                format!("url = \"http://x/\"\n{secret}\nmax_attempts = 0"),
                "webhooks[0].max_attempts",
            ),
            (
                format!("url = \"http://x/\"\n{secret}\nretries = 3"),
                "webhooks[0]",
            ),
            (
                format!("{valid}\n[[webhooks]]\n{valid}"),
                "webhooks[1].name",
            ),
        ] {
            write(&hook);
            let err = Settings::load(Some(&dir), &db, &[]).unwrap_err();
            assert_eq!(err.key, key, "{hook}: {err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn masked_hides_secrets() {
        let e = env(&[
            ("CHORUS__AUTH__JWT_SECRET", "0123456789abcdef-secret"),
            ("CHORUS__DATABASE__URL", "postgres://app:hunter2@db/chorus"),
        ]);
        let text = Settings::load(None, &e, &[]).unwrap().masked();
        assert!(
            !text.contains("hunter2") && !text.contains("abcdef-secret"),
            "{text}"
        );
        assert!(text.contains("postgres://app:***@db/chorus"), "{text}");
    }
}
