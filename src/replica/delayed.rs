//! The operations that wait on hosted partitions, and the purgatories they wait in.
//!
//! - `WatermarkWait`: until each of its partitions' high watermark (acks=all produce, group
//!   commits) or low watermark (DeleteRecords) reaches a target, while this node still leads at
//!   the epoch the write was made in.
//! - `FetchWait`: until the partitions of a fetch hold `min_bytes` beyond the fetch offsets
//!   (up to the high watermark for consumers, the log end for followers), or one of them
//!   changes leadership.
//!
//! Both are completed by `Waits::changed(tp)` — which every `Partition` calls after it publishes
//! a change — or by their deadline. The waiting side awaits a oneshot; when its own deadline
//! fires it runs `expire(now)`, which completes it (and any other operation due). The manager's
//! periodic task expires too, so an operation whose waiter went away does not stay parked.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::partition::Partition;
use super::purgatory::{Delayed, Full, Purgatory};
use crate::storage::Window;
use crate::types::{LeaderEpoch, Offset, TopicPartition};

/// Parked operations per purgatory, at most (each holds a few hundred bytes).
const CAPACITY: usize = 200_000;

/// How a wait for a watermark ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HwWait {
    Reached,
    TimedOut,
    /// Leadership moved while waiting: the record's fate is the new leader's to tell.
    NotLeader,
}

/// Which watermark a write waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// Every ISR member has the records (acks=all, group commits).
    High,
    /// Every ISR member's log starts at or after the target (DeleteRecords).
    Low,
}

/// One partition a `WatermarkWait` waits on.
pub struct Target {
    pub partition: Arc<Partition>,
    pub mark: Mark,
    pub offset: Offset,
    /// The leader epoch the write was made at; losing it ends the wait.
    pub epoch: LeaderEpoch,
}

impl Target {
    fn outcome(&self) -> Option<HwWait> {
        let p = &self.partition;
        if !p.leads_at(self.epoch) {
            return Some(HwWait::NotLeader);
        }
        let reached = match self.mark {
            Mark::High => p.high_watermark(),
            Mark::Low => p.low_watermark(),
        };
        (reached >= self.offset).then_some(HwWait::Reached)
    }
}

type Answer<T> = Mutex<Option<oneshot::Sender<T>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(super) struct WatermarkWait {
    targets: Vec<Target>,
    outcomes: Mutex<Vec<Option<HwWait>>>,
    answer: Answer<Vec<HwWait>>,
}

impl WatermarkWait {
    fn finish(&self, outcomes: &mut [Option<HwWait>], or: HwWait) {
        if let Some(tx) = lock(&self.answer).take() {
            let _ = tx.send(outcomes.iter().map(|o| o.unwrap_or(or)).collect());
        }
    }
}

impl Delayed<TopicPartition> for WatermarkWait {
    fn try_complete(&self) -> bool {
        let mut outcomes = lock(&self.outcomes);
        if lock(&self.answer).is_none() {
            return true;
        }
        for (t, o) in self.targets.iter().zip(outcomes.iter_mut()) {
            if o.is_none() {
                *o = t.outcome();
            }
        }
        if outcomes.iter().all(Option::is_some) {
            self.finish(&mut outcomes, HwWait::Reached);
            return true;
        }
        false
    }

    fn expire(&self) {
        let mut outcomes = lock(&self.outcomes);
        self.finish(&mut outcomes, HwWait::TimedOut);
    }
}

/// One partition a `FetchWait` watches: where the fetcher reads from and how much it may take.
pub(super) struct Watched {
    pub partition: Arc<Partition>,
    pub fetch_offset: Offset,
    pub max_bytes: usize,
    pub epoch: LeaderEpoch,
}

/// How far a waiting fetch may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Upto {
    /// A follower: to the log end.
    LogEnd,
    /// A consumer: to the high watermark.
    HighWatermark,
    /// A `read_committed` consumer: to the last stable offset (which moves only with the high
    /// watermark, so the same wake-ups serve it).
    LastStable,
}

pub(super) struct FetchWait {
    watched: Vec<Watched>,
    /// Where each watched partition is in `watched`: an event on one partition looks at that
    /// one only (a follower's fetch may watch thousands).
    positions: std::collections::HashMap<TopicPartition, usize>,
    upto: Upto,
    min_bytes: usize,
    /// Bytes readable per watched partition as last looked at, and their sum (`min_bytes` > 1).
    seen: Mutex<(Vec<usize>, usize)>,
    answer: Answer<()>,
}

/// What one watched partition offers a waiting fetch.
enum Offer {
    /// Enough by itself: data with `min_bytes` ≤ 1, a leadership change, or a read error (for
    /// the fetch itself to report).
    Ready,
    Bytes(usize),
}

impl FetchWait {
    fn new(
        watched: Vec<Watched>,
        upto: Upto,
        min_bytes: usize,
        answer: oneshot::Sender<()>,
    ) -> Self {
        let positions = watched
            .iter()
            .enumerate()
            .map(|(i, w)| (w.partition.tp().clone(), i))
            .collect();
        let n = watched.len();
        FetchWait {
            watched,
            positions,
            upto,
            min_bytes,
            seen: Mutex::new((vec![0; n], 0)),
            answer: Mutex::new(Some(answer)),
        }
    }

