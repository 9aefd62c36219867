//! The chaos suite: three real `strom` processes, an idempotent acks=all workload through
//! librdkafka, a seeded nemesis that kills, pauses and restarts brokers, and checkers — one
//! invariant per file — that compare what clients saw with what the log holds.
//!
//! Shared by the `chaos` example (`chaos/run`) and the short CI scenario in
//! `tests/integration/chaos_ci.rs`.

pub mod checkers;
pub mod cluster;
pub mod elections;
pub mod nemesis;
pub mod report;
pub mod scenario;
pub mod txn;
pub mod workload;
