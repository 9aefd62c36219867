//! Three-node clusters: quorum formation in any order, agreement on metadata, controller and
//! partition-leader failover, loss of the majority, and nodes that must refuse to start.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, DescribeClusterRequest,
    DescribeClusterResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::consumer::Consumer;
use rdkafka::producer::Producer;
use strom::tools::Client;

use crate::harness::{consumer, wait_until, Cluster};

/// (id, host, port, fenced) of one registered broker.
type BrokerRow = (i32, String, i32, bool);

/// The controller id and every registered broker, from DescribeCluster.
pub(crate) fn describe(bootstrap: &str) -> Option<(i32, Vec<BrokerRow>)> {
    let mut c = Client::connect(bootstrap).ok()?;
    let d: DescribeClusterResponse = c
        .call(
            ApiKey::DescribeCluster,
            2,
            &DescribeClusterRequest::default()
                .with_endpoint_type(1)
                .with_include_fenced_brokers(true),
        )
        .ok()?;
    let brokers = d
        .brokers
        .iter()
        .map(|b| (b.broker_id.0, b.host.to_string(), b.port, b.is_fenced))
        .collect();
    Some((d.controller_id.0, brokers))
}
fn all_active(bootstrap: &str, n: usize) -> bool {
    describe(bootstrap).is_some_and(|(ctl, b)| ctl > 0 && b.len() == n && b.iter().all(|x| !x.3))
}

/// Starts nodes 1, 2 and 3 and waits until all three are registered and active; returns node
/// 1's bootstrap address.
pub(crate) fn start_three(cluster: &mut Cluster) -> String {
    cluster.start(&[1, 2, 3], Duration::from_millis(100));
    let bs1 = cluster.bootstrap(1);
    wait_until("three active brokers", Duration::from_secs(20), || {
        all_active(&bs1, 3)
    });
    bs1
}

/// CreateTopics through one broker; returns the error code.
pub(crate) fn create_topic(bootstrap: &str, name: &str, partitions: i32, rf: i16) -> Option<i16> {
    let mut c = Client::connect(bootstrap).ok()?;
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(name.into())))
            .with_num_partitions(partitions)
            .with_replication_factor(rf)]);
    let r: CreateTopicsResponse = c.call(ApiKey::CreateTopics, 7, &req).ok()?;
    Some(r.topics[0].error_code)
}

type Partitions = BTreeMap<(String, i32), (i32, Vec<i32>, Vec<i32>)>;

/// Brokers and every partition's (leader, replicas, ISR) as one broker's Metadata reports them.
fn metadata(bootstrap: &str) -> (Vec<(i32, String, u16)>, Partitions) {
    let c = consumer(bootstrap, &[]);
    let md = c
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    let mut brokers: Vec<_> = md
        .brokers()
        .iter()
        .map(|b| (b.id(), b.host().to_string(), b.port() as u16))
        .collect();
    brokers.sort();
    let mut parts = BTreeMap::new();
    // Internal topics are left out: the test consumer's group lookup creates
    // `__consumer_offsets`, whose ISRs may still be settling while a test compares.
    for t in md.topics().iter().filter(|t| !t.name().starts_with("__")) {
        for p in t.partitions() {
            let mut replicas = p.replicas().to_vec();
            let mut isr = p.isr().to_vec();
            replicas.sort();
            isr.sort();
            parts.insert((t.name().to_string(), p.id()), (p.leader(), replicas, isr));
        }
    }
    (brokers, parts)
}

#[test]
fn three_nodes_form_in_any_order_and_agree_on_metadata() {
    let mut cluster = Cluster::new(3, &[]);
    cluster.start(&[3, 1, 2], Duration::from_millis(700));
    let bs3 = cluster.bootstrap(3);
    wait_until("three active brokers", Duration::from_secs(20), || {
        all_active(&bs3, 3)
    });
    assert_eq!(
        create_topic(&bs3, "shared", 6, 3),
        Some(0),
        "created through node 3"
    );
    // Other nodes learn of it as the metadata log reaches them (moments later).
    let bs1 = cluster.bootstrap(1);
    wait_until("the topic on node 1", Duration::from_secs(5), || {
        metadata(&bs1).1.keys().filter(|k| k.0 == "shared").count() == 6
    });
    let reference = metadata(&bs1);
    let ports: Vec<u16> = (1..=3).map(|i| cluster.node(i).port).collect();
    assert_eq!(
        reference.0,
        vec![
            (1, "127.0.0.1".into(), ports[0]),
            (2, "127.0.0.1".into(), ports[1]),
            (3, "127.0.0.1".into(), ports[2])
        ],
        "every broker with the endpoint of the client listener"
    );
    let shared: Vec<_> = reference
        .1
        .iter()
        .filter(|(k, _)| k.0 == "shared")
        .collect();
    assert_eq!(shared.len(), 6);
    assert!(shared
        .iter()
        .all(|(_, v)| v.1 == vec![1, 2, 3] && v.2 == vec![1, 2, 3]));
    let mut leaders: Vec<i32> = shared.iter().map(|(_, v)| v.0).collect();
    leaders.sort();
    assert_eq!(leaders, vec![1, 1, 2, 2, 3, 3], "leaders spread evenly");
    for id in [2, 3] {
        let bs = cluster.bootstrap(id);
        wait_until(
            "identical metadata on every node",
            Duration::from_secs(5),
            || metadata(&bs) == reference,
        );
    }
}

