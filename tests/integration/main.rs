//! Integration tests: real `strom` processes driven by librdkafka (the `rdkafka` crate) and, for
//! malformed input, by hand-made frames.

mod harness;

mod admin;
mod cluster;
mod durability;
mod idempotence;
mod produce_consume;
mod replication;
mod wire;
