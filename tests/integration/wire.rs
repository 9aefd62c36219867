//! The wire protocol by hand-made frames: malformed and hostile input, each answered with the right Kafka error or by closing that one
//! connection, while the broker keeps serving everyone else. Frames are built by hand.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, FetchRequest, FetchResponse, MetadataRequest,
    MetadataResponse, ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::Compression;

use crate::harness::{Broker, Raw};

/// One uncompressed record stamped 1,000.
fn batch(value: &[u8]) -> Bytes {
    crate::harness::one_record_batch(None, value, 1_000, Compression::None)
}

fn frame<R: Encodable>(key: ApiKey, version: i16, corr: i32, body: &R) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(corr)
        .with_client_id(Some(StrBytes::from_static_str("raw-test")));
    let hv = key.request_header_version(version);
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    header.encode(&mut buf, hv).expect("header");
    body.encode(&mut buf, version).expect("body");
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    buf.to_vec()
}

fn response<R: Decodable>(key: ApiKey, version: i16, bytes: Vec<u8>) -> (i32, R) {
    let mut b = Bytes::from(bytes);
    let header = ResponseHeader::decode(&mut b, key.response_header_version(version))
        .expect("response header");
    (
        header.correlation_id,
        R::decode(&mut b, version).expect("response body"),
    )
}

/// The broker still answers a fresh client.
fn still_serving(port: u16) {
    let mut raw = Raw::connect(port);
    raw.send_raw(&frame(
        ApiKey::ApiVersions,
        3,
        1,
        &ApiVersionsRequest::default(),
    ));
    let (corr, resp): (i32, ApiVersionsResponse) =
        response(ApiKey::ApiVersions, 3, raw.read_frame().expect("answer"));
    assert_eq!(corr, 1);
    assert_eq!(resp.error_code, 0);
}

fn produce(topic: &str, records: Bytes, acks: i16) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])])
}

fn produce_code(raw: &mut Raw, corr: i32, req: &ProduceRequest) -> (i16, i64) {
    raw.send_raw(&frame(ApiKey::Produce, 9, corr, req));
    let (c, resp): (i32, ProduceResponse) = response(
        ApiKey::Produce,
        9,
        raw.read_frame().expect("produce answer"),
    );
    assert_eq!(c, corr);
    let p = &resp.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

fn metadata(raw: &mut Raw, corr: i32, topic: &str, auto_create: bool) -> MetadataResponse {
    let req = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default()
            .with_name(Some(TopicName(StrBytes::from_string(topic.into()))))]))
        .with_allow_auto_topic_creation(auto_create);
    raw.send_raw(&frame(ApiKey::Metadata, 12, corr, &req));
    response(
        ApiKey::Metadata,
        12,
        raw.read_frame().expect("metadata answer"),
    )
    .1
}

fn fetch(topic: &str, offset: i64, max_wait_ms: i32) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.into())))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])])
}

#[test]
fn oversized_truncated_random_and_unknown_frames_close_only_that_connection() {
    let broker = Broker::start(&["socket.request.max.bytes=4096"]);
    // A frame over socket.request.max.bytes.
    let mut raw = Raw::connect(broker.port);
    raw.send_raw(&8192i32.to_be_bytes());
    raw.send_raw(&[0u8; 64]);
    assert!(raw.is_closed(), "oversized frame closes the connection");
    // A negative size.
    let mut raw = Raw::connect(broker.port);
    raw.send_raw(&(-5i32).to_be_bytes());
    assert!(raw.is_closed());
    // A truncated frame: the client gives up half way.
    let mut raw = Raw::connect(broker.port);
    raw.send_raw(&100i32.to_be_bytes());
    raw.send_raw(&[0, 18, 0, 3, 0, 0]);
    raw.stream
        .shutdown(std::net::Shutdown::Write)
        .expect("shutdown");
    assert!(raw.is_closed(), "truncated frame closes the connection");
    // An unknown API key.
    let mut raw = Raw::connect(broker.port);
    let mut f = frame(ApiKey::ApiVersions, 3, 7, &ApiVersionsRequest::default());
    f[4..6].copy_from_slice(&9999i16.to_be_bytes());
    raw.send_raw(&f);
    assert!(raw.is_closed(), "unknown API key closes the connection");
    // Random bytes, many times: never an answer that is not a frame, never a dead broker.
    let mut seed = 0x9e3779b97f4a7c15u64;
    for round in 0..200 {
        let mut raw = Raw::connect(broker.port);
        let mut junk = Vec::new();
        let len = 8 + (round * 37) % 600;
        for _ in 0..len {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            junk.push(seed as u8);
        }
        // Half the rounds frame the junk properly with a real API key, so the decoders see it.
        if round % 2 == 0 {
            let key = [0i16, 1, 2, 3, 18, 19, 20, 32, 37, 60][round % 10];
            junk[0..2].copy_from_slice(&key.to_be_bytes());
            junk[2..4].copy_from_slice(&((round % 8) as i16).to_be_bytes());
            let mut framed = (junk.len() as i32).to_be_bytes().to_vec();
            framed.extend(&junk);
            junk = framed;
        }
        raw.send_raw(&junk);
        let _ = raw.stream.shutdown(std::net::Shutdown::Write);
        while raw.read_frame().is_some() {}
    }
    still_serving(broker.port);
}

