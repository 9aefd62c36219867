//! One hosted partition: its log, its view of leadership from the metadata image, and — on the
//! leader — each follower's progress, from which the high watermark and ISR changes follow
//! (the arithmetic is `isr::Replicas`, pure).
//!
//! Owned by `ReplicaManager` as `Arc<Partition>`; connection tasks (through the manager),
//! fetcher tasks and the manager's background tasks touch it. The log is private: every change
//! to log end, log start, high watermark or leadership goes through a method here that then
//! tells the purgatory (`Waits::changed`), so waiting operations see every change. The state
//! mutex is never held across I/O, an await, or that call.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::delayed::Waits;
use super::isr::{IsrChange, Replicas};
use crate::config::LogDefaults;
use crate::metadata::PartitionImage;
use crate::storage::batch::{self, BatchError, BatchHeader};
use crate::storage::producers::{ActiveProducer, TxnVerification};
use crate::storage::{Appended, FileRegion, LogError, PartitionLog, Recovery, Window};
use crate::types::{now_ms, LeaderEpoch, NodeId, Offset, TopicId, TopicPartition};

pub struct Partition {
    log: PartitionLog,
    state: Mutex<Replicas>,
    /// Published here, read without the state lock by readers and waiters.
    hw: AtomicI64,
    waits: Arc<Waits>,
    /// What clients wrote and read here (`/metrics`): batch bytes and records appended as
    /// leader, and record bytes sent to consumers. Relaxed atomics, off every lock.
    pub(super) traffic: Traffic,
    /// Whether its replication is throttled here (as leader, as follower): from the topic's
    /// `*.replication.throttled.replicas`, set by reconciliation.
    pub(super) throttled: super::throttle::Throttled,
}

/// A partition's client traffic counters.
#[derive(Default, Debug)]
pub struct Traffic {
    pub bytes_in: std::sync::atomic::AtomicU64,
    pub records_in: std::sync::atomic::AtomicU64,
    pub bytes_out: std::sync::atomic::AtomicU64,
}

/// What a leader append of a client's records did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Produced {
    pub first: Offset,
    pub last: Offset,
    /// The leader epoch it was appended at (acks=all waits on it).
    pub epoch: LeaderEpoch,
    /// The broker's timestamp for a LogAppendTime topic, else -1.
    pub log_append_time: i64,
    pub log_start: Offset,
}

/// Why a client's records were not appended.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("a produce request must carry exactly one record batch per partition")]
    NotOneBatch,
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error("the ISR has {isr} members, fewer than min.insync.replicas ({min})")]
    NotEnoughReplicas { isr: usize, min: usize },
    #[error("a record timestamp is outside message.timestamp.before.max.ms / after.max.ms of the broker's clock")]
    Timestamp,
    #[error(transparent)]
    Log(#[from] LogError),
}

