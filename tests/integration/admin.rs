//! Admin APIs through librdkafka's AdminClient: CreateTopics (validate_only, configs, bad
//! input), DescribeConfigs, CreatePartitions, DeleteTopics, and what Metadata shows after each.

use std::time::Duration;

use futures::executor::block_on;
use rdkafka::admin::{
    AdminClient, AdminOptions, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::Consumer;
use rdkafka::types::RDKafkaErrorCode;

use crate::harness::{consumer, Broker};

fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("log_level", "3")
        .create()
        .expect("admin client")
}

/// The error code of one admin result, if it failed.
fn code<T>(r: &Result<T, (String, RDKafkaErrorCode)>) -> Option<RDKafkaErrorCode> {
    r.as_ref().err().map(|e| e.1)
}

fn partitions(bootstrap: &str, topic: &str) -> Option<usize> {
    let c = consumer(bootstrap, &[]);
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let t = md.topics().first()?;
    if t.error().is_some() {
        return None;
    }
    Some(t.partitions().len())
}

#[test]
fn create_describe_grow_and_delete_topics() {
    let broker = Broker::start(&["auto.create.topics.enable=false"]);
    let bs = broker.bootstrap();
    let a = admin(&bs);
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(5)));

    // validate_only creates nothing.
    let dry = block_on(a.create_topics(
        &[NewTopic::new("orders", 3, TopicReplication::Fixed(1))],
        &AdminOptions::new().validate_only(true),
    ))
    .expect("validate");
    assert!(dry[0].is_ok(), "{:?}", dry[0]);
    assert_eq!(partitions(&bs, "orders"), None);

    let made = block_on(a.create_topics(
        &[
            NewTopic::new("orders", 3, TopicReplication::Fixed(1)).set("retention.ms", "86400000"),
            NewTopic::new("bad name!", 1, TopicReplication::Fixed(1)),
            NewTopic::new("too-replicated", 1, TopicReplication::Fixed(3)),
            NewTopic::new("bad-config", 1, TopicReplication::Fixed(1)).set("no.such.config", "1"),
            NewTopic::new("zero", 0, TopicReplication::Fixed(1)),
        ],
        &opts,
    ))
    .expect("create");
    assert!(made[0].is_ok(), "{:?}", made[0]);
    assert_eq!(code(&made[1]), Some(RDKafkaErrorCode::InvalidTopic));
    assert_eq!(
        code(&made[2]),
        Some(RDKafkaErrorCode::InvalidReplicationFactor)
    );
    assert_eq!(code(&made[3]), Some(RDKafkaErrorCode::InvalidConfig));
    assert_eq!(code(&made[4]), Some(RDKafkaErrorCode::InvalidPartitions));
    assert_eq!(partitions(&bs, "orders"), Some(3));

    let again = block_on(a.create_topics(
        &[NewTopic::new("orders", 1, TopicReplication::Fixed(1))],
        &opts,
    ))
    .expect("create");
    assert_eq!(code(&again[0]), Some(RDKafkaErrorCode::TopicAlreadyExists));

    // DescribeConfigs: the override and a broker-supplied default, and the broker's own settings.
    let described = block_on(a.describe_configs(
        &[
            ResourceSpecifier::Topic("orders"),
            ResourceSpecifier::Broker(1),
        ],
        &opts,
    ))
    .expect("describe");
    let topic = described[0].as_ref().expect("topic configs");
    let retention = topic.get("retention.ms").expect("retention.ms");
    assert_eq!(retention.value.as_deref(), Some("86400000"));
    assert!(!retention.is_default);
    let segment = topic.get("segment.bytes").expect("segment.bytes");
    assert_eq!(segment.value.as_deref(), Some("1073741824"));
    let brokercfg = described[1].as_ref().expect("broker configs");
    assert_eq!(
        brokercfg
            .get("auto.create.topics.enable")
            .and_then(|e| e.value.as_deref()),
        Some("false")
    );

    // CreatePartitions grows, and refuses to shrink.
    let grown =
        block_on(a.create_partitions(&[NewPartitions::new("orders", 5)], &opts)).expect("grow");
    assert!(grown[0].is_ok(), "{:?}", grown[0]);
    assert_eq!(partitions(&bs, "orders"), Some(5));
    let shrink =
        block_on(a.create_partitions(&[NewPartitions::new("orders", 2)], &opts)).expect("shrink");
    assert_eq!(code(&shrink[0]), Some(RDKafkaErrorCode::InvalidPartitions));

    // DeleteTopics removes it (and its data directories); deleting again is UNKNOWN_TOPIC.
    let deleted = block_on(a.delete_topics(&["orders"], &opts)).expect("delete");
    assert!(deleted[0].is_ok(), "{:?}", deleted[0]);
    assert_eq!(partitions(&bs, "orders"), None);
    let deleted = block_on(a.delete_topics(&["orders"], &opts)).expect("delete");
    assert_eq!(
        code(&deleted[0]),
        Some(RDKafkaErrorCode::UnknownTopicOrPartition)
    );
    std::thread::sleep(Duration::from_millis(300));
    let leftovers: Vec<_> = std::fs::read_dir(broker.dir.join("data"))
        .expect("data dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("orders-"))
        .collect();
    assert!(leftovers.is_empty(), "partition directories removed");
}