#[test]
fn killing_the_controller_elects_a_new_one_and_the_old_one_rejoins() {
    let _quiet = crate::harness::timing_sensitive();
    let mut cluster = Cluster::new(3, &[]);
    let bs1 = start_three(&mut cluster);
    assert_eq!(create_topic(&bs1, "before", 3, 3), Some(0));
    let (controller, _) = describe(&bs1).expect("describe");
    let survivor = if controller == 1 { 2 } else { 1 };
    let bs = cluster.bootstrap(survivor);

    cluster.node(controller).kill();
    let killed = Instant::now();
    let mut n = 0;
    wait_until(
        "an admin write after the controller died",
        Duration::from_secs(10),
        || {
            n += 1;
            create_topic(&bs, &format!("after-{n}"), 1, 1) == Some(0)
        },
    );
    let recovered = killed.elapsed();
    println!("controller {controller} killed: admin writes succeed again after {recovered:?}");
    assert!(
        recovered < Duration::from_millis(2500),
        "admin writes resumed after {recovered:?}"
    );
    let (new_controller, _) = describe(&bs).expect("describe");
    assert_ne!(new_controller, controller);

    // The old controller comes back as a follower with the same metadata, and nothing forks.
    cluster.node(controller).spawn();
    let back = cluster.bootstrap(controller);
    wait_until(
        "the old controller back and active",
        Duration::from_secs(15),
        || all_active(&back, 3),
    );
    let (ctl, _) = describe(&back).expect("describe");
    assert_eq!(
        ctl, new_controller,
        "the returning node follows the new controller"
    );
    // Compared side by side: ISRs may still be growing back while we look.
    wait_until(
        "the returning node has identical topics",
        Duration::from_secs(5),
        || metadata(&back).1 == metadata(&bs).1,
    );
}

#[test]
fn a_killed_partition_leader_is_fenced_replaced_and_unfenced_on_return() {
    let mut cluster = Cluster::new(3, &[]);
    let bs1 = start_three(&mut cluster);
    assert_eq!(create_topic(&bs1, "moving", 6, 3), Some(0));
    let (controller, _) = describe(&bs1).expect("describe");
    let victim = (1..=3)
        .find(|b| *b != controller)
        .expect("a non-controller");
    let watcher = cluster.bootstrap(controller);
    let before = metadata(&watcher).1;
    let led: Vec<_> = before
        .iter()
        .filter(|(_, v)| v.0 == victim)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert!(!led.is_empty(), "broker {victim} leads some partitions");

    cluster.node(victim).kill();
    let took = wait_until(
        "the victim fenced and its partitions moved",
        Duration::from_secs(10),
        || {
            let fenced =
                describe(&watcher).is_some_and(|(_, b)| b.iter().any(|x| x.0 == victim && x.3));
            fenced
                && metadata(&watcher)
                    .1
                    .iter()
                    .all(|(_, v)| v.0 != victim && v.0 >= 0 && !v.2.contains(&victim))
        },
    );
    println!("partition leader {victim} killed: fenced and replaced after {took:?}");
    let after = metadata(&watcher).1;
    for (k, v) in &led {
        let now = &after[k];
        assert!(
            v.2.contains(&now.0),
            "{k:?}: new leader {} came from the ISR {:?}",
            now.0,
            v.2
        );
    }

    cluster.node(victim).spawn();
    wait_until("the victim unfenced", Duration::from_secs(15), || {
        all_active(&watcher, 3)
    });
}

#[test]
fn without_a_majority_admin_writes_fail_clearly_and_reads_continue() {
    let mut cluster = Cluster::new(3, &[]);
    let bs1 = start_three(&mut cluster);
    assert_eq!(create_topic(&bs1, "kept", 3, 3), Some(0));
    let before = metadata(&bs1).1;
    cluster.node(2).kill();
    cluster.node(3).kill();

    let started = Instant::now();
    let code = create_topic(&bs1, "refused", 1, 1);
    let took = started.elapsed();
    assert_eq!(code, Some(7), "REQUEST_TIMED_OUT, retriable");
    assert!(took < Duration::from_secs(5), "failed after {took:?}");
    let (_, reads) = metadata(&bs1);
    assert!(
        reads.keys().any(|k| k.0 == "kept"),
        "metadata reads still answer from the last image"
    );

    cluster.node(2).spawn();
    cluster.node(3).spawn();
    wait_until("writes accepted again", Duration::from_secs(20), || {
        create_topic(&bs1, "accepted", 1, 1) == Some(0)
    });
    let after = metadata(&bs1).1;
    for (k, v) in before.iter() {
        assert_eq!(
            after.get(k).map(|a| &a.1),
            Some(&v.1),
            "{k:?}: replicas unchanged"
        );
    }
}

#[test]
fn nodes_with_foreign_state_refuse_to_start() {
    // A voter list that disagrees with the stored quorum.
    let mut cluster = Cluster::new(1, &[]);
    cluster.start(&[1], Duration::ZERO);
    let bs = cluster.bootstrap(1);
    wait_until("the node registered", Duration::from_secs(10), || {
        all_active(&bs, 1)
    });
    cluster.node(1).terminate();
    let wrong = format!(
        "controller.quorum.voters=1@127.0.0.1:{},2@127.0.0.1:1",
        cluster.node(1).controller_port
    );
    cluster.node(1).set(wrong);
    let (status, err) = cluster.node(1).start_expecting_failure();
    assert!(!status.success());
    assert!(err.contains("controller.quorum.voters"), "{err}");

    // A data directory of another node id.
    let mut other = Cluster::new(1, &[]);
    other.start(&[1], Duration::ZERO);
    let bs = other.bootstrap(1);
    wait_until("the node registered", Duration::from_secs(10), || {
        all_active(&bs, 1)
    });
    other.node(1).terminate();
    other.node(1).set("node.id=5".into());
    let cport = other.node(1).controller_port;
    other
        .node(1)
        .set(format!("controller.quorum.voters=5@127.0.0.1:{cport}"));
    let (status, err) = other.node(1).start_expecting_failure();
    assert!(!status.success());
    assert!(err.contains("node.id=1"), "{err}");
}

