//! The version sweep: every (API key, version) that strom advertises — taken from
//! `protocol::SUPPORTED`, the table ApiVersions answers from — is sent to a live three-node
//! cluster with realistic contents, including the answers' unusual paths (errors, leader hints,
//! unknown topics, empty and multi-partition answers). Each response must decode at that version
//! with nothing left over, carry the request's correlation id, and leave the connection open.
//! An advertised API without a case below fails the sweep, and so does a version no case sent.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::Compression;
use strom::protocol::SUPPORTED;
use uuid::Uuid;

use crate::harness::{wait_until, Cluster, Raw};

mod admin;
mod groups;
mod txn;

const TOPIC: &str = "sweep";
const PARTITIONS: i32 = 3;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn tn(v: &str) -> TopicName {
    TopicName(s(v))
}

fn gid(v: &str) -> GroupId {
    GroupId(s(v))
}

/// One live cluster, a connection to each node, and what the sweep has sent so far.
struct Sweep {
    conns: BTreeMap<i32, Raw>,
    corr: i32,
    /// The (key, version) under test; only calls of that pair count as covering it.
    subject: (ApiKey, i16),
    covered: BTreeSet<(i16, i16)>,
    topic_id: Uuid,
    /// Partition → leader id.
    leaders: BTreeMap<i32, i32>,
}

impl Sweep {
    /// A partition's replicas as node 1's Metadata answer lists them.
    fn replicas(&mut self, topic: &str, partition: i32) -> Vec<i32> {
        let req = MetadataRequest::default()
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(tn(topic)))
            ]))
            .with_allow_auto_topic_creation(false);
        match self.call(1, ApiKey::Metadata, 12, "replicas", &req) {
            ResponseKind::Metadata(r) => r.topics[0].partitions[partition as usize]
                .replica_nodes
                .iter()
                .map(|b| b.0)
                .collect(),
            other => panic!("{other:?}"),
        }
    }

    /// Sends `req` as `key` at `version` to node `node` and returns the decoded answer. Panics,
    /// naming the case, when the answer does not decode exactly or the connection closes.
    fn call(
        &mut self,
        node: i32,
        key: ApiKey,
        version: i16,
        case: &str,
        req: &impl Encodable,
    ) -> ResponseKind {
        self.corr += 1;
        let corr = self.corr;
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(corr)
            .with_client_id(Some(s("sweep")));
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        header
            .encode(&mut buf, key.request_header_version(version))
            .expect("request header");
        req.encode(&mut buf, version)
            .unwrap_or_else(|e| panic!("the sweep's {key:?} v{version} ({case}) request: {e}"));
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        let raw = self.conns.get_mut(&node).expect("node");
        raw.send_raw(&buf);
        let frame = raw.read_frame().unwrap_or_else(|| {
            panic!("node {node} closed the connection after {key:?} v{version} ({case})")
        });
        let mut body = Bytes::from(frame);
        let head = ResponseHeader::decode(&mut body, key.response_header_version(version))
            .unwrap_or_else(|e| panic!("{key:?} v{version} ({case}): response header: {e}"));
        assert_eq!(
            head.correlation_id, corr,
            "{key:?} v{version} ({case}): correlation id"
        );
        let resp = ResponseKind::decode(key, &mut body, version)
            .unwrap_or_else(|e| panic!("{key:?} v{version} ({case}): response body: {e}"));
        assert_eq!(
            body.remaining(),
            0,
            "{key:?} v{version} ({case}): bytes left over after the response body"
        );
        if (key, version) == self.subject {
            self.covered.insert((key as i16, version));
        }
        self.ping(node, key, version, case);
        resp
    }

    /// The connection still serves after the case.
    fn ping(&mut self, node: i32, key: ApiKey, version: i16, case: &str) {
        self.corr += 1;
        let corr = self.corr;
        let header = RequestHeader::default()
            .with_request_api_key(ApiKey::ApiVersions as i16)
            .with_request_api_version(0)
            .with_correlation_id(corr);
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        header.encode(&mut buf, 1).expect("header");
        ApiVersionsRequest::default()
            .encode(&mut buf, 0)
            .expect("body");
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        let raw = self.conns.get_mut(&node).expect("node");
        raw.send_raw(&buf);
        let frame = raw.read_frame().unwrap_or_else(|| {
            panic!("node {node} closed the connection after answering {key:?} v{version} ({case})")
        });
        let mut body = Bytes::from(frame);
        assert_eq!(
            body.get_i32(),
            corr,
            "ping after {key:?} v{version} ({case})"
        );
    }

    /// The node that leads partition `p` of the sweep topic.
    fn leader(&self, p: i32) -> i32 {
        self.leaders[&p]
    }

    /// The coordinator of `group`, asked of node 1.
    fn coordinator(&mut self, group: &str) -> i32 {
        let req = FindCoordinatorRequest::default().with_key(s(group));
        match self.call(1, ApiKey::FindCoordinator, 3, "coordinator", &req) {
            ResponseKind::FindCoordinator(r) if r.error_code == 0 => r.node_id.0,
            other => panic!("no coordinator for {group}: {other:?}"),
        }
    }
}

