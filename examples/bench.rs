//! A load generator on librdkafka, so figures come from a real client and can be set beside any
//! other Kafka-compatible broker:
//!
//! `cargo run --release --example bench -- --bootstrap 127.0.0.1:9092 --records 1000000
//!  --record-size 100 --partitions 6 --acks all --compression none --linger-ms 5 --producers 1
//!  --consumers 1 --fetch-wait-ms 500 --partition-fetch-bytes 1048576 [--duration 30s]
//!  [--rate 100000] [--no-consume] [--latency-by-second] [--broker-pid 1234,1235]
//!  [--json out.json] [--admin-bootstrap 127.0.0.1:9092] [-X security.protocol=SASL_SSL -X sasl.mechanism=SCRAM-SHA-512 ...]
//!  [--keys 100000] [--topic-config cleanup.policy=compact ...] [--transaction-ms 100]`
//!  or, for idle topics: `bench --bootstrap .. --idle-topics 1000 [--broker-pid ..]`
//!  or, for memory over topic churn: `bench --bootstrap .. --churn 20 --records 200000
//!  --record-size 1024 --partitions 8 --broker-pid ..`
//!
//! `-X name=value` (as kcat's) is given to every client: security settings, for instance.
//! `--keys N` gives record n the key `k<n % N>` (a compacted topic takes only keyed records);
//! `--topic-config name=value` (repeated) configures the topic the bench creates.
//! `--transaction-ms N` makes each producer transactional (its own transactional id), committing
//! a transaction every N ms.
//!
//! Producers write for `--records` records or `--duration` (at most `--rate` records/s in all),
//! with a live progress line, then consumers read every partition back from the start. It prints
//! records/s, MB/s and produce latency p50/p99/p99.9/max; with `--broker-pid`, the brokers' CPU
//! seconds per GB produced and consumed and their peak RSS; and can write it all as JSON.
//! `--idle-topics N` creates N one-partition topics instead and times Metadata requests;
//! `--churn N` runs N rounds of create topic, produce, delete topic and prints the brokers' RSS.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{Offset, TopicPartitionList};

/// Every `-X name=value` of the command line, given to each client.
static EXTRA: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();

/// A client configuration with the `-X` settings.
fn config() -> ClientConfig {
    let mut c = ClientConfig::new();
    for (k, v) in EXTRA.get().map(Vec::as_slice).unwrap_or_default() {
        c.set(k, v);
    }
    c
}

#[path = "common/mod.rs"]
mod common;
use common::arg;

struct Latencies {
    /// (when the record was sent, produce latency in µs) per acknowledged record.
    micros: Mutex<Vec<(Instant, u64)>>,
    failed: AtomicU64,
    /// Send times travel with each record as µs since this instant (no allocation per record).
    epoch: Instant,
}

