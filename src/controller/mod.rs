//! The metadata quorum: an openraft node per voter whose log (in sled) holds `MetadataRecord`s
//! and whose state machine publishes the `MetadataImage` every other module reads.
//!
//! `Controller::start` opens the store, builds the Raft node, serves the quorum's gRPC on the
//! controller listener (`rpc.rs`, messages in `proto/strom.proto`), initializes a brand-new
//! quorum from `controller.quorum.voters` (every voter may do so; the membership is the same),
//! and runs the leader's duties. `Handle` is the cheap, cloneable face the rest of the broker
//! uses: read and follow the image, and send admin writes, registration, heartbeats and ISR
//! changes to whichever node leads (`admin.rs`: the client side, which only sends). On the
//! leader, `leader.rs` takes those calls and runs the duties (cluster id, fencing, preferred
//! leaders): every decision is a pure function in `decide.rs` — `(image, config, request) →
//! records` — and the service proposes what it returns and answers once committed. This module knows nothing of the Kafka wire protocol or
//! of partition data.

mod admin;
mod codec;
mod configs;
mod decide;
#[cfg(test)]
mod fuzz;
mod isr;
mod leader;
mod liveness;
mod network;
mod rpc;
mod state_machine;
mod store;

#[allow(clippy::all, missing_docs)]
/// The largest gRPC message on the controller listener, each way (tonic's default is 4 MiB):
/// big metadata commands (a 1,000-topic auto-creation) and snapshot chunks fit with room.
pub(crate) const MAX_RPC_MESSAGE: usize = 64 << 20;

/// Bytes of snapshot per InstallSnapshot message.
const SNAPSHOT_CHUNK: usize = 512 << 10;

pub mod pb {
    tonic::include_proto!("strom.v1");
}

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, Raft, ServerState};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use admin::{
    AdminDone, AdminError, AdminOp, ConfigOp, ConfigTarget, NewTopic, EXCESSIVE_PARTITIONS,
    MAX_PARTITIONS_PER_REQUEST,
};
pub use decide::AlterPartition;
pub use liveness::QuorumStatus;

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
        SnapshotData = Cursor<Vec<u8>>,
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

/// The cloneable face of the controller used by handlers, `replica` and `node`.
#[derive(Clone)]
pub struct Handle {
    raft: Raft<TypeConfig>,
    images: watch::Receiver<Arc<MetadataImage>>,
    config: Arc<Config>,
    channels: network::Channels,
    /// Connections of their own for bulk calls to the controller (ISR changes), so those
    /// never queue ahead of heartbeats.
    bulk: network::Channels,
    cluster_id: Arc<Mutex<String>>,
    liveness: Arc<liveness::Liveness>,
    lease: Arc<liveness::Lease>,
    /// ISR changes waiting to be written together (`isr.rs`).
    isr: Arc<isr::IsrQueue>,
    /// The quorum's own runtime (`QUORUM_THREADS`).
    quorum: tokio::runtime::Handle,
    /// Metadata snapshots this node installed from a leader since start.
    snapshots_installed: Arc<std::sync::atomic::AtomicU64>,
}

/// Owns the Raft node, the quorum's tasks and their runtime; `node` keeps it to shut it down
/// last.
pub struct Controller {
    handle: Handle,
    token: CancellationToken,
    tasks: TaskTracker,
    _runtime: QuorumRuntime,
}

/// Worker threads of the quorum's own runtime. Raft, the metadata store and state machine,
/// the controller's RPC server, the channels to peers and this broker's registration and
/// heartbeats run there, apart from partition work (file creation, recovery, reconciling
/// thousands of partition changes, fetch I/O), which on the main runtime delayed Raft's
/// 100 ms AppendEntries and heartbeats until the quorum held elections instead of committing.
const QUORUM_THREADS: usize = 2;

/// How much the quorum's threads are favoured by the kernel's scheduler over the rest of the
/// process (a lower nice value); a process without the right to raise priority keeps the
/// default, and only loses this head start.
const QUORUM_NICE: i32 = -10;

/// Run on each quorum thread as it starts: with the CPU saturated by partition work (a broker
/// taking over 15,000 leaderships), Raft's 100 ms deadlines were missed and live brokers fenced.
#[allow(unsafe_code)]
fn raise_priority() {
    // SAFETY: plain system calls on the calling thread, no memory handed over.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, QUORUM_NICE);
    }
}

