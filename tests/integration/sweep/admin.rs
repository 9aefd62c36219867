//! The sweep's admin cases: topics, configs, records, elections and partition listings, each
//! with its error paths (unknown topics, bad values, read-only settings, unknown resources).

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::{s, tn, Sweep, PARTITIONS, TOPIC};

pub(super) fn create_topics(sw: &mut Sweep, v: i16) {
    let name = format!("created-v{v}");
    let topic = |name: &str, partitions: i32, rf: i16| {
        CreatableTopic::default()
            .with_name(tn(name))
            .with_num_partitions(partitions)
            .with_replication_factor(rf)
            .with_configs(vec![CreatableTopicConfig::default()
                .with_name(s("retention.ms"))
                .with_value(Some(s("3600000")))])
    };
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![
            topic(&name, 2, 3),
            topic(TOPIC, 1, 1),
            topic("bad-rf", 1, 9),
        ]);
    sw.call(
        2,
        ApiKey::CreateTopics,
        v,
        "new, existing, bad replication factor",
        &req,
    );
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_validate_only(true)
        .with_topics(vec![topic("validate-only", 1, 1)]);
    sw.call(3, ApiKey::CreateTopics, v, "validate only", &req);
    // More than Kafka's 10,000 partitions per request: every topic refused, nothing placed.
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_validate_only(true)
        .with_topics(vec![topic("huge", i32::MAX, 3), topic("small", 1, 1)]);
    let resp = sw.call(1, ApiKey::CreateTopics, v, "too many partitions", &req);
    let ResponseKind::CreateTopics(r) = resp else {
        panic!("{resp:?}")
    };
    let codes: Vec<i16> = r.topics.iter().map(|t| t.error_code).collect();
    assert_eq!(codes, [44, 44], "POLICY_VIOLATION for the whole request");
}

/// Creates `name` (one partition, one replica) for a case that needs a topic of its own.
fn one_partition_topic(sw: &mut Sweep, name: &str, case: &str) {
    let create = CreateTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(tn(name))
            .with_num_partitions(1)
            .with_replication_factor(1)]);
    sw.call(1, ApiKey::CreateTopics, 7, case, &create);
}

pub(super) fn delete_topics(sw: &mut Sweep, v: i16) {
    let name = format!("to-delete-v{v}");
    one_partition_topic(sw, &name, "for DeleteTopics");
    let mut req = DeleteTopicsRequest::default().with_timeout_ms(10_000);
    if v >= 6 {
        req = req.with_topics(vec![
            DeleteTopicState::default().with_name(Some(tn(&name))),
            DeleteTopicState::default().with_name(Some(tn("no-such-topic"))),
            DeleteTopicState::default().with_topic_id(Uuid::from_u128(42)),
        ]);
    } else {
        req = req.with_topic_names(vec![tn(&name), tn("no-such-topic")]);
    }
    sw.call(2, ApiKey::DeleteTopics, v, "one real, unknown ones", &req);
}

pub(super) fn describe_configs(sw: &mut Sweep, v: i16) {
    let resource = |kind: i8, name: &str, keys: Option<Vec<StrBytes>>| {
        DescribeConfigsResource::default()
            .with_resource_type(kind)
            .with_resource_name(s(name))
            .with_configuration_keys(keys)
    };
    let mut req = DescribeConfigsRequest::default().with_resources(vec![
        resource(2, TOPIC, None),
        resource(2, "no-such-topic", None),
        resource(4, "1", Some(vec![s("log.retention.ms"), s("no.such.key")])),
        resource(4, "99", None),
        resource(4, "", None),
    ]);
    req = req.with_include_synonyms(true);
    if v >= 3 {
        req = req.with_include_documentation(true);
    }
    sw.call(
        1,
        ApiKey::DescribeConfigs,
        v,
        "topic, broker, unknown",
        &req,
    );
}

pub(super) fn alter_configs(sw: &mut Sweep, v: i16) {
    use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
    let resource = |kind: i8, name: &str, configs: &[(&str, &str)]| {
        AlterConfigsResource::default()
            .with_resource_type(kind)
            .with_resource_name(s(name))
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        AlterableConfig::default()
                            .with_name(s(k))
                            .with_value(Some(s(v)))
                    })
                    .collect(),
            )
    };
    let req = AlterConfigsRequest::default().with_resources(vec![
        resource(2, TOPIC, &[("retention.ms", "86400000")]),
        resource(2, TOPIC, &[("no.such.config", "1")]),
        resource(2, "no-such-topic", &[("retention.ms", "1")]),
        resource(4, "", &[("log.flush.interval.ms", "600000")]),
        resource(4, "1", &[("num.partitions", "3")]),
        resource(9, "x", &[]),
    ]);
    sw.call(
        2,
        ApiKey::AlterConfigs,
        v,
        "topic, bad name, unknown, brokers",
        &req,
    );
    let check = req.with_validate_only(true);
    sw.call(3, ApiKey::AlterConfigs, v, "validate only", &check);
}

