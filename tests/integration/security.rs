//! Security: TLS listeners and SASL (PLAIN, SCRAM-SHA-256/512) through librdkafka, every
//! SaslHandshake / SaslAuthenticate version through raw frames, and refusals — wrong password,
//! unknown user, a plaintext client on a TLS port, a client that does not trust the certificate,
//! a request before authentication, an expired session. Certificates and credentials are made
//! here at run time.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse,
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::producer::Producer;
use rdkafka::Offset;
use strom::tools::Client;

use crate::harness::{consumer, flush, producer, send, Broker, Raw};

/// A CA, and a server key + certificate for 127.0.0.1 / localhost signed by it, as PEM files.
struct Certs {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    /// A CA that signed nothing here: a client trusting only it cannot trust the broker.
    stranger_ca: PathBuf,
    server: PathBuf,
    users: PathBuf,
}

fn certs() -> Certs {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "strom test CA");
    let ca = ca_params.clone().self_signed(&ca_key).expect("ca");
    let stranger_key = KeyPair::generate().expect("stranger key");
    let stranger = ca_params.self_signed(&stranger_key).expect("stranger ca");
    let key = KeyPair::generate().expect("server key");
    let params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .expect("server params");
    let cert = params.signed_by(&key, &ca, &ca_key).expect("server cert");
    let write = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path
    };
    write("ca-key.pem", ca_key.serialize_pem());
    Certs {
        ca: write("ca.pem", ca.pem()),
        stranger_ca: write("stranger-ca.pem", stranger.pem()),
        server: write(
            "server.pem",
            format!("{}{}", key.serialize_pem(), cert.pem()),
        ),
        users: write(
            "plain-users",
            "# PLAIN users\nalice=alice-pw\nbob=bob-pw\n".into(),
        ),
        _dir: dir,
    }
}

/// A single node whose client listener has `protocol`, SCRAM user admin/admin-secret (SHA-512)
/// and PLAIN user alice/alice-pw.
fn secured(protocol: &str, certs: &Certs, extra: &[&str]) -> Broker {
    let mut b = Broker::new(extra);
    b.set(format!(
        "listeners={protocol}://127.0.0.1:{},CONTROLLER://127.0.0.1:{}",
        b.port, b.controller_port
    ));
    for s in [
        format!("listener.security.protocol.map={protocol}:{protocol},CONTROLLER:PLAINTEXT"),
        format!("inter.broker.listener.name={protocol}"),
        format!("ssl.keystore.location={}", certs.server.display()),
        "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-512,SCRAM-SHA-256".into(),
        format!("sasl.plain.users.file={}", certs.users.display()),
        "scram.bootstrap.credentials=SCRAM-SHA-512=[name=admin,password=admin-secret]".into(),
    ] {
        b.set(s);
    }
    b.spawn();
    b
}

/// As `admin` (SCRAM-SHA-512 over SASL_SSL), confluent-kafka creates SCRAM-SHA-512 user `name`;
/// returns the librdkafka settings to connect as it.
fn add_scram_user(
    boot: &str,
    certs: &Certs,
    name: &'static str,
    password: &'static str,
) -> Vec<(&'static str, String)> {
    let ca = certs.ca.display().to_string();
    crate::clients::run_python(
        "secured.py",
        &[
            "add-user",
            boot,
            &ca,
            "admin",
            "admin-secret",
            name,
            password,
        ],
    );
    client_settings(
        "SASL_SSL",
        &certs.ca,
        Some(("SCRAM-SHA-512", name, password)),
    )
}

/// As `admin` over SASL_SSL, confluent-kafka creates the ACLs of `acls` (a JSON list of
/// [type, name, pattern, principal, operation, permission]).
fn grant_as_admin(boot: &str, certs: &Certs, acls: &str) {
    let ca = certs.ca.display().to_string();
    crate::clients::run_python(
        "secured.py",
        &["acls", boot, "SASL_SSL", "admin", "admin-secret", acls, &ca],
    );
}

/// librdkafka settings for a client of `b`.
fn client_settings<'a>(
    protocol: &'a str,
    ca: &'a Path,
    sasl: Option<(&'a str, &'a str, &'a str)>,
) -> Vec<(&'static str, String)> {
    let mut out = vec![("security.protocol", protocol.to_string())];
    if protocol.contains("SSL") {
        out.push(("ssl.ca.location", ca.display().to_string()));
    }
    if let Some((mechanism, user, password)) = sasl {
        out.push(("sasl.mechanism", mechanism.to_string()));
        out.push(("sasl.username", user.to_string()));
        out.push(("sasl.password", password.to_string()));
    }
    out
}

