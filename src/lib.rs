//! strom: a Kafka-compatible streaming broker with a Raft metadata quorum.
//!
//! Modules follow `DESIGN.md` §1; `node` is the composition root.

pub mod config;
pub mod controller;
pub mod metadata;
pub mod storage;
pub mod types;
