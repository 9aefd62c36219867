//! The aborted-transaction index of one segment (`<base>.txnindex`, Kafka's layout): an entry
//! per transaction whose abort marker is in the segment, in marker order. A `read_committed`
//! fetch gathers from these the aborted transactions its records may belong to, so the list
//! lives and dies with the segments that hold the markers instead of growing in memory.
//!
//! Entry (34 bytes, big-endian): version i16 (0), producer id i64, first offset i64, marker
//! offset i64, last stable offset i64 — the first offset of the oldest transaction of another
//! producer still open when the marker was written, or the marker + 1. No transaction that
//! ends later starts before it, which is what lets a walk over the segments stop early.
//!
//! Owned by its `Segment`, touched only under the log's lock. The entries are kept in memory
//! (a segment rarely has any); the file is appended as markers are written, cut on truncation,
//! and fsynced with the segment.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::types::Offset;

pub const ENTRY: usize = 34;
const VERSION: i16 = 0;

/// A transaction that was aborted: `read_committed` consumers skip the producer's batches from
/// `first` until the marker at `last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first: Offset,
    pub last: Offset,
    /// See the module comment; -1 when unknown (entries carried over from producer snapshots
    /// of older versions), which never ends a walk early.
    #[serde(default = "unknown")]
    pub last_stable: Offset,
}

fn unknown() -> Offset {
    -1
}

impl AbortedTxn {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&VERSION.to_be_bytes());
        for v in [self.producer_id, self.first, self.last, self.last_stable] {
            out.extend_from_slice(&v.to_be_bytes());
        }
    }

    fn decode(b: &[u8]) -> Option<AbortedTxn> {
        if b.len() != ENTRY || i16::from_be_bytes([b[0], b[1]]) != VERSION {
            return None;
        }
        let at = |i: usize| {
            let mut v = [0u8; 8];
            v.copy_from_slice(&b[2 + 8 * i..10 + 8 * i]);
            i64::from_be_bytes(v)
        };
        Some(AbortedTxn {
            producer_id: at(0),
            first: at(1),
            last: at(2),
            last_stable: at(3),
        })
    }

    /// Whether a read of `[from, to)` may meet this transaction's records.
    pub fn overlaps(&self, from: Offset, to: Offset) -> bool {
        self.last >= from && self.first < to
    }
}

/// One segment's entries, as in its file.
#[derive(Debug, Default)]
pub struct TxnIndex {
    entries: Vec<AbortedTxn>,
    /// Entries were written since the last fsync.
    unsynced: bool,
    /// The file was created since the last fsync: its directory entry needs one too.
    created: bool,
}

