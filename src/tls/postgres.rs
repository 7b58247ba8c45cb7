//! How to reach Postgres: a `database.url` / `read_url` with libpq's `sslmode` and `sslrootcert`
//! turned into a tokio-postgres configuration and, when TLS is asked for, a rustls connector
//! (tokio-postgres-rustls). tokio-postgres itself knows only `disable|prefer|require` and no
//! `sslrootcert`, so both are taken out of the URL here and applied with [`crate::tls`]:
//!
//! | `sslmode` | TLS | certificate checked |
//! |---|---|---|
//! | absent, `disable` | no | - |
//! | `allow`, `prefer` | if the server offers it | no |
//! | `require` | yes | chain only if `sslrootcert` is given (as libpq) |
//! | `verify-ca` | yes | chain (against `sslrootcert`, else the system's roots) |
//! | `verify-full` | yes | chain and host name |
//!
//! An absent `sslmode` means `disable` (libpq's default is `prefer`): a node never starts TLS
//! with a server unless told to, so an operator always knows which connections are encrypted.

use std::path::PathBuf;

use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{Verify, client_config};

/// A parsed Postgres target: where, who, and how to secure the connection.
pub struct PgTarget {
    pub config: tokio_postgres::Config,
    /// `None`: plain TCP.
    pub tls: Option<MakeRustlsConnect>,
}

/// Splits `sslmode` and `sslrootcert` out of a URL (`postgres://…?sslmode=…`) or a key-value
/// string (`host=… sslmode=…`); returns the rest, and the two values.
fn split_tls_params(url: &str) -> (String, Option<String>, Option<String>) {
    let (mut mode, mut root) = (None, None);
    let mut take = |key: &str, value: String| match key {
        "sslmode" => {
            mode = Some(value);
            true
        }
        "sslrootcert" => {
            root = Some(value);
            true
        }
        _ => false,
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        match url.split_once('?') {
            Some((base, query)) => {
                let kept: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
                    .filter(|(k, v)| !take(k, v.to_string()))
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
                if kept.is_empty() {
                    base.to_owned()
                } else {
                    let query = url::form_urlencoded::Serializer::new(String::new())
                        .extend_pairs(kept)
                        .finish();
                    format!("{base}?{query}")
                }
            }
            None => url.to_owned(),
        }
    } else {
        url.split_whitespace()
            .filter(|pair| match pair.split_once('=') {
                Some((k, v)) => !take(k, v.trim_matches('\'').to_owned()),
                None => true,
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    (rest, mode, root)
}

/// Parses a Postgres URL with its TLS settings; the error says what is wrong (never the
/// password: tokio-postgres's parse errors name the option, not its value).
pub fn parse(url: &str) -> Result<PgTarget, String> {
    let (rest, mode, root) = split_tls_params(url);
    let mut config: tokio_postgres::Config = rest.parse().map_err(|e| format!("{e}"))?;
    let root = root.map(PathBuf::from);
    let (ssl, verify) = match mode.as_deref() {
        None | Some("disable") => (SslMode::Disable, None),
        Some("allow" | "prefer") => (SslMode::Prefer, Some(Verify::Nothing)),
        Some("require") if root.is_some() => (SslMode::Require, Some(Verify::Chain)),
        Some("require") => (SslMode::Require, Some(Verify::Nothing)),
        Some("verify-ca") => (SslMode::Require, Some(Verify::Chain)),
        Some("verify-full") => (SslMode::Require, Some(Verify::Full)),
        Some(other) => {
            return Err(format!(
                "sslmode `{other}` is not one of disable, allow, prefer, require, verify-ca, verify-full"
            ));
        }
    };
    config.ssl_mode(ssl);
    let tls = match verify {
        Some(v) => Some(MakeRustlsConnect::new(client_config(v, root.as_deref())?)),
        None => None,
    };
    Ok(PgTarget { config, tls })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_and_sslrootcert_are_taken_out_of_both_url_forms() {
        let (rest, mode, root) = split_tls_params(
            "postgres://u:p@db:5432/chorus?sslmode=verify-full&application_name=x&sslrootcert=%2Fetc%2Frds.pem",
        );
        assert_eq!(rest, "postgres://u:p@db:5432/chorus?application_name=x");
        assert_eq!(mode.as_deref(), Some("verify-full"));
        assert_eq!(root.as_deref(), Some("/etc/rds.pem"));
        let (rest, mode, root) = split_tls_params("host=db user=u sslmode=require dbname=c");
        assert_eq!(rest, "host=db user=u dbname=c");
        assert_eq!((mode.as_deref(), root), (Some("require"), None));
        let (rest, mode, _) = split_tls_params("postgres://db/chorus");
        assert_eq!((rest.as_str(), mode), ("postgres://db/chorus", None));
    }

    #[test]
    fn each_sslmode_maps_to_a_connection_mode_and_a_bad_one_is_named() {
        let mode =
            |m: &str| parse(&format!("postgres://db/c?sslmode={m}")).map(|t| t.tls.is_some());
        assert_eq!(mode("disable"), Ok(false));
        assert_eq!(mode("prefer"), Ok(true));
        assert_eq!(mode("require"), Ok(true));
        assert!(parse("postgres://db/c").is_ok_and(|t| t.tls.is_none()));
        assert!(mode("sometimes").unwrap_err().contains("`sometimes`"));
        let missing = parse("postgres://db/c?sslmode=verify-full&sslrootcert=/nonexistent.pem");
        assert!(
            missing
                .err()
                .is_some_and(|e| e.contains("/nonexistent.pem"))
        );
    }
}
