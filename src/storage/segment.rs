//! One log segment: `<base>.log` holding whole RecordBatches back to back, a sparse `<base>.index`
//! (relative offset u32, file position u32) and a `<base>.timeindex` (max timestamp so far i64,
//! relative offset u32), written together every `index.interval.bytes`.
//!
//! A `Segment` is owned by its `PartitionLog` and only touched under the log's lock; readers
//! take an `Arc<File>` and a byte range out of it and read without the lock. The `.log` file is
//! opened on demand (`files::LogFile`); the indexes live in memory and reach their files only
//! when the segment is flushed, so an idle segment holds no descriptor at all.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::batch::{self, BatchHeader, HEADER_LEN, LOG_OVERHEAD};
use super::files::LogFile;
use super::txnindex::{AbortedTxn, TxnIndex};

const INDEX_ENTRY: usize = 8;
/// How far a batch is decompressed to look at its records' timestamps (64 MiB).
const RECORDS_LIMIT: usize = 64 << 20;
const TIME_ENTRY: usize = 12;

pub fn file_name(base: i64, ext: &str) -> String {
    format!("{base:020}.{ext}")
}

pub struct Segment {
    pub base: i64,
    dir: PathBuf,
    log: LogFile,
    /// (offset - base, position) of some batch starts, ascending.
    index: Vec<(u32, u32)>,
    /// How many entries of `index` (and of `time_index`) the index files hold.
    indexed_on_disk: usize,
    /// (largest timestamp before that batch, offset - base), aligned with `index`.
    time_index: Vec<(i64, u32)>,
    /// Bytes of complete batches.
    pub size: u64,
    /// The offset after the last batch; `base` when empty.
    pub next_offset: i64,
    pub max_timestamp: i64,
    bytes_since_index: u64,
    /// The file position up to which writeback was started (`log.writeback.bytes`).
    written_back: u64,
    created: Instant,
    pub unflushed: bool,
    /// The transactions aborted by markers in this segment (`<base>.txnindex`).
    aborted: TxnIndex,
}

/// Cuts an index file to `len` bytes (creating it, empty, if missing).
fn cut_file(path: &Path, len: u64) -> io::Result<()> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?
        .set_len(len)
}

/// Reads up to HEADER_LEN bytes at `pos`; `None` when fewer than a whole header remain.
fn header_at(file: &File, pos: u64, end: u64) -> io::Result<Option<BatchHeader>> {
    if pos + HEADER_LEN as u64 > end {
        return Ok(None);
    }
    let mut buf = [0u8; HEADER_LEN];
    file.read_exact_at(&mut buf, pos)?;
    Ok(batch::parse_header(&buf))
}

impl Segment {
    /// Creates a new, empty segment.
    pub fn create(dir: &Path, base: i64) -> io::Result<Segment> {
        Segment::files(dir, base, true)
    }

    /// The segment's files (created empty when `create`), not yet read: an empty segment.
    fn files(dir: &Path, base: i64, create: bool) -> io::Result<Segment> {
        let log = LogFile::open(dir.join(file_name(base, "log")), create)?;
        let txn_path = dir.join(file_name(base, "txnindex"));
        let aborted = if create {
            log.get()?.set_len(0)?;
            cut_file(&dir.join(file_name(base, "index")), 0)?;
            cut_file(&dir.join(file_name(base, "timeindex")), 0)?;
            // A new segment starts with no aborted transactions, whatever an older one left.
            TxnIndex::default().rewrite(&txn_path)?;
            TxnIndex::default()
        } else {
            TxnIndex::load(&txn_path)?
        };
        Ok(Segment {
            base,
            dir: dir.to_path_buf(),
            log,
            index: Vec::new(),
            indexed_on_disk: 0,
            time_index: Vec::new(),
            size: 0,
            next_offset: base,
            max_timestamp: -1,
            bytes_since_index: 0,
            written_back: 0,
            created: Instant::now(),
            unflushed: false,
            aborted,
        })
    }

