//! Listener security settings: each client listener's protocol (from
//! `listener.security.protocol.map`) and, for TLS and SASL listeners, the `ssl.*` and `sasl.*`
//! settings that apply to it — Kafka's per-listener form `listener.name.<name>.<setting>` first,
//! then the global setting. Only names and values are checked here; reading the PEM files is the
//! `auth` module's, at start.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// Kafka's four security protocols.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn parse(s: &str) -> Option<SecurityProtocol> {
        Some(match s {
            "PLAINTEXT" => SecurityProtocol::Plaintext,
            "SSL" => SecurityProtocol::Ssl,
            "SASL_PLAINTEXT" => SecurityProtocol::SaslPlaintext,
            "SASL_SSL" => SecurityProtocol::SaslSsl,
            _ => return None,
        })
    }

    pub fn tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    pub fn sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

/// A SASL mechanism strom serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl Mechanism {
    pub const ALL: [Mechanism; 3] = [
        Mechanism::Plain,
        Mechanism::ScramSha256,
        Mechanism::ScramSha512,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    pub fn parse(s: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name() == s)
    }
}

/// `ssl.client.auth`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    Requested,
    Required,
}

/// The TLS side of one listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    /// `ssl.keystore.location`: a PEM file with the private key and the certificate chain.
    pub keystore: PathBuf,
    /// `ssl.truststore.location`: PEM CA certificates that client certificates must chain to.
    pub truststore: Option<PathBuf>,
    pub client_auth: ClientAuth,
    /// `ssl.enabled.protocols`: TLSv1.2 and/or TLSv1.3.
    pub tls12: bool,
    pub tls13: bool,
    /// `ssl.cipher.suites`: IANA names; empty means rustls' defaults.
    pub cipher_suites: Vec<String>,
    /// How often the key and certificate files are checked for a change (0: never).
    pub reload_ms: u64,
}

/// The SASL side of one listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaslSettings {
    pub mechanisms: Vec<Mechanism>,
    /// `sasl.plain.users.file`: `name=password` lines for PLAIN.
    pub plain_users: Option<PathBuf>,
    /// `connections.max.reauth.ms` (0: sessions never expire).
    pub reauth_ms: u64,
}

/// Everything one client listener needs to admit a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerSecurity {
    pub protocol: SecurityProtocol,
    pub tls: Option<TlsSettings>,
    pub sasl: Option<SaslSettings>,
}

impl ListenerSecurity {
    pub fn plaintext() -> ListenerSecurity {
        ListenerSecurity {
            protocol: SecurityProtocol::Plaintext,
            tls: None,
            sasl: None,
        }
    }
}

/// Settings Kafka allows per listener (`listener.name.<name>.<setting>`) that strom reads.
pub const PER_LISTENER: &[&str] = &[
    "ssl.keystore.type",
    "ssl.keystore.location",
    "ssl.key.password",
    "ssl.truststore.type",
    "ssl.truststore.location",
    "ssl.client.auth",
    "ssl.enabled.protocols",
    "ssl.cipher.suites",
    "ssl.certificate.reload.ms",
    "sasl.enabled.mechanisms",
    "sasl.plain.users.file",
    "connections.max.reauth.ms",
];

/// `listener.name.<listener>.<setting>` → (the name with the listener lower-cased, the global
/// setting it stands for), when it is one strom reads. `<mechanism>.sasl.jaas.config` (Kafka's
/// per-listener, per-mechanism form) stands for `sasl.jaas.config`.
pub fn per_listener_setting(name: &str) -> Option<(String, &'static str)> {
    let rest = name.strip_prefix("listener.name.")?;
    let (listener, setting) = rest.split_once('.')?;
    let base = match PER_LISTENER.iter().copied().find(|s| *s == setting) {
        Some(base) => base,
        None => {
            let (mechanism, jaas) = setting.split_once('.')?;
            Mechanism::parse(&mechanism.to_ascii_uppercase())?;
            (jaas == "sasl.jaas.config").then_some("sasl.jaas.config")?
        }
    };
    Some((
        format!(
            "listener.name.{}.{}",
            listener.to_ascii_lowercase(),
            setting.to_ascii_lowercase()
        ),
        base,
    ))
}

/// A problem with one setting: its (full) name and why.
pub type Problem = (String, String);

/// Resolves listener `name` with `protocol`: each setting from its per-listener form if given,
/// else the global one (`values` holds both, defaults included).
pub fn resolve(
    name: &str,
    protocol: SecurityProtocol,
    values: &BTreeMap<String, String>,
) -> Result<ListenerSecurity, Problem> {
    let key = |setting: &str| {
        let own = format!("listener.name.{}.{setting}", name.to_ascii_lowercase());
        if values.contains_key(&own) {
            own
        } else {
            setting.to_string()
        }
    };
    let get = |setting: &str| {
        let k = key(setting);
        let v = values.get(&k).cloned().unwrap_or_default();
        (k, v.trim().to_string())
    };
    let tls = if protocol.tls() {
        Some(tls_settings(&get)?)
    } else {
        None
    };
    let sasl = if protocol.sasl() {
        Some(sasl_settings(&get)?)
    } else {
        None
    };
    Ok(ListenerSecurity {
        protocol,
        tls,
        sasl,
    })
}

