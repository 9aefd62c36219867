//! Partition replication across three (or five) real processes, through librdkafka: acks=all
//! survives the leader's death, followers catch up byte for byte and rejoin the ISR, and
//! min.insync.replicas is enforced.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::create_topics_request::{
    CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, CreateTopicsRequest, CreateTopicsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::consumer::Consumer;
use rdkafka::producer::{BaseRecord, Producer};
use strom::tools::Client;

use crate::harness::{consume_all, consumer, producer, send, wait_until, Cluster};
/// Creates a topic; `assignments` (replica lists) or `partitions` with RF 3.
fn create(
    bootstrap: &str,
    name: &str,
    partitions: i32,
    assignments: &[Vec<i32>],
    configs: &[(&str, &str)],
) {
    let mut c = Client::connect(bootstrap).expect("connect");
    let mut t = CreatableTopic::default()
        .with_name(TopicName(StrBytes::from_string(name.into())))
        .with_configs(
            configs
                .iter()
                .map(|(k, v)| {
                    CreatableTopicConfig::default()
                        .with_name(StrBytes::from_string(k.to_string()))
                        .with_value(Some(StrBytes::from_string(v.to_string())))
                })
                .collect(),
        );
    if assignments.is_empty() {
        t = t.with_num_partitions(partitions).with_replication_factor(3);
    } else {
        t = t
            .with_num_partitions(-1)
            .with_replication_factor(-1)
            .with_assignments(
                assignments
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        CreatableReplicaAssignment::default()
                            .with_partition_index(i as i32)
                            .with_broker_ids(r.iter().map(|b| BrokerId(*b)).collect())
                    })
                    .collect(),
            );
    }
    let r: CreateTopicsResponse = c
        .call(
            ApiKey::CreateTopics,
            7,
            &CreateTopicsRequest::default()
                .with_timeout_ms(10_000)
                .with_topics(vec![t]),
        )
        .expect("create topics");
    assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0].error_message);
}

/// (leader, ISR) of every partition of `topic`, from one broker's Metadata.
fn leaders(bootstrap: &str, topic: &str) -> Vec<(i32, Vec<i32>)> {
    let c = consumer(bootstrap, &[]);
    let Ok(md) = c.fetch_metadata(Some(topic), Duration::from_secs(5)) else {
        return Vec::new();
    };
    let Some(t) = md.topics().first() else {
        return Vec::new();
    };
    let mut out: Vec<(i32, i32, Vec<i32>)> = t
        .partitions()
        .iter()
        .map(|p| {
            let mut isr = p.isr().to_vec();
            isr.sort();
            (p.id(), p.leader(), isr)
        })
        .collect();
    out.sort();
    out.into_iter().map(|(_, l, i)| (l, i)).collect()
}