/// The quorum's runtime, shut down without waiting when dropped (a runtime may not be dropped
/// where blocking is not allowed, and `Controller::shutdown` has stopped its work by then).
struct QuorumRuntime(Option<tokio::runtime::Runtime>);

impl Drop for QuorumRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

fn voter_nodes(config: &Config) -> BTreeMap<RaftNodeId, BasicNode> {
    config
        .voters
        .iter()
        .map(|v| {
            (
                v.id as RaftNodeId,
                BasicNode::new(format!("{}:{}", v.host, v.port)),
            )
        })
        .collect()
}

/// `<log.dirs>/meta.properties`: which node and cluster this data directory belongs to.
fn check_meta_properties(config: &Config) -> Result<Option<String>, StartError> {
    let path = config.log_dir.join("meta.properties");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    let get = |k: &str| {
        text.lines()
            .filter_map(|l| l.split_once('='))
            .find(|(n, _)| n.trim() == k)
            .map(|(_, v)| v.trim().to_string())
    };
    if let Some(stored) = get("node.id") {
        if stored != config.node_id.to_string() {
            return Err(StartError::Mismatch(format!(
                "{} belongs to node.id={stored}, but this node is node.id={}; point log.dirs at this node's own data",
                config.log_dir.display(),
                config.node_id
            )));
        }
    }
    Ok(get("cluster.id").filter(|c| !c.is_empty()))
}

fn write_meta_properties(config: &Config, cluster_id: &str) {
    let path = config.log_dir.join("meta.properties");
    let text = format!(
        "# written by strom\nnode.id={}\ncluster.id={cluster_id}\n",
        config.node_id
    );
    let tmp = path.with_extension("tmp");
    if let Err(e) = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &path)) {
        tracing::warn!(error = %e, "cannot write meta.properties");
    }
}

