//! Idempotent-producer state of one partition: for every producer id, its epoch and the last
//! five batches' sequence ranges with their offsets. The leader checks each new batch against it
//! (in order? a duplicate? a fenced epoch?) under the log's lock, so the check and the append are
//! one step; followers and recovery rebuild it from batch headers as they append or scan.
//! A snapshot (`producer-snapshot`: the state as of an offset) is written at segment roll and at
//! clean shutdown, so recovery only scans the log after it. Pure apart from `load` / `save`.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::batch::BatchHeader;
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

    /// Records a batch written at `base_offset` (leader, follower and recovery alike).
    pub fn record(&mut self, h: &BatchHeader, base_offset: Offset) {
        if h.producer_id < 0 || h.base_sequence < 0 {
            return;
        }
        let entry = self
            .producers
            .entry(h.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: h.producer_epoch,
                batches: VecDeque::new(),
                last_timestamp: i64::MIN,
            });
        if h.producer_epoch != entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        }
        entry.batches.push_back(BatchSeq {
            first_seq: h.base_sequence,
            last_seq: last_seq(h),
            first_offset: base_offset,
            last_offset: base_offset + h.last_offset_delta as i64,
        });
        while entry.batches.len() > CACHED_BATCHES {
            entry.batches.pop_front();
        }
        entry.last_timestamp = entry.last_timestamp.max(h.max_timestamp);
    }

    /// Forgets producers silent since before `cutoff` (producer.id.expiration.ms).
    pub fn expire(&mut self, cutoff: i64) -> usize {
        let before = self.producers.len();
        self.producers.retain(|_, e| e.last_timestamp >= cutoff);
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
        s.record(&h(7, 0, 0, 3), 100);
        assert_eq!(s.check(&h(7, 0, 3, 2)), Ok(Check::Append));
        s.record(&h(7, 0, 3, 2), 103);
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
        s.record(&h(7, 2, 0, 1), 0);
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
        s.record(&h(7, 3, 0, 1), 1);
        assert_eq!(s.get(7).map(|e| (e.epoch, e.batches.len())), Some((3, 1)));
    }

    #[test]
    fn only_five_batches_are_remembered_and_sequences_wrap() {
        let mut s = ProducerState::default();
        for i in 0..7 {
            s.record(&h(1, 0, i, 1), i as i64);
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
        w.record(&h(2, 0, i32::MAX - 1, 2), 0);
        assert_eq!(
            w.check(&h(2, 0, 0, 1)),
            Ok(Check::Append),
            "after i32::MAX comes 0"
        );
    }

    #[test]
    fn snapshot_round_trips_and_expiry() {
        let mut s = ProducerState::default();
        s.record(&h(1, 0, 0, 1), 0);
        let mut old = h(2, 0, 0, 1);
        old.max_timestamp = -5;
        s.record(&old, 1);
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("producer-snapshot");
        s.save(&path, 2).expect("save");
        assert_eq!(ProducerState::load(&path), Some((2, s.clone())));
        assert_eq!(s.expire(0), 1);
        assert_eq!(s.len(), 1);
    }
}