    /// Opens an existing segment. With `recover`, every batch is re-validated (size, magic,
    /// CRC-32C), the file is truncated after the last good one, and the indexes are rebuilt;
    /// returns whether anything was cut. Without it, the indexes are trusted if they look sane.
    pub fn open(
        dir: &Path,
        base: i64,
        recover: bool,
        index_interval: u64,
    ) -> io::Result<(Segment, bool)> {
        let mut seg = Segment::files(dir, base, false)?;
        let file_len = seg.log.get()?.metadata()?.len();
        seg.size = file_len;
        if !recover && seg.load_indexes(file_len)? {
            let from = seg.index.last().map(|e| e.1 as u64).unwrap_or(0);
            seg.max_timestamp = seg.time_index.last().map(|e| e.0).unwrap_or(-1);
            let end = seg.scan(from, file_len, false, index_interval, false)?;
            if end == file_len {
                return Ok((seg, false));
            }
            // The tail does not parse: fall through to a full recovery.
        }
        seg.index.clear();
        seg.time_index.clear();
        seg.max_timestamp = -1;
        seg.next_offset = base;
        seg.bytes_since_index = 0;
        seg.indexed_on_disk = 0;
        seg.cut_indexes()?;
        let end = seg.scan(0, file_len, true, index_interval, true)?;
        let truncated = end < file_len;
        if truncated {
            seg.log.get()?.set_len(end)?;
        }
        seg.size = end;
        // The rebuilt entries reach the files now: a segment recovered below the recovery
        // point (or finishing a cleaner's swap) may never be flushed again.
        seg.write_indexes()?;
        Ok((seg, truncated))
    }

    /// Loads both index files; false if they are missing or inconsistent.
    fn load_indexes(&mut self, file_len: u64) -> io::Result<bool> {
        let idx = std::fs::read(self.dir.join(file_name(self.base, "index")))?;
        let tix = std::fs::read(self.dir.join(file_name(self.base, "timeindex")))?;
        if idx.len() % INDEX_ENTRY != 0
            || tix.len() % TIME_ENTRY != 0
            || idx.len() / INDEX_ENTRY != tix.len() / TIME_ENTRY
        {
            return Ok(false);
        }
        let mut last = (0u32, 0u32);
        for c in idx.chunks_exact(INDEX_ENTRY) {
            let rel = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
            let pos = u32::from_be_bytes([c[4], c[5], c[6], c[7]]);
            if (pos as u64) >= file_len
                || (!self.index.is_empty() && (rel <= last.0 || pos <= last.1))
            {
                return Ok(false);
            }
            last = (rel, pos);
            self.index.push((rel, pos));
        }
        for c in tix.chunks_exact(TIME_ENTRY) {
            let mut ts = [0u8; 8];
            ts.copy_from_slice(&c[..8]);
            let rel = u32::from_be_bytes([c[8], c[9], c[10], c[11]]);
            self.time_index.push((i64::from_be_bytes(ts), rel));
        }
        self.indexed_on_disk = self.index.len();
        Ok(true)
    }

    /// Cuts both index files to the entries in `indexed_on_disk`.
    fn cut_indexes(&self) -> io::Result<()> {
        let n = self.indexed_on_disk as u64;
        cut_file(
            &self.dir.join(file_name(self.base, "index")),
            n * INDEX_ENTRY as u64,
        )?;
        cut_file(
            &self.dir.join(file_name(self.base, "timeindex")),
            n * TIME_ENTRY as u64,
        )
    }

    /// Appends the index entries not yet in the index files, and fsyncs them.
    fn write_indexes(&mut self) -> io::Result<()> {
        let from = self.indexed_on_disk;
        if from >= self.index.len() {
            return Ok(());
        }
        let mut idx = Vec::with_capacity((self.index.len() - from) * INDEX_ENTRY);
        let mut tix = Vec::with_capacity((self.index.len() - from) * TIME_ENTRY);
        for (&(rel, pos), &(ts, trel)) in self.index[from..].iter().zip(&self.time_index[from..]) {
            idx.extend_from_slice(&rel.to_be_bytes());
            idx.extend_from_slice(&pos.to_be_bytes());
            tix.extend_from_slice(&ts.to_be_bytes());
            tix.extend_from_slice(&trel.to_be_bytes());
        }
        for (ext, bytes, entry) in [("index", idx, INDEX_ENTRY), ("timeindex", tix, TIME_ENTRY)] {
            let f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(self.dir.join(file_name(self.base, ext)))?;
            // Written where the entries belong, whatever an earlier failure left past them.
            f.write_all_at(&bytes, (from * entry) as u64)?;
            f.set_len(((from * entry) + bytes.len()) as u64)?;
            f.sync_data()?;
        }
        self.indexed_on_disk = self.index.len();
        Ok(())
    }

