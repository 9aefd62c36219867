//! OffsetFetch: a group's committed offsets — one group (v1–7) or several (v8+); no topic list
//! (v2+) means every partition the group has committed.

use super::errors::Refusal;
use crate::metadata::acl::{self, Operation};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse};

use super::{errors, s, topic_name, Context};
use crate::group::{FetchedOffset, GroupError};

/// Offsets by topic, in first-seen order.
fn by_topic(found: Vec<FetchedOffset>) -> Vec<(String, Vec<FetchedOffset>)> {
    let mut out: Vec<(String, Vec<FetchedOffset>)> = Vec::new();
    for f in found {
        match out.iter_mut().find(|(t, _)| *t == f.topic) {
            Some((_, v)) => v.push(f),
            None => out.push((f.topic.clone(), vec![f])),
        }
    }
    out
}

/// (offset, leader epoch, metadata) as reported; -1 and "" for nothing committed.
fn fields(f: &FetchedOffset) -> (i64, i32, String) {
    match &f.value {
        Some(v) => (v.offset, v.leader_epoch, v.metadata.clone()),
        None => (-1, -1, String::new()),
    }
}

/// The group's offsets, or `None` when the principal may not DESCRIBE the group; offsets of
/// topics it may not DESCRIBE are left out.
fn lookup(
    ctx: &Context,
    group: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
) -> Option<Result<Vec<FetchedOffset>, GroupError>> {
    if !ctx.may(Operation::Describe, acl::GROUP, group) {
        return None;
    }
    Some(ctx.groups.fetch_offsets(group, topics).map(|found| {
        found
            .into_iter()
            .filter(|f| ctx.may(Operation::Describe, acl::TOPIC, &f.topic))
            .collect()
    }))
}

pub async fn handle(ctx: &Context, req: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
    // KIP-447: a consumer asking for stable offsets is told to retry while a transaction
    // holds an uncommitted offset for the partition.
    let require_stable = version >= 7 && req.require_stable;
    let unstable = |group: &str, p: &FetchedOffset| {
        require_stable && ctx.groups.offset_unstable(group, &p.topic, p.partition)
    };
    if version >= 8 {
        let groups = req
            .groups
            .into_iter()
            .map(|g| {
                let topics = g.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.name.to_string(), t.partition_indexes))
                        .collect()
                });
                let Some(r) = lookup(ctx, &g.group_id, topics) else {
                    return OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id)
                        .with_error_code(Refusal::GroupAuthorizationFailed.code());
                };
                let code = errors::group_code(&r);
                let group_id = g.group_id.to_string();
                let topics = by_topic(r.unwrap_or_default())
                    .into_iter()
                    .map(|(t, ps)| {
                        OffsetFetchResponseTopics::default()
                            .with_name(topic_name(&t))
                            .with_partitions(
                                ps.iter()
                                    .map(|p| {
                                        let (o, e, m) = fields(p);
                                        OffsetFetchResponsePartitions::default()
                                            .with_partition_index(p.partition)
                                            .with_committed_offset(o)
                                            .with_committed_leader_epoch(e)
                                            .with_metadata(Some(s(m)))
                                            .with_error_code(if unstable(&group_id, p) {
                                                Refusal::UnstableOffsetCommit.code()
                                            } else {
                                                errors::NONE
                                            })
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id)
                    .with_error_code(code)
                    .with_topics(topics)
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let asked: Option<Vec<(String, Vec<i32>)>> = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.to_string(), t.partition_indexes))
            .collect()
    });
    let Some(r) = lookup(ctx, &req.group_id, asked.clone()) else {
        let denied = Refusal::GroupAuthorizationFailed.code();
        if version >= 2 {
            return OffsetFetchResponse::default().with_error_code(denied);
        }
        // v1 has no top-level error: every asked partition carries it.
        let topics = asked
            .unwrap_or_default()
            .into_iter()
            .map(|(t, ps)| {
                OffsetFetchResponseTopic::default()
                    .with_name(topic_name(&t))
                    .with_partitions(
                        ps.into_iter()
                            .map(|p| {
                                OffsetFetchResponsePartition::default()
                                    .with_partition_index(p)
                                    .with_committed_offset(-1)
                                    .with_metadata(Some(s("")))
                                    .with_error_code(denied)
                            })
                            .collect(),
                    )
            })
            .collect();
        return OffsetFetchResponse::default().with_topics(topics);
    };
    let code = errors::group_code(&r);
    // v1 has no top-level error: a group error is reported on every asked partition.
    let found = match r {
        Ok(found) => found,
        Err(_) if version < 2 => asked
            .unwrap_or_default()
            .into_iter()
            .flat_map(|(t, ps)| {
                ps.into_iter().map(move |p| FetchedOffset {
                    topic: t.clone(),
                    partition: p,
                    value: None,
                })
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    let partition_code = if version < 2 { code } else { errors::NONE };
    let topics = by_topic(found)
        .into_iter()
        .map(|(t, ps)| {
            OffsetFetchResponseTopic::default()
                .with_name(topic_name(&t))
                .with_partitions(
                    ps.iter()
                        .map(|p| {
                            let (o, e, m) = fields(p);
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(p.partition)
                                .with_committed_offset(o)
                                .with_committed_leader_epoch(e)
                                .with_metadata(Some(s(m)))
                                .with_error_code(if unstable(&req.group_id, p) {
                                    Refusal::UnstableOffsetCommit.code()
                                } else {
                                    partition_code
                                })
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetFetchResponse::default()
        .with_topics(topics)
        .with_error_code(code)
}
