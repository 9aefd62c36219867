//! Follower fetchers: one task per leader broker, carrying every partition this node follows
//! on it. Before fetching a partition at a new leader epoch the follower asks the leader
//! (OffsetForLeaderEpoch) where their logs stop agreeing and truncates there, so no replica
//! keeps records the leader does not have. Then it fetches with its replica id, appends the
//! batches unchanged and adopts the leader's high watermark.
//!
//! `Fetchers` is owned by `ReplicaManager`; `assign` / `remove` are called by reconciliation
//! and are idempotent, keyed by leader and leader epoch.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tokio_util::sync::CancellationToken;

use super::client::Connection;
use super::partition::Partition;
use super::throttle::Throttles;
use crate::auth::client::ClientSecurity;
use crate::config::Config;
use crate::controller::Handle;
use crate::storage::batch;
use crate::types::{LeaderEpoch, NodeId, TopicPartition};

const FETCH_VERSION: i16 = 12;
const EPOCH_VERSION: i16 = 4;

/// One followed partition.
#[derive(Clone)]
struct Slot {
    partition: Arc<Partition>,
    epoch: LeaderEpoch,
    /// Truncate (OffsetForLeaderEpoch) before the next fetch.
    truncate: bool,
    /// The leader refused this epoch: wait for new metadata (or retry after this instant, in
    /// case the leader had not caught up with the metadata yet).
    stale_until: Option<Instant>,
}

impl Slot {
    fn stale(&self) -> bool {
        self.stale_until.is_some_and(|t| t > Instant::now())
    }
}

/// A new leader refuses a follower that learned of the election a few milliseconds before it
/// did: ask again soon (this wait is part of every failover).
fn stale_for_a_while(s: &mut Slot) {
    s.stale_until = Some(Instant::now() + Duration::from_millis(50));
}

struct Fetcher {
    slots: Arc<Mutex<BTreeMap<TopicPartition, Slot>>>,
    token: CancellationToken,
}

/// Leaders this node's fetchers found gone: the fetch connection broke (end of file, reset) or
/// a new one was refused — what a dead process looks like — and no connection to them has
/// succeeded since. A broker answering Metadata names no leader for their partitions (clients
/// then ask again soon, instead of retrying the dead one until the controller has moved its
/// partitions, which is what they learn from the next answer).
#[derive(Default)]
pub struct Unreachable {
    since: Mutex<HashMap<NodeId, Instant>>,
}

impl Unreachable {
    fn mark(&self, leader: NodeId) {
        self.lock().entry(leader).or_insert_with(Instant::now);
    }

    fn clear(&self, leader: NodeId) {
        self.lock().remove(&leader);
    }