impl TxnIndex {
    /// Reads the file; a missing one is an empty index. A torn last entry (a crash mid-write)
    /// and anything after an entry that does not decode are dropped, as are entries out of
    /// marker order.
    pub fn load(path: &Path) -> io::Result<TxnIndex> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(TxnIndex::default()),
            Err(e) => return Err(e),
        };
        let mut entries: Vec<AbortedTxn> = Vec::new();
        for chunk in bytes.chunks_exact(ENTRY) {
            match AbortedTxn::decode(chunk) {
                Some(a) if entries.last().is_none_or(|p| p.last < a.last) => entries.push(a),
                _ => break,
            }
        }
        let index = TxnIndex {
            entries,
            unsynced: false,
            created: false,
        };
        let good = (index.entries.len() * ENTRY) as u64;
        if good != bytes.len() as u64 {
            // Cut to the good prefix in one step (a rewrite would empty the file first).
            let f = OpenOptions::new().write(true).open(path)?;
            f.set_len(good)?;
            f.sync_data()?;
        }
        Ok(index)
    }

    pub fn entries(&self) -> &[AbortedTxn] {
        &self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether an entry for the marker at `last` is here.
    pub fn has(&self, last: Offset) -> bool {
        self.entries.binary_search_by_key(&last, |a| a.last).is_ok()
    }

    /// Adds an entry (its marker after every one here) and appends it to the file.
    pub fn append(&mut self, path: &Path, a: AbortedTxn) -> io::Result<()> {
        if self.entries.last().is_some_and(|p| p.last >= a.last) {
            return Err(io::Error::other(format!(
                "aborted transaction with marker {} is not after the index's last",
                a.last
            )));
        }
        let mut bytes = Vec::with_capacity(ENTRY);
        a.encode(&mut bytes);
        let mut f = OpenOptions::new().create(true).append(true).open(path)?;
        f.write_all(&bytes)?;
        self.created |= self.entries.is_empty();
        self.entries.push(a);
        self.unsynced = true;
        Ok(())
    }

    /// Adds an entry found by a replay unless it is here already: appended when its marker
    /// comes last, else put in its place.
    pub fn add(&mut self, path: &Path, a: AbortedTxn) -> io::Result<()> {
        match self.entries.last() {
            Some(l) if l.last >= a.last => self.insert(path, a),
            _ => self.append(path, a),
        }
    }

    /// Adds an entry wherever its marker belongs (carrying entries over from an older producer
    /// snapshot, or one a replay found that the file lost), replacing a different one for the
    /// same marker; the file is rewritten and fsynced.
    pub fn insert(&mut self, path: &Path, a: AbortedTxn) -> io::Result<()> {
        match self.entries.binary_search_by_key(&a.last, |e| e.last) {
            Ok(i) if self.entries[i] == a => return Ok(()),
            Ok(i) => self.entries[i] = a,
            Err(i) => self.entries.insert(i, a),
        }
        self.rewrite(path)?;
        self.created = true;
        self.unsynced = true;
        self.sync(path)
    }

    /// Drops the entries whose marker is at or after `offset` (the log was cut there).
    pub fn truncate_from(&mut self, path: &Path, offset: Offset) -> io::Result<()> {
        let keep = self.entries.partition_point(|a| a.last < offset);
        if keep == self.entries.len() {
            return Ok(());
        }
        self.entries.truncate(keep);
        self.unsynced = true;
        if keep == 0 {
            self.created = true;
            return remove_if_any(path);
        }
        OpenOptions::new()
            .write(true)
            .open(path)?
            .set_len((keep * ENTRY) as u64)?;
        self.unsynced = true;
        Ok(())
    }

    /// fsyncs entries written (or cut) since the last call, and the directory when the file
    /// was created or removed meanwhile.
    pub fn sync(&mut self, path: &Path) -> io::Result<()> {
        if self.unsynced {
            if !self.entries.is_empty() {
                std::fs::File::open(path)?.sync_data()?;
            }
            if self.created {
                if let Some(dir) = path.parent() {
                    crate::storage::sync_dir(dir)?;
                }
            }
            self.unsynced = false;
            self.created = false;
        }
        Ok(())
    }

    /// Writes every entry to `path` anew (a cleaned segment's index, a repaired file);
    /// fsynced by the next `sync`.
    pub fn rewrite(&self, path: &Path) -> io::Result<()> {
        if self.entries.is_empty() {
            return remove_if_any(path);
        }
        let mut bytes = Vec::with_capacity(self.entries.len() * ENTRY);
        for a in &self.entries {
            a.encode(&mut bytes);
        }
        let mut f = std::fs::File::create(path)?;
        f.write_all(&bytes)?;
        f.sync_data()
    }

    /// An index holding `entries` (already in marker order), not yet written anywhere.
    pub fn of(entries: Vec<AbortedTxn>) -> TxnIndex {
        TxnIndex {
            entries,
            unsynced: true,
            created: true,
        }
    }

    /// Adds the entries a read of `[from, to)` may meet to `out`; true once an entry shows
    /// that no later segment can hold more (its last stable offset reached `to`).
    pub fn collect(&self, from: Offset, to: Offset, out: &mut Vec<AbortedTxn>) -> bool {
        for a in &self.entries {
            if a.overlaps(from, to) {
                out.push(*a);
            }
            if a.last_stable >= to {
                return true;
            }
        }
        false
    }
}

