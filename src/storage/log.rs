//! One partition's log: a directory of segments, the log start offset, and the recovery point.
//!
//! Owned by `replica` (one `Arc<PartitionLog>` per hosted partition). Appends and segment
//! changes take the log's mutex; reads take it only to find a file and byte range, then read
//! without it. Files in the directory:
//! - `<base>.log`, `<base>.index`, `<base>.timeindex` per segment;
//! - `recovery-point`: every offset below it is flushed, so only later segments are re-validated
//!   on start (the unflushed tail);
//! - `log-start-offset`: advanced by retention;
//! - `partition.metadata`: the topic id, so a directory left by a deleted topic of the same name
//!   is never mistaken for the new one;
//! - `leader-epoch-checkpoint`: the leader-epoch cache (`epochs.rs`);
//! - `high-watermark`: the last high watermark written (on flush), a floor for the next start;
//! - `producer-snapshot`: idempotent-producer state as of an offset (`producers.rs`), written at
//!   roll and clean shutdown; recovery rebuilds the rest from batch headers after it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Instant;

use bytes::Bytes;

use super::batch::{rewritten_prefix, BatchHeader};
use super::checkpoint::{owner, read_checkpoint, write_checkpoint, Owner};
use super::epochs::EpochCache;
use super::producers::{Check, ProducerError, ProducerState, TxnVerification};
use super::segment::{delete_files, read_at, read_batches, Segment};
use crate::config::LogDefaults;
use crate::types::{Offset, TopicId, TopicPartition};

mod cleaning;
pub use cleaning::{CleanStats, Dirtiness, IoGate};

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(transparent)]
    Producer(#[from] ProducerError),
    #[error("replicated batch at offset {got} is before the log end {expected}")]
    NonContiguous { expected: Offset, got: Offset },
    #[error("offset {offset} is outside the log [{start}, {end}]")]
    OffsetOutOfRange {
        offset: Offset,
        start: Offset,
        end: Offset,
    },
    #[error("log I/O error: {0}")]
    Io(#[from] io::Error),
    /// The log was removed (its topic deleted, or its replica moved off this broker) while a
    /// request still held it.
    #[error("the partition's log was removed from this broker")]
    Removed,
}

struct Inner {
    segments: BTreeMap<Offset, Segment>,
    log_start: Offset,
    unflushed_messages: i64,
    /// When the oldest append not yet fsynced was written (`flush.ms` counts from it).
    unflushed_since: Option<Instant>,
    epochs: EpochCache,
    /// The epoch checkpoint was written but not fsynced (`begin_epoch`); the next flush does.
    epochs_unsynced: bool,
    producers: ProducerState,
    cleaner: cleaning::CleanerState,
    /// Counts truncations, resets and removal: a cleaning pass that saw it move records
    /// nothing.
    changes: u64,
}

/// What a leader append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub first: Offset,
    pub last: Offset,
    /// The batch was already in the log (an idempotent producer's retry): nothing was written
    /// and `first..=last` are its original offsets.
    pub duplicate: bool,
}

impl Inner {
    /// The segment appends go to. Open logs always have one (open() and retention keep it);
    /// only a removed log has none.
    fn active(&mut self) -> Result<&mut Segment, LogError> {
        self.segments
            .values_mut()
            .next_back()
            .ok_or(LogError::Removed)
    }

    fn end(&self) -> Offset {
        self.segments
            .values()
            .next_back()
            .map(|s| s.next_offset)
            .unwrap_or(self.log_start)
    }
}

/// A byte range of a segment file, to be read or sent to a socket later. The `Arc` keeps the
/// file open even if retention deletes the segment meanwhile.
#[derive(Clone, Debug)]
pub struct FileRegion {
    pub file: Arc<File>,
    pub offset: u64,
    pub len: usize,
}

impl FileRegion {
    /// The bytes, copied into memory (listeners that cannot send from the file).
    pub fn read(&self) -> io::Result<Bytes> {
        Ok(read_at(&self.file, self.len, self.offset)?.freeze())
    }
}

/// How much one read of a log may return: at most `max_bytes` (with `min_one`, the first batch
/// whole even when larger — KIP-74), nothing at or past `max_offset` (the high watermark for
/// consumers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub max_bytes: usize,
    pub max_offset: Offset,
    pub min_one: bool,
}

impl Window {
    pub const fn new(max_bytes: usize, max_offset: Offset, min_one: bool) -> Window {
        Window {
            max_bytes,
            max_offset,
            min_one,
        }
    }
}

pub struct PartitionLog {
    pub tp: TopicPartition,
    pub topic_id: TopicId,
    dir: PathBuf,
    settings: RwLock<LogDefaults>,
    inner: Mutex<Inner>,
    /// The log end offset as the last holder of `inner` left it: read without the lock, as
    /// every fetch round asks it of every partition it covers.
    end: AtomicI64,
    /// The high watermark last read from or written to its checkpoint file (`UNKNOWN` before
    /// either): the checkpoint pass every few seconds compares against it, not the file.
    stored_hw: AtomicI64,
}

/// `stored_hw` before the checkpoint file was first read or written.
const UNKNOWN: i64 = i64::MIN;

/// The log's lock; publishes the log end offset when let go after a change (anything that
/// changes the log reaches it mutably).
struct Locked<'a> {
    inner: MutexGuard<'a, Inner>,
    end: &'a AtomicI64,
    changed: bool,
}

impl std::ops::Deref for Locked<'_> {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl std::ops::DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut Inner {
        self.changed = true;
        &mut self.inner
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        if self.changed {
            self.end.store(self.inner.end(), Ordering::Release);
        }
    }
}

/// What `open` found, for the log line that reports recovery.
#[derive(Debug, Default)]
pub struct Recovery {
    pub segments: usize,
    pub recovered_segments: usize,
    /// Bytes of the segments re-validated batch by batch (those past the recovery point).
    pub recovered_bytes: u64,
    pub truncated: bool,
    /// The log was created just now. Its directory and files are not fsynced yet: the caller
    /// makes a batch of new logs durable at once (`storage::sync_filesystem`).
    pub created: bool,
}

/// The producer state at `end`: the snapshot (if it is within the log) plus every batch header
/// after it. The segments' aborted-transaction indexes are brought to the same point and made
/// durable before anything newer (a later snapshot) can rely on them: from a snapshot, every
/// entry from its offset on is found again by the replay (which knows the open transactions
/// the snapshot holds); without one, entries past the log end (a torn tail cut) go and every
/// abort the replay meets is put back, while entries for transactions begun before the log
/// start — which a replay from there cannot know — are kept.
fn rebuild_producers(
    dir: &Path,
    segments: &mut BTreeMap<Offset, Segment>,
    log_start: Offset,
    end: Offset,
) -> Result<ProducerState, LogError> {
    let (from, mut state, snapshot) = match ProducerState::load(&dir.join("producer-snapshot")) {
        Some((at, state)) if at >= log_start && at <= end => (at, state, true),
        _ => (log_start, ProducerState::default(), false),
    };
    let exact_from = if snapshot { from } else { end };
    for seg in segments.values_mut() {
        seg.forget_aborted_from(exact_from)?;
    }
    for seg in segments.values_mut().filter(|s| s.next_offset > from) {
        let mut aborted = Vec::new();
        seg.for_each_batch(from, |h, marker| {
            if h.base_offset >= from {
                aborted.extend(state.record(h, h.base_offset, marker));
            }
        })?;
        for a in aborted {
            seg.restore_aborted(a)?;
        }
    }
    // Snapshots of older versions carried the aborted transactions themselves.
    for a in state.take_legacy_aborted() {
        if a.last < log_start || a.last >= end {
            continue;
        }
        if let Some((_, seg)) = segments.range_mut(..=a.last).next_back() {
            seg.restore_aborted(a)?;
        }
    }
    for seg in segments.values_mut() {
        seg.sync_aborted()?;
    }
    Ok(state)
}

