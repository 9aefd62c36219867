//! OffsetForLeaderEpoch: for each partition this node leads, the largest leader epoch at or
//! below the asked one and the offset where it ends — how a follower (or a returning old
//! leader) finds where its log stops agreeing with the leader's.

use super::errors::Refusal;
use crate::metadata::acl::{self, Operation};
use std::sync::Arc;

use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::Context;
use crate::metadata::MetadataImage;
use crate::types::TopicPartition;

pub async fn handle(
    ctx: &Context,
    req: OffsetForLeaderEpochRequest,
    _version: i16,
) -> OffsetForLeaderEpochResponse {
    let image = ctx.controller.image();
    let topic = |t: &OffsetForLeaderTopic| {
        OffsetForLeaderTopicResult::default()
            .with_topic(t.topic.clone())
            .with_partitions(
                t.partitions
                    .iter()
                    .map(|p| answer(ctx, &image, t, p))
                    .collect(),
            )
    };
    OffsetForLeaderEpochResponse::default().with_topics(req.topics.iter().map(topic).collect())
}

/// One partition's answer: where the asked epoch ends in this leader's log.
fn answer(
    ctx: &Context,
    image: &Arc<MetadataImage>,
    t: &OffsetForLeaderTopic,
    p: &OffsetForLeaderPartition,
) -> EpochEndOffset {
    let resp = EpochEndOffset::default()
        .with_partition(p.partition)
        .with_leader_epoch(-1)
        .with_end_offset(-1);
    let tp = TopicPartition::new(t.topic.0.to_string(), p.partition);
    if !ctx.may(Operation::Describe, acl::TOPIC, &tp.topic)
        && !ctx.may_on_cluster(Operation::ClusterAction)
    {
        return resp.with_error_code(Refusal::TopicAuthorizationFailed.code());
    }
    match super::led_partition(ctx, image, &tp, p.current_leader_epoch) {
        Ok(part) => {
            let (epoch, end) = part.end_offset_for_epoch(p.leader_epoch);
            resp.with_leader_epoch(epoch).with_end_offset(end)
        }
        Err(code) => resp.with_error_code(code),
    }
}
