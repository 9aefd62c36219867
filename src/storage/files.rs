//! Segment log files opened on demand: a broker hosting 100,000 partitions cannot keep a
//! descriptor per segment, so every `LogFile` is opened when first used and closed again when
//! more than `limit` are open and it is the least recently used (a CLOCK sweep: a file used
//! since the hand last passed gets a second chance). Readers hold an `Arc<File>` taken out of
//! it; a closed slot's descriptor lives on until the last of them lets go.
//!
//! One cache per process (`set_limit` from the broker's `log.max.open.files`).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// Open log files beyond which the least recently used are closed, unless set.
pub const DEFAULT_LIMIT: usize = 4096;

struct Cache {
    limit: AtomicUsize,
    open: AtomicUsize,
    /// Slots with an open file, in the order the hand visits them.
    ring: Mutex<VecDeque<Weak<Slot>>>,
}

static CACHE: Cache = Cache {
    limit: AtomicUsize::new(DEFAULT_LIMIT),
    open: AtomicUsize::new(0),
    ring: Mutex::new(VecDeque::new()),
};

/// Sets how many segment log files may stay open at once (at least 1).
pub fn set_limit(limit: usize) {
    CACHE.limit.store(limit.max(1), Ordering::Relaxed);
    CACHE.evict();
}

/// How many segment log files are open now (descriptors still held by readers of a closed slot
/// are not counted).
pub fn open_count() -> usize {
    CACHE.open.load(Ordering::Relaxed)
}

struct Slot {
    file: Mutex<Option<Arc<File>>>,
    used: AtomicBool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let file = self.file.get_mut().unwrap_or_else(|p| p.into_inner());
        if file.take().is_some() {
            CACHE.open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Cache {
    fn opened(&self, slot: &Arc<Slot>) {
        let open = self.open.fetch_add(1, Ordering::Relaxed) + 1;
        {
            let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
            ring.push_back(Arc::downgrade(slot));
            // Slots dropped while open (segments deleted, logs removed) leave dead entries,
            // which only a sweep would clear: clear them when they outnumber the live ones.
            if ring.len() > 2 * open.max(64) {
                ring.retain(|w| w.strong_count() > 0);
            }
        }
        self.evict();
    }

    /// Closes least recently used files until at most `limit` are open. Never waits for a slot
    /// another thread holds (that one is in use: it goes round again).
    fn evict(&self) {
        let limit = self.limit.load(Ordering::Relaxed);
        if self.open.load(Ordering::Relaxed) <= limit {
            return;
        }
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        // Two passes clear every second chance; a third finds the busy slots free or gives up.
        let mut budget = ring.len() * 3;
        while self.open.load(Ordering::Relaxed) > limit && budget > 0 {
            budget -= 1;
            let Some(weak) = ring.pop_front() else { break };
            let Some(slot) = weak.upgrade() else { continue };
            if slot.used.swap(false, Ordering::Relaxed) {
                ring.push_back(weak);
                continue;
            }
            let closed = match slot.file.try_lock() {
                Ok(mut file) => file.take().is_some(),
                Err(_) => {
                    ring.push_back(weak);
                    false
                }
            };
            if closed {
                self.open.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

/// A segment's `.log` file, open while in use.
pub struct LogFile {
    path: PathBuf,
    slot: Arc<Slot>,
}

fn open_rw(path: &Path, create: bool) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(create)
        .open(path)
}

impl LogFile {
    /// Opens an existing file (`create`: creates it, empty, if missing).
    pub fn open(path: PathBuf, create: bool) -> io::Result<LogFile> {
        let file = open_rw(&path, create)?;
        let slot = Arc::new(Slot {
            file: Mutex::new(Some(Arc::new(file))),
            used: AtomicBool::new(true),
        });
        CACHE.opened(&slot);
        Ok(LogFile { path, slot })
    }

    /// The open file, opened again if it was closed.
    pub fn get(&self) -> io::Result<Arc<File>> {
        self.slot.used.store(true, Ordering::Relaxed);
        let mut file = self.slot.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = &*file {
            return Ok(f.clone());
        }
        let f = Arc::new(open_rw(&self.path, false)?);
        *file = Some(f.clone());
        drop(file);
        CACHE.opened(&self.slot);
        Ok(f)
    }

    /// Whether the file is open now.
    pub fn is_open(&self) -> bool {
        self.slot
            .file
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// The cache is one per process: tests that set its limit take turns.
    pub(crate) static LIMIT_LOCK: Mutex<()> = Mutex::new(());

    #[test]
    fn no_more_than_the_limit_stay_open_and_a_closed_file_reopens_with_its_data() {
        let _turn = LIMIT_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let dir = tempfile::tempdir().expect("tempdir");
        set_limit(3);
        let files: Vec<LogFile> = (0..10)
            .map(|i| LogFile::open(dir.path().join(format!("{i}.log")), true).expect("open"))
            .collect();
        for (i, f) in files.iter().enumerate() {
            (&*f.get().expect("get"))
                .write_all(format!("file {i}").as_bytes())
                .expect("write");
        }
        let open = files.iter().filter(|f| f.is_open()).count();
        assert!(open <= 3, "{open} files open with a limit of 3");
        // The first file was closed long ago; reading it opens it again, with its bytes.
        assert!(!files[0].is_open());
        let mut buf = [0u8; 6];
        std::os::unix::fs::FileExt::read_exact_at(&*files[0].get().expect("get"), &mut buf, 0)
            .expect("read");
        assert_eq!(&buf, b"file 0");
        assert!(files.iter().filter(|f| f.is_open()).count() <= 3);
        drop(files);
        set_limit(DEFAULT_LIMIT);
    }

    #[test]
    fn a_file_in_use_since_the_last_sweep_is_kept_over_an_idle_one() {
        let _turn = LIMIT_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let dir = tempfile::tempdir().expect("tempdir");
        set_limit(DEFAULT_LIMIT);
        let hot = LogFile::open(dir.path().join("hot.log"), true).expect("open");
        let idle: Vec<LogFile> = (0..3)
            .map(|i| LogFile::open(dir.path().join(format!("{i}.log")), true).expect("open"))
            .collect();
        // One sweep clears every second chance; then `hot` is used again and the limit drops.
        set_limit(open_count().saturating_sub(1).max(1));
        set_limit(DEFAULT_LIMIT);
        hot.get().expect("get");
        set_limit(open_count().saturating_sub(2).max(1));
        assert!(hot.is_open(), "the recently used file was closed");
        assert!(idle.iter().any(|f| !f.is_open()), "no idle file was closed");
        set_limit(DEFAULT_LIMIT);
    }
}
