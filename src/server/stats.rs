//! Request figures for `/metrics`, per API: how many requests, and how long each spent in three
//! phases — queued (handed to its task until the task first ran), handled (decoding, the
//! handler and any wait in the purgatory, until the answer was ready) and sent (answer ready
//! until written to the socket, which includes waiting behind the connection's earlier
//! answers). Histograms with fixed buckets in seconds, counted with relaxed atomics: one
//! `RequestStats` per node (in `Connections`), touched by every connection's tasks, read by the
//! HTTP listener when scraped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kafka_protocol::messages::ApiKey;

/// Upper bounds of the histogram buckets, in seconds (then +Inf).
pub const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A latency histogram: a count per bucket (not cumulative; +Inf last) and the sum.
#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(
            d.as_micros().min(u64::MAX as u128) as u64,
            Ordering::Relaxed,
        );
    }

    /// Cumulative counts per bucket (+Inf last, which is the total count) and the sum in
    /// seconds, as Prometheus exposes a histogram.
    pub fn cumulative(&self) -> (Vec<u64>, f64) {
        let mut total = 0;
        let counts = self
            .counts
            .iter()
            .map(|c| {
                total += c.load(Ordering::Relaxed);
                total
            })
            .collect();
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        (counts, sum)
    }
}

/// One API's figures.
#[derive(Debug, Default)]
pub struct ApiStats {
    pub queue: Histogram,
    pub handle: Histogram,
    pub send: Histogram,
}

/// Every served API's figures, indexed by API key number (a lookup per request, no search).
#[derive(Debug)]
pub struct RequestStats {
    apis: Vec<Option<(ApiKey, ApiStats)>>,
}

impl Default for RequestStats {
    fn default() -> RequestStats {
        let served = crate::protocol::SUPPORTED;
        let slots = served
            .iter()
            .map(|(k, _, _)| *k as usize + 1)
            .max()
            .unwrap_or(0);
        let mut apis: Vec<Option<(ApiKey, ApiStats)>> = (0..slots).map(|_| None).collect();
        for (k, _, _) in served {
            apis[*k as usize] = Some((*k, ApiStats::default()));
        }
        RequestStats { apis }
    }
}

impl RequestStats {
    pub fn of(&self, key: ApiKey) -> Option<&ApiStats> {
        self.apis.get(key as usize)?.as_ref().map(|(_, s)| s)
    }

    /// The APIs that have been asked at least once, in key order.
    pub fn used(&self) -> impl Iterator<Item = (ApiKey, &ApiStats)> {
        self.apis
            .iter()
            .flatten()
            .filter(|(_, s)| s.handle.cumulative().0.last().copied().unwrap_or(0) > 0)
            .map(|(k, s)| (*k, s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_their_buckets_cumulatively() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        let (counts, sum) = h.cumulative();
        assert_eq!(counts.len(), BUCKETS.len() + 1);
        assert_eq!(counts[0], 1, "0.5 ms bucket");
        assert_eq!(counts[2], 1, "2.5 ms bucket holds only the first");
        assert_eq!(counts[3], 2, "5 ms bucket");
        assert_eq!(counts[BUCKETS.len() - 1], 2, "10 s bucket");
        assert_eq!(counts[BUCKETS.len()], 3, "+Inf is the count");
        assert!((sum - 60.0033).abs() < 1e-6, "{sum}");
        let stats = RequestStats::default();
        for (k, _, _) in crate::protocol::SUPPORTED {
            assert!(stats.of(*k).is_some(), "{k:?} has figures");
        }
        assert!(
            stats.of(ApiKey::ConsumerGroupHeartbeat).is_none(),
            "not served, not counted"
        );
        assert_eq!(stats.used().count(), 0);
        stats
            .of(ApiKey::Fetch)
            .expect("fetch")
            .handle
            .observe(Duration::from_millis(1));
        assert_eq!(
            stats.used().map(|(k, _)| k).collect::<Vec<_>>(),
            vec![ApiKey::Fetch]
        );
    }
}
