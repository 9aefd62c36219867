//! Idempotent producers: exactly once in the log across leader kills, retried batches answered
//! with their original offsets, and a producer that outlives a restart of every broker.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProduceRequest, ProduceResponse,
    ProducerId, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use rdkafka::consumer::Consumer;
use rdkafka::producer::Producer;
use strom::tools::Client;

use crate::harness::{consume_all, consumer, producer, send, wait_until, Broker, Cluster};
fn leader_of(bootstrap: &str, topic: &str, partition: i32) -> Option<i32> {
    let c = consumer(bootstrap, &[]);
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(5)).ok()?;
    let t = md.topics().first()?;
    t.partitions()
        .iter()
        .find(|p| p.id() == partition)
        .map(|p| p.leader())
        .filter(|l| *l >= 0)
}

fn full_isr(bootstrap: &str, topic: &str) -> bool {
    let c = consumer(bootstrap, &[]);
    let Ok(md) = c.fetch_metadata(Some(topic), Duration::from_secs(5)) else {
        return false;
    };
    md.topics().first().is_some_and(|t| {
        !t.partitions().is_empty()
            && t.partitions()
                .iter()
                .all(|p| p.isr().len() == 3 && p.leader() >= 0)
    })
}

/// Creates a topic with three partitions, each on all three brokers.
fn create_rf3(bootstrap: &str, name: &str) {
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
    let mut c = Client::connect(bootstrap).expect("connect");
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(name.into())))
            .with_num_partitions(3)
            .with_replication_factor(3)]);
    let r: CreateTopicsResponse = c
        .call(ApiKey::CreateTopics, 7, &req)
        .expect("create topics");
    assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0].error_message);
}
/// Every id exactly once, and in send order within each partition.
fn check_exactly_once(got: &[crate::harness::Got], total: u64) {
    let mut seen: HashMap<u64, (i32, i64)> = HashMap::new();
    let mut last: HashMap<i32, u64> = HashMap::new();
    for g in got {
        let id: u64 = std::str::from_utf8(g.payload.as_deref().unwrap_or_default())
            .ok()
            .and_then(|s| s.parse().ok())
            .expect("numeric payload");
        if let Some(prev) = seen.insert(id, (g.partition, g.offset)) {
            panic!(
                "record {id} is in the log twice: {prev:?} and {:?}",
                (g.partition, g.offset)
            );
        }
        if let Some(before) = last.insert(g.partition, id) {
            assert!(
                before < id,
                "partition {}: {id} after {before}",
                g.partition
            );
        }
    }
    assert_eq!(seen.len() as u64, total, "every record once");
}

#[test]
fn an_idempotent_producer_survives_two_leader_kills_exactly_once() {
    let _quiet = crate::harness::timing_sensitive();
    let mut cluster = Cluster::new(3, &[]);
    cluster.start(&[1, 2, 3], Duration::from_millis(100));
    let bs = cluster.bootstrap(1);
    wait_until("three brokers", Duration::from_secs(20), || {
        strom::tools::cluster_status(&bs).is_ok_and(|s| s.matches("active").count() == 3)
    });
    let bs_all = (1..=3)
        .map(|i| cluster.bootstrap(i))
        .collect::<Vec<_>>()
        .join(",");
    let p = producer(
        &bs_all,
        &[
            ("enable.idempotence", "true"),
            ("linger.ms", "5"),
            ("message.timeout.ms", "120000"),
        ],
    );
    let progress = p.context().clone();
    create_rf3(&bs, "once");
    wait_until("topic with a full ISR", Duration::from_secs(20), || {
        full_isr(&bs, "once")
    });

    const TOTAL: u64 = 100_000;
    let writer = std::thread::spawn(move || {
        let started = Instant::now();
        for id in 0..TOTAL {
            send(&p, "once", id, id.to_string().as_bytes());
            if id % 100 == 0 {
                p.poll(Duration::ZERO);
                let due = Duration::from_micros(id * 100);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
        }
        let _ = p.flush(Duration::from_secs(120));
        let errors = p.context().errors.lock().expect("lock").clone();
        errors
    });
    for (round, share) in [(1, 3), (2, 3)] {
        wait_until("progress before the kill", Duration::from_secs(120), || {
            progress.acks.lock().expect("lock").len() as u64 >= TOTAL * round / share
        });
        let alive = (1..=3)
            .find(|i| cluster.node(*i).is_running())
            .expect("a live node");
        let victim =
            leader_of(&cluster.bootstrap(alive), "once", 0).expect("leader of partition 0");
        cluster.node(victim).kill();
        std::thread::sleep(Duration::from_millis(500));
        cluster.node(victim).spawn();
    }
    let errors = writer.join().expect("writer");
    assert!(
        errors.is_empty(),
        "{} delivery errors, first {:?}",
        errors.len(),
        errors.first()
    );
    assert_eq!(progress.acks.lock().expect("lock").len() as u64, TOTAL);
    let c = consumer(&bs, &[]);
    let mut expected = 0;
    wait_until(
        "every acknowledged record readable",
        Duration::from_secs(20),
        || {
            expected = (0..3)
                .map(|p| {
                    c.fetch_watermarks("once", p, Duration::from_secs(5))
                        .map(|w| w.1)
                        .unwrap_or(0)
                })
                .sum::<i64>();
            expected >= TOTAL as i64
        },
    );
    let got = consume_all(&bs, "once", 3, expected as usize, Duration::from_secs(60));
    assert_eq!(got.len() as i64, expected);
    check_exactly_once(&got, TOTAL);
}

fn idempotent_batch(pid: i64, epoch: i16, seq: i32, values: &[&str]) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: pid,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: seq + i as i32,
            timestamp: 1_000,
            key: None,
            value: Some(Bytes::copy_from_slice(v.as_bytes())),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encode");
    buf.freeze()
}

