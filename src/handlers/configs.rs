//! Where a config's value comes from, for DescribeConfigs and CreateTopics: a topic's own
//! override, this broker's dynamic config, the cluster-wide dynamic default, the static
//! configuration, or the built-in default — Kafka's precedence, highest first. Pure over the
//! configuration and the metadata image.

use std::collections::BTreeMap;

use crate::config::{broker_synonym, setting, topic_config_default, Config};
use crate::metadata::MetadataImage;
use crate::types::NodeId;

/// Kafka's config sources (DescribeConfigs, CreateTopics).
pub const DYNAMIC_TOPIC: i8 = 1;
pub const DYNAMIC_BROKER: i8 = 2;
pub const DYNAMIC_DEFAULT_BROKER: i8 = 3;
pub const STATIC_BROKER: i8 = 4;
pub const DEFAULT: i8 = 5;

/// One place a value is set: (config name there, value, source).
pub type Synonym = (String, Option<String>, i8);

/// Every place a broker setting is set on `node`, highest precedence first; never empty (the
/// built-in default ends it).
pub fn broker_setting(
    config: &Config,
    image: &MetadataImage,
    node: NodeId,
    name: &str,
) -> Vec<Synonym> {
    let mut out = Vec::new();
    let dynamic = |key: &str| {
        image
            .broker_configs
            .get(key)
            .and_then(|c| c.get(name))
            .cloned()
    };
    if let Some(v) = dynamic(&node.to_string()) {
        out.push((name.to_string(), Some(v), DYNAMIC_BROKER));
    }
    if let Some(v) = dynamic("") {
        out.push((name.to_string(), Some(v), DYNAMIC_DEFAULT_BROKER));
    }
    if !config.is_default(name) {
        out.push((
            name.to_string(),
            config.values.get(name).cloned(),
            STATIC_BROKER,
        ));
    }
    let default = setting(name)
        .map(|s| s.default)
        .filter(|d| !d.is_empty())
        .map(String::from);
    out.push((name.to_string(), default, DEFAULT));
    out
}

/// Every place topic config `name` is set for a topic with `overrides`, as seen on `node`.
pub fn topic_config(
    config: &Config,
    image: &MetadataImage,
    node: NodeId,
    overrides: &BTreeMap<String, String>,
    name: &str,
) -> Vec<Synonym> {
    let mut out = Vec::new();
    if let Some(v) = overrides.get(name) {
        out.push((name.to_string(), Some(v.clone()), DYNAMIC_TOPIC));
    }
    match broker_synonym(name) {
        Some(b) => out.extend(broker_setting(config, image, node, b)),
        None => out.push((
            name.to_string(),
            topic_config_default(config, name),
            DEFAULT,
        )),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{ConfigResource, MetadataRecord};

    fn config(pairs: &[(&str, &str)]) -> Config {
        Config::from_raw(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), (v.to_string(), "test".to_string())))
                .collect(),
        )
        .expect("config")
    }

    fn set(image: &MetadataImage, broker: &str, name: &str, value: &str) -> MetadataImage {
        image
            .apply(&MetadataRecord::ConfigChange {
                resource: ConfigResource::Broker(broker.into()),
                replace: false,
                set: BTreeMap::from([(name.to_string(), value.to_string())]),
                delete: Vec::new(),
            })
            .0
    }

    #[test]
    fn precedence_is_topic_broker_cluster_default_static_then_default() {
        let c = config(&[("log.retention.ms", "5000")]);
        let mut image = MetadataImage::default();
        let sources = |image: &MetadataImage, overrides: &BTreeMap<String, String>| {
            topic_config(&c, image, 1, overrides, "retention.ms")
                .into_iter()
                .map(|(n, v, s)| (n, v.unwrap_or_default(), s))
                .collect::<Vec<_>>()
        };
        let none = BTreeMap::new();
        let r = |n: &str, v: &str, s: i8| (n.to_string(), v.to_string(), s);
        assert_eq!(
            sources(&image, &none),
            [
                r("log.retention.ms", "5000", STATIC_BROKER),
                r("log.retention.ms", "604800000", DEFAULT)
            ]
        );
        image = set(&image, "", "log.retention.ms", "7000");
        image = set(&image, "1", "log.retention.ms", "8000");
        image = set(&image, "2", "log.retention.ms", "9000");
        let topic = BTreeMap::from([("retention.ms".to_string(), "1".to_string())]);
        assert_eq!(
            sources(&image, &topic),
            [
                r("retention.ms", "1", DYNAMIC_TOPIC),
                r("log.retention.ms", "8000", DYNAMIC_BROKER),
                r("log.retention.ms", "7000", DYNAMIC_DEFAULT_BROKER),
                r("log.retention.ms", "5000", STATIC_BROKER),
                r("log.retention.ms", "604800000", DEFAULT)
            ]
        );
        // A topic config with no broker synonym has its own default.
        assert_eq!(
            topic_config(&c, &image, 1, &none, "compression.type"),
            [(
                "compression.type".to_string(),
                Some("producer".to_string()),
                DEFAULT
            )]
        );
    }
}
