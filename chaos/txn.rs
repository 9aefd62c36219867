//! The transactional workload (`--txn`): a consume-transform-produce processor, as Kafka
//! Streams runs one. It reads the main workload's topic with `read_committed` and, for each
//! record, writes `out:<txn>:<producer>:<seq>` to the same partition of `chaos-out` inside a
//! transaction that also commits the consumed positions (send_offsets_to_transaction). Every
//! fifth transaction is aborted on purpose; a transaction the client fails is aborted (or, on a
//! fatal error or a client call that does not return in 90 s, the producer is made again,
//! which fences the old one). After an abort it
//! rewinds to the group's committed positions. Each transaction's outputs and fate are
//! recorded for the `txn-*` checkers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use super::workload::Seen;

pub const OUT_TOPIC: &str = "chaos-out";
pub const TRANSACTIONAL_ID: &str = "chaos-eos";
const GROUP: &str = "chaos-eos-group";
const T: Duration = Duration::from_secs(30);

/// What the processor was told about one transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    Committed,
    /// Aborted by the processor (on purpose, or after an abortable error).
    Aborted,
    /// The client failed it fatally: it may have committed or not, but whole or not at all.
    Unknown,
}

#[derive(Clone, Debug)]
pub struct TxnRun {
    pub id: u64,
    pub fate: Fate,
    /// (partition, payload) in the order produced.
    pub outputs: Vec<(i32, String)>,
}

pub struct TxnOutcome {
    pub txns: Vec<TxnRun>,
    /// Whether the processor caught up with the source's end before its deadline.
    pub caught_up: bool,
    pub errors: Vec<String>,
}

pub fn output(txn: u64, source: &[u8]) -> String {
    format!("out:{txn}:{}", String::from_utf8_lossy(source))
}

/// (txn, producer, seq) of an output payload.
pub fn parse_output(payload: &[u8]) -> Option<(u64, u32, u64)> {
    let s = std::str::from_utf8(payload).ok()?;
    let mut it = s.strip_prefix("out:")?.splitn(2, ':');
    let txn = it.next()?.parse().ok()?;
    let (p, q) = super::workload::parse(it.next()?.as_bytes())?;
    Some((txn, p, q))
}

/// Polled by its own thread: aborting waits for every delivery report, which a producer only
/// gets by being polled.
type TxnProducer = ThreadedProducer<DefaultProducerContext>;