/// One uncompressed record with a key, stamped 1,000.
fn batch(value: &[u8]) -> Bytes {
    crate::harness::one_record_batch(Some(b"k"), value, 1_000, Compression::None)
}

/// A consumer protocol subscription (v0) to the sweep topic, as a group member sends it.
fn subscription() -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(0);
    b.put_i32(1);
    b.put_i16(TOPIC.len() as i16);
    b.put_slice(TOPIC.as_bytes());
    b.put_i32(-1);
    b.freeze()
}

/// A consumer protocol assignment (v0) of every sweep partition.
fn assignment() -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(0);
    b.put_i32(1);
    b.put_i16(TOPIC.len() as i16);
    b.put_slice(TOPIC.as_bytes());
    b.put_i32(PARTITIONS);
    for p in 0..PARTITIONS {
        b.put_i32(p);
    }
    b.put_i32(-1);
    b.freeze()
}

/// Every advertised (key, version), each sent with its cases to a live cluster.
#[test]
fn every_advertised_version_answers_in_a_form_its_client_can_read() {
    // Three nodes under load: not alongside the failover tests, which time themselves.
    let _quiet = crate::harness::timing_sensitive();
    let mut cluster = Cluster::new(3, &["group.initial.rebalance.delay.ms=0"]);
    cluster.start(&[1, 2, 3], Duration::from_millis(100));
    let mut sweep = Sweep {
        conns: (1..=3)
            .map(|n| (n, Raw::connect(cluster.node(n).port)))
            .collect(),
        corr: 0,
        subject: (ApiKey::ApiVersions, 0),
        covered: BTreeSet::new(),
        topic_id: Uuid::nil(),
        leaders: BTreeMap::new(),
    };
    setup(&mut sweep);

    for (key, min, max) in SUPPORTED {
        for v in *min..=*max {
            sweep.subject = (*key, v);
            case(&mut sweep, *key, v);
            assert!(
                sweep.covered.contains(&(*key as i16, v)),
                "{key:?} v{v} is advertised but the sweep sent no request at that version"
            );
        }
    }
    let advertised: usize = SUPPORTED
        .iter()
        .map(|(_, min, max)| (max - min + 1) as usize)
        .sum();
    assert_eq!(sweep.covered.len(), advertised);
    eprintln!(
        "sweep: {advertised} (key, version) pairs, {} requests",
        sweep.corr / 2
    );
}