impl PartitionLog {
    pub fn dir_name(tp: &TopicPartition) -> String {
        format!("{}-{}", tp.topic, tp.partition)
    }

    /// Opens (or creates) the log under `root`. A directory that belongs to another topic id is
    /// removed first. Only segments at or after the recovery point are re-validated.
    pub fn open(
        root: &Path,
        tp: TopicPartition,
        topic_id: TopicId,
        settings: LogDefaults,
    ) -> Result<(PartitionLog, Recovery), LogError> {
        let dir = root.join(Self::dir_name(&tp));
        let meta_path = dir.join("partition.metadata");
        let found = if dir.exists() {
            owner(&meta_path, topic_id)?
        } else {
            Owner::Unknown
        };
        if let Owner::Other(old) = &found {
            tracing::info!(%tp, old_topic_id = %old, "removing a log directory left by an older topic of the same name");
            std::fs::remove_dir_all(&dir)?;
        }
        let mut report = Recovery::default();
        if !dir.exists() {
            std::fs::create_dir_all(&dir)?;
            report.created = true;
        }
        if found != Owner::Ours {
            // A new log's file is made durable with its directory, by the caller's batch sync.
            super::replace_file(&meta_path, topic_id.to_string().as_bytes(), !report.created)?;
        }

        if cleaning::recover(&dir, settings.index_interval_bytes)? {
            tracing::info!(%tp, "finished swapping in a cleaned segment after a restart");
        }
        let bases = cleaning::segment_bases(&dir)?;
        let recovery_point = read_checkpoint(&dir.join("recovery-point")).unwrap_or(0);
        let mut log_start = read_checkpoint(&dir.join("log-start-offset")).unwrap_or(0);

        let mut segments = BTreeMap::new();
        for (i, &base) in bases.iter().enumerate() {
            let next = bases.get(i + 1).copied();
            let flushed = next.is_some_and(|n| n <= recovery_point);
            let (mut seg, cut) =
                Segment::open(&dir, base, !flushed, settings.index_interval_bytes)?;
            if !flushed {
                report.recovered_segments += 1;
                report.recovered_bytes += seg.size;
                seg.unflushed = true;
            }
            segments.insert(base, seg);
            report.segments += 1;
            if cut {
                report.truncated = true;
                // Everything after a torn batch is unreachable: drop later segments.
                for &later in &bases[i + 1..] {
                    delete_files(&dir, later)?;
                }
                break;
            }
        }
        if let Some(&first) = segments.keys().next() {
            log_start = log_start.max(first);
        }
        if segments.is_empty() {
            segments.insert(log_start, Segment::create(&dir, log_start)?);
        }
        let end = segments
            .values()
            .next_back()
            .map(|s| s.next_offset)
            .unwrap_or(log_start);
        let mut epochs = EpochCache::load(&dir.join("leader-epoch-checkpoint"));
        epochs.truncate_from(end);
        let producers = rebuild_producers(&dir, &mut segments, log_start, end)?;
        let mut cleaner = cleaning::CleanerState::load(&dir);
        cleaner.truncated(end);
        let log = PartitionLog {
            tp,
            topic_id,
            dir,
            settings: RwLock::new(settings),
            inner: Mutex::new(Inner {
                segments,
                log_start,
                unflushed_messages: 0,
                unflushed_since: None,
                epochs,
                epochs_unsynced: false,
                producers,
                cleaner,
                changes: 0,
            }),
            end: AtomicI64::new(0),
            stored_hw: AtomicI64::new(UNKNOWN),
        };
        log.end.store(log.lock().end(), Ordering::Release);
        Ok((log, report))
    }

