//! WriteTxnMarkers: a transaction coordinator asks this broker, as the leader of partitions a
//! transaction wrote to, to write its commit or abort marker (broker to broker, CLUSTER_ACTION,
//! on the inter-broker listener). All of a request's markers are appended, then answered once
//! replicated (acks=all, one wait for all); a marker of an older producer epoch is
//! INVALID_PRODUCER_EPOCH.

use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};

use super::errors::{self, Refusal};
use super::Context;
use crate::metadata::acl::Operation;
use crate::txn::{Marker, MarkerError};
use crate::types::TopicPartition;

pub async fn handle(
    ctx: &Context,
    req: WriteTxnMarkersRequest,
    _version: i16,
) -> WriteTxnMarkersResponse {
    let allowed = ctx.listener == ctx.config.inter_broker_listener
        && ctx.may_on_cluster(Operation::ClusterAction);
    // Every marker of the request appended first, then one wait for all of them.
    let mut wanted = Vec::new();
    for m in &req.markers {
        for t in &m.topics {
            for &p in &t.partition_indexes {
                wanted.push(Marker {
                    tp: TopicPartition::new(t.name.0.to_string(), p),
                    producer_id: m.producer_id.0,
                    epoch: m.producer_epoch,
                    commit: m.transaction_result,
                    coordinator_epoch: m.coordinator_epoch,
                });
            }
        }
    }
    let mut codes = if allowed {
        ctx.txns
            .write_markers_here(&wanted)
            .await
            .into_iter()
            .map(|r| match r {
                Ok(()) => errors::NONE,
                Err(MarkerError::Append(e)) => errors::produce(&e),
                Err(MarkerError::Wait(w)) => errors::wait(&w),
            })
            .collect::<Vec<_>>()
    } else {
        vec![Refusal::ClusterAuthorizationFailed.code(); wanted.len()]
    }
    .into_iter();
    let mut markers = Vec::with_capacity(req.markers.len());
    for m in &req.markers {
        let mut topics = Vec::with_capacity(m.topics.len());
        for t in &m.topics {
            let partitions = t
                .partition_indexes
                .iter()
                .map(|&p| {
                    WritableTxnMarkerPartitionResult::default()
                        .with_partition_index(p)
                        .with_error_code(codes.next().unwrap_or(errors::NONE))
                })
                .collect();
            topics.push(
                WritableTxnMarkerTopicResult::default()
                    .with_name(t.name.clone())
                    .with_partitions(partitions),
            );
        }
        markers.push(
            WritableTxnMarkerResult::default()
                .with_producer_id(m.producer_id)
                .with_topics(topics),
        );
    }
    WriteTxnMarkersResponse::default().with_markers(markers)
}
