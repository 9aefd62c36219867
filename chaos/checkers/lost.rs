//! Every acknowledged record is in the final log, at the offset it was acknowledged with.

use super::{Check, Observed};
use crate::chaos::workload::payload;

pub fn check(o: &Observed) -> Check {
    let mut c = Check::new("lost");
    let log = o.log_at();
    for a in &o.acks {
        let expected = payload(a.producer, a.seq);
        match log.get(&(a.partition, a.offset)) {
            Some(p) if *p == expected.as_slice() => {}
            Some(p) => c.violation(format!(
                "{}:{} acknowledged as {} holds {}",
                a.partition,
                a.offset,
                String::from_utf8_lossy(&expected),
                String::from_utf8_lossy(p)
            )),
            None => c.violation(format!(
                "{}:{} ({}) missing",
                a.partition,
                a.offset,
                String::from_utf8_lossy(&expected)
            )),
        }
    }
    c
}