impl Partition {
    pub(super) fn new(log: PartitionLog, me: NodeId, waits: Arc<Waits>) -> Partition {
        let end = log.log_end_offset();
        let hw = log
            .stored_high_watermark()
            .unwrap_or(0)
            .clamp(log.log_start_offset(), end);
        Partition {
            log,
            state: Mutex::new(Replicas::new(me)),
            hw: AtomicI64::new(hw),
            waits,
            traffic: Traffic::default(),
            throttled: Default::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Replicas> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tells the purgatory that something waiters look at may have moved.
    fn changed(&self) {
        self.waits.changed(self.tp());
    }

    /// Client traffic so far: (bytes in, records in, bytes out).
    pub fn traffic(&self) -> (u64, u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.traffic.bytes_in.load(Relaxed),
            self.traffic.records_in.load(Relaxed),
            self.traffic.bytes_out.load(Relaxed),
        )
    }

    /// Led here with fewer in-sync replicas than replicas.
    pub fn under_replicated(&self) -> bool {
        let st = self.state();
        st.is_leader() && st.isr.len() < st.replicas.len()
    }

    pub fn tp(&self) -> &TopicPartition {
        &self.log.tp
    }

    pub fn topic_id(&self) -> TopicId {
        self.log.topic_id
    }

    pub fn me(&self) -> NodeId {
        self.state().me
    }

    pub fn leader_epoch(&self) -> LeaderEpoch {
        self.state().leader_epoch
    }

    pub fn is_leader(&self) -> bool {
        self.state().is_leader()
    }

    pub fn leader(&self) -> (NodeId, LeaderEpoch) {
        let s = self.state();
        (s.leader, s.leader_epoch)
    }

    /// Whether this node still leads at `epoch`.
    pub fn leads_at(&self, epoch: LeaderEpoch) -> bool {
        let s = self.state();
        s.is_leader() && s.leader_epoch == epoch
    }

    pub fn isr(&self) -> Vec<NodeId> {
        self.state().isr.clone()
    }

    pub fn is_replica(&self, id: NodeId) -> bool {
        self.state().replicas.contains(&id)
    }

    /// The ISR's size as this node's image has it.
    pub fn isr_len(&self) -> usize {
        self.state().isr.len()
    }

    /// Whether `id` is in the ISR as this node's image has it.
    pub fn in_sync(&self, id: NodeId) -> bool {
        self.state().isr.contains(&id)
    }

    /// Whether replication of this partition to (leader) or from (follower) `replica` goes
    /// through the throttle: the topic throttles it here and the replica is not in sync —
    /// as in Kafka, an in-sync replica is never held back, so acks=all never waits on it.
    pub(super) fn throttled_for(&self, as_leader: bool, replica: NodeId) -> bool {
        let listed = if as_leader {
            self.throttled.as_leader()
        } else {
            self.throttled.as_follower()
        };
        listed && !self.in_sync(replica)
    }

    pub fn high_watermark(&self) -> Offset {
        self.hw.load(Ordering::Acquire)
    }

    /// On the leader: the smallest log start over this replica and the ISR's followers (-1
    /// while one has not reported it) — what DeleteRecords waits for.
    pub fn low_watermark(&self) -> Offset {
        let own = self.log.log_start_offset();
        self.state().low_watermark(own)
    }

    pub fn log_start_offset(&self) -> Offset {
        self.log.log_start_offset()
    }

    pub fn log_end_offset(&self) -> Offset {
        self.log.log_end_offset()
    }

    /// Bytes of the partition's segment files.
    pub fn size_bytes(&self) -> u64 {
        self.log.size_bytes()
    }

    /// The largest epoch at or below `epoch` and where it ends (OffsetForLeaderEpoch).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, Offset) {
        self.log.end_offset_for_epoch(epoch)
    }

    /// The first record at or after timestamp `ts`: (offset, timestamp).
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(Offset, i64)>, LogError> {
        self.log.offset_for_timestamp(ts)
    }

    /// The record with the largest timestamp: (offset, timestamp).
    pub fn max_timestamp(&self) -> Result<Option<(Offset, i64)>, LogError> {
        self.log.max_timestamp()
    }

    /// The file range a consumer read at `offset` covers (see `PartitionLog::region`).
    pub fn region(&self, offset: Offset, window: Window) -> Result<Option<FileRegion>, LogError> {
        self.log.region(offset, window)
    }

    /// Record batches from `offset` into memory (see `PartitionLog::read`).
    pub fn read(&self, offset: Offset, window: Window) -> Result<Bytes, LogError> {
        self.log.read(offset, window)
    }

    /// The newest leader epoch in the log and where it starts.
    pub fn latest_epoch(&self) -> Option<(i32, Offset)> {
        self.log.latest_epoch()
    }

    /// The idempotent producers with state here (DescribeProducers).
    pub fn active_producers(&self) -> Vec<ActiveProducer> {
        self.log.active_producers()
    }

    /// Where `read_committed` consumers stop: below every transaction not yet decided and
    /// replicated, and never past the high watermark.
    pub fn last_stable_offset(&self) -> Offset {
        self.log.last_stable_offset(self.high_watermark())
    }