fn as_refs<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    v.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// The settings without their secrets, for a failure message.
fn shown(settings: &[(&'static str, String)]) -> String {
    settings
        .iter()
        .filter(|(k, _)| !k.contains("password"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Produces `n` records to `topic`, consumes them in a group, commits, and checks the commit.
fn round_trip(bootstrap: &str, settings: &[(&'static str, String)], topic: &str, n: u64) {
    let extra = as_refs(settings);
    let p = producer(bootstrap, &extra);
    for i in 0..n {
        send(&p, topic, i, format!("record-{i}").as_bytes());
    }
    flush(&p);
    let acked = p.context().acks.lock().expect("lock").len();
    assert_eq!(
        acked as u64, n,
        "every record acknowledged over {settings:?}"
    );
    let mut group = extra.clone();
    group.push(("group.id", "secured-group"));
    group.push(("auto.offset.reset", "earliest"));
    let c = consumer(bootstrap, &group);
    c.subscribe(&[topic]).expect("subscribe");
    let mut got = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while got < n && std::time::Instant::now() < deadline {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(_)) => got += 1,
            Some(Err(e)) => panic!("consumer error over {}: {e}", shown(settings)),
            None => {}
        }
    }
    assert_eq!(got, n, "every record consumed");
    c.commit_consumer_state(CommitMode::Sync).expect("commit");
    let committed = c.committed(Duration::from_secs(10)).expect("committed");
    let total: i64 = committed
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            _ => 0,
        })
        .sum();
    assert_eq!(total as u64, n, "the group's commits cover every record");
}

/// Whether a client with these settings can read the cluster's metadata within a few seconds.
fn can_connect(bootstrap: &str, settings: &[(&'static str, String)]) -> bool {
    let mut extra = as_refs(settings);
    extra.push(("socket.timeout.ms", "3000"));
    let p = producer(bootstrap, &extra);
    p.client()
        .fetch_metadata(None, Duration::from_secs(4))
        .is_ok()
}

#[test]
fn sasl_ssl_with_scram_and_plain_produces_consumes_and_commits_and_refuses_the_rest() {
    let certs = certs();
    let b = secured("SASL_SSL", &certs, &[]);
    let boot = b.bootstrap();
    let scram = client_settings(
        "SASL_SSL",
        &certs.ca,
        Some(("SCRAM-SHA-512", "admin", "admin-secret")),
    );
    round_trip(&boot, &scram, "scram-topic", 200);
    let plain = client_settings("SASL_SSL", &certs.ca, Some(("PLAIN", "alice", "alice-pw")));
    round_trip(&boot, &plain, "plain-topic", 200);

    let refused = [
        (
            "a wrong SCRAM password",
            client_settings(
                "SASL_SSL",
                &certs.ca,
                Some(("SCRAM-SHA-512", "admin", "nope")),
            ),
        ),
        (
            "an unknown SCRAM user",
            client_settings(
                "SASL_SSL",
                &certs.ca,
                Some(("SCRAM-SHA-512", "mallory", "x")),
            ),
        ),
        (
            "a mechanism the user has no credential for",
            client_settings(
                "SASL_SSL",
                &certs.ca,
                Some(("SCRAM-SHA-256", "admin", "admin-secret")),
            ),
        ),
        (
            "a wrong PLAIN password",
            client_settings("SASL_SSL", &certs.ca, Some(("PLAIN", "alice", "bob"))),
        ),
        (
            "a plaintext client on the TLS port",
            client_settings("PLAINTEXT", &certs.ca, None),
        ),
        (
            "a client without SASL",
            client_settings("SSL", &certs.ca, None),
        ),
        (
            "a client that does not trust the certificate",
            vec![
                ("security.protocol", "SASL_SSL".to_string()),
                ("sasl.mechanism", "PLAIN".to_string()),
                ("sasl.username", "alice".to_string()),
                ("sasl.password", "alice-pw".to_string()),
                ("ssl.ca.location", certs.stranger_ca.display().to_string()),
            ],
        ),
    ];
    // Tried side by side: each refusal takes a client timeout to show.
    std::thread::scope(|scope| {
        for (what, settings) in &refused {
            let boot = &boot;
            scope.spawn(move || assert!(!can_connect(boot, settings), "{what} was let in"));
        }
    });
    // The broker still serves everyone else.
    assert!(
        can_connect(&boot, &scram),
        "a good client after the refusals"
    );
    round_trip(&boot, &plain, "after-refusals", 20);
}

#[test]
fn ssl_listener_serves_consumers_by_copying_record_data() {
    let certs = certs();
    let b = secured("SSL", &certs, &[]);
    let ssl = client_settings("SSL", &certs.ca, None);
    round_trip(&b.bootstrap(), &ssl, "tls-topic", 300);
    assert!(!can_connect(
        &b.bootstrap(),
        &client_settings("PLAINTEXT", &certs.ca, None)
    ));
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn handshake(c: &mut Client, version: i16, mechanism: &str) -> SaslHandshakeResponse {
    let req = SaslHandshakeRequest::default().with_mechanism(s(mechanism));
    c.call(ApiKey::SaslHandshake, version, &req)
        .expect("handshake")
}

fn authenticate(
    c: &mut Client,
    version: i16,
    token: &[u8],
) -> anyhow::Result<SaslAuthenticateResponse> {
    let req =
        SaslAuthenticateRequest::default().with_auth_bytes(bytes::Bytes::copy_from_slice(token));
    c.call(ApiKey::SaslAuthenticate, version, &req)
}

fn metadata(c: &mut Client) -> anyhow::Result<MetadataResponse> {
    c.call(
        ApiKey::Metadata,
        12,
        &MetadataRequest::default().with_topics(Some(vec![])),
    )
}

#[test]
fn every_sasl_version_authenticates_and_nothing_else_passes_before_it() {
    let certs = certs();
    let b = secured(
        "SASL_PLAINTEXT",
        &certs,
        &["connections.max.reauth.ms=1500"],
    );
    let boot = b.bootstrap();

    // Before authentication: ApiVersions is answered, anything else closes the connection.
    let mut c = Client::connect(&boot).expect("connect");
    let v: ApiVersionsResponse = c
        .call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .expect("api versions");
    let sasl = v
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::SaslAuthenticate as i16)
        .expect("advertised");
    assert_eq!((sasl.min_version, sasl.max_version), (0, 2));
    assert!(
        metadata(&mut c).is_err(),
        "Metadata before authentication must close the connection"
    );

    // Handshake v1, then SaslAuthenticate at each version.
    for version in 0..=2 {
        let mut c = Client::connect(&boot).expect("connect");
        let h = handshake(&mut c, 1, "PLAIN");
        assert_eq!(h.error_code, 0);
        assert!(h.mechanisms.iter().any(|m| m.as_str() == "SCRAM-SHA-512"));
        let a = authenticate(&mut c, version, b"\0alice\0alice-pw").expect("authenticate");
        assert_eq!(a.error_code, 0, "v{version}");
        if version >= 1 {
            assert_eq!(
                a.session_lifetime_ms, 1500,
                "KIP-368 session lifetime at v{version}"
            );
        }
        metadata(&mut c).expect("served once authenticated");
    }

    // A refused password: SASL_AUTHENTICATION_FAILED, then the connection closes.
    let mut c = Client::connect(&boot).expect("connect");
    handshake(&mut c, 1, "PLAIN");
    let a = authenticate(&mut c, 2, b"\0alice\0wrong").expect("an answer");
    assert_eq!(a.error_code, 58, "SASL_AUTHENTICATION_FAILED");
    assert!(
        metadata(&mut c).is_err(),
        "closed after a failed authentication"
    );

    // A mechanism the listener does not enable.
    let mut c = Client::connect(&boot).expect("connect");
    assert_eq!(
        handshake(&mut c, 1, "GSSAPI").error_code,
        33,
        "UNSUPPORTED_SASL_MECHANISM"
    );

    // Handshake v0: the token travels bare, and so does the answer.
    let mut c = Client::connect(&boot).expect("connect");
    assert_eq!(handshake(&mut c, 0, "PLAIN").error_code, 0);
    let mut raw = Raw {
        stream: c.into_tcp().expect("plaintext"),
    };
    let token = b"\0alice\0alice-pw";
    let mut frame = (token.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(token);
    raw.send_raw(&frame);
    assert_eq!(
        raw.read_frame(),
        Some(Vec::new()),
        "PLAIN's empty bare answer"
    );

    // Re-authentication before the session ends keeps the connection; after it, the next
    // request closes it.
    let mut c = Client::connect(&boot).expect("connect");
    handshake(&mut c, 1, "PLAIN");
    authenticate(&mut c, 2, b"\0alice\0alice-pw").expect("authenticate");
    std::thread::sleep(Duration::from_millis(800));
    handshake(&mut c, 1, "PLAIN");
    assert_eq!(
        authenticate(&mut c, 2, b"\0alice\0alice-pw")
            .expect("re-auth")
            .error_code,
        0
    );
    std::thread::sleep(Duration::from_millis(900));
    metadata(&mut c).expect("the renewed session is still open");
    std::thread::sleep(Duration::from_millis(1000));
    assert!(metadata(&mut c).is_err(), "an expired session is closed");
}

#[test]
fn a_missing_keystore_or_an_unknown_mechanism_fails_the_start_naming_the_setting() {
    let certs = certs();
    let mut b = Broker::new(&[]);
    b.set(format!(
        "listeners=SSL://127.0.0.1:{},CONTROLLER://127.0.0.1:{}",
        b.port, b.controller_port
    ));
    b.set("listener.security.protocol.map=SSL:SSL,CONTROLLER:PLAINTEXT".into());
    b.set(format!(
        "ssl.keystore.location={}",
        certs
            .ca
            .display()
            .to_string()
            .replace("ca.pem", "nothing.pem")
    ));
    let (status, err) = b.start_expecting_failure();
    assert!(!status.success());
    assert!(err.contains("ssl.keystore.location"), "{err}");

    let mut b = Broker::new(&[]);
    b.set(format!(
        "listeners=SASL_PLAINTEXT://127.0.0.1:{},CONTROLLER://127.0.0.1:{}",
        b.port, b.controller_port
    ));
    b.set(
        "listener.security.protocol.map=SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT".into(),
    );
    let (status, err) = b.start_expecting_failure();
    assert!(!status.success());
    assert!(
        err.contains("sasl.enabled.mechanisms") && err.contains("GSSAPI"),
        "{err}"
    );
    let mut b = Broker::new(&[]);
    b.set(
        "scram.bootstrap.credentials=SCRAM-SHA-512=[name=admin,password=top-secret,iterations=5]"
            .into(),
    );
    let (_, err) = b.start_expecting_failure();
    assert!(
        err.contains("scram.bootstrap.credentials") && !err.contains("top-secret"),
        "{err}"
    );
}

#[test]
fn an_admin_adds_a_scram_user_who_can_connect_at_once_and_kafka_python_round_trips() {
    let certs = certs();
    let b = secured("SASL_SSL", &certs, &[]);
    let boot = b.bootstrap();
    let ca = certs.ca.display().to_string();
    let v = crate::clients::run_python(
        "secured.py",
        &[
            "add-user",
            &boot,
            &ca,
            "admin",
            "admin-secret",
            "bob",
            "bob-pw",
        ],
    );
    assert_eq!(v["described"]["bob"][0][1], 8192, "{v}");
    assert!(
        v["described"]["bob"][0][0]
            .as_str()
            .is_some_and(|m| m.contains("SHA_512")),
        "{v}"
    );
    // The new user is let in on the first try after the call returned.
    let bob = client_settings(
        "SASL_SSL",
        &certs.ca,
        Some(("SCRAM-SHA-512", "bob", "bob-pw")),
    );
    assert!(
        can_connect(&boot, &bob),
        "bob right after AlterUserScramCredentials"
    );
    for (mechanism, user, password, topic) in [
        ("SCRAM-SHA-512", "bob", "bob-pw", "py-scram"),
        ("PLAIN", "alice", "alice-pw", "py-plain"),
    ] {
        let v = crate::clients::run_python(
            "secured.py",
            &[
                "round-trip",
                &boot,
                &ca,
                mechanism,
                user,
                password,
                topic,
                "100",
            ],
        );
        assert_eq!(v["consumed"], 100, "kafka-python {mechanism}: {v}");
        assert_eq!(v["committed"], 100, "kafka-python {mechanism}: {v}");
        assert_eq!(
            v["wrong_password_refused"], true,
            "kafka-python {mechanism}: {v}"
        );
    }
}

#[test]
fn bootstrap_credentials_exist_once_formed_and_their_setting_is_never_described() {
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    use kafka_protocol::messages::{
        DescribeConfigsRequest, DescribeConfigsResponse, DescribeUserScramCredentialsRequest,
        DescribeUserScramCredentialsResponse,
    };
    let b = Broker::start(&[
        "scram.bootstrap.credentials=SCRAM-SHA-256=[name=ops,password=hunter2];SCRAM-SHA-512=[name=ops,password=hunter2]",
    ]);
    let mut c = Client::connect(&b.bootstrap()).expect("connect");
    let users: DescribeUserScramCredentialsResponse = c
        .call(
            ApiKey::DescribeUserScramCredentials,
            0,
            &DescribeUserScramCredentialsRequest::default(),
        )
        .expect("describe users");
    let infos: Vec<(String, Vec<(i8, i32)>)> = users
        .results
        .iter()
        .map(|r| {
            (
                r.user.to_string(),
                r.credential_infos
                    .iter()
                    .map(|i| (i.mechanism, i.iterations))
                    .collect(),
            )
        })
        .collect();
    assert_eq!(infos, [("ops".to_string(), vec![(1, 4096), (2, 4096)])]);
    let req = DescribeConfigsRequest::default()
        .with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(4)
            .with_resource_name(s("1"))
            .with_configuration_keys(Some(vec![
                s("scram.bootstrap.credentials"),
                s("sasl.enabled.mechanisms"),
            ]))])
        .with_include_synonyms(true);
    let r: DescribeConfigsResponse = c
        .call(ApiKey::DescribeConfigs, 4, &req)
        .expect("describe configs");
    let configs = &r.results[0].configs;
    let secret = configs
        .iter()
        .find(|e| e.name.as_str() == "scram.bootstrap.credentials")
        .expect("described");
    assert!(secret.is_sensitive);
    assert_eq!(secret.value, None);
    assert!(secret.synonyms.iter().all(|y| y.value.is_none()));
    let open = configs
        .iter()
        .find(|e| e.name.as_str() == "sasl.enabled.mechanisms")
        .expect("described");
    assert_eq!(open.value.as_ref().map(|v| v.as_str()), Some("GSSAPI"));
    assert!(!open.is_sensitive);
}

/// Reads `topic` partition 0 from the beginning: the records seen, or the first error.
fn read(
    bootstrap: &str,
    settings: &[(&'static str, String)],
    topic: &str,
    want: usize,
    within: Duration,
) -> Result<usize, String> {
    let mut extra = as_refs(settings);
    extra.push(("group.id", "alice-group"));
    let c = consumer(bootstrap, &extra);
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("tpl");
    c.assign(&tpl).expect("assign");
    let mut got = 0;
    let deadline = std::time::Instant::now() + within;
    while got < want && std::time::Instant::now() < deadline {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(_)) => got += 1,
            Some(Err(e)) => return Err(e.to_string()),
            None => {}
        }
    }
    Ok(got)
}

/// The topics Metadata shows to a client with `settings`.
fn visible(bootstrap: &str, settings: &[(&'static str, String)]) -> Vec<String> {
    let p = producer(bootstrap, &as_refs(settings));
    let md = p
        .client()
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    let mut names: Vec<String> = md.topics().iter().map(|t| t.name().to_string()).collect();
    names.sort();
    names
}

/// Whether one record to `topic` is acknowledged.
fn can_write(bootstrap: &str, settings: &[(&'static str, String)], topic: &str) -> bool {
    let mut extra = as_refs(settings);
    extra.push(("message.timeout.ms", "5000"));
    let p = producer(bootstrap, &extra);
    send(&p, topic, 0, b"hello");
    flush(&p);
    let acked = p.context().acks.lock().expect("lock").len();
    acked == 1
}

#[test]
fn acls_allow_deny_prefix_hide_topics_and_survive_a_restart() {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::config::ClientConfig;
    let certs = certs();
    let mut b = secured(
        "SASL_PLAINTEXT",
        &certs,
        &[
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users=User:admin",
        ],
    );
    let boot = b.bootstrap();
    let admin = client_settings(
        "SASL_PLAINTEXT",
        &certs.ca,
        Some(("SCRAM-SHA-512", "admin", "admin-secret")),
    );
    let alice = client_settings(
        "SASL_PLAINTEXT",
        &certs.ca,
        Some(("PLAIN", "alice", "alice-pw")),
    );
    let bob = client_settings(
        "SASL_PLAINTEXT",
        &certs.ca,
        Some(("PLAIN", "bob", "bob-pw")),
    );
    let topics = ["orders", "logs-app", "logs-secret", "hidden"];
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &boot);
    for (k, v) in &admin {
        config.set(*k, v);
    }
    let client: AdminClient<DefaultClientContext> = config.create().expect("admin client");
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| NewTopic::new(t, 1, TopicReplication::Fixed(1)))
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    for r in rt
        .block_on(client.create_topics(&new, &AdminOptions::new()))
        .expect("create topics")
    {
        r.expect("a super user creates topics");
    }
    for t in ["logs-app", "logs-secret"] {
        let p = producer(&boot, &as_refs(&admin));
        for i in 0..10 {
            send(&p, t, i, b"log line");
        }
        flush(&p);
    }
    // No ACLs, allow.everyone.if.no.acl.found=false: alice sees and writes nothing.
    assert!(visible(&boot, &alice).is_empty());
    assert!(!can_write(&boot, &alice, "orders"));

    let acls = serde_json::json!([
        ["TOPIC", "orders", "LITERAL", "User:alice", "WRITE", "ALLOW"],
        ["TOPIC", "logs-", "PREFIXED", "User:alice", "READ", "ALLOW"],
        [
            "TOPIC",
            "logs-secret",
            "LITERAL",
            "User:alice",
            "ALL",
            "DENY"
        ],
        [
            "GROUP",
            "alice-group",
            "LITERAL",
            "User:alice",
            "READ",
            "ALLOW"
        ],
    ])
    .to_string();
    let v = crate::clients::run_python(
        "secured.py",
        &[
            "acls",
            &boot,
            "SASL_PLAINTEXT",
            "admin",
            "admin-secret",
            &acls,
        ],
    );
    assert_eq!(v["described"], 4, "{v}");
    let applied = std::time::Instant::now();
    assert!(
        can_write(&boot, &alice, "orders"),
        "WRITE on orders, right after CreateAcls"
    );
    println!(
        "alice's first write acknowledged {:?} after CreateAcls returned",
        applied.elapsed()
    );

    let check = |when: &str| {
        assert_eq!(
            visible(&boot, &alice),
            ["logs-app", "orders"],
            "{when}: DESCRIBE is implied; the DENY hides logs-secret"
        );
        let err = read(&boot, &alice, "orders", 1, Duration::from_secs(15))
            .expect_err("WRITE does not give READ");
        assert!(err.contains("authorization"), "{when}: {err}");
        assert_eq!(
            read(&boot, &alice, "logs-app", 10, Duration::from_secs(15)),
            Ok(10),
            "{when}: the prefixed READ"
        );
        // The topic is hidden from alice's Metadata, so librdkafka may not even fetch it:
        // either way, nothing of it arrives.
        match read(&boot, &alice, "logs-secret", 1, Duration::from_secs(5)) {
            Ok(n) => assert_eq!(n, 0, "{when}: the DENY beats the prefixed ALLOW"),
            Err(e) => assert!(e.contains("authorization"), "{when}: {e}"),
        }
        assert!(
            !can_write(&boot, &alice, "logs-app"),
            "{when}: READ does not give WRITE"
        );
        assert!(visible(&boot, &bob).is_empty(), "{when}: bob has no ACLs");
        assert_eq!(
            visible(&boot, &admin).len(),
            5,
            "{when}: a super user sees every topic (and __consumer_offsets)"
        );
    };
    check("after CreateAcls");
    b.restart();
    check("after a restart");
}

/// Sends the HTTP/2 preface over TLS to `port` and reads: whether the gRPC server answered.
/// `identity`: a PEM file with the client's key and certificate, or none.
fn controller_answers(port: u16, ca: &Path, identity: Option<&Path>) -> bool {
    use std::io::{Read, Write};
    use std::sync::Arc;

    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).expect("ca") {
        roots.add(c.expect("ca cert")).expect("add");
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots);
    let config = match identity {
        Some(pem) => {
            let certs = CertificateDer::pem_file_iter(pem)
                .expect("pem")
                .collect::<Result<Vec<_>, _>>()
                .expect("certs");
            let key = PrivateKeyDer::from_pem_file(pem).expect("key");
            builder
                .with_client_auth_cert(certs, key)
                .expect("client cert")
        }
        None => builder.with_no_client_auth(),
    };
    let name = ServerName::try_from("127.0.0.1").expect("name");
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).expect("conn");
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    if tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    matches!(tls.read(&mut buf), Ok(n) if n > 0)
}

#[test]
fn controllers_speak_mutual_tls_and_a_stranger_without_a_certificate_gets_nothing() {
    let certs = certs();
    let ks = format!("ssl.keystore.location={}", certs.server.display());
    let ts = format!("ssl.truststore.location={}", certs.ca.display());
    let mut cluster = crate::harness::Cluster::new(
        3,
        &[
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:SSL",
            "listener.name.controller.ssl.client.auth=required",
            &ks,
            &ts,
        ],
    );
    cluster.start(&[1, 2, 3], Duration::from_millis(100));
    let boot = cluster.bootstrap(1);
    crate::harness::wait_until(
        "three brokers over a TLS quorum",
        Duration::from_secs(30),
        || {
            consumer(&boot, &[])
                .fetch_metadata(None, Duration::from_secs(5))
                .is_ok_and(|m| m.brokers().len() == 3)
        },
    );
    // An admin write goes through the quorum (forwarded to the leader over TLS).
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse, TopicName};
    let mut c = Client::connect(&cluster.bootstrap(2)).expect("connect");
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(s("over-tls")))
            .with_num_partitions(3)
            .with_replication_factor(3)]);
    let r: CreateTopicsResponse = c.call(ApiKey::CreateTopics, 7, &req).expect("create");
    assert_eq!(r.topics[0].error_code, 0);
    round_trip(&boot, &[], "over-tls", 100);

    let port = cluster.node(1).controller_port;
    assert!(
        controller_answers(port, &certs.ca, Some(&certs.server)),
        "a peer with a certificate the CA signed is answered"
    );
    assert!(
        !controller_answers(port, &certs.ca, None),
        "a client without a certificate is not"
    );
    // Nor is anyone speaking plaintext gRPC.
    let mut raw = Raw::connect(port);
    raw.send_raw(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0");
    let mut buf = [0u8; 64];
    use std::io::Read;
    let got = raw.stream.read(&mut buf).unwrap_or(0);
    assert!(
        got == 0 || buf[..got].first() == Some(&0x15),
        "plaintext HTTP/2 must get no HTTP/2 answer (only a TLS alert): {:?}",
        &buf[..got]
    );
}

/// The single node of issue 19 (and README's Security section), started with exactly its
/// settings: SASL_SSL for clients, mutual TLS on CONTROLLER, SCRAM, the authorizer. As admin, a
/// client creates a user and gives it an ACL; the user can then write, and nothing else.
#[test]
fn the_documented_secure_single_node_starts_and_admin_grants_a_new_user_access() {
    let certs = certs();
    let mut b = Broker::new(&[]);
    let (port, cport) = (b.port, b.controller_port);
    for s in [
        "node.id=1".to_string(),
        "process.roles=broker,controller".into(),
        format!("listeners=SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}"),
        "listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SSL".into(),
        "controller.listener.names=CONTROLLER".into(),
        "inter.broker.listener.name=SASL_SSL".into(),
        format!("controller.quorum.voters=1@127.0.0.1:{cport}"),
        "ssl.keystore.type=PEM".into(),
        format!("ssl.keystore.location={}", certs.server.display()),
        format!("ssl.truststore.location={}", certs.ca.display()),
        "listener.name.controller.ssl.client.auth=required".into(),
        "sasl.enabled.mechanisms=SCRAM-SHA-512".into(),
        "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512".into(),
        "scram.bootstrap.credentials=SCRAM-SHA-512=[name=admin,password=admin-secret]".into(),
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer".into(),
        "super.users=User:admin".into(),
    ] {
        b.set(s);
    }
    b.spawn();
    let boot = b.bootstrap();
    let carol = add_scram_user(&boot, &certs, "carol", "carol-pw");
    assert!(!can_write(&boot, &carol, "carols"), "no ACL yet");
    let admin = client_settings(
        "SASL_SSL",
        &certs.ca,
        Some(("SCRAM-SHA-512", "admin", "admin-secret")),
    );
    assert!(
        can_write(&boot, &admin, "carols"),
        "the super user creates it by writing"
    );
    let acls = serde_json::json!([["TOPIC", "carols", "LITERAL", "User:carol", "WRITE", "ALLOW"]])
        .to_string();
    grant_as_admin(&boot, &certs, &acls);
    let granted = std::time::Instant::now();
    assert!(can_write(&boot, &carol, "carols"), "WRITE granted");
    assert!(
        granted.elapsed() < Duration::from_secs(1),
        "in force within a second: {:?}",
        granted.elapsed()
    );
    assert_eq!(visible(&boot, &carol), ["carols"]);
}

/// Three nodes with nothing in plaintext: clients and brokers on SASL_SSL (brokers replicate as
/// the SCRAM user `admin`, a super user), controllers on mutual TLS, the authorizer on. An
/// acks=all producer's records reach every replica (min.insync.replicas=3), and a consumer reads
/// them back.
#[test]
fn a_three_node_cluster_replicates_over_sasl_ssl_with_the_authorizer_on() {
    let certs = certs();
    let ks = format!("ssl.keystore.location={}", certs.server.display());
    let ts = format!("ssl.truststore.location={}", certs.ca.display());
    let mut cluster = crate::harness::Cluster::new(
        3,
        &[
            "listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SSL",
            "inter.broker.listener.name=SASL_SSL",
            "listener.name.controller.ssl.client.auth=required",
            &ks,
            &ts,
            "sasl.enabled.mechanisms=SCRAM-SHA-512",
            "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
            r#"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="admin-secret";"#,
            "scram.bootstrap.credentials=SCRAM-SHA-512=[name=admin,password=admin-secret]",
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users=User:admin",
        ],
    );
    for id in 1..=3 {
        let node = cluster.node(id);
        let (port, controller) = (node.port, node.controller_port);
        node.set(format!(
            "listeners=SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}"
        ));
    }
    cluster.start(&[1, 2, 3], Duration::from_millis(100));
    let boot = cluster.bootstrap(1);
    let admin = client_settings(
        "SASL_SSL",
        &certs.ca,
        Some(("SCRAM-SHA-512", "admin", "admin-secret")),
    );
    crate::harness::wait_until("three brokers", Duration::from_secs(30), || {
        producer(&boot, &as_refs(&admin))
            .client()
            .fetch_metadata(None, Duration::from_secs(5))
            .is_ok_and(|m| m.brokers().len() == 3)
    });
    let mut config = rdkafka::config::ClientConfig::new();
    config.set("bootstrap.servers", &boot);
    for (k, v) in &admin {
        config.set(*k, v);
    }
    let client: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        config.create().expect("admin client");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // Three in sync for every write: acks=all then completes only if both followers fetched.
    let topic =
        rdkafka::admin::NewTopic::new("replicated", 3, rdkafka::admin::TopicReplication::Fixed(3))
            .set("min.insync.replicas", "3");
    for r in rt
        .block_on(client.create_topics([&topic], &rdkafka::admin::AdminOptions::new()))
        .expect("create")
    {
        r.expect("created");
    }
    let mut acks_all = admin.clone();
    acks_all.push(("acks", "all".to_string()));
    round_trip(&boot, &acks_all, "replicated", 300);

    // A user and an ACL made through node 1 are in force on every broker within a second.
    // Erin's clients, one bootstrapped through each node, connected before the ACL exists.
    let erin = add_scram_user(&boot, &certs, "erin", "erin-pw");
    let clients: Vec<_> = (1..=3)
        .map(|id| producer(&cluster.bootstrap(id), &as_refs(&erin)))
        .collect();
    let seen = |p: &rdkafka::producer::BaseProducer<crate::harness::Recorder>| -> Vec<String> {
        p.client()
            .fetch_metadata(None, Duration::from_secs(5))
            .map(|m| m.topics().iter().map(|t| t.name().to_string()).collect())
            .unwrap_or_default()
    };
    for p in &clients {
        assert!(seen(p).is_empty(), "no ACL for erin yet");
    }
    let acls = serde_json::json!([[
        "TOPIC",
        "replicated",
        "LITERAL",
        "User:erin",
        "READ",
        "ALLOW"
    ]])
    .to_string();
    grant_as_admin(&boot, &certs, &acls);
    let granted = std::time::Instant::now();
    for (i, p) in clients.iter().enumerate() {
        assert_eq!(
            seen(p),
            ["replicated"],
            "node {} applies the new ACL",
            i + 1
        );
    }
    let took = granted.elapsed();
    println!("every broker showed erin her topic {took:?} after CreateAcls returned");
    assert!(took < Duration::from_secs(1), "{took:?}");
}

/// Runs `strom ARGS` (a tool) with `stdin`; returns (success, stdout + stderr).
fn strom_tool(args: &[&str], stdin: &str) -> (bool, String) {
    let (ok, out, err) = crate::harness::strom_cli(args, stdin);
    (ok, format!("{out}{err}"))
}

/// strom's own tools with `--command-config`: users and ACLs managed over SASL_SSL as admin
/// take effect for a librdkafka client; wrong credentials and an untrusted CA are named.
#[test]
fn strom_user_and_acl_commands_manage_a_secured_cluster() {
    let certs = certs();
    let b = secured(
        "SASL_SSL",
        &certs,
        &[
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users=User:admin",
        ],
    );
    let boot = b.bootstrap();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = |name: &str, password: &str, ca: &Path| {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            format!(
                "security.protocol=SASL_SSL\nssl.truststore.location={}\nsasl.mechanism=SCRAM-SHA-512\n\
                 sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" password=\"{password}\";\n",
                ca.display()
            ),
        )
        .expect("write");
        path.display().to_string()
    };
    let good = config("admin.properties", "admin-secret", &certs.ca);
    let reach = [
        "--bootstrap",
        boot.as_str(),
        "--command-config",
        good.as_str(),
    ];
    let run = |args: &[&str], stdin: &str| {
        let all: Vec<&str> = args.iter().chain(reach.iter()).copied().collect();
        strom_tool(&all, stdin)
    };
    let (ok, out) = run(&["user", "add", "dave"], "dave-pw\n");
    assert!(ok, "{out}");
    let (ok, out) = run(&["user", "list"], "");
    assert!(
        ok && out.contains("dave") && out.contains("SCRAM-SHA-512"),
        "{out}"
    );
    let dave = client_settings(
        "SASL_SSL",
        &certs.ca,
        Some(("SCRAM-SHA-512", "dave", "dave-pw")),
    );
    assert!(
        can_connect(&boot, &dave),
        "dave authenticates with the password given on stdin"
    );
    assert!(!can_write(&boot, &dave, "daves"), "no ACL yet");
    let admin = client_settings(
        "SASL_SSL",
        &certs.ca,
        Some(("SCRAM-SHA-512", "admin", "admin-secret")),
    );
    assert!(can_write(&boot, &admin, "daves"));
    let grant = [
        "acl",
        "add",
        "--principal",
        "User:dave",
        "--operation",
        "write",
        "--topic",
        "daves",
    ];
    let (ok, out) = run(&grant, "");
    assert!(ok, "{out}");
    let (ok, out) = run(&["acl", "list"], "");
    assert!(
        ok && out.contains("User:dave") && out.contains("Write"),
        "{out}"
    );
    assert!(can_write(&boot, &dave, "daves"), "the ACL the tool added");
    let mut revoke = grant;
    revoke[1] = "remove";
    let (ok, out) = run(&revoke, "");
    assert!(ok && out.contains("removed 1"), "{out}");
    assert!(
        !can_write(&boot, &dave, "daves"),
        "the ACL the tool removed"
    );
    let (ok, out) = run(&["cluster", "status"], "");
    assert!(ok, "{out}");

    // Failures in words.
    let wrong = config("wrong.properties", "nope", &certs.ca);
    let (ok, out) = strom_tool(
        &[
            "acl",
            "list",
            "--bootstrap",
            &boot,
            "--command-config",
            &wrong,
        ],
        "",
    );
    assert!(!ok && out.contains("bad credentials"), "{out}");
    assert!(!out.contains("nope"), "the password is not echoed: {out}");
    let stranger = config("stranger.properties", "admin-secret", &certs.stranger_ca);
    let (ok, out) = strom_tool(
        &[
            "user",
            "list",
            "--bootstrap",
            &boot,
            "--command-config",
            &stranger,
        ],
        "",
    );
    assert!(!ok && out.contains("not trusted"), "{out}");
}

