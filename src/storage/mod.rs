//! Partition data on disk: segmented logs of RecordBatches kept as received, with sparse offset
//! and time indexes, checkpoints, crash recovery of the unflushed tail, retention, and
//! compaction (`compact.rs`, `log/cleaning.rs`).
//! Knows nothing of the network, of leadership or of metadata.

pub mod batch;
mod checkpoint;
pub mod compact;
pub mod epochs;
pub mod files;
#[cfg(test)]
mod fuzz;
pub mod log;
pub mod producers;
pub mod records;
pub mod segment;
pub mod txnindex;

pub use log::{
    Appended, CleanStats, Dirtiness, FileRegion, IoGate, LogError, PartitionLog, Recovery, Window,
};

/// Replaces `path` with `contents` all at once: written to a temporary file, then renamed over
/// it. With `durable`, the file is fsynced before the rename and its directory after, so the
/// new contents (not an empty file) survive a power loss.
pub(crate) fn replace_file(
    path: &std::path::Path,
    contents: &[u8],
    durable: bool,
) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(contents)?;
    if durable {
        f.sync_all()?;
    }
    drop(f);
    std::fs::rename(&tmp, path)?;
    if durable {
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
    }
    Ok(())
}

/// Flushes everything written to the filesystem holding `dir` (syncfs(2)): one call makes a
/// whole batch of new partition directories, files and checkpoints durable.
#[allow(unsafe_code)]
pub fn sync_filesystem(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let d = std::fs::File::open(dir)?;
    // SAFETY: syncfs only reads the descriptor, which `d` owns for the length of the call.
    if unsafe { libc::syncfs(d.as_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// fsyncs a directory, so the entries just created or renamed in it are durable.
pub(crate) fn sync_dir(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}
