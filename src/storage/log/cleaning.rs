//! Compaction of one log (`cleanup.policy=compact`): a pass is planned under the log's lock,
//! its cleaned segments are written without it, and each is swapped in under the lock again.
//! Offsets never change; only whole segments below the active one and the high watermark are
//! cleaned, so nothing a follower may still truncate is touched.
//!
//! A pass maps every key of the dirty part (from `cleaned_to`) to its latest offset, as far as
//! the map's memory reaches, then rewrites every segment from the log start up to there in
//! groups (`compact::group_segments`), keeping per batch what `compact::filter_batch` keeps.
//!
//! Crash safety, with files beside the segments:
//! - `cleaning/`: a group being written (segment files named by the group's first base, and
//!   `group-end`: the offset after the group's old segments). Removed on start: the old
//!   segments are still whole.
//! - `swap/`: the same directory once its contents were fsynced and, under the log lock, the
//!   group's segments were found unchanged — renamed in one step, the commit point. Old
//!   segments of the group are then deleted and the new files moved in (the log file last),
//!   still under the lock. On start a `swap/` is finished: old segments in `[base, group-end)`
//!   are deleted and its files moved in.
//! - `cleaner-checkpoint`: how far the log is clean and when each pass ended (the tombstone
//!   horizon). Losing it only costs a pass over data already clean.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::Arc;

use super::{LogError, PartitionLog};
use crate::config::LogDefaults;
use crate::storage::batch::parse_header;
use crate::storage::compact::{
    filter_batch, group_segments, prune_passes, tombstone_horizon, Filtered, OffsetMap, Retain,
    SegmentSpan,
};
use crate::storage::records::{parse_records, records_section};
use crate::storage::segment::{delete_files, file_name, read_batch_at, Segment};
use crate::storage::txnindex::AbortedTxn;
use crate::types::Offset;

const STAGED: &str = "cleaning";
const SWAP: &str = "swap";
const CHECKPOINT: &str = "cleaner-checkpoint";
const GROUP_END: &str = "group-end";
/// How far one batch is decompressed while mapping keys (as in `compact`).
const RECORDS_LIMIT: usize = 64 << 20;

/// How far a log is clean, and the passes that set its tombstone horizon.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct CleanerState {
    /// Every offset below this was mapped by some pass (the dirty part starts here).
    pub(super) cleaned_to: Offset,
    /// (cleaned_to, wall-clock ms) at the end of each remembered pass, oldest first.
    pub(super) passes: Vec<(Offset, i64)>,
    /// The oldest tombstone the last pass kept: the log is cleanable again once the horizon
    /// passes it, even with nothing new written.
    pub(super) oldest_tombstone: Option<Offset>,
}

impl CleanerState {
    pub(super) fn load(dir: &Path) -> CleanerState {
        let Ok(text) = std::fs::read_to_string(dir.join(CHECKPOINT)) else {
            return CleanerState::default();
        };
        let mut lines = text.lines();
        let first: Vec<Offset> = lines
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|n| n.parse().ok())
            .collect();
        let passes = lines
            .filter_map(|l| {
                let (o, t) = l.split_once(' ')?;
                Some((o.parse().ok()?, t.parse().ok()?))
            })
            .collect();
        CleanerState {
            cleaned_to: first.first().copied().unwrap_or(0),
            passes,
            oldest_tombstone: first.get(1).copied().filter(|o| *o >= 0),
        }
    }

    pub(super) fn save(&self, dir: &Path) -> io::Result<()> {
        let mut text = format!(
            "{} {}\n",
            self.cleaned_to,
            self.oldest_tombstone.unwrap_or(-1)
        );
        for (o, t) in &self.passes {
            text.push_str(&format!("{o} {t}\n"));
        }
        crate::storage::replace_file(&dir.join(CHECKPOINT), text.as_bytes(), false)
    }

    /// The log was cut at `end` (a follower's truncation): nothing past it is clean.
    pub(super) fn truncated(&mut self, end: Offset) {
        self.cleaned_to = self.cleaned_to.min(end);
        self.oldest_tombstone = self.oldest_tombstone.filter(|o| *o < end);
        for p in &mut self.passes {
            p.0 = p.0.min(end);
        }
    }
}

