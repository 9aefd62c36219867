//! A load generator on librdkafka, so figures come from a real client and can be set beside any
//! other Kafka-compatible broker:
//!
//! `cargo run --release --example bench -- --bootstrap 127.0.0.1:9092 --records 1000000
//!  --record-size 100 --partitions 6 --acks all --compression none --linger-ms 5 --producers 1
//!  --consumers 1 --fetch-wait-ms 500 [--duration 30s] [--json out.json]`
//!
//! Producers write for `--records` records or `--duration`, with a live progress line, then
//! consumers read every partition back from the start. It prints records/s, MB/s and produce
//! latency p50/p99/p99.9/max, and can write them as JSON.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{Offset, TopicPartitionList};

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_string())
}

struct Latencies {
    micros: Mutex<Vec<u64>>,
    failed: AtomicU64,
}

impl ClientContext for Latencies {}

impl ProducerContext for Latencies {
    type DeliveryOpaque = Box<Instant>;
    fn delivery(&self, r: &DeliveryResult<'_>, sent: Box<Instant>) {
        match r {
            Ok(_) => self
                .micros
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(sent.elapsed().as_micros() as u64),
            Err(_) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn pct(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)] as f64 / 1000.0
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!(
            "{}",
            include_str!("bench.rs")
                .lines()
                .take(9)
                .map(|l| l.trim_start_matches("//!"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        return std::process::ExitCode::SUCCESS;
    }
    let bootstrap = arg(&args, "--bootstrap", "127.0.0.1:9092");
    let topic = arg(&args, "--topic", &format!("bench-{}", std::process::id()));
    let partitions: i32 = arg(&args, "--partitions", "6").parse().unwrap_or(6);
    let rf: i16 = arg(&args, "--replication-factor", "1").parse().unwrap_or(1);
    let size: usize = arg(&args, "--record-size", "100").parse().unwrap_or(100);
    let records: u64 = arg(&args, "--records", "1000000")
        .parse()
        .unwrap_or(1_000_000);
    let duration: Option<u64> = args
        .iter()
        .position(|a| a == "--duration")
        .and_then(|i| args.get(i + 1))
        .and_then(|d| d.trim_end_matches('s').parse().ok());
    let acks = arg(&args, "--acks", "all");
    let compression = arg(&args, "--compression", "none");
    let linger = arg(&args, "--linger-ms", "5");
    // Consumer fetch.wait.max.ms (librdkafka's default is 500); some brokers hold every fetch
    // for the full wait, so compare brokers at the same setting.
    let fetch_wait = arg(&args, "--fetch-wait-ms", "500");
    let batch = arg(&args, "--batch-size", "1000000");
    let producers: u64 = arg(&args, "--producers", "1").parse().unwrap_or(1);
    let consumers: i32 = arg(&args, "--consumers", "1").parse().unwrap_or(1);
    let json = args
        .iter()
        .position(|a| a == "--json")
        .and_then(|i| args.get(i + 1))
        .cloned();

    // Create the topic (an existing one is fine).
    if let Ok(mut c) = strom::tools::Client::connect(&bootstrap) {
        use kafka_protocol::messages::create_topics_request::CreatableTopic;
        use kafka_protocol::messages::{
            ApiKey, CreateTopicsRequest, CreateTopicsResponse, TopicName,
        };
        let req = CreateTopicsRequest::default()
            .with_timeout_ms(10_000)
            .with_topics(vec![CreatableTopic::default()
                .with_name(TopicName(kafka_protocol::protocol::StrBytes::from_string(
                    topic.clone(),
                )))
                .with_num_partitions(partitions)
                .with_replication_factor(rf)]);
        let _ = c.call::<_, CreateTopicsResponse>(ApiKey::CreateTopics, 7, &req);
    }

    let sent = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let per_producer = records / producers.max(1);
    let mut handles = Vec::new();
    for _ in 0..producers {
        let (bootstrap, topic, acks, compression, linger, batch) = (
            bootstrap.clone(),
            topic.clone(),
            acks.clone(),
            compression.clone(),
            linger.clone(),
            batch.clone(),
        );
        let (sent, stop) = (sent.clone(), stop.clone());
        handles.push(std::thread::spawn(move || {
            let p: BaseProducer<Latencies> = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("acks", &acks)
                .set("compression.codec", &compression)
                .set("linger.ms", &linger)
                .set("batch.size", &batch)
                .set("queue.buffering.max.kbytes", "1048576")
                .set("log_level", "3")
                .create_with_context(Latencies {
                    micros: Mutex::new(Vec::new()),
                    failed: AtomicU64::new(0),
                })
                .expect("producer");
            let value: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) && (duration.is_some() || n < per_producer) {
                let rec: BaseRecord<(), [u8], Box<Instant>> =
                    BaseRecord::with_opaque_to(&topic, Box::new(Instant::now())).payload(&value);
                match p.send(rec) {
                    Ok(()) => {
                        n += 1;
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => p.poll(Duration::from_millis(1)),
                }
                if n.is_multiple_of(1000) {
                    p.poll(Duration::ZERO);
                }
            }
            let _ = p.flush(Duration::from_secs(120));
            let ctx = p.context();
            let lat = std::mem::take(&mut *ctx.micros.lock().unwrap_or_else(|p| p.into_inner()));
            (lat, ctx.failed.load(Ordering::Relaxed), start.elapsed())
        }));
    }
    // A progress line about once a second.
    let mut last = 0;
    while handles.iter().any(|h| !h.is_finished()) {
        std::thread::sleep(Duration::from_millis(100));
        if start.elapsed().as_millis() % 1000 >= 100 {
            continue;
        }
        let now = sent.load(Ordering::Relaxed);
        eprint!(
            "\r{:>6.1} s  {:>10} records queued  {:>9} records/s   ",
            start.elapsed().as_secs_f64(),
            now,
            now - last
        );
        last = now;
        if duration.is_some_and(|d| start.elapsed() >= Duration::from_secs(d)) {
            stop.store(true, Ordering::Relaxed);
        }
    }
    eprintln!();
    let mut latencies = Vec::new();
    let mut failed = 0;
    let mut produce_secs: f64 = 0.0;
    for h in handles {
        if let Ok((l, f, took)) = h.join() {
            latencies.extend(l);
            failed += f;
            produce_secs = produce_secs.max(took.as_secs_f64());
        }
    }
    latencies.sort_unstable();
    let acked = latencies.len() as f64;
    let mb = acked * size as f64 / 1e6;

    // Read everything back.
    let consume_start = Instant::now();
    let total = latencies.len() as u64;
    let got = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for c in 0..consumers.max(1) {
        let (bootstrap, topic, got, fetch_wait) = (
            bootstrap.clone(),
            topic.clone(),
            got.clone(),
            fetch_wait.clone(),
        );
        readers.push(std::thread::spawn(move || {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("fetch.wait.max.ms", &fetch_wait)
                .set("group.id", "bench")
                .set("enable.auto.commit", "false")
                .set("fetch.max.bytes", "52428800")
                .set("log_level", "3")
                .create()
                .expect("consumer");
            let mut tpl = TopicPartitionList::new();
            for p in (0..partitions).filter(|p| p % consumers.max(1) == c) {
                let _ = tpl.add_partition_offset(&topic, p, Offset::Beginning);
            }
            let _ = consumer.assign(&tpl);
            let started = Instant::now();
            while got.load(Ordering::Relaxed) < total
                && started.elapsed() < Duration::from_secs(120)
            {
                if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                    if m.payload().is_some() {
                        got.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for r in readers {
        let _ = r.join();
    }
    let consume_secs = consume_start.elapsed().as_secs_f64();
    let consumed = got.load(Ordering::Relaxed) as f64;

    let report = format!(
        "produce: {acked} records of {size} B in {produce_secs:.2} s = {:.0} records/s, {:.1} MB/s ({failed} failed)\n\
         latency ms: p50 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}\n\
         consume: {consumed} records in {consume_secs:.2} s = {:.0} records/s, {:.1} MB/s\n",
        acked / produce_secs,
        mb / produce_secs,
        pct(&latencies, 0.5),
        pct(&latencies, 0.99),
        pct(&latencies, 0.999),
        pct(&latencies, 1.0),
        consumed / consume_secs,
        consumed * size as f64 / 1e6 / consume_secs,
    );
    print!("{report}");
    if let Some(path) = json {
        let v = serde_json::json!({
            "bootstrap": bootstrap, "topic": topic, "partitions": partitions, "record_size": size,
            "acks": acks, "compression": compression, "linger_ms": linger, "producers": producers,
            "produced": acked, "failed": failed, "produce_seconds": produce_secs,
            "produce_records_per_s": acked / produce_secs, "produce_mb_per_s": mb / produce_secs,
            "latency_ms": {"p50": pct(&latencies, 0.5), "p99": pct(&latencies, 0.99), "p999": pct(&latencies, 0.999), "max": pct(&latencies, 1.0)},
            "consumed": consumed, "consume_seconds": consume_secs,
            "consume_records_per_s": consumed / consume_secs,
        });
        if let Err(e) = std::fs::write(&path, serde_json::to_vec_pretty(&v).unwrap_or_default()) {
            eprintln!("cannot write {path}: {e}");
        }
    }
    if failed == 0 && consumed as u64 == total {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
