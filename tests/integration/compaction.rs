//! Compacted topics through librdkafka: the cleaner keeps each key's last value at its
//! original offset with every codec, drops tombstones after `delete.retention.ms`, refuses
//! records without a key, survives a SIGKILL in the middle of a pass, and every replica
//! compacts its own copy.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::executor::block_on;
use rdkafka::admin::{AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::consumer::Consumer;
use rdkafka::producer::{BaseRecord, Producer};

use crate::admin::admin;
use crate::groups::dir_bytes;
use crate::harness::{consume_all, flush, producer, wait_until, Broker, Cluster, Got, Recorder};

fn opts() -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)))
}

/// The configs of the tests' compacted topics: small segments rolled every second, cleaned
/// as soon as anything is dirty.
fn compacted_configs<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut configs = vec![
        ("cleanup.policy", "compact"),
        ("segment.bytes", "65536"),
        ("segment.ms", "1000"),
        ("min.cleanable.dirty.ratio", "0.01"),
    ];
    configs.extend_from_slice(extra);
    configs
}

/// Creates one-partition compacted topics.
fn create_compacted(bootstrap: &str, topics: &[&str], rf: i32, extra: &[(&str, &str)]) {
    let a = admin(bootstrap);
    let configs = compacted_configs(extra);
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| {
            let mut n = NewTopic::new(t, 1, TopicReplication::Fixed(rf));
            for (k, v) in &configs {
                n = n.set(k, v);
            }
            n
        })
        .collect();
    for r in block_on(a.create_topics(&new, &opts())).expect("create") {
        r.expect("topic created");
    }
}

/// A value that compresses about as badly as real data: `v<i>-` and pseudo-random letters.
fn value(i: u64) -> Vec<u8> {
    let mut x = i
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut v = format!("v{i}-").into_bytes();
    for _ in 0..48 {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        v.push(b'a' + (x >> 59) as u8);
    }
    v
}

/// Sends `n` records over `keys` keys (record i has key `k<i % keys>`); the last write of
/// each of the first `deleted` keys is a tombstone. Returns the expected final state: key →
/// (record id, value or None for a tombstone).
fn fill(
    p: &rdkafka::producer::BaseProducer<Recorder>,
    topic: &str,
    n: u64,
    keys: u64,
    deleted: u64,
) -> BTreeMap<String, (u64, Option<Vec<u8>>)> {
    let mut last = BTreeMap::new();
    for i in 0..n {
        let key = format!("k{}", i % keys);
        let tombstone = i + keys >= n && i % keys < deleted;
        let v = (!tombstone).then(|| value(i));
        let mut rec = BaseRecord::with_opaque_to(topic, Box::new(i)).key(&key);
        if let Some(v) = &v {
            rec = rec.payload(v);
        }
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((_, r)) => {
                    rec = r;
                    p.poll(Duration::from_millis(5));
                }
            }
        }
        last.insert(key, (i, v));
    }
    last
}

/// One more record after `segment.ms`, so the segment holding everything before it rolls and
/// becomes cleanable (the active segment never is).
fn roll_with_marker(p: &rdkafka::producer::BaseProducer<Recorder>, topic: &str, id: u64) {
    flush(p);
    std::thread::sleep(Duration::from_millis(1_100));
    let rec = BaseRecord::with_opaque_to(topic, Box::new(id))
        .key("end")
        .payload("end");
    p.send(rec).map_err(|e| e.0).expect("send");
}

/// What a consumer from offset 0 must see once the log is compacted: the live keys' last
/// values at the offsets they were written at, in offset order.
fn expected(
    last: &BTreeMap<String, (u64, Option<Vec<u8>>)>,
    offsets: &BTreeMap<u64, i64>,
) -> Vec<(i64, String, Vec<u8>)> {
    let mut want: Vec<(i64, String, Vec<u8>)> = last
        .iter()
        .filter_map(|(k, (id, v))| Some((offsets[id], k.clone(), v.clone()?)))
        .collect();
    want.sort();
    want
}

fn seen(got: &[Got]) -> Vec<(i64, String, Vec<u8>)> {
    got.iter()
        .map(|g| {
            (
                g.offset,
                String::from_utf8_lossy(g.key.as_deref().unwrap_or_default()).into_owned(),
                g.payload.clone().unwrap_or_else(|| b"<tombstone>".to_vec()),
            )
        })
        .collect()
}

fn acked_offsets(p: &rdkafka::producer::BaseProducer<Recorder>) -> BTreeMap<u64, i64> {
    let ctx = p.context();
    assert!(
        ctx.errors.lock().expect("lock").is_empty(),
        "{:?}",
        ctx.errors.lock().expect("lock")
    );
    ctx.acks
        .lock()
        .expect("lock")
        .iter()
        .map(|a| (a.id, a.offset))
        .collect()
}

fn partition_dir(b: &Broker, topic: &str) -> std::path::PathBuf {
    b.dir.join("data").join(format!("{topic}-0"))
}

