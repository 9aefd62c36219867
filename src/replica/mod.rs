//! Hosted partitions and replication — the replica manager, the only door to them.
//!
//! - `partition.rs`: one partition's log (private), leadership and watermarks; `isr.rs` the
//!   leader's pure HW/ISR arithmetic.
//! - `fetch.rs`: the leader's side of Fetch (consumers and followers); `fetcher.rs` the
//!   follower's side (one task per leader broker).
//! - `cleaner.rs`: the log cleaner's threads, compacting every hosted compacted log.
//! - `throttle.rs`: the replication throttles (leader and follower quotas) that keep a
//!   reassignment's catch-up within `*.replication.throttled.rate`.
//! - `purgatory.rs` + `delayed.rs`: operations that wait (acks=all, long-poll fetches, group
//!   commits, DeleteRecords), completed by partition events or their deadline.
//! - here: `ReplicaManager` — appends (`append`, `append_batches`), waits
//!   (`wait_for`), DeleteRecords, ISR change requests, and the reconciliation that makes the
//!   hosted set follow the metadata image: open logs for partitions this node replicates,
//!   lead or follow at the image's leader epoch, remove deleted ones — idempotently, so it is
//!   safe to run twice and after a restart. Who leads what is told to subscribers (the group
//!   coordinator) as `Leadership` events.
//!
//! Built by `node` and shared as `Arc`; connection tasks call it on the produce and fetch
//! paths (a read lock on a map, never held across I/O); one reconcile task applies every new
//! image.

pub mod cleaner;
pub(crate) mod client;
mod delayed;
mod fetch;
mod fetcher;
mod isr;
mod partition;
mod purgatory;
pub mod throttle;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The storage errors a partition's callers may see (mapped to Kafka codes by `handlers`).
pub use crate::storage::batch::BatchError;
pub use crate::storage::producers::{ActiveProducer, ProducerError, TxnVerification};
pub use crate::storage::LogError;
pub use delayed::{HwWait, Mark, Target};
pub use fetch::{FetchError, FetchParams, FetchPartition, Fetched, PartitionRead, Refused};
pub use isr::IsrChange;
pub use partition::{AppendError, Partition, Produced};

use crate::config::{broker_log_defaults, log_settings, throttled_replica, Config};
use crate::controller::{AlterPartition, Handle};
use crate::metadata::{local_changes, MetadataImage};
use crate::storage::batch::BatchHeader;
use crate::storage::PartitionLog;
use crate::types::{now_ms, LeaderEpoch, NodeId, Offset, TopicPartition};

/// A topic's log settings on this broker. `__consumer_offsets` is always compacted, whatever
/// it was created with (clusters from before compaction made it `delete` with infinite
/// retention and kept it bounded by snapshots instead).
fn topic_log_settings(
    defaults: &crate::config::LogDefaults,
    name: &str,
    configs: &std::collections::BTreeMap<String, String>,
) -> crate::config::LogDefaults {
    let mut settings = log_settings(defaults, configs);
    if name == crate::group::OFFSETS_TOPIC {
        settings.cleanup = crate::config::CleanupPolicy::COMPACT;
    }
    settings
}

/// Why a partition cannot serve a request here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionError {
    UnknownTopicOrPartition,
    NotLeader { leader: NodeId, epoch: LeaderEpoch },
}

/// A client's leader epoch that does not match the partition's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpochError {
    /// The client's epoch is older than ours.
    Fenced,
    /// The client's epoch is newer than ours: our metadata is behind.
    Unknown,
}

/// Checks a client's current leader epoch against ours (-1: the client does not know it).
pub fn check_leader_epoch(client: i32, ours: i32) -> Result<(), EpochError> {
    if client < 0 || client == ours {
        Ok(())
    } else if client < ours {
        Err(EpochError::Fenced)
    } else {
        Err(EpochError::Unknown)
    }
}