fn tls_settings(get: &dyn Fn(&str) -> (String, String)) -> Result<TlsSettings, Problem> {
    for store in ["ssl.keystore.type", "ssl.truststore.type"] {
        let (k, v) = get(store);
        if !v.eq_ignore_ascii_case("PEM") {
            return Err((
                k,
                format!("`{v}` is not supported; strom reads PEM files only"),
            ));
        }
    }
    let (k, v) = get("ssl.key.password");
    if !v.is_empty() {
        return Err((
            k,
            "encrypted private keys are not supported; give an unencrypted PEM key (keep the file readable by strom only)".into(),
        ));
    }
    let (k, keystore) = get("ssl.keystore.location");
    if keystore.is_empty() {
        return Err((
            k,
            "a TLS listener needs a PEM file with its key and certificate chain".into(),
        ));
    }
    let (_, truststore) = get("ssl.truststore.location");
    let (k, auth) = get("ssl.client.auth");
    let client_auth = match auth.as_str() {
        "none" | "" => ClientAuth::None,
        "requested" => ClientAuth::Requested,
        "required" => ClientAuth::Required,
        _ => return Err((k, "expected none, requested or required".into())),
    };
    if client_auth != ClientAuth::None && truststore.is_empty() {
        return Err((
            "ssl.truststore.location".into(),
            format!(
                "ssl.client.auth={auth} needs the CA certificates client certificates chain to"
            ),
        ));
    }
    let (k, protocols) = get("ssl.enabled.protocols");
    let (mut tls12, mut tls13) = (false, false);
    for p in protocols
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        match p {
            "TLSv1.2" => tls12 = true,
            "TLSv1.3" => tls13 = true,
            other => {
                return Err((
                    k,
                    format!("`{other}` is not supported; TLSv1.2 and TLSv1.3 are"),
                ))
            }
        }
    }
    if !tls12 && !tls13 {
        return Err((k, "names no protocol".into()));
    }
    let (_, suites) = get("ssl.cipher.suites");
    let (k, reload) = get("ssl.certificate.reload.ms");
    let reload_ms = reload
        .parse::<u64>()
        .map_err(|_| (k, "expected a number of milliseconds".to_string()))?;
    Ok(TlsSettings {
        keystore: PathBuf::from(keystore),
        truststore: (!truststore.is_empty()).then(|| PathBuf::from(truststore)),
        client_auth,
        tls12,
        tls13,
        cipher_suites: suites
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
        reload_ms,
    })
}

fn sasl_settings(get: &dyn Fn(&str) -> (String, String)) -> Result<SaslSettings, Problem> {
    let (k, list) = get("sasl.enabled.mechanisms");
    let mut mechanisms = Vec::new();
    for m in list.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        match Mechanism::parse(m) {
            Some(m) => mechanisms.push(m),
            None => {
                return Err((
                    k,
                    format!("`{m}` is not supported; PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 are"),
                ))
            }
        }
    }
    if mechanisms.is_empty() {
        return Err((k, "a SASL listener needs at least one mechanism".into()));
    }
    let (k, users) = get("sasl.plain.users.file");
    if mechanisms.contains(&Mechanism::Plain) && users.is_empty() {
        return Err((
            k,
            "PLAIN is enabled, so name the file of its users (`name=password` lines)".into(),
        ));
    }
    let (k, reauth) = get("connections.max.reauth.ms");
    let reauth_ms = reauth
        .parse::<u64>()
        .map_err(|_| (k, "expected a number of milliseconds".to_string()))?;
    Ok(SaslSettings {
        mechanisms,
        plain_users: (!users.is_empty()).then(|| PathBuf::from(users)),
        reauth_ms,
    })
}

/// One SCRAM credential to create when the cluster is formed
/// (`scram.bootstrap.credentials`, kafka-storage's `--add-scram` syntax).
#[derive(Clone, PartialEq, Eq)]
pub struct BootstrapCredential {
    pub mechanism: Mechanism,
    pub user: String,
    pub password: String,
    pub iterations: u32,
}

impl std::fmt::Debug for BootstrapCredential {
    // The password never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}[name={}]", self.mechanism.name(), self.user)
    }
}