impl Controller {
    /// Opens the metadata store under `<log.dirs>/__metadata`, starts the Raft node and its RPC
    /// server on `listener`, and initializes a brand-new quorum. Does not wait for a quorum.
    pub async fn start(
        config: Arc<Config>,
        listener: TcpListener,
    ) -> Result<Controller, StartError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(QUORUM_THREADS)
            .thread_name("strom-quorum")
            .on_thread_start(raise_priority)
            .enable_all()
            .build()
            .map_err(|e| StartError::Raft(format!("cannot start the quorum's threads: {e}")))?;
        let quorum = runtime.handle().clone();
        let runtime = QuorumRuntime(Some(runtime));
        // The listener moves to the quorum's reactor, so its accepts do not wait on the main one.
        let listener = listener
            .into_std()
            .map_err(|e| StartError::Raft(format!("controller listener: {e}")))?;
        let (handle, token, tasks) = quorum
            .spawn(Self::start_on_quorum(config, listener, quorum.clone()))
            .await
            .map_err(|e| StartError::Raft(format!("the quorum's start failed: {e}")))??;
        Ok(Controller {
            handle,
            token,
            tasks,
            _runtime: runtime,
        })
    }

    /// `start`, on the quorum's runtime: everything it spawns stays there.
    async fn start_on_quorum(
        config: Arc<Config>,
        listener: std::net::TcpListener,
        quorum: tokio::runtime::Handle,
    ) -> Result<(Handle, CancellationToken, TaskTracker), StartError> {
        let listener = TcpListener::from_std(listener)
            .map_err(|e| StartError::Raft(format!("controller listener: {e}")))?;
        let stored_cluster = check_meta_properties(&config)?;
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
        let snapshots_installed = sm.installed.clone();

        let raft_config = openraft::Config {
            cluster_name: "strom".into(),
            heartbeat_interval: 100,
            election_timeout_min: 300,
            election_timeout_max: 600,
            install_snapshot_timeout: 2000,
            // openraft cancels an AppendEntries after `heartbeat_interval`; a follower catching
            // up must store what one carries well inside that, so entries are few (each at
            // most `decide::RECORDS_PER_ENTRY` records where work is split) — 300 (the
            // default) entries of creations and fences took longer, and were sent again and again.
            max_payload_entries: 32,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(
                config.metadata_snapshot_interval,
            ),
            max_in_snapshot_log_to_keep: config.metadata_snapshot_interval / 10,
            // Snapshot chunks travel as JSON inside protobuf (a byte can take four characters):
            // 512 KiB chunks stay far inside `MAX_RPC_MESSAGE` whatever the image's size.
            snapshot_max_chunk_size: SNAPSHOT_CHUNK as u64,
            ..Default::default()
        }
        .validate()
        .map_err(|e| StartError::Raft(e.to_string()))?;
        let cluster_id = Arc::new(Mutex::new(stored_cluster.clone().unwrap_or_default()));
        let peer_tls = match &config.controller_tls {
            Some(t) => Some(network::PeerTls::load(t)?),
            None => None,
        };
        let channels =
            network::Channels::new(peer_tls.as_ref().map(|t| t.client.clone()), quorum.clone());
        let net = network::Network {
            channels: channels.clone(),
            cluster_id: cluster_id.clone(),
        };
        let id = config.node_id as RaftNodeId;
        let raft = Raft::new(id, Arc::new(raft_config), net, log_store, sm)
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;

        let voters = voter_nodes(&config);
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        if initialized {
            let metrics = raft.metrics().borrow().clone();
            let membership = metrics.membership_config.membership();
            // Voters only: learners (broker-only nodes) may have joined since.
            let stored: BTreeMap<RaftNodeId, BasicNode> = membership
                .voter_ids()
                .filter_map(|id| membership.get_node(&id).map(|n| (id, n.clone())))
                .collect();
            if stored != voters {
                let show = |m: &BTreeMap<RaftNodeId, BasicNode>| {
                    m.iter()
                        .map(|(i, n)| format!("{i}@{}", n.addr))
                        .collect::<Vec<_>>()
                        .join(",")
                };
                return Err(StartError::Mismatch(format!(
                    "the metadata in {} belongs to a quorum with voters {}, but controller.quorum.voters is {}; \
                     fix controller.quorum.voters or point log.dirs at this node's own data",
                    path.display(),
                    show(&stored),
                    show(&voters)
                )));
            }
        } else if config.voters.iter().any(|v| v.id == config.node_id) {
            match raft.initialize(voters.clone()).await {
                Ok(()) => {}
                // Another voter reached us first: we join through it.
                Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(e) => return Err(StartError::Raft(e.to_string())),
            }
        }

        let handle = Handle {
            raft: raft.clone(),
            images: rx,
            config: config.clone(),
            bulk: network::Channels::new(
                peer_tls.as_ref().map(|t| t.client.clone()),
                quorum.clone(),
            ),
            channels,
            cluster_id,
            liveness: Arc::new(liveness::Liveness::default()),
            lease: Arc::new(liveness::Lease::new(config.broker_lease_ms)),
            isr: Arc::default(),
            quorum,
            snapshots_installed,
        };
        handle
            .check_peers_cluster(stored_cluster.as_deref())
            .await?;
        let token = CancellationToken::new();
        let tasks = TaskTracker::new();
        tasks.spawn(rpc::serve(
            listener,
            raft,
            handle.clone(),
            peer_tls.map(|t| t.server),
            token.child_token(),
        ));
        tasks.spawn(handle.clone().run_leader_duties(token.child_token()));
        tasks.spawn(handle.clone().track_cluster_id(token.child_token()));
        tasks.spawn(handle.clone().run_isr_changes(token.child_token()));
        Ok((handle, token, tasks))
    }

    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Stops the Raft node (its log is already durable), then the quorum's tasks: Raft first, so
    /// the other voters' election clock starts at once, not after the gRPC server has waited
    /// out its long-lived liveness streams.
    pub async fn shutdown(&self) {
        self.token.cancel();
        if let Err(e) = self.handle.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
        self.tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(1), self.tasks.wait()).await;
    }
}

impl Handle {
    /// The quorum's runtime: work that must not wait behind partition work (this broker's
    /// heartbeats) is spawned there.
    pub fn quorum_runtime(&self) -> &tokio::runtime::Handle {
        &self.quorum
    }

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

    /// Whether this broker holds its lease from the quorum (`liveness::Lease`): a leader
    /// without it must not acknowledge writes.
    pub fn lease_held(&self) -> bool {
        self.lease.held()
    }

    /// Confirms that this node still leads a quorum now (a round of Raft heartbeats), within
    /// `within`.
    pub(crate) async fn confirm_leadership(&self, within: Duration) -> Result<(), AdminError> {
        match tokio::time::timeout(within, self.raft.get_read_log_id()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(AdminError::NoQuorum(e.to_string())),
            Err(_) => Err(AdminError::NoQuorum(
                "the quorum did not confirm this leader in time".into(),
            )),
        }
    }

    pub fn is_leader(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.state == ServerState::Leader
            && m.current_leader == Some(self.config.node_id as RaftNodeId)
    }