#[test]
fn hostile_array_lengths_do_not_take_the_broker_down() {
    let broker = Broker::start(&[]);
    // Metadata v12 (flexible): a compact array claiming four billion topics, in a 14-byte frame.
    let mut raw = Raw::connect(broker.port);
    let mut body = vec![0, 3, 0, 12, 0, 0, 0, 1, 0xff, 0xff, 0];
    body.extend([0xff, 0xff, 0xff, 0xff, 0x0f]);
    let mut f = (body.len() as i32).to_be_bytes().to_vec();
    f.extend(body);
    raw.send_raw(&f);
    assert!(raw.is_closed());
    // Produce v3 (not flexible): an int32 array length of 2^31-1 topics.
    let mut raw = Raw::connect(broker.port);
    let mut body = vec![0, 0, 0, 3, 0, 0, 0, 2, 0xff, 0xff];
    body.extend([0xff, 0xff, 0, 1, 0, 0, 0x13, 0x88]); // transactional id null, acks 1, timeout
    body.extend(i32::MAX.to_be_bytes());
    let mut f = (body.len() as i32).to_be_bytes().to_vec();
    f.extend(body);
    raw.send_raw(&f);
    assert!(raw.is_closed());
    still_serving(broker.port);
}

#[test]
fn unsupported_versions() {
    let broker = Broker::start(&[]);
    // ApiVersions at an unknown version: a v0 answer with UNSUPPORTED_VERSION and the list.
    let mut raw = Raw::connect(broker.port);
    raw.send_raw(
        &frame(ApiKey::ApiVersions, 3, 11, &ApiVersionsRequest::default())
            .iter()
            .enumerate()
            .map(|(i, b)| if i == 7 { 99 } else { *b })
            .collect::<Vec<_>>(),
    );
    let (corr, resp): (i32, ApiVersionsResponse) =
        response(ApiKey::ApiVersions, 0, raw.read_frame().expect("v0 answer"));
    assert_eq!(corr, 11);
    assert_eq!(resp.error_code, 35, "UNSUPPORTED_VERSION");
    assert!(resp
        .api_keys
        .iter()
        .any(|k| k.api_key == 18 && k.max_version == 4));
    // Any other API at an unsupported version closes the connection.
    let mut raw = Raw::connect(broker.port);
    let mut f = frame(ApiKey::Metadata, 12, 12, &MetadataRequest::default());
    f[6..8].copy_from_slice(&99i16.to_be_bytes());
    raw.send_raw(&f);
    assert!(raw.is_closed());
    still_serving(broker.port);
}

