//! TLS for client listeners with rustls (ring as the provider): the server configuration built
//! from a listener's `ssl.*` settings, and a certificate resolver that notices a changed key or
//! certificate file (checked at most every `ssl.certificate.reload.ms`, on a handshake) and
//! serves the new pair without a restart. A file that does not load keeps the old pair in use.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};

use crate::config::{ClientAuth, TlsSettings};

fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// Reads a PEM file holding a private key and its certificate chain.
fn load_key_pair(path: &Path, provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: bad certificate: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no certificate", path.display()));
    }
    let key = PrivateKeyDer::from_pem_file(path)
        .map_err(|e| format!("{}: no usable private key: {e}", path.display()))?;
    let key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("{}: unsupported private key: {e}", path.display()))?;
    Ok(Arc::new(CertifiedKey::new(certs, key)))
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The listener's key pair, reloaded when its file changes.
#[derive(Debug)]
struct Reloading {
    path: PathBuf,
    every: Option<Duration>,
    provider: Arc<CryptoProvider>,
    state: Mutex<Current>,
}

#[derive(Debug)]
struct Current {
    key: Arc<CertifiedKey>,
    modified: Option<SystemTime>,
    checked: Instant,
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let mut current = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(every) = self.every {
            if current.checked.elapsed() >= every {
                current.checked = Instant::now();
                let now = modified(&self.path);
                if now != current.modified {
                    match load_key_pair(&self.path, &self.provider) {
                        Ok(key) => {
                            current.key = key;
                            current.modified = now;
                            tracing::info!(file = %self.path.display(), "loaded the changed TLS key and certificate");
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "the changed TLS key file does not load; keeping the previous one")
                        }
                    }
                }
            }
        }
        Some(current.key.clone())
    }
}

/// Builds a TLS listener's server configuration; the error names the setting at fault.
pub fn server_config(settings: &TlsSettings) -> Result<Arc<ServerConfig>, (String, String)> {
    let mut provider = provider();
    if !settings.cipher_suites.is_empty() {
        let mut chosen = Vec::new();
        for want in &settings.cipher_suites {
            // Kafka lists IANA names (TLS_AES_128_GCM_SHA256); rustls calls the TLS 1.3 ones
            // TLS13_…
            let found = provider.cipher_suites.iter().find(|s| {
                let name = format!("{:?}", s.suite());
                name == *want || name.replacen("TLS13_", "TLS_", 1) == *want
            });
            match found {
                Some(s) => chosen.push(*s),
                None => {
                    return Err((
                        "ssl.cipher.suites".into(),
                        format!("`{want}` is not a cipher suite rustls offers"),
                    ))
                }
            }
        }
        provider.cipher_suites = chosen;
    }
    let provider = Arc::new(provider);
    let key = load_key_pair(&settings.keystore, &provider)
        .map_err(|e| ("ssl.keystore.location".to_string(), e))?;
    let mut versions = Vec::new();
    if settings.tls13 {
        versions.push(&rustls::version::TLS13);
    }
    if settings.tls12 {
        versions.push(&rustls::version::TLS12);
    }
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| ("ssl.enabled.protocols".to_string(), e.to_string()))?;
    let builder = match (&settings.truststore, settings.client_auth) {
        (Some(ca), auth) if auth != ClientAuth::None => {
            let mut roots = RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(ca)
                .map_err(|e| {
                    (
                        "ssl.truststore.location".to_string(),
                        format!("cannot read {}: {e}", ca.display()),
                    )
                })?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ("ssl.truststore.location".to_string(), e.to_string()))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err((
                    "ssl.truststore.location".into(),
                    format!("{} holds no CA certificate", ca.display()),
                ));
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let verifier = if auth == ClientAuth::Requested {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|e| ("ssl.truststore.location".to_string(), e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    let resolver = Reloading {
        path: settings.keystore.clone(),
        every: (settings.reload_ms > 0).then(|| Duration::from_millis(settings.reload_ms)),
        provider,
        state: Mutex::new(Current {
            key,
            modified: modified(&settings.keystore),
            checked: Instant::now(),
        }),
    };
    Ok(Arc::new(builder.with_cert_resolver(Arc::new(resolver))))
}
