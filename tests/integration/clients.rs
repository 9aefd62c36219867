//! Other generations and families of Kafka clients, run as a user runs them: Debian's `kcat`
//! (an older librdkafka than the tests link), kafka-python pinned to broker versions 2.0, 2.6 and
//! 3.0 as well as negotiated, and aiokafka. Each produces, consumes through a consumer group,
//! commits, and makes the admin calls it has. `.ci/run` installs kcat; pip installs the Python
//! clients into the target directory.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::TopicPartitionList;

use crate::harness::{consumer, python_deps, Broker};

pub fn run_python(script: &str, args: &[&str]) -> serde_json::Value {
    let deps = python_deps();
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(script);
    let out = bounded(
        Command::new("python3")
            .arg(&path)
            .args(args)
            .env("PYTHONPATH", &deps),
        None,
        Duration::from_secs(180),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script} {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{script} printed no JSON ({e}): {stdout}"))
}

/// What a round-trip script reported: every record consumed once, the group's commits at the
/// partitions' ends, and the group listed.
fn check_round_trip(who: &str, v: &serde_json::Value, topic: &str, partitions: usize) {
    assert_eq!(v["listed"], true, "{who}: topic listed");
    assert_eq!(v["distinct"], 60, "{who}: distinct records consumed");
    let consumed: BTreeMap<String, i64> =
        serde_json::from_value(v["consumed"].clone()).expect("consumed");
    assert_eq!(
        consumed.values().sum::<i64>(),
        60,
        "{who}: consumed once each"
    );
    let ends: BTreeMap<String, i64> =
        serde_json::from_value(v["end_offsets"].clone()).expect("end offsets");
    let committed: BTreeMap<String, i64> =
        serde_json::from_value(v["committed"].clone()).expect("committed");
    assert_eq!(ends.len(), partitions, "{who}: partitions assigned");
    assert_eq!(committed, ends, "{who}: commits at each partition's end");
    let groups: Vec<String> = serde_json::from_value(v["groups"].clone()).expect("groups");
    assert!(
        groups.contains(&format!("group-{topic}")),
        "{who}: group listed in {groups:?}"
    );
}

#[test]
fn kafka_python_at_pinned_and_negotiated_versions() {
    let b = Broker::start(&["group.initial.rebalance.delay.ms=0"]);
    let boot = b.bootstrap();
    for api in ["negotiated", "2.0.0", "2.6.0", "3.0.0"] {
        let topic = format!("kafka-python-{}", api.replace('.', "-"));
        let v = run_python("kafka_python_round_trip.py", &[&boot, api, &topic]);
        let who = format!("kafka-python api_version={api}");
        check_round_trip(&who, &v, &topic, 3);
        assert_eq!(
            v["partitions"], 3,
            "{who}: create_partitions grew the topic"
        );
        assert_eq!(v["group_state"], "Empty", "{who}: group after close");
        assert_eq!(v["described_configs"], 1, "{who}: describe_configs");
        assert_eq!(v["deleted"], true, "{who}: delete_topics");
    }
}

#[test]
fn aiokafka_round_trip_through_a_group() {
    let b = Broker::start(&["group.initial.rebalance.delay.ms=0"]);
    let topic = "aiokafka";
    let v = run_python("aiokafka_round_trip.py", &[&b.bootstrap(), topic]);
    check_round_trip("aiokafka", &v, topic, 3);
}

/// Runs `cmd` with `stdin` as its input; kills it and fails after `limit` (output stays small:
/// these clients print a line or a JSON object).
fn bounded(cmd: &mut Command, stdin: Option<&str>, limit: Duration) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        input
            .write_all(text.as_bytes())
            .expect("write to the client");
    }
    drop(input);
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "{cmd:?} did not finish in {limit:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

/// Debian's kcat, with the system's librdkafka; fails the test if kcat fails.
fn kcat(args: &[&str], stdin: Option<&str>) -> Output {
    if Command::new("kcat").arg("-V").output().is_err() {
        panic!("kcat is not installed: `apt-get install kcat` (.ci/run does)");
    }
    // cargo puts the librdkafka it built for the rdkafka crate on the library path; kcat must
    // load the system's own, older one. kcat exits at the end of the partition (-e) or once
    // stdin is produced.
    let out = bounded(
        Command::new("kcat")
            .args(args)
            .env_remove("LD_LIBRARY_PATH"),
        stdin,
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "kcat {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// README's quick start, as written, with Debian's kcat (librdkafka 2.0.2 on bookworm).
#[test]
fn kcat_runs_the_readme_quick_start() {
    let b = Broker::start(&["group.initial.rebalance.delay.ms=0"]);
    let boot = b.bootstrap();
    let version = kcat(&["-V"], None);
    eprintln!("{}", String::from_utf8_lossy(&version.stdout).trim());

    kcat(&["-b", &boot, "-t", "demo", "-P"], Some("hello\n"));
    let out = kcat(
        &["-b", &boot, "-t", "demo", "-C", "-o", "beginning", "-e"],
        None,
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");

    let out = kcat(&["-b", &boot, "-L"], None);
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.contains("topic \"demo\" with 1 partitions"),
        "{listing}"
    );
    assert!(
        listing.contains(&format!("at {boot} (controller)")),
        "{listing}"
    );

    kcat(&["-b", &boot, "-t", "demo", "-P"], Some("again\n"));
    let out = kcat(
        &[
            "-b",
            &boot,
            "-G",
            "quickstart",
            "demo",
            "-o",
            "beginning",
            "-e",
        ],
        None,
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\nagain\n");
    // kcat's group consumer commits what it read when it closes.
    let c = consumer(&boot, &[("group.id", "quickstart")]);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition("demo", 0);
    let committed = c
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed");
    assert_eq!(
        committed.elements()[0].offset(),
        rdkafka::Offset::Offset(2),
        "the group's commit"
    );
}