    /// The Raft term this node is in.
    pub fn current_term(&self) -> u64 {
        self.raft.metrics().borrow().current_term
    }

    /// The last metadata log index this node holds (applied or not).
    pub fn last_log_index(&self) -> u64 {
        self.raft.metrics().borrow().last_log_index.unwrap_or(0)
    }

    /// Metadata snapshots this node installed from a leader since start.
    pub fn snapshots_installed(&self) -> u64 {
        self.snapshots_installed
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The last metadata log index applied to this node's image.
    pub fn applied_index(&self) -> u64 {
        self.raft
            .metrics()
            .borrow()
            .last_applied
            .map(|l| l.index)
            .unwrap_or(0)
    }

    /// Waits (bounded) until this node's image includes log index `index`.
    pub async fn wait_applied(&self, index: u64, within: Duration) -> bool {
        if self.applied_index() >= index {
            return true;
        }
        self.raft
            .wait(Some(within))
            .applied_index_at_least(Some(index), "the local image to catch up")
            .await
            .is_ok()
    }

    /// Whether this node votes in the quorum (`process.roles` includes `controller`).
    pub fn is_voter(&self) -> bool {
        self.config
            .voters
            .iter()
            .any(|v| v.id == self.config.node_id)
    }

    pub fn cluster_id(&self) -> String {
        self.cluster_id
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Keeps `cluster_id` and `meta.properties` in step with the image.
    async fn track_cluster_id(self, token: CancellationToken) {
        let mut images = self.subscribe();
        loop {
            let id = images.borrow_and_update().cluster_id.clone();
            if !id.is_empty() && id != self.cluster_id() {
                *self.cluster_id.lock().unwrap_or_else(|p| p.into_inner()) = id.clone();
                write_meta_properties(&self.config, &id);
            }
            tokio::select! {
                _ = token.cancelled() => return,
                r = images.changed() => if r.is_err() { return },
            }
        }
    }

    /// Refuses to start when a reachable peer belongs to another cluster than our stored data.
    async fn check_peers_cluster(&self, ours: Option<&str>) -> Result<(), StartError> {
        let Some(ours) = ours else { return Ok(()) };
        for v in &self.config.voters {
            if v.id == self.config.node_id {
                continue;
            }
            let addr = format!("{}:{}", v.host, v.port);
            if let Ok(Some(theirs)) = self.peer_cluster_id(&addr).await {
                if theirs != ours {
                    return Err(StartError::Mismatch(format!(
                        "{} holds data of cluster {ours}, but voter {} at {addr} belongs to cluster {theirs}; \
                         point log.dirs at this cluster's data or clear it",
                        self.config.log_dir.display(),
                        v.id
                    )));
                }
            }
        }
        Ok(())
    }

    /// Writes records through the quorum on this node, which must be the leader, and waits until
    /// they are committed and applied here, or `controller.quorum.request.timeout.ms` passes.
    pub async fn propose(
        &self,
        records: Vec<MetadataRecord>,
    ) -> Result<Vec<ApplyOutcome>, AdminError> {
        let timeout = Duration::from_millis(self.config.quorum_request_timeout_ms);
        let cmd = MetadataCommand { records };
        match tokio::time::timeout(timeout, self.raft.client_write(cmd)).await {
            Ok(Ok(resp)) => Ok(resp.data),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                Err(AdminError::NotLeader(f.leader_id.map(|l| l as NodeId)))
            }
            Ok(Err(e)) => Err(AdminError::NoQuorum(e.to_string())),
            Err(_) => Err(AdminError::NoQuorum(format!(
                "the metadata quorum did not commit within {} ms",
                timeout.as_millis()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use openraft::testing::{StoreBuilder, Suite};
    use openraft::StorageError;

    use super::state_machine::StateMachine;
    use super::store::LogStore;
    use super::*;

    struct SledBuilder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for SledBuilder {
        async fn build(
            &self,
        ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<RaftNodeId>> {
            let dir = tempfile::tempdir().expect("tempdir");
            let db = sled::open(dir.path()).expect("sled");
            let log = LogStore::open(&db).expect("log store");
            let (tx, _rx) = watch::channel(Arc::new(MetadataImage::default()));
            let sm = StateMachine::open(&db, tx)?;
            Ok((dir, log, sm))
        }
    }

    #[test]
    fn sled_store_passes_openraft_storage_suite() {
        Suite::test_all(SledBuilder).expect("openraft storage suite");
    }
}
