//! Topic configs and the settings that change at run time: the topic-level names CreateTopics
//! accepts and DescribeConfigs reports (each with the broker setting behind its default), their
//! validation and types, the broker settings that may be changed dynamically, and the
//! precedence that makes a log's effective settings — broker defaults, then the dynamic
//! broker-wide ones, then the topic's own.

use std::collections::BTreeMap;

use super::settings::Kind;
use super::{kafka, setting, CleanupPolicy, Config, LogDefaults, TimestampPolicy};
use crate::types::NodeId;

/// Topic-level settings accepted by CreateTopics and reported by DescribeConfigs, each with the
/// broker setting that supplies its default.
pub const TOPIC_CONFIGS: &[(&str, &str)] = &[
    ("cleanup.policy", "log.cleanup.policy"),
    (
        "min.cleanable.dirty.ratio",
        "log.cleaner.min.cleanable.ratio",
    ),
    ("min.compaction.lag.ms", "log.cleaner.min.compaction.lag.ms"),
    ("max.compaction.lag.ms", "log.cleaner.max.compaction.lag.ms"),
    ("delete.retention.ms", "log.cleaner.delete.retention.ms"),
    ("retention.ms", "log.retention.ms"),
    ("retention.bytes", "log.retention.bytes"),
    ("segment.bytes", "log.segment.bytes"),
    ("segment.ms", "log.roll.ms"),
    ("segment.index.bytes", ""),
    ("index.interval.bytes", "log.index.interval.bytes"),
    ("max.message.bytes", "message.max.bytes"),
    ("min.insync.replicas", "min.insync.replicas"),
    ("flush.messages", "log.flush.interval.messages"),
    ("flush.ms", "log.flush.interval.ms"),
    ("message.timestamp.type", "log.message.timestamp.type"),
    (
        "message.timestamp.before.max.ms",
        "log.message.timestamp.before.max.ms",
    ),
    (
        "message.timestamp.after.max.ms",
        "log.message.timestamp.after.max.ms",
    ),
    ("compression.type", ""),
    ("leader.replication.throttled.replicas", ""),
    ("follower.replication.throttled.replicas", ""),
];

/// Checks one topic config; returns a reason when it is unknown or invalid.
pub fn validate_topic_config(name: &str, value: &str) -> Result<(), String> {
    match name {
        "cleanup.policy" => CleanupPolicy::parse(value).map(|_| ()).ok_or_else(|| {
            format!("invalid cleanup.policy {value:?}: expected delete, compact or compact,delete")
        }),
        "min.cleanable.dirty.ratio" => value
            .parse::<f64>()
            .ok()
            .filter(|v| (0.0..=1.0).contains(v))
            .map(|_| ())
            .ok_or_else(|| format!("{name} must be a number between 0 and 1")),
        "min.compaction.lag.ms" | "delete.retention.ms" => value
            .parse::<i64>()
            .ok()
            .filter(|v| *v >= 0)
            .map(|_| ())
            .ok_or_else(|| format!("{name} must be a non-negative integer")),
        "message.timestamp.type" => match value {
            "CreateTime" | "LogAppendTime" => Ok(()),
            _ => Err(format!("invalid message.timestamp.type {value:?}")),
        },
        "compression.type" => match value {
            "producer" | "uncompressed" | "gzip" | "snappy" | "lz4" | "zstd" => Ok(()),
            _ => Err(format!("invalid compression.type {value:?}")),
        },
        "retention.ms" | "retention.bytes" => value
            .parse::<i64>()
            .ok()
            .filter(|v| *v >= -1)
            .map(|_| ())
            .ok_or_else(|| format!("{name} must be an integer >= -1")),
        "segment.bytes" => value
            .parse::<i64>()
            .ok()
            .filter(|v| *v >= 1024 && *v <= i32::MAX as i64)
            .map(|_| ())
            .ok_or_else(|| format!("{name} must be an integer between 1024 and {}", i32::MAX)),
        "segment.ms"
        | "max.compaction.lag.ms"
        | "index.interval.bytes"
        | "min.insync.replicas"
        | "flush.messages"
        | "flush.ms"
        | "segment.index.bytes" => value
            .parse::<i64>()
            .ok()
            .filter(|v| *v >= 1)
            .map(|_| ())
            .ok_or_else(|| format!("{name} must be a positive integer")),
        "message.timestamp.before.max.ms" | "message.timestamp.after.max.ms" => value
            .parse::<i64>()
            .ok()
            .filter(|v| *v >= 0)
            .map(|_| ())
            .ok_or_else(|| format!("{name} must be a non-negative integer")),
        "max.message.bytes" => value
            .parse::<i64>()
            .ok()
            .filter(|v| *v >= 0)
            .map(|_| ())
            .ok_or_else(|| format!("{name} must be a non-negative integer")),
        "leader.replication.throttled.replicas" | "follower.replication.throttled.replicas" => {
            validate_replica_list(value).map_err(|e| format!("invalid {name}: {e}"))
        }
        _ => Err(format!("unknown topic config `{name}`")),
    }
}

