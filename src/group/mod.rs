//! The consumer group coordinator and committed offsets, kept in the replicated
//! `__consumer_offsets` topic.
//!
//! A group belongs to one offsets partition (Kafka's hash of the group id); the coordinator of
//! the group is that partition's leader. This module follows the metadata image: when this node
//! starts leading an offsets partition it creates a *shard* for it and loads the partition's
//! log into memory (requests for its groups get COORDINATOR_LOAD_IN_PROGRESS until done); when
//! it stops leading, the shard and its groups are dropped and every waiting member is told
//! NOT_COORDINATOR. Writes (offset commits, group records, tombstones) are appended to the
//! partition as the leader and answered once the high watermark covers them.
//!
//! The offsets log stays bounded by *snapshot and truncate*: once a shard's log holds more than
//! twice its live records (and at least 1,000), the coordinator rolls a new segment, writes every
//! live record into it, waits for replication and moves the log start to the snapshot, deleting
//! the older segments; followers adopt the new log start through Fetch.
//!
//! `Coordinator` is built by `node` and shared as `Arc` with every listener's handlers; one
//! background task (`run`) follows the image and drives the groups' timers.

pub mod records;
pub mod state;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::sync::{watch, RwLock};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::controller::{AdminError, Handle, NewTopic};
use crate::metadata::MetadataImage;
use crate::replica::{HwWait, Partition, ReplicaManager};
use crate::storage::batch;
use crate::types::{now_ms, LeaderEpoch, NodeId, TopicPartition};

use records::{GroupValue, Key, OffsetValue};
use state::{Group, Limits, Step, SyncStep};
pub use state::{GroupError, JoinArgs, JoinReply, Joined, State, SyncReply};

pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// How often group timers (session expiry, join and sync deadlines) are checked.
const TICK: Duration = Duration::from_millis(100);
/// A shard's log is snapshotted once it holds more than this many records and twice its live
/// records.
const SNAPSHOT_MIN_RECORDS: i64 = 1000;

/// The offsets partition of a group: Kafka's `abs(groupId.hashCode) % partitions`, with Java's
/// String hash over UTF-16 code units, so groups land where Kafka would put them.
pub fn partition_for(group: &str, partitions: i32) -> i32 {
    let h = group
        .encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32));
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % partitions.max(1)
}

/// One offsets partition this node leads, and the groups in it.
struct Shard {
    index: i32,
    epoch: LeaderEpoch,
    loaded: AtomicBool,
    partition: OnceLock<Arc<Partition>>,
    groups: Mutex<HashMap<String, Arc<Mutex<Group>>>>,
    /// Writers hold it shared from append until their in-memory update; a snapshot holds it
    /// exclusively, so it sees every write below its start.
    gate: Arc<RwLock<()>>,
    cancel: CancellationToken,
}

impl Shard {
    fn groups(&self) -> MutexGuard<'_, HashMap<String, Arc<Mutex<Group>>>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn group(&self, id: &str) -> Option<Arc<Mutex<Group>>> {
        self.groups().get(id).cloned()
    }

    fn group_or_new(&self, id: &str) -> Arc<Mutex<Group>> {
        self.groups()
            .entry(id.to_string())
            .or_insert_with(|| Arc::new(Mutex::new(Group::new(id, now_ms()))))
            .clone()
    }
}

fn lock(g: &Mutex<Group>) -> MutexGuard<'_, Group> {
    g.lock().unwrap_or_else(|p| p.into_inner())
}

/// One partition's committed offset as OffsetFetch reports it.
pub struct FetchedOffset {
    pub topic: String,
    pub partition: i32,
    pub value: Option<OffsetValue>,
}

/// One offset to commit.
pub struct CommitEntry {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

/// A member as DescribeGroups reports it.
pub struct MemberDescription {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

pub struct GroupDescription {
    pub state: State,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberDescription>,
}

pub struct Coordinator {
    config: Arc<Config>,
    controller: Handle,
    replicas: Arc<ReplicaManager>,
    shards: Mutex<HashMap<i32, Arc<Shard>>>,
    /// One creation of the offsets topic at a time.
    creating: tokio::sync::Mutex<()>,
}

impl Coordinator {
    pub fn new(config: Arc<Config>, controller: Handle, replicas: Arc<ReplicaManager>) -> Self {
        Coordinator {
            config,
            controller,
            replicas,
            shards: Mutex::new(HashMap::new()),
            creating: tokio::sync::Mutex::new(()),
        }
    }

