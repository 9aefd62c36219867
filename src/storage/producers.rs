//! Idempotent-producer state of one partition: for every producer id, its epoch and the last
//! five batches' sequence ranges with their offsets. The leader checks each new batch against it
//! (in order? a duplicate? a fenced epoch?) under the log's lock, so the check and the append are
//! one step; followers and recovery rebuild it from batch headers as they append or scan.
//! A snapshot (`producer-snapshot`: the state as of an offset) is written at segment roll and at
//! clean shutdown, so recovery only scans the log after it. Pure apart from `load` / `save`.
//!
//! Transactions live here too: a producer's open transaction (the offset of its first
//! transactional batch, until a marker ends it) and transactions whose marker is written but not
//! yet below the high watermark. The last stable offset is the first offset of the oldest
//! transaction not yet decided and replicated, or the high watermark. An abort marker's
//! transaction is handed back to the log, which keeps it in the marker segment's `.txnindex`
//! (`txnindex.rs`). Leaders also keep, in memory only, the KIP-890 verifications in progress:
//! a transaction's first batch on a partition is appended only under the guard the
//! coordinator's check was started with, and any transactional batch or marker of the producer
//! since then voids it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::batch::BatchHeader;
use super::records::ControlRecord;
pub use super::txnindex::AbortedTxn;
use crate::types::Offset;

/// How many recent batches per producer are remembered for duplicate detection (Kafka's five
/// in-flight requests).
const CACHED_BATCHES: usize = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchSeq {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: Offset,
    pub last_offset: Offset,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerEntry {
    pub epoch: i16,
    pub batches: VecDeque<BatchSeq>,
    /// The largest timestamp this producer wrote (for expiration).
    pub last_timestamp: i64,
    /// The first offset of this producer's open transaction.
    #[serde(default)]
    pub txn_first: Option<Offset>,
    /// The epoch of the transaction coordinator whose marker came last: an older coordinator's
    /// markers are refused (a deposed coordinator still retrying).
    #[serde(default = "no_epoch")]
    pub coordinator_epoch: i32,
}

fn no_epoch() -> i32 {
    -1
}

/// Where guards of transaction verifications come from: unique for the process, so a guard
/// voided and then started again is never mistaken for the first one.
static NEXT_GUARD: AtomicU64 = AtomicU64::new(1);

/// A KIP-890 verification in progress on the leader: the producer's next transaction may start
/// here with a batch appended under `guard`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Verifying {
    guard: u64,
    /// Wall-clock ms it started (forgotten with the producer's expiration).
    since_ms: i64,
}

/// How a leader append treats a batch that would open a transaction (KIP-890 part 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnVerification {
    /// Not checked: verification is off, or the writer is the broker itself.
    Off,
    /// Only under this guard, from `start_verification` before the coordinator was asked.
    Guard(u64),
}

/// Why a batch from an idempotent producer was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProducerError {
    #[error("sequence {got} is out of order; expected {expected}")]
    OutOfOrder { expected: i32, got: i32 },
    #[error("producer epoch {got} is older than the current {current}")]
    Fenced { current: i16, got: i16 },
    #[error("producer id is unknown to this partition (sequence {got} is not 0)")]
    UnknownProducer { got: i32 },
    #[error("a transaction marker's producer epoch {got} is older than the current {current}")]
    FencedMarker { current: i16, got: i16 },
    #[error(
        "a transaction marker from coordinator epoch {got}, older than the last one's ({current})"
    )]
    CoordinatorFenced { current: i32, got: i32 },
    #[error("the partition was not added to the transaction (its verification is gone)")]
    NotVerified,
}

