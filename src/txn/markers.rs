//! Completing a decided transaction: a commit or abort marker on every partition it wrote to,
//! then its Complete state. A partition this node leads gets its marker through the replica
//! manager; others through WriteTxnMarkers to their leader (over the inter-broker listener, as
//! a follower fetches). Markers are written with acks=all, and a partition whose leader is
//! moving is tried again until it takes the marker — or the topic is deleted, or this node
//! stops coordinating the id (the next coordinator resumes from the Prepare state it loads).
//! Writing a marker twice is harmless: the second finds no open transaction.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{
    ApiKey, ProducerId, TopicName, WriteTxnMarkersRequest, WriteTxnMarkersResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::shard::Shard;
use super::state::{self, TxnState};
use super::Coordinator;
use crate::group::OFFSETS_TOPIC;
use crate::replica::{HwWait, ProduceError};
use crate::types::{now_ms, NodeId, TopicPartition};

/// The first wait before a partition's marker is tried again; it doubles up to a second.
const RETRY: Duration = Duration::from_millis(50);
/// How long one marker write waits for replication, and one WriteTxnMarkers for its answer.
const MARKER_TIMEOUT: Duration = Duration::from_secs(5);

impl Coordinator {
    /// Completes the id's decided transaction in the background.
    pub(super) fn spawn_completion(self: &Arc<Self>, shard: &Arc<Shard>, id: &str) {
        tokio::spawn(self.clone().complete(shard.clone(), id.to_string()));
    }

    async fn complete(self: Arc<Self>, shard: Arc<Shard>, id: String) {
        let cell = shard.txn(&id);
        let decided = match cell.lock().await.as_ref() {
            Some(m) if m.state.is_prepare() => m.clone(),
            _ => return,
        };
        let commit = decided.state == TxnState::PrepareCommit;
        let partitions: Vec<TopicPartition> = decided
            .partitions
            .iter()
            .map(|(t, p)| TopicPartition::new(t.clone(), *p))
            .collect();
        let started = std::time::Instant::now();
        if !self
            .write_markers(
                &shard,
                decided.producer_id,
                decided.epoch,
                commit,
                partitions,
            )
            .await
        {
            return;
        }
        let mut guard = cell.lock().await;
        if guard.as_ref() != Some(&decided) {
            return;
        }
        let Some(done) = state::complete(&decided, now_ms()) else {
            return;
        };
        match self.write(&shard, &id, Some(&done)).await {
            Ok(()) => {
                tracing::debug!(transactional_id = %id, commit, elapsed_ms = started.elapsed().as_millis() as u64, "transaction completed");
                *guard = Some(done);
            }
            Err(e) => {
                tracing::info!(transactional_id = %id, error = %e, "cannot write a completed transaction; the next coordinator completes it")
            }
        }
    }

