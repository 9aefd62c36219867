//! The controller's decisions, as pure functions of the image, the configuration and the request:
//! each returns the records to commit and how to read their outcomes (Kafka's
//! `ControllerResult`), or the error to answer with. No Raft, no clocks, no I/O — the leader's
//! service (`leader.rs`) proposes what these return, and the tests below run them on plain
//! images. Placement and elections themselves live with the image (`metadata`), config changes in
//! `configs.rs`; this file decides with them.

use serde::{Deserialize, Serialize};

use super::admin::{
    AdminDone, AdminError, AdminOp, ConfigTarget, NewTopic, EXCESSIVE_PARTITIONS,
    MAX_PARTITIONS_PER_REQUEST,
};
use super::configs::plan_config_change;
use crate::config::{validate_topic_config, Config};
use crate::metadata::reassign::{self, ReassignError, ReplicaSet};
use crate::metadata::{
    elect_leader, fence_changes, place_replicas, unfence_changes, ApplyOutcome, BrokerRegistration,
    ElectionError, MetadataImage, MetadataRecord,
};
use crate::types::{NodeId, TopicId};

/// How many producer ids a broker gets at a time.
const PRODUCER_ID_BLOCK: i64 = 1000;

/// An ISR change a partition leader asks for (AlterPartition), the same on every side: the
/// leader's replica manager sends it, the RPC carries it, the controller decides on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlterPartition {
    pub broker: NodeId,
    pub topic_id: TopicId,
    pub partition: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub new_isr: Vec<NodeId>,
}

/// An admin decision: the records to commit, and how their outcomes answer the request.
#[derive(Debug)]
pub struct Planned {
    pub records: Vec<MetadataRecord>,
    conclusion: Conclusion,
}

#[derive(Debug)]
enum Conclusion {
    /// Known without writing (validate_only).
    Answer(AdminDone),
    Topic {
        name: String,
        id: TopicId,
        assignments: Vec<Vec<NodeId>>,
    },
    ProducerIds,
    /// Applied, or the topic went away meanwhile.
    AppliedOrUnknownTopic(String),
    /// Each topic of the request: the index of its record, or why it was not planned.
    Topics(Vec<(String, Result<usize, AdminError>)>),
    Elections(Vec<(String, i32, Result<(), ElectionError>)>),
    Configs(ConfigTarget),
    /// Each partition of an AlterPartitionReassignments: the index of its record, or why not.
    Reassignments(Vec<(String, i32, Result<usize, AdminError>)>),
}

fn unexpected(other: Option<&ApplyOutcome>) -> String {
    format!("unexpected outcome {other:?}")
}

impl Planned {
    fn answer(done: AdminDone) -> Planned {
        Planned {
            records: Vec::new(),
            conclusion: Conclusion::Answer(done),
        }
    }

    /// The answer, given the outcome of each record (empty when nothing was written).
    pub fn conclude(self, outcomes: &[ApplyOutcome]) -> Result<AdminDone, AdminError> {
        let first = outcomes.first();
        match self.conclusion {
            Conclusion::Answer(done) => Ok(done),
            Conclusion::Topic {
                name,
                id,
                assignments,
            } => match first {
                Some(ApplyOutcome::Applied) => Ok(AdminDone::Topic { id, assignments }),
                Some(ApplyOutcome::TopicAlreadyExists) => Err(AdminError::TopicAlreadyExists(name)),
                other => Err(AdminError::InvalidTopic(unexpected(other))),
            },
            Conclusion::ProducerIds => match first {
                Some(ApplyOutcome::ProducerIds { first }) => Ok(AdminDone::ProducerIds {
                    first: *first,
                    count: PRODUCER_ID_BLOCK,
                }),
                other => Err(AdminError::NoQuorum(unexpected(other))),
            },
            Conclusion::AppliedOrUnknownTopic(name) => match first {
                Some(ApplyOutcome::Applied) => Ok(AdminDone::Done),
                _ => Err(AdminError::UnknownTopic(name)),
            },
            Conclusion::Topics(planned) => {
                let ids: Vec<Option<TopicId>> = self
                    .records
                    .iter()
                    .map(|r| match r {
                        MetadataRecord::CreateTopic { id, .. } => Some(*id),
                        _ => None,
                    })
                    .collect();
                let results = planned
                    .into_iter()
                    .map(|(name, p)| {
                        let i = p?;
                        match (outcomes.get(i), ids.get(i).copied().flatten()) {
                            (Some(ApplyOutcome::Applied), Some(id)) => Ok(id),
                            (Some(ApplyOutcome::TopicAlreadyExists), _) => {
                                Err(AdminError::TopicAlreadyExists(name))
                            }
                            (other, _) => Err(AdminError::InvalidTopic(unexpected(other))),
                        }
                    })
                    .collect();
                Ok(AdminDone::Topics(results))
            }
            Conclusion::Elections(results) => {
                if let Some(bad) = outcomes
                    .iter()
                    .find(|o| !matches!(o, ApplyOutcome::Applied))
                {
                    return Err(AdminError::Stale(format!(
                        "a partition changed during the election: {bad:?}"
                    )));
                }
                Ok(AdminDone::Elections(results))
            }
            Conclusion::Configs(target) => match first {
                Some(ApplyOutcome::Applied) => Ok(AdminDone::Done),
                Some(ApplyOutcome::UnknownTopic) => match target {
                    ConfigTarget::Topic(name) => Err(AdminError::UnknownTopic(name)),
                    ConfigTarget::Broker(b) => Err(AdminError::InvalidRequest(format!(
                        "unexpected outcome for broker `{b}`"
                    ))),
                },
                other => Err(AdminError::InvalidConfig(unexpected(other))),
            },
            Conclusion::Reassignments(planned) => Ok(AdminDone::Reassignments(
                planned
                    .into_iter()
                    .map(|(topic, partition, p)| {
                        let result = p.and_then(|i| match outcomes.get(i) {
                            Some(ApplyOutcome::Applied) => Ok(()),
                            other => Err(AdminError::Stale(unexpected(other))),
                        });
                        (topic, partition, result)
                    })
                    .collect(),
            )),
        }
    }
}

