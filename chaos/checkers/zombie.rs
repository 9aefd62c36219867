//! No write is acknowledged by a deposed leader. After a fault hits a partition's leader, an
//! acknowledged record that the final log does not hold, acknowledged once a new leader of its
//! partition had been seen elected (and before the fault's effects could have ended: 5 s after
//! it was healed), was acknowledged by the old leader after it was replaced — a zombie. Records
//! acknowledged before the election and lost are acks=1's known risk, counted by `lost`.
//! Sightings lag elections by up to the watcher's 50 ms, so a zombie acknowledgement in the
//! first 50 ms can be missed; never the other way round.

use std::time::Duration;

use super::{Check, Observed};
use crate::chaos::workload::payload;

pub fn check(o: &Observed) -> Check {
    let mut c = Check::new("zombie-acks");
    let log = o.log_at();
    for f in &o.faults {
        let until = f.healed_at + Duration::from_secs(5);
        for p in &f.partitions {
            let Some(election) = o
                .elections
                .iter()
                .filter(|e| e.partition == *p && e.seen > f.at && e.seen <= until)
                .min_by_key(|e| e.seen)
            else {
                continue;
            };
            let elected = election.seen;
            for a in o
                .acks
                .iter()
                .filter(|a| a.partition == *p && a.acked >= elected && a.acked <= until)
            {
                let expected = payload(a.producer, a.seq);
                if log.get(&(a.partition, a.offset)) != Some(&expected.as_slice()) {
                    c.violation(format!(
                        "{}:{} ({}) acknowledged {} ms after leader {} (epoch {}) was seen ({}), then lost",
                        a.partition,
                        a.offset,
                        String::from_utf8_lossy(&expected),
                        (a.acked - elected).as_millis(),
                        election.leader,
                        election.epoch,
                        f.fault.name()
                    ));
                }
            }
        }
    }
    c
}