/// The sweep topic (three partitions, RF 3, leaders spread) with records in every partition.
fn setup(sw: &mut Sweep) {
    wait_until("three unfenced brokers", Duration::from_secs(30), || {
        let req = DescribeClusterRequest::default();
        matches!(
            sw.call(1, ApiKey::DescribeCluster, 0, "setup", &req),
            ResponseKind::DescribeCluster(r) if r.brokers.len() == 3 && r.controller_id.0 > 0
        )
    });
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(tn(TOPIC))
            .with_num_partitions(PARTITIONS)
            .with_replication_factor(3)]);
    match sw.call(1, ApiKey::CreateTopics, 7, "setup", &req) {
        ResponseKind::CreateTopics(r) => assert_eq!(r.topics[0].error_code, 0, "create"),
        other => panic!("{other:?}"),
    }
    // Every node knows the topic and its leaders, and the leaders are spread.
    wait_until(
        "leaders of the sweep topic",
        Duration::from_secs(30),
        || {
            let req = MetadataRequest::default()
                .with_topics(Some(vec![
                    MetadataRequestTopic::default().with_name(Some(tn(TOPIC)))
                ]))
                .with_allow_auto_topic_creation(false);
            let mut known = Vec::new();
            for n in 1..=3 {
                if let ResponseKind::Metadata(r) = sw.call(n, ApiKey::Metadata, 12, "setup", &req) {
                    let t = &r.topics[0];
                    if t.error_code == 0 && t.partitions.len() == PARTITIONS as usize {
                        sw.topic_id = t.topic_id;
                        sw.leaders = t
                            .partitions
                            .iter()
                            .map(|p| (p.partition_index, p.leader_id.0))
                            .collect();
                        known.push(sw.leaders.values().all(|l| *l > 0));
                    }
                }
            }
            known.len() == 3 && known.iter().all(|k| *k)
        },
    );
    for p in 0..PARTITIONS {
        let req = produce_request(7, &[p], -1, sw.topic_id);
        let leader = sw.leader(p);
        wait_until(
            "records in every partition",
            Duration::from_secs(20),
            || match sw.call(leader, ApiKey::Produce, 7, "setup", &req) {
                ResponseKind::Produce(r) => r.responses[0].partition_responses[0].error_code == 0,
                other => panic!("{other:?}"),
            },
        );
    }
}

/// One record to each of `partitions` of the sweep topic (by id from v13, by name before).
fn produce_request(v: i16, partitions: &[i32], acks: i16, id: Uuid) -> ProduceRequest {
    let records = batch(b"one");
    let topic = TopicProduceData::default().with_partition_data(
        partitions
            .iter()
            .map(|p| {
                PartitionProduceData::default()
                    .with_index(*p)
                    .with_records(Some(records.clone()))
            })
            .collect(),
    );
    let topic = if v >= 13 {
        topic.with_topic_id(id)
    } else {
        topic.with_name(tn(TOPIC))
    };
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5_000)
        .with_topic_data(vec![topic])
}