#[test]
fn a_node_holding_another_clusters_data_refuses_to_join() {
    // Cluster A forms and stops; cluster B forms on the same addresses; A's node 1 data is
    // then offered to B.
    let mut a = Cluster::new(3, &[]);
    a.start(&[1, 2, 3], Duration::from_millis(100));
    let bs = a.bootstrap(1);
    wait_until("cluster A formed", Duration::from_secs(20), || {
        all_active(&bs, 3)
    });
    for id in 1..=3 {
        a.node(id).terminate();
    }
    let mut b = Cluster::new(3, &[]);
    // Same ports as A, fresh data.
    for id in 1..=3 {
        let (port, cport) = (a.node(id).port, a.node(id).controller_port);
        let node = b.node(id);
        node.port = port;
        node.controller_port = cport;
    }
    let voters = (1..=3)
        .map(|i| format!("{i}@127.0.0.1:{}", a.node(i).controller_port))
        .collect::<Vec<_>>()
        .join(",");
    for id in 1..=3 {
        b.node(id).set(format!("controller.quorum.voters={voters}"));
    }
    b.start(&[2, 3], Duration::from_millis(100));
    b.start(&[1], Duration::ZERO);
    let bs = b.bootstrap(2);
    wait_until("cluster B formed", Duration::from_secs(20), || {
        all_active(&bs, 3)
    });
    b.node(1).terminate();
    let (status, err) = a.node(1).start_expecting_failure();
    assert!(!status.success());
    assert!(err.contains("cluster"), "{err}");
    assert!(b.node(2).is_running());
}

#[test]
fn a_lagging_node_catches_up_from_a_snapshot() {
    let mut cluster = Cluster::new(3, &["metadata.log.snapshot.interval.records=20"]);
    let bs1 = start_three(&mut cluster);
    let (controller, _) = describe(&bs1).expect("describe");
    let lagging = (1..=3).find(|b| *b != controller).expect("a follower");
    let bs = cluster.bootstrap(controller);
    cluster.node(lagging).kill();
    wait_until("the node fenced", Duration::from_secs(10), || {
        describe(&bs).is_some_and(|(_, b)| b.iter().any(|x| x.0 == lagging && x.3))
    });
    // Far more records than the 2 kept after each snapshot: the others purge their logs.
    for i in 0..60 {
        assert_eq!(create_topic(&bs, &format!("t{i}"), 1, 1), Some(0));
    }
    cluster.node(lagging).spawn();
    let back = cluster.bootstrap(lagging);
    // Compared side by side with the controller (ISRs may still move as the node returns), and
    // every topic created while it was away is there.
    wait_until(
        "the lagging node caught up",
        Duration::from_secs(20),
        || {
            if !all_active(&back, 3) {
                return false;
            }
            let got = metadata(&back).1;
            (0..60).all(|i| got.contains_key(&(format!("t{i}"), 0))) && got == metadata(&bs).1
        },
    );
}

/// A node wiped and restarted gets the metadata as a snapshot larger than gRPC's default 4 MiB
/// message once it travels as JSON: 3,000 topics with 240-character names.
#[test]
fn a_wiped_node_receives_a_snapshot_larger_than_the_transports_default() {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::{MetadataRequest, MetadataResponse};
    let _quiet = crate::harness::timing_sensitive();
    let mut cluster = Cluster::new(3, &["metadata.log.snapshot.interval.records=20"]);
    let bs1 = start_three(&mut cluster);
    let (controller, _) = describe(&bs1).expect("describe");
    let wiped = (1..=3).find(|b| *b != controller).expect("a follower");
    let bs = cluster.bootstrap(controller);
    cluster.node(wiped).kill();
    std::fs::remove_dir_all(cluster.node(wiped).dir.join("data")).expect("wipe");
    wait_until("the node fenced", Duration::from_secs(10), || {
        describe(&bs).is_some_and(|(_, b)| b.iter().any(|x| x.0 == wiped && x.3))
    });
    // 2,000 long names, auto-created 1,000 per Metadata request (one command each): as the
    // snapshot format before bincode (JSON, bytes as a number array) over 4 MiB, the transport
    // default. (3,000 were used first; with one of three nodes down, the two left creating
    // 3,000 partitions stalled for seconds and lost their quorum in about half the runs, at the
    // session's start as at its end — issue 25's symptom, not this test's subject.)
    let name = |i: usize| format!("{}-{i:04}", "s".repeat(234));
    let mut c = Client::connect(&bs).expect("connect");
    for batch in 0..2 {
        let req = MetadataRequest::default()
            .with_topics(Some(
                (batch * 1000..(batch + 1) * 1000)
                    .map(|i| {
                        MetadataRequestTopic::default()
                            .with_name(Some(TopicName(StrBytes::from_string(name(i)))))
                    })
                    .collect(),
            ))
            .with_allow_auto_topic_creation(true);
        let r: MetadataResponse = c.call(ApiKey::Metadata, 12, &req).expect("metadata");
        assert_eq!(r.topics.len(), 1000);
    }
    // More commands than the snapshot interval, so the others purge their logs (the brokers
    // are still opening 3,000 partitions: a write may time out and is tried again).
    for i in 0..30 {
        wait_until("a topic created", Duration::from_secs(30), || {
            matches!(
                create_topic(&bs, &format!("after-{i}"), 1, 1),
                Some(0) | Some(36)
            )
        });
    }
    cluster.node(wiped).spawn();
    // Every topic's name, as one node's all-topics Metadata answers.
    let names = |bootstrap: &str| {
        crate::scale::layout(bootstrap).map(|l| {
            l.into_keys()
                .map(|(t, _)| t)
                .collect::<std::collections::BTreeSet<String>>()
        })
    };
    let back = cluster.bootstrap(wiped);
    wait_until("the wiped node caught up", Duration::from_secs(60), || {
        names(&back).is_some_and(|got| got.contains(&name(1999)) && got.contains("after-29"))
    });
    assert_eq!(
        names(&back),
        names(&bs),
        "the same topics as the controller"
    );
}

