//! SyncGroup: the second half of a rebalance. The leader brings the assignment; everyone gets
//! their part once it is stored in `__consumer_offsets`.

use super::errors::Refusal;
use crate::metadata::acl::{self, Operation};
use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};

use super::{errors, Context};
use crate::group::Caller;

pub async fn handle(ctx: &Context, req: SyncGroupRequest, _version: i16) -> SyncGroupResponse {
    if !ctx.may(Operation::Read, acl::GROUP, &req.group_id) {
        return SyncGroupResponse::default()
            .with_error_code(Refusal::GroupAuthorizationFailed.code());
    }
    let assignments = req
        .assignments
        .iter()
        .map(|a| (a.member_id.to_string(), a.assignment.clone()))
        .collect();
    let r = ctx
        .groups
        .sync(
            &req.group_id,
            Caller::new(
                &req.member_id,
                req.group_instance_id.as_deref(),
                req.generation_id,
            ),
            (req.protocol_type.as_deref(), req.protocol_name.as_deref()),
            assignments,
        )
        .await;
    SyncGroupResponse::default()
        .with_error_code(errors::group_code(&r))
        .with_protocol_type(req.protocol_type)
        .with_protocol_name(req.protocol_name)
        .with_assignment(r.unwrap_or_default())
}
