//! The nemesis: a schedule of faults drawn from a seed (so a failing run can be replayed), and
//! their execution against the cluster. Every fault is undone a few seconds later.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse};
use strom::tools::Client;

use super::cluster::ChaosCluster;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL the leader of a chosen partition, restart it later.
    KillLeader,
    /// SIGKILL the active controller (the Raft leader), restart it later.
    KillController,
    /// SIGKILL two brokers at once (the metadata quorum is lost until they return).
    KillTwo,
    /// SIGSTOP a partition leader for longer than the session timeout, then SIGCONT: the zombie.
    PauseLeader,
    /// Cut a partition leader off the network (netns clusters), then heal.
    CutLeader,
    /// Cut a partition leader off the other brokers and the metadata quorum while clients still
    /// reach it (netns clusters), then heal: without its lease it would keep acknowledging
    /// writes after another leader is elected.
    IsolateLeader,
    /// SIGTERM the leader of a chosen partition (a controlled shutdown: it hands its
    /// leadership over before it exits), restart it later.
    StopLeader,
    /// SIGKILL the transaction coordinator of the transactional workload's id, restart it
    /// later.
    KillTxnCoordinator,
}

impl Fault {
    pub fn parse(s: &str) -> Option<Fault> {
        match s {
            "kill-leader" => Some(Fault::KillLeader),
            "kill-controller" => Some(Fault::KillController),
            "kill-two" => Some(Fault::KillTwo),
            "pause-leader" => Some(Fault::PauseLeader),
            "cut-leader" => Some(Fault::CutLeader),
            "isolate-leader" => Some(Fault::IsolateLeader),
            "kill-txn-coordinator" => Some(Fault::KillTxnCoordinator),
            "stop-leader" => Some(Fault::StopLeader),
            _ => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Fault::KillLeader => "kill-leader",
            Fault::KillController => "kill-controller",
            Fault::KillTwo => "kill-two",
            Fault::PauseLeader => "pause-leader",
            Fault::CutLeader => "cut-leader",
            Fault::IsolateLeader => "isolate-leader",
            Fault::KillTxnCoordinator => "kill-txn-coordinator",
            Fault::StopLeader => "stop-leader",
        }
    }
}

/// A fault as it happened.
#[derive(Clone, Debug)]
pub struct Event {
    pub fault: Fault,
    pub at: Duration,
    pub healed_at: Duration,
    pub nodes: Vec<i32>,
    /// Partitions whose leader was hit.
    pub partitions: Vec<i32>,
}

/// A small deterministic generator (xorshift), so the schedule depends on the seed only.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Faults at roughly every `every`, from `first` until `until`, cycling through `kinds` from a
/// seeded starting point so every kind appears when there is room.
pub fn schedule(
    seed: u64,
    kinds: &[Fault],
    first: Duration,
    every: Duration,
    until: Duration,
) -> Vec<(Duration, Fault)> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    if kinds.is_empty() {
        return out;
    }
    let mut at = first;
    let mut i = (rng.next() % kinds.len() as u64) as usize;
    while at < until {
        out.push((at, kinds[i % kinds.len()]));
        i += 1;
        let jitter = Duration::from_millis(rng.next() % 2000);
        at += every + jitter;
    }
    out
}

/// (partition, leader) for `topic`, asked of a live node.
pub fn leaders(cluster: &ChaosCluster, topic: &str) -> Vec<(i32, i32)> {
    let Some(addr) = cluster.any_live() else {
        return Vec::new();
    };
    let Ok(mut c) = Client::connect(&addr) else {
        return Vec::new();
    };
    let req = MetadataRequest::default().with_topics(Some(vec![
        kafka_protocol::messages::metadata_request::MetadataRequestTopic::default().with_name(
            Some(kafka_protocol::messages::TopicName(
                kafka_protocol::protocol::StrBytes::from_string(topic.into()),
            )),
        ),
    ]));
    let Ok(md) = c.call::<_, MetadataResponse>(ApiKey::Metadata, 12, &req) else {
        return Vec::new();
    };
    md.topics
        .first()
        .map(|t| {
            t.partitions
                .iter()
                .map(|p| (p.partition_index, p.leader_id.0))
                .collect()
        })
        .unwrap_or_default()
}

/// Executes the schedule until it ends or `stop` is set; undoes each fault after `hold`.
pub fn run(
    cluster: &Mutex<ChaosCluster>,
    plan: &[(Duration, Fault)],
    start: Instant,
    stop: &AtomicBool,
    topic: &str,
    seed: u64,
    hold: Duration,
) -> Vec<Event> {
    let mut rng = Rng::new(seed ^ 0x5eed);
    let mut events = Vec::new();
    for (at, fault) in plan {
        while start.elapsed() < *at {
            if stop.load(Ordering::Relaxed) {
                return events;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut c = cluster.lock().unwrap_or_else(|p| p.into_inner());
        let led = leaders(&c, topic);
        let n = c.nodes.len() as u64;
        let victims: Vec<i32> = match fault {
            Fault::KillLeader
            | Fault::PauseLeader
            | Fault::CutLeader
            | Fault::IsolateLeader
            | Fault::StopLeader => {
                let live: Vec<i32> = led.iter().map(|l| l.1).filter(|l| *l > 0).collect();
                if live.is_empty() {
                    continue;
                }
                vec![live[(rng.next() % live.len() as u64) as usize]]
            }
            Fault::KillController => match c.controller() {
                Some(id) => vec![id],
                None => continue,
            },
            Fault::KillTxnCoordinator => match c.txn_coordinator(super::txn::TRANSACTIONAL_ID) {
                Some(id) => vec![id],
                None => continue,
            },
            Fault::KillTwo => {
                let a = (rng.next() % n) as i32 + 1;
                let b = (a % n as i32) + 1;
                vec![a, b]
            }
        };
        let partitions = led
            .iter()
            .filter(|l| victims.contains(&l.1))
            .map(|l| l.0)
            .collect();
        for v in &victims {
            match fault {
                Fault::PauseLeader => c.pause(*v),
                Fault::StopLeader => c.terminate(*v),
                Fault::CutLeader => {
                    if let Err(e) = c.cut(*v) {
                        eprintln!("chaos: cannot cut node {v}: {e}");
                    }
                }
                Fault::IsolateLeader => {
                    if let Err(e) = c.isolate(*v) {
                        eprintln!("chaos: cannot isolate node {v}: {e}");
                    }
                }
                _ => c.kill(*v),
            }
        }
        // Measured once the fault is in place (a cut runs `ip`, which takes a few ms), so a
        // record sent just before it is not counted as written after it.
        let happened = start.elapsed();
        // Wall-clock time, to line the fault up with the nodes' logs.
        let wall = super::workload::wall_clock();
        eprintln!(
            "chaos: {} nodes {victims:?} at {:.1}s (unix {}.{:03})",
            fault.name(),
            happened.as_secs_f64(),
            wall.as_secs(),
            wall.subsec_millis()
        );
        drop(c);
        std::thread::sleep(hold);
        let mut c = cluster.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = c.heal() {
            eprintln!("chaos: cannot heal after {}: {e}", fault.name());
        }
        events.push(Event {
            fault: *fault,
            at: happened,
            healed_at: start.elapsed(),
            nodes: victims,
            partitions,
        });
    }
    events
}
