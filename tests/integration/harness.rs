//! Test harness: real `strom` processes on OS-chosen ports, and librdkafka clients against them.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer, ProducerContext};
use rdkafka::{Offset, TopicPartitionList};

/// Tests that measure failover or pause times take this lock, so they do not run while another
/// of them (or the chaos scenario) loads the two cores.
pub fn timing_sensitive() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// A port below the kernel's ephemeral range (so client connections never take it between
/// our check and the broker's bind), free right now.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = (std::process::id() * 7919) % 10_000;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + ((start + n) % 12_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// One `strom` process with its own data directory and ports; restartable on the same ones.
pub struct Broker {
    pub port: u16,
    pub controller_port: u16,
    /// The HTTP admin listener (/metrics).
    pub admin_port: u16,
    pub dir: PathBuf,
    /// Its id and the voters it shares, as one of a `Cluster`'s layout (None: a single node).
    member: Option<(i32, String)>,
    _tmp: Option<tempfile::TempDir>,
    sets: Vec<String>,
    child: Option<Child>,
}

impl Broker {
    /// Starts a broker with `sets` (name=value) on top of test defaults.
    pub fn start(sets: &[&str]) -> Broker {
        let mut b = Broker::new(sets);
        b.spawn();
        b
    }

    /// A broker with its own ports and data directory, not started yet.
    pub fn new(sets: &[&str]) -> Broker {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (port, controller_port, admin_port) = (free_port(), free_port(), free_port());
        Broker {
            port,
            controller_port,
            admin_port,
            dir: tmp.path().to_path_buf(),
            member: None,
            _tmp: Some(tmp),
            sets: sets.iter().map(|s| s.to_string()).collect(),
            child: None,
        }
    }