    fn lock(&self) -> Locked<'_> {
        Locked {
            inner: self.inner.lock().unwrap_or_else(|p| p.into_inner()),
            end: &self.end,
            changed: false,
        }
    }

    pub fn settings(&self) -> LogDefaults {
        self.settings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn set_settings(&self, s: LogDefaults) {
        *self.settings.write().unwrap_or_else(|p| p.into_inner()) = s;
    }

    pub fn log_start_offset(&self) -> Offset {
        self.lock().log_start
    }

    pub fn log_end_offset(&self) -> Offset {
        self.end.load(Ordering::Acquire)
    }

    /// Appends validated batches as received, assigning offsets from the log end and stamping
    /// `leader_epoch`. Batches of idempotent producers are checked against the producer state
    /// first, under the same lock: a retried batch is answered with its original offsets.
    pub fn append(
        &self,
        batches: &[(BatchHeader, &[u8])],
        leader_epoch: i32,
    ) -> Result<Appended, LogError> {
        self.append_verified(batches, leader_epoch, TxnVerification::Off)
    }

    /// `append` of a client's batch, which may open a transaction only under `verification`'s
    /// guard (KIP-890: see `start_verification`).
    pub fn append_verified(
        &self,
        batches: &[(BatchHeader, &[u8])],
        leader_epoch: i32,
        verification: TxnVerification,
    ) -> Result<Appended, LogError> {
        let settings = self.settings();
        let mut inner = self.lock();
        if let [(h, _)] = batches {
            if let Check::Duplicate {
                first_offset,
                last_offset,
            } = inner.producers.check_verified(h, verification)?
            {
                return Ok(Appended {
                    first: first_offset,
                    last: last_offset,
                    duplicate: true,
                });
            }
        } else {
            for (h, _) in batches {
                inner.producers.check_verified(h, verification)?;
            }
        }
        let first = inner.end();
        if inner.epochs.assign(leader_epoch, first) {
            inner
                .epochs
                .save(&self.dir.join("leader-epoch-checkpoint"))?;
        }
        let mut next = first;
        for (h, bytes) in batches {
            let prefix = rewritten_prefix(bytes, next, leader_epoch);
            let mut placed = *h;
            placed.base_offset = next;
            placed.leader_epoch = leader_epoch;
            self.write_batch(&mut inner, &settings, &prefix, bytes, &placed)?;
            next = placed.next_offset();
        }
        self.maybe_flush(&mut inner, &settings)?;
        Ok(Appended {
            first,
            last: next - 1,
            duplicate: false,
        })
    }

    /// Appends batches copied from the leader exactly as they are (offsets and epochs included).
    /// They must continue the log. Returns the new log end offset.
    pub fn append_replica(&self, batches: &[(BatchHeader, &[u8])]) -> Result<Offset, LogError> {
        let settings = self.settings();
        let mut inner = self.lock();
        let mut epochs_changed = false;
        for (h, bytes) in batches {
            let next = inner.end();
            // A gap is fine: the leader's cleaner may have removed whole batches.
            if h.base_offset < next {
                return Err(LogError::NonContiguous {
                    expected: next,
                    got: h.base_offset,
                });
            }
            let mut prefix = [0u8; 16];
            prefix.copy_from_slice(&bytes[..16]);
            self.write_batch(&mut inner, &settings, &prefix, bytes, h)?;
            epochs_changed |= inner.epochs.assign(h.leader_epoch, h.base_offset);
        }
        if epochs_changed {
            inner
                .epochs
                .save(&self.dir.join("leader-epoch-checkpoint"))?;
        }
        self.maybe_flush(&mut inner, &settings)?;
        Ok(inner.end())
    }

    /// Writes one batch (its first 16 bytes replaced by `prefix`, `h` describing it as placed)
    /// at the log end, rolling first when the active segment is full or old, and records it in
    /// the producer state. Shared by leader and follower appends.
    fn write_batch(
        &self,
        inner: &mut Inner,
        settings: &LogDefaults,
        prefix: &[u8; 16],
        bytes: &[u8],
        h: &BatchHeader,
    ) -> Result<(), LogError> {
        if inner.active()?.should_roll(
            bytes.len(),
            h.base_offset,
            settings.segment_bytes,
            settings.roll_ms,
        ) {
            self.roll(inner, h.base_offset)?;
        }
        inner.active()?.append(
            prefix,
            bytes,
            h,
            settings.index_interval_bytes,
            settings.writeback_bytes,
        )?;
        let marker = if h.is_control() {
            super::records::control_record(bytes, h)
        } else {
            None
        };
        if let Some(aborted) = inner.producers.record(h, h.base_offset, marker) {
            inner.active()?.add_aborted(aborted)?;
        }
        inner.unflushed_messages += h.record_count.max(1) as i64;
        inner.unflushed_since.get_or_insert_with(Instant::now);
        Ok(())
    }

    /// fsyncs once `flush.messages` records were written since the last flush.
    fn maybe_flush(&self, inner: &mut Inner, settings: &LogDefaults) -> Result<(), LogError> {
        if inner.unflushed_messages >= settings.flush_interval_messages {
            self.flush_locked(inner)?;
        }
        Ok(())
    }

    /// Removes everything at and after `offset` (a follower dropping what the leader does not
    /// have). A batch holding `offset` goes whole. Returns the new log end.
    pub fn truncate_to(&self, offset: Offset) -> Result<Offset, LogError> {
        let settings = self.settings();
        let mut inner = self.lock();
        if offset >= inner.end() {
            return Ok(inner.end());
        }
        let offset = offset.max(inner.log_start);
        let later: Vec<Offset> = inner.segments.range(offset..).map(|(b, _)| *b).collect();
        for base in later {
            if inner.segments.len() == 1 {
                break;
            }
            if let Some(seg) = inner.segments.remove(&base) {
                seg.delete()?;
            }
        }
        let index_interval = settings.index_interval_bytes;
        if inner.active()?.base >= offset {
            // Only the active segment is left and all of it goes: start it afresh at `offset`.
            let base = inner.active()?.base;
            if let Some(seg) = inner.segments.remove(&base) {
                seg.delete()?;
            }
            inner
                .segments
                .insert(offset, Segment::create(&self.dir, offset)?);
        } else {
            inner.active()?.truncate_to(offset, index_interval)?;
        }
        let end = inner.end();
        inner.epochs.truncate_from(end);
        inner
            .epochs
            .save(&self.dir.join("leader-epoch-checkpoint"))?;
        inner.cleaner.truncated(end);
        inner.changes += 1;
        inner.cleaner.save(&self.dir)?;
        let log_start = inner.log_start;
        inner.producers = rebuild_producers(&self.dir, &mut inner.segments, log_start, end)?;
        // A snapshot past the new end describes records that are gone: replace it, or a later
        // rebuild (once the log grows past its offset again) would load them.
        inner
            .producers
            .save(&self.dir.join("producer-snapshot"), end)?;
        let recovery = read_checkpoint(&self.dir.join("recovery-point")).unwrap_or(0);
        if recovery > end {
            write_checkpoint(&self.dir.join("recovery-point"), &end.to_string())?;
        }
        tracing::info!(tp = %self.tp, end, "truncated log");
        Ok(end)
    }

    /// Drops the whole log and restarts it empty at `start` (a follower far behind a leader
    /// whose log now starts later).
    pub fn reset_to(&self, start: Offset) -> Result<(), LogError> {
        let mut inner = self.lock();
        let bases: Vec<Offset> = inner.segments.keys().copied().collect();
        for base in bases {
            if let Some(seg) = inner.segments.remove(&base) {
                seg.delete()?;
            }
        }
        inner
            .segments
            .insert(start, Segment::create(&self.dir, start)?);
        inner.log_start = start;
        inner.epochs = EpochCache::default();
        inner.producers = ProducerState::default();
        inner.cleaner.truncated(start);
        inner.changes += 1;
        inner.cleaner.save(&self.dir)?;
        let _ = std::fs::remove_file(self.dir.join("producer-snapshot"));
        inner
            .epochs
            .save(&self.dir.join("leader-epoch-checkpoint"))?;
        write_checkpoint(&self.dir.join("log-start-offset"), &start.to_string())?;
        write_checkpoint(&self.dir.join("recovery-point"), &start.to_string())?;
        Ok(())
    }

    /// The newest leader epoch in the log and where it starts.
    pub fn latest_epoch(&self) -> Option<(i32, Offset)> {
        self.lock().epochs.latest()
    }

    /// Records that `epoch` starts at the current log end (on becoming leader). Written at
    /// once but fsynced with the log's next flush, as Kafka does since KAFKA-15046: a broker
    /// taking the lead of thousands of partitions would otherwise wait on two fsyncs each.
    pub fn begin_epoch(&self, epoch: i32) -> Result<(), LogError> {
        let mut inner = self.lock();
        let end = inner.end();
        if inner.epochs.assign(epoch, end) {
            inner
                .epochs
                .save_with(&self.dir.join("leader-epoch-checkpoint"), false)?;
            inner.epochs_unsynced = true;
        }
        Ok(())
    }

    /// OffsetForLeaderEpoch: (largest epoch <= `epoch`, the offset where it ends).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, Offset) {
        let inner = self.lock();
        inner.epochs.end_offset_for(epoch, inner.end())
    }

    /// The high watermark last written by `write_high_watermark`, if any.
    pub fn stored_high_watermark(&self) -> Option<Offset> {
        match self.stored_hw.load(Ordering::Acquire) {
            UNKNOWN => {
                let stored = read_checkpoint(&self.dir.join("high-watermark"))?;
                let _ = self.stored_hw.compare_exchange(
                    UNKNOWN,
                    stored,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
                Some(stored)
            }
            known => Some(known),
        }
    }

    pub fn write_high_watermark(&self, hw: Offset) -> Result<(), LogError> {
        // Decided transactions whose markers are now replicated no longer hold the last stable
        // offset: forget them here too, for partitions no `read_committed` reader asks about.
        self.lock().producers.last_stable_offset(hw);
        write_checkpoint(&self.dir.join("high-watermark"), &hw.to_string())?;
        self.stored_hw.store(hw, Ordering::Release);
        Ok(())
    }

    /// Starts a new active segment at `base`, flushing the old one so the recovery point can
    /// move past it.
    fn roll(&self, inner: &mut Inner, base: Offset) -> Result<(), LogError> {
        self.sync_epochs(inner)?;
        inner.active()?.flush()?;
        write_checkpoint(&self.dir.join("recovery-point"), &base.to_string())?;
        inner
            .producers
            .save(&self.dir.join("producer-snapshot"), base)?;
        inner
            .segments
            .insert(base, Segment::create(&self.dir, base)?);
        tracing::debug!(tp = %self.tp, base, "rolled segment");
        Ok(())
    }

    /// Makes a leader epoch written by `begin_epoch` durable; before any segment data, so no
    /// durable batch carries an epoch the durable checkpoint lacks.
    fn sync_epochs(&self, inner: &mut Inner) -> Result<(), LogError> {
        if inner.epochs_unsynced {
            inner
                .epochs
                .save(&self.dir.join("leader-epoch-checkpoint"))?;
            inner.epochs_unsynced = false;
        }
        Ok(())
    }

    /// fsyncs what a new log was created with (its files and its directory) — for a caller
    /// that made only a few logs; many are cheaper made durable at once
    /// (`storage::sync_filesystem`). The parent directory is the caller's to sync.
    pub fn make_durable(&self) -> Result<(), LogError> {
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            if path.is_file() {
                File::open(&path)?.sync_all()?;
            }
        }
        super::sync_dir(&self.dir)?;
        Ok(())
    }

    fn flush_locked(&self, inner: &mut Inner) -> Result<(), LogError> {
        self.sync_epochs(inner)?;
        for s in inner.segments.values_mut() {
            s.flush()?;
        }
        let end = inner.end();
        write_checkpoint(&self.dir.join("recovery-point"), &end.to_string())?;
        inner
            .producers
            .save(&self.dir.join("producer-snapshot"), end)?;
        inner.unflushed_messages = 0;
        inner.unflushed_since = None;
        Ok(())
    }

    /// fsyncs everything and moves the recovery point to the log end.
    pub fn flush(&self) -> Result<(), LogError> {
        let mut inner = self.lock();
        self.flush_locked(&mut inner)
    }

    /// Flushes when the oldest unflushed append is at least `flush.ms` old at `now` (the
    /// time-based flush policy, run by a periodic task). Returns whether it flushed.
    pub fn flush_if_due(&self, now: Instant) -> Result<bool, LogError> {
        let flush_ms = self.settings().flush_interval_ms;
        if flush_ms == i64::MAX {
            return Ok(false);
        }
        let mut inner = self.lock();
        let due = inner
            .unflushed_since
            .is_some_and(|t| now.saturating_duration_since(t).as_millis() >= flush_ms as u128);
        if due {
            self.flush_locked(&mut inner)?;
        }
        Ok(due)
    }

    /// The segment and file position of the batch holding `offset` (or the first batch after
    /// it); `None` past the last batch. Checks the offset is within the log.
    fn start_of(inner: &Inner, offset: Offset) -> Result<Option<(&Segment, u64)>, LogError> {
        if inner.segments.is_empty() {
            return Err(LogError::Removed);
        }
        let log_end = inner.end();
        if offset < inner.log_start || offset > log_end {
            return Err(LogError::OffsetOutOfRange {
                offset,
                start: inner.log_start,
                end: log_end,
            });
        }
        for seg in inner
            .segments
            .range(..=offset)
            .next_back()
            .into_iter()
            .map(|(_, s)| s)
            .chain(inner.segments.range(offset + 1..).map(|(_, s)| s))
        {
            let lookup = if offset < seg.base {
                seg.locate(seg.base)?
            } else {
                seg.locate(offset)?
            };
            if let Some(pos) = lookup {
                return Ok(Some((seg, pos)));
            }
        }
        Ok(None)
    }

    /// Reads whole batches starting with the one holding `offset`, within `window`.
    pub fn read(&self, offset: Offset, window: Window) -> Result<Bytes, LogError> {
        let Window {
            max_bytes,
            max_offset,
            min_one,
        } = window;
        let (file, pos, end) = {
            let inner = self.lock();
            match Self::start_of(&inner, offset)? {
                Some((seg, pos)) => (seg.file()?, pos, seg.size),
                None => return Ok(Bytes::new()),
            }
        };
        Ok(read_batches(
            &file, pos, end, max_bytes, max_offset, min_one,
        )?)
    }

    /// The byte range a consumer fetch at `offset` returns, as Kafka slices a segment: from the
    /// batch holding `offset`, `window.max_bytes` long (so it may end inside a batch, which
    /// clients drop) but never reaching `window.max_offset` (the high watermark, always a batch
    /// boundary); with `min_one` at least the first batch whole (KIP-74). Bytes below the high watermark
    /// are never rewritten, so the range can be sent from the file later (sendfile).
    pub fn region(&self, offset: Offset, window: Window) -> Result<Option<FileRegion>, LogError> {
        let Window {
            max_bytes,
            max_offset,
            min_one,
        } = window;
        let (file, pos, end) = {
            let inner = self.lock();
            let Some((seg, pos)) = Self::start_of(&inner, offset)? else {
                return Ok(None);
            };
            let end = if max_offset >= seg.next_offset {
                seg.size
            } else if max_offset <= seg.base {
                pos
            } else {
                seg.locate(max_offset)?.unwrap_or(seg.size)
            };
            (seg.file()?, pos, end)
        };
        if end <= pos {
            return Ok(None);
        }
        let avail = (end - pos) as usize;
        let mut len = avail.min(max_bytes);
        if min_one && len < avail {
            let mut head = [0u8; super::batch::LOG_OVERHEAD];
            if avail >= head.len() {
                std::os::unix::fs::FileExt::read_exact_at(&*file, &mut head, pos)?;
                if let Some((_, size)) = super::batch::peek_size(&head) {
                    len = len.max(size.min(avail));
                }
            }
        }
        Ok((len > 0).then_some(FileRegion {
            file,
            offset: pos,
            len,
        }))
    }

    /// The first record with a timestamp at or after `ts`: (offset, timestamp).
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(Offset, i64)>, LogError> {
        let inner = self.lock();
        for seg in inner.segments.values() {
            if let Some(hit) = seg.find_timestamp(ts)? {
                if hit.0 >= inner.log_start {
                    return Ok(Some(hit));
                }
            }
        }
        Ok(None)
    }

    /// The record with the largest timestamp: (offset, timestamp).
    pub fn max_timestamp(&self) -> Result<Option<(Offset, i64)>, LogError> {
        let inner = self.lock();
        let best = inner
            .segments
            .values()
            .filter(|s| s.size > 0)
            .max_by_key(|s| s.max_timestamp);
        match best {
            Some(s) => Ok(s.max_timestamp_record()?),
            None => Ok(None),
        }
    }

    /// Deletes whole segments (never the active one) past `retention.ms` or beyond
    /// `retention.bytes`, and advances the log start offset. Returns how many went.
    pub fn apply_retention(&self, now_ms: i64) -> Result<usize, LogError> {
        let s = self.settings();
        let mut inner = self.lock();
        if s.producer_expiration_ms >= 0 {
            inner.producers.expire(now_ms - s.producer_expiration_ms);
        }
        let mut total: i64 = inner.segments.values().map(|s| s.size as i64).sum();
        let mut deleted = 0;
        while s.cleanup.delete && inner.segments.len() > 1 {
            let Some((&base, seg)) = inner.segments.iter().next() else {
                break;
            };
            let too_old = s.retention_ms >= 0
                && seg.max_timestamp >= 0
                && now_ms - seg.max_timestamp > s.retention_ms;
            let too_big = s.retention_bytes >= 0 && total - seg.size as i64 >= s.retention_bytes;
            if !(too_old || too_big) {
                break;
            }
            total -= seg.size as i64;
            if let Some(seg) = inner.segments.remove(&base) {
                seg.delete()?;
            }
            deleted += 1;
        }
        if deleted > 0 {
            let first = inner
                .segments
                .keys()
                .next()
                .copied()
                .unwrap_or(inner.log_start);
            self.raise_log_start(&mut inner, first)?;
            tracing::info!(tp = %self.tp, deleted, log_start = inner.log_start, "retention removed segments");
        }
        Ok(deleted)
    }

    fn raise_log_start(&self, inner: &mut Inner, start: Offset) -> Result<(), LogError> {
        if start > inner.log_start {
            inner.log_start = start;
            write_checkpoint(&self.dir.join("log-start-offset"), &start.to_string())?;
        }
        Ok(())
    }

    /// Moves the log start up to `start` (never past the log end) and deletes the segments that
    /// lie wholly below it. Used by the group coordinator after it wrote a snapshot of its state
    /// (and by followers adopting the leader's log start). Returns the new log start.
    pub fn advance_start(&self, start: Offset) -> Result<Offset, LogError> {
        let mut inner = self.lock();
        let start = start.min(inner.end());
        if start <= inner.log_start {
            return Ok(inner.log_start);
        }
        loop {
            let mut keys = inner.segments.keys();
            let (Some(&first), Some(&second)) = (keys.next(), keys.next()) else {
                break;
            };
            if second > start {
                break;
            }
            if let Some(seg) = inner.segments.remove(&first) {
                seg.delete()?;
            }
        }
        self.raise_log_start(&mut inner, start)?;
        tracing::debug!(tp = %self.tp, log_start = start, "log start advanced");
        Ok(start)
    }

    /// Starts a new segment at the log end unless the active one is empty; returns the log end.
    pub fn roll_now(&self) -> Result<Offset, LogError> {
        let mut inner = self.lock();
        let end = inner.end();
        if inner.active()?.size > 0 {
            self.roll(&mut inner, end)?;
        }
        Ok(end)
    }

    /// Removes the whole partition directory (topic deleted).
    pub fn remove(&self) -> Result<(), LogError> {
        let mut inner = self.lock();
        inner.segments.clear();
        inner.changes += 1;
        match std::fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Bytes of all segment files (DescribeLogDirs).
    pub fn size_bytes(&self) -> u64 {
        self.lock().segments.values().map(|s| s.size).sum()
    }

    /// Writes a transaction marker for `producer_id` at the log end as leader at
    /// `leader_epoch` (WriteTxnMarkers). A marker of an older producer epoch than the log's is
    /// refused. Returns the marker's offset.
    pub fn append_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
        leader_epoch: i32,
    ) -> Result<Offset, LogError> {
        let bytes = super::batch::control_batch(
            producer_id,
            producer_epoch,
            commit,
            coordinator_epoch,
            crate::types::now_ms(),
        );
        let h = super::batch::parse_header(&bytes).ok_or(LogError::Removed)?;
        self.lock()
            .producers
            .check_marker(producer_id, producer_epoch, coordinator_epoch)?;
        let appended = self.append(&[(h, &bytes)], leader_epoch)?;
        Ok(appended.first)
    }

    /// The last stable offset under the high watermark `hw` (`read_committed` reads stop there).
    pub fn last_stable_offset(&self, hw: Offset) -> Offset {
        self.lock().producers.last_stable_offset(hw)
    }

    /// The aborted transactions a read of `[from, to)` may meet: (producer id, first offset).
    /// Their markers are at or after `from`: the walk over the segments' indexes starts with
    /// the one holding `from` and stops at an entry no later transaction can precede.
    pub fn aborted_between(&self, from: Offset, to: Offset) -> Vec<(i64, Offset)> {
        let inner = self.lock();
        // A read returns batches of one segment (the first holding `from` or after it): no
        // further than that segment's end — the bound Kafka's walk uses, which lets it stop
        // early instead of walking every later segment.
        let to = match Self::start_of(&inner, from) {
            Ok(Some((seg, _))) => to.min(seg.next_offset),
            _ => return Vec::new(),
        };
        let first = inner
            .segments
            .range(..=from)
            .next_back()
            .map_or(Offset::MIN, |(b, _)| *b);
        let mut found = Vec::new();
        for seg in inner.segments.range(first..).map(|(_, s)| s) {
            if seg.aborted().collect(from, to, &mut found) {
                break;
            }
        }
        found
            .into_iter()
            .map(|a| (a.producer_id, a.first))
            .collect()
    }

    /// Every aborted transaction whose marker is still in the log, in marker order.
    fn aborted_txns(inner: &Inner) -> Vec<super::txnindex::AbortedTxn> {
        inner
            .segments
            .values()
            .flat_map(|s| s.aborted().entries())
            .copied()
            .collect()
    }

    /// Starts a KIP-890 verification of the producer's next transaction here: the guard its
    /// first batch must be appended under, or `None` when it has a transaction open here.
    pub fn start_verification(&self, producer_id: i64) -> Option<u64> {
        self.lock()
            .producers
            .start_verification(producer_id, crate::types::now_ms())
    }

    /// Drops a verification the coordinator refused (nothing will be appended under it).
    pub fn end_verification(&self, producer_id: i64, guard: u64) {
        self.lock().producers.end_verification(producer_id, guard);
    }

    /// The first offset of each open transaction's producer here (DescribeProducers).
    pub fn open_txn(&self, producer_id: i64) -> Option<Offset> {
        self.lock().producers.open_txn(producer_id)
    }

    /// The idempotent producers with state in this log (DescribeProducers).
    pub fn active_producers(&self) -> Vec<super::producers::ActiveProducer> {
        self.lock().producers.active()
    }

    pub fn segment_count(&self) -> usize {
        self.lock().segments.len()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::storage::batch::{tests::make_batch, validate};

    pub(crate) fn settings() -> LogDefaults {
        LogDefaults {
            segment_bytes: 4096,
            roll_ms: i64::MAX,
            retention_ms: -1,
            retention_bytes: -1,
            index_interval_bytes: 512,
            max_message_bytes: 1 << 20,
            flush_interval_messages: i64::MAX,
            flush_interval_ms: i64::MAX,
            // Small, so the tests run the writeback hint too.
            writeback_bytes: 512,
            producer_expiration_ms: -1,
            timestamps: crate::config::TimestampPolicy {
                log_append_time: false,
                before_max_ms: i64::MAX,
                after_max_ms: i64::MAX,
            },
            cleanup: crate::config::CleanupPolicy::DELETE,
            min_cleanable_ratio: 0.5,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            delete_retention_ms: 86_400_000,
        }
    }

    #[test]
    fn a_torn_or_unreadable_partition_metadata_never_deletes_the_data() {
        let root = tempfile::tempdir().expect("tempdir");
        let tp = TopicPartition::new("t".to_string(), 0);
        let id = TopicId(uuid::Uuid::from_u128(7));
        let dir = root.path().join("t-0");
        let meta = dir.join("partition.metadata");
        let reopen = || PartitionLog::open(root.path(), tp.clone(), id, settings());
        {
            let (log, _) = reopen().expect("open");
            append(&log, 5, 1_000);
            log.flush().expect("flush");
        }
        // Empty after a power loss, or torn: the data is kept and the id written again.
        for contents in ["", "0f3a-"] {
            std::fs::write(&meta, contents).expect("write");
            let (log, _) = reopen().expect("open");
            assert_eq!(log.log_end_offset(), 5, "{contents:?}");
            assert_eq!(owner(&meta, id).expect("owner"), Owner::Ours, "rewritten");
        }
        // Missing: kept too.
        std::fs::remove_file(&meta).expect("remove");
        assert_eq!(reopen().expect("open").0.log_end_offset(), 5);
        // Unreadable (here: a directory in its place): the open fails, nothing is deleted.
        std::fs::remove_file(&meta).expect("remove");
        std::fs::create_dir(&meta).expect("dir");
        assert!(reopen().is_err());
        assert!(dir.join(format!("{:020}.log", 0)).exists());
        std::fs::remove_dir(&meta).expect("rmdir");
        // Another topic's valid id: an older topic of the same name, removed.
        std::fs::write(&meta, uuid::Uuid::from_u128(8).to_string()).expect("write");
        assert_eq!(reopen().expect("open").0.log_end_offset(), 0);
    }

    fn append(log: &PartitionLog, n: i32, ts: i64) -> (Offset, Offset) {
        let b = make_batch(n, ts, 100);
        let v = validate(&b, 1 << 20).expect("valid");
        let a = log.append(&[(v[0].0, &b[..])], 0).expect("append");
        (a.first, a.last)
    }

    fn id() -> TopicId {
        TopicId(uuid::Uuid::from_u128(7))
    }

    /// A transactional batch of `n` records from producer `pid` (epoch 0) at sequence `seq`.
    fn txn_batch(pid: i64, seq: i32, n: i32) -> Vec<u8> {
        let mut b = make_batch(n, 1000, 100);
        b[21..23].copy_from_slice(&crate::storage::batch::TRANSACTIONAL.to_be_bytes());
        b[43..51].copy_from_slice(&pid.to_be_bytes());
        b[51..53].copy_from_slice(&0i16.to_be_bytes());
        b[53..57].copy_from_slice(&seq.to_be_bytes());
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }

    fn append_txn(log: &PartitionLog, pid: i64, seq: i32, n: i32) -> Offset {
        let b = txn_batch(pid, seq, n);
        let v = validate(&b, 1 << 20).expect("valid");
        log.append(&[(v[0].0, &b[..])], 0).expect("append").first
    }

    /// Aborts land in the `.txnindex` of the segment holding their marker, and a
    /// `read_committed` read finds them there after a restart (with or without the producer
    /// snapshot), a truncation and retention.
    #[test]
    fn aborted_transactions_live_in_their_marker_segments_index() {
        let dir = tempfile::tempdir().expect("tmp");
        let tp = TopicPartition::new("t", 0);
        let mut s = settings();
        s.retention_bytes = 0;
        let open = || PartitionLog::open(dir.path(), tp.clone(), id(), s.clone()).expect("open");
        let (log, _) = open();
        // Producer 7 aborts, 8 commits, 9 aborts; each across several segments.
        let mut aborted = Vec::new();
        for (round, pid) in [7i64, 8, 9].into_iter().enumerate() {
            let first = append_txn(&log, pid, 0, 3);
            for i in 1..20 {
                append_txn(&log, pid, i * 3, 3);
            }
            let commit = pid == 8;
            let marker = log.append_marker(pid, 0, commit, 0, 0).expect("marker");
            if !commit {
                aborted.push((pid, first, marker));
            }
            append(&log, 2, 2000 + round as i64);
        }
        assert!(log.segment_count() > 4, "the transactions span segments");
        let end = log.log_end_offset();
        let expect_all: Vec<(i64, Offset)> = aborted.iter().map(|a| (a.0, a.1)).collect();
        // What reads from every offset meet (each read returns one segment's batches).
        let met = |log: &PartitionLog, to: Offset| {
            let mut all = std::collections::BTreeSet::new();
            for from in log.log_start_offset()..to {
                all.extend(log.aborted_between(from, to));
            }
            all.into_iter().collect::<Vec<_>>()
        };
        assert_eq!(met(&log, end), expect_all);
        assert_eq!(
            log.aborted_between(0, end),
            vec![expect_all[0]],
            "a read from 0 returns the first segment, inside 7's transaction"
        );
        let (_, first9, marker9) = aborted[1];
        assert_eq!(
            log.aborted_between(first9 + 1, first9 + 2),
            vec![(9, first9)],
            "a read inside 9's transaction, its marker segments later"
        );
        assert_eq!(log.aborted_between(marker9 + 1, end), vec![]);
        let index_files = || {
            std::fs::read_dir(dir.path().join("t-0"))
                .expect("dir")
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().ends_with(".txnindex"))
                .count()
        };
        assert_eq!(index_files(), 2, "one index per marker segment");

        // A clean restart, then one without the snapshot (everything replayed).
        log.flush().expect("flush");
        drop(log);
        let (log, _) = open();
        assert_eq!(met(&log, end), expect_all);
        drop(log);
        std::fs::remove_file(dir.path().join("t-0/producer-snapshot")).expect("rm snapshot");
        let (log, _) = open();
        assert_eq!(met(&log, end), expect_all);

        // A follower cut back before 9's marker loses 9's entry.
        log.truncate_to(marker9).expect("truncate");
        assert_eq!(met(&log, marker9), vec![expect_all[0]]);
        assert_eq!(index_files(), 1);

        // Retention takes 7's marker segment with it.
        let (_, _, marker7) = aborted[0];
        log.apply_retention(i64::MAX).expect("retention");
        assert!(log.log_start_offset() > marker7);
        assert_eq!(log.aborted_between(log.log_start_offset(), marker9), vec![]);
        assert_eq!(index_files(), 0);
    }

    /// An abort whose transaction began before the log start stays known after a restart
    /// without the producer snapshot (the replay from the log start cannot find its start).
    #[test]
    fn an_abort_begun_before_the_log_start_survives_a_replay_from_there() {
        let dir = tempfile::tempdir().expect("tmp");
        let tp = TopicPartition::new("t", 0);
        let open = || PartitionLog::open(dir.path(), tp.clone(), id(), settings()).expect("open");
        let (log, _) = open();
        let first = append_txn(&log, 7, 0, 3);
        for i in 1..20 {
            append_txn(&log, 7, i * 3, 3);
        }
        let marker = log.append_marker(7, 0, false, 0, 0).expect("marker");
        append(&log, 2, 1000);
        let start = log.advance_start(marker).expect("advance");
        assert!(start > first, "its start is gone");
        let end = log.log_end_offset();
        assert_eq!(log.aborted_between(start, end), vec![(7, first)]);
        log.flush().expect("flush");
        drop(log);
        std::fs::remove_file(dir.path().join("t-0/producer-snapshot")).expect("rm snapshot");
        let (log, _) = open();
        assert_eq!(log.log_start_offset(), start);
        assert_eq!(log.aborted_between(start, end), vec![(7, first)]);
    }

    /// Snapshots written before `.txnindex` held the aborted transactions; opening such a log
    /// moves them into the indexes.
    #[test]
    fn aborted_transactions_of_an_older_snapshot_move_into_the_indexes() {
        let dir = tempfile::tempdir().expect("tmp");
        let tp = TopicPartition::new("t", 0);
        let open = || PartitionLog::open(dir.path(), tp.clone(), id(), settings()).expect("open");
        let (log, _) = open();
        let first = append_txn(&log, 7, 0, 3);
        let marker = log.append_marker(7, 0, false, 0, 0).expect("marker");
        append(&log, 3, 1000);
        log.flush().expect("flush");
        let end = log.log_end_offset();
        drop(log);
        let dirp = dir.path().join("t-0");
        for e in std::fs::read_dir(&dirp)
            .expect("dir")
            .filter_map(|e| e.ok())
        {
            if e.file_name().to_string_lossy().ends_with(".txnindex") {
                std::fs::remove_file(e.path()).expect("rm");
            }
        }
        let old = format!(
            r#"[{end},{{"producers":{{}},"ongoing":{{}},"deciding":[],"aborted":[{{"producer_id":7,"first":{first},"last":{marker}}}]}}]"#
        );
        std::fs::write(dirp.join("producer-snapshot"), old).expect("write");
        let (log, _) = open();
        assert_eq!(log.aborted_between(0, end), vec![(7, first)]);
        drop(log);
        let (log, _) = open();
        assert_eq!(
            log.aborted_between(0, end),
            vec![(7, first)],
            "kept in the index once the snapshot no longer has it"
        );
    }

    /// A request that still holds a removed log (its replica moved away) gets an error, not
    /// a panic.
    #[test]
    fn a_removed_log_refuses_writes() {
        let dir = tempfile::tempdir().expect("tmp");
        let tp = TopicPartition::new("t", 0);
        let (log, _) = PartitionLog::open(dir.path(), tp, id(), settings()).expect("open");
        append(&log, 3, 1000);
        log.remove().expect("remove");
        let b = make_batch(2, 1000, 100);
        let v = validate(&b, 1 << 20).expect("valid");
        assert!(matches!(
            log.append(&[(v[0].0, &b[..])], 0),
            Err(LogError::Removed)
        ));
        assert!(matches!(log.roll_now(), Err(LogError::Removed)));
        let _ = log.truncate_to(1);
        let _ = log.reset_to(5);
        assert!(matches!(
            log.read(0, Window::new(1 << 20, 3, true)),
            Err(LogError::Removed)
        ));
        let _ = log.flush();
    }

    #[test]
    fn append_read_roll_and_reopen() {
        let dir = tempfile::tempdir().expect("tmp");
        let tp = TopicPartition::new("t", 0);
        let (log, _) = PartitionLog::open(dir.path(), tp.clone(), id(), settings()).expect("open");
        for i in 0..50 {
            assert_eq!(append(&log, 3, 1000 + i), (i * 3, i * 3 + 2));
        }
        assert!(log.segment_count() > 3, "segments rolled");
        let end = log.log_end_offset();
        assert_eq!(end, 150);
        // Every offset can be read and starts at the batch that holds it.
        for off in [0, 1, 44, 77, 149] {
            let data = log.read(off, Window::new(1, end, true)).expect("read");
            let h = crate::storage::batch::parse_header(&data).expect("header");
            assert!(
                h.base_offset <= off && off <= h.last_offset(),
                "offset {off} in {h:?}"
            );
        }
        assert!(log
            .read(150, Window::new(100, end, true))
            .expect("at end")
            .is_empty());
        assert!(matches!(
            log.read(151, Window::new(100, end, true)),
            Err(LogError::OffsetOutOfRange { .. })
        ));
        // Never past max_offset.
        assert!(log
            .read(0, Window::new(1 << 20, 0, true))
            .expect("read")
            .is_empty());
        assert_eq!(
            log.offset_for_timestamp(1010).expect("ts"),
            Some((30, 1010))
        );
        assert_eq!(log.max_timestamp().expect("max").map(|m| m.1), Some(1049));
        drop(log);
        let (log, rec) = PartitionLog::open(dir.path(), tp, id(), settings()).expect("reopen");
        assert_eq!(log.log_end_offset(), 150);
        assert_eq!(
            rec.recovered_segments, 1,
            "only the unflushed tail is re-validated"
        );
        assert!(!rec.truncated);
        assert_eq!(
            log.offset_for_timestamp(1030).expect("ts"),
            Some((90, 1030))
        );
    }

    /// Index entries live in memory until the segment is flushed (no descriptor held for
    /// them); a log reopened after a flush reads them back, one reopened after a crash
    /// rebuilds what its files lack.
    #[test]
    fn indexes_reach_their_files_at_flush_and_serve_after_reopen_or_crash() {
        let dir = tempfile::tempdir().expect("tmp");
        let tp = TopicPartition::new("t", 0);
        let one_segment = LogDefaults {
            segment_bytes: 1 << 20,
            ..settings()
        };
        let open = || PartitionLog::open(dir.path(), tp.clone(), id(), one_segment.clone());
        let len = |ext: &str| {
            std::fs::metadata(
                dir.path()
                    .join("t-0")
                    .join(super::super::segment::file_name(0, ext)),
            )
            .map(|m| m.len())
            .expect("index file")
        };
        let check = |log: &PartitionLog, batches: i64| {
            let end = log.log_end_offset();
            assert_eq!(end, batches * 3);
            for off in (0..end).step_by(7) {
                let data = log.read(off, Window::new(1, end, true)).expect("read");
                let h = crate::storage::batch::parse_header(&data).expect("header");
                assert!(
                    h.base_offset <= off && off <= h.last_offset(),
                    "{off}: {h:?}"
                );
            }
            for i in (0..batches).step_by(5) {
                assert_eq!(
                    log.offset_for_timestamp(1000 + i).expect("ts"),
                    Some((i * 3, 1000 + i))
                );
            }
        };
        let (log, _) = open().expect("open");
        for i in 0..40 {
            append(&log, 3, 1000 + i);
        }
        assert_eq!(len("index"), 0, "index entries wait for the flush");
        log.flush().expect("flush");
        let entries = len("index") / 8;
        assert!(entries > 3, "{entries} index entries written at flush");
        assert_eq!(len("timeindex"), entries * 12);
        drop(log);

        let (log, _) = open().expect("reopen");
        check(&log, 40);
        for i in 40..70 {
            append(&log, 3, 1000 + i);
        }
        // A crash: the entries added since the flush never reach the files.
        drop(log);
        assert!(len("index") / 8 <= entries);
        let (log, _) = open().expect("reopen after a crash");
        check(&log, 70);
        log.flush().expect("flush");
        assert!(
            len("index") / 8 > entries,
            "the rebuilt entries are written"
        );
    }

    #[test]
    fn file_regions_read_exactly_their_bytes_and_a_short_file_is_an_error() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("f");
        let content: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &content).expect("write");
        let file = Arc::new(File::open(&path).expect("open"));
        let region = |offset: u64, len: usize| FileRegion {
            file: file.clone(),
            offset,
            len,
        };
        let got = region(70_001, 29_999).read().expect("read");
        assert_eq!(&got[..], &content[70_001..]);
        assert!(region(0, 0).read().expect("empty").is_empty());
        let err = region(99_000, 1_001).read().expect_err("past the end");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn torn_tail_is_truncated_on_open() {
        let dir = tempfile::tempdir().expect("tmp");
        let tp = TopicPartition::new("t", 0);
        let (log, _) = PartitionLog::open(dir.path(), tp.clone(), id(), settings()).expect("open");
        append(&log, 2, 1);
        append(&log, 2, 2);
        drop(log);
        let path = dir
            .path()
            .join("t-0")
            .join(super::super::segment::file_name(0, "log"));
        let len = std::fs::metadata(&path).expect("meta").len();
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open");
        f.set_len(len - 5).expect("tear");
        let (log, rec) = PartitionLog::open(dir.path(), tp, id(), settings()).expect("reopen");
        assert!(rec.truncated);
        assert_eq!(log.log_end_offset(), 2);
        assert_eq!(append(&log, 1, 3), (2, 2));
    }

    #[test]
    fn replica_append_keeps_offsets_and_truncation_cuts_whole_batches() {
        let dir = tempfile::tempdir().expect("tmp");
        let (leader, _) = PartitionLog::open(
            &dir.path().join("a"),
            TopicPartition::new("t", 0),
            id(),
            settings(),
        )
        .expect("open");
        let (follower, _) = PartitionLog::open(
            &dir.path().join("b"),
            TopicPartition::new("t", 0),
            id(),
            settings(),
        )
        .expect("open");
        for i in 0..40 {
            let b = make_batch(3, i, 100);
            let v = validate(&b, 1 << 20).expect("valid");
            let epoch = if i < 20 { 1 } else { 4 };
            leader.append(&[(v[0].0, &b[..])], epoch).expect("append");
        }
        // Copy everything over, batch by batch, as a follower does.
        let mut off = 0;
        while off < leader.log_end_offset() {
            let data = leader
                .read(off, Window::new(1 << 20, i64::MAX, true))
                .expect("read");
            let batches = validate(&data, 1 << 20).expect("valid");
            let input: Vec<_> = batches
                .iter()
                .map(|(h, r)| (*h, &data[r.clone()]))
                .collect();
            off = follower.append_replica(&input).expect("replica append");
        }
        assert_eq!(follower.log_end_offset(), 120);
        assert_eq!(follower.end_offset_for_epoch(1), (1, 60));
        assert_eq!(follower.end_offset_for_epoch(3), (1, 60));
        assert_eq!(follower.end_offset_for_epoch(4), (4, 120));
        // A batch before the log end is refused (a gap is not: compaction leaves them).
        let b = make_batch(1, 0, 1);
        let v = validate(&b, 1 << 20).expect("valid");
        assert!(matches!(
            follower.append_replica(&[(v[0].0, &b[..])]),
            Err(LogError::NonContiguous { .. })
        ));
        // Truncate into the middle of a batch: the whole batch goes.
        assert_eq!(follower.truncate_to(61).expect("truncate"), 60);
        assert_eq!(follower.latest_epoch(), Some((1, 0)));
        assert_eq!(follower.end_offset_for_epoch(4), (1, 60));
        let data = follower
            .read(57, Window::new(1 << 20, i64::MAX, true))
            .expect("read");
        let last = validate(&data, 1 << 20)
            .expect("valid")
            .pop()
            .expect("a batch")
            .0;
        assert_eq!(last.next_offset(), 60);
        // Appending continues at the cut, and the log reopens consistently.
        let b = make_batch(2, 99, 10);
        let v = validate(&b, 1 << 20).expect("valid");
        assert_eq!(
            follower
                .append(&[(v[0].0, &b[..])], 7)
                .map(|a| (a.first, a.last))
                .expect("append"),
            (60, 61)
        );
        drop(follower);
        let (again, _) = PartitionLog::open(
            &dir.path().join("b"),
            TopicPartition::new("t", 0),
            id(),
            settings(),
        )
        .expect("reopen");
        assert_eq!(again.log_end_offset(), 62);
        assert_eq!(again.latest_epoch(), Some((7, 60)));
        // Truncating everything restarts the active segment at the cut.
        assert_eq!(again.truncate_to(0).expect("truncate"), 0);
        assert_eq!(again.log_end_offset(), 0);
    }

    #[test]
    fn retention_by_time_and_roll_by_age() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut s = settings();
        s.segment_bytes = 1 << 30;
        s.roll_ms = 1;
        s.retention_ms = 1000;
        let (log, _) =
            PartitionLog::open(dir.path(), TopicPartition::new("t", 0), id(), s).expect("open");
        for ts in [10, 20, 5_000] {
            append(&log, 1, ts);
            std::thread::sleep(std::time::Duration::from_millis(3));
        }
        assert_eq!(
            log.segment_count(),
            3,
            "each append after log.roll.ms starts a segment"
        );
        // At time 2_000 the first two segments (max timestamps 10 and 20) are past retention.
        assert_eq!(log.apply_retention(2_000).expect("retention"), 2);
        assert_eq!(log.log_start_offset(), 2);
        assert_eq!(
            log.apply_retention(2_000).expect("retention"),
            0,
            "the active segment stays"
        );
    }

    #[test]
    fn time_based_flush_waits_for_flush_ms_from_the_oldest_unflushed_append() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut s = settings();
        s.flush_interval_ms = 50;
        let tp = TopicPartition::new("t", 0);
        let (log, _) = PartitionLog::open(dir.path(), tp.clone(), id(), s).expect("open");
        let recovery_point = || read_checkpoint(&log.dir.join("recovery-point"));
        let before = recovery_point();
        let t0 = Instant::now();
        append(&log, 3, 10);
        assert!(!log.flush_if_due(t0).expect("check"), "not yet 50 ms old");
        assert_eq!(recovery_point(), before);
        let later = Instant::now() + std::time::Duration::from_millis(60);
        assert!(log.flush_if_due(later).expect("check"), "due after 50 ms");
        assert_eq!(recovery_point(), Some(3), "flushed up to the log end");
        assert!(
            !log.flush_if_due(later).expect("check"),
            "nothing left to flush"
        );

        // The default (no time-based flush) never flushes from the periodic task.
        let dir = tempfile::tempdir().expect("tmp");
        let (log, _) = PartitionLog::open(dir.path(), tp, id(), settings()).expect("open");
        append(&log, 1, 10);
        let much_later = Instant::now() + std::time::Duration::from_secs(3600);
        assert!(!log.flush_if_due(much_later).expect("check"));
    }

    #[test]
    fn retention_by_bytes_advances_log_start() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut s = settings();
        s.retention_bytes = 4096;
        let (log, _) =
            PartitionLog::open(dir.path(), TopicPartition::new("t", 0), id(), s).expect("open");
        for i in 0..60 {
            append(&log, 1, i);
        }
        let before = log.segment_count();
        let gone = log.apply_retention(0).expect("retention");
        assert!(gone > 0 && log.segment_count() == before - gone);
        assert!(log.log_start_offset() > 0);
        assert!(matches!(
            log.read(0, Window::new(100, 60, true)),
            Err(LogError::OffsetOutOfRange { .. })
        ));
        assert!(!log
            .read(log.log_start_offset(), Window::new(100, 60, true))
            .expect("read")
            .is_empty());
    }
}