/// A key and certificate replaced on disk are served without a restart: after the reload
/// interval, clients trusting only the new CA get in and clients trusting only the old do not.
#[test]
fn a_replaced_certificate_is_served_without_a_restart() {
    use rcgen::{CertificateParams, KeyPair};
    let certs = certs();
    let b = secured("SSL", &certs, &["ssl.certificate.reload.ms=200"]);
    let boot = b.bootstrap();
    let old_ca = client_settings("SSL", &certs.ca, None);
    let new_ca = client_settings("SSL", &certs.stranger_ca, None);
    assert!(can_connect(&boot, &old_ca));
    assert!(!can_connect(&boot, &new_ca));
    // A new server certificate, signed by a fresh CA.
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    // Its own name: a CA named like the certificate it signs confuses OpenSSL's path building.
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "fresh CA");
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let fresh_ca = certs.ca.with_file_name("fresh-ca.pem");
    std::fs::write(&fresh_ca, ca.pem()).expect("write ca");
    let key = KeyPair::generate().expect("key");
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .expect("params")
        .signed_by(&key, &ca, &ca_key)
        .expect("cert");
    // Written to a temporary name and renamed, as a careful operator (or cert-manager) does.
    let tmp = certs.server.with_file_name("server.pem.new");
    std::fs::write(&tmp, format!("{}{}", key.serialize_pem(), cert.pem())).expect("write");
    std::fs::rename(&tmp, &certs.server).expect("rename");
    let fresh = client_settings("SSL", &fresh_ca, None);
    crate::harness::wait_until(
        "the new certificate served",
        Duration::from_secs(20),
        || can_connect(&boot, &fresh),
    );
    assert!(
        !can_connect(&boot, &old_ca),
        "the old certificate is no longer served"
    );
}

