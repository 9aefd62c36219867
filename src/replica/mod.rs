//! Hosted partitions: each one's log, leader epoch and high watermark, and the reconciliation
//! that makes the set of hosted partitions follow the metadata image.
//!
//! `ReplicaManager` is built by `node` and shared as `Arc`; connection tasks call `partition`
//! on the produce and fetch paths (a read lock on a map, never held across I/O), and one
//! reconcile task applies every new image. The high watermark is published on a per-partition
//! watch channel: acks=all producers and long-polling fetches wait on it (the purgatory).
//! Today every partition has one replica, so the HW is the log end; replication raises it by
//! follower progress instead, without changing the waiters.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::{log_settings, Config};
use crate::metadata::{local_changes, MetadataImage};
use crate::storage::batch::BatchHeader;
use crate::storage::{LogError, PartitionLog};
use crate::types::{now_ms, LeaderEpoch, NodeId, Offset, TopicId, TopicPartition};

/// One hosted partition.
pub struct Partition {
    pub log: PartitionLog,
    leader_epoch: std::sync::atomic::AtomicI32,
    hw: watch::Sender<Offset>,
}

impl Partition {
    pub fn tp(&self) -> &TopicPartition {
        &self.log.tp
    }

    pub fn topic_id(&self) -> TopicId {
        self.log.topic_id
    }

    pub fn leader_epoch(&self) -> LeaderEpoch {
        self.leader_epoch.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn high_watermark(&self) -> Offset {
        *self.hw.borrow()
    }

    /// A receiver that wakes when the high watermark moves.
    pub fn watch_hw(&self) -> watch::Receiver<Offset> {
        self.hw.subscribe()
    }

    /// Appends as leader and advances the high watermark (single replica: to the log end).
    pub fn append(&self, batches: &[(BatchHeader, &[u8])]) -> Result<(Offset, Offset), LogError> {
        let r = self.log.append(batches, self.leader_epoch())?;
        // Concurrent appends may finish out of order: the watermark only moves forward.
        let end = r.1 + 1;
        self.hw.send_if_modified(|hw| {
            let moved = end > *hw;
            if moved {
                *hw = end;
            }
            moved
        });
        Ok(r)
    }

    /// Waits until the high watermark reaches `offset` or `timeout` passes; true if reached.
    pub async fn wait_for_hw(&self, offset: Offset, timeout: Duration) -> bool {
        let mut rx = self.hw.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|hw| *hw >= offset))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// Why a partition cannot serve a request here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionError {
    UnknownTopicOrPartition,
    NotLeader { leader: NodeId, epoch: LeaderEpoch },
}

pub struct ReplicaManager {
    config: Arc<Config>,
    partitions: RwLock<HashMap<TopicPartition, Arc<Partition>>>,
    /// The image the hosted set was last reconciled to; the mutex also serializes reconciles.
    reconciled: Mutex<Arc<MetadataImage>>,
}

impl ReplicaManager {
    pub fn new(config: Arc<Config>) -> ReplicaManager {
        ReplicaManager {
            config,
            partitions: RwLock::new(HashMap::new()),
            reconciled: Mutex::new(Arc::new(MetadataImage::default())),
        }
    }

    fn map(&self) -> std::sync::RwLockReadGuard<'_, HashMap<TopicPartition, Arc<Partition>>> {
        self.partitions.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn hosted(&self) -> Vec<Arc<Partition>> {
        self.map().values().cloned().collect()
    }

