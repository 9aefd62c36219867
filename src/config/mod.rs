//! The broker's configuration: one `Config` value built at start from Kafka property names.
//!
//! Sources, later wins: built-in defaults, a properties file (`--config`), environment variables
//! (`STROM_` + the name upper-cased with dots as underscores) and `--set name=value`. Every
//! setting is validated here, once; an unknown or invalid setting is an error that names it.
//! This module does no I/O beyond reading the properties file. The value is shared as
//! `Arc<Config>`, never as a global.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::types::NodeId;

pub mod kafka;
mod security;
mod settings;
mod topic;

pub use security::*;
use settings::Kind;
pub use settings::{Setting, SETTINGS};
pub use topic::*;

/// A configuration problem found at start. The message always names the setting.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown setting `{name}` (from {source_name}){}; run `strom settings` for the list",
        suggestion.as_ref().map(|s| format!("; did you mean `{s}`?")).unwrap_or_default())]
    Unknown {
        name: String,
        source_name: String,
        suggestion: Option<String>,
    },
    #[error("invalid value {value:?} for `{name}` (from {source_name}): {reason}")]
    Invalid {
        name: String,
        value: String,
        source_name: String,
        reason: String,
    },
    #[error("cannot read config file {path}: {err}")]
    File { path: String, err: std::io::Error },
    #[error("config file {path} line {line}: expected `name=value`")]
    Syntax { path: String, line: usize },
}

pub fn setting(name: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.name == name)
}

/// A Kafka-style listener: `NAME://host:port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    pub name: String,
    pub host: String,
    pub port: u16,
}

impl Listener {
    /// The address to bind: an IP, or a host name resolved now (as Kafka allows in `listeners`).
    pub fn socket_addr(&self) -> Result<SocketAddr, String> {
        use std::net::ToSocketAddrs;
        let host = if self.host.is_empty() {
            "0.0.0.0"
        } else {
            &self.host
        };
        (host, self.port)
            .to_socket_addrs()
            .map_err(|e| format!("`{host}:{}` does not resolve: {e}", self.port))?
            .next()
            .ok_or_else(|| format!("`{host}:{}` resolves to no address", self.port))
    }
}

fn parse_listeners(value: &str) -> Result<Vec<Listener>, String> {
    let mut out = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, rest) = item
            .split_once("://")
            .ok_or_else(|| format!("`{item}` is not NAME://host:port"))?;
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| format!("`{item}` has no port"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| format!("`{item}` has an invalid port"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if out.iter().any(|l: &Listener| l.name == name) {
            return Err(format!("listener name `{name}` appears twice"));
        }
        out.push(Listener {
            name: name.to_string(),
            host,
            port,
        });
    }
    Ok(out)
}

/// One Raft voter from `controller.quorum.voters`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Voter {
    pub id: NodeId,
    pub host: String,
    pub port: u16,
}

/// `max.connections.per.ip.overrides`: `host-or-ip:count` pairs, comma-separated; a host name
/// stands for every address it resolves to now.
fn parse_ip_overrides(
    value: &str,
) -> Result<std::collections::HashMap<std::net::IpAddr, usize>, String> {
    use std::net::{IpAddr, ToSocketAddrs};
    let mut out = std::collections::HashMap::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (host, count) = entry
            .rsplit_once(':')
            .ok_or_else(|| format!("`{entry}` is not host:count"))?;
        let count: usize = count
            .trim()
            .parse()
            .map_err(|_| format!("`{entry}`: the count is not a non-negative number"))?;
        let host = host.trim().trim_start_matches('[').trim_end_matches(']');
        let ips: Vec<IpAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => (host, 0)
                .to_socket_addrs()
                .map_err(|e| format!("`{host}` does not resolve: {e}"))?
                .map(|a| a.ip())
                .collect(),
        };
        for ip in ips {
            out.insert(ip, count);
        }
    }
    Ok(out)
}

fn parse_voters(value: &str) -> Result<Vec<Voter>, String> {
    let mut out = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, addr) = item
            .split_once('@')
            .ok_or_else(|| format!("`{item}` is not id@host:port"))?;
        let id: NodeId = id
            .parse()
            .map_err(|_| format!("`{item}` has an invalid id"))?;
        let (host, port) = addr
            .rsplit_once(':')
            .ok_or_else(|| format!("`{item}` has no port"))?;
        let port = port
            .parse()
            .map_err(|_| format!("`{item}` has an invalid port"))?;
        out.push(Voter {
            id,
            host: host.to_string(),
            port,
        });
    }
    Ok(out)
}

