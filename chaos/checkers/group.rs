//! The consumer group skipped nothing: every acknowledged record was delivered to one of its
//! members (at least once — a rebalance or a coordinator failover may repeat records from the
//! last commit, never skip past them).

use std::collections::HashSet;

use super::{Check, Observed};
use crate::chaos::workload::payload;

pub fn check(o: &Observed) -> Check {
    let mut c = Check::new("group-skipped");
    let delivered: HashSet<&[u8]> = o.live.iter().map(|s| s.payload.as_slice()).collect();
    for a in &o.acks {
        let p = payload(a.producer, a.seq);
        if !delivered.contains(p.as_slice()) {
            c.violation(format!(
                "{}:{} ({}) never reached the consumer group",
                a.partition,
                a.offset,
                String::from_utf8_lossy(&p)
            ));
        }
    }
    c
}
