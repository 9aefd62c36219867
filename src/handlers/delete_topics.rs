//! DeleteTopics: by name (v0-5) or by name or id (v6+), each written through the quorum.

use super::errors::Refusal;
use crate::metadata::acl::{self, Operation};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse};

use super::{errors, s, topic_name, Context};
use crate::controller::AdminOp;
use crate::types::TopicId;

pub async fn handle(ctx: &Context, req: DeleteTopicsRequest, version: i16) -> DeleteTopicsResponse {
    let wanted: Vec<(Option<String>, TopicId)> = if version >= 6 {
        req.topics
            .iter()
            .map(|t| {
                (
                    t.name.as_ref().map(|n| n.0.to_string()),
                    TopicId(t.topic_id),
                )
            })
            .collect()
    } else {
        req.topic_names
            .iter()
            .map(|n| (Some(n.0.to_string()), TopicId::ZERO))
            .collect()
    };
    let mut responses = Vec::with_capacity(wanted.len());
    for (name, id) in wanted {
        let image = ctx.controller.image();
        let found = match &name {
            Some(n) => image.topic(n).cloned(),
            None => image.topic_by_id(id).cloned(),
        };
        let result = DeletableTopicResult::default()
            .with_name(name.as_deref().map(topic_name))
            .with_topic_id(id.0);
        let target = found.as_ref().map(|t| t.name.clone()).or(name.clone());
        if target.is_some_and(|n| !ctx.may(Operation::Delete, acl::TOPIC, &n)) {
            responses.push(result.with_error_code(Refusal::TopicAuthorizationFailed.code()));
            continue;
        }
        let Some(topic) = found else {
            let code = if name.is_some() {
                Refusal::UnknownTopicOrPartition.code()
            } else {
                Refusal::UnknownTopicId.code()
            };
            responses.push(result.with_error_code(code));
            continue;
        };
        let result = result
            .with_name(Some(topic_name(&topic.name)))
            .with_topic_id(topic.id.0);
        if let Some(why) = super::internal_topic_refusal(&topic.name) {
            responses.push(
                result
                    .with_error_code(Refusal::InvalidTopic.code())
                    .with_error_message(Some(s(why))),
            );
            continue;
        }
        match ctx
            .controller
            .submit(AdminOp::DeleteTopic {
                id: topic.id,
                name: topic.name.clone(),
            })
            .await
        {
            Ok(_) => {
                tracing::info!(topic = %topic.name, id = %topic.id, "deleted topic");
                responses.push(result);
            }
            Err(e) => responses.push(
                result
                    .with_error_code(errors::admin(&e))
                    .with_error_message(Some(s(e.to_string()))),
            ),
        }
    }
    DeleteTopicsResponse::default().with_responses(responses)
}
