//! The HTTP admin listener: `/metrics` parses as Prometheus text, its per-topic counters match
//! what a librdkafka producer and consumer moved, under-replicated partitions rise when a
//! follower dies and fall when it returns; `/health` and `/ready` answer.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::producer::Producer;

use crate::harness::{consume_all, flush, producer, send, wait_until, Broker, Cluster};

/// GET `path` from the broker's admin listener: (status code, body).
pub(crate) fn get(b: &Broker, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", b.admin_port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

/// Parses Prometheus text format strictly: HELP and TYPE before each family's samples, names
/// and labels well-formed, values numbers. Returns `name{labels}` → value.
fn parse(text: &str) -> BTreeMap<String, f64> {
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars().enumerate().all(|(i, c)| {
                c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
            })
    };
    let mut typed = BTreeSet::new();
    let mut histograms = BTreeSet::new();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or_default();
            assert!(name_ok(name), "HELP name: {line}");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let (name, kind) = (parts.next().unwrap_or_default(), parts.next());
            assert!(name_ok(name), "TYPE name: {line}");
            assert!(
                matches!(kind, Some("counter" | "gauge" | "histogram")),
                "{line}"
            );
            if kind == Some("histogram") {
                histograms.insert(name.to_string());
            }
            assert!(
                !name.ends_with("_total") || kind == Some("counter"),
                "{line}"
            );
            typed.insert(name.to_string());
        } else {
            let (series, value) = line.rsplit_once(' ').expect("name value");
            let name = series.split('{').next().unwrap_or_default();
            // A histogram's samples are its name with _bucket, _sum or _count.
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| {
                    name.strip_suffix(suffix)
                        .filter(|base| histograms.contains(*base))
                })
                .unwrap_or(name);
            assert!(typed.contains(family), "a sample before its TYPE: {line}");
            assert!(
                !series.contains("_bucket{") || series.contains("le=\""),
                "a bucket without le: {line}"
            );
            if let Some(labels) = series.strip_prefix(name) {
                if !labels.is_empty() {
                    let inner = labels
                        .strip_prefix('{')
                        .and_then(|l| l.strip_suffix('}'))
                        .expect("labels in braces");
                    for pair in inner.split(',') {
                        let (k, v) = pair.split_once('=').expect("label=value");
                        assert!(name_ok(k), "{line}");
                        assert!(v.starts_with('"') && v.ends_with('"'), "{line}");
                    }
                }
            }
            let v: f64 = value.parse().expect("a number");
            out.insert(series.to_string(), v);
        }
    }
    out
}

pub(crate) fn metric(b: &Broker, series: &str) -> Option<f64> {
    let (code, body) = get(b, "/metrics")?;
    assert_eq!(code, 200);
    parse(&body).get(series).copied()
}

#[test]
fn metrics_parse_and_count_what_clients_moved() {
    let b = Broker::start(&[]);
    let boot = b.bootstrap();
    wait_until("the admin listener", Duration::from_secs(10), || {
        get(&b, "/health").is_some_and(|r| r.0 == 200)
    });
    wait_until("ready", Duration::from_secs(10), || {
        get(&b, "/ready").is_some_and(|r| r.0 == 200)
    });
    assert_eq!(get(&b, "/nope").map(|r| r.0), Some(404));

    let p = producer(&boot, &[("acks", "all")]);
    let payload = vec![b'x'; 100];
    for i in 0..1000 {
        send(&p, "m", i, &payload);
    }
    flush(&p);
    assert_eq!(p.context().acks.lock().expect("lock").len(), 1000);
    let got = consume_all(&boot, "m", 1, 1000, Duration::from_secs(20));
    assert_eq!(got.len(), 1000);

    let (code, body) = get(&b, "/metrics").expect("metrics");
    assert_eq!(code, 200);
    let m = parse(&body);
    assert_eq!(m["strom_topic_records_in_total{topic=\"m\"}"], 1000.0);
    let bytes_in = m["strom_topic_bytes_in_total{topic=\"m\"}"];
    // 100 KB of values, plus each record's few bytes of framing and each batch's header.
    assert!(
        (100_000.0..=140_000.0).contains(&bytes_in),
        "bytes in {bytes_in}"
    );
    let bytes_out = m["strom_topic_bytes_out_total{topic=\"m\"}"];
    assert!(
        bytes_out >= bytes_in && bytes_out <= 2.0 * bytes_in,
        "bytes out {bytes_out}, in {bytes_in}"
    );
    assert!(m["strom_partition_log_size_bytes{topic=\"m\",partition=\"0\"}"] >= bytes_in);
    assert_eq!(m["strom_controller_active"], 1.0);
    assert_eq!(m["strom_cluster_brokers_live"], 1.0);
    assert!(m["strom_partitions_led"] >= 1.0);
    assert!(m["strom_connections"] >= 1.0);
    assert!(m["strom_listener_connections{listener=\"PLAINTEXT\"}"] >= 1.0);
    // Every request is counted and timed: the handle histogram's count is the request count,
    // its buckets never fall, and +Inf holds them all.
    let produced = m["strom_requests_total{api=\"Produce\"}"];
    assert!(produced >= 1.0, "{produced}");
    for phase in ["queue", "handle", "send"] {
        let family = format!("strom_request_{phase}_seconds");
        assert_eq!(
            m[&format!("{family}_count{{api=\"Produce\"}}")],
            produced,
            "{phase}"
        );
        let buckets: Vec<f64> = m
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{family}_bucket{{api=\"Fetch\",")))
            .map(|(_, v)| *v)
            .collect();
        assert_eq!(buckets.len(), 15, "{phase}: {buckets:?}");
        let inf = m[&format!("{family}_bucket{{api=\"Fetch\",le=\"+Inf\"}}")];
        assert!(buckets.iter().all(|b| *b <= inf), "{phase}: {buckets:?}");
        assert_eq!(inf, m[&format!("{family}_count{{api=\"Fetch\"}}")]);
    }
    // The consumer's record bytes went one way or the other.
    let fetched = m["strom_fetch_bytes_total{path=\"zero_copy\"}"]
        + m["strom_fetch_bytes_total{path=\"copied\"}"];
    assert_eq!(fetched, bytes_out);
    assert_eq!(m["strom_purgatory_size{purgatory=\"watermark\"}"], 0.0);
    assert_eq!(m["strom_raft_apply_lag"], 0.0);
    assert!(m["strom_raft_last_log_index"] >= m["strom_raft_applied_index"]);

    // A group that committed 600 of the 1,000 records lags by 400.
    let c = crate::harness::consumer(&boot, &[("group.id", "lagging")]);
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset("m", 0, rdkafka::Offset::Offset(600))
        .expect("tpl");
    c.commit(&tpl, rdkafka::consumer::CommitMode::Sync)
        .expect("commit");
    let m = parse(&get(&b, "/metrics").expect("metrics").1);
    assert_eq!(
        m.get("strom_group_lag_records{group=\"lagging\",topic=\"m\",partition=\"0\"}"),
        Some(&400.0),
        "{m:?}"
    );
    assert_eq!(m.get("strom_groups{state=\"Empty\"}"), Some(&1.0));
}

