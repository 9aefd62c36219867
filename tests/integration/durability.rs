//! Restarts, crashes and retention: acknowledged records survive, nothing torn is served, and
//! retention moves the log start offset that clients see.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::producer::Producer;
use rdkafka::{Offset, TopicPartitionList};

use crate::harness::{consume_all, consumer, flush, producer, send, Broker};
fn payload(id: u64) -> Vec<u8> {
    format!("record-{id:08}-{}", "x".repeat((id % 50) as usize)).into_bytes()
}

#[test]
fn clean_restart_keeps_everything() {
    let mut broker = Broker::start(&["num.partitions=3", "log.segment.bytes=65536"]);
    let p = producer(&broker.bootstrap(), &[("acks", "1")]);
    for id in 0..5_000 {
        send(&p, "keep", id, &payload(id));
    }
    flush(&p);
    assert_eq!(p.context().acks.lock().expect("lock").len(), 5_000);
    drop(p);
    let took = broker.terminate();
    assert!(
        took < Duration::from_secs(5),
        "SIGTERM shutdown took {took:?}"
    );
    broker.restart();
    let got = consume_all(
        &broker.bootstrap(),
        "keep",
        3,
        5_000,
        Duration::from_secs(30),
    );
    assert_eq!(got.len(), 5_000);
    // And the log keeps growing from where it was.
    let p = producer(&broker.bootstrap(), &[("acks", "1")]);
    send(&p, "keep", 99_999, b"after restart");
    flush(&p);
    let acks = p.context().acks.lock().expect("lock").clone();
    assert_eq!(acks.len(), 1);
    let before = got
        .iter()
        .filter(|g| g.partition == acks[0].partition)
        .count() as i64;
    assert_eq!(
        acks[0].offset, before,
        "appends continue at the old log end"
    );
}

#[test]
fn sigkill_during_acks1_produce_loses_no_acknowledged_record() {
    let mut broker = Broker::start(&["num.partitions=2", "log.segment.bytes=262144"]);
    let bootstrap = broker.bootstrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let bs = bootstrap.clone();
    let writer = std::thread::spawn(move || {
        let p = producer(
            &bs,
            &[
                ("acks", "1"),
                ("message.timeout.ms", "3000"),
                ("retries", "0"),
            ],
        );
        let mut id = 0u64;
        let started = Instant::now();
        while !stop2.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(30) {
            send(&p, "crash", id, &payload(id));
            id += 1;
            if id.is_multiple_of(100) {
                p.poll(Duration::from_millis(1));
            }
        }
        let _ = p.flush(Duration::from_secs(5));
        let acks = p.context().acks.lock().expect("lock").clone();
        acks
    });
    // Let acknowledged data build up, then kill the broker mid-stream.
    std::thread::sleep(Duration::from_millis(2500));
    broker.kill();
    stop.store(true, Ordering::Relaxed);
    let acks = writer.join().expect("writer");
    assert!(
        acks.len() > 1000,
        "the producer got acknowledgements before the kill ({})",
        acks.len()
    );

    broker.restart();
    let c = consumer(&bootstrap, &[]);
    let mut expected = 0usize;
    for part in 0..2 {
        let (_, high) = c
            .fetch_watermarks("crash", part, Duration::from_secs(10))
            .expect("watermarks");
        expected += high as usize;
    }
    let got = consume_all(&bootstrap, "crash", 2, expected, Duration::from_secs(60));
    assert_eq!(
        got.len(),
        expected,
        "every record below the log end is readable (check.crcs on)"
    );
    let by_pos: std::collections::HashMap<(i32, i64), &crate::harness::Got> =
        got.iter().map(|g| ((g.partition, g.offset), g)).collect();
    for a in &acks {
        let g = by_pos.get(&(a.partition, a.offset)).unwrap_or_else(|| {
            panic!(
                "acknowledged record {} at {}:{} is missing",
                a.id, a.partition, a.offset
            )
        });
        assert_eq!(
            g.payload.as_deref(),
            Some(payload(a.id).as_slice()),
            "record {} intact",
            a.id
        );
    }
}

#[test]
fn retention_removes_old_segments_and_moves_log_start() {
    let broker = Broker::start(&[
        "num.partitions=1",
        "log.segment.bytes=16384",
        "log.retention.bytes=32768",
        "log.retention.check.interval.ms=200",
    ]);
    let bootstrap = broker.bootstrap();
    let p = producer(
        &bootstrap,
        &[
            ("acks", "1"),
            ("linger.ms", "0"),
            ("batch.num.messages", "1"),
        ],
    );
    for id in 0..2_000 {
        send(&p, "old", id, &[b'r'; 100]);
    }
    flush(&p);
    assert_eq!(p.context().acks.lock().expect("lock").len(), 2_000);
    // Retention runs every 200 ms: within a few runs the log start has advanced and about
    // retention.bytes remain (whole segments only, so at most one segment more). Every record
    // takes at least its 100-byte value on disk.
    let c = consumer(&bootstrap, &[]);
    let bound = 32_768 + 16_384;
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut low, mut high) = (0, 0);
    while Instant::now() < deadline {
        (low, high) = c
            .fetch_watermarks("old", 0, Duration::from_secs(5))
            .expect("watermarks");
        if low > 0 && (high - low) * 100 <= bound {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(low > 0, "log start offset advanced");
    assert_eq!(high, 2_000);
    assert!((high - low) * 100 <= bound, "kept {} records", high - low);
    // A consumer asking for offset 0 is reset to the new log start.
    let c = consumer(&bootstrap, &[("auto.offset.reset", "earliest")]);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("old", 0, Offset::Offset(0))
        .expect("tpl");
    c.assign(&tpl).expect("assign");
    let first = match c.poll(Duration::from_secs(10)) {
        Some(Ok(m)) => rdkafka::message::Message::offset(&m),
        Some(Err(e)) => panic!("consumer error {e}"),
        None => panic!("no record after reset"),
    };
    let now_low = c
        .fetch_watermarks("old", 0, Duration::from_secs(5))
        .expect("watermarks")
        .0;
    assert!(
        first >= low && first == now_low,
        "reset to the log start offset ({first} vs {now_low})"
    );
}
