//! DescribeProducers: the idempotent producers with state on a partition this broker leads
//! (id, epoch, last sequence, last timestamp). No transactions yet, so no coordinator epoch and
//! no open transaction (-1).

use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};

use super::Context;
use crate::types::TopicPartition;

pub async fn handle(
    ctx: &Context,
    req: DescribeProducersRequest,
    _version: i16,
) -> DescribeProducersResponse {
    let image = ctx.controller.image();
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partition_indexes
                .iter()
                .map(|&i| {
                    let resp = PartitionResponse::default().with_partition_index(i);
                    let tp = TopicPartition::new(t.name.0.to_string(), i);
                    let part = match super::led_partition(ctx, &image, &tp, -1) {
                        Ok(part) => part,
                        Err(code) => return resp.with_error_code(code),
                    };
                    let producers = part
                        .active_producers()
                        .into_iter()
                        .map(|p| {
                            ProducerState::default()
                                .with_producer_id(ProducerId(p.producer_id))
                                .with_producer_epoch(p.epoch as i32)
                                .with_last_sequence(p.last_sequence)
                                .with_last_timestamp(p.last_timestamp)
                                .with_coordinator_epoch(-1)
                                .with_current_txn_start_offset(-1)
                        })
                        .collect();
                    resp.with_active_producers(producers)
                })
                .collect();
            TopicResponse::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}
