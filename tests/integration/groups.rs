//! Consumer groups through librdkafka's group consumer (subscribe, rebalance, commit), a
//! coordinator failover, static membership, and kafka-python as a second client family.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::{
    ApiKey, DescribeGroupsRequest, DescribeGroupsResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, GroupId,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::producer::Producer;
use rdkafka::TopicPartitionList;
use strom::tools::Client;

use crate::harness::{flush, producer, wait_until, Broker, Cluster};

/// Group settings that keep tests quick: no initial rebalance delay, short sessions allowed,
/// few offsets partitions.
const GROUP_SETS: &[&str] = &[
    "group.initial.rebalance.delay.ms=0",
    "group.min.session.timeout.ms=1000",
    "offsets.topic.num.partitions=3",
    "num.partitions=6",
];

/// Counts completed rebalances (assignments received) of one consumer.
#[derive(Default, Clone)]
struct Rebalances(Arc<AtomicUsize>);

impl ClientContext for Rebalances {
    // TEST_RDKAFKA_DEBUG=<contexts> (e.g. `cgrp`) prints librdkafka's debug log while debugging.
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        if std::env::var_os("TEST_RDKAFKA_DEBUG").is_some() {
            eprintln!("rdkafka {level:?} {fac}: {log_message}");
        }
    }
}

impl ConsumerContext for Rebalances {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        if let Rebalance::Assign(_) = r {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

type GroupConsumer = BaseConsumer<Rebalances>;

fn group_consumer(bootstrap: &str, group: &str, extra: &[(&str, &str)]) -> GroupConsumer {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "300")
        .set("log_level", "3");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    if let Ok(contexts) = std::env::var("TEST_RDKAFKA_DEBUG") {
        c.set("debug", contexts).set("log_level", "7");
    }
    let c: GroupConsumer = c
        .create_with_context(Rebalances::default())
        .expect("consumer");
    c
}

fn subscribed(bootstrap: &str, group: &str, topic: &str, extra: &[(&str, &str)]) -> GroupConsumer {
    let c = group_consumer(bootstrap, group, extra);
    c.subscribe(&[topic]).expect("subscribe");
    c
}

/// The partitions currently assigned to `c`.
fn assigned(c: &GroupConsumer) -> BTreeSet<i32> {
    c.assignment()
        .map(|t| t.elements().iter().map(|e| e.partition()).collect())
        .unwrap_or_default()
}

/// Polls every consumer in turn until `done` holds, collecting (consumer index, partition,
/// offset, payload) of every record received.
fn poll_until(
    consumers: &[&GroupConsumer],
    timeout: Duration,
    what: &str,
    got: &mut Vec<(usize, i32, i64, Vec<u8>)>,
    mut done: impl FnMut(&[(usize, i32, i64, Vec<u8>)]) -> bool,
) {
    let deadline = Instant::now() + timeout;
    while !done(got) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        for (i, c) in consumers.iter().enumerate() {
            if let Some(Ok(m)) = c.poll(Duration::from_millis(20)) {
                got.push((
                    i,
                    m.partition(),
                    m.offset(),
                    m.payload().unwrap_or_default().to_vec(),
                ));
            }
        }
    }
}

/// Produces `n` records spread over partitions 0..6, payloads "<tag>-<i>".
fn produce(bootstrap: &str, topic: &str, tag: &str, n: usize) {
    let p = producer(
        bootstrap,
        &[("acks", "all"), ("enable.idempotence", "true")],
    );
    for i in 0..n {
        let payload = format!("{tag}-{i}");
        let rec = rdkafka::producer::BaseRecord::with_opaque_to(topic, Box::new(i as u64))
            .partition((i % 6) as i32)
            .key(&[] as &[u8])
            .payload(payload.as_bytes());
        let mut rec = rec;
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((_, r)) => {
                    rec = r;
                    p.poll(Duration::from_millis(5));
                }
            }
        }
    }
    flush(&p);
    let errors = p.context().errors.lock().expect("lock").clone();
    assert!(errors.is_empty(), "produce errors: {errors:?}");
    assert_eq!(p.context().acks.lock().expect("lock").len(), n);
}

fn find_coordinator(bootstrap: &str, group: &str) -> (i16, i32) {
    let mut c = Client::connect(bootstrap).expect("connect");
    let r: FindCoordinatorResponse = c
        .call(
            ApiKey::FindCoordinator,
            3,
            &FindCoordinatorRequest::default().with_key(StrBytes::from_string(group.into())),
        )
        .expect("find coordinator");
    (r.error_code, r.node_id.0)
}

