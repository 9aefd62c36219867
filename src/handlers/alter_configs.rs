//! AlterConfigs (the request before KIP-339): replaces every dynamic config of a topic or of
//! brokers with the given set, as Kafka does. IncrementalAlterConfigs is the one to prefer.

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};

use super::incremental_alter_configs::alter;
use super::{s, Context};
use crate::controller::ConfigOp;

pub async fn handle(
    ctx: &Context,
    req: AlterConfigsRequest,
    _version: i16,
) -> AlterConfigsResponse {
    let mut responses = Vec::with_capacity(req.resources.len());
    for r in &req.resources {
        let resp = AlterConfigsResourceResponse::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name.clone());
        // A null value leaves the config out, which the replacement then removes.
        let ops = r
            .configs
            .iter()
            .filter_map(|c| {
                let v = c.value.as_ref()?;
                Some(ConfigOp::Set(c.name.to_string(), v.to_string()))
            })
            .collect();
        let refused = alter(
            ctx,
            r.resource_type,
            &r.resource_name,
            Ok(ops),
            true,
            req.validate_only,
        )
        .await;
        responses.push(match refused {
            None => resp,
            Some((code, msg)) => resp.with_error_code(code).with_error_message(Some(s(msg))),
        });
    }
    AlterConfigsResponse::default().with_responses(responses)
}