fn full_isr(bootstrap: &str, topic: &str, n: usize) -> bool {
    let l = leaders(bootstrap, topic);
    !l.is_empty() && l.iter().all(|(leader, isr)| *leader >= 0 && isr.len() == n)
}
#[test]
fn acks_all_survives_the_leaders_death_without_losing_a_record() {
    let _quiet = crate::harness::timing_sensitive();
    let mut cluster = Cluster::new(3, &[]);
    cluster.start(&[1, 2, 3], Duration::from_millis(100));
    let bs = cluster.bootstrap(1);
    wait_until("three brokers", Duration::from_secs(20), || {
        strom::tools::cluster_status(&bs).is_ok_and(|s| s.matches("active").count() == 3)
    });
    create(&bs, "durable", 3, &[], &[]);
    wait_until("full ISR", Duration::from_secs(10), || {
        full_isr(&bs, "durable", 3)
    });
    let victim = leaders(&bs, "durable")[0].0;
    let survivor = (1..=3).find(|b| *b != victim).expect("survivor");
    let bootstrap_all = (1..=3)
        .map(|i| cluster.bootstrap(i))
        .collect::<Vec<_>>()
        .join(",");

    const TOTAL: u64 = 100_000;
    let p = producer(
        &bootstrap_all,
        &[
            ("acks", "all"),
            ("message.timeout.ms", "60000"),
            ("linger.ms", "5"),
        ],
    );
    let progress = p.context().clone();
    let done = Arc::new(AtomicBool::new(false));
    let done2 = done.clone();
    let writer = std::thread::spawn(move || {
        // About 10,000 records a second, so the kill lands mid-stream.
        let started = Instant::now();
        for id in 0..TOTAL {
            send(&p, "durable", id, format!("record-{}", id).as_bytes());
            if id % 100 == 0 {
                p.poll(Duration::ZERO);
                let due = Duration::from_micros(id * 100);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
        }
        let _ = p.flush(Duration::from_secs(60));
        done2.store(true, Ordering::Relaxed);
        let acks = p.context().acks.lock().expect("lock").clone();
        let errors = p.context().errors.lock().expect("lock").clone();
        (acks, errors)
    });
    wait_until(
        "a third of the records acknowledged",
        Duration::from_secs(60),
        || progress.acks.lock().expect("lock").len() as u64 >= TOTAL / 3,
    );
    cluster.node(victim).kill();
    let (acks, errors) = writer.join().expect("writer");
    assert!(done.load(Ordering::Relaxed));
    assert!(
        errors.is_empty(),
        "{} delivery errors, first: {:?}",
        errors.len(),
        errors.first()
    );
    assert_eq!(acks.len() as u64, TOTAL, "every record acknowledged");

    // Read everything back through a survivor; every acknowledged record is where it was
    // acknowledged, and each partition's offsets have no gap.
    let bs = cluster.bootstrap(survivor);
    wait_until("the dead leader replaced", Duration::from_secs(10), || {
        let l = leaders(&bs, "durable");
        !l.is_empty()
            && l.iter()
                .all(|(leader, isr)| *leader != victim && *leader >= 0 && !isr.contains(&victim))
    });
    // The new leader's high watermark catches up once its followers fetch from it.
    let c = consumer(&bs, &[]);
    let mut needed = [0i64; 3];
    for a in &acks {
        needed[a.partition as usize] = needed[a.partition as usize].max(a.offset + 1);
    }
    let mut ends = Vec::new();
    wait_until(
        "high watermarks covering every acknowledgement",
        Duration::from_secs(10),
        || {
            ends = (0..3)
                .map(|p| {
                    c.fetch_watermarks("durable", p, Duration::from_secs(5))
                        .map(|w| w.1)
                        .unwrap_or(-1)
                })
                .collect();
            ends.iter().zip(needed).all(|(e, n)| *e >= n)
        },
    );
    let expected: i64 = ends.iter().sum();
    let got = consume_all(
        &bs,
        "durable",
        3,
        expected as usize,
        Duration::from_secs(60),
    );
    assert_eq!(got.len() as i64, expected);
    let mut by_pos = HashMap::new();
    let mut next: HashMap<i32, i64> = HashMap::new();
    for g in &got {
        let n = next.entry(g.partition).or_insert(0);
        assert_eq!(g.offset, *n, "partition {} has no gap", g.partition);
        *n += 1;
        by_pos.insert(
            (g.partition, g.offset),
            g.payload.clone().unwrap_or_default(),
        );
    }
    for a in &acks {
        let payload = by_pos.get(&(a.partition, a.offset)).unwrap_or_else(|| {
            let elsewhere: Vec<_> = got
                .iter()
                .filter(|g| g.payload.as_deref() == Some(format!("record-{}", a.id).as_bytes()))
                .map(|g| (g.partition, g.offset))
                .collect();
            panic!(
                "acknowledged {} at {}:{} missing (partition ends {:?}; found at {:?})",
                a.id, a.partition, a.offset, ends, elsewhere
            )
        });
        assert_eq!(
            payload,
            format!("record-{}", a.id).as_bytes(),
            "record at {}:{}",
            a.partition,
            a.offset
        );
    }
}

/// All `.log` segment bytes of one partition directory, in offset order.
fn log_bytes(dir: &Path, partition_dir: &str) -> Vec<u8> {
    let d = dir.join("data").join(partition_dir);
    let mut files: Vec<_> = std::fs::read_dir(&d)
        .map(|r| {
            r.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "log"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .flat_map(|f| std::fs::read(f).unwrap_or_default())
        .collect()
}

#[test]
fn a_restarted_follower_catches_up_byte_for_byte_and_rejoins_the_isr() {
    let mut cluster = Cluster::new(3, &[]);
    cluster.start(&[1, 2, 3], Duration::from_millis(100));
    let bs = cluster.bootstrap(1);
    wait_until("three brokers", Duration::from_secs(20), || {
        strom::tools::cluster_status(&bs).is_ok_and(|s| s.matches("active").count() == 3)
    });
    create(&bs, "catchup", 1, &[vec![1, 2, 3]], &[]);
    wait_until("full ISR", Duration::from_secs(10), || {
        full_isr(&bs, "catchup", 3)
    });
    let p = producer(&bs, &[("acks", "all")]);
    for id in 0..2_000 {
        send(&p, "catchup", id, format!("record-{}", id).as_bytes());
    }
    let _ = p.flush(Duration::from_secs(30));
    cluster.node(3).kill();
    wait_until(
        "the ISR shrinks to 1 and 2",
        Duration::from_secs(10),
        || leaders(&bs, "catchup") == vec![(1, vec![1, 2])],
    );
    for id in 2_000..6_000 {
        send(&p, "catchup", id, format!("record-{}", id).as_bytes());
    }
    let _ = p.flush(Duration::from_secs(30));
    assert_eq!(p.context().acks.lock().expect("lock").len(), 6_000);
    cluster.node(3).spawn();
    let took = wait_until(
        "the follower back in the ISR",
        Duration::from_secs(20),
        || leaders(&bs, "catchup") == vec![(1, vec![1, 2, 3])],
    );
    println!("follower rejoined the ISR {took:?} after restarting");
    let leader_dir = cluster.node(1).dir.clone();
    let follower_dir = cluster.node(3).dir.clone();
    wait_until(
        "identical logs on leader and follower",
        Duration::from_secs(10),
        || {
            let a = log_bytes(&leader_dir, "catchup-0");
            !a.is_empty() && a == log_bytes(&follower_dir, "catchup-0")
        },
    );
}

#[test]
fn min_insync_replicas_refuses_acks_all_until_a_replica_returns() {
    // Five voters, so the metadata quorum survives two brokers down.
    let mut cluster = Cluster::new(5, &[]);
    cluster.start(&[1, 2, 3, 4, 5], Duration::from_millis(50));
    let bs = cluster.bootstrap(1);
    wait_until("five brokers", Duration::from_secs(20), || {
        strom::tools::cluster_status(&bs).is_ok_and(|s| s.matches("active").count() == 5)
    });
    create(
        &bs,
        "guarded",
        1,
        &[vec![1, 2, 3]],
        &[("min.insync.replicas", "2")],
    );
    wait_until("full ISR", Duration::from_secs(10), || {
        full_isr(&bs, "guarded", 3)
    });
    cluster.node(2).kill();
    cluster.node(3).kill();
    wait_until(
        "the ISR down to the leader",
        Duration::from_secs(10),
        || leaders(&bs, "guarded") == vec![(1, vec![1])],
    );

    let strict = producer(
        &bs,
        &[
            ("acks", "all"),
            ("message.timeout.ms", "3000"),
            ("retries", "0"),
        ],
    );
    send(&strict, "guarded", 1, format!("record-{}", 1).as_bytes());
    let _ = strict.flush(Duration::from_secs(10));
    let errors = strict.context().errors.lock().expect("lock").clone();
    assert_eq!(errors.len(), 1, "acks=all refused");
    assert!(errors[0].contains("NotEnoughReplicas"), "{}", errors[0]);
    let loose = producer(&bs, &[("acks", "1")]);
    send(&loose, "guarded", 2, format!("record-{}", 2).as_bytes());
    let _ = loose.flush(Duration::from_secs(10));
    assert_eq!(
        loose.context().acks.lock().expect("lock").len(),
        1,
        "acks=1 still works"
    );

    cluster.node(2).spawn();
    wait_until("a second ISR member", Duration::from_secs(20), || {
        leaders(&bs, "guarded") == vec![(1, vec![1, 2])]
    });
    let strict = producer(&bs, &[("acks", "all"), ("message.timeout.ms", "10000")]);
    send(&strict, "guarded", 3, format!("record-{}", 3).as_bytes());
    let _ = strict.flush(Duration::from_secs(15));
    assert_eq!(
        strict.context().acks.lock().expect("lock").len(),
        1,
        "acks=all accepted again"
    );
}

#[test]
fn a_rolling_restart_moves_leadership_first_and_back_after() {
    let _quiet = crate::harness::timing_sensitive();
    let mut cluster = Cluster::new(3, &["leader.imbalance.check.interval.seconds=1"]);
    cluster.start(&[1, 2, 3], Duration::from_millis(100));
    let bs = cluster.bootstrap(1);
    wait_until("three brokers", Duration::from_secs(20), || {
        strom::tools::cluster_status(&bs).is_ok_and(|s| s.matches("active").count() == 3)
    });
    create(&bs, "rolling", 3, &[], &[]);
    wait_until("full ISR", Duration::from_secs(10), || {
        full_isr(&bs, "rolling", 3)
    });
    let preferred = leaders(&bs, "rolling");
    let controller = strom::tools::cluster_status(&bs)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("controller:"))
                .map(|l| l.to_string())
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(2)
                .and_then(|x| x.parse::<i32>().ok())
        })
        .expect("controller id");
    let victim = preferred
        .iter()
        .map(|l| l.0)
        .find(|l| *l != controller)
        .expect("a leader that is not the controller");
    let watcher = (1..=3).find(|b| *b != victim).expect("watcher");
    let bs_all = (1..=3)
        .map(|i| cluster.bootstrap(i))
        .collect::<Vec<_>>()
        .join(",");

    let p = producer(
        &bs_all,
        &[
            ("acks", "all"),
            ("linger.ms", "1"),
            ("message.timeout.ms", "30000"),
        ],
    );
    let progress = p.context().clone();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let writer = std::thread::spawn(move || {
        let mut id = 0u64;
        let started = Instant::now();
        while !stop2.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(60) {
            let payload = format!("record-{id}");
            let rec = BaseRecord::with_opaque_to("rolling", Box::new(id))
                .partition((id % 3) as i32)
                .key(&[])
                .payload(payload.as_bytes());
            if p.send(rec).is_ok() {
                id += 1;
            }
            p.poll(Duration::ZERO);
            std::thread::sleep(Duration::from_micros(500));
        }
        let _ = p.flush(Duration::from_secs(30));
        let errors = p.context().errors.lock().expect("lock").clone();
        (id, errors)
    });
    std::thread::sleep(Duration::from_secs(1));
    let sigterm_at = Instant::now();
    let took = cluster.node(victim).terminate();
    println!("SIGTERM of leader {victim}: clean exit after {took:?}");
    let moved = leaders(&cluster.bootstrap(watcher), "rolling");
    assert!(
        moved
            .iter()
            .all(|(l, isr)| *l != victim && !isr.contains(&victim)),
        "{moved:?}"
    );
    std::thread::sleep(Duration::from_secs(1));
    let restart_at = Instant::now();
    cluster.node(victim).spawn();
    let back = wait_until(
        "leadership back on the preferred replicas",
        Duration::from_secs(20),
        || leaders(&cluster.bootstrap(watcher), "rolling") == preferred,
    );
    println!("preferred leaders restored {back:?} after the restart");
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let (sent, errors) = writer.join().expect("writer");
    assert!(errors.is_empty(), "{errors:?}");
    let acks = progress.acks.lock().expect("lock").clone();
    assert_eq!(acks.len() as u64, sent, "every record acknowledged");
    // The longest pause between two acknowledgements on any partition.
    let mut worst = Duration::ZERO;
    let mut worst_at = None;
    for part in 0..3 {
        let mut times: Vec<Instant> = acks
            .iter()
            .filter(|a| a.partition == part)
            .map(|a| a.at)
            .collect();
        times.sort();
        for w in times.windows(2) {
            if w[1] - w[0] > worst {
                worst = w[1] - w[0];
                worst_at = Some((
                    part,
                    w[0].checked_duration_since(sigterm_at),
                    w[0].checked_duration_since(restart_at),
                ));
            }
        }
    }
    println!("worst pause (partition, after SIGTERM, after restart): {worst_at:?}");
    println!("longest produce pause on a partition during the rolling restart: {worst:?}");
    assert!(
        worst < Duration::from_secs(1),
        "producers paused for {worst:?}"
    );
}