/// Why a client's records were not appended.
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error("{0:?}")]
    Partition(PartitionError),
    #[error(transparent)]
    Append(#[from] AppendError),
}

/// A leader write that acks=all (or a group commit) may wait for.
pub struct Write {
    pub produced: Produced,
    pub partition: Arc<Partition>,
}

impl Write {
    /// Wait until every ISR member has this write.
    pub fn replicated(&self) -> Target {
        Target {
            partition: self.partition.clone(),
            mark: Mark::High,
            offset: self.produced.last + 1,
            epoch: self.produced.epoch,
        }
    }
}

/// Why DeleteRecords did not move a partition's log start.
#[derive(Debug)]
pub enum DeleteError {
    Partition(PartitionError),
    /// The offset is negative or beyond the high watermark.
    OffsetOutOfRange,
    Log(LogError),
    Wait(HwWait),
}

/// This node started or stopped leading a partition (told to `subscribe_leadership`).
#[derive(Clone)]
pub enum Leadership {
    Elected {
        partition: Arc<Partition>,
        epoch: LeaderEpoch,
    },
    Resigned {
        tp: TopicPartition,
    },
}

/// Told of leadership changes, synchronously, during reconciliation: it must not block or call
/// back into the manager.
pub type LeadershipListener = Arc<dyn Fn(Leadership) + Send + Sync>;

type OpenResult = partition::Opened;

pub struct ReplicaManager {
    config: Arc<Config>,
    controller: Handle,
    partitions: RwLock<HashMap<TopicPartition, Arc<Partition>>>,
    /// The image the hosted set was last reconciled to; the mutex also serializes reconciles.
    reconciled: Mutex<Arc<MetadataImage>>,
    /// A log failed to open in the last reconcile: the next visits every topic again.
    retry_opens: std::sync::atomic::AtomicBool,
    fetchers: fetcher::Fetchers,
    waits: Arc<delayed::Waits>,
    /// Topics whose leadership changes are told, and to whom.
    leadership: Mutex<Vec<(String, LeadershipListener)>>,
    /// The replication throttles (reassignments), shared with the fetchers.
    throttles: Arc<throttle::Throttles>,
    /// Counters for `/metrics`.
    pub counters: Arc<Counters>,
}

/// The replica manager's event counters (`/metrics`), relaxed atomics.
#[derive(Debug, Default)]
pub struct Counters {
    /// ISR changes that dropped or added members of partitions this broker kept leading.
    pub isr_shrinks: std::sync::atomic::AtomicU64,
    pub isr_expands: std::sync::atomic::AtomicU64,
    /// Consumer fetch record bytes left in the page cache for sendfile, and read into memory.
    pub fetch_zero_copy_bytes: std::sync::atomic::AtomicU64,
    pub fetch_copied_bytes: std::sync::atomic::AtomicU64,
    /// Log cleaner passes finished, and the bytes they took out of the logs.
    pub cleaner_passes: std::sync::atomic::AtomicU64,
    pub cleaner_bytes_removed: std::sync::atomic::AtomicU64,
    /// Hosted partitions whose log was removed (topic deleted, replica moved away).
    pub partitions_removed: std::sync::atomic::AtomicU64,
}

impl ReplicaManager {
    pub fn new(
        config: Arc<Config>,
        peers: Arc<crate::auth::client::ClientSecurity>,
        controller: Handle,
        token: CancellationToken,
    ) -> ReplicaManager {
        let throttles = Arc::new(throttle::Throttles::default());
        ReplicaManager {
            fetchers: fetcher::Fetchers::new(
                config.clone(),
                peers,
                controller.clone(),
                throttles.clone(),
                token,
            ),
            throttles,
            counters: Arc::new(Counters::default()),
            config,
            controller,
            partitions: RwLock::new(HashMap::new()),
            reconciled: Mutex::new(Arc::new(MetadataImage::default())),
            retry_opens: std::sync::atomic::AtomicBool::new(false),
            waits: Arc::new(delayed::Waits::default()),
            leadership: Mutex::new(Vec::new()),
        }
    }