#[test]
fn bad_crc_unknown_topic_and_out_of_range_get_kafka_errors() {
    let broker = Broker::start(&["auto.create.topics.enable=false"]);
    let mut raw = Raw::connect(broker.port);
    // Auto-creation off: Metadata and Produce both say UNKNOWN_TOPIC_OR_PARTITION.
    let md = metadata(&mut raw, 1, "nope", true);
    assert_eq!(md.topics[0].error_code, 3);
    assert_eq!(
        produce_code(&mut raw, 2, &produce("nope", batch(b"x"), 1)).0,
        3
    );

    // Create a topic by hand through the CreateTopics API, then corrupt a batch.
    let create = kafka_protocol::messages::CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![
            kafka_protocol::messages::create_topics_request::CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_num_partitions(1)
                .with_replication_factor(1),
        ]);
    raw.send_raw(&frame(ApiKey::CreateTopics, 7, 3, &create));
    let (_, created): (i32, kafka_protocol::messages::CreateTopicsResponse) =
        response(ApiKey::CreateTopics, 7, raw.read_frame().expect("created"));
    assert_eq!(created.topics[0].error_code, 0);

    let good = batch(b"good");
    let mut bad = BytesMut::from(&good[..]);
    let last = bad.len() - 1;
    bad[last] ^= 0x55;
    assert_eq!(
        produce_code(&mut raw, 4, &produce("t", bad.freeze(), 1)).0,
        2,
        "CORRUPT_MESSAGE"
    );
    // A truncated batch is corrupt too.
    assert_eq!(
        produce_code(&mut raw, 5, &produce("t", good.slice(..good.len() - 3), 1)).0,
        2
    );
    // A batch (with a valid CRC) claiming 2^31 offsets for its one record: INVALID_RECORD,
    // before it could make every later append roll a segment.
    let mut claims = BytesMut::from(&good[..]);
    claims[23..27].copy_from_slice(&i32::MAX.to_be_bytes());
    let crc = crc32c::crc32c(&claims[21..]);
    claims[17..21].copy_from_slice(&crc.to_be_bytes());
    assert_eq!(
        produce_code(&mut raw, 55, &produce("t", claims.freeze(), 1)).0,
        87,
        "INVALID_RECORD"
    );
    // Attribute bits only brokers set (CRC made valid again each time): a control batch is
    // INVALID_RECORD, LogAppendTime INVALID_TIMESTAMP, a transactional batch without a
    // producer id INVALID_TXN_STATE.
    for (bit, code, what) in [
        (0x20i16, 87, "INVALID_RECORD"),
        (0x08, 32, "INVALID_TIMESTAMP"),
        (0x10, 48, "INVALID_TXN_STATE"),
    ] {
        let mut b = BytesMut::from(&good[..]);
        let attributes = i16::from_be_bytes([b[21], b[22]]) | bit;
        b[21..23].copy_from_slice(&attributes.to_be_bytes());
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(
            produce_code(&mut raw, 56, &produce("t", b.freeze(), 1)).0,
            code,
            "{what}"
        );
    }
    assert_eq!(
        produce_code(&mut raw, 6, &produce("t", good.clone(), 1)),
        (0, 0),
        "the log took nothing bad"
    );

    // Fetch past the end: OFFSET_OUT_OF_RANGE; at the start: the one good record.
    raw.send_raw(&frame(ApiKey::Fetch, 12, 7, &fetch("t", 5, 0)));
    let (_, f): (i32, FetchResponse) =
        response(ApiKey::Fetch, 12, raw.read_frame().expect("fetch"));
    assert_eq!(f.responses[0].partitions[0].error_code, 1);
    raw.send_raw(&frame(ApiKey::Fetch, 12, 8, &fetch("t", 0, 0)));
    let (_, f): (i32, FetchResponse) =
        response(ApiKey::Fetch, 12, raw.read_frame().expect("fetch"));
    let p = &f.responses[0].partitions[0];
    assert_eq!((p.error_code, p.high_watermark), (0, 1));
    let mut records = p.records.clone().expect("records");
    let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut records).expect("decodes");
    assert_eq!(set.records.len(), 1);
    assert_eq!(set.records[0].value.as_deref(), Some(&b"good"[..]));
}

#[test]
fn pipelined_responses_keep_request_order_and_acks0_is_silent() {
    let broker = Broker::start(&[]);
    let mut raw = Raw::connect(broker.port);
    let _ = metadata(&mut raw, 1, "pipe", true);
    // A long-poll fetch first (it waits), then quick requests, then an acks=0 produce.
    let mut burst = frame(ApiKey::Fetch, 12, 100, &fetch("pipe", 0, 400));
    for corr in 101..120 {
        burst.extend(frame(
            ApiKey::ApiVersions,
            3,
            corr,
            &ApiVersionsRequest::default(),
        ));
    }
    burst.extend(frame(
        ApiKey::Produce,
        9,
        120,
        &produce("pipe", batch(b"silent"), 0),
    ));
    burst.extend(frame(
        ApiKey::ApiVersions,
        3,
        121,
        &ApiVersionsRequest::default(),
    ));
    raw.send_raw(&burst);
    let mut seen = Vec::new();
    for _ in 0..21 {
        let f = raw.read_frame().expect("response");
        seen.push(i32::from_be_bytes([f[0], f[1], f[2], f[3]]));
    }
    let mut expected: Vec<i32> = (100..120).collect();
    expected.push(121);
    assert_eq!(seen, expected, "in request order, nothing for acks=0");
    // The acks=0 record did land.
    raw.send_raw(&frame(ApiKey::Fetch, 12, 122, &fetch("pipe", 0, 1000)));
    let (_, f): (i32, FetchResponse) =
        response(ApiKey::Fetch, 12, raw.read_frame().expect("fetch"));
    assert_eq!(f.responses[0].partitions[0].high_watermark, 1);
}

