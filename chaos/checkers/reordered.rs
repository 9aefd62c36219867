//! Within a partition, each producer's records are in the order it sent them (and so in the
//! order they were acknowledged).

use std::collections::HashMap;

use super::{Check, Observed};
use crate::chaos::workload::parse;

pub fn check(o: &Observed) -> Check {
    let mut c = Check::new("reordered");
    let mut log = o.log.clone();
    log.sort_by_key(|s| (s.partition, s.offset));
    let mut last: HashMap<(i32, u32), u64> = HashMap::new();
    for s in &log {
        let Some((producer, seq)) = parse(&s.payload) else {
            continue;
        };
        if let Some(prev) = last.insert((s.partition, producer), seq) {
            if prev >= seq {
                c.violation(format!(
                    "partition {}: producer {producer} wrote {seq} after {prev}",
                    s.partition
                ));
            }
        }
    }
    c
}