pub(super) fn incremental_alter_configs(sw: &mut Sweep, v: i16) {
    use kafka_protocol::messages::incremental_alter_configs_request::{
        AlterConfigsResource, AlterableConfig,
    };
    let resource = |kind: i8, name: &str, configs: &[(&str, i8, Option<&str>)]| {
        AlterConfigsResource::default()
            .with_resource_type(kind)
            .with_resource_name(s(name))
            .with_configs(
                configs
                    .iter()
                    .map(|(k, op, v)| {
                        AlterableConfig::default()
                            .with_name(s(k))
                            .with_config_operation(*op)
                            .with_value(v.map(s))
                    })
                    .collect(),
            )
    };
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
        resource(
            2,
            TOPIC,
            &[
                ("retention.ms", 0, Some("172800000")),
                ("flush.ms", 1, None),
            ],
        ),
        resource(2, TOPIC, &[("cleanup.policy", 2, Some("compact"))]),
        resource(2, TOPIC, &[("retention.ms", 2, Some("1"))]),
        resource(2, "no-such-topic", &[("retention.ms", 0, Some("1"))]),
        resource(4, "", &[("log.retention.bytes", 0, Some("-1"))]),
        resource(4, "2", &[("log.flush.interval.ms", 1, None)]),
        resource(4, "nope", &[("log.flush.interval.ms", 1, None)]),
        resource(4, "1", &[("listeners", 0, Some("x"))]),
        resource(2, TOPIC, &[("retention.ms", 7, Some("1"))]),
    ]);
    sw.call(
        1,
        ApiKey::IncrementalAlterConfigs,
        v,
        "every operation and error",
        &req,
    );
    let check = req.with_validate_only(true);
    sw.call(
        3,
        ApiKey::IncrementalAlterConfigs,
        v,
        "validate only",
        &check,
    );
}

pub(super) fn delete_records(sw: &mut Sweep, v: i16) {
    use kafka_protocol::messages::delete_records_request::{
        DeleteRecordsPartition, DeleteRecordsTopic,
    };
    let topic = |name: &str, offsets: &[(i32, i64)]| {
        DeleteRecordsTopic::default()
            .with_name(tn(name))
            .with_partitions(
                offsets
                    .iter()
                    .map(|(p, o)| {
                        DeleteRecordsPartition::default()
                            .with_partition_index(*p)
                            .with_offset(*o)
                    })
                    .collect(),
            )
    };
    let req = DeleteRecordsRequest::default()
        .with_timeout_ms(5_000)
        .with_topics(vec![
            topic(TOPIC, &[(0, 0), (1, 1 << 40), (2, -1)]),
            topic("no-such-topic", &[(0, 0)]),
        ]);
    sw.call(
        1,
        ApiKey::DeleteRecords,
        v,
        "kept, past the end, to the HW, unknown",
        &req,
    );
}

pub(super) fn elect_leaders(sw: &mut Sweep, v: i16) {
    use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
    let listed = Some(vec![
        TopicPartitions::default()
            .with_topic(tn(TOPIC))
            .with_partitions((0..PARTITIONS).collect()),
        TopicPartitions::default()
            .with_topic(tn("no-such-topic"))
            .with_partitions(vec![0]),
    ]);
    let req = ElectLeadersRequest::default()
        .with_timeout_ms(5_000)
        .with_topic_partitions(listed.clone());
    sw.call(2, ApiKey::ElectLeaders, v, "preferred, listed", &req);
    let all = ElectLeadersRequest::default()
        .with_timeout_ms(5_000)
        .with_topic_partitions(None);
    sw.call(3, ApiKey::ElectLeaders, v, "preferred, all", &all);
    if v >= 1 {
        let unclean = req.with_election_type(1);
        sw.call(1, ApiKey::ElectLeaders, v, "unclean, listed", &unclean);
    }
}

