//! InitProducerId. For idempotent producers: a fresh producer id (epoch 0), or — when a producer
//! asks again with its id and epoch (KIP-360) — the same id at the next epoch. Ids come from
//! blocks the controller allocates through the metadata quorum, so no two brokers ever hand out
//! the same id, across controller failover and restarts. With a transactional id the
//! transaction coordinator answers (`txn`): the id's producer at its next epoch, which fences
//! every older producer of the id.

use super::errors::Refusal;
use crate::metadata::acl::{self, Operation};
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use tokio::sync::Mutex;

use super::{errors, Context};
use crate::controller::{AdminDone, AdminError, AdminOp, Handle};
use crate::types::NodeId;

/// This broker's current block of producer ids. Shared by every listener's context.
#[derive(Default)]
pub struct ProducerIds {
    /// (next id to hand out, end of the block)
    block: Mutex<(i64, i64)>,
}

impl ProducerIds {
    pub async fn next(&self, controller: &Handle, broker: NodeId) -> Result<i64, AdminError> {
        let mut block = self.block.lock().await;
        if block.0 >= block.1 {
            match controller
                .submit(AdminOp::AllocateProducerIds { broker })
                .await?
            {
                AdminDone::ProducerIds { first, count } => *block = (first, first + count),
                other => return Err(AdminError::NoQuorum(format!("unexpected answer {other:?}"))),
            }
        }
        let id = block.0;
        block.0 += 1;
        Ok(id)
    }
}

pub async fn handle(
    ctx: &Context,
    req: InitProducerIdRequest,
    version: i16,
) -> InitProducerIdResponse {
    let resp = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if let Some(id) = req.transactional_id.as_ref().map(|t| t.0.to_string()) {
        if id.is_empty() {
            return resp.with_error_code(Refusal::InvalidRequest.code());
        }
        if !ctx.may(Operation::Write, acl::TRANSACTIONAL_ID, &id) {
            return resp.with_error_code(Refusal::TransactionalIdAuthorizationFailed.code());
        }
        let asked = (req.producer_id.0, req.producer_epoch);
        return match ctx
            .txns
            .init_producer_id(&id, req.transaction_timeout_ms, asked)
            .await
        {
            Ok((producer_id, epoch)) => resp
                .with_producer_id(ProducerId(producer_id))
                .with_producer_epoch(epoch),
            Err(e) => resp.with_error_code(errors::txn(&e, version >= 4)),
        };
    }
    if ctx.config.authorizer.is_some() && !ctx.may_on_cluster(Operation::IdempotentWrite) {
        let image = ctx.controller.image();
        if !image
            .topics
            .keys()
            .any(|t| ctx.may(Operation::Write, acl::TOPIC, t))
        {
            return resp.with_error_code(Refusal::ClusterAuthorizationFailed.code());
        }
    }
    // KIP-360: an idempotent producer may bump its own epoch after an unknown-producer error.
    if req.producer_id.0 >= 0 && req.producer_epoch >= 0 && req.producer_epoch < i16::MAX - 1 {
        return resp
            .with_producer_id(req.producer_id)
            .with_producer_epoch(req.producer_epoch + 1);
    }
    match ctx
        .producer_ids
        .next(&ctx.controller, ctx.config.node_id)
        .await
    {
        Ok(id) => resp.with_producer_id(ProducerId(id)).with_producer_epoch(0),
        Err(e) => {
            tracing::warn!(error = %e, "cannot allocate a producer id");
            resp.with_error_code(match e {
                AdminError::NoQuorum(_) | AdminError::NotLeader(_) => {
                    Refusal::CoordinatorNotAvailable.code()
                }
                other => errors::admin(&other),
            })
        }
    }
}
