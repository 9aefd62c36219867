//! Broker liveness: every broker registers (id, incarnation, advertised endpoints, rack) and then
//! heartbeats to the leader every `broker.heartbeat.interval.ms` (`run_broker`); the leader's
//! memory of those heartbeats (`Liveness`, in memory: a new leader starts everyone's clock
//! afresh), which its duties (`leader.rs`) read to fence brokers that went silent; and the
//! quorum status any node reports.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::Handle;
use crate::metadata::BrokerRegistration;
use crate::types::NodeId;

/// The leader's memory of heartbeats.
#[derive(Default)]
pub struct Liveness {
    seen: Mutex<HashMap<NodeId, Instant>>,
    /// Incarnations that asked for a controlled shutdown: a late heartbeat must not unfence them.
    pub(super) stopping: Mutex<std::collections::HashSet<uuid::Uuid>>,
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
    pub(super) fn mark(&self, id: NodeId) {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, Instant::now());
    }

    pub(super) fn silent_for(&self, id: NodeId) -> Option<Duration> {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .map(|t| t.elapsed())
    }

    pub(super) fn reset(&self, ids: impl Iterator<Item = NodeId>) {
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.clear();
        for id in ids {
            seen.insert(id, now);
        }
    }
}

impl Handle {
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
