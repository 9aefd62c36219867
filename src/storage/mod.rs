//! Partition data on disk: segmented logs of RecordBatches kept as received, with sparse offset
//! and time indexes, checkpoints, crash recovery of the unflushed tail, and retention.
//! Knows nothing of the network, of leadership or of metadata.

pub mod batch;
pub mod epochs;
pub mod log;
pub mod producers;
pub mod records;
pub mod segment;

pub use log::{Appended, FileRegion, LogError, PartitionLog, Recovery};