fn describe(bootstrap: &str, group: &str) -> (String, Vec<String>) {
    let mut c = Client::connect(bootstrap).expect("connect");
    let r: DescribeGroupsResponse = c
        .call(
            ApiKey::DescribeGroups,
            5,
            &DescribeGroupsRequest::default()
                .with_groups(vec![GroupId(StrBytes::from_string(group.into()))]),
        )
        .expect("describe groups");
    let g = &r.groups[0];
    assert_eq!(g.error_code, 0, "describe {group}");
    (
        g.group_state.to_string(),
        g.members.iter().map(|m| m.member_id.to_string()).collect(),
    )
}

fn commit(c: &GroupConsumer) {
    c.commit_consumer_state(CommitMode::Sync).expect("commit");
}

#[test]
fn three_consumers_split_six_partitions_take_over_and_resume_from_commits() {
    // The first rebalance waits for all three members (as Kafka's initial delay is for), so
    // nobody reads a partition that is about to move.
    let mut sets = GROUP_SETS.to_vec();
    sets.push("group.initial.rebalance.delay.ms=1500");
    let b = Broker::start(&sets);
    let boot = b.bootstrap();
    produce(&boot, "orders", "a", 600);

    let c1 = subscribed(&boot, "billing", "orders", &[]);
    let c2 = subscribed(&boot, "billing", "orders", &[]);
    let c3 = subscribed(&boot, "billing", "orders", &[]);
    let mut got = Vec::new();
    poll_until(
        &[&c1, &c2, &c3],
        Duration::from_secs(30),
        "600 records",
        &mut got,
        |g| g.iter().map(|x| (x.1, x.2)).collect::<BTreeSet<_>>().len() >= 600,
    );
    for c in [&c1, &c2, &c3] {
        assert_eq!(
            assigned(c).len(),
            2,
            "each of three members gets two of six partitions"
        );
    }
    let all: BTreeSet<i32> = [&c1, &c2, &c3].iter().flat_map(|c| assigned(c)).collect();
    assert_eq!(all, (0..6).collect::<BTreeSet<_>>());
    let distinct: BTreeSet<(i32, i64)> = got.iter().map(|g| (g.1, g.2)).collect();
    assert_eq!(distinct.len(), 600, "every record read");
    for c in [&c1, &c2, &c3] {
        commit(c);
    }
    let c3_parts = assigned(&c3);
    drop(c3); // closes: LeaveGroup

    let mut got = Vec::new();
    poll_until(
        &[&c1, &c2],
        Duration::from_secs(30),
        "the two survivors to take over",
        &mut got,
        |_| assigned(&c1).len() == 3 && assigned(&c2).len() == 3,
    );
    assert!(
        got.is_empty(),
        "nothing new to read, and committed records are not re-read: {got:?}"
    );
    produce(&boot, "orders", "b", 300);
    poll_until(
        &[&c1, &c2],
        Duration::from_secs(30),
        "300 more records",
        &mut got,
        |g| g.len() >= 300,
    );
    let from_c3: usize = got.iter().filter(|g| c3_parts.contains(&g.1)).count();
    assert_eq!(
        from_c3, 100,
        "the leaver's partitions are read by the others"
    );
    assert!(
        got.iter().all(|g| g.3.starts_with(b"b-")),
        "old records were not re-read"
    );
    for c in [&c1, &c2] {
        commit(c);
    }
    drop(c1);
    drop(c2);

    // A new consumer in the group starts exactly where the group committed.
    produce(&boot, "orders", "c", 60);
    let again = subscribed(&boot, "billing", "orders", &[]);
    let mut got = Vec::new();
    poll_until(
        &[&again],
        Duration::from_secs(30),
        "60 new records",
        &mut got,
        |g| g.len() >= 60,
    );
    std::thread::sleep(Duration::from_millis(500));
    while let Some(Ok(m)) = again.poll(Duration::from_millis(100)) {
        got.push((
            0,
            m.partition(),
            m.offset(),
            m.payload().unwrap_or_default().to_vec(),
        ));
    }
    assert_eq!(got.len(), 60, "exactly the records after the commits");
    assert!(got.iter().all(|g| g.3.starts_with(b"c-")));
    let mut first: BTreeMap<i32, i64> = BTreeMap::new();
    for g in &got {
        first.entry(g.1).or_insert(g.2);
    }
    assert_eq!(first.values().copied().collect::<Vec<_>>(), vec![150; 6]);
}

