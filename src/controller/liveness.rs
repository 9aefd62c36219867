//! Broker liveness and the leader's duties.
//!
//! Every broker registers (id, incarnation, advertised endpoints, rack) and then heartbeats to
//! the leader every `broker.heartbeat.interval.ms` (`run_broker`). The leader remembers when it
//! last heard from each broker (in memory: a new leader starts everyone's clock afresh) and,
//! once a broker has been silent for `broker.session.timeout.ms`, commits its fencing together
//! with the partition changes that follow (new leaders from the ISR, epoch + 1). A heartbeat from
//! a fenced broker unfences it. The leader also writes the cluster id once, and answers ISR
//! changes (AlterPartition) checked against the partition epoch.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{AdminError, Handle, RaftNodeId};
use crate::metadata::{fence_changes, unfence_changes, BrokerRegistration, MetadataRecord};
use crate::types::{NodeId, TopicId};

/// The leader's memory of heartbeats.
#[derive(Default)]
pub struct Liveness {
    seen: Mutex<HashMap<NodeId, Instant>>,
    /// Incarnations that asked for a controlled shutdown: a late heartbeat must not unfence them.
    stopping: Mutex<std::collections::HashSet<uuid::Uuid>>,
}

/// The quorum as one node sees it (the leader's view has every voter's progress).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct QuorumStatus {
    pub cluster_id: String,
    pub node_id: NodeId,
    pub leader_id: NodeId,
    pub term: u64,
    /// The last committed-and-applied metadata log index.
    pub high_watermark: i64,
    pub voters: Vec<VoterStatus>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct VoterStatus {
    pub id: NodeId,
    /// The last log index known to be on that voter (-1: unknown).
    pub log_end_offset: i64,
}

impl Liveness {
    fn mark(&self, id: NodeId) {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, Instant::now());
    }

    fn silent_for(&self, id: NodeId) -> Option<Duration> {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .map(|t| t.elapsed())
    }

    fn reset(&self, ids: impl Iterator<Item = NodeId>) {
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.clear();
        for id in ids {
            seen.insert(id, now);
        }
    }
}

