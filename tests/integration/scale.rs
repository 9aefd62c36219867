//! Many partitions on few brokers: segment files are opened on demand under
//! `log.max.open.files`, and partitions created while others are being written to lose nothing.

use std::time::Duration;

use rdkafka::producer::Producer;

use crate::cluster::{create_topic, start_three};
use crate::harness::{consume_all, flush, producer, send_to, Broker, Cluster};
use crate::metrics::metric;

/// Descriptors the process holds open now.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Produces `per` records to every partition of `topic` (ids `topic index * 1_000_000 +
/// partition * 1_000 + n`), waits for them, and returns how many were acknowledged.
fn fill(bootstrap: &str, topics: &[String], partitions: i32, per: u64) -> usize {
    let p = producer(bootstrap, &[("acks", "all")]);
    for (t, topic) in topics.iter().enumerate() {
        for part in 0..partitions {
            for n in 0..per {
                let id = t as u64 * 1_000_000 + part as u64 * 1_000 + n;
                send_to(
                    &p,
                    topic,
                    Some(part),
                    id,
                    format!("{topic}/{part}/{n}").as_bytes(),
                );
            }
        }
    }
    flush(&p);
    let errors = p.context().errors.lock().expect("errors").clone();
    assert!(errors.is_empty(), "delivery errors: {errors:?}");
    let acked = p.context().acks.lock().expect("acks").len();
    acked
}

/// Reads `topic` whole and checks every partition holds `per` records, in order.
fn check_whole(bootstrap: &str, topic: &str, partitions: i32, per: u64) {
    let want = (partitions as u64 * per) as usize;
    let got = consume_all(bootstrap, topic, partitions, want, Duration::from_secs(60));
    assert_eq!(got.len(), want, "{topic}: records read back");
    for part in 0..partitions {
        let payloads: Vec<String> = got
            .iter()
            .filter(|g| g.partition == part)
            .map(|g| String::from_utf8_lossy(g.payload.as_deref().unwrap_or_default()).into())
            .collect();
        let expected: Vec<String> = (0..per).map(|n| format!("{topic}/{part}/{n}")).collect();
        assert_eq!(payloads, expected, "{topic}-{part}");
    }
}

#[test]
fn open_log_files_stay_under_log_max_open_files_with_every_partition_in_use() {
    const LIMIT: usize = 16;
    const PARTITIONS: i32 = 200;
    let mut b = Broker::start(&[&format!("log.max.open.files={LIMIT}")]);
    let bs = b.bootstrap();
    // The broker's own descriptors (metadata store, listeners, a client connection) first.
    assert_eq!(create_topic(&bs, "one", 1, 1), Some(0));
    assert_eq!(fill(&bs, &["one".to_string()], 1, 5), 5);
    check_whole(&bs, "one", 1, 5);
    let pid = b.pid().expect("pid");
    let base = open_fds(pid);

    assert_eq!(create_topic(&bs, "many", PARTITIONS, 1), Some(0));
    let topics = ["many".to_string()];
    assert_eq!(fill(&bs, &topics, PARTITIONS, 5), PARTITIONS as usize * 5);
    check_whole(&bs, "many", PARTITIONS, 5);
    let fds = open_fds(pid);
    eprintln!("{base} descriptors with 1 partition, {fds} with {PARTITIONS} more in use");
    // Before files were opened on demand every partition kept three (600 here).
    assert!(
        fds <= base + LIMIT + 16,
        "{fds} descriptors open: {base} before, log.max.open.files={LIMIT}"
    );
    let open = metric(&b, "strom_log_open_files").expect("gauge");
    assert!(open <= LIMIT as f64, "{open} log files open");

    // The indexes written at flush (not kept open) serve the logs after a restart.
    b.terminate();
    b.spawn();
    check_whole(&bs, "many", PARTITIONS, 5);
    assert_eq!(fill(&bs, &topics, PARTITIONS, 1), PARTITIONS as usize);
}

