//! EndTxn: the producer commits or aborts its open transaction. The decision is replicated in
//! `__transaction_state` before the answer; the markers follow in the background.

use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse};

use super::errors::{self, Refusal};
use super::Context;
use crate::metadata::acl::{self, Operation};

pub async fn handle(ctx: &Context, req: EndTxnRequest, version: i16) -> EndTxnResponse {
    let resp = EndTxnResponse::default();
    let id = req.transactional_id.0.to_string();
    if !ctx.may(Operation::Write, acl::TRANSACTIONAL_ID, &id) {
        return resp.with_error_code(Refusal::TransactionalIdAuthorizationFailed.code());
    }
    let producer = (req.producer_id.0, req.producer_epoch);
    match ctx.txns.end_txn(&id, producer, req.committed).await {
        Ok(()) => resp,
        Err(e) => resp.with_error_code(errors::txn(&e, version >= 2)),
    }
}