/// Whether a `*.replication.throttled.replicas` value names `partition` on `broker`.
pub fn throttled_replica(value: &str, partition: i32, broker: NodeId) -> bool {
    let value = value.trim();
    if value == "*" {
        return true;
    }
    value.split(',').any(|entry| {
        let mut it = entry.trim().split(':');
        matches!(
            (it.next().map(str::parse::<i32>), it.next().map(str::parse::<NodeId>), it.next()),
            (Some(Ok(p)), Some(Ok(b)), None) if p == partition && b == broker
        )
    })
}

/// Checks a `*.replication.throttled.replicas` value: empty, `*`, or `partition:broker` pairs.
fn validate_replica_list(value: &str) -> Result<(), String> {
    let value = value.trim();
    if value.is_empty() || value == "*" {
        return Ok(());
    }
    for entry in value.split(',') {
        let mut it = entry.trim().split(':');
        let ok = matches!(
            (
                it.next().map(str::parse::<u32>),
                it.next().map(str::parse::<u32>),
                it.next()
            ),
            (Some(Ok(_)), Some(Ok(_)), None)
        );
        if !ok {
            return Err(format!(
                "`{entry}` is not partition:broker; the list is `*` or partition:broker pairs separated by commas"
            ));
        }
    }
    Ok(())
}

/// The effective default of a topic config on this broker.
pub fn topic_config_default(config: &Config, name: &str) -> Option<String> {
    let (_, broker) = TOPIC_CONFIGS.iter().find(|(n, _)| *n == name)?;
    if !broker.is_empty() {
        return config.values.get(*broker).cloned();
    }
    Some(
        match name {
            "segment.index.bytes" => "10485760",
            "compression.type" => "producer",
            _ => "",
        }
        .to_string(),
    )
}

/// Kafka's config type (DescribeConfigs v3+) of a topic config.
pub fn topic_config_type(name: &str) -> i8 {
    use kafka::{INT, LIST, LONG, STRING};
    match name {
        "cleanup.policy"
        | "leader.replication.throttled.replicas"
        | "follower.replication.throttled.replicas" => LIST,
        "segment.bytes"
        | "segment.index.bytes"
        | "index.interval.bytes"
        | "max.message.bytes"
        | "min.insync.replicas" => INT,
        "message.timestamp.type" | "compression.type" => STRING,
        "min.cleanable.dirty.ratio" => kafka::DOUBLE,
        _ => LONG,
    }
}

/// Kafka's config type of one of strom's broker settings (its own where Kafka has none).
pub fn setting_type(name: &str) -> i8 {
    // strom's own secret: its value is never described.
    if name == "scram.bootstrap.credentials" {
        return kafka::PASSWORD;
    }
    kafka::config_type(name).unwrap_or(match setting(name).map(|s| s.kind) {
        Some(Kind::Bool) => kafka::BOOLEAN,
        Some(Kind::Int { .. }) => kafka::LONG,
        _ => kafka::STRING,
    })
}

/// The broker setting that supplies topic config `name`'s default, if any.
pub fn broker_synonym(name: &str) -> Option<&'static str> {
    TOPIC_CONFIGS
        .iter()
        .find(|(n, b)| *n == name && !b.is_empty())
        .map(|(_, b)| *b)
}

/// Broker settings that only change at run time what a broker does, not a log's settings.
const DYNAMIC_BROKER_ONLY: &[&str] = &[
    "leader.replication.throttled.rate",
    "follower.replication.throttled.rate",
];

/// Whether broker setting `name` may be changed at run time (AlterConfigs on a broker or the
/// cluster default): the broker defaults of topic configs and the replication throttles, as
/// in Kafka.
pub fn is_dynamic_broker_setting(name: &str) -> bool {
    DYNAMIC_BROKER_ONLY.contains(&name) || TOPIC_CONFIGS.iter().any(|(_, b)| *b == name)
}

