//! The workload: idempotent acks=all producers (or plain acks=1 ones, one request in flight)
//! through librdkafka writing uniquely identified
//! records (producer, sequence), every acknowledgement recorded with its partition, offset and
//! times; a consumer group (two members, auto-commit) reading everything as it arrives; and the
//! final full read.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{Offset, TopicPartitionList};

/// One acknowledged record.
#[derive(Clone, Debug)]
pub struct Ack {
    pub producer: u32,
    pub seq: u64,
    pub partition: i32,
    pub offset: i64,
    pub sent: Duration,
    pub acked: Duration,
    /// When the leader appended it, into the run: the topic stamps batches with the broker's
    /// clock (LogAppendTime), which the acknowledgement carries back.
    pub appended: Option<Duration>,
}

/// One record read from the log (live or in the final read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub partition: i32,
    pub offset: i64,
    pub payload: Vec<u8>,
}

pub fn payload(producer: u32, seq: u64) -> Vec<u8> {
    format!("{producer}:{seq}").into_bytes()
}

pub fn parse(payload: &[u8]) -> Option<(u32, u64)> {
    let s = std::str::from_utf8(payload).ok()?;
    let (p, q) = s.split_once(':')?;
    Some((p.parse().ok()?, q.parse().ok()?))
}

struct Recorder {
    producer: u32,
    start: Instant,
    /// `start` on the wall clock, in Unix milliseconds (what LogAppendTime is measured in).
    start_unix_ms: i64,
    acks: Mutex<Vec<Ack>>,
    failures: Mutex<Vec<String>>,
}

/// With `CHAOS_PRODUCER_DEBUG=broker,topic,msg,...` the producers print librdkafka's own account
/// of what they did (with the wall-clock time, to line it up with the nodes' logs).
impl ClientContext for Recorder {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, line: &str) {
        if std::env::var_os("CHAOS_PRODUCER_DEBUG").is_some() {
            let now = wall_clock();
            eprintln!(
                "rdkafka {}.{:03} p{} {level:?} {fac}: {line}",
                now.as_secs(),
                now.subsec_millis(),
                self.producer
            );
        }
    }
}

impl ProducerContext for Recorder {
    type DeliveryOpaque = Box<(u64, Duration)>;
    fn delivery(&self, r: &DeliveryResult<'_>, opaque: Self::DeliveryOpaque) {
        let (seq, sent) = *opaque;
        match r {
            Ok(m) => {
                let acked = self.start.elapsed();
                let appended = match m.timestamp() {
                    rdkafka::Timestamp::LogAppendTime(ms) => Some(Duration::from_millis(
                        (ms - self.start_unix_ms).max(0) as u64,
                    )),
                    _ => None,
                };
                self.acks
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(Ack {
                        producer: self.producer,
                        seq,
                        partition: m.partition(),
                        offset: m.offset(),
                        sent,
                        acked,
                        appended,
                    })
            }
            Err((e, _)) => self
                .failures
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(e.to_string()),
        }
    }
}

pub struct Outcome {
    pub acks: Vec<Ack>,
    pub failures: Vec<String>,
    pub live: Vec<Seen>,
}