    /// Writes the markers to every partition; false when this node stopped coordinating first.
    async fn write_markers(
        &self,
        shard: &Shard,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        mut pending: Vec<TopicPartition>,
    ) -> bool {
        let mut delay = RETRY;
        while !pending.is_empty() {
            if shard.cancel.is_cancelled() || !shard.partition.leads_at(shard.epoch) {
                return false;
            }
            let image = self.controller.image();
            let mut by_leader: HashMap<NodeId, Vec<TopicPartition>> = HashMap::new();
            let mut retry = Vec::new();
            for tp in pending {
                let Some(topic) = image.topic(&tp.topic) else {
                    // Deleted with its data: nothing is left to mark.
                    continue;
                };
                match topic.partitions.get(tp.partition as usize) {
                    Some(p) if p.leader >= 0 => by_leader.entry(p.leader).or_default().push(tp),
                    Some(_) => retry.push(tp),
                    None => continue,
                }
            }
            for (leader, tps) in by_leader {
                let failed = if leader == self.config.node_id {
                    let mut failed = Vec::new();
                    for tp in tps {
                        if let Err(e) = self
                            .write_marker_here(&tp, producer_id, epoch, commit, shard.epoch)
                            .await
                        {
                            tracing::debug!(%tp, error = %e, "marker not written yet");
                            failed.push(tp);
                        }
                    }
                    failed
                } else {
                    self.send_markers(leader, tps, producer_id, epoch, commit, shard.epoch)
                        .await
                };
                retry.extend(failed);
            }
            pending = retry;
            if !pending.is_empty() {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(1));
            }
        }
        true
    }

    /// Writes one marker to a partition this node leads and waits until it is replicated
    /// (WriteTxnMarkers' work, for the coordinator and for the handler). A marker on an offsets
    /// partition then settles the transaction's pending offsets there.
    pub async fn write_marker_here(
        &self,
        tp: &TopicPartition,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
    ) -> Result<(), MarkerError> {
        let image = self.controller.image();
        let write = self
            .replicas
            .append_marker(&image, tp, producer_id, epoch, commit, coordinator_epoch)
            .map_err(MarkerError::Append)?;
        match self
            .replicas
            .wait_for(vec![write.replicated()], MARKER_TIMEOUT)
            .await[..]
        {
            [HwWait::Reached] => {}
            [other] => return Err(MarkerError::Wait(other)),
            _ => return Err(MarkerError::Wait(HwWait::TimedOut)),
        }
        if tp.topic == OFFSETS_TOPIC {
            self.groups
                .txn_marker(tp.partition, producer_id, commit)
                .await;
        }
        Ok(())
    }

    /// WriteTxnMarkers to another broker; returns the partitions it did not take.
    async fn send_markers(
        &self,
        leader: NodeId,
        tps: Vec<TopicPartition>,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
    ) -> Vec<TopicPartition> {
        let mut topics: HashMap<&str, Vec<i32>> = HashMap::new();
        for tp in &tps {
            topics.entry(&tp.topic).or_default().push(tp.partition);
        }
        let marker = WritableTxnMarker::default()
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(epoch)
            .with_transaction_result(commit)
            .with_coordinator_epoch(coordinator_epoch)
            .with_topics(
                topics
                    .into_iter()
                    .map(|(t, ps)| {
                        WritableTxnMarkerTopic::default()
                            .with_name(TopicName(StrBytes::from_string(t.to_string())))
                            .with_partition_indexes(ps)
                    })
                    .collect(),
            );
        let req = WriteTxnMarkersRequest::default().with_markers(vec![marker]);
        let resp: WriteTxnMarkersResponse = match self.call(leader, &req).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(leader, error = %e, "WriteTxnMarkers failed; retrying");
                return tps;
            }
        };
        let mut done = Vec::new();
        for m in &resp.markers {
            for t in &m.topics {
                for p in &t.partitions {
                    if p.error_code == 0 {
                        done.push((t.name.0.to_string(), p.partition_index));
                    }
                }
            }
        }
        tps.into_iter()
            .filter(|tp| {
                !done
                    .iter()
                    .any(|(t, p)| *t == tp.topic && *p == tp.partition)
            })
            .collect()
    }

    /// One WriteTxnMarkers call to `broker`, on a kept connection.
    async fn call(
        &self,
        broker: NodeId,
        req: &WriteTxnMarkersRequest,
    ) -> anyhow::Result<WriteTxnMarkersResponse> {
        let cached = self
            .connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&broker);
        let mut conn = match cached {
            Some(c) => c,
            None => {
                let image = self.controller.image();
                let addr = image
                    .brokers
                    .get(&broker)
                    .and_then(|b| {
                        b.endpoints
                            .iter()
                            .find(|e| e.listener == self.config.inter_broker_listener)
                    })
                    .map(|e| format!("{}:{}", e.host, e.port))
                    .ok_or_else(|| {
                        anyhow::anyhow!("broker {broker} has no inter-broker endpoint")
                    })?;
                crate::replica::client::Connection::connect(
                    &addr,
                    Duration::from_secs(2),
                    self.config.socket_request_max_bytes.max(1 << 20),
                    &self.peers,
                )
                .await?
            }
        };
        let resp = conn
            .call(
                ApiKey::WriteTxnMarkers,
                1,
                req,
                MARKER_TIMEOUT + Duration::from_secs(1),
            )
            .await?;
        self.connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(broker, conn);
        Ok(resp)
    }
}

/// Why a marker was not written here.
#[derive(Debug, thiserror::Error)]
pub enum MarkerError {
    #[error("{0}")]
    Append(ProduceError),
    #[error("the marker was not replicated: {0:?}")]
    Wait(HwWait),
}