    /// Walks batch headers from `from` to `end`, updating next offset, max timestamp and (with
    /// `build_index`) the indexes. With `check_crc` each batch is read whole and verified.
    /// Returns the position after the last good batch.
    fn scan(
        &mut self,
        from: u64,
        end: u64,
        check_crc: bool,
        index_interval: u64,
        build_index: bool,
    ) -> io::Result<u64> {
        let log = self.log.get()?;
        let mut pos = from;
        while let Some(h) = header_at(&log, pos, end)? {
            if h.magic != 2
                || h.last_offset_delta < 0
                || pos + h.size as u64 > end
                || h.base_offset < self.next_offset
            {
                break;
            }
            if check_crc {
                let mut whole = vec![0u8; h.size];
                log.read_exact_at(&mut whole, pos)?;
                if !batch::crc_ok(&whole, &h) {
                    break;
                }
            }
            if build_index {
                self.maybe_index(&h, pos, index_interval);
            }
            self.note_batch(&h);
            pos += h.size as u64;
        }
        Ok(pos)
    }

    fn note_batch(&mut self, h: &BatchHeader) {
        self.next_offset = h.next_offset();
        self.max_timestamp = self.max_timestamp.max(h.max_timestamp);
        self.bytes_since_index += h.size as u64;
    }

    /// Adds an index entry for the batch at `pos` when `interval` bytes were appended since
    /// the last one (written to the index files at the next flush).
    fn maybe_index(&mut self, h: &BatchHeader, pos: u64, interval: u64) {
        if self.bytes_since_index < interval || pos == 0 {
            return;
        }
        let rel = (h.base_offset - self.base) as u32;
        self.index.push((rel, pos as u32));
        self.time_index.push((self.max_timestamp, rel));
        self.bytes_since_index = 0;
    }

    /// Whether a batch of `size` bytes at `offset` belongs in a new segment.
    pub fn should_roll(&self, size: usize, offset: i64, segment_bytes: u64, roll_ms: i64) -> bool {
        self.size > 0
            && (self.size + size as u64 > segment_bytes
                || self.created.elapsed().as_millis() as i64 >= roll_ms
                || offset - self.base > i32::MAX as i64
                || self.size + size as u64 > u32::MAX as u64)
    }

    /// Appends one validated batch, whose base offset and epoch are already rewritten in `prefix`.
    pub fn append(
        &mut self,
        prefix: &[u8; 16],
        batch_bytes: &[u8],
        h: &BatchHeader,
        index_interval: u64,
        writeback_bytes: u64,
    ) -> io::Result<()> {
        let pos = self.size;
        let log = self.log.get()?;
        if let Err(e) = write_both(&log, prefix, &batch_bytes[16..]) {
            // Never leave part of a batch behind: later appends and reads rely on `size`.
            let _ = log.set_len(self.size);
            return Err(e);
        }
        self.maybe_index(h, pos, index_interval);
        self.note_batch(h);
        self.size += batch_bytes.len() as u64;
        self.unflushed = true;
        // A truncation may have cut the file below the last writeback mark.
        self.written_back = self.written_back.min(pos);
        if writeback_bytes > 0 && self.size - self.written_back >= writeback_bytes {
            // Hand the kernel what was appended since the last call, so dirty pages are
            // written out in steady small steps instead of one large burst at the dirty
            // threshold that stalls appends for a second or more. Only a hint: errors
            // surface on the next fsync.
            let _ = start_writeback(&log, self.written_back, self.size - self.written_back);
            self.written_back = self.size;
        }
        Ok(())
    }

