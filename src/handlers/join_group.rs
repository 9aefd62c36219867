//! JoinGroup: the first half of a classic rebalance. The answer waits until every member has
//! (re)joined or the rebalance timeout passes; the leader gets everyone's metadata.

use super::errors::Refusal;
use crate::metadata::acl::{self, Operation};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};

use super::{errors, s, Context};
use crate::group::{GroupError, JoinArgs};

pub async fn handle(
    ctx: &Context,
    req: JoinGroupRequest,
    version: i16,
    client_id: &str,
    client_host: &str,
) -> JoinGroupResponse {
    if !ctx.may(Operation::Read, acl::GROUP, &req.group_id) {
        return JoinGroupResponse::default()
            .with_error_code(Refusal::GroupAuthorizationFailed.code());
    }
    let args = JoinArgs {
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.as_ref().map(|i| i.to_string()),
        client_id: client_id.to_string(),
        client_host: client_host.to_string(),
        session_timeout_ms: req.session_timeout_ms,
        // v0 has no rebalance timeout: the session timeout serves for both.
        rebalance_timeout_ms: if version >= 1 {
            req.rebalance_timeout_ms
        } else {
            req.session_timeout_ms
        },
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect(),
        require_known_member_id: version >= 4,
    };
    // Before v7 the protocol name is not nullable.
    let name = |p: Option<String>| match p {
        Some(p) => Some(s(p)),
        None if version < 7 => Some(s("")),
        None => None,
    };
    match ctx.groups.join(&req.group_id, args).await {
        Ok(j) => JoinGroupResponse::default()
            .with_generation_id(j.generation)
            .with_protocol_type(j.protocol_type.map(s))
            .with_protocol_name(name(j.protocol))
            .with_leader(s(j.leader))
            .with_skip_assignment(j.skip_assignment && version >= 9)
            .with_member_id(s(j.member_id))
            .with_members(
                j.members
                    .into_iter()
                    .map(|m| {
                        JoinGroupResponseMember::default()
                            .with_member_id(s(m.member_id))
                            .with_group_instance_id(m.instance_id.map(s))
                            .with_metadata(m.metadata)
                    })
                    .collect(),
            ),
        Err(e) => {
            let member_id = match &e {
                GroupError::MemberIdRequired(id) => id.clone(),
                _ => req.member_id.to_string(),
            };
            JoinGroupResponse::default()
                .with_error_code(errors::group(&e))
                .with_generation_id(-1)
                .with_protocol_name(name(None))
                .with_leader(s(""))
                .with_member_id(s(member_id))
        }
    }
}
