//! Command-line tools that talk to a running cluster as a Kafka client would
//! (`strom cluster status`, `strom group ...`, `strom topic ...`, `strom produce`, `strom consume`,
//! `strom acl ...`, `strom user ...`). A small
//! blocking client over the `kafka-protocol` codecs; with `--command-config` (Kafka client
//! properties, read once by `use_command_config`) it speaks TLS and SASL.

pub mod data;
pub mod group;
mod member;
pub mod reassign;
pub mod security;
pub mod topic;
pub mod txn;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::{
    ApiKey, DescribeClusterRequest, DescribeClusterResponse, DescribeQuorumRequest,
    DescribeQuorumResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::auth::client::ClientSecurity;
use crate::handlers::describe_quorum::METADATA_TOPIC;
use crate::protocol;

/// One connection to one broker.
pub struct Client {
    stream: Conn,
    next_correlation: i32,
}

/// A plaintext or TLS connection.
enum Conn {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

/// How the tools connect: plaintext unless `use_command_config` said otherwise.
static SECURITY: std::sync::OnceLock<ClientSecurity> = std::sync::OnceLock::new();

/// Reads Kafka client properties (`security.protocol`, `ssl.truststore.location`,
/// `sasl.mechanism`, `sasl.jaas.config`, ...) from `path` for every connection the tools make.
pub fn use_command_config(path: &str) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read --command-config {path}: {e}"))?;
    let props = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let security = ClientSecurity::from_properties(&props)
        .map_err(|e| anyhow::anyhow!("--command-config {path}: {e}"))?;
    let _ = SECURITY.set(security);
    Ok(())
}

/// A TLS error in words an operator can act on.
fn tls_failure(addr: &str, e: &std::io::Error) -> anyhow::Error {
    let text = e.to_string();
    let hint = if text.contains("UnknownIssuer") || text.contains("invalid peer certificate") {
        "the broker's certificate is not trusted (not signed by a CA in ssl.truststore.location, or issued for another name)"
    } else if text.contains("CertificateRequired") || text.contains("certificate required") {
        "the broker requires a client certificate (ssl.keystore.location)"
    } else if text.contains("corrupt message") || text.contains("InvalidContentType") {
        "the listener does not speak TLS (security.protocol should not be SSL or SASL_SSL there)"
    } else {
        "TLS handshake failed"
    };
    anyhow::anyhow!("{addr}: {hint}: {text}")
}

impl Client {
    /// Connects to the first reachable address of a bootstrap list (`host:port[,host:port..]`,
    /// as Kafka clients take it).
    pub fn connect(bootstrap: &str) -> anyhow::Result<Client> {
        let mut failures = Vec::new();
        let stream = bootstrap
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .find_map(|addr| {
                TcpStream::connect(addr)
                    .map_err(|e| failures.push(format!("{addr}: {e}")))
                    .ok()
            })
            .ok_or_else(|| match failures.is_empty() {
                true => anyhow::anyhow!("no bootstrap address given"),
                false => anyhow::anyhow!("cannot connect to {}", failures.join("; ")),
            })?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_nodelay(true)?;
        let addr = stream
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let security = SECURITY.get().cloned().unwrap_or_default();
        let stream = match &security.tls {
            None => Conn::Plain(stream),
            Some(tls) => {
                let host = bootstrap_host(bootstrap, &addr);
                let name = rustls::pki_types::ServerName::try_from(host.clone())
                    .map_err(|e| anyhow::anyhow!("`{host}` is no TLS server name: {e}"))?;
                let conn = rustls::ClientConnection::new(tls.clone(), name)?;
                let mut s = rustls::StreamOwned::new(conn, stream);
                while s.conn.is_handshaking() {
                    s.conn
                        .complete_io(&mut s.sock)
                        .map_err(|e| tls_failure(&addr, &e))?;
                }
                Conn::Tls(Box::new(s))
            }
        };
        let mut client = Client {
            stream,
            next_correlation: 1,
        };
        if let Some(creds) = &security.sasl {
            client.authenticate(creds, &addr)?;
        }
        Ok(client)
    }