fn produce(c: &mut Client, records: Bytes) -> (i16, i64) {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("replayed")))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])]);
    let r: ProduceResponse = c.call(ApiKey::Produce, 9, &req).expect("produce");
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

#[test]
fn a_replayed_batch_gets_its_original_offset_and_the_log_does_not_grow() {
    let broker = Broker::start(&[]);
    let mut c = Client::connect(&broker.bootstrap()).expect("connect");
    let init: InitProducerIdResponse = c
        .call(
            ApiKey::InitProducerId,
            4,
            &InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        )
        .expect("init producer id");
    assert_eq!(init.error_code, 0);
    let pid = init.producer_id.0;
    assert!(pid >= 0);
    // A second producer gets another id.
    let other: InitProducerIdResponse = c
        .call(
            ApiKey::InitProducerId,
            4,
            &InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        )
        .expect("init producer id");
    assert_ne!(other.producer_id.0, pid);

    // Create the topic (auto-creation through Metadata), then write two batches.
    let md: kafka_protocol::messages::MetadataResponse = c
        .call(
            ApiKey::Metadata,
            12,
            &kafka_protocol::messages::MetadataRequest::default()
                .with_topics(Some(vec![
                    kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_static_str("replayed")))),
                ]))
                .with_allow_auto_topic_creation(true),
        )
        .expect("metadata");
    assert_eq!(md.topics[0].error_code, 0);
    assert_eq!(
        produce(&mut c, idempotent_batch(pid, 0, 0, &["a", "b", "c"])),
        (0, 0)
    );
    assert_eq!(produce(&mut c, idempotent_batch(pid, 0, 3, &["d"])), (0, 3));
    // The first batch again: its original offset, nothing appended.
    assert_eq!(
        produce(&mut c, idempotent_batch(pid, 0, 0, &["a", "b", "c"])),
        (0, 0)
    );
    let hw = consumer(&broker.bootstrap(), &[])
        .fetch_watermarks("replayed", 0, Duration::from_secs(5))
        .expect("watermarks")
        .1;
    assert_eq!(hw, 4, "the log did not grow");
    // A gap in the sequence, and a stale epoch after a bump, are refused.
    assert_eq!(
        produce(&mut c, idempotent_batch(pid, 0, 9, &["x"])).0,
        45,
        "OUT_OF_ORDER_SEQUENCE_NUMBER"
    );
    assert_eq!(
        produce(&mut c, idempotent_batch(pid, 1, 0, &["e"])),
        (0, 4),
        "a new epoch restarts at 0"
    );
    assert_eq!(
        produce(&mut c, idempotent_batch(pid, 0, 4, &["y"])).0,
        47,
        "INVALID_PRODUCER_EPOCH"
    );
}

#[test]
fn an_idempotent_producer_continues_after_every_broker_restarts() {
    let mut cluster = Cluster::new(3, &[]);
    cluster.start(&[1, 2, 3], Duration::from_millis(100));
    let bs = cluster.bootstrap(1);
    wait_until("three brokers", Duration::from_secs(20), || {
        strom::tools::cluster_status(&bs).is_ok_and(|s| s.matches("active").count() == 3)
    });
    let bs_all = (1..=3)
        .map(|i| cluster.bootstrap(i))
        .collect::<Vec<_>>()
        .join(",");
    let p = producer(
        &bs_all,
        &[
            ("enable.idempotence", "true"),
            ("message.timeout.ms", "60000"),
        ],
    );
    create_rf3(&bs, "restarts");
    wait_until("topic with a full ISR", Duration::from_secs(20), || {
        full_isr(&bs, "restarts")
    });
    for id in 0..5_000 {
        send(&p, "restarts", id, id.to_string().as_bytes());
    }
    let _ = p.flush(Duration::from_secs(30));
    for id in 1..=3 {
        cluster.node(id).terminate();
    }
    cluster.start(&[1, 2, 3], Duration::from_millis(50));
    wait_until(
        "the cluster back with a full ISR",
        Duration::from_secs(30),
        || full_isr(&bs, "restarts"),
    );
    for id in 5_000..10_000 {
        send(&p, "restarts", id, id.to_string().as_bytes());
    }
    let _ = p.flush(Duration::from_secs(60));
    let errors = p.context().errors.lock().expect("lock").clone();
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(p.context().acks.lock().expect("lock").len(), 10_000);
    let c = consumer(&bs, &[]);
    let total: i64 = (0..3)
        .map(|p| {
            c.fetch_watermarks("restarts", p, Duration::from_secs(5))
                .map(|w| w.1)
                .unwrap_or(0)
        })
        .sum();
    let got = consume_all(&bs, "restarts", 3, total as usize, Duration::from_secs(60));
    check_exactly_once(&got, 10_000);
}
