//! Partition-count scale: creates topics of `--partitions` partitions (RF `--replication-factor`),
//! `--per-request` topics per CreateTopics, until the cluster holds `--target` partitions, and at
//! each milestone prints the creation rate, how long the last topic took to be served with a
//! leader by every broker, all-topics Metadata latency per broker, and each broker's RSS and open
//! file descriptors. Every refused or unanswered request is counted and the first few printed.
//!
//! `cargo run --release --example scale -- --bootstrap 127.0.0.1:9092,127.0.0.1:9192,127.0.0.1:9292
//!  --broker-pid P1,P2,P3 [--target 100000] [--partitions 10] [--replication-factor 3]
//!  [--per-request 50] [--milestones 1000,10000,30000,100000] [--prefix scale] [--json out.json]`
//!
//! `scale --apply` measures instead the cost of applying one metadata record, in process, on
//! images of 1 k to 100 k partitions.
//!
//! `--bootstrap` lists every broker: CreateTopics goes to the first, the per-broker checks to
//! each. Start the cluster with `strom dev` (its node pids: `pgrep -f 'strom serve'`).

use std::time::{Duration, Instant};

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use strom::tools::Client;

#[path = "common/mod.rs"]
mod common;
use common::arg;

fn status_kb(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0.0)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// What went wrong over the run: counts by kind, and the first few texts.
#[derive(Default)]
struct Failures {
    refused: u64,
    unanswered: u64,
    examples: Vec<String>,
}

impl Failures {
    fn note(&mut self, unanswered: bool, text: String) {
        if unanswered {
            self.unanswered += 1;
        } else {
            self.refused += 1;
        }
        if self.examples.len() < 8 {
            eprintln!("\n{text}");
            self.examples.push(text);
        }
    }
}

/// One CreateTopics of `names`; retries refused or unanswered topics (up to 60 s), noting
/// every failure. Returns how many partitions it created.
fn create(
    bootstrap: &str,
    client: &mut Option<Client>,
    names: &[String],
    partitions: i32,
    rf: i16,
    failures: &mut Failures,
    slowest: &mut Duration,
) -> usize {
    let mut left: Vec<String> = names.to_vec();
    let started = Instant::now();
    let mut created = 0;
    while !left.is_empty() && started.elapsed() < Duration::from_secs(60) {
        let req = CreateTopicsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(
                left.iter()
                    .map(|n| {
                        CreatableTopic::default()
                            .with_name(TopicName(StrBytes::from_string(n.clone())))
                            .with_num_partitions(partitions)
                            .with_replication_factor(rf)
                    })
                    .collect(),
            );
        if client.is_none() {
            match Client::connect(bootstrap) {
                Ok(c) => *client = Some(c),
                Err(e) => {
                    failures.note(true, format!("connect: {e}"));
                    std::thread::sleep(Duration::from_millis(500));
                    continue;
                }
            }
        }
        let sent = Instant::now();
        let resp = client
            .as_mut()
            .map(|c| c.call::<_, CreateTopicsResponse>(ApiKey::CreateTopics, 7, &req));
        *slowest = (*slowest).max(sent.elapsed());
        match resp {
            Some(Ok(r)) => {
                let mut again = Vec::new();
                for t in r.topics {
                    match t.error_code {
                        0 => created += partitions as usize,
                        36 => {} // TOPIC_ALREADY_EXISTS: an earlier try that went through
                        code => {
                            failures.note(
                                false,
                                format!(
                                    "{}: error {code} {}",
                                    t.name.0,
                                    t.error_message.as_deref().unwrap_or("")
                                ),
                            );
                            again.push(t.name.0.to_string());
                        }
                    }
                }
                if !again.is_empty() {
                    std::thread::sleep(Duration::from_millis(200));
                }
                left = again;
            }
            Some(Err(e)) => {
                failures.note(true, format!("CreateTopics: {e}"));
                *client = None;
            }
            None => {}
        }
    }
    created
}

/// A Metadata request for `topic` (all topics when `None`) to one broker: its latency, and
/// whether every partition of the named topic has a leader.
fn metadata(addr: &str, topic: Option<&str>) -> Result<(Duration, bool, usize), String> {
    let mut c = Client::connect(addr).map_err(|e| e.to_string())?;
    let req = MetadataRequest::default().with_topics(topic.map(|t| {
        vec![MetadataRequestTopic::default()
            .with_name(Some(TopicName(StrBytes::from_string(t.to_string()))))]
    }));
    let started = Instant::now();
    let r: MetadataResponse = c
        .call(ApiKey::Metadata, 12, &req)
        .map_err(|e| e.to_string())?;
    let took = started.elapsed();
    let partitions: usize = r.topics.iter().map(|t| t.partitions.len()).sum();
    let led = !r.topics.is_empty()
        && r.topics.iter().all(|t| {
            t.error_code == 0
                && !t.partitions.is_empty()
                && t.partitions.iter().all(|p| p.leader_id.0 >= 0)
        });
    Ok((took, led, partitions))
}

