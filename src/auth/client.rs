//! strom as a client of a Kafka listener: followers fetching from leaders on the inter-broker
//! listener, and strom's own tools with `--command-config`. `ClientSecurity` holds the TLS
//! client configuration and SASL credentials, built from the broker's settings for its
//! inter-broker listener or from Kafka client properties; `SaslClient` runs the client's side of
//! PLAIN or SCRAM as plain steps (the async and the blocking connection drive it alike).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::scram::ScramClient;
use crate::config::{Config, Mechanism};

/// A SASL identity to present.
#[derive(Clone)]
pub struct Credentials {
    pub mechanism: Mechanism,
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    // The password stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} as {}", self.mechanism.name(), self.user)
    }
}

/// How to connect to a listener: TLS (trusting its CA, presenting a certificate when given)
/// and/or SASL.
#[derive(Clone, Default)]
pub struct ClientSecurity {
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub sasl: Option<Credentials>,
}

/// `username="…" password="…"` out of a JAAS line (Kafka's `sasl.jaas.config`).
pub fn jaas_credentials(jaas: &str) -> Option<(String, String)> {
    let field = |name: &str| {
        let start = jaas.find(&format!("{name}=\""))? + name.len() + 2;
        let len = jaas[start..].find('"')?;
        Some(jaas[start..start + len].to_string())
    };
    Some((field("username")?, field("password")?))
}

