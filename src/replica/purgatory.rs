//! The purgatory: operations that must wait (an acks=all produce until the high watermark
//! covers its batches, a fetch until `min_bytes` arrive, a group commit until it is replicated,
//! a DeleteRecords until every replica's log start has moved) are parked here under the keys
//! whose events may complete them, with a deadline.
//!
//! An operation completes in one of three ways, exactly once: the event that satisfies it
//! (`check(key)` after a watermark, log end or leadership of `key` moved — the operation's own
//! `try_complete` decides), its deadline (`expire(now)`, with the clock passed in, so tests
//! drive time explicitly), or at once when it is registered (`watch` tries it before and after
//! parking it, so an event between the caller's look and the registration is not missed).
//!
//! Pure and synchronous: no tokio, no clock reads. `ReplicaManager` owns one per kind of
//! operation and drives `expire` from one timer task; partitions call `check` when they publish
//! a change. Keys are spread over shards, each its own mutex, so events on different partitions
//! do not contend. The number of parked operations is bounded: past `capacity`, `watch` refuses
//! and the caller completes the operation with what it has.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// An operation that waits in a purgatory, under keys of type `K`.
pub trait Delayed<K>: Send + Sync {
    /// Completes the operation if its condition now holds; returns whether it is complete
    /// (by this call or an earlier one). Called with no purgatory state locked but the key's.
    fn try_complete(&self) -> bool;
    /// `try_complete` after an event on `key` alone: an operation watching many keys may look
    /// at that one only (what it saw of the others has not changed).
    fn try_complete_after(&self, _key: &K) -> bool {
        self.try_complete()
    }
    /// The deadline passed: completes the operation with what it has (if nothing else did).
    fn expire(&self);
}

struct Entry<K, O> {
    id: u64,
    deadline: Instant,
    keys: Vec<K>,
    op: O,
}

type Watchers<K, O> = HashMap<K, Vec<Arc<Entry<K, O>>>>;
/// Parked entries by (deadline, id): the earliest first.
type Timer<K, O> = BTreeMap<(Instant, u64), Arc<Entry<K, O>>>;

pub struct Purgatory<K, O> {
    shards: Vec<Mutex<Watchers<K, O>>>,
    timer: Mutex<Timer<K, O>>,
    hasher: RandomState,
    next_id: AtomicU64,
    parked: AtomicUsize,
    capacity: usize,
}

/// `watch` did not park the operation (given back): the purgatory holds `capacity` already.
#[derive(Debug, PartialEq, Eq)]
pub struct Full<O>(pub O);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<K: Hash + Eq + Clone, O: Delayed<K>> Purgatory<K, O> {
    pub fn new(capacity: usize) -> Self {
        Purgatory {
            shards: (0..32).map(|_| Mutex::new(HashMap::new())).collect(),
            timer: Mutex::new(BTreeMap::new()),
            hasher: RandomState::new(),
            next_id: AtomicU64::new(0),
            parked: AtomicUsize::new(0),
            capacity,
        }
    }

    fn shard(&self, key: &K) -> &Mutex<Watchers<K, O>> {
        &self.shards[self.hasher.hash_one(key) as usize % self.shards.len()]
    }

    /// Operations parked now.
    pub fn len(&self) -> usize {
        self.parked.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[cfg(test)]
    /// The earliest deadline of a parked operation.
    pub fn next_deadline(&self) -> Option<Instant> {
        lock(&self.timer).keys().next().map(|(at, _)| *at)
    }

    /// Completes `op` now if it can; otherwise parks it under `keys` until an event on one of
    /// them completes it or `deadline` passes. `Ok(true)`: complete already; `Ok(false)`:
    /// parked; `Err(Full)`: neither (the caller decides what completing early means).
    pub fn watch(&self, op: O, keys: Vec<K>, deadline: Instant) -> Result<bool, Full<O>> {
        if op.try_complete() {
            return Ok(true);
        }
        if self.parked.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.parked.fetch_sub(1, Ordering::AcqRel);
            return Err(Full(op));
        }
        let entry = Arc::new(Entry {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            deadline,
            keys,
            op,
        });
        lock(&self.timer).insert((deadline, entry.id), entry.clone());
        for key in &entry.keys {
            lock(self.shard(key))
                .entry(key.clone())
                .or_default()
                .push(entry.clone());
        }
        // An event may have come between the first try and the registration.
        if entry.op.try_complete() {
            self.forget(&entry, None);
            return Ok(true);
        }
        Ok(false)
    }