/// How much of a compacted log is dirty, for choosing which log to clean.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dirtiness {
    /// Dirty bytes over all cleanable bytes.
    pub ratio: f64,
    pub dirty_bytes: u64,
    /// At or above the log's `min.cleanable.dirty.ratio`, or a dirty record older than its
    /// `max.compaction.lag.ms`.
    pub cleanable: bool,
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CleanStats {
    /// The log's dirty ratio when the pass began.
    pub dirty_ratio: f64,
    /// Bytes of the segments rewritten, before and after.
    pub before_bytes: u64,
    pub after_bytes: u64,
    /// Dirty bytes read to build the key map.
    pub mapped_bytes: u64,
    pub keys: usize,
    pub groups: usize,
    /// The dirty part now starts here.
    pub cleaned_to: Offset,
    /// The log changed under the pass (truncated, reset, retention) and it stopped.
    pub abandoned: bool,
}

struct Plan {
    /// Every segment from the log start to the last cleanable one, with its file.
    segments: Vec<(SegmentSpan, Arc<File>)>,
    first_dirty: Offset,
    /// Index into `segments` of the first segment with dirty records, if any.
    first_dirty_segment: Option<usize>,
    /// Each producer's last batch (its last offset): kept even if emptied.
    producers_last: HashMap<i64, Offset>,
    /// Aborted transactions: their records never enter the key map, so they cannot remove a
    /// committed record of the same key; a cleaned segment keeps its members' index entries
    /// (markers are kept).
    aborted: Vec<AbortedTxn>,
    tombstone_horizon: Offset,
    settings: LogDefaults,
    dirtiness: Dirtiness,
    /// The log's truncation count when planned: a pass that saw it move records nothing.
    changes: u64,
}

/// Stops a pass when the cleaner is told to (shutdown); also counts I/O for the rate limit.
pub type IoGate<'a> = &'a dyn Fn(u64) -> bool;

fn stopped() -> LogError {
    LogError::Io(io::Error::new(
        io::ErrorKind::Interrupted,
        "the cleaner is stopping",
    ))
}

impl PartitionLog {
    /// How dirty this log is, below `hw`; `None` when it is not compacted or nothing is dirty.
    pub fn dirtiness(&self, hw: Offset, now_ms: i64) -> Option<Dirtiness> {
        self.plan(hw, now_ms).map(|p| p.dirtiness)
    }

