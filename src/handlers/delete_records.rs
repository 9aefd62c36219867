//! DeleteRecords: moves a partition's log start (low watermark) up to the given offset (-1: the
//! high watermark) on its leader, deleting the segments wholly below it; followers adopt the
//! leader's log start from their next fetch answers. Consumers below it get OFFSET_OUT_OF_RANGE
//! and reset, as in Kafka.

use kafka_protocol::error::ResponseError as E;
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
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let resp = DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index)
                        .with_low_watermark(-1);
                    if t.name.0.as_str() == crate::group::OFFSETS_TOPIC {
                        return resp.with_error_code(E::InvalidTopicException.code());
                    }
                    let tp = TopicPartition::new(t.name.0.to_string(), p.partition_index);
                    let part = match super::led_partition(ctx, &image, &tp, -1) {
                        Ok(part) => part,
                        Err(code) => return resp.with_error_code(code),
                    };
                    let hw = part.high_watermark();
                    let target = if p.offset == -1 { hw } else { p.offset };
                    if target < 0 || target > hw {
                        return resp.with_error_code(E::OffsetOutOfRange.code());
                    }
                    match part.log.advance_start(target) {
                        Ok(start) => resp.with_low_watermark(start),
                        Err(e) => resp.with_error_code(errors::log(&e)),
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}