    /// SaslHandshake v1 and SaslAuthenticate until the exchange ends.
    fn authenticate(
        &mut self,
        creds: &crate::auth::client::Credentials,
        addr: &str,
    ) -> anyhow::Result<()> {
        use kafka_protocol::messages::{
            SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
            SaslHandshakeResponse,
        };
        let req = SaslHandshakeRequest::default()
            .with_mechanism(StrBytes::from_static_str(creds.mechanism.name()));
        let h: SaslHandshakeResponse = self.call(ApiKey::SaslHandshake, 1, &req).map_err(|e| {
            anyhow::anyhow!("{addr}: no SASL handshake ({e}); is this a SASL listener?")
        })?;
        anyhow::ensure!(
            h.error_code == 0,
            "{addr}: the listener does not offer {} (it offers {})",
            creds.mechanism.name(),
            h.mechanisms
                .iter()
                .map(|m| m.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let (mut exchange, mut token) = crate::auth::client::SaslClient::start(creds);
        loop {
            let req = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token));
            let r: SaslAuthenticateResponse = self.call(ApiKey::SaslAuthenticate, 2, &req)?;
            anyhow::ensure!(
                r.error_code == 0,
                "{addr}: bad credentials for {creds:?}: {}",
                r.error_message.as_deref().unwrap_or("refused")
            );
            match exchange.next(&r.auth_bytes).map_err(anyhow::Error::msg)? {
                Some(next) => token = next,
                None => return Ok(()),
            }
        }
    }

    /// The plaintext connection itself, for a caller that goes on outside the Kafka request
    /// framing (the bare tokens after a SaslHandshake v0); `None` over TLS.
    pub fn into_tcp(self) -> Option<TcpStream> {
        match self.stream {
            Conn::Plain(s) => Some(s),
            Conn::Tls(_) => None,
        }
    }

    /// Sends one request that has no response (Produce with acks=0).
    pub fn send_only<Req: Encodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        req: &Req,
    ) -> anyhow::Result<()> {
        let correlation = self.next_correlation;
        self.next_correlation += 1;
        let frame = protocol::encode_request(key, version, correlation, "strom-cli", req)?;
        self.stream.write_all(&frame)?;
        Ok(self.stream.flush()?)
    }

    /// Sends one request at `version` and reads its response.
    pub fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        req: &Req,
    ) -> anyhow::Result<Resp> {
        let correlation = self.next_correlation;
        self.next_correlation += 1;
        let frame = protocol::encode_request(key, version, correlation, "strom-cli", req)?;
        self.stream.write_all(&frame)?;
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size)?;
        let mut body = vec![0u8; i32::from_be_bytes(size).max(0) as usize];
        self.stream.read_exact(&mut body)?;
        let (got, resp) = protocol::decode_response(key, version, Bytes::from(body))?;
        anyhow::ensure!(got == correlation, "response out of order");
        Ok(resp)
    }
}

/// The host a TLS certificate must name: the bootstrap entry that connected (by its address).
fn bootstrap_host(bootstrap: &str, connected: &str) -> String {
    let port = connected.rsplit_once(':').map(|(_, p)| p).unwrap_or("");
    let entry = bootstrap
        .split(',')
        .map(str::trim)
        .find(|e| e.ends_with(&format!(":{port}")))
        .unwrap_or(connected);
    let host = entry.rsplit_once(':').map_or(entry, |(h, _)| h);
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}

