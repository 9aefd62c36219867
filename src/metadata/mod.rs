//! The cluster metadata image: brokers, listener endpoints, topics, partitions and topic configs.
//!
//! Pure code. `MetadataImage` is immutable once published: the controller's state machine builds
//! the next image by applying committed `MetadataRecord`s (deterministically: no clocks, no
//! randomness) and publishes it as an `Arc` on a watch channel that handlers and `replica` read.
//! `local_changes` turns two images into what one node must start or stop doing.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::types::{LeaderEpoch, NodeId, TopicId, TopicPartition};

pub mod acl;
pub mod reassign;
pub use acl::{AclBinding, AclFilter};
pub use reassign::Reassignment;

/// One advertised endpoint of a broker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub listener: String,
    pub host: String,
    pub port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub id: NodeId,
    /// Changes on every process start, so a restarted broker is told apart from its old self.
    pub incarnation: uuid::Uuid,
    pub endpoints: Vec<Endpoint>,
    pub rack: Option<String>,
    pub fenced: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionImage {
    pub replicas: Vec<NodeId>,
    pub isr: Vec<NodeId>,
    /// -1 when the partition has no leader.
    pub leader: NodeId,
    pub leader_epoch: LeaderEpoch,
    pub partition_epoch: i32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicImage {
    pub id: TopicId,
    pub name: String,
    pub partitions: Vec<PartitionImage>,
    /// Topic-level config overrides (Kafka names).
    pub configs: BTreeMap<String, String>,
}

/// Everything every node knows about the cluster, as of one committed log index.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MetadataImage {
    pub cluster_id: String,
    pub brokers: BTreeMap<NodeId, BrokerRegistration>,
    pub topics: BTreeMap<String, Arc<TopicImage>>,
    pub topic_names: BTreeMap<TopicId, String>,
    /// The first producer id not yet handed to any broker.
    #[serde(default)]
    pub next_producer_id: i64,
    /// Dynamic broker configs (Kafka names): `""` holds the cluster-wide defaults, a broker id
    /// (as text) that broker's own, which win over the defaults.
    #[serde(default)]
    pub broker_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// SCRAM credentials: user → mechanism name (`SCRAM-SHA-256`, `SCRAM-SHA-512`) → credential.
    #[serde(default)]
    pub scram: BTreeMap<String, BTreeMap<String, ScramCredential>>,
    /// Access control lists (CreateAcls), read by the authorizer on every broker.
    #[serde(default)]
    pub acls: std::collections::BTreeSet<AclBinding>,
    /// Partition reassignments in progress (AlterPartitionReassignments), by topic id and
    /// partition.
    #[serde(default)]
    pub reassignments: BTreeMap<TopicId, BTreeMap<i32, Reassignment>>,
}

/// What a broker keeps to check a SCRAM client's proof (RFC 5802): never the password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: u32,
}

impl std::fmt::Debug for ScramCredential {
    // Salts and keys stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ScramCredential {{ iterations: {}, .. }}",
            self.iterations
        )
    }
}

/// The image as written before SCRAM credentials existed; read from old snapshots (bincode has
/// no optional trailing fields).
#[derive(Deserialize)]
pub struct MetadataImageV2 {
    cluster_id: String,
    brokers: BTreeMap<NodeId, BrokerRegistration>,
    topics: BTreeMap<String, Arc<TopicImage>>,
    topic_names: BTreeMap<TopicId, String>,
    next_producer_id: i64,
    broker_configs: BTreeMap<String, BTreeMap<String, String>>,
}

impl From<MetadataImageV2> for MetadataImage {
    fn from(v: MetadataImageV2) -> MetadataImage {
        MetadataImage {
            cluster_id: v.cluster_id,
            brokers: v.brokers,
            topics: v.topics,
            topic_names: v.topic_names,
            next_producer_id: v.next_producer_id,
            broker_configs: v.broker_configs,
            scram: BTreeMap::new(),
            acls: Default::default(),
            reassignments: BTreeMap::new(),
        }
    }
}

/// The image as written before reassignments existed (the current fields but the last).
#[derive(Deserialize)]
pub struct MetadataImageV3 {
    cluster_id: String,
    brokers: BTreeMap<NodeId, BrokerRegistration>,
    topics: BTreeMap<String, Arc<TopicImage>>,
    topic_names: BTreeMap<TopicId, String>,
    next_producer_id: i64,
    broker_configs: BTreeMap<String, BTreeMap<String, String>>,
    scram: BTreeMap<String, BTreeMap<String, ScramCredential>>,
    acls: std::collections::BTreeSet<AclBinding>,
}

impl From<MetadataImageV3> for MetadataImage {
    fn from(v: MetadataImageV3) -> MetadataImage {
        MetadataImage {
            cluster_id: v.cluster_id,
            brokers: v.brokers,
            topics: v.topics,
            topic_names: v.topic_names,
            next_producer_id: v.next_producer_id,
            broker_configs: v.broker_configs,
            scram: v.scram,
            acls: v.acls,
            reassignments: BTreeMap::new(),
        }
    }
}

