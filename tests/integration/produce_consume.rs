//! 100,000 records with keys, headers and timestamps, across partitions and every compression
//! codec, produced through librdkafka and consumed back identical; ListOffsets checked against
//! what was consumed.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use crate::harness::{consume_all, consumer, flush, producer, Broker};

const PARTITIONS: i32 = 4;
const PER_CODEC: u64 = 20_000;
const BASE_TS: i64 = 1_700_000_000_000;

fn key(i: u64) -> String {
    format!("key-{i}")
}

fn value(i: u64) -> Vec<u8> {
    // Varied sizes and some repetition so every codec has something to compress.
    let mut v = format!("value-{i}-").into_bytes();
    v.extend(std::iter::repeat_n(
        b'a' + (i % 26) as u8,
        (i % 200) as usize,
    ));
    v
}

#[test]
fn records_round_trip_through_every_codec() {
    let broker = Broker::start(&[&format!("num.partitions={PARTITIONS}")]);
    let bootstrap = broker.bootstrap();
    for (n, codec) in ["none", "gzip", "snappy", "lz4", "zstd"].iter().enumerate() {
        let topic = format!("codec-{codec}");
        let p = producer(&bootstrap, &[("compression.codec", codec), ("acks", "all")]);
        let first = n as u64 * PER_CODEC;
        for i in first..first + PER_CODEC {
            let k = key(i);
            let v = value(i);
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "id",
                    value: Some(&i.to_string()),
                })
                .insert(Header {
                    key: "codec",
                    value: Some(*codec),
                });
            let mut rec = BaseRecord::with_opaque_to(&topic, Box::new(i))
                .key(&k)
                .payload(&v)
                .headers(headers)
                .timestamp(BASE_TS + i as i64);
            loop {
                match p.send(rec) {
                    Ok(()) => break,
                    Err((_, r)) => {
                        rec = r;
                        p.poll(Duration::from_millis(10));
                    }
                }
            }
            p.poll(Duration::ZERO);
        }
        flush(&p);
        let ctx = p.context();
        assert!(
            ctx.errors.lock().expect("lock").is_empty(),
            "{codec}: {:?}",
            ctx.errors.lock().expect("lock").first()
        );
        let acks = ctx.acks.lock().expect("lock").clone();
        assert_eq!(
            acks.len() as u64,
            PER_CODEC,
            "{codec}: every record acknowledged"
        );

        let got = consume_all(
            &bootstrap,
            &topic,
            PARTITIONS,
            PER_CODEC as usize,
            Duration::from_secs(60),
        );
        assert_eq!(
            got.len() as u64,
            PER_CODEC,
            "{codec}: every record consumed"
        );
        let mut seen: HashMap<u64, (i32, i64)> = HashMap::new();
        let mut last_offset: HashMap<i32, i64> = HashMap::new();
        for g in &got {
            let id: u64 = g
                .headers
                .iter()
                .find(|h| h.0 == "id")
                .and_then(|h| String::from_utf8(h.1.clone()).ok())
                .and_then(|s| s.parse().ok())
                .expect("id header");
            assert_eq!(
                g.key.as_deref(),
                Some(key(id).as_bytes()),
                "{codec}: key of {id}"
            );
            assert_eq!(
                g.payload.as_deref(),
                Some(value(id).as_slice()),
                "{codec}: value of {id}"
            );
            assert_eq!(
                g.timestamp,
                Some(BASE_TS + id as i64),
                "{codec}: timestamp of {id}"
            );
            assert_eq!(
                g.headers[1],
                ("codec".to_string(), codec.as_bytes().to_vec())
            );
            assert!(
                seen.insert(id, (g.partition, g.offset)).is_none(),
                "{codec}: {id} consumed twice"
            );
            let prev = last_offset.insert(g.partition, g.offset);
            assert!(
                prev.is_none_or(|o| o < g.offset),
                "{codec}: offsets in order"
            );
        }
        for a in &acks {
            assert_eq!(
                seen.get(&a.id),
                Some(&(a.partition, a.offset)),
                "{codec}: ack of {} matches the log",
                a.id
            );
        }

        // ListOffsets: earliest, latest, and by timestamp, per partition.
        let c = consumer(&bootstrap, &[]);
        let target = BASE_TS + (first + PER_CODEC / 2) as i64;
        let mut tpl = TopicPartitionList::new();
        for part in 0..PARTITIONS {
            let count = got.iter().filter(|g| g.partition == part).count() as i64;
            let (low, high) = c
                .fetch_watermarks(&topic, part, Duration::from_secs(10))
                .expect("watermarks");
            assert_eq!(
                (low, high),
                (0, count),
                "{codec}: watermarks of partition {part}"
            );
            tpl.add_partition_offset(&topic, part, Offset::Offset(target))
                .expect("tpl");
        }
        let found = c
            .offsets_for_times(tpl, Duration::from_secs(10))
            .expect("offsets_for_times");
        for part in 0..PARTITIONS {
            let expected = got
                .iter()
                .filter(|g| g.partition == part && g.timestamp.unwrap_or(0) >= target)
                .map(|g| g.offset)
                .min();
            let answer = found
                .find_partition(&topic, part)
                .expect("partition answered")
                .offset();
            match expected {
                Some(o) => assert_eq!(
                    answer,
                    Offset::Offset(o),
                    "{codec}: offset for time on {part}"
                ),
                None => assert_eq!(
                    answer,
                    Offset::End,
                    "{codec}: no record after the time on {part}"
                ),
            }
        }
    }
}