/// A key and certificate for a client named `cn`, signed by the test CA, in one PEM file.
fn client_cert(certs: &Certs, cn: &str) -> PathBuf {
    use rcgen::{CertificateParams, DnType, KeyPair};
    let ca_pem = std::fs::read_to_string(certs.ca.with_file_name("ca-key.pem")).expect("ca key");
    let ca_key = KeyPair::from_pem(&ca_pem).expect("ca key");
    // The same name and key as the CA in ca.pem: what the leaf's issuer must match.
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "strom test CA");
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(DnType::CommonName, cn);
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, &ca, &ca_key).expect("cert");
    let path = certs.ca.with_file_name(format!("{cn}.pem"));
    std::fs::write(&path, format!("{}{}", key.serialize_pem(), cert.pem())).expect("write");
    path
}

/// On an SSL listener with client certificates required, a client is `User:` and its
/// certificate's subject (Kafka's DEFAULT mapping): super users and ACLs name it so.
#[test]
fn client_certificates_name_their_principal_for_super_users_and_acls() {
    let certs = certs();
    let trust = format!("ssl.truststore.location={}", certs.ca.display());
    let b = secured(
        "SSL",
        &certs,
        &[
            "ssl.client.auth=required",
            &trust,
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users=User:CN=admin-client",
        ],
    );
    let boot = b.bootstrap();
    let admin_pem = client_cert(&certs, "admin-client");
    let app_pem = client_cert(&certs, "app-client");
    let with_cert = |pem: &Path| {
        let mut s = client_settings("SSL", &certs.ca, None);
        s.push(("ssl.certificate.location", pem.display().to_string()));
        s.push(("ssl.key.location", pem.display().to_string()));
        s
    };
    let (admin, app) = (with_cert(&admin_pem), with_cert(&app_pem));
    assert!(
        !can_connect(&boot, &client_settings("SSL", &certs.ca, None)),
        "no certificate, no entry"
    );
    assert!(
        can_write(&boot, &admin, "certs"),
        "the super user by certificate"
    );
    assert!(!can_write(&boot, &app, "certs"), "no ACL for the app yet");
    let props = certs.ca.with_file_name("admin.properties");
    std::fs::write(
        &props,
        format!(
            "security.protocol=SSL\nssl.truststore.location={}\nssl.keystore.location={}\n",
            certs.ca.display(),
            admin_pem.display()
        ),
    )
    .expect("write");
    let (ok, out) = strom_tool(
        &[
            "acl",
            "add",
            "--principal",
            "User:CN=app-client",
            "--operation",
            "WRITE",
            "--topic",
            "certs",
            "--bootstrap",
            &boot,
            "--command-config",
            &props.display().to_string(),
        ],
        "",
    );
    assert!(ok, "{out}");
    assert!(
        can_write(&boot, &app, "certs"),
        "the ACL names the certificate's subject"
    );
    assert_eq!(visible(&boot, &app), ["certs"]);
}

