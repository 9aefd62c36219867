//! Record timestamps as Kafka treats them: a LogAppendTime topic (topic config or broker
//! default) stamps batches with the broker's clock, answers Produce with that time and gives it
//! to consumers and ListOffsets; a CreateTime topic refuses batches stamped too far from the
//! broker's clock (`message.timestamp.after.max.ms`).

use std::time::Duration;

use futures::executor::block_on;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Message, Timestamp};
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::TopicPartitionList;
use strom::tools::Client;
use strom::types::now_ms;

use crate::harness::{consumer, producer, Broker};

fn create(bootstrap: &str, topic: &str, configs: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin");
    let mut t = NewTopic::new(topic, 1, TopicReplication::Fixed(1));
    for (k, v) in configs {
        t = t.set(k, v);
    }
    let r = block_on(admin.create_topics(&[t], &AdminOptions::new())).expect("create");
    assert!(r[0].is_ok(), "{r:?}");
}

/// One record with producer timestamp `ts`, through Produce v9 by hand; returns the partition's
/// error code and log_append_time_ms.
fn produce_raw(bootstrap: &str, topic: &str, ts: i64) -> (i16, i64) {
    let buf = crate::harness::one_record_batch(None, b"by hand", ts, Compression::None);
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(buf))])]);
    let mut c = Client::connect(bootstrap).expect("connect");
    let resp: ProduceResponse = c.call(ApiKey::Produce, 9, &req).expect("produce");
    let p = &resp.responses[0].partition_responses[0];
    (p.error_code, p.log_append_time_ms)
}

/// The timestamps of every record of `topic`'s partition 0, with their type.
fn timestamps(bootstrap: &str, topic: &str, expect: usize) -> Vec<Timestamp> {
    let c: BaseConsumer = consumer(bootstrap, &[]);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
        .expect("tpl");
    c.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while out.len() < expect && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            out.push(m.timestamp());
        }
    }
    out
}

#[test]
fn log_append_time_topics_carry_the_brokers_time() {
    let b = Broker::start(&[]);
    let boot = b.bootstrap();
    create(
        &boot,
        "appended",
        &[("message.timestamp.type", "LogAppendTime")],
    );
    create(&boot, "created", &[]);

    // The producer's own timestamp (1970) is replaced by the broker's clock.
    let before = now_ms();
    let (code, appended_at) = produce_raw(&boot, "appended", 1_000);
    let after = now_ms();
    assert_eq!(code, 0);
    assert!(
        (before..=after).contains(&appended_at),
        "log_append_time_ms {appended_at} not in [{before}, {after}]"
    );
    let (code, create_time) = produce_raw(&boot, "created", 1_000);
    assert_eq!((code, create_time), (0, -1), "CreateTime answers -1");

    // Through librdkafka too, with compression (the batch's records are not re-encoded).
    let p = producer(&boot, &[("compression.codec", "lz4"), ("acks", "all")]);
    for i in 0..10 {
        let payload = format!("record {i}");
        let rec = BaseRecord::with_opaque_to("appended", Box::new(i))
            .payload(&payload)
            .key("k")
            .timestamp(2_000);
        p.send(rec).map_err(|(e, _)| e).expect("send");
    }
    p.flush(Duration::from_secs(30)).expect("flush");
    let done = now_ms();
    assert!(p.context().errors.lock().expect("errors").is_empty());

    let seen = timestamps(&boot, "appended", 11);
    assert_eq!(seen.len(), 11);
    assert_eq!(seen[0], Timestamp::LogAppendTime(appended_at));
    for t in &seen[1..] {
        match t {
            Timestamp::LogAppendTime(ms) => assert!((after..=done).contains(ms), "{ms}"),
            other => panic!("expected LogAppendTime, got {other:?}"),
        }
    }
    assert_eq!(
        timestamps(&boot, "created", 1),
        [Timestamp::CreateTime(1_000)]
    );

    // ListOffsets by time looks at the broker's timestamps: the first record is found by its
    // append time, and nothing is at or after `done + 1`.
    let c: BaseConsumer = consumer(&boot, &[]);
    let at = |ts: i64| {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("appended", 0, rdkafka::Offset::Offset(ts))
            .expect("tpl");
        let found = c
            .offsets_for_times(tpl, Duration::from_secs(10))
            .expect("offsets_for_times");
        found.elements()[0].offset()
    };
    assert_eq!(at(appended_at), rdkafka::Offset::Offset(0));
    assert_eq!(at(appended_at + 1), rdkafka::Offset::Offset(1));
    assert_eq!(at(done + 1), rdkafka::Offset::End);
}

#[test]
fn a_broker_default_of_log_append_time_applies_and_future_create_times_are_refused() {
    let b = Broker::start(&["log.message.timestamp.after.max.ms=60000"]);
    let boot = b.bootstrap();
    create(&boot, "future", &[]);
    let (code, _) = produce_raw(&boot, "future", now_ms() + 3_600_000);
    assert_eq!(
        code,
        RDKafkaErrorCode::InvalidTimestamp as i16,
        "an hour ahead"
    );
    let (code, _) = produce_raw(&boot, "future", now_ms() + 1_000);
    assert_eq!(code, 0, "a second ahead is within a minute");

    let b = Broker::start(&["log.message.timestamp.type=LogAppendTime"]);
    let boot = b.bootstrap();
    create(&boot, "by-default", &[]);
    create(
        &boot,
        "overridden",
        &[("message.timestamp.type", "CreateTime")],
    );
    let (_, at) = produce_raw(&boot, "by-default", 1_000);
    assert!(at > 1_000, "stamped by the broker default");
    let (_, at) = produce_raw(&boot, "overridden", 1_000);
    assert_eq!(at, -1, "the topic's CreateTime wins");
}
