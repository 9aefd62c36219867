//! FindCoordinator: the broker coordinating a consumer group (the leader of its
//! `__consumer_offsets` partition) or a transactional id (the leader of its
//! `__transaction_state` partition), one key in v0–3 or a batch of keys in v4+.

use super::errors::Refusal;
use crate::metadata::acl::{self, Operation};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{FindCoordinatorRequest, FindCoordinatorResponse};

use super::{broker, errors, s, Context};

pub async fn handle(
    ctx: &Context,
    req: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let keys: Vec<String> = if version >= 4 {
        req.coordinator_keys.iter().map(|k| k.to_string()).collect()
    } else {
        vec![req.key.to_string()]
    };
    let mut found = Vec::with_capacity(keys.len());
    for key in keys {
        found.push(find(ctx, &key, req.key_type).await.with_key(s(key)));
    }
    if version >= 4 {
        return FindCoordinatorResponse::default().with_coordinators(found);
    }
    let c = found.pop().unwrap_or_default();
    FindCoordinatorResponse::default()
        .with_error_code(c.error_code)
        .with_error_message(c.error_message)
        .with_node_id(c.node_id)
        .with_host(c.host)
        .with_port(c.port)
}

async fn find(ctx: &Context, key: &str, key_type: i8) -> Coordinator {
    let failed = |code: i16, msg: &str| {
        Coordinator::default()
            .with_node_id(broker(-1))
            .with_port(-1)
            .with_error_code(code)
            .with_error_message(Some(s(msg)))
    };
    match key_type {
        0 => {}
        1 => {
            if !ctx.may(Operation::Describe, acl::TRANSACTIONAL_ID, key) {
                return failed(
                    Refusal::TransactionalIdAuthorizationFailed.code(),
                    "Transactional id authorization failed.",
                );
            }
            return match ctx.txns.coordinator_for(key).await {
                Ok(leader) => endpoint(ctx, leader),
                Err(e) => failed(errors::txn(&e, true), &e.to_string()),
            };
        }
        _ => {
            return failed(
                Refusal::InvalidRequest.code(),
                "unknown coordinator key type",
            )
        }
    }
    if !ctx.may(Operation::Describe, acl::GROUP, key) {
        return failed(
            Refusal::GroupAuthorizationFailed.code(),
            "Group authorization failed.",
        );
    }
    if key.is_empty() {
        return failed(Refusal::InvalidGroupId.code(), "the group id is empty");
    }
    match ctx.groups.coordinator_for(key).await {
        Ok(leader) => endpoint(ctx, leader),
        Err(e) => failed(errors::group(&e), &e.to_string()),
    }
}

/// The coordinator `leader`'s endpoint on the client's listener.
fn endpoint(ctx: &Context, leader: crate::types::NodeId) -> Coordinator {
    let image = ctx.controller.image();
    match super::leader_endpoints(ctx, &image, &[leader]).pop() {
        Some((id, host, port, _)) => Coordinator::default()
            .with_node_id(broker(id))
            .with_host(s(host))
            .with_port(port),
        None => Coordinator::default()
            .with_node_id(broker(-1))
            .with_port(-1)
            .with_error_code(Refusal::CoordinatorNotAvailable.code())
            .with_error_message(Some(s("the coordinator has no endpoint on this listener"))),
    }
}