    pub fn set(&mut self, setting: String) {
        self.sets.push(setting);
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The exit status once the process has ended (it is then no longer running).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        Some(status)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The process's peak resident memory (VmHWM), in bytes.
    pub fn peak_rss(&self) -> Option<u64> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    /// Starts the process expecting it to refuse; returns its exit status and stderr.
    pub fn start_expecting_failure(&mut self) -> (std::process::ExitStatus, String) {
        let mut child = self
            .command()
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn strom");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                return (status, err);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("strom kept running although it should have refused to start");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn command(&self) -> Command {
        let spec = strom::dev::NodeSpec {
            id: self.member.as_ref().map(|m| m.0),
            voters: self.member.as_ref().map(|m| m.1.clone()),
            host: "127.0.0.1".into(),
            port: self.port,
            controller_port: self.controller_port,
            log_dir: self.dir.join("data"),
            admin_port: Some(self.admin_port),
        };
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_strom"));
        cmd.args(spec.serve_args());
        // Few offsets partitions keep group coordination cheap on two cores; a test's own
        // settings come later and win.
        cmd.arg("--set").arg("offsets.topic.num.partitions=5");
        for s in &self.sets {
            cmd.arg("--set").arg(s);
        }
        // TEST_STROM_LOG=<filter> shows the brokers' logs (they go to stdout) while debugging.
        let log = std::env::var("TEST_STROM_LOG").ok();
        cmd.env("RUST_LOG", log.as_deref().unwrap_or("error"))
            .stdout(if log.is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .stderr(Stdio::inherit());
        cmd
    }

    /// Starts (or restarts) the process on the same ports and data.
    pub fn spawn(&mut self) {
        self.child = Some(self.command().spawn().expect("spawn strom"));
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("strom exited at start: {status}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("strom did not start listening on {}", self.port);
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit; returns how long it took.
    pub fn terminate(&mut self) -> Duration {
        let started = Instant::now();
        if let Some(mut c) = self.child.take() {
            signal(c.id() as i32, libc::SIGTERM);
            let status = c.wait().expect("wait");
            assert!(status.success(), "strom exited with {status} on SIGTERM");
        }
        started.elapsed()
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Three (or more) voters on their own ports, configured like `strom dev`.
pub struct Cluster {
    pub nodes: Vec<Broker>,
}

impl Cluster {
    /// Creates `n` nodes (ids 1..=n), none started.
    pub fn new(n: usize, sets: &[&str]) -> Cluster {
        let mut nodes: Vec<Broker> = (0..n).map(|_| Broker::new(sets)).collect();
        let layout = strom::dev::Layout {
            nodes: nodes
                .iter()
                .map(|b| ("127.0.0.1".to_string(), b.port, b.controller_port))
                .collect(),
        };
        for (i, b) in nodes.iter_mut().enumerate() {
            b.member = Some((i as i32 + 1, layout.voters()));
        }
        Cluster { nodes }
    }

    /// Node by id (1-based).
    pub fn node(&mut self, id: i32) -> &mut Broker {
        &mut self.nodes[id as usize - 1]
    }

    pub fn bootstrap(&self, id: i32) -> String {
        self.nodes[id as usize - 1].bootstrap()
    }

    /// Starts the nodes in the given order, `gap` apart.
    pub fn start(&mut self, order: &[i32], gap: Duration) {
        for id in order {
            self.node(*id).spawn();
            std::thread::sleep(gap);
        }
    }
}

/// Sends `sig` to our own child process.
pub fn signal(pid: i32, sig: i32) {
    assert!(
        strom::dev::signal(pid as u32, sig),
        "kill({pid}, {sig}) failed"
    );
}

/// A delivered (or failed) record as the producer saw it.
#[derive(Clone, Debug)]
pub struct Ack {
    pub id: u64,
    pub partition: i32,
    pub offset: i64,
    pub at: Instant,
}

#[derive(Default)]
pub struct Recorder {
    pub acks: Mutex<Vec<Ack>>,
    pub errors: Mutex<Vec<String>>,
}

impl ClientContext for Recorder {}

impl ProducerContext for Recorder {
    type DeliveryOpaque = Box<u64>;
    fn delivery(&self, r: &DeliveryResult<'_>, id: Box<u64>) {
        match r {
            Ok(m) => self.acks.lock().expect("lock").push(Ack {
                id: *id,
                partition: m.partition(),
                offset: m.offset(),
                at: Instant::now(),
            }),
            Err((e, _)) => self.errors.lock().expect("lock").push(e.to_string()),
        }
    }
}

pub fn producer(bootstrap: &str, extra: &[(&str, &str)]) -> BaseProducer<Recorder> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("message.timeout.ms", "30000")
        .set("linger.ms", "5")
        .set("log_level", "3");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    c.create_with_context(Recorder::default())
        .expect("producer")
}

pub fn consumer(bootstrap: &str, extra: &[(&str, &str)]) -> BaseConsumer {
    let mut c = ClientConfig::new();
    // librdkafka needs a group id even for assign(); it then also looks up the coordinator.
    c.set("bootstrap.servers", bootstrap)
        .set("group.id", "strom-tests")
        .set("enable.auto.commit", "false")
        .set("check.crcs", "true")
        .set("log_level", "3");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    c.create().expect("consumer")
}

/// A consumed record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Got {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub timestamp: Option<i64>,
}

/// Reads every partition of `topic` from the beginning until `expect` records arrived or
/// `timeout` passed.
pub fn consume_all(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    expect: usize,
    timeout: Duration,
) -> Vec<Got> {
    let c = consumer(bootstrap, &[]);
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("tpl");
    }
    c.assign(&tpl).expect("assign");
    let mut out = Vec::with_capacity(expect);
    let deadline = Instant::now() + timeout;
    while out.len() < expect && Instant::now() < deadline {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out.push(Got {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(|k| k.to_vec()),
                payload: m.payload().map(|p| p.to_vec()),
                headers: m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|x| {
                                (
                                    x.key.to_string(),
                                    x.value.map(|v| v.to_vec()).unwrap_or_default(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                timestamp: m.timestamp().to_millis(),
            }),
            Some(Err(e)) => panic!("consumer error: {e}"),
            None => {}
        }
    }
    out
}

/// Blocks until every queued message is delivered or failed.
pub fn flush(p: &BaseProducer<Recorder>) {
    let _ = p.flush(Duration::from_secs(60));
}

/// Raw Kafka protocol client for malformed-input tests.
pub struct Raw {
    pub stream: TcpStream,
}

impl Raw {
    pub fn connect(port: u16) -> Raw {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        Raw { stream }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Reads one response frame; `None` when the broker closed the connection.
    pub fn read_frame(&mut self) -> Option<Vec<u8>> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).ok()?;
        let mut buf = vec![0u8; i32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut buf).ok()?;
        Some(buf)
    }

    /// True if the broker closed the connection (EOF or reset) within the read timeout.
    pub fn is_closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        match self.stream.read(&mut b) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        }
    }
}

/// Polls `f` every 50 ms until it holds; panics naming `what` after `timeout`. Returns how long
/// it took.
pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if f() {
            return started.elapsed();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// Queues one record (id as the delivery opaque), waiting while the local queue is full.
pub fn send(p: &BaseProducer<Recorder>, topic: &str, id: u64, payload: &[u8]) {
    send_to(p, topic, None, id, payload)
}

/// `send`, to a chosen partition (`None`: librdkafka's partitioner picks, at random for the
/// empty key — tests that need every partition filled choose).
pub fn send_to(
    p: &BaseProducer<Recorder>,
    topic: &str,
    partition: Option<i32>,
    id: u64,
    payload: &[u8],
) {
    let mut rec = rdkafka::producer::BaseRecord::with_opaque_to(topic, Box::new(id))
        .key(&[])
        .payload(payload);
    if let Some(n) = partition {
        rec = rec.partition(n);
    }
    loop {
        match p.send(rec) {
            Ok(()) => return,
            Err((_, r)) => {
                rec = r;
                p.poll(Duration::from_millis(5));
            }
        }
    }
}

/// The Python clients the tests drive (kafka-python, aiokafka, confluent-kafka), installed once with pip into
/// the target directory; returns the directory to put on PYTHONPATH.
pub fn python_deps() -> PathBuf {
    static INSTALL: Mutex<()> = Mutex::new(());
    let _one_at_a_time = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    let deps = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("pydeps");
    const PACKAGES: [(&str, &str); 3] = [
        ("kafka_python-2.2.15.dist-info", "kafka-python==2.2.15"),
        ("aiokafka-0.14.0.dist-info", "aiokafka==0.14.0"),
        // A wheel with its own librdkafka: the admin calls rdkafka's Rust crate lacks.
        (
            "confluent_kafka-2.16.1.dist-info",
            "confluent-kafka==2.16.1",
        ),
    ];
    if PACKAGES.iter().all(|(dir, _)| deps.join(dir).exists()) {
        return deps;
    }
    let out = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--upgrade",
            "--target",
        ])
        .arg(&deps)
        .args(PACKAGES.iter().map(|(_, spec)| spec))
        // Installing into a private --target directory is fine on "externally managed" system
        // Pythons too.
        .env("PIP_BREAK_SYSTEM_PACKAGES", "1")
        .output()
        .expect("run pip");
    assert!(
        out.status.success(),
        "pip install of the Python clients failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    deps
}

/// Runs a Python `script` (with the pinned clients on its path) given `bootstrap` as its
/// argument; it must succeed and print one JSON value, which is returned.
pub fn python_json(script: &str, bootstrap: &str) -> serde_json::Value {
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(bootstrap)
        .env("PYTHONPATH", python_deps())
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the Python client failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).expect("json from python")
}

/// One record batch (v2, not idempotent) holding one record: `value` under `key`, stamped `ts`,
/// compressed with `compression` — the hand-made batch the wire-level tests send.
pub fn one_record_batch(
    key: Option<&[u8]>,
    value: &[u8],
    ts: i64,
    compression: kafka_protocol::records::Compression,
) -> bytes::Bytes {
    use kafka_protocol::records::{Record, TimestampType};
    encode_record(
        &Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: -1,
            timestamp: ts,
            key: key.map(bytes::Bytes::copy_from_slice),
            value: Some(bytes::Bytes::copy_from_slice(value)),
            headers: Default::default(),
        },
        compression,
    )
}

/// `record` alone in a v2 record batch.
pub fn encode_record(
    record: &kafka_protocol::records::Record,
    compression: kafka_protocol::records::Compression,
) -> bytes::Bytes {
    use kafka_protocol::records::{RecordBatchEncoder, RecordEncodeOptions};
    let mut buf = bytes::BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        [record],
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .expect("encode batch");
    buf.freeze()
}

/// Runs the `strom` command line (a tool) with `stdin`: (success, stdout, stderr).
pub fn strom_cli(args: &[&str], stdin: &str) -> (bool, String, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_strom"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run strom");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