impl Latencies {
    fn new() -> Latencies {
        Latencies {
            micros: Mutex::new(Vec::new()),
            failed: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// Now, as a record's delivery opaque.
    fn stamp(&self) -> usize {
        self.epoch.elapsed().as_micros() as usize
    }
}

impl ClientContext for Latencies {}

impl ProducerContext for Latencies {
    type DeliveryOpaque = usize;
    fn delivery(&self, r: &DeliveryResult<'_>, sent: usize) {
        match r {
            Ok(_) => {
                let sent = self.epoch + Duration::from_micros(sent as u64);
                let latency = sent.elapsed().as_micros() as u64;
                self.micros
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((sent, latency));
            }
            Err(_) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The client's queue is full: serve delivery reports until it shrinks, for at most about
/// 10 ms (so a caller can check whether to stop). Not `poll(1 ms)`: the rdkafka crate rounds
/// the time left down to whole milliseconds, so a short poll busy-waits its whole timeout,
/// taking a core from the client's own I/O thread and the broker.
fn wait_for_room(p: &BaseProducer<Latencies>) {
    let before = p.in_flight_count();
    for _ in 0..50 {
        p.poll(Duration::ZERO);
        if p.in_flight_count() < before {
            return;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// One line per second of the run: records sent in it and their produce latency, so a tail can
/// be placed in time (a stall, a burst) rather than spread over the whole run.
fn print_latency_by_second(start: Instant, sent: &[(Instant, u64)]) {
    let mut by: std::collections::BTreeMap<u64, Vec<u64>> = Default::default();
    for &(at, l) in sent {
        by.entry(at.saturating_duration_since(start).as_secs())
            .or_default()
            .push(l);
    }
    for (s, mut l) in by {
        l.sort_unstable();
        println!(
            "  second {s:>3}: {:>8} acked  latency ms p50 {:>8.2}  p99 {:>8.2}  max {:>8.2}",
            l.len(),
            pct(&l, 0.5),
            pct(&l, 0.99),
            pct(&l, 1.0)
        );
    }
}

fn pct(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)] as f64 / 1000.0
}

/// CPU time of the given processes in seconds: (user, kernel), from `/proc/<pid>/stat`
/// (Linux, 100 ticks per second).
fn cpu_seconds(pids: &[u32]) -> (f64, f64) {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|stat| {
            // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
            let rest = stat.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some((
                f.get(11)?.parse::<f64>().ok()?,
                f.get(12)?.parse::<f64>().ok()?,
            ))
        })
        .fold((0.0, 0.0), |(u, k), (du, dk)| {
            (u + du / 100.0, k + dk / 100.0)
        })
}

/// The largest peak resident set (VmHWM) among the given processes, in MB.
fn peak_rss_mb(pids: &[u32]) -> f64 {
    status_kb(pids, "VmHWM:") / 1024.0
}

/// The largest value of a `/proc/<pid>/status` line (in kB) among the given processes.
fn status_kb(pids: &[u32], field: &str) -> f64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|status| {
            let line = status.lines().find(|l| l.starts_with(field))?;
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .fold(0.0, f64::max)
}

/// Creates topics through CreateTopics (existing ones are fine), 100 per request.
fn create_topics(
    bootstrap: &str,
    names: &[String],
    partitions: i32,
    rf: i16,
    configs: &[(String, String)],
) {
    use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
    use kafka_protocol::messages::{ApiKey, CreateTopicsRequest, CreateTopicsResponse, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let Ok(mut c) = strom::tools::Client::connect(bootstrap) else {
        eprintln!("cannot connect to {bootstrap} to create topics");
        return;
    };
    for chunk in names.chunks(100) {
        let req = CreateTopicsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(
                chunk
                    .iter()
                    .map(|name| {
                        CreatableTopic::default()
                            .with_name(TopicName(StrBytes::from_string(name.clone())))
                            .with_num_partitions(partitions)
                            .with_replication_factor(rf)
                            .with_configs(
                                configs
                                    .iter()
                                    .map(|(k, v)| {
                                        CreatableTopicConfig::default()
                                            .with_name(StrBytes::from_string(k.clone()))
                                            .with_value(Some(StrBytes::from_string(v.clone())))
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
        // Retry while the cluster is still forming (e.g. too few brokers registered for the
        // replication factor); 36 = TOPIC_ALREADY_EXISTS is fine.
        let started = Instant::now();
        loop {
            let failed: Vec<String> =
                match c.call::<_, CreateTopicsResponse>(ApiKey::CreateTopics, 7, &req) {
                    Ok(resp) => resp
                        .topics
                        .iter()
                        .filter(|t| t.error_code != 0 && t.error_code != 36)
                        .map(|t| format!("{}: error {}", t.name.0, t.error_code))
                        .collect(),
                    Err(e) => vec![format!("CreateTopics: {e}")],
                };
            if failed.is_empty() {
                break;
            }
            if started.elapsed() > Duration::from_secs(30) {
                eprintln!("cannot create topics: {}", failed.join(", "));
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// Waits (up to 300 s, with a progress line) until librdkafka sees `want` partitions, all with
/// a leader, in the topics `pick` selects.
fn wait_for_leaders(
    bootstrap: &str,
    pick: impl Fn(&str) -> bool,
    want: usize,
) -> Result<(), String> {
    let client: BaseConsumer = config()
        .set("bootstrap.servers", bootstrap)
        .set("log_level", "3")
        .create()
        .map_err(|e| format!("client: {e}"))?;
    let started = Instant::now();
    loop {
        let led = client
            .fetch_metadata(None, Duration::from_secs(10))
            .map(|md| {
                md.topics()
                    .iter()
                    .filter(|t| pick(t.name()))
                    .flat_map(|t| t.partitions())
                    .filter(|p| p.leader() >= 0)
                    .count()
            })
            .unwrap_or(0);
        eprint!("\r{led}/{want} partitions have a leader   ");
        if led >= want {
            eprintln!();
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(300) {
            return Err(format!(
                "only {led} of {want} partitions have a leader after 300 s"
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Workload 5: `n` idle one-partition topics; the brokers' RSS and the latency of Metadata
/// requests for every topic and for one topic, through librdkafka.
fn metadata_with_idle_topics(
    bootstrap: &str,
    prefix: &str,
    n: usize,
    brokers: &[u32],
) -> std::process::ExitCode {
    let rss_before = rss_mb(brokers);
    let names: Vec<String> = (0..n).map(|i| format!("{prefix}-idle-{i}")).collect();
    let started = Instant::now();
    create_topics(bootstrap, &names, 1, 1, &[]);
    let client: BaseConsumer = match config()
        .set("bootstrap.servers", bootstrap)
        .set("log_level", "3")
        .create()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("client: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if let Err(e) = wait_for_leaders(bootstrap, |name| name.starts_with(prefix), n) {
        eprintln!("{e}");
        return std::process::ExitCode::FAILURE;
    }
    let created_secs = started.elapsed().as_secs_f64();
    // Let the brokers settle, then measure.
    std::thread::sleep(Duration::from_secs(2));
    let time = |topic: Option<&str>| {
        let mut micros: Vec<u64> = (0..200)
            .filter_map(|_| {
                let t = Instant::now();
                client
                    .fetch_metadata(topic, Duration::from_secs(10))
                    .ok()
                    .map(|_| t.elapsed().as_micros() as u64)
            })
            .collect();
        micros.sort_unstable();
        micros
    };
    let all = time(None);
    let one = time(Some(&names[0]));
    println!(
        "{n} topics created and led in {created_secs:.1} s; broker RSS {rss_before:.1} MB before, {:.1} MB after (largest broker)",
        rss_mb(brokers)
    );
    for (what, m) in [("all topics", &all), ("one topic", &one)] {
        println!(
            "Metadata ({what}), {} requests: p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            m.len(),
            pct(m, 0.5),
            pct(m, 0.99),
            pct(m, 1.0)
        );
    }
    std::process::ExitCode::SUCCESS
}

/// Deletes topics through DeleteTopics.
fn delete_topics(bootstrap: &str, names: &[String]) -> Result<(), String> {
    use kafka_protocol::messages::{ApiKey, DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let mut c = strom::tools::Client::connect(bootstrap).map_err(|e| e.to_string())?;
    let req = DeleteTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topic_names(
            names
                .iter()
                .map(|n| TopicName(StrBytes::from_string(n.clone())))
                .collect(),
        );
    let resp: DeleteTopicsResponse = c
        .call(ApiKey::DeleteTopics, 4, &req)
        .map_err(|e| e.to_string())?;
    match resp.responses.iter().find(|r| r.error_code != 0) {
        Some(r) => Err(format!("DeleteTopics: error {}", r.error_code)),
        None => Ok(()),
    }
}

/// Rounds of: create a topic, produce `records` records of `size` B into it (acks=1), delete
/// it; the brokers' RSS after each round shows whether memory follows data and topics away.
fn churn(
    bootstrap: &str,
    prefix: &str,
    rounds: usize,
    (partitions, records, size): (i32, u64, usize),
    brokers: &[u32],
) -> std::process::ExitCode {
    println!(
        "broker RSS before: {:.1} MB (largest broker)",
        rss_mb(brokers)
    );
    let value = vec![b'c'; size];
    for round in 0..rounds {
        let topic = format!("{prefix}-churn-{round}");
        create_topics(bootstrap, std::slice::from_ref(&topic), partitions, 1, &[]);
        if let Err(e) = wait_for_leaders(bootstrap, |n| n == topic, partitions as usize) {
            eprintln!("{e}");
            return std::process::ExitCode::FAILURE;
        }
        let p: BaseProducer<Latencies> = match config()
            .set("bootstrap.servers", bootstrap)
            .set("acks", "1")
            .set("linger.ms", "5")
            .set("queue.buffering.max.kbytes", "1048576")
            .set("log_level", "3")
            .create_with_context(Latencies::new())
        {
            Ok(p) => p,
            Err(e) => {
                eprintln!("producer: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        let started = Instant::now();
        let mut n = 0;
        while n < records {
            let rec = BaseRecord::<(), [u8], usize>::with_opaque_to(&topic, p.context().stamp())
                .payload(&value);
            match p.send(rec) {
                Ok(()) => n += 1,
                Err(_) => wait_for_room(&p),
            }
        }
        // flush only times out; a refused record shows in the delivery count.
        if p.flush(Duration::from_secs(120)).is_err()
            || p.context().failed.load(Ordering::Relaxed) > 0
        {
            eprintln!("round {round}: not every record was acknowledged");
            return std::process::ExitCode::FAILURE;
        }
        drop(p);
        let produced_rss = rss_mb(brokers);
        if let Err(e) = delete_topics(bootstrap, std::slice::from_ref(&topic)) {
            eprintln!("round {round}: {e}");
            return std::process::ExitCode::FAILURE;
        }
        // Deletion finishes in the background on each broker.
        std::thread::sleep(Duration::from_secs(2));
        println!(
            "round {round:>3}: {:.0} MB produced in {:.1} s; broker RSS {produced_rss:.1} MB after producing, {:.1} MB after deleting",
            records as f64 * size as f64 / 1e6,
            started.elapsed().as_secs_f64(),
            rss_mb(brokers)
        );
    }
    std::process::ExitCode::SUCCESS
}

/// The largest current resident set (VmRSS) among the given processes, in MB.
fn rss_mb(pids: &[u32]) -> f64 {
    status_kb(pids, "VmRSS:") / 1024.0
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let extra = args
        .windows(2)
        .filter(|w| w[0] == "-X")
        .filter_map(|w| w[1].split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let _ = EXTRA.set(extra);
    if args.iter().any(|a| a == "--help" || a == "-h") {
        common::print_help(include_str!("bench.rs"));
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
    // Consumer max.partition.fetch.bytes (librdkafka's default is 1 MiB per partition per fetch).
    let partition_fetch = arg(&args, "--partition-fetch-bytes", "1048576");
    let batch = arg(&args, "--batch-size", "1000000");
    let producers: u64 = arg(&args, "--producers", "1").parse().unwrap_or(1);
    let consumers: i32 = arg(&args, "--consumers", "1").parse().unwrap_or(1);
    // Records per second over all producers (0: as fast as possible).
    let rate: f64 = arg(&args, "--rate", "0").parse().unwrap_or(0.0);
    let consume = !args.iter().any(|a| a == "--no-consume");
    // Print p50/p99/max of produce latency for each second records were sent in.
    let by_second = args.iter().any(|a| a == "--latency-by-second");
    let brokers: Vec<u32> = arg(&args, "--broker-pid", "")
        .split(',')
        .filter_map(|p| p.trim().parse().ok())
        .collect();
    // Workload 5: create this many one-partition topics, then time Metadata requests.
    let idle_topics: Option<usize> = arg(&args, "--idle-topics", "").parse().ok();
    // Memory over topic churn: this many rounds of create, produce --records, delete.
    let churn_rounds: Option<usize> = arg(&args, "--churn", "").parse().ok();
    // Keyed records (`k<n % keys>`), e.g. for a compacted topic; 0: no key.
    let keys: u64 = arg(&args, "--keys", "0").parse().unwrap_or(0);
    // Transactional producers committing every this many ms (0: not transactional).
    let txn_ms: u64 = arg(&args, "--transaction-ms", "0").parse().unwrap_or(0);
    // `--topic-config name=value`, repeated: configs of the topic the bench creates.
    let topic_configs: Vec<(String, String)> = args
        .windows(2)
        .filter(|w| w[0] == "--topic-config")
        .filter_map(|w| w[1].split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let json = args
        .iter()
        .position(|a| a == "--json")
        .and_then(|i| args.get(i + 1))
        .cloned();

    if let Some(n) = idle_topics {
        return metadata_with_idle_topics(&bootstrap, &topic, n, &brokers);
    }
    if let Some(rounds) = churn_rounds {
        return churn(
            &bootstrap,
            &topic,
            rounds,
            (partitions, records, size),
            &brokers,
        );
    }
    // The topic is made with strom's own (plaintext) client: `--admin-bootstrap` names a
    // plaintext listener when `--bootstrap` is a TLS or SASL one.
    let admin = arg(&args, "--admin-bootstrap", &bootstrap);
    create_topics(
        &admin,
        std::slice::from_ref(&topic),
        partitions,
        rf,
        &topic_configs,
    );
    // Start the clock only once every partition has a leader, so no record waits for one.
    if let Err(e) = wait_for_leaders(&bootstrap, |name| name == topic, partitions as usize) {
        eprintln!("{e}");
        return std::process::ExitCode::FAILURE;
    }

    let sent = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    // Producers warm up (below), then all start together with the clock.
    let ready = Arc::new(std::sync::Barrier::new(producers as usize + 1));
    let per_producer = records / producers.max(1);
    let mut handles = Vec::new();
    for producer in 0..producers {
        let (bootstrap, topic, acks, compression, linger, batch) = (
            bootstrap.clone(),
            topic.clone(),
            acks.clone(),
            compression.clone(),
            linger.clone(),
            batch.clone(),
        );
        let (sent, stop, ready) = (sent.clone(), stop.clone(), ready.clone());
        handles.push(std::thread::spawn(move || {
            let mut conf = config();
            if txn_ms > 0 {
                conf.set(
                    "transactional.id",
                    format!("bench-{}-{producer}", std::process::id()),
                );
            }
            let p: BaseProducer<Latencies> = conf
                .set("bootstrap.servers", &bootstrap)
                .set("acks", &acks)
                .set("compression.codec", &compression)
                .set("linger.ms", &linger)
                .set("batch.size", &batch)
                .set("queue.buffering.max.kbytes", "1048576")
                .set("log_level", "3")
                .create_with_context(Latencies::new())
                .expect("producer");
            let txn = Duration::from_millis(txn_ms);
            if txn_ms > 0 {
                p.init_transactions(Duration::from_secs(30))
                    .expect("init_transactions");
                p.begin_transaction().expect("begin_transaction");
            }
            let value: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
            // Warm-up, not timed: one record to every partition, acknowledged, so connecting,
            // the client's first metadata and a new topic's first replication round are not
            // counted as produce latency.
            for part in 0..partitions {
                let rec: BaseRecord<[u8], [u8], usize> =
                    BaseRecord::with_opaque_to(&topic, p.context().stamp())
                        .payload(value.as_slice())
                        .partition(part);
                let rec = if keys > 0 { rec.key(b"k0") } else { rec };
                if let Err((e, _)) = p.send(rec) {
                    eprintln!("warm-up record: {e}");
                }
            }
            if txn_ms > 0 {
                p.commit_transaction(Duration::from_secs(60))
                    .expect("commit the warm-up");
                p.begin_transaction().expect("begin_transaction");
            }
            let _ = p.flush(Duration::from_secs(60));
            let ctx = p.context();
            ctx.micros.lock().unwrap_or_else(|p| p.into_inner()).clear();
            let warm_failed = ctx.failed.swap(0, Ordering::Relaxed);
            if warm_failed > 0 {
                eprintln!("{warm_failed} warm-up records failed");
            }
            ready.wait();
            let start = Instant::now();
            let mut committed_at = Instant::now();
            let mut n = 0u64;
            let per_second = rate / producers.max(1) as f64;
            while !stop.load(Ordering::Relaxed) && (duration.is_some() || n < per_producer) {
                if per_second > 0.0 {
                    // Hold this producer to its share of --rate: wait until record n is due.
                    let due = Duration::from_secs_f64(n as f64 / per_second);
                    if let Some(wait) = due.checked_sub(start.elapsed()) {
                        std::thread::sleep(wait.min(Duration::from_millis(5)));
                        p.poll(Duration::ZERO);
                        continue;
                    }
                }
                let key;
                let mut rec: BaseRecord<[u8], [u8], usize> =
                    BaseRecord::with_opaque_to(&topic, p.context().stamp()).payload(&value);
                if keys > 0 {
                    key = format!("k{}", n % keys);
                    rec = rec.key(key.as_bytes());
                }
                match p.send(rec) {
                    Ok(()) => {
                        n += 1;
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => wait_for_room(&p),
                }
                if n.is_multiple_of(1000) {
                    p.poll(Duration::ZERO);
                }
                if txn_ms > 0 && committed_at.elapsed() >= txn {
                    p.commit_transaction(Duration::from_secs(60))
                        .expect("commit_transaction");
                    p.begin_transaction().expect("begin_transaction");
                    committed_at = Instant::now();
                }
            }
            if txn_ms > 0 {
                p.commit_transaction(Duration::from_secs(120))
                    .expect("commit_transaction");
            }
            let _ = p.flush(Duration::from_secs(120));
            let ctx = p.context();
            let lat = std::mem::take(&mut *ctx.micros.lock().unwrap_or_else(|p| p.into_inner()));
            (lat, ctx.failed.load(Ordering::Relaxed), start.elapsed())
        }));
    }
    ready.wait();
    let cpu_before_produce = cpu_seconds(&brokers);
    let start = Instant::now();
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
    let mut sent_latencies = Vec::new();
    let mut failed = 0;
    let mut produce_secs: f64 = 0.0;
    for h in handles {
        if let Ok((l, f, took)) = h.join() {
            sent_latencies.extend(l);
            failed += f;
            produce_secs = produce_secs.max(took.as_secs_f64());
        }
    }
    if by_second {
        // Wall-clock start, to line the seconds up with broker logs or system traces.
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64() - start.elapsed().as_secs_f64())
            .unwrap_or(0.0);
        println!("  produce started at unix time {unix:.3}");
        print_latency_by_second(start, &sent_latencies);
    }
    let mut latencies: Vec<u64> = sent_latencies.into_iter().map(|(_, l)| l).collect();
    latencies.sort_unstable();
    let acked = latencies.len() as f64;
    let mb = acked * size as f64 / 1e6;
    let cpu_after_produce = cpu_seconds(&brokers);

    // Read everything back.
    let consume_start = Instant::now();
    // Every record acknowledged, and the warm-up records.
    let warmed = producers * partitions as u64;
    let total = if consume {
        latencies.len() as u64 + warmed
    } else {
        0
    };
    let got = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for c in 0..if consume { consumers.max(1) } else { 0 } {
        let (bootstrap, topic, got, fetch_wait, partition_fetch) = (
            bootstrap.clone(),
            topic.clone(),
            got.clone(),
            fetch_wait.clone(),
            partition_fetch.clone(),
        );
        readers.push(std::thread::spawn(move || {
            let consumer: BaseConsumer = config()
                .set("bootstrap.servers", &bootstrap)
                .set("fetch.wait.max.ms", &fetch_wait)
                .set("group.id", "bench")
                .set("enable.auto.commit", "false")
                .set("fetch.max.bytes", "52428800")
                .set("max.partition.fetch.bytes", &partition_fetch)
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
    let cpu_after_consume = cpu_seconds(&brokers);
    let produce_user = cpu_after_produce.0 - cpu_before_produce.0;
    let produce_cpu = produce_user + cpu_after_produce.1 - cpu_before_produce.1;
    let consume_cpu =
        cpu_after_consume.0 + cpu_after_consume.1 - cpu_after_produce.0 - cpu_after_produce.1;
    let consumed_gb = consumed * size as f64 / 1e9;
    let peak_rss_mb = peak_rss_mb(&brokers);

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
    if !brokers.is_empty() {
        println!(
            "brokers {brokers:?}: CPU {produce_cpu:.2} s producing ({:.2} s/GB, of which user space {:.2} s/GB), {consume_cpu:.2} s consuming ({:.2} s/GB); peak RSS {peak_rss_mb:.1} MB (largest broker)",
            produce_cpu / (mb / 1e3),
            produce_user / (mb / 1e3),
            if consume { consume_cpu / consumed_gb } else { f64::NAN },
        );
    }
    if let Some(path) = json {
        let v = serde_json::json!({
            "bootstrap": bootstrap, "topic": topic, "partitions": partitions, "record_size": size,
            "acks": acks, "compression": compression, "linger_ms": linger, "producers": producers,
            "produced": acked, "failed": failed, "produce_seconds": produce_secs,
            "produce_records_per_s": acked / produce_secs, "produce_mb_per_s": mb / produce_secs,
            "latency_ms": {"p50": pct(&latencies, 0.5), "p99": pct(&latencies, 0.99), "p999": pct(&latencies, 0.999), "max": pct(&latencies, 1.0)},
            "consumed": consumed, "consume_seconds": consume_secs,
            "consume_records_per_s": consumed / consume_secs,
            "consume_mb_per_s": consumed_gb * 1e3 / consume_secs, "rate": rate,
            "broker_pids": brokers, "broker_cpu_produce_s": produce_cpu,
            "broker_cpu_consume_s": consume_cpu, "broker_user_cpu_produce_s": produce_user, "broker_peak_rss_mb": peak_rss_mb,
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
