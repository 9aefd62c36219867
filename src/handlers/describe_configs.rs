//! DescribeConfigs for topics and brokers, with Kafka's sources (a topic's override, this
//! broker's dynamic config, the cluster-wide dynamic default, static, built-in default),
//! synonyms in precedence order, config types and documentation (v3+), and which broker
//! settings are read-only. A broker resource named `""` describes the cluster-wide dynamic
//! defaults.

use super::errors::Refusal;
use crate::metadata::acl::Operation;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};

use super::configs::{self, Synonym, DYNAMIC_DEFAULT_BROKER};
use super::{s, Context};
use crate::config::{
    broker_synonym, is_dynamic_broker_setting, setting, setting_type, topic_config_type, SETTINGS,
    TOPIC_CONFIGS,
};

pub const TOPIC: i8 = 2;
pub const BROKER: i8 = 4;

pub async fn handle(
    ctx: &Context,
    req: DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResponse {
    let image = ctx.controller.image();
    let me = ctx.config.node_id;
    let shape = Shape {
        synonyms: req.include_synonyms,
        documentation: req.include_documentation && version >= 3,
        types: version >= 3,
    };
    let results = req
        .resources
        .iter()
        .map(|r| {
            let name = r.resource_name.to_string();
            let keys: Option<Vec<String>> = r
                .configuration_keys
                .as_ref()
                .map(|k| k.iter().map(|x| x.to_string()).collect());
            let wanted = |n: &str| keys.as_ref().is_none_or(|k| k.iter().any(|x| x == n));
            let result = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            if let Err(refusal) = ctx.may_config(Operation::DescribeConfigs, r.resource_type, &name)
            {
                return result
                    .with_error_code(refusal.code())
                    .with_error_message(Some(s("Authorization failed.")));
            }
            match r.resource_type {
                TOPIC => {
                    let Some(t) = image.topic(&name) else {
                        return result
                            .with_error_code(Refusal::UnknownTopicOrPartition.code())
                            .with_error_message(Some(s(format!("topic `{name}` does not exist"))));
                    };
                    let configs = TOPIC_CONFIGS
                        .iter()
                        .filter(|(n, _)| wanted(n))
                        .map(|(n, _)| {
                            let chain =
                                configs::topic_config(&ctx.config, &image, me, &t.configs, n);
                            let doc = broker_synonym(n).and_then(setting).map(|st| st.doc);
                            shape.entry(n, chain, false, topic_config_type(n), doc)
                        })
                        .collect();
                    result.with_configs(configs)
                }
                BROKER if name.is_empty() => {
                    // The cluster-wide dynamic defaults, and nothing else (as Kafka).
                    let defaults = image.broker_configs.get("").cloned().unwrap_or_default();
                    let configs = defaults
                        .iter()
                        .filter(|(n, _)| wanted(n))
                        .map(|(n, v)| {
                            let chain = vec![(n.clone(), Some(v.clone()), DYNAMIC_DEFAULT_BROKER)];
                            let doc = setting(n).map(|st| st.doc);
                            shape.entry(n, chain, false, setting_type(n), doc)
                        })
                        .collect();
                    result.with_configs(configs)
                }
                BROKER => {
                    if name != me.to_string() {
                        return result
                            .with_error_code(Refusal::InvalidRequest.code())
                            .with_error_message(Some(s(format!(
                                "this is broker {me}, not `{name}`"
                            ))));
                    }
                    let configs = SETTINGS
                        .iter()
                        .filter(|st| wanted(st.name))
                        .map(|st| {
                            let chain = configs::broker_setting(&ctx.config, &image, me, st.name);
                            let read_only = !is_dynamic_broker_setting(st.name);
                            shape.entry(
                                st.name,
                                chain,
                                read_only,
                                setting_type(st.name),
                                Some(st.doc),
                            )
                        })
                        .collect();
                    result.with_configs(configs)
                }
                other => result
                    .with_error_code(Refusal::InvalidRequest.code())
                    .with_error_message(Some(s(format!("resource type {other} is not supported")))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// What the request asked for, and what its version can carry.
struct Shape {
    synonyms: bool,
    documentation: bool,
    types: bool,
}

impl Shape {
    /// One config: its value and source are the first of `chain` (highest precedence).
    fn entry(
        &self,
        name: &str,
        chain: Vec<Synonym>,
        read_only: bool,
        config_type: i8,
        doc: Option<&str>,
    ) -> DescribeConfigsResourceResult {
        // Passwords (Kafka's PASSWORD type) are described as set, never shown.
        let sensitive = config_type == crate::config::kafka::PASSWORD;
        let shown = |v: Option<String>| if sensitive { None } else { v.map(s) };
        let (value, source) = chain
            .first()
            .map(|(_, v, src)| (v.clone(), *src))
            .unwrap_or((None, configs::DEFAULT));
        let mut e = DescribeConfigsResourceResult::default()
            .with_name(s(name))
            .with_value(shown(value))
            .with_read_only(read_only)
            .with_is_sensitive(sensitive)
            .with_config_source(source);
        if self.synonyms {
            e = e.with_synonyms(
                chain
                    .into_iter()
                    .map(|(n, v, src)| {
                        DescribeConfigsSynonym::default()
                            .with_name(s(n))
                            .with_value(shown(v))
                            .with_source(src)
                    })
                    .collect(),
            );
        }
        if self.types {
            e = e.with_config_type(config_type);
        }
        if self.documentation {
            e = e.with_documentation(doc.map(s));
        }
        e
    }
}
