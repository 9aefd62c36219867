//! ListGroups: the groups this broker coordinates (clients ask every broker), optionally only
//! those in the given states (v4+) or of the given types (v5+; all groups here are `classic`).

use super::errors::Refusal;
use crate::metadata::acl::{self, Operation};
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{ListGroupsRequest, ListGroupsResponse};

use super::{s, Context};

pub async fn handle(ctx: &Context, req: ListGroupsRequest, _version: i16) -> ListGroupsResponse {
    let wanted = |list: &[kafka_protocol::protocol::StrBytes], v: &str| {
        list.is_empty() || list.iter().any(|w| w.eq_ignore_ascii_case(v))
    };
    if !wanted(&req.types_filter, "classic") {
        return ListGroupsResponse::default();
    }
    let groups = ctx
        .groups
        .list()
        .into_iter()
        .filter(|(_, _, state)| wanted(&req.states_filter, state.name()))
        .filter(|(id, _, _)| {
            ctx.may_on_cluster(Operation::Describe) || ctx.may(Operation::Describe, acl::GROUP, id)
        })
        .map(|(id, protocol_type, state)| {
            ListedGroup::default()
                .with_group_id(s(id).into())
                .with_protocol_type(s(protocol_type))
                .with_group_state(s(state.name()))
                .with_group_type(s("classic"))
        })
        .collect();
    let code = if ctx.groups.loading() {
        Refusal::CoordinatorLoadInProgress.code()
    } else {
        0
    };
    ListGroupsResponse::default()
        .with_error_code(code)
        .with_groups(groups)
}
