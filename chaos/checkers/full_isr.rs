//! After healing, every partition is back to a full ISR.

use super::{Check, Observed};

pub fn check(o: &Observed) -> Check {
    let mut c = Check::new("isr-not-full");
    if !o.full_isr {
        c.violation("the ISR did not return to all replicas after healing".into());
    }
    c
}
