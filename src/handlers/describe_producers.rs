//! DescribeProducers: the idempotent and transactional producers with state on a partition
//! this broker leads (id, epoch, last sequence, last timestamp, the first offset of an open
//! transaction, the coordinator epoch of its last marker here — what `strom txn abort` and
//! Kafka's `kafka-transactions.sh abort` write their marker with).

use super::errors::Refusal;
use crate::metadata::acl::{self, Operation};
use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};

use super::Context;
use crate::replica::ActiveProducer;
use crate::types::TopicPartition;

pub async fn handle(
    ctx: &Context,
    req: DescribeProducersRequest,
    _version: i16,
) -> DescribeProducersResponse {
    let image = ctx.controller.image();
    let topic = |t: &TopicRequest| {
        let answers = t.partition_indexes.iter().map(|&i| {
            let resp = PartitionResponse::default().with_partition_index(i);
            let tp = TopicPartition::new(t.name.0.to_string(), i);
            if !ctx.may(Operation::Read, acl::TOPIC, &tp.topic) {
                return resp.with_error_code(Refusal::TopicAuthorizationFailed.code());
            }
            match super::led_partition(ctx, &image, &tp, -1) {
                Ok(part) => resp.with_active_producers(
                    part.active_producers().into_iter().map(state).collect(),
                ),
                Err(code) => resp.with_error_code(code),
            }
        });
        TopicResponse::default()
            .with_name(t.name.clone())
            .with_partitions(answers.collect())
    };
    DescribeProducersResponse::default().with_topics(req.topics.iter().map(topic).collect())
}

fn state(p: ActiveProducer) -> ProducerState {
    ProducerState::default()
        .with_producer_id(ProducerId(p.producer_id))
        .with_producer_epoch(p.epoch as i32)
        .with_last_sequence(p.last_sequence)
        .with_last_timestamp(p.last_timestamp)
        .with_coordinator_epoch(p.coordinator_epoch)
        .with_current_txn_start_offset(p.txn_start)
}