/// What a dynamic config change applies to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigResource {
    Topic(TopicId),
    /// `""`: the cluster-wide broker defaults; otherwise a broker id.
    Broker(String),
}

impl MetadataImage {
    /// The dynamic broker configs in force on `node`: its own over the cluster defaults.
    pub fn dynamic_broker_configs(&self, node: NodeId) -> BTreeMap<String, String> {
        let mut merged = self.broker_configs.get("").cloned().unwrap_or_default();
        if let Some(own) = self.broker_configs.get(&node.to_string()) {
            merged.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        merged
    }

    pub fn topic(&self, name: &str) -> Option<&Arc<TopicImage>> {
        self.topics.get(name)
    }

    pub fn topic_by_id(&self, id: TopicId) -> Option<&Arc<TopicImage>> {
        self.topic_names.get(&id).and_then(|n| self.topics.get(n))
    }

    pub fn partition(&self, tp: &TopicPartition) -> Option<&PartitionImage> {
        let t = self.topics.get(&tp.topic)?;
        usize::try_from(tp.partition)
            .ok()
            .and_then(|p| t.partitions.get(p))
    }

    /// Brokers that are registered and not fenced, in id order.
    pub fn live_brokers(&self) -> Vec<NodeId> {
        self.brokers
            .values()
            .filter(|b| !b.fenced)
            .map(|b| b.id)
            .collect()
    }
}

/// One replicated metadata change. New variants may be added; existing ones never change shape
/// incompatibly, so an older log always reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum MetadataRecord {
    /// Written once when the quorum is first formed.
    InitCluster {
        cluster_id: String,
    },
    RegisterBroker(BrokerRegistration),
    CreateTopic {
        name: String,
        id: TopicId,
        /// Replica lists, one per partition; the first replica leads.
        assignments: Vec<Vec<NodeId>>,
        configs: BTreeMap<String, String>,
    },
    DeleteTopic {
        id: TopicId,
    },
    CreatePartitions {
        id: TopicId,
        assignments: Vec<Vec<NodeId>>,
    },
    /// The broker's heartbeats stopped: it serves nothing until unfenced.
    FenceBroker {
        id: NodeId,
    },
    UnfenceBroker {
        id: NodeId,
    },
    /// A block of idempotent-producer ids for one broker: [next_producer_id, + count).
    AllocateProducerIds {
        broker: NodeId,
        count: i64,
    },
    /// Dynamic configs of a topic or of brokers (IncrementalAlterConfigs, AlterConfigs):
    /// `replace` drops every existing one first; then `set` are set and `delete` removed.
    ConfigChange {
        resource: ConfigResource,
        replace: bool,
        set: BTreeMap<String, String>,
        delete: Vec<String>,
    },
    /// A new leader, ISR or both for one partition (computed by the controller's pure code).
    PartitionChange {
        topic_id: TopicId,
        partition: i32,
        leader: NodeId,
        isr: Vec<NodeId>,
        leader_epoch: LeaderEpoch,
        partition_epoch: i32,
    },
    /// An ACL added (CreateAcls); adding one that exists changes nothing.
    CreateAcl(AclBinding),
    /// An ACL removed (DeleteAcls).
    DeleteAcl(AclBinding),
    /// A user's SCRAM credential for one mechanism set (`Some`) or removed (`None`).
    ScramCredential {
        user: String,
        mechanism: String,
        credential: Option<ScramCredential>,
    },
    /// A partition's replica set changed by a reassignment (started, completed or cancelled):
    /// replicas, ISR and leader, and what is still being added and removed (both empty: no
    /// reassignment remains). Applies only on top of the partition epoch it was computed from.
    ReplicasChange {
        topic_id: TopicId,
        partition: i32,
        replicas: Vec<NodeId>,
        isr: Vec<NodeId>,
        leader: NodeId,
        leader_epoch: LeaderEpoch,
        partition_epoch: i32,
        adding: Vec<NodeId>,
        removing: Vec<NodeId>,
    },
}

/// What applying one record did; returned to the proposer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApplyOutcome {
    Applied,
    /// A producer-id block starting here was allocated.
    ProducerIds {
        first: i64,
    },
    TopicAlreadyExists,
    UnknownTopic,
    /// The change was refused because the image no longer allows it (a race with another write).
    Conflict(String),
}

impl MetadataImage {
    /// Applies one committed record, returning the next image. Deterministic.
    pub fn apply(&self, record: &MetadataRecord) -> (MetadataImage, ApplyOutcome) {
        let mut next = self.clone();
        let outcome = next.apply_mut(record);
        (next, outcome)
    }

