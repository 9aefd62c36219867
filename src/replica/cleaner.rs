//! The log cleaner: `log.cleaner.threads` threads, each taking the dirtiest cleanable
//! compacted log this broker hosts — as leader or follower: every replica compacts its own
//! copy, as in Kafka — and running one pass over it (`PartitionLog::clean`), sleeping
//! `log.cleaner.backoff.ms` when no log is cleanable. The threads share one I/O budget
//! (`log.cleaner.io.max.bytes.per.second`) and split `log.cleaner.dedupe.buffer.size` between
//! their key maps; a log is cleaned by one thread at a time.
//!
//! Started by `node` as one task that ends when every thread has stopped (cancelling it, or
//! dropping it, stops them). At shutdown a pass stops at its next batch; what it had written
//! is dropped or finished on the next start.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{Partition, ReplicaManager};
use crate::config::CleanerSettings;
use crate::storage::compact::OffsetMap;
use crate::types::{now_ms, TopicPartition};

const MB: f64 = 1024.0 * 1024.0;

struct Shared {
    replicas: Arc<ReplicaManager>,
    settings: CleanerSettings,
    /// Logs a thread is cleaning now.
    busy: Mutex<HashSet<TopicPartition>>,
    throttle: Throttle,
    token: CancellationToken,
}

/// Runs the cleaner threads until `token` is cancelled.
pub async fn run(
    replicas: Arc<ReplicaManager>,
    settings: CleanerSettings,
    token: CancellationToken,
) {
    let threads = settings.threads.max(1);
    let shared = Arc::new(Shared {
        replicas,
        throttle: Throttle::new(settings.io_max_bytes_per_second),
        settings,
        busy: Mutex::new(HashSet::new()),
        token,
    });
    let mut handles = Vec::new();
    for i in 0..threads {
        let s = shared.clone();
        match std::thread::Builder::new()
            .name(format!("log-cleaner-{i}"))
            .spawn(move || work(&s))
        {
            Ok(h) => handles.push(h),
            Err(e) => tracing::error!(error = %e, "cannot start a log cleaner thread"),
        }
    }
    // Dropped without being cancelled (the runtime shutting down under a start-up that never
    // finished): the threads are told to stop all the same. They are waited for here without
    // the blocking pool, which a runtime's drop would wait on.
    let _stop_on_drop = shared.token.clone().drop_guard();
    while handles.iter().any(|h| !h.is_finished()) {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn work(shared: &Shared) {
    let memory = shared.settings.dedupe_buffer_size / shared.settings.threads.max(1);
    let mut map = OffsetMap::with_memory(memory);
    let backoff = Duration::from_millis(shared.settings.backoff_ms);
    // Logs whose last pass failed, and when they may be tried again.
    let mut failed: HashMap<TopicPartition, Instant> = HashMap::new();
    while !shared.token.is_cancelled() {
        failed.retain(|_, until| *until > Instant::now());
        match pick(shared, &failed) {
            Some(p) => {
                let tp = p.tp().clone();
                if !clean_one(shared, &p, &mut map) {
                    failed.insert(
                        tp.clone(),
                        Instant::now() + backoff.max(Duration::from_secs(1)),
                    );
                }
                lock(&shared.busy).remove(&tp);
            }
            None => sleep_unless_stopped(shared, backoff),
        }
    }
}

/// The dirtiest cleanable log no other thread is cleaning, marked busy.
fn pick(shared: &Shared, failed: &HashMap<TopicPartition, Instant>) -> Option<Arc<Partition>> {
    let now = now_ms();
    let mut busy = lock(&shared.busy);
    let best = shared
        .replicas
        .hosted()
        .into_iter()
        .filter(|p| !busy.contains(p.tp()) && !failed.contains_key(p.tp()))
        .filter_map(|p| {
            let d = p.dirtiness(now)?;
            d.cleanable.then_some((d.ratio, p))
        })
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, p)| p)?;
    busy.insert(best.tp().clone());
    Some(best)
}

/// One pass over `p`, logged; false when it failed.
fn clean_one(shared: &Shared, p: &Partition, map: &mut OffsetMap) -> bool {
    let started = Instant::now();
    let gate = |bytes: u64| {
        shared.throttle.take(bytes, &shared.token);
        !shared.token.is_cancelled()
    };
    match p.clean(now_ms(), map, &gate) {
        Ok(Some(stats)) => {
            let secs = started.elapsed().as_secs_f64().max(1e-6);
            let counters = &shared.replicas.counters;
            use std::sync::atomic::Ordering::Relaxed;
            counters.cleaner_passes.fetch_add(1, Relaxed);
            counters.cleaner_bytes_removed.fetch_add(
                stats.before_bytes.saturating_sub(stats.after_bytes),
                Relaxed,
            );
            tracing::info!(
                tp = %p.tp(),
                dirty_ratio = format!("{:.2}", stats.dirty_ratio),
                before_mb = format!("{:.1}", stats.before_bytes as f64 / MB),
                after_mb = format!("{:.1}", stats.after_bytes as f64 / MB),
                dirty_mb = format!("{:.1}", stats.mapped_bytes as f64 / MB),
                keys = stats.keys,
                segments = stats.groups,
                cleaned_to = stats.cleaned_to,
                seconds = format!("{secs:.2}"),
                dirty_mb_per_s = format!("{:.1}", stats.mapped_bytes as f64 / MB / secs),
                abandoned = stats.abandoned,
                "cleaned log"
            );
            true
        }
        Ok(None) => true,
        Err(_) if shared.token.is_cancelled() => true,
        Err(e) => {
            tracing::warn!(tp = %p.tp(), error = %e, "cleaning failed; the log is tried again later");
            false
        }
    }
}

fn sleep_unless_stopped(shared: &Shared, total: Duration) {
    let until = Instant::now() + total;
    while !shared.token.is_cancelled() {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}

/// Bytes per second over all threads: a thread that got ahead of the rate sleeps.
struct Throttle {
    rate: Option<f64>,
    /// Start of the current one-second window and the bytes counted in it.
    window: Mutex<(Instant, f64)>,
}

impl Throttle {
    fn new(rate: Option<f64>) -> Throttle {
        Throttle {
            rate,
            window: Mutex::new((Instant::now(), 0.0)),
        }
    }

    fn take(&self, bytes: u64, token: &CancellationToken) {
        let Some(rate) = self.rate else { return };
        let wait = {
            let mut w = lock(&self.window);
            if w.0.elapsed() > Duration::from_secs(1) && w.1 / rate <= w.0.elapsed().as_secs_f64() {
                *w = (Instant::now(), 0.0);
            }
            w.1 += bytes as f64;
            w.1 / rate - w.0.elapsed().as_secs_f64()
        };
        let until = Instant::now() + Duration::from_secs_f64(wait.max(0.0));
        while !token.is_cancelled() && Instant::now() < until {
            std::thread::sleep(
                until
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(100)),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_throttle_holds_a_thread_to_the_rate() {
        let t = Throttle::new(Some(1_000_000.0));
        let token = CancellationToken::new();
        let start = Instant::now();
        for _ in 0..5 {
            t.take(100_000, &token);
        }
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(450), "{took:?}");
        let free = Throttle::new(None);
        let start = Instant::now();
        free.take(u64::MAX, &token);
        assert!(start.elapsed() < Duration::from_millis(50));
    }
}
