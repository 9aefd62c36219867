//! Incoming quorum RPC on the controller listener: Raft messages from peers, and the
//! broker→controller calls (register, heartbeat, alter partition, admin writes, quorum status)
//! that only the Raft leader answers — any other node says where the leader is.

use openraft::Raft;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::decide::AlterPartition;
use super::pb;
use super::{Handle, TypeConfig};
use crate::metadata::{BrokerRegistration, Endpoint};

/// Streams a peer may reset before this server accepts them, on one connection (h2 closes the
/// connection beyond it).
const MAX_PENDING_RESETS: usize = 1024;

/// The gRPC status a non-leader answers with; callers retry at the leader named in it.
pub const NOT_LEADER: &str = "not the metadata leader";

pub fn not_leader(leader: Option<u64>) -> Status {
    Status::failed_precondition(format!(
        "{NOT_LEADER}; leader={}",
        leader.map(|l| l as i64).unwrap_or(-1)
    ))
}

struct RaftService {
    raft: Raft<TypeConfig>,
    handle: Handle,
}

fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, String> {
    super::codec::decode(payload).map_err(|e| e.to_string())
}

fn reply<T: Serialize, E: Serialize>(r: Result<T, E>) -> Result<Response<pb::RaftReply>, Status> {
    let payload = super::codec::encode(&r).map_err(|e| Status::internal(e.to_string()))?;
    Ok(Response::new(pb::RaftReply {
        payload,
        refused: String::new(),
    }))
}

fn refused(why: String) -> Result<Response<pb::RaftReply>, Status> {
    Ok(Response::new(pb::RaftReply {
        payload: Vec::new(),
        refused: why,
    }))
}

impl RaftService {
    /// The Raft message in `req`, if it comes from this cluster and decodes. `writes`: the
    /// message would change this node's log or state (AppendEntries, InstallSnapshot) — then,
    /// once this node knows its cluster id, the sender must name it: a leader that knows the id
    /// always sends it, and one sends none only while no node has it yet (formation).
    fn admit<T: DeserializeOwned>(
        &self,
        req: Request<pb::RaftRequest>,
        writes: bool,
    ) -> Result<T, String> {
        let req = req.into_inner();
        self.check_cluster(&req.cluster_id)?;
        if writes && req.cluster_id.is_empty() && !self.handle.cluster_id().is_empty() {
            return Err("a write to this cluster's log must name the cluster".into());
        }
        decode(&req.payload)
    }

