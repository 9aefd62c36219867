//! TxnOffsetCommit: a transactional producer commits a group's offsets inside its transaction
//! (consume-transform-produce). They are written to `__consumer_offsets` as the producer's
//! transactional records and stay pending — OffsetFetch does not show them — until the
//! transaction's marker commits or drops them. A member id or generation, when given, must be
//! the group's current one (KIP-447).

use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};

use super::errors::{self, Refusal};
use super::Context;
use crate::group::{Caller, CommitEntry, GroupError};
use crate::metadata::acl::{self, Operation};
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
        match ctx
            .groups
            .txn_commit(&req.group_id, caller, entries, producer)
            .await
        {
            Ok(results) => results
                .iter()
                .map(|r| r.as_ref().map_or_else(code_of, |()| errors::NONE))
                .collect(),
            Err(e) => vec![code_of(&e); stored],
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
