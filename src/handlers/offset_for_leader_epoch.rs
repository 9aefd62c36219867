//! OffsetForLeaderEpoch: for each partition this node leads, the largest leader epoch at or
//! below the asked one and the offset where it ends — how a follower (or a returning old
//! leader) finds where its log stops agreeing with the leader's.

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::Context;
use crate::types::TopicPartition;

pub async fn handle(
    ctx: &Context,
    req: OffsetForLeaderEpochRequest,
    _version: i16,
) -> OffsetForLeaderEpochResponse {
    let image = ctx.controller.image();
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let resp = EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_leader_epoch(-1)
                        .with_end_offset(-1);
                    let tp = TopicPartition::new(t.topic.0.to_string(), p.partition);
                    let part = match super::led_partition(ctx, &image, &tp, p.current_leader_epoch)
                    {
                        Ok(part) => part,
                        Err(code) => return resp.with_error_code(code),
                    };
                    let (epoch, end) = part.end_offset_for_epoch(p.leader_epoch);
                    resp.with_leader_epoch(epoch).with_end_offset(end)
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