impl Handle {
    /// Runs on every node; acts only while this node leads.
    pub(super) async fn run_leader_duties(self, token: CancellationToken) {
        let session = Duration::from_millis(self.config.session_timeout_ms);
        let rebalance_every = Duration::from_millis(self.config.leader_imbalance_check_ms);
        let mut last_rebalance = Instant::now();
        let mut led_term = None;
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
            if !self.is_leader() {
                led_term = None;
                continue;
            }
            let term = self.raft.metrics().borrow().current_term;
            let image = self.image();
            if led_term != Some(term) {
                // New leader: everyone gets a full session from now.
                self.liveness.reset(image.brokers.keys().copied());
                led_term = Some(term);
                tracing::info!(term, "this node is now the metadata leader (controller)");
            }
            if image.cluster_id.is_empty() {
                let cluster_id = uuid::Uuid::new_v4().simple().to_string();
                if let Err(e) = self
                    .propose(vec![MetadataRecord::InitCluster { cluster_id }])
                    .await
                {
                    tracing::warn!(error = %e, "cannot write the cluster id yet");
                }
                continue;
            }
            if self.config.auto_leader_rebalance && last_rebalance.elapsed() >= rebalance_every {
                last_rebalance = Instant::now();
                self.rebalance_leaders().await;
            }
            for b in image.brokers.values().filter(|b| !b.fenced) {
                // A broker this leader has not heard of yet (its registration reached the image
                // after the leader took over) gets a full session from now.
                let Some(silent) = self.liveness.silent_for(b.id) else {
                    self.liveness.mark(b.id);
                    continue;
                };
                if silent < session {
                    continue;
                }
                let mut records = vec![MetadataRecord::FenceBroker { id: b.id }];
                records.extend(fence_changes(
                    &image,
                    b.id,
                    self.config.unclean_leader_election,
                ));
                let moved = records.len() - 1;
                match self.propose(records).await {
                    Ok(_) => tracing::warn!(
                        broker = b.id,
                        silent_ms = silent.as_millis() as u64,
                        partitions = moved,
                        "fenced a broker whose heartbeats stopped"
                    ),
                    Err(e) => tracing::warn!(broker = b.id, error = %e, "cannot fence broker"),
                }
                break; // the image changed: look again with the new one
            }
        }
    }

    /// Registration, on the leader: the broker's endpoints, unfenced, and leaderless partitions
    /// it can lead again.
    pub(super) async fn register_local(&self, reg: BrokerRegistration) -> Result<(), AdminError> {
        let id = reg.id;
        let image = self.image();
        if image.cluster_id.is_empty() {
            // The new leader writes it within moments; the broker retries.
            return Err(AdminError::NoQuorum(
                "the cluster id is not written yet".into(),
            ));
        }
        let mut records = vec![MetadataRecord::RegisterBroker(reg)];
        records.extend(unfence_changes(&image, id));
        self.propose(records).await?;
        self.liveness.mark(id);
        Ok(())
    }

    /// A heartbeat, on the leader. Returns (registered, fenced after this heartbeat).
    pub(super) async fn heartbeat_local(
        &self,
        id: NodeId,
        incarnation: uuid::Uuid,
    ) -> Result<(bool, bool), AdminError> {
        let image = self.image();
        let Some(reg) = image.brokers.get(&id) else {
            return Ok((false, false));
        };
        if reg.incarnation != incarnation {
            return Ok((false, false));
        }
        if self
            .liveness
            .stopping
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&incarnation)
        {
            return Ok((true, true));
        }
        self.liveness.mark(id);
        if reg.fenced {
            let mut records = vec![MetadataRecord::UnfenceBroker { id }];
            records.extend(unfence_changes(&image, id));
            self.propose(records).await?;
            tracing::info!(broker = id, "unfenced a broker whose heartbeats resumed");
        }
        Ok((true, false))
    }

    /// A broker about to stop, on the leader: fence it now with the partition changes that
    /// follow, so clients move to the new leaders before its connections close.
    pub(super) async fn controlled_shutdown_local(
        &self,
        id: NodeId,
        incarnation: uuid::Uuid,
    ) -> Result<(), AdminError> {
        let image = self.image();
        let Some(reg) = image.brokers.get(&id) else {
            return Ok(());
        };
        if reg.incarnation != incarnation || reg.fenced {
            return Ok(());
        }
        self.liveness
            .stopping
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(incarnation);
        let mut records = vec![MetadataRecord::FenceBroker { id }];
        records.extend(fence_changes(&image, id, false));
        let moved = records.len() - 1;
        self.propose(records).await?;
        tracing::info!(
            broker = id,
            partitions = moved,
            "controlled shutdown: broker fenced, leadership moved"
        );
        Ok(())
    }

    /// Moves leadership back to each partition's preferred (first) replica where it is alive
    /// and in the ISR. Pure planning over the image; one command.
    async fn rebalance_leaders(&self) {
        let image = self.image();
        let records = crate::metadata::preferred_leader_changes(&image);
        if records.is_empty() {
            return;
        }
        let n = records.len();
        match self.propose(records).await {
            Ok(_) => tracing::info!(
                partitions = n,
                "moved leadership back to preferred replicas"
            ),
            Err(e) => tracing::debug!(error = %e, "preferred leader election failed"),
        }
    }

    /// An ISR change asked for by a partition's leader, on the controller. Refused when the
    /// asker is not the leader at that epoch or knows an old partition epoch.
    pub(super) async fn alter_partition_local(
        &self,
        broker: NodeId,
        topic_id: TopicId,
        partition: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        new_isr: Vec<NodeId>,
    ) -> Result<(i32, Vec<NodeId>), AdminError> {
        let image = self.image();
        let p = image
            .topic_by_id(topic_id)
            .and_then(|t| {
                usize::try_from(partition)
                    .ok()
                    .and_then(|i| t.partitions.get(i))
            })
            .ok_or_else(|| AdminError::UnknownTopic(topic_id.to_string()))?;
        if p.leader != broker || p.leader_epoch != leader_epoch {
            return Err(AdminError::Stale(format!(
                "broker {broker} at epoch {leader_epoch} is not the leader (leader {} at epoch {})",
                p.leader, p.leader_epoch
            )));
        }
        if p.partition_epoch != partition_epoch {
            return Err(AdminError::Stale(format!(
                "partition epoch {partition_epoch} is stale; current is {}",
                p.partition_epoch
            )));
        }
        // A fenced (or stopping) broker may not join an ISR: it is not there to stay.
        if let Some(b) = new_isr
            .iter()
            .find(|b| !p.isr.contains(b) && image.brokers.get(b).is_none_or(|r| r.fenced))
        {
            return Err(AdminError::Stale(format!(
                "broker {b} is fenced and cannot join the ISR"
            )));
        }
        if new_isr.is_empty()
            || !new_isr.contains(&broker)
            || new_isr.iter().any(|b| !p.replicas.contains(b))
        {
            return Err(AdminError::Stale(format!(
                "ISR {new_isr:?} must hold the leader and only replicas"
            )));
        }
        let record = MetadataRecord::PartitionChange {
            topic_id,
            partition,
            leader: broker,
            isr: new_isr.clone(),
            leader_epoch,
            partition_epoch: partition_epoch + 1,
        };
        self.propose(vec![record]).await?;
        Ok((partition_epoch + 1, new_isr))
    }

    /// Adds a broker-only node as a learner (idempotent), on the leader.
    pub(super) async fn add_learner_local(
        &self,
        id: NodeId,
        address: String,
    ) -> Result<(), AdminError> {
        if self.config.voters.iter().any(|v| v.id == id) {
            return Err(AdminError::InvalidReplicaAssignment(format!(
                "node {id} is a voter, not a learner"
            )));
        }
        let known = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&(id as RaftNodeId))
            .is_some_and(|n| n.addr == address);
        if known {
            return Ok(());
        }
        self.raft
            .add_learner(id as RaftNodeId, openraft::BasicNode::new(address), false)
            .await
            .map_err(|e| AdminError::NoQuorum(e.to_string()))?;
        tracing::info!(node = id, "added a broker-only node as a metadata learner");
        Ok(())
    }

    /// This node's view of the quorum.
    pub(super) fn quorum_local(&self) -> QuorumStatus {
        let m = self.raft.metrics().borrow().clone();
        let progress = m.replication.clone().unwrap_or_default();
        let last_index = m.last_log_index.map(|i| i as i64).unwrap_or(-1);
        let voters = self
            .config
            .voters
            .iter()
            .map(|v| {
                let log_end_offset = if v.id == self.config.node_id {
                    last_index
                } else {
                    progress
                        .get(&(v.id as RaftNodeId))
                        .and_then(|l| l.as_ref())
                        .map(|l| l.index as i64)
                        .unwrap_or(-1)
                };
                VoterStatus {
                    id: v.id,
                    log_end_offset,
                }
            })
            .collect();
        QuorumStatus {
            cluster_id: self.cluster_id(),
            node_id: self.config.node_id,
            leader_id: m.current_leader.map(|l| l as NodeId).unwrap_or(-1),
            term: m.current_term,
            high_watermark: m.last_applied.map(|l| l.index as i64).unwrap_or(-1),
            voters,
        }
    }

    /// Runs on every broker: register, then heartbeat until cancelled; registers again when the
    /// leader no longer knows this incarnation. `registered` is told once the first one lands.
    pub async fn run_broker(
        self,
        reg: BrokerRegistration,
        registered: tokio::sync::watch::Sender<bool>,
        token: CancellationToken,
    ) {
        let every = Duration::from_millis(self.config.heartbeat_interval_ms);
        let mut is_registered = false;
        let mut warned = Instant::now() - Duration::from_secs(60);
        loop {
            if token.is_cancelled() {
                return;
            }
            if !is_registered {
                let joined = if self.is_voter() {
                    Ok(())
                } else {
                    self.join_as_learner(Duration::from_secs(2)).await
                };
                match joined.and(self.register(&reg, Duration::from_secs(2)).await) {
                    Ok(cluster_id) => {
                        tracing::info!(broker = reg.id, %cluster_id, "registered with the controller");
                        is_registered = true;
                        registered.send_replace(true);
                    }
                    Err(e) => {
                        if warned.elapsed() > Duration::from_secs(10) {
                            tracing::warn!(error = %e, "waiting for the metadata quorum to register this broker");
                            warned = Instant::now();
                        }
                        tokio::select! {
                            _ = token.cancelled() => return,
                            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                        }
                        continue;
                    }
                }
            }
            match self.heartbeat(reg.id, reg.incarnation, every * 2).await {
                Ok((false, _)) => is_registered = false,
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "heartbeat failed"),
            }
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }
}