    fn plan(&self, hw: Offset, now_ms: i64) -> Option<Plan> {
        let settings = self.settings();
        if !settings.cleanup.compact {
            return None;
        }
        let mut inner = self.lock();
        // Only what is decided: an open transaction's records may still be aborted.
        let hw = inner.producers.last_stable_offset(hw);
        let active = *inner.segments.keys().next_back()?;
        let first_dirty = inner.cleaner.cleaned_to.max(inner.log_start);
        let lag_cutoff = now_ms.saturating_sub(settings.min_compaction_lag_ms);
        let mut segments = Vec::new();
        let (mut clean_bytes, mut dirty_bytes) = (0u64, 0u64);
        let mut first_dirty_segment = None;
        let mut oldest_dirty = -1;
        for seg in inner.segments.range(..active).map(|(_, s)| s) {
            if seg.next_offset > hw {
                break;
            }
            let dirty = seg.next_offset > first_dirty;
            if dirty && settings.min_compaction_lag_ms > 0 && seg.max_timestamp > lag_cutoff {
                break;
            }
            if dirty {
                if first_dirty_segment.is_none() {
                    first_dirty_segment = Some(segments.len());
                    oldest_dirty = seg.first_timestamp().unwrap_or(-1);
                }
                dirty_bytes += seg.size;
            } else {
                clean_bytes += seg.size;
            }
            let span = SegmentSpan {
                base: seg.base,
                size: seg.size,
                next_offset: seg.next_offset,
            };
            let file = match seg.file() {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(tp = %self.tp, error = %e, "cannot open a segment to clean it");
                    return None;
                }
            };
            segments.push((span, file));
        }
        let tombstone_horizon =
            tombstone_horizon(&inner.cleaner.passes, now_ms, settings.delete_retention_ms);
        let tombstones_due = inner
            .cleaner
            .oldest_tombstone
            .is_some_and(|t| t < tombstone_horizon);
        if first_dirty_segment.is_none() && !tombstones_due {
            return None;
        }
        let ratio = if dirty_bytes + clean_bytes == 0 {
            0.0
        } else {
            dirty_bytes as f64 / (dirty_bytes + clean_bytes) as f64
        };
        let overdue = settings.max_compaction_lag_ms < i64::MAX
            && oldest_dirty >= 0
            && now_ms.saturating_sub(oldest_dirty) > settings.max_compaction_lag_ms;
        let dirtiness = Dirtiness {
            ratio,
            dirty_bytes,
            cleanable: (dirty_bytes > 0 && (ratio >= settings.min_cleanable_ratio || overdue))
                || tombstones_due,
        };
        Some(Plan {
            segments,
            first_dirty,
            first_dirty_segment,
            producers_last: inner.producers.last_offsets(),
            aborted: PartitionLog::aborted_txns(&inner),
            tombstone_horizon,
            settings,
            dirtiness,
            changes: inner.changes,
        })
    }

    /// Runs one cleaning pass if the log is cleanable below `hw`, with `map` as the key map
    /// (cleared first). `io` is told every byte read or written and stops the pass when it
    /// answers false. Returns `None` when there was nothing to do.
    pub fn clean(
        &self,
        hw: Offset,
        now_ms: i64,
        map: &mut OffsetMap,
        io: IoGate,
    ) -> Result<Option<CleanStats>, LogError> {
        let Some(plan) = self.plan(hw, now_ms) else {
            return Ok(None);
        };
        if !plan.dirtiness.cleanable {
            return Ok(None);
        }
        map.clear();
        let mut stats = CleanStats {
            dirty_ratio: plan.dirtiness.ratio,
            ..CleanStats::default()
        };
        let map_end = match plan.first_dirty_segment {
            Some(first) => map_keys(&plan, first, map, io, &mut stats)?,
            // Nothing dirty, but tombstones are due: a pass over the clean part alone.
            None => plan.first_dirty,
        };
        if plan.first_dirty_segment.is_some() && map_end <= plan.first_dirty {
            tracing::warn!(tp = %self.tp, "log.cleaner.dedupe.buffer.size holds no key of the next batch; not cleaning");
            return Ok(None);
        }
        stats.keys = map.len();
        let retain = Retain::new(map, map_end, plan.tombstone_horizon);
        let to_clean: Vec<SegmentSpan> = plan
            .segments
            .iter()
            .map(|(s, _)| *s)
            .take_while(|s| s.base < map_end)
            .collect();
        for group in group_segments(&to_clean, plan.settings.segment_bytes) {
            let members = &plan.segments[group];
            stats.before_bytes += members.iter().map(|(s, _)| s.size).sum::<u64>();
            let after = self.write_group(members, &retain, &plan, io)?;
            stats.after_bytes += after;
            stats.groups += 1;
            let spans: Vec<SegmentSpan> = members.iter().map(|(s, _)| *s).collect();
            if !self.swap_in(&spans, plan.settings.index_interval_bytes)? {
                stats.abandoned = true;
                return Ok(Some(stats));
            }
        }
        let mut inner = self.lock();
        if inner.changes != plan.changes {
            // Truncated or reset meanwhile: what this pass mapped may be gone; the next pass
            // maps again from the clamped `cleaned_to`.
            stats.abandoned = true;
            return Ok(Some(stats));
        }
        let state = &mut inner.cleaner;
        state.cleaned_to = state.cleaned_to.max(map_end);
        state.oldest_tombstone = retain.oldest_tombstone.get();
        state.passes.push((state.cleaned_to, now_ms));
        prune_passes(&mut state.passes, now_ms, plan.settings.delete_retention_ms);
        state.save(&self.dir)?;
        stats.cleaned_to = state.cleaned_to;
        Ok(Some(stats))
    }

    /// Writes one group's cleaned segment into `cleaning/`, fsynced. Returns its size.
    fn write_group(
        &self,
        members: &[(SegmentSpan, Arc<File>)],
        retain: &Retain,
        plan: &Plan,
        io: IoGate,
    ) -> Result<u64, LogError> {
        let staged = self.dir.join(STAGED);
        remove_dir_if_any(&staged)?;
        if self.dir.join(SWAP).exists() {
            // Only an I/O error in an earlier swap leaves one; the next start finishes it.
            return Err(LogError::Io(io::Error::other(
                "an earlier cleaned segment is still waiting in swap/; restart the broker to finish it",
            )));
        }
        std::fs::create_dir(&staged)?;
        let index_interval = plan.settings.index_interval_bytes;
        let mut out = Segment::create(&staged, members[0].0.base)?;
        for (span, file) in members {
            let mut pos = 0;
            while let Some((h, bytes)) = read_batch_at(file, pos, span.size)? {
                pos += h.size as u64;
                let keep_header = h.producer_id >= 0
                    && plan.producers_last.get(&h.producer_id) == Some(&h.last_offset());
                let written = match filter_batch(&bytes, &h, retain, keep_header) {
                    Filtered::Whole => Some(bytes.to_vec()),
                    Filtered::Dropped => None,
                    Filtered::Rebuilt(b) => Some(b),
                };
                let mut io_bytes = h.size as u64;
                if let Some(b) = written {
                    let nh = parse_header(&b).ok_or_else(|| {
                        LogError::Io(io::Error::other("a cleaned batch does not parse"))
                    })?;
                    let mut prefix = [0u8; 16];
                    prefix.copy_from_slice(&b[..16]);
                    out.append(&prefix, &b, &nh, index_interval, 0)?;
                    io_bytes += b.len() as u64;
                }
                if !io(io_bytes) {
                    return Err(stopped());
                }
            }
        }
        let group_end = members.last().map_or(0, |(s, _)| s.next_offset);
        let base = members[0].0.base;
        out.set_aborted(
            plan.aborted
                .iter()
                .filter(|a| a.last >= base && a.last < group_end)
                .copied()
                .collect(),
        )?;
        out.flush()?;
        let size = out.size;
        drop(out);
        crate::storage::replace_file(
            &staged.join(GROUP_END),
            group_end.to_string().as_bytes(),
            true,
        )?;
        crate::storage::sync_dir(&staged)?;
        Ok(size)
    }

    /// Replaces the group's segments by the one written in `cleaning/`, unless the log changed
    /// under the pass (then the work is dropped and false returned). Under the log lock: the
    /// check, the commit (`cleaning/` → `swap/`), the file moves, and the new segment opened
    /// before the old ones leave the map — an I/O error leaves the map as it was (the old
    /// segments read on while their files stay open; one closed since cannot be read again)
    /// and the next start finishes the swap.
    fn swap_in(&self, group: &[SegmentSpan], index_interval: u64) -> Result<bool, LogError> {
        let mut inner = self.lock();
        let unchanged = group.iter().all(|g| {
            inner
                .segments
                .get(&g.base)
                .is_some_and(|s| s.size == g.size && s.next_offset == g.next_offset)
        });
        let active = inner.segments.keys().next_back().copied();
        if !unchanged || group.iter().any(|g| Some(g.base) == active) {
            drop(inner);
            remove_dir_if_any(&self.dir.join(STAGED))?;
            return Ok(false);
        }
        std::fs::rename(self.dir.join(STAGED), self.dir.join(SWAP))?;
        crate::storage::sync_dir(&self.dir)?;
        for g in group {
            delete_files(&self.dir, g.base)?;
        }
        let base = group[0].base;
        move_in(&self.dir, base)?;
        let (seg, _) = Segment::open(&self.dir, base, false, index_interval)?;
        for g in group {
            inner.segments.remove(&g.base);
        }
        inner.segments.insert(base, seg);
        Ok(true)
    }
}

