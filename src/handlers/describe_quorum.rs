//! DescribeQuorum for the metadata log (`__cluster_metadata`, partition 0), so Kafka's quorum
//! tooling works: the leader, its term as the epoch, the committed index as the high watermark,
//! and each voter's log end as the leader sees it. Asked of any broker; answered from the leader.

use super::errors::Refusal;
use crate::metadata::acl::Operation;
use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::{DescribeQuorumRequest, DescribeQuorumResponse};

use super::{broker, s, topic_name, Context};

pub const METADATA_TOPIC: &str = "__cluster_metadata";

pub async fn handle(
    ctx: &Context,
    req: DescribeQuorumRequest,
    version: i16,
) -> DescribeQuorumResponse {
    if !ctx.may_on_cluster(Operation::Describe) {
        return DescribeQuorumResponse::default()
            .with_error_code(Refusal::ClusterAuthorizationFailed.code());
    }
    let status = ctx.controller.quorum_status().await;
    let mut topics = Vec::new();
    for t in &req.topics {
        let mut partitions = Vec::new();
        for p in &t.partitions {
            let data = PartitionData::default().with_partition_index(p.partition_index);
            if t.topic_name.0.as_str() != METADATA_TOPIC || p.partition_index != 0 {
                partitions.push(data.with_error_code(Refusal::UnknownTopicOrPartition.code()));
                continue;
            }
            match &status {
                Ok(q) => {
                    let voters = q
                        .voters
                        .iter()
                        .map(|v| {
                            ReplicaState::default()
                                .with_replica_id(broker(v.id))
                                .with_log_end_offset(v.log_end_offset)
                                .with_last_fetch_timestamp(-1)
                                .with_last_caught_up_timestamp(-1)
                        })
                        .collect();
                    partitions.push(
                        data.with_leader_id(broker(q.leader_id))
                            .with_leader_epoch(q.term as i32)
                            .with_high_watermark(q.high_watermark)
                            .with_current_voters(voters),
                    );
                }
                Err(e) => partitions.push(
                    data.with_error_code(Refusal::NotLeaderOrFollower.code())
                        .with_error_message(Some(s(e.to_string()))),
                ),
            }
        }
        topics.push(
            TopicData::default()
                .with_topic_name(topic_name(&t.topic_name.0))
                .with_partitions(partitions),
        );
    }
    // The voters' endpoints are in the answer from v2 only (KIP-853).
    if version < 2 {
        return DescribeQuorumResponse::default().with_topics(topics);
    }
    let nodes = ctx
        .config
        .voters
        .iter()
        .map(|v| {
            Node::default()
                .with_node_id(broker(v.id))
                .with_listeners(vec![Listener::default()
                    .with_name(s(ctx.config.controller_listener.name.clone()))
                    .with_host(s(v.host.clone()))
                    .with_port(v.port)])
        })
        .collect();
    DescribeQuorumResponse::default()
        .with_topics(topics)
        .with_nodes(nodes)
}
