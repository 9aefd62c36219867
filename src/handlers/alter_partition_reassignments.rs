//! AlterPartitionReassignments (v0–1, KIP-455): start, replace or cancel (no target) moving a
//! partition's replicas; each partition answers for itself. The controller decides
//! (`metadata::reassign`); new replicas then catch up as followers and the reassignment
//! finishes when they are all in sync. v1's `allow_replication_factor_change` = false (KIP-860)
//! refuses a target whose size differs from the partition's replica count.

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
use crate::metadata::reassign::original_replicas;

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
    let image = ctx.controller.image();
    // Per partition: a refusal decided here, or a place in the controller's request.
    let mut asked = Vec::new();
    let mut results: Vec<(String, i32, Option<AdminError>)> = Vec::new();
    for t in &req.topics {
        let topic = t.name.0.to_string();
        for p in &t.partitions {
            let target: Option<Vec<i32>> =
                p.replicas.as_ref().map(|r| r.iter().map(|b| b.0).collect());
            let current = image.topic(&topic).and_then(|ti| {
                let pi = ti
                    .partitions
                    .get(usize::try_from(p.partition_index).ok()?)?;
                Some(original_replicas(
                    pi,
                    image.reassignment(ti.id, p.partition_index),
                ))
            });
            let refused = match (&target, &current) {
                (Some(target), Some(current))
                    if !allow_rf_change && target.len() != current.len() =>
                {
                    Some(AdminError::InvalidReplicationFactor(format!(
                        "the target has {} replicas and the partition {}; the request does not allow a change",
                        target.len(),
                        current.len()
                    )))
                }
                _ => None,
            };
            if refused.is_none() {
                asked.push((topic.clone(), p.partition_index, target));
            }
            results.push((topic.clone(), p.partition_index, refused));
        }
    }
    let decided = if asked.is_empty() {
        Ok(Vec::new())
    } else {
        match ctx
            .controller
            .submit(AdminOp::AlterPartitionReassignments { changes: asked })
            .await
        {
            Ok(AdminDone::Reassignments(done)) => Ok(done),
            Ok(other) => Err(AdminError::InvalidRequest(format!(
                "unexpected answer from the controller: {other:?}"
            ))),
            Err(e) => Err(e),
        }
    };
    let decided = match decided {
        Ok(d) => d,
        // The whole request failed (no quorum): one top-level error, as Kafka answers.
        Err(e) => {
            return answer
                .with_error_code(errors::admin(&e))
                .with_error_message(Some(s(e.to_string())));
        }
    };
    let mut decided = decided.into_iter();
    let mut topics: Vec<ReassignableTopicResponse> = Vec::new();
    for (topic, partition, refused) in results {
        let error = match refused {
            Some(e) => Some(e),
            None => decided.next().and_then(|(_, _, r)| r.err()),
        };
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
