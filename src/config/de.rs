//! How settings are read from their text: each rule sits on the field it governs (`#[serde(with
//! = …)]` in `settings.rs`), so a value that parses is a valid value, and an invalid one is an
//! error naming its key (config-rs adds the key to every error raised here).
//!
//! Durations are written in milliseconds (`*_ms` keys) and held as [`Duration`]s; lists are
//! comma-separated strings (the environment has no arrays) and held as vectors.

use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration in milliseconds.
pub mod millis {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        (d.as_millis() as u64).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// A duration in milliseconds, more than 0.
pub mod positive_millis {
    use super::*;

    pub use super::millis::serialize;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        match u64::deserialize(d)? {
            0 => Err(D::Error::custom("must be greater than 0")),
            ms => Ok(Duration::from_millis(ms)),
        }
    }
}

/// A count that must be more than 0 (a pool size, a queue length, a limit).
pub fn positive<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default + PartialOrd,
{
    let n = T::deserialize(d)?;
    if n <= T::default() {
        return Err(D::Error::custom("must be greater than 0"));
    }
    Ok(n)
}

/// A listen address like `127.0.0.1:8080`.
pub mod address {
    use super::*;

    pub fn serialize<S: Serializer>(a: &SocketAddr, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(a)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(|_| {
            D::Error::custom(format!("`{text}` is not an address like 127.0.0.1:8080"))
        })
    }
}

/// A comma-separated list (`a, b`; empty = none).
pub mod list {
    use super::*;

    pub fn serialize<S: Serializer>(items: &[String], s: S) -> Result<S::Ok, S::Error> {
        items.join(",").serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        let text = String::deserialize(d)?;
        Ok(text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect())
    }
}

/// A comma-separated list of IP addresses or CIDR ranges (`http.trusted_proxies`).
pub mod networks {
    use super::*;

    pub fn serialize<S: Serializer>(nets: &[IpNet], s: S) -> Result<S::Ok, S::Error> {
        let text: Vec<String> = nets.iter().map(IpNet::to_string).collect();
        text.join(",").serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
        let text = String::deserialize(d)?;
        crate::edge::admission::parse_trusted(&text).map_err(D::Error::custom)
    }
}

/// `log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human text.
    Text,
    /// One JSON object per line (production).
    Json,
}

/// `log.level`: a `tracing` filter, checked when it is read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct LogFilter(String);

impl LogFilter {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for LogFilter {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        tracing_subscriber::EnvFilter::try_new(&text)
            .map_err(|e| D::Error::custom(format!("`{text}` is not a log filter: {e}")))?;
        Ok(LogFilter(text))
    }
}