/// The validated configuration. Built once by [`Config::load`] and shared as `Arc<Config>`.
#[derive(Clone, Debug)]
pub struct Config {
    pub node_id: NodeId,
    pub roles: Vec<String>,
    /// Client listeners (everything not named in `controller.listener.names`).
    pub listeners: Vec<Listener>,
    /// The listener the Raft quorum binds.
    pub controller_listener: Listener,
    /// Endpoints registered for clients, one per client listener name.
    pub advertised: Vec<Listener>,
    pub voters: Vec<Voter>,
    pub log_dir: PathBuf,
    pub num_partitions: i32,
    pub default_replication_factor: i16,
    pub min_insync_replicas: i32,
    pub auto_create_topics: bool,
    pub log: LogDefaults,
    pub socket_request_max_bytes: usize,
    pub retention_check_interval_ms: u64,
    pub flush_check_interval_ms: u64,
    pub quorum_request_timeout_ms: u64,
    pub shutdown_timeout_ms: u64,
    /// `controlled.shutdown.linger.ms`.
    pub shutdown_linger_ms: u64,
    pub session_timeout_ms: u64,
    pub heartbeat_interval_ms: u64,
    /// `broker.lease.ms`: 0 = no lease.
    pub broker_lease_ms: u64,
    pub unclean_leader_election: bool,
    pub metadata_snapshot_interval: u64,
    /// The listener name whose advertised endpoints followers fetch from.
    pub inter_broker_listener: String,
    pub replica_lag_max_ms: u64,
    pub auto_leader_rebalance: bool,
    pub leader_imbalance_check_ms: u64,
    pub groups: GroupSettings,
    pub txn: TxnSettings,
    pub cleaner: CleanerSettings,
    /// `admin.http.listener`: where `/metrics`, `/health` and `/ready` are served (None: off).
    pub admin_http: Option<std::net::SocketAddr>,
    /// Consumer fetches send record data with sendfile.
    pub fetch_zero_copy: bool,
    /// `fetch.max.wait.cap.ms`: a Fetch's max_wait_ms is cut to this.
    pub fetch_max_wait_cap: std::time::Duration,
    /// Every setting's effective value, by Kafka name (DescribeConfigs reads this).
    pub values: BTreeMap<String, String>,
    /// Kafka broker settings that were given but do not apply to strom (its JVM thread pools,
    /// features not built yet); accepted, and named in one warning at start.
    pub ignored: Vec<String>,
    /// Request bytes held at once over all connections (None: no bound).
    pub queued_max_request_bytes: Option<usize>,
    /// `queued.max.requests`: requests read and waiting for a handler, over all connections.
    pub queued_max_requests: usize,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// `max.connections.per.ip.overrides`: addresses with their own limit.
    pub max_connections_per_ip_overrides: std::collections::HashMap<std::net::IpAddr, usize>,
    /// None: idle connections are never closed.
    pub connections_max_idle: Option<std::time::Duration>,
    /// SO_SNDBUF / SO_RCVBUF for connections (None: the kernel's autotuning).
    pub socket_send_buffer: Option<u32>,
    pub socket_receive_buffer: Option<u32>,
    pub recovery_threads: usize,
    /// Segment log files kept open at once (`log.max.open.files`; 0 resolved from the
    /// process's open-file limit).
    pub max_open_log_files: usize,
    /// Each client listener's security protocol and its TLS and SASL settings, by name.
    pub security: BTreeMap<String, ListenerSecurity>,
    /// SCRAM credentials the first controller writes when it forms the cluster.
    pub scram_bootstrap: Vec<BootstrapCredential>,
    /// Mutual TLS between controllers and brokers on the controller listener (its protocol
    /// is SSL), or None: plaintext gRPC.
    pub controller_tls: Option<TlsSettings>,
    /// ACLs in force (`authorizer.class.name` set), or None: everyone may do everything.
    pub authorizer: Option<AuthorizerSettings>,
}

/// The authorizer's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthorizerSettings {
    /// `super.users`: principals that pass every check.
    pub super_users: Vec<String>,
    pub allow_if_no_acl: bool,
}

/// The group coordinator's settings (Kafka's `offsets.*` and `group.*`).
#[derive(Clone, Debug, PartialEq)]
pub struct GroupSettings {
    pub offsets_partitions: i32,
    pub offsets_replication_factor: i16,
    pub offsets_segment_bytes: i64,
    pub offsets_retention_ms: i64,
    pub offsets_check_interval_ms: u64,
    pub commit_timeout_ms: u64,
    pub metadata_max_bytes: usize,
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    pub initial_rebalance_delay_ms: u64,
    pub max_size: usize,
}

/// The transaction coordinator's settings (Kafka's `transaction.*`).
#[derive(Clone, Debug, PartialEq)]
pub struct TxnSettings {
    pub log_partitions: i32,
    pub log_replication_factor: i16,
    pub log_min_isr: i32,
    pub log_segment_bytes: i64,
    pub max_timeout_ms: i32,
    pub id_expiration_ms: i64,
    pub abort_check_interval_ms: u64,
    pub expiry_check_interval_ms: u64,
    /// `transaction.partition.verification.enable`.
    pub partition_verification: bool,
}

/// Broker-level defaults for per-partition log behaviour; topic configs override them.
#[derive(Clone, Debug, PartialEq)]
pub struct LogDefaults {
    pub segment_bytes: u64,
    pub roll_ms: i64,
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub index_interval_bytes: u64,
    pub max_message_bytes: usize,
    pub flush_interval_messages: i64,
    /// fsync once the oldest unflushed append is this old (checked by a periodic task).
    pub flush_interval_ms: i64,
    /// Start asynchronous writeback every this many bytes appended to a segment (0: never).
    pub writeback_bytes: u64,
    /// Forget an idempotent producer silent this long (-1: never).
    pub producer_expiration_ms: i64,
    pub timestamps: TimestampPolicy,
    /// `cleanup.policy`: retention deletes old segments, the cleaner compacts, or both.
    pub cleanup: CleanupPolicy,
    /// `min.cleanable.dirty.ratio`: clean once this share of the log is dirty.
    pub min_cleanable_ratio: f64,
    /// `min.compaction.lag.ms`: records younger than this are not compacted.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: a dirty record this old makes the log cleanable whatever its
    /// ratio.
    pub max_compaction_lag_ms: i64,
    /// `delete.retention.ms`: how long a tombstone outlives the cleaner's first pass over it.
    pub delete_retention_ms: i64,
}

/// What a log's `cleanup.policy` asks for (Kafka allows either or both).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CleanupPolicy {
    pub delete: bool,
    pub compact: bool,
}

impl CleanupPolicy {
    pub const DELETE: CleanupPolicy = CleanupPolicy {
        delete: true,
        compact: false,
    };
    pub const COMPACT: CleanupPolicy = CleanupPolicy {
        delete: false,
        compact: true,
    };

    /// A comma-separated list of `delete` and `compact`; `None` for anything else.
    pub fn parse(value: &str) -> Option<CleanupPolicy> {
        let mut p = CleanupPolicy::default();
        for item in value.split(',').map(str::trim) {
            match item {
                "delete" => p.delete = true,
                "compact" => p.compact = true,
                _ => return None,
            }
        }
        Some(p)
    }
}