/// Parses `SCRAM-SHA-512=[name=admin,password=admin-secret]` entries separated by `;`
/// (`iterations=N` optional, 4096 by default as Kafka's).
pub fn parse_bootstrap_credentials(value: &str) -> Result<Vec<BootstrapCredential>, String> {
    let mut out = Vec::new();
    for entry in value.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let (mech, rest) = entry
            .split_once('=')
            .ok_or("expected MECHANISM=[name=…,password=…]")?;
        let mechanism = Mechanism::parse(mech.trim())
            .filter(|m| *m != Mechanism::Plain)
            .ok_or_else(|| format!("`{}` is not a SCRAM mechanism", mech.trim()))?;
        let inner = rest
            .trim()
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .ok_or("the credential must be in brackets: [name=…,password=…]")?;
        let (mut user, mut password, mut iterations) = (None, None, 4096u32);
        for field in inner.split(',') {
            let (k, v) = field.split_once('=').ok_or("expected key=value")?;
            let v = v.trim().trim_matches('"').to_string();
            match k.trim() {
                "name" => user = Some(v),
                "password" => password = Some(v),
                "iterations" => {
                    iterations = v
                        .parse()
                        .ok()
                        .filter(|i| (4096..=16384).contains(i))
                        .ok_or("iterations must be between 4096 and 16384")?
                }
                other => return Err(format!("unknown field `{other}`")),
            }
        }
        let user = user.filter(|u| !u.is_empty()).ok_or("a name is required")?;
        let password = password
            .filter(|p| !p.is_empty())
            .ok_or("a password is required")?;
        out.push(BootstrapCredential {
            mechanism,
            user,
            password,
            iterations,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut v: BTreeMap<String, String> = super::super::SETTINGS
            .iter()
            .map(|s| (s.name.to_string(), s.default.to_string()))
            .collect();
        v.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        v
    }

    #[test]
    fn a_listeners_own_setting_wins_over_the_global_one() {
        let v = values(&[
            ("ssl.keystore.location", "/global.pem"),
            ("listener.name.external.ssl.keystore.location", "/own.pem"),
            ("listener.name.external.ssl.client.auth", "required"),
            ("ssl.truststore.location", "/ca.pem"),
        ]);
        let ext = resolve("EXTERNAL", SecurityProtocol::Ssl, &v).expect("valid");
        let tls = ext.tls.expect("tls");
        assert_eq!(tls.keystore, PathBuf::from("/own.pem"));
        assert_eq!(tls.client_auth, ClientAuth::Required);
        let int = resolve("INTERNAL", SecurityProtocol::Ssl, &v).expect("valid");
        let tls = int.tls.expect("tls");
        assert_eq!(tls.keystore, PathBuf::from("/global.pem"));
        assert_eq!(tls.client_auth, ClientAuth::None);
        assert!(int.sasl.is_none());
    }

    #[test]
    fn problems_name_the_setting_that_has_them() {
        let err = |pairs: &[(&str, &str)], protocol| {
            resolve("EXT", protocol, &values(pairs)).expect_err("refused")
        };
        assert_eq!(err(&[], SecurityProtocol::Ssl).0, "ssl.keystore.location");
        let (k, why) = err(
            &[
                ("ssl.keystore.location", "/k.pem"),
                ("listener.name.ext.ssl.keystore.type", "JKS"),
            ],
            SecurityProtocol::Ssl,
        );
        assert_eq!(k, "listener.name.ext.ssl.keystore.type");
        assert!(why.contains("PEM"), "{why}");
        // Kafka's default mechanism is GSSAPI, which strom does not serve.
        let (k, why) = err(&[], SecurityProtocol::SaslPlaintext);
        assert_eq!(k, "sasl.enabled.mechanisms");
        assert!(why.contains("GSSAPI"), "{why}");
        let (k, _) = err(
            &[("sasl.enabled.mechanisms", "PLAIN")],
            SecurityProtocol::SaslPlaintext,
        );
        assert_eq!(k, "sasl.plain.users.file");
        let ok = resolve(
            "EXT",
            SecurityProtocol::SaslPlaintext,
            &values(&[("sasl.enabled.mechanisms", "SCRAM-SHA-512,SCRAM-SHA-256")]),
        )
        .expect("valid");
        assert_eq!(
            ok.sasl.expect("sasl").mechanisms,
            [Mechanism::ScramSha512, Mechanism::ScramSha256]
        );
    }

    #[test]
    fn bootstrap_credentials_read_kafka_storages_syntax_and_never_print_the_password() {
        let c = parse_bootstrap_credentials(
            "SCRAM-SHA-512=[name=admin,password=admin-secret];SCRAM-SHA-256=[name=app,password=\"p w\",iterations=8192]",
        )
        .expect("valid");
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].user, "admin");
        assert_eq!(c[0].iterations, 4096);
        assert_eq!(c[1].password, "p w");
        assert_eq!(c[1].iterations, 8192);
        assert!(!format!("{c:?}").contains("secret"));
        assert!(parse_bootstrap_credentials("PLAIN=[name=a,password=b]").is_err());
        assert!(parse_bootstrap_credentials("SCRAM-SHA-256=[name=a]").is_err());
        assert!(
            parse_bootstrap_credentials("SCRAM-SHA-256=[name=a,password=b,iterations=10]").is_err()
        );
    }
}
