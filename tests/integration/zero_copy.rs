//! Zero-copy fetch: consumer fetches answered with sendfile return exactly the bytes the copying
//! path returns, for old and flexible Fetch versions, topic names and ids, byte limits that cut a
//! batch, and KIP-74's oversized first batch; librdkafka reads everything back through both.

use std::time::Duration;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use strom::tools::Client;

use crate::harness::{consume_all, flush, producer, send_to, wait_until, Broker, Raw};

const TOPIC: &str = "zc";

/// (version, request max_bytes, partition max_bytes, fetch offset)
const CASES: &[(i16, i32, i32, i64)] = &[
    (4, 1 << 20, 1 << 20, 0),
    (11, 1 << 20, 700, 0),
    (12, 1 << 20, 1 << 20, 0),
    (12, 3000, 1 << 20, 5),
    (13, 100, 100, 0),
    (16, 50_000, 20_000, 37),
    (18, 1 << 20, 1 << 20, 1200),
];

fn request(version: i16, max: i32, part_max: i32, offset: i64, id: uuid::Uuid) -> FetchRequest {
    let partitions = (0..3)
        .map(|p| {
            FetchPartition::default()
                .with_partition(p)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(part_max)
        })
        .collect();
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(max)
        .with_session_epoch(-1)
        .with_topics(vec![if version >= 13 {
            FetchTopic::default().with_topic_id(id)
        } else {
            FetchTopic::default().with_topic(TopicName(StrBytes::from_static_str(TOPIC)))
        }
        .with_partitions(partitions)])
}

/// The raw response frames for every case.
fn fetch_all(port: u16, id: uuid::Uuid) -> Vec<Vec<u8>> {
    CASES
        .iter()
        .map(|(v, max, part_max, offset)| {
            let frame = strom::protocol::encode_request(
                ApiKey::Fetch,
                *v,
                1,
                "zc-test",
                &request(*v, *max, *part_max, *offset, id),
            )
            .expect("encode");
            let mut raw = Raw::connect(port);
            raw.send_raw(&frame);
            raw.read_frame().expect("a fetch response")
        })
        .collect()
}

fn topic_id(bootstrap: &str) -> uuid::Uuid {
    let mut c = Client::connect(bootstrap).expect("connect");
    let md: MetadataResponse = c
        .call(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(Some(vec![
                kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_static_str(TOPIC)))),
            ])),
        )
        .expect("metadata");
    md.topics[0].topic_id
}

#[test]
fn sendfile_and_copying_fetches_return_identical_bytes() {
    let mut b = Broker::start(&["num.partitions=3", "log.segment.bytes=40000"]);
    let boot = b.bootstrap();
    let p = producer(&boot, &[("linger.ms", "20"), ("compression.type", "lz4")]);
    // Partitions chosen, not random: every partition gets enough data to be cut by the byte
    // limits above (750, 750 and 1,500 records; partition 2 also takes the big batch below).
    let partition_of = |i: u64| [0, 1, 2, 2][(i % 4) as usize];
    for i in 0..3000u64 {
        let payload = vec![b'a' + (i % 26) as u8; 20 + (i as usize * 7) % 400];
        send_to(&p, TOPIC, Some(partition_of(i)), i, &payload);
        if i % 500 == 0 {
            flush(&p);
        }
    }
    flush(&p);
    // A batch larger than every limit above (KIP-74 returns it whole).
    let big = producer(
        &boot,
        &[("compression.type", "none"), ("batch.size", "200000")],
    );
    for i in 0..200u64 {
        send_to(&big, TOPIC, Some(2), 10_000 + i, &vec![b'z'; 900]);
    }
    flush(&big);
    let id = topic_id(&boot);
    let zero_copy = fetch_all(b.port, id);

    b.set("fetch.zero.copy.enable=false".into());
    b.restart();
    let mut copied = Vec::new();
    wait_until(
        "the same answers after restart",
        Duration::from_secs(10),
        || {
            copied = fetch_all(b.port, id);
            copied == zero_copy
        },
    );
    // Not vacuous: the big request returned records from every partition.
    let body = bytes::Bytes::from(zero_copy[2].clone());
    let (_, resp): (i32, FetchResponse) =
        strom::protocol::decode_response(ApiKey::Fetch, 12, body).expect("decode");
    for p in &resp.responses[0].partitions {
        assert!(
            p.records.as_ref().is_some_and(|r| r.len() > 1000),
            "partition {} returned records",
            p.partition_index
        );
    }
    let got = consume_all(&boot, TOPIC, 3, 3200, Duration::from_secs(30));
    assert_eq!(
        got.len(),
        3200,
        "librdkafka reads everything through the copying path"
    );
    b.set("fetch.zero.copy.enable=true".into());
    b.restart();
    let got = consume_all(&boot, TOPIC, 3, 3200, Duration::from_secs(30));
    assert_eq!(got.len(), 3200, "and through sendfile");
}
