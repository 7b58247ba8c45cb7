//! In-process HTTPS/WSS (`http.tls_cert`, `http.tls_key`): the rustls server configuration, with
//! a certificate that can be swapped while the server runs. `chorus serve` re-reads both files on
//! SIGHUP ([`Certificate::reload`]): new handshakes get the new certificate, open connections
//! (and their WebSocket sessions) keep theirs, so renewing a certificate drops nobody.
//!
//! A certificate outside its validity (expired, or not valid yet) is refused: at start, by
//! `check-config`, and on SIGHUP (which keeps serving the previous one). [`Leaf`] is what the
//! node says about the one it serves: its serial and SHA-256 fingerprint in the logs, its expiry
//! as `chorus_tls_cert_expiry_seconds`.

use std::fmt;
use std::sync::{Arc, RwLock};

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The served (leaf) certificate, as the logs and the metrics name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    pub subject: String,
    /// Hex, colon-separated, as `openssl x509 -serial` prints it (with colons).
    pub serial: String,
    /// SHA-256 of the DER, hex, as `openssl x509 -fingerprint -sha256` prints it (lower case).
    pub sha256: String,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
}

impl Leaf {
    pub fn of(der: &CertificateDer<'_>) -> Result<Leaf, String> {
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
            .map_err(|e| format!("cannot parse the certificate: {e}"))?;
        let digest = ring::digest::digest(&ring::digest::SHA256, der.as_ref());
        let sha256: Vec<String> = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        Ok(Leaf {
            subject: cert.subject().to_string(),
            serial: cert.tbs_certificate.raw_serial_as_string(),
            sha256: sha256.join(":"),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
        })
    }

    /// Seconds from `now` (Unix seconds) until it expires; negative once it has.
    pub fn expires_in(&self, now: i64) -> i64 {
        self.not_after - now
    }

    /// Refuses a certificate that is not valid at `now`.
    pub fn check(&self, now: i64) -> Result<(), String> {
        if now > self.not_after {
            Err(format!(
                "the certificate expired at {} ({}; serial {})",
                date(self.not_after),
                self.subject,
                self.serial
            ))
        } else if now < self.not_before {
            Err(format!(
                "the certificate is not valid before {} ({}; serial {}): is the clock right?",
                date(self.not_before),
                self.subject,
                self.serial
            ))
        } else {
            Ok(())
        }
    }

    /// Logs what is served now: once at start and on every reload; a warning when it expires
    /// within `warn_days`.
    pub fn log(&self, what: &str, warn_days: u32) {
        let days = self.expires_in(chrono::Utc::now().timestamp()) / 86_400;
        let (subject, serial, sha256) = (&self.subject, &self.serial, &self.sha256);
        let not_after = date(self.not_after);
        if days < i64::from(warn_days) {
            tracing::warn!(%subject, %serial, %sha256, %not_after, days_left = days,
                "{what}; it expires within http.tls_warn_days: renew it");
        } else {
            tracing::info!(%subject, %serial, %sha256, %not_after, days_left = days, "{what}");
        }
    }
}

fn date(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0).map_or_else(|| unix.to_string(), |d| d.to_rfc3339())
}

/// Reads and checks a PEM certificate chain and its private key, and that the certificate is
/// valid now.
pub fn load(cert: &str, key: &str) -> Result<(CertifiedKey, Leaf), String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect())
        .map_err(|e| format!("cannot read the certificate chain {cert}: {e}"))?;
    if chain.is_empty() {
        return Err(format!("no certificate in {cert}"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read the private key {key}: {e}"))?;
    let signing = crate::tls::provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| format!("unusable private key {key}: {e}"))?;
    let leaf = Leaf::of(&chain[0]).map_err(|e| format!("{cert}: {e}"))?;
    leaf.check(chrono::Utc::now().timestamp())
        .map_err(|e| format!("{cert}: {e}"))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|e| format!("{key} is not the key of {cert}: {e}"))?;
    Ok((certified, leaf))
}

/// The node's certificate, swappable at run time.
#[derive(Clone)]
pub struct Certificate {
    paths: (String, String),
    current: Arc<RwLock<(Arc<CertifiedKey>, Leaf)>>,
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("cert", &self.paths.0)
            .finish()
    }
}

impl Certificate {
    pub fn open(cert: &str, key: &str) -> Result<Certificate, String> {
        let (certified, leaf) = load(cert, key)?;
        Ok(Certificate {
            paths: (cert.to_owned(), key.to_owned()),
            current: Arc::new(RwLock::new((Arc::new(certified), leaf))),
        })
    }

    /// Reads the files again; on any error (an expired certificate included) the certificate
    /// in use stays, and the error says why. The new certificate's [`Leaf`] when it worked.
    pub fn reload(&self) -> Result<Leaf, String> {
        let (certified, leaf) = load(&self.paths.0, &self.paths.1)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) =
            (Arc::new(certified), leaf.clone());
        Ok(leaf)
    }

    /// The certificate served now.
    pub fn leaf(&self) -> Leaf {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .clone()
    }

    /// The server configuration: HTTP/1.1 only (WebSocket upgrades need it), this certificate.
    pub fn server_config(&self) -> Result<ServerConfig, String> {
        let mut config = ServerConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(self.clone()));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .0
                .clone(),
        )
    }
}