#[test]
fn long_poll_ends_when_data_arrives_and_first_batch_is_whole() {
    let broker = Broker::start(&[]);
    let mut raw = Raw::connect(broker.port);
    let _ = metadata(&mut raw, 1, "poll", true);
    // A fetch that may wait 10 s; a record produced after 300 ms must end the wait.
    let port = broker.port;
    let producer = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(300));
        let mut other = Raw::connect(port);
        produce_code(&mut other, 1, &produce("poll", batch(&[b'z'; 10_000]), 1))
    });
    let started = std::time::Instant::now();
    raw.send_raw(&frame(ApiKey::Fetch, 12, 2, &fetch("poll", 0, 10_000)));
    let (_, f): (i32, FetchResponse) =
        response(ApiKey::Fetch, 12, raw.read_frame().expect("fetch"));
    let waited = started.elapsed();
    assert_eq!(producer.join().expect("producer"), (0, 0));
    assert!(
        waited < std::time::Duration::from_secs(5),
        "woke after {waited:?}"
    );
    assert!(f.responses[0].partitions[0]
        .records
        .as_ref()
        .is_some_and(|r| !r.is_empty()));
    // max_bytes of 100 still returns the whole 10 KB first batch (KIP-74).
    let small = fetch("poll", 0, 0).with_max_bytes(100);
    raw.send_raw(&frame(ApiKey::Fetch, 12, 3, &small));
    let (_, f): (i32, FetchResponse) =
        response(ApiKey::Fetch, 12, raw.read_frame().expect("fetch"));
    let mut records = f.responses[0].partitions[0]
        .records
        .clone()
        .expect("records");
    let set =
        kafka_protocol::records::RecordBatchDecoder::decode(&mut records).expect("a whole batch");
    assert_eq!(set.records[0].value.as_ref().map(|v| v.len()), Some(10_000));
}

/// A Fetch asking to wait a day for data that never comes is answered (empty) after
/// `fetch.max.wait.cap.ms`, so a parked request cannot pin its memory and connection for days.
#[test]
fn a_long_poll_asking_for_a_day_is_answered_at_the_cap() {
    let broker = Broker::start(&["fetch.max.wait.cap.ms=700"]);
    let mut raw = Raw::connect(broker.port);
    let _ = metadata(&mut raw, 1, "capped", true);
    let started = std::time::Instant::now();
    raw.send_raw(&frame(
        ApiKey::Fetch,
        12,
        2,
        &fetch("capped", 0, 86_400_000),
    ));
    raw.stream
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .expect("timeout");
    let (_, f): (i32, FetchResponse) =
        response(ApiKey::Fetch, 12, raw.read_frame().expect("answered"));
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(600)
            && waited < std::time::Duration::from_secs(10),
        "answered after {waited:?}"
    );
    assert_eq!(f.responses[0].partitions[0].error_code, 0);
    assert!(f.responses[0].partitions[0]
        .records
        .as_ref()
        .is_none_or(|r| r.is_empty()));
}

/// Topic names and partition-0 leaders of an all-topics Metadata answer at `version`; the
/// answer must carry `corr`.
fn all_topics(raw: &mut Raw, corr: i32, version: i16) -> Vec<(String, i32)> {
    let (c, resp): (i32, MetadataResponse) = response(
        ApiKey::Metadata,
        version,
        raw.read_frame().expect("metadata answer"),
    );
    assert_eq!(
        c, corr,
        "correlation id of the all-topics answer (v{version})"
    );
    let mut topics: Vec<(String, i32)> = resp
        .topics
        .iter()
        .map(|t| {
            let name = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
            (name, t.partitions.first().map_or(-2, |p| p.leader_id.0))
        })
        .collect();
    topics.sort();
    topics
}

