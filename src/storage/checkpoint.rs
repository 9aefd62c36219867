//! The small files beside a partition's segments: offset checkpoints (log start, recovery point,
//! high watermark — each one number, replaced whole) and `partition.metadata`, which says whose
//! data the directory holds.

use std::io;
use std::path::Path;

use crate::types::{Offset, TopicId};

pub(super) fn read_checkpoint(path: &Path) -> Option<Offset> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// A lost or older offset checkpoint is safe (recovery re-validates more, a log start is at
/// least the first segment, a high watermark is relearned), so these are not fsynced.
pub(super) fn write_checkpoint(path: &Path, value: &str) -> io::Result<()> {
    super::replace_file(path, value.as_bytes(), false)
}

/// What a partition directory's `partition.metadata` says about whose data it holds.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Owner {
    /// This topic's.
    Ours,
    /// Unknown: the file is missing, empty or torn after a crash — the data is kept and
    /// adopted, as Kafka does, rather than deleted on a guess.
    Unknown,
    /// A valid id of another topic: an older topic of the same name, deleted meanwhile.
    Other(String),
}

pub(super) fn owner(meta_path: &Path, topic_id: TopicId) -> io::Result<Owner> {
    let stored = match std::fs::read_to_string(meta_path) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Owner::Unknown),
        // Unreadable now is not proof of anything: refuse to open rather than delete.
        Err(e) => return Err(e),
    };
    match uuid::Uuid::parse_str(stored.trim()) {
        Ok(id) if id == topic_id.0 => Ok(Owner::Ours),
        Ok(id) => Ok(Owner::Other(id.to_string())),
        Err(_) => Ok(Owner::Unknown),
    }
}
