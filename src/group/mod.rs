//! The consumer group coordinator and committed offsets, kept in the replicated
//! `__consumer_offsets` topic. In three parts:
//!
//! - here, the coordinator's request API (join, sync, heartbeat, leave, commit, fetch,
//!   describe, list, delete): each request finds its group's shard and works on the group;
//!   writes are appended to the shard's partition as its leader and answered once replicated;
//! - `shard.rs`: one offsets partition this node leads (Kafka's hash of the group id picks
//!   it), its groups and its lifecycle, driven by the replica manager's leadership events;
//! - `log.rs`: the offsets log — record codec, appends, replay (kept bounded by compaction).
//!
//! The group state machine itself is `state.rs`, its wire records `records.rs`.
//!
//! `Coordinator` is built by `node` and shared as `Arc` with every listener's handlers; one
//! background task (`run`) follows leadership and drives the groups' timers.

#[cfg(test)]
mod fuzz;
mod log;
mod offsets;
pub mod records;
mod shard;
pub mod state;
mod types;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::config::Config;
use crate::controller::Handle;
use crate::replica::{ReplicaManager, TxnVerification};
use crate::types::{now_ms, NodeId};

pub(crate) use log::replay;
use log::{group_record, offset_key, PendingTxnOffsets};
use records::{Key, OffsetValue};
use shard::Shard;
pub use state::{Caller, GroupError, JoinArgs, JoinReply, Joined, State, SyncReply};
use state::{Group, Limits, Step, SyncStep};

pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// How long a join, sync, commit or delete waits for its shard to finish loading before it is
/// answered COORDINATOR_LOAD_IN_PROGRESS.
const LOAD_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The offsets partition of a group: Kafka's `abs(groupId.hashCode) % partitions`, with Java's
/// String hash over UTF-16 code units, so groups land where Kafka would put them.
pub fn partition_for(group: &str, partitions: i32) -> i32 {
    let h = group
        .encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32));
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % partitions.max(1)
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