fn all_topics_request(version: i16) -> MetadataRequest {
    // v0 asks for every topic with an empty list, later versions with null.
    MetadataRequest::default().with_topics((version == 0).then(Vec::new))
}

#[test]
fn all_topics_metadata_follows_topic_changes_at_every_version() {
    use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse};
    let broker = Broker::start(&[]);
    let mut raw = Raw::connect(broker.port);
    let versions = [0i16, 1, 8, 9, 12, 13];
    let mut corr = 0;
    // Pipelined, twice per version: the repeats are answered from the kept encoding and must
    // carry their own correlation ids and the same topics.
    let mut expect = |raw: &mut Raw, topics: &[(&str, bool)]| {
        let mut burst = Vec::new();
        let mut asked = Vec::new();
        for v in versions.iter().chain(versions.iter()) {
            corr += 1;
            burst.extend(frame(ApiKey::Metadata, *v, corr, &all_topics_request(*v)));
            asked.push((corr, *v));
        }
        raw.send_raw(&burst);
        for (c, v) in asked {
            let got = all_topics(raw, c, v);
            let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
            let want: Vec<&str> = topics.iter().map(|(n, _)| *n).collect();
            assert_eq!(names, want, "topics in the v{v} answer (corr {c})");
            for ((name, leader), (_, led)) in got.iter().zip(topics) {
                if *led {
                    assert_eq!(*leader, 1, "leader of {name} in the v{v} answer");
                }
            }
        }
    };
    expect(&mut raw, &[]);
    // Auto-create two topics; wait until each names its leader in a by-name answer.
    for (i, name) in ["cache-a", "cache-b"].iter().enumerate() {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let m = metadata(&mut raw, 1000 + i as i32, name, true);
            if m.topics[0]
                .partitions
                .first()
                .is_some_and(|p| p.leader_id.0 == 1)
            {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{name} never got a leader"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let want: Vec<(&str, bool)> = ["cache-a", "cache-b"][..=i]
            .iter()
            .map(|n| (*n, true))
            .collect();
        expect(&mut raw, &want);
    }
    let delete = DeleteTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topic_names(vec![TopicName(StrBytes::from_static_str("cache-a"))]);
    raw.send_raw(&frame(ApiKey::DeleteTopics, 4, 2000, &delete));
    let (_, d): (i32, DeleteTopicsResponse) = response(
        ApiKey::DeleteTopics,
        4,
        raw.read_frame().expect("delete answer"),
    );
    assert_eq!(d.responses[0].error_code, 0);
    expect(&mut raw, &[("cache-b", true)]);
}

#[test]
fn describe_cluster_names_the_controller_and_brokers() {
    use kafka_protocol::messages::{DescribeClusterRequest, DescribeClusterResponse};
    let broker = Broker::start(&["node.id=7"]);
    let mut raw = Raw::connect(broker.port);
    raw.send_raw(&frame(
        ApiKey::DescribeCluster,
        1,
        1,
        &DescribeClusterRequest::default().with_endpoint_type(1),
    ));
    let (_, d): (i32, DescribeClusterResponse) = response(
        ApiKey::DescribeCluster,
        1,
        raw.read_frame().expect("answer"),
    );
    assert_eq!(d.error_code, 0);
    assert!(!d.cluster_id.is_empty());
    assert_eq!(d.controller_id.0, 7);
    assert_eq!(d.brokers.len(), 1);
    assert_eq!(
        (d.brokers[0].broker_id.0, d.brokers[0].port),
        (7, broker.port as i32)
    );
}

