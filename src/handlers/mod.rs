//! One file per Kafka API: decode → work → response. A handler never fails for a Kafka-level
//! problem; it fills in the error code the client expects (mapped in `errors`). Only a request
//! that cannot be decoded closes the connection. `dispatch` is the single registry.

pub mod add_offsets_to_txn;
pub mod add_partitions_to_txn;
pub mod alter_configs;
pub mod alter_partition_reassignments;
pub mod alter_user_scram_credentials;
pub mod api_versions;
pub mod configs;
pub mod create_acls;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_acls;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_acls;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_log_dirs;
pub mod describe_producers;
pub mod describe_quorum;
pub mod describe_topic_partitions;
pub mod describe_transactions;
pub mod describe_user_scram_credentials;
pub mod elect_leaders;
pub mod end_txn;
pub mod errors;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod list_partition_reassignments;
pub mod list_transactions;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod sasl_authenticate;
pub mod sasl_handshake;
pub mod sync_group;
pub mod txn_offset_commit;
pub mod write_txn_markers;

use std::net::IpAddr;
use std::sync::Arc;

use kafka_protocol::messages::{ApiKey, BrokerId, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::config::Config;
use crate::controller::Handle;
use crate::protocol::{self, FrameError, Parsed, Reply};
use crate::replica::ReplicaManager;

/// What every handler may use. One per listener (the listener name picks Metadata endpoints).
#[derive(Clone)]
pub struct Context {
    pub config: Arc<Config>,
    pub controller: Handle,
    pub replicas: Arc<ReplicaManager>,
    /// The name of the listener the client connected to.
    pub listener: String,
    /// This broker's block of idempotent-producer ids (one per node, shared by listeners).
    pub producer_ids: Arc<init_producer_id::ProducerIds>,
    /// The consumer group coordinator (one per node, shared by listeners).
    pub groups: Arc<crate::group::Coordinator>,
    /// The transaction coordinator (one per node, shared by listeners).
    pub txns: Arc<crate::txn::Coordinator>,
    /// How this listener admits connections (TLS, SASL).
    pub auth: crate::auth::Shared,
    /// This listener's encoded all-topics Metadata answers.
    pub all_topics: Arc<metadata::AllTopics>,
    /// Who the connection is (`User:ANONYMOUS` until SASL says otherwise) and its address:
    /// what the authorizer is asked about.
    pub principal: Arc<str>,
    pub host: Arc<str>,
}

/// The principal of a connection that has not authenticated (Kafka's name).
pub const ANONYMOUS: &str = "User:ANONYMOUS";

impl Context {
    /// This listener's context for one connection from `host`, as `principal`.
    pub fn for_connection(&self, principal: &str, host: &str) -> Context {
        Context {
            principal: principal.into(),
            host: host.into(),
            ..self.clone()
        }
    }

    /// Whether this connection's principal may do `op` on the resource; always with no
    /// authorizer configured. Super users pass every check.
    pub fn may(&self, op: crate::metadata::acl::Operation, resource_type: i8, name: &str) -> bool {
        let Some(a) = &self.config.authorizer else {
            return true;
        };
        if a.super_users.iter().any(|u| **u == *self.principal) {
            return true;
        }
        let image = self.controller.image();
        let asker = crate::metadata::acl::Asker {
            principal: &self.principal,
            host: &self.host,
        };
        crate::metadata::acl::authorize(
            &image.acls,
            &asker,
            op,
            resource_type,
            name,
            a.allow_if_no_acl,
        )
    }

    /// `may` on a config resource (Kafka's config resource types): a topic's ACLs for a
    /// topic (2), the cluster's for brokers (4). Answers the refusal's code when not.
    pub fn may_config(
        &self,
        op: crate::metadata::acl::Operation,
        resource_type: i8,
        name: &str,
    ) -> Result<(), errors::Refusal> {
        if resource_type == 2 {
            self.may(op, crate::metadata::acl::TOPIC, name)
                .then_some(())
                .ok_or(errors::Refusal::TopicAuthorizationFailed)
        } else {
            self.may_on_cluster(op)
                .then_some(())
                .ok_or(errors::Refusal::ClusterAuthorizationFailed)
        }
    }

    /// `may` on the cluster resource.
    pub fn may_on_cluster(&self, op: crate::metadata::acl::Operation) -> bool {
        self.may(
            op,
            crate::metadata::acl::CLUSTER,
            crate::metadata::acl::CLUSTER_NAME,
        )
    }
}

/// The rest of a request's handling, to run as its own task.
pub type Pending =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Option<Reply>, FrameError>> + Send>>;

/// What one connection's requests must keep in arrival order beyond produce: offset commits.
/// Kafka handles a connection's requests one at a time, so a client that pipelines commits
/// (librdkafka's auto-commit does under load) relies on the last one sent being the one kept.
#[derive(Default)]
pub struct ConnectionOrder {
    /// Resolves when the connection's previous OffsetCommit has finished.
    last_commit: Option<tokio::sync::oneshot::Receiver<()>>,
}

/// Starts a request in the connection's reader, in arrival order. A produce request appends
/// its batches here (so a connection's batches reach the log in the order sent) and leaves only
/// the acks wait and the response to the returned future; an OffsetCommit waits for the
/// connection's previous one to finish; every other request is all future.
///
/// A produce that may open a transaction must first be verified with the transaction
/// coordinator (KIP-890): that comes back as `Started::Later`, which the reader awaits before
/// the next request — boxed, so an idle connection's reader does not carry its size.
pub fn start(
    ctx: Arc<Context>,
    p: Parsed,
    peer: Option<IpAddr>,
    order: &mut ConnectionOrder,
) -> Result<Started, FrameError> {
    if p.key == ApiKey::OffsetCommit {
        let (done, finished) = tokio::sync::oneshot::channel::<()>();
        let before = order.last_commit.replace(finished);
        return Ok(Started::Now(Box::pin(async move {
            if let Some(before) = before {
                // Ends when the previous commit finishes (or its task is gone).
                let _ = before.await;
            }
            let answer = dispatch(ctx, p, peer).await;
            drop(done);
            answer
        })));
    }
    if p.key != ApiKey::Produce {
        return Ok(Started::Now(Box::pin(dispatch(ctx, p, peer))));
    }
    let Parsed {
        key,
        version,
        header,
        mut body,
    } = p;
    let req: kafka_protocol::messages::ProduceRequest = protocol::decode(key, &mut body, version)?;
    let corr = header.correlation_id;
    let finish = move |ctx: Arc<Context>, staged: produce::Staged| -> Pending {
        let silent = staged.silent();
        Box::pin(async move {
            let resp = produce::complete(&ctx, staged).await;
            if silent {
                Ok(None)
            } else {
                protocol::encode_response(key, version, corr, &resp).map(|b| Some(b.into()))
            }
        })
    };
    if !produce::may_open_transactions(&ctx, &req) {
        let staged = produce::append(&ctx, req, version, &produce::Verified::none(&ctx));
        return Ok(Started::Now(finish(ctx, staged)));
    }
    Ok(Started::Later(Box::pin(async move {
        let verified = produce::verify(&ctx, &req, version).await;
        let staged = produce::append(&ctx, req, version, &verified);
        Ok(finish(ctx, staged))
    })))
}

/// A request started in the connection's reader (`start`).
pub enum Started {
    /// Its remaining work and answer.
    Now(Pending),
    /// A step the reader must finish before reading on (a produce's KIP-890 verification),
    /// then as `Now`.
    Later(std::pin::Pin<Box<dyn std::future::Future<Output = Result<Pending, FrameError>> + Send>>),
}

/// Decodes, handles and encodes one request from a client at `peer`. `Ok(None)` means no
/// response (acks=0 produce).
pub async fn dispatch(
    ctx: Arc<Context>,
    p: Parsed,
    peer: Option<IpAddr>,
) -> Result<Option<Reply>, FrameError> {
    let Parsed {
        key,
        version: v,
        header,
        mut body,
    } = p;
    let corr = header.correlation_id;
    macro_rules! call {
        ($module:ident) => {{
            let req = protocol::decode(key, &mut body, v)?;
            let resp = $module::handle(&ctx, req, v).await;
            protocol::encode_response(key, v, corr, &resp).map(|b| Some(b.into()))
        }};
    }
    match key {
        ApiKey::Produce => {
            let req: kafka_protocol::messages::ProduceRequest =
                protocol::decode(key, &mut body, v)?;
            let silent = req.acks == 0;
            let resp = produce::handle(&ctx, req, v).await;
            if silent {
                Ok(None)
            } else {
                protocol::encode_response(key, v, corr, &resp).map(|b| Some(b.into()))
            }
        }
        ApiKey::Fetch => {
            let req = protocol::decode(key, &mut body, v)?;
            fetch::handle(&ctx, req, v, corr)
                .await
                .map(Some)
                .map_err(|e| FrameError::BadBody {
                    key,
                    version: v,
                    err: format!("cannot encode response: {e}"),
                })
        }
        ApiKey::ListOffsets => call!(list_offsets),
        ApiKey::Metadata => {
            let req = protocol::decode(key, &mut body, v)?;
            metadata::reply(&ctx, req, v, corr).await.map(Some)
        }
        ApiKey::ApiVersions => call!(api_versions),
        ApiKey::CreateTopics => call!(create_topics),
        ApiKey::DeleteTopics => call!(delete_topics),
        ApiKey::DescribeConfigs => call!(describe_configs),
        ApiKey::AlterConfigs => call!(alter_configs),
        ApiKey::IncrementalAlterConfigs => call!(incremental_alter_configs),
        ApiKey::DeleteRecords => call!(delete_records),
        ApiKey::ElectLeaders => call!(elect_leaders),
        ApiKey::AlterPartitionReassignments => call!(alter_partition_reassignments),
        ApiKey::ListPartitionReassignments => call!(list_partition_reassignments),
        ApiKey::DescribeLogDirs => call!(describe_log_dirs),
        ApiKey::DescribeProducers => call!(describe_producers),
        ApiKey::DescribeTopicPartitions => call!(describe_topic_partitions),
        ApiKey::CreatePartitions => call!(create_partitions),
        ApiKey::DescribeCluster => call!(describe_cluster),
        ApiKey::DescribeQuorum => call!(describe_quorum),
        ApiKey::OffsetForLeaderEpoch => call!(offset_for_leader_epoch),
        ApiKey::InitProducerId => call!(init_producer_id),
        ApiKey::FindCoordinator => call!(find_coordinator),
        ApiKey::JoinGroup => {
            let req = protocol::decode(key, &mut body, v)?;
            let client = header.client_id.as_deref().unwrap_or_default();
            // Kafka shows a member's host as Java prints an address: "/127.0.0.1".
            let host = peer.map(|ip| format!("/{ip}")).unwrap_or_default();
            let resp = join_group::handle(&ctx, req, v, client, &host).await;
            protocol::encode_response(key, v, corr, &resp).map(|b| Some(b.into()))
        }
        ApiKey::SyncGroup => call!(sync_group),
        ApiKey::AddPartitionsToTxn => call!(add_partitions_to_txn),
        ApiKey::AddOffsetsToTxn => call!(add_offsets_to_txn),
        ApiKey::EndTxn => call!(end_txn),
        ApiKey::TxnOffsetCommit => call!(txn_offset_commit),
        ApiKey::WriteTxnMarkers => call!(write_txn_markers),
        ApiKey::DescribeTransactions => call!(describe_transactions),
        ApiKey::ListTransactions => call!(list_transactions),
        ApiKey::Heartbeat => call!(heartbeat),
        ApiKey::LeaveGroup => call!(leave_group),
        ApiKey::OffsetCommit => call!(offset_commit),
        ApiKey::OffsetFetch => call!(offset_fetch),
        ApiKey::DescribeGroups => call!(describe_groups),
        ApiKey::ListGroups => call!(list_groups),
        ApiKey::DeleteGroups => call!(delete_groups),
        ApiKey::OffsetDelete => call!(offset_delete),
        ApiKey::SaslHandshake => call!(sasl_handshake),
        ApiKey::CreateAcls => call!(create_acls),
        ApiKey::DescribeAcls => call!(describe_acls),
        ApiKey::DeleteAcls => call!(delete_acls),
        ApiKey::DescribeUserScramCredentials => call!(describe_user_scram_credentials),
        ApiKey::AlterUserScramCredentials => call!(alter_user_scram_credentials),
        ApiKey::SaslAuthenticate => call!(sasl_authenticate),
        other => Err(FrameError::UnsupportedVersion {
            key: other,
            version: v,
        }),
    }
}

/// Why a client may not change an internal topic (`__consumer_offsets`,
/// `__transaction_state`): its coordinator alone creates it with its settings and lays groups
/// or transactional ids out over its partitions, so deleting it, growing it or changing how
/// long it keeps records would lose groups' offsets or transactions.
pub(crate) fn internal_topic_refusal(topic: &str) -> Option<String> {
    is_internal(topic)
        .then(|| format!("`{topic}` is internal: only its coordinator creates and changes it"))
}

/// Whether only a coordinator writes this topic.
pub(crate) fn is_internal(topic: &str) -> bool {
    topic == crate::group::OFFSETS_TOPIC || topic == crate::txn::TXN_TOPIC
}

/// The name of a topic a request names by id (`by_id`: Produce and Fetch v13+) or by name;
/// None for an id no topic has.
pub(crate) fn topic_named(
    image: &crate::metadata::MetadataImage,
    by_id: bool,
    id: uuid::Uuid,
    name: &TopicName,
) -> Option<String> {
    if by_id {
        let topic = image.topic_by_id(crate::types::TopicId(id))?;
        Some(topic.name.clone())
    } else {
        Some(name.0.to_string())
    }
}

pub(crate) fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

pub(crate) fn topic_name(v: &str) -> TopicName {
    TopicName(s(v))
}

pub(crate) fn broker(id: i32) -> BrokerId {
    BrokerId(id)
}

/// The endpoints, on the client's listener, of brokers named as new leaders in a
/// NOT_LEADER_OR_FOLLOWER answer, so clients re-route without a Metadata round trip (KIP-951,
/// Produce v10+ and Fetch v16+): (id, host, port, rack).
pub(crate) fn leader_endpoints(
    ctx: &Context,
    image: &crate::metadata::MetadataImage,
    ids: &[i32],
) -> Vec<(i32, String, i32, Option<String>)> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    ids.iter()
        .filter_map(|id| {
            let b = image.brokers.get(id)?;
            let ep = b.endpoints.iter().find(|e| e.listener == ctx.listener)?;
            Some((*id, ep.host.clone(), ep.port as i32, b.rack.clone()))
        })
        .collect()
}

/// The partition this node leads, checked against the client's current leader epoch (-1: the
/// client does not know it); otherwise the error code to answer with.
pub(crate) fn led_partition(
    ctx: &Context,
    image: &Arc<crate::metadata::MetadataImage>,
    tp: &crate::types::TopicPartition,
    current_leader_epoch: i32,
) -> Result<Arc<crate::replica::Partition>, i16> {
    let part = ctx
        .replicas
        .leader_partition(image, tp)
        .map_err(|e| errors::partition(&e))?;
    crate::replica::check_leader_epoch(current_leader_epoch, part.leader_epoch())
        .map_err(|e| errors::epoch(&e))?;
    Ok(part)
}
