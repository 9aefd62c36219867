//! Hostile input, generated: for every advertised (API key, version), frames with random bodies
//! and randomly corrupted copies of valid requests (records, group joins, fetches), from a
//! fixed seed and in a bounded number. Each must be answered or the connection closed; the
//! broker must never panic (its stderr is read) and must keep serving everyone else.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::{Encodable, StrBytes};
use strom::fuzz::Rng;
use strom::protocol::SUPPORTED;

use crate::harness::{free_port, Raw};

/// A connection that gives up on an answer after 1 s (a corrupted long poll may ask to wait
/// for days): the test then moves on over a new connection.
fn connect(port: u16) -> Raw {
    let raw = Raw::connect(port);
    raw.stream
        .set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    raw
}

/// A frame: a valid request header for (key, version), then `body`.
fn frame(key: ApiKey, version: i16, corr: i32, body: &[u8]) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(corr)
        .with_client_id(Some(StrBytes::from_static_str("fuzz")));
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    header
        .encode(&mut buf, key.request_header_version(version))
        .expect("header");
    buf.put_slice(body);
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    buf.to_vec()
}

/// Valid bodies to corrupt: a produce with a record batch, a fetch, a metadata request, a
/// group join, encoded at one version each.
fn seeds() -> Vec<(ApiKey, i16, Vec<u8>)> {
    use kafka_protocol::messages::*;
    fn enc<R: Encodable>(r: &R, v: i16) -> Vec<u8> {
        let mut b = BytesMut::new();
        r.encode(&mut b, v).expect("seed");
        b.to_vec()
    }
    let name = || TopicName(StrBytes::from_static_str("fuzzed"));
    let records = crate::harness::one_record_batch(
        Some(b"key"),
        b"value",
        1_000,
        kafka_protocol::records::Compression::Gzip,
    );
    let produce = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(1000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(name())
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(records)),
            ])]);
    let fetch = FetchRequest::default()
        .with_max_wait_ms(10)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(name())
            .with_partitions(vec![
                fetch_request::FetchPartition::default().with_partition_max_bytes(1 << 20)
            ])]);
    let metadata = MetadataRequest::default().with_topics(Some(vec![
        metadata_request::MetadataRequestTopic::default().with_name(Some(name())),
    ]));
    let join = JoinGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("fuzz-group")))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
        )
        .with_name(StrBytes::from_static_str("range"))
        .with_metadata(bytes::Bytes::from_static(b"\0\0\0\0\0\x01\0\x06fuzzed"))]);
    vec![
        (ApiKey::Produce, 9, enc(&produce, 9)),
        (ApiKey::Fetch, 12, enc(&fetch, 12)),
        (ApiKey::Metadata, 12, enc(&metadata, 12)),
        (ApiKey::JoinGroup, 7, enc(&join, 7)),
    ]
}

#[test]
fn random_and_corrupted_requests_never_panic_the_broker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (port, controller) = (free_port(), free_port());
    let stderr_path = dir.path().join("stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_strom"))
        .arg("serve")
        .args([
            "--set",
            &format!("listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}"),
            "--set",
            &format!("log.dirs={}", dir.path().join("data").display()),
            "--set",
            "offsets.topic.num.partitions=1",
            "--set",
            "group.initial.rebalance.delay.ms=0",
        ])
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
        .spawn()
        .expect("spawn strom");
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "strom did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let mut rng = Rng::new(0x5eed_1234_abcd_0042);
    let seeds = seeds();
    let (mut sent, mut answered) = (0, 0);
    let mut raw = connect(port);
    // Random bodies at every advertised (key, version).
    for (key, min, max) in SUPPORTED {
        for v in *min..=*max {
            for _ in 0..6 {
                let len = rng.below(64);
                let body: Vec<u8> = (0..len).map(|_| rng.word() as u8).collect();
                raw.send_raw(&frame(*key, v, sent, &body));
                sent += 1;
                match raw.read_frame() {
                    Some(_) => answered += 1,
                    None => raw = connect(port),
                }
            }
        }
    }
    // Corrupted copies of valid requests: flip, insert or cut bytes.
    for round in 0..1500 {
        let (key, v, body) = &seeds[round % seeds.len()];
        let body = rng.mutate(body.clone());
        raw.send_raw(&frame(*key, *v, sent, &body));
        sent += 1;
        match raw.read_frame() {
            Some(_) => answered += 1,
            None => raw = connect(port),
        }
    }

    eprintln!("fuzz: {sent} frames, {answered} answered, the rest closed their connection");
    // Still serving a well-behaved client.
    let mut fresh = Raw::connect(port);
    let mut body = BytesMut::new();
    kafka_protocol::messages::ApiVersionsRequest::default()
        .encode(&mut body, 3)
        .expect("encode");
    fresh.send_raw(&frame(ApiKey::ApiVersions, 3, -1, &body));
    let answered = fresh.read_frame().is_some();
    let alive = child.try_wait().expect("wait").is_none();
    let _ = child.kill();
    let _ = child.wait();
    let mut stderr = String::new();
    std::fs::File::open(&stderr_path)
        .and_then(|mut f| f.read_to_string(&mut stderr))
        .expect("stderr");
    assert!(alive, "the broker exited during the fuzzing: {stderr}");
    assert!(answered, "the broker stopped answering after {sent} frames");
    assert!(
        !stderr.contains("panicked"),
        "a request made the broker panic ({sent} frames sent):\n{stderr}"
    );
}
