//! Kafka's own configuration files work unchanged: the sample KRaft `server.properties` of
//! Kafka 4 (only its ports and data directory changed) starts a working node, and a misspelt
//! setting is refused with the nearest known name.

use std::process::{Command, Stdio};

use rdkafka::producer::Producer;
use std::time::{Duration, Instant};

use crate::harness::{consume_all, flush, free_port, producer, send, Broker};

/// A broker started from a properties file alone (no `--set`).
struct FromFile {
    child: std::process::Child,
}

impl Drop for FromFile {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn kafka_4_sample_server_properties_starts_a_working_node() {
    let sample = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/kafka4-server.properties"
    ))
    .expect("fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    let (port, controller) = (free_port(), free_port());
    let data = dir.path().join("kraft-combined-logs");
    let text = sample
        .replace(":9092", &format!(":{port}"))
        .replace(":9093", &format!(":{controller}"))
        .replace("/tmp/kraft-combined-logs", &data.display().to_string());
    let path = dir.path().join("server.properties");
    std::fs::write(&path, text).expect("write properties");

    let log = dir.path().join("strom.log");
    let child = Command::new(env!("CARGO_BIN_EXE_strom"))
        .arg("serve")
        .arg("--config")
        .arg(&path)
        .env("RUST_LOG", "warn")
        .stdout(std::fs::File::create(&log).expect("log file"))
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn strom");
    let mut node = FromFile { child };
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = node.child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = node.child.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            panic!("strom refused Kafka's sample configuration ({status}): {err}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "strom did not start listening"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // The node works: advertised as localhost, as the file says.
    let boot = format!("localhost:{port}");
    let p = producer(&boot, &[("acks", "all")]);
    for id in 0..50u64 {
        send(
            &p,
            "from-kafka-config",
            id,
            format!("record {id}").as_bytes(),
        );
    }
    flush(&p);
    assert_eq!(p.context().acks.lock().expect("acks").len(), 50);
    let got = consume_all(&boot, "from-kafka-config", 1, 50, Duration::from_secs(30));
    assert_eq!(got.len(), 50);
    assert!(
        data.join("from-kafka-config-0").is_dir(),
        "data under log.dirs"
    );

    // One warning names the Kafka settings that do not apply here.
    let logged = std::fs::read_to_string(&log).expect("log");
    let warnings: Vec<&str> = logged
        .lines()
        .filter(|l| l.contains("accepted and ignored"))
        .collect();
    assert_eq!(warnings.len(), 1, "{logged}");
    for name in ["num.network.threads", "num.io.threads"] {
        assert!(warnings[0].contains(name), "{}", warnings[0]);
    }
}

#[test]
fn a_misspelt_setting_is_refused_with_a_suggestion() {
    let mut b = Broker::new(&["log.retention.hour=12"]);
    let (status, err) = b.start_expecting_failure();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains("unknown setting `log.retention.hour`")
            && err.contains("did you mean `log.retention.hours`?"),
        "{err}"
    );
    // A name neither strom nor Kafka knows, far from every known one, gets no guess.
    let mut b = Broker::new(&["completely.made.up.name=1"]);
    let (status, err) = b.start_expecting_failure();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains("unknown setting `completely.made.up.name`") && !err.contains("did you mean"),
        "{err}"
    );
}