/// Decides an admin write against `image`.
pub fn admin(image: &MetadataImage, config: &Config, op: AdminOp) -> Result<Planned, AdminError> {
    match op {
        AdminOp::CreateTopic {
            topic,
            validate_only,
        } => {
            let record = plan_topic(image, config, &topic)?;
            let MetadataRecord::CreateTopic {
                id, assignments, ..
            } = &record
            else {
                return Err(AdminError::InvalidTopic(
                    "internal: planned record is not a topic".into(),
                ));
            };
            let (id, assignments) = (*id, assignments.clone());
            if validate_only {
                return Ok(Planned::answer(AdminDone::Topic { id, assignments }));
            }
            Ok(Planned {
                records: vec![record],
                conclusion: Conclusion::Topic {
                    name: topic.name,
                    id,
                    assignments,
                },
            })
        }
        AdminOp::AllocateProducerIds { broker } => Ok(Planned {
            records: vec![MetadataRecord::AllocateProducerIds {
                broker,
                count: PRODUCER_ID_BLOCK,
            }],
            conclusion: Conclusion::ProducerIds,
        }),
        AdminOp::DeleteTopic { id, name } => Ok(Planned {
            records: vec![MetadataRecord::DeleteTopic { id }],
            conclusion: Conclusion::AppliedOrUnknownTopic(name),
        }),
        AdminOp::CreatePartitions {
            name,
            total,
            assignments,
            validate_only,
        } => {
            let record = create_partitions(image, &name, total, assignments)?;
            if validate_only {
                return Ok(Planned::answer(AdminDone::Done));
            }
            Ok(Planned {
                records: vec![record],
                conclusion: Conclusion::AppliedOrUnknownTopic(name),
            })
        }
        AdminOp::CreateTopics { topics } => {
            // Each planned on the image as the ones before it leave it, so leaders spread and
            // a name given twice is refused the second time.
            let mut image = image.clone();
            let mut records = Vec::new();
            let mut planned = Vec::with_capacity(topics.len());
            for t in topics {
                match plan_topic(&image, config, &t) {
                    Ok(record) => {
                        image.apply_mut(&record);
                        planned.push((t.name, Ok(records.len())));
                        records.push(record);
                    }
                    Err(e) => planned.push((t.name, Err(e))),
                }
            }
            Ok(Planned {
                records,
                conclusion: Conclusion::Topics(planned),
            })
        }
        AdminOp::ElectLeaders {
            unclean,
            partitions,
        } => {
            let listed = partitions.is_some();
            let wanted = partitions.unwrap_or_else(|| {
                image
                    .topics
                    .values()
                    .flat_map(|t| (0..t.partitions.len() as i32).map(|i| (t.name.clone(), i)))
                    .collect()
            });
            let mut results = Vec::with_capacity(wanted.len());
            let mut records = Vec::new();
            for (topic, partition) in wanted {
                let planned = elect_leader(image, &topic, partition, unclean);
                if let Ok(r) = &planned {
                    records.push(r.clone());
                }
                // Asked for every partition, Kafka reports only those it acted on.
                if listed || !matches!(planned, Err(ElectionError::NotNeeded)) {
                    results.push((topic, partition, planned.map(|_| ())));
                }
            }
            Ok(Planned {
                records,
                conclusion: Conclusion::Elections(results),
            })
        }
        AdminOp::AlterConfigs {
            target,
            replace,
            ops,
            validate_only,
        } => {
            let record = plan_config_change(image, &target, replace, &ops)?;
            if validate_only {
                return Ok(Planned::answer(AdminDone::Done));
            }
            Ok(Planned {
                records: vec![record],
                conclusion: Conclusion::Configs(target),
            })
        }
        AdminOp::AlterAcls { create, delete } => {
            if let Some(why) = create.iter().find_map(|b| b.invalid()) {
                return Err(AdminError::InvalidRequest(why.to_string()));
            }
            // Deleting one that is already gone changes nothing.
            let records = create
                .into_iter()
                .filter(|b| !image.acls.contains(b))
                .map(MetadataRecord::CreateAcl)
                .chain(
                    delete
                        .into_iter()
                        .filter(|b| image.acls.contains(b))
                        .map(MetadataRecord::DeleteAcl),
                )
                .collect();
            Ok(Planned {
                records,
                conclusion: Conclusion::Answer(AdminDone::Done),
            })
        }
        AdminOp::AlterPartitionReassignments {
            changes,
            allow_replication_factor_change,
        } => {
            // Each planned on the image as the ones before leave it: a partition named twice
            // gets the second target.
            let mut image = image.clone();
            let mut records = Vec::new();
            let mut planned = Vec::with_capacity(changes.len());
            for (topic, partition, target) in changes {
                let result = plan_reassignment(
                    &image,
                    &topic,
                    partition,
                    target.as_deref(),
                    allow_replication_factor_change,
                )
                .map(|record| {
                    image.apply_mut(&record);
                    records.push(record);
                    records.len() - 1
                });
                planned.push((topic, partition, result));
            }
            Ok(Planned {
                records,
                conclusion: Conclusion::Reassignments(planned),
            })
        }
        AdminOp::AlterScramCredentials { changes } => {
            if let Some((user, mechanism, _)) = changes.iter().find(|(u, m, _)| {
                u.is_empty() || !matches!(m.as_str(), "SCRAM-SHA-256" | "SCRAM-SHA-512")
            }) {
                return Err(AdminError::InvalidRequest(format!(
                    "no SCRAM credential can be kept for user {user:?} and mechanism {mechanism:?}"
                )));
            }
            // A removal that finds nothing (a race with another removal) changes nothing.
            let records = changes
                .into_iter()
                .map(
                    |(user, mechanism, credential)| MetadataRecord::ScramCredential {
                        user,
                        mechanism,
                        credential,
                    },
                )
                .collect();
            Ok(Planned {
                records,
                conclusion: Conclusion::Answer(AdminDone::Done),
            })
        }
    }
}