    /// The file position of the batch holding `offset`, if this segment has it.
    pub fn locate(&self, offset: i64) -> io::Result<Option<u64>> {
        if offset >= self.next_offset || offset < self.base {
            return Ok(None);
        }
        let rel = (offset - self.base) as u32;
        let i = self.index.partition_point(|e| e.0 <= rel);
        let mut pos = if i == 0 {
            0
        } else {
            self.index[i - 1].1 as u64
        };
        let log = self.log.get()?;
        while let Some(h) = header_at(&log, pos, self.size)? {
            if h.next_offset() > offset {
                return Ok(Some(pos));
            }
            pos += h.size as u64;
        }
        Ok(None)
    }

    /// Cuts the segment before the batch holding `offset` (a batch is never split).
    pub fn truncate_to(&mut self, offset: i64, index_interval: u64) -> io::Result<()> {
        let Some(pos) = self.locate(offset)? else {
            return Ok(());
        };
        self.log.get()?.set_len(pos)?;
        self.size = pos;
        let keep = self.index.partition_point(|e| (e.1 as u64) < pos);
        self.index.truncate(keep);
        self.time_index.truncate(keep);
        if self.indexed_on_disk > keep {
            self.indexed_on_disk = keep;
            self.cut_indexes()?;
        }
        self.next_offset = self.base;
        self.max_timestamp = self.time_index.last().map(|e| e.0).unwrap_or(-1);
        self.bytes_since_index = 0;
        let from = self.index.last().map(|e| e.1 as u64).unwrap_or(0);
        self.scan(from, pos, false, index_interval, false)?;
        self.unflushed = true;
        let cut = self.next_offset;
        self.aborted.truncate_from(&self.txn_path(), cut)
    }

    fn txn_path(&self) -> PathBuf {
        self.dir.join(file_name(self.base, "txnindex"))
    }

    /// The transactions aborted by markers in this segment, in marker order.
    pub fn aborted(&self) -> &TxnIndex {
        &self.aborted
    }

    /// Records a transaction aborted by a marker just appended to this segment.
    pub fn add_aborted(&mut self, a: AbortedTxn) -> io::Result<()> {
        self.aborted.append(&self.txn_path(), a)
    }

    /// Records an aborted transaction whose marker is somewhere in this segment, found again
    /// by a replay or carried over from an older producer snapshot, unless it is here already.
    pub fn restore_aborted(&mut self, a: AbortedTxn) -> io::Result<()> {
        self.aborted.add(&self.txn_path(), a)
    }

    /// Forgets the aborted transactions whose marker is at or after `offset` (the log ends
    /// there now: recovery cut a torn tail).
    pub fn forget_aborted_from(&mut self, offset: i64) -> io::Result<()> {
        self.aborted.truncate_from(&self.txn_path(), offset)
    }

    /// fsyncs this segment's aborted-transaction index if it changed since the last time.
    pub fn sync_aborted(&mut self) -> io::Result<()> {
        let path = self.txn_path();
        self.aborted.sync(&path)
    }

    /// Gives this (new, cleaned) segment the aborted transactions of the segments it replaces.
    pub fn set_aborted(&mut self, entries: Vec<AbortedTxn>) -> io::Result<()> {
        self.aborted = TxnIndex::of(entries);
        self.aborted.rewrite(&self.txn_path())
    }

    /// Calls `f` with every batch header from the batch holding `from` to the end.
    pub fn for_each_header(&self, from: i64, mut f: impl FnMut(&BatchHeader)) -> io::Result<()> {
        let start = if from <= self.base {
            Some(0)
        } else {
            self.locate(from)?
        };
        let Some(mut pos) = start else { return Ok(()) };
        let log = self.log.get()?;
        while let Some(h) = header_at(&log, pos, self.size)? {
            f(&h);
            pos += h.size as u64;
        }
        Ok(())
    }

