//! The offsets log: how groups and committed offsets are kept in `__consumer_offsets` — the
//! record codec (Kafka's keys and values, `records.rs`, in uncompressed batches), appends as
//! the partition's leader and the wait for their replication, and replay into groups when a
//! shard loads. The log is compacted (`cleanup.policy=compact`, forced for this topic): every
//! record is keyed by group or by group/topic/partition, deletions are tombstones, so the
//! cleaner keeps the log at about the size of the live groups and offsets.

use std::collections::HashMap;

use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::records::{Compression, RecordBatchDecoder};

use super::records::{GroupValue, Key, OffsetValue};
use super::shard::Shard;
use super::state::{Group, GroupError, State};
use super::{Coordinator, OFFSETS_TOPIC};
use crate::replica::{HwWait, Mark, Partition, ProducerError, Target, TxnVerification};
use crate::storage::{batch, Window};
use crate::types::now_ms;

impl Coordinator {
    /// Appends records to the shard's partition as its leader. The caller holds the shard's
    /// gate (shared) and, for group records, the group's lock, so appends follow state order.
    pub(super) fn append(
        &self,
        shard: &Shard,
        records: &[(Bytes, Option<Bytes>)],
    ) -> Result<i64, GroupError> {
        self.append_as(shard, records, None, TxnVerification::Off)
    }

    /// `append`, as a transactional batch of `producer` (id, epoch) when given
    /// (TxnOffsetCommit): a fenced producer's epoch is refused by the partition, and one that
    /// would open the transaction there only under `verification`'s guard (KIP-890).
    pub(super) fn append_as(
        &self,
        shard: &Shard,
        records: &[(Bytes, Option<Bytes>)],
        producer: Option<(i64, i16)>,
        verification: TxnVerification,
    ) -> Result<i64, GroupError> {
        let part = &shard.partition;
        if !part.is_leader() || part.leader_epoch() != shard.epoch {
            return Err(GroupError::NotCoordinator);
        }
        let bytes =
            encode_batch(records, producer).map_err(|_| GroupError::InvalidCommitOffsetSize)?;
        let batches =
            batch::validate(&bytes, usize::MAX).map_err(|_| GroupError::InvalidCommitOffsetSize)?;
        let input: Vec<_> = batches
            .iter()
            .map(|(h, r)| (*h, &bytes[r.clone()]))
            .collect();
        let appended = self
            .replicas
            .append_batches_verified(part, &input, verification)
            .map_err(|e| match e {
                crate::storage::LogError::Producer(ProducerError::NotVerified) => {
                    GroupError::NotInTransaction
                }
                crate::storage::LogError::Producer(_) => GroupError::ProducerFenced,
                e => {
                    tracing::warn!(partition = shard.index, error = %e, "cannot append to {OFFSETS_TOPIC}");
                    GroupError::NotCoordinator
                }
            })?;
        Ok(appended.produced.last)
    }

    /// Waits until the records up to `last` are replicated (Kafka's acks=all for offsets).
    pub(super) async fn replicated(&self, shard: &Shard, last: i64) -> Result<(), GroupError> {
        let part = &shard.partition;
        let timeout = Duration::from_millis(self.config.groups.commit_timeout_ms);
        let target = Target {
            partition: part.clone(),
            mark: Mark::High,
            offset: last + 1,
            epoch: shard.epoch,
        };
        match self.replicas.wait_for(vec![target], timeout).await[..] {
            [HwWait::Reached] => Ok(()),
            [HwWait::NotLeader] => Err(GroupError::NotCoordinator),
            _ => Err(GroupError::CoordinatorNotAvailable),
        }
    }
}

/// A group's current record (key and value) for `__consumer_offsets`.
pub(super) fn group_record(g: &Group) -> (Bytes, Option<Bytes>) {
    (
        Key::Group(g.id.clone()).encode(),
        Some(g.to_value().encode()),
    )
}

pub(super) fn offset_key(group: &str, topic: &str, partition: i32) -> Bytes {
    Key::Offset {
        group: group.to_string(),
        topic: topic.to_string(),
        partition,
    }
    .encode()
}

/// One uncompressed record batch holding `records` (key, value; no value: a tombstone), of
/// `producer` inside its transaction when given.
fn encode_batch(
    records: &[(Bytes, Option<Bytes>)],
    producer: Option<(i64, i16)>,
) -> anyhow::Result<Bytes> {
    let ts = now_ms();
    let records: Vec<_> = records
        .iter()
        .map(|(k, v)| (Some(k.clone()), v.clone(), ts))
        .collect();
    crate::storage::records::encode_producer_batch(&records, Compression::None, producer)
}

