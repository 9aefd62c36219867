//! Outgoing quorum RPC: openraft's network (Raft messages to peers) and the broker→controller
//! client, both over tonic gRPC with one cached, lazily connecting channel per voter.
//!
//! The conversions between openraft's types and the protobuf messages are here and in `rpc.rs`
//! only: Raft payloads travel as serde JSON inside `RaftRequest` / `RaftReply`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{
    Certificate, Channel, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig,
};

use super::pb;
use super::{RaftNodeId, TypeConfig};

/// One channel per peer address, created lazily and reused; tonic reconnects by itself.
#[derive(Clone)]
pub struct Channels {
    inner: Arc<Mutex<HashMap<String, Channel>>>,
    /// Mutual TLS to peers (the controller listener is SSL).
    tls: Option<ClientTlsConfig>,
    /// Where each channel's connection task runs (the quorum's runtime), whoever asks first.
    runtime: tokio::runtime::Handle,
}

/// The controller listener's TLS, both ways: what it serves with and how it calls peers.
pub struct PeerTls {
    pub server: ServerTlsConfig,
    pub client: ClientTlsConfig,
}

impl PeerTls {
    /// Reads the listener's PEM files; an error names the setting whose file is at fault.
    pub fn load(settings: &crate::config::TlsSettings) -> Result<PeerTls, super::StartError> {
        let read = |path: &std::path::Path, setting: &str| {
            std::fs::read(path).map_err(|e| {
                super::StartError::Mismatch(format!(
                    "controller listener: `{setting}`: cannot read {}: {e}",
                    path.display()
                ))
            })
        };
        let pem = read(&settings.keystore, "ssl.keystore.location")?;
        let identity = Identity::from_pem(&pem, &pem);
        let mut server = ServerTlsConfig::new().identity(identity.clone());
        let mut client = ClientTlsConfig::new().identity(identity);
        if let Some(ca) = &settings.truststore {
            let ca = Certificate::from_pem(read(ca, "ssl.truststore.location")?);
            client = client.ca_certificate(ca.clone());
            if settings.client_auth != crate::config::ClientAuth::None {
                server = server.client_ca_root(ca).client_auth_optional(
                    settings.client_auth == crate::config::ClientAuth::Requested,
                );
            }
        }
        Ok(PeerTls { server, client })
    }
}

impl Channels {
    pub fn new(tls: Option<ClientTlsConfig>, runtime: tokio::runtime::Handle) -> Channels {
        Channels {
            inner: Arc::default(),
            tls,
            runtime,
        }
    }

    pub fn get(&self, addr: &str) -> Result<Channel, String> {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(addr) {
            return Ok(c.clone());
        }
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
            .map_err(|e| format!("bad peer address {addr}: {e}"))?;
        if let Some(tls) = &self.tls {
            endpoint = endpoint
                .tls_config(tls.clone())
                .map_err(|e| format!("TLS to {addr}: {e}"))?;
        }
        let endpoint = endpoint
            .connect_timeout(Duration::from_millis(500))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5));
        let channel = {
            let _on = self.runtime.enter();
            endpoint.connect_lazy()
        };
        map.insert(addr.to_string(), channel.clone());
        Ok(channel)
    }
}

/// Builds one `PeerClient` per Raft target; they share the channel cache.
#[derive(Clone)]
pub struct Network {
    pub channels: Channels,
    /// This node's cluster id once known (sent with every Raft message).
    pub cluster_id: Arc<Mutex<String>>,
}

pub struct PeerClient {
    target: RaftNodeId,
    addr: String,
    network: Network,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: RaftNodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            target,
            addr: node.addr.clone(),
            network: self.clone(),
        }
    }
}

type RpcResult<T, E> = Result<T, RPCError<RaftNodeId, BasicNode, E>>;

impl PeerClient {
    async fn call<Req, Resp, E>(
        &self,
        kind: RaftKind,
        req: &Req,
        option: &RPCOption,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let payload =
            super::codec::encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let channel = self
            .network
            .channels
            .get(&self.addr)
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&std::io::Error::other(e))))?;
        let cluster_id = self
            .network
            .cluster_id
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut client = pb::raft_client::RaftClient::new(channel)
            .max_decoding_message_size(super::MAX_RPC_MESSAGE)
            .max_encoding_message_size(super::MAX_RPC_MESSAGE);
        let request = pb::RaftRequest {
            cluster_id,
            payload,
        };
        let mut request = tonic::Request::new(request);
        request.set_timeout(option.hard_ttl());
        let reply = match kind {
            RaftKind::Append => client.append_entries(request).await,
            RaftKind::Vote => client.vote(request).await,
            RaftKind::Snapshot => client.install_snapshot(request).await,
        };
        let reply = reply
            .map_err(|s| {
                RPCError::Unreachable(Unreachable::new(&std::io::Error::other(
                    s.message().to_string(),
                )))
            })?
            .into_inner();
        if !reply.refused.is_empty() {
            return Err(RPCError::Network(NetworkError::new(
                &std::io::Error::other(reply.refused),
            )));
        }
        let result: Result<Resp, E> = super::codec::decode(&reply.payload)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

#[derive(Clone, Copy)]
enum RaftKind {
    Append,
    Vote,
    Snapshot,
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<RaftNodeId>, RaftError<RaftNodeId>> {
        self.call(RaftKind::Append, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<RaftNodeId>, RaftError<RaftNodeId, InstallSnapshotError>>
    {
        self.call(RaftKind::Snapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<RaftNodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<RaftNodeId>, RaftError<RaftNodeId>> {
        self.call(RaftKind::Vote, &rpc, &option).await
    }
}