#[test]
fn coordinator_killed_under_a_consuming_group_reforms_with_offsets_intact() {
    let _quiet = crate::harness::timing_sensitive();
    let mut sets = GROUP_SETS.to_vec();
    sets.push("default.replication.factor=3");
    let mut cluster = Cluster::new(3, &sets);
    cluster.start(&[1, 2, 3], Duration::ZERO);
    let boot = (1..=3)
        .map(|i| cluster.bootstrap(i))
        .collect::<Vec<_>>()
        .join(",");
    wait_until("three brokers", Duration::from_secs(20), || {
        strom::tools::cluster_status(&cluster.bootstrap(1))
            .map(|s| s.matches("active").count() >= 3)
            .unwrap_or(false)
    });
    produce(&boot, "events", "x", 1200);

    let extra = [
        ("enable.auto.commit", "true"),
        ("auto.commit.interval.ms", "200"),
    ];
    let c1 = subscribed(&boot, "audit", "events", &extra);
    let c2 = subscribed(&boot, "audit", "events", &extra);
    let mut got = Vec::new();
    poll_until(
        &[&c1, &c2],
        Duration::from_secs(30),
        "the first 600 records",
        &mut got,
        |g| g.len() >= 600,
    );
    let (code, coordinator) = find_coordinator(&cluster.bootstrap(1), "audit");
    assert_eq!(code, 0);
    let survivor = if coordinator == 1 { 2 } else { 1 };
    let killed_at = Instant::now();
    cluster.node(coordinator).kill();

    // Keep consuming through the failover, and produce more after it.
    let seen = |g: &[(usize, i32, i64, Vec<u8>)]| {
        g.iter().map(|x| x.3.clone()).collect::<BTreeSet<_>>().len()
    };
    poll_until(
        &[&c1, &c2],
        Duration::from_secs(60),
        "all of the first batch",
        &mut got,
        |g| seen(g) >= 1200,
    );
    let survivors = (1..=3)
        .filter(|i| *i != coordinator)
        .map(|i| cluster.bootstrap(i))
        .collect::<Vec<_>>()
        .join(",");
    produce(&survivors, "events", "y", 600);
    poll_until(
        &[&c1, &c2],
        Duration::from_secs(60),
        "the second batch",
        &mut got,
        |g| seen(g) >= 1800,
    );
    let (code, moved_to) = find_coordinator(&cluster.bootstrap(survivor), "audit");
    assert_eq!(code, 0);
    assert_ne!(moved_to, coordinator, "a new coordinator took over");
    eprintln!(
        "coordinator {coordinator} killed; group served by {moved_to}; all 1800 records consumed {:.1}s later",
        killed_at.elapsed().as_secs_f64()
    );
    let payloads: BTreeSet<Vec<u8>> = got.iter().map(|g| g.3.clone()).collect();
    for i in 0..1200 {
        assert!(
            payloads.contains(format!("x-{i}").as_bytes()),
            "x-{i} was skipped"
        );
    }
    for i in 0..600 {
        assert!(
            payloads.contains(format!("y-{i}").as_bytes()),
            "y-{i} was skipped"
        );
    }
    // The new coordinator holds the commits: auto-commit brings every partition to its end
    // (300 per partition).
    let mut tpl = TopicPartitionList::new();
    for p in 0..6 {
        tpl.add_partition("events", p);
    }
    let mut last = String::new();
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        for c in [&c1, &c2] {
            let _ = c.poll(Duration::from_millis(100));
        }
        let done = c1
            .committed_offsets(tpl.clone(), Duration::from_secs(5))
            .map(|committed| {
                last = format!("{:?}", committed.to_topic_map());
                committed
                    .elements()
                    .iter()
                    .all(|e| e.offset() == rdkafka::Offset::Offset(300))
            })
            .unwrap_or(false);
        if done {
            break;
        }
        if Instant::now() >= until {
            // What each consumer itself holds: which partitions, and how far it has read —
            // tells a commit never sent from one lost or undone by the coordinator.
            let views: Vec<String> = [&c1, &c2]
                .iter()
                .map(|c| {
                    let position = c.position().map(|p| p.to_topic_map());
                    format!("assigned/position {position:?}")
                })
                .collect();
            panic!(
                "every partition committed at its end (300); last seen {last}; consumers: {}",
                views.join(" | ")
            );
        }
    }
    drop(c1);
    drop(c2);
    cluster.node(coordinator).restart();
}