/// Builds the key map over the dirty segments, as far as it holds keys. Returns the offset
/// where mapping stopped: every record below it (and at or after `first_dirty`) is mapped.
fn map_keys(
    plan: &Plan,
    first_segment: usize,
    map: &mut OffsetMap,
    io: IoGate,
    stats: &mut CleanStats,
) -> Result<Offset, LogError> {
    let mut map_end = plan.first_dirty;
    for (span, file) in &plan.segments[first_segment..] {
        let mut pos = 0;
        while let Some((h, bytes)) = read_batch_at(file, pos, span.size)? {
            pos += h.size as u64;
            stats.mapped_bytes += h.size as u64;
            if !io(h.size as u64) {
                return Err(stopped());
            }
            if h.next_offset() <= plan.first_dirty {
                continue;
            }
            // Markers' keys are not record keys (a marker's could equal an integer key), and
            // an aborted transaction's records are as if never written.
            let aborted = h.is_transactional()
                && plan.aborted.iter().any(|a| {
                    a.producer_id == h.producer_id
                        && a.first <= h.base_offset
                        && h.base_offset <= a.last
                });
            if h.is_control() || aborted {
                map_end = h.next_offset();
                continue;
            }
            let records = records_section(&bytes, &h, RECORDS_LIMIT)
                .and_then(|section| Some((parse_records(&section, &h)?, section)));
            if let Some((records, section)) = records {
                for r in records.iter().filter(|r| r.offset >= plan.first_dirty) {
                    let Some(key) = &r.key else { continue };
                    if !map.put(&section[key.clone()], r.offset) {
                        return Ok(r.offset.max(map_end));
                    }
                }
            }
            map_end = h.next_offset();
        }
        map_end = map_end.max(span.next_offset);
    }
    Ok(map_end)
}

