//! ListTransactions (v0–1): the transactional ids this broker coordinates, filtered by state
//! names (unknown names are listed back), producer ids, and (v1) how long they have been open.
//! Only ids the principal may DESCRIBE are listed.

use kafka_protocol::messages::list_transactions_response::TransactionState;
use kafka_protocol::messages::{
    ListTransactionsRequest, ListTransactionsResponse, ProducerId, TransactionalId,
};

use super::errors::Refusal;
use super::{s, Context};
use crate::metadata::acl::{self, Operation};
use crate::txn::TxnState;
use crate::types::now_ms;

const STATES: [TxnState; 8] = [
    TxnState::Empty,
    TxnState::Ongoing,
    TxnState::PrepareCommit,
    TxnState::PrepareAbort,
    TxnState::CompleteCommit,
    TxnState::CompleteAbort,
    TxnState::Dead,
    TxnState::PrepareEpochFence,
];

pub async fn handle(
    ctx: &Context,
    req: ListTransactionsRequest,
    _version: i16,
) -> ListTransactionsResponse {
    let unknown: Vec<_> = req
        .state_filters
        .iter()
        .filter(|f| !STATES.iter().any(|st| st.name() == f.as_str()))
        .cloned()
        .collect();
    let now = now_ms();
    let listed = ctx
        .txns
        .list()
        .await
        .into_iter()
        .filter(|t| {
            (req.state_filters.is_empty()
                || req
                    .state_filters
                    .iter()
                    .any(|f| f.as_str() == t.state.name()))
                && (req.producer_id_filters.is_empty()
                    || req.producer_id_filters.contains(&ProducerId(t.producer_id)))
                && (req.duration_filter < 0
                    || (t.state == TxnState::Ongoing
                        && now.saturating_sub(t.start_ms) >= req.duration_filter))
                && ctx.may(
                    Operation::Describe,
                    acl::TRANSACTIONAL_ID,
                    &t.transactional_id,
                )
        })
        .map(|t| {
            TransactionState::default()
                .with_transactional_id(TransactionalId(s(t.transactional_id)))
                .with_producer_id(ProducerId(t.producer_id))
                .with_transaction_state(s(t.state.name()))
        })
        .collect();
    let resp = ListTransactionsResponse::default()
        .with_unknown_state_filters(unknown)
        .with_transaction_states(listed);
    if ctx.txns.loading() {
        return resp.with_error_code(Refusal::CoordinatorLoadInProgress.code());
    }
    resp
}