/// The cases for one (key, version). The match has no catch-all arm that passes: an advertised
/// API without cases fails here.
fn case(sw: &mut Sweep, key: ApiKey, v: i16) {
    match key {
        ApiKey::Produce => produce(sw, v),
        ApiKey::Fetch => fetch(sw, v),
        ApiKey::ListOffsets => list_offsets(sw, v),
        ApiKey::Metadata => metadata(sw, v),
        ApiKey::ApiVersions => {
            let mut req = ApiVersionsRequest::default();
            if v >= 3 {
                req = req
                    .with_client_software_name(s("sweep"))
                    .with_client_software_version(s("1.0"));
            }
            sw.call(2, key, v, "plain", &req);
        }
        ApiKey::CreateTopics => admin::create_topics(sw, v),
        ApiKey::DeleteTopics => admin::delete_topics(sw, v),
        ApiKey::DescribeConfigs => admin::describe_configs(sw, v),
        ApiKey::AlterConfigs => admin::alter_configs(sw, v),
        ApiKey::IncrementalAlterConfigs => admin::incremental_alter_configs(sw, v),
        ApiKey::DeleteRecords => admin::delete_records(sw, v),
        ApiKey::ElectLeaders => admin::elect_leaders(sw, v),
        ApiKey::AlterPartitionReassignments => {
            let replicas = sw.replicas(TOPIC, 0);
            admin::alter_partition_reassignments(sw, v, replicas)
        }
        ApiKey::ListPartitionReassignments => admin::list_partition_reassignments(sw, v),
        ApiKey::DescribeLogDirs => {
            use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
            sw.call(
                1,
                key,
                v,
                "all",
                &DescribeLogDirsRequest::default().with_topics(None),
            );
            let some = DescribeLogDirsRequest::default().with_topics(Some(vec![
                DescribableLogDirTopic::default()
                    .with_topic(tn(TOPIC))
                    .with_partitions(vec![0, 9]),
            ]));
            sw.call(2, key, v, "one topic", &some);
        }
        ApiKey::DescribeProducers => {
            use kafka_protocol::messages::describe_producers_request::TopicRequest;
            let req = DescribeProducersRequest::default().with_topics(vec![
                TopicRequest::default()
                    .with_name(tn(TOPIC))
                    .with_partition_indexes((0..PARTITIONS).collect()),
                TopicRequest::default()
                    .with_name(tn("no-such-topic"))
                    .with_partition_indexes(vec![0]),
            ]);
            sw.call(1, key, v, "some not led, unknown", &req);
        }
        ApiKey::DescribeTopicPartitions => admin::describe_topic_partitions(sw, v),
        ApiKey::CreatePartitions => admin::create_partitions(sw, v),
        ApiKey::DescribeCluster => {
            let mut req = DescribeClusterRequest::default();
            if v >= 1 {
                req = req.with_endpoint_type(1);
            }
            if v >= 2 {
                req = req.with_include_fenced_brokers(true);
            }
            sw.call(3, key, v, "brokers", &req);
            if v >= 1 {
                let controllers = req.with_endpoint_type(2);
                sw.call(3, key, v, "controllers", &controllers);
            }
        }
        ApiKey::DescribeQuorum => {
            for (case, topic) in [("metadata", "__cluster_metadata"), ("unknown", "nope")] {
                let req = DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
                    .with_topic_name(tn(topic))
                    .with_partitions(vec![PartitionData::default().with_partition_index(0)])]);
                sw.call(1, key, v, case, &req);
            }
        }
        ApiKey::OffsetForLeaderEpoch => offset_for_leader_epoch(sw, v),
        ApiKey::InitProducerId => init_producer_id(sw, v),
        ApiKey::FindCoordinator => find_coordinator(sw, v),
        ApiKey::JoinGroup
        | ApiKey::SyncGroup
        | ApiKey::Heartbeat
        | ApiKey::LeaveGroup
        | ApiKey::OffsetCommit
        | ApiKey::OffsetFetch
        | ApiKey::DescribeGroups
        | ApiKey::ListGroups
        | ApiKey::DeleteGroups
        | ApiKey::OffsetDelete => groups::group(sw, key, v),
        ApiKey::AddPartitionsToTxn
        | ApiKey::AddOffsetsToTxn
        | ApiKey::EndTxn
        | ApiKey::TxnOffsetCommit
        | ApiKey::WriteTxnMarkers
        | ApiKey::DescribeTransactions
        | ApiKey::ListTransactions => txn::txn(sw, key, v),
        // On a listener without SASL both are refused as Kafka refuses them; on a SASL
        // listener the reader answers them (tests/integration/security.rs sends every version).
        ApiKey::SaslHandshake => {
            let req = SaslHandshakeRequest::default().with_mechanism(s("PLAIN"));
            match sw.call(1, key, v, "no SASL on this listener", &req) {
                ResponseKind::SaslHandshake(r) => {
                    assert_eq!(r.error_code, 34, "ILLEGAL_SASL_STATE")
                }
                other => panic!("{other:?}"),
            }
        }
        ApiKey::SaslAuthenticate => {
            let req =
                SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from_static(b"\0a\0b"));
            match sw.call(2, key, v, "no SASL on this listener", &req) {
                ResponseKind::SaslAuthenticate(r) => {
                    assert_eq!(r.error_code, 34, "ILLEGAL_SASL_STATE")
                }
                other => panic!("{other:?}"),
            }
        }
        ApiKey::AlterUserScramCredentials => {
            use kafka_protocol::messages::alter_user_scram_credentials_request::{
                ScramCredentialDeletion, ScramCredentialUpsertion,
            };
            let upsert = |name: &str, iterations: i32| {
                ScramCredentialUpsertion::default()
                    .with_name(s(name))
                    .with_mechanism(2)
                    .with_iterations(iterations)
                    .with_salt(Bytes::from_static(b"0123456789abcdef"))
                    .with_salted_password(Bytes::from_static(&[7u8; 64]))
            };
            let req = AlterUserScramCredentialsRequest::default()
                .with_upsertions(vec![upsert("sweeper", 4096), upsert("weak", 10)])
                .with_deletions(vec![ScramCredentialDeletion::default()
                    .with_name(s("nobody"))
                    .with_mechanism(1)]);
            match sw.call(3, key, v, "set, too few iterations, unknown deletion", &req) {
                ResponseKind::AlterUserScramCredentials(r) => {
                    let codes: Vec<(String, i16)> = r
                        .results
                        .iter()
                        .map(|x| (x.user.to_string(), x.error_code))
                        .collect();
                    assert_eq!(
                        codes,
                        [
                            ("nobody".into(), 91),
                            ("sweeper".into(), 0),
                            ("weak".into(), 93)
                        ]
                    );
                }
                other => panic!("{other:?}"),
            }
        }
        ApiKey::DescribeUserScramCredentials => {
            use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
            let user = |n: &str| UserName::default().with_name(s(n));
            sw.call(
                1,
                key,
                v,
                "all users",
                &DescribeUserScramCredentialsRequest::default(),
            );
            let req = DescribeUserScramCredentialsRequest::default().with_users(Some(vec![
                user("nobody"),
                user("twice"),
                user("twice"),
            ]));
            match sw.call(2, key, v, "unknown and duplicate", &req) {
                ResponseKind::DescribeUserScramCredentials(r) => {
                    let codes: Vec<i16> = r.results.iter().map(|x| x.error_code).collect();
                    assert_eq!(codes, [91, 92]);
                }
                other => panic!("{other:?}"),
            }
        }
        // Without an authorizer (this cluster has none) Kafka answers SECURITY_DISABLED;
        // tests/integration/security.rs runs them with one.
        ApiKey::CreateAcls => {
            use kafka_protocol::messages::create_acls_request::AclCreation;
            let req = CreateAclsRequest::default().with_creations(vec![AclCreation::default()
                .with_resource_type(2)
                .with_resource_name(s("t"))
                .with_resource_pattern_type(3)
                .with_principal(s("User:a"))
                .with_host(s("*"))
                .with_operation(3)
                .with_permission_type(3)]);
            match sw.call(1, key, v, "no authorizer", &req) {
                ResponseKind::CreateAcls(r) => assert_eq!(r.results[0].error_code, 54),
                other => panic!("{other:?}"),
            }
        }
        ApiKey::DescribeAcls => {
            let req = DescribeAclsRequest::default()
                .with_resource_type_filter(1)
                .with_pattern_type_filter(1)
                .with_operation(1)
                .with_permission_type(1);
            match sw.call(2, key, v, "no authorizer", &req) {
                ResponseKind::DescribeAcls(r) => assert_eq!(r.error_code, 54),
                other => panic!("{other:?}"),
            }
        }
        ApiKey::DeleteAcls => {
            use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
            let req = DeleteAclsRequest::default().with_filters(vec![DeleteAclsFilter::default()
                .with_resource_type_filter(1)
                .with_pattern_type_filter(1)
                .with_operation(1)
                .with_permission_type(1)]);
            match sw.call(3, key, v, "no authorizer", &req) {
                ResponseKind::DeleteAcls(r) => assert_eq!(r.filter_results[0].error_code, 54),
                other => panic!("{other:?}"),
            }
        }
        other => panic!("{other:?} is advertised but the sweep has no cases for it"),
    }
}

