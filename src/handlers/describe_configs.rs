//! DescribeConfigs for topics (overrides and broker-supplied defaults) and brokers (every
//! setting strom knows, with its source).

use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};

use super::create_topics::{SOURCE_DEFAULT, SOURCE_TOPIC};
use super::{s, Context};
use crate::config::{topic_config_default, SETTINGS, TOPIC_CONFIGS};

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
const SOURCE_STATIC_BROKER: i8 = 4;

pub async fn handle(
    ctx: &Context,
    req: DescribeConfigsRequest,
    _version: i16,
) -> DescribeConfigsResponse {
    let image = ctx.controller.image();
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
            match r.resource_type {
                TOPIC => {
                    let Some(t) = image.topic(&name) else {
                        return result
                            .with_error_code(E::UnknownTopicOrPartition.code())
                            .with_error_message(Some(s(format!("topic `{name}` does not exist"))));
                    };
                    let configs = TOPIC_CONFIGS
                        .iter()
                        .filter(|(n, _)| wanted(n))
                        .map(|(n, _)| {
                            let (value, source) = match t.configs.get(*n) {
                                Some(v) => (Some(v.clone()), SOURCE_TOPIC),
                                None => (topic_config_default(&ctx.config, n), SOURCE_DEFAULT),
                            };
                            entry(n, value, source, false)
                        })
                        .collect();
                    result.with_configs(configs)
                }
                BROKER => {
                    if !name.is_empty() && name != ctx.config.node_id.to_string() {
                        return result
                            .with_error_code(E::InvalidRequest.code())
                            .with_error_message(Some(s(format!(
                                "this is broker {}, not `{name}`",
                                ctx.config.node_id
                            ))));
                    }
                    let configs = SETTINGS
                        .iter()
                        .filter(|st| wanted(st.name))
                        .map(|st| {
                            let source = if ctx.config.is_default(st.name) {
                                SOURCE_DEFAULT
                            } else {
                                SOURCE_STATIC_BROKER
                            };
                            entry(
                                st.name,
                                ctx.config.values.get(st.name).cloned(),
                                source,
                                true,
                            )
                        })
                        .collect();
                    result.with_configs(configs)
                }
                other => result
                    .with_error_code(E::InvalidRequest.code())
                    .with_error_message(Some(s(format!("resource type {other} is not supported")))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

fn entry(
    name: &str,
    value: Option<String>,
    source: i8,
    read_only: bool,
) -> DescribeConfigsResourceResult {
    DescribeConfigsResourceResult::default()
        .with_name(s(name))
        .with_value(value.map(s))
        .with_read_only(read_only)
        .with_config_source(source)
}