/// One zstd batch of 10,240 records of 1 MiB of zeros each: 10 GiB of records in ~330 KiB.
fn zstd_bomb() -> Bytes {
    use std::io::Write;
    const RECORDS: i32 = 10_240;
    let value = vec![0u8; 1 << 20];
    let mut z = zstd::stream::write::Encoder::new(Vec::new(), 3).expect("zstd");
    for i in 0..RECORDS {
        let mut body = Vec::new();
        body.push(0u8); // attributes
        put_varint(&mut body, 0); // timestamp delta
        put_varint(&mut body, i as i64); // offset delta
        put_varint(&mut body, -1); // no key
        put_varint(&mut body, value.len() as i64);
        let mut rec = Vec::new();
        put_varint(&mut rec, (body.len() + value.len() + 1) as i64);
        z.write_all(&rec).expect("zstd");
        z.write_all(&body).expect("zstd");
        z.write_all(&value).expect("zstd");
        z.write_all(&[0]).expect("zstd"); // no headers
    }
    let compressed = z.finish().expect("zstd");
    let mut b = BytesMut::new();
    b.put_i64(0); // base offset
    b.put_i32((49 + compressed.len()) as i32); // batch length
    b.put_i32(-1); // partition leader epoch
    b.put_i8(2); // magic
    b.put_u32(0); // CRC, below
    b.put_i16(4); // attributes: zstd, CreateTime
    b.put_i32(RECORDS - 1); // last offset delta
    b.put_i64(2_000); // base timestamp
    b.put_i64(2_000); // max timestamp
    b.put_i64(-1); // producer id
    b.put_i16(-1); // producer epoch
    b.put_i32(-1); // base sequence
    b.put_i32(RECORDS);
    b.put_slice(&compressed);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b.freeze()
}

fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        let byte = (z & 0x7f) as u8;
        z >>= 7;
        if z == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// A decompression bomb is stored (the broker does not decompress on produce), and a ListOffsets
/// by timestamp that lands in it answers from the batch header instead of expanding 10 GiB.
#[test]
fn a_decompression_bomb_is_not_expanded_by_a_timestamp_lookup() {
    let broker = Broker::start(&[]);
    let mut raw = Raw::connect(broker.port);
    let bomb = zstd_bomb();
    assert!(bomb.len() < 1 << 20, "the bomb fits message.max.bytes");
    // Metadata auto-creates the topic; one ordinary record, then the bomb.
    metadata(&mut raw, 1, "bombed", true);
    crate::harness::wait_until("the topic", std::time::Duration::from_secs(10), || {
        produce_code(&mut raw, 2, &produce("bombed", batch(b"first"), 1)).0 == 0
    });
    let (code, offset) = produce_code(&mut raw, 2, &produce("bombed", bomb, 1));
    assert_eq!((code, offset), (0, 1));
    let req = kafka_protocol::messages::ListOffsetsRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_topics(vec![
            kafka_protocol::messages::list_offsets_request::ListOffsetsTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("bombed")))
                .with_partitions(vec![
                    kafka_protocol::messages::list_offsets_request::ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(1_500),
                ]),
        ]);
    let started = std::time::Instant::now();
    raw.send_raw(&frame(ApiKey::ListOffsets, 7, 3, &req));
    let (_, r): (i32, kafka_protocol::messages::ListOffsetsResponse) =
        response(ApiKey::ListOffsets, 7, raw.read_frame().expect("answer"));
    let p = &r.topics[0].partitions[0];
    assert_eq!((p.error_code, p.offset, p.timestamp), (0, 1, 2_000));
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    let peak = broker.peak_rss().expect("peak RSS");
    assert!(peak < 512 << 20, "the broker peaked at {} MiB", peak >> 20);
    still_serving(broker.port);
}

