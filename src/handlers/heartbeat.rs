//! Heartbeat: keeps a member's session alive; REBALANCE_IN_PROGRESS tells it to rejoin.

use super::errors::Refusal;
use crate::metadata::acl::{self, Operation};
use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use super::{errors, Context};
use crate::group::Caller;

pub async fn handle(ctx: &Context, req: HeartbeatRequest, _version: i16) -> HeartbeatResponse {
    if !ctx.may(Operation::Read, acl::GROUP, &req.group_id) {
        return HeartbeatResponse::default()
            .with_error_code(Refusal::GroupAuthorizationFailed.code());
    }
    let caller = Caller::new(
        &req.member_id,
        req.group_instance_id.as_deref(),
        req.generation_id,
    );
    let r = ctx.groups.heartbeat(&req.group_id, caller);
    HeartbeatResponse::default().with_error_code(errors::group_code(&r))
}