fn produce(sw: &mut Sweep, v: i16) {
    let all: Vec<i32> = (0..PARTITIONS).collect();
    let mut req = produce_request(v, &all, -1, sw.topic_id);
    // Through node 1: some partitions it leads, the others answer NOT_LEADER_OR_FOLLOWER (with
    // the leader's endpoint from v10).
    sw.call(1, ApiKey::Produce, v, "multi-partition, some not led", &req);
    req.acks = 1;
    sw.call(
        sw.leader(0),
        ApiKey::Produce,
        v,
        "acks=1 to the leader",
        &req,
    );
    let mut unknown = produce_request(v, &[0, 7], -1, sw.topic_id);
    if v >= 13 {
        unknown.topic_data[0].topic_id = Uuid::from_u128(42);
    } else {
        unknown.topic_data[0].name = tn("no-such-topic");
    }
    sw.call(2, ApiKey::Produce, v, "unknown topic", &unknown);
    let mut corrupt = produce_request(v, &[0], -1, sw.topic_id);
    let mut bad = BytesMut::from(&batch(b"x")[..]);
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    corrupt.topic_data[0].partition_data[0].records = Some(bad.freeze());
    sw.call(sw.leader(0), ApiKey::Produce, v, "corrupt batch", &corrupt);
}

fn fetch(sw: &mut Sweep, v: i16) {
    let partitions = |offset: i64| -> Vec<FetchPartition> {
        (0..PARTITIONS)
            .map(|p| {
                let mut fp = FetchPartition::default()
                    .with_partition(p)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(1 << 20);
                if v >= 9 {
                    fp = fp.with_current_leader_epoch(-1);
                }
                if v >= 5 {
                    fp = fp.with_log_start_offset(-1);
                }
                fp
            })
            .collect()
    };
    let topic = |id: Uuid, name: &str, offset: i64| {
        let t = FetchTopic::default().with_partitions(partitions(offset));
        if v >= 13 {
            t.with_topic_id(id)
        } else {
            t.with_topic(tn(name))
        }
    };
    let request = |topics: Vec<FetchTopic>| {
        let mut r = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_topics(topics);
        if v <= 14 {
            r = r.with_replica_id(BrokerId(-1));
        }
        if v >= 7 {
            r = r.with_session_epoch(-1);
        }
        r
    };
    let id = sw.topic_id;
    let req = request(vec![topic(id, TOPIC, 0)]);
    sw.call(1, ApiKey::Fetch, v, "every partition, some not led", &req);
    let req = request(vec![topic(id, TOPIC, 1 << 40)]);
    sw.call(sw.leader(1), ApiKey::Fetch, v, "offset out of range", &req);
    let req = request(vec![topic(Uuid::from_u128(42), "no-such-topic", 0)]);
    sw.call(2, ApiKey::Fetch, v, "unknown topic", &req);
    let req = request(vec![]);
    sw.call(3, ApiKey::Fetch, v, "no partitions", &req);
    if v >= 7 {
        // A new incremental fetch session (epoch 0).
        let req = request(vec![topic(id, TOPIC, 0)]).with_session_epoch(0);
        sw.call(sw.leader(2), ApiKey::Fetch, v, "new session", &req);
    }
}