    /// `for_each_header`, also giving the marker type of each control batch (whose one record
    /// is read for it).
    pub fn for_each_batch(
        &self,
        from: i64,
        mut f: impl FnMut(&BatchHeader, Option<super::records::ControlRecord>),
    ) -> io::Result<()> {
        let mut controls = Vec::new();
        self.for_each_header(from, |h| {
            if h.is_control() {
                controls.push(*h);
            }
        })?;
        if controls.is_empty() {
            return self.for_each_header(from, |h| f(h, None));
        }
        let mut markers = std::collections::HashMap::new();
        for h in controls {
            if let Some(pos) = self.locate(h.base_offset)? {
                if let Some((h2, bytes)) = read_batch_at(&*self.log.get()?, pos, self.size)? {
                    markers.insert(h.base_offset, super::records::control_record(&bytes, &h2));
                }
            }
        }
        self.for_each_header(from, |h| {
            f(h, markers.get(&h.base_offset).copied().flatten())
        })
    }

    /// The open `.log` file (opened again if it was closed).
    pub fn file(&self) -> io::Result<Arc<File>> {
        self.log.get()
    }

    /// The first record at or after `target` timestamp in this segment: (offset, timestamp).
    pub fn find_timestamp(&self, target: i64) -> io::Result<Option<(i64, i64)>> {
        if self.max_timestamp < target {
            return Ok(None);
        }
        let i = self.time_index.partition_point(|e| e.0 < target);
        let mut pos = if i == 0 {
            0
        } else {
            self.index[i - 1].1 as u64
        };
        let log = self.log.get()?;
        while let Some(h) = header_at(&log, pos, self.size)? {
            if h.max_timestamp >= target {
                return self.record_at_timestamp(pos, &h, |ts| ts >= target);
            }
            pos += h.size as u64;
        }
        Ok(None)
    }

    /// The record with this segment's largest timestamp: (offset, timestamp). Scans the batch
    /// headers; only ListOffsets with MAX_TIMESTAMP asks.
    pub fn max_timestamp_record(&self) -> io::Result<Option<(i64, i64)>> {
        let mut best: Option<(u64, BatchHeader)> = None;
        let mut pos = 0;
        let log = self.log.get()?;
        while let Some(h) = header_at(&log, pos, self.size)? {
            if best.is_none_or(|(_, b)| h.max_timestamp > b.max_timestamp) {
                best = Some((pos, h));
            }
            pos += h.size as u64;
        }
        match best {
            Some((pos, h)) => self.record_at_timestamp(pos, &h, |ts| ts == h.max_timestamp),
            None => Ok(None),
        }
    }

    /// Reads one batch's records (decompressing at most `RECORDS_LIMIT` bytes; off the hot
    /// path) and finds the first whose timestamp matches. A batch that cannot be read within the
    /// limit (a decompression bomb) or at all is answered at batch granularity from its header.
    fn record_at_timestamp(
        &self,
        pos: u64,
        h: &BatchHeader,
        hit: impl Fn(i64) -> bool,
    ) -> io::Result<Option<(i64, i64)>> {
        if h.is_log_append_time() {
            // Every record of a stamped batch has the batch's timestamp.
            return Ok(hit(h.max_timestamp).then_some((h.base_offset, h.max_timestamp)));
        }
        let mut whole = vec![0u8; h.size];
        self.log.get()?.read_exact_at(&mut whole, pos)?;
        match super::records::record_times(&whole, h, RECORDS_LIMIT) {
            Some(times) => Ok(times.into_iter().find(|(_, ts)| hit(*ts))),
            None => Ok(Some((h.base_offset, h.max_timestamp))),
        }
    }

    /// fsyncs what was appended, and writes the index entries the files lack (appended ones,
    /// and those rebuilt when the segment was recovered or its index files were short).
    pub fn flush(&mut self) -> io::Result<()> {
        if self.unflushed {
            self.log.get()?.sync_data()?;
            self.unflushed = false;
        }
        let txn_path = self.txn_path();
        self.aborted.sync(&txn_path)?;
        self.write_indexes()
    }

    /// Removes this segment's files.
    pub fn delete(self) -> io::Result<()> {
        delete_files(&self.dir, self.base)
    }

    pub fn age_ms(&self) -> i64 {
        self.created.elapsed().as_millis() as i64
    }

    /// The first batch's base timestamp (its first record's time), -1 when empty.
    pub fn first_timestamp(&self) -> io::Result<i64> {
        Ok(header_at(&*self.log.get()?, 0, self.size)?
            .map(|h| h.base_timestamp)
            .unwrap_or(-1))
    }
}