    /// Applies one committed record in place, at a cost in proportion to what it changes (a
    /// topic shared with an earlier image is copied once, when first changed). Deterministic;
    /// a record that does not apply (any outcome but `Applied` or `ProducerIds`) changes
    /// nothing.
    pub fn apply_mut(&mut self, record: &MetadataRecord) -> ApplyOutcome {
        let next = self;
        match record {
            MetadataRecord::InitCluster { cluster_id } => {
                if next.cluster_id.is_empty() {
                    next.cluster_id = cluster_id.clone();
                    ApplyOutcome::Applied
                } else {
                    ApplyOutcome::Conflict("cluster id already set".into())
                }
            }
            MetadataRecord::RegisterBroker(reg) => {
                next.brokers.insert(reg.id, reg.clone());
                ApplyOutcome::Applied
            }
            MetadataRecord::CreateTopic {
                name,
                id,
                assignments,
                configs,
            } => {
                if next.topics.contains_key(name) || next.topic_names.contains_key(id) {
                    ApplyOutcome::TopicAlreadyExists
                } else {
                    let topic = TopicImage {
                        id: *id,
                        name: name.clone(),
                        partitions: assignments.iter().map(|r| new_partition(r)).collect(),
                        configs: configs.clone(),
                    };
                    next.topics.insert(name.clone(), Arc::new(topic));
                    next.topic_names.insert(*id, name.clone());
                    ApplyOutcome::Applied
                }
            }
            MetadataRecord::DeleteTopic { id } => match next.topic_names.remove(id) {
                Some(name) => {
                    next.topics.remove(&name);
                    next.reassignments.remove(id);
                    ApplyOutcome::Applied
                }
                None => ApplyOutcome::UnknownTopic,
            },
            MetadataRecord::CreatePartitions { id, assignments } => {
                match next.topic_names.get(id).cloned() {
                    Some(name) => {
                        let topic = next.topic_mut(&name);
                        topic
                            .partitions
                            .extend(assignments.iter().map(|r| new_partition(r)));
                        ApplyOutcome::Applied
                    }
                    None => ApplyOutcome::UnknownTopic,
                }
            }
            MetadataRecord::ConfigChange {
                resource,
                replace,
                set,
                delete,
            } => {
                let change = |configs: &mut BTreeMap<String, String>| {
                    if *replace {
                        configs.clear();
                    }
                    configs.extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
                    for k in delete {
                        configs.remove(k);
                    }
                };
                match resource {
                    ConfigResource::Topic(id) => match next.topic_names.get(id).cloned() {
                        Some(name) => {
                            change(&mut next.topic_mut(&name).configs);
                            ApplyOutcome::Applied
                        }
                        None => ApplyOutcome::UnknownTopic,
                    },
                    ConfigResource::Broker(key) => {
                        let configs = next.broker_configs.entry(key.clone()).or_default();
                        change(configs);
                        if configs.is_empty() {
                            next.broker_configs.remove(key);
                        }
                        ApplyOutcome::Applied
                    }
                }
            }
            MetadataRecord::AllocateProducerIds { count, .. } => {
                let first = next.next_producer_id;
                next.next_producer_id = first.saturating_add((*count).max(0));
                ApplyOutcome::ProducerIds { first }
            }
            MetadataRecord::FenceBroker { id } | MetadataRecord::UnfenceBroker { id } => {
                let fenced = matches!(record, MetadataRecord::FenceBroker { .. });
                match next.brokers.get_mut(id) {
                    Some(b) => {
                        b.fenced = fenced;
                        ApplyOutcome::Applied
                    }
                    None => ApplyOutcome::Conflict(format!("broker {id} is not registered")),
                }
            }
            MetadataRecord::PartitionChange {
                topic_id,
                partition,
                leader,
                isr,
                leader_epoch,
                partition_epoch,
            } => next.change_partition(*topic_id, *partition, *partition_epoch, |p| {
                p.leader = *leader;
                p.isr = isr.clone();
                p.leader_epoch = *leader_epoch;
            }),
            MetadataRecord::ReplicasChange {
                topic_id,
                partition,
                replicas,
                isr,
                leader,
                leader_epoch,
                partition_epoch,
                adding,
                removing,
            } => {
                let outcome = next.change_partition(*topic_id, *partition, *partition_epoch, |p| {
                    p.replicas = replicas.clone();
                    p.isr = isr.clone();
                    p.leader = *leader;
                    p.leader_epoch = *leader_epoch;
                });
                if outcome == ApplyOutcome::Applied {
                    let of_topic = next.reassignments.entry(*topic_id).or_default();
                    if adding.is_empty() && removing.is_empty() {
                        of_topic.remove(partition);
                    } else {
                        of_topic.insert(
                            *partition,
                            Reassignment {
                                adding: adding.clone(),
                                removing: removing.clone(),
                            },
                        );
                    }
                    if of_topic.is_empty() {
                        next.reassignments.remove(topic_id);
                    }
                }
                outcome
            }
            MetadataRecord::CreateAcl(b) => {
                next.acls.insert(b.clone());
                ApplyOutcome::Applied
            }
            MetadataRecord::DeleteAcl(b) => {
                if next.acls.remove(b) {
                    ApplyOutcome::Applied
                } else {
                    ApplyOutcome::Conflict("no such ACL".into())
                }
            }
            MetadataRecord::ScramCredential {
                user,
                mechanism,
                credential,
            } => match credential {
                Some(c) => {
                    let of_user = next.scram.entry(user.clone()).or_default();
                    of_user.insert(mechanism.clone(), c.clone());
                    ApplyOutcome::Applied
                }
                None => {
                    let removed = next
                        .scram
                        .get_mut(user)
                        .and_then(|m| m.remove(mechanism))
                        .is_some();
                    if next.scram.get(user).is_some_and(BTreeMap::is_empty) {
                        next.scram.remove(user);
                    }
                    if removed {
                        ApplyOutcome::Applied
                    } else {
                        ApplyOutcome::Conflict(format!("{user} has no {mechanism} credential"))
                    }
                }
            },
        }
    }
}

