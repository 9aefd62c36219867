//! DescribeTopicPartitions (KIP-966): topics and their partitions (leader, epoch, replicas,
//! ISR, offline replicas) in name order, paged: at most `response_partition_limit` partitions
//! per answer, continued from the request's cursor, with a next cursor while more remain. No
//! topics named means every topic.

use super::errors::Refusal;
use crate::metadata::acl::{self, Operation};
use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse};

use super::{broker, topic_name, Context};

/// Kafka's cap on partitions per answer (`max.request.partition.size.limit`).
const MAX_LIMIT: i32 = 2000;

pub async fn handle(
    ctx: &Context,
    req: DescribeTopicPartitionsRequest,
    _version: i16,
) -> DescribeTopicPartitionsResponse {
    let image = ctx.controller.image();
    let mut names: Vec<String> = if req.topics.is_empty() {
        image.topics.keys().cloned().collect()
    } else {
        req.topics.iter().map(|t| t.name.0.to_string()).collect()
    };
    names.sort();
    names.dedup();
    // Only topics the principal may DESCRIBE are described (named or not: Kafka answers a
    // named one TOPIC_AUTHORIZATION_FAILED; here it is left out).
    names.retain(|n| ctx.may(Operation::Describe, acl::TOPIC, n));
    let (start_topic, start_partition) = match &req.cursor {
        Some(c) => (c.topic_name.0.to_string(), c.partition_index.max(0)),
        None => (String::new(), 0),
    };
    let mut budget = req.response_partition_limit.clamp(1, MAX_LIMIT) as usize;
    let mut topics = Vec::new();
    let mut next = None;
    for name in names.iter().filter(|n| **n >= start_topic) {
        let Some(t) = image.topic(name) else {
            topics.push(
                DescribeTopicPartitionsResponseTopic::default()
                    .with_error_code(Refusal::UnknownTopicOrPartition.code())
                    .with_name(Some(topic_name(name)))
                    .with_topic_authorized_operations(i32::MIN),
            );
            continue;
        };
        let first = if *name == start_topic {
            start_partition as usize
        } else {
            0
        };
        if budget == 0 {
            next = Some((name.clone(), first as i32));
            break;
        }
        let live = |b: &i32| image.brokers.get(b).is_some_and(|r| !r.fenced);
        let partitions: Vec<_> = t
            .partitions
            .iter()
            .enumerate()
            .skip(first)
            .take(budget)
            .map(|(i, p)| {
                DescribeTopicPartitionsResponsePartition::default()
                    .with_partition_index(i as i32)
                    .with_leader_id(broker(p.leader))
                    .with_leader_epoch(p.leader_epoch)
                    .with_replica_nodes(p.replicas.iter().map(|b| broker(*b)).collect())
                    .with_isr_nodes(p.isr.iter().map(|b| broker(*b)).collect())
                    .with_eligible_leader_replicas(Some(Vec::new()))
                    .with_last_known_elr(Some(Vec::new()))
                    .with_offline_replicas(
                        p.replicas
                            .iter()
                            .filter(|b| !live(b))
                            .map(|b| broker(*b))
                            .collect(),
                    )
            })
            .collect();
        budget -= partitions.len();
        let shown = first + partitions.len();
        topics.push(
            DescribeTopicPartitionsResponseTopic::default()
                .with_name(Some(topic_name(name)))
                .with_topic_id(t.id.0)
                .with_is_internal(name.starts_with("__"))
                .with_partitions(partitions)
                .with_topic_authorized_operations(i32::MIN),
        );
        if shown < t.partitions.len() {
            next = Some((name.clone(), shown as i32));
            break;
        }
    }
    DescribeTopicPartitionsResponse::default()
        .with_topics(topics)
        .with_next_cursor(next.map(|(n, p)| {
            Cursor::default()
                .with_topic_name(topic_name(&n))
                .with_partition_index(p)
        }))
}