/// The whole batch at `pos` of a segment file `end` bytes long, with its header; `None` at
/// the end or where no whole batch is left.
pub fn read_batch_at(file: &File, pos: u64, end: u64) -> io::Result<Option<(BatchHeader, Bytes)>> {
    let Some(h) = header_at(file, pos, end)? else {
        return Ok(None);
    };
    if pos + h.size as u64 > end {
        return Ok(None);
    }
    Ok(Some((h, read_at(file, h.size, pos)?.freeze())))
}

/// Removes the files of the segment at `base` in `dir` (missing files are fine).
pub fn delete_files(dir: &Path, base: i64) -> io::Result<()> {
    for ext in ["log", "index", "timeindex", "txnindex"] {
        match std::fs::remove_file(dir.join(file_name(base, ext))) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads whole batches from `start` to at most `end` (exclusive file positions), up to
/// `max_bytes` — but at least one whole batch when `min_one` — and never a batch at or past
/// `max_offset`. Runs without the log's lock.
pub fn read_batches(
    file: &File,
    start: u64,
    end: u64,
    max_bytes: usize,
    max_offset: i64,
    min_one: bool,
) -> io::Result<Bytes> {
    if start >= end {
        return Ok(Bytes::new());
    }
    let avail = (end - start) as usize;
    let mut want = avail.min(max_bytes);
    if min_one && want < avail {
        let mut head = [0u8; LOG_OVERHEAD];
        if avail >= LOG_OVERHEAD {
            file.read_exact_at(&mut head, start)?;
            if let Some((_, size)) = batch::peek_size(&head) {
                want = want.max(size.min(avail));
            }
        }
    }
    let mut buf = read_at(file, want, start)?;
    let mut pos = 0;
    while let Some((base, size)) = batch::peek_size(&buf[pos..]) {
        if base >= max_offset || pos + size > buf.len() {
            break;
        }
        pos += size;
    }
    buf.truncate(pos);
    Ok(buf.freeze())
}

/// Reads exactly `len` bytes at `offset` into a new buffer without zero-filling it first (on
/// the fetch and replication paths the fill was a tenth of the brokers' CPU).
#[allow(unsafe_code)]
pub fn read_at(file: &File, len: usize, offset: u64) -> io::Result<BytesMut> {
    use std::os::fd::AsRawFd;
    let mut buf = BytesMut::with_capacity(len);
    while buf.len() < len {
        let done = buf.len();
        let want = len - done;
        let spare = buf.spare_capacity_mut();
        // SAFETY: `spare` is writable memory of at least `want` bytes owned by `buf`; pread
        // writes at most `want` bytes into it and reports how many it wrote.
        let n = unsafe {
            libc::pread(
                file.as_raw_fd(),
                spare.as_mut_ptr().cast(),
                want,
                (offset + done as u64) as libc::off_t,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shorter than the range being read",
            ));
        }
        // SAFETY: pread initialised the first `n` (≤ `want`) bytes of the spare capacity.
        unsafe { buf.set_len(done + n as usize) };
    }
    Ok(buf)
}

/// Appends `head` then `rest` at the file's end with one writev(2) in the usual case (a batch
/// costs one system call, not two); a short write is finished piecewise.
fn write_both(file: &File, head: &[u8], rest: &[u8]) -> io::Result<()> {
    let mut f = file;
    let n = loop {
        match f.write_vectored(&[io::IoSlice::new(head), io::IoSlice::new(rest)]) {
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    };
    if n < head.len() {
        f.write_all(&head[n..])?;
        f.write_all(rest)
    } else {
        f.write_all(&rest[n - head.len()..])
    }
}

/// Starts asynchronous writeback of a file range (sync_file_range with WRITE only: it does not
/// wait for the data to reach the disk and makes no durability promise).
#[allow(unsafe_code)]
fn start_writeback(file: &File, offset: u64, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: sync_file_range only reads its integer arguments; the descriptor is owned by
    // `file`, which outlives the call.
    let r = unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