impl MetadataImage {
    /// Changes one partition with `change`, only if `partition_epoch` follows the current one
    /// (a change computed from an older image does not apply); the epoch is then set.
    fn change_partition(
        &mut self,
        topic_id: TopicId,
        partition: i32,
        partition_epoch: i32,
        change: impl FnOnce(&mut PartitionImage),
    ) -> ApplyOutcome {
        let Some(name) = self.topic_names.get(&topic_id).cloned() else {
            return ApplyOutcome::UnknownTopic;
        };
        let index = usize::try_from(partition).ok();
        match index.and_then(|i| self.topics[&name].partitions.get(i)) {
            Some(p) if partition_epoch == p.partition_epoch + 1 => {
                let p = &mut self.topic_mut(&name).partitions[index.unwrap_or_default()];
                change(p);
                p.partition_epoch = partition_epoch;
                ApplyOutcome::Applied
            }
            Some(p) => ApplyOutcome::Conflict(format!(
                "partition epoch is {}, the change expected {}",
                p.partition_epoch,
                partition_epoch - 1
            )),
            None => ApplyOutcome::UnknownTopic,
        }
    }

    /// A topic to change in place (copied first if an earlier image still shares it). The
    /// caller knows it exists.
    fn topic_mut(&mut self, name: &str) -> &mut TopicImage {
        let topic = self
            .topics
            .get_mut(name)
            .expect("a topic named in topic_names exists");
        Arc::make_mut(topic)
    }

    /// The reassignment in progress for one partition, if any.
    pub fn reassignment(&self, topic_id: TopicId, partition: i32) -> Option<&Reassignment> {
        self.reassignments.get(&topic_id)?.get(&partition)
    }
}

fn new_partition(replicas: &[NodeId]) -> PartitionImage {
    PartitionImage {
        replicas: replicas.to_vec(),
        isr: replicas.to_vec(),
        leader: replicas.first().copied().unwrap_or(-1),
        leader_epoch: 0,
        partition_epoch: 0,
    }
}

/// Spreads `partitions` new partitions with `rf` replicas over `brokers`, starting after
/// `start` so successive topics do not all lead on the same broker. Pure; the caller checks
/// that `rf <= brokers.len()`.
pub fn place_replicas(
    brokers: &[NodeId],
    partitions: i32,
    rf: usize,
    start: usize,
) -> Vec<Vec<NodeId>> {
    if brokers.is_empty() {
        return Vec::new();
    }
    (0..partitions.max(0) as usize)
        .map(|p| {
            (0..rf)
                .map(|r| brokers[(start + p + r) % brokers.len()])
                .collect()
        })
        .collect()
}

/// The partition changes that fencing `broker` requires: it leaves every ISR (unless it is the
/// last member, which keeps the partition's data findable), and partitions it led get the next
/// live ISR member as leader with epoch + 1 — or, with `unclean`, any live replica when no ISR
/// member is left; otherwise they go leaderless (-1) until a member returns. Pure.
pub fn fence_changes(image: &MetadataImage, broker: NodeId, unclean: bool) -> Vec<MetadataRecord> {
    let live = |b: &NodeId| *b != broker && image.brokers.get(b).is_some_and(|r| !r.fenced);
    let mut out = Vec::new();
    for t in image.topics.values() {
        for (i, p) in t.partitions.iter().enumerate() {
            if !p.isr.contains(&broker) && p.leader != broker {
                continue;
            }
            let mut isr: Vec<NodeId> = p.isr.iter().copied().filter(|b| *b != broker).collect();
            if isr.is_empty() {
                isr = vec![broker];
            }
            let mut leader = p.leader;
            if leader == broker || leader < 0 {
                leader = isr.iter().copied().find(|b| live(b)).unwrap_or(-1);
                if leader < 0 && unclean {
                    if let Some(b) = p.replicas.iter().copied().find(|b| live(b)) {
                        leader = b;
                        isr = vec![b];
                    }
                }
            }
            if leader == p.leader && isr == p.isr {
                continue;
            }
            out.push(MetadataRecord::PartitionChange {
                topic_id: t.id,
                partition: i as i32,
                leader,
                isr,
                leader_epoch: if leader != p.leader {
                    p.leader_epoch + 1
                } else {
                    p.leader_epoch
                },
                partition_epoch: p.partition_epoch + 1,
            });
        }
    }
    out
}

