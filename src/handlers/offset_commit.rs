//! OffsetCommit: stores a group's consumed positions in `__consumer_offsets`, answered once
//! replicated. Members commit with their generation; a negative generation commits for a group
//! with no members (admin tools, `assign()` consumers).

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use super::{errors, Context};
use crate::group::CommitEntry;

pub async fn handle(
    ctx: &Context,
    req: OffsetCommitRequest,
    _version: i16,
) -> OffsetCommitResponse {
    let entries: Vec<CommitEntry> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| CommitEntry {
                topic: t.name.to_string(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: p.committed_leader_epoch,
                metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
            })
        })
        .collect();
    let r = ctx
        .groups
        .commit(
            &req.group_id,
            &req.member_id,
            req.group_instance_id.as_deref(),
            req.generation_id_or_member_epoch,
            entries,
        )
        .await;
    let mut codes = match r {
        Ok(results) => results.iter().map(errors::group_code).collect::<Vec<_>>(),
        Err(e) => vec![errors::group(&e); req.topics.iter().map(|t| t.partitions.len()).sum()],
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
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(codes.next().unwrap_or(errors::NONE))
                        })
                        .collect(),
                )
                .with_name(t.name)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}