    /// The leaders found gone within the last `within` (after that the controller has fenced
    /// them, or judged them alive: the suspicion ends).
    pub fn leaders(&self, within: Duration) -> std::collections::HashSet<NodeId> {
        self.lock()
            .iter()
            .filter(|(_, at)| at.elapsed() < within)
            .map(|(id, _)| *id)
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<NodeId, Instant>> {
        self.since.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Whether `e` is a connection that ended or was refused (not a slow or confused peer).
fn gone(e: &anyhow::Error) -> bool {
    use std::io::ErrorKind::*;
    e.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|io| {
            matches!(
                io.kind(),
                UnexpectedEof
                    | ConnectionReset
                    | ConnectionAborted
                    | BrokenPipe
                    | ConnectionRefused
            )
        })
}

pub struct Fetchers {
    /// Leaders found gone (see `Unreachable`), shared with the Metadata answers.
    pub unreachable: Arc<Unreachable>,
    config: Arc<Config>,
    throttles: Arc<Throttles>,
    /// TLS and SASL towards other brokers' inter-broker listener.
    security: Arc<ClientSecurity>,
    controller: Handle,
    by_leader: Mutex<HashMap<NodeId, Fetcher>>,
    token: CancellationToken,
}

impl Fetchers {
    pub fn new(
        config: Arc<Config>,
        security: Arc<ClientSecurity>,
        controller: Handle,
        throttles: Arc<Throttles>,
        token: CancellationToken,
    ) -> Fetchers {
        Fetchers {
            unreachable: Arc::new(Unreachable::default()),
            config,
            throttles,
            security,
            controller,
            by_leader: Mutex::new(HashMap::new()),
            token,
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<NodeId, Fetcher>> {
        self.by_leader.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Follow `partition` on `leader` at `epoch`. Moving it between leaders, or to a new epoch,
    /// makes it truncate first; the same assignment again changes nothing.
    pub fn assign(&self, partition: Arc<Partition>, leader: NodeId, epoch: LeaderEpoch) {
        let tp = partition.tp().clone();
        let mut map = self.map();
        for (l, f) in map.iter() {
            if *l != leader {
                f.slots
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&tp);
            }
        }
        let fetcher = map.entry(leader).or_insert_with(|| {
            let slots = Arc::new(Mutex::new(BTreeMap::new()));
            let token = self.token.child_token();
            let task = FetchTask {
                leader,
                config: self.config.clone(),
                throttles: self.throttles.clone(),
                security: self.security.clone(),
                controller: self.controller.clone(),
                slots: slots.clone(),
                unreachable: self.unreachable.clone(),
            };
            tokio::spawn(task.run(token.clone()));
            Fetcher { slots, token }
        });
        let mut slots = fetcher.slots.lock().unwrap_or_else(|p| p.into_inner());
        match slots.get_mut(&tp) {
            Some(s) if s.epoch == epoch => {}
            _ => {
                slots.insert(
                    tp,
                    Slot {
                        partition,
                        epoch,
                        truncate: true,
                        stale_until: None,
                    },
                );
            }
        }
        drop(slots);
        map.retain(|_, f| {
            let keep = !f.slots.lock().unwrap_or_else(|p| p.into_inner()).is_empty();
            if !keep {
                f.token.cancel();
            }
            keep
        });
    }

    /// Stop following `tp` (this node leads it now, or no longer hosts it).
    pub fn remove(&self, tp: &TopicPartition) {
        let mut map = self.map();
        map.retain(|_, f| {
            let mut slots = f.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots.remove(tp);
            let keep = !slots.is_empty();
            if !keep {
                f.token.cancel();
            }
            keep
        });
    }
}

struct FetchTask {
    leader: NodeId,
    config: Arc<Config>,
    throttles: Arc<Throttles>,
    security: Arc<ClientSecurity>,
    controller: Handle,
    slots: Arc<Mutex<BTreeMap<TopicPartition, Slot>>>,
    unreachable: Arc<Unreachable>,
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

impl FetchTask {
    fn snapshot(&self) -> Vec<(TopicPartition, Slot)> {
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Updates a slot if it still follows the same epoch.
    fn update(&self, tp: &TopicPartition, epoch: LeaderEpoch, f: impl FnOnce(&mut Slot)) {
        if let Some(s) = self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(tp)
        {
            if s.epoch == epoch {
                f(s);
            }
        }
    }

    fn leader_addr(&self) -> Option<String> {
        let image = self.controller.image();
        let b = image.brokers.get(&self.leader)?;
        let ep = b
            .endpoints
            .iter()
            .find(|e| e.listener == self.config.inter_broker_listener)?;
        Some(format!("{}:{}", ep.host, ep.port))
    }

    async fn run(self, token: CancellationToken) {
        let (unreachable, leader) = (self.unreachable.clone(), self.leader);
        self.follow(token).await;
        // Nothing here follows that leader any more: what was seen of it stops counting (a
        // later death must be seen afresh, not hidden by an old mark's age).
        unreachable.clear(leader);
    }

    async fn follow(self, token: CancellationToken) {
        let mut conn: Option<Connection> = None;
        loop {
            if token.is_cancelled() {
                return;
            }
            if conn.is_none() {
                match self.leader_addr() {
                    Some(addr) => match Connection::connect(
                        &addr,
                        Duration::from_secs(2),
                        self.config.socket_request_max_bytes.max(64 << 20),
                        &self.security,
                    )
                    .await
                    {
                        Ok(c) => {
                            self.unreachable.clear(self.leader);
                            conn = Some(c)
                        }
                        Err(e) => {
                            if gone(&e) {
                                self.unreachable.mark(self.leader);
                            }
                            tracing::debug!(leader = self.leader, error = %e, "fetcher cannot connect")
                        }
                    },
                    None => tracing::debug!(
                        leader = self.leader,
                        "leader has no inter-broker endpoint yet"
                    ),
                }
                if conn.is_none() {
                    tokio::select! {
                        _ = token.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    }
                    continue;
                }
            }
            let Some(c) = conn.as_mut() else { continue };
            let outcome = tokio::select! {
                _ = token.cancelled() => return,
                r = self.round(c) => r,
            };
            match outcome {
                Ok(true) => {}
                Ok(false) => {
                    // Nothing fetchable (all stale or waiting): do not spin.
                    tokio::select! {
                        _ = token.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    }
                }
                Err(e) => {
                    tracing::debug!(leader = self.leader, error = %e, "fetch round failed; reconnecting");
                    conn = None;
                    // A connection that ended may be a process that died: say so at once (a
                    // client asking for metadata now must not be sent back to it), and look
                    // again soon — a connection made clears it.
                    if gone(&e) {
                        self.unreachable.mark(self.leader);
                    }
                    tokio::select! {
                        _ = token.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                    }
                }
            }
        }
    }

    /// One truncation pass (where needed) and one fetch. Returns whether anything was fetchable.
    /// The slots come sorted by topic and partition: the request groups them by topic as they
    /// come, and each answer finds its slot by binary search (no map built per round — a
    /// round covers every partition followed on this leader).
    async fn round(&self, c: &mut Connection) -> anyhow::Result<bool> {
        let mut slots = self.snapshot();
        let to_truncate: Vec<_> = slots
            .iter()
            .filter(|(_, s)| s.truncate && !s.stale())
            .collect();
        if !to_truncate.is_empty() {
            self.truncate(c, &to_truncate).await?;
            slots = self.snapshot();
        }
        // Throttled replicas wait while the follower quota is spent.
        let me = self.config.node_id;
        let held_back = self.throttles.follower.exceeded();
        let waits = |s: &Slot| {
            s.truncate || s.stale() || (held_back && s.partition.throttled_for(false, me))
        };
        slots.retain(|(_, s)| !waits(s));
        if slots.is_empty() {
            return Ok(false);
        }
        let mut topics: Vec<FetchTopic> = Vec::new();
        for (tp, s) in &slots {
            if topics.last().is_none_or(|t| *t.topic.0 != *tp.topic) {
                topics.push(FetchTopic::default().with_topic(name(&tp.topic)));
            }
            let log = &s.partition;
            if let Some(t) = topics.last_mut() {
                t.partitions.push(
                    FetchPartition::default()
                        .with_partition(tp.partition)
                        .with_current_leader_epoch(s.epoch)
                        .with_fetch_offset(log.log_end_offset())
                        .with_last_fetched_epoch(log.latest_epoch().map(|e| e.0).unwrap_or(-1))
                        .with_log_start_offset(log.log_start_offset())
                        .with_partition_max_bytes(1 << 20),
                );
            }
        }
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(self.config.node_id))
            .with_max_wait_ms(500)
            .with_min_bytes(1)
            .with_max_bytes(16 << 20)
            .with_session_epoch(-1)
            .with_topics(topics);
        let resp: FetchResponse = c
            .call(ApiKey::Fetch, FETCH_VERSION, &req, Duration::from_secs(10))
            .await?;
        for t in &resp.responses {
            let topic: &str = &t.topic.0;
            for p in &t.partitions {
                let at = slots.binary_search_by(|(k, _)| {
                    (k.topic.as_str(), k.partition).cmp(&(topic, p.partition_index))
                });
                let Ok(i) = at else { continue };
                let (tp, slot) = &slots[i];
                if slot.partition.throttled_for(false, self.config.node_id) {
                    let bytes = p.records.as_ref().map_or(0, |r| r.len());
                    self.throttles.follower.record(bytes);
                }
                self.handle_partition(tp, slot, p);
            }
        }
        Ok(true)
    }

    fn handle_partition(
        &self,
        tp: &TopicPartition,
        slot: &Slot,
        p: &kafka_protocol::messages::fetch_response::PartitionData,
    ) {
        let code = p.error_code;
        if code == E::OffsetOutOfRange.code() {
            let ours = slot.partition.log_end_offset();
            if p.log_start_offset > ours {
                // The leader's log now starts past ours: start over from there.
                tracing::info!(%tp, from = p.log_start_offset, "follower far behind the leader's log start; resetting");
                if let Err(e) = slot.partition.reset_to(slot.epoch, p.log_start_offset) {
                    tracing::error!(%tp, error = %e, "cannot reset follower log");
                }
            } else {
                self.update(tp, slot.epoch, |s| s.truncate = true);
            }
            return;
        }
        if code != 0 {
            tracing::debug!(%tp, code, "leader refused a follower fetch");
            self.update(tp, slot.epoch, stale_for_a_while);
            return;
        }
        if p.diverging_epoch.epoch >= 0 {
            self.update(tp, slot.epoch, |s| s.truncate = true);
            return;
        }
        let records = p.records.clone().unwrap_or_default();
        let result = if records.is_empty() {
            slot.partition
                .append_replica(slot.epoch, &[], p.high_watermark)
        } else {
            // A fetch may end in a partial batch: keep the whole ones.
            let whole = whole_batches(&records);
            match batch::validate(&records[..whole], usize::MAX) {
                Ok(batches) => {
                    let input: Vec<_> = batches
                        .iter()
                        .map(|(h, r)| (*h, &records[r.clone()]))
                        .collect();
                    slot.partition
                        .append_replica(slot.epoch, &input, p.high_watermark)
                }
                Err(e) if whole == 0 => {
                    tracing::debug!(%tp, error = %e, "no whole batch in the fetch");
                    Ok(())
                }
                Err(e) => {
                    tracing::error!(%tp, error = %e, "corrupt batch from the leader");
                    Ok(())
                }
            }
        };
        if let Err(e) = result {
            tracing::warn!(%tp, error = %e, "follower append failed; truncating again");
            self.update(tp, slot.epoch, |s| s.truncate = true);
            return;
        }
        // Follow the leader's log start (raised by retention or by a coordinator snapshot),
        // never past what this replica knows is committed.
        let log = &slot.partition;
        let start = p.log_start_offset.min(slot.partition.high_watermark());
        if start > log.log_start_offset() {
            if let Err(e) = log.advance_log_start(start) {
                tracing::warn!(%tp, error = %e, "cannot advance the log start");
            }
        }
    }

    /// OffsetForLeaderEpoch for the given slots, then truncation to the divergence point.
    async fn truncate(
        &self,
        c: &mut Connection,
        slots: &[&(TopicPartition, Slot)],
    ) -> anyhow::Result<()> {
        let mut topics: HashMap<String, Vec<OffsetForLeaderPartition>> = HashMap::new();
        for (tp, s) in slots {
            let Some((my_epoch, _)) = s.partition.latest_epoch() else {
                // Nothing written under any epoch: nothing can diverge.
                self.update(tp, s.epoch, |x| x.truncate = false);
                continue;
            };
            topics.entry(tp.topic.clone()).or_default().push(
                OffsetForLeaderPartition::default()
                    .with_partition(tp.partition)
                    .with_current_leader_epoch(s.epoch)
                    .with_leader_epoch(my_epoch),
            );
        }
        if topics.is_empty() {
            return Ok(());
        }
        let req = OffsetForLeaderEpochRequest::default()
            .with_replica_id(BrokerId(self.config.node_id))
            .with_topics(
                topics
                    .into_iter()
                    .map(|(t, parts)| {
                        OffsetForLeaderTopic::default()
                            .with_topic(name(&t))
                            .with_partitions(parts)
                    })
                    .collect(),
            );
        let resp: OffsetForLeaderEpochResponse = c
            .call(
                ApiKey::OffsetForLeaderEpoch,
                EPOCH_VERSION,
                &req,
                Duration::from_secs(10),
            )
            .await?;
        let by_tp: HashMap<TopicPartition, &Slot> =
            slots.iter().map(|(k, v)| (k.clone(), v)).collect();
        for t in &resp.topics {
            for p in &t.partitions {
                let tp = TopicPartition::new(t.topic.0.to_string(), p.partition);
                let Some(slot) = by_tp.get(&tp) else { continue };
                if p.error_code != 0 {
                    tracing::debug!(%tp, code = p.error_code, "leader refused OffsetForLeaderEpoch");
                    self.update(&tp, slot.epoch, stale_for_a_while);
                    continue;
                }
                let log = &slot.partition;
                let cut = if p.leader_epoch < 0 {
                    // The leader has no epoch as old as ours: keep only what is committed.
                    slot.partition.high_watermark()
                } else {
                    // Our end for the epoch the leader answered with, bounded by the leader's.
                    let (_, ours) = log.end_offset_for_epoch(p.leader_epoch);
                    ours.min(p.end_offset)
                };
                if cut < log.log_end_offset() {
                    tracing::info!(%tp, cut, end = log.log_end_offset(), leader = self.leader, "truncating to the leader's log");
                    if let Err(e) = slot.partition.truncate_to(slot.epoch, cut) {
                        tracing::error!(%tp, error = %e, "truncation failed");
                        continue;
                    }
                }
                self.update(&tp, slot.epoch, |s| s.truncate = false);
            }
        }
        Ok(())
    }
}

/// The length of the prefix of `records` made of whole batches.
fn whole_batches(records: &[u8]) -> usize {
    let mut pos = 0;
    while let Some((_, size)) = batch::peek_size(&records[pos..]) {
        if pos + size > records.len() {
            break;
        }
        pos += size;
    }
    pos
}