struct Milestone {
    partitions: usize,
    secs: f64,
    rate_since_last: f64,
    propagation_ms: f64,
    metadata_ms: Vec<f64>,
    rss_mb: Vec<f64>,
    fds: Vec<usize>,
}

/// `--apply`: the cost of applying metadata records, in process, on images of 1 k to 100 k
/// partitions (10-partition topics, RF 3): per record in place (the state machine's way), per
/// record with a copy of the image (the way before it), and one copy of the image (what the
/// state machine still does once per batch of entries, to publish it).
fn apply_bench() {
    use strom::metadata::{MetadataImage, MetadataRecord};
    use strom::types::TopicId;
    let id = |t: usize| TopicId(uuid::Uuid::from_u128(t as u128 + 1));
    let topic = |t: usize| MetadataRecord::CreateTopic {
        name: format!("topic-{t}"),
        id: id(t),
        assignments: (0..10)
            .map(|p| vec![1 + (t + p) as i32 % 3, 2, 3])
            .collect(),
        configs: Default::default(),
    };
    let per = |took: Duration, n: usize| took.as_secs_f64() * 1e6 / n as f64;
    println!(
        "partitions  create in place µs  change in place µs  create with copy µs  image copy ms"
    );
    for partitions in [1_000usize, 10_000, 30_000, 100_000] {
        let topics = partitions / 10;
        let mut image = MetadataImage::default();
        for t in 0..topics {
            image.apply_mut(&topic(t));
        }
        // Records on a copy that shares every topic with `image`, as the state machine's image
        // shares them with the one it last published.
        let mut work = image.clone();
        let n = 2_000;
        let started = Instant::now();
        for t in topics..topics + n {
            work.apply_mut(&topic(t));
        }
        let create = per(started.elapsed(), n);
        let started = Instant::now();
        for k in 0..n {
            let t = (k * 7919) % topics;
            let p = k % 10;
            let epoch = work.topics[&format!("topic-{t}")].partitions[p].partition_epoch;
            work.apply_mut(&MetadataRecord::PartitionChange {
                topic_id: id(t),
                partition: p as i32,
                leader: 2,
                isr: vec![2, 3],
                leader_epoch: epoch + 1,
                partition_epoch: epoch + 1,
            });
        }
        let change = per(started.elapsed(), n);
        let copies = if partitions >= 30_000 { 20 } else { 200 };
        let started = Instant::now();
        for t in 0..copies {
            work = work.apply(&topic(topics + n + t)).0;
        }
        let with_copy = per(started.elapsed(), copies);
        let started = Instant::now();
        for _ in 0..copies {
            std::hint::black_box(work.clone());
        }
        let copy_ms = per(started.elapsed(), copies) / 1e3;
        println!(
            "{partitions:>10}  {create:>18.2}  {change:>18.2}  {with_copy:>19.1}  {copy_ms:>13.2}"
        );
    }
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        common::print_help(include_str!("scale.rs"));
        return std::process::ExitCode::SUCCESS;
    }
    if args.iter().any(|a| a == "--apply") {
        apply_bench();
        return std::process::ExitCode::SUCCESS;
    }
    let bootstrap = arg(&args, "--bootstrap", "127.0.0.1:9092");
    let brokers: Vec<String> = bootstrap.split(',').map(|s| s.trim().to_string()).collect();
    let pids: Vec<u32> = arg(&args, "--broker-pid", "")
        .split(',')
        .filter_map(|p| p.trim().parse().ok())
        .collect();
    let target: usize = arg(&args, "--target", "100000").parse().unwrap_or(100_000);
    let partitions: i32 = arg(&args, "--partitions", "10").parse().unwrap_or(10);
    let rf: i16 = arg(&args, "--replication-factor", "3").parse().unwrap_or(3);
    let per_request: usize = arg(&args, "--per-request", "50").parse().unwrap_or(50);
    let prefix = arg(&args, "--prefix", "scale");
    let mut milestones: Vec<usize> = arg(&args, "--milestones", "1000,10000,30000,100000")
        .split(',')
        .filter_map(|m| m.trim().parse().ok())
        .filter(|&m| m <= target)
        .collect();
    if milestones.last() != Some(&target) {
        milestones.push(target);
    }
    let json = arg(&args, "--json", "");

    println!(
        "creating {target} partitions: topics of {partitions} partitions, RF {rf}, \
         {per_request} topics per CreateTopics, through {}",
        brokers[0]
    );
    let mut failures = Failures::default();
    let mut slowest = Duration::ZERO;
    let mut client = None;
    let mut done = 0usize;
    let mut topic_no = 0usize;
    let started = Instant::now();
    let mut last = (0usize, 0.0f64);
    let mut results = Vec::new();
    for &goal in &milestones {
        while done < goal {
            let want = (goal - done).div_ceil(partitions as usize).min(per_request);
            let names: Vec<String> = (topic_no..topic_no + want)
                .map(|i| format!("{prefix}-{i}"))
                .collect();
            topic_no += want;
            done += create(
                &brokers[0],
                &mut client,
                &names,
                partitions,
                rf,
                &mut failures,
                &mut slowest,
            );
            let secs = started.elapsed().as_secs_f64();
            eprint!(
                "\r{done}/{target} partitions in {secs:.1} s ({:.0}/s), {} refused, {} unanswered   ",
                done as f64 / secs,
                failures.refused,
                failures.unanswered
            );
        }
        let created_at = Instant::now();
        let secs = started.elapsed().as_secs_f64();
        // Propagation: the last topic served with leaders by every broker.
        let newest = format!("{prefix}-{}", topic_no - 1);
        let mut waiting: Vec<&String> = brokers.iter().collect();
        while !waiting.is_empty() && created_at.elapsed() < Duration::from_secs(60) {
            waiting.retain(|b| !matches!(metadata(b, Some(&newest)), Ok((_, true, _))));
            if !waiting.is_empty() {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let propagation_ms = created_at.elapsed().as_secs_f64() * 1000.0;
        if !waiting.is_empty() {
            failures.note(
                true,
                format!("{newest} not served with leaders by {waiting:?} after 60 s"),
            );
        }
        let metadata_ms = brokers
            .iter()
            .map(|b| match metadata(b, None) {
                Ok((took, _, n)) => {
                    if n < done {
                        eprintln!("\n{b}: all-topics Metadata names {n} of {done} partitions");
                    }
                    took.as_secs_f64() * 1000.0
                }
                Err(e) => {
                    failures.note(true, format!("{b}: all-topics Metadata: {e}"));
                    f64::NAN
                }
            })
            .collect();
        let m = Milestone {
            partitions: done,
            secs,
            rate_since_last: (done - last.0) as f64 / (secs - last.1),
            propagation_ms,
            metadata_ms,
            rss_mb: pids
                .iter()
                .map(|&p| status_kb(p, "VmRSS:") / 1024.0)
                .collect(),
            fds: pids.iter().map(|&p| open_fds(p)).collect(),
        };
        last = (done, secs);
        eprintln!();
        println!(
            "{:>7} partitions at {:>6.1} s: {:>6.0}/s since the last line; newest topic served \
             by every broker {:.0} ms after its creation; all-topics Metadata {:?} ms; RSS {:?} MB; \
             open fds {:?}",
            m.partitions,
            m.secs,
            m.rate_since_last,
            m.propagation_ms,
            m.metadata_ms.iter().map(|v| v.round()).collect::<Vec<_>>(),
            m.rss_mb.iter().map(|v| v.round()).collect::<Vec<_>>(),
            m.fds
        );
        results.push(m);
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{done} partitions in {secs:.1} s ({:.0} partitions/s); slowest CreateTopics {} ms; \
         {} topics refused, {} requests unanswered",
        done as f64 / secs,
        slowest.as_millis(),
        failures.refused,
        failures.unanswered
    );
    if !json.is_empty() {
        let rows: Vec<String> = results
            .iter()
            .map(|m| {
                format!(
                    "{{\"partitions\":{},\"secs\":{:.2},\"rate\":{:.0},\"propagation_ms\":{:.1},\
                     \"metadata_ms\":{:?},\"rss_mb\":{:?},\"fds\":{:?}}}",
                    m.partitions,
                    m.secs,
                    m.rate_since_last,
                    m.propagation_ms,
                    m.metadata_ms,
                    m.rss_mb,
                    m.fds
                )
            })
            .collect();
        let text = format!(
            "{{\"milestones\":[{}],\"refused\":{},\"unanswered\":{},\"slowest_create_ms\":{}}}\n",
            rows.join(","),
            failures.refused,
            failures.unanswered,
            slowest.as_millis()
        );
        if let Err(e) = std::fs::write(&json, text) {
            eprintln!("{json}: {e}");
        }
    }
    if failures.refused + failures.unanswered > 0 {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}
