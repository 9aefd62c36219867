//! DescribeTransactions: the state of transactional ids this broker coordinates (state,
//! producer id and epoch, timeout, start time, the partitions of the open transaction).
//! Needs DESCRIBE on each id; an id this broker does not coordinate is NOT_COORDINATOR.

use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId, TopicName,
};

use super::errors::{self, Refusal};
use super::{s, Context};
use crate::metadata::acl::{self, Operation};

pub async fn handle(
    ctx: &Context,
    req: DescribeTransactionsRequest,
    _version: i16,
) -> DescribeTransactionsResponse {
    let mut states = Vec::with_capacity(req.transactional_ids.len());
    for id in req.transactional_ids {
        let base = TransactionState::default()
            .with_transactional_id(id.clone())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
            .with_transaction_start_time_ms(-1)
            .with_transaction_state(s(""));
        if !ctx.may(Operation::Describe, acl::TRANSACTIONAL_ID, &id) {
            states.push(base.with_error_code(Refusal::TransactionalIdAuthorizationFailed.code()));
            continue;
        }
        match ctx.txns.describe(&id).await {
            Ok(m) => {
                let mut topics: Vec<TopicData> = Vec::new();
                for (t, p) in &m.partitions {
                    match topics.iter_mut().find(|d| d.topic.0.as_str() == t) {
                        Some(d) => d.partitions.push(*p),
                        None => topics.push(
                            TopicData::default()
                                .with_topic(TopicName(s(t.clone())))
                                .with_partitions(vec![*p]),
                        ),
                    }
                }
                states.push(
                    base.with_transaction_state(s(m.state.name()))
                        .with_transaction_timeout_ms(m.timeout_ms)
                        .with_transaction_start_time_ms(m.start_ms)
                        .with_producer_id(ProducerId(m.producer_id))
                        .with_producer_epoch(m.epoch)
                        .with_topics(topics),
                )
            }
            Err(e) => states.push(base.with_error_code(errors::txn(&e, true))),
        }
    }
    DescribeTransactionsResponse::default().with_transaction_states(states)
}
