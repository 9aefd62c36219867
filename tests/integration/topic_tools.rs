//! `strom topic ...`, `strom produce` and `strom consume` on a three-node cluster: 1,000 keyed
//! records with headers round trip, a group's position is committed and resumed, and what the
//! tools wrote is what librdkafka reads.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::{consume_all, strom_cli as strom, Cluster};

fn ok(args: &[&str], stdin: &str) -> String {
    let (success, out, err) = strom(args, stdin);
    assert!(success, "strom {args:?}: {out}{err}");
    out
}

#[test]
fn topic_tools_produce_and_consume_round_trip_keys_and_headers_on_three_nodes() {
    let mut cluster = Cluster::new(3, &[]);
    let boot = crate::cluster::start_three(&mut cluster);
    let b = boot.as_str();
    let made = ok(
        &[
            "topic",
            "create",
            "tools",
            "-p",
            "3",
            "-r",
            "3",
            "-c",
            "retention.ms=86400000",
            "--bootstrap",
            b,
        ],
        "",
    );
    assert!(
        made.contains("created tools: 3 partitions, replication factor 3"),
        "{made}"
    );
    let (success, _, err) = strom(&["topic", "create", "tools", "--bootstrap", b], "");
    assert!(!success && err.contains("TopicAlreadyExists"), "{err}");
    // Producing to a topic that does not exist says so, and how to make it.
    let (success, _, err) = strom(&["produce", "no-such-topic", "--bootstrap", b], "x\n");
    assert!(
        !success && err.contains("topic no-such-topic does not exist (create it with"),
        "{err}"
    );
    assert!(ok(&["topic", "list", "--bootstrap", b], "").contains("tools"));
    let described: serde_json::Value = serde_json::from_str(&ok(
        &["topic", "describe", "tools", "--json", "--bootstrap", b],
        "",
    ))
    .expect("json");
    assert_eq!(described["configs"]["retention.ms"], "86400000");
    let parts = described["partitions"].as_array().expect("partitions");
    assert_eq!(parts.len(), 3);
    for p in parts {
        assert_eq!(p["replicas"].as_array().map(Vec::len), Some(3), "{p}");
    }
    ok(
        &[
            "topic",
            "alter-config",
            "tools",
            "--set",
            "retention.ms=3600000",
            "--bootstrap",
            b,
        ],
        "",
    );
    assert!(
        ok(&["topic", "describe", "tools", "--bootstrap", b], "").contains("retention.ms=3600000")
    );

    // 1,000 lines "key-i:value-i" with two headers.
    let lines: String = (0..1000).map(|i| format!("key-{i}:value-{i}\n")).collect();
    let (success, _, err) = strom(
        &[
            "produce",
            "tools",
            "-K",
            ":",
            "-H",
            "source=cli",
            "-H",
            "kind=test",
            "--bootstrap",
            b,
        ],
        &lines,
    );
    assert!(success && err.contains("produced 1000 records"), "{err}");

    // Read back through the tool, as JSON, from the beginning, committing for group g.
    let out = ok(
        &[
            "consume",
            "tools",
            "-g",
            "g",
            "--from-beginning",
            "-e",
            "--json",
            "--bootstrap",
            b,
        ],
        "",
    );
    let records: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON record"))
        .collect();
    assert_eq!(records.len(), 1000);
    let mut by_key = BTreeMap::new();
    for r in &records {
        assert_eq!(r["headers"]["source"], "cli", "{r}");
        assert_eq!(r["headers"]["kind"], "test", "{r}");
        let key = r["key"].as_str().expect("key").to_string();
        let value = r["value"].as_str().expect("value");
        assert_eq!(value, key.replace("key", "value"));
        by_key.insert(key, r["partition"].as_i64().expect("partition"));
    }
    assert_eq!(by_key.len(), 1000, "every key once");
    let used: std::collections::BTreeSet<i64> = by_key.values().copied().collect();
    assert_eq!(used.len(), 3, "keys spread over the partitions");
    // The group's position was committed: nothing new to read.
    let again = strom(
        &[
            "consume",
            "tools",
            "-g",
            "g",
            "-e",
            "--json",
            "--bootstrap",
            b,
        ],
        "",
    );
    assert!(again.0 && again.1.is_empty(), "{again:?}");
    // `-g` makes the tool a member: while it reads, the group is Stable with it as the one
    // member, assigned every partition.
    let mut live = Command::new(env!("CARGO_BIN_EXE_strom"))
        .args(["consume", "tools", "-g", "live", "--bootstrap", b])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("consume");
    let mut described = String::new();
    crate::harness::wait_until(
        "the tool to join the group",
        Duration::from_secs(20),
        || {
            described = ok(&["group", "describe", "live", "--bootstrap", b], "");
            described.contains("state Stable") && described.contains("1 member(s)")
        },
    );
    assert!(described.contains("consumer range"), "{described}");
    let _ = live.kill();
    let _ = live.wait();

    // -n with a group: the group resumes right after the records shown, none skipped.
    let mut shown = Vec::new();
    for _ in 0..2 {
        let out = ok(
            &[
                "consume",
                "tools",
                "-g",
                "counted",
                "--from-beginning",
                "-n",
                "10",
                "--json",
                "--bootstrap",
                b,
            ],
            "",
        );
        shown.extend(out.lines().map(|l| l.to_string()));
    }
    let distinct: std::collections::BTreeSet<&String> = shown.iter().collect();
    assert_eq!((shown.len(), distinct.len()), (20, 20), "{shown:?}");

    // A format string, and -n.
    let first = ok(
        &[
            "consume",
            "tools",
            "--offset",
            "0",
            "-n",
            "3",
            "-f",
            "%p/%o %k=%v [%h]\\n",
            "--bootstrap",
            b,
        ],
        "",
    );
    assert_eq!(first.lines().count(), 3, "{first}");
    assert!(
        first.contains("/0 key-") && first.contains("source=cli"),
        "{first}"
    );

    // librdkafka reads the same records.
    let got = consume_all(b, "tools", 3, 1000, Duration::from_secs(20));
    assert_eq!(got.len(), 1000);
    for g in &got {
        let key = String::from_utf8_lossy(g.key.as_deref().unwrap_or_default()).into_owned();
        assert_eq!(by_key.get(&key), Some(&(g.partition as i64)), "{key}");
        assert!(g.headers.contains(&("source".to_string(), b"cli".to_vec())));
    }

    ok(
        &[
            "topic",
            "add-partitions",
            "tools",
            "--total",
            "5",
            "--bootstrap",
            b,
        ],
        "",
    );
    assert!(ok(&["topic", "list", "--json", "--bootstrap", b], "").contains("\"partitions\": 5"));
    ok(&["topic", "delete", "tools", "--bootstrap", b], "");
    crate::harness::wait_until("the topic to go", Duration::from_secs(10), || {
        !ok(&["topic", "list", "--bootstrap", b], "").contains("tools")
    });
}