/// What the check decided for a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Not idempotent, or next in sequence: append it.
    Append,
    /// Already in the log: answer with its original offsets, append nothing.
    Duplicate {
        first_offset: Offset,
        last_offset: Offset,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerState {
    producers: HashMap<i64, ProducerEntry>,
    /// Open transactions: first offset -> producer id.
    #[serde(default)]
    ongoing: BTreeMap<Offset, i64>,
    /// Decided transactions whose marker may still be at or above the high watermark:
    /// (first offset, marker offset). They hold the last stable offset until replicated.
    #[serde(default)]
    deciding: Vec<(Offset, Offset)>,
    /// Aborted transactions, as snapshots of older versions kept them (now in `.txnindex`
    /// files): read, handed to the log once (`take_legacy_aborted`), never written.
    #[serde(default, rename = "aborted", skip_serializing)]
    legacy_aborted: Vec<AbortedTxn>,
    /// Verifications in progress, by producer id (leader only, never snapshotted).
    #[serde(skip)]
    verifying: HashMap<i64, Verifying>,
}

fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

fn last_seq(h: &BatchHeader) -> i32 {
    // Sequences wrap at i32::MAX, as in Kafka.
    ((h.base_sequence as i64 + h.last_offset_delta as i64) % (i32::MAX as i64 + 1)) as i32
}

/// One active producer as DescribeProducers reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActiveProducer {
    pub producer_id: i64,
    pub epoch: i16,
    pub last_sequence: i32,
    pub last_timestamp: i64,
    /// The first offset of its open transaction, or -1.
    pub txn_start: Offset,
    /// The coordinator epoch of its last marker here, or -1.
    pub coordinator_epoch: i32,
}

impl ProducerState {
    /// Every producer with state here, by id.
    pub fn active(&self) -> Vec<ActiveProducer> {
        let mut out: Vec<ActiveProducer> = self
            .producers
            .iter()
            .map(|(id, e)| ActiveProducer {
                producer_id: *id,
                epoch: e.epoch,
                last_sequence: e.batches.back().map(|b| b.last_seq).unwrap_or(-1),
                last_timestamp: e.last_timestamp,
                txn_start: e.txn_first.unwrap_or(-1),
                coordinator_epoch: e.coordinator_epoch,
            })
            .collect();
        out.sort_by_key(|p| p.producer_id);
        out
    }

