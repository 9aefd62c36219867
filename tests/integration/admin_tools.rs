//! The admin calls Kafka's tools and client libraries make, through those libraries
//! (confluent-kafka for IncrementalAlterConfigs, DeleteRecords and ElectLeaders; kafka-python
//! for AlterConfigs on the cluster default), on a three-node cluster: dynamic configs take
//! effect on every broker without a restart and survive a full cluster restart, records are
//! deleted on every replica, and leadership returns to the preferred replica.

use std::time::Duration;

use futures::executor::block_on;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, DescribeClusterRequest, DescribeClusterResponse, DescribeConfigsRequest,
    DescribeConfigsResponse, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::Consumer;
use strom::tools::Client;

use crate::clients::run_python;
use crate::harness::{consumer, flush, producer, send, wait_until, Cluster};

const DYNAMIC_TOPIC_CONFIG: i8 = 1;
const DYNAMIC_DEFAULT_BROKER_CONFIG: i8 = 3;

fn create(bootstrap: &str, topic: &str, replicas: &[i32], configs: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin");
    let assignment = [replicas];
    let mut t = NewTopic::new(topic, 1, TopicReplication::Variable(&assignment));
    for (k, v) in configs {
        t = t.set(k, v);
    }
    let r = block_on(admin.create_topics(&[t], &AdminOptions::new())).expect("create");
    assert!(r[0].is_ok(), "{r:?}");
}

/// `retention.ms` of `topic` as one broker describes it: (value, source).
fn retention(bootstrap: &str, topic: &str) -> Option<(String, i8)> {
    let mut c = Client::connect(bootstrap).ok()?;
    let req =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_string(topic.into()))
            .with_configuration_keys(Some(vec![StrBytes::from_static_str("retention.ms")]))]);
    let r: DescribeConfigsResponse = c.call(ApiKey::DescribeConfigs, 4, &req).ok()?;
    let e = r.results.first()?.configs.first()?;
    Some((e.value.as_ref()?.to_string(), e.config_source))
}

/// (leader, ISR) of partition 0 of `topic`, as one broker reports it.
fn leader_and_isr(bootstrap: &str, topic: &str) -> Option<(i32, Vec<i32>)> {
    let mut c = Client::connect(bootstrap).ok()?;
    let req = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default()
            .with_name(Some(TopicName(StrBytes::from_string(topic.into()))))]))
        .with_allow_auto_topic_creation(false);
    let r: MetadataResponse = c.call(ApiKey::Metadata, 12, &req).ok()?;
    let p = r.topics.first()?.partitions.first()?;
    Some((p.leader_id.0, p.isr_nodes.iter().map(|b| b.0).collect()))
}

fn all_active(bootstrap: &str) -> bool {
    let Ok(mut c) = Client::connect(bootstrap) else {
        return false;
    };
    let req = DescribeClusterRequest::default()
        .with_endpoint_type(1)
        .with_include_fenced_brokers(true);
    c.call::<_, DescribeClusterResponse>(ApiKey::DescribeCluster, 2, &req)
        .is_ok_and(|d| d.brokers.len() == 3 && d.brokers.iter().all(|b| !b.is_fenced))
}

fn low_watermark(bootstrap: &str, topic: &str) -> i64 {
    let c = consumer(bootstrap, &[]);
    c.fetch_watermarks(topic, 0, Duration::from_secs(5))
        .map(|(low, _)| low)
        .unwrap_or(-1)
}

fn fill(bootstrap: &str, topic: &str, n: u64) {
    let p = producer(bootstrap, &[("acks", "all"), ("linger.ms", "0")]);
    for id in 0..n {
        send(&p, topic, id, &[b'x'; 100]);
        // One small batch each, so 1 KiB segments roll often.
        p.poll(Duration::from_millis(1));
    }
    flush(&p);
}

