//! Partition reassignment end to end: a fourth broker joins a running three-node cluster and
//! `strom cluster rebalance --execute --throttle` moves its share of replicas onto it while a
//! librdkafka producer (idempotent, acks=all) and consumer run — nothing acknowledged is lost,
//! the new broker's catch-up stays within the throttle, leadership spreads, the throttle is
//! lifted afterwards — and `strom cluster decommission 2` then empties broker 2.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::producer::Producer;
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::harness::{
    consumer, flush, producer, send_to, strom_cli as strom, wait_until, Broker, Cluster,
};
use crate::metrics::metric;

const TOPIC: &str = "moving";
const PARTITIONS: i32 = 4;
/// Each record: its id in 8 bytes, padded to 1 KiB.
const RECORD: usize = 1024;
/// The throttle, bytes per second.
const RATE: u64 = 1 << 20;

fn ok(args: &[&str]) -> String {
    let (success, out, err) = strom(args, "");
    assert!(success, "strom {args:?}: {out}{err}");
    out
}

fn payload(id: u64) -> Vec<u8> {
    let mut v = id.to_be_bytes().to_vec();
    v.resize(RECORD, b'.');
    v
}

/// (partition → replicas, leaders) and the topic's configs, from `strom topic describe --json`.
fn describe(boot: &str) -> (BTreeMap<i64, (Vec<i64>, i64)>, serde_json::Value) {
    let d: serde_json::Value = serde_json::from_str(&ok(&[
        "topic",
        "describe",
        TOPIC,
        "--json",
        "--bootstrap",
        boot,
    ]))
    .expect("json");
    let parts = d["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| {
            let replicas = p["replicas"]
                .as_array()
                .expect("replicas")
                .iter()
                .filter_map(|b| b.as_i64())
                .collect();
            (
                p["partition"].as_i64().unwrap_or(-1),
                (replicas, p["leader"].as_i64().unwrap_or(-1)),
            )
        })
        .collect();
    (parts, d["configs"].clone())
}

/// AlterPartitionReassignments for partition 0 of the topic, as any Kafka admin client sends it.
fn move_partition_0(boot: &str, target: Vec<i32>) {
    use kafka_protocol::messages::alter_partition_reassignments_request::{
        ReassignablePartition, ReassignableTopic,
    };
    use kafka_protocol::messages::{
        AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, ApiKey, BrokerId,
        TopicName,
    };
    let req = AlterPartitionReassignmentsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![ReassignableTopic::default()
            .with_name(TopicName(
                kafka_protocol::protocol::StrBytes::from_static_str(TOPIC),
            ))
            .with_partitions(vec![ReassignablePartition::default()
                .with_partition_index(0)
                .with_replicas(Some(
                    target.into_iter().map(BrokerId).collect(),
                ))])]);
    let r: AlterPartitionReassignmentsResponse = strom::tools::Client::connect(boot)
        .expect("connect")
        .call(ApiKey::AlterPartitionReassignments, 0, &req)
        .expect("reassign");
    assert_eq!(r.responses[0].partitions[0].error_code, 0, "{r:?}");
}

fn replica_counts(parts: &BTreeMap<i64, (Vec<i64>, i64)>) -> BTreeMap<i64, usize> {
    let mut out = BTreeMap::new();
    for (replicas, _) in parts.values() {
        for b in replicas {
            *out.entry(*b).or_default() += 1;
        }
    }
    out
}

