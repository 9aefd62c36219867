//! Heartbeat: keeps a member's session alive; REBALANCE_IN_PROGRESS tells it to rejoin.

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use super::{errors, Context};

pub async fn handle(ctx: &Context, req: HeartbeatRequest, _version: i16) -> HeartbeatResponse {
    let r = ctx.groups.heartbeat(
        &req.group_id,
        &req.member_id,
        req.group_instance_id.as_deref(),
        req.generation_id,
    );
    HeartbeatResponse::default().with_error_code(errors::group_code(&r))
}
