//! Produce: validate each partition's batch (magic 2, CRC-32C, size), append it as received on
//! the leader, and answer per `acks` (0: nothing, 1: after the local append, all: once the high
//! watermark covers the batch or the timeout ends).
//!
//! Three phases: `verify` and `append` run in the connection's reader, in request order — so
//! an idempotent producer's pipelined batches reach the log in the order they were sent — and
//! `complete` (the acks=all wait and the response) runs as its own task, so later requests need
//! not wait for replication of earlier ones. `verify` (KIP-890 part 1) asks the transaction
//! coordinator about the partitions where a transaction's first batch is about to be written;
//! it waits only then, once per transaction and partition.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::errors::Refusal;
use crate::metadata::acl::{self, Operation};
use kafka_protocol::messages::produce_response::{
    LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};

use super::{broker, errors, s, Context};
use crate::metadata::MetadataImage;
use crate::replica::{HwWait, PartitionError, ProduceError, TxnVerification, Write};
use crate::types::TopicPartition;

/// An acks=all append waiting for the high watermark.
struct Wait {
    topic: usize,
    index: usize,
    write: Write,
}

/// A produce request whose batches are appended; what is left is waiting and answering.
pub struct Staged {
    responses: Vec<TopicProduceResponse>,
    waits: Vec<Wait>,
    leaders_moved: Vec<i32>,
    timeout: Duration,
    image: Arc<MetadataImage>,
    acks: i16,
}

impl Staged {
    /// acks=0: the client expects no answer.
    pub fn silent(&self) -> bool {
        self.acks == 0
    }
}

pub async fn handle(ctx: &Context, req: ProduceRequest, version: i16) -> ProduceResponse {
    let verified = verify(ctx, &req, version).await;
    complete(ctx, append(ctx, req, version, &verified)).await
}

/// Whether a request may open a transaction here and so needs `verify` first: a
/// transactional producer's transactional batch, with verification on.
pub fn may_open_transactions(ctx: &Context, req: &ProduceRequest) -> bool {
    ctx.config.txn.partition_verification
        && req.transactional_id.is_some()
        && req.topic_data.iter().any(|t| {
            t.partition_data.iter().any(|p| {
                p.records
                    .as_deref()
                    .and_then(crate::storage::batch::parse_header)
                    .is_some_and(|h| h.is_transactional() && !h.is_control())
            })
        })
}

/// How each partition of a request may open a transaction: by (topic, partition) index, the
/// verification's guard or the error its refusal answers with. Partitions not named need no
/// verification, or it is off.
pub struct Verified {
    /// `transaction.partition.verification.enable`, for a transactional producer.
    on: bool,
    outcomes: HashMap<(usize, usize), Result<u64, i16>>,
}

impl Verified {
    /// Nothing asked (`may_open_transactions` said no need).
    pub fn none(ctx: &Context) -> Verified {
        Verified {
            on: ctx.config.txn.partition_verification,
            outcomes: HashMap::new(),
        }
    }

    fn of(&self, topic: usize, partition: usize) -> Result<TxnVerification, i16> {
        if !self.on {
            return Ok(TxnVerification::Off);
        }
        match self.outcomes.get(&(topic, partition)) {
            Some(Ok(guard)) => Ok(TxnVerification::Guard(*guard)),
            Some(Err(code)) => Err(*code),
            // Its transaction was open here when asked: a guard no verification holds, so a
            // marker written since makes the append refuse instead of opening a new one.
            None => Ok(TxnVerification::Guard(0)),
        }
    }
}

