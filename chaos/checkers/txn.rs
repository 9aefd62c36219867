//! The transactional workload's invariants (`--txn`), over what a `read_committed` consumer of
//! `chaos-out` reads at the end: no output of an aborted transaction is visible; every committed
//! transaction is visible whole and in order; a transaction of unknown fate is all or nothing;
//! and every record of the source topic was processed exactly once (its output is visible
//! exactly once).

use std::collections::{HashMap, HashSet};

use super::{Check, Observed};
use crate::chaos::txn::{parse_output, Fate, TxnOutcome};
use crate::chaos::workload::{parse, Seen};

/// What the transactional workload adds to the observation.
pub struct TxnObserved {
    pub outcome: TxnOutcome,
    /// `chaos-out` as a `read_committed` consumer reads it from the start.
    pub committed: Vec<Seen>,
    /// How many records of aborted transactions a `read_uncommitted` read holds (shows they
    /// are in the log, so their absence above means something).
    pub aborted_in_log: usize,
}

pub fn check(o: &Observed) -> Vec<Check> {
    let Some(t) = &o.txn else {
        return Vec::new();
    };
    let mut aborted = Check::new("txn-aborted-visible");
    let mut whole = Check::new("txn-committed-whole");
    let mut once = Check::new("txn-exactly-once");
    let mut in_log = Check::new("txn-aborted-in-log");
    in_log.informational = true;
    in_log.violations = t.aborted_in_log;

    // Where each visible payload is.
    let mut at: HashMap<&str, (i32, i64)> = HashMap::new();
    for s in &t.committed {
        let p = std::str::from_utf8(&s.payload).unwrap_or("");
        if at.insert(p, (s.partition, s.offset)).is_some() {
            whole.violation(format!("{p} is visible twice"));
        }
    }
    let fates: HashMap<u64, Fate> = t.outcome.txns.iter().map(|r| (r.id, r.fate)).collect();
    for r in &t.outcome.txns {
        let present = r
            .outputs
            .iter()
            .filter(|(_, p)| at.contains_key(p.as_str()))
            .count();
        match r.fate {
            Fate::Aborted if present > 0 => aborted.violation(format!(
                "aborted txn {}: {present} of {} outputs visible",
                r.id,
                r.outputs.len()
            )),
            Fate::Committed if present < r.outputs.len() => whole.violation(format!(
                "committed txn {}: {} of {} outputs missing",
                r.id,
                r.outputs.len() - present,
                r.outputs.len()
            )),
            Fate::Unknown if present != 0 && present != r.outputs.len() => {
                whole.violation(format!(
                    "txn {} of unknown fate is partly visible: {present} of {}",
                    r.id,
                    r.outputs.len()
                ))
            }
            _ => {}
        }
        // In order within each partition.
        let mut last: HashMap<i32, i64> = HashMap::new();
        for (_, p) in &r.outputs {
            if let Some(&(part, off)) = at.get(p.as_str()) {
                if let Some(prev) = last.insert(part, off) {
                    if off < prev {
                        whole.violation(format!("txn {}: {p} before an earlier output", r.id));
                    }
                }
            }
        }
    }
    // Exactly once: each source record's output visible once, from a committed (or unknown,
    // hence committed) transaction.
    if !t.outcome.caught_up {
        once.violation("the processor did not catch up with the source before its deadline".into());
    }
    let mut processed: HashMap<(u32, u64), u64> = HashMap::new();
    for s in &t.committed {
        let Some((txn, producer, seq)) = parse_output(&s.payload) else {
            once.violation(format!(
                "{}:{} holds an unknown record",
                s.partition, s.offset
            ));
            continue;
        };
        if fates.get(&txn) == Some(&Fate::Aborted) {
            aborted.violation(format!("output of aborted txn {txn} visible"));
        }
        if let Some(first) = processed.insert((producer, seq), txn) {
            once.violation(format!(
                "{producer}:{seq} processed twice (txns {first} and {txn})"
            ));
        }
    }
    let source: HashSet<(u32, u64)> = o.log.iter().filter_map(|s| parse(&s.payload)).collect();
    let mut missing: Vec<&(u32, u64)> = source
        .iter()
        .filter(|k| !processed.contains_key(k))
        .collect();
    missing.sort();
    for (p, q) in missing {
        once.violation(format!("{p}:{q} never processed"));
    }
    for k in processed.keys().filter(|k| !source.contains(k)) {
        once.violation(format!("{}:{} processed but not in the source", k.0, k.1));
    }
    vec![aborted, whole, once, in_log]
}