    fn shards(&self) -> MutexGuard<'_, HashMap<i32, Arc<Shard>>> {
        self.shards.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn limits(&self) -> Limits {
        Limits {
            initial_rebalance_delay: Duration::from_millis(
                self.config.groups.initial_rebalance_delay_ms,
            ),
            max_size: self.config.groups.max_size,
        }
    }

    /// FindCoordinator: the broker leading the group's offsets partition, creating
    /// `__consumer_offsets` on first use.
    pub async fn coordinator_for(&self, key: &str) -> Result<NodeId, GroupError> {
        let mut image = self.controller.image();
        if image.topic(OFFSETS_TOPIC).is_none() {
            self.create_offsets_topic().await?;
            image = self.controller.image();
        }
        let topic = image
            .topic(OFFSETS_TOPIC)
            .ok_or(GroupError::CoordinatorNotAvailable)?;
        let p = partition_for(key, topic.partitions.len() as i32);
        match topic.partitions.get(p as usize) {
            Some(pi) if pi.leader >= 0 => Ok(pi.leader),
            _ => Err(GroupError::CoordinatorNotAvailable),
        }
    }

    async fn create_offsets_topic(&self) -> Result<(), GroupError> {
        let _one = self.creating.lock().await;
        let image = self.controller.image();
        if image.topic(OFFSETS_TOPIC).is_some() {
            return Ok(());
        }
        let want = self.config.groups.offsets_replication_factor;
        let live = image.live_brokers().len() as i16;
        if live == 0 {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        let rf = want.min(live);
        if rf < want {
            tracing::warn!(
                offsets_topic_replication_factor = want,
                live_brokers = live,
                replication_factor = rf,
                "offsets.topic.replication.factor is more than the live brokers; creating {OFFSETS_TOPIC} with fewer replicas"
            );
        }
        let configs = [("retention.ms", "-1"), ("retention.bytes", "-1")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let topic = NewTopic {
            name: OFFSETS_TOPIC.to_string(),
            partitions: self.config.groups.offsets_partitions,
            replication_factor: rf,
            assignments: Vec::new(),
            configs,
        };
        match self.controller.create_topic(topic).await {
            Ok(_) | Err(AdminError::TopicAlreadyExists(_)) => {
                tracing::info!(
                    partitions = self.config.groups.offsets_partitions,
                    replication_factor = rf,
                    "created {OFFSETS_TOPIC}"
                );
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot create {OFFSETS_TOPIC}");
                Err(GroupError::CoordinatorNotAvailable)
            }
        }
    }

    /// The loaded shard holding `group`, if this node coordinates it.
    fn shard_for(&self, group: &str) -> Result<Arc<Shard>, GroupError> {
        if group.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        if group.len() > records::MAX_STR {
            return Err(GroupError::TooLong("the group id"));
        }
        let image = self.controller.image();
        let topic = image
            .topic(OFFSETS_TOPIC)
            .ok_or(GroupError::NotCoordinator)?;
        let p = partition_for(group, topic.partitions.len() as i32);
        let shard = self
            .shards()
            .get(&p)
            .cloned()
            .ok_or(GroupError::NotCoordinator)?;
        let current = topic.partitions.get(p as usize);
        if !current
            .is_some_and(|pi| pi.leader == self.config.node_id && pi.leader_epoch == shard.epoch)
        {
            return Err(GroupError::NotCoordinator);
        }
        if !shard.loaded.load(Ordering::Acquire) {
            return Err(GroupError::LoadInProgress);
        }
        Ok(shard)
    }

    /// Appends records to the shard's partition as its leader. The caller holds the shard's
    /// gate (shared) and, for group records, the group's lock, so appends follow state order.
    fn append(shard: &Shard, records: &[(Bytes, Option<Bytes>)]) -> Result<i64, GroupError> {
        let part = shard.partition.get().ok_or(GroupError::NotCoordinator)?;
        if !part.is_leader() || part.leader_epoch() != shard.epoch {
            return Err(GroupError::NotCoordinator);
        }
        let bytes = encode_batch(records).map_err(|_| GroupError::InvalidCommitOffsetSize)?;
        let batches =
            batch::validate(&bytes, usize::MAX).map_err(|_| GroupError::InvalidCommitOffsetSize)?;
        let input: Vec<_> = batches
            .iter()
            .map(|(h, r)| (*h, &bytes[r.clone()]))
            .collect();
        let appended = part.append(&input).map_err(|e| {
            tracing::warn!(partition = shard.index, error = %e, "cannot append to {OFFSETS_TOPIC}");
            GroupError::NotCoordinator
        })?;
        Ok(appended.last)
    }

    /// Waits until the records up to `last` are replicated (Kafka's acks=all for offsets).
    async fn replicated(&self, shard: &Shard, last: i64) -> Result<(), GroupError> {
        let part = shard.partition.get().ok_or(GroupError::NotCoordinator)?;
        let timeout = Duration::from_millis(self.config.groups.commit_timeout_ms);
        match part.wait_for_hw(last + 1, shard.epoch, timeout).await {
            HwWait::Reached => Ok(()),
            HwWait::TimedOut => Err(GroupError::CoordinatorNotAvailable),
            HwWait::NotLeader => Err(GroupError::NotCoordinator),
        }
    }

    /// Writes the group's current record (membership changed outside a sync). Runs in the
    /// background: the in-memory state already moved on, and a later write supersedes it.
    fn store_group_later(self: &Arc<Self>, shard: Arc<Shard>, group: Arc<Mutex<Group>>) {
        let me = self.clone();
        tokio::spawn(async move {
            let _gate = shard.gate.clone().read_owned().await;
            // Encoded and appended under the group's lock, so records follow state order.
            let last = Self::append(&shard, &[group_record(&lock(&group))]);
            if let Ok(last) = last {
                let _ = me.replicated(&shard, last).await;
            }
        });
    }

    /// JoinGroup.
    pub async fn join(self: &Arc<Self>, group_id: &str, args: JoinArgs) -> JoinReply {
        let s = &self.config.groups;
        if group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        // Every string a member record stores must fit its i16 length (the member id adds
        // a UUID to the client id).
        let fits = |v: &str| v.len() <= records::MAX_STR - 64;
        if !fits(group_id)
            || !fits(&args.client_id)
            || !fits(&args.client_host)
            || !fits(&args.protocol_type)
            || !fits(&args.member_id)
            || !args.instance_id.as_deref().is_none_or(fits)
            || !args.protocols.iter().all(|(name, _)| fits(name))
        {
            return Err(GroupError::TooLong(
                "a group, member, client or protocol name",
            ));
        }
        if args.session_timeout_ms < s.min_session_timeout_ms
            || args.session_timeout_ms > s.max_session_timeout_ms
        {
            return Err(GroupError::InvalidSessionTimeout);
        }
        let shard = self.shard_for(group_id)?;
        let group = if args.member_id.is_empty() {
            shard.group_or_new(group_id)
        } else {
            shard.group(group_id).ok_or(GroupError::UnknownMemberId)?
        };
        let step = {
            let mut g = lock(&group);
            let step = g.join(args, Instant::now(), now_ms(), &self.limits());
            if g.take_dirty() {
                self.store_group_later(shard.clone(), group.clone());
            }
            step
        };
        match step {
            Step::Now(r) => r,
            Step::Wait(rx) => rx.await.unwrap_or(Err(GroupError::NotCoordinator)),
        }
    }

    /// SyncGroup. The leader's assignment is stored before anyone is answered.
    pub async fn sync(
        self: &Arc<Self>,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        protocol: (Option<&str>, Option<&str>),
        assignments: Vec<(String, Bytes)>,
    ) -> SyncReply {
        let shard = self.shard_for(group_id)?;
        let group = shard.group(group_id).ok_or(GroupError::UnknownMemberId)?;
        let step = lock(&group).sync(
            member_id,
            instance_id,
            generation,
            protocol,
            assignments,
            Instant::now(),
        );
        match step {
            SyncStep::Now(r) => r,
            SyncStep::Wait(rx) => rx.await.unwrap_or(Err(GroupError::NotCoordinator)),
            SyncStep::Store { reply, generation } => {
                let gate = shard.gate.clone().read_owned().await;
                let appended = Self::append(&shard, &[group_record(&lock(&group))]);
                let stored = match appended {
                    Ok(last) => self.replicated(&shard, last).await,
                    Err(e) => Err(e),
                };
                drop(gate);
                lock(&group).finish_sync(generation, stored, Instant::now(), now_ms());
                reply.await.unwrap_or(Err(GroupError::NotCoordinator))
            }
        }
    }

    pub fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), GroupError> {
        let shard = self.shard_for(group_id)?;
        let group = shard.group(group_id).ok_or(GroupError::UnknownMemberId)?;
        let mut g = lock(&group);
        g.heartbeat(member_id, instance_id, generation, Instant::now())
    }

    /// LeaveGroup for each (member id, instance id); the per-member results.
    pub fn leave(
        self: &Arc<Self>,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        let shard = self.shard_for(group_id)?;
        let group = shard.group(group_id).ok_or(GroupError::UnknownMemberId)?;
        let mut g = lock(&group);
        let results = members
            .iter()
            .map(|(m, i)| g.leave(m, i.as_deref(), Instant::now(), now_ms()))
            .collect();
        if g.take_dirty() {
            self.store_group_later(shard.clone(), group.clone());
        }
        Ok(results)
    }

    /// OffsetCommit: per-partition results, or one error for the whole request.
    pub async fn commit(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        entries: Vec<CommitEntry>,
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        let shard = self.shard_for(group_id)?;
        let group = match shard.group(group_id) {
            Some(g) => g,
            None if generation < 0 => shard.group_or_new(group_id),
            None => return Err(GroupError::IllegalGeneration),
        };
        let max_meta = self.config.groups.metadata_max_bytes;
        let ts = now_ms();
        // Each entry's value, or why it is refused before anything is written.
        let values: Vec<Result<OffsetValue, GroupError>> = entries
            .iter()
            .map(|e| match &e.metadata {
                Some(m) if m.len() > max_meta => Err(GroupError::OffsetMetadataTooLarge),
                m => Ok(OffsetValue {
                    offset: e.offset,
                    leader_epoch: e.leader_epoch,
                    metadata: m.clone().unwrap_or_default(),
                    commit_timestamp: ts,
                }),
            })
            .collect();
        let records: Vec<(Bytes, Option<Bytes>)> = entries
            .iter()
            .zip(&values)
            .filter_map(|(e, v)| {
                let v = v.as_ref().ok()?;
                Some((
                    offset_key(group_id, &e.topic, e.partition),
                    Some(v.encode()),
                ))
            })
            .collect();
        if records.is_empty() {
            return Ok(values.into_iter().map(|v| v.map(|_| ())).collect());
        }
        let _gate = shard.gate.clone().read_owned().await;
        let last = {
            let mut g = lock(&group);
            if let Err(e) = g.check_commit(member_id, instance_id, generation, Instant::now()) {
                tracing::debug!(group = %group_id, member = %member_id, generation, error = ?e, "offset commit refused");
                return Err(e);
            }
            Self::append(&shard, &records)?
        };
        let outcome = self.replicated(&shard, last).await;
        tracing::debug!(
            group = %group_id,
            member = %member_id,
            generation,
            commits = ?entries.iter().map(|e| (e.partition, e.offset)).collect::<Vec<_>>(),
            last,
            outcome = ?outcome,
            "offsets committed"
        );
        let mut g = lock(&group);
        let mut at = last + 1 - records.len() as i64;
        let results = entries
            .into_iter()
            .zip(values)
            .map(|(e, v)| {
                let v = v?;
                let log_offset = at;
                at += 1;
                outcome.clone()?;
                g.apply_offset(&e.topic, e.partition, v, log_offset);
                Ok(())
            })
            .collect();
        Ok(results)
    }

    /// OffsetFetch for one group: the asked partitions (`None`: every committed one).
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        topics: Option<Vec<(String, Vec<i32>)>>,
    ) -> Result<Vec<FetchedOffset>, GroupError> {
        let shard = self.shard_for(group_id)?;
        let group = shard.group(group_id);
        let g = group.as_ref().map(|g| lock(g));
        let lookup = |t: &str, p: i32| {
            g.as_ref()
                .and_then(|g| g.offsets.get(&(t.to_string(), p)))
                .map(|c| c.value.clone())
        };
        Ok(match topics {
            Some(topics) => topics
                .into_iter()
                .flat_map(|(t, ps)| {
                    ps.into_iter()
                        .map(|p| FetchedOffset {
                            value: lookup(&t, p),
                            topic: t.clone(),
                            partition: p,
                        })
                        .collect::<Vec<_>>()
                })
                .collect(),
            None => {
                let mut all: Vec<FetchedOffset> = g
                    .as_ref()
                    .map(|g| {
                        g.offsets
                            .iter()
                            .map(|((t, p), c)| FetchedOffset {
                                topic: t.clone(),
                                partition: *p,
                                value: Some(c.value.clone()),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                all.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
                all
            }
        })
    }

    /// DescribeGroups for one group (an unknown group is reported as Dead, as Kafka does).
    pub fn describe(&self, group_id: &str) -> Result<GroupDescription, GroupError> {
        let shard = self.shard_for(group_id)?;
        let Some(group) = shard.group(group_id) else {
            return Ok(GroupDescription {
                state: State::Dead,
                protocol_type: String::new(),
                protocol: String::new(),
                members: Vec::new(),
            });
        };
        let g = lock(&group);
        let show_members = matches!(
            g.state,
            State::Stable | State::CompletingRebalance | State::PreparingRebalance
        );
        Ok(GroupDescription {
            state: g.state,
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol: if g.state == State::Stable {
                g.protocol.clone().unwrap_or_default()
            } else {
                String::new()
            },
            members: if show_members {
                g.members
                    .values()
                    .map(|m| MemberDescription {
                        member_id: m.id.clone(),
                        instance_id: m.instance_id.clone(),
                        client_id: m.client_id.clone(),
                        client_host: m.client_host.clone(),
                        metadata: m.metadata(g.protocol.as_deref()),
                        assignment: if g.state == State::Stable {
                            m.assignment.clone()
                        } else {
                            Bytes::new()
                        },
                    })
                    .collect()
            } else {
                Vec::new()
            },
        })
    }

    /// ListGroups: the groups this broker coordinates, as (id, protocol type, state).
    pub fn list(&self) -> Vec<(String, String, State)> {
        let shards: Vec<Arc<Shard>> = self.shards().values().cloned().collect();
        let mut out = Vec::new();
        for shard in shards.iter().filter(|s| s.loaded.load(Ordering::Acquire)) {
            let groups: Vec<Arc<Mutex<Group>>> = shard.groups().values().cloned().collect();
            for g in groups {
                let g = lock(&g);
                if g.state != State::Dead {
                    out.push((
                        g.id.clone(),
                        g.protocol_type.clone().unwrap_or_default(),
                        g.state,
                    ));
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Whether any shard is still loading (ListGroups answers COORDINATOR_LOAD_IN_PROGRESS).
    pub fn loading(&self) -> bool {
        self.shards()
            .values()
            .any(|s| !s.loaded.load(Ordering::Acquire))
    }

    /// DeleteGroups for one group: only a group with no members; its offsets go with it.
    pub async fn delete_group(&self, group_id: &str) -> Result<(), GroupError> {
        let shard = self.shard_for(group_id)?;
        let group = shard.group(group_id).ok_or(GroupError::GroupIdNotFound)?;
        let _gate = shard.gate.clone().read_owned().await;
        let last = {
            let g = lock(&group);
            match g.state {
                State::Dead => return Err(GroupError::GroupIdNotFound),
                State::Empty => {}
                _ => return Err(GroupError::NonEmptyGroup),
            }
            let mut tombstones: Vec<(Bytes, Option<Bytes>)> = g
                .offsets
                .keys()
                .map(|(t, p)| (offset_key(group_id, t, *p), None))
                .collect();
            tombstones.push((Key::Group(group_id.to_string()).encode(), None));
            Self::append(&shard, &tombstones)?
        };
        self.replicated(&shard, last).await?;
        lock(&group).kill(now_ms());
        shard.groups().remove(group_id);
        tracing::info!(group = %group_id, "group deleted");
        Ok(())
    }

    /// OffsetDelete: removes committed offsets the group's members do not subscribe to.
    pub async fn delete_offsets(
        &self,
        group_id: &str,
        partitions: Vec<(String, i32)>,
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        let shard = self.shard_for(group_id)?;
        let group = shard.group(group_id).ok_or(GroupError::GroupIdNotFound)?;
        let _gate = shard.gate.clone().read_owned().await;
        let (results, last) = {
            let g = lock(&group);
            if g.state == State::Dead {
                return Err(GroupError::GroupIdNotFound);
            }
            let subscribed = g.subscribed_topics();
            if g.state != State::Empty && subscribed.is_none() {
                return Err(GroupError::NonEmptyGroup);
            }
            let results: Vec<Result<(), GroupError>> = partitions
                .iter()
                .map(|(t, _)| match &subscribed {
                    Some(s) if s.contains(t) => Err(GroupError::GroupSubscribedToTopic),
                    _ => Ok(()),
                })
                .collect();
            let tombstones: Vec<(Bytes, Option<Bytes>)> = partitions
                .iter()
                .zip(&results)
                .filter(|((t, p), r)| r.is_ok() && g.offsets.contains_key(&(t.clone(), *p)))
                .map(|((t, p), _)| (offset_key(group_id, t, *p), None))
                .collect();
            let last = if tombstones.is_empty() {
                None
            } else {
                Some(Self::append(&shard, &tombstones)?)
            };
            (results, last)
        };
        if let Some(last) = last {
            self.replicated(&shard, last).await?;
        }
        let mut g = lock(&group);
        for ((t, p), r) in partitions.iter().zip(&results) {
            if r.is_ok() {
                g.offsets.remove(&(t.clone(), *p));
            }
        }
        Ok(results)
    }

    /// Follows the metadata image (lead or drop shards) and drives group timers, offset
    /// expiry and log snapshots until cancelled.
    pub async fn run(
        self: Arc<Self>,
        mut images: watch::Receiver<Arc<MetadataImage>>,
        token: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let expiry_every = Duration::from_millis(self.config.groups.offsets_check_interval_ms);
        let mut last_expiry = Instant::now();
        let mut last_snapshot_check = Instant::now();
        loop {
            let image = images.borrow_and_update().clone();
            self.follow(&image);
            loop {
                tokio::select! {
                    _ = token.cancelled() => {
                        for s in self.shards().drain().map(|(_, s)| s) {
                            s.cancel.cancel();
                        }
                        return;
                    }
                    r = images.changed() => {
                        if r.is_err() { return; }
                        break;
                    }
                    _ = tick.tick() => {
                        self.tick_groups();
                        if last_expiry.elapsed() >= expiry_every {
                            last_expiry = Instant::now();
                            self.expire_offsets().await;
                        }
                        if last_snapshot_check.elapsed() >= Duration::from_secs(1) {
                            last_snapshot_check = Instant::now();
                            self.snapshot_if_needed().await;
                        }
                    }
                }
            }
        }
    }

    /// Starts shards for offsets partitions this node now leads; drops the others.
    fn follow(self: &Arc<Self>, image: &MetadataImage) {
        let me = self.config.node_id;
        let led: HashMap<i32, LeaderEpoch> = image
            .topic(OFFSETS_TOPIC)
            .map(|t| {
                t.partitions
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.leader == me)
                    .map(|(i, p)| (i as i32, p.leader_epoch))
                    .collect()
            })
            .unwrap_or_default();
        let mut shards = self.shards();
        shards.retain(|index, shard| {
            let keep = led.get(index) == Some(&shard.epoch);
            if !keep {
                shard.cancel.cancel();
                for g in shard.groups().drain().map(|(_, g)| g) {
                    lock(&g).kill(now_ms());
                }
                tracing::info!(
                    partition = index,
                    "no longer coordinator for this offsets partition"
                );
            }
            keep
        });
        for (&index, &epoch) in &led {
            if shards.contains_key(&index) {
                continue;
            }
            let shard = Arc::new(Shard {
                index,
                epoch,
                loaded: AtomicBool::new(false),
                partition: OnceLock::new(),
                groups: Mutex::new(HashMap::new()),
                gate: Arc::new(RwLock::new(())),
                cancel: CancellationToken::new(),
            });
            shards.insert(index, shard.clone());
            tokio::spawn(self.clone().load(shard));
        }
    }

    /// Loads a newly led shard: waits for the replica manager to lead the partition at the
    /// shard's epoch, then replays the log into groups.
    async fn load(self: Arc<Self>, shard: Arc<Shard>) {
        let tp = TopicPartition::new(OFFSETS_TOPIC.to_string(), shard.index);
        let started = Instant::now();
        let part = loop {
            if shard.cancel.is_cancelled() {
                return;
            }
            let image = self.controller.image();
            match self.replicas.leader_partition(&image, &tp) {
                Ok(p) if p.leader_epoch() == shard.epoch => break p,
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let log_part = part.clone();
        let loaded = tokio::task::spawn_blocking(move || read_groups(&log_part)).await;
        let (groups, records) = match loaded {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::error!(%tp, error = %e, "cannot load consumer groups");
                return;
            }
            Err(e) => {
                tracing::error!(%tp, error = %e, "group load task failed");
                return;
            }
        };
        let _ = shard.partition.set(part);
        let count = groups.len();
        *shard.groups() = groups
            .into_iter()
            .map(|(k, g)| (k, Arc::new(Mutex::new(g))))
            .collect();
        shard.loaded.store(true, Ordering::Release);
        tracing::info!(
            partition = shard.index,
            epoch = shard.epoch,
            groups = count,
            records,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "coordinator loaded its groups"
        );
    }

    fn loaded_shards(&self) -> Vec<Arc<Shard>> {
        self.shards()
            .values()
            .filter(|s| s.loaded.load(Ordering::Acquire))
            .cloned()
            .collect()
    }

    fn tick_groups(self: &Arc<Self>) {
        let now = Instant::now();
        let ms = now_ms();
        for shard in self.loaded_shards() {
            let groups: Vec<Arc<Mutex<Group>>> = shard.groups().values().cloned().collect();
            for group in groups {
                let mut g = lock(&group);
                g.tick(now, ms);
                if g.take_dirty() {
                    self.store_group_later(shard.clone(), group.clone());
                }
            }
        }
    }

    /// Writes tombstones for offsets past `offsets.retention.minutes`; a group left with no
    /// members and no offsets is deleted.
    async fn expire_offsets(&self) {
        let retention = self.config.groups.offsets_retention_ms;
        for shard in self.loaded_shards() {
            let _gate = shard.gate.clone().read_owned().await;
            let groups: Vec<Arc<Mutex<Group>>> = shard.groups().values().cloned().collect();
            for group in groups {
                let mut g = lock(&group);
                let expired = g.expired_offsets(now_ms(), retention);
                let drop_group = g.state == State::Empty && g.offsets.len() == expired.len();
                if expired.is_empty() && !drop_group {
                    continue;
                }
                let mut tombstones: Vec<(Bytes, Option<Bytes>)> = expired
                    .iter()
                    .map(|(t, p)| (offset_key(&g.id, t, *p), None))
                    .collect();
                if drop_group {
                    tombstones.push((Key::Group(g.id.clone()).encode(), None));
                }
                if Self::append(&shard, &tombstones).is_err() {
                    break;
                }
                tracing::info!(group = %g.id, expired = expired.len(), deleted = drop_group, "committed offsets expired");
                for k in &expired {
                    g.offsets.remove(k);
                }
                if drop_group {
                    g.kill(now_ms());
                    let id = g.id.clone();
                    drop(g);
                    shard.groups().remove(&id);
                }
            }
        }
    }

    /// Bounds each shard's log: snapshot the live records into a fresh segment, then drop the
    /// segments before it once the snapshot is replicated.
    async fn snapshot_if_needed(&self) {
        for shard in self.loaded_shards() {
            let Some(part) = shard.partition.get().cloned() else {
                continue;
            };
            let live: i64 = shard
                .groups()
                .values()
                .map(|g| lock(g).offsets.len() as i64 + 1)
                .sum();
            let held = part.log_end_offset() - part.log_start_offset();
            if held <= SNAPSHOT_MIN_RECORDS.max(2 * live) {
                continue;
            }
            let gate = shard.gate.clone().write_owned().await;
            let start = match part.roll_segment() {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(partition = shard.index, error = %e, "cannot roll for a snapshot");
                    continue;
                }
            };
            let mut records: Vec<(Bytes, Option<Bytes>)> = Vec::new();
            let groups: Vec<Arc<Mutex<Group>>> = shard.groups().values().cloned().collect();
            for group in groups {
                let g = lock(&group);
                if g.state == State::Dead {
                    continue;
                }
                records.push(group_record(&g));
                for ((t, p), c) in &g.offsets {
                    records.push((offset_key(&g.id, t, *p), Some(c.value.encode())));
                }
            }
            let mut last = None;
            for chunk in records.chunks(500) {
                match Self::append(&shard, chunk) {
                    Ok(l) => last = Some(l),
                    Err(_) => {
                        last = None;
                        break;
                    }
                }
            }
            drop(gate);
            let Some(last) = last else { continue };
            if self.replicated(&shard, last).await.is_ok() {
                match part.advance_log_start(start) {
                    Ok(s) => tracing::info!(
                        partition = shard.index,
                        log_start = s,
                        records = records.len(),
                        "offsets log snapshotted and truncated"
                    ),
                    Err(e) => {
                        tracing::warn!(partition = shard.index, error = %e, "cannot truncate the offsets log")
                    }
                }
            }
        }
    }
}

/// A group's current record (key and value) for `__consumer_offsets`.
fn group_record(g: &Group) -> (Bytes, Option<Bytes>) {
    (
        Key::Group(g.id.clone()).encode(),
        Some(g.to_value().encode()),
    )
}

fn offset_key(group: &str, topic: &str, partition: i32) -> Bytes {
    Key::Offset {
        group: group.to_string(),
        topic: topic.to_string(),
        partition,
    }
    .encode()
}

/// One uncompressed record batch holding `records` (key, value; no value: a tombstone).
fn encode_batch(records: &[(Bytes, Option<Bytes>)]) -> anyhow::Result<Bytes> {
    let ts = now_ms();
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder keeps records in one batch while offset - sequence is constant; this
            // leaves the batch's base sequence at -1 (no producer).
            sequence: i as i32 - 1,
            timestamp: ts,
            key: Some(k.clone()),
            value: v.clone(),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )?;
    Ok(buf.freeze())
}

/// Replays an offsets partition from its log start into groups; also returns how many records
/// were read.
fn read_groups(
    log: &Partition,
) -> Result<(HashMap<String, Group>, usize), crate::storage::LogError> {
    let end = log.log_end_offset();
    let mut offset = log.log_start_offset();
    let mut groups: HashMap<String, Group> = HashMap::new();
    let mut records = 0;
    let now = Instant::now();
    while offset < end {
        let chunk = log.read(offset, 1 << 20, end, true)?;
        if chunk.is_empty() {
            break;
        }
        let mut pos = 0;
        while let Some((_, size)) = batch::peek_size(&chunk[pos..]) {
            if pos + size > chunk.len() {
                break;
            }
            let raw = chunk.slice(pos..pos + size);
            pos += size;
            if let Some(h) = batch::parse_header(&raw) {
                offset = h.next_offset();
            }
            let mut buf = raw;
            let set = match RecordBatchDecoder::decode(&mut buf) {
                Ok(set) => set,
                Err(e) => {
                    tracing::warn!(error = %e, "skipping an unreadable batch in {OFFSETS_TOPIC}");
                    continue;
                }
            };
            for r in set.records {
                records += 1;
                if r.control || r.offset < log.log_start_offset() {
                    continue;
                }
                let Some(key) = r.key.as_deref().and_then(Key::decode) else {
                    continue;
                };
                apply_record(&mut groups, key, r.value.as_deref(), r.offset, now);
            }
        }
        if pos == 0 {
            break;
        }
    }
    groups.retain(|_, g| g.state != State::Dead);
    Ok((groups, records))
}

fn apply_record(
    groups: &mut HashMap<String, Group>,
    key: Key,
    value: Option<&[u8]>,
    log_offset: i64,
    now: Instant,
) {
    let ts = now_ms();
    match key {
        Key::Offset {
            group,
            topic,
            partition,
        } => match value.and_then(OffsetValue::decode) {
            Some(v) => groups
                .entry(group.clone())
                .or_insert_with(|| Group::new(&group, ts))
                .apply_offset(&topic, partition, v, log_offset),
            None => {
                if let Some(g) = groups.get_mut(&group) {
                    g.offsets.remove(&(topic, partition));
                }
            }
        },
        Key::Group(group) => match value.and_then(GroupValue::decode) {
            Some(v) => groups
                .entry(group.clone())
                .or_insert_with(|| Group::new(&group, ts))
                .restore(v, now),
            None => {
                groups.remove(&group);
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_land_on_kafkas_partitions() {
        // Values of Java's `Math.abs(id.hashCode()) % 50` for these ids.
        assert_eq!(partition_for("my-group", 50), 12);
        assert_eq!(partition_for("test-group", 50), 12);
        assert_eq!(partition_for("console-consumer-12345", 50), 6);
        assert_eq!(partition_for("", 50), 0);
        for g in ["a", "payments", "ünïcode", "x".repeat(300).as_str()] {
            assert!((0..50).contains(&partition_for(g, 50)));
        }
        assert_eq!(partition_for("anything", 1), 0);
    }

    #[test]
    fn a_replayed_log_rebuilds_offsets_and_tombstones_remove_them() {
        let mut groups = HashMap::new();
        let now = Instant::now();
        let v = |o| {
            OffsetValue {
                offset: o,
                leader_epoch: 0,
                metadata: String::new(),
                commit_timestamp: 1,
            }
            .encode()
        };
        let k = |p| Key::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: p,
        };
        apply_record(&mut groups, k(0), Some(&v(5)), 0, now);
        apply_record(&mut groups, k(0), Some(&v(9)), 1, now);
        apply_record(&mut groups, k(1), Some(&v(3)), 2, now);
        apply_record(&mut groups, k(1), None, 3, now);
        let g = &groups["g"];
        assert_eq!(g.offsets[&("t".to_string(), 0)].value.offset, 9);
        assert!(!g.offsets.contains_key(&("t".to_string(), 1)));
        apply_record(&mut groups, Key::Group("g".into()), None, 4, now);
        assert!(groups.is_empty());
    }

    #[test]
    fn encoded_batches_pass_the_logs_validation() {
        let recs = vec![
            (Bytes::from_static(b"k1"), Some(Bytes::from_static(b"v1"))),
            (Bytes::from_static(b"k2"), None),
        ];
        let b = encode_batch(&recs).expect("encodes");
        let batches = batch::validate(&b, usize::MAX).expect("valid");
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].0.last_offset_delta, 1);
    }
}