fn remove_if_any(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txn(producer_id: i64, first: Offset, last: Offset, last_stable: Offset) -> AbortedTxn {
        AbortedTxn {
            producer_id,
            first,
            last,
            last_stable,
        }
    }

    #[test]
    fn entries_round_trip_in_kafkas_layout_and_a_torn_tail_is_dropped() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("00000000000000000000.txnindex");
        let mut index = TxnIndex::load(&path).expect("missing is empty");
        assert!(index.is_empty());
        index.append(&path, txn(7, 3, 9, 10)).expect("append");
        index.append(&path, txn(8, 5, 12, 13)).expect("append");
        index.sync(&path).expect("sync");
        let bytes = std::fs::read(&path).expect("read");
        assert_eq!(bytes.len(), 2 * ENTRY);
        assert_eq!(&bytes[..2], &[0, 0], "version 0");
        assert_eq!(&bytes[2..10], &7i64.to_be_bytes(), "producer id");
        assert_eq!(&bytes[26..34], &10i64.to_be_bytes(), "last stable offset");
        assert!(
            index.append(&path, txn(9, 1, 12, 13)).is_err(),
            "markers in order"
        );
        // A crash in the middle of a third entry.
        let mut f = OpenOptions::new().append(true).open(&path).expect("open");
        f.write_all(&[0, 0, 1, 2, 3]).expect("write");
        drop(f);
        let back = TxnIndex::load(&path).expect("load");
        assert_eq!(back.entries(), &[txn(7, 3, 9, 10), txn(8, 5, 12, 13)]);
        assert_eq!(
            std::fs::metadata(&path).expect("meta").len(),
            2 * ENTRY as u64,
            "the torn entry is cut off the file"
        );
    }

    #[test]
    fn truncation_cuts_entries_whose_marker_is_gone() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("x.txnindex");
        let mut index = TxnIndex::default();
        for (i, last) in [4, 8, 12].into_iter().enumerate() {
            index
                .append(&path, txn(i as i64, last - 2, last, last + 1))
                .expect("append");
        }
        index.truncate_from(&path, 8).expect("cut");
        assert_eq!(index.entries(), &[txn(0, 2, 4, 5)]);
        assert_eq!(TxnIndex::load(&path).expect("load").entries().len(), 1);
        index.truncate_from(&path, 0).expect("cut all");
        assert!(!path.exists(), "an empty index has no file");
        index.insert(&path, txn(3, 1, 6, -1)).expect("insert");
        index
            .insert(&path, txn(2, 1, 2, -1))
            .expect("insert before");
        assert_eq!(
            TxnIndex::load(&path)
                .expect("load")
                .entries()
                .iter()
                .map(|a| a.last)
                .collect::<Vec<_>>(),
            vec![2, 6]
        );
        index
            .insert(&path, txn(4, 5, 6, 7))
            .expect("a replay's entry replaces a stale one for the same marker");
        assert_eq!(index.entries()[1], txn(4, 5, 6, 7));
        assert_eq!(
            TxnIndex::load(&path).expect("load").entries()[1],
            txn(4, 5, 6, 7)
        );
    }

    #[test]
    fn a_walk_collects_overlapping_transactions_and_stops_at_a_last_stable_offset_past_the_read() {
        let index = TxnIndex {
            entries: vec![
                txn(1, 0, 5, 6),    // before the read
                txn(2, 8, 12, 9),   // overlaps; another transaction was open from 9
                txn(3, 9, 30, 31),  // overlaps (starts inside), stops the walk
                txn(4, 40, 45, 46), // never reached
            ],
            unsynced: false,
            created: false,
        };
        let mut out = Vec::new();
        assert!(index.collect(10, 20, &mut out));
        assert_eq!(
            out.iter().map(|a| a.producer_id).collect::<Vec<_>>(),
            vec![2, 3]
        );
        let mut out = Vec::new();
        assert!(
            !index.collect(10, 100, &mut out),
            "later segments may hold more"
        );
        assert_eq!(out.len(), 3);
    }
}
