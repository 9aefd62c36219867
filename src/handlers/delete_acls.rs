//! DeleteAcls: every ACL each filter matches is removed through the controller, and listed in
//! that filter's answer. Needs ALTER on the cluster.

use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::{DeleteAclsRequest, DeleteAclsResponse};

use super::create_acls::refused;
use super::errors;
use super::{s, Context};
use crate::controller::AdminOp;
use crate::metadata::acl::Operation;
use crate::metadata::{AclBinding, AclFilter};

pub async fn handle(ctx: &Context, req: DeleteAclsRequest, _version: i16) -> DeleteAclsResponse {
    if let Some((r, why)) = refused(ctx, Operation::Alter) {
        return DeleteAclsResponse::default().with_filter_results(
            req.filters
                .iter()
                .map(|_| {
                    DeleteAclsFilterResult::default()
                        .with_error_code(r.code())
                        .with_error_message(Some(s(why)))
                })
                .collect(),
        );
    }
    let image = ctx.controller.image();
    let matched: Vec<Vec<AclBinding>> = req
        .filters
        .iter()
        .map(|f| {
            let filter = AclFilter {
                resource_type: f.resource_type_filter,
                resource_name: f.resource_name_filter.as_ref().map(|n| n.to_string()),
                pattern_type: f.pattern_type_filter,
                principal: f.principal_filter.as_ref().map(|p| p.to_string()),
                host: f.host_filter.as_ref().map(|h| h.to_string()),
                operation: f.operation,
                permission: f.permission_type,
            };
            image
                .acls
                .iter()
                .filter(|b| filter.matches(b))
                .cloned()
                .collect()
        })
        .collect();
    let delete: Vec<AclBinding> = matched.iter().flatten().cloned().collect();
    let written = if delete.is_empty() {
        Ok(())
    } else {
        ctx.controller
            .submit(AdminOp::AlterAcls {
                create: Vec::new(),
                delete,
            })
            .await
            .map(|_| ())
            .map_err(|e| (errors::admin(&e), e.to_string()))
    };
    let results = matched
        .into_iter()
        .map(|bindings| match &written {
            Err((code, why)) => DeleteAclsFilterResult::default()
                .with_error_code(*code)
                .with_error_message(Some(s(why.as_str()))),
            Ok(()) => DeleteAclsFilterResult::default().with_matching_acls(
                bindings
                    .into_iter()
                    .map(|b| {
                        DeleteAclsMatchingAcl::default()
                            .with_resource_type(b.resource_type)
                            .with_resource_name(s(b.resource_name))
                            .with_pattern_type(b.pattern_type)
                            .with_principal(s(b.principal))
                            .with_host(s(b.host))
                            .with_operation(b.operation)
                            .with_permission_type(b.permission)
                    })
                    .collect(),
            ),
        })
        .collect();
    DeleteAclsResponse::default().with_filter_results(results)
}
