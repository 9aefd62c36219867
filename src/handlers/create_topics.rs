//! CreateTopics: validates each topic (name, partitions, replication factor, assignments,
//! configs), places it, writes it through the metadata quorum and answers once committed.
//! validate_only runs every check and writes nothing.

use crate::metadata::acl::{self, Operation};
use std::collections::{BTreeMap, HashSet};

use super::errors::Refusal;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use super::{configs, errors, s, Context};
use crate::config::TOPIC_CONFIGS;
use crate::controller::{
    AdminDone, AdminError, AdminOp, NewTopic, EXCESSIVE_PARTITIONS, MAX_PARTITIONS_PER_REQUEST,
};

pub async fn handle(ctx: &Context, req: CreateTopicsRequest, version: i16) -> CreateTopicsResponse {
    let mut seen = HashSet::new();
    let dup: HashSet<String> = req
        .topics
        .iter()
        .filter(|t| !seen.insert(t.name.0.to_string()))
        .map(|t| t.name.0.to_string())
        .collect();
    // The partitions the whole request would add: over Kafka's bound, every topic is refused.
    let requested: i64 = req
        .topics
        .iter()
        .map(|t| match (t.assignments.len(), t.num_partitions) {
            (0, -1) => ctx.config.num_partitions as i64,
            (0, n) => (n as i64).max(0),
            (n, _) => n as i64,
        })
        .sum();
    if requested > MAX_PARTITIONS_PER_REQUEST as i64 {
        let topics = req
            .topics
            .iter()
            .map(|t| {
                CreatableTopicResult::default()
                    .with_name(t.name.clone())
                    .with_error_code(Refusal::PolicyViolation.code())
                    .with_error_message(Some(s(EXCESSIVE_PARTITIONS)))
            })
            .collect();
        return CreateTopicsResponse::default().with_topics(topics);
    }
    let mut results = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let name = t.name.0.to_string();
        let result = CreatableTopicResult::default().with_name(t.name.clone());
        if !ctx.may_on_cluster(Operation::Create) && !ctx.may(Operation::Create, acl::TOPIC, &name)
        {
            results.push(
                result
                    .with_error_code(Refusal::TopicAuthorizationFailed.code())
                    .with_error_message(Some(s("Authorization failed."))),
            );
            continue;
        }
        if let Some(why) = super::internal_topic_refusal(&name) {
            results.push(
                result
                    .with_error_code(Refusal::InvalidTopic.code())
                    .with_error_message(Some(s(why))),
            );
            continue;
        }
        if dup.contains(&name) {
            results.push(
                result
                    .with_error_code(Refusal::InvalidRequest.code())
                    .with_error_message(Some(s(format!(
                        "topic `{name}` appears more than once in the request"
                    )))),
            );
            continue;
        }
        let mut configs = BTreeMap::new();
        for c in &t.configs {
            if let Some(v) = &c.value {
                configs.insert(c.name.to_string(), v.to_string());
            }
        }
        let mut assignments: Vec<(i32, Vec<i32>)> = t
            .assignments
            .iter()
            .map(|a| {
                (
                    a.partition_index,
                    a.broker_ids.iter().map(|b| b.0).collect(),
                )
            })
            .collect();
        assignments.sort_by_key(|a| a.0);
        let new = NewTopic {
            name: name.clone(),
            partitions: t.num_partitions,
            replication_factor: t.replication_factor,
            assignments: assignments.into_iter().map(|a| a.1).collect(),
            configs: configs.clone(),
        };
        let outcome = ctx
            .controller
            .submit(AdminOp::CreateTopic {
                topic: new,
                validate_only: req.validate_only,
            })
            .await
            .and_then(|done| match done {
                AdminDone::Topic { id, assignments } => Ok((id, assignments)),
                _ => Err(AdminError::NoQuorum(
                    "the controller did not return a topic".into(),
                )),
            });
        if outcome.is_ok() && !req.validate_only {
            tracing::info!(topic = %name, "created topic");
        }
        match outcome {
            Ok((id, parts)) => {
                let rf = parts.first().map(|r: &Vec<i32>| r.len()).unwrap_or(0) as i16;
                let mut r = result
                    .with_num_partitions(parts.len() as i32)
                    .with_replication_factor(rf);
                if !req.validate_only {
                    r = r.with_topic_id(id.0);
                }
                if version >= 5 {
                    r = r.with_configs(Some(effective_configs(ctx, &configs)));
                }
                results.push(r);
            }
            Err(e) => results.push(
                result
                    .with_error_code(errors::admin(&e))
                    .with_error_message(Some(s(e.to_string()))),
            ),
        }
    }
    CreateTopicsResponse::default().with_topics(results)
}

/// The new topic's configs as DescribeConfigs would report them (CreateTopics v5+).
fn effective_configs(
    ctx: &Context,
    overrides: &BTreeMap<String, String>,
) -> Vec<CreatableTopicConfigs> {
    let image = ctx.controller.image();
    TOPIC_CONFIGS
        .iter()
        .map(|(name, _)| {
            let chain =
                configs::topic_config(&ctx.config, &image, ctx.config.node_id, overrides, name);
            let (value, source) = chain
                .into_iter()
                .next()
                .map(|(_, v, src)| (v, src))
                .unwrap_or((None, configs::DEFAULT));
            CreatableTopicConfigs::default()
                .with_name(s(*name))
                .with_value(value.map(s))
                .with_config_source(source)
        })
        .collect()
}