#[test]
fn a_broker_only_node_joins_as_a_learner_and_serves() {
    let mut cluster = Cluster::new(3, &[]);
    let bs1 = start_three(&mut cluster);
    let voters = (1..=3)
        .map(|i| format!("{i}@127.0.0.1:{}", cluster.node(i).controller_port))
        .collect::<Vec<_>>()
        .join(",");
    let mut learner = crate::harness::Broker::new(&["node.id=4", "process.roles=broker"]);
    learner.set(format!("controller.quorum.voters={voters}"));
    learner.spawn();
    wait_until("four active brokers", Duration::from_secs(20), || {
        all_active(&bs1, 4)
    });
    // It receives the metadata log: a topic placed on all four is visible through it.
    assert_eq!(create_topic(&bs1, "wide", 4, 1), Some(0));
    let expected = metadata(&bs1);
    assert!(
        expected.1.values().any(|v| v.0 == 4),
        "the learner leads a partition"
    );
    let bs4 = learner.bootstrap();
    wait_until(
        "the learner's metadata matches",
        Duration::from_secs(10),
        || metadata(&bs4) == metadata(&bs1),
    );
    // It does not vote: the quorum still has three voters.
    let status = strom::tools::cluster_status(&bs4).expect("status");
    let voters_section = status
        .split("voters:")
        .nth(1)
        .and_then(|v| v.split("brokers:").next())
        .expect("voters section");
    let ids: Vec<&str> = voters_section
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(ids, vec!["1", "2", "3"], "{status}");
}

/// A port of the layout already taken (another `strom dev` still running) stops `strom dev`
/// before it starts a node: otherwise the nodes exit on their bind errors while the old
/// cluster answers for them and looks ready.
#[test]
fn strom_dev_refuses_to_start_on_a_port_that_is_taken() {
    // Node 1's controller port (client port + 1) is taken; its client port is free.
    let (_taken, port) = (0..100)
        .find_map(|_| {
            let l = std::net::TcpListener::bind(("127.0.0.1", 0)).ok()?;
            let port = l.local_addr().ok()?.port();
            let client_free = std::net::TcpListener::bind(("127.0.0.1", port - 1)).is_ok();
            client_free.then_some((l, port))
        })
        .expect("a port with a free one below it");
    let data = tempfile::tempdir().expect("tempdir");
    let mut child = strom_dev(1, port - 1, data.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("strom dev");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            crate::harness::signal(child.id() as i32, libc::SIGTERM);
            let _ = child.wait();
            panic!("strom dev kept running with a port of its layout taken");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("stderr");
    assert!(!status.success(), "strom dev started: {stderr}");
    assert!(
        stderr.contains(&format!("controller port 127.0.0.1:{port} is taken")),
        "{stderr}"
    );
    assert!(!data.path().join("node-1").exists(), "a node was started");
}

/// `strom dev` with `nodes` nodes from client port `base`, its data under `data`.
fn strom_dev(nodes: u16, base: u16, data: &std::path::Path) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_strom"));
    command
        .args(["dev", "--nodes", &nodes.to_string()])
        .args(["--base-port", &base.to_string()])
        .args(["--data", &data.display().to_string()]);
    command
}

