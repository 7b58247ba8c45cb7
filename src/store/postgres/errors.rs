//! Postgres failures in an operator's words, and as the store's errors: a connection failure is
//! `Unavailable` (retry), a data exception (SQLSTATE class 22) is `Invalid` (one entry's data),
//! anything else the server says is `Internal`. Logs name the hosts, never the password.

use super::super::StoreError;

pub fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    let text = match &e {
        deadpool_postgres::PoolError::Backend(pg) => describe(pg),
        deadpool_postgres::PoolError::Timeout(_) => "timeout: no connection in time".into(),
        other => other.to_string(),
    };
    StoreError::Unavailable(text)
}

/// `host:port[,host:port…]` of a Postgres URL: what logs name, never the password.
pub fn hosts_of(url: &str) -> String {
    let Ok(cfg) = crate::tls::postgres::parse(url).map(|t| t.config) else {
        return "(unparsable url)".into();
    };
    let ports = cfg.get_ports();
    cfg.get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match h {
                tokio_postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
                tokio_postgres::config::Host::Unix(path) => format!("{}:{port}", path.display()),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The cause of a Postgres failure in an operator's words: `authentication`, `connection
/// refused`, `timeout`, `DNS`, `TLS`, `database does not exist`, … followed by the detail.
pub fn describe(e: &tokio_postgres::Error) -> String {
    use std::error::Error as _;
    if let Some(db) = e.as_db_error() {
        let cause = match db.code().code() {
            "28P01" | "28000" => "authentication",
            "3D000" => "database does not exist",
            "57P03" => "server starting up",
            "53300" => "too many connections",
            _ => "server error",
        };
        return format!("{cause}: {} ({})", db.message(), db.code().code());
    }
    let mut detail = e.to_string();
    let mut io_kind = None;
    let mut source = e.source();
    while let Some(s) = source {
        detail = format!("{detail}: {s}");
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            io_kind = io_kind.or(Some(io.kind()));
        }
        source = s.source();
    }
    let lower = detail.to_lowercase();
    let cause = if lower.contains("tls") || lower.contains("certificate") {
        "TLS"
    } else if lower.contains("lookup") || lower.contains("resolve") {
        "DNS"
    } else {
        match io_kind {
            Some(std::io::ErrorKind::ConnectionRefused) => "connection refused",
            Some(std::io::ErrorKind::TimedOut) => "timeout",
            Some(std::io::ErrorKind::ConnectionReset) => "connection reset",
            Some(_) => "network",
            None if lower.contains("timed out") || lower.contains("timeout") => "timeout",
            None => "connection",
        }
    };
    format!("{cause}: {detail}")
}

/// Errors from the server (with an SQLSTATE) are internal, or `Invalid` for a data exception
/// (class 22: the data of one message); everything else is the connection.
pub fn pg_error(e: tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) if db.code().code().starts_with("22") => {
            StoreError::Invalid(format!("{}: {}", db.code().code(), db.message()))
        }
        Some(db) => StoreError::Internal(format!("{}: {}", db.code().code(), db.message())),
        None => StoreError::Unavailable(describe(&e)),
    }
}