    /// Something about `key` changed: completes the operations watching it that now can.
    /// Returns how many completed.
    pub fn check(&self, key: &K) -> usize {
        let done: Vec<Arc<Entry<K, O>>> = {
            let mut shard = lock(self.shard(key));
            let Some(list) = shard.get_mut(key) else {
                return 0;
            };
            let mut done = Vec::new();
            list.retain(|e| {
                let complete = e.op.try_complete_after(key);
                if complete {
                    done.push(e.clone());
                }
                !complete
            });
            if list.is_empty() {
                shard.remove(key);
            }
            done
        };
        for e in &done {
            self.forget(e, Some(key));
        }
        done.len()
    }

    /// Expires every operation whose deadline is at or before `now`. Returns how many.
    pub fn expire(&self, now: Instant) -> usize {
        let due: Vec<Arc<Entry<K, O>>> = {
            let mut timer = lock(&self.timer);
            let later = timer.split_off(&(now, u64::MAX));
            std::mem::replace(&mut *timer, later)
                .into_values()
                .collect()
        };
        for e in &due {
            e.op.expire();
            self.unwatch(e, None);
            self.parked.fetch_sub(1, Ordering::AcqRel);
        }
        due.len()
    }

    /// Removes a completed entry from the timer and from every key list but `skip` (whose
    /// list the caller has already dropped it from).
    fn forget(&self, e: &Arc<Entry<K, O>>, skip: Option<&K>) {
        if lock(&self.timer).remove(&(e.deadline, e.id)).is_some() {
            self.unwatch(e, skip);
            self.parked.fetch_sub(1, Ordering::AcqRel);
        }
    }

