//! ListPartitionReassignments (v0, KIP-455): the reassignments in progress — every one, or
//! those of the listed partitions — with each partition's replicas and what is being added
//! and removed, from this broker's image.

use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    BrokerId, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
};

use super::errors::Refusal;
use super::Context;
use crate::metadata::acl::Operation;

fn brokers(ids: &[i32]) -> Vec<BrokerId> {
    ids.iter().map(|b| BrokerId(*b)).collect()
}

pub async fn handle(
    ctx: &Context,
    req: ListPartitionReassignmentsRequest,
    _version: i16,
) -> ListPartitionReassignmentsResponse {
    if !ctx.may_on_cluster(Operation::Describe) {
        return ListPartitionReassignmentsResponse::default()
            .with_error_code(Refusal::ClusterAuthorizationFailed.code());
    }
    let image = ctx.controller.image();
    // (topic, partitions) to report: the listed ones, or every topic with one in progress.
    let wanted: Vec<(String, Option<Vec<i32>>)> = match &req.topics {
        Some(topics) => topics
            .iter()
            .map(|t| (t.name.0.to_string(), Some(t.partition_indexes.clone())))
            .collect(),
        None => image
            .reassignments
            .keys()
            .filter_map(|id| image.topic_names.get(id))
            .map(|name| (name.clone(), None))
            .collect(),
    };
    let mut topics = Vec::new();
    for (name, partitions) in wanted {
        let Some(t) = image.topic(&name) else {
            continue;
        };
        let Some(ongoing) = image.reassignments.get(&t.id) else {
            continue;
        };
        let reported: Vec<OngoingPartitionReassignment> = ongoing
            .iter()
            .filter(|(p, _)| partitions.as_ref().is_none_or(|l| l.contains(p)))
            .filter_map(|(p, r)| {
                let pi = t.partitions.get(usize::try_from(*p).ok()?)?;
                Some(
                    OngoingPartitionReassignment::default()
                        .with_partition_index(*p)
                        .with_replicas(brokers(&pi.replicas))
                        .with_adding_replicas(brokers(&r.adding))
                        .with_removing_replicas(brokers(&r.removing)),
                )
            })
            .collect();
        if !reported.is_empty() {
            topics.push(
                OngoingTopicReassignment::default()
                    .with_name(super::topic_name(&name))
                    .with_partitions(reported),
            );
        }
    }
    ListPartitionReassignmentsResponse::default().with_topics(topics)
}
