//! The client side of the controller: admin writes and broker→controller calls, and the types
//! they carry.
//!
//! Any node calls `Handle::submit` (and `register`, `heartbeat`, `alter_partition`,
//! `quorum_status`); the call only sends — over gRPC to whichever node leads the quorum,
//! retrying when leadership moves, bounded by `controller.quorum.request.timeout.ms`. The leader
//! decides (`decide.rs`, pure) and proposes (`leader.rs`). Handlers map `AdminError` to Kafka
//! codes.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tonic::transport::Channel;

use super::decide::AlterPartition;
use super::pb::controller_client::ControllerClient;
use super::rpc::NOT_LEADER;
use super::{pb, Handle, QuorumStatus};
use crate::metadata::{BrokerRegistration, ElectionError};
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
    #[error("{0}")]
    NoReassignmentInProgress(String),
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
    /// ACLs added and removed (CreateAcls, DeleteAcls).
    AlterAcls {
        create: Vec<crate::metadata::AclBinding>,
        delete: Vec<crate::metadata::AclBinding>,
    },
    /// Partition reassignments (KIP-455): (topic, partition, target replicas), a `None`
    /// target cancelling that partition's reassignment.
    AlterPartitionReassignments {
        changes: Vec<(String, i32, Option<Vec<NodeId>>)>,
        /// false: a target whose size differs from the partition's replica count is refused
        /// (INVALID_REPLICATION_FACTOR, KIP-860).
        allow_replication_factor_change: bool,
    },
    /// SCRAM credentials set (`Some`) or removed (`None`): (user, mechanism name, credential).
    AlterScramCredentials {
        changes: Vec<(String, String, Option<crate::metadata::ScramCredential>)>,
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
    /// Each partition's reassignment: started (or finished, or cancelled), or why not.
    Reassignments(Vec<(String, i32, Result<(), AdminError>)>),
    Done,
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

/// The controller's answer to a heartbeat.
pub struct HeartbeatAnswer {
    /// False when the controller does not know this incarnation: register again.
    pub registered: bool,
    /// The broker is stopping (controlled shutdown) and stays fenced.
    pub fenced: bool,
    /// The metadata the controller had applied when it answered.
    pub applied_index: u64,
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
    async fn call_leader<T, F, Fut>(
        &self,
        channels: &super::network::Channels,
        within: Duration,
        f: F,
    ) -> Result<T, AdminError>
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
                match channels.get(&addr) {
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

    /// `call_leader` with one request message (sent again on each attempt); the reply's body.
    async fn send<Req, Rep, F, Fut>(
        &self,
        within: Duration,
        req: Req,
        f: F,
    ) -> Result<Rep, AdminError>
    where
        Req: Clone,
        F: Fn(ControllerClient<Channel>, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Rep>, tonic::Status>>,
    {
        self.send_via(&self.channels, within, req, f).await
    }

    /// `send` over `channels`: the bulk ones (`Handle::bulk`) keep thousands of ISR changes
    /// from queueing ahead of heartbeats on one connection.
    async fn send_via<Req, Rep, F, Fut>(
        &self,
        channels: &super::network::Channels,
        within: Duration,
        req: Req,
        f: F,
    ) -> Result<Rep, AdminError>
    where
        Req: Clone,
        F: Fn(ControllerClient<Channel>, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Rep>, tonic::Status>>,
    {
        // Every call names this node's cluster (empty until its image has the id).
        let cluster_id = tonic::metadata::MetadataValue::try_from(self.cluster_id())
            .unwrap_or_else(|_| tonic::metadata::MetadataValue::from_static(""));
        self.call_leader(channels, within, |c| {
            let mut request = tonic::Request::new(req.clone());
            request
                .metadata_mut()
                .insert(super::rpc::CLUSTER_ID_HEADER, cluster_id.clone());
            f(c, request)
        })
        .await
        .map(tonic::Response::into_inner)
    }

    fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.config.quorum_request_timeout_ms)
    }

    /// Sends an admin write to the leader and waits for its committed outcome.
    pub async fn submit(&self, op: AdminOp) -> Result<AdminDone, AdminError> {
        let payload =
            serde_json::to_vec(&op).map_err(|e| AdminError::InvalidTopic(e.to_string()))?;
        let req = pb::AdminRequest { payload };
        let reply = self
            .send(self.request_timeout(), req, |mut c, r| async move {
                c.admin(r).await
            })
            .await?;
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

    /// Creates an internal topic (`__consumer_offsets`, `__transaction_state`) on its first use,
    /// with `want_rf` replicas or as many as there are live brokers (with a warning). A topic
    /// another broker created meanwhile is fine.
    pub async fn create_internal_topic(
        &self,
        name: &str,
        partitions: i32,
        want_rf: i16,
        configs: BTreeMap<String, String>,
    ) -> Result<(), AdminError> {
        let live = self.image().live_brokers().len() as i16;
        if live == 0 {
            return Err(AdminError::NoQuorum("no live broker".into()));
        }
        let rf = want_rf.min(live);
        if rf < want_rf {
            tracing::warn!(
                topic = name,
                wanted_replication_factor = want_rf,
                live_brokers = live,
                replication_factor = rf,
                "the internal topic's replication factor is more than the live brokers; creating it with fewer replicas"
            );
        }
        let topic = NewTopic {
            name: name.to_string(),
            partitions,
            replication_factor: rf,
            assignments: Vec::new(),
            configs,
        };
        match self.create_topic(topic).await {
            Ok(_) => {
                tracing::info!(
                    topic = name,
                    partitions,
                    replication_factor = rf,
                    "created internal topic"
                );
                Ok(())
            }
            Err(AdminError::TopicAlreadyExists(_)) => Ok(()),
            Err(e) => {
                tracing::warn!(topic = name, error = %e, "cannot create internal topic");
                Err(e)
            }
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
            .send(
                within,
                req,
                |mut c, r| async move { c.register_broker(r).await },
            )
            .await?;
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
            .send(within, req, |mut c, r| async move {
                c.controlled_shutdown(r).await
            })
            .await?;
        self.wait_applied(reply.applied_index, within).await;
        Ok(())
    }

    /// One heartbeat and the controller's answer.
    pub async fn heartbeat(
        &self,
        id: NodeId,
        incarnation: uuid::Uuid,
        within: Duration,
    ) -> Result<HeartbeatAnswer, AdminError> {
        let req = pb::HeartbeatRequest {
            broker_id: id,
            incarnation: incarnation.to_string(),
        };
        let reply = self
            .send(within, req, |mut c, r| async move { c.heartbeat(r).await })
            .await?;
        Ok(HeartbeatAnswer {
            registered: reply.registered,
            fenced: reply.fenced,
            applied_index: reply.applied_index,
        })
    }

    /// Asks the controller to change a partition's ISR (as its leader). Returns the new
    /// partition epoch and ISR.
    pub async fn alter_partition(
        &self,
        ask: AlterPartition,
    ) -> Result<(i32, Vec<NodeId>), AdminError> {
        let req = pb::AlterPartitionRequest::from(&ask);
        let reply = self
            .send_via(
                &self.bulk,
                self.request_timeout(),
                req,
                |mut c, r| async move { c.alter_partition(r).await },
            )
            .await?;
        Ok((reply.partition_epoch, reply.isr))
    }

    /// Opens this broker's liveness stream to the leader (see `Liveness`).
    pub(super) async fn open_liveness(
        &self,
        broker: NodeId,
        incarnation: uuid::Uuid,
    ) -> Result<tonic::Streaming<pb::LivenessPing>, AdminError> {
        let req = pb::LivenessRequest {
            broker_id: broker,
            incarnation: incarnation.to_string(),
        };
        self.send(Duration::from_secs(2), req, |mut c, r| async move {
            c.liveness(r).await
        })
        .await
    }

    /// Asks the leader to add this broker-only node as a non-voting learner.
    pub async fn join_as_learner(&self, within: Duration) -> Result<(), AdminError> {
        let l = &self.config.controller_listener;
        let req = pb::AddLearnerRequest {
            node_id: self.config.node_id,
            address: format!("{}:{}", l.host, l.port),
        };
        self.send(
            within,
            req,
            |mut c, r| async move { c.add_learner(r).await },
        )
        .await
        .map(|_| ())
    }

    /// The leader's view of the quorum (leader, term, each voter's progress).
    pub async fn quorum_status(&self) -> Result<QuorumStatus, AdminError> {
        let reply = self
            .send(
                self.request_timeout(),
                pb::QuorumRequest {},
                |mut c, r| async move { c.quorum(r).await },
            )
            .await?;
        serde_json::from_slice(&reply.payload)
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
}