/// Validates and places a new topic against `image`; returns the record to write.
pub fn plan_topic(
    image: &MetadataImage,
    config: &Config,
    t: &NewTopic,
) -> Result<MetadataRecord, AdminError> {
    validate_topic_name(&t.name)?;
    if image.topic(&t.name).is_some() {
        return Err(AdminError::TopicAlreadyExists(t.name.clone()));
    }
    for (k, v) in &t.configs {
        validate_topic_config(k, v).map_err(AdminError::InvalidConfig)?;
    }
    let live = image.live_brokers();
    let assignments = if !t.assignments.is_empty() {
        if t.partitions != -1 || t.replication_factor != -1 {
            return Err(AdminError::InvalidReplicaAssignment(
                "give either replica assignments or partitions and replication factor, not both"
                    .into(),
            ));
        }
        check_assignments(
            &t.assignments,
            &image.brokers.keys().copied().collect::<Vec<_>>(),
        )?;
        t.assignments.clone()
    } else {
        let partitions = if t.partitions == -1 {
            config.num_partitions
        } else {
            t.partitions
        };
        if partitions > MAX_PARTITIONS_PER_REQUEST {
            return Err(AdminError::PolicyViolation(EXCESSIVE_PARTITIONS.into()));
        }
        if partitions <= 0 {
            return Err(AdminError::InvalidPartitions(format!(
                "number of partitions must be positive, got {partitions}"
            )));
        }
        let rf = if t.replication_factor == -1 {
            config.default_replication_factor
        } else {
            t.replication_factor
        };
        if rf <= 0 {
            return Err(AdminError::InvalidReplicationFactor(format!(
                "replication factor must be positive, got {rf}"
            )));
        }
        if rf as usize > live.len() {
            return Err(AdminError::InvalidReplicationFactor(format!(
                "replication factor {rf} is larger than the {} available brokers",
                live.len()
            )));
        }
        place_replicas(&live, partitions, rf as usize, image.topics.len())
    };
    Ok(MetadataRecord::CreateTopic {
        name: t.name.clone(),
        id: TopicId(uuid::Uuid::new_v4()),
        assignments,
        configs: t.configs.clone(),
    })
}

/// Grows topic `name` to `total` partitions (placed, or as `assignments` lists them).
fn create_partitions(
    image: &MetadataImage,
    name: &str,
    total: i32,
    assignments: Vec<Vec<NodeId>>,
) -> Result<MetadataRecord, AdminError> {
    let topic = image
        .topic(name)
        .ok_or_else(|| AdminError::UnknownTopic(name.to_string()))?;
    let current = topic.partitions.len() as i32;
    if total <= current {
        return Err(AdminError::InvalidPartitions(format!(
            "topic `{name}` has {current} partitions; the new count must be larger, got {total}"
        )));
    }
    let rf = topic
        .partitions
        .first()
        .map(|p| p.replicas.len())
        .unwrap_or(1);
    if total - current > MAX_PARTITIONS_PER_REQUEST {
        return Err(AdminError::PolicyViolation(EXCESSIVE_PARTITIONS.into()));
    }
    let added = (total - current) as usize;
    let assignments = if assignments.is_empty() {
        let live = image.live_brokers();
        if rf > live.len() {
            return Err(AdminError::InvalidReplicationFactor(format!(
                "replication factor {rf} is larger than the {} available brokers",
                live.len()
            )));
        }
        place_replicas(&live, added as i32, rf, current as usize)
    } else {
        if assignments.len() != added {
            return Err(AdminError::InvalidReplicaAssignment(format!(
                "{} assignments given for {added} new partitions",
                assignments.len()
            )));
        }
        check_assignments(
            &assignments,
            &image.brokers.keys().copied().collect::<Vec<_>>(),
        )?;
        assignments
    };
    Ok(MetadataRecord::CreatePartitions {
        id: topic.id,
        assignments,
    })
}