/// `connections.max.idle.ms` closes a connection with nothing to do, but never one waiting on
/// its own long poll; `max.connections.per.ip` closes a connection over the limit at once and
/// admits one again when another leaves.
#[test]
fn idle_connections_close_and_connection_limits_hold() {
    let broker = Broker::start(&[
        "connections.max.idle.ms=400",
        "max.connections.per.ip=3",
        // Smaller than one of the frames below: it waits for the whole pool, not forever.
        "queued.max.request.bytes=4096",
    ]);
    // An idle connection is closed once the limit passes.
    let mut idle = Raw::connect(broker.port);
    std::thread::sleep(std::time::Duration::from_millis(1200));
    assert!(
        idle.is_closed(),
        "an idle connection outlived connections.max.idle.ms"
    );
    // So is one that sent half a frame and went silent.
    let mut half = Raw::connect(broker.port);
    half.send_raw(&[0, 0, 0, 100, 0, 18, 0, 3]);
    std::thread::sleep(std::time::Duration::from_millis(1200));
    assert!(half.is_closed(), "half a frame held the connection open");

    // A long poll of 1.5 s on an empty partition is not idleness.
    let mut raw = Raw::connect(broker.port);
    metadata(&mut raw, 1, "quiet", true);
    crate::harness::wait_until("the topic", std::time::Duration::from_secs(10), || {
        raw.send_raw(&frame(ApiKey::Fetch, 12, 2, &fetch("quiet", 0, 0)));
        let (_, f): (i32, FetchResponse) =
            response(ApiKey::Fetch, 12, raw.read_frame().expect("fetch"));
        f.responses[0].partitions[0].error_code == 0
    });
    // A 16 KiB batch, larger than the request memory pool, is still taken.
    let big = produce_code(&mut raw, 4, &produce("quiet", batch(&[7u8; 16 << 10]), 1));
    assert_eq!(big, (0, 0));
    let started = std::time::Instant::now();
    raw.send_raw(&frame(ApiKey::Fetch, 12, 3, &fetch("quiet", 1, 1500)));
    let answer = raw
        .read_frame()
        .expect("the long poll is answered, not cut off");
    let (corr, _): (i32, FetchResponse) = response(ApiKey::Fetch, 12, answer);
    assert_eq!(corr, 3);
    assert!(started.elapsed() >= std::time::Duration::from_millis(1400));
    drop(raw);

    // Three per address; the fourth is closed at once; one leaves, and a new one gets in.
    std::thread::sleep(std::time::Duration::from_millis(100));
    let mut open: Vec<Raw> = (0..3).map(|_| Raw::connect(broker.port)).collect();
    for (i, r) in open.iter_mut().enumerate() {
        r.send_raw(&frame(
            ApiKey::ApiVersions,
            3,
            10 + i as i32,
            &ApiVersionsRequest::default(),
        ));
        assert!(r.read_frame().is_some(), "connection {i} within the limit");
    }
    let mut over = Raw::connect(broker.port);
    over.send_raw(&frame(
        ApiKey::ApiVersions,
        3,
        20,
        &ApiVersionsRequest::default(),
    ));
    assert!(
        over.read_frame().is_none(),
        "the fourth connection is closed"
    );
    drop(open.pop());
    crate::harness::wait_until("a place freed", std::time::Duration::from_secs(5), || {
        let mut again = Raw::connect(broker.port);
        again.send_raw(&frame(
            ApiKey::ApiVersions,
            3,
            21,
            &ApiVersionsRequest::default(),
        ));
        again.read_frame().is_some()
    });
}

/// Metadata naming 1,200 unknown topics auto-creates at most 1,000 of them in one metadata
/// command and answers the rest LEADER_NOT_AVAILABLE (retriable); asking again creates those.
#[test]
fn metadata_auto_creation_is_batched_and_bounded() {
    let broker = Broker::start(&[]);
    let mut raw = Raw::connect(broker.port);
    let names: Vec<String> = (0..1200).map(|i| format!("auto-{i:04}")).collect();
    let ask = |raw: &mut Raw, corr: i32| -> MetadataResponse {
        let req = MetadataRequest::default()
            .with_topics(Some(
                names
                    .iter()
                    .map(|n| {
                        MetadataRequestTopic::default()
                            .with_name(Some(TopicName(StrBytes::from_string(n.clone()))))
                    })
                    .collect(),
            ))
            .with_allow_auto_topic_creation(true);
        raw.send_raw(&frame(ApiKey::Metadata, 12, corr, &req));
        response(ApiKey::Metadata, 12, raw.read_frame().expect("metadata")).1
    };
    let started = std::time::Instant::now();
    let first = ask(&mut raw, 1);
    eprintln!(
        "1,200 names, first Metadata answered in {} ms",
        started.elapsed().as_millis()
    );
    let exists = |r: &MetadataResponse| {
        r.topics
            .iter()
            .filter(|t| t.error_code == 0 && !t.partitions.is_empty())
            .count()
    };
    assert_eq!(exists(&first), 1000, "one batch of 1,000 created");
    let refused = first.topics.iter().filter(|t| t.error_code == 5).count();
    assert_eq!(refused, 200, "the rest LEADER_NOT_AVAILABLE");
    let second = ask(&mut raw, 2);
    assert_eq!(exists(&second), 1200, "the second request creates the rest");
}

