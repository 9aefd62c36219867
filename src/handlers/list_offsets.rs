//! ListOffsets: earliest (-2), latest (-1, the high watermark; for `read_committed` the last
//! stable offset), max timestamp (-3), earliest local (-4, the same as earliest here) and by
//! timestamp (the first record at or after it).

use crate::metadata::acl::{self, Operation};
use std::sync::Arc;

use kafka_protocol::messages::list_offsets_request::ListOffsetsPartition;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::errors::Refusal;
use super::{errors, Context};
use crate::metadata::MetadataImage;
use crate::types::TopicPartition;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;

pub async fn handle(ctx: &Context, req: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
    let image = ctx.controller.image();
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let answers = t.partitions.iter().map(|p| {
                let tp = TopicPartition::new(t.name.0.to_string(), p.partition_index);
                offset(ctx, &image, &tp, p, version, req.isolation_level == 1)
            });
            ListOffsetsTopicResponse::default()
                .with_name(t.name.clone())
                .with_partitions(answers.collect())
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

/// One partition's answer.
fn offset(
    ctx: &Context,
    image: &Arc<MetadataImage>,
    tp: &TopicPartition,
    p: &ListOffsetsPartition,
    version: i16,
    read_committed: bool,
) -> ListOffsetsPartitionResponse {
    let resp = ListOffsetsPartitionResponse::default()
        .with_partition_index(p.partition_index)
        .with_timestamp(-1)
        .with_offset(-1);
    if !ctx.may(Operation::Describe, acl::TOPIC, &tp.topic) {
        return resp.with_error_code(Refusal::TopicAuthorizationFailed.code());
    }
    let part = match super::led_partition(ctx, image, tp, p.current_leader_epoch) {
        Ok(part) => part,
        Err(code) => return resp.with_error_code(code),
    };
    // The leader epoch is in the answer from v4 only.
    let resp = if version >= 4 {
        resp.with_leader_epoch(part.leader_epoch())
    } else {
        resp
    };
    // What this consumer may read up to.
    let visible = if read_committed {
        part.last_stable_offset()
    } else {
        part.high_watermark()
    };
    let found = match p.timestamp {
        LATEST => Ok(Some((visible, -1))),
        EARLIEST | EARLIEST_LOCAL => Ok(Some((part.log_start_offset(), -1))),
        MAX_TIMESTAMP => part.max_timestamp(),
        ts if ts >= 0 => part.offset_for_timestamp(ts),
        _ => return resp.with_error_code(Refusal::InvalidRequest.code()),
    };
    match found {
        // Never point past what consumers may read.
        Ok(Some((offset, ts))) if offset <= visible => resp.with_offset(offset).with_timestamp(ts),
        Ok(_) => resp,
        Err(e) => resp.with_error_code(errors::log(&e)),
    }
}