    /// Each producer's last batch in the log: producer id → that batch's last offset.
    pub fn last_offsets(&self) -> HashMap<i64, Offset> {
        self.producers
            .iter()
            .filter_map(|(id, e)| Some((*id, e.batches.back()?.last_offset)))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    pub fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Checks a batch from the leader's produce path against the state. Does not change it.
    pub fn check(&self, h: &BatchHeader) -> Result<Check, ProducerError> {
        self.check_verified(h, TxnVerification::Off)
    }

    /// `check`, with a batch that would open a transaction accepted only under the guard of
    /// a verification still in progress (`verification` is `Guard`).
    pub fn check_verified(
        &self,
        h: &BatchHeader,
        verification: TxnVerification,
    ) -> Result<Check, ProducerError> {
        let check = self.check_sequence(h)?;
        if let (TxnVerification::Guard(guard), Check::Append) = (verification, check) {
            let opens = h.producer_id >= 0
                && h.is_transactional()
                && !h.is_control()
                && self.open_txn(h.producer_id).is_none();
            let verified = self
                .verifying
                .get(&h.producer_id)
                .is_some_and(|v| v.guard == guard);
            if opens && !verified {
                return Err(ProducerError::NotVerified);
            }
        }
        Ok(check)
    }

    /// Starts a verification for the producer's next transaction: `None` when it has one open
    /// here (its batches need none), else the guard to append its first batch under — the same
    /// one while the verification lasts, so a retried request shares it.
    pub fn start_verification(&mut self, producer_id: i64, now_ms: i64) -> Option<u64> {
        if self.open_txn(producer_id).is_some() {
            return None;
        }
        let v = self
            .verifying
            .entry(producer_id)
            .or_insert_with(|| Verifying {
                guard: NEXT_GUARD.fetch_add(1, Ordering::Relaxed),
                since_ms: now_ms,
            });
        Some(v.guard)
    }

    /// Forgets a verification that was refused, if it is still the one under `guard`.
    pub fn end_verification(&mut self, producer_id: i64, guard: u64) {
        if self
            .verifying
            .get(&producer_id)
            .is_some_and(|v| v.guard == guard)
        {
            self.verifying.remove(&producer_id);
        }
    }

    /// The aborted transactions an older snapshot carried, taken out to be put in the segments'
    /// indexes.
    pub fn take_legacy_aborted(&mut self) -> Vec<AbortedTxn> {
        std::mem::take(&mut self.legacy_aborted)
    }

    fn check_sequence(&self, h: &BatchHeader) -> Result<Check, ProducerError> {
        if h.producer_id >= 0 && h.base_sequence < 0 && h.is_transactional() {
            // The group coordinator's offsets in a transaction: no sequence, but a fenced
            // producer's are refused.
            return match self.producers.get(&h.producer_id) {
                Some(e) if h.producer_epoch < e.epoch => Err(ProducerError::Fenced {
                    current: e.epoch,
                    got: h.producer_epoch,
                }),
                _ => Ok(Check::Append),
            };
        }
        if h.producer_id < 0 || h.base_sequence < 0 {
            return Ok(Check::Append);
        }
        let last = last_seq(h);
        let Some(entry) = self.producers.get(&h.producer_id) else {
            return if h.base_sequence == 0 {
                Ok(Check::Append)
            } else {
                Err(ProducerError::UnknownProducer {
                    got: h.base_sequence,
                })
            };
        };
        if h.producer_epoch < entry.epoch {
            return Err(ProducerError::Fenced {
                current: entry.epoch,
                got: h.producer_epoch,
            });
        }
        if h.producer_epoch > entry.epoch {
            // A new epoch starts its sequences again at 0.
            return if h.base_sequence == 0 {
                Ok(Check::Append)
            } else {
                Err(ProducerError::OutOfOrder {
                    expected: 0,
                    got: h.base_sequence,
                })
            };
        }
        if let Some(b) = entry
            .batches
            .iter()
            .find(|b| b.first_seq == h.base_sequence && b.last_seq == last)
        {
            return Ok(Check::Duplicate {
                first_offset: b.first_offset,
                last_offset: b.last_offset,
            });
        }
        let expected = entry
            .batches
            .back()
            .map(|b| next_seq(b.last_seq))
            .unwrap_or(0);
        if h.base_sequence != expected {
            return Err(ProducerError::OutOfOrder {
                expected,
                got: h.base_sequence,
            });
        }
        Ok(Check::Append)
    }

    /// Records a batch written at `base_offset` (leader, follower and recovery alike);
    /// `marker` is the type of the transaction marker a control batch holds. Returns the
    /// transaction an abort marker ended, for the segment's index.
    pub fn record(
        &mut self,
        h: &BatchHeader,
        base_offset: Offset,
        marker: Option<ControlRecord>,
    ) -> Option<AbortedTxn> {
        if h.producer_id < 0 {
            return None;
        }
        if h.is_transactional() {
            // Appended, or ended by a marker: the verification is used up either way.
            self.verifying.remove(&h.producer_id);
        }
        if h.is_control() {
            return self.end_txn(h, base_offset, marker);
        }
        if h.base_sequence < 0 && !h.is_transactional() {
            return None;
        }
        let entry = self.entry(h);
        if h.producer_epoch != entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        }
        if h.base_sequence >= 0 {
            entry.batches.push_back(BatchSeq {
                first_seq: h.base_sequence,
                last_seq: last_seq(h),
                first_offset: base_offset,
                last_offset: base_offset + h.last_offset_delta as i64,
            });
            while entry.batches.len() > CACHED_BATCHES {
                entry.batches.pop_front();
            }
        }
        entry.last_timestamp = entry.last_timestamp.max(h.max_timestamp);
        if h.is_transactional() && entry.txn_first.is_none() {
            entry.txn_first = Some(base_offset);
            self.ongoing.insert(base_offset, h.producer_id);
        }
        None
    }