/// A group's id, state and committed offsets as (topic, partition, offset).
pub type GroupOffsets = (String, State, Vec<(String, i32, i64)>);

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
        if self.controller.image().topic(OFFSETS_TOPIC).is_some() {
            return Ok(());
        }
        let configs = [
            ("cleanup.policy", "compact".to_string()),
            (
                "segment.bytes",
                self.config.groups.offsets_segment_bytes.to_string(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        self.controller
            .create_internal_topic(
                OFFSETS_TOPIC,
                self.config.groups.offsets_partitions,
                self.config.groups.offsets_replication_factor,
                configs,
            )
            .await
            .map_err(|_| GroupError::CoordinatorNotAvailable)
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
        let epoch = topic
            .partitions
            .get(p as usize)
            .filter(|pi| pi.leader == self.config.node_id)
            .ok_or(GroupError::NotCoordinator)?
            .leader_epoch;
        let current = || self.shards().get(&p).filter(|s| s.epoch == epoch).cloned();
        let shard = match current() {
            Some(shard) => shard,
            None => {
                // The image says this node leads, but the replica manager has not applied it
                // yet: applying it now tells this coordinator, which starts loading the shard.
                let tp = crate::types::TopicPartition::new(OFFSETS_TOPIC.to_string(), p);
                let _ = self.replicas.leader_partition(&image, &tp);
                current().ok_or(GroupError::LoadInProgress)?
            }
        };
        if !shard.is_loaded() {
            return Err(GroupError::LoadInProgress);
        }
        Ok(shard)
    }

    /// `shard_for`, waiting up to `LOAD_WAIT` for a shard that is loading (a coordinator that
    /// was just elected, typically on an empty log), so a client that found it a moment ago
    /// is not sent back to retry.
    async fn ready_shard_for(&self, group: &str) -> Result<Arc<Shard>, GroupError> {
        match self.shard_for(group) {
            Err(GroupError::LoadInProgress) => {}
            other => return other,
        }
        let Some(shard) = self.loading_shard(group) else {
            return Err(GroupError::LoadInProgress);
        };
        let mut loaded = shard.loaded.subscribe();
        let _ = tokio::time::timeout(LOAD_WAIT, loaded.wait_for(|l| *l)).await;
        self.shard_for(group)
    }

    /// The shard `group` belongs to, loaded or not.
    fn loading_shard(&self, group: &str) -> Option<Arc<Shard>> {
        let image = self.controller.image();
        let topic = image.topic(OFFSETS_TOPIC)?;
        let p = partition_for(group, topic.partitions.len() as i32);
        self.shards().get(&p).cloned()
    }

    /// Writes the group's current record (membership changed outside a sync). Runs in the
    /// background: the in-memory state already moved on, and a later write supersedes it.
    fn store_group_later(self: &Arc<Self>, shard: Arc<Shard>, group: Arc<Mutex<Group>>) {
        let me = self.clone();
        tokio::spawn(async move {
            // Encoded and appended under the group's lock, so records follow state order.
            let last = me.append(&shard, &[group_record(&lock(&group))]);
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
        let shard = self.ready_shard_for(group_id).await?;
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
        caller: Caller<'_>,
        protocol: (Option<&str>, Option<&str>),
        assignments: Vec<(String, Bytes)>,
    ) -> SyncReply {
        let shard = self.ready_shard_for(group_id).await?;
        let group = shard.group(group_id).ok_or(GroupError::UnknownMemberId)?;
        let step = lock(&group).sync(caller, protocol, assignments, Instant::now());
        match step {
            SyncStep::Now(r) => r,
            SyncStep::Wait(rx) => rx.await.unwrap_or(Err(GroupError::NotCoordinator)),
            SyncStep::Store { reply, generation } => {
                let appended = self.append(&shard, &[group_record(&lock(&group))]);
                let stored = match appended {
                    Ok(last) => self.replicated(&shard, last).await,
                    Err(e) => Err(e),
                };
                lock(&group).finish_sync(generation, stored, Instant::now(), now_ms());
                reply.await.unwrap_or(Err(GroupError::NotCoordinator))
            }
        }
    }

    pub fn heartbeat(&self, group_id: &str, caller: Caller<'_>) -> Result<(), GroupError> {
        let shard = self.shard_for(group_id)?;
        let group = shard.group(group_id).ok_or(GroupError::UnknownMemberId)?;
        let mut g = lock(&group);
        g.heartbeat(caller, Instant::now())
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
        caller: Caller<'_>,
        entries: Vec<CommitEntry>,
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        self.commit_as(group_id, caller, entries, None).await
    }

    /// TxnOffsetCommit: offsets written inside `producer`'s (id, epoch) transaction. They stay
    /// pending — invisible to OffsetFetch — until the transaction's marker reaches this
    /// partition (`txn_marker`). With a member id or generation given, the member must be the
    /// group's current one (KIP-447).
    pub async fn txn_commit(
        &self,
        group_id: &str,
        caller: Caller<'_>,
        entries: Vec<CommitEntry>,
        producer: (i64, i16),
        verification: TxnVerification,
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        self.commit_as(group_id, caller, entries, Some((producer, verification)))
            .await
    }

    /// Drops a verification on the group's offsets partition that the transaction coordinator
    /// refused.
    pub async fn end_txn_verification(&self, group_id: &str, producer_id: i64, guard: u64) {
        if let Ok(shard) = self.ready_shard_for(group_id).await {
            shard.partition.end_verification(producer_id, guard);
        }
    }

    /// KIP-890 for TxnOffsetCommit: starts a verification of the producer's transaction on
    /// the group's offsets partition (led here): that partition's index and the guard the
    /// commit must be written under, or `None` when the transaction is already open there.
    pub async fn start_txn_verification(
        &self,
        group_id: &str,
        producer_id: i64,
    ) -> Result<Option<(i32, u64)>, GroupError> {
        let shard = self.ready_shard_for(group_id).await?;
        Ok(shard
            .partition
            .start_verification(producer_id)
            .map(|guard| (shard.index, guard)))
    }

    async fn commit_as(
        &self,
        group_id: &str,
        caller: Caller<'_>,
        entries: Vec<CommitEntry>,
        transactional: Option<((i64, i16), TxnVerification)>,
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        let producer = transactional.map(|t| t.0);
        let verification = transactional.map_or(TxnVerification::Off, |t| t.1);
        let Caller {
            member_id,
            generation,
            ..
        } = caller;
        let shard = self.ready_shard_for(group_id).await?;
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
        // A transactional commit without member or generation is not checked (KIP-447).
        let unchecked = producer.is_some() && member_id.is_empty() && generation < 0;
        let last = {
            let mut g = lock(&group);
            if !unchecked {
                if let Err(e) = g.check_commit(caller, Instant::now()) {
                    tracing::debug!(group = %group_id, member = %member_id, generation, error = ?e, "offset commit refused");
                    return Err(e);
                }
            }
            let last = self.append_as(&shard, &records, producer, verification)?;
            if let Some((id, _)) = producer {
                // Pending from the append on, in log order: the transaction's marker, always
                // later in the log, finds them even if it is applied before this commit's
                // replication wait ends.
                let mut pending = shard.pending.lock().unwrap_or_else(|p| p.into_inner());
                let mut at = last + 1 - records.len() as i64;
                for (e, v) in entries.iter().zip(&values) {
                    if let Ok(v) = v {
                        pending.entry(id).or_default().push((
                            group_id.to_string(),
                            e.topic.clone(),
                            e.partition,
                            v.clone(),
                            at,
                        ));
                        at += 1;
                    }
                }
            }
            last
        };
        let outcome = self.replicated(&shard, last).await;
        tracing::debug!(
            group = %group_id,
            member = %member_id,
            generation,
            commits = ?entries.iter().map(|e| (e.partition, e.offset)).collect::<Vec<_>>(),
            last,
            outcome = ?outcome,
            transactional = producer.is_some(),
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
                if producer.is_none() {
                    g.apply_offset(&e.topic, e.partition, v, log_offset);
                }
                Ok(())
            })
            .collect();
        Ok(results)
    }

    /// A transaction marker was written (and replicated) on offsets partition `index`: the
    /// producer's pending offsets there become the groups' committed offsets, or are dropped.
    /// A shard still loading is waited for: its replay either saw the marker (and settled the
    /// offsets itself) or holds them pending for this call — settled either way.
    pub async fn txn_marker(&self, index: i32, producer_id: i64, commit: bool) {
        let Some(shard) = self.shards().get(&index).cloned() else {
            return;
        };
        if !shard.is_loaded() {
            let mut loaded = shard.loaded.subscribe();
            let _ = tokio::time::timeout(LOAD_WAIT * 15, loaded.wait_for(|l| *l)).await;
        }
        settle_pending(&shard.pending, producer_id, commit, |group_id, offset| {
            let (topic, partition, value, at) = offset;
            let group = shard.group_or_new(&group_id);
            lock(&group).apply_offset(&topic, partition, value, at);
        });
    }

    /// Whether a transaction holds uncommitted offsets for this group's partition
    /// (OffsetFetch with `require_stable` answers UNSTABLE_OFFSET_COMMIT then, KIP-447).
    pub fn offset_unstable(&self, group_id: &str, topic: &str, partition: i32) -> bool {
        let Some(shard) = self.loading_shard(group_id) else {
            return false;
        };
        is_pending(&shard.pending, group_id, topic, partition)
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

    /// `view` of every live (not Dead) group of the loaded shards, sorted by group id.
    fn each_group<T>(&self, view: impl Fn(&Group) -> T) -> Vec<(String, T)> {
        let shards: Vec<Arc<Shard>> = self.shards().values().cloned().collect();
        let mut out = Vec::new();
        for shard in shards.iter().filter(|s| s.is_loaded()) {
            let groups: Vec<Arc<Mutex<Group>>> = shard.groups().values().cloned().collect();
            for g in groups {
                let g = lock(&g);
                if g.state != State::Dead {
                    out.push((g.id.clone(), view(&g)));
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// ListGroups: the groups this broker coordinates, as (id, protocol type, state).
    pub fn list(&self) -> Vec<(String, String, State)> {
        self.each_group(|g| (g.protocol_type.clone().unwrap_or_default(), g.state))
            .into_iter()
            .map(|(id, (ptype, state))| (id, ptype, state))
            .collect()
    }

    /// Every group this broker coordinates with its state and committed offsets, for
    /// `/metrics`.
    pub fn committed_offsets(&self) -> Vec<GroupOffsets> {
        self.each_group(|g| {
            let mut offsets: Vec<(String, i32, i64)> = g
                .offsets
                .iter()
                .map(|((t, p), c)| (t.clone(), *p, c.value.offset))
                .collect();
            offsets.sort();
            (g.state, offsets)
        })
        .into_iter()
        .map(|(id, (state, offsets))| (id, state, offsets))
        .collect()
    }

    /// Whether any shard is still loading (ListGroups answers COORDINATOR_LOAD_IN_PROGRESS).
    pub fn loading(&self) -> bool {
        self.shards().values().any(|s| !s.is_loaded())
    }

    /// DeleteGroups for one group: only a group with no members; its offsets go with it.
    pub async fn delete_group(&self, group_id: &str) -> Result<(), GroupError> {
        let shard = self.ready_shard_for(group_id).await?;
        let group = shard.group(group_id).ok_or(GroupError::GroupIdNotFound)?;
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
            self.append(&shard, &tombstones)?
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
        let shard = self.ready_shard_for(group_id).await?;
        let group = shard.group(group_id).ok_or(GroupError::GroupIdNotFound)?;
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
                Some(self.append(&shard, &tombstones)?)
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
}

/// Whether a transaction holds an undecided offset for this group's partition.
fn is_pending(
    pending: &Mutex<PendingTxnOffsets>,
    group_id: &str,
    topic: &str,
    partition: i32,
) -> bool {
    let pending = pending.lock().unwrap_or_else(|p| p.into_inner());
    pending
        .values()
        .flatten()
        .any(|(g, t, p, _, _)| g == group_id && t == topic && *p == partition)
}

/// Settles a producer's pending offsets at its transaction's marker: on commit each is given
/// to `apply` while still marked pending, and only then forgotten — an OffsetFetch in between
/// sees either the mark (UNSTABLE_OFFSET_COMMIT, which clients retry) or the committed
/// offset, never neither. The pending lock is not held while `apply` runs: the commit path
/// locks a group first and the pending map second.
fn settle_pending(
    pending: &Mutex<PendingTxnOffsets>,
    producer_id: i64,
    commit: bool,
    mut apply: impl FnMut(String, (String, i32, OffsetValue, i64)),
) {
    let held = || pending.lock().unwrap_or_else(|p| p.into_inner());
    if commit {
        let offsets = held().get(&producer_id).cloned().unwrap_or_default();
        for (group_id, topic, partition, value, at) in offsets {
            apply(group_id, (topic, partition, value, at));
        }
    }
    held().remove(&producer_id);
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
    fn transactional_offsets_stay_pending_until_their_group_holds_them() {
        let value = |offset| OffsetValue {
            offset,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp: 0,
        };
        let pending: Mutex<PendingTxnOffsets> = Mutex::new(HashMap::from([
            (
                7,
                vec![
                    ("g".into(), "t".into(), 0, value(5), 10),
                    ("g".into(), "t".into(), 1, value(6), 11),
                ],
            ),
            (8, vec![("h".into(), "t".into(), 0, value(9), 12)]),
        ]));
        let mut applied = Vec::new();
        settle_pending(&pending, 7, true, |g, (t, p, v, at)| {
            // Until the group holds it, a fetch must still see it as pending.
            assert!(
                is_pending(&pending, &g, &t, p),
                "{g} {t}/{p} neither pending nor applied"
            );
            applied.push((g, t, p, v.offset, at));
        });
        assert_eq!(
            applied,
            [
                ("g".to_string(), "t".to_string(), 0, 5, 10),
                ("g".to_string(), "t".to_string(), 1, 6, 11)
            ]
        );
        assert!(!is_pending(&pending, "g", "t", 0) && !is_pending(&pending, "g", "t", 1));
        assert!(is_pending(&pending, "h", "t", 0), "another producer's stay");
        settle_pending(&pending, 8, false, |_, _| {
            panic!("an abort applies nothing")
        });
        assert!(pending.lock().unwrap().is_empty());
    }
}