/// An ISR change, refused when the asker is not the leader at that epoch, knows an old
/// partition epoch, or names an ISR that could not stand. Returns the record to commit.
pub fn alter_partition(
    image: &MetadataImage,
    req: &AlterPartition,
) -> Result<MetadataRecord, AdminError> {
    let p = image
        .topic_by_id(req.topic_id)
        .and_then(|t| {
            usize::try_from(req.partition)
                .ok()
                .and_then(|i| t.partitions.get(i))
        })
        .ok_or_else(|| AdminError::UnknownTopic(req.topic_id.to_string()))?;
    let broker = req.broker;
    if p.leader != broker || p.leader_epoch != req.leader_epoch {
        return Err(AdminError::Stale(format!(
            "broker {broker} at epoch {} is not the leader (leader {} at epoch {})",
            req.leader_epoch, p.leader, p.leader_epoch
        )));
    }
    if p.partition_epoch != req.partition_epoch {
        return Err(AdminError::Stale(format!(
            "partition epoch {} is stale; current is {}",
            req.partition_epoch, p.partition_epoch
        )));
    }
    // A fenced (or stopping) broker may not join an ISR: it is not there to stay.
    if let Some(b) = req
        .new_isr
        .iter()
        .find(|b| !p.isr.contains(b) && image.brokers.get(b).is_none_or(|r| r.fenced))
    {
        return Err(AdminError::Stale(format!(
            "broker {b} is fenced and cannot join the ISR"
        )));
    }
    if req.new_isr.is_empty()
        || !req.new_isr.contains(&broker)
        || req.new_isr.iter().any(|b| !p.replicas.contains(b))
    {
        return Err(AdminError::Stale(format!(
            "ISR {:?} must hold the leader and only replicas",
            req.new_isr
        )));
    }
    // The ISR that brings every target replica in finishes a reassignment.
    if let Some(done) = image
        .reassignment(req.topic_id, req.partition)
        .and_then(|r| reassign::complete(p, r, &req.new_isr))
    {
        return Ok(replicas_change(
            req.topic_id,
            req.partition,
            req.partition_epoch + 1,
            done,
        ));
    }
    Ok(MetadataRecord::PartitionChange {
        topic_id: req.topic_id,
        partition: req.partition,
        leader: broker,
        isr: req.new_isr.clone(),
        leader_epoch: req.leader_epoch,
        partition_epoch: req.partition_epoch + 1,
    })
}

/// The record that starts, replaces or (`target` None) cancels one partition's reassignment.
fn plan_reassignment(
    image: &MetadataImage,
    topic: &str,
    partition: i32,
    target: Option<&[NodeId]>,
    allow_rf_change: bool,
) -> Result<MetadataRecord, AdminError> {
    let t = image
        .topic(topic)
        .ok_or_else(|| AdminError::UnknownTopic(topic.to_string()))?;
    let p = usize::try_from(partition)
        .ok()
        .and_then(|i| t.partitions.get(i))
        .ok_or_else(|| AdminError::UnknownTopic(format!("{topic}-{partition}")))?;
    let ongoing = image.reassignment(t.id, partition);
    if let Some(target) = target.filter(|_| !allow_rf_change) {
        let current = reassign::original_replicas(p, ongoing).len();
        if target.len() != current {
            return Err(AdminError::InvalidReplicationFactor(format!(
                "the target has {} replicas and the partition {current}; the request does not allow a change",
                target.len()
            )));
        }
    }
    let registered: Vec<NodeId> = image.brokers.keys().copied().collect();
    let next = reassign::reassign(p, ongoing, target, &registered).map_err(|e| match e {
        ReassignError::InvalidAssignment(m) => AdminError::InvalidReplicaAssignment(m),
        ReassignError::NoneInProgress => AdminError::NoReassignmentInProgress(e.to_string()),
    })?;
    Ok(replicas_change(
        t.id,
        partition,
        p.partition_epoch + 1,
        next,
    ))
}

fn replicas_change(
    topic_id: TopicId,
    partition: i32,
    partition_epoch: i32,
    next: ReplicaSet,
) -> MetadataRecord {
    MetadataRecord::ReplicasChange {
        topic_id,
        partition,
        replicas: next.replicas,
        isr: next.isr,
        leader: next.leader,
        leader_epoch: next.leader_epoch,
        partition_epoch,
        adding: next.adding,
        removing: next.removing,
    }
}

