//! TxnOffsetCommit: a transactional producer commits a group's offsets inside its transaction
//! (consume-transform-produce). They are written to `__consumer_offsets` as the producer's
//! transactional records and stay pending — OffsetFetch does not show them — until the
//! transaction's marker commits or drops them. A member id or generation, when given, must be
//! the group's current one (KIP-447). The transaction coordinator is asked first whether the
//! transaction holds the group's offsets partition (KIP-890, `verification`).

use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};

use super::errors::{self, Refusal};
use super::Context;
use crate::group::{Caller, CommitEntry, GroupError, OFFSETS_TOPIC};
use crate::metadata::acl::{self, Operation};
use crate::replica::TxnVerification;
use crate::types::TopicPartition;

pub async fn handle(
    ctx: &Context,
    req: TxnOffsetCommitRequest,
    version: i16,
) -> TxnOffsetCommitResponse {
    let image = ctx.controller.image();
    let id_allowed = ctx.may(
        Operation::Write,
        acl::TRANSACTIONAL_ID,
        &req.transactional_id,
    );
    let group_allowed = ctx.may(Operation::Read, acl::GROUP, &req.group_id);
    let readable = |topic: &str| ctx.may(Operation::Read, acl::TOPIC, topic);
    let known = |topic: &str, partition: i32| {
        image
            .partition(&TopicPartition::new(topic.to_string(), partition))
            .is_some()
            && readable(topic)
    };
    let entries: Vec<CommitEntry> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .filter(|p| known(&t.name, p.partition_index))
                .map(|p| CommitEntry {
                    topic: t.name.to_string(),
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                })
        })
        .collect();
    let stored = entries.len();
    // PRODUCER_FENCED exists for this request from v3 (KIP-588).
    let code_of = |e: &GroupError| match e {
        GroupError::ProducerFenced if version < 3 => {
            errors::txn(&crate::txn::TxnError::ProducerFenced, false)
        }
        e => errors::group(e),
    };
    let mut codes = if !id_allowed || !group_allowed || stored == 0 {
        Vec::new()
    } else {
        let caller = Caller::new(
            &req.member_id,
            req.group_instance_id.as_deref(),
            req.generation_id,
        );
        let producer = (req.producer_id.0, req.producer_epoch);
        let verified = verification(ctx, &req.transactional_id, &req.group_id, producer, version)
            .await
            .map_err(|e| e.unwrap_or_else(|g| code_of(&g)));
        match verified {
            Err(code) => vec![code; stored],
            Ok(v) => match ctx
                .groups
                .txn_commit(&req.group_id, caller, entries, producer, v)
                .await
            {
                Ok(results) => results
                    .iter()
                    .map(|r| r.as_ref().map_or_else(code_of, |()| errors::NONE))
                    .collect(),
                Err(e) => vec![code_of(&e); stored],
            },
        }
    }
    .into_iter();
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let code = if !id_allowed {
                        Refusal::TransactionalIdAuthorizationFailed.code()
                    } else if !group_allowed {
                        Refusal::GroupAuthorizationFailed.code()
                    } else if !readable(&t.name) {
                        Refusal::TopicAuthorizationFailed.code()
                    } else if known(&t.name, p.partition_index) {
                        codes.next().unwrap_or(errors::NONE)
                    } else {
                        Refusal::UnknownTopicOrPartition.code()
                    };
                    TxnOffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            TxnOffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}

/// KIP-890 for offsets: the transaction must hold the group's offsets partition (put there by
/// AddOffsetsToTxn) before its offsets are written there — else they would stay pending, and
/// the partition's transaction open, for ever. Asked of the transaction coordinator once per
/// transaction, like a produce's first batch; the guard it returns voids itself if a marker
/// comes first. Err: the code to answer with, or the group's own error.
async fn verification(
    ctx: &Context,
    transactional_id: &str,
    group_id: &str,
    producer: (i64, i16),
    version: i16,
) -> Result<TxnVerification, Result<i16, GroupError>> {
    if !ctx.config.txn.partition_verification {
        return Ok(TxnVerification::Off);
    }
    let Some((partition, guard)) = ctx
        .groups
        .start_txn_verification(group_id, producer.0)
        .await
        .map_err(Err)?
    else {
        // Its transaction is open there already: a guard nothing holds, so a marker written
        // meanwhile makes the write refuse instead of opening another.
        return Ok(TxnVerification::Guard(0));
    };
    let asked = [(OFFSETS_TOPIC.to_string(), partition)];
    let answer = ctx
        .txns
        .verify_for_leader(transactional_id, producer, &asked)
        .await;
    let refused = match answer.into_iter().next() {
        Some(Ok(())) => return Ok(TxnVerification::Guard(guard)),
        Some(Err(e)) => Ok(errors::txn_offset_verification(&e, version)),
        None => Err(GroupError::CoordinatorNotAvailable),
    };
    ctx.groups
        .end_txn_verification(group_id, producer.0, guard)
        .await;
    Err(refused)
}
