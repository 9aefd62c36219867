//! DescribeLogDirs: this broker's one log directory (`log.dirs`) with the size of every hosted
//! partition in it, all of them or the ones asked for. Volume sizes are not measured (-1).

use super::errors::Refusal;
use crate::metadata::acl::Operation;
use std::collections::BTreeMap;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse};

use super::{s, topic_name, Context};

pub async fn handle(
    ctx: &Context,
    req: DescribeLogDirsRequest,
    version: i16,
) -> DescribeLogDirsResponse {
    if !ctx.may_on_cluster(Operation::Describe) {
        // Before v3 there is no error code: Kafka answers an empty list.
        let resp = DescribeLogDirsResponse::default();
        return if version >= 3 {
            resp.with_error_code(Refusal::ClusterAuthorizationFailed.code())
        } else {
            resp
        };
    }
    let wanted = |topic: &str, partition: i32| {
        req.topics.as_ref().is_none_or(|topics| {
            topics
                .iter()
                .any(|t| t.topic.0.as_str() == topic && t.partitions.contains(&partition))
        })
    };
    let mut by_topic: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    for p in ctx.replicas.hosted() {
        let tp = p.tp();
        if !wanted(&tp.topic, tp.partition) {
            continue;
        }
        by_topic.entry(tp.topic.clone()).or_default().push(
            DescribeLogDirsPartition::default()
                .with_partition_index(tp.partition)
                .with_partition_size(p.size_bytes() as i64)
                .with_offset_lag(0),
        );
    }
    let topics = by_topic
        .into_iter()
        .map(|(name, mut partitions)| {
            partitions.sort_by_key(|p| p.partition_index);
            DescribeLogDirsTopic::default()
                .with_name(topic_name(&name))
                .with_partitions(partitions)
        })
        .collect();
    let dir =
        std::path::absolute(&ctx.config.log_dir).unwrap_or_else(|_| ctx.config.log_dir.clone());
    DescribeLogDirsResponse::default().with_results(vec![DescribeLogDirsResult::default()
        .with_log_dir(s(dir.display().to_string()))
        .with_topics(topics)
        .with_total_bytes(-1)
        .with_usable_bytes(-1)])
}
