//! The docker-compose topologies without Docker. Reads `deploy/docker-compose.yml` and
//! `deploy/docker-compose.secure.yml` (the single source of truth), starts each service's strom with the same environment in its own network
//! namespace, with its own address and hostname (`broker-1` ... resolving inside every
//! namespace), publishes the EXTERNAL ports on the host's loopback like `ports:` does, and
//! then produces and consumes through librdkafka from the host (EXTERNAL, localhost:19092) and
//! from inside a namespace (INTERNAL, broker-1:9092). The secure file's certificates are made by
//! `deploy/make-certs.sh` and its `/etc/strom/certs` mount pointed at them; its clients use
//! SASL_SSL as admin outside and mutual TLS as broker-2 inside.

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Service {
    name: String,
    hostname: String,
    env: BTreeMap<String, String>,
    /// (host port, container port)
    ports: Vec<(u16, u16)>,
}

fn read_compose(file: &str) -> Vec<Service> {
    let path = format!("{}/deploy/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("the compose file");
    let mut doc: serde_yaml::Value = serde_yaml::from_str(&text).expect("valid YAML");
    doc.apply_merge().expect("YAML merge keys");
    let services = doc["services"].as_mapping().expect("services");
    services
        .iter()
        .map(|(name, s)| {
            let name = name.as_str().expect("service name").to_string();
            let env = s["environment"]
                .as_mapping()
                .expect("environment map")
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().expect("key").to_string(),
                        v.as_str().expect("string value").to_string(),
                    )
                })
                .collect();
            let ports = s["ports"]
                .as_sequence()
                .map(|p| {
                    p.iter()
                        .filter_map(|x| x.as_str())
                        .filter_map(|x| x.split_once(':'))
                        .map(|(h, c)| {
                            (
                                h.parse().expect("host port"),
                                c.parse().expect("container port"),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            Service {
                hostname: s["hostname"].as_str().unwrap_or(&name).to_string(),
                name,
                env,
                ports,
            }
        })
        .collect()
}

/// A plain HTTP GET on localhost: the whole answer, status line first.
fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("admin listener");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("the `ip` command (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Everything the test creates, removed on drop even when the test fails.
struct Topology {
    tag: u32,
    namespaces: Vec<String>,
    children: Vec<Child>,
    stop: Arc<AtomicBool>,
    _data: tempfile::TempDir,
}

impl Drop for Topology {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
            let _ = std::fs::remove_dir_all(format!("/etc/netns/{ns}"));
        }
        let _ = Command::new("ip")
            .args(["link", "del", &format!("sbr{}", self.tag)])
            .status();
    }
}

/// Forwards host loopback `port` to `target`, like a published container port.
fn publish(port: u16, target: String, stop: Arc<AtomicBool>) {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("host port {port} is taken: {e}"));
    listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((inbound, _)) => {
                    let target = target.clone();
                    std::thread::spawn(move || {
                        let _ = inbound.set_nonblocking(false);
                        let Ok(outbound) = TcpStream::connect(&target) else {
                            return;
                        };
                        let (mut a, mut b) = (
                            inbound.try_clone().expect("clone"),
                            outbound.try_clone().expect("clone"),
                        );
                        let (mut c, mut d) = (outbound, inbound);
                        std::thread::spawn(move || {
                            let _ = std::io::copy(&mut a, &mut b);
                            let _ = b.shutdown(std::net::Shutdown::Write);
                        });
                        let _ = std::io::copy(&mut c, &mut d);
                        let _ = d.shutdown(std::net::Shutdown::Write);
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
}

fn probe_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(|d| d.parent())
        .expect("target dir")
        .join("examples")
        .join("probe")
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().expect("run");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// One topology at a time: they publish the same host ports.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn the_compose_topology_serves_clients_inside_and_outside() {
    topology("docker-compose.yml", 0);
}

#[test]
fn the_secure_compose_topology_serves_sasl_ssl_outside_and_mutual_tls_inside() {
    topology("docker-compose.secure.yml", 1);
}

/// Settings a client needs for `file`'s listeners: (outside, inside) `-X` pairs and the
/// `--command-config` files for strom's tools; all empty for the plaintext topology.
struct Access {
    outside: Vec<String>,
    inside: Vec<String>,
    outside_config: Option<PathBuf>,
    inside_config: Option<PathBuf>,
}

fn access(certs: Option<&std::path::Path>) -> Access {
    let Some(dir) = certs else {
        return Access {
            outside: Vec::new(),
            inside: Vec::new(),
            outside_config: None,
            inside_config: None,
        };
    };
    let ca = dir.join("ca.pem").display().to_string();
    let own = dir.join("broker-2.pem").display().to_string();
    let outside = vec![
        "security.protocol=SASL_SSL".to_string(),
        format!("ssl.ca.location={ca}"),
        "sasl.mechanism=SCRAM-SHA-512".into(),
        "sasl.username=admin".into(),
        "sasl.password=admin-secret".into(),
    ];
    let inside = vec![
        "security.protocol=SSL".to_string(),
        format!("ssl.ca.location={ca}"),
        format!("ssl.certificate.location={own}"),
        format!("ssl.key.location={own}"),
    ];
    let write = |name: &str, lines: String| {
        let path = dir.join(name);
        std::fs::write(&path, lines).expect("write");
        Some(path)
    };
    Access {
        outside_config: write(
            "outside.properties",
            format!("security.protocol=SASL_SSL\nssl.truststore.location={ca}\nsasl.mechanism=SCRAM-SHA-512\nsasl.username=admin\nsasl.password=admin-secret\n"),
        ),
        inside_config: write(
            "inside.properties",
            format!("security.protocol=SSL\nssl.truststore.location={ca}\nssl.keystore.location={own}\n"),
        ),
        outside,
        inside,
    }
}

/// `strom ARGS [--command-config FILE]`, run as a process (the tools' security setting is
/// per process).
fn tool(ns: Option<&str>, args: &[&str], config: &Option<PathBuf>) -> (bool, String) {
    let strom = env!("CARGO_BIN_EXE_strom");
    let mut cmd = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, strom]);
            c
        }
        None => Command::new(strom),
    };
    cmd.args(args);
    if let Some(c) = config {
        cmd.arg("--command-config").arg(c);
    }
    run(&mut cmd)
}

