//! Admin writes and broker→controller calls.
//!
//! Any node calls `Handle::submit` (and `register`, `heartbeat`, `alter_partition`,
//! `quorum_status`); the call goes over gRPC to whichever node leads the quorum, retrying when
//! leadership moves, bounded by `controller.quorum.request.timeout.ms`. On the leader,
//! `admin_local` validates against the current image, places replicas with pure code, proposes
//! the records and reports the committed outcome. Handlers map `AdminError` to Kafka codes.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tonic::transport::Channel;

use super::configs::plan_config_change;
use super::pb::controller_client::ControllerClient;
use super::rpc::NOT_LEADER;
use super::{pb, Handle, QuorumStatus};
use crate::config::validate_topic_config;
use crate::metadata::{
    elect_leader, place_replicas, ApplyOutcome, BrokerRegistration, ElectionError, MetadataImage,
    MetadataRecord,
};
use crate::types::{NodeId, TopicId};

/// Why an admin write was refused. Each maps to one Kafka error code in `handlers::errors`.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
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
    #[error("this node is not the metadata leader (leader: {0:?})")]
    NotLeader(Option<NodeId>),
    #[error("{0}")]
    Stale(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    PolicyViolation(String),
}

/// Kafka's bound on the partitions one CreateTopics (all its topics together) or one
/// CreatePartitions may add: placing more would hold the controller for a long time.
pub const MAX_PARTITIONS_PER_REQUEST: i32 = 10_000;
pub const EXCESSIVE_PARTITIONS: &str = "Excessively large number of partitions per request.";

/// A topic to create, as asked for by CreateTopics or auto-creation.
#[derive(Debug, Clone, Serialize, Deserialize)]
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

/// An admin write, as forwarded to the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum AdminOp {
    CreateTopic {
        topic: NewTopic,
        validate_only: bool,
    },
    DeleteTopic {
        id: TopicId,
        name: String,
    },
    /// A block of producer ids for idempotent producers on `broker`.
    AllocateProducerIds {
        broker: NodeId,
    },
    CreatePartitions {
        name: String,
        total: i32,
        assignments: Vec<Vec<NodeId>>,
        validate_only: bool,
    },
    /// Several topics (Metadata's auto-creation) planned together and written in one command.
    CreateTopics {
        topics: Vec<NewTopic>,
    },
    /// Leader elections (ElectLeaders) for the listed partitions, or for every partition.
    ElectLeaders {
        unclean: bool,
        partitions: Option<Vec<(String, i32)>>,
    },
    /// Dynamic configs of a topic (by name) or of brokers (`""`: the cluster default, or an
    /// id): IncrementalAlterConfigs' operations, or AlterConfigs' whole replacement.
    AlterConfigs {
        target: ConfigTarget,
        replace: bool,
        ops: Vec<ConfigOp>,
        validate_only: bool,
    },
}

/// What AlterConfigs names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigTarget {
    Topic(String),
    Broker(String),
}

/// One config operation (KIP-339).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigOp {
    Set(String, String),
    Delete(String),
    /// Add an item to a list config.
    Append(String, String),
    /// Remove an item from a list config.
    Subtract(String, String),
}

/// What a successful admin write produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AdminDone {
    /// A topic (created or validated) with its id and replica lists.
    Topic {
        id: TopicId,
        assignments: Vec<Vec<NodeId>>,
    },
    /// Producer ids [first, first + count) belong to the asking broker.
    ProducerIds {
        first: i64,
        count: i64,
    },
    /// Each topic of a CreateTopics: its id, or why it was not created.
    Topics(Vec<Result<TopicId, AdminError>>),
    /// Each partition's election: done, or why not.
    Elections(Vec<(String, i32, Result<(), ElectionError>)>),
    Done,
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

/// Errors a transport call can end in, before the leader answered.
enum CallError {
    /// Try again (no leader known, leader moved, peer unreachable).
    Retry(String),
    Fatal(AdminError),
}

fn classify(status: tonic::Status) -> CallError {
    match status.code() {
        tonic::Code::FailedPrecondition if status.message().starts_with(NOT_LEADER) => {
            CallError::Retry(status.message().to_string())
        }
        tonic::Code::Unavailable
        | tonic::Code::Unknown
        | tonic::Code::Cancelled
        | tonic::Code::DeadlineExceeded => CallError::Retry(status.message().to_string()),
        tonic::Code::Aborted => CallError::Fatal(AdminError::Stale(status.message().to_string())),
        _ => CallError::Fatal(AdminError::NoQuorum(status.message().to_string())),
    }
}

impl Handle {
    fn voter_addr(&self, id: NodeId) -> Option<String> {
        self.config
            .voters
            .iter()
            .find(|v| v.id == id)
            .map(|v| format!("{}:{}", v.host, v.port))
    }

