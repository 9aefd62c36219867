//! AddOffsetsToTxn: the group's `__consumer_offsets` partition joins the producer's open
//! transaction, so the offsets the producer then commits there (TxnOffsetCommit) are decided
//! with its records.

use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};

use super::errors::{self, Refusal};
use super::Context;
use crate::metadata::acl::{self, Operation};

pub async fn handle(
    ctx: &Context,
    req: AddOffsetsToTxnRequest,
    version: i16,
) -> AddOffsetsToTxnResponse {
    let resp = AddOffsetsToTxnResponse::default();
    let id = req.transactional_id.0.to_string();
    if !ctx.may(Operation::Write, acl::TRANSACTIONAL_ID, &id) {
        return resp.with_error_code(Refusal::TransactionalIdAuthorizationFailed.code());
    }
    if !ctx.may(Operation::Read, acl::GROUP, &req.group_id) {
        return resp.with_error_code(Refusal::GroupAuthorizationFailed.code());
    }
    let producer = (req.producer_id.0, req.producer_epoch);
    match ctx.txns.add_offsets(&id, producer, &req.group_id).await {
        Ok(()) => resp,
        Err(e) => resp.with_error_code(errors::txn(&e, version >= 2)),
    }
}