#[test]
fn strom_dev_runs_a_three_node_cluster_and_stops_on_sigterm() {
    use std::io::{BufRead, BufReader};
    // A base port whose six ports are free, below the ephemeral range.
    let base = (0..400)
        .map(|i| 21_000 + (std::process::id() as u16 % 40) * 100 + i * 1000 % 8000)
        .find(|b| {
            [0u16, 1, 100, 101, 200, 201]
                .iter()
                .all(|o| std::net::TcpListener::bind(("127.0.0.1", b + o)).is_ok())
        })
        .expect("a free port range");
    let data = tempfile::tempdir().expect("tempdir");
    let mut child = strom_dev(3, base, data.path())
        .arg("--clean")
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("strom dev");
    let stdout = child.stdout.take().expect("stdout");
    let mut stdin = child.stdin.take().expect("stdin");
    // If an assertion fails, still stop the three nodes (they would outlive the test).
    struct StopOnPanic(i32);
    impl Drop for StopOnPanic {
        fn drop(&mut self) {
            if std::thread::panicking() {
                crate::harness::signal(self.0, libc::SIGTERM);
            }
        }
    }
    let _guard = StopOnPanic(child.id() as i32);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let ready = loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line.contains("bootstrap servers:") => break line,
            Ok(_) => {}
            Err(_) => panic!("strom dev never reported ready"),
        }
    };
    let expected = format!(
        "127.0.0.1:{},127.0.0.1:{},127.0.0.1:{}",
        base,
        base + 100,
        base + 200
    );
    assert!(ready.ends_with(&expected), "{ready}");
    let bs = format!("127.0.0.1:{base}");
    assert!(all_active(&bs, 3));
    assert_eq!(create_topic(&bs, "dev", 3, 3), Some(0));
    assert!(data.path().join("node-3").exists());
    // Produce through node 1, consume through node 3.
    let p = crate::harness::producer(&bs, &[("acks", "all")]);
    for id in 0..300 {
        crate::harness::send(&p, "dev", id, format!("dev-{id}").as_bytes());
    }
    crate::harness::flush(&p);
    assert_eq!(p.context().acks.lock().expect("lock").len(), 300);
    let got = crate::harness::consume_all(
        &format!("127.0.0.1:{}", base + 200),
        "dev",
        3,
        300,
        Duration::from_secs(30),
    );
    assert_eq!(
        got.len(),
        300,
        "everything produced through node 1 is read through node 3"
    );

    // Failover by hand: a killed node leaves the others running, and comes back on `start`.
    use std::io::Write;
    let expect_line = |what: &str| loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line.contains(what) => break line,
            Ok(_) => {}
            Err(_) => panic!("strom dev never said `{what}`"),
        }
    };
    writeln!(stdin, "kill 2").expect("type");
    expect_line("node 2 killed");
    expect_line("node 2 exited");
    wait_until("two active brokers", Duration::from_secs(20), || {
        describe(&bs).is_some_and(|(_, b)| b.iter().filter(|x| !x.3).count() == 2)
    });
    assert!(
        child.try_wait().expect("wait").is_none(),
        "strom dev kept running"
    );
    writeln!(stdin, "start 2").expect("type");
    expect_line("node 2 started");
    wait_until("node 2 back", Duration::from_secs(30), || {
        all_active(&bs, 3)
    });

    crate::harness::signal(child.id() as i32, libc::SIGTERM);
    let started = Instant::now();
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "strom dev did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    // Every node is gone: its ports are free again.
    for o in [0u16, 100, 200] {
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", base + o)).is_ok(),
            "node on {} still running",
            base + o
        );
    }
}

#[test]
fn health_reports_a_registered_broker_and_refuses_a_dead_one() {
    let mut b = crate::harness::Broker::start(&[]);
    let listeners = format!(
        "listeners=PLAINTEXT://127.0.0.1:{},CONTROLLER://127.0.0.1:{}",
        b.port, b.controller_port
    );
    let health = |listeners: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_strom"))
            .args(["health", "--set", listeners])
            .output()
            .expect("strom health")
    };
    wait_until("healthy", Duration::from_secs(10), || {
        health(&listeners).status.success()
    });
    b.kill();
    let out = health(&listeners);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not serving"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn doctor_explains_an_unreachable_advertised_address() {
    let healthy = crate::harness::Broker::start(&[]);
    let (report, ok) = strom::tools::doctor(&healthy.bootstrap());
    assert!(ok, "{report}");
    assert!(report.contains("reachable"), "{report}");
    // This broker tells clients to come to port 1, where nothing listens.
    let wrong = crate::harness::Broker::start(&["advertised.listeners=PLAINTEXT://127.0.0.1:1"]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strom"))
        .args(["doctor", "--bootstrap", &wrong.bootstrap()])
        .output()
        .expect("strom doctor");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("127.0.0.1:1") && text.contains("connection refused"),
        "{text}"
    );
    assert!(text.contains("advertised.listeners"), "{text}");
}

/// The controller's broker calls (registration, heartbeats, ISR changes, admin writes) must name
/// this cluster once its id is written, and a Raft message naming another cluster is refused.
#[test]
fn controller_calls_that_do_not_name_the_cluster_are_refused() {
    use strom::controller::pb;
    let broker = crate::harness::Broker::start(&[]);
    let addr = format!("http://127.0.0.1:{}", broker.controller_port);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let mut raft = pb::raft_client::RaftClient::connect(addr.clone())
            .await
            .expect("connect");
        let mut controller = pb::controller_client::ControllerClient::connect(addr)
            .await
            .expect("connect");
        let heartbeat = || pb::HeartbeatRequest {
            broker_id: 1,
            incarnation: uuid::Uuid::nil().to_string(),
        };
        // Once the node has written its cluster id, a call without it is refused.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match controller.heartbeat(heartbeat()).await {
                Err(s) if s.code() == tonic::Code::PermissionDenied => break,
                other => assert!(
                    Instant::now() < deadline,
                    "a call naming no cluster kept being taken: {other:?}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut foreign = tonic::Request::new(heartbeat());
        foreign.metadata_mut().insert(
            "strom-cluster-id",
            "another-cluster".parse().expect("value"),
        );
        let denied = controller.heartbeat(foreign).await.expect_err("foreign id");
        assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied}");
        let admin = pb::AdminRequest {
            payload: b"{}".to_vec(),
        };
        let denied = controller.admin(admin).await.expect_err("no cluster id");
        assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied}");
        let vote = pb::RaftRequest {
            cluster_id: "another-cluster".to_string(),
            payload: Vec::new(),
        };
        let reply = raft.vote(vote).await.expect("answered").into_inner();
        assert!(reply.refused.contains("cluster"), "{}", reply.refused);
        // A write to the log naming no cluster is refused before it is even decoded.
        let unnamed = pb::RaftRequest {
            cluster_id: String::new(),
            payload: Vec::new(),
        };
        let reply = raft
            .append_entries(unnamed.clone())
            .await
            .expect("answered")
            .into_inner();
        assert!(
            reply.refused.contains("name the cluster"),
            "{}",
            reply.refused
        );
        let reply = raft
            .install_snapshot(unnamed)
            .await
            .expect("answered")
            .into_inner();
        assert!(
            reply.refused.contains("name the cluster"),
            "{}",
            reply.refused
        );
    });
    // The broker itself names its cluster, so it keeps serving.
    let mut c = Client::connect(&broker.bootstrap()).expect("connect");
    let md: kafka_protocol::messages::MetadataResponse = c
        .call(
            kafka_protocol::messages::ApiKey::Metadata,
            12,
            &kafka_protocol::messages::MetadataRequest::default(),
        )
        .expect("metadata");
    assert_eq!(md.brokers.len(), 1);
}

