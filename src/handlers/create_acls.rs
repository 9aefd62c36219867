//! CreateAcls: ACLs written through the controller as metadata records; every broker's
//! authorizer reads them from its image. Needs ALTER on the cluster; with no authorizer
//! configured Kafka answers SECURITY_DISABLED, and so does strom.

use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::{CreateAclsRequest, CreateAclsResponse};

use super::errors::{self, Refusal};
use super::{s, Context};
use crate::controller::AdminOp;
use crate::metadata::acl::Operation;
use crate::metadata::AclBinding;

/// Why a whole ACL request is refused before looking at its entries, if it is.
pub fn refused(ctx: &Context, op: Operation) -> Option<(Refusal, &'static str)> {
    if ctx.config.authorizer.is_none() {
        return Some((Refusal::SecurityDisabled, "No Authorizer is configured."));
    }
    if !ctx.may_on_cluster(op) {
        return Some((
            Refusal::ClusterAuthorizationFailed,
            "Cluster authorization failed.",
        ));
    }
    None
}

pub async fn handle(ctx: &Context, req: CreateAclsRequest, _version: i16) -> CreateAclsResponse {
    let failed = |r: Refusal, why: &str| {
        AclCreationResult::default()
            .with_error_code(r.code())
            .with_error_message(Some(s(why)))
    };
    if let Some((r, why)) = refused(ctx, Operation::Alter) {
        return CreateAclsResponse::default()
            .with_results(req.creations.iter().map(|_| failed(r, why)).collect());
    }
    let bindings: Vec<AclBinding> = req
        .creations
        .iter()
        .map(|c| AclBinding {
            resource_type: c.resource_type,
            resource_name: c.resource_name.to_string(),
            pattern_type: c.resource_pattern_type,
            principal: c.principal.to_string(),
            host: c.host.to_string(),
            operation: c.operation,
            permission: c.permission_type,
        })
        .collect();
    let valid: Vec<AclBinding> = bindings
        .iter()
        .filter(|b| b.invalid().is_none())
        .cloned()
        .collect();
    let written = if valid.is_empty() {
        Ok(())
    } else {
        ctx.controller
            .submit(AdminOp::AlterAcls {
                create: valid,
                delete: Vec::new(),
            })
            .await
            .map(|_| ())
            .map_err(|e| (errors::admin(&e), e.to_string()))
    };
    let results = bindings
        .iter()
        .map(|b| match (b.invalid(), &written) {
            (Some(why), _) => failed(Refusal::InvalidRequest, why),
            (None, Err((code, why))) => AclCreationResult::default()
                .with_error_code(*code)
                .with_error_message(Some(s(why.as_str()))),
            (None, Ok(())) => AclCreationResult::default(),
        })
        .collect();
    CreateAclsResponse::default().with_results(results)
}
