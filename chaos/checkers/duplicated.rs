//! No record (producer, sequence) is in the log twice.

use std::collections::HashMap;

use super::{Check, Observed};
use crate::chaos::workload::parse;

pub fn check(o: &Observed) -> Check {
    let mut c = Check::new("duplicated");
    let mut seen: HashMap<(u32, u64), (i32, i64)> = HashMap::new();
    for s in &o.log {
        let Some(id) = parse(&s.payload) else {
            c.violation(format!(
                "{}:{} holds an unknown record",
                s.partition, s.offset
            ));
            continue;
        };
        if let Some(first) = seen.insert(id, (s.partition, s.offset)) {
            c.violation(format!(
                "{}:{} at {first:?} and {:?}",
                id.0,
                id.1,
                (s.partition, s.offset)
            ));
        }
    }
    c
}