fn remove_dir_if_any(dir: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Moves the segment at `base` out of `swap/` into `dir` (log file last, so a `swap/` that
/// still has it is unfinished), then removes `swap/`.
fn move_in(dir: &Path, base: Offset) -> io::Result<()> {
    let swap = dir.join(SWAP);
    for ext in ["index", "timeindex", "txnindex", "log"] {
        let name = file_name(base, ext);
        match std::fs::rename(swap.join(&name), dir.join(&name)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    crate::storage::sync_dir(dir)?;
    remove_dir_if_any(&swap)
}

/// Bases of the segments (`.log` files) in `dir`, ascending.
pub(super) fn segment_bases(dir: &Path) -> io::Result<Vec<Offset>> {
    let mut bases: Vec<Offset> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_suffix(".log")?.parse().ok()
        })
        .collect();
    bases.sort_unstable();
    Ok(bases)
}

/// On start: drops an unfinished `cleaning/` and finishes a committed `swap/` (see the module
/// comment). Returns whether a swap was finished.
pub(super) fn recover(dir: &Path, index_interval: u64) -> Result<bool, LogError> {
    remove_dir_if_any(&dir.join(STAGED))?;
    let swap = dir.join(SWAP);
    if !swap.is_dir() {
        return Ok(false);
    }
    let group_end = std::fs::read_to_string(swap.join(GROUP_END))
        .ok()
        .and_then(|t| t.trim().parse::<Offset>().ok());
    for base in segment_bases(&swap)? {
        // Re-validated and re-indexed: an index may already have been moved out.
        let (seg, _) = Segment::open(&swap, base, true, index_interval)?;
        let end = group_end.unwrap_or(seg.next_offset).max(seg.next_offset);
        drop(seg);
        for old in segment_bases(dir)? {
            if old == base || (old > base && old < end) {
                delete_files(dir, old)?;
            }
        }
        move_in(dir, base)?;
    }
    remove_dir_if_any(&swap)?;
    Ok(true)
}

#[cfg(test)]
mod tests;