/// The log cleaner's settings (Kafka's `log.cleaner.*`).
#[derive(Clone, Debug, PartialEq)]
pub struct CleanerSettings {
    pub enable: bool,
    pub threads: usize,
    /// Bytes read plus written per second over all cleaner threads (None: no limit).
    pub io_max_bytes_per_second: Option<f64>,
    /// Memory for the key map of one pass, over all threads.
    pub dedupe_buffer_size: usize,
    pub backoff_ms: u64,
}

/// How a partition treats record timestamps (Kafka's `message.timestamp.*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimestampPolicy {
    /// LogAppendTime: batches are stamped with the broker's clock on append.
    pub log_append_time: bool,
    /// CreateTime: how far before / after the broker's clock a batch's timestamps may be.
    pub before_max_ms: i64,
    pub after_max_ms: i64,
}

/// Where a raw setting came from, for error messages.
pub struct Source<'a> {
    pub name: String,
    pub pairs: Vec<(&'a str, &'a str)>,
}

impl Config {
    /// Builds the configuration from an optional properties file, the process environment and
    /// `--set` pairs.
    pub fn load(file: Option<&str>, sets: &[String]) -> Result<Config, ConfigError> {
        let mut raw: BTreeMap<String, (String, String)> = BTreeMap::new();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|err| ConfigError::File {
                path: path.to_string(),
                err,
            })?;
            for (i, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                    continue;
                }
                let (k, v) = line.split_once('=').ok_or(ConfigError::Syntax {
                    path: path.to_string(),
                    line: i + 1,
                })?;
                raw.insert(
                    k.trim().to_string(),
                    (v.trim().to_string(), format!("file {path}")),
                );
            }
        }
        for (key, value) in std::env::vars() {
            if let Some(rest) = key.strip_prefix("STROM_") {
                let name = rest.to_ascii_lowercase().replace('_', ".");
                raw.insert(name, (value, format!("environment variable {key}")));
            }
        }
        for set in sets {
            let (k, v) = set.split_once('=').ok_or_else(|| ConfigError::Invalid {
                name: set.clone(),
                value: String::new(),
                source_name: "--set".into(),
                reason: "expected name=value".into(),
            })?;
            raw.insert(k.trim().to_string(), (v.trim().to_string(), "--set".into()));
        }
        Self::from_raw(raw)
    }

    /// Builds from `name → (value, source description)`; used by `load` and by tests.
    pub fn from_raw(raw: BTreeMap<String, (String, String)>) -> Result<Config, ConfigError> {
        let mut values: BTreeMap<String, String> = SETTINGS
            .iter()
            .map(|s| (s.name.to_string(), s.default.to_string()))
            .collect();
        let mut sources: BTreeMap<String, String> = BTreeMap::new();
        let mut ignored = Vec::new();
        for (name, (value, source_name)) in raw {
            // `listener.name.<listener>.<setting>`: kept under the listener's lower-case name.
            let (name, base) = match security::per_listener_setting(&name) {
                Some((full, base)) => (full, base.to_string()),
                None => (name.clone(), name),
            };
            let Some(s) = setting(&base) else {
                if kafka::is_broker_setting(&name) {
                    ignored.push(name);
                    continue;
                }
                let suggestion = kafka::nearest(&name, SETTINGS.iter().map(|s| s.name));
                return Err(ConfigError::Unknown {
                    name,
                    source_name,
                    suggestion,
                });
            };
            let invalid = |reason: String| ConfigError::Invalid {
                name: name.clone(),
                value: value.clone(),
                source_name: source_name.clone(),
                reason,
            };
            match s.kind {
                Kind::Int { min } => {
                    let v: i64 = value
                        .parse()
                        .map_err(|_| invalid("expected an integer".into()))?;
                    if v < min {
                        return Err(invalid(format!("must be at least {min}")));
                    }
                }
                Kind::Bool => {
                    if value != "true" && value != "false" {
                        return Err(invalid("expected true or false".into()));
                    }
                }
                Kind::Text => {}
            }
            sources.insert(name.clone(), source_name);
            values.insert(name, value);
        }
        let mut config = Self::build(values, &sources)?;
        config.ignored = ignored;
        Ok(config)
    }

    fn build(
        mut values: BTreeMap<String, String>,
        sources: &BTreeMap<String, String>,
    ) -> Result<Config, ConfigError> {
        // Kafka's precedence: .ms over .minutes over .hours; -1 in any keeps data forever.
        let given = |n: &str| sources.contains_key(n);
        let num = |n: &str| {
            values
                .get(n)
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(0)
        };
        let scaled = |v: i64, unit: i64| if v < 0 { -1 } else { v.saturating_mul(unit) };
        let retention_ms = if given("log.retention.ms") {
            num("log.retention.ms")
        } else if given("log.retention.minutes") {
            scaled(num("log.retention.minutes"), 60_000)
        } else {
            scaled(num("log.retention.hours"), 3_600_000)
        };
        let roll_ms = if given("log.roll.ms") {
            num("log.roll.ms")
        } else {
            scaled(num("log.roll.hours"), 3_600_000)
        };
        values.insert("log.retention.ms".into(), retention_ms.to_string());
        values.insert("log.roll.ms".into(), roll_ms.to_string());
        let get = |n: &str| values.get(n).cloned().unwrap_or_default();
        let int = |n: &str| get(n).parse::<i64>().unwrap_or(0);
        let invalid = |n: &str, reason: String| ConfigError::Invalid {
            name: n.to_string(),
            value: get(n),
            source_name: sources
                .get(n)
                .cloned()
                .unwrap_or_else(|| "default".to_string()),
            reason,
        };

        let max_connections_per_ip_overrides =
            parse_ip_overrides(&get("max.connections.per.ip.overrides"))
                .map_err(|reason| invalid("max.connections.per.ip.overrides", reason))?;
        if int("max.connections.per.ip") == 0 && max_connections_per_ip_overrides.is_empty() {
            // Kafka's rule: 0 would refuse every client.
            return Err(invalid(
                "max.connections.per.ip",
                "0 needs max.connections.per.ip.overrides to allow some addresses".into(),
            ));
        }
        let node_id = NodeId::try_from(int("node.id"))
            .map_err(|_| invalid("node.id", "out of range".into()))?;
        let roles: Vec<String> = get("process.roles")
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if roles.is_empty() || roles.iter().any(|r| r != "broker" && r != "controller") {
            return Err(invalid(
                "process.roles",
                "expected `broker`, `controller` or both".into(),
            ));
        }
        if !roles.iter().any(|r| r == "broker") {
            return Err(invalid(
                "process.roles",
                "a controller-only node is not supported yet; include `broker`".into(),
            ));
        }
        let all = parse_listeners(&get("listeners")).map_err(|r| invalid("listeners", r))?;
        let protocol_map: BTreeMap<String, String> = get("listener.security.protocol.map")
            .split(',')
            .filter_map(|p| p.split_once(':'))
            .map(|(a, b)| (a.trim().to_string(), b.trim().to_string()))
            .collect();
        let controller_names: Vec<String> = get("controller.listener.names")
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        let mut security = BTreeMap::new();
        let mut controller_tls = None;
        for l in &all {
            let protocol = match protocol_map.get(&l.name).map(String::as_str) {
                Some(p) => SecurityProtocol::parse(p).ok_or_else(|| {
                    invalid(
                        "listener.security.protocol.map",
                        format!("listener `{}` uses `{p}`; expected PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL", l.name),
                    )
                })?,
                None => {
                    return Err(invalid(
                        "listener.security.protocol.map",
                        format!("listener `{}` has no security protocol", l.name),
                    ))
                }
            };
            let resolved =
                security::resolve(&l.name, protocol, &values).map_err(|(name, reason)| {
                    ConfigError::Invalid {
                        value: values.get(&name).cloned().unwrap_or_default(),
                        source_name: sources
                            .get(&name)
                            .cloned()
                            .unwrap_or_else(|| "default".to_string()),
                        name,
                        reason: format!("listener `{}`: {reason}", l.name),
                    }
                })?;
            if controller_names.contains(&l.name) {
                match protocol {
                    SecurityProtocol::Plaintext => {}
                    SecurityProtocol::Ssl
                        if resolved.tls.as_ref().is_some_and(|t| t.truststore.is_some()) =>
                    {
                        controller_tls = resolved.tls;
                    }
                    SecurityProtocol::Ssl => {
                        return Err(invalid(
                            "ssl.truststore.location",
                            format!("the controller listener `{}` uses SSL: name the CA certificates its peers' certificates chain to", l.name),
                        ))
                    }
                    _ => {
                        return Err(invalid(
                            "listener.security.protocol.map",
                            format!("the controller listener `{}` must be PLAINTEXT or SSL (SASL between controllers is not built)", l.name),
                        ))
                    }
                }
            } else {
                security.insert(l.name.clone(), resolved);
            }
            l.socket_addr().map_err(|r| invalid("listeners", r))?;
        }
        let controller_listener = all
            .iter()
            .find(|l| controller_names.contains(&l.name))
            .cloned()
            .ok_or_else(|| {
                invalid(
                    "listeners",
                    format!(
                        "no listener named by controller.listener.names ({})",
                        controller_names.join(",")
                    ),
                )
            })?;
        let listeners: Vec<Listener> = all
            .iter()
            .filter(|l| !controller_names.contains(&l.name))
            .cloned()
            .collect();
        if listeners.is_empty() {
            return Err(invalid(
                "listeners",
                "no client listener (only controller listeners)".into(),
            ));
        }
        let advertised_raw = get("advertised.listeners");
        let advertised = if advertised_raw.trim().is_empty() {
            listeners.clone()
        } else {
            parse_listeners(&advertised_raw).map_err(|r| invalid("advertised.listeners", r))?
        };
        // Kafka 4 also advertises controller listeners (KIP-853); voters' addresses come from
        // controller.quorum.voters here, so those entries are accepted and not given to clients.
        let (advertised_controller, advertised): (Vec<Listener>, Vec<Listener>) = advertised
            .into_iter()
            .partition(|a| controller_names.contains(&a.name));
        for a in &advertised {
            if !listeners.iter().any(|l| l.name == a.name) {
                return Err(invalid(
                    "advertised.listeners",
                    format!("`{}` is not the name of a client listener", a.name),
                ));
            }
            if a.host == "0.0.0.0" || a.host == "::" {
                return Err(invalid(
                    "advertised.listeners",
                    format!("`{}` advertises {} which clients cannot connect to; set advertised.listeners", a.name, a.host),
                ));
            }
        }
        let advertised: Vec<Listener> = listeners
            .iter()
            .map(|l| {
                advertised
                    .iter()
                    .find(|a| a.name == l.name)
                    .cloned()
                    .unwrap_or_else(|| l.clone())
            })
            .collect();
        if let Some(bad) = advertised
            .iter()
            .find(|a| a.host == "0.0.0.0" || a.host.is_empty() || a.host == "::")
        {
            return Err(invalid(
                "advertised.listeners",
                format!("listener `{}` binds {}; set an address clients can reach in advertised.listeners", bad.name, bad.host),
            ));
        }
        let mut voters = parse_voters(&get("controller.quorum.voters"))
            .map_err(|r| invalid("controller.quorum.voters", r))?;
        let is_controller = roles.iter().any(|r| r == "controller");
        let bootstrap_servers = get("controller.quorum.bootstrap.servers")
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .count();
        if voters.is_empty() && bootstrap_servers > 1 {
            return Err(invalid(
                "controller.quorum.bootstrap.servers",
                "a dynamic quorum of several controllers (KIP-853) is not supported; list every voter in controller.quorum.voters".into(),
            ));
        }
        if voters.is_empty() && !is_controller {
            return Err(invalid(
                "controller.quorum.voters",
                "a broker-only node (process.roles=broker) needs the voters of an existing quorum"
                    .into(),
            ));
        }
        if !is_controller && voters.iter().any(|v| v.id == node_id) {
            return Err(invalid(
                "controller.quorum.voters",
                format!(
                    "node.id={node_id} is listed as a voter but process.roles has no `controller`"
                ),
            ));
        }
        if voters.is_empty() {
            // This node alone: its own Raft address, as advertised if it is, else as bound (a
            // wildcard bind is reached on loopback).
            let own = advertised_controller
                .iter()
                .find(|a| a.name == controller_listener.name)
                .unwrap_or(&controller_listener);
            let host = match own.host.as_str() {
                "" | "0.0.0.0" => "127.0.0.1".to_string(),
                "::" => "::1".to_string(),
                h => h.to_string(),
            };
            voters.push(Voter {
                id: node_id,
                host,
                port: own.port,
            });
        }
        if roles.iter().any(|r| r == "controller") && !voters.iter().any(|v| v.id == node_id) {
            return Err(invalid(
                "controller.quorum.voters",
                format!("this node (node.id={node_id}) is a controller but not in the voter list"),
            ));
        }
        let mut ids: Vec<NodeId> = voters.iter().map(|v| v.id).collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() != voters.len() {
            return Err(invalid(
                "controller.quorum.voters",
                "a voter id appears twice".into(),
            ));
        }
        if int("broker.heartbeat.interval.ms") >= int("broker.session.timeout.ms") {
            return Err(invalid(
                "broker.heartbeat.interval.ms",
                "must be shorter than broker.session.timeout.ms".into(),
            ));
        }

        let (lease, session) = (int("broker.lease.ms"), int("broker.session.timeout.ms"));
        if lease != 0 && (lease >= session || lease <= int("broker.heartbeat.interval.ms")) {
            return Err(invalid(
                "broker.lease.ms",
                format!(
                    "must be 0 (off) or between broker.heartbeat.interval.ms ({}) and \
                     broker.session.timeout.ms ({session}), exclusive",
                    int("broker.heartbeat.interval.ms")
                ),
            ));
        }
        if get("log.dirs").contains(',') {
            return Err(invalid(
                "log.dirs",
                "only one log directory is supported".into(),
            ));
        }
        if get("log.dirs").trim().is_empty() {
            return Err(invalid("log.dirs", "must not be empty".into()));
        }
        let inter_broker_listener = match get("inter.broker.listener.name").trim() {
            "" => listeners[0].name.clone(),
            name if listeners.iter().any(|l| l.name == name) => name.to_string(),
            name => {
                return Err(invalid(
                    "inter.broker.listener.name",
                    format!("`{name}` is not the name of a client listener"),
                ))
            }
        };
        let scram_bootstrap = security::parse_bootstrap_credentials(&get(
            "scram.bootstrap.credentials",
        ))
        .map_err(|reason| ConfigError::Invalid {
            name: "scram.bootstrap.credentials".into(),
            // Passwords are never echoed.
            value: "(hidden)".into(),
            source_name: sources
                .get("scram.bootstrap.credentials")
                .cloned()
                .unwrap_or_default(),
            reason,
        })?;
        let authorizer = match get("authorizer.class.name").trim() {
            "" => None,
            "org.apache.kafka.metadata.authorizer.StandardAuthorizer" | "strom" => {
                Some(AuthorizerSettings {
                    super_users: get("super.users")
                        .split(';')
                        .map(str::trim)
                        .filter(|u| !u.is_empty())
                        .map(String::from)
                        .collect(),
                    allow_if_no_acl: get("allow.everyone.if.no.acl.found") == "true",
                })
            }
            other => {
                return Err(invalid(
                    "authorizer.class.name",
                    format!("`{other}` is not available; use org.apache.kafka.metadata.authorizer.StandardAuthorizer"),
                ))
            }
        };
        if let Some(bad) = get("super.users")
            .split(';')
            .map(str::trim)
            .find(|u| !u.is_empty() && !u.contains(':'))
        {
            return Err(invalid(
                "super.users",
                format!("`{bad}` is not TYPE:NAME (e.g. User:admin)"),
            ));
        }
        let ratio = |n: &str| {
            get(n)
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|v| (0.0..=1.0).contains(v))
                .ok_or_else(|| invalid(n, "expected a number between 0 and 1".into()))
        };
        let log = LogDefaults {
            segment_bytes: int("log.segment.bytes") as u64,
            roll_ms: int("log.roll.ms"),
            retention_ms: int("log.retention.ms"),
            retention_bytes: int("log.retention.bytes"),
            index_interval_bytes: int("log.index.interval.bytes") as u64,
            max_message_bytes: int("message.max.bytes") as usize,
            flush_interval_messages: int("log.flush.interval.messages"),
            flush_interval_ms: int("log.flush.interval.ms"),
            writeback_bytes: int("log.writeback.bytes") as u64,
            producer_expiration_ms: int("producer.id.expiration.ms"),
            timestamps: TimestampPolicy {
                log_append_time: match get("log.message.timestamp.type").as_str() {
                    "CreateTime" => false,
                    "LogAppendTime" => true,
                    _ => {
                        return Err(invalid(
                            "log.message.timestamp.type",
                            "expected CreateTime or LogAppendTime".into(),
                        ))
                    }
                },
                before_max_ms: int("log.message.timestamp.before.max.ms"),
                after_max_ms: int("log.message.timestamp.after.max.ms"),
            },
            cleanup: CleanupPolicy::parse(&get("log.cleanup.policy")).ok_or_else(|| {
                invalid(
                    "log.cleanup.policy",
                    "expected delete, compact or compact,delete".into(),
                )
            })?,
            min_cleanable_ratio: ratio("log.cleaner.min.cleanable.ratio")?,
            min_compaction_lag_ms: int("log.cleaner.min.compaction.lag.ms"),
            max_compaction_lag_ms: int("log.cleaner.max.compaction.lag.ms"),
            delete_retention_ms: int("log.cleaner.delete.retention.ms"),
        };
        let io_limit = get("log.cleaner.io.max.bytes.per.second")
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|v| *v > 0.0)
            .ok_or_else(|| {
                invalid(
                    "log.cleaner.io.max.bytes.per.second",
                    "expected a positive number".into(),
                )
            })?;
        let admin_http = match get("admin.http.listener").trim() {
            "" => None,
            addr => Some(
                std::net::ToSocketAddrs::to_socket_addrs(addr)
                    .ok()
                    .and_then(|mut a| a.next())
                    .ok_or_else(|| {
                        invalid(
                            "admin.http.listener",
                            "expected host:port, or empty to turn it off".into(),
                        )
                    })?,
            ),
        };
        let cleaner = CleanerSettings {
            enable: get("log.cleaner.enable") == "true",
            threads: int("log.cleaner.threads") as usize,
            io_max_bytes_per_second: (io_limit < 1e300).then_some(io_limit),
            dedupe_buffer_size: int("log.cleaner.dedupe.buffer.size") as usize,
            backoff_ms: int("log.cleaner.backoff.ms") as u64,
        };
        let rf = int("default.replication.factor");
        if int("group.min.session.timeout.ms") > int("group.max.session.timeout.ms") {
            return Err(invalid(
                "group.min.session.timeout.ms",
                "must not exceed group.max.session.timeout.ms".into(),
            ));
        }
        let i32_of = |n: &str| i32::try_from(int(n)).map_err(|_| invalid(n, "too large".into()));
        let groups = GroupSettings {
            offsets_partitions: i32_of("offsets.topic.num.partitions")?,
            offsets_replication_factor: i16::try_from(int("offsets.topic.replication.factor"))
                .map_err(|_| invalid("offsets.topic.replication.factor", "too large".into()))?,
            offsets_segment_bytes: int("offsets.topic.segment.bytes").min(i32::MAX as i64),
            offsets_retention_ms: int("offsets.retention.minutes").saturating_mul(60_000),
            offsets_check_interval_ms: int("offsets.retention.check.interval.ms") as u64,
            commit_timeout_ms: int("offsets.commit.timeout.ms") as u64,
            metadata_max_bytes: int("offset.metadata.max.bytes") as usize,
            min_session_timeout_ms: i32_of("group.min.session.timeout.ms")?,
            max_session_timeout_ms: i32_of("group.max.session.timeout.ms")?,
            initial_rebalance_delay_ms: int("group.initial.rebalance.delay.ms") as u64,
            max_size: int("group.max.size") as usize,
        };
        let txn = TxnSettings {
            log_partitions: i32_of("transaction.state.log.num.partitions")?,
            log_replication_factor: i16::try_from(int("transaction.state.log.replication.factor"))
                .map_err(|_| {
                    invalid(
                        "transaction.state.log.replication.factor",
                        "too large".into(),
                    )
                })?,
            log_min_isr: i32_of("transaction.state.log.min.isr")?,
            log_segment_bytes: int("transaction.state.log.segment.bytes").min(i32::MAX as i64),
            max_timeout_ms: i32_of("transaction.max.timeout.ms")?,
            id_expiration_ms: int("transactional.id.expiration.ms"),
            abort_check_interval_ms: int(
                "transaction.abort.timed.out.transaction.cleanup.interval.ms",
            ) as u64,
            expiry_check_interval_ms: int(
                "transaction.remove.expired.transaction.cleanup.interval.ms",
            ) as u64,
            partition_verification: get("transaction.partition.verification.enable") == "true",
        };
        Ok(Config {
            node_id,
            roles,
            listeners,
            controller_listener,
            advertised,
            voters,
            log_dir: PathBuf::from(get("log.dirs")),
            num_partitions: i32::try_from(int("num.partitions"))
                .map_err(|_| invalid("num.partitions", "too large".into()))?,
            default_replication_factor: i16::try_from(rf)
                .map_err(|_| invalid("default.replication.factor", "too large".into()))?,
            min_insync_replicas: i32::try_from(int("min.insync.replicas"))
                .map_err(|_| invalid("min.insync.replicas", "too large".into()))?,
            auto_create_topics: get("auto.create.topics.enable") == "true",
            log,
            cleaner,
            admin_http,
            socket_request_max_bytes: int("socket.request.max.bytes") as usize,
            retention_check_interval_ms: int("log.retention.check.interval.ms") as u64,
            flush_check_interval_ms: int("log.flush.scheduler.interval.ms") as u64,
            quorum_request_timeout_ms: int("controller.quorum.request.timeout.ms") as u64,
            shutdown_timeout_ms: int("shutdown.timeout.ms") as u64,
            shutdown_linger_ms: int("controlled.shutdown.linger.ms") as u64,
            session_timeout_ms: int("broker.session.timeout.ms") as u64,
            heartbeat_interval_ms: int("broker.heartbeat.interval.ms") as u64,
            broker_lease_ms: int("broker.lease.ms") as u64,
            unclean_leader_election: get("unclean.leader.election.enable") == "true",
            metadata_snapshot_interval: int("metadata.log.snapshot.interval.records") as u64,
            inter_broker_listener,
            replica_lag_max_ms: int("replica.lag.time.max.ms") as u64,
            auto_leader_rebalance: get("auto.leader.rebalance.enable") == "true",
            leader_imbalance_check_ms: int("leader.imbalance.check.interval.seconds") as u64 * 1000,
            groups,
            txn,
            fetch_zero_copy: get("fetch.zero.copy.enable") == "true",
            fetch_max_wait_cap: std::time::Duration::from_millis(
                int("fetch.max.wait.cap.ms") as u64
            ),
            ignored: Vec::new(),
            queued_max_request_bytes: usize::try_from(int("queued.max.request.bytes"))
                .ok()
                .filter(|n| *n > 0),
            queued_max_requests: int("queued.max.requests").max(1) as usize,
            max_connections: int("max.connections") as usize,
            max_connections_per_ip: int("max.connections.per.ip") as usize,
            max_connections_per_ip_overrides,
            connections_max_idle: u64::try_from(int("connections.max.idle.ms"))
                .ok()
                .map(std::time::Duration::from_millis),
            socket_send_buffer: u32::try_from(int("socket.send.buffer.bytes")).ok(),
            socket_receive_buffer: u32::try_from(int("socket.receive.buffer.bytes")).ok(),
            recovery_threads: int("num.recovery.threads.per.data.dir").max(1) as usize,
            max_open_log_files: match int("log.max.open.files") {
                n if n > 0 => n as usize,
                _ => (open_file_limit() / 4).clamp(64, crate::storage::files::DEFAULT_LIMIT),
            },
            security,
            scram_bootstrap,
            authorizer,
            controller_tls,
            values,
        })
    }

    /// Whether `name` was left at its built-in default (for DescribeConfigs' config source).
    pub fn is_default(&self, name: &str) -> bool {
        setting(name).is_some_and(|s| self.values.get(name).map(String::as_str) == Some(s.default))
    }
}