/// A broker's registration: its endpoints, unfenced, and the leaderless partitions it can lead
/// again. Refused until the cluster id is written (the new leader writes it within moments).
pub fn register(
    image: &MetadataImage,
    reg: BrokerRegistration,
) -> Result<Vec<MetadataRecord>, AdminError> {
    if image.cluster_id.is_empty() {
        return Err(AdminError::NoQuorum(
            "the cluster id is not written yet".into(),
        ));
    }
    let id = reg.id;
    let mut records = vec![MetadataRecord::RegisterBroker(reg)];
    records.extend(unfence_changes(image, id));
    Ok(records)
}

/// What a heartbeat finds.
#[derive(Debug, PartialEq)]
pub enum Heartbeat {
    /// The controller does not know this incarnation: register again.
    Unknown,
    /// The broker is stopping (controlled shutdown): it stays fenced.
    Stopping,
    /// Alive; a fenced broker is unfenced by these records.
    Alive(Vec<MetadataRecord>),
}

/// A heartbeat from broker `id` in `incarnation`; `stopping`: it asked for a controlled
/// shutdown.
pub fn heartbeat(
    image: &MetadataImage,
    id: NodeId,
    incarnation: uuid::Uuid,
    stopping: bool,
) -> Heartbeat {
    let Some(reg) = image.brokers.get(&id) else {
        return Heartbeat::Unknown;
    };
    if reg.incarnation != incarnation {
        return Heartbeat::Unknown;
    }
    if stopping {
        return Heartbeat::Stopping;
    }
    if !reg.fenced {
        return Heartbeat::Alive(Vec::new());
    }
    let mut records = vec![MetadataRecord::UnfenceBroker { id }];
    records.extend(unfence_changes(image, id));
    Heartbeat::Alive(records)
}

/// The most records the controller writes in one Raft entry for work that may be split
/// (fencing a broker, moving leaders back to preferred replicas). A follower must store an
/// entry well inside openraft's AppendEntries timeout (its heartbeat interval, 100 ms): one
/// entry moving 30,000 partitions (~1.5 MB) stalled the quorum; 1,000 changes are ~50 KB.
pub const RECORDS_PER_ENTRY: usize = 1_000;

/// The next entry of fencing broker `id` (silent, or shutting down): up to `max` of the
/// partition changes that fencing requires (new leaders, ISRs without it), and once none is
/// left the FenceBroker record itself — Kafka's order, so a controller that fails midway leaves
/// the broker unfenced and its successor fences it again from what is left. Each entry is
/// planned from the image the previous one left (a change made stale meanwhile is refused by
/// its partition epoch and planned again). Empty once `id` is fenced with nothing left to move,
/// or once it is registered again under another incarnation (it came back).
pub fn fence(
    image: &MetadataImage,
    id: NodeId,
    incarnation: uuid::Uuid,
    unclean: bool,
    max: usize,
) -> Vec<MetadataRecord> {
    // A broker that registered again meanwhile (restarted) is not the one being fenced.
    if image
        .brokers
        .get(&id)
        .is_none_or(|r| r.incarnation != incarnation)
    {
        return Vec::new();
    }
    let mut changes = fence_changes(image, id, unclean);
    if !changes.is_empty() {
        changes.truncate(max.max(1));
        return changes;
    }
    match image.brokers.get(&id) {
        Some(reg) if !reg.fenced => vec![MetadataRecord::FenceBroker { id }],
        _ => Vec::new(),
    }
}

/// The next entry of moving leaders back to their preferred replicas: at most `max` changes.
pub fn preferred_leaders(image: &MetadataImage, max: usize) -> Vec<MetadataRecord> {
    let mut changes = crate::metadata::preferred_leader_changes(image);
    changes.truncate(max.max(1));
    changes
}