#[test]
fn a_static_member_restarting_within_its_session_causes_no_rebalance() {
    let b = Broker::start(GROUP_SETS);
    let boot = b.bootstrap();
    produce(&boot, "static", "s", 60);
    let opts = |id: &'static str| [("group.instance.id", id), ("session.timeout.ms", "10000")];
    let a = subscribed(&boot, "fixed", "static", &opts("member-a"));
    let bb = subscribed(&boot, "fixed", "static", &opts("member-b"));
    let mut got = Vec::new();
    poll_until(
        &[&a, &bb],
        Duration::from_secs(30),
        "both assigned",
        &mut got,
        |_| assigned(&a).len() == 3 && assigned(&bb).len() == 3,
    );
    let a_parts = assigned(&a);
    let b_rebalances = bb.context().0.load(Ordering::SeqCst);
    let (_, members_before) = describe(&boot, "fixed");
    drop(a); // a static member does not leave the group on close

    let a2 = subscribed(&boot, "fixed", "static", &opts("member-a"));
    poll_until(
        &[&a2, &bb],
        Duration::from_secs(20),
        "the restarted member assigned",
        &mut got,
        |_| !assigned(&a2).is_empty(),
    );
    // Give a (wrong) rebalance time to show itself.
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_secs(2) {
        let _ = a2.poll(Duration::from_millis(50));
        let _ = bb.poll(Duration::from_millis(50));
    }
    assert_eq!(assigned(&a2), a_parts, "the same partitions come back");
    assert_eq!(
        bb.context().0.load(Ordering::SeqCst),
        b_rebalances,
        "the other member saw no rebalance"
    );
    assert_eq!(assigned(&bb).len(), 3);
    let (state, members_after) = describe(&boot, "fixed");
    assert_eq!(state, "Stable");
    assert_eq!(members_after.len(), 2);
    assert_ne!(
        members_before, members_after,
        "the returning member has a new member id"
    );
}

/// kafka-python (installed by this test with pip) joins a group, consumes and commits; the
/// commit is visible to librdkafka.
#[test]
fn kafka_python_joins_a_group_and_commits() {
    let b = Broker::start(GROUP_SETS);
    let boot = b.bootstrap();
    produce(&boot, "py", "p", 120);
    let script = r#"
import json, sys
from kafka import KafkaConsumer
c = KafkaConsumer("py", bootstrap_servers=sys.argv[1], group_id="python-group",
                  auto_offset_reset="earliest", enable_auto_commit=False,
                  session_timeout_ms=6000, heartbeat_interval_ms=500, consumer_timeout_ms=20000)
seen = 0
for m in c:
    seen += 1
    if seen >= 120:
        break
c.commit()
print(json.dumps({"seen": seen, "assigned": sorted(tp.partition for tp in c.assignment())}))
c.close()
"#;
    let v = crate::harness::python_json(script, &boot);
    assert_eq!(v["seen"], 120);
    assert_eq!(v["assigned"], serde_json::json!([0, 1, 2, 3, 4, 5]));

    // librdkafka sees kafka-python's commits: 20 per partition.
    let c = group_consumer(&boot, "python-group", &[]);
    let mut tpl = TopicPartitionList::new();
    for p in 0..6 {
        tpl.add_partition("py", p);
    }
    let committed = c
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed");
    let by_partition: HashMap<i32, rdkafka::Offset> = committed
        .elements()
        .iter()
        .map(|e| (e.partition(), e.offset()))
        .collect();
    for p in 0..6 {
        assert_eq!(
            by_partition[&p],
            rdkafka::Offset::Offset(20),
            "partition {p}"
        );
    }
}

