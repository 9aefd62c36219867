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
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::shard::Shard;
use super::state::{self, TxnState};
use super::Coordinator;
use crate::group::OFFSETS_TOPIC;
use crate::replica::{HwWait, ProduceError, ProducerError};
use crate::types::{now_ms, NodeId, TopicPartition};

/// Kafka's TRANSACTION_COORDINATOR_FENCED.
const COORDINATOR_FENCED: i16 = 52;

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
        // The Complete state, tried until written or this node stops coordinating the id
        // (the next coordinator completes it from the Prepare state it loads).
        let mut delay = RETRY;
        loop {
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
                    let counter = if commit {
                        &self.counters.committed
                    } else {
                        &self.counters.aborted
                    };
                    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    *guard = Some(done);
                    return;
                }
                Err(e) => {
                    drop(guard);
                    if shard.cancel.is_cancelled() || !shard.partition.leads_at(shard.epoch) {
                        tracing::info!(transactional_id = %id, error = %e, "cannot write a completed transaction; the next coordinator completes it");
                        return;
                    }
                    tracing::debug!(transactional_id = %id, error = %e, "completed state not written yet; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
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
                    let markers: Vec<Marker> = tps
                        .iter()
                        .map(|tp| Marker {
                            tp: tp.clone(),
                            producer_id,
                            epoch,
                            commit,
                            coordinator_epoch: shard.epoch,
                        })
                        .collect();
                    let outcomes = self.write_markers_here(&markers).await;
                    tps.into_iter()
                        .zip(outcomes)
                        .filter_map(|(tp, r)| {
                            let e = r.err()?;
                            if e.coordinator_fenced() {
                                return None;
                            }
                            tracing::debug!(%tp, error = %e, "marker not written yet");
                            Some(tp)
                        })
                        .collect()
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

    /// Writes markers to partitions this node leads, then waits once until all of them are
    /// replicated (WriteTxnMarkers' work, for the coordinator and for the handler): one outcome
    /// per marker. A marker on an offsets partition then settles the transaction's pending
    /// offsets there.
    pub async fn write_markers_here(&self, markers: &[Marker]) -> Vec<Result<(), MarkerError>> {
        let image = self.controller.image();
        let mut outcomes: Vec<Result<(), MarkerError>> = Vec::with_capacity(markers.len());
        let mut targets = Vec::new();
        for m in markers {
            match self.replicas.append_marker(
                &image,
                &m.tp,
                m.producer_id,
                m.epoch,
                m.commit,
                m.coordinator_epoch,
            ) {
                Ok(write) => {
                    targets.push(write.replicated());
                    outcomes.push(Ok(()));
                }
                Err(e) => outcomes.push(Err(MarkerError::Append(e))),
            }
        }
        let mut waited = self
            .replicas
            .wait_for(targets, MARKER_TIMEOUT)
            .await
            .into_iter();
        for (m, outcome) in markers.iter().zip(outcomes.iter_mut()) {
            if outcome.is_err() {
                continue;
            }
            match waited.next().unwrap_or(HwWait::TimedOut) {
                HwWait::Reached => {
                    if m.tp.topic == OFFSETS_TOPIC {
                        self.groups
                            .txn_marker(m.tp.partition, m.producer_id, m.commit)
                            .await;
                    }
                }
                other => *outcome = Err(MarkerError::Wait(other)),
            }
        }
        outcomes
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
        let sent = self.call(
            leader,
            ApiKey::WriteTxnMarkers,
            1,
            &req,
            MARKER_TIMEOUT + Duration::from_secs(1),
        );
        let resp: WriteTxnMarkersResponse = match sent.await {
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
                    // Taken, or refused because a newer coordinator wrote a marker there
                    // (TRANSACTION_COORDINATOR_FENCED): either way not this one's to retry.
                    if p.error_code == 0 || p.error_code == COORDINATOR_FENCED {
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

    /// One request to `broker` (WriteTxnMarkers, or a KIP-890 verification), on a kept
    /// connection: one of up to `KEPT_PER_BROKER` idle ones, or a new one when all are busy
    /// (verifications of many new transactions at once).
    pub(super) async fn call<Req: Encodable, Resp: Decodable>(
        &self,
        broker: NodeId,
        key: ApiKey,
        version: i16,
        req: &Req,
        timeout: Duration,
    ) -> anyhow::Result<Resp> {
        let cached = self
            .connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&broker)
            .and_then(Vec::pop);
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
        let resp = conn.call(key, version, req, timeout).await?;
        let mut kept = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        let idle = kept.entry(broker).or_default();
        if idle.len() < KEPT_PER_BROKER {
            idle.push(conn);
        }
        Ok(resp)
    }
}

impl MarkerError {
    /// A newer coordinator already wrote a marker for the producer there.
    fn coordinator_fenced(&self) -> bool {
        matches!(
            self,
            MarkerError::Append(ProduceError::Append(crate::replica::AppendError::Log(
                crate::storage::LogError::Producer(ProducerError::CoordinatorFenced { .. })
            )))
        )
    }
}

/// Idle connections kept per broker for markers and verifications.
const KEPT_PER_BROKER: usize = 4;

/// One transaction marker for a partition (WriteTxnMarkers' unit).
pub struct Marker {
    pub tp: TopicPartition,
    pub producer_id: i64,
    pub epoch: i16,
    pub commit: bool,
    pub coordinator_epoch: i32,
}

/// Why a marker was not written here.
#[derive(Debug, thiserror::Error)]
pub enum MarkerError {
    #[error("{0}")]
    Append(ProduceError),
    #[error("the marker was not replicated: {0:?}")]
    Wait(HwWait),
}