/// A SIGKILLed broker's connections close with it: the controller sees its liveness stream end
/// and fences it long before the session timeout (30 s here, so only that path can do it).
#[test]
fn a_killed_brokers_closed_connection_fences_it_before_its_session_ends() {
    let mut cluster = Cluster::new(3, &["broker.session.timeout.ms=30000"]);
    let bs1 = start_three(&mut cluster);
    let (controller, _) = describe(&bs1).expect("describe");
    let victim = (1..=3)
        .find(|b| *b != controller)
        .expect("a non-controller");
    let watcher = cluster.bootstrap(controller);
    // Let every broker open its stream (they do once registered).
    std::thread::sleep(Duration::from_millis(500));
    cluster.node(victim).kill();
    let took = wait_until("the killed broker fenced", Duration::from_secs(10), || {
        describe(&watcher).is_some_and(|(_, b)| b.iter().any(|x| x.0 == victim && x.3))
    });
    println!("broker {victim} SIGKILLed: fenced after {took:?} (session timeout 30 s)");
    // A live broker whose stream is open is not touched.
    let (_, brokers) = describe(&watcher).expect("describe");
    assert!(brokers.iter().filter(|x| x.0 != victim).all(|x| !x.3));
    cluster.node(victim).spawn();
    wait_until(
        "the broker back and unfenced",
        Duration::from_secs(15),
        || all_active(&watcher, 3),
    );
}

/// Killing the controller's node: the new controller does not give the dead broker a fresh
/// session (30 s here) — it expects every live broker to open its liveness stream to it, and
/// fences the one whose port refuses connections within about a second of taking over.
#[test]
fn a_new_controller_fences_the_broker_that_died_with_the_old_one_at_once() {
    let mut cluster = Cluster::new(3, &["broker.session.timeout.ms=30000"]);
    let bs1 = start_three(&mut cluster);
    let (controller, _) = describe(&bs1).expect("describe");
    let watcher = cluster.bootstrap((1..=3).find(|b| *b != controller).expect("another"));
    std::thread::sleep(Duration::from_millis(500));
    cluster.node(controller).kill();
    let took = wait_until(
        "the old controller's broker fenced",
        Duration::from_secs(10),
        || {
            describe(&watcher).is_some_and(|(c, b)| {
                c > 0 && c != controller && b.iter().any(|x| x.0 == controller && x.3)
            })
        },
    );
    println!("controller {controller} SIGKILLed: fenced by its successor after {took:?}");
    let (_, brokers) = describe(&watcher).expect("describe");
    assert!(
        brokers.iter().filter(|x| x.0 != controller).all(|x| !x.3),
        "live brokers kept: {brokers:?}"
    );
    cluster.node(controller).spawn();
    wait_until(
        "the broker back and unfenced",
        Duration::from_secs(15),
        || all_active(&watcher, 3),
    );
}

/// One acks=1 produce of a one-record batch over a raw connection: its error code.
fn produce_acks_1(c: &mut Client, topic: &str, partition: i32) -> Option<i16> {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
    let batch = crate::harness::one_record_batch(
        None,
        b"leased",
        0,
        kafka_protocol::records::Compression::None,
    );
    let req = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(1000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch))])]);
    let r: ProduceResponse = c.call(ApiKey::Produce, 9, &req).ok()?;
    Some(r.responses[0].partition_responses[0].error_code)
}