/// OffsetCommits pipelined on one connection take effect in the order sent, as Kafka processes
/// a connection's requests: the last one sent is what OffsetFetch returns.
#[test]
fn pipelined_offset_commits_apply_in_the_order_sent() {
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    use kafka_protocol::messages::{
        GroupId, OffsetCommitRequest, OffsetFetchRequest, OffsetFetchResponse,
    };
    let broker = Broker::start(&["offsets.topic.num.partitions=1"]);
    let mut raw = Raw::connect(broker.port);
    metadata(&mut raw, 1, "ordered", true);
    let group = || GroupId(StrBytes::from_static_str("ordered-group"));
    let commit = |offset: i64| {
        OffsetCommitRequest::default()
            .with_group_id(group())
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("ordered")))
                .with_partitions(vec![
                    OffsetCommitRequestPartition::default().with_committed_offset(offset)
                ])])
    };
    // The coordinator exists (FindCoordinator creates the offsets topic) and the topic is
    // known once a commit succeeds.
    crate::harness::wait_until("a coordinator", std::time::Duration::from_secs(20), || {
        let find = kafka_protocol::messages::FindCoordinatorRequest::default()
            .with_key(StrBytes::from_static_str("ordered-group"));
        raw.send_raw(&frame(ApiKey::FindCoordinator, 3, 3, &find));
        raw.read_frame().expect("coordinator");
        raw.send_raw(&frame(ApiKey::OffsetCommit, 8, 2, &commit(0)));
        let (_, r): (i32, kafka_protocol::messages::OffsetCommitResponse) =
            response(ApiKey::OffsetCommit, 8, raw.read_frame().expect("commit"));
        r.topics[0].partitions[0].error_code == 0
    });
    for round in 0..20 {
        // 30 commits in one burst, offsets rising; then read back.
        let mut burst = Vec::new();
        for i in 1..=30 {
            burst.extend(frame(
                ApiKey::OffsetCommit,
                8,
                100 + i,
                &commit(round * 100 + i as i64),
            ));
        }
        raw.send_raw(&burst);
        for _ in 1..=30 {
            raw.read_frame().expect("commit answer");
        }
        let fetch = OffsetFetchRequest::default()
            .with_group_id(group())
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("ordered")))
                .with_partition_indexes(vec![0])]));
        raw.send_raw(&frame(ApiKey::OffsetFetch, 6, 999, &fetch));
        let (_, r): (i32, OffsetFetchResponse) =
            response(ApiKey::OffsetFetch, 6, raw.read_frame().expect("fetch"));
        assert_eq!(
            r.topics[0].partitions[0].committed_offset,
            round * 100 + 30,
            "round {round}: the last commit sent"
        );
    }
}

#[test]
fn only_the_inter_broker_listener_takes_fetches_as_a_replica() {
    let mut broker = Broker::new(&[]);
    let external = crate::harness::free_port();
    let (internal, controller) = (broker.port, broker.controller_port);
    for s in [
        format!(
            "listeners=INTERNAL://127.0.0.1:{internal},EXTERNAL://127.0.0.1:{external},CONTROLLER://127.0.0.1:{controller}"
        ),
        "listener.security.protocol.map=INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT"
            .to_string(),
        "inter.broker.listener.name=INTERNAL".to_string(),
    ] {
        broker.set(s);
    }
    broker.spawn();
    let mut ext = Raw::connect(external);
    let md = metadata(&mut ext, 1, "replicated", true);
    assert_eq!(md.topics[0].error_code, 0);
    assert_eq!(
        produce_code(&mut ext, 2, &produce("replicated", batch(b"v"), 1)).0,
        0
    );
    let as_replica =
        |id: i32| fetch("replicated", 0, 0).with_replica_id(kafka_protocol::messages::BrokerId(id));
    let code = |raw: &mut Raw, corr: i32, req: &FetchRequest| {
        raw.send_raw(&frame(ApiKey::Fetch, 12, corr, req));
        let (_, f): (i32, FetchResponse) =
            response(ApiKey::Fetch, 12, raw.read_frame().expect("fetch answer"));
        f.responses[0].partitions[0].error_code
    };
    // A client on EXTERNAL claiming to be broker 1 (this partition's only replica) is refused
    // as Kafka refuses a replica fetch without CLUSTER_ACTION; as a consumer it reads.
    assert_eq!(
        code(&mut ext, 3, &as_replica(1)),
        29,
        "TOPIC_AUTHORIZATION_FAILED"
    );
    assert_eq!(code(&mut ext, 4, &fetch("replicated", 0, 0)), 0);
    // On the inter-broker listener the fetch reaches the replica checks: 7 is no replica.
    let mut int = Raw::connect(internal);
    assert_eq!(
        code(&mut int, 5, &as_replica(7)),
        6,
        "NOT_LEADER_OR_FOLLOWER"
    );
}
