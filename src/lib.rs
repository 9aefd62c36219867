//! strom: a Kafka-compatible streaming broker with a Raft metadata quorum.
//!
//! Modules follow `DESIGN.md` §1; `node` is the composition root.

pub mod alloc;
pub mod auth;
pub mod config;
pub mod console;
pub mod controller;
pub mod dev;
#[doc(hidden)]
pub mod fuzz;
pub mod group;
pub mod handlers;
pub mod http;
pub mod metadata;
pub mod node;
pub mod protocol;
pub mod replica;
pub mod server;
pub mod storage;
pub mod tools;
pub mod txn;
pub mod types;