    /// The aborted transactions a read of `[from, to)` meets: (producer id, first offset).
    pub fn aborted_between(&self, from: Offset, to: Offset) -> Vec<(i64, Offset)> {
        self.log.aborted_between(from, to)
    }

    /// The first offset of the producer's open transaction here.
    pub fn open_txn(&self, producer_id: i64) -> Option<Offset> {
        self.log.open_txn(producer_id)
    }

    /// Writes a transaction marker as leader (WriteTxnMarkers).
    pub(super) fn append_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
    ) -> Result<Offset, LogError> {
        let offset = self.log.append_marker(
            producer_id,
            producer_epoch,
            commit,
            coordinator_epoch,
            self.leader_epoch(),
        )?;
        self.advance_hw();
        self.changed();
        Ok(offset)
    }

    /// Validates a client's records (one whole v2 batch within `max.message.bytes`), checks
    /// `min_isr` (acks=all) and the topic's timestamp policy — stamping the batch for
    /// LogAppendTime — and appends it as leader.
    pub(super) fn append_records(
        &self,
        records: &[u8],
        min_isr: Option<usize>,
        verification: TxnVerification,
    ) -> Result<Produced, AppendError> {
        let settings = self.log.settings();
        let batches = batch::validate(records, settings.max_message_bytes)?;
        let [(header, range)] = &batches[..] else {
            return Err(AppendError::NotOneBatch);
        };
        batch::check_client_batch(header)?;
        if settings.cleanup.compact
            && crate::storage::compact::all_keyed(&records[range.clone()], header) != Some(true)
        {
            // Kafka's leader refuses the same (INVALID_RECORD).
            return Err(batch::BatchError::Invalid(
                "a compacted topic only takes records with a key".into(),
            )
            .into());
        }
        if let Some(min) = min_isr {
            let isr = self.state().isr.len();
            if isr < min {
                return Err(AppendError::NotEnoughReplicas { isr, min });
            }
        }
        let raw = &records[range.clone()];
        let policy = settings.timestamps;
        let now = now_ms();
        let stamped;
        let input = if policy.log_append_time {
            stamped = batch::stamp_log_append_time(header, raw, now);
            [(stamped.0, &stamped.1[..])]
        } else if batch::timestamps_in_range(header, now, policy.before_max_ms, policy.after_max_ms)
        {
            [(*header, raw)]
        } else {
            return Err(AppendError::Timestamp);
        };
        let epoch = self.leader_epoch();
        let appended = self.append_verified(&input, verification)?;
        if !appended.duplicate {
            use std::sync::atomic::Ordering::Relaxed;
            self.traffic.bytes_in.fetch_add(raw.len() as u64, Relaxed);
            let records = header.record_count.max(0) as u64;
            self.traffic.records_in.fetch_add(records, Relaxed);
        }
        Ok(Produced {
            first: appended.first,
            last: appended.last,
            epoch,
            log_append_time: if policy.log_append_time { now } else { -1 },
            log_start: self.log.log_start_offset(),
        })
    }

    /// Starts a KIP-890 verification of the producer's next transaction here (see
    /// `PartitionLog::start_verification`).
    pub(crate) fn start_verification(&self, producer_id: i64) -> Option<u64> {
        self.log.start_verification(producer_id)
    }

    /// Drops a verification the coordinator refused.
    pub(crate) fn end_verification(&self, producer_id: i64, guard: u64) {
        self.log.end_verification(producer_id, guard)
    }

    /// Appends as leader, stamping the leader epoch (a retried idempotent batch is answered
    /// with its original offsets instead); a batch that would open a transaction only under
    /// `verification` (KIP-890; `Off` for the broker's own writes).
    pub(crate) fn append_verified(
        &self,
        batches: &[(BatchHeader, &[u8])],
        verification: TxnVerification,
    ) -> Result<Appended, LogError> {
        let r = self
            .log
            .append_verified(batches, self.leader_epoch(), verification)?;
        if !r.duplicate {
            self.advance_hw();
            self.changed();
        }
        Ok(r)
    }

    /// On the leader: the log starts at `offset` from now on (DeleteRecords, or the group
    /// coordinator's snapshot; never past the high watermark, which the caller checks), and the
    /// segments wholly below go; followers follow from their next fetch. Returns the log start.
    pub(super) fn advance_log_start(&self, offset: Offset) -> Result<Offset, LogError> {
        let start = self.log.advance_start(offset)?;
        self.changed();
        Ok(start)
    }

    /// Takes the partition's state from a new metadata image. On becoming leader the new epoch
    /// is recorded in the epoch cache and every follower gets a fresh lag allowance.
    pub(super) fn apply_image(&self, p: &PartitionImage) -> Result<(), LogError> {
        let became_leader = self.state().apply(p, Instant::now());
        let result = if became_leader {
            self.log.begin_epoch(p.leader_epoch)
        } else {
            Ok(())
        };
        if self.is_leader() {
            self.advance_hw();
        }
        // Leadership may have moved: waiters at the old epoch learn it now.
        self.changed();
        result
    }

    /// The high watermark on the leader: the smallest log end over the ISR. Never moves back.
    fn advance_hw(&self) {
        let candidate = self.state().high_watermark(self.log.log_end_offset());
        self.hw.fetch_max(candidate, Ordering::AcqRel);
    }

    /// The state lock, if this node still follows the leader of `epoch`: a follower's log
    /// changes (appends, truncation, reset) happen under it, so none lands after
    /// reconciliation made this node the leader — a fetch answered by the old leader and
    /// arriving late would otherwise append old-epoch batches behind the new epoch's start,
    /// and every follower would then truncate and refetch them for ever.
    fn following(&self, epoch: LeaderEpoch) -> Option<std::sync::MutexGuard<'_, Replicas>> {
        let st = self.state();
        (!st.is_leader() && st.leader_epoch == epoch).then_some(st)
    }

    /// Appends batches fetched from the leader of `epoch` and adopts the leader's high
    /// watermark (never beyond what this log holds). Nothing happens if this node no longer
    /// follows that leader.
    pub(super) fn append_replica(
        &self,
        epoch: LeaderEpoch,
        batches: &[(BatchHeader, &[u8])],
        leader_hw: Offset,
    ) -> Result<(), LogError> {
        let Some(_following) = self.following(epoch) else {
            return Ok(());
        };
        let end = if batches.is_empty() {
            self.log.log_end_offset()
        } else {
            self.log.append_replica(batches)?
        };
        let hw = leader_hw.min(end);
        let before = self.hw.swap(hw, Ordering::AcqRel);
        drop(_following);
        // An empty answer that moved nothing (an idle partition's every round) wakes no one.
        if !batches.is_empty() || before != hw {
            self.changed();
        }
        Ok(())
    }

    /// Truncates a follower's log (to where it agrees with the leader of `epoch`).
    pub(super) fn truncate_to(&self, epoch: LeaderEpoch, offset: Offset) -> Result<(), LogError> {
        let Some(_following) = self.following(epoch) else {
            return Ok(());
        };
        let end = self.log.truncate_to(offset)?;
        self.hw.fetch_min(end, Ordering::AcqRel);
        drop(_following);
        self.changed();
        Ok(())
    }

    /// Restarts a follower's log empty at the leader's log start.
    pub(super) fn reset_to(&self, epoch: LeaderEpoch, start: Offset) -> Result<(), LogError> {
        let Some(_following) = self.following(epoch) else {
            return Ok(());
        };
        self.log.reset_to(start)?;
        self.hw.store(start, Ordering::Release);
        drop(_following);
        self.changed();
        Ok(())
    }

    /// A follower fetched at `fetch_offset` (it holds everything below) with its log starting
    /// at `log_start`. Updates its progress, the high and low watermarks; returns an ISR
    /// expansion to ask for once it has caught up.
    pub(super) fn follower_fetched(
        &self,
        follower: NodeId,
        fetch_offset: Offset,
        log_start: Offset,
    ) -> Option<IsrChange> {
        let end = self.log.log_end_offset();
        let epoch_start = self.log.latest_epoch().map(|e| e.1).unwrap_or(0);
        let now = Instant::now();
        let moved = self
            .state()
            .follower_fetched(follower, fetch_offset, log_start, end, now)?;
        // A follower that stayed where it was (every round of an idle partition) moves no
        // watermark and wakes no one.
        if moved {
            self.advance_hw();
            self.changed();
        }
        let hw = self.high_watermark();
        self.state()
            .expansion(follower, fetch_offset, hw, epoch_start)
    }

    /// On the leader: an ISR without the members that have not caught up for `max_lag`.
    pub(super) fn shrink_request(&self, max_lag: Duration) -> Option<IsrChange> {
        self.state().shrink(Instant::now(), max_lag)
    }

    /// The controller refused or never answered: allow another request.
    pub(super) fn alter_failed(&self) {
        self.state().alter_failed();
    }

    /// The log's settings (topic configs over broker defaults).
    pub(super) fn settings(&self) -> LogDefaults {
        self.log.settings()
    }

    pub(super) fn set_settings(&self, settings: LogDefaults) {
        self.log.set_settings(settings)
    }

    /// Writes the high watermark checkpoint if it moved since the last one.
    /// fsyncs a just-created log's files and directory (`PartitionLog::make_durable`).
    pub(super) fn make_log_durable(&self) -> Result<(), LogError> {
        self.log.make_durable()
    }

    pub(super) fn checkpoint_high_watermark(&self) -> Result<(), LogError> {
        let hw = self.high_watermark();
        if self.log.stored_high_watermark() != Some(hw) {
            self.log.write_high_watermark(hw)?;
        }
        Ok(())
    }

    /// Deletes segments past retention (see `PartitionLog::apply_retention`).
    pub(super) fn apply_retention(&self, now_ms: i64) -> Result<usize, LogError> {
        let deleted = self.log.apply_retention(now_ms)?;
        if deleted > 0 {
            self.changed();
        }
        Ok(deleted)
    }

    /// How dirty this compacted log is below its high watermark (`None`: not compacted, or
    /// nothing to clean).
    pub(super) fn dirtiness(&self, now_ms: i64) -> Option<crate::storage::Dirtiness> {
        self.log.dirtiness(self.high_watermark(), now_ms)
    }

    /// One cleaning pass over the log below its high watermark (leaders and followers clean
    /// their own copies). Offsets, the log start and the log end do not change.
    pub(super) fn clean(
        &self,
        now_ms: i64,
        map: &mut crate::storage::compact::OffsetMap,
        io: crate::storage::IoGate,
    ) -> Result<Option<crate::storage::CleanStats>, LogError> {
        self.log.clean(self.high_watermark(), now_ms, map, io)
    }

    pub(super) fn flush_if_due(&self, now: Instant) -> Result<bool, LogError> {
        self.log.flush_if_due(now)
    }

    pub(super) fn flush(&self) -> Result<(), LogError> {
        self.log.flush()
    }

    /// Removes the partition's directory (the topic was deleted or moved away).
    /// The replica leaves this broker (topic deleted, or reassigned away): it leads nothing
    /// from now on, so its waiters — acks=all produce, long polls — answer NOT_LEADER at once
    /// (the client asks Metadata and goes to the new leader) instead of waiting for a high
    /// watermark that will never move; then its files go.
    pub(super) fn remove_log(&self) -> Result<(), LogError> {
        self.state().leader = -1;
        let removed = self.log.remove();
        self.changed();
        removed
    }
}

/// Opens (recovering) a partition's log; what `Partition::new` is built from.
pub(super) type Opened = Result<(PartitionLog, Recovery), LogError>;