/// Partitions left leaderless that `broker` (now back) can lead again: it is in their ISR.
pub fn unfence_changes(image: &MetadataImage, broker: NodeId) -> Vec<MetadataRecord> {
    let mut out = Vec::new();
    for t in image.topics.values() {
        for (i, p) in t.partitions.iter().enumerate() {
            if p.leader < 0 && p.isr.contains(&broker) {
                out.push(MetadataRecord::PartitionChange {
                    topic_id: t.id,
                    partition: i as i32,
                    leader: broker,
                    isr: p.isr.clone(),
                    leader_epoch: p.leader_epoch + 1,
                    partition_epoch: p.partition_epoch + 1,
                });
            }
        }
    }
    out
}

/// Why a leader election (ElectLeaders) did not happen for a partition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ElectionError {
    #[error("unknown topic or partition")]
    UnknownPartition,
    #[error("the partition already has the leader this election would choose")]
    NotNeeded,
    #[error("the preferred replica is not alive or not in the ISR")]
    PreferredNotAvailable,
    #[error("no live replica can lead")]
    NoEligibleLeader,
}

/// The change that elects a leader for `partition` of `topic`: the preferred (first) replica
/// when it is alive and in the ISR, or with `unclean`, for a partition with no leader, a live
/// ISR member or else any live replica (which may lose acknowledged data). Pure.
pub fn elect_leader(
    image: &MetadataImage,
    topic: &str,
    partition: i32,
    unclean: bool,
) -> Result<MetadataRecord, ElectionError> {
    let t = image.topic(topic).ok_or(ElectionError::UnknownPartition)?;
    let p = usize::try_from(partition)
        .ok()
        .and_then(|i| t.partitions.get(i))
        .ok_or(ElectionError::UnknownPartition)?;
    let alive = |b: &NodeId| image.brokers.get(b).is_some_and(|r| !r.fenced);
    let (leader, isr) = if unclean {
        if p.leader >= 0 && alive(&p.leader) {
            return Err(ElectionError::NotNeeded);
        }
        match p.isr.iter().find(|b| alive(b)) {
            Some(b) => (*b, p.isr.clone()),
            None => {
                let b = *p
                    .replicas
                    .iter()
                    .find(|b| alive(b))
                    .ok_or(ElectionError::NoEligibleLeader)?;
                (b, vec![b])
            }
        }
    } else {
        let preferred = *p.replicas.first().ok_or(ElectionError::UnknownPartition)?;
        if p.leader == preferred {
            return Err(ElectionError::NotNeeded);
        }
        if !alive(&preferred) || !p.isr.contains(&preferred) {
            return Err(ElectionError::PreferredNotAvailable);
        }
        (preferred, p.isr.clone())
    };
    Ok(MetadataRecord::PartitionChange {
        topic_id: t.id,
        partition,
        leader,
        isr,
        leader_epoch: p.leader_epoch + 1,
        partition_epoch: p.partition_epoch + 1,
    })
}

/// Partitions whose preferred (first) replica is alive and in the ISR but does not lead: it
/// leads again at epoch + 1. Pure.
pub fn preferred_leader_changes(image: &MetadataImage) -> Vec<MetadataRecord> {
    image
        .topics
        .values()
        .flat_map(|t| {
            (0..t.partitions.len() as i32)
                .filter_map(|i| elect_leader(image, &t.name, i, false).ok())
        })
        .collect()
}

/// What one node must change to match a new image.
#[derive(Debug, Default, PartialEq)]
pub struct LocalChanges {
    /// Partitions this node now leads (or leads at a new epoch), with the topic id and epoch.
    pub lead: Vec<(TopicPartition, TopicId, LeaderEpoch)>,
    /// Partitions this node no longer hosts (topic deleted or replica removed).
    pub remove: Vec<(TopicPartition, TopicId)>,
}

/// One topic's (before, after) between two images.
pub type TopicChange<'a> = (Option<&'a Arc<TopicImage>>, Option<&'a Arc<TopicImage>>);