#[test]
fn under_replicated_partitions_rise_when_a_follower_dies_and_fall_when_it_returns() {
    // A dead follower leaves the ISR once it lags this long.
    let mut cluster = Cluster::new(3, &["replica.lag.time.max.ms=2000"]);
    let boot = crate::cluster::start_three(&mut cluster);
    let p = producer(&boot, &[("acks", "all")]);
    let admin = crate::harness::consumer(&boot, &[]);
    // A three-replica topic (auto-created ones have one replica).
    let mut c = strom::tools::Client::connect(&boot).expect("connect");
    let req = kafka_protocol::messages::CreateTopicsRequest::default().with_topics(vec![
        kafka_protocol::messages::create_topics_request::CreatableTopic::default()
            .with_name(kafka_protocol::messages::TopicName(
                kafka_protocol::protocol::StrBytes::from_static_str("r3"),
            ))
            .with_num_partitions(1)
            .with_replication_factor(3),
    ]);
    let r: kafka_protocol::messages::CreateTopicsResponse = c
        .call(kafka_protocol::messages::ApiKey::CreateTopics, 7, &req)
        .expect("create");
    assert_eq!(r.topics[0].error_code, 0);
    send(&p, "r3", 1, b"x");
    flush(&p);
    let leader = admin
        .fetch_metadata(Some("r3"), Duration::from_secs(10))
        .expect("metadata")
        .topics()[0]
        .partitions()[0]
        .leader();
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    let under =
        |cluster: &mut Cluster| metric(cluster.node(leader), "strom_partitions_under_replicated");
    wait_until("a full ISR", Duration::from_secs(20), || {
        under(&mut cluster) == Some(0.0)
    });
    cluster.node(follower).kill();
    // As in Kafka, a follower at the leader's log end is in sync however long ago it fetched:
    // the partition must move on for the dead one to fall behind.
    let leader_producer = producer(&cluster.bootstrap(leader), &[("acks", "1")]);
    let mut n = 2;
    wait_until(
        "the partition under-replicated",
        Duration::from_secs(30),
        || {
            n += 1;
            send(&leader_producer, "r3", n, b"x");
            flush(&leader_producer);
            // r3, and any __consumer_offsets partition it leads (also three replicas).
            under(&mut cluster).is_some_and(|u| u >= 1.0)
        },
    );
    cluster.node(follower).spawn();
    wait_until("the ISR whole again", Duration::from_secs(30), || {
        under(&mut cluster) == Some(0.0)
    });
    // The leader counted the follower leaving the ISR and coming back.
    let node = cluster.node(leader);
    assert!(metric(node, "strom_isr_shrinks_total").unwrap_or(0.0) >= 1.0);
    assert!(metric(node, "strom_isr_expands_total").unwrap_or(0.0) >= 1.0);
}