#[test]
fn a_fourth_broker_takes_its_share_under_load_within_the_throttle_and_broker_2_empties() {
    let mut cluster = Cluster::new(3, &[]);
    let boot = crate::cluster::start_three(&mut cluster);
    let b = boot.as_str();
    ok(&[
        "topic",
        "create",
        TOPIC,
        "-p",
        &PARTITIONS.to_string(),
        "-r",
        "3",
        "--bootstrap",
        b,
    ]);
    // 2 MiB in each partition before the fourth broker comes.
    let p = producer(b, &[("acks", "all"), ("enable.idempotence", "true")]);
    let mut next_id = 0u64;
    for _ in 0..2048 {
        for part in 0..PARTITIONS {
            send_to(&p, TOPIC, Some(part), next_id, &payload(next_id));
            next_id += 1;
        }
    }
    flush(&p);
    assert!(p.context().errors.lock().expect("lock").is_empty());

    let voters = (1..=3)
        .map(|i| format!("{i}@127.0.0.1:{}", cluster.node(i).controller_port))
        .collect::<Vec<_>>()
        .join(",");
    let mut fourth = Broker::new(&["node.id=4", "process.roles=broker"]);
    fourth.set(format!("controller.quorum.voters={voters}"));
    fourth.spawn();
    wait_until("broker 4 registered", Duration::from_secs(20), || {
        ok(&["cluster", "status", "--bootstrap", b])
            .lines()
            .any(|l| l.trim_start().starts_with('4') && l.contains("active"))
    });

    // Load: the producer keeps writing (about 0.2 MiB/s) and a consumer reads every partition.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut id = next_id;
            while !stop.load(Ordering::Relaxed) {
                send_to(&p, TOPIC, Some((id % 4) as i32), id, &payload(id));
                id += 1;
                p.poll(Duration::from_millis(5));
            }
            flush(&p);
            p
        })
    };
    let seen = Arc::new(Mutex::new(BTreeSet::new()));
    let reader = {
        let (stop, seen, boot) = (stop.clone(), seen.clone(), boot.clone());
        std::thread::spawn(move || {
            let c = consumer(&boot, &[]);
            let mut tpl = TopicPartitionList::new();
            for part in 0..PARTITIONS {
                tpl.add_partition_offset(TOPIC, part, Offset::Beginning)
                    .expect("tpl");
            }
            c.assign(&tpl).expect("assign");
            let mut quiet_since = Instant::now();
            // Reads until told to stop and then quiet for 3 s.
            while !stop.load(Ordering::Relaxed) || quiet_since.elapsed() < Duration::from_secs(3) {
                // Errors are transient here (a leader moved, a connection closed): librdkafka
                // carries on by itself.
                if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
                    let id = m
                        .payload()
                        .and_then(|v| v.get(..8))
                        .map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")));
                    seen.lock().expect("lock").extend(id);
                    quiet_since = Instant::now();
                }
            }
        })
    };

    // The plan alone moves nothing.
    let planned = ok(&["cluster", "rebalance", "--bootstrap", b]);
    assert!(planned.contains("would move"), "{planned}");
    assert!(!replica_counts(&describe(b).0).contains_key(&4));

    let follower_bytes = || {
        metric(
            &fourth,
            "strom_replication_throttled_bytes_total{role=\"follower\"}",
        )
        .unwrap_or(0.0) as u64
    };
    let before = follower_bytes();
    let started = Instant::now();
    let moved = ok(&[
        "cluster",
        "rebalance",
        "--execute",
        "--throttle",
        &RATE.to_string(),
        "--timeout-secs",
        "120",
        "--bootstrap",
        b,
    ]);
    let took = started.elapsed();
    assert!(
        moved.contains("3/3 partitions moved") && moved.contains("moved 3 partitions"),
        "{moved}"
    );
    let throttled = follower_bytes() - before;
    // 4 × 3 replicas over 4 brokers: three each; broker 4 fetched its three partitions (2 MiB
    // each and more) through the throttle, no faster than the rate allows — give or take one
    // fetch from each leader (1 MiB per partition) and the bucket's one second of burst.
    let (parts, configs) = describe(b);
    let counts = replica_counts(&parts);
    assert_eq!(
        counts.values().copied().collect::<Vec<_>>(),
        vec![3; 4],
        "{parts:?}"
    );
    assert!(
        throttled >= 3 * (2 << 20),
        "broker 4 fetched {throttled} throttled bytes"
    );
    let floor = (throttled.saturating_sub(5 << 20)) as f64 / RATE as f64;
    println!(
        "rebalance: {throttled} throttled bytes in {:.1} s (the throttle allows no less than {floor:.1} s)",
        took.as_secs_f64()
    );
    assert!(
        took.as_secs_f64() >= floor,
        "{throttled} bytes in {took:?}: faster than {RATE} B/s"
    );
    // Preferred leaders spread one per broker, and the throttle is gone.
    let firsts: BTreeSet<i64> = parts.values().map(|(r, _)| r[0]).collect();
    assert_eq!(firsts.len(), 4, "{parts:?}");
    assert!(
        configs
            .get("leader.replication.throttled.replicas")
            .is_none()
            && configs
                .get("follower.replication.throttled.replicas")
                .is_none(),
        "{configs}"
    );
    // Nothing is left moving.
    let again = ok(&["cluster", "rebalance", "--bootstrap", b]);
    assert!(again.contains("nothing to move"), "{again}");

    // Broker 2 leaves.
    let out = ok(&[
        "cluster",
        "decommission",
        "2",
        "--execute",
        "--timeout-secs",
        "120",
        "--bootstrap",
        b,
    ]);
    assert!(out.contains("broker 2 holds no replicas"), "{out}");
    let (parts, _) = describe(b);
    assert!(
        parts.values().all(|(r, l)| !r.contains(&2) && *l != 2),
        "{parts:?}"
    );
    wait_until("broker 2's logs removed", Duration::from_secs(20), || {
        metric(cluster.node(2), "strom_partitions_led") == Some(0.0)
            && !crate::metrics::get(cluster.node(2), "/metrics")
                .is_some_and(|(_, body)| body.contains(&format!("topic=\"{TOPIC}\",partition")))
    });

    // A move that cannot finish — onto broker 2, now stopped — is cancelled: the partition goes
    // back to its replicas and nothing is left moving.
    cluster.node(2).kill();
    let (before, _) = describe(b);
    let original = before[&0].0.clone();
    let mut target: Vec<i32> = original.iter().map(|r| *r as i32).take(2).collect();
    target.push(2);
    move_partition_0(b, target);
    wait_until("the move listed", Duration::from_secs(10), || {
        describe(b).0[&0].0.contains(&2)
    });
    let cancelled = ok(&["cluster", "cancel-moves", "--bootstrap", b]);
    assert!(
        cancelled.contains(&format!("{TOPIC}-0: back to")),
        "{cancelled}"
    );
    wait_until("the replicas restored", Duration::from_secs(10), || {
        describe(b).0[&0].0 == original
    });
    let again = ok(&["cluster", "cancel-moves", "--bootstrap", b]);
    assert!(again.contains("no partition is moving"), "{again}");

    // Every acknowledged record was read.
    stop.store(true, Ordering::Relaxed);
    let p = writer.join().expect("writer");
    reader.join().expect("reader");
    assert!(
        p.context().errors.lock().expect("lock").is_empty(),
        "{:?}",
        p.context().errors.lock().expect("lock").first()
    );
    let acked: BTreeSet<u64> = p
        .context()
        .acks
        .lock()
        .expect("lock")
        .iter()
        .map(|a| a.id)
        .collect();
    // Every acknowledged record is in the log, where it was acknowledged...
    let at: BTreeMap<u64, (i32, i64)> = p
        .context()
        .acks
        .lock()
        .expect("lock")
        .iter()
        .map(|a| (a.id, (a.partition, a.offset)))
        .collect();
    let log: BTreeMap<u64, (i32, i64)> =
        crate::harness::consume_all(b, TOPIC, PARTITIONS, at.len(), Duration::from_secs(30))
            .into_iter()
            .filter_map(|g| {
                let id = u64::from_be_bytes(g.payload?.get(..8)?.try_into().ok()?);
                Some((id, (g.partition, g.offset)))
            })
            .collect();
    let lost: Vec<_> = at
        .iter()
        .filter(|(id, place)| log.get(id) != Some(place))
        .take(5)
        .collect();
    assert!(
        lost.is_empty(),
        "acknowledged but not in the log where acknowledged: {lost:?}"
    );
    // ...and the consumer that read through the moves saw each of them.
    let seen = seen.lock().expect("lock");
    let missing: Vec<_> = acked
        .difference(&seen)
        .take(5)
        .map(|id| (id, at.get(id)))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged records never read by the live consumer, e.g. {missing:?}",
        acked.difference(&seen).count(),
        acked.len()
    );
    assert!(acked.len() as u64 > next_id, "the load kept writing");
}