fn producer(bootstrap: &str) -> Option<TxnProducer> {
    let p: TxnProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("transactional.id", TRANSACTIONAL_ID)
        .set("transaction.timeout.ms", "20000")
        .set("message.timeout.ms", "20000")
        .set("linger.ms", "5")
        .set("log_level", "2")
        .create()
        .ok()?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        match p.init_transactions(T) {
            Ok(()) => return Some(p),
            Err(e) => {
                eprintln!("chaos txn: init_transactions: {e}");
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
    None
}

/// Prints librdkafka's log lines (with `CHAOS_TXN_DEBUG=fetch,topic,...`: its own account of
/// the processor's consuming, for a run that gets stuck).
struct Logger {
    on: bool,
}

impl rdkafka::client::ClientContext for Logger {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, line: &str) {
        if self.on {
            eprintln!("rdkafka {level:?} {fac}: {line}");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for Logger {}

type TxnConsumer = BaseConsumer<Logger>;

fn consumer(bootstrap: &str) -> TxnConsumer {
    let mut conf = ClientConfig::new();
    if let Ok(debug) = std::env::var("CHAOS_TXN_DEBUG") {
        conf.set("debug", debug)
            .set_log_level(rdkafka::config::RDKafkaLogLevel::Debug);
    } else {
        conf.set("log_level", "2");
    }
    conf.set("bootstrap.servers", bootstrap)
        .set("group.id", GROUP)
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("check.crcs", "true")
        .create_with_context(Logger {
            on: std::env::var_os("CHAOS_TXN_DEBUG").is_some(),
        })
        .expect("consumer")
}

/// Assigns every source partition at the group's committed position (the log start without
/// one); returns those positions.
fn rewind(c: &TxnConsumer, topic: &str, partitions: i32) -> Option<Vec<i64>> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let committed = c.committed_offsets(tpl, Duration::from_secs(10)).ok()?;
    let mut at = vec![0i64; partitions as usize];
    for e in committed.elements() {
        if let (Offset::Offset(o), Some(slot)) = (e.offset(), at.get_mut(e.partition() as usize)) {
            *slot = o;
        }
    }
    assign_at(c, topic, &at).then_some(at)
}

fn assign_at(c: &TxnConsumer, topic: &str, at: &[i64]) -> bool {
    let mut start = TopicPartitionList::new();
    for (p, o) in at.iter().enumerate() {
        let _ = start.add_partition_offset(topic, p as i32, Offset::Offset(*o));
    }
    c.assign(&start).is_ok()
}

/// Moves the consumer back to `at` after an abort (seek where it can, else assign).
fn seek_back(c: &TxnConsumer, topic: &str, at: &[i64]) {
    let sought = at.iter().enumerate().all(|(p, o)| {
        c.seek(topic, p as i32, Offset::Offset(*o), Duration::from_secs(10))
            .is_ok()
    });
    if !sought {
        while !assign_at(c, topic, at) {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Whether the consumer's position is at the source's end in every partition.
fn caught_up(c: &TxnConsumer, topic: &str, partitions: i32, next: &[i64]) -> bool {
    (0..partitions).all(|p| {
        c.fetch_watermarks(topic, p, Duration::from_secs(5))
            .is_ok_and(|(_, high)| next[p as usize] >= high)
    })
}

/// Runs the processor until `stop` is set and it has caught up with `topic` (at most two
/// minutes more).
pub fn run(bootstrap: &str, topic: &str, partitions: i32, stop: Arc<AtomicBool>) -> TxnOutcome {
    let mut out = TxnOutcome {
        txns: Vec::new(),
        caught_up: false,
        errors: Vec::new(),
    };
    let Some(mut p) = producer(bootstrap).map(Arc::new) else {
        out.errors
            .push("the transactional producer never initialized".into());
        return out;
    };
    let c = consumer(bootstrap);
    // The next offset to consume per source partition: where the last committed transaction
    // left the group.
    let mut next = loop {
        match rewind(&c, topic, partitions) {
            Some(at) => break at,
            None => std::thread::sleep(Duration::from_millis(500)),
        }
    };
    let meta = Arc::new(c.group_metadata().expect("group metadata"));
    let mut txn = 0u64;
    let mut stopped_at: Option<Instant> = None;
    loop {
        if stop.load(Ordering::Relaxed) {
            let since = *stopped_at.get_or_insert_with(Instant::now);
            if since.elapsed() > Duration::from_secs(120) {
                let marks: Vec<_> = (0..partitions)
                    .map(|p| c.fetch_watermarks(topic, p, Duration::from_secs(5)).ok())
                    .collect();
                out.errors.push(format!(
                    "not caught up: next {next:?}, watermarks {marks:?}, position {:?}",
                    c.position().map(|t| t
                        .elements()
                        .iter()
                        .map(|e| (e.partition(), e.offset()))
                        .collect::<Vec<_>>())
                ));
                break;
            }
            if caught_up(&c, topic, partitions, &next) {
                out.caught_up = true;
                break;
            }
        }
        // Up to 2,000 records, or what 300 ms brings (the source writes ~1,000 a second).
        let mut batch: Vec<Seen> = Vec::new();
        let began = Instant::now();
        while batch.len() < 2_000 && began.elapsed() < Duration::from_millis(300) {
            match c.poll(Duration::from_millis(20)) {
                Some(Ok(m)) => batch.push(Seen {
                    partition: m.partition(),
                    offset: m.offset(),
                    payload: m.payload().unwrap_or_default().to_vec(),
                }),
                Some(Err(e)) => {
                    out.errors.push(format!("consume: {e}"));
                    break;
                }
                None => {}
            }
        }
        if batch.is_empty() {
            continue;
        }
        txn += 1;
        let mut positions = next.clone();
        for s in &batch {
            positions[s.partition as usize] = s.offset + 1;
        }
        let mut run = TxnRun {
            id: txn,
            fate: Fate::Unknown,
            outputs: batch
                .iter()
                .map(|s| (s.partition, output(txn, &s.payload)))
                .collect(),
        };
        // On its own thread with a deadline: a client call that never returns (seen once in
        // send_offsets_to_transaction after two brokers were killed) must not stall the run;
        // its producer is then abandoned like a crashed process's and replaced.
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let (p, meta, topic, outputs, positions) = (
                p.clone(),
                meta.clone(),
                topic.to_string(),
                run.outputs.clone(),
                positions.clone(),
            );
            std::thread::spawn(move || {
                let _ = tx.send(transact(&p, &meta, &topic, txn, &outputs, &positions));
            });
        }
        run.fate = match rx.recv_timeout(CALL_DEADLINE) {
            Ok((fate, errors)) => {
                out.errors.extend(errors);
                fate
            }
            Err(_) => {
                out.errors.push(format!(
                    "txn {txn}: the client did not return within {CALL_DEADLINE:?}; replacing the producer"
                ));
                Fate::Unknown
            }
        };
        match run.fate {
            Fate::Committed => next = positions,
            Fate::Aborted => seek_back(&c, topic, &next),
            Fate::Unknown => {
                // Start over with a new producer: its init fences this one and settles the
                // open transaction; the group's committed positions then say how it ended.
                drop(p);
                match producer(bootstrap) {
                    Some(np) => p = Arc::new(np),
                    None => {
                        out.errors
                            .push("the producer could not be made again".into());
                        out.txns.push(run);
                        break;
                    }
                }
                next = loop {
                    match rewind(&c, topic, partitions) {
                        Some(at) => break at,
                        None => std::thread::sleep(Duration::from_millis(500)),
                    }
                };
            }
        }
        out.txns.push(run);
    }
    out
}

/// How long one transaction's client calls may take before the producer is given up.
const CALL_DEADLINE: Duration = Duration::from_secs(90);

/// One transaction: `outputs` to `chaos-out`, the consumed `positions` sent with it; every
/// fifth aborted on purpose. Returns its fate and the errors met.
fn transact(
    p: &TxnProducer,
    meta: &rdkafka::consumer::ConsumerGroupMetadata,
    topic: &str,
    txn: u64,
    outputs: &[(i32, String)],
    positions: &[i64],
) -> (Fate, Vec<String>) {
    let mut errors = Vec::new();
    let attempt = || -> Result<Fate, KafkaError> {
        p.begin_transaction()?;
        for (partition, body) in outputs {
            let mut rec = BaseRecord::<(), _>::to(OUT_TOPIC)
                .payload(body)
                .partition(*partition);
            loop {
                match p.send(rec) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        rec = r;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err((e, _)) => return Err(e),
                }
            }
        }
        let mut offsets = TopicPartitionList::new();
        for (i, at) in positions.iter().enumerate() {
            let _ = offsets.add_partition_offset(topic, i as i32, Offset::Offset(*at));
        }
        p.send_offsets_to_transaction(&offsets, meta, T)?;
        if txn.is_multiple_of(5) {
            p.abort_transaction(T)?;
            return Ok(Fate::Aborted);
        }
        p.commit_transaction(T)?;
        Ok(Fate::Committed)
    };
    let fate = match attempt() {
        Ok(f) => f,
        Err(KafkaError::Transaction(e)) if e.txn_requires_abort() => {
            errors.push(format!("txn {txn}: {e} (aborting)"));
            match p.abort_transaction(T) {
                Ok(()) => Fate::Aborted,
                Err(e) => {
                    errors.push(format!("txn {txn}: abort failed: {e}"));
                    Fate::Unknown
                }
            }
        }
        Err(e) => {
            errors.push(format!("txn {txn}: {e}"));
            Fate::Unknown
        }
    };
    (fate, errors)
}

/// Every record of `topic` a consumer at `isolation` reads from the start, until it has been
/// idle for five seconds (markers and aborted records take offsets, so counts do not tell the
/// end).
pub fn read_all(bootstrap: &str, topic: &str, partitions: i32, isolation: &str) -> Vec<Seen> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "chaos-txn-reader")
        .set("isolation.level", isolation)
        .set("enable.auto.commit", "false")
        .set("check.crcs", "true")
        .set("log_level", "2")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        let _ = tpl.add_partition_offset(topic, p, Offset::Beginning);
    }
    let _ = c.assign(&tpl);
    let mut out = Vec::new();
    let mut idle = Instant::now();
    let started = Instant::now();
    while idle.elapsed() < Duration::from_secs(5) && started.elapsed() < Duration::from_secs(180) {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            idle = Instant::now();
            out.push(Seen {
                partition: m.partition(),
                offset: m.offset(),
                payload: m.payload().unwrap_or_default().to_vec(),
            });
        }
    }
    out
}