    fn map(&self) -> std::sync::RwLockReadGuard<'_, HashMap<TopicPartition, Arc<Partition>>> {
        self.partitions.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Operations parked in the purgatories: (watermark waits — acks=all produce, group
    /// commits, DeleteRecords — and fetch waits).
    pub fn purgatory_sizes(&self) -> (usize, usize) {
        self.waits.sizes()
    }

    /// Leaders this node's fetchers found gone within the session timeout (connection ended or
    /// refused, none made since): Metadata names no leader for their partitions.
    pub fn unreachable_leaders(&self) -> std::collections::HashSet<NodeId> {
        self.fetchers
            .unreachable
            .leaders(Duration::from_millis(self.config.session_timeout_ms))
    }

    /// The replication throttles (their rates and what they let through).
    pub fn throttles(&self) -> &throttle::Throttles {
        &self.throttles
    }

    pub fn hosted(&self) -> Vec<Arc<Partition>> {
        self.map().values().cloned().collect()
    }

    /// Opens (and recovers) the logs of every partition of `topics` that `image` places here
    /// and is not hosted yet, on `num.recovery.threads.per.data.dir` threads: at start that is
    /// every log.
    fn open_missing(
        &self,
        image: &MetadataImage,
        topics: &[&Arc<crate::metadata::TopicImage>],
    ) -> HashMap<TopicPartition, OpenResult> {
        let me = self.config.node_id;
        let mut wanted = Vec::new();
        let defaults = broker_log_defaults(&self.config.log, &image.dynamic_broker_configs(me));
        {
            let hosted = self.map();
            for topic in topics {
                let settings = topic_log_settings(&defaults, &topic.name, &topic.configs);
                for (i, pi) in topic.partitions.iter().enumerate() {
                    let tp = TopicPartition::new(topic.name.clone(), i as i32);
                    let here = hosted.get(&tp).is_some_and(|p| p.topic_id() == topic.id);
                    if pi.replicas.contains(&me) && !here {
                        wanted.push((tp, topic.id, settings.clone()));
                    }
                }
            }
        }
        let count = wanted.len();
        let threads = self.config.recovery_threads.clamp(1, count.max(1));
        let started = std::time::Instant::now();
        let queue = Mutex::new(wanted.into_iter());
        let opened = Mutex::new(HashMap::with_capacity(count));
        // Progress for the start-up line every few seconds: logs opened, bytes re-validated.
        let done = std::sync::atomic::AtomicUsize::new(0);
        let revalidated = std::sync::atomic::AtomicU64::new(0);
        let work = || loop {
            let next = queue.lock().unwrap_or_else(|p| p.into_inner()).next();
            let Some((tp, id, settings)) = next else {
                return;
            };
            let result = PartitionLog::open(&self.config.log_dir, tp.clone(), id, settings);
            if let Ok((_, rec)) = &result {
                revalidated.fetch_add(rec.recovered_bytes, std::sync::atomic::Ordering::Relaxed);
            }
            opened
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(tp, result);
            done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        };
        if count > 0 {
            std::thread::scope(|s| {
                let (finished, finishing) = std::sync::mpsc::channel();
                for _ in 0..threads {
                    let finished = finished.clone();
                    let work = &work;
                    s.spawn(move || {
                        work();
                        let _ = finished.send(());
                    });
                }
                drop(finished);
                let mut left = threads;
                while left > 0 {
                    match finishing.recv_timeout(std::time::Duration::from_secs(5)) {
                        Ok(()) => left -= 1,
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => tracing::info!(
                            opened = done.load(std::sync::atomic::Ordering::Relaxed),
                            of = count,
                            revalidated_mb =
                                revalidated.load(std::sync::atomic::Ordering::Relaxed) >> 20,
                            elapsed_s = started.elapsed().as_secs(),
                            "opening partition logs"
                        ),
                        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                    }
                }
            });
        }
        if count >= 100 || started.elapsed() >= std::time::Duration::from_secs(5) {
            tracing::info!(
                logs = count,
                threads,
                revalidated_mb = revalidated.load(std::sync::atomic::Ordering::Relaxed) >> 20,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "partition logs opened"
            );
        }
        opened.into_inner().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes the hosted partitions match the newest metadata image. Idempotent and keyed by
    /// leader epoch. The image is read under the reconcile lock, so a pass never goes back to
    /// an older image than the last one (which would remove the partitions created since).
    pub fn reconcile(&self) {
        /// Up to this many partitions changing in one pass are logged one by one; more, as a count.
        const FEW: usize = 10;
        let me = self.config.node_id;
        let mut prev = self.reconciled.lock().unwrap_or_else(|p| p.into_inner());
        let image = &self.controller.image();
        let retry = self
            .retry_opens
            .swap(false, std::sync::atomic::Ordering::Relaxed);
        if Arc::ptr_eq(image, &prev) && !retry {
            return;
        }
        let changes = local_changes(&prev, image, me);
        let few = changes.remove.len() <= FEW;
        let mut removed_count = 0usize;
        for (tp, topic_id) in changes.remove {
            self.fetchers.remove(&tp);
            let removed = self
                .partitions
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&tp);
            if let Some(p) = removed.filter(|p| p.topic_id() == topic_id) {
                if p.is_leader() {
                    self.tell(Leadership::Resigned { tp: tp.clone() });
                }
                if let Err(e) = p.remove_log() {
                    tracing::warn!(%tp, error = %e, "cannot remove partition directory");
                }
                if few {
                    tracing::info!(%tp, %topic_id, "partition removed");
                }
                removed_count += 1;
                self.counters
                    .partitions_removed
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        if !few && removed_count > 0 {
            tracing::info!(partitions = removed_count, "partitions removed");
        }
        if changes.lead.len() <= FEW {
            for (tp, _, epoch) in &changes.lead {
                tracing::info!(%tp, epoch, "leading partition");
            }
        } else {
            tracing::info!(
                partitions = changes.lead.len(),
                first = %changes.lead[0].0,
                "leading partitions"
            );
        }
        // Only the topics changed since the last pass are visited, unless broker-wide settings
        // changed or a log could not be opened last time (it is tried again).
        let visit: Vec<&Arc<crate::metadata::TopicImage>> =
            if retry || prev.broker_configs != image.broker_configs {
                image.topics.values().collect()
            } else {
                crate::metadata::changed_topics(&prev, image)
                    .into_iter()
                    .filter_map(|(_, after)| after)
                    .collect()
            };
        let mut opened = self.open_missing(image, &visit);
        // New logs are written without fsyncs of their own: `make_created_durable` below
        // makes the whole batch durable.
        let created: Vec<TopicPartition> = opened
            .iter()
            .filter(|(_, r)| matches!(r, Ok((_, rec)) if rec.created))
            .map(|(tp, _)| tp.clone())
            .collect();
        let dynamic = image.dynamic_broker_configs(me);
        let defaults = broker_log_defaults(&self.config.log, &dynamic);
        let rate = |name: &str| {
            dynamic
                .get(name)
                .or_else(|| self.config.values.get(name))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(throttle::UNLIMITED)
        };
        self.throttles
            .leader
            .set_rate(rate("leader.replication.throttled.rate"));
        self.throttles
            .follower
            .set_rate(rate("follower.replication.throttled.rate"));
        for topic in visit {
            let settings = topic_log_settings(&defaults, &topic.name, &topic.configs);
            let throttled = |name: &str, i: usize| {
                topic
                    .configs
                    .get(name)
                    .is_some_and(|v| throttled_replica(v, i as i32, me))
            };
            for (i, pi) in topic.partitions.iter().enumerate() {
                if !pi.replicas.contains(&me) {
                    continue;
                }
                let tp = TopicPartition::new(topic.name.clone(), i as i32);
                let existing = self
                    .map()
                    .get(&tp)
                    .filter(|p| p.topic_id() == topic.id)
                    .cloned();
                let partition = match existing {
                    Some(p) => {
                        if p.settings() != settings {
                            p.set_settings(settings.clone());
                        }
                        p
                    }
                    None => match opened.remove(&tp) {
                        None => continue,
                        Some(Ok((log, rec))) => {
                            if rec.truncated || rec.segments > 1 {
                                tracing::info!(%tp, segments = rec.segments, recovered = rec.recovered_segments, truncated = rec.truncated, end = log.log_end_offset(), "log opened");
                            }
                            let p = Arc::new(Partition::new(log, me, self.waits.clone()));
                            self.partitions
                                .write()
                                .unwrap_or_else(|p| p.into_inner())
                                .insert(tp.clone(), p.clone());
                            p
                        }
                        Some(Err(e)) => {
                            self.retry_opens
                                .store(true, std::sync::atomic::Ordering::Relaxed);
                            tracing::error!(%tp, error = %e, "cannot open partition log");
                            continue;
                        }
                    },
                };
                partition.throttled.set(
                    throttled("leader.replication.throttled.replicas", i),
                    throttled("follower.replication.throttled.replicas", i),
                );
                let was = partition.leader();
                let isr_before = partition.isr_len();
                if let Err(e) = partition.apply_image(pi) {
                    tracing::error!(%tp, error = %e, "cannot record the new leader epoch");
                }
                let now = partition.leader();
                // An ISR that changed under a leader that stayed (its own AlterPartition, or
                // the controller fencing a follower).
                if now.0 == me && now == was {
                    use std::sync::atomic::Ordering::Relaxed;
                    match pi.isr.len().cmp(&isr_before) {
                        std::cmp::Ordering::Less => self.counters.isr_shrinks.fetch_add(1, Relaxed),
                        std::cmp::Ordering::Greater => {
                            self.counters.isr_expands.fetch_add(1, Relaxed)
                        }
                        std::cmp::Ordering::Equal => 0,
                    };
                }
                if now.0 == me && now != was {
                    self.tell(Leadership::Elected {
                        partition: partition.clone(),
                        epoch: now.1,
                    });
                } else if was.0 == me && now.0 != me {
                    self.tell(Leadership::Resigned { tp: tp.clone() });
                }
                if pi.leader == me || pi.leader < 0 {
                    self.fetchers.remove(&tp);
                } else {
                    self.fetchers.assign(partition, pi.leader, pi.leader_epoch);
                }
            }
        }
        self.make_created_durable(&created);
        *prev = image.clone();
    }

    /// Makes the logs created by a reconcile durable (files, their directories and the log
    /// directory): a few by fsyncs of their own, many by one sync of the filesystem — creating
    /// 500 partitions is one sync, not 1,500 fsyncs, while a pass that creates a handful does
    /// not write back every dirty page of the disk. (New leader epochs are fsynced with their
    /// log's next flush, as Kafka does since KAFKA-15046.)
    fn make_created_durable(&self, created: &[TopicPartition]) {
        /// Up to this many new logs are fsynced one by one.
        const ONE_BY_ONE: usize = 16;
        if created.is_empty() {
            return;
        }
        let dir = &self.config.log_dir;
        let result = if created.len() > ONE_BY_ONE {
            crate::storage::sync_filesystem(dir).map_err(LogError::from)
        } else {
            let logs: Vec<_> = {
                let map = self.map();
                created
                    .iter()
                    .filter_map(|tp| map.get(tp).cloned())
                    .collect()
            };
            logs.iter()
                .try_for_each(|p| p.make_log_durable())
                .and_then(|()| crate::storage::sync_dir(dir).map_err(LogError::from))
        };
        if let Err(e) = result {
            tracing::error!(error = %e, dir = %dir.display(), logs = created.len(), "cannot make new partition logs durable");
        }
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
        if let Some(found) = self
            .map()
            .get(tp)
            .filter(|f| f.is_leader() && f.leader_epoch() == p.leader_epoch)
        {
            return Ok(found.clone());
        }
        self.reconcile();
        self.map()
            .get(tp)
            .filter(|f| f.is_leader())
            .cloned()
            .ok_or(PartitionError::UnknownTopicOrPartition)
    }

    /// Tells `listener` this node's leadership changes of partitions of `topic` from now on,
    /// starting with the partitions it leads already. Kafka's coordinators learn of their
    /// partitions this way (`onLeadershipChange`): in the same reconciliation that makes the
    /// partition lead, so a coordinator is never told later than a client could find it.
    pub fn subscribe_leadership(&self, topic: &str, listener: LeadershipListener) {
        let mut listeners = self.leadership.lock().unwrap_or_else(|p| p.into_inner());
        for p in self.hosted() {
            if p.tp().topic == topic && p.is_leader() {
                listener(Leadership::Elected {
                    epoch: p.leader_epoch(),
                    partition: p,
                });
            }
        }
        listeners.push((topic.to_string(), listener));
    }

    fn tell(&self, event: Leadership) {
        let topic = match &event {
            Leadership::Elected { partition, .. } => &partition.tp().topic,
            Leadership::Resigned { tp } => &tp.topic,
        };
        let listeners = self.leadership.lock().unwrap_or_else(|p| p.into_inner());
        for (t, listener) in listeners.iter() {
            if t == topic {
                listener(event.clone());
            }
        }
    }

    /// Appends a client's records to the partition this node leads in `image` while it holds
    /// its lease from the quorum: validated, with `min_isr` checked for acks=all.
    pub fn append(
        &self,
        image: &Arc<MetadataImage>,
        tp: &TopicPartition,
        records: &[u8],
        min_isr: Option<usize>,
        verification: TxnVerification,
    ) -> Result<Write, ProduceError> {
        let partition = self.writable(image, tp)?;
        let produced = partition.append_records(records, min_isr, verification)?;
        Ok(Write {
            produced,
            partition,
        })
    }

    /// Starts a KIP-890 verification on a partition this node leads: the guard the producer's
    /// first transactional batch there must be appended under, or `None` when its transaction
    /// is already open there (or this node cannot take the write: the append says why).
    pub fn start_verification(
        &self,
        image: &Arc<MetadataImage>,
        tp: &TopicPartition,
        producer_id: i64,
    ) -> Option<u64> {
        self.writable(image, tp)
            .ok()?
            .start_verification(producer_id)
    }

    /// Drops a verification the coordinator refused (see `start_verification`).
    pub fn end_verification(
        &self,
        image: &Arc<MetadataImage>,
        tp: &TopicPartition,
        producer_id: i64,
        guard: u64,
    ) {
        if let Ok(p) = self.leader_partition(image, tp) {
            p.end_verification(producer_id, guard);
        }
    }

    /// The partition this node leads in `image`, if it may take writes: only while it holds its
    /// lease from the quorum.
    fn writable(
        &self,
        image: &Arc<MetadataImage>,
        tp: &TopicPartition,
    ) -> Result<Arc<Partition>, ProduceError> {
        let partition = self
            .leader_partition(image, tp)
            .map_err(ProduceError::Partition)?;
        if !self.controller.lease_held() {
            // Cut off from the quorum for longer than the lease: another leader may be
            // elected now, so this one takes no write (the client asks again, elsewhere).
            return Err(ProduceError::Partition(PartitionError::NotLeader {
                leader: -1,
                epoch: partition.leader_epoch(),
            }));
        }
        Ok(partition)
    }

    /// Writes a transaction marker (WriteTxnMarkers) to a partition this node leads in
    /// `image`, while it holds its lease. The caller waits for `Write::replicated`, as Kafka
    /// writes markers with acks=all.
    pub fn append_marker(
        &self,
        image: &Arc<MetadataImage>,
        tp: &TopicPartition,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
    ) -> Result<Write, ProduceError> {
        let partition = self.writable(image, tp)?;
        let epoch = partition.leader_epoch();
        let offset = partition
            .append_marker(producer_id, producer_epoch, commit, coordinator_epoch)
            .map_err(|e| ProduceError::Append(AppendError::Log(e)))?;
        Ok(Write {
            produced: Produced {
                first: offset,
                last: offset,
                epoch,
                log_append_time: -1,
                log_start: partition.log_start_offset(),
            },
            partition,
        })
    }

    /// Appends batches the broker itself wrote (the group coordinator's records) to a
    /// partition it leads.
    pub fn append_batches(
        &self,
        partition: &Arc<Partition>,
        batches: &[(BatchHeader, &[u8])],
    ) -> Result<Write, LogError> {
        self.append_batches_verified(partition, batches, TxnVerification::Off)
    }

    /// `append_batches`, a batch that would open a transaction only under `verification`.
    pub fn append_batches_verified(
        &self,
        partition: &Arc<Partition>,
        batches: &[(BatchHeader, &[u8])],
        verification: TxnVerification,
    ) -> Result<Write, LogError> {
        let epoch = partition.leader_epoch();
        let appended = partition.append_verified(batches, verification)?;
        Ok(Write {
            produced: Produced {
                first: appended.first,
                last: appended.last,
                epoch,
                log_append_time: -1,
                log_start: partition.log_start_offset(),
            },
            partition: partition.clone(),
        })
    }

    /// Waits until every target is reached, fails, or `timeout` passes: one outcome each.
    pub async fn wait_for(&self, targets: Vec<Target>, timeout: Duration) -> Vec<HwWait> {
        self.waits.watermarks(targets, timeout).await
    }

    /// DeleteRecords for one partition: moves its log start to `offset` (-1: the high
    /// watermark) and waits until every ISR member's has moved. Returns the low watermark.
    pub async fn delete_records(
        &self,
        image: &Arc<MetadataImage>,
        tp: &TopicPartition,
        offset: Offset,
        timeout: Duration,
    ) -> Result<Offset, DeleteError> {
        let partition = self
            .leader_partition(image, tp)
            .map_err(DeleteError::Partition)?;
        let hw = partition.high_watermark();
        let target = if offset == -1 { hw } else { offset };
        if target < 0 || target > hw {
            return Err(DeleteError::OffsetOutOfRange);
        }
        let epoch = partition.leader_epoch();
        let start = partition
            .advance_log_start(target)
            .map_err(DeleteError::Log)?;
        let wait = Target {
            partition: partition.clone(),
            mark: Mark::Low,
            offset: start,
            epoch,
        };
        match self.wait_for(vec![wait], timeout).await[..] {
            [HwWait::Reached] => Ok(partition.low_watermark()),
            [other] => Err(DeleteError::Wait(other)),
            _ => Err(DeleteError::Wait(HwWait::TimedOut)),
        }
    }

    /// Sends an ISR change to the controller in the background; the partition learns the
    /// outcome from the next image (or may ask again if it failed).
    fn request_isr_change(&self, partition: Arc<Partition>, req: IsrChange) {
        let controller = self.controller.clone();
        tokio::spawn(async move {
            let ask = AlterPartition {
                broker: partition.me(),
                topic_id: partition.topic_id(),
                partition: partition.tp().partition,
                leader_epoch: req.leader_epoch,
                partition_epoch: req.partition_epoch,
                new_isr: req.new_isr,
            };
            let r = controller.alter_partition(ask).await;
            match r {
                Ok((epoch, isr)) => {
                    tracing::info!(tp = %partition.tp(), partition_epoch = epoch, ?isr, "ISR changed")
                }
                Err(e) => {
                    tracing::debug!(tp = %partition.tp(), error = %e, "ISR change refused");
                    partition.alter_failed();
                }
            }
        });
    }

    /// Follows the metadata image until cancelled.
    pub async fn run_reconciler(
        self: Arc<Self>,
        mut images: watch::Receiver<Arc<MetadataImage>>,
        token: CancellationToken,
    ) {
        loop {
            images.borrow_and_update();
            let me = self.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || me.reconcile()).await {
                tracing::error!(error = %e, "reconcile task failed");
            }
            tokio::select! {
                _ = token.cancelled() => return,
                r = images.changed() => if r.is_err() { return },
            }
        }
    }

    /// On leaders: drops followers that lag more than `replica.lag.time.max.ms` from the ISR.
    /// Everywhere: checkpoints high watermarks now and then.
    pub async fn run_isr_and_checkpoints(self: Arc<Self>, token: CancellationToken) {
        let max_lag = Duration::from_millis(self.config.replica_lag_max_ms);
        let every = (max_lag / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
        let mut last_checkpoint = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            self.waits.expire(Instant::now());
            for p in self.hosted() {
                if let Some(req) = p.shrink_request(max_lag) {
                    tracing::info!(tp = %p.tp(), isr = ?req.new_isr, "followers lag; shrinking the ISR");
                    self.request_isr_change(p.clone(), req);
                }
            }
            if last_checkpoint.elapsed() >= Duration::from_secs(5) {
                last_checkpoint = tokio::time::Instant::now();
                let me = self.clone();
                let _ = tokio::task::spawn_blocking(move || me.checkpoint_high_watermarks()).await;
            }
        }
    }

    fn checkpoint_high_watermarks(&self) {
        for p in self.hosted() {
            if let Err(e) = p.checkpoint_high_watermark() {
                tracing::warn!(tp = %p.tp(), error = %e, "cannot checkpoint the high watermark");
            }
        }
    }

    /// Applies retention to every hosted log every `log.retention.check.interval.ms`.
    pub async fn run_retention(self: Arc<Self>, token: CancellationToken) {
        let every = Duration::from_millis(self.config.retention_check_interval_ms);
        self.on_every_log(every, token, |logs| {
            let now = now_ms();
            for p in logs {
                if let Err(e) = p.apply_retention(now) {
                    tracing::warn!(tp = %p.tp(), error = %e, "retention failed");
                }
            }
        })
        .await
    }

    /// Flushes, every `log.flush.scheduler.interval.ms`, each log whose oldest unflushed append
    /// is older than its `flush.ms` (`log.flush.interval.ms`). Logs on the default (never) cost
    /// one settings read per tick.
    pub async fn run_time_flush(self: Arc<Self>, token: CancellationToken) {
        let every = Duration::from_millis(self.config.flush_check_interval_ms);
        self.on_every_log(every, token, |logs| {
            let now = std::time::Instant::now();
            for p in logs {
                if let Err(e) = p.flush_if_due(now) {
                    tracing::error!(tp = %p.tp(), error = %e, "flush failed");
                }
            }
        })
        .await
    }

    /// Every `every` until cancelled, runs `work` over the hosted partitions on the blocking
    /// pool (it does file I/O), one run at a time.
    async fn on_every_log(
        self: Arc<Self>,
        every: Duration,
        token: CancellationToken,
        work: fn(Vec<Arc<Partition>>),
    ) {
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let logs = self.hosted();
            let _ = tokio::task::spawn_blocking(move || work(logs)).await;
        }
    }

    /// fsyncs every log and writes its recovery point and high watermark (clean shutdown).
    pub fn flush_all(&self) {
        for p in self.hosted() {
            if let Err(e) = p.flush() {
                tracing::error!(tp = %p.tp(), error = %e, "flush failed");
            }
        }
        self.checkpoint_high_watermarks();
    }
}
