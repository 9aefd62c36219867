//! WriteTxnMarkers: a transaction coordinator asks this broker, as the leader of partitions a
//! transaction wrote to, to write its commit or abort marker (broker to broker, CLUSTER_ACTION,
//! on the inter-broker listener). Each marker is answered once replicated (acks=all); a marker
//! of an older producer epoch is INVALID_PRODUCER_EPOCH.

use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};

use super::errors::{self, Refusal};
use super::Context;
use crate::metadata::acl::Operation;
use crate::txn::MarkerError;
use crate::types::TopicPartition;

pub async fn handle(
    ctx: &Context,
    req: WriteTxnMarkersRequest,
    _version: i16,
) -> WriteTxnMarkersResponse {
    let allowed = ctx.listener == ctx.config.inter_broker_listener
        && ctx.may_on_cluster(Operation::ClusterAction);
    let mut markers = Vec::with_capacity(req.markers.len());
    for m in &req.markers {
        let mut topics = Vec::with_capacity(m.topics.len());
        for t in &m.topics {
            let mut partitions = Vec::with_capacity(t.partition_indexes.len());
            for &p in &t.partition_indexes {
                let code = if !allowed {
                    Refusal::ClusterAuthorizationFailed.code()
                } else {
                    let tp = TopicPartition::new(t.name.0.to_string(), p);
                    match ctx
                        .txns
                        .write_marker_here(
                            &tp,
                            m.producer_id.0,
                            m.producer_epoch,
                            m.transaction_result,
                            m.coordinator_epoch,
                        )
                        .await
                    {
                        Ok(()) => errors::NONE,
                        Err(MarkerError::Append(e)) => errors::produce(&e),
                        Err(MarkerError::Wait(w)) => errors::wait(&w),
                    }
                };
                partitions.push(
                    WritableTxnMarkerPartitionResult::default()
                        .with_partition_index(p)
                        .with_error_code(code),
                );
            }
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