/// Reads the topic until it holds exactly `want` (tombstones gone too), or fails after 90 s.
fn wait_compacted(bootstrap: &str, topic: &str, want: &[(i64, String, Vec<u8>)]) {
    let mut last = Vec::new();
    let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until(
            &format!("{topic} to be compacted"),
            Duration::from_secs(90),
            || {
                last = seen(&consume_all(
                    bootstrap,
                    topic,
                    1,
                    want.len() + 1,
                    Duration::from_secs(3),
                ));
                last == want
            },
        )
    }));
    if ok.is_err() {
        let extra = last.len() as i64 - want.len() as i64;
        panic!(
            "{topic}: {} records read, {extra:+} against the expected",
            last.len()
        );
    }
}

#[test]
fn a_compacted_topic_keeps_each_keys_last_value_at_its_offset_with_every_codec() {
    let b = Broker::start(&["log.cleaner.backoff.ms=100", "log.cleaner.threads=2"]);
    let boot = b.bootstrap();
    let codecs = ["none", "gzip", "snappy", "lz4", "zstd"];
    let topics: Vec<String> = codecs.iter().map(|c| format!("compacted-{c}")).collect();
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    // Nothing is cleaned until min.compaction.lag.ms is lowered below.
    create_compacted(
        &boot,
        &names,
        1,
        &[
            ("delete.retention.ms", "2000"),
            ("min.compaction.lag.ms", "3600000"),
        ],
    );

    // DescribeConfigs shows the cleaner's settings and the topics' compaction configs.
    let described = block_on(admin(&boot).describe_configs(
        &[
            ResourceSpecifier::Broker(1),
            ResourceSpecifier::Topic(&topics[0]),
        ],
        &opts(),
    ))
    .expect("describe");
    let value = |i: usize, name: &str| {
        let r = described[i].as_ref().expect("described");
        r.get(name).and_then(|e| e.value.clone())
    };
    assert_eq!(value(0, "log.cleaner.threads").as_deref(), Some("2"));
    assert_eq!(value(0, "log.cleaner.enable").as_deref(), Some("true"));
    assert_eq!(
        value(0, "log.cleaner.dedupe.buffer.size").as_deref(),
        Some("134217728")
    );
    assert_eq!(value(1, "cleanup.policy").as_deref(), Some("compact"));
    assert_eq!(
        value(1, "min.cleanable.dirty.ratio").as_deref(),
        Some("0.01")
    );
    assert_eq!(
        value(1, "max.compaction.lag.ms").as_deref(),
        Some("9223372036854775807")
    );

    // A record without a key is refused (INVALID_RECORD, as Kafka answers).
    let p = producer(&boot, &[("acks", "all")]);
    p.send(BaseRecord::<(), _, _>::with_opaque_to(&topics[0], Box::new(u64::MAX)).payload("x"))
        .map_err(|e| e.0)
        .expect("send");
    flush(&p);
    let refused = p.context().errors.lock().expect("lock").clone();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(refused[0].contains("InvalidRecord"), "{refused:?}");
    p.context().errors.lock().expect("lock").clear();
    drop(p);

    let mut plans = Vec::new();
    for (codec, topic) in codecs.iter().zip(&topics) {
        let p = producer(
            &boot,
            &[
                ("compression.type", codec),
                ("linger.ms", "20"),
                ("acks", "all"),
            ],
        );
        // 100,000 records over 1,000 keys; the last write of 100 keys deletes them.
        let last = fill(&p, topic, 100_000, 1_000, 100);
        roll_with_marker(&p, topic, 100_000);
        flush(&p);
        let mut last = last;
        last.insert("end".into(), (100_000, Some(b"end".to_vec())));
        let want = expected(&last, &acked_offsets(&p));
        assert_eq!(want.len(), 901);
        plans.push((topic.clone(), want, dir_bytes(&partition_dir(&b, topic))));
    }
    // AlterConfigs replaces a topic's whole config: everything again, the lag now 0.
    let a = admin(&boot);
    let configs = compacted_configs(&[
        ("delete.retention.ms", "2000"),
        ("min.compaction.lag.ms", "0"),
    ]);
    let alters: Vec<AlterConfig> = topics
        .iter()
        .map(|t| {
            let mut alter = AlterConfig::new(ResourceSpecifier::Topic(t));
            for (k, v) in &configs {
                alter = alter.set(k, v);
            }
            alter
        })
        .collect();
    for r in block_on(a.alter_configs(&alters, &opts())).expect("alter") {
        r.expect("altered");
    }
    let mut removed = 0;
    for (topic, want, before) in &plans {
        wait_compacted(&boot, topic, want);
        let after = dir_bytes(&partition_dir(&b, topic));
        assert!(
            after * 10 < *before,
            "{topic}: {before} bytes before cleaning, {after} after"
        );
        removed += before - after;
    }
    // /metrics counted the passes and (about) what they removed: the directories also hold
    // indexes and checkpoints, so the figures differ by a little.
    let passes = crate::metrics::metric(&b, "strom_cleaner_passes_total").unwrap_or(0.0);
    let gone = crate::metrics::metric(&b, "strom_cleaner_removed_bytes_total").unwrap_or(0.0);
    assert!(passes >= plans.len() as f64, "{passes} passes");
    assert!(
        gone >= removed as f64 * 0.8,
        "the cleaner counted {gone} bytes removed; the directories shrank by {removed}"
    );
}