/// Every advertised API at every version, asked by a principal the ACLs allow nothing (default
/// requests: empty lists, empty names), must be answered in a form that version can carry — the
/// refusals set error codes that some versions keep at the top and others per entry.
#[test]
fn refusals_by_the_authorizer_are_answered_at_every_advertised_version() {
    use bytes::{Buf, BufMut, BytesMut};
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::{Decodable, Encodable};
    let b = Broker::start(&[
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found=false",
    ]);
    fn body<R: Encodable + Default>(v: i16) -> Option<Vec<u8>> {
        let mut buf = BytesMut::new();
        R::default().encode(&mut buf, v).ok()?;
        Some(buf.to_vec())
    }
    macro_rules! defaults {
        ($($key:ident => $req:ty),* $(,)?) => {
            |key: ApiKey, v: i16| -> Option<Vec<u8>> {
                match key {
                    $(ApiKey::$key => body::<$req>(v),)*
                    _ => None,
                }
            }
        };
    }
    let defaults = defaults!(
        Fetch => FetchRequest, ListOffsets => ListOffsetsRequest,
        Metadata => MetadataRequest, CreateTopics => CreateTopicsRequest,
        DeleteTopics => DeleteTopicsRequest, DescribeConfigs => DescribeConfigsRequest,
        AlterConfigs => AlterConfigsRequest, IncrementalAlterConfigs => IncrementalAlterConfigsRequest,
        DeleteRecords => DeleteRecordsRequest, ElectLeaders => ElectLeadersRequest,
        DescribeLogDirs => DescribeLogDirsRequest, DescribeProducers => DescribeProducersRequest,
        DescribeTopicPartitions => DescribeTopicPartitionsRequest,
        CreatePartitions => CreatePartitionsRequest, DescribeCluster => DescribeClusterRequest,
        DescribeQuorum => DescribeQuorumRequest, OffsetForLeaderEpoch => OffsetForLeaderEpochRequest,
        InitProducerId => InitProducerIdRequest, FindCoordinator => FindCoordinatorRequest,
        JoinGroup => JoinGroupRequest, SyncGroup => SyncGroupRequest, Heartbeat => HeartbeatRequest,
        LeaveGroup => LeaveGroupRequest, OffsetCommit => OffsetCommitRequest,
        OffsetFetch => OffsetFetchRequest, DescribeGroups => DescribeGroupsRequest,
        ListGroups => ListGroupsRequest, DeleteGroups => DeleteGroupsRequest,
        OffsetDelete => OffsetDeleteRequest,
        DescribeUserScramCredentials => DescribeUserScramCredentialsRequest,
        AlterUserScramCredentials => AlterUserScramCredentialsRequest,
        CreateAcls => CreateAclsRequest, DescribeAcls => DescribeAclsRequest,
        DeleteAcls => DeleteAclsRequest,
    );
    // acks=0 (the default) would have no answer to read.
    let request = |key: ApiKey, v: i16| match key {
        ApiKey::Produce => {
            let mut buf = BytesMut::new();
            ProduceRequest::default()
                .with_acks(1)
                .with_timeout_ms(1000)
                .encode(&mut buf, v)
                .ok()
                .map(|_| buf.to_vec())
        }
        _ => defaults(key, v),
    };
    let mut raw = Raw::connect(b.port);
    let mut corr = 0;
    let mut sent = 0;
    for &(key, min, max) in strom::protocol::SUPPORTED {
        if matches!(
            key,
            ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
        ) {
            continue;
        }
        for v in min..=max {
            let Some(req) = request(key, v) else {
                // A default this version cannot encode (a field it lacks): not a request a
                // client could send.
                continue;
            };
            corr += 1;
            let header = RequestHeader::default()
                .with_request_api_key(key as i16)
                .with_request_api_version(v)
                .with_correlation_id(corr)
                .with_client_id(Some(s("authz")));
            let mut buf = BytesMut::new();
            buf.put_i32(0);
            header
                .encode(&mut buf, key.request_header_version(v))
                .expect("header");
            buf.put_slice(&req);
            let len = (buf.len() - 4) as i32;
            buf[..4].copy_from_slice(&len.to_be_bytes());
            raw.send_raw(&buf);
            let frame = raw
                .read_frame()
                .unwrap_or_else(|| panic!("{key:?} v{v}: the broker closed the connection"));
            let mut body = bytes::Bytes::from(frame);
            let head = ResponseHeader::decode(&mut body, key.response_header_version(v))
                .unwrap_or_else(|e| panic!("{key:?} v{v}: response header: {e}"));
            assert_eq!(head.correlation_id, corr, "{key:?} v{v}");
            ResponseKind::decode(key, &mut body, v)
                .unwrap_or_else(|e| panic!("{key:?} v{v}: response body: {e}"));
            assert_eq!(body.remaining(), 0, "{key:?} v{v}: bytes left over");
            sent += 1;
        }
    }
    assert!(sent > 150, "only {sent} (API, version) pairs were tried");
}