/// Runs `producers` producer threads (about `rate` records a second each) and the consumer group
/// until `stop` is set, then drains them (the group reads on until it has been idle for 8 s).
#[allow(clippy::too_many_arguments)]
pub fn run(
    bootstrap: &str,
    topic: &str,
    acks: i16,
    producers: u32,
    rate: u64,
    start: Instant,
    stop: Arc<AtomicBool>,
) -> Outcome {
    let mut handles = Vec::new();
    for id in 0..producers {
        let (bootstrap, topic, stop) = (bootstrap.to_string(), topic.to_string(), stop.clone());
        handles.push(std::thread::spawn(move || {
            let ctx = Recorder {
                producer: id,
                start,
                start_unix_ms: unix_ms_at(start),
                acks: Mutex::new(Vec::new()),
                failures: Mutex::new(Vec::new()),
            };
            let mut config = ClientConfig::new();
            if let Ok(debug) = std::env::var("CHAOS_PRODUCER_DEBUG") {
                // The crate sets the client's level after creating it, from `set_log_level`.
                config
                    .set("debug", debug)
                    .set_log_level(rdkafka::config::RDKafkaLogLevel::Debug);
            }
            if acks == -1 {
                config.set("enable.idempotence", "true").set("acks", "all");
            } else {
                config
                    .set("enable.idempotence", "false")
                    .set("acks", acks.to_string())
                    .set("max.in.flight.requests.per.connection", "1");
            }
            let p: BaseProducer<Recorder> = config
                .set("bootstrap.servers", &bootstrap)
                .set("linger.ms", "2")
                .set("message.timeout.ms", "120000")
                .set(
                    "log_level",
                    if std::env::var_os("CHAOS_PRODUCER_DEBUG").is_some() {
                        "7"
                    } else {
                        "3"
                    },
                )
                .create_with_context(ctx)
                .expect("producer");
            let begun = Instant::now();
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let body = payload(id, seq);
                let key = seq.to_be_bytes();
                let rec = BaseRecord::with_opaque_to(&topic, Box::new((seq, start.elapsed())))
                    .key(&key)
                    .payload(&body);
                if p.send(rec).is_ok() {
                    seq += 1;
                }
                p.poll(Duration::ZERO);
                let due = Duration::from_micros(seq * 1_000_000 / rate.max(1));
                if let Some(wait) = due.checked_sub(begun.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
            let _ = p.flush(Duration::from_secs(120));
            let ctx = p.context();
            let acks = std::mem::take(&mut *ctx.acks.lock().unwrap_or_else(|p| p.into_inner()));
            let failures =
                std::mem::take(&mut *ctx.failures.lock().unwrap_or_else(|p| p.into_inner()));
            (acks, failures)
        }));
    }
    // Two members of one consumer group read everything as it arrives (auto-commit), and keep
    // reading after the producers finish until they have been idle for a while.
    let drained = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (bs, t, drained) = (bootstrap.to_string(), topic.to_string(), drained.clone());
            std::thread::spawn(move || {
                let c = group_member(&bs);
                let _ = c.subscribe(&[t.as_str()]);
                let mut seen = Vec::new();
                let mut idle_since = Instant::now();
                let mut drain_started: Option<Instant> = None;
                loop {
                    if drained.load(Ordering::Relaxed) {
                        let started = *drain_started.get_or_insert_with(Instant::now);
                        if idle_since.elapsed() > Duration::from_secs(8)
                            || started.elapsed() > Duration::from_secs(90)
                        {
                            break;
                        }
                    }
                    if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
                        idle_since = Instant::now();
                        seen.push(Seen {
                            partition: m.partition(),
                            offset: m.offset(),
                            payload: m.payload().unwrap_or_default().to_vec(),
                        });
                    }
                }
                seen
            })
        })
        .collect();
    let mut out = Outcome {
        acks: Vec::new(),
        failures: Vec::new(),
        live: Vec::new(),
    };
    for h in handles {
        if let Ok((acks, failures)) = h.join() {
            out.acks.extend(acks);
            out.failures.extend(failures);
        }
    }
    drained.store(true, Ordering::Relaxed);
    for r in readers {
        out.live.extend(r.join().unwrap_or_default());
    }
    out
}

/// The wall clock, since the Unix epoch (to line chaos output up with the nodes' logs).
pub fn wall_clock() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

/// `at` on the wall clock, in Unix milliseconds.
pub fn unix_ms_at(at: Instant) -> i64 {
    wall_clock().saturating_sub(at.elapsed()).as_millis() as i64
}

/// A member of the workload's consumer group.
fn group_member(bootstrap: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "chaos-group")
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "500")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .set("check.crcs", "true")
        .set("log_level", "2")
        .create()
        .expect("consumer")
}

fn consumer(bootstrap: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "chaos-reader")
        .set("enable.auto.commit", "false")
        .set("check.crcs", "true")
        .set("log_level", "3")
        .create()
        .expect("consumer")
}

fn assign_all(c: &BaseConsumer, topic: &str, partitions: i32) {
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        let _ = tpl.add_partition_offset(topic, p, Offset::Beginning);
    }
    let _ = c.assign(&tpl);
}

/// Reads every partition from offset zero up to its high watermark.
pub fn final_read(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    timeout: Duration,
) -> anyhow::Result<Vec<Seen>> {
    let c = consumer(bootstrap);
    let mut ends = HashMap::new();
    for p in 0..partitions {
        let (_, high) = c.fetch_watermarks(topic, p, Duration::from_secs(10))?;
        ends.insert(p, high);
    }
    let total: i64 = ends.values().sum();
    assign_all(&c, topic, partitions);
    let mut out = Vec::with_capacity(total as usize);
    let started = Instant::now();
    while (out.len() as i64) < total && started.elapsed() < timeout {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) if m.offset() < ends[&m.partition()] => out.push(Seen {
                partition: m.partition(),
                offset: m.offset(),
                payload: m.payload().unwrap_or_default().to_vec(),
            }),
            Some(Ok(_)) => {}
            Some(Err(e)) => anyhow::bail!("final read failed: {e}"),
            None => {}
        }
    }
    anyhow::ensure!(
        out.len() as i64 == total,
        "final read got {} of {total} records",
        out.len()
    );
    Ok(out)
}