/// The topics that differ between two images, by name: (before, after), `None` where the
/// image has no topic of that name. Topics the images share (the same allocation: records
/// copy a topic before changing it) are passed over by a pointer comparison, so two images
/// that differ in a few topics compare in time linear in the count of topics, with no name
/// compared but around the changes.
pub fn changed_topics<'a>(
    prev: &'a MetadataImage,
    next: &'a MetadataImage,
) -> Vec<TopicChange<'a>> {
    let mut out = Vec::new();
    let mut before = prev.topics.iter().peekable();
    let mut after = next.topics.iter().peekable();
    loop {
        match (before.peek(), after.peek()) {
            (None, None) => return out,
            (Some(&(_, b)), None) => {
                out.push((Some(b), None));
                before.next();
            }
            (None, Some(&(_, a))) => {
                out.push((None, Some(a)));
                after.next();
            }
            (Some(&(bn, b)), Some(&(an, a))) => {
                if Arc::ptr_eq(b, a) {
                    before.next();
                    after.next();
                    continue;
                }
                match bn.cmp(an) {
                    std::cmp::Ordering::Equal => {
                        out.push((Some(b), Some(a)));
                        before.next();
                        after.next();
                    }
                    std::cmp::Ordering::Less => {
                        out.push((Some(b), None));
                        before.next();
                    }
                    std::cmp::Ordering::Greater => {
                        out.push((None, Some(a)));
                        after.next();
                    }
                }
            }
        }
    }
}