/// The process's soft open-file limit (RLIMIT_NOFILE), or 1024 if it cannot be read.
#[allow(unsafe_code)]
fn open_file_limit() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct it is given, which lives on this stack.
    let r = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    if r == 0 {
        usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX)
    } else {
        1024
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(pairs: &[(&str, &str)]) -> BTreeMap<String, (String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), (v.to_string(), "test".to_string())))
            .collect()
    }

    #[test]
    fn defaults_are_a_single_node() {
        let c = Config::from_raw(BTreeMap::new()).expect("defaults valid");
        assert_eq!(c.listeners[0].port, 9092);
        assert_eq!(c.controller_listener.port, 9093);
        assert_eq!(c.voters.len(), 1);
        assert_eq!(c.log_dir, PathBuf::from("./strom-data"));
        assert!(c.auto_create_topics);
    }

    #[test]
    fn unknown_and_invalid_settings_name_themselves() {
        let e = Config::from_raw(raw(&[("log.segmnt.bytes", "1")])).unwrap_err();
        assert!(e.to_string().contains("log.segmnt.bytes"), "{e}");
        let e = Config::from_raw(raw(&[("num.partitions", "zero")])).unwrap_err();
        assert!(e.to_string().contains("num.partitions"), "{e}");
        let e = Config::from_raw(raw(&[("auto.create.topics.enable", "yes")])).unwrap_err();
        assert!(e.to_string().contains("auto.create.topics.enable"), "{e}");
    }

    #[test]
    fn per_address_connection_limits_parse_and_bad_ones_name_the_setting() {
        let c = Config::from_raw(raw(&[(
            "max.connections.per.ip.overrides",
            "127.0.0.2:5, [::1]:7,localhost:9",
        )]))
        .expect("valid");
        let o = &c.max_connections_per_ip_overrides;
        assert_eq!(o.get(&"127.0.0.2".parse().expect("ip")), Some(&5));
        assert_eq!(o.get(&"127.0.0.1".parse().expect("ip")), Some(&9), "{o:?}");
        assert!(
            o.get(&"::1".parse().expect("ip")).is_some(),
            "an IPv6 literal, or localhost's IPv6 address: {o:?}"
        );
        for bad in ["127.0.0.2", "127.0.0.2:many", "no-such-host.invalid:3"] {
            let e =
                Config::from_raw(raw(&[("max.connections.per.ip.overrides", bad)])).unwrap_err();
            assert!(
                e.to_string().contains("max.connections.per.ip.overrides"),
                "{bad}: {e}"
            );
        }
        let e = Config::from_raw(raw(&[("max.connections.per.ip", "0")])).unwrap_err();
        assert!(e.to_string().contains("max.connections.per.ip"), "{e}");
        Config::from_raw(raw(&[
            ("max.connections.per.ip", "0"),
            ("max.connections.per.ip.overrides", "127.0.0.1:10"),
        ]))
        .expect("0 with overrides: only the named addresses connect");
    }

    #[test]
    fn a_lease_not_shorter_than_the_session_is_refused_by_name() {
        for bad in [
            vec![("broker.lease.ms", "2000")],
            vec![("broker.lease.ms", "400")],
            vec![("broker.session.timeout.ms", "1000")],
        ] {
            let e = Config::from_raw(raw(&bad)).unwrap_err();
            assert!(e.to_string().contains("broker.lease.ms"), "{bad:?}: {e}");
        }
        let c = Config::from_raw(raw(&[("broker.lease.ms", "0")])).expect("0 turns it off");
        assert_eq!(c.broker_lease_ms, 0);
        let c = Config::from_raw(BTreeMap::new()).expect("defaults valid");
        assert_eq!(c.broker_lease_ms, 1500);
    }

    #[test]
    fn advertised_wildcard_is_refused() {
        let e = Config::from_raw(raw(&[(
            "listeners",
            "PLAINTEXT://0.0.0.0:9092,CONTROLLER://127.0.0.1:9093",
        )]))
        .unwrap_err();
        assert!(e.to_string().contains("advertised.listeners"), "{e}");
    }

    #[test]
    fn listener_combinations_are_checked() {
        let e = Config::from_raw(raw(&[(
            "advertised.listeners",
            "EXTERNAL://localhost:19092",
        )]))
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("`EXTERNAL` is not the name of a client listener"),
            "{e}"
        );
        let e = Config::from_raw(raw(&[(
            "listeners",
            "PLAINTEXT://127.0.0.1:9092,EXTERNAL://127.0.0.1:19092,CONTROLLER://127.0.0.1:9093",
        )]))
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("listener `EXTERNAL` has no security protocol"),
            "{e}"
        );
        let c = Config::from_raw(raw(&[
            (
                "listeners",
                "INTERNAL://localhost:9092,EXTERNAL://127.0.0.1:19092,CONTROLLER://127.0.0.1:9093",
            ),
            (
                "listener.security.protocol.map",
                "INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT",
            ),
            (
                "advertised.listeners",
                "INTERNAL://broker-1:9092,EXTERNAL://localhost:19092",
            ),
            ("inter.broker.listener.name", "INTERNAL"),
        ]))
        .expect("a host name in listeners resolves");
        assert_eq!(c.advertised.len(), 2);
        assert_eq!(c.inter_broker_listener, "INTERNAL");
        let e = Config::from_raw(raw(&[("inter.broker.listener.name", "NOPE")])).unwrap_err();
        assert!(e.to_string().contains("inter.broker.listener.name"), "{e}");
    }

    #[test]
    fn topic_configs_override_broker_defaults() {
        let c = Config::from_raw(raw(&[("log.retention.ms", "1000")])).expect("valid");
        let mut t = BTreeMap::new();
        t.insert("segment.bytes".to_string(), "2048".to_string());
        let s = log_settings(&c.log, &t);
        assert_eq!(s.segment_bytes, 2048);
        assert_eq!(s.retention_ms, 1000);
        assert!(validate_topic_config("retention.ms", "-2").is_err());
        assert!(validate_topic_config("nope", "1").is_err());
    }

    #[test]
    fn cleaner_settings_and_cleanup_policies_are_validated_with_the_setting_named() {
        let c = Config::from_raw(raw(&[])).expect("defaults");
        assert!(c.cleaner.enable && c.cleaner.threads == 1);
        assert_eq!(
            c.cleaner.io_max_bytes_per_second, None,
            "Kafka's default: no limit"
        );
        assert_eq!(c.log.cleanup, CleanupPolicy::DELETE);
        assert_eq!(c.log.min_cleanable_ratio, 0.5);
        for (name, value) in [
            ("log.cleanup.policy", "shred"),
            ("log.cleaner.min.cleanable.ratio", "1.5"),
            ("log.cleaner.io.max.bytes.per.second", "fast"),
            ("log.cleaner.threads", "0"),
        ] {
            let e = Config::from_raw(raw(&[(name, value)])).expect_err(name);
            assert!(e.to_string().contains(name), "{e}");
        }
        let c = Config::from_raw(raw(&[
            ("log.cleanup.policy", "compact,delete"),
            ("log.cleaner.io.max.bytes.per.second", "1048576"),
        ]))
        .expect("valid");
        assert_eq!(
            c.log.cleanup,
            CleanupPolicy {
                delete: true,
                compact: true
            }
        );
        assert_eq!(c.cleaner.io_max_bytes_per_second, Some(1048576.0));
        let t = BTreeMap::from([
            ("cleanup.policy".to_string(), "compact".to_string()),
            ("delete.retention.ms".to_string(), "5".to_string()),
        ]);
        let s = log_settings(&c.log, &t);
        assert_eq!(s.cleanup, CleanupPolicy::COMPACT);
        assert_eq!(s.delete_retention_ms, 5);
        assert!(validate_topic_config("cleanup.policy", "compact,delete").is_ok());
        assert!(validate_topic_config("cleanup.policy", "compact,nope").is_err());
        assert!(validate_topic_config("min.cleanable.dirty.ratio", "-0.1").is_err());
        assert!(validate_topic_config("max.compaction.lag.ms", "0").is_err());
    }

    #[test]
    fn retention_and_roll_follow_kafkas_precedence_of_units() {
        let ms = |pairs: &[(&str, &str)]| {
            let c = Config::from_raw(raw(pairs)).expect("valid");
            (
                c.log.retention_ms,
                c.log.roll_ms,
                c.values["log.retention.ms"].clone(),
            )
        };
        let week = 7 * 24 * 3_600_000;
        assert_eq!(ms(&[]), (week, week, week.to_string()));
        assert_eq!(ms(&[("log.retention.hours", "2")]).0, 7_200_000);
        assert_eq!(ms(&[("log.retention.hours", "-1")]).0, -1);
        let both = [("log.retention.hours", "2"), ("log.retention.minutes", "3")];
        assert_eq!(ms(&both).0, 180_000);
        let all = [
            ("log.retention.hours", "2"),
            ("log.retention.minutes", "3"),
            ("log.retention.ms", "5000"),
        ];
        assert_eq!(ms(&all), (5000, week, "5000".to_string()));
        assert_eq!(ms(&[("log.roll.hours", "1")]).1, 3_600_000);
        let roll = [("log.roll.hours", "1"), ("log.roll.ms", "60000")];
        assert_eq!(ms(&roll).1, 60_000);
    }

    #[test]
    fn kafka_names_are_accepted_and_misspellings_get_a_suggestion() {
        let c = Config::from_raw(raw(&[
            ("num.io.threads", "8"),
            ("listener.name.plaintext.ssl.keystore.password", "pw"),
        ]))
        .expect("Kafka's names are accepted");
        assert_eq!(
            c.ignored,
            [
                "listener.name.plaintext.ssl.keystore.password",
                "num.io.threads"
            ]
        );
        let err = Config::from_raw(raw(&[("num.partition", "3")]))
            .expect_err("a misspelling is refused")
            .to_string();
        assert!(err.contains("did you mean `num.partitions`?"), "{err}");
    }

    #[test]
    fn a_dynamic_quorum_of_several_controllers_is_refused_by_name() {
        let err = Config::from_raw(raw(&[(
            "controller.quorum.bootstrap.servers",
            "a:9093,b:9093",
        )]))
        .expect_err("refused")
        .to_string();
        assert!(err.contains("controller.quorum.bootstrap.servers"), "{err}");
        let one = Config::from_raw(raw(&[(
            "controller.quorum.bootstrap.servers",
            "localhost:9093",
        )]))
        .expect("one bootstrap server: this node alone");
        assert_eq!(one.voters.len(), 1);
    }
}
