//! No offset ever served to a consumer is later missing or different: nothing below a high
//! watermark a consumer saw was truncated.

use super::{Check, Observed};

pub fn check(o: &Observed) -> Check {
    let mut c = Check::new("served-then-lost");
    let log = o.log_at();
    for s in &o.live {
        match log.get(&(s.partition, s.offset)) {
            Some(p) if *p == s.payload.as_slice() => {}
            Some(_) => c.violation(format!(
                "{}:{} changed after it was served",
                s.partition, s.offset
            )),
            None => c.violation(format!(
                "{}:{} was served and is gone",
                s.partition, s.offset
            )),
        }
    }
    c
}
