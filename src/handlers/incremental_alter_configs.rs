//! IncrementalAlterConfigs (KIP-339): SET, DELETE, APPEND and SUBTRACT on a topic's configs or
//! on dynamic broker configs (resource name `""`: the cluster-wide default; an id: that
//! broker). Written through the metadata quorum; every broker applies them without a restart.

use super::errors::Refusal;
use crate::metadata::acl::Operation;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};

use super::describe_configs::{BROKER, TOPIC};
use super::{errors, s, Context};
use crate::controller::{AdminOp, ConfigOp, ConfigTarget};

pub async fn handle(
    ctx: &Context,
    req: IncrementalAlterConfigsRequest,
    _version: i16,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::with_capacity(req.resources.len());
    for r in &req.resources {
        let resp = AlterConfigsResourceResponse::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name.clone());
        let ops: Result<Vec<ConfigOp>, String> = r
            .configs
            .iter()
            .map(|c| {
                let name = c.name.to_string();
                let value = c.value.as_ref().map(|v| v.to_string());
                match (c.config_operation, value) {
                    (1, _) => Ok(ConfigOp::Delete(name)),
                    (0, Some(v)) => Ok(ConfigOp::Set(name, v)),
                    (2, Some(v)) => Ok(ConfigOp::Append(name, v)),
                    (3, Some(v)) => Ok(ConfigOp::Subtract(name, v)),
                    (0..=3, None) => Err(format!("`{name}` needs a value")),
                    (op, _) => Err(format!("unknown config operation {op}")),
                }
            })
            .collect();
        let refused = alter(
            ctx,
            r.resource_type,
            &r.resource_name,
            ops,
            false,
            req.validate_only,
        )
        .await;
        responses.push(match refused {
            None => resp,
            Some((code, msg)) => resp.with_error_code(code).with_error_message(Some(s(msg))),
        });
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

/// Changes one resource's dynamic configs through the metadata quorum (AlterConfigs replaces,
/// IncrementalAlterConfigs does not); returns the Kafka error code and message if refused.
pub async fn alter(
    ctx: &Context,
    resource_type: i8,
    name: &str,
    ops: Result<Vec<ConfigOp>, String>,
    replace: bool,
    validate_only: bool,
) -> Option<(i16, String)> {
    if let Err(refusal) = ctx.may_config(Operation::AlterConfigs, resource_type, name) {
        return Some((refusal.code(), "Authorization failed.".into()));
    }
    let (target, ops) = match (target(resource_type, name), ops) {
        (Err(msg), _) | (_, Err(msg)) => return Some((Refusal::InvalidRequest.code(), msg)),
        (Ok(target), Ok(ops)) => (target, ops),
    };
    let op = AdminOp::AlterConfigs {
        target,
        replace,
        ops,
        validate_only,
    };
    ctx.controller
        .submit(op)
        .await
        .err()
        .map(|e| (errors::admin(&e), e.to_string()))
}

/// The resource a request names, or why it cannot be altered.
pub fn target(resource_type: i8, name: &str) -> Result<ConfigTarget, String> {
    match resource_type {
        TOPIC => match super::internal_topic_refusal(name) {
            Some(why) => Err(why),
            None => Ok(ConfigTarget::Topic(name.to_string())),
        },
        BROKER => Ok(ConfigTarget::Broker(name.to_string())),
        other => Err(format!("resource type {other} is not supported")),
    }
}