/// A leader cut off from the metadata quorum (both other nodes stopped: it reaches neither the
/// controller nor a majority, and hears only silence) stops acknowledging acks=1 produce within
/// its lease — before the session timeout lets the controller elect another leader — and takes
/// writes again once the quorum answers it.
#[test]
fn a_leader_cut_off_from_the_quorum_stops_acknowledging_within_its_lease() {
    let _quiet = crate::harness::timing_sensitive();
    let mut cluster = Cluster::new(3, &[]);
    let bs1 = start_three(&mut cluster);
    assert_eq!(create_topic(&bs1, "leased", 3, 1), Some(0));
    let led = |bs: &str| {
        metadata(bs)
            .1
            .into_iter()
            .find(|((t, _), (leader, ..))| t == "leased" && *leader == 1)
            .map(|((_, p), _)| p)
    };
    let mut partition = None;
    wait_until("a partition led by node 1", Duration::from_secs(10), || {
        partition = led(&bs1);
        partition.is_some()
    });
    let partition = partition.expect("partition");
    let mut raw = Client::connect(&bs1).expect("connect");
    wait_until("acks=1 accepted", Duration::from_secs(10), || {
        produce_acks_1(&mut raw, "leased", partition) == Some(0)
    });

    let others: Vec<i32> = [2, 3]
        .iter()
        .map(|id| cluster.node(*id).pid().expect("running") as i32)
        .collect();
    for pid in &others {
        crate::harness::signal(*pid, libc::SIGSTOP);
    }
    let cut = Instant::now();
    let refused = loop {
        let code = produce_acks_1(&mut raw, "leased", partition);
        if code == Some(6) {
            break cut.elapsed();
        }
        assert_eq!(code, Some(0), "acks=1 answers");
        assert!(
            cut.elapsed() < Duration::from_secs(5),
            "still acknowledging {:?} after the cut",
            cut.elapsed()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    println!("node 1 cut off: acks=1 refused (NOT_LEADER_OR_FOLLOWER) after {refused:?}");
    // The lease is 1.5 s from the last answered heartbeat's sending; the controller could elect
    // a new leader no sooner than the 2 s session timeout.
    assert!(
        refused < Duration::from_millis(2000),
        "refused only after {refused:?}"
    );
    // A real client gets no acknowledgement either, only an error.
    let p = crate::harness::producer(&bs1, &[("acks", "1"), ("message.timeout.ms", "2000")]);
    crate::harness::send_to(&p, "leased", Some(partition), 1, b"never acknowledged");
    crate::harness::flush(&p);
    assert!(p.context().acks.lock().expect("lock").is_empty());
    assert_eq!(p.context().errors.lock().expect("lock").len(), 1);

    for pid in &others {
        crate::harness::signal(*pid, libc::SIGCONT);
    }
    wait_until("acks=1 accepted again", Duration::from_secs(15), || {
        produce_acks_1(&mut raw, "leased", partition) == Some(0)
    });
}

/// A client on a client listener that claims to be a stalled follower (its `replica_id`)
/// neither keeps it in the ISR nor moves the high watermark for it: its fetches are refused and
/// the follower leaves the ISR after replica.lag.time.max.ms, as if nobody had spoken for it.
/// (The follower is paused, not killed: a killed broker is fenced at once by its closed
/// liveness stream, which would hide what the spoofer can do.)
#[test]
fn a_client_spoofing_a_stalled_followers_replica_id_cannot_keep_it_in_the_isr() {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse};
    let _timing = crate::harness::timing_sensitive();
    let mut cluster = Cluster::new(
        3,
        &[
            "replica.lag.time.max.ms=2000",
            "broker.session.timeout.ms=30000",
        ],
    );
    let mut external = BTreeMap::new();
    for id in 1..=3 {
        let ext = crate::harness::free_port();
        external.insert(id, ext);
        let node = cluster.node(id);
        let (port, controller) = (node.port, node.controller_port);
        for s in [
            format!("listeners=INTERNAL://127.0.0.1:{port},EXTERNAL://127.0.0.1:{ext},CONTROLLER://127.0.0.1:{controller}"),
            "listener.security.protocol.map=INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT".into(),
            "inter.broker.listener.name=INTERNAL".into(),
        ] {
            node.set(s);
        }
    }
    let bs1 = start_three(&mut cluster);
    assert_eq!(create_topic(&bs1, "spoofed", 1, 3), Some(0));
    let key = ("spoofed".to_string(), 0);
    wait_until("all three in the ISR", Duration::from_secs(20), || {
        metadata(&bs1)
            .1
            .get(&key)
            .is_some_and(|(_, _, isr)| isr.len() == 3)
    });
    let leader = metadata(&bs1).1[&key].0;
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    let pid = cluster.node(follower).pid().expect("running") as i32;
    crate::harness::signal(pid, libc::SIGSTOP);
    let at = cluster.bootstrap(leader);
    let mut leader_client = Client::connect(&at).expect("connect");
    assert_eq!(produce_acks_1(&mut leader_client, "spoofed", 0), Some(0));

    // The spoofer fetches as the stalled follower at the log end, on the leader's client
    // listener: believed, it would count as caught up and stay in the ISR.
    let spoof = FetchRequest::default()
        .with_replica_id(BrokerId(follower))
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(kafka_protocol::messages::TopicName(StrBytes::from_string(
                "spoofed".into(),
            )))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(1)
                .with_partition_max_bytes(1 << 20)])]);
    let mut c = Client::connect(&format!("127.0.0.1:{}", external[&leader])).expect("connect");
    let started = Instant::now();
    let mut refused = 0;
    let shrunk = loop {
        let r: FetchResponse = c.call(ApiKey::Fetch, 12, &spoof).expect("fetch answer");
        let code = r.responses[0].partitions[0].error_code;
        assert_eq!(code, 29, "a replica fetch on a client listener is refused");
        refused += 1;
        let isr = metadata(&at).1[&key].2.clone();
        if !isr.contains(&follower) {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the stalled follower is still in the ISR {isr:?} after 15 s of spoofed fetches"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    crate::harness::signal(pid, libc::SIGCONT);
    println!(
        "{refused} spoofed fetches refused; follower {follower} left the ISR after {shrunk:?}"
    );
}

/// A SIGTERM while start-up still waits for the quorum (one voter of three) ends the process
/// at once: every background task, the log cleaner's threads too, stops with the runtime.
#[test]
fn a_sigterm_during_start_up_ends_the_process() {
    let mut cluster = Cluster::new(3, &[]);
    let node = cluster.node(1);
    node.spawn();
    // Inside the wait for a registration that cannot happen without a quorum.
    std::thread::sleep(Duration::from_millis(1_000));
    let pid = node.pid().expect("running") as i32;
    crate::harness::signal(pid, libc::SIGTERM);
    let mut status = None;
    wait_until_quietly(Duration::from_secs(15), || {
        status = node.exited();
        status.is_some()
    });
    node.kill();
    let status = status.expect("strom still running 15 s after SIGTERM during start-up");
    assert!(status.success(), "{status}");
}

/// Polls `f` every 50 ms until it holds or `timeout` passes; whether it held.
fn wait_until_quietly(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// (partition, leader, ISR size) of `topic` as the broker at `addr` answers Metadata.
fn leaders_seen_by(c: &mut Client, topic: &str) -> Option<Vec<(i32, i32, usize)>> {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::{MetadataRequest, MetadataResponse};
    let req = MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.into()))))]));
    let md: MetadataResponse = c.call(ApiKey::Metadata, 12, &req).ok()?;
    Some(
        md.topics
            .first()?
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.leader_id.0, p.isr_nodes.len()))
            .collect(),
    )
}