fn strom(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strom"))
        .args(args)
        .output()
        .expect("run strom");
    let mut text = String::from_utf8_lossy(&out.stdout).to_string();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn error_codes<T>(items: &[T], code: impl Fn(&T) -> i16) -> Vec<i16> {
    items.iter().map(code).collect()
}

/// `strom group list|describe|reset-offsets`, and DeleteGroups / OffsetDelete refusing a group
/// with members and working once it is empty.
#[test]
fn group_tools_list_describe_reset_and_delete() {
    use kafka_protocol::messages::offset_delete_request::{
        OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
    };
    use kafka_protocol::messages::{
        DeleteGroupsRequest, DeleteGroupsResponse, OffsetDeleteRequest, OffsetDeleteResponse,
        TopicName,
    };
    let b = Broker::start(GROUP_SETS);
    let boot = b.bootstrap();
    produce(&boot, "cli", "k", 60);
    let c = subscribed(&boot, "tools", "cli", &[]);
    let mut got = Vec::new();
    poll_until(
        &[&c],
        Duration::from_secs(30),
        "60 records",
        &mut got,
        |g| g.len() >= 60,
    );
    commit(&c);

    let (ok, text) = strom(&["group", "list", "--bootstrap", &boot]);
    assert!(ok, "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("tools") && l.contains("Stable")),
        "{text}"
    );
    let (ok, text) = strom(&["group", "describe", "tools", "--bootstrap", &boot]);
    assert!(ok, "{text}");
    assert!(
        text.contains("state Stable") && text.contains("1 member(s)"),
        "{text}"
    );
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("cli ")).collect();
    assert_eq!(rows.len(), 6, "{text}");
    for r in &rows {
        let cols: Vec<&str> = r.split_whitespace().collect();
        assert_eq!(&cols[2..5], &["10", "10", "0"], "{r}");
    }

    let (ok, text) = strom(&[
        "group",
        "reset-offsets",
        "tools",
        "--topic",
        "cli",
        "--to-earliest",
        "--execute",
        "--bootstrap",
        &boot,
    ]);
    assert!(!ok && text.contains("active members"), "{text}");
    let mut admin = Client::connect(&boot).expect("connect");
    let del: DeleteGroupsResponse = admin
        .call(
            ApiKey::DeleteGroups,
            2,
            &DeleteGroupsRequest::default()
                .with_groups_names(vec![GroupId(StrBytes::from_static_str("tools"))]),
        )
        .expect("delete groups");
    assert_eq!(
        error_codes(&del.results, |r| r.error_code),
        vec![68],
        "NON_EMPTY_GROUP"
    );
    drop(c);
    wait_until("the group to empty", Duration::from_secs(10), || {
        describe(&boot, "tools").0 == "Empty"
    });

    let (ok, text) = strom(&[
        "group",
        "reset-offsets",
        "tools",
        "--topic",
        "cli",
        "--to-earliest",
        "--bootstrap",
        &boot,
    ]);
    assert!(ok && text.contains("dry run"), "{text}");
    let (ok, text) = strom(&[
        "group",
        "reset-offsets",
        "tools",
        "--topic",
        "cli",
        "--to-offset",
        "4",
        "--execute",
        "--bootstrap",
        &boot,
    ]);
    assert!(ok, "{text}");
    let again = subscribed(&boot, "tools", "cli", &[]);
    let mut got = Vec::new();
    poll_until(
        &[&again],
        Duration::from_secs(30),
        "36 re-read records",
        &mut got,
        |g| g.len() >= 36,
    );
    assert!(got.iter().all(|g| g.2 >= 4), "reading resumes at offset 4");
    drop(again);
    wait_until("the group to empty", Duration::from_secs(10), || {
        describe(&boot, "tools").0 == "Empty"
    });

    let od: OffsetDeleteResponse = admin
        .call(
            ApiKey::OffsetDelete,
            0,
            &OffsetDeleteRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("tools")))
                .with_topics(vec![OffsetDeleteRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str("cli")))
                    .with_partitions(vec![
                        OffsetDeleteRequestPartition::default().with_partition_index(0)
                    ])]),
        )
        .expect("offset delete");
    assert_eq!(od.error_code, 0);
    assert_eq!(od.topics[0].partitions[0].error_code, 0);
    let (_, text) = strom(&["group", "describe", "tools", "--bootstrap", &boot]);
    assert_eq!(
        text.lines().filter(|l| l.starts_with("cli ")).count(),
        5,
        "{text}"
    );
    let del: DeleteGroupsResponse = admin
        .call(
            ApiKey::DeleteGroups,
            2,
            &DeleteGroupsRequest::default()
                .with_groups_names(vec![GroupId(StrBytes::from_static_str("tools"))]),
        )
        .expect("delete groups");
    assert_eq!(error_codes(&del.results, |r| r.error_code), vec![0]);
    let (ok, text) = strom(&["group", "list", "--bootstrap", &boot]);
    assert!(ok && !text.contains("tools"), "{text}");
}