/// `strom cluster status`: the quorum (leader, term, voters and their lag) and every broker's
/// registration and fenced state, as a text table.
pub fn cluster_status(bootstrap: &str) -> anyhow::Result<String> {
    let mut c = Client::connect(bootstrap)?;
    let quorum: DescribeQuorumResponse = c.call(
        ApiKey::DescribeQuorum,
        2,
        &DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
            .with_topic_name(TopicName(StrBytes::from_static_str(METADATA_TOPIC)))
            .with_partitions(vec![PartitionData::default().with_partition_index(0)])]),
    )?;
    let cluster: DescribeClusterResponse = c.call(
        ApiKey::DescribeCluster,
        2,
        &DescribeClusterRequest::default()
            .with_endpoint_type(1)
            .with_include_fenced_brokers(true),
    )?;
    let mut out = String::new();
    out.push_str(&format!("cluster id:  {}\n", cluster.cluster_id.as_str()));
    let p = quorum
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .ok_or_else(|| anyhow::anyhow!("the broker returned no quorum description"))?;
    if p.error_code != 0 {
        let why = p
            .error_message
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_default();
        out.push_str(&format!(
            "quorum:      unavailable (error {}: {why})\n",
            p.error_code
        ));
    } else {
        out.push_str(&format!(
            "controller:  node {} (Raft leader), term {}, committed index {}\n",
            p.leader_id.0, p.leader_epoch, p.high_watermark
        ));
        out.push_str("voters:\n  id  log end  lag\n");
        for v in &p.current_voters {
            let (end, lag) = if v.log_end_offset < 0 {
                ("?".to_string(), "unreachable".to_string())
            } else {
                (
                    v.log_end_offset.to_string(),
                    (p.high_watermark - v.log_end_offset).max(0).to_string(),
                )
            };
            let leader = if v.replica_id == p.leader_id {
                "  (leader)"
            } else {
                ""
            };
            out.push_str(&format!(
                "  {:<3} {:<8} {lag}{leader}\n",
                v.replica_id.0, end
            ));
        }
    }
    out.push_str("brokers:\n  id  endpoint                  state\n");
    for b in &cluster.brokers {
        let endpoint = format!("{}:{}", b.host.as_str(), b.port);
        let state = if b.is_fenced { "fenced" } else { "active" };
        out.push_str(&format!(
            "  {:<3} {:<25} {state}\n",
            b.broker_id.0, endpoint
        ));
    }
    Ok(out)
}

/// What `strom doctor` found about one advertised endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointCheck {
    pub broker: i32,
    pub address: String,
    /// None when the endpoint answered a Kafka request; otherwise what went wrong, in words.
    pub problem: Option<String>,
}