/// Reassigns a partition to the replicas it has (done at once, nothing moves), and asks for
/// refusals: a cancel with nothing in progress, a broker named twice, an unknown topic, and
/// (v1) a replication factor change the request does not allow.
pub(super) fn alter_partition_reassignments(sw: &mut Sweep, v: i16, replicas: Vec<i32>) {
    use kafka_protocol::messages::alter_partition_reassignments_request::{
        ReassignablePartition, ReassignableTopic,
    };
    let to = |p: i32, r: Option<Vec<i32>>| {
        ReassignablePartition::default()
            .with_partition_index(p)
            .with_replicas(r.map(|r| r.into_iter().map(BrokerId).collect()))
    };
    let mut req = AlterPartitionReassignmentsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![
            ReassignableTopic::default()
                .with_name(tn(TOPIC))
                .with_partitions(vec![
                    to(0, Some(replicas.clone())),
                    to(1, None),
                    to(2, Some(vec![1, 1])),
                ]),
            ReassignableTopic::default()
                .with_name(tn("no-such-topic"))
                .with_partitions(vec![to(0, Some(vec![1]))]),
        ]);
    if v >= 1 {
        req = req.with_allow_replication_factor_change(true);
    }
    let resp = sw.call(
        2,
        ApiKey::AlterPartitionReassignments,
        v,
        "same, cancel, bad",
        &req,
    );
    let ResponseKind::AlterPartitionReassignments(r) = resp else {
        panic!("{resp:?}")
    };
    let codes: Vec<i16> = r
        .responses
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
        .collect();
    // none, NO_REASSIGNMENT_IN_PROGRESS, INVALID_REPLICA_ASSIGNMENT, UNKNOWN_TOPIC_OR_PARTITION
    assert_eq!(codes, vec![0, 85, 39, 3], "{r:?}");
    if v >= 1 {
        let fixed = AlterPartitionReassignmentsRequest::default()
            .with_allow_replication_factor_change(false)
            .with_topics(vec![ReassignableTopic::default()
                .with_name(tn(TOPIC))
                .with_partitions(vec![to(0, Some(vec![replicas[0]]))])]);
        let resp = sw.call(
            3,
            ApiKey::AlterPartitionReassignments,
            v,
            "fixed RF",
            &fixed,
        );
        let ResponseKind::AlterPartitionReassignments(r) = resp else {
            panic!("{resp:?}")
        };
        // INVALID_REPLICATION_FACTOR
        assert_eq!(r.responses[0].partitions[0].error_code, 38, "{r:?}");
    }
}

pub(super) fn list_partition_reassignments(sw: &mut Sweep, v: i16) {
    use kafka_protocol::messages::list_partition_reassignments_request::ListPartitionReassignmentsTopics;
    let all = ListPartitionReassignmentsRequest::default().with_timeout_ms(5_000);
    let resp = sw.call(1, ApiKey::ListPartitionReassignments, v, "all", &all);
    let ResponseKind::ListPartitionReassignments(r) = resp else {
        panic!("{resp:?}")
    };
    assert!(r.topics.is_empty(), "nothing is moving: {r:?}");
    let some = all.with_topics(Some(vec![ListPartitionReassignmentsTopics::default()
        .with_name(tn(TOPIC))
        .with_partition_indexes(vec![0, 1])]));
    sw.call(2, ApiKey::ListPartitionReassignments, v, "listed", &some);
}

/// Pages through every topic two partitions at a time, and asks for named ones.
pub(super) fn describe_topic_partitions(sw: &mut Sweep, v: i16) {
    use kafka_protocol::messages::describe_topic_partitions_request::{Cursor, TopicRequest};
    let mut cursor = None;
    let mut seen = 0;
    for page in 0.. {
        let req = DescribeTopicPartitionsRequest::default()
            .with_response_partition_limit(2)
            .with_cursor(cursor.take());
        let resp = sw.call(
            1,
            ApiKey::DescribeTopicPartitions,
            v,
            &format!("page {page}"),
            &req,
        );
        let ResponseKind::DescribeTopicPartitions(r) = resp else {
            panic!("{resp:?}")
        };
        let got: usize = r.topics.iter().map(|t| t.partitions.len()).sum();
        assert!(got <= 2, "a page holds at most the limit");
        seen += got;
        match r.next_cursor {
            Some(c) => {
                cursor = Some(
                    Cursor::default()
                        .with_topic_name(c.topic_name)
                        .with_partition_index(c.partition_index),
                )
            }
            None => break,
        }
        assert!(page < 500, "the cursor never ended");
    }
    assert!(seen >= PARTITIONS as usize);
    let named = DescribeTopicPartitionsRequest::default()
        .with_response_partition_limit(100)
        .with_topics(vec![
            TopicRequest::default().with_name(tn(TOPIC)),
            TopicRequest::default().with_name(tn("no-such-topic")),
        ]);
    sw.call(
        2,
        ApiKey::DescribeTopicPartitions,
        v,
        "named, one unknown",
        &named,
    );
}

pub(super) fn create_partitions(sw: &mut Sweep, v: i16) {
    let name = format!("grown-v{v}");
    one_partition_topic(sw, &name, "for CreatePartitions");
    let topic = |name: &str, count: i32| {
        CreatePartitionsTopic::default()
            .with_name(tn(name))
            .with_count(count)
            .with_assignments(None)
    };
    let req = CreatePartitionsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![
            topic(&name, 2),
            topic(TOPIC, 1),
            topic("no-such-topic", 4),
        ]);
    sw.call(
        3,
        ApiKey::CreatePartitions,
        v,
        "grow, shrink, unknown",
        &req,
    );
    let req = CreatePartitionsRequest::default()
        .with_timeout_ms(10_000)
        .with_validate_only(true)
        .with_topics(vec![topic(&name, i32::MAX)]);
    let resp = sw.call(2, ApiKey::CreatePartitions, v, "too many partitions", &req);
    let ResponseKind::CreatePartitions(r) = resp else {
        panic!("{resp:?}")
    };
    assert_eq!(r.results[0].error_code, 44, "POLICY_VIOLATION");
}
