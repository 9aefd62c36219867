//! AddPartitionsToTxn: partitions join a producer's open transaction (opening it), before the
//! producer writes to them. v0–3 come from producers (one transaction); v4+ is the batched form
//! brokers send (KIP-890), whose `verify_only` entries only ask whether the partitions are
//! already in the transaction (a partition leader's check before a transaction's first batch,
//! `txn::verify`); v5 answers a partition outside it TRANSACTION_ABORTABLE. Partitions of topics that do not exist are answered
//! UNKNOWN_TOPIC_OR_PARTITION and the others OPERATION_NOT_ATTEMPTED, as Kafka does; so are
//! topics the producer may not WRITE (TOPIC_AUTHORIZATION_FAILED).

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, TopicName, TransactionalId,
};

use super::errors::{self, Refusal};
use super::Context;
use crate::metadata::acl::{self, Operation};
use crate::txn::TxnError;

pub async fn handle(
    ctx: &Context,
    req: AddPartitionsToTxnRequest,
    version: i16,
) -> AddPartitionsToTxnResponse {
    if version <= 3 {
        let results = add(
            ctx,
            &req.v3_and_below_transactional_id,
            (
                req.v3_and_below_producer_id.0,
                req.v3_and_below_producer_epoch,
            ),
            &req.v3_and_below_topics,
            false,
            version,
        )
        .await;
        return AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results);
    }
    if !ctx.may_on_cluster(Operation::ClusterAction) {
        return AddPartitionsToTxnResponse::default()
            .with_error_code(Refusal::ClusterAuthorizationFailed.code());
    }
    let mut out = Vec::with_capacity(req.transactions.len());
    for t in &req.transactions {
        let results = add(
            ctx,
            &t.transactional_id,
            (t.producer_id.0, t.producer_epoch),
            &t.topics,
            t.verify_only,
            version,
        )
        .await;
        out.push(
            AddPartitionsToTxnResult::default()
                .with_transactional_id(t.transactional_id.clone())
                .with_topic_results(results),
        );
    }
    AddPartitionsToTxnResponse::default().with_results_by_transaction(out)
}

/// One transaction's partitions: the same error for all of them, or per partition.
async fn add(
    ctx: &Context,
    id: &TransactionalId,
    producer: (i64, i16),
    topics: &[AddPartitionsToTxnTopic],
    verify_only: bool,
    version: i16,
) -> Vec<AddPartitionsToTxnTopicResult> {
    let image = ctx.controller.image();
    let asked = || {
        topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(move |p| (t.name.0.to_string(), *p)))
    };
    // Per partition: refused up front (unknown, not allowed), or None.
    let refusals: Vec<((String, i32), Option<i16>)> = asked()
        .map(|(topic, p)| {
            let code = if !ctx.may(Operation::Write, acl::TOPIC, &topic) {
                Some(Refusal::TopicAuthorizationFailed.code())
            } else if !image
                .topic(&topic)
                .is_some_and(|t| p >= 0 && (p as usize) < t.partitions.len())
            {
                Some(Refusal::UnknownTopicOrPartition.code())
            } else {
                None
            };
            ((topic, p), code)
        })
        .collect();
    let id = id.0.to_string();
    let codes: Vec<i16> = if !ctx.may(Operation::Write, acl::TRANSACTIONAL_ID, &id) {
        vec![Refusal::TransactionalIdAuthorizationFailed.code(); refusals.len()]
    } else if refusals.iter().any(|(_, c)| c.is_some()) {
        refusals
            .iter()
            .map(|(_, c)| c.unwrap_or(Refusal::OperationNotAttempted.code()))
            .collect()
    } else {
        let partitions: Vec<(String, i32)> = refusals.iter().map(|(tp, _)| tp.clone()).collect();
        if verify_only {
            match ctx.txns.verify(&id, producer, &partitions).await {
                Ok(found) => found
                    .into_iter()
                    .map(|yes| match yes {
                        true => errors::NONE,
                        false => errors::txn_verify_answer(&TxnError::NotInTransaction, version),
                    })
                    .collect(),
                Err(e) => vec![errors::txn_verify_answer(&e, version); refusals.len()],
            }
        } else {
            let code = match ctx.txns.add_partitions(&id, producer, &partitions).await {
                Ok(()) => errors::NONE,
                Err(e) => errors::txn(&e, version >= 2),
            };
            vec![code; refusals.len()]
        }
    };
    let mut results: Vec<AddPartitionsToTxnTopicResult> = Vec::new();
    for (((topic, p), _), code) in refusals.into_iter().zip(codes) {
        let r = AddPartitionsToTxnPartitionResult::default()
            .with_partition_index(p)
            .with_partition_error_code(code);
        match results.iter_mut().find(|t| t.name.0.as_str() == topic) {
            Some(t) => t.results_by_partition.push(r),
            None => results.push(
                AddPartitionsToTxnTopicResult::default()
                    .with_name(TopicName(super::s(topic)))
                    .with_results_by_partition(vec![r]),
            ),
        }
    }
    results
}