/// Kafka's topic name rules.
pub fn validate_topic_name(name: &str) -> Result<(), AdminError> {
    if name.is_empty() {
        return Err(AdminError::InvalidTopic("topic name is empty".into()));
    }
    if name == "." || name == ".." {
        return Err(AdminError::InvalidTopic(format!(
            "topic name `{name}` is not allowed"
        )));
    }
    if name.len() > 249 {
        return Err(AdminError::InvalidTopic(
            "topic name is longer than 249 characters".into(),
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-')
    {
        return Err(AdminError::InvalidTopic(format!(
            "topic name `{name}` has characters other than ASCII letters, digits, '.', '_' and '-'"
        )));
    }
    Ok(())
}

fn check_assignments(assignments: &[Vec<NodeId>], known: &[NodeId]) -> Result<(), AdminError> {
    let rf = assignments.first().map(Vec::len).unwrap_or(0);
    for (i, a) in assignments.iter().enumerate() {
        if !a.is_empty() && a.len() != rf {
            return Err(AdminError::InvalidReplicaAssignment(format!(
                "partition {i} has {} replicas; every partition needs the same non-zero count",
                a.len()
            )));
        }
        reassign::check_replicas(a, known).map_err(|why| {
            AdminError::InvalidReplicaAssignment(format!("partition {i}'s replica list {why}"))
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn incarnation(id: NodeId) -> uuid::Uuid {
        uuid::Uuid::from_u128(id as u128)
    }

    fn registration(id: NodeId) -> BrokerRegistration {
        BrokerRegistration {
            id,
            incarnation: incarnation(id),
            endpoints: Vec::new(),
            rack: None,
            fenced: false,
        }
    }

    /// Three registered brokers, a cluster id, and topic `t` (two partitions, RF 3).
    fn cluster() -> MetadataImage {
        let mut img = MetadataImage::default()
            .apply(&MetadataRecord::InitCluster {
                cluster_id: "c".into(),
            })
            .0;
        for id in 1..=3 {
            img = img
                .apply(&MetadataRecord::RegisterBroker(registration(id)))
                .0;
        }
        img.apply(&MetadataRecord::CreateTopic {
            name: "t".into(),
            id: TopicId(uuid::Uuid::from_u128(9)),
            assignments: vec![vec![1, 2, 3], vec![2, 3, 1]],
            configs: BTreeMap::new(),
        })
        .0
    }

    fn config() -> Config {
        let raw = [("num.partitions", "4"), ("default.replication.factor", "2")]
            .iter()
            .map(|(k, v)| (k.to_string(), (v.to_string(), "test".to_string())))
            .collect();
        Config::from_raw(raw).expect("config")
    }

    fn new_topic(name: &str) -> NewTopic {
        NewTopic {
            name: name.into(),
            partitions: -1,
            replication_factor: -1,
            assignments: Vec::new(),
            configs: BTreeMap::new(),
        }
    }

    fn apply(
        img: &MetadataImage,
        records: &[MetadataRecord],
    ) -> (MetadataImage, Vec<ApplyOutcome>) {
        let mut outcomes = Vec::new();
        let mut img = img.clone();
        for r in records {
            let (next, out) = img.apply(r);
            img = next;
            outcomes.push(out);
        }
        (img, outcomes)
    }

    /// Fences `id` entry by entry as the controller does; also returns each entry's length.
    fn fenced_in_steps(img: &MetadataImage, id: NodeId, max: usize) -> (MetadataImage, Vec<usize>) {
        let mut img = img.clone();
        let mut sizes = Vec::new();
        loop {
            let entry = fence(&img, id, incarnation(id), false, max);
            if entry.is_empty() {
                return (img, sizes);
            }
            sizes.push(entry.len());
            let (next, outcomes) = apply(&img, &entry);
            assert!(
                outcomes.iter().all(|o| *o == ApplyOutcome::Applied),
                "{outcomes:?}"
            );
            img = next;
            assert!(sizes.len() < 1_000, "fencing does not converge");
        }
    }

    #[test]
    fn fencing_a_broker_is_written_in_bounded_entries_with_the_fence_last() {
        let mut img = cluster();
        for i in 0..10u128 {
            img = img
                .apply(&MetadataRecord::CreateTopic {
                    name: format!("many-{i}"),
                    id: TopicId(uuid::Uuid::from_u128(100 + i)),
                    assignments: (0..7)
                        .map(|p| [vec![1, 2, 3], vec![2, 3, 1], vec![3, 1, 2]][p % 3].clone())
                        .collect(),
                    configs: BTreeMap::new(),
                })
                .0;
        }
        // All at once (as before): the reference.
        let mut all = fence_changes(&img, 2, false);
        let touched = all.len();
        assert!(touched > 40, "broker 2 is in every ISR: {touched}");
        all.push(MetadataRecord::FenceBroker { id: 2 });
        let (whole, _) = apply(&img, &all);

        let (stepped, sizes) = fenced_in_steps(&img, 2, 8);
        assert!(sizes.iter().all(|n| *n <= 8), "{sizes:?}");
        assert_eq!(sizes.iter().sum::<usize>(), touched + 1);
        assert_eq!(*sizes.last().unwrap(), 1, "the fence comes alone, last");
        assert_eq!(stepped, whole);

        // A controller that stops after two entries leaves broker 2 unfenced, so its
        // successor fences it again and finishes from what is left.
        let mut partly = img.clone();
        for _ in 0..2 {
            partly = apply(&partly, &fence(&partly, 2, incarnation(2), false, 8)).0;
        }
        assert!(!partly.brokers[&2].fenced);
        assert_eq!(fence_changes(&partly, 2, false).len(), touched - 16);
        assert_eq!(fenced_in_steps(&partly, 2, 8).0, whole);

        // A change made stale by another write in between is refused, then planned again.
        let planned = fence(&img, 2, incarnation(2), false, 8);
        let (bumped, _) = apply(&img, &planned[..1]);
        let (after, outcomes) = apply(&bumped, &planned);
        assert!(matches!(outcomes[0], ApplyOutcome::Conflict(_)));
        assert_eq!(fenced_in_steps(&after, 2, 8).0, whole);
        assert!(
            fence(&whole, 2, incarnation(2), false, 8).is_empty(),
            "nothing left once fenced"
        );

        // A broker that registered again (restarted) midway is not fenced further.
        let mut back = registration(2);
        back.incarnation = uuid::Uuid::from_u128(77);
        let returned = apply(&partly, &[MetadataRecord::RegisterBroker(back)]).0;
        assert!(fence(&returned, 2, incarnation(2), false, 8).is_empty());
        assert!(!fence(&returned, 2, uuid::Uuid::from_u128(77), false, 8).is_empty());
    }

    #[test]
    fn a_reassignment_starts_completes_on_the_isr_that_brings_the_target_in_and_is_forgotten() {
        let mut img = cluster()
            .apply(&MetadataRecord::RegisterBroker(registration(4)))
            .0;
        let id = TopicId(uuid::Uuid::from_u128(9));
        let run = |op: AdminOp, img: &mut MetadataImage| -> AdminDone {
            let planned = admin(img, &config(), op).expect("planned");
            let mut outcomes = Vec::new();
            for r in &planned.records {
                let (next, out) = img.apply(r);
                *img = next;
                outcomes.push(out);
            }
            planned.conclude(&outcomes).expect("concluded")
        };
        let op = AdminOp::AlterPartitionReassignments {
            changes: vec![
                ("t".into(), 0, Some(vec![4, 2, 3])),
                ("t".into(), 1, None),
                ("nope".into(), 0, Some(vec![1])),
                ("t".into(), 1, Some(vec![4, 2])),
            ],
            allow_replication_factor_change: false,
        };
        let AdminDone::Reassignments(done) = run(op, &mut img) else {
            panic!("not reassignments")
        };
        assert!(done[0].2.is_ok());
        assert!(matches!(
            done[1].2,
            Err(AdminError::NoReassignmentInProgress(_))
        ));
        assert!(matches!(done[2].2, Err(AdminError::UnknownTopic(_))));
        // Two replicas for a partition of three, when the request allows no change (KIP-860).
        assert!(matches!(
            done[3].2,
            Err(AdminError::InvalidReplicationFactor(_))
        ));
        let p = img.topic("t").unwrap().partitions[0].clone();
        assert_eq!(p.replicas, vec![4, 2, 3, 1]);
        assert_eq!(
            img.reassignment(id, 0)
                .map(|r| (r.adding.clone(), r.removing.clone())),
            Some((vec![4], vec![1]))
        );
        // The leader (1) asks for broker 4 in the ISR: that finishes the move, and 1 hands over.
        let ask = AlterPartition {
            broker: 1,
            topic_id: id,
            partition: 0,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            new_isr: vec![1, 2, 3, 4],
        };
        let record = alter_partition(&img, &ask).expect("isr change");
        let (img, out) = img.apply(&record);
        assert_eq!(out, ApplyOutcome::Applied);
        let p = &img.topic("t").unwrap().partitions[0];
        assert_eq!(p.replicas, vec![4, 2, 3]);
        assert_eq!(p.isr, vec![2, 3, 4]);
        assert_eq!(p.leader, 4);
        assert!(img.reassignment(id, 0).is_none() && img.reassignments.is_empty());
    }

    #[test]
    fn topics_are_placed_with_the_configured_defaults_and_concluded_from_outcomes() {
        let img = cluster();
        let op = AdminOp::CreateTopic {
            topic: new_topic("orders"),
            validate_only: false,
        };
        let planned = admin(&img, &config(), op).expect("planned");
        let [MetadataRecord::CreateTopic { assignments, .. }] = &planned.records[..] else {
            panic!("{:?}", planned.records)
        };
        assert_eq!(assignments.len(), 4, "num.partitions");
        assert!(
            assignments.iter().all(|a| a.len() == 2),
            "default.replication.factor"
        );
        let (_, outcomes) = apply(&img, &planned.records);
        assert!(matches!(
            planned.conclude(&outcomes),
            Ok(AdminDone::Topic { .. })
        ));
        // The same name committed by someone else first: TOPIC_ALREADY_EXISTS from the outcome.
        let planned = admin(
            &img,
            &config(),
            AdminOp::CreateTopic {
                topic: new_topic("orders"),
                validate_only: false,
            },
        )
        .unwrap();
        assert_eq!(
            planned.conclude(&[ApplyOutcome::TopicAlreadyExists]),
            Err(AdminError::TopicAlreadyExists("orders".into()))
        );
    }

    #[test]
    fn validate_only_writes_nothing() {
        let img = cluster();
        for op in [
            AdminOp::CreateTopic {
                topic: new_topic("x"),
                validate_only: true,
            },
            AdminOp::CreatePartitions {
                name: "t".into(),
                total: 5,
                assignments: Vec::new(),
                validate_only: true,
            },
        ] {
            let planned = admin(&img, &config(), op).unwrap();
            assert!(planned.records.is_empty());
            assert!(planned.conclude(&[]).is_ok());
        }
    }

    #[test]
    fn a_batch_of_topics_is_planned_on_the_image_each_leaves() {
        let img = cluster();
        let topics = vec![
            new_topic("a"),
            new_topic("b"),
            new_topic("a"),
            new_topic("t"),
        ];
        let planned = admin(&img, &config(), AdminOp::CreateTopics { topics }).unwrap();
        assert_eq!(planned.records.len(), 2, "only a and b are written");
        let (after, outcomes) = apply(&img, &planned.records);
        let Ok(AdminDone::Topics(results)) = planned.conclude(&outcomes) else {
            panic!()
        };
        assert_eq!(results[0].as_ref().ok(), after.topic("a").map(|t| &t.id));
        assert_eq!(results[1].as_ref().ok(), after.topic("b").map(|t| &t.id));
        assert_eq!(results[2], Err(AdminError::TopicAlreadyExists("a".into())));
        assert_eq!(results[3], Err(AdminError::TopicAlreadyExists("t".into())));
    }

    #[test]
    fn bad_requests_are_refused_before_anything_is_written() {
        let img = cluster();
        let c = config();
        let mut too_wide = new_topic("w");
        too_wide.replication_factor = 4;
        assert!(matches!(
            plan_topic(&img, &c, &too_wide),
            Err(AdminError::InvalidReplicationFactor(_))
        ));
        let mut huge = new_topic("h");
        huge.partitions = MAX_PARTITIONS_PER_REQUEST + 1;
        assert!(matches!(
            plan_topic(&img, &c, &huge),
            Err(AdminError::PolicyViolation(_))
        ));
        let shrink = AdminOp::CreatePartitions {
            name: "t".into(),
            total: 2,
            assignments: Vec::new(),
            validate_only: false,
        };
        assert!(matches!(
            admin(&img, &c, shrink),
            Err(AdminError::InvalidPartitions(_))
        ));
        assert!(validate_topic_name("orders.v1_x-2").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("a b").is_err());
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
        assert!(check_assignments(&[vec![1], vec![1]], &[1]).is_ok());
        assert!(check_assignments(&[vec![1, 1]], &[1]).is_err());
        assert!(check_assignments(&[vec![2]], &[1]).is_err());
        assert!(check_assignments(&[vec![1], vec![]], &[1]).is_err());
    }

    #[test]
    fn isr_changes_need_the_current_leader_and_partition_epoch() {
        let img = cluster();
        let p = img.topic("t").unwrap().partitions[0].clone();
        let ask = AlterPartition {
            broker: p.leader,
            topic_id: TopicId(uuid::Uuid::from_u128(9)),
            partition: 0,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            new_isr: vec![1, 2],
        };
        let MetadataRecord::PartitionChange {
            isr,
            partition_epoch,
            ..
        } = alter_partition(&img, &ask).unwrap()
        else {
            panic!()
        };
        assert_eq!((isr, partition_epoch), (vec![1, 2], p.partition_epoch + 1));
        let stale = AlterPartition {
            partition_epoch: p.partition_epoch - 1,
            ..ask.clone()
        };
        assert!(matches!(
            alter_partition(&img, &stale),
            Err(AdminError::Stale(_))
        ));
        let not_leader = AlterPartition {
            broker: 3,
            ..ask.clone()
        };
        assert!(matches!(
            alter_partition(&img, &not_leader),
            Err(AdminError::Stale(_))
        ));
        let without_leader = AlterPartition {
            new_isr: vec![2, 3],
            ..ask.clone()
        };
        assert!(alter_partition(&img, &without_leader).is_err());
        let fenced = img.apply(&MetadataRecord::FenceBroker { id: 3 }).0;
        let shrunk = AlterPartition {
            new_isr: vec![1],
            ..ask.clone()
        };
        let fenced = apply(&fenced, &[alter_partition(&fenced, &shrunk).unwrap()]).0;
        let p = fenced.topic("t").unwrap().partitions[0].clone();
        let rejoin = AlterPartition {
            partition_epoch: p.partition_epoch,
            new_isr: vec![1, 3],
            ..ask
        };
        assert!(
            alter_partition(&fenced, &rejoin).is_err(),
            "a fenced broker cannot join"
        );
    }

    #[test]
    fn heartbeats_unfence_and_unknown_incarnations_register_again() {
        let img = cluster();
        let me = uuid::Uuid::from_u128(2);
        assert_eq!(heartbeat(&img, 2, me, false), Heartbeat::Alive(Vec::new()));
        assert_eq!(
            heartbeat(&img, 2, uuid::Uuid::nil(), false),
            Heartbeat::Unknown
        );
        assert_eq!(heartbeat(&img, 7, me, false), Heartbeat::Unknown);
        assert_eq!(heartbeat(&img, 2, me, true), Heartbeat::Stopping);
        let fenced = fenced_in_steps(&img, 2, usize::MAX).0;
        let Heartbeat::Alive(records) = heartbeat(&fenced, 2, me, false) else {
            panic!()
        };
        assert_eq!(records[0], MetadataRecord::UnfenceBroker { id: 2 });
        let back = apply(&fenced, &records).0;
        assert!(!back.brokers[&2].fenced);
        assert!(
            register(&MetadataImage::default(), registration(1)).is_err(),
            "no cluster id"
        );
        assert!(register(&img, registration(4)).is_ok());
    }
}
