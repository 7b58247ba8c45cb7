//! The rules between keys, and the checks a value's type cannot make alone (a URL the Postgres
//! driver must parse, a file that must exist, a certificate that must load). Each rule is one
//! small function; [`Settings::validate`] runs them all, and the first failure names its key.
//! Values that cannot parse never get here: `de.rs` refused them while loading.

use std::collections::HashSet;

use super::error::ConfigError;
use super::settings::Settings;

type Rule = fn(&Settings) -> Result<(), ConfigError>;

/// Every rule, in the order their errors are reported.
const RULES: &[Rule] = &[
    node_id,
    database_urls,
    redis_urls,
    redis_prefix,
    redis_ca_file,
    a_cluster_needs_postgres,
    retention_needs_postgres,
    handshake_timeout,
    tls_pair,
    body_below_frame,
    header_limit,
    session_timeout_above_heartbeat,
    dead_after_above_heartbeat,
    webhook_dispatch,
    webhooks,
];

impl Settings {
    /// Checks every rule a running node relies on, except the secret ([`Self::validate_secret`]).
    pub fn validate(&self) -> Result<(), ConfigError> {
        RULES.iter().try_for_each(|rule| rule(self))
    }

    /// The signing secret a serving node needs (not `chorus migrate`: a migration job should not
    /// hold it). Checked by `serve`, `check-config` and `Node::start`.
    pub fn validate_secret(&self) -> Result<(), ConfigError> {
        if !self.standalone() && self.auth.jwt_secret.len() < 16 {
            return Err(ConfigError::new(
                "auth.jwt_secret",
                "must be set (at least 16 bytes) when database.url or redis.url is set",
            ));
        }
        Ok(())
    }
}

fn node_id(s: &Settings) -> Result<(), ConfigError> {
    if s.node.id.is_empty() || s.node.id.len() > 128 {
        return Err(ConfigError::new("node.id", "must be 1-128 characters"));
    }
    Ok(())
}