/// KIP-890 part 1: for every partition whose batch would open the producer's transaction here,
/// starts a verification and asks the coordinator whether the partition is in the
/// transaction. Returns at once when there is none.
pub async fn verify(ctx: &Context, req: &ProduceRequest, version: i16) -> Verified {
    let mut verified = Verified {
        on: false,
        outcomes: HashMap::new(),
    };
    if !ctx.config.txn.partition_verification {
        return verified;
    }
    verified.on = true;
    let Some(id) = req.transactional_id.as_deref() else {
        return verified;
    };
    let id: &str = id;
    if !ctx.may(Operation::Write, acl::TRANSACTIONAL_ID, id) {
        return verified;
    }
    let image = ctx.controller.image();
    let mut asked = Vec::new();
    let mut producer = None;
    for (ti, topic) in req.topic_data.iter().enumerate() {
        let Some(name) = super::topic_named(&image, version >= 13, topic.topic_id, &topic.name)
        else {
            continue;
        };
        for (pi, pd) in topic.partition_data.iter().enumerate() {
            let Some(h) = pd
                .records
                .as_deref()
                .and_then(crate::storage::batch::parse_header)
            else {
                continue;
            };
            if h.producer_id < 0 || !h.is_transactional() || h.is_control() {
                continue;
            }
            if super::is_internal(&name) || !ctx.may(Operation::Write, acl::TOPIC, &name) {
                // `append` refuses these; nothing to ask the coordinator.
                continue;
            }
            let tp = TopicPartition::new(name.clone(), pd.index);
            let Some(guard) = ctx.replicas.start_verification(&image, &tp, h.producer_id) else {
                continue;
            };
            let this = (h.producer_id, h.producer_epoch);
            if *producer.get_or_insert(this) != this {
                // One producer per transactional id and request, as Kafka requires.
                let e = crate::txn::TxnError::InvalidProducerIdMapping;
                verified
                    .outcomes
                    .insert((ti, pi), Err(errors::verification(&e, version)));
                continue;
            }
            asked.push(((ti, pi), guard, (tp.topic, tp.partition)));
        }
    }
    let Some(producer) = producer else {
        return verified;
    };
    if asked.is_empty() {
        return verified;
    }
    let partitions: Vec<(String, i32)> = asked.iter().map(|a| a.2.clone()).collect();
    let answers = ctx.txns.verify_for_leader(id, producer, &partitions).await;
    for ((at, guard, tp), answer) in asked.into_iter().zip(answers) {
        let outcome = match answer {
            Ok(()) => Ok(guard),
            Err(e) => {
                let part = TopicPartition::new(tp.0.clone(), tp.1);
                ctx.replicas
                    .end_verification(&image, &part, producer.0, guard);
                tracing::debug!(transactional_id = id, topic = %tp.0, partition = tp.1, error = %e, "transaction verification refused a batch");
                Err(errors::verification(&e, version))
            }
        };
        verified.outcomes.insert(at, outcome);
    }
    verified
}