    /// Makes the hosted partitions match `image`: open logs for partitions led here, remove
    /// logs of deleted partitions, update log settings from topic configs. Idempotent and keyed
    /// by leader epoch, so it is safe to call again with the same or an older image.
    pub fn reconcile(&self, image: &Arc<MetadataImage>) {
        let mut prev = self.reconciled.lock().unwrap_or_else(|p| p.into_inner());
        let changes = local_changes(&prev, image, self.config.node_id);
        for (tp, topic_id) in changes.remove {
            let removed = self
                .partitions
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&tp);
            if let Some(p) = removed {
                if let Err(e) = p.log.remove() {
                    tracing::warn!(%tp, error = %e, "cannot remove partition directory");
                }
                tracing::info!(%tp, %topic_id, "partition removed");
            }
        }
        for (tp, topic_id, epoch) in changes.lead {
            let existing = self.map().get(&tp).cloned();
            if let Some(p) = existing.filter(|p| p.topic_id() == topic_id) {
                p.leader_epoch
                    .store(epoch, std::sync::atomic::Ordering::Release);
                continue;
            }
            let configs = image
                .topic(&tp.topic)
                .map(|t| t.configs.clone())
                .unwrap_or_default();
            let settings = log_settings(&self.config.log, &configs);
            match PartitionLog::open(&self.config.log_dir, tp.clone(), topic_id, settings) {
                Ok((log, rec)) => {
                    if rec.truncated || rec.segments > 1 {
                        tracing::info!(%tp, segments = rec.segments, recovered = rec.recovered_segments, truncated = rec.truncated, end = log.log_end_offset(), "log opened");
                    }
                    let end = log.log_end_offset();
                    let (hw, _) = watch::channel(end);
                    let p = Arc::new(Partition {
                        log,
                        leader_epoch: std::sync::atomic::AtomicI32::new(epoch),
                        hw,
                    });
                    self.partitions
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(tp, p);
                }
                Err(e) => tracing::error!(%tp, error = %e, "cannot open partition log"),
            }
        }
        for p in self.hosted() {
            if let Some(t) = image.topic(&p.tp().topic) {
                let s = log_settings(&self.config.log, &t.configs);
                if s != p.log.settings() {
                    p.log.set_settings(s);
                }
            }
        }
        *prev = image.clone();
    }

    /// The partition if this node leads it in `image`, reconciling first if the image is newer
    /// than what has been applied (so a just-created topic is writable at once).
    pub fn leader_partition(
        &self,
        image: &Arc<MetadataImage>,
        tp: &TopicPartition,
    ) -> Result<Arc<Partition>, PartitionError> {
        let Some(p) = image.partition(tp) else {
            return Err(PartitionError::UnknownTopicOrPartition);
        };
        if p.leader != self.config.node_id {
            return Err(PartitionError::NotLeader {
                leader: p.leader,
                epoch: p.leader_epoch,
            });
        }
        if let Some(found) = self.map().get(tp) {
            return Ok(found.clone());
        }
        self.reconcile(image);
        self.map()
            .get(tp)
            .cloned()
            .ok_or(PartitionError::UnknownTopicOrPartition)
    }

    /// Follows the metadata image until cancelled.
    pub async fn run_reconciler(
        self: Arc<Self>,
        mut images: watch::Receiver<Arc<MetadataImage>>,
        token: CancellationToken,
    ) {
        loop {
            let image = images.borrow_and_update().clone();
            let me = self.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || me.reconcile(&image)).await {
                tracing::error!(error = %e, "reconcile task failed");
            }
            tokio::select! {
                _ = token.cancelled() => return,
                r = images.changed() => if r.is_err() { return },
            }
        }
    }

    /// Applies retention to every hosted log every `log.retention.check.interval.ms`.
    pub async fn run_retention(self: Arc<Self>, token: CancellationToken) {
        let every = Duration::from_millis(self.config.retention_check_interval_ms);
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let me = self.clone();
            let _ = tokio::task::spawn_blocking(move || {
                let now = now_ms();
                for p in me.hosted() {
                    if let Err(e) = p.log.apply_retention(now) {
                        tracing::warn!(tp = %p.tp(), error = %e, "retention failed");
                    }
                }
            })
            .await;
        }
    }

    /// fsyncs every log and writes its recovery point (clean shutdown).
    pub fn flush_all(&self) {
        for p in self.hosted() {
            if let Err(e) = p.log.flush() {
                tracing::error!(tp = %p.tp(), error = %e, "flush failed");
            }
        }
    }
}