fn list_offsets(sw: &mut Sweep, v: i16) {
    let mut stamps = vec![-1, -2, 0, 1_001, 1 << 50];
    if v >= 7 {
        stamps.push(-3);
    }
    if v >= 8 {
        stamps.push(-4);
    }
    for ts in stamps {
        let partitions = (0..PARTITIONS)
            .map(|p| {
                let mut lp = ListOffsetsPartition::default()
                    .with_partition_index(p)
                    .with_timestamp(ts);
                if v >= 4 {
                    lp = lp.with_current_leader_epoch(-1);
                }
                lp
            })
            .collect();
        let mut req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(tn(TOPIC))
                .with_partitions(partitions)]);
        if v >= 10 {
            req = req.with_timeout_ms(5_000);
        }
        let case = format!("timestamp {ts} on every partition, some not led");
        let resp = sw.call(1, ApiKey::ListOffsets, v, &case, &req);
        if ts == -2 {
            // The earliest offset of a led partition is a real answer, not an error.
            let ResponseKind::ListOffsets(r) = resp else {
                panic!("{resp:?}")
            };
            for p in &r.topics[0].partitions {
                if sw.leader(p.partition_index) == 1 {
                    assert_eq!((p.error_code, p.offset), (0, 0), "ListOffsets v{v}");
                }
            }
        }
    }
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(tn("no-such-topic"))
            .with_partitions(vec![
                ListOffsetsPartition::default().with_timestamp(-1)
            ])]);
    sw.call(2, ApiKey::ListOffsets, v, "unknown topic", &req);
}