    /// Calls the current leader, retrying while there is none or it moved, until `within` passes.
    async fn call_leader<T, F, Fut>(&self, within: Duration, f: F) -> Result<T, AdminError>
    where
        F: Fn(ControllerClient<Channel>) -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        let deadline = tokio::time::Instant::now() + within;
        let mut last = String::from("no metadata leader is known");
        let mut attempt = 0usize;
        loop {
            // Without a known leader (a learner that has not joined yet), ask the voters in turn:
            // a follower answers "not the leader" and the next attempt tries another.
            let leader = self.controller_id().or_else(|| {
                let v = &self.config.voters;
                (!v.is_empty()).then(|| v[attempt % v.len()].id)
            });
            attempt += 1;
            if let Some(addr) = leader.and_then(|l| self.voter_addr(l)) {
                match self.channels.get(&addr) {
                    Ok(channel) => {
                        match tokio::time::timeout_at(
                            deadline,
                            f(ControllerClient::new(channel)
                                .max_decoding_message_size(super::MAX_RPC_MESSAGE)
                                .max_encoding_message_size(super::MAX_RPC_MESSAGE)),
                        )
                        .await
                        {
                            Ok(Ok(v)) => return Ok(v),
                            Ok(Err(status)) => match classify(status) {
                                CallError::Retry(why) => last = why,
                                CallError::Fatal(e) => return Err(e),
                            },
                            Err(_) => {
                                last = format!("the controller at {addr} did not answer in time")
                            }
                        }
                    }
                    Err(e) => last = e,
                }
            }
            if tokio::time::Instant::now() + Duration::from_millis(50) >= deadline {
                return Err(AdminError::NoQuorum(format!(
                    "{last} (gave up after {} ms)",
                    within.as_millis()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.config.quorum_request_timeout_ms)
    }

    /// Sends an admin write to the leader and waits for its committed outcome.
    pub async fn submit(&self, op: AdminOp) -> Result<AdminDone, AdminError> {
        let payload =
            serde_json::to_vec(&op).map_err(|e| AdminError::InvalidTopic(e.to_string()))?;
        let reply = self
            .call_leader(self.request_timeout(), |mut c| {
                let payload = payload.clone();
                async move { c.admin(pb::AdminRequest { payload }).await }
            })
            .await?;
        let reply = reply.into_inner();
        let result = serde_json::from_slice::<Result<AdminDone, AdminError>>(&reply.payload)
            .map_err(|e| {
                AdminError::NoQuorum(format!("unreadable answer from the controller: {e}"))
            })?;
        // Read-your-writes: answer once this node's own image shows the change.
        self.wait_applied(reply.applied_index, self.request_timeout())
            .await;
        result
    }

    /// Creates one topic; returns its id.
    pub async fn create_topic(&self, topic: NewTopic) -> Result<TopicId, AdminError> {
        match self
            .submit(AdminOp::CreateTopic {
                topic,
                validate_only: false,
            })
            .await?
        {
            AdminDone::Topic { id, .. } => Ok(id),
            _ => Err(AdminError::NoQuorum(
                "the controller did not return a topic".into(),
            )),
        }
    }

    /// Registers this broker with the leader; returns the cluster id.
    pub async fn register(
        &self,
        reg: &BrokerRegistration,
        within: Duration,
    ) -> Result<String, AdminError> {
        let req = pb::RegisterBrokerRequest {
            broker_id: reg.id,
            incarnation: reg.incarnation.to_string(),
            endpoints: reg
                .endpoints
                .iter()
                .map(|e| pb::Endpoint {
                    listener: e.listener.clone(),
                    host: e.host.clone(),
                    port: e.port as u32,
                })
                .collect(),
            rack: reg.rack.clone(),
        };
        let reply = self
            .call_leader(within, |mut c| {
                let req = req.clone();
                async move { c.register_broker(req).await }
            })
            .await?
            .into_inner();
        // Serve clients only once this node's image shows its own registration.
        self.wait_applied(reply.applied_index, within).await;
        Ok(reply.cluster_id)
    }

    /// Asks the controller to fence this broker and move its partitions (before stopping), and
    /// waits until this node's image shows it.
    pub async fn controlled_shutdown(
        &self,
        id: NodeId,
        incarnation: uuid::Uuid,
        within: Duration,
    ) -> Result<(), AdminError> {
        let req = pb::ControlledShutdownRequest {
            broker_id: id,
            incarnation: incarnation.to_string(),
        };
        let reply = self
            .call_leader(within, |mut c| {
                let req = req.clone();
                async move { c.controlled_shutdown(req).await }
            })
            .await?
            .into_inner();
        self.wait_applied(reply.applied_index, within).await;
        Ok(())
    }

    /// One heartbeat; returns (still registered, fenced).
    pub async fn heartbeat(
        &self,
        id: NodeId,
        incarnation: uuid::Uuid,
        within: Duration,
    ) -> Result<(bool, bool), AdminError> {
        let req = pb::HeartbeatRequest {
            broker_id: id,
            incarnation: incarnation.to_string(),
        };
        let reply = self
            .call_leader(within, |mut c| {
                let req = req.clone();
                async move { c.heartbeat(req).await }
            })
            .await?
            .into_inner();
        Ok((reply.registered, reply.fenced))
    }

    /// Asks the controller to change a partition's ISR (as its leader at `leader_epoch`, knowing
    /// `partition_epoch`). Returns the new partition epoch and ISR.
    pub async fn alter_partition(
        &self,
        topic_id: TopicId,
        partition: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        new_isr: Vec<NodeId>,
    ) -> Result<(i32, Vec<NodeId>), AdminError> {
        let req = pb::AlterPartitionRequest {
            broker_id: self.config.node_id,
            topic_id: topic_id.0.to_string(),
            partition,
            leader_epoch,
            partition_epoch,
            new_isr,
        };
        let reply = self
            .call_leader(self.request_timeout(), |mut c| {
                let req = req.clone();
                async move { c.alter_partition(req).await }
            })
            .await?
            .into_inner();
        Ok((reply.partition_epoch, reply.isr))
    }

    /// Asks the leader to add this broker-only node as a non-voting learner.
    pub async fn join_as_learner(&self, within: Duration) -> Result<(), AdminError> {
        let l = &self.config.controller_listener;
        let req = pb::AddLearnerRequest {
            node_id: self.config.node_id,
            address: format!("{}:{}", l.host, l.port),
        };
        self.call_leader(within, |mut c| {
            let req = req.clone();
            async move { c.add_learner(req).await }
        })
        .await
        .map(|_| ())
    }

    /// The leader's view of the quorum (leader, term, each voter's progress).
    pub async fn quorum_status(&self) -> Result<QuorumStatus, AdminError> {
        let reply = self
            .call_leader(self.request_timeout(), |mut c| async move {
                c.quorum(pb::QuorumRequest {}).await
            })
            .await?;
        serde_json::from_slice(&reply.into_inner().payload)
            .map_err(|e| AdminError::NoQuorum(format!("unreadable quorum status: {e}")))
    }

    /// A peer's cluster id, if it answers quickly and knows one.
    pub(super) async fn peer_cluster_id(&self, addr: &str) -> Result<Option<String>, String> {
        let channel = self.channels.get(addr)?;
        let mut client = ControllerClient::new(channel)
            .max_decoding_message_size(super::MAX_RPC_MESSAGE)
            .max_encoding_message_size(super::MAX_RPC_MESSAGE);
        let mut req = tonic::Request::new(pb::QuorumRequest {});
        req.set_timeout(Duration::from_millis(500));
        let reply = tokio::time::timeout(Duration::from_millis(800), client.quorum(req))
            .await
            .map_err(|_| "timeout".to_string())?
            .map_err(|s| s.message().to_string())?;
        let status: QuorumStatus =
            serde_json::from_slice(&reply.into_inner().payload).map_err(|e| e.to_string())?;
        Ok(Some(status.cluster_id).filter(|c| !c.is_empty()))
    }

    /// Executes an admin write on the leader.
    pub async fn admin_local(&self, op: AdminOp) -> Result<AdminDone, AdminError> {
        match op {
            AdminOp::CreateTopic {
                topic,
                validate_only,
            } => {
                let record = self.plan_topic(&topic)?;
                let MetadataRecord::CreateTopic {
                    id, assignments, ..
                } = &record
                else {
                    return Err(AdminError::InvalidTopic(
                        "internal: planned record is not a topic".into(),
                    ));
                };
                let done = AdminDone::Topic {
                    id: *id,
                    assignments: assignments.clone(),
                };
                if validate_only {
                    return Ok(done);
                }
                match self.propose(vec![record]).await?.first() {
                    Some(ApplyOutcome::Applied) => Ok(done),
                    Some(ApplyOutcome::TopicAlreadyExists) => {
                        Err(AdminError::TopicAlreadyExists(topic.name))
                    }
                    other => Err(AdminError::InvalidTopic(format!(
                        "unexpected outcome {other:?}"
                    ))),
                }
            }
            AdminOp::AllocateProducerIds { broker } => {
                let count = 1000;
                match self
                    .propose(vec![MetadataRecord::AllocateProducerIds { broker, count }])
                    .await?
                    .first()
                {
                    Some(ApplyOutcome::ProducerIds { first }) => Ok(AdminDone::ProducerIds {
                        first: *first,
                        count,
                    }),
                    other => Err(AdminError::NoQuorum(format!(
                        "unexpected outcome {other:?}"
                    ))),
                }
            }
            AdminOp::DeleteTopic { id, name } => match self
                .propose(vec![MetadataRecord::DeleteTopic { id }])
                .await?
                .first()
            {
                Some(ApplyOutcome::Applied) => Ok(AdminDone::Done),
                _ => Err(AdminError::UnknownTopic(name)),
            },
            AdminOp::CreatePartitions {
                name,
                total,
                assignments,
                validate_only,
            } => {
                self.create_partitions_local(&name, total, assignments, validate_only)
                    .await
            }
            AdminOp::CreateTopics { topics } => {
                // Each planned on the image as the ones before it leave it, so leaders spread
                // and a name given twice is refused the second time.
                let mut image = (*self.image()).clone();
                let mut records = Vec::new();
                let mut planned = Vec::with_capacity(topics.len());
                for t in &topics {
                    match self.plan_topic_in(&image, t) {
                        Ok(record) => {
                            image = image.apply(&record).0;
                            planned.push(Ok(records.len()));
                            records.push(record);
                        }
                        Err(e) => planned.push(Err(e)),
                    }
                }
                let ids: Vec<TopicId> = records
                    .iter()
                    .filter_map(|r| match r {
                        MetadataRecord::CreateTopic { id, .. } => Some(*id),
                        _ => None,
                    })
                    .collect();
                let outcomes = if records.is_empty() {
                    Vec::new()
                } else {
                    self.propose(records).await?
                };
                let results = planned
                    .into_iter()
                    .zip(&topics)
                    .map(|(p, t)| {
                        let i = p?;
                        match outcomes.get(i) {
                            Some(ApplyOutcome::Applied) => Ok(ids[i]),
                            Some(ApplyOutcome::TopicAlreadyExists) => {
                                Err(AdminError::TopicAlreadyExists(t.name.clone()))
                            }
                            other => Err(AdminError::InvalidTopic(format!(
                                "unexpected outcome {other:?}"
                            ))),
                        }
                    })
                    .collect();
                Ok(AdminDone::Topics(results))
            }
            AdminOp::ElectLeaders {
                unclean,
                partitions,
            } => {
                let image = self.image();
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
                    let planned = elect_leader(&image, &topic, partition, unclean);
                    if let Ok(r) = &planned {
                        records.push(r.clone());
                    }
                    // Asked for every partition, Kafka reports only those it acted on.
                    if listed || !matches!(planned, Err(ElectionError::NotNeeded)) {
                        results.push((topic, partition, planned.map(|_| ())));
                    }
                }
                if !records.is_empty() {
                    let outcomes = self.propose(records).await?;
                    if let Some(bad) = outcomes
                        .iter()
                        .find(|o| !matches!(o, ApplyOutcome::Applied))
                    {
                        return Err(AdminError::Stale(format!(
                            "a partition changed during the election: {bad:?}"
                        )));
                    }
                }
                Ok(AdminDone::Elections(results))
            }
            AdminOp::AlterConfigs {
                target,
                replace,
                ops,
                validate_only,
            } => {
                let record = plan_config_change(&self.image(), &target, replace, &ops)?;
                if validate_only {
                    return Ok(AdminDone::Done);
                }
                match self.propose(vec![record]).await?.first() {
                    Some(ApplyOutcome::Applied) => Ok(AdminDone::Done),
                    Some(ApplyOutcome::UnknownTopic) => match target {
                        ConfigTarget::Topic(name) => Err(AdminError::UnknownTopic(name)),
                        ConfigTarget::Broker(b) => Err(AdminError::InvalidRequest(format!(
                            "unexpected outcome for broker `{b}`"
                        ))),
                    },
                    other => Err(AdminError::InvalidConfig(format!(
                        "unexpected outcome {other:?}"
                    ))),
                }
            }
        }
    }

    /// Validates and places a new topic against the current image; returns the record to write.
    pub fn plan_topic(&self, t: &NewTopic) -> Result<MetadataRecord, AdminError> {
        self.plan_topic_in(&self.image(), t)
    }

    /// Validates and places a new topic against `image`.
    fn plan_topic_in(
        &self,
        image: &MetadataImage,
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
            if partitions > MAX_PARTITIONS_PER_REQUEST {
                return Err(AdminError::PolicyViolation(EXCESSIVE_PARTITIONS.into()));
            }
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

    async fn create_partitions_local(
        &self,
        name: &str,
        total: i32,
        assignments: Vec<Vec<NodeId>>,
        validate_only: bool,
    ) -> Result<AdminDone, AdminError> {
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
        if validate_only {
            return Ok(AdminDone::Done);
        }
        match self
            .propose(vec![MetadataRecord::CreatePartitions {
                id: topic.id,
                assignments,
            }])
            .await?
            .first()
        {
            Some(ApplyOutcome::Applied) => Ok(AdminDone::Done),
            _ => Err(AdminError::UnknownTopic(name.to_string())),
        }
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
