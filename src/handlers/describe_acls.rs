//! DescribeAcls: the ACLs a filter matches, grouped by resource pattern. Needs DESCRIBE on the
//! cluster.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{DescribeAclsRequest, DescribeAclsResponse};

use super::create_acls::refused;
use super::{s, Context};
use crate::metadata::acl::Operation;
use crate::metadata::AclFilter;

pub async fn handle(
    ctx: &Context,
    req: DescribeAclsRequest,
    _version: i16,
) -> DescribeAclsResponse {
    if let Some((r, why)) = refused(ctx, Operation::Describe) {
        return DescribeAclsResponse::default()
            .with_error_code(r.code())
            .with_error_message(Some(s(why)));
    }
    let filter = AclFilter {
        resource_type: req.resource_type_filter,
        resource_name: req.resource_name_filter.map(|n| n.to_string()),
        pattern_type: req.pattern_type_filter,
        principal: req.principal_filter.map(|p| p.to_string()),
        host: req.host_filter.map(|h| h.to_string()),
        operation: req.operation,
        permission: req.permission_type,
    };
    let image = ctx.controller.image();
    let mut resources: BTreeMap<(i8, String, i8), Vec<AclDescription>> = BTreeMap::new();
    for b in image.acls.iter().filter(|b| filter.matches(b)) {
        resources
            .entry((b.resource_type, b.resource_name.clone(), b.pattern_type))
            .or_default()
            .push(
                AclDescription::default()
                    .with_principal(s(b.principal.as_str()))
                    .with_host(s(b.host.as_str()))
                    .with_operation(b.operation)
                    .with_permission_type(b.permission),
            );
    }
    DescribeAclsResponse::default().with_resources(
        resources
            .into_iter()
            .map(|((t, name, p), acls)| {
                DescribeAclsResource::default()
                    .with_resource_type(t)
                    .with_resource_name(s(name))
                    .with_pattern_type(p)
                    .with_acls(acls)
            })
            .collect(),
    )
}
