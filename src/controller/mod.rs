//! The metadata quorum: an openraft node whose log (in sled) holds `MetadataRecord`s and whose
//! state machine publishes the `MetadataImage` every other module reads.
//!
//! `Controller::start` builds the Raft node and, on first start, initializes the quorum and
//! writes the cluster id. `Handle` is the cheap, cloneable face the rest of the broker uses:
//! read the current image, subscribe to new ones, and propose admin writes (`admin.rs`), which
//! are validated and placed here and answered once committed. This module knows nothing of the
//! Kafka wire protocol or of partition data.
//!
//! Today the quorum has one voter and the network is a stub that reaches nobody; the multi-node
//! work adds the tonic transport (`proto/raft.proto`), peers and forwarding without changing the
//! storage, the state machine or `Handle`.

mod admin;
mod state_machine;
mod store;

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Raft};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

pub use admin::{AdminError, NewTopic};

use crate::config::Config;
use crate::metadata::{ApplyOutcome, MetadataImage, MetadataRecord};
use crate::types::NodeId;

/// openraft's node id type (Kafka node ids are non-negative i32s).
pub type RaftNodeId = u64;

/// One replicated write: records applied together, in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetadataCommand {
    pub records: Vec<MetadataRecord>,
}

openraft::declare_raft_types!(
    /// The Raft type configuration of the metadata quorum.
    pub TypeConfig:
        D = MetadataCommand,
        R = Vec<ApplyOutcome>,
        NodeId = RaftNodeId,
        Node = BasicNode,
);

/// Errors starting the controller; fatal for the process.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the metadata store in {path}: {err}")]
    Store { path: String, err: String },
    #[error("cannot start the Raft node: {0}")]
    Raft(String),
    #[error("{0}")]
    Mismatch(String),
}

/// The network of a single-voter quorum: there is nobody to reach. Replaced by the gRPC
/// transport when peers exist.
#[derive(Clone, Default)]
pub struct NoPeers;

fn unreachable<E: std::error::Error>() -> RPCError<RaftNodeId, BasicNode, E> {
    RPCError::Unreachable(Unreachable::new(&std::io::Error::other(
        "single-voter quorum has no peers",
    )))
}

