//! ElectLeaders: a preferred election (the first replica leads again, when alive and in the
//! ISR) or, from v1, an unclean one (a leaderless partition gets any live replica), for the
//! listed partitions or — with none listed — every partition that needs one.

use super::errors::Refusal;
use crate::metadata::acl::Operation;
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse};

use super::{errors, s, topic_name, Context};
use crate::controller::{AdminDone, AdminOp};

pub async fn handle(ctx: &Context, req: ElectLeadersRequest, version: i16) -> ElectLeadersResponse {
    if !ctx.may_on_cluster(Operation::Alter) {
        let denied = Refusal::ClusterAuthorizationFailed.code();
        // v0 has no top-level error: each listed partition carries it.
        if version == 0 {
            let results = req
                .topic_partitions
                .iter()
                .flatten()
                .map(|t| {
                    ReplicaElectionResult::default()
                        .with_topic(t.topic.clone())
                        .with_partition_result(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    PartitionResult::default()
                                        .with_partition_id(*p)
                                        .with_error_code(denied)
                                })
                                .collect(),
                        )
                })
                .collect();
            return ElectLeadersResponse::default().with_replica_election_results(results);
        }
        return ElectLeadersResponse::default().with_error_code(denied);
    }
    let unclean = version >= 1 && req.election_type == 1;
    let partitions = req.topic_partitions.as_ref().map(|topics| {
        topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.topic.0.to_string(), *p)))
            .collect::<Vec<_>>()
    });
    let results = match ctx
        .controller
        .submit(AdminOp::ElectLeaders {
            unclean,
            partitions: partitions.clone(),
        })
        .await
    {
        Ok(AdminDone::Elections(done)) => done
            .into_iter()
            .map(|(topic, p, r)| {
                let code = r.as_ref().err().map(errors::election).unwrap_or(0);
                (topic, p, code, r.err().map(|e| e.to_string()))
            })
            .collect(),
        other => {
            // The whole election failed (no quorum, a race): every listed partition says why.
            let (code, msg) = match other {
                Err(e) => (errors::admin(&e), e.to_string()),
                Ok(_) => (
                    errors::Refusal::UnknownServerError.code(),
                    "unexpected answer from the controller".to_string(),
                ),
            };
            partitions
                .unwrap_or_default()
                .into_iter()
                .map(|(topic, p)| (topic, p, code, Some(msg.clone())))
                .collect::<Vec<_>>()
        }
    };
    let mut by_topic: Vec<ReplicaElectionResult> = Vec::new();
    for (topic, p, code, msg) in results {
        let result = PartitionResult::default()
            .with_partition_id(p)
            .with_error_code(code)
            .with_error_message(msg.map(s));
        match by_topic.iter_mut().find(|r| r.topic.0.as_str() == topic) {
            Some(r) => r.partition_result.push(result),
            None => by_topic.push(
                ReplicaElectionResult::default()
                    .with_topic(topic_name(&topic))
                    .with_partition_result(vec![result]),
            ),
        }
    }
    ElectLeadersResponse::default().with_replica_election_results(by_topic)
}
