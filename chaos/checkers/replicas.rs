//! After healing, all replicas of a partition hold byte-identical segments.

use super::{Check, Observed};

pub fn check(o: &Observed) -> Check {
    let mut c = Check::new("replicas-differ");
    for (p, same) in &o.replicas_identical {
        if !same {
            c.violation(format!("partition {p}: replicas differ"));
        }
    }
    c
}