#[test]
fn a_non_leader_names_the_leader_and_its_endpoint() {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{
        FetchRequest, FetchResponse, MetadataRequest, MetadataResponse, ProduceRequest,
        ProduceResponse,
    };

    let mut cluster = Cluster::new(2, &[]);
    cluster.start(&[1, 2], Duration::from_millis(100));
    let bs1 = cluster.bootstrap(1);
    wait_until("two brokers", Duration::from_secs(20), || {
        strom::tools::cluster_status(&bs1).is_ok_and(|s| s.matches("active").count() == 2)
    });
    create(&bs1, "elsewhere", 1, &[vec![2]], &[]);
    let mut c = Client::connect(&bs1).expect("connect");
    let mut topic_id = None;
    wait_until("the topic on node 1", Duration::from_secs(5), || {
        let md: MetadataResponse = c
            .call(
                ApiKey::Metadata,
                12,
                &MetadataRequest::default().with_topics(None),
            )
            .expect("metadata");
        topic_id = md
            .topics
            .iter()
            .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == "elsewhere"))
            .map(|t| t.topic_id);
        topic_id.is_some()
    });
    let port2 = cluster.node(2).port as i32;

    let fetch = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic_id(topic_id.expect("topic id"))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_partition_max_bytes(1024)])]);
    let f: FetchResponse = c.call(ApiKey::Fetch, 16, &fetch).expect("fetch v16");
    let p = &f.responses[0].partitions[0];
    assert_eq!(p.error_code, 6, "NOT_LEADER_OR_FOLLOWER");
    assert_eq!(p.current_leader.leader_id.0, 2);
    assert_eq!(
        f.node_endpoints
            .iter()
            .map(|e| (e.node_id.0, e.port))
            .collect::<Vec<_>>(),
        vec![(2, port2)]
    );

    let produce = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(1000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("elsewhere")))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(bytes::Bytes::from_static(b"x")))])]);
    let r: ProduceResponse = c.call(ApiKey::Produce, 10, &produce).expect("produce v10");
    let p = &r.responses[0].partition_responses[0];
    assert_eq!((p.error_code, p.current_leader.leader_id.0), (6, 2));
    assert_eq!(
        r.node_endpoints
            .iter()
            .map(|e| (e.node_id.0, e.port))
            .collect::<Vec<_>>(),
        vec![(2, port2)]
    );
}