/// Compares two images from `node`'s point of view. Pure and idempotent: applying the result
/// twice is the same as once. Topics the two images share are passed over unread.
pub fn local_changes(prev: &MetadataImage, next: &MetadataImage, node: NodeId) -> LocalChanges {
    let mut changes = LocalChanges::default();
    for (before, after) in changed_topics(prev, next) {
        // A topic deleted and created again under its name is another topic.
        let same = |a: &&Arc<TopicImage>, b: &&Arc<TopicImage>| a.id == b.id;
        if let Some(topic) = after {
            let old = before.filter(|b| same(b, &topic));
            for (i, p) in topic.partitions.iter().enumerate() {
                let was = old.and_then(|t| t.partitions.get(i));
                if p.leader == node
                    && was.is_none_or(|o| o.leader != node || o.leader_epoch != p.leader_epoch)
                {
                    changes.lead.push((
                        TopicPartition::new(topic.name.clone(), i as i32),
                        topic.id,
                        p.leader_epoch,
                    ));
                }
            }
        }
        let Some(topic) = before else { continue };
        let now = after.filter(|a| same(a, &topic));
        for (i, p) in topic.partitions.iter().enumerate() {
            if !p.replicas.contains(&node) {
                continue;
            }
            let still = now
                .and_then(|t| t.partitions.get(i))
                .is_some_and(|n| n.replicas.contains(&node));
            if !still {
                changes
                    .remove
                    .push((TopicPartition::new(topic.name.clone(), i as i32), topic.id));
            }
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(name: &str, n: u128, parts: usize) -> MetadataRecord {
        MetadataRecord::CreateTopic {
            name: name.into(),
            id: TopicId(uuid::Uuid::from_u128(n)),
            assignments: vec![vec![1]; parts],
            configs: BTreeMap::new(),
        }
    }

    #[test]
    fn create_twice_is_refused_and_image_unchanged() {
        let img = MetadataImage::default();
        let (img, out) = img.apply(&create("a", 1, 2));
        assert_eq!(out, ApplyOutcome::Applied);
        let (img2, out) = img.apply(&create("a", 2, 3));
        assert_eq!(out, ApplyOutcome::TopicAlreadyExists);
        assert_eq!(img2, img);
        assert_eq!(img.topic("a").map(|t| t.partitions.len()), Some(2));
    }

    #[test]
    fn config_changes_set_delete_and_replace_topic_and_broker_configs() {
        let (img, _) = MetadataImage::default().apply(&create("a", 1, 1));
        let id = TopicId(uuid::Uuid::from_u128(1));
        let change = |resource: ConfigResource, replace, set: &[(&str, &str)], delete: &[&str]| {
            MetadataRecord::ConfigChange {
                resource,
                replace,
                set: set
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                delete: delete.iter().map(|k| k.to_string()).collect(),
            }
        };
        let topic = ConfigResource::Topic(id);
        let set = change(
            topic.clone(),
            false,
            &[("retention.ms", "1"), ("segment.ms", "9")],
            &[],
        );
        let (img, out) = img.apply(&set);
        assert_eq!(out, ApplyOutcome::Applied);
        let (img, _) = img.apply(&change(topic.clone(), false, &[], &["segment.ms"]));
        let configs = |img: &MetadataImage| img.topic("a").map(|t| t.configs.clone());
        assert_eq!(
            configs(&img),
            Some(BTreeMap::from([("retention.ms".into(), "1".into())]))
        );
        let (img, _) = img.apply(&change(topic, true, &[("flush.ms", "5")], &[]));
        assert_eq!(
            configs(&img),
            Some(BTreeMap::from([("flush.ms".into(), "5".into())]))
        );
        let unknown = ConfigResource::Topic(TopicId(uuid::Uuid::from_u128(9)));
        let (same, out) = img.apply(&change(unknown, false, &[("flush.ms", "1")], &[]));
        assert_eq!((out, &same), (ApplyOutcome::UnknownTopic, &img));

        // A broker's own dynamic configs win over the cluster defaults; emptied ones go away.
        let all = ConfigResource::Broker(String::new());
        let two = ConfigResource::Broker("2".into());
        let (img, _) = img.apply(&change(
            all.clone(),
            false,
            &[("log.retention.ms", "10"), ("log.flush.interval.ms", "7")],
            &[],
        ));
        let (img, _) = img.apply(&change(
            two.clone(),
            false,
            &[("log.retention.ms", "20")],
            &[],
        ));
        assert_eq!(img.dynamic_broker_configs(2)["log.retention.ms"], "20");
        assert_eq!(img.dynamic_broker_configs(2)["log.flush.interval.ms"], "7");
        assert_eq!(img.dynamic_broker_configs(1)["log.retention.ms"], "10");
        let (img, _) = img.apply(&change(two, false, &[], &["log.retention.ms"]));
        assert!(!img.broker_configs.contains_key("2"));
    }

    #[test]
    fn local_changes_lead_new_and_remove_deleted() {
        let empty = MetadataImage::default();
        let (img, _) = empty.apply(&create("a", 1, 2));
        let ch = local_changes(&empty, &img, 1);
        assert_eq!(ch.lead.len(), 2);
        assert!(ch.remove.is_empty());
        // Idempotent: the same image again changes nothing.
        assert_eq!(local_changes(&img, &img, 1), LocalChanges::default());
        // Another node leads nothing.
        assert!(local_changes(&empty, &img, 2).lead.is_empty());
        let (gone, out) = img.apply(&MetadataRecord::DeleteTopic {
            id: TopicId(uuid::Uuid::from_u128(1)),
        });
        assert_eq!(out, ApplyOutcome::Applied);
        let ch = local_changes(&img, &gone, 1);
        assert_eq!(ch.remove.len(), 2);
        assert!(gone.topic("a").is_none());
    }

    /// A record copies only the topic it changes; the topics both images share are the same
    /// allocation, and local changes are found in the copied ones alone.
    #[test]
    fn applying_in_place_shares_untouched_topics_and_local_changes_see_the_changed_one() {
        let mut img = MetadataImage::default();
        for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
            assert_eq!(
                img.apply_mut(&create(name, i as u128 + 1, 2)),
                ApplyOutcome::Applied
            );
        }
        let before = img.clone();
        let change = MetadataRecord::PartitionChange {
            topic_id: TopicId(uuid::Uuid::from_u128(2)),
            partition: 1,
            leader: 1,
            isr: vec![1],
            leader_epoch: 1,
            partition_epoch: 1,
        };
        assert_eq!(img.apply_mut(&change), ApplyOutcome::Applied);
        let changed: Vec<_> = changed_topics(&before, &img)
            .into_iter()
            .map(|(b, a)| (b.map(|t| t.name.clone()), a.map(|t| t.name.clone())))
            .collect();
        assert_eq!(
            changed,
            vec![(Some("b".into()), Some("b".into()))],
            "b alone was copied"
        );
        assert_eq!(
            before.topics["b"].partitions[1].leader_epoch, 0,
            "the old image kept"
        );
        let ch = local_changes(&before, &img, 1);
        assert_eq!(
            ch.lead,
            vec![(
                TopicPartition::new("b", 1),
                TopicId(uuid::Uuid::from_u128(2)),
                1
            )]
        );
        // A stale change (the same partition epoch again) changes nothing in place.
        let kept = img.clone();
        assert!(matches!(img.apply_mut(&change), ApplyOutcome::Conflict(_)));
        assert!(img == kept);
    }

    #[test]
    fn placement_spreads_leaders() {
        let p = place_replicas(&[1, 2, 3], 6, 2, 0);
        assert_eq!(p.len(), 6);
        for b in 1..=3 {
            assert_eq!(p.iter().filter(|r| r[0] == b).count(), 2);
        }
        assert!(p.iter().all(|r| r[0] != r[1]));
    }

    fn three_brokers() -> MetadataImage {
        let mut img = MetadataImage::default();
        for id in 1..=3 {
            let reg = BrokerRegistration {
                id,
                incarnation: uuid::Uuid::from_u128(id as u128),
                endpoints: Vec::new(),
                rack: None,
                fenced: false,
            };
            img = img.apply(&MetadataRecord::RegisterBroker(reg)).0;
        }
        img.apply(&MetadataRecord::CreateTopic {
            name: "t".into(),
            id: TopicId(uuid::Uuid::from_u128(9)),
            assignments: vec![vec![1, 2, 3], vec![2, 3, 1]],
            configs: BTreeMap::new(),
        })
        .0
    }

    fn apply_all(img: &MetadataImage, records: &[MetadataRecord]) -> MetadataImage {
        records.iter().fold(img.clone(), |i, r| {
            let (next, out) = i.apply(r);
            assert_eq!(out, ApplyOutcome::Applied, "{r:?}");
            next
        })
    }

    #[test]
    fn fencing_moves_leadership_to_the_next_live_isr_member() {
        let img = three_brokers();
        let img = img.apply(&MetadataRecord::FenceBroker { id: 1 }).0;
        let changes = fence_changes(&img, 1, false);
        assert_eq!(changes.len(), 2, "both partitions have 1 in their ISR");
        let img = apply_all(&img, &changes);
        let p0 = &img.topic("t").expect("t").partitions[0];
        assert_eq!((p0.leader, p0.leader_epoch, p0.partition_epoch), (2, 1, 1));
        assert_eq!(p0.isr, vec![2, 3]);
        let p1 = &img.topic("t").expect("t").partitions[1];
        assert_eq!(
            (p1.leader, p1.leader_epoch),
            (2, 0),
            "leader kept, only the ISR shrank"
        );
        // A stale change (same partition epoch again) is refused at apply.
        let (_, out) = img.apply(&changes[0]);
        assert!(matches!(out, ApplyOutcome::Conflict(_)));
    }

    #[test]
    fn last_isr_member_stays_and_unclean_election_is_opt_in() {
        let mut img = three_brokers();
        for id in [2, 3] {
            img = img.apply(&MetadataRecord::FenceBroker { id }).0;
            let ch = fence_changes(&img, id, false);
            img = apply_all(&img, &ch);
        }
        let p0 = img.topic("t").expect("t").partitions[0].clone();
        assert_eq!((p0.leader, p0.isr.clone()), (1, vec![1]));
        img = img.apply(&MetadataRecord::FenceBroker { id: 1 }).0;
        let clean = apply_all(&img, &fence_changes(&img, 1, false));
        let p = &clean.topic("t").expect("t").partitions[0];
        assert_eq!(
            (p.leader, p.isr.clone()),
            (-1, vec![1]),
            "leaderless, ISR keeps the last member"
        );
        // Broker 1 returns: it leads again.
        let back = clean.apply(&MetadataRecord::UnfenceBroker { id: 1 }).0;
        let back = apply_all(&back, &unfence_changes(&back, 1));
        assert_eq!(back.topic("t").expect("t").partitions[0].leader, 1);
        // With unclean election a live out-of-ISR replica takes over instead.
        let img2 = clean.apply(&MetadataRecord::UnfenceBroker { id: 3 }).0;
        let unclean = apply_all(&img2, &fence_changes(&img2, 1, true));
        let p = &unclean.topic("t").expect("t").partitions[0];
        assert_eq!((p.leader, p.isr.clone()), (3, vec![3]));
    }

    #[test]
    fn preferred_leaders_return_once_back_in_the_isr() {
        let img = three_brokers();
        let img = img.apply(&MetadataRecord::FenceBroker { id: 1 }).0;
        let img = apply_all(&img, &fence_changes(&img, 1, false));
        assert!(preferred_leader_changes(&img).is_empty(), "1 is fenced");
        let img = img.apply(&MetadataRecord::UnfenceBroker { id: 1 }).0;
        assert!(
            preferred_leader_changes(&img).is_empty(),
            "1 is not in the ISR yet"
        );
        let p0 = img.topic("t").expect("t").partitions[0].clone();
        let img = apply_all(
            &img,
            &[MetadataRecord::PartitionChange {
                topic_id: TopicId(uuid::Uuid::from_u128(9)),
                partition: 0,
                leader: p0.leader,
                isr: vec![1, 2, 3],
                leader_epoch: p0.leader_epoch,
                partition_epoch: p0.partition_epoch + 1,
            }],
        );
        let changes = preferred_leader_changes(&img);
        assert_eq!(changes.len(), 1);
        let img = apply_all(&img, &changes);
        let p0 = &img.topic("t").expect("t").partitions[0];
        assert_eq!((p0.leader, p0.leader_epoch), (1, 2));
    }

    #[test]
    fn producer_id_blocks_never_overlap() {
        let img = MetadataImage::default();
        let (img, a) = img.apply(&MetadataRecord::AllocateProducerIds {
            broker: 1,
            count: 1000,
        });
        let (img, b) = img.apply(&MetadataRecord::AllocateProducerIds {
            broker: 2,
            count: 1000,
        });
        assert_eq!(a, ApplyOutcome::ProducerIds { first: 0 });
        assert_eq!(b, ApplyOutcome::ProducerIds { first: 1000 });
        assert_eq!(img.next_producer_id, 2000);
    }

    #[test]
    fn create_partitions_extends() {
        let (img, _) = MetadataImage::default().apply(&create("a", 1, 1));
        let (img, out) = img.apply(&MetadataRecord::CreatePartitions {
            id: TopicId(uuid::Uuid::from_u128(1)),
            assignments: vec![vec![1], vec![1]],
        });
        assert_eq!(out, ApplyOutcome::Applied);
        assert_eq!(img.topic("a").map(|t| t.partitions.len()), Some(3));
    }
}
