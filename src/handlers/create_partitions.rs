//! CreatePartitions: grows topics, placing the new partitions (or using given assignments).

use super::errors::Refusal;
use crate::metadata::acl::{self, Operation};
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::{errors, s, Context};
use crate::controller::AdminOp;

pub async fn handle(
    ctx: &Context,
    req: CreatePartitionsRequest,
    _version: i16,
) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let assignments = t
            .assignments
            .as_ref()
            .map(|a| {
                a.iter()
                    .map(|x| x.broker_ids.iter().map(|b| b.0).collect())
                    .collect()
            })
            .unwrap_or_default();
        let result = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        if !ctx.may(Operation::Alter, acl::TOPIC, &t.name) {
            results.push(result.with_error_code(Refusal::TopicAuthorizationFailed.code()));
            continue;
        }
        if let Some(why) = super::internal_topic_refusal(&t.name) {
            results.push(
                result
                    .with_error_code(Refusal::InvalidTopic.code())
                    .with_error_message(Some(s(why))),
            );
            continue;
        }
        let op = AdminOp::CreatePartitions {
            name: t.name.0.to_string(),
            total: t.count,
            assignments,
            validate_only: req.validate_only,
        };
        match ctx.controller.submit(op).await {
            Ok(_) => results.push(result),
            Err(e) => results.push(
                result
                    .with_error_code(errors::admin(&e))
                    .with_error_message(Some(s(e.to_string()))),
            ),
        }
    }
    CreatePartitionsResponse::default().with_results(results)
}
