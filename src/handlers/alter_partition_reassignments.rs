//! AlterPartitionReassignments (v0–1, KIP-455): start, replace or cancel (no target) moving a
//! partition's replicas; each partition answers for itself. The controller decides
//! (`metadata::reassign`); new replicas then catch up as followers and the reassignment
//! finishes when they are all in sync. v1's `allow_replication_factor_change` = false (KIP-860)
//! has the controller refuse a target whose size differs from the partition's replica count.

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse,
};

use super::errors::{self, Refusal};
use super::{s, Context};
use crate::controller::{AdminDone, AdminError, AdminOp};
use crate::metadata::acl::Operation;

pub async fn handle(
    ctx: &Context,
    req: AlterPartitionReassignmentsRequest,
    version: i16,
) -> AlterPartitionReassignmentsResponse {
    let allow_rf_change = version < 1 || req.allow_replication_factor_change;
    let answer = AlterPartitionReassignmentsResponse::default()
        .with_allow_replication_factor_change(allow_rf_change);
    if !ctx.may_on_cluster(Operation::Alter) {
        return answer.with_error_code(Refusal::ClusterAuthorizationFailed.code());
    }
    let changes: Vec<(String, i32, Option<Vec<i32>>)> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                (
                    t.name.0.to_string(),
                    p.partition_index,
                    p.replicas.as_ref().map(|r| r.iter().map(|b| b.0).collect()),
                )
            })
        })
        .collect();
    let done = if changes.is_empty() {
        Vec::new()
    } else {
        let op = AdminOp::AlterPartitionReassignments {
            changes,
            allow_replication_factor_change: allow_rf_change,
        };
        match ctx.controller.submit(op).await {
            Ok(AdminDone::Reassignments(done)) => done,
            other => {
                // The whole request failed (no quorum): one top-level error, as Kafka answers.
                let e = other.err().unwrap_or_else(|| {
                    AdminError::InvalidRequest("unexpected answer from the controller".into())
                });
                return answer
                    .with_error_code(errors::admin(&e))
                    .with_error_message(Some(s(e.to_string())));
            }
        }
    };
    let mut topics: Vec<ReassignableTopicResponse> = Vec::new();
    for (topic, partition, result) in done {
        let error = result.err();
        let result = ReassignablePartitionResponse::default()
            .with_partition_index(partition)
            .with_error_code(error.as_ref().map(errors::admin).unwrap_or(0))
            .with_error_message(error.map(|e| s(e.to_string())));
        match topics.iter_mut().find(|r| r.name.0.as_str() == topic) {
            Some(r) => r.partitions.push(result),
            None => topics.push(
                ReassignableTopicResponse::default()
                    .with_name(super::topic_name(&topic))
                    .with_partitions(vec![result]),
            ),
        }
    }
    answer.with_responses(topics)
}
