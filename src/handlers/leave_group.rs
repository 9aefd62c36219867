//! LeaveGroup: one member (v0–2) or a batch of members by member or instance id (v3+).

use super::errors::Refusal;
use crate::metadata::acl::{self, Operation};
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use super::{errors, Context};

pub async fn handle(ctx: &Context, req: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
    if !ctx.may(Operation::Read, acl::GROUP, &req.group_id) {
        return LeaveGroupResponse::default()
            .with_error_code(Refusal::GroupAuthorizationFailed.code());
    }
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        req.members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|i| i.to_string()),
                )
            })
            .collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    match ctx.groups.leave(&req.group_id, &members) {
        Err(e) => LeaveGroupResponse::default().with_error_code(errors::group(&e)),
        Ok(results) if version < 3 => LeaveGroupResponse::default()
            .with_error_code(results.first().map_or(errors::NONE, errors::group_code)),
        Ok(results) => LeaveGroupResponse::default().with_members(
            req.members
                .into_iter()
                .zip(results)
                .map(|(m, r)| {
                    MemberResponse::default()
                        .with_member_id(m.member_id)
                        .with_group_instance_id(m.group_instance_id)
                        .with_error_code(errors::group_code(&r))
                })
                .collect(),
        ),
    }
}
