//! No write is acknowledged by a deposed leader. After a fault hits a partition's leader, an
//! acknowledged record that the final log does not hold, and that its leader appended once a new
//! leader of its partition had been seen elected (and before the fault's effects could have
//! ended: 5 s after it was healed), was taken by the old leader after it was replaced — a
//! zombie. The append time is the leader's own (the workload's topic stamps LogAppendTime, which
//! the acknowledgement carries back), so a client that hears of an acknowledgement late does not
//! make it a zombie; without it the record's sending is the bound, which is later still.
//! Records appended before the election and lost are acks=1's known risk, counted by `lost`;
//! those whose acknowledgement only reached the client after the sighting are counted in
//! `late-acks` (informational), with how late.
//! Sightings lag elections by up to the watcher's 50 ms, so a zombie append in the first 50 ms
//! can be missed; never the other way round.

use std::time::Duration;

use super::{Check, Observed};
use crate::chaos::workload::payload;

pub fn check(o: &Observed) -> Vec<Check> {
    let mut zombies = Check::new("zombie-acks");
    let mut late = Check::new("late-acks");
    late.informational = true;
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
                if log.get(&(a.partition, a.offset)) == Some(&expected.as_slice()) {
                    continue;
                }
                let taken = a.appended.unwrap_or(a.sent);
                let what = format!(
                    "{}:{} ({}) appended {} ms {} and acknowledged {} ms after leader {} (epoch {}) was seen ({}), then lost",
                    a.partition,
                    a.offset,
                    String::from_utf8_lossy(&expected),
                    taken.abs_diff(elected).as_millis(),
                    if taken < elected { "before" } else { "after" },
                    (a.acked - elected).as_millis(),
                    election.leader,
                    election.epoch,
                    f.fault.name()
                );
                if taken >= elected {
                    zombies.violation(what);
                } else {
                    late.violation(what);
                }
            }
        }
    }
    vec![zombies, late]
}
