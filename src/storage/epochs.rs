//! The leader-epoch cache of one partition: for every leader epoch, the first offset written in
//! it. Kept in `leader-epoch-checkpoint` (one `epoch start_offset` pair per line) beside the
//! segments. Followers use it, through OffsetForLeaderEpoch, to find where their log stops
//! agreeing with a new leader's. Pure apart from `load` / `save`.

use std::io;
use std::path::Path;

use crate::types::{LeaderEpoch, Offset};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EpochCache {
    /// (epoch, start offset), both strictly increasing.
    entries: Vec<(LeaderEpoch, Offset)>,
}

impl EpochCache {
    pub fn load(path: &Path) -> EpochCache {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let mut cache = EpochCache::default();
        for line in text.lines() {
            let mut parts = line.split_whitespace();
            if let (Some(Ok(e)), Some(Ok(o))) =
                (parts.next().map(str::parse), parts.next().map(str::parse))
            {
                cache.assign(e, o);
            }
        }
        cache
    }

    /// Writes the checkpoint durably: a leader answers OffsetForLeaderEpoch from it, and
    /// followers truncate by it.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        self.save_with(path, true)
    }

    /// Writes the checkpoint whole (temporary file, rename); fsynced only when `durable`.
    pub fn save_with(&self, path: &Path, durable: bool) -> io::Result<()> {
        let text: String = self
            .entries
            .iter()
            .map(|(e, o)| format!("{e} {o}\n"))
            .collect();
        super::replace_file(path, text.as_bytes(), durable)
    }

    pub fn latest(&self) -> Option<(LeaderEpoch, Offset)> {
        self.entries.last().copied()
    }

    /// Records that `epoch` starts at `offset`; ignored unless it is newer than the latest epoch.
    /// Returns whether the cache changed.
    pub fn assign(&mut self, epoch: LeaderEpoch, offset: Offset) -> bool {
        match self.entries.last() {
            Some((e, _)) if *e >= epoch => false,
            _ => {
                // An epoch that starts where the previous one started replaces it (it wrote nothing).
                while self.entries.last().is_some_and(|(_, o)| *o >= offset) {
                    self.entries.pop();
                }
                self.entries.push((epoch, offset));
                true
            }
        }
    }

    /// After truncating the log to `end`: drop epochs that start at or after it.
    pub fn truncate_from(&mut self, end: Offset) {
        self.entries.retain(|(_, o)| *o < end);
    }

    /// After retention moved the log start: keep the epoch covering `start` and later ones.
    pub fn truncate_before(&mut self, start: Offset) {
        while self.entries.len() > 1 && self.entries[1].1 <= start {
            self.entries.remove(0);
        }
    }

    /// OffsetForLeaderEpoch: the largest epoch at or below `epoch`, and the offset where it ends
    /// (the next epoch's start, or `log_end` for the latest). (-1, -1) when there is none.
    pub fn end_offset_for(&self, epoch: LeaderEpoch, log_end: Offset) -> (LeaderEpoch, Offset) {
        let i = self.entries.partition_point(|(e, _)| *e <= epoch);
        if i == 0 {
            return (-1, -1);
        }
        let found = self.entries[i - 1].0;
        let end = self.entries.get(i).map(|(_, o)| *o).unwrap_or(log_end);
        (found, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_offsets_follow_epoch_boundaries() {
        let mut c = EpochCache::default();
        assert!(c.assign(0, 0));
        assert!(c.assign(2, 10));
        assert!(!c.assign(1, 12), "older epochs are ignored");
        assert!(c.assign(5, 30));
        assert_eq!(c.end_offset_for(0, 50), (0, 10));
        assert_eq!(
            c.end_offset_for(1, 50),
            (0, 10),
            "largest epoch at or below"
        );
        assert_eq!(c.end_offset_for(3, 50), (2, 30));
        assert_eq!(
            c.end_offset_for(9, 50),
            (5, 50),
            "the latest ends at the log end"
        );
        assert_eq!(c.end_offset_for(-1, 50), (-1, -1));
        c.truncate_from(30);
        assert_eq!(c.latest(), Some((2, 10)));
        c.truncate_before(15);
        assert_eq!(c.end_offset_for(0, 50), (-1, -1));
        assert_eq!(c.latest(), Some((2, 10)));
    }

    #[test]
    fn an_empty_epoch_is_replaced_and_the_file_round_trips() {
        let mut c = EpochCache::default();
        c.assign(1, 5);
        c.assign(2, 5);
        assert_eq!(c.end_offset_for(1, 9), (-1, -1));
        assert_eq!(c.latest(), Some((2, 5)));
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("leader-epoch-checkpoint");
        c.save(&path).expect("save");
        assert_eq!(EpochCache::load(&path), c);
    }
}
