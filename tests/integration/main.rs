//! Integration tests: real `strom` processes driven by librdkafka (the `rdkafka` crate) and, for
//! malformed input, by hand-made frames.

mod harness;

#[path = "../../chaos/mod.rs"]
mod chaos;

mod admin;
mod admin_tools;
mod chaos_ci;
mod clients;
mod cluster;
mod compaction;
mod compose;
mod config_files;
mod console;
mod durability;
mod fuzz;
mod groups;
mod idempotence;
mod limits;
mod metrics;
mod produce_consume;
mod reassignment;
mod replication;
mod scale;
mod security;
mod sweep;
mod timestamps;
mod topic_tools;
mod transactions;
mod wire;
mod zero_copy;
