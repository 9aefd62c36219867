//! A Kafka client check used by the compose-topology test: through librdkafka, produce `count`
//! records with acks=all to `topic` and read them back from every partition.
//! `probe --bootstrap HOST:PORT --topic T --count N [-X name=value ...]`; exits non-zero on any
//! failure. `-X` settings (security, as kcat's) go to both clients.

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

/// A client configuration with the `-X name=value` settings of the command line.
fn config(args: &[String]) -> ClientConfig {
    let mut c = ClientConfig::new();
    for w in args.windows(2).filter(|w| w[0] == "-X") {
        if let Some((k, v)) = w[1].split_once('=') {
            c.set(k, v);
        }
    }
    c
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let bootstrap = arg(&args, "--bootstrap").unwrap_or_else(|| "127.0.0.1:9092".into());
    let topic = arg(&args, "--topic").unwrap_or_else(|| "probe".into());
    let count: usize = arg(&args, "--count")
        .and_then(|c| c.parse().ok())
        .unwrap_or(100);
    match probe(&args, &bootstrap, &topic, count) {
        Ok(()) => {
            println!("probe ok: {count} records through {bootstrap}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("probe failed through {bootstrap}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn probe(args: &[String], bootstrap: &str, topic: &str, count: usize) -> Result<(), String> {
    let p: BaseProducer = config(args)
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("message.timeout.ms", "30000")
        .set("log_level", "3")
        .create()
        .map_err(|e| e.to_string())?;
    let run = format!("{}", std::process::id());
    for i in 0..count {
        let value = format!("{run}-{i}");
        let mut rec = BaseRecord::to(topic).key(&[]).payload(value.as_bytes());
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((_, r)) => {
                    rec = r;
                    p.poll(Duration::from_millis(10));
                }
            }
        }
    }
    p.flush(Duration::from_secs(60))
        .map_err(|e| format!("produce: {e}"))?;
    let c: BaseConsumer = config(args)
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "probe")
        .set("enable.auto.commit", "false")
        .set("log_level", "3")
        .create()
        .map_err(|e| e.to_string())?;
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|e| format!("metadata: {e}"))?;
    let partitions = md
        .topics()
        .first()
        .map(|t| t.partitions().len())
        .unwrap_or(0);
    let mut tpl = TopicPartitionList::new();
    for part in 0..partitions as i32 {
        tpl.add_partition_offset(topic, part, Offset::Beginning)
            .map_err(|e| e.to_string())?;
    }
    c.assign(&tpl).map_err(|e| e.to_string())?;
    let mut seen = 0;
    let started = Instant::now();
    while seen < count && started.elapsed() < Duration::from_secs(60) {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m))
                if m.payload()
                    .is_some_and(|v| v.starts_with(format!("{run}-").as_bytes())) =>
            {
                seen += 1
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(format!("consume: {e}")),
            None => {}
        }
    }
    if seen == count {
        Ok(())
    } else {
        Err(format!("read back {seen} of {count} records"))
    }
}