/// Checks a value for a dynamic broker setting; returns a reason when it is invalid.
pub fn validate_dynamic_broker_setting(name: &str, value: &str) -> Result<(), String> {
    if DYNAMIC_BROKER_ONLY.contains(&name) {
        return value
            .parse::<i64>()
            .ok()
            .filter(|v| *v >= 0)
            .map(|_| ())
            .ok_or_else(|| format!("{name} must be a non-negative integer (bytes per second)"));
    }
    let topic = TOPIC_CONFIGS
        .iter()
        .find(|(_, b)| *b == name)
        .map(|(t, _)| *t)
        .ok_or_else(|| format!("`{name}` cannot be changed without a restart"))?;
    validate_topic_config(topic, value).map_err(|e| e.replace(topic, name))
}

/// The log settings of a broker whose dynamic configs (broker names) are `dynamic`, over its
/// static `base`.
pub fn broker_log_defaults(base: &LogDefaults, dynamic: &BTreeMap<String, String>) -> LogDefaults {
    if dynamic.is_empty() {
        return base.clone();
    }
    let as_topic: BTreeMap<String, String> = TOPIC_CONFIGS
        .iter()
        .filter(|(_, b)| !b.is_empty())
        .filter_map(|(t, b)| dynamic.get(*b).map(|v| (t.to_string(), v.clone())))
        .collect();
    log_settings(base, &as_topic)
}

/// Per-partition log settings: broker defaults overridden by the topic's configs.
pub fn log_settings(defaults: &LogDefaults, topic: &BTreeMap<String, String>) -> LogDefaults {
    let i = |name: &str, d: i64| {
        topic
            .get(name)
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(d)
    };
    LogDefaults {
        segment_bytes: i("segment.bytes", defaults.segment_bytes as i64) as u64,
        roll_ms: i("segment.ms", defaults.roll_ms),
        retention_ms: i("retention.ms", defaults.retention_ms),
        retention_bytes: i("retention.bytes", defaults.retention_bytes),
        index_interval_bytes: i("index.interval.bytes", defaults.index_interval_bytes as i64)
            as u64,
        max_message_bytes: i("max.message.bytes", defaults.max_message_bytes as i64) as usize,
        flush_interval_messages: i("flush.messages", defaults.flush_interval_messages),
        flush_interval_ms: i("flush.ms", defaults.flush_interval_ms),
        writeback_bytes: defaults.writeback_bytes,
        producer_expiration_ms: defaults.producer_expiration_ms,
        timestamps: TimestampPolicy {
            log_append_time: match topic.get("message.timestamp.type").map(String::as_str) {
                Some("LogAppendTime") => true,
                Some(_) => false,
                None => defaults.timestamps.log_append_time,
            },
            before_max_ms: i(
                "message.timestamp.before.max.ms",
                defaults.timestamps.before_max_ms,
            ),
            after_max_ms: i(
                "message.timestamp.after.max.ms",
                defaults.timestamps.after_max_ms,
            ),
        },
        cleanup: topic
            .get("cleanup.policy")
            .and_then(|v| CleanupPolicy::parse(v))
            .unwrap_or(defaults.cleanup),
        min_cleanable_ratio: topic
            .get("min.cleanable.dirty.ratio")
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(defaults.min_cleanable_ratio),
        min_compaction_lag_ms: i("min.compaction.lag.ms", defaults.min_compaction_lag_ms),
        max_compaction_lag_ms: i("max.compaction.lag.ms", defaults.max_compaction_lag_ms),
        delete_retention_ms: i("delete.retention.ms", defaults.delete_retention_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_lists_name_partitions_on_brokers() {
        assert!(throttled_replica("*", 3, 9));
        assert!(throttled_replica("0:1, 3:9", 3, 9));
        assert!(!throttled_replica("0:1,3:9", 3, 1));
        assert!(!throttled_replica("", 0, 1));
        assert!(!throttled_replica("0:1:2", 0, 1));
        assert!(validate_replica_list("0:1,2:3").is_ok());
        assert!(validate_replica_list("*").is_ok());
        assert!(validate_replica_list("").is_ok());
        assert!(validate_replica_list("0-1").is_err());
        assert!(validate_replica_list("a:1").is_err());
        assert!(validate_topic_config("leader.replication.throttled.replicas", "0:x").is_err());
        assert!(
            validate_dynamic_broker_setting("leader.replication.throttled.rate", "-1").is_err()
        );
        assert!(
            validate_dynamic_broker_setting("follower.replication.throttled.rate", "1000").is_ok()
        );
    }
}