/// Connects like a client through `bootstrap`, fetches metadata, and tries every broker's
/// advertised endpoint from here. Returns the report text and whether everything was reachable.
pub fn doctor(bootstrap: &str) -> (String, bool) {
    use kafka_protocol::messages::{
        ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse,
    };
    let mut out = String::new();
    let mut c = match Client::connect(bootstrap) {
        Ok(c) => c,
        Err(e) => {
            out.push_str(&format!(
                "cannot reach the bootstrap address {bootstrap}: {e}\n\
                 Check the host and port, that a broker is running there, and that this machine can reach it.\n"
            ));
            return (out, false);
        }
    };
    let md: MetadataResponse = match c.call(
        ApiKey::Metadata,
        12,
        &MetadataRequest::default().with_topics(Some(Vec::new())),
    ) {
        Ok(md) => md,
        Err(e) => {
            out.push_str(&format!("{bootstrap} accepted a connection but did not answer Metadata: {e}\nIs it a Kafka broker?\n"));
            return (out, false);
        }
    };
    out.push_str(&format!(
        "bootstrap {bootstrap}: cluster {}, controller {}, {} brokers advertised for the listener you connected to\n",
        md.cluster_id.as_ref().map(|c| c.to_string()).unwrap_or_default(),
        md.controller_id.0,
        md.brokers.len()
    ));
    if md.brokers.is_empty() {
        out.push_str("no broker is registered yet: the metadata quorum may still be forming (see `strom cluster status`).\n");
        return (out, false);
    }
    let mut ok = true;
    for b in &md.brokers {
        let address = format!("{}:{}", b.host.as_str(), b.port);
        let check = check_endpoint(b.node_id.0, &address, |c| {
            c.call::<_, ApiVersionsResponse>(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
                .map(|_| ())
        });
        match &check.problem {
            None => out.push_str(&format!(
                "  broker {:<3} {address:<28} reachable\n",
                b.node_id.0
            )),
            Some(p) => {
                ok = false;
                out.push_str(&format!(
                    "  broker {:<3} {address:<28} UNREACHABLE: {p}\n",
                    b.node_id.0
                ));
            }
        }
    }
    if !ok {
        out.push_str(
            "\nClients connect to the advertised addresses above, not to the bootstrap address. Each broker's\n\
             advertised.listeners must name, for the listener this client uses, a host and port that this\n\
             machine can resolve and reach. Inside containers that is usually the container name; from the\n\
             host it is usually localhost with a published port: give each network its own listener\n\
             (e.g. INTERNAL and EXTERNAL) and connect through the one advertised for where you are.\n",
        );
    } else {
        out.push_str("every advertised endpoint is reachable from here.\n");
    }
    (out, ok)
}

fn check_endpoint(
    broker: i32,
    address: &str,
    probe: impl FnOnce(&mut Client) -> anyhow::Result<()>,
) -> EndpointCheck {
    use std::net::ToSocketAddrs;
    let problem = match address.to_socket_addrs() {
        Err(e) => Some(format!(
            "the name does not resolve here ({e}); this address is probably meant for another network (a container name?)"
        )),
        Ok(mut addrs) => match addrs.next() {
            None => Some("the name resolves to no address".to_string()),
            Some(sock) if sock.ip().is_unspecified() => Some(format!(
                "{} is a wildcard, not an address a client can connect to; set advertised.listeners",
                sock.ip()
            )),
            Some(sock) => match TcpStream::connect_timeout(&sock, Duration::from_secs(3)) {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some(format!(
                    "connection refused at {sock}: nothing listens there from this machine's point of view \
                     (wrong port, or a port not published from a container?)"
                )),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut || e.kind() == std::io::ErrorKind::WouldBlock => {
                    Some(format!("no answer from {sock} within 3 s (a firewall, or a network this machine cannot reach)"))
                }
                Err(e) => Some(format!("cannot connect to {sock}: {e}")),
                Ok(_) => match Client::connect(address).and_then(|mut c| probe(&mut c)) {
                    Ok(()) => None,
                    Err(e) => Some(format!("connected, but it did not answer like a Kafka broker: {e}")),
                },
            },
        },
    };
    EndpointCheck {
        broker,
        address: address.to_string(),
        problem,
    }
}

/// `strom health`: exit 0 only when this node (by its own configuration: `node.id` and its
/// first client listener) answers on that listener and is registered and unfenced.
pub fn health(config: &crate::config::Config) -> Result<String, String> {
    use kafka_protocol::messages::{DescribeClusterRequest, DescribeClusterResponse};
    let l = &config.listeners[0];
    let host = match l.host.as_str() {
        "" | "0.0.0.0" | "::" => "127.0.0.1",
        h => h,
    };
    let addr = format!("{host}:{}", l.port);
    let mut c = Client::connect(&addr).map_err(|e| format!("not serving on {addr}: {e}"))?;
    let d: DescribeClusterResponse = c
        .call(
            ApiKey::DescribeCluster,
            2,
            &DescribeClusterRequest::default()
                .with_endpoint_type(1)
                .with_include_fenced_brokers(true),
        )
        .map_err(|e| format!("{addr} did not answer DescribeCluster: {e}"))?;
    match d.brokers.iter().find(|b| b.broker_id.0 == config.node_id) {
        None => Err(format!(
            "node {} is not registered with the controller yet",
            config.node_id
        )),
        Some(b) if b.is_fenced => Err(format!("node {} is fenced", config.node_id)),
        Some(_) => Ok(format!(
            "node {} is registered, unfenced and serving on {addr}",
            config.node_id
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_takes_the_first_reachable_address_of_a_bootstrap_list() {
        let live = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let live_addr = live.local_addr().expect("addr").to_string();
        // A port that was just free: nothing listens there.
        let dead_addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("addr")
            .to_string();
        assert!(Client::connect(&format!("{dead_addr}, {live_addr}")).is_ok());
        let err = Client::connect(&dead_addr).err().expect("nothing listens");
        assert!(err.to_string().contains(&dead_addr), "{err}");
        assert!(Client::connect(" , ").is_err());
    }
}