/// Bytes of every file in a directory (not recursive).
pub(crate) fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// `__consumer_offsets` is compacted: 100,000 commits to one partition leave an offsets log
/// of bounded size, and a restart replays the compacted log to the same offsets.
#[test]
fn the_offsets_log_stays_bounded_by_compaction_and_survives_restart() {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::{
        BrokerId, ListOffsetsRequest, ListOffsetsResponse, OffsetCommitRequest,
        OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, TopicName,
    };
    const SEGMENT: u64 = 64 << 10;
    let mut sets = GROUP_SETS.to_vec();
    sets.retain(|s| !s.starts_with("offsets.topic.num.partitions"));
    let segment = format!("offsets.topic.segment.bytes={SEGMENT}");
    sets.extend([
        "offsets.topic.num.partitions=1",
        &segment,
        "log.cleaner.backoff.ms=100",
    ]);
    let mut b = Broker::start(&sets);
    let boot = b.bootstrap();
    wait_until("a coordinator", Duration::from_secs(10), || {
        find_coordinator(&boot, "g0").0 == 0
    });
    let mut c = Client::connect(&boot).expect("connect");
    // Commits are only taken for partitions that exist.
    let create = kafka_protocol::messages::CreateTopicsRequest::default().with_topics(vec![
        kafka_protocol::messages::create_topics_request::CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_num_partitions(1)
            .with_replication_factor(1),
    ]);
    let created: kafka_protocol::messages::CreateTopicsResponse =
        c.call(ApiKey::CreateTopics, 7, &create).expect("create");
    assert_eq!(created.topics[0].error_code, 0);
    let commit_round = |c: &mut Client, group: &str, offset: i64| {
        let r: OffsetCommitResponse = c
            .call(
                ApiKey::OffsetCommit,
                8,
                &OffsetCommitRequest::default()
                    .with_group_id(GroupId(StrBytes::from_string(group.into())))
                    .with_generation_id_or_member_epoch(-1)
                    .with_topics(vec![OffsetCommitRequestTopic::default()
                        .with_name(TopicName(StrBytes::from_static_str("t")))
                        .with_partitions(vec![OffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(offset)])]),
            )
            .expect("commit");
        r.topics[0].partitions[0].error_code
    };
    let mut code = -1;
    wait_until("the coordinator to load", Duration::from_secs(10), || {
        code = commit_round(&mut c, "g1", 1);
        code == 0
    });
    // Nine groups commit once, at the start of the log; g0 then commits 100,000 times.
    for g in 2..10 {
        assert_eq!(commit_round(&mut c, &format!("g{g}"), g), 0);
    }
    for i in 0..100_000 {
        assert_eq!(commit_round(&mut c, "g0", i), 0);
    }
    let log_end = |c: &mut Client| {
        let r: ListOffsetsResponse = c
            .call(
                ApiKey::ListOffsets,
                7,
                &ListOffsetsRequest::default()
                    .with_replica_id(BrokerId(-1))
                    .with_topics(vec![ListOffsetsTopic::default()
                        .with_name(TopicName(StrBytes::from_static_str("__consumer_offsets")))
                        .with_partitions(vec![ListOffsetsPartition::default()
                            .with_partition_index(0)
                            .with_timestamp(-1)])]),
            )
            .expect("list offsets");
        r.topics[0].partitions[0].offset
    };
    assert!(log_end(&mut c) >= 100_009);
    // About 10 MB of commits were written; the cleaner keeps the log within a few segments.
    let part = b.dir.join("data").join("__consumer_offsets-0");
    let bound = 4 * SEGMENT;
    wait_until(
        "the cleaner to compact the offsets log",
        Duration::from_secs(30),
        || dir_bytes(&part) < bound,
    );
    b.restart();
    let mut c = Client::connect(&boot).expect("connect");
    let fetch = |c: &mut Client, group: &str| -> Option<i64> {
        let r: OffsetFetchResponse = c
            .call(
                ApiKey::OffsetFetch,
                7,
                &OffsetFetchRequest::default()
                    .with_group_id(GroupId(StrBytes::from_string(group.into())))
                    .with_topics(None),
            )
            .ok()?;
        if r.error_code != 0 {
            return None;
        }
        Some(r.topics.first()?.partitions.first()?.committed_offset)
    };
    let mut found = None;
    wait_until("offsets after restart", Duration::from_secs(10), || {
        found = fetch(&mut c, "g0");
        found.is_some()
    });
    assert_eq!(found, Some(99_999));
    for g in 1..10 {
        assert_eq!(fetch(&mut c, &format!("g{g}")), Some(g), "g{g}");
    }
    assert!(dir_bytes(&part) < bound);
}