    fn unwatch(&self, e: &Arc<Entry<K, O>>, skip: Option<&K>) {
        for key in e.keys.iter().filter(|k| Some(*k) != skip) {
            let mut shard = lock(self.shard(key));
            if let Some(list) = shard.get_mut(key) {
                list.retain(|x| x.id != e.id);
                if list.is_empty() {
                    shard.remove(key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicI64;
    use std::time::Duration;

    /// Waits until a shared watermark reaches `target`; records how it ended.
    struct Until {
        watermark: Arc<AtomicI64>,
        target: i64,
        leader: Arc<AtomicI64>,
        outcome: Arc<Mutex<Option<&'static str>>>,
    }

    impl<K> Delayed<K> for Until {
        fn try_complete(&self) -> bool {
            let mut out = lock(&self.outcome);
            if out.is_none() {
                if self.leader.load(Ordering::SeqCst) != 1 {
                    *out = Some("not leader");
                } else if self.watermark.load(Ordering::SeqCst) >= self.target {
                    *out = Some("reached");
                }
            }
            out.is_some()
        }
        fn expire(&self) {
            lock(&self.outcome).get_or_insert("timed out");
        }
    }

    struct World {
        watermark: Arc<AtomicI64>,
        leader: Arc<AtomicI64>,
    }

    impl World {
        fn new() -> World {
            World {
                watermark: Arc::new(AtomicI64::new(0)),
                leader: Arc::new(AtomicI64::new(1)),
            }
        }
        fn op(&self, target: i64) -> (Until, Arc<Mutex<Option<&'static str>>>) {
            let outcome = Arc::new(Mutex::new(None));
            let op = Until {
                watermark: self.watermark.clone(),
                target,
                leader: self.leader.clone(),
                outcome: outcome.clone(),
            };
            (op, outcome)
        }
    }

    fn parked<O>(r: Result<bool, Full<O>>) -> bool {
        matches!(r, Ok(false))
    }

    fn outcome(o: &Arc<Mutex<Option<&'static str>>>) -> Option<&'static str> {
        *lock(o)
    }

    #[test]
    fn an_operation_that_can_complete_is_never_parked() {
        let p: Purgatory<&str, Until> = Purgatory::new(10);
        let w = World::new();
        w.watermark.store(5, Ordering::SeqCst);
        let (op, out) = w.op(5);
        assert_eq!(p.watch(op, vec!["a"], Instant::now()).ok(), Some(true));
        assert_eq!(outcome(&out), Some("reached"));
        assert!(p.is_empty());
        assert_eq!(p.next_deadline(), None);
    }

    #[test]
    fn an_event_on_its_key_completes_it_and_other_keys_do_not() {
        let p: Purgatory<&str, Until> = Purgatory::new(10);
        let w = World::new();
        let t0 = Instant::now();
        let (op, out) = w.op(3);
        assert_eq!(
            p.watch(op, vec!["a", "b"], t0 + Duration::from_secs(1))
                .ok(),
            Some(false)
        );
        assert_eq!(p.len(), 1);
        assert_eq!(p.check(&"b"), 0, "the watermark has not moved");
        w.watermark.store(3, Ordering::SeqCst);
        assert_eq!(p.check(&"c"), 0, "not its key");
        assert_eq!(outcome(&out), None);
        assert_eq!(p.check(&"b"), 1);
        assert_eq!(outcome(&out), Some("reached"));
        // Gone from every key and from the timer: nothing left to complete or expire.
        assert!(p.is_empty());
        assert_eq!(p.check(&"a"), 0);
        assert_eq!(p.expire(t0 + Duration::from_secs(5)), 0);
        assert_eq!(outcome(&out), Some("reached"));
    }

    #[test]
    fn deadlines_expire_in_order_with_explicit_time() {
        let p: Purgatory<&str, Until> = Purgatory::new(10);
        let w = World::new();
        let t0 = Instant::now();
        let (early, early_out) = w.op(10);
        let (late, late_out) = w.op(10);
        assert!(parked(p.watch(
            late,
            vec!["a"],
            t0 + Duration::from_millis(500)
        )));
        assert!(parked(p.watch(
            early,
            vec!["a"],
            t0 + Duration::from_millis(100)
        )));
        assert_eq!(p.next_deadline(), Some(t0 + Duration::from_millis(100)));
        assert_eq!(p.expire(t0 + Duration::from_millis(99)), 0);
        assert_eq!(p.expire(t0 + Duration::from_millis(100)), 1);
        assert_eq!(outcome(&early_out), Some("timed out"));
        assert_eq!(outcome(&late_out), None);
        assert_eq!(p.next_deadline(), Some(t0 + Duration::from_millis(500)));
        // The expired one is no longer watched: an event completes only the other.
        w.watermark.store(10, Ordering::SeqCst);
        assert_eq!(p.check(&"a"), 1);
        assert_eq!(outcome(&early_out), Some("timed out"));
        assert_eq!(outcome(&late_out), Some("reached"));
        assert!(p.is_empty());
    }

    #[test]
    fn losing_leadership_completes_waiters_at_the_next_event() {
        let p: Purgatory<&str, Until> = Purgatory::new(10);
        let w = World::new();
        let (op, out) = w.op(100);
        assert!(parked(p.watch(
            op,
            vec!["a"],
            Instant::now() + Duration::from_secs(30)
        )));
        w.leader.store(2, Ordering::SeqCst);
        assert_eq!(p.check(&"a"), 1);
        assert_eq!(outcome(&out), Some("not leader"));
    }

    #[test]
    fn past_capacity_watch_refuses_and_room_returns_as_operations_complete() {
        let p: Purgatory<u32, Until> = Purgatory::new(2);
        let w = World::new();
        let deadline = Instant::now() + Duration::from_secs(1);
        for k in 0..2 {
            assert_eq!(p.watch(w.op(1).0, vec![k], deadline).ok(), Some(false));
        }
        let (third, out) = w.op(1);
        assert!(matches!(p.watch(third, vec![9], deadline), Err(Full(_))));
        assert_eq!(
            outcome(&out),
            None,
            "a refused operation is the caller's to complete"
        );
        w.watermark.store(1, Ordering::SeqCst);
        assert_eq!(p.check(&0), 1);
        assert_eq!(p.len(), 1);
        assert_eq!(p.watch(w.op(2).0, vec![9], deadline).ok(), Some(false));
        assert_eq!(p.expire(deadline), 2);
        assert!(p.is_empty());
    }

    #[test]
    fn many_operations_on_many_keys_leave_nothing_behind() {
        let p: Purgatory<u32, Until> = Purgatory::new(100_000);
        let w = World::new();
        let t0 = Instant::now();
        let mut outs = Vec::new();
        for i in 0..1000u32 {
            let (op, out) = w.op(1 + (i % 2) as i64);
            let keys = vec![i % 37, (i * 7) % 53 + 100];
            assert!(parked(p.watch(
                op,
                keys,
                t0 + Duration::from_millis(i as u64)
            )));
            outs.push(out);
        }
        w.watermark.store(1, Ordering::SeqCst);
        let completed: usize = (0..200).map(|k| p.check(&k)).sum();
        assert_eq!(completed, 500, "every op waiting for 1 completes once");
        assert_eq!(p.expire(t0 + Duration::from_secs(2)), 500);
        assert!(p.is_empty());
        assert!(
            p.shards.iter().all(|s| lock(s).is_empty()),
            "no key list leaks"
        );
        assert!(outs.iter().all(|o| outcome(o).is_some()));
    }
}
