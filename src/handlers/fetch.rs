//! Fetch: translates the request for the replica manager (`ReplicaManager::fetch` reads,
//! records follower progress and waits) and its answer into the response, which is written
//! straight into the pieces the connection sends (`protocol::fetch_response`): records read
//! into memory and file ranges (sendfile) go out as they are, never copied into the response.
//! Fetch sessions are not kept: every answer carries session id 0 (a full, sessionless fetch).

use std::time::Duration;

use bytes::Bytes;

use super::errors::Refusal;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, EpochEndOffset, FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint,
    PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ProducerId};

use super::{broker, errors, Context};
use crate::metadata::acl::{self, Operation};
use crate::protocol::{fetch_response, Part, Reply};
use crate::replica::{FetchError, FetchParams, FetchPartition, PartitionError, Refused};
use crate::types::TopicPartition;

pub async fn handle(
    ctx: &Context,
    req: FetchRequest,
    version: i16,
    correlation_id: i32,
) -> anyhow::Result<Reply> {
    let (response, records) = answer(ctx, req, version).await;
    let mut parts = fetch_response::write(version, correlation_id, &response, records)?;
    Ok(match (parts.pop(), parts.is_empty()) {
        (Some(Part::Bytes(frame)), true) => Reply::Frame(frame),
        (last, _) => {
            parts.extend(last);
            Reply::Spliced(parts)
        }
    })
}

/// The response without records, and each partition's records in response order.
async fn answer(
    ctx: &Context,
    req: FetchRequest,
    version: i16,
) -> (FetchResponse, Vec<Option<Part>>) {
    if req.session_id != 0 {
        let resp = FetchResponse::default().with_error_code(Refusal::FetchSessionIdNotFound.code());
        return (resp, Vec::new());
    }
    let replica = if version >= 15 {
        req.replica_state.replica_id.0
    } else {
        req.replica_id.0
    };
    let image = ctx.controller.image();
    let mut topics = Vec::with_capacity(req.topics.len());
    let mut partitions = Vec::new();
    // Partitions of topics this consumer may not READ, in request order: not read, answered
    // TOPIC_AUTHORIZATION_FAILED.
    let mut denied = Vec::new();
    for t in &req.topics {
        let name = super::topic_named(&image, version >= 13, t.topic_id, &t.topic);
        let refused = replica < 0
            && name
                .as_deref()
                .is_some_and(|n| !ctx.may(Operation::Read, acl::TOPIC, n));
        let name = if refused { None } else { name };
        topics.push(
            FetchableTopicResponse::default()
                .with_topic(t.topic.clone())
                .with_topic_id(t.topic_id),
        );
        for p in &t.partitions {
            denied.push(refused);
            partitions.push(FetchPartition {
                tp: name
                    .as_ref()
                    .map(|n| TopicPartition::new(n.clone(), p.partition)),
                fetch_offset: p.fetch_offset,
                log_start_offset: p.log_start_offset,
                max_bytes: p.partition_max_bytes.max(0) as usize,
                current_leader_epoch: p.current_leader_epoch,
                last_fetched_epoch: p.last_fetched_epoch,
            });
        }
    }
    // Which topic each partition answer goes to, in request order.
    let owners: Vec<(usize, i32)> = req
        .topics
        .iter()
        .enumerate()
        .flat_map(|(ti, t)| t.partitions.iter().map(move |p| (ti, p.partition)))
        .collect();
    if replica >= 0
        && (ctx.listener != ctx.config.inter_broker_listener
            || !ctx.may_on_cluster(Operation::ClusterAction))
    {
        // Only brokers fetch as replicas, and brokers fetch on the inter-broker listener: a
        // client claiming a replica id elsewhere would move the high watermark and the ISR.
        let mut records = Vec::with_capacity(owners.len());
        for (ti, index) in owners {
            topics[ti].partitions.push(
                PartitionData::default()
                    .with_partition_index(index)
                    .with_error_code(Refusal::ReplicaFetchNotAllowed.code()),
            );
            records.push(Some(Part::Bytes(Bytes::new())));
        }
        return (FetchResponse::default().with_responses(topics), records);
    }
    let params = FetchParams {
        follower: (replica >= 0).then_some(replica),
        // A consumer's long poll is answered early rather than held for days
        // (`fetch.max.wait.cap.ms`): the client asks again. Followers are brokers.
        max_wait: match Duration::from_millis(req.max_wait_ms.max(0) as u64) {
            wait if replica >= 0 => wait,
            wait => wait.min(ctx.config.fetch_max_wait_cap),
        },
        min_bytes: req.min_bytes.max(0) as usize,
        max_bytes: if req.max_bytes <= 0 {
            i32::MAX as usize
        } else {
            req.max_bytes as usize
        },
        zero_copy: ctx.config.fetch_zero_copy,
        read_committed: replica < 0 && req.isolation_level == 1,
        partitions,
    };
    let fetched = ctx.replicas.fetch(&image, params).await;
    let mut records = Vec::with_capacity(fetched.partitions.len());
    for (((ti, index), read), refused) in owners.into_iter().zip(fetched.partitions).zip(denied) {
        let mut data = PartitionData::default().with_partition_index(index);
        if refused {
            topics[ti]
                .partitions
                .push(data.with_error_code(Refusal::TopicAuthorizationFailed.code()));
            records.push(Some(Part::Bytes(Bytes::new())));
            continue;
        }
        if let Some((hw, lso, log_start)) = read.watermarks {
            data = data
                .with_high_watermark(hw)
                .with_last_stable_offset(lso)
                .with_log_start_offset(log_start);
        }
        if let Some(aborted) = read.aborted {
            data = data.with_aborted_transactions(Some(
                aborted
                    .into_iter()
                    .map(|(producer_id, first)| {
                        AbortedTransaction::default()
                            .with_producer_id(ProducerId(producer_id))
                            .with_first_offset(first)
                    })
                    .collect(),
            ));
        }
        if let Some(FetchError::Refused(Refused::Partition(PartitionError::NotLeader {
            leader,
            epoch,
        }))) = read.error
        {
            data = data.with_current_leader(
                LeaderIdAndEpoch::default()
                    .with_leader_id(broker(leader))
                    .with_leader_epoch(epoch),
            );
        }
        if let Some(e) = &read.error {
            data = data.with_error_code(errors::fetch(e));
        }
        if let Some((epoch, end)) = read.diverging {
            data = data.with_diverging_epoch(
                EpochEndOffset::default()
                    .with_epoch(epoch)
                    .with_end_offset(end),
            );
        }
        topics[ti].partitions.push(data);
        // A partition not read still has a records field, empty (not null) as Kafka sends it.
        records.push(Some(read.records.unwrap_or(Part::Bytes(Bytes::new()))));
    }
    let endpoints = super::leader_endpoints(ctx, &image, &fetched.moved_leaders)
        .into_iter()
        .map(|(id, host, port, rack)| {
            NodeEndpoint::default()
                .with_node_id(broker(id))
                .with_host(super::s(host))
                .with_port(port)
                .with_rack(rack.map(super::s))
        })
        .collect();
    let resp = FetchResponse::default()
        .with_responses(topics)
        .with_node_endpoints(endpoints);
    (resp, records)
}
