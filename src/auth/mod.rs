//! Who a client is: TLS on SSL and SASL_SSL listeners (`tls`), SASL PLAIN and SCRAM exchanges
//! (`sasl`, `scram`). One `ListenerAuth` per client listener is built at start from that
//! listener's settings (a missing or unreadable file fails the start, naming the setting) and
//! shared by its connections; a connection's own SASL state lives in `server`. SCRAM
//! credentials are read from the metadata image, where the controller writes them.
//! Secrets — passwords, keys, salts — are never logged or put in an error a client sees.

pub mod client;
pub mod sasl;
pub mod scram;
pub mod tls;
pub mod x509;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use ring::rand::SecureRandom;

use crate::config::{ListenerSecurity, Mechanism, SecurityProtocol};

/// A SASL listener's mechanisms and users.
pub struct Sasl {
    pub mechanisms: Vec<Mechanism>,
    pub plain: sasl::PlainUsers,
    /// `connections.max.reauth.ms`: how long an authentication lasts.
    pub session: Option<Duration>,
}

/// How one client listener admits connections.
pub struct ListenerAuth {
    pub protocol: SecurityProtocol,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub sasl: Option<Sasl>,
}

impl ListenerAuth {
    pub fn plaintext() -> ListenerAuth {
        ListenerAuth {
            protocol: SecurityProtocol::Plaintext,
            tls: None,
            sasl: None,
        }
    }

    /// Builds from a listener's settings, reading its PEM and users files; an error names the
    /// setting whose file is at fault.
    pub fn build(settings: &ListenerSecurity) -> Result<ListenerAuth, (String, String)> {
        let tls = match &settings.tls {
            Some(t) => Some(tokio_rustls::TlsAcceptor::from(tls::server_config(t)?)),
            None => None,
        };
        let sasl = match &settings.sasl {
            Some(s) => {
                let plain = match &s.plain_users {
                    Some(path) => {
                        let text = std::fs::read_to_string(path).map_err(|e| {
                            (
                                "sasl.plain.users.file".to_string(),
                                format!("cannot read {}: {e}", path.display()),
                            )
                        })?;
                        sasl::PlainUsers::parse(&text).map_err(|e| {
                            (
                                "sasl.plain.users.file".to_string(),
                                format!("{}: {e}", path.display()),
                            )
                        })?
                    }
                    None => sasl::PlainUsers::default(),
                };
                Some(Sasl {
                    mechanisms: s.mechanisms.clone(),
                    plain,
                    session: (s.reauth_ms > 0).then(|| Duration::from_millis(s.reauth_ms)),
                })
            }
            None => None,
        };
        Ok(ListenerAuth {
            protocol: settings.protocol,
            tls,
            sasl,
        })
    }
}

/// Fresh randomness for a SCRAM server nonce or salt.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    if ring::rand::SystemRandom::new().fill(&mut out).is_err() {
        // The OS random source failing is not something to serve through.
        panic!("the system random number generator failed");
    }
    out
}

/// A SCRAM server nonce: printable, no commas.
pub fn nonce() -> String {
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(random_bytes(24))
}

pub type Shared = Arc<ListenerAuth>;
