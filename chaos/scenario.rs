//! One chaos run: start the cluster, create an RF=3 topic, run the workload under the nemesis,
//! heal, read everything back, check, measure and report.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use strom::tools::Client;

use super::checkers::{self, Observed};
use super::cluster::ChaosCluster;
use super::elections;
use super::nemesis::{self, Fault};
use super::report::Report;
use super::{txn, workload};

pub struct Options {
    pub duration: Duration,
    pub seed: u64,
    pub out: PathBuf,
    pub faults: Vec<String>,
    pub bin: PathBuf,
    /// Each node in its own network namespace (root): needed by the cut-leader and
    /// isolate-leader faults.
    pub netns: bool,
    /// The producers' acks: -1 (all, idempotent) or 1.
    pub acks: i16,
    /// Also run the transactional consume-transform-produce workload (`txn.rs`) and its
    /// checkers.
    pub txn: bool,
    /// Runs on the healed cluster after the workload, before the final read: a test's way to
    /// damage the log on purpose and show the checkers notice.
    pub tamper: Option<fn(&mut ChaosCluster) -> anyhow::Result<()>>,
}

pub const TOPIC: &str = "chaos";
const PARTITIONS: i32 = 3;

fn metadata(addr: &str) -> Option<MetadataResponse> {
    let mut c = Client::connect(addr).ok()?;
    let req = MetadataRequest::default().with_topics(Some(vec![
        kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
            .with_name(Some(TopicName(StrBytes::from_static_str(TOPIC)))),
    ]));
    c.call(ApiKey::Metadata, 12, &req).ok()
}

fn full_isr(cluster: &ChaosCluster) -> bool {
    let Some(addr) = cluster.any_live() else {
        return false;
    };
    metadata(&addr).is_some_and(|md| {
        md.brokers.len() == 3
            && md.topics.first().is_some_and(|t| {
                t.error_code == 0
                    && t.partitions.len() == PARTITIONS as usize
                    && t.partitions
                        .iter()
                        .all(|p| p.leader_id.0 > 0 && p.isr_nodes.len() == 3)
            })
    })
}

