//! Admin writes: validate against the current image, place replicas with pure code, propose the
//! records, and report what the committed outcome was. Handlers map `AdminError` to Kafka codes.

use std::collections::BTreeMap;

use super::Handle;
use crate::config::validate_topic_config;
use crate::metadata::{place_replicas, ApplyOutcome, BrokerRegistration, MetadataRecord};
use crate::types::{NodeId, TopicId};

/// Why an admin write was refused. Each maps to one Kafka error code in `handlers::errors`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AdminError {
    #[error("topic `{0}` already exists")]
    TopicAlreadyExists(String),
    #[error("topic `{0}` does not exist")]
    UnknownTopic(String),
    #[error("{0}")]
    InvalidTopic(String),
    #[error("{0}")]
    InvalidPartitions(String),
    #[error("{0}")]
    InvalidReplicationFactor(String),
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    #[error("{0}")]
    InvalidConfig(String),
    #[error("metadata quorum unavailable: {0}")]
    NoQuorum(String),
}

/// A topic to create, as asked for by CreateTopics or auto-creation.
#[derive(Debug, Clone)]
pub struct NewTopic {
    pub name: String,
    /// -1: `num.partitions`.
    pub partitions: i32,
    /// -1: `default.replication.factor`.
    pub replication_factor: i16,
    /// Explicit replica lists, one per partition (empty: place automatically).
    pub assignments: Vec<Vec<NodeId>>,
    pub configs: BTreeMap<String, String>,
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

impl Handle {
    /// Validates and places a new topic; returns the record to write. Does not write it.
    pub fn plan_topic(&self, t: &NewTopic) -> Result<MetadataRecord, AdminError> {
        validate_topic_name(&t.name)?;
        let image = self.image();
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
                    "give either replica assignments or partitions and replication factor, not both".into(),
                ));
            }
            check_assignments(
                &t.assignments,
                &image.brokers.keys().copied().collect::<Vec<_>>(),
            )?;
            t.assignments.clone()
        } else {
            let partitions = if t.partitions == -1 {
                self.config.num_partitions
            } else {
                t.partitions
            };
            if partitions <= 0 {
                return Err(AdminError::InvalidPartitions(format!(
                    "number of partitions must be positive, got {partitions}"
                )));
            }
            let rf = if t.replication_factor == -1 {
                self.config.default_replication_factor
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
            let start = image.topics.len();
            place_replicas(&live, partitions, rf as usize, start)
        };
        Ok(MetadataRecord::CreateTopic {
            name: t.name.clone(),
            id: TopicId(uuid::Uuid::new_v4()),
            assignments,
            configs: t.configs.clone(),
        })
    }

    /// Creates one topic and waits for the commit. Returns its id.
    pub async fn create_topic(&self, t: &NewTopic) -> Result<TopicId, AdminError> {
        let record = self.plan_topic(t)?;
        let MetadataRecord::CreateTopic { id, .. } = &record else {
            return Err(AdminError::InvalidTopic(
                "internal: planned record is not a topic".into(),
            ));
        };
        let id = *id;
        match self.propose(vec![record]).await?.first() {
            Some(ApplyOutcome::Applied) => Ok(id),
            Some(ApplyOutcome::TopicAlreadyExists) => {
                Err(AdminError::TopicAlreadyExists(t.name.clone()))
            }
            other => Err(AdminError::InvalidTopic(format!(
                "unexpected outcome {other:?}"
            ))),
        }
    }

    pub async fn delete_topic(&self, id: TopicId, name_for_errors: &str) -> Result<(), AdminError> {
        match self
            .propose(vec![MetadataRecord::DeleteTopic { id }])
            .await?
            .first()
        {
            Some(ApplyOutcome::Applied) => Ok(()),
            _ => Err(AdminError::UnknownTopic(name_for_errors.to_string())),
        }
    }

    /// Grows a topic to `total` partitions; `validate_only` checks without writing.
    pub async fn create_partitions(
        &self,
        name: &str,
        total: i32,
        assignments: Vec<Vec<NodeId>>,
        validate_only: bool,
    ) -> Result<(), AdminError> {
        let image = self.image();
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
        if validate_only {
            return Ok(());
        }
        match self
            .propose(vec![MetadataRecord::CreatePartitions {
                id: topic.id,
                assignments,
            }])
            .await?
            .first()
        {
            Some(ApplyOutcome::Applied) => Ok(()),
            _ => Err(AdminError::UnknownTopic(name.to_string())),
        }
    }

    /// Registers (or re-registers) this broker with its advertised endpoints.
    pub async fn register_broker(&self, reg: BrokerRegistration) -> Result<(), AdminError> {
        self.propose(vec![MetadataRecord::RegisterBroker(reg)])
            .await
            .map(|_| ())
    }
}

fn check_assignments(assignments: &[Vec<NodeId>], known: &[NodeId]) -> Result<(), AdminError> {
    let rf = assignments.first().map(Vec::len).unwrap_or(0);
    for (i, a) in assignments.iter().enumerate() {
        if a.is_empty() || a.len() != rf {
            return Err(AdminError::InvalidReplicaAssignment(format!(
                "partition {i} has {} replicas; every partition needs the same non-zero count",
                a.len()
            )));
        }
        let mut seen = a.clone();
        seen.sort_unstable();
        seen.dedup();
        if seen.len() != a.len() {
            return Err(AdminError::InvalidReplicaAssignment(format!(
                "partition {i} lists a broker twice"
            )));
        }
        if let Some(b) = a.iter().find(|b| !known.contains(b)) {
            return Err(AdminError::InvalidReplicaAssignment(format!(
                "partition {i} names broker {b}, which is not registered"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("orders.v1_x-2").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("a b").is_err());
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
    }

    #[test]
    fn assignments_are_checked() {
        assert!(check_assignments(&[vec![1], vec![1]], &[1]).is_ok());
        assert!(check_assignments(&[vec![1, 1]], &[1]).is_err());
        assert!(check_assignments(&[vec![2]], &[1]).is_err());
        assert!(check_assignments(&[vec![1], vec![]], &[1]).is_err());
    }
}
