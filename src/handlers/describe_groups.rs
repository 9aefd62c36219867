//! DescribeGroups: state, protocol and members (with metadata and assignment) of groups this
//! broker coordinates.

use super::errors::Refusal;
use crate::metadata::acl::{self, Operation};
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};

use super::{errors, s, Context};

pub async fn handle(
    ctx: &Context,
    req: DescribeGroupsRequest,
    version: i16,
) -> DescribeGroupsResponse {
    let groups = req
        .groups
        .into_iter()
        .map(|id| match ctx.groups.describe(&id) {
            _ if !ctx.may(Operation::Describe, acl::GROUP, &id) => DescribedGroup::default()
                .with_group_id(id)
                .with_error_code(Refusal::GroupAuthorizationFailed.code())
                .with_group_state(s("")),
            Err(e) => DescribedGroup::default()
                .with_group_id(id)
                .with_error_code(errors::group(&e))
                // v6 (KIP-1043) says why in words as well.
                .with_error_message((version >= 6).then(|| s(e.to_string())))
                .with_group_state(s("")),
            Ok(d) => DescribedGroup::default()
                .with_group_id(id)
                .with_group_state(s(d.state.name()))
                .with_protocol_type(s(d.protocol_type))
                .with_protocol_data(s(d.protocol))
                .with_authorized_operations(i32::MIN)
                .with_members(
                    d.members
                        .into_iter()
                        .map(|m| {
                            DescribedGroupMember::default()
                                .with_member_id(s(m.member_id))
                                .with_group_instance_id(m.instance_id.map(s))
                                .with_client_id(s(m.client_id))
                                .with_client_host(s(m.client_host))
                                .with_member_metadata(m.metadata)
                                .with_member_assignment(m.assignment)
                        })
                        .collect(),
                ),
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}