fn topology(file: &str, variant: u32) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    #[allow(unsafe_code)]
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(
        root,
        "this test creates network namespaces and needs root (CI runs as root)"
    );
    let mut services = read_compose(file);
    assert_eq!(services.len(), 3, "three brokers in the compose file");
    // The secure file mounts its certificates at /etc/strom/certs: made here, pointed at here.
    let certs = tempfile::tempdir().expect("tempdir");
    let secure = services
        .iter()
        .any(|s| s.env.values().any(|v| v.contains("/etc/strom/certs")));
    if secure {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/make-certs.sh");
        let (ok, out) = run(Command::new("sh").arg(script).arg(certs.path()));
        assert!(ok, "deploy/make-certs.sh: {out}");
        let dir = certs.path().display().to_string();
        for s in &mut services {
            for v in s.env.values_mut() {
                *v = v.replace("/etc/strom/certs", &dir);
            }
        }
    }
    let access = access(secure.then(|| certs.path()));
    let tag = (std::process::id() * 2 + variant) % 100_000;
    let subnet = format!("172.31.{}", 100 + tag % 100);
    let stop = Arc::new(AtomicBool::new(false));
    let data = tempfile::tempdir().expect("tempdir");
    let mut topo = Topology {
        tag,
        namespaces: Vec::new(),
        children: Vec::new(),
        stop: stop.clone(),
        _data: data,
    };
    let bridge = format!("sbr{tag}");
    ip(&["link", "add", &bridge, "type", "bridge"]);
    ip(&["addr", "add", &format!("{subnet}.1/24"), "dev", &bridge]);
    ip(&["link", "set", &bridge, "up"]);
    let hosts: String = std::iter::once("127.0.0.1 localhost\n".to_string())
        .chain(
            services
                .iter()
                .enumerate()
                .map(|(i, s)| format!("{subnet}.{} {}\n", 11 + i, s.hostname)),
        )
        .collect();
    let strom = env!("CARGO_BIN_EXE_strom");
    for (i, s) in services.iter().enumerate() {
        let ns = format!("strom{tag}-{}", i + 1);
        ip(&["netns", "add", &ns]);
        topo.namespaces.push(ns.clone());
        std::fs::create_dir_all(format!("/etc/netns/{ns}")).expect("/etc/netns");
        std::fs::write(format!("/etc/netns/{ns}/hosts"), &hosts).expect("hosts");
        std::fs::write(
            format!("/etc/netns/{ns}/hostname"),
            format!("{}\n", s.hostname),
        )
        .expect("hostname");
        let veth = format!("sv{tag}{}", i + 1);
        ip(&[
            "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ]);
        ip(&["link", "set", &veth, "master", &bridge]);
        ip(&["link", "set", &veth, "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{subnet}.{}/24", 11 + i),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        let dir = topo._data.path().join(&s.name);
        let child = Command::new("ip")
            .args(["netns", "exec", &ns, strom, "serve"])
            .envs(&s.env)
            .env("STROM_LOG_DIRS", &dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start strom in its namespace");
        topo.children.push(child);
        for (host, container) in &s.ports {
            publish(
                *host,
                format!("{subnet}.{}:{container}", 11 + i),
                stop.clone(),
            );
        }
    }

    // From the host, through the EXTERNAL listener published on localhost:19092.
    let external = "localhost:19092";
    let started = Instant::now();
    loop {
        let (_, status) = tool(
            None,
            &["cluster", "status", "--bootstrap", external],
            &access.outside_config,
        );
        if status.matches("active").count() == 3 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the compose cluster did not form: {status}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (ok, report) = tool(
        None,
        &["doctor", "--bootstrap", external],
        &access.outside_config,
    );
    assert!(ok, "{report}");
    assert!(
        !report.contains("broker-"),
        "a client on EXTERNAL must only see EXTERNAL addresses:\n{report}"
    );
    let (ok, out) = run(Command::new(probe_binary())
        .args([
            "--bootstrap",
            external,
            "--topic",
            "outside",
            "--count",
            "200",
        ])
        .args(access.outside.iter().flat_map(|x| ["-X", x.as_str()])));
    assert!(ok, "producing and consuming from the host failed: {out}");
    println!("host, EXTERNAL: {}", out.trim());

    // The plain topology publishes each broker's admin HTTP listener: the console and /ready
    // answer from the host.
    if file == "docker-compose.yml" {
        for (port, broker) in [(19644, 1), (19645, 2), (19646, 3)] {
            let ready = http_get(port, "/ready");
            assert!(
                ready.starts_with("HTTP/1.1 200"),
                "broker {broker}: {ready}"
            );
        }
        let page = http_get(19644, "/");
        assert!(page.contains("<title>strom console</title>"), "{page}");
    }

    // From inside broker-2's namespace, through the INTERNAL listener by container name.
    let ns = &topo.namespaces[1];
    let (ok, report) = tool(
        Some(ns),
        &["doctor", "--bootstrap", "broker-1:9092"],
        &access.inside_config,
    );
    assert!(
        ok && report.contains("broker-3:9092"),
        "INTERNAL metadata inside the network:\n{report}"
    );
    println!("doctor inside the network:\n{report}");
    let probe = probe_binary();
    let (ok, out) = run(Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(&probe)
        .args([
            "--bootstrap",
            "broker-1:9092",
            "--topic",
            "inside",
            "--count",
            "200",
        ])
        .args(access.inside.iter().flat_map(|x| ["-X", x.as_str()])));
    assert!(
        ok,
        "producing and consuming inside the network failed: {out}"
    );
    println!("broker-2's namespace, INTERNAL: {}", out.trim());
}