    /// A message from a node of another cluster is refused before it reaches Raft. A vote that
    /// names no cluster is taken: the id is written into the log by the first leader, so a node
    /// that joined or was wiped since does not know it yet, and refusing its votes would keep
    /// the quorum's terms from converging (tried: elections then took over 20 s). The id is no
    /// secret (Metadata answers carry it): what keeps strangers out is mutual TLS on the
    /// controller listener.
    fn check_cluster(&self, theirs: &str) -> Result<(), String> {
        let ours = self.handle.cluster_id();
        if !ours.is_empty() && !theirs.is_empty() && ours != theirs {
            return Err(format!(
                "cluster id mismatch: this node belongs to cluster {ours}, the sender to {theirs}"
            ));
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl pb::raft_server::Raft for RaftService {
    async fn append_entries(
        &self,
        req: Request<pb::RaftRequest>,
    ) -> Result<Response<pb::RaftReply>, Status> {
        match self.admit(req, true) {
            Ok(rpc) => reply(self.raft.append_entries(rpc).await),
            Err(why) => refused(why),
        }
    }

    async fn vote(&self, req: Request<pb::RaftRequest>) -> Result<Response<pb::RaftReply>, Status> {
        match self.admit(req, false) {
            Ok(rpc) => reply(self.raft.vote(rpc).await),
            Err(why) => refused(why),
        }
    }

    async fn install_snapshot(
        &self,
        req: Request<pb::RaftRequest>,
    ) -> Result<Response<pb::RaftReply>, Status> {
        match self.admit(req, true) {
            Ok(rpc) => reply(self.raft.install_snapshot(rpc).await),
            Err(why) => refused(why),
        }
    }
}

struct ControllerService {
    handle: Handle,
}

impl ControllerService {
    /// The request's message, if this node leads (only the leader decides) and the caller names
    /// this cluster (`CLUSTER_ID_HEADER`; not needed before the cluster id is written).
    fn on_leader<T>(&self, req: Request<T>) -> Result<T, Status> {
        let ours = self.handle.cluster_id();
        let theirs = req
            .metadata()
            .get(CLUSTER_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !ours.is_empty() && theirs != ours {
            return Err(Status::permission_denied(format!(
                "this is cluster {ours}; the caller names `{theirs}`"
            )));
        }
        self.leader_only(req)
    }

    /// The request's message, if this node leads. Joining as a learner is how a new broker-only
    /// node first receives the metadata log, cluster id included, so it cannot name it yet.
    fn leader_only<T>(&self, req: Request<T>) -> Result<T, Status> {
        if self.handle.is_leader() {
            Ok(req.into_inner())
        } else {
            Err(not_leader(
                self.handle.raft.metrics().borrow().current_leader,
            ))
        }
    }
}

/// The gRPC metadata entry in which a broker names its cluster on every controller call.
pub const CLUSTER_ID_HEADER: &str = "strom-cluster-id";

/// A refusal the broker may retry (no quorum, a race with a new leader).
fn unavailable(e: super::AdminError) -> Status {
    Status::unavailable(e.to_string())
}

fn uuid_field(value: &str, what: &str) -> Result<uuid::Uuid, Status> {
    uuid::Uuid::parse_str(value)
        .map_err(|_| Status::invalid_argument(format!("bad {what} `{value}`")))
}

fn json<T: Serialize>(v: &T) -> Result<Vec<u8>, Status> {
    serde_json::to_vec(v).map_err(|e| Status::internal(e.to_string()))
}

#[tonic::async_trait]
impl pb::controller_server::Controller for ControllerService {
    async fn register_broker(
        &self,
        req: Request<pb::RegisterBrokerRequest>,
    ) -> Result<Response<pb::RegisterBrokerReply>, Status> {
        let r = self.on_leader(req)?;
        let incarnation = uuid_field(&r.incarnation, "incarnation")?;
        let reg = BrokerRegistration {
            id: r.broker_id,
            incarnation,
            endpoints: r
                .endpoints
                .into_iter()
                .map(|e| Endpoint {
                    listener: e.listener,
                    host: e.host,
                    port: e.port as u16,
                })
                .collect(),
            rack: r.rack,
            fenced: false,
        };
        self.handle.register_local(reg).await.map_err(unavailable)?;
        Ok(Response::new(pb::RegisterBrokerReply {
            cluster_id: self.handle.cluster_id(),
            applied_index: self.handle.applied_index(),
        }))
    }

    async fn heartbeat(
        &self,
        req: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatReply>, Status> {
        let r = self.on_leader(req)?;
        let incarnation = uuid_field(&r.incarnation, "incarnation")?;
        let (registered, fenced) = self
            .handle
            .heartbeat_local(r.broker_id, incarnation)
            .await
            .map_err(unavailable)?;
        Ok(Response::new(pb::HeartbeatReply {
            fenced,
            registered,
            applied_index: self.handle.applied_index(),
        }))
    }

    async fn controlled_shutdown(
        &self,
        req: Request<pb::ControlledShutdownRequest>,
    ) -> Result<Response<pb::ControlledShutdownReply>, Status> {
        let r = self.on_leader(req)?;
        let incarnation = uuid_field(&r.incarnation, "incarnation")?;
        self.handle
            .controlled_shutdown_local(r.broker_id, incarnation)
            .await
            .map_err(unavailable)?;
        Ok(Response::new(pb::ControlledShutdownReply {
            applied_index: self.handle.applied_index(),
        }))
    }

    async fn alter_partition(
        &self,
        req: Request<pb::AlterPartitionRequest>,
    ) -> Result<Response<pb::AlterPartitionReply>, Status> {
        let ask = AlterPartition::try_from(self.on_leader(req)?)?;
        let (partition_epoch, isr) = self
            .handle
            .alter_partition_local(&ask)
            .await
            .map_err(|e| Status::aborted(e.to_string()))?;
        Ok(Response::new(pb::AlterPartitionReply {
            partition_epoch,
            isr,
        }))
    }

    async fn admin(
        &self,
        req: Request<pb::AdminRequest>,
    ) -> Result<Response<pb::AdminReply>, Status> {
        let op = serde_json::from_slice(&self.on_leader(req)?.payload)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let result = self.handle.admin_local(op).await;
        Ok(Response::new(pb::AdminReply {
            payload: json(&result)?,
            applied_index: self.handle.applied_index(),
        }))
    }

    async fn add_learner(
        &self,
        req: Request<pb::AddLearnerRequest>,
    ) -> Result<Response<pb::AddLearnerReply>, Status> {
        let r = self.leader_only(req)?;
        self.handle
            .add_learner_local(r.node_id, r.address)
            .await
            .map_err(unavailable)?;
        Ok(Response::new(pb::AddLearnerReply {}))
    }

    type LivenessStream = std::pin::Pin<
        Box<dyn futures::Stream<Item = Result<pb::LivenessPing, Status>> + Send + 'static>,
    >;

    /// Held open by a registered broker for as long as it lives (see `Liveness`); pinged every
    /// `LIVENESS_PING`, ended when this node stops leading (the broker reconnects to the new
    /// leader).
    async fn liveness(
        &self,
        req: Request<pb::LivenessRequest>,
    ) -> Result<Response<Self::LivenessStream>, Status> {
        let r = self.on_leader(req)?;
        let incarnation = uuid_field(&r.incarnation, "incarnation")?;
        let guard = self
            .handle
            .liveness_stream(r.broker_id, incarnation)
            .ok_or_else(|| Status::failed_precondition("not registered with this incarnation"))?;
        let handle = self.handle.clone();
        let pings = futures::stream::unfold((guard, handle), |(guard, handle)| async move {
            tokio::time::sleep(super::leader::LIVENESS_PING).await;
            handle
                .is_leader()
                .then_some((Ok(pb::LivenessPing {}), (guard, handle)))
        });
        Ok(Response::new(Box::pin(pings)))
    }

    /// Any node answers with its own view (start-up checks only need the cluster id).
    async fn quorum(
        &self,
        _req: Request<pb::QuorumRequest>,
    ) -> Result<Response<pb::QuorumReply>, Status> {
        Ok(Response::new(pb::QuorumReply {
            payload: json(&self.handle.quorum_local())?,
        }))
    }
}

/// Serves both services on the controller listener until `token` is cancelled.
pub async fn serve(
    listener: TcpListener,
    raft: Raft<TypeConfig>,
    handle: Handle,
    tls: Option<tonic::transport::ServerTlsConfig>,
    token: CancellationToken,
) {
    let raft_service = RaftService {
        raft,
        handle: handle.clone(),
    };
    let controller_service = ControllerService { handle };
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    // Raft cancels an AppendEntries or heartbeat it has waited 100 ms for, which resets its
    // stream; h2's default (20 such streams still waiting to be accepted) then closes the whole
    // connection, and every call on it fails — a loaded follower was cut off for seconds.
    let mut builder = tonic::transport::Server::builder()
        .http2_max_pending_accept_reset_streams(Some(MAX_PENDING_RESETS));
    if let Some(tls) = tls {
        builder = match builder.tls_config(tls) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "the controller listener's TLS configuration is refused");
                return;
            }
        };
    }
    let served = builder
        .add_service(
            pb::raft_server::RaftServer::new(raft_service)
                .max_decoding_message_size(super::MAX_RPC_MESSAGE)
                .max_encoding_message_size(super::MAX_RPC_MESSAGE),
        )
        .add_service(
            pb::controller_server::ControllerServer::new(controller_service)
                .max_decoding_message_size(super::MAX_RPC_MESSAGE)
                .max_encoding_message_size(super::MAX_RPC_MESSAGE),
        )
        .serve_with_incoming_shutdown(incoming, token.cancelled())
        .await;
    if let Err(e) = served {
        tracing::error!(error = %e, "controller RPC server stopped");
    }
}

impl From<&AlterPartition> for pb::AlterPartitionRequest {
    fn from(a: &AlterPartition) -> Self {
        pb::AlterPartitionRequest {
            broker_id: a.broker,
            topic_id: a.topic_id.0.to_string(),
            partition: a.partition,
            leader_epoch: a.leader_epoch,
            partition_epoch: a.partition_epoch,
            new_isr: a.new_isr.clone(),
        }
    }
}

impl TryFrom<pb::AlterPartitionRequest> for AlterPartition {
    type Error = Status;

    fn try_from(r: pb::AlterPartitionRequest) -> Result<Self, Status> {
        Ok(AlterPartition {
            broker: r.broker_id,
            topic_id: crate::types::TopicId(uuid_field(&r.topic_id, "topic id")?),
            partition: r.partition,
            leader_epoch: r.leader_epoch,
            partition_epoch: r.partition_epoch,
            new_isr: r.new_isr,
        })
    }
}