fn database_urls(s: &Settings) -> Result<(), ConfigError> {
    for (key, url) in [
        ("database.url", &s.database.url),
        ("database.read_url", &s.database.read_url),
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
    if !s.database.read_url.is_empty() && s.database.url.is_empty() {
        return Err(ConfigError::new(
            "database.read_url",
            "needs database.url (a reader without a writer)",
        ));
    }
    Ok(())
}

fn redis_urls(s: &Settings) -> Result<(), ConfigError> {
    let urls = s.redis.urls();
    let scheme = |u: &&str| ["redis://", "rediss://"].iter().any(|p| u.starts_with(p));
    if !urls.iter().all(scheme) {
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
    if s.redis.clustered() && s.redis.url.is_empty() {
        return Err(ConfigError::new(
            "redis.cluster",
            "needs redis.url (a seed node of the cluster)",
        ));
    }
    Ok(())
}

fn redis_prefix(s: &Settings) -> Result<(), ConfigError> {
    if s.redis.prefix.is_empty() {
        return Err(ConfigError::new("redis.prefix", "must not be empty"));
    }
    if s.redis.clustered() && s.redis.prefix.contains(['{', '}']) {
        // Keys and channels carry hash tags ({room}, {prefix}) that decide their shard.
        return Err(ConfigError::new(
            "redis.prefix",
            "must not contain { or } with redis.cluster (they would change which shard holds a key)",
        ));
    }
    Ok(())
}

fn redis_ca_file(s: &Settings) -> Result<(), ConfigError> {
    if !s.redis.ca_file.is_empty() && !std::path::Path::new(&s.redis.ca_file).is_file() {
        return Err(ConfigError::new(
            "redis.ca_file",
            format!("{} is not a readable file", s.redis.ca_file),
        ));
    }
    Ok(())
}

/// Nodes with separate in-memory histories would hand out the same seqs for different messages.
fn a_cluster_needs_postgres(s: &Settings) -> Result<(), ConfigError> {
    if !s.redis.url.is_empty() && s.database.url.is_empty() {
        return Err(ConfigError::new(
            "redis.url",
            "a cluster needs database.url too (the in-memory store is per node)",
        ));
    }
    Ok(())
}

fn retention_needs_postgres(s: &Settings) -> Result<(), ConfigError> {
    if s.room.retention_days > 0 && s.database.url.is_empty() {
        return Err(ConfigError::new(
            "room.retention_days",
            "needs database.url (the in-memory store keeps everything until the node stops)",
        ));
    }
    Ok(())
}

/// actix's timers read a clock that ticks every 500 ms: shorter budgets fire early.
fn handshake_timeout(s: &Settings) -> Result<(), ConfigError> {
    if s.http.handshake_timeout.as_millis() < 1000 {
        return Err(ConfigError::new(
            "http.handshake_timeout_ms",
            "must be at least 1000",
        ));
    }
    Ok(())
}

/// Both files or neither; the one that is missing is the key at fault.
fn tls_pair(s: &Settings) -> Result<(), ConfigError> {
    let (cert, key) = (&s.http.tls_cert, &s.http.tls_key);
    match (cert.is_empty(), key.is_empty()) {
        (true, true) => Ok(()),
        (false, true) => Err(ConfigError::new(
            "http.tls_key",
            "must be set too: http.tls_cert is set (the PEM private key of that certificate)",
        )),
        (true, false) => Err(ConfigError::new(
            "http.tls_cert",
            "must be set too: http.tls_key is set (the PEM certificate chain for that key)",
        )),
        (false, false) => crate::tls::server::load(cert, key)
            .map(drop)
            .map_err(|e| ConfigError::new("http.tls_cert", e)),
    }
}

fn body_below_frame(s: &Settings) -> Result<(), ConfigError> {
    if s.limits.max_body_bytes >= s.limits.max_frame_bytes {
        return Err(ConfigError::new(
            "limits.max_body_bytes",
            "must be smaller than limits.max_frame_bytes",
        ));
    }
    Ok(())
}

/// actix-http buffers at most 128 KiB of request head and answers 431 itself above it.
const HEAD_BUFFER: usize = 131_072;

fn header_limit(s: &Settings) -> Result<(), ConfigError> {
    let n = s.limits.max_header_bytes;
    if !(1024..=HEAD_BUFFER).contains(&n) {
        return Err(ConfigError::new(
            "limits.max_header_bytes",
            format!("must be between 1024 and {HEAD_BUFFER} (the HTTP parser's buffer), not {n}"),
        ));
    }
    Ok(())
}

fn session_timeout_above_heartbeat(s: &Settings) -> Result<(), ConfigError> {
    if s.session.timeout <= s.session.heartbeat {
        return Err(ConfigError::new(
            "session.timeout_ms",
            "must be greater than session.heartbeat_ms",
        ));
    }
    Ok(())
}

fn dead_after_above_heartbeat(s: &Settings) -> Result<(), ConfigError> {
    if s.cluster.dead_after <= s.cluster.heartbeat {
        return Err(ConfigError::new(
            "cluster.dead_after_ms",
            "must be greater than cluster.heartbeat_ms",
        ));
    }
    Ok(())
}

fn webhook_dispatch(s: &Settings) -> Result<(), ConfigError> {
    s.webhook.check()
}

fn webhooks(s: &Settings) -> Result<(), ConfigError> {
    if !s.webhooks.is_empty() && s.database.url.is_empty() {
        // The outbox is written in the append's own commit: it needs the Postgres store.
        return Err(ConfigError::new(
            "webhooks",
            "need database.url (the outbox is written in the same Postgres commit as the entry)",
        ));
    }
    let mut names = HashSet::new();
    for (i, w) in s.webhooks.iter().enumerate() {
        w.check(i)?;
        if !names.insert(w.id()) {
            return Err(ConfigError::new(
                &format!("webhooks[{i}].name"),
                format!("`{}` is used twice", w.id()),
            ));
        }
    }
    Ok(())
}
