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
}

impl MetadataImage {
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
}

/// What applying one record did; returned to the proposer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApplyOutcome {
    Applied,
    TopicAlreadyExists,
    UnknownTopic,
    /// The change was refused because the image no longer allows it (a race with another write).
    Conflict(String),
}

impl MetadataImage {
    /// Applies one committed record, returning the next image. Deterministic.
    pub fn apply(&self, record: &MetadataRecord) -> (MetadataImage, ApplyOutcome) {
        let mut next = self.clone();
        let outcome = match record {
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
                    ApplyOutcome::Applied
                }
                None => ApplyOutcome::UnknownTopic,
            },
            MetadataRecord::CreatePartitions { id, assignments } => {
                match next.topic_names.get(id).cloned() {
                    Some(name) => {
                        let mut topic = (*next.topics[&name]).clone();
                        topic
                            .partitions
                            .extend(assignments.iter().map(|r| new_partition(r)));
                        next.topics.insert(name, Arc::new(topic));
                        ApplyOutcome::Applied
                    }
                    None => ApplyOutcome::UnknownTopic,
                }
            }
        };
        if outcome == ApplyOutcome::Applied {
            (next, outcome)
        } else {
            (self.clone(), outcome)
        }
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

/// What one node must change to match a new image.
#[derive(Debug, Default, PartialEq)]
pub struct LocalChanges {
    /// Partitions this node now leads (or leads at a new epoch), with the topic id and epoch.
    pub lead: Vec<(TopicPartition, TopicId, LeaderEpoch)>,
    /// Partitions this node no longer hosts (topic deleted or replica removed).
    pub remove: Vec<(TopicPartition, TopicId)>,
}

/// Compares two images from `node`'s point of view. Pure and idempotent: applying the result
/// twice is the same as once.
pub fn local_changes(prev: &MetadataImage, next: &MetadataImage, node: NodeId) -> LocalChanges {
    let mut changes = LocalChanges::default();
    for topic in next.topics.values() {
        let before = prev.topic_by_id(topic.id);
        for (i, p) in topic.partitions.iter().enumerate() {
            let old = before.and_then(|t| t.partitions.get(i));
            if p.leader == node
                && old.is_none_or(|o| o.leader != node || o.leader_epoch != p.leader_epoch)
            {
                changes.lead.push((
                    TopicPartition::new(topic.name.clone(), i as i32),
                    topic.id,
                    p.leader_epoch,
                ));
            }
        }
    }
    for topic in prev.topics.values() {
        let after = next.topic_by_id(topic.id);
        for (i, p) in topic.partitions.iter().enumerate() {
            if !p.replicas.contains(&node) {
                continue;
            }
            let still = after
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

    #[test]
    fn placement_spreads_leaders() {
        let p = place_replicas(&[1, 2, 3], 6, 2, 0);
        assert_eq!(p.len(), 6);
        for b in 1..=3 {
            assert_eq!(p.iter().filter(|r| r[0] == b).count(), 2);
        }
        assert!(p.iter().all(|r| r[0] != r[1]));
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
