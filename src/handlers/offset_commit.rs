//! OffsetCommit: stores a group's consumed positions in `__consumer_offsets`, answered once
//! replicated. Members commit with their generation; a negative generation commits for a group
//! with no members (admin tools, `assign()` consumers).

use crate::metadata::acl::{self, Operation};
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use super::errors::Refusal;

use super::{errors, Context};
use crate::group::{Caller, CommitEntry};
use crate::types::TopicPartition;

pub async fn handle(
    ctx: &Context,
    req: OffsetCommitRequest,
    _version: i16,
) -> OffsetCommitResponse {
    // A partition that does not exist is answered UNKNOWN_TOPIC_OR_PARTITION and not stored,
    // as Kafka does; the rest are committed together.
    let image = ctx.controller.image();
    let group_allowed = ctx.may(Operation::Read, acl::GROUP, &req.group_id);
    let readable = |topic: &str| ctx.may(Operation::Read, acl::TOPIC, topic);
    let known = |topic: &str, partition: i32| {
        image
            .partition(&TopicPartition::new(topic.to_string(), partition))
            .is_some()
            && readable(topic)
            && group_allowed
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
    let r = ctx
        .groups
        .commit(
            &req.group_id,
            Caller::new(
                &req.member_id,
                req.group_instance_id.as_deref(),
                req.generation_id_or_member_epoch,
            ),
            entries,
        )
        .await;
    let mut codes = match r {
        Ok(results) => results.iter().map(errors::group_code).collect::<Vec<_>>(),
        Err(e) => vec![errors::group(&e); stored],
    }
    .into_iter();
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            OffsetCommitResponseTopic::default()
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            let code = if !group_allowed {
                                Refusal::GroupAuthorizationFailed.code()
                            } else if !readable(&t.name) {
                                Refusal::TopicAuthorizationFailed.code()
                            } else if known(&t.name, p.partition_index) {
                                codes.next().unwrap_or(errors::NONE)
                            } else {
                                Refusal::UnknownTopicOrPartition.code()
                            };
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code)
                        })
                        .collect(),
                )
                .with_name(t.name)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}