/// Followers fetching partitions their leader has not opened yet make it reconcile from the
/// request; that once went back to an older metadata image than the reconciler's and removed
/// the partitions created since, with their records.
#[test]
fn partitions_created_while_others_replicate_lose_nothing() {
    const TOPICS: usize = 40;
    const PARTITIONS: i32 = 10;
    let mut cluster = Cluster::new(3, &[]);
    let bs = start_three(&mut cluster);
    let names: Vec<String> = (0..TOPICS).map(|i| format!("wave-{i}")).collect();
    // Topics come one request at a time (one metadata image each) while the earlier ones are
    // written to with acks=all (their followers fetching).
    let (created, to_write) = std::sync::mpsc::channel::<String>();
    let writer = {
        let bs = bs.clone();
        std::thread::spawn(move || {
            let mut acked = 0;
            let mut batch = Vec::new();
            for name in to_write {
                batch.push(name);
                if batch.len() == 4 {
                    acked += fill(&bs, &batch, PARTITIONS, 3);
                    batch.clear();
                }
            }
            acked
                + if batch.is_empty() {
                    0
                } else {
                    fill(&bs, &batch, PARTITIONS, 3)
                }
        })
    };
    for name in &names {
        assert_eq!(create_topic(&bs, name, PARTITIONS, 3), Some(0), "{name}");
        created.send(name.clone()).expect("writer");
    }
    drop(created);
    let acked = writer.join().expect("writer");
    assert_eq!(acked, TOPICS * PARTITIONS as usize * 3);
    for name in &names {
        check_whole(&bs, name, PARTITIONS, 3);
    }
    // Nothing was deleted or moved, so no broker removed a partition (the old fault removed
    // dozens, mostly before they held records).
    for id in 1..=3 {
        let removed = metric(cluster.node(id), "strom_partitions_removed_total");
        assert_eq!(removed, Some(0.0), "node {id}");
    }
}

/// Every topic's partitions as one node's all-topics Metadata answers: (topic, partition) →
/// (leader, replicas, ISR).
pub(crate) fn layout(bootstrap: &str) -> Option<Layout> {
    use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse};
    let mut c = strom::tools::Client::connect(bootstrap).ok()?;
    let r: MetadataResponse = c
        .call(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(None),
        )
        .ok()?;
    let mut out = Layout::new();
    for t in &r.topics {
        let name = t.name.as_ref()?.to_string();
        for p in &t.partitions {
            let ids = |v: &[kafka_protocol::messages::BrokerId]| v.iter().map(|b| b.0).collect();
            out.insert(
                (name.clone(), p.partition_index),
                (p.leader_id.0, ids(&p.replica_nodes), ids(&p.isr_nodes)),
            );
        }
    }
    Some(out)
}

pub(crate) type Layout = std::collections::BTreeMap<(String, i32), (i32, Vec<i32>, Vec<i32>)>;

/// Issue 20: a node wiped and restarted gets the metadata of 50,000 partitions as a snapshot
/// (the others have purged their logs behind it) and then answers Metadata exactly as they do.
/// A snapshot's chunks (512 KiB) and the transport's message limit (64 MiB) are what let it
/// through; the JSON encoding and tonic's 4 MiB default stopped one at 10–15 k partitions.
#[test]
fn a_wiped_node_catches_up_from_a_snapshot_of_fifty_thousand_partitions() {
    const TOPICS: usize = 50;
    const PARTITIONS: i32 = 1000;
    let _quiet = crate::harness::timing_sensitive();
    // A snapshot every 20 entries (a topic's creation is one): the others keep only the last
    // two entries behind their snapshot.
    let mut cluster = Cluster::new(3, &["metadata.log.snapshot.interval.records=20"]);
    let bs = start_three(&mut cluster);
    let started = std::time::Instant::now();
    for t in 0..TOPICS {
        crate::harness::wait_until("a topic created", Duration::from_secs(60), || {
            // TOPIC_ALREADY_EXISTS: an earlier try timed out after all.
            matches!(
                create_topic(&bs, &format!("wide-{t:02}"), PARTITIONS, 1),
                Some(0) | Some(36)
            )
        });
    }
    eprintln!("50,000 partitions created in {:?}", started.elapsed());
    let (controller, _) = crate::cluster::describe(&bs).expect("describe");
    let wiped = (1..=3).find(|b| *b != controller).expect("a follower");
    let bs = cluster.bootstrap(controller);
    cluster.node(wiped).kill();
    std::fs::remove_dir_all(cluster.node(wiped).dir.join("data")).expect("wipe");
    // More entries than a snapshot interval, so the others' logs no longer reach back to the
    // start: the returning node can only be sent the snapshot.
    for i in 0..30 {
        crate::harness::wait_until("a topic created", Duration::from_secs(60), || {
            matches!(
                create_topic(&bs, &format!("after-{i:02}"), 50, 1),
                Some(0) | Some(36)
            )
        });
    }
    let restarted = std::time::Instant::now();
    cluster.node(wiped).spawn();
    let back = cluster.bootstrap(wiped);
    let want = TOPICS * PARTITIONS as usize + 1500;
    crate::harness::wait_until(
        "the wiped node serves the same metadata",
        Duration::from_secs(120),
        || {
            let (Some(mine), Some(theirs)) = (layout(&back), layout(&bs)) else {
                return false;
            };
            mine.len() == want && mine == theirs
        },
    );
    eprintln!("caught up {:?} after its restart", restarted.elapsed());
    assert!(
        metric(cluster.node(wiped), "strom_raft_snapshots_installed_total").unwrap_or(0.0) >= 1.0,
        "it was sent the snapshot, not the log"
    );
}