fn tls_config(truststore: &Path, keystore: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(truststore)
        .map_err(|e| format!("cannot read {}: {e}", truststore.display()))?;
    for c in certs {
        let c = c.map_err(|e| format!("{}: {e}", truststore.display()))?;
        roots
            .add(c)
            .map_err(|e| format!("{}: {e}", truststore.display()))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots);
    match keystore {
        Some(ks) => {
            let chain = CertificateDer::pem_file_iter(ks)
                .map_err(|e| format!("cannot read {}: {e}", ks.display()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{}: {e}", ks.display()))?;
            let key = PrivateKeyDer::from_pem_file(ks)
                .map_err(|e| format!("{}: no usable private key: {e}", ks.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("{}: {e}", ks.display()))
        }
        None => Ok(builder.with_no_client_auth()),
    }
}

impl ClientSecurity {
    /// How this broker connects to other brokers' `inter.broker.listener.name`: that
    /// listener's TLS (its truststore, and its keystore as our certificate) and SASL with
    /// `sasl.mechanism.inter.broker.protocol` and the username and password of the listener's
    /// `listener.name.<l>.<mechanism>.sasl.jaas.config` (or `sasl.jaas.config`). An error
    /// names the setting.
    pub fn inter_broker(config: &Config) -> Result<ClientSecurity, (String, String)> {
        let listener = &config.inter_broker_listener;
        let Some(security) = config.security.get(listener) else {
            return Ok(ClientSecurity::default());
        };
        let tls = match &security.tls {
            Some(t) => {
                let trust = t.truststore.as_deref().ok_or_else(|| {
                    (
                        "ssl.truststore.location".to_string(),
                        format!("brokers connect to each other over TLS on `{listener}`: name the CA certificates to trust"),
                    )
                })?;
                Some(Arc::new(
                    tls_config(trust, Some(&t.keystore))
                        .map_err(|e| ("ssl.truststore.location".to_string(), e))?,
                ))
            }
            None => None,
        };
        let sasl = match &security.sasl {
            Some(_) => {
                let name = config
                    .values
                    .get("sasl.mechanism.inter.broker.protocol")
                    .cloned()
                    .unwrap_or_default();
                let mechanism = Mechanism::parse(&name).ok_or_else(|| {
                    (
                        "sasl.mechanism.inter.broker.protocol".to_string(),
                        format!("`{name}` is not a mechanism strom speaks (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)"),
                    )
                })?;
                let own = format!(
                    "listener.name.{}.{}.sasl.jaas.config",
                    listener.to_ascii_lowercase(),
                    name.to_ascii_lowercase()
                );
                let (setting, jaas) = match config.values.get(&own) {
                    Some(j) => (own, j.clone()),
                    None => (
                        "sasl.jaas.config".to_string(),
                        config
                            .values
                            .get("sasl.jaas.config")
                            .cloned()
                            .unwrap_or_default(),
                    ),
                };
                let (user, password) = jaas_credentials(&jaas).ok_or_else(|| {
                    (
                        setting,
                        "brokers authenticate to each other with SASL: give username=\"…\" password=\"…\"".to_string(),
                    )
                })?;
                Some(Credentials {
                    mechanism,
                    user,
                    password,
                })
            }
            None => None,
        };
        Ok(ClientSecurity { tls, sasl })
    }

    /// From Kafka client properties (a `--command-config` file): `security.protocol`,
    /// `ssl.truststore.location` (PEM; librdkafka's `ssl.ca.location` too),
    /// `ssl.keystore.location` (PEM, for client certificates), `sasl.mechanism`, and
    /// `sasl.jaas.config` (or librdkafka's `sasl.username` / `sasl.password`).
    pub fn from_properties(props: &BTreeMap<String, String>) -> Result<ClientSecurity, String> {
        let protocol = props
            .get("security.protocol")
            .map(|p| p.to_ascii_uppercase())
            .unwrap_or_else(|| "PLAINTEXT".into());
        let protocol = crate::config::SecurityProtocol::parse(&protocol)
            .ok_or_else(|| format!("security.protocol `{protocol}` is not one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"))?;
        let tls = if protocol.tls() {
            let trust = props
                .get("ssl.truststore.location")
                .or_else(|| props.get("ssl.ca.location"))
                .ok_or("security.protocol is TLS: give ssl.truststore.location (a PEM file of CA certificates)")?;
            let keystore = props.get("ssl.keystore.location").map(Path::new);
            Some(Arc::new(tls_config(Path::new(trust), keystore)?))
        } else {
            None
        };
        let sasl = if protocol.sasl() {
            let name = props
                .get("sasl.mechanism")
                .cloned()
                .unwrap_or_else(|| "GSSAPI".into());
            let mechanism = Mechanism::parse(&name).ok_or_else(|| {
                format!("sasl.mechanism `{name}` is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
            })?;
            let (user, password) = match props.get("sasl.jaas.config") {
                Some(j) => jaas_credentials(j)
                    .ok_or("sasl.jaas.config has no username=\"…\" password=\"…\"")?,
                None => (
                    props
                        .get("sasl.username")
                        .cloned()
                        .ok_or("give sasl.jaas.config or sasl.username")?,
                    props
                        .get("sasl.password")
                        .cloned()
                        .ok_or("give sasl.jaas.config or sasl.password")?,
                ),
            };
            Some(Credentials {
                mechanism,
                user,
                password,
            })
        } else {
            None
        };
        Ok(ClientSecurity { tls, sasl })
    }
}

/// The client's side of one SASL exchange, one token at a time.
pub struct SaslClient {
    scram: Option<ScramClient>,
    stage: u8,
}

impl SaslClient {
    /// Starts; returns the exchange and the first token to send.
    pub fn start(c: &Credentials) -> (SaslClient, Vec<u8>) {
        match c.mechanism {
            Mechanism::Plain => (
                SaslClient {
                    scram: None,
                    stage: 0,
                },
                format!("\0{}\0{}", c.user, c.password).into_bytes(),
            ),
            m => {
                let (scram, first) = ScramClient::start(m, &c.user, &c.password, &super::nonce());
                (
                    SaslClient {
                        scram: Some(scram),
                        stage: 0,
                    },
                    first,
                )
            }
        }
    }

    /// Takes the server's answer: the next token to send, or `None` when authenticated.
    pub fn next(&mut self, server: &[u8]) -> Result<Option<Vec<u8>>, String> {
        self.stage += 1;
        let Some(scram) = self.scram.as_mut() else {
            return Ok(None);
        };
        match self.stage {
            1 => scram.proof(server).map(Some).map_err(|e| e.to_string()),
            _ => scram
                .verify(server)
                .map(|_| None)
                .map_err(|e| format!("the server did not prove it knows the credential: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jaas_lines_give_their_username_and_password() {
        let jaas = r#"org.apache.kafka.common.security.scram.ScramLoginModule required username="broker" password="s3cr=t";"#;
        assert_eq!(
            jaas_credentials(jaas),
            Some(("broker".to_string(), "s3cr=t".to_string()))
        );
        assert_eq!(jaas_credentials("username=\"x\""), None);
    }

    #[test]
    fn client_properties_name_what_is_missing() {
        let props = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        assert!(ClientSecurity::from_properties(&props(&[])).is_ok());
        let err = ClientSecurity::from_properties(&props(&[("security.protocol", "SSL")]))
            .err()
            .expect("refused");
        assert!(err.contains("ssl.truststore.location"), "{err}");
        let err = ClientSecurity::from_properties(&props(&[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "PLAIN"),
        ]))
        .err()
        .expect("refused");
        assert!(err.contains("sasl"), "{err}");
        let ok = ClientSecurity::from_properties(&props(&[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "u"),
            ("sasl.password", "sekrit"),
        ]))
        .expect("valid");
        let shown = format!("{:?}", ok.sasl);
        assert!(
            shown.contains("SCRAM-SHA-512 as u") && !shown.contains("sekrit"),
            "{shown}"
        );
    }
}
