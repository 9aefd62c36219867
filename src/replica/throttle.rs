//! Replication throttles, as Kafka has them: a broker sends at most
//! `leader.replication.throttled.rate` bytes per second to followers of its throttled replicas,
//! and fetches at most `follower.replication.throttled.rate` bytes per second for its own
//! throttled replicas. Which replicas are throttled is a topic config —
//! `leader.replication.throttled.replicas` / `follower.replication.throttled.replicas`: `*` or
//! `partition:broker` pairs, the broker being the one that applies it — which is what
//! `strom cluster rebalance --throttle` (and Kafka's reassignment tool) sets on the moving
//! partitions, so a reassignment cannot crowd out clients and ordinary replication. As in
//! Kafka, only replicas outside the ISR are ever held back (`Partition::throttled_for`): an
//! in-sync follower keeps pace, so acks=all produce never waits on a throttle.
//!
//! `Quota` is a leaky bucket over plain time (passed in, so tests drive it): each throttled
//! transfer adds its bytes, the bucket drains at the rate, and while it holds more than one
//! second's worth the throttled replicas wait — a leader leaves them out of its answer, a
//! follower out of its request. Over any stretch the bytes moved stay within the rate plus one
//! second's worth and one transfer; a replica whose partition grows slower than the rate is
//! never held back, so it can catch up to the high watermark and join the ISR (with no burst
//! allowed, every fetch would wait and the follower would stay a wait behind for ever).
//! One `Throttles` per broker, owned by the replica manager; rates follow the image's dynamic
//! broker configs (then the static settings).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// No throttle (Kafka's default, Long.MAX_VALUE).
pub const UNLIMITED: u64 = i64::MAX as u64;

/// A bytes-per-second budget shared by every throttled replica in one direction.
#[derive(Debug)]
pub struct Quota {
    rate: AtomicU64,
    /// (bytes still owed, when that was computed).
    debt: Mutex<(f64, Instant)>,
    /// Throttled bytes moved so far (`/metrics`).
    moved: AtomicU64,
}

impl Default for Quota {
    fn default() -> Quota {
        Quota {
            rate: AtomicU64::new(UNLIMITED),
            debt: Mutex::new((0.0, Instant::now())),
            moved: AtomicU64::new(0),
        }
    }
}

impl Quota {
    pub fn set_rate(&self, rate: u64) {
        self.rate.store(rate, Ordering::Relaxed);
    }

    pub fn rate(&self) -> u64 {
        self.rate.load(Ordering::Relaxed)
    }

    pub fn moved(&self) -> u64 {
        self.moved.load(Ordering::Relaxed)
    }

    fn drained(&self, now: Instant) -> std::sync::MutexGuard<'_, (f64, Instant)> {
        let mut d = self.debt.lock().unwrap_or_else(|p| p.into_inner());
        let rate = self.rate() as f64;
        let elapsed = now.saturating_duration_since(d.1).as_secs_f64();
        d.0 = (d.0 - elapsed * rate).max(0.0);
        d.1 = now;
        d
    }

    /// Whether throttled replicas must wait at `now`: the bucket holds more than a second's
    /// worth of bytes.
    pub fn exceeded_at(&self, now: Instant) -> bool {
        let rate = self.rate();
        rate < UNLIMITED && self.drained(now).0 > rate as f64
    }

    pub fn exceeded(&self) -> bool {
        self.exceeded_at(Instant::now())
    }

    /// Counts `bytes` moved for a throttled replica at `now`.
    pub fn record_at(&self, bytes: usize, now: Instant) {
        self.moved.fetch_add(bytes as u64, Ordering::Relaxed);
        if self.rate() < UNLIMITED {
            self.drained(now).0 += bytes as f64;
        }
    }

    pub fn record(&self, bytes: usize) {
        self.record_at(bytes, Instant::now())
    }
}

/// The broker's two quotas.
#[derive(Debug, Default)]
pub struct Throttles {
    pub leader: Quota,
    pub follower: Quota,
}

/// Whether this partition's replication is throttled here, in each role.
#[derive(Debug, Default)]
pub struct Throttled {
    pub leader: AtomicBool,
    pub follower: AtomicBool,
}

impl Throttled {
    pub fn set(&self, leader: bool, follower: bool) {
        self.leader.store(leader, Ordering::Relaxed);
        self.follower.store(follower, Ordering::Relaxed);
    }

    pub fn as_leader(&self) -> bool {
        self.leader.load(Ordering::Relaxed)
    }

    pub fn as_follower(&self) -> bool {
        self.follower.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_bucket_holds_throttled_replicas_back_until_its_debt_drains_at_the_rate() {
        let q = Quota::default();
        let t0 = Instant::now();
        q.record_at(1 << 20, t0);
        assert!(!q.exceeded_at(t0), "unlimited by default");
        q.set_rate(1 << 20);
        // A second's worth passes; more waits until the excess drained.
        q.record_at(1 << 20, t0);
        assert!(!q.exceeded_at(t0));
        q.record_at(1 << 20, t0);
        assert!(q.exceeded_at(t0 + Duration::from_millis(500)));
        assert!(!q.exceeded_at(t0 + Duration::from_millis(1001)));
        // A trickle below the rate is never held back.
        let mut now = t0 + Duration::from_secs(3);
        for _ in 0..100 {
            q.record_at(100 << 10, now);
            assert!(!q.exceeded_at(now));
            now += Duration::from_millis(200);
        }
        // Over ten seconds of transfers, as many as the rate allows, give or take one second's
        // worth and one transfer.
        let t1 = now + Duration::from_secs(2);
        let mut now = t1;
        let mut moved = 0usize;
        while now < t1 + Duration::from_secs(10) {
            if !q.exceeded_at(now) {
                q.record_at(256 << 10, now);
                moved += 256 << 10;
            }
            now += Duration::from_millis(10);
        }
        let expected = 10usize << 20;
        assert!(
            moved >= expected && moved <= expected + (1 << 20) + (512 << 10),
            "{moved} bytes in 10 s at 1 MiB/s"
        );
        assert_eq!(q.moved(), (3 << 20) + (10_000 << 10) + moved as u64);
    }
}