#[test]
fn configs_records_and_elections_through_client_admin_libraries() {
    // Three nodes under load: not alongside the failover tests, which time themselves.
    let _quiet = crate::harness::timing_sensitive();
    let mut cluster = Cluster::new(
        3,
        &[
            "log.retention.check.interval.ms=300",
            "auto.leader.rebalance.enable=false",
        ],
    );
    cluster.start(&[1, 2, 3], Duration::from_millis(100));
    let boot = cluster.bootstrap(1);
    wait_until("three active brokers", Duration::from_secs(30), || {
        all_active(&boot)
    });
    let small = [("segment.bytes", "1024")];
    create(&boot, "retained", &[1, 2, 3], &small);
    create(&boot, "defaulted", &[2, 3, 1], &small);
    create(&boot, "trimmed", &[3, 1, 2], &[]);
    create(&boot, "elected", &[1, 2, 3], &[]);
    for t in ["retained", "defaulted", "trimmed"] {
        fill(&boot, t, 100);
    }

    // IncrementalAlterConfigs on a topic: every broker reports it as the topic's own, and
    // retention acts on it at once.
    let v = run_python(
        "admin_calls.py",
        &["incremental", &boot, "retained", "retention.ms", "1000"],
    );
    assert_eq!(v["value"], "1000");
    assert_eq!(v["source"], DYNAMIC_TOPIC_CONFIG);
    for n in 1..=3 {
        let at = cluster.bootstrap(n);
        wait_until(
            "every broker sees the topic config",
            Duration::from_secs(30),
            || retention(&at, "retained") == Some(("1000".into(), DYNAMIC_TOPIC_CONFIG)),
        );
    }
    wait_until(
        "retention deletes old segments",
        Duration::from_secs(30),
        || low_watermark(&boot, "retained") > 0,
    );
    assert_eq!(
        low_watermark(&boot, "defaulted"),
        0,
        "no override, no deletion"
    );

    // DeleteRecords answers once the low watermark moved on every replica in the ISR.
    let v = run_python(
        "admin_calls.py",
        &["delete-records", &boot, "trimmed", "0", "50"],
    );
    assert_eq!(v["low_watermark"], 50);
    assert_eq!(low_watermark(&boot, "trimmed"), 50);
    for n in 1..=3 {
        let file = cluster
            .node(n)
            .dir
            .join("data")
            .join("trimmed-0")
            .join("log-start-offset");
        let start = std::fs::read_to_string(&file).unwrap_or_default();
        assert_eq!(
            start.trim(),
            "50",
            "node {n}'s log start when the answer came"
        );
    }

    // ElectLeaders returns leadership to the preferred replica once it is back in the ISR.
    cluster.node(1).kill();
    let boot2 = cluster.bootstrap(2);
    wait_until("a new leader", Duration::from_secs(30), || {
        leader_and_isr(&boot2, "elected").is_some_and(|(l, _)| l > 1)
    });
    cluster.node(1).spawn();
    wait_until(
        "the preferred replica back in the ISR",
        Duration::from_secs(30),
        || leader_and_isr(&boot2, "elected").is_some_and(|(l, isr)| l != 1 && isr.contains(&1)),
    );
    let v = run_python(
        "admin_calls.py",
        &["elect-preferred", &boot2, "elected", "0"],
    );
    assert_eq!(v["errors"], serde_json::json!([null]), "{v}");
    wait_until(
        "the preferred replica leads",
        Duration::from_secs(30),
        || leader_and_isr(&boot2, "elected").is_some_and(|(l, _)| l == 1),
    );

    // A cluster-wide default (resource name "") applies to topics without an override.
    let v = run_python(
        "admin_calls.py",
        &["cluster-default", &boot, "log.retention.ms", "1000"],
    );
    assert_eq!(v["errors"], serde_json::json!([0]), "{v}");
    for n in 1..=3 {
        let at = cluster.bootstrap(n);
        wait_until(
            "every broker sees the default",
            Duration::from_secs(30),
            || retention(&at, "defaulted") == Some(("1000".into(), DYNAMIC_DEFAULT_BROKER_CONFIG)),
        );
    }
    wait_until(
        "the default's retention acts",
        Duration::from_secs(30),
        || low_watermark(&boot, "defaulted") > 0,
    );

    // Both survive a full cluster restart.
    for n in 1..=3 {
        cluster.node(n).kill();
    }
    cluster.start(&[3, 1, 2], Duration::from_millis(100));
    wait_until(
        "three active brokers again",
        Duration::from_secs(30),
        || all_active(&boot),
    );
    for n in 1..=3 {
        let at = cluster.bootstrap(n);
        wait_until("configs after the restart", Duration::from_secs(30), || {
            retention(&at, "retained") == Some(("1000".into(), DYNAMIC_TOPIC_CONFIG))
                && retention(&at, "defaulted")
                    == Some(("1000".into(), DYNAMIC_DEFAULT_BROKER_CONFIG))
        });
    }
}