/// A follower whose fetch connection to its leader ends with the leader's process answers
/// Metadata naming no leader for that leader's partitions at once, not the dead broker until
/// the controller has moved them (which takes at least its 100 ms confirmation): a client that
/// lost its connection and asks then retries soon instead of waiting on the dead one.
#[test]
fn a_follower_names_no_leader_for_a_dead_leaders_partitions_before_the_controller_moves_them() {
    let _quiet = crate::harness::timing_sensitive();
    let mut cluster = Cluster::new(3, &[]);
    let bs1 = start_three(&mut cluster);
    assert_eq!(create_topic(&bs1, "gone", 3, 3), Some(0));
    let (controller, _) = describe(&bs1).expect("describe");
    // The controller's node follows the victim's partition: it answers.
    let mut watcher = Client::connect(&cluster.bootstrap(controller)).expect("connect");
    wait_until("every replica in sync", Duration::from_secs(20), || {
        leaders_seen_by(&mut watcher, "gone")
            .is_some_and(|ps| ps.len() == 3 && ps.iter().all(|p| p.1 > 0 && p.2 == 3))
    });
    let (partition, victim) = leaders_seen_by(&mut watcher, "gone")
        .expect("metadata")
        .into_iter()
        .find(|p| p.1 != controller)
        .map(|p| (p.0, p.1))
        .expect("a partition led by a broker that is not the controller");
    // Followers fetch continuously once in sync; give them a round.
    std::thread::sleep(Duration::from_millis(300));
    cluster.node(victim).kill();
    let killed = Instant::now();
    let mut answers = Vec::new();
    let replaced = loop {
        let seen = leaders_seen_by(&mut watcher, "gone")
            .and_then(|ps| ps.into_iter().find(|p| p.0 == partition))
            .map(|p| p.1);
        let at = killed.elapsed();
        answers.push((at.as_millis(), seen));
        if seen.is_some_and(|l| l > 0 && l != victim) {
            break true;
        }
        if at > Duration::from_secs(10) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    println!("partition {partition}, leader {victim} killed; answers (ms, leader): {answers:?}");
    assert!(replaced, "no new leader within 10 s: {answers:?}");
    let late: Vec<_> = answers
        .iter()
        .filter(|(ms, leader)| *ms >= 80 && *leader == Some(victim))
        .collect();
    assert!(
        late.is_empty(),
        "the dead broker was still named leader 80 ms after its death: {late:?}"
    );
}

/// A leader sent SIGTERM moves its leadership away and then keeps answering for
/// `controlled.shutdown.linger.ms` (250 ms) before it closes its connections: a client writing
/// to it hears NOT_LEADER_OR_FOLLOWER for a while — librdkafka moves on that answer — instead of
/// losing the connection as soon as the leadership has moved.
#[test]
fn a_stopping_leader_answers_not_leader_for_a_while_before_it_closes_connections() {
    let _quiet = crate::harness::timing_sensitive();
    let mut cluster = Cluster::new(3, &[]);
    let bs1 = start_three(&mut cluster);
    assert_eq!(create_topic(&bs1, "linger", 1, 3), Some(0));
    let mut watcher = Client::connect(&bs1).expect("connect");
    wait_until("every replica in sync", Duration::from_secs(20), || {
        leaders_seen_by(&mut watcher, "linger")
            .is_some_and(|ps| ps.len() == 1 && ps[0].1 > 0 && ps[0].2 == 3)
    });
    let victim = leaders_seen_by(&mut watcher, "linger").expect("metadata")[0].1;
    let mut c = Client::connect(&cluster.bootstrap(victim)).expect("connect to the leader");
    assert_eq!(
        produce_acks_1(&mut c, "linger", 0),
        Some(0),
        "the leader takes writes"
    );
    let pid = cluster.node(victim).pid().expect("running") as i32;
    crate::harness::signal(pid, libc::SIGTERM);
    let stopped = Instant::now();
    let mut answers = Vec::new();
    loop {
        let code = produce_acks_1(&mut c, "linger", 0);
        answers.push((stopped.elapsed().as_millis(), code));
        if code.is_none() || stopped.elapsed() > Duration::from_secs(10) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    cluster.node(victim).terminate();
    let refused: Vec<u128> = answers
        .iter()
        .filter(|(_, code)| *code == Some(6))
        .map(|(ms, _)| *ms)
        .collect();
    let span = refused.last().zip(refused.first()).map(|(l, f)| l - f);
    println!("SIGTERM to leader {victim}; answers (ms, error): {answers:?}");
    assert!(
        span.is_some_and(|s| s >= 150),
        "NOT_LEADER_OR_FOLLOWER answered for {span:?} ms before the connection closed: {answers:?}"
    );
}