/// All `.log` bytes of one partition on one node, in offset order.
fn segment_bytes(node_dir: &std::path::Path, partition: i32) -> Vec<u8> {
    let dir = node_dir.join(format!("{TOPIC}-{partition}"));
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|r| {
            r.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "log"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .flat_map(|f| std::fs::read(f).unwrap_or_default())
        .collect()
}

pub fn run(opts: &Options) -> anyhow::Result<Report> {
    let kinds: Vec<Fault> = opts
        .faults
        .iter()
        .map(|f| {
            Fault::parse(f).ok_or_else(|| {
                anyhow::anyhow!(
                    "unknown fault `{f}` (kill-leader, kill-controller, kill-two, pause-leader, cut-leader, isolate-leader, stop-leader, kill-txn-coordinator)"
                )
            })
        })
        .collect::<Result<_, _>>()?;
    anyhow::ensure!(
        opts.bin.exists(),
        "no strom binary at {} (build it, or pass --bin)",
        opts.bin.display()
    );
    let _ = std::fs::remove_dir_all(opts.out.join("cluster"));
    std::fs::create_dir_all(&opts.out)?;
    anyhow::ensure!(
        opts.netns
            || !kinds
                .iter()
                .any(|k| matches!(k, Fault::CutLeader | Fault::IsolateLeader)),
        "the cut-leader and isolate-leader faults need --netns (network namespaces; run as root)"
    );
    let mut cluster = ChaosCluster::new(&opts.bin, &opts.out.join("cluster"), 3, opts.netns)?;
    for id in 1..=3 {
        cluster.start(id)?;
    }
    let addr = cluster
        .any_live()
        .ok_or_else(|| anyhow::anyhow!("no node"))?;
    let topics: &[&str] = if opts.txn {
        &[TOPIC, txn::OUT_TOPIC]
    } else {
        &[TOPIC]
    };
    let created = topics.iter().all(|name| {
        ChaosCluster::wait(Duration::from_secs(30), || {
            let Ok(mut c) = Client::connect(&addr) else {
                return false;
            };
            let req = CreateTopicsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(vec![CreatableTopic::default()
                    .with_name(TopicName(StrBytes::from_string(name.to_string())))
                    .with_num_partitions(PARTITIONS)
                    .with_replication_factor(3)
                    // Each acknowledgement then says when its leader appended it: the
                    // zombie-acks check compares that with elections.
                    .with_configs(vec![CreatableTopicConfig::default()
                        .with_name(StrBytes::from_static_str("message.timestamp.type"))
                        .with_value(Some(StrBytes::from_static_str("LogAppendTime")))])]);
            c.call::<_, CreateTopicsResponse>(ApiKey::CreateTopics, 7, &req)
                .is_ok_and(|r| r.topics[0].error_code == 0 || r.topics[0].error_code == 36)
        })
    });
    anyhow::ensure!(created, "the cluster did not form or refused the topic");
    anyhow::ensure!(
        ChaosCluster::wait(Duration::from_secs(30), || full_isr(&cluster)),
        "no full ISR before the run"
    );

    let bootstrap = cluster.bootstrap();
    let cluster = Arc::new(Mutex::new(cluster));
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let plan = nemesis::schedule(
        opts.seed,
        &kinds,
        Duration::from_secs(8),
        Duration::from_secs(12),
        opts.duration.saturating_sub(Duration::from_secs(6)),
    );
    let nemesis_thread = {
        let (cluster, stop) = (cluster.clone(), stop.clone());
        let seed = opts.seed;
        std::thread::spawn(move || {
            nemesis::run(
                &cluster,
                &plan,
                start,
                &stop,
                TOPIC,
                seed,
                Duration::from_secs(3),
            )
        })
    };
    let load_stop = Arc::new(AtomicBool::new(false));
    let workload_thread = {
        let (bootstrap, load_stop) = (bootstrap.clone(), load_stop.clone());
        let acks = opts.acks;
        std::thread::spawn(move || workload::run(&bootstrap, TOPIC, acks, 2, 500, start, load_stop))
    };
    let txn_stop = Arc::new(AtomicBool::new(false));
    let txn_thread = opts.txn.then(|| {
        let (bootstrap, txn_stop) = (bootstrap.clone(), txn_stop.clone());
        std::thread::spawn(move || txn::run(&bootstrap, TOPIC, PARTITIONS, txn_stop))
    });
    let watch_stop = Arc::new(AtomicBool::new(false));
    let watcher = elections::watch(cluster.clone(), TOPIC, start, watch_stop.clone());
    while start.elapsed() < opts.duration {
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Relaxed);
    let events = nemesis_thread
        .join()
        .map_err(|_| anyhow::anyhow!("nemesis panicked"))?;
    cluster.lock().unwrap_or_else(|p| p.into_inner()).heal()?;
    load_stop.store(true, Ordering::Relaxed);
    let outcome = workload_thread
        .join()
        .map_err(|_| anyhow::anyhow!("workload panicked"))?;
    // The processor stops once the producers have finished and it has caught up.
    txn_stop.store(true, Ordering::Relaxed);
    let txn_outcome = match txn_thread {
        Some(t) => Some(
            t.join()
                .map_err(|_| anyhow::anyhow!("transactional workload panicked"))?,
        ),
        None => None,
    };
    watch_stop.store(true, Ordering::Relaxed);
    let elections = watcher
        .join()
        .map_err(|_| anyhow::anyhow!("election watcher panicked"))?;

    if let Some(tamper) = opts.tamper {
        tamper(&mut cluster.lock().unwrap_or_else(|p| p.into_inner()))?;
    }
    // Healing: full ISR, then identical replicas.
    let healed = {
        let c = cluster.lock().unwrap_or_else(|p| p.into_inner());
        ChaosCluster::wait(Duration::from_secs(30), || full_isr(&c))
    };
    let log = workload::final_read(&bootstrap, TOPIC, PARTITIONS, Duration::from_secs(120))?;
    let txn_observed = txn_outcome.map(|outcome| {
        let committed = txn::read_all(&bootstrap, txn::OUT_TOPIC, PARTITIONS, "read_committed");
        let aborted: std::collections::HashSet<u64> = outcome
            .txns
            .iter()
            .filter(|t| t.fate == txn::Fate::Aborted)
            .map(|t| t.id)
            .collect();
        let aborted_in_log = txn::read_all(&bootstrap, txn::OUT_TOPIC, PARTITIONS, "read_uncommitted")
            .iter()
            .filter(|s| txn::parse_output(&s.payload).is_some_and(|o| aborted.contains(&o.0)))
            .count();
        for e in outcome.errors.iter().rev().take(20) {
            eprintln!("chaos txn: {e}");
        }
        let of = |f| outcome.txns.iter().filter(|t| t.fate == f).count();
        eprintln!(
            "chaos txn: {} transactions: {} committed, {} aborted, {} of unknown fate; {} outputs visible to read_committed, {} of aborted transactions in the log",
            outcome.txns.len(),
            of(txn::Fate::Committed),
            of(txn::Fate::Aborted),
            of(txn::Fate::Unknown),
            committed.len(),
            aborted_in_log
        );
        checkers::txn::TxnObserved {
            outcome,
            committed,
            aborted_in_log,
        }
    });
    let dirs: Vec<PathBuf> = cluster
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .nodes
        .iter()
        .map(|n| n.dir.clone())
        .collect();
    let mut replicas_identical = Vec::new();
    for p in 0..PARTITIONS {
        let same = ChaosCluster::wait(Duration::from_secs(15), || {
            let first = segment_bytes(&dirs[0], p);
            dirs.iter().all(|d| segment_bytes(d, p) == first)
        });
        replicas_identical.push((p, same));
    }
    cluster.lock().unwrap_or_else(|p| p.into_inner()).stop_all();

    let observed = Observed {
        acks: outcome.acks,
        log,
        live: outcome.live,
        replicas_identical,
        full_isr: healed,
        faults: events.clone(),
        elections,
        acks_setting: opts.acks,
        txn: txn_observed,
    };
    let checks = checkers::all(&observed);
    let report = Report::build(
        opts.seed,
        opts.duration,
        &observed.acks,
        outcome.failures.len(),
        &events,
        checks,
    );
    let report = Report {
        acks: opts.acks,
        ..report
    };
    report.write(&opts.out, &observed.acks)?;
    // Leadership as it was seen, to line the faults up with (ms into the run).
    let elections: String = observed
        .elections
        .iter()
        .map(|e| {
            format!(
                "{} partition {} epoch {} leader {}\n",
                e.seen.as_millis(),
                e.partition,
                e.epoch,
                e.leader
            )
        })
        .collect();
    std::fs::write(opts.out.join("elections.txt"), elections)?;
    if std::env::var_os("CHAOS_ACKS_CSV").is_some() {
        // Every acknowledgement (ms into the run), for looking at one stall closely.
        let mut csv = String::from("producer,seq,partition,offset,sent_ms,acked_ms,appended_ms\n");
        for a in &observed.acks {
            csv.push_str(&format!(
                "{},{},{},{},{},{},{}\n",
                a.producer,
                a.seq,
                a.partition,
                a.offset,
                a.sent.as_millis(),
                a.acked.as_millis(),
                a.appended.map(|d| d.as_millis() as i64).unwrap_or(-1)
            ));
        }
        std::fs::write(opts.out.join("acks.csv"), csv)?;
    }
    Ok(report)
}