/// A record's key and value (None: a tombstone).
type KeyValue = (Option<Vec<u8>>, Option<Vec<u8>>);

/// Every record of the topic, by offset.
fn by_offset(got: &[Got]) -> BTreeMap<i64, KeyValue> {
    got.iter()
        .map(|g| (g.offset, (g.key.clone(), g.payload.clone())))
        .collect()
}

#[test]
fn a_broker_killed_during_a_cleaning_pass_loses_nothing_and_cleans_again() {
    // A slow cleaner, so the SIGKILL lands inside a pass.
    let mut b = Broker::start(&[
        "log.cleaner.backoff.ms=100",
        "log.cleaner.io.max.bytes.per.second=400000",
    ]);
    let boot = b.bootstrap();
    let topic = "killed-while-cleaning";
    create_compacted(&boot, &[topic], 1, &[("delete.retention.ms", "600000")]);
    let p = producer(&boot, &[("linger.ms", "20"), ("acks", "all")]);
    let mut last = fill(&p, topic, 40_000, 500, 50);
    roll_with_marker(&p, topic, 40_000);
    flush(&p);
    last.insert("end".into(), (40_000, Some(b"end".to_vec())));
    let offsets = acked_offsets(&p);
    drop(p);
    let dir = partition_dir(&b, topic);
    wait_until("a cleaning pass to write", Duration::from_secs(60), || {
        dir.join("cleaning").exists() || dir.join("swap").exists()
    });
    b.kill();
    // Restarted with an unthrottled cleaner.
    b.set("log.cleaner.io.max.bytes.per.second=1.7976931348623157E308".into());
    b.spawn();
    // Nothing acknowledged is lost: every key's last write (tombstones too: their retention
    // is long) is still there at its offset, and no offset is read twice.
    let got = consume_all(&boot, topic, 1, 50_000, Duration::from_secs(20));
    let offsets_read: Vec<i64> = got.iter().map(|g| g.offset).collect();
    assert!(
        offsets_read.windows(2).all(|w| w[0] < w[1]),
        "offsets strictly increase (no duplicate segment)"
    );
    let read = by_offset(&got);
    for (key, (id, v)) in &last {
        let at = offsets[id];
        assert_eq!(
            read.get(&at),
            Some(&(Some(key.clone().into_bytes()), v.clone())),
            "{key}'s last write at {at}"
        );
    }
    assert!(!dir.join("cleaning").exists());
    // Cleaning resumes: down to one record per key.
    let mut want: Vec<(i64, String, Vec<u8>)> = last
        .iter()
        .map(|(k, (id, v))| {
            (
                offsets[id],
                k.clone(),
                v.clone().unwrap_or_else(|| b"<tombstone>".to_vec()),
            )
        })
        .collect();
    want.sort();
    wait_compacted(&boot, topic, &want);
}

#[test]
fn every_replica_compacts_its_own_copy_and_a_new_leader_serves_the_same_records() {
    let mut cluster = Cluster::new(3, &["log.cleaner.backoff.ms=100"]);
    let boot = crate::cluster::start_three(&mut cluster);
    let topic = "compacted-replicated";
    create_compacted(&boot, &[topic], 3, &[("delete.retention.ms", "600000")]);
    let p = producer(&boot, &[("linger.ms", "20"), ("acks", "all")]);
    let mut last = fill(&p, topic, 20_000, 200, 0);
    roll_with_marker(&p, topic, 20_000);
    flush(&p);
    last.insert("end".into(), (20_000, Some(b"end".to_vec())));
    let want = expected(&last, &acked_offsets(&p));
    drop(p);
    wait_compacted(&boot, topic, &want);
    // Followers clean on their own schedule: wait until every copy is small.
    let total: u64 = 20_000 * 60;
    wait_until(
        "every replica to compact its copy",
        Duration::from_secs(60),
        || {
            (1..=3).all(|id| {
                let dir = partition_dir(cluster.node(id), topic);
                dir_bytes(&dir) * 5 < total
            })
        },
    );
    // The leader dies; another replica's compacted copy serves the same records.
    let md = crate::harness::consumer(&boot, &[])
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let leader = md.topics()[0].partitions()[0].leader();
    cluster.node(leader).kill();
    let other = (1..=3).find(|id| *id != leader).expect("another node");
    let boot = cluster.bootstrap(other);
    wait_until("a new leader", Duration::from_secs(20), || {
        crate::harness::consumer(&boot, &[])
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .is_ok_and(|md| {
                let l = md.topics()[0].partitions()[0].leader();
                l > 0 && l != leader
            })
    });
    wait_compacted(&boot, topic, &want);
}