impl RaftNetwork<TypeConfig> for NoPeers {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        AppendEntriesResponse<RaftNodeId>,
        RPCError<RaftNodeId, BasicNode, RaftError<RaftNodeId>>,
    > {
        Err(unreachable())
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<RaftNodeId>,
        RPCError<RaftNodeId, BasicNode, RaftError<RaftNodeId, InstallSnapshotError>>,
    > {
        Err(unreachable())
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<RaftNodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<RaftNodeId>, RPCError<RaftNodeId, BasicNode, RaftError<RaftNodeId>>>
    {
        Err(unreachable())
    }
}

impl RaftNetworkFactory<TypeConfig> for NoPeers {
    type Network = NoPeers;
    async fn new_client(&mut self, _target: RaftNodeId, _node: &BasicNode) -> NoPeers {
        NoPeers
    }
}

/// The cloneable face of the controller used by handlers, `replica` and `node`.
#[derive(Clone)]
pub struct Handle {
    raft: Raft<TypeConfig>,
    images: watch::Receiver<Arc<MetadataImage>>,
    config: Arc<Config>,
}

/// Owns the Raft node; `node` keeps it to shut it down last.
pub struct Controller {
    handle: Handle,
}

impl Controller {
    /// Opens the metadata store under `<log.dirs>/__metadata`, starts the Raft node, and on the
    /// very first start initializes the quorum with this node as its only voter.
    pub async fn start(config: Arc<Config>) -> Result<Controller, StartError> {
        let path = config.log_dir.join("__metadata");
        let store_err = |err: String| StartError::Store {
            path: path.display().to_string(),
            err,
        };
        std::fs::create_dir_all(&path).map_err(|e| store_err(e.to_string()))?;
        let db = sled::open(&path).map_err(|e| store_err(e.to_string()))?;
        let log_store = store::LogStore::open(&db).map_err(|e| store_err(e.to_string()))?;
        let (tx, rx) = watch::channel(Arc::new(MetadataImage::default()));
        let sm =
            state_machine::StateMachine::open(&db, tx).map_err(|e| store_err(e.to_string()))?;

        let raft_config = openraft::Config {
            cluster_name: "strom".into(),
            heartbeat_interval: 100,
            election_timeout_min: 300,
            election_timeout_max: 600,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(1000),
            max_in_snapshot_log_to_keep: 100,
            ..Default::default()
        }
        .validate()
        .map_err(|e| StartError::Raft(e.to_string()))?;
        let id = config.node_id as RaftNodeId;
        let raft = Raft::new(id, Arc::new(raft_config), NoPeers, log_store, sm)
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;

        let voters: BTreeMap<RaftNodeId, BasicNode> = config
            .voters
            .iter()
            .map(|v| {
                (
                    v.id as RaftNodeId,
                    BasicNode::new(format!("{}:{}", v.host, v.port)),
                )
            })
            .collect();
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        if !initialized {
            raft.initialize(voters.clone())
                .await
                .map_err(|e| StartError::Raft(e.to_string()))?;
        } else {
            let metrics = raft.metrics().borrow().clone();
            let stored: Vec<RaftNodeId> =
                metrics.membership_config.membership().voter_ids().collect();
            let wanted: Vec<RaftNodeId> = voters.keys().copied().collect();
            if !stored.is_empty() && stored != wanted {
                return Err(StartError::Mismatch(format!(
                    "the metadata in {} belongs to a quorum with voters {stored:?}, but controller.quorum.voters names {wanted:?}; \
                     fix controller.quorum.voters or point log.dirs at this node's own data",
                    path.display()
                )));
            }
        }
        let handle = Handle {
            raft,
            images: rx,
            config,
        };
        if handle.image().cluster_id.is_empty() {
            let cluster_id = uuid::Uuid::new_v4().simple().to_string();
            // Another write of InitCluster loses harmlessly (Conflict) if this races a replay.
            handle
                .propose(vec![MetadataRecord::InitCluster { cluster_id }])
                .await
                .map_err(|e| StartError::Raft(format!("cannot write the cluster id: {e}")))?;
        }
        Ok(Controller { handle })
    }

    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Stops the Raft node; its log is already durable.
    pub async fn shutdown(&self) {
        if let Err(e) = self.handle.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
    }
}

impl Handle {
    /// The newest committed metadata image.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.images.borrow().clone()
    }

    /// A receiver that sees every new image.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.images.clone()
    }

    /// The node currently acting as controller (the Raft leader), if known.
    pub fn controller_id(&self) -> Option<NodeId> {
        self.raft
            .metrics()
            .borrow()
            .current_leader
            .map(|id| id as NodeId)
    }

    /// Writes records through the quorum and waits until they are committed and applied here,
    /// or `controller.quorum.request.timeout.ms` passes.
    pub async fn propose(
        &self,
        records: Vec<MetadataRecord>,
    ) -> Result<Vec<ApplyOutcome>, AdminError> {
        let timeout = Duration::from_millis(self.config.quorum_request_timeout_ms);
        let deadline = tokio::time::Instant::now() + timeout;
        let cmd = MetadataCommand { records };
        loop {
            let attempt =
                tokio::time::timeout_at(deadline, self.raft.client_write(cmd.clone())).await;
            match attempt {
                Ok(Ok(resp)) => return Ok(resp.data),
                // No leader yet (an election is running): wait for one, within the same bound.
                Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))))
                    if f.leader_id.is_none() =>
                {
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    let _ = self
                        .raft
                        .wait(Some(left))
                        .metrics(|m| m.current_leader.is_some(), "a metadata leader")
                        .await;
                    if tokio::time::Instant::now() >= deadline {
                        return Err(AdminError::NoQuorum(
                            "no metadata leader was elected in time".into(),
                        ));
                    }
                }
                Ok(Err(e)) => return Err(AdminError::NoQuorum(e.to_string())),
                Err(_) => {
                    return Err(AdminError::NoQuorum(format!(
                        "the metadata quorum did not commit within {} ms",
                        timeout.as_millis()
                    )))
                }
            }
        }
    }
}