    /// The batch's producer's entry, new at the batch's epoch if it had none.
    fn entry(&mut self, h: &BatchHeader) -> &mut ProducerEntry {
        self.producers
            .entry(h.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: h.producer_epoch,
                batches: VecDeque::new(),
                last_timestamp: i64::MIN,
                txn_first: None,
                coordinator_epoch: -1,
            })
    }

    /// A marker at `offset` ends the producer's open transaction (if it has one); an abort
    /// returns it.
    fn end_txn(
        &mut self,
        h: &BatchHeader,
        offset: Offset,
        marker: Option<ControlRecord>,
    ) -> Option<AbortedTxn> {
        let entry = self.entry(h);
        if h.producer_epoch > entry.epoch {
            // The coordinator bumped the epoch (a fenced or timed-out producer): its sequences
            // start again.
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        }
        entry.last_timestamp = entry.last_timestamp.max(h.max_timestamp);
        if let Some(m) = marker {
            entry.coordinator_epoch = entry.coordinator_epoch.max(m.coordinator_epoch);
        }
        let first = entry.txn_first.take()?;
        self.ongoing.remove(&first);
        self.deciding.push((first, offset));
        if marker.is_none_or(|m| m.kind != super::batch::MARKER_ABORT) {
            return None;
        }
        // The oldest transaction of another producer still open, else just past the marker.
        let last_stable = self.ongoing.keys().next().copied().unwrap_or(offset + 1);
        Some(AbortedTxn {
            producer_id: h.producer_id,
            first,
            last: offset,
            last_stable,
        })
    }

    /// Checks a marker from the transaction coordinator: its producer epoch may not be older
    /// than the producer's, nor its coordinator epoch older than the last marker's.
    pub fn check_marker(
        &self,
        producer_id: i64,
        epoch: i16,
        coordinator_epoch: i32,
    ) -> Result<(), ProducerError> {
        match self.producers.get(&producer_id) {
            Some(e) if epoch < e.epoch => Err(ProducerError::FencedMarker {
                current: e.epoch,
                got: epoch,
            }),
            Some(e) if coordinator_epoch < e.coordinator_epoch => {
                Err(ProducerError::CoordinatorFenced {
                    current: e.coordinator_epoch,
                    got: coordinator_epoch,
                })
            }
            _ => Ok(()),
        }
    }

    /// The last stable offset under high watermark `hw`: the first offset of the oldest
    /// transaction that is open or whose marker is not yet replicated, or `hw`.
    pub fn last_stable_offset(&mut self, hw: Offset) -> Offset {
        self.deciding.retain(|&(_, marker)| marker >= hw);
        let open = self.ongoing.keys().next().copied();
        let deciding = self.deciding.iter().map(|d| d.0).min();
        [open, deciding, Some(hw)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(hw)
    }

    /// The first offset of the producer's open transaction.
    pub fn open_txn(&self, producer_id: i64) -> Option<Offset> {
        self.producers.get(&producer_id)?.txn_first
    }

    /// Forgets producers silent since before `cutoff` (producer.id.expiration.ms).
    pub fn expire(&mut self, cutoff: i64) -> usize {
        let before = self.producers.len();
        // A producer with an open transaction stays: the coordinator's timeout ends it.
        self.producers
            .retain(|_, e| e.last_timestamp >= cutoff || e.txn_first.is_some());
        self.verifying.retain(|_, v| v.since_ms >= cutoff);
        before - self.producers.len()
    }

    /// Loads a snapshot: (the offset it was taken at, the state).
    pub fn load(path: &Path) -> Option<(Offset, ProducerState)> {
        let bytes = std::fs::read(path).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    pub fn save(&self, path: &Path, offset: Offset) -> io::Result<()> {
        let bytes = serde_json::to_vec(&(offset, self)).map_err(io::Error::other)?;
        // A lost snapshot only means replaying more batch headers at the next start.
        super::replace_file(path, &bytes, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pid: i64, epoch: i16, seq: i32, records: i32) -> BatchHeader {
        BatchHeader {
            base_offset: 0,
            size: 100,
            leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: records - 1,
            base_timestamp: 1,
            max_timestamp: 1,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            record_count: records,
        }
    }

    #[test]
    fn in_order_duplicate_and_out_of_order() {
        let mut s = ProducerState::default();
        assert_eq!(s.check(&h(7, 0, 0, 3)), Ok(Check::Append));
        s.record(&h(7, 0, 0, 3), 100, None);
        assert_eq!(s.check(&h(7, 0, 3, 2)), Ok(Check::Append));
        s.record(&h(7, 0, 3, 2), 103, None);
        assert_eq!(
            s.check(&h(7, 0, 0, 3)),
            Ok(Check::Duplicate {
                first_offset: 100,
                last_offset: 102
            })
        );
        assert_eq!(
            s.check(&h(7, 0, 6, 1)),
            Err(ProducerError::OutOfOrder {
                expected: 5,
                got: 6
            })
        );
        assert_eq!(
            s.check(&h(8, 0, 4, 1)),
            Err(ProducerError::UnknownProducer { got: 4 })
        );
        assert_eq!(
            s.check(&h(-1, -1, -1, 9)),
            Ok(Check::Append),
            "not idempotent"
        );
    }

    #[test]
    fn epochs_fence_and_restart_sequences() {
        let mut s = ProducerState::default();
        s.record(&h(7, 2, 0, 1), 0, None);
        assert_eq!(
            s.check(&h(7, 1, 1, 1)),
            Err(ProducerError::Fenced { current: 2, got: 1 })
        );
        assert_eq!(
            s.check(&h(7, 3, 5, 1)),
            Err(ProducerError::OutOfOrder {
                expected: 0,
                got: 5
            })
        );
        assert_eq!(s.check(&h(7, 3, 0, 1)), Ok(Check::Append));
        s.record(&h(7, 3, 0, 1), 1, None);
        assert_eq!(s.get(7).map(|e| (e.epoch, e.batches.len())), Some((3, 1)));
    }

    #[test]
    fn only_five_batches_are_remembered_and_sequences_wrap() {
        let mut s = ProducerState::default();
        for i in 0..7 {
            s.record(&h(1, 0, i, 1), i as i64, None);
        }
        assert_eq!(s.get(1).map(|e| e.batches.len()), Some(5));
        assert!(matches!(
            s.check(&h(1, 0, 6, 1)),
            Ok(Check::Duplicate { .. })
        ));
        assert!(matches!(
            s.check(&h(1, 0, 1, 1)),
            Err(ProducerError::OutOfOrder { .. })
        ));
        let mut w = ProducerState::default();
        w.record(&h(2, 0, i32::MAX - 1, 2), 0, None);
        assert_eq!(
            w.check(&h(2, 0, 0, 1)),
            Ok(Check::Append),
            "after i32::MAX comes 0"
        );
    }

    #[test]
    fn snapshot_round_trips_and_expiry() {
        let mut s = ProducerState::default();
        s.record(&h(1, 0, 0, 1), 0, None);
        let mut old = h(2, 0, 0, 1);
        old.max_timestamp = -5;
        s.record(&old, 1, None);
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("producer-snapshot");
        s.save(&path, 2).expect("save");
        assert_eq!(ProducerState::load(&path), Some((2, s.clone())));
        assert_eq!(s.expire(0), 1);
        assert_eq!(s.len(), 1);
    }

    fn txn(pid: i64, seq: i32, records: i32) -> BatchHeader {
        let mut b = h(pid, 0, seq, records);
        b.attributes = crate::storage::batch::TRANSACTIONAL;
        b
    }

    fn ctl(kind: i16, coordinator_epoch: i32) -> ControlRecord {
        ControlRecord {
            kind,
            coordinator_epoch,
        }
    }

    fn marker(pid: i64, epoch: i16) -> BatchHeader {
        let mut b = h(pid, epoch, -1, 1);
        b.attributes = crate::storage::batch::TRANSACTIONAL | crate::storage::batch::CONTROL;
        b
    }

    #[test]
    fn open_transactions_hold_the_last_stable_offset_until_their_marker_is_replicated() {
        use crate::storage::batch::{MARKER_ABORT, MARKER_COMMIT};
        let mut s = ProducerState::default();
        s.record(&h(1, 0, 0, 2), 0, None); // plain idempotent: 0..=1
        s.record(&txn(7, 0, 3), 2, None); // txn of 7 opens at 2
        s.record(&txn(8, 0, 1), 5, None); // txn of 8 opens at 5
        s.record(&txn(7, 3, 1), 6, None);
        assert_eq!(s.open_txn(7), Some(2));
        assert_eq!(s.last_stable_offset(7), 2);
        s.record(&marker(7, 0), 7, Some(ctl(MARKER_COMMIT, 1)));
        assert_eq!(s.open_txn(7), None);
        assert_eq!(
            s.last_stable_offset(7),
            2,
            "marker at 7 not yet below the HW"
        );
        assert_eq!(s.last_stable_offset(8), 5, "8's txn is still open");
        s.record(&txn(9, 0, 1), 9, None); // txn of 9 opens at 9
        assert_eq!(
            s.record(&marker(8, 0), 10, Some(ctl(MARKER_ABORT, 1))),
            Some(AbortedTxn {
                producer_id: 8,
                first: 5,
                last: 10,
                last_stable: 9,
            }),
            "an abort is handed to the segment's index, with the oldest other open transaction"
        );
        assert_eq!(s.last_stable_offset(11), 9);
        assert_eq!(
            s.record(&marker(9, 0), 11, Some(ctl(MARKER_ABORT, 1))),
            Some(AbortedTxn {
                producer_id: 9,
                first: 9,
                last: 11,
                last_stable: 12,
            })
        );
        assert_eq!(s.last_stable_offset(12), 12);
        assert_eq!(
            s.record(&marker(9, 0), 12, Some(ctl(MARKER_ABORT, 1))),
            None,
            "a marker with no transaction open aborted nothing"
        );
    }

    #[test]
    fn aborted_transactions_of_older_snapshots_are_read_once_and_never_written() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("producer-snapshot");
        let old = r#"[9,{"producers":{},"ongoing":{},"deciding":[],
            "aborted":[{"producer_id":8,"first":5,"last":8}]}]"#;
        std::fs::write(&path, old).expect("write");
        let (at, mut state) = ProducerState::load(&path).expect("an older snapshot loads");
        assert_eq!(at, 9);
        assert_eq!(
            state.take_legacy_aborted(),
            vec![AbortedTxn {
                producer_id: 8,
                first: 5,
                last: 8,
                last_stable: -1,
            }]
        );
        state.save(&path, 9).expect("save");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(!text.contains("aborted"), "{text}");
    }

    #[test]
    fn a_transactions_first_batch_is_appended_only_under_a_live_verification() {
        use crate::storage::batch::MARKER_ABORT;
        let mut s = ProducerState::default();
        let first = txn(7, 0, 1);
        let guard = s.start_verification(7, 0).expect("no transaction open");
        assert_eq!(
            s.start_verification(7, 0),
            Some(guard),
            "a retry shares the guard"
        );
        assert_eq!(
            s.check_verified(&first, TxnVerification::Guard(guard + 1000)),
            Err(ProducerError::NotVerified)
        );
        assert_eq!(
            s.check_verified(&first, TxnVerification::Off),
            Ok(Check::Append),
            "the broker's own writes are not verified"
        );
        // A marker (the coordinator aborted the transaction meanwhile) voids the verification.
        s.record(&marker(7, 0), 0, Some(ctl(MARKER_ABORT, 1)));
        assert_eq!(
            s.check_verified(&first, TxnVerification::Guard(guard)),
            Err(ProducerError::NotVerified),
            "a late batch of an ended transaction must not open a new one"
        );
        let again = s.start_verification(7, 0).expect("verify again");
        assert_ne!(again, guard);
        assert_eq!(
            s.check_verified(&first, TxnVerification::Guard(again)),
            Ok(Check::Append)
        );
        s.record(&first, 1, None);
        assert_eq!(
            s.start_verification(7, 0),
            None,
            "an open transaction's later batches need no verification"
        );
        let next = txn(7, 1, 1);
        assert_eq!(
            s.check_verified(&next, TxnVerification::Guard(again)),
            Ok(Check::Append)
        );
        // A refused verification is dropped, unless another has replaced it.
        let refused = s.start_verification(8, 0).expect("none open");
        s.end_verification(8, refused + 1);
        assert_eq!(
            s.start_verification(8, 0),
            Some(refused),
            "not its guard: kept"
        );
        s.end_verification(8, refused);
        assert_ne!(
            s.start_verification(8, 0),
            Some(refused),
            "dropped: a new one"
        );
        s.verifying.remove(&8);
        // Verifications are forgotten with silent producers.
        s.start_verification(9, 5);
        s.expire(6);
        assert!(s.verifying.is_empty());
    }

    #[test]
    fn markers_of_an_older_epoch_are_refused_and_a_newer_one_fences() {
        let mut s = ProducerState::default();
        let mut b = txn(7, 0, 1);
        b.producer_epoch = 2;
        s.record(&b, 0, None);
        assert_eq!(
            s.check_marker(7, 1, 0),
            Err(ProducerError::FencedMarker { current: 2, got: 1 })
        );
        assert_eq!(s.check_marker(7, 3, 0), Ok(()));
        s.record(
            &marker(7, 3),
            1,
            Some(ctl(crate::storage::batch::MARKER_ABORT, 5)),
        );
        assert_eq!(
            s.check_marker(7, 3, 4),
            Err(ProducerError::CoordinatorFenced { current: 5, got: 4 }),
            "a deposed coordinator's marker"
        );
        assert_eq!(s.check_marker(7, 3, 5), Ok(()));
        assert_eq!(s.get(7).map(|e| e.epoch), Some(3));
        let mut late = txn(7, 1, 1);
        late.producer_epoch = 2;
        assert!(matches!(s.check(&late), Err(ProducerError::Fenced { .. })));
        assert_eq!(s.open_txn(7), None);
        assert_eq!(s.expire(i64::MAX), 1, "no open transaction keeps it");
    }
}