/// Validates and appends every partition's batch. Synchronous and in request order.
pub fn append(ctx: &Context, req: ProduceRequest, version: i16, verified: &Verified) -> Staged {
    let image = ctx.controller.image();
    let timeout = Duration::from_millis(req.timeout_ms.max(0) as u64);
    let mut leaders_moved = Vec::new();
    let mut waits = Vec::new();
    let mut responses = Vec::with_capacity(req.topic_data.len());
    // A transactional producer needs WRITE on its transactional id, as in Kafka.
    let txn_denied = req
        .transactional_id
        .as_ref()
        .is_some_and(|id| !ctx.may(Operation::Write, acl::TRANSACTIONAL_ID, id));
    for (ti, topic) in req.topic_data.iter().enumerate() {
        let name = super::topic_named(&image, version >= 13, topic.topic_id, &topic.name);
        // The topic's own, else the brokers' dynamic default, else this broker's static one.
        let min_isr = name
            .as_deref()
            .and_then(|n| image.topic(n))
            .and_then(|t| t.configs.get("min.insync.replicas").cloned())
            .or_else(|| {
                image
                    .dynamic_broker_configs(ctx.config.node_id)
                    .remove("min.insync.replicas")
            })
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(ctx.config.min_insync_replicas as usize);
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        for (pi, pd) in topic.partition_data.iter().enumerate() {
            let mut resp = PartitionProduceResponse::default().with_index(pd.index);
            let Some(name) = &name else {
                let code = if version >= 13 {
                    Refusal::UnknownTopicId.code()
                } else {
                    Refusal::UnknownTopicOrPartition.code()
                };
                partitions.push(resp.with_error_code(code));
                continue;
            };
            if txn_denied {
                partitions
                    .push(resp.with_error_code(Refusal::TransactionalIdAuthorizationFailed.code()));
                continue;
            }
            if !ctx.may(Operation::Write, acl::TOPIC, name) {
                partitions.push(resp.with_error_code(Refusal::TopicAuthorizationFailed.code()));
                continue;
            }
            if super::is_internal(name) {
                // Only the coordinators write their own topics.
                partitions.push(
                    resp.with_error_code(Refusal::InvalidTopic.code())
                        .with_error_message(Some(s("cannot produce to an internal topic"))),
                );
                continue;
            }
            if !matches!(req.acks, -1..=1) {
                partitions.push(resp.with_error_code(Refusal::InvalidRequiredAcks.code()));
                continue;
            }
            let verification = match verified.of(ti, pi) {
                Ok(v) => v,
                Err(code) => {
                    partitions.push(resp.with_error_code(code));
                    continue;
                }
            };
            let tp = TopicPartition::new(name.clone(), pd.index);
            let records = pd.records.as_deref().unwrap_or(&[]);
            let min_isr = (req.acks == -1).then_some(min_isr);
            match ctx
                .replicas
                .append(&image, &tp, records, min_isr, verification)
            {
                Ok(write) => {
                    let done = write.produced;
                    if req.acks == -1 {
                        waits.push(Wait {
                            topic: ti,
                            index: partitions.len(),
                            write,
                        });
                    }
                    partitions.push(
                        resp.with_base_offset(done.first)
                            .with_log_append_time_ms(done.log_append_time)
                            .with_log_start_offset(done.log_start),
                    );
                }
                Err(e) => {
                    match &e {
                        ProduceError::Partition(PartitionError::NotLeader { leader, epoch }) => {
                            resp = resp.with_current_leader(
                                LeaderIdAndEpoch::default()
                                    .with_leader_id(broker(*leader))
                                    .with_leader_epoch(*epoch),
                            );
                            leaders_moved.push(*leader);
                        }
                        ProduceError::Partition(_) => {}
                        ProduceError::Append(a) => {
                            tracing::debug!(%tp, error = %a, "append refused");
                            resp = resp.with_error_message(Some(s(a.to_string())));
                        }
                    }
                    partitions.push(resp.with_error_code(errors::produce(&e)));
                }
            }
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(topic.name.clone())
                .with_topic_id(topic.topic_id)
                .with_partition_responses(partitions),
        );
    }
    Staged {
        responses,
        waits,
        leaders_moved,
        timeout,
        image,
        acks: req.acks,
    }
}

/// Waits (acks=all) until the high watermark covers every appended batch, then answers.
pub async fn complete(ctx: &Context, mut done: Staged) -> ProduceResponse {
    let targets = done.waits.iter().map(|w| w.write.replicated()).collect();
    let outcomes = ctx.replicas.wait_for(targets, done.timeout).await;
    for (w, outcome) in done.waits.iter().zip(outcomes) {
        let resp = &mut done.responses[w.topic].partition_responses[w.index];
        if outcome == HwWait::Reached {
            continue;
        }
        let mut failed = PartitionProduceResponse::default()
            .with_index(resp.index)
            .with_error_code(errors::wait(&outcome));
        if outcome == HwWait::NotLeader {
            let (leader, epoch) = w.write.partition.leader();
            done.leaders_moved.push(leader);
            failed = failed.with_current_leader(
                LeaderIdAndEpoch::default()
                    .with_leader_id(broker(leader))
                    .with_leader_epoch(epoch),
            );
        }
        *resp = failed;
    }
    if done.acks == 1 && !ctx.controller.lease_held() {
        // The lease ran out between the append and this answer (a stalled task, a long
        // queue): another leader may be elected by now, so these appends are not acknowledged.
        for resp in done
            .responses
            .iter_mut()
            .flat_map(|t| t.partition_responses.iter_mut())
            .filter(|r| r.error_code == 0)
        {
            *resp = PartitionProduceResponse::default()
                .with_index(resp.index)
                .with_error_code(Refusal::NotLeaderOrFollower.code())
                .with_current_leader(LeaderIdAndEpoch::default().with_leader_id(broker(-1)));
        }
    }
    let endpoints = super::leader_endpoints(ctx, &done.image, &done.leaders_moved)
        .into_iter()
        .map(|(id, host, port, rack)| {
            NodeEndpoint::default()
                .with_node_id(broker(id))
                .with_host(s(host))
                .with_port(port)
                .with_rack(rack.map(s))
        })
        .collect();
    ProduceResponse::default()
        .with_responses(done.responses)
        .with_node_endpoints(endpoints)
}
