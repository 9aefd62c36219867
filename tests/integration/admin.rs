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

pub(crate) fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
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

/// `__consumer_offsets` belongs to the group coordinator: clients can neither create, delete,
/// grow nor reconfigure it; commits for partitions that do not exist are refused per partition;
/// a group id too long for the offsets records is refused before anything is written.
#[test]
fn the_offsets_topic_and_its_records_are_the_coordinators_alone() {
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;
    use strom::tools::Client;
    let b = Broker::start(&[]);
    let mut c = Client::connect(&b.bootstrap()).expect("connect");
    let text = |v: &str| StrBytes::from_string(v.to_string());
    let offsets = || TopicName(text("__consumer_offsets"));
    // The coordinator creates it on first use.
    let find = FindCoordinatorRequest::default().with_key(text("g"));
    crate::harness::wait_until("a coordinator", Duration::from_secs(20), || {
        c.call::<_, FindCoordinatorResponse>(ApiKey::FindCoordinator, 3, &find)
            .is_ok_and(|r| r.error_code == 0)
    });

    let create = CreateTopicsRequest::default().with_topics(vec![
        create_topics_request::CreatableTopic::default()
            .with_name(offsets())
            .with_num_partitions(1)
            .with_replication_factor(1),
        create_topics_request::CreatableTopic::default()
            .with_name(TopicName(text("ordinary")))
            .with_num_partitions(1)
            .with_replication_factor(1),
    ]);
    let r: CreateTopicsResponse = c.call(ApiKey::CreateTopics, 7, &create).expect("create");
    let codes: Vec<i16> = r.topics.iter().map(|t| t.error_code).collect();
    assert_eq!(
        codes,
        [17, 0],
        "INVALID_TOPIC_EXCEPTION, and the other topic created"
    );
    let delete = DeleteTopicsRequest::default().with_topic_names(vec![offsets()]);
    let r: DeleteTopicsResponse = c.call(ApiKey::DeleteTopics, 4, &delete).expect("delete");
    assert_eq!(r.responses[0].error_code, 17, "INVALID_TOPIC_EXCEPTION");
    let grow = CreatePartitionsRequest::default().with_topics(vec![
        create_partitions_request::CreatePartitionsTopic::default()
            .with_name(offsets())
            .with_count(100),
    ]);
    let r: CreatePartitionsResponse = c.call(ApiKey::CreatePartitions, 3, &grow).expect("grow");
    assert_eq!(r.results[0].error_code, 17, "INVALID_TOPIC_EXCEPTION");
    let alter = IncrementalAlterConfigsRequest::default().with_resources(vec![
        incremental_alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(text("__consumer_offsets"))
            .with_configs(vec![
                incremental_alter_configs_request::AlterableConfig::default()
                    .with_name(text("retention.ms"))
                    .with_value(Some(text("1000"))),
            ]),
    ]);
    let r: IncrementalAlterConfigsResponse = c
        .call(ApiKey::IncrementalAlterConfigs, 1, &alter)
        .expect("alter");
    assert_eq!(r.responses[0].error_code, 42, "INVALID_REQUEST");

    // A standalone commit (generation -1): the real partition is stored, the made-up one not.
    let commit = OffsetCommitRequest::default()
        .with_group_id(GroupId(text("g")))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![
            offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(TopicName(text("ordinary")))
                .with_partitions(vec![
                    offset_commit_request::OffsetCommitRequestPartition::default()
                        .with_committed_offset(0),
                    offset_commit_request::OffsetCommitRequestPartition::default()
                        .with_partition_index(7)
                        .with_committed_offset(0),
                ]),
        ]);
    let r: OffsetCommitResponse = c.call(ApiKey::OffsetCommit, 8, &commit).expect("commit");
    let codes: Vec<i16> = r.topics[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect();
    assert_eq!(codes, [0, 3], "UNKNOWN_TOPIC_OR_PARTITION for partition 7");

    // A 40,000-byte group id (flexible versions allow it) would not fit the offsets records.
    let long = "g".repeat(40_000);
    let join = JoinGroupRequest::default()
        .with_group_id(GroupId(text(&long)))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_protocol_type(text("consumer"))
        .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
        )
        .with_name(text("range"))]);
    let r: JoinGroupResponse = c.call(ApiKey::JoinGroup, 9, &join).expect("join");
    assert_eq!(r.error_code, 42, "INVALID_REQUEST");
}
