//! In-process HTTPS/WSS (`http.tls_cert`, `http.tls_key`): the rustls server configuration, with
//! a certificate that can be swapped while the server runs. `chorus serve` re-reads both files on
//! SIGHUP ([`Certificate::reload`]): new handshakes get the new certificate, open connections
//! (and their WebSocket sessions) keep theirs, so renewing a certificate drops nobody.

use std::fmt;
use std::sync::{Arc, RwLock};

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Reads and checks a PEM certificate chain and its private key.
pub fn load(cert: &str, key: &str) -> Result<CertifiedKey, String> {
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
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|e| format!("{key} is not the key of {cert}: {e}"))?;
    Ok(certified)
}

/// The node's certificate, swappable at run time.
#[derive(Clone)]
pub struct Certificate {
    paths: (String, String),
    current: Arc<RwLock<Arc<CertifiedKey>>>,
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
        Ok(Certificate {
            paths: (cert.to_owned(), key.to_owned()),
            current: Arc::new(RwLock::new(Arc::new(load(cert, key)?))),
        })
    }

    /// Reads the files again; on any error the certificate in use stays (and the error says why).
    pub fn reload(&self) -> Result<(), String> {
        let fresh = load(&self.paths.0, &self.paths.1)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(fresh);
        Ok(())
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
                .clone(),
        )
    }
}