fn metadata(sw: &mut Sweep, v: i16) {
    let all = if v == 0 {
        MetadataRequest::default().with_topics(Some(vec![]))
    } else {
        MetadataRequest::default().with_topics(None)
    };
    sw.call(1, ApiKey::Metadata, v, "all topics", &all);
    let mut named = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(tn(TOPIC))),
        MetadataRequestTopic::default().with_name(Some(tn("no-such-topic"))),
    ]));
    if v >= 4 {
        named = named.with_allow_auto_topic_creation(false);
    }
    if v >= 8 {
        named = named.with_include_topic_authorized_operations(true);
    }
    if (8..=10).contains(&v) {
        named = named.with_include_cluster_authorized_operations(true);
    }
    sw.call(2, ApiKey::Metadata, v, "named, one unknown", &named);
    if v >= 10 {
        let by_id = MetadataRequest::default()
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_topic_id(sw.topic_id)
            ]))
            .with_allow_auto_topic_creation(false);
        sw.call(3, ApiKey::Metadata, v, "by topic id", &by_id);
    }
}

fn offset_for_leader_epoch(sw: &mut Sweep, v: i16) {
    let partitions = (0..PARTITIONS)
        .map(|p| {
            OffsetForLeaderPartition::default()
                .with_partition(p)
                .with_current_leader_epoch(-1)
                .with_leader_epoch(0)
        })
        .collect();
    let mut req = OffsetForLeaderEpochRequest::default().with_topics(vec![
        OffsetForLeaderTopic::default()
            .with_topic(tn(TOPIC))
            .with_partitions(partitions),
        OffsetForLeaderTopic::default()
            .with_topic(tn("no-such-topic"))
            .with_partitions(vec![OffsetForLeaderPartition::default()]),
    ]);
    if v >= 3 {
        req = req.with_replica_id(BrokerId(-1));
    }
    sw.call(1, ApiKey::OffsetForLeaderEpoch, v, "some not led", &req);
}

fn init_producer_id(sw: &mut Sweep, v: i16) {
    let req = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000);
    let resp = sw.call(2, ApiKey::InitProducerId, v, "idempotent", &req);
    let ResponseKind::InitProducerId(r) = resp else {
        panic!("{resp:?}")
    };
    assert_eq!(r.error_code, 0, "InitProducerId v{v}");
    let txn = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(s("txn"))))
        .with_transaction_timeout_ms(60_000);
    sw.call(3, ApiKey::InitProducerId, v, "transactional", &txn);
    if v >= 3 {
        let again = req
            .with_producer_id(r.producer_id)
            .with_producer_epoch(r.producer_epoch);
        sw.call(
            2,
            ApiKey::InitProducerId,
            v,
            "with a known producer",
            &again,
        );
    }
}

fn find_coordinator(sw: &mut Sweep, v: i16) {
    let req = if v >= 4 {
        FindCoordinatorRequest::default().with_coordinator_keys(vec![s("g-one"), s("g-two")])
    } else {
        FindCoordinatorRequest::default().with_key(s("g-one"))
    };
    sw.call(1, ApiKey::FindCoordinator, v, "group", &req);
    let empty = if v >= 4 {
        FindCoordinatorRequest::default().with_coordinator_keys(vec![s("")])
    } else {
        FindCoordinatorRequest::default().with_key(s(""))
    };
    sw.call(3, ApiKey::FindCoordinator, v, "empty group id", &empty);
    if v >= 1 {
        let txn = req.with_key_type(1);
        sw.call(2, ApiKey::FindCoordinator, v, "transaction", &txn);
    }
}
