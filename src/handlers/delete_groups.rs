//! DeleteGroups: removes groups with no members, with their committed offsets.

use super::errors::Refusal;
use crate::metadata::acl::{self, Operation};
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use super::{errors, Context};

pub async fn handle(
    ctx: &Context,
    req: DeleteGroupsRequest,
    _version: i16,
) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(req.groups_names.len());
    for id in req.groups_names {
        if !ctx.may(Operation::Delete, acl::GROUP, &id) {
            results.push(
                DeletableGroupResult::default()
                    .with_group_id(id)
                    .with_error_code(Refusal::GroupAuthorizationFailed.code()),
            );
            continue;
        }
        let r = ctx.groups.delete_group(&id).await;
        results.push(
            DeletableGroupResult::default()
                .with_group_id(id)
                .with_error_code(errors::group_code(&r)),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}