    fn offer(&self, w: &Watched) -> Offer {
        let p = &w.partition;
        if !p.leads_at(w.epoch) {
            return Offer::Ready;
        }
        let end = match self.upto {
            Upto::LogEnd => p.log_end_offset(),
            Upto::HighWatermark => p.high_watermark(),
            Upto::LastStable => p.last_stable_offset(),
        };
        if end <= w.fetch_offset {
            return Offer::Bytes(0);
        }
        if self.min_bytes <= 1 {
            return Offer::Ready;
        }
        match p.region(w.fetch_offset, Window::new(w.max_bytes, end, true)) {
            Ok(Some(r)) => Offer::Bytes(r.len),
            Ok(None) => Offer::Bytes(0),
            Err(_) => Offer::Ready,
        }
    }

    /// Notes what partition `i` offers now; whether the fetch may read again.
    fn note(&self, seen: &mut (Vec<usize>, usize), i: usize) -> bool {
        match self.offer(&self.watched[i]) {
            Offer::Ready => true,
            Offer::Bytes(n) => {
                seen.1 = seen.1 - seen.0[i] + n;
                seen.0[i] = n;
                self.min_bytes > 1 && seen.1 >= self.min_bytes
            }
        }
    }

    /// Whether enough has arrived (or leadership moved) for the fetch to read again, looking
    /// at every watched partition.
    fn ready(&self) -> bool {
        let mut seen = lock(&self.seen);
        (0..self.watched.len()).any(|i| self.note(&mut seen, i))
    }

    /// `ready`, after an event on `tp` only.
    fn ready_after(&self, tp: &TopicPartition) -> bool {
        match self.positions.get(tp) {
            Some(&i) => self.note(&mut lock(&self.seen), i),
            None => self.ready(),
        }
    }

    fn complete_if(&self, ready: impl FnOnce() -> bool) -> bool {
        let mut answer = lock(&self.answer);
        if answer.is_none() {
            return true;
        }
        if ready() {
            if let Some(tx) = answer.take() {
                let _ = tx.send(());
            }
            return true;
        }
        false
    }
}

impl Delayed<TopicPartition> for FetchWait {
    fn try_complete(&self) -> bool {
        self.complete_if(|| self.ready())
    }

    fn try_complete_after(&self, key: &TopicPartition) -> bool {
        self.complete_if(|| self.ready_after(key))
    }

    fn expire(&self) {
        if let Some(tx) = lock(&self.answer).take() {
            let _ = tx.send(());
        }
    }
}

/// The replica manager's purgatories.
pub struct Waits {
    watermarks: Purgatory<TopicPartition, WatermarkWait>,
    fetches: Purgatory<TopicPartition, FetchWait>,
}

impl Waits {
    /// (watermark waits, fetch waits) parked now.
    pub(super) fn sizes(&self) -> (usize, usize) {
        (self.watermarks.len(), self.fetches.len())
    }
}

impl Default for Waits {
    fn default() -> Self {
        Waits {
            watermarks: Purgatory::new(CAPACITY),
            fetches: Purgatory::new(CAPACITY),
        }
    }
}

impl Waits {
    /// A partition published a change (log end, log start, high watermark or leadership).
    pub(super) fn changed(&self, tp: &TopicPartition) {
        self.watermarks.check(tp);
        self.fetches.check(tp);
    }

    /// Expires every operation due by `now`.
    pub(super) fn expire(&self, now: Instant) {
        self.watermarks.expire(now);
        self.fetches.expire(now);
    }

    /// Waits until every target is reached, fails or `timeout` passes; one outcome each.
    pub(super) async fn watermarks(&self, targets: Vec<Target>, timeout: Duration) -> Vec<HwWait> {
        if targets.is_empty() {
            return Vec::new();
        }
        let deadline = Instant::now() + timeout;
        let count = targets.len();
        let (tx, rx) = oneshot::channel();
        let keys = targets.iter().map(|t| t.partition.tp().clone()).collect();
        let op = WatermarkWait {
            outcomes: Mutex::new(vec![None; targets.len()]),
            targets,
            answer: Mutex::new(Some(tx)),
        };
        if let Err(Full(op)) = self.watermarks.watch(op, keys, deadline) {
            op.expire();
        }
        self.answer(rx, deadline)
            .await
            .unwrap_or_else(|| vec![HwWait::TimedOut; count])
    }

    /// Waits until the watched partitions hold `min_bytes` beyond their fetch offsets, one of
    /// them changes leadership, or `deadline` passes.
    pub(super) async fn fetch(
        &self,
        watched: Vec<Watched>,
        upto: Upto,
        min_bytes: usize,
        deadline: Instant,
    ) {
        let (tx, rx) = oneshot::channel();
        let keys = watched.iter().map(|w| w.partition.tp().clone()).collect();
        let op = FetchWait::new(watched, upto, min_bytes, tx);
        if let Err(Full(op)) = self.fetches.watch(op, keys, deadline) {
            op.expire();
        }
        self.answer(rx, deadline).await;
    }

    /// The operation's answer; at its deadline, expiring what is due first.
    async fn answer<T>(&self, mut rx: oneshot::Receiver<T>, deadline: Instant) -> Option<T> {
        match tokio::time::timeout_at(deadline.into(), &mut rx).await {
            Ok(r) => r.ok(),
            Err(_) => {
                self.expire(Instant::now().max(deadline));
                rx.await.ok()
            }
        }
    }
}