/// Every record of a coordinator's partition from its log start to its end, in order
/// (`__consumer_offsets` and `__transaction_state` are replayed this way when a shard loads).
/// Unreadable batches are skipped with a warning.
pub(crate) fn replay(
    log: &Partition,
    mut f: impl FnMut(kafka_protocol::records::Record),
) -> Result<(), crate::storage::LogError> {
    let end = log.log_end_offset();
    let mut offset = log.log_start_offset();
    while offset < end {
        let chunk = log.read(offset, Window::new(1 << 20, end, true))?;
        if chunk.is_empty() {
            break;
        }
        let mut pos = 0;
        while let Some((_, size)) = batch::peek_size(&chunk[pos..]) {
            if pos + size > chunk.len() {
                break;
            }
            let raw = chunk.slice(pos..pos + size);
            pos += size;
            if let Some(h) = batch::parse_header(&raw) {
                offset = h.next_offset();
            }
            let mut buf = raw;
            let set = match RecordBatchDecoder::decode(&mut buf) {
                Ok(set) => set,
                Err(e) => {
                    tracing::warn!(tp = %log.tp(), error = %e, "skipping an unreadable batch");
                    continue;
                }
            };
            for r in set.records {
                if r.offset >= log.log_start_offset() {
                    f(r);
                }
            }
        }
        if pos == 0 {
            break;
        }
    }
    Ok(())
}

/// Offsets committed inside a transaction, waiting for its marker: producer id → (group,
/// topic, partition, value, log offset).
pub(super) type PendingTxnOffsets = HashMap<i64, Vec<(String, String, i32, OffsetValue, i64)>>;

/// Replays an offsets partition from its log start into groups; also returns how many records
/// were read and the offsets of transactions still open at the end.
pub(super) fn read_groups(
    log: &Partition,
) -> Result<(HashMap<String, Group>, usize, PendingTxnOffsets), crate::storage::LogError> {
    let mut groups: HashMap<String, Group> = HashMap::new();
    let mut records = 0;
    let mut pending: PendingTxnOffsets = HashMap::new();
    let now = Instant::now();
    replay(log, |r| {
        records += 1;
        if r.control {
            let commit = r.key.as_deref().is_some_and(|k| {
                k.len() >= 4
                    && i16::from_be_bytes([k[2], k[3]]) == crate::storage::batch::MARKER_COMMIT
            });
            for (group, topic, partition, value, at) in
                pending.remove(&r.producer_id).unwrap_or_default()
            {
                if commit {
                    groups
                        .entry(group.clone())
                        .or_insert_with(|| Group::new(&group, now_ms()))
                        .apply_offset(&topic, partition, value, at);
                }
            }
            return;
        }
        let Some(key) = r.key.as_deref().and_then(Key::decode) else {
            return;
        };
        if r.transactional && r.producer_id >= 0 {
            if let (
                Key::Offset {
                    group,
                    topic,
                    partition,
                },
                Some(v),
            ) = (key, r.value.as_deref().and_then(OffsetValue::decode))
            {
                pending
                    .entry(r.producer_id)
                    .or_default()
                    .push((group, topic, partition, v, r.offset));
            }
            return;
        }
        apply_record(&mut groups, key, r.value.as_deref(), r.offset, now);
    })?;
    groups.retain(|_, g| g.state != State::Dead);
    Ok((groups, records, pending))
}

fn apply_record(
    groups: &mut HashMap<String, Group>,
    key: Key,
    value: Option<&[u8]>,
    log_offset: i64,
    now: Instant,
) {
    let ts = now_ms();
    match key {
        Key::Offset {
            group,
            topic,
            partition,
        } => match value.and_then(OffsetValue::decode) {
            Some(v) => groups
                .entry(group.clone())
                .or_insert_with(|| Group::new(&group, ts))
                .apply_offset(&topic, partition, v, log_offset),
            None => {
                if let Some(g) = groups.get_mut(&group) {
                    g.offsets.remove(&(topic, partition));
                }
            }
        },
        Key::Group(group) => match value.and_then(GroupValue::decode) {
            Some(v) => groups
                .entry(group.clone())
                .or_insert_with(|| Group::new(&group, ts))
                .restore(v, now),
            None => {
                groups.remove(&group);
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn a_replayed_log_rebuilds_offsets_and_tombstones_remove_them() {
        let mut groups = HashMap::new();
        let now = Instant::now();
        let v = |o| {
            OffsetValue {
                offset: o,
                leader_epoch: 0,
                metadata: String::new(),
                commit_timestamp: 1,
            }
            .encode()
        };
        let k = |p| Key::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: p,
        };
        apply_record(&mut groups, k(0), Some(&v(5)), 0, now);
        apply_record(&mut groups, k(0), Some(&v(9)), 1, now);
        apply_record(&mut groups, k(1), Some(&v(3)), 2, now);
        apply_record(&mut groups, k(1), None, 3, now);
        let g = &groups["g"];
        assert_eq!(g.offsets[&("t".to_string(), 0)].value.offset, 9);
        assert!(!g.offsets.contains_key(&("t".to_string(), 1)));
        apply_record(&mut groups, Key::Group("g".into()), None, 4, now);
        assert!(groups.is_empty());
    }

    #[test]
    fn encoded_batches_pass_the_logs_validation() {
        let recs = vec![
            (Bytes::from_static(b"k1"), Some(Bytes::from_static(b"v1"))),
            (Bytes::from_static(b"k2"), None),
        ];
        let b = encode_batch(&recs, None).expect("encodes");
        let batches = batch::validate(&b, usize::MAX).expect("valid");
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].0.last_offset_delta, 1);
    }
}
