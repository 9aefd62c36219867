//! The transaction coordinator (KIP-98): transactional ids and their transactions, kept in the
//! replicated, compacted `__transaction_state` topic. In three parts:
//!
//! - here, the request API (FindCoordinator for transactions, InitProducerId with a
//!   transactional id, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, DescribeTransactions,
//!   ListTransactions): each request finds its id's shard, decides on the id's state
//!   (`state.rs`, pure), writes the new state and answers once it is replicated;
//! - `shard.rs`: one `__transaction_state` partition this node leads (the hash of the id picks
//!   it, as Kafka's does), loaded by replaying its log when the replica manager tells of
//!   leadership, and the timers: transactions past their timeout are aborted, idle ids expire;
//! - `markers.rs`: completing a decided transaction — a marker to every partition it wrote
//!   (locally through the replica manager, or WriteTxnMarkers to the partition's leader), then
//!   the Complete state. A new coordinator resumes the markers of every Prepare state it loads.
//!
//! The coordinator epoch markers carry is the leader epoch of the shard's partition.
//! `Coordinator` is built by `node` and shared with every listener's handlers; one background
//! task (`run`) follows leadership and drives the timers.

mod markers;
pub mod records;
mod shard;
pub mod state;
mod verify;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;

use crate::auth::client::ClientSecurity;
use crate::config::Config;
use crate::controller::Handle;
use crate::group::{partition_for, OFFSETS_TOPIC};
use crate::handlers::init_producer_id::ProducerIds;
use crate::replica::{HwWait, Mark, ReplicaManager, Target};
use crate::storage::{batch, records::encode_batch};
use crate::types::{now_ms, NodeId};

pub use markers::{Marker, MarkerError};
use shard::Shard;
use state::{EndStep, InitStep};
pub use state::{TxnError, TxnMeta, TxnState};

pub const TXN_TOPIC: &str = "__transaction_state";

/// How long a request waits for a shard that is loading before it is answered
/// COORDINATOR_LOAD_IN_PROGRESS.
const LOAD_WAIT: Duration = Duration::from_secs(2);

/// A transaction as ListTransactions reports it.
pub struct Listed {
    pub transactional_id: String,
    pub producer_id: i64,
    pub state: TxnState,
    pub start_ms: i64,
}

/// What the coordinator has done since start (`/metrics`).
#[derive(Default, Debug)]
pub struct TxnCounters {
    pub committed: std::sync::atomic::AtomicU64,
    pub aborted: std::sync::atomic::AtomicU64,
    /// Aborted by the coordinator: open past their `transaction.timeout.ms`.
    pub timed_out: std::sync::atomic::AtomicU64,
}

pub struct Coordinator {
    pub counters: TxnCounters,
    config: Arc<Config>,
    controller: Handle,
    replicas: Arc<ReplicaManager>,
    groups: Arc<crate::group::Coordinator>,
    producer_ids: Arc<ProducerIds>,
    /// How this broker connects to others (WriteTxnMarkers).
    peers: Arc<ClientSecurity>,
    shards: Mutex<HashMap<i32, Arc<Shard>>>,
    /// One creation of the transaction topic at a time.
    creating: tokio::sync::Mutex<()>,
    /// Idle connections per broker that markers and verifications are sent to (a few each).
    connections: Mutex<HashMap<NodeId, Vec<crate::replica::client::Connection>>>,
}

impl Coordinator {
    pub fn new(
        config: Arc<Config>,
        controller: Handle,
        replicas: Arc<ReplicaManager>,
        groups: Arc<crate::group::Coordinator>,
        producer_ids: Arc<ProducerIds>,
        peers: Arc<ClientSecurity>,
    ) -> Self {
        Coordinator {
            counters: TxnCounters::default(),
            config,
            controller,
            replicas,
            groups,
            producer_ids,
            peers,
            shards: Mutex::new(HashMap::new()),
            creating: tokio::sync::Mutex::new(()),
            connections: Mutex::new(HashMap::new()),
        }
    }

