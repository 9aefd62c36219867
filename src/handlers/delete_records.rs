//! DeleteRecords: moves a partition's log start (low watermark) up to the given offset (-1: the
//! high watermark) on its leader, deleting the segments wholly below it, and answers — as
//! Kafka does — once every ISR member's log starts there too (followers adopt the leader's log
//! start from their next fetch answers), or REQUEST_TIMED_OUT after the request's timeout.
//! Consumers below it get OFFSET_OUT_OF_RANGE and reset.

use crate::metadata::acl::{self, Operation};
use std::time::{Duration, Instant};

use super::errors::Refusal;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::{errors, Context};
use crate::types::TopicPartition;

pub async fn handle(
    ctx: &Context,
    req: DeleteRecordsRequest,
    _version: i16,
) -> DeleteRecordsResponse {
    let image = ctx.controller.image();
    let deadline = Instant::now() + Duration::from_millis(req.timeout_ms.max(0) as u64);
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            let resp = DeleteRecordsPartitionResult::default()
                .with_partition_index(p.partition_index)
                .with_low_watermark(-1);
            if !ctx.may(Operation::Delete, acl::TOPIC, &t.name) {
                partitions.push(resp.with_error_code(Refusal::TopicAuthorizationFailed.code()));
                continue;
            }
            if super::is_internal(t.name.0.as_str()) {
                partitions.push(resp.with_error_code(Refusal::InvalidTopic.code()));
                continue;
            }
            let tp = TopicPartition::new(t.name.0.to_string(), p.partition_index);
            let left = deadline.saturating_duration_since(Instant::now());
            partitions.push(
                match ctx
                    .replicas
                    .delete_records(&image, &tp, p.offset, left)
                    .await
                {
                    Ok(low) => resp.with_low_watermark(low),
                    Err(e) => resp.with_error_code(errors::delete(&e)),
                },
            );
        }
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(t.name.clone())
                .with_partitions(partitions),
        );
    }
    DeleteRecordsResponse::default().with_topics(topics)
}
