//! One invariant per file. Each checker looks at what the clients saw and what the log holds,
//! and reports how many violations it found, with a few examples.

pub mod duplicated;
pub mod full_isr;
pub mod group;
pub mod lost;
pub mod reordered;
pub mod replicas;
pub mod served;
pub mod txn;
pub mod zombie;

use super::elections::Election;
use super::nemesis::Event;
use super::workload::{Ack, Seen};

/// Everything the checkers look at.
pub struct Observed {
    pub acks: Vec<Ack>,
    /// The final full read of every partition, from offset zero.
    pub log: Vec<Seen>,
    /// What the consumer group's members were served during the run (a record may come twice
    /// after a rebalance: the group reads at least once).
    pub live: Vec<Seen>,
    /// Per partition: whether every replica's segment bytes ended identical.
    pub replicas_identical: Vec<(i32, bool)>,
    pub full_isr: bool,
    /// The faults as they happened, and the leader elections seen during the run.
    pub faults: Vec<Event>,
    pub elections: Vec<Election>,
    /// The producers' acks setting: with 1, a leader's death may lose acknowledged records
    /// (Kafka's semantics), so the checks that assume acks=all only inform.
    pub acks_setting: i16,
    /// The transactional workload's outcome (`--txn`).
    pub txn: Option<txn::TxnObserved>,
}

impl Observed {
    /// The final log by (partition, offset): the record's payload.
    pub fn log_at(&self) -> std::collections::HashMap<(i32, i64), &[u8]> {
        self.log
            .iter()
            .map(|s| ((s.partition, s.offset), s.payload.as_slice()))
            .collect()
    }
}

#[derive(Clone, Debug)]
pub struct Check {
    pub name: &'static str,
    pub violations: usize,
    pub examples: Vec<String>,
    /// Reported, but not a failure of the run (an acks=all invariant in an acks=1 run).
    pub informational: bool,
}

impl Check {
    pub fn new(name: &'static str) -> Check {
        Check {
            name,
            violations: 0,
            examples: Vec::new(),
            informational: false,
        }
    }

    pub fn violation(&mut self, what: String) {
        self.violations += 1;
        if self.examples.len() < 5 {
            self.examples.push(what);
        }
    }
}

pub fn all(o: &Observed) -> Vec<Check> {
    let mut checks = vec![
        lost::check(o),
        duplicated::check(o),
        reordered::check(o),
        served::check(o),
        group::check(o),
        replicas::check(o),
        full_isr::check(o),
    ];
    checks.extend(zombie::check(o));
    checks.extend(txn::check(o));
    if o.acks_setting != -1 {
        // Without acks=all (and so without idempotence) records may be lost with a dead
        // leader, and retried into duplicates or out of order; zombie acks still may not.
        for c in &mut checks {
            c.informational |= matches!(
                c.name,
                "lost" | "duplicated" | "reordered" | "group-skipped"
            );
        }
    }
    checks
}