    fn shards(&self) -> MutexGuard<'_, HashMap<i32, Arc<Shard>>> {
        self.shards.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// FindCoordinator (key type 1): the broker leading the id's `__transaction_state`
    /// partition, creating the topic on first use.
    pub async fn coordinator_for(&self, transactional_id: &str) -> Result<NodeId, TxnError> {
        if self.controller.image().topic(TXN_TOPIC).is_none() {
            self.create_topic().await?;
        }
        self.coordinator_of(transactional_id)
    }

    async fn create_topic(&self) -> Result<(), TxnError> {
        let _one = self.creating.lock().await;
        if self.controller.image().topic(TXN_TOPIC).is_some() {
            return Ok(());
        }
        let t = &self.config.txn;
        let live = self.controller.image().live_brokers().len() as i32;
        let min_isr = t
            .log_min_isr
            .min(i32::from(t.log_replication_factor).min(live.max(1)));
        let configs = [
            ("cleanup.policy", "compact".to_string()),
            ("segment.bytes", t.log_segment_bytes.to_string()),
            ("min.insync.replicas", min_isr.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        self.controller
            .create_internal_topic(
                TXN_TOPIC,
                t.log_partitions,
                t.log_replication_factor,
                configs,
            )
            .await
            .map_err(|_| TxnError::CoordinatorNotAvailable)
    }

    /// The loaded shard holding `transactional_id`, waiting up to `LOAD_WAIT` for one that is
    /// loading.
    async fn shard_for(&self, transactional_id: &str) -> Result<Arc<Shard>, TxnError> {
        if !records::id_fits(transactional_id) {
            return Err(TxnError::InvalidTxnState);
        }
        let image = self.controller.image();
        let topic = image.topic(TXN_TOPIC).ok_or(TxnError::NotCoordinator)?;
        let p = partition_for(transactional_id, topic.partitions.len() as i32);
        let epoch = topic
            .partitions
            .get(p as usize)
            .filter(|pi| pi.leader == self.config.node_id)
            .ok_or(TxnError::NotCoordinator)?
            .leader_epoch;
        let current = || self.shards().get(&p).filter(|s| s.epoch == epoch).cloned();
        let shard = match current() {
            Some(s) => s,
            None => {
                // The image says this node leads, but the replica manager has not applied it
                // yet: applying it now tells this coordinator, which starts loading.
                let tp = crate::types::TopicPartition::new(TXN_TOPIC.to_string(), p);
                let _ = self.replicas.leader_partition(&image, &tp);
                current().ok_or(TxnError::LoadInProgress)?
            }
        };
        if !shard.is_loaded() {
            let mut loaded = shard.loaded.subscribe();
            let _ = tokio::time::timeout(LOAD_WAIT, loaded.wait_for(|l| *l)).await;
            if !shard.is_loaded() {
                return Err(TxnError::LoadInProgress);
            }
        }
        Ok(shard)
    }

    /// The shard and cell of an id that was initialized here; `missing` when it was not.
    async fn existing(
        &self,
        transactional_id: &str,
        missing: TxnError,
    ) -> Result<(Arc<Shard>, shard::Cell), TxnError> {
        let shard = self.shard_for(transactional_id).await?;
        let cell = shard.existing(transactional_id).ok_or(missing)?;
        Ok((shard, cell))
    }

    /// Writes `meta` (None: a tombstone) for `transactional_id` to the shard's partition and
    /// waits until it is replicated. The caller holds the id's lock.
    async fn write(
        &self,
        shard: &Shard,
        transactional_id: &str,
        meta: Option<&TxnMeta>,
    ) -> Result<(), TxnError> {
        let part = &shard.partition;
        if !part.leads_at(shard.epoch) {
            return Err(TxnError::NotCoordinator);
        }
        let record = (
            Some(records::encode_key(transactional_id)),
            meta.map(records::encode_value),
            now_ms(),
        );
        let bytes = encode_batch(&[record], kafka_protocol::records::Compression::None)
            .map_err(|_| TxnError::CoordinatorNotAvailable)?;
        let batches =
            batch::validate(&bytes, usize::MAX).map_err(|_| TxnError::CoordinatorNotAvailable)?;
        let input: Vec<(batch::BatchHeader, &[u8])> = batches
            .iter()
            .map(|(h, r)| (*h, &bytes[r.clone()]))
            .collect();
        let write = self.replicas.append_batches(part, &input).map_err(|e| {
            tracing::warn!(partition = shard.index, error = %e, "cannot append to {TXN_TOPIC}");
            TxnError::NotCoordinator
        })?;
        let target = Target {
            partition: part.clone(),
            mark: Mark::High,
            offset: write.produced.last + 1,
            epoch: shard.epoch,
        };
        let timeout = Duration::from_millis(self.config.groups.commit_timeout_ms);
        match self.replicas.wait_for(vec![target], timeout).await[..] {
            [HwWait::Reached] => Ok(()),
            [HwWait::NotLeader] => Err(TxnError::NotCoordinator),
            _ => Err(TxnError::CoordinatorNotAvailable),
        }
    }

    /// InitProducerId with a transactional id: the id's producer at its next epoch (fencing
    /// every older one), a new producer id for a new id, or CONCURRENT_TRANSACTIONS while an
    /// open transaction of the old producer is being aborted.
    pub async fn init_producer_id(
        self: &Arc<Self>,
        transactional_id: &str,
        timeout_ms: i32,
        request: (i64, i16),
    ) -> Result<(i64, i16), TxnError> {
        if timeout_ms <= 0 || timeout_ms > self.config.txn.max_timeout_ms {
            return Err(TxnError::InvalidTransactionTimeout);
        }
        let shard = self.shard_for(transactional_id).await?;
        let cell = shard.txn(transactional_id);
        let mut guard = cell.lock().await;
        let now = now_ms();
        let next = match state::init(guard.as_ref(), request, timeout_ms, now)? {
            InitStep::Write(next) => next,
            InitStep::NewProducer => {
                let id = self
                    .producer_ids
                    .next(&self.controller, self.config.node_id)
                    .await
                    .map_err(|_| TxnError::CoordinatorNotAvailable)?;
                state::fresh(id, timeout_ms, now)
            }
            InitStep::AbortFirst(abort) => {
                self.write(&shard, transactional_id, Some(&abort)).await?;
                tracing::info!(
                    transactional_id,
                    producer_id = abort.producer_id,
                    epoch = abort.epoch,
                    "a new producer fenced an open transaction; aborting it"
                );
                *guard = Some(abort);
                drop(guard);
                self.spawn_completion(&shard, transactional_id);
                return Err(TxnError::ConcurrentTransactions);
            }
        };
        self.write(&shard, transactional_id, Some(&next)).await?;
        let answer = (next.producer_id, next.epoch);
        *guard = Some(next);
        Ok(answer)
    }

    /// AddPartitionsToTxn and AddOffsetsToTxn: the partitions join the open transaction (which
    /// this opens when there is none).
    pub async fn add_partitions(
        &self,
        transactional_id: &str,
        producer: (i64, i16),
        partitions: &[(String, i32)],
    ) -> Result<(), TxnError> {
        let (shard, cell) = self
            .existing(transactional_id, TxnError::InvalidProducerIdMapping)
            .await?;
        let mut guard = cell.lock().await;
        let Some(meta) = guard.as_ref() else {
            return Err(TxnError::InvalidProducerIdMapping);
        };
        let Some(next) = state::add_partitions(meta, producer.0, producer.1, partitions, now_ms())?
        else {
            return Ok(());
        };
        self.write(&shard, transactional_id, Some(&next)).await?;
        *guard = Some(next);
        Ok(())
    }

    /// AddOffsetsToTxn: the group's offsets partition joins the transaction.
    pub async fn add_offsets(
        &self,
        transactional_id: &str,
        producer: (i64, i16),
        group_id: &str,
    ) -> Result<(), TxnError> {
        // The offsets topic must exist for the group to have a partition.
        self.groups
            .coordinator_for(group_id)
            .await
            .map_err(|_| TxnError::CoordinatorNotAvailable)?;
        let image = self.controller.image();
        let count = image
            .topic(OFFSETS_TOPIC)
            .map(|t| t.partitions.len() as i32)
            .ok_or(TxnError::CoordinatorNotAvailable)?;
        let tp = (OFFSETS_TOPIC.to_string(), partition_for(group_id, count));
        self.add_partitions(transactional_id, producer, &[tp]).await
    }

    /// EndTxn: decides the open transaction (written and replicated before the answer) and
    /// completes it in the background.
    pub async fn end_txn(
        self: &Arc<Self>,
        transactional_id: &str,
        producer: (i64, i16),
        commit: bool,
    ) -> Result<(), TxnError> {
        let (shard, cell) = self
            .existing(transactional_id, TxnError::InvalidProducerIdMapping)
            .await?;
        let mut guard = cell.lock().await;
        let Some(meta) = guard.as_ref() else {
            return Err(TxnError::InvalidProducerIdMapping);
        };
        match state::end(meta, producer.0, producer.1, commit, now_ms())? {
            EndStep::Done => Ok(()),
            EndStep::Prepare(next) => {
                self.write(&shard, transactional_id, Some(&next)).await?;
                tracing::debug!(
                    transactional_id,
                    commit,
                    partitions = next.partitions.len(),
                    "transaction decided"
                );
                *guard = Some(next);
                drop(guard);
                self.spawn_completion(&shard, transactional_id);
                Ok(())
            }
        }
    }

    /// DescribeTransactions: the id's state.
    pub async fn describe(&self, transactional_id: &str) -> Result<TxnMeta, TxnError> {
        let (_, cell) = self
            .existing(transactional_id, TxnError::UnknownTransactionalId)
            .await?;
        let guard = cell.lock().await;
        guard.clone().ok_or(TxnError::UnknownTransactionalId)
    }

    /// ListTransactions: every id of the loaded shards.
    pub async fn list(&self) -> Vec<Listed> {
        let shards: Vec<Arc<Shard>> = self.shards().values().cloned().collect();
        let mut out = Vec::new();
        for shard in shards.iter().filter(|s| s.is_loaded()) {
            for (id, cell) in shard.all() {
                if let Some(m) = cell.lock().await.as_ref() {
                    out.push(Listed {
                        transactional_id: id,
                        producer_id: m.producer_id,
                        state: m.state,
                        start_ms: m.start_ms,
                    });
                }
            }
        }
        out.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        out
    }

    /// How many transactional ids this broker coordinates, by state (`/metrics`; an id whose
    /// lock is held at that moment is left out).
    pub fn states(&self) -> std::collections::BTreeMap<&'static str, usize> {
        let shards: Vec<Arc<Shard>> = self.shards().values().cloned().collect();
        let mut out = std::collections::BTreeMap::new();
        for (_, cell) in shards.iter().flat_map(|s| s.all()) {
            if let Ok(guard) = cell.try_lock() {
                if let Some(m) = guard.as_ref() {
                    *out.entry(m.state.name()).or_insert(0) += 1;
                }
            }
        }
        out
    }

    /// Whether any shard of this coordinator is still loading (ListTransactions answers
    /// COORDINATOR_LOAD_IN_PROGRESS then).
    pub fn loading(&self) -> bool {
        self.shards().values().any(|s| !s.is_loaded())
    }
}

/// One record of `__transaction_state` as a replay reads it.
fn decode(key: Option<&Bytes>, value: Option<&Bytes>) -> Option<(String, Option<TxnMeta>)> {
    let id = records::decode_key(key?)?;
    match value {
        None => Some((id, None)),
        Some(v) => Some((id, Some(records::decode_value(v)?))),
    }
}
