//! `strom acl add|list|remove` and `strom user add|list|remove`: ACLs (CreateAcls, DescribeAcls,
//! DeleteAcls) and SCRAM users (AlterUserScramCredentials, DescribeUserScramCredentials) through
//! the Kafka protocol, as Kafka's `kafka-acls` and `kafka-configs` send them. The user's password
//! is salted and hashed here: only the salted password crosses the wire, never the password.

use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse, ApiKey, CreateAclsRequest,
    CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse, DescribeAclsRequest,
    DescribeAclsResponse, DescribeUserScramCredentialsRequest,
    DescribeUserScramCredentialsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::Client;
use crate::auth::scram;
use crate::config::Mechanism;
use crate::metadata::acl::{self, Operation};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// One ACL as the command line gives it.
pub struct AclSpec {
    pub principal: String,
    pub host: String,
    pub operation: String,
    pub resource_type: i8,
    pub resource_name: String,
    pub prefixed: bool,
    pub deny: bool,
}

fn operation(name: &str) -> anyhow::Result<i8> {
    let wanted = name.to_ascii_uppercase().replace('-', "_");
    let names = [
        ("ALL", Operation::All),
        ("READ", Operation::Read),
        ("WRITE", Operation::Write),
        ("CREATE", Operation::Create),
        ("DELETE", Operation::Delete),
        ("ALTER", Operation::Alter),
        ("DESCRIBE", Operation::Describe),
        ("CLUSTER_ACTION", Operation::ClusterAction),
        ("DESCRIBE_CONFIGS", Operation::DescribeConfigs),
        ("ALTER_CONFIGS", Operation::AlterConfigs),
        ("IDEMPOTENT_WRITE", Operation::IdempotentWrite),
    ];
    names
        .iter()
        .find(|(n, _)| *n == wanted)
        .map(|(_, o)| *o as i8)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "unknown operation `{name}`; one of {}",
                names.map(|n| n.0).join(", ")
            )
        })
}

fn operation_name(code: i8) -> String {
    Operation::from_code(code).map_or_else(|| code.to_string(), |o| format!("{o:?}"))
}

fn resource_type_name(t: i8) -> &'static str {
    match t {
        acl::TOPIC => "TOPIC",
        acl::GROUP => "GROUP",
        acl::CLUSTER => "CLUSTER",
        acl::TRANSACTIONAL_ID => "TRANSACTIONAL_ID",
        _ => "?",
    }
}

pub fn acl_add(bootstrap: &str, spec: &AclSpec) -> anyhow::Result<String> {
    let req = CreateAclsRequest::default().with_creations(vec![AclCreation::default()
        .with_resource_type(spec.resource_type)
        .with_resource_name(s(&spec.resource_name))
        .with_resource_pattern_type(if spec.prefixed {
            acl::PREFIXED
        } else {
            acl::LITERAL
        })
        .with_principal(s(&spec.principal))
        .with_host(s(&spec.host))
        .with_operation(operation(&spec.operation)?)
        .with_permission_type(if spec.deny { acl::DENY } else { acl::ALLOW })]);
    let r: CreateAclsResponse = Client::connect(bootstrap)?.call(ApiKey::CreateAcls, 3, &req)?;
    match r.results.first() {
        Some(x) if x.error_code != 0 => anyhow::bail!(
            "refused (error {}): {}",
            x.error_code,
            x.error_message.as_deref().unwrap_or("")
        ),
        _ => Ok("added\n".into()),
    }
}

fn filter(spec: &AclSpec) -> anyhow::Result<DeleteAclsFilter> {
    Ok(DeleteAclsFilter::default()
        .with_resource_type_filter(spec.resource_type)
        .with_resource_name_filter(Some(s(&spec.resource_name)))
        .with_pattern_type_filter(if spec.prefixed {
            acl::PREFIXED
        } else {
            acl::LITERAL
        })
        .with_principal_filter(Some(s(&spec.principal)))
        .with_host_filter(Some(s(&spec.host)))
        .with_operation(operation(&spec.operation)?)
        .with_permission_type(if spec.deny { acl::DENY } else { acl::ALLOW }))
}

pub fn acl_remove(bootstrap: &str, spec: &AclSpec) -> anyhow::Result<String> {
    let req = DeleteAclsRequest::default().with_filters(vec![filter(spec)?]);
    let r: DeleteAclsResponse = Client::connect(bootstrap)?.call(ApiKey::DeleteAcls, 3, &req)?;
    match r.filter_results.first() {
        Some(x) if x.error_code != 0 => anyhow::bail!(
            "refused (error {}): {}",
            x.error_code,
            x.error_message.as_deref().unwrap_or("")
        ),
        Some(x) => Ok(format!("removed {}\n", x.matching_acls.len())),
        None => Ok("removed 0\n".into()),
    }
}

/// Every ACL, or those of one principal, as a table.
pub fn acl_list(bootstrap: &str, principal: Option<&str>) -> anyhow::Result<String> {
    let req = DescribeAclsRequest::default()
        .with_resource_type_filter(acl::ANY)
        .with_resource_name_filter(None)
        .with_pattern_type_filter(acl::ANY)
        .with_principal_filter(principal.map(s))
        .with_host_filter(None)
        .with_operation(acl::ANY)
        .with_permission_type(acl::ANY);
    let r: DescribeAclsResponse =
        Client::connect(bootstrap)?.call(ApiKey::DescribeAcls, 3, &req)?;
    anyhow::ensure!(
        r.error_code == 0,
        "refused (error {}): {}",
        r.error_code,
        r.error_message.as_deref().unwrap_or("")
    );
    let mut out = format!(
        "{:<18} {:<24} {:<9} {:<20} {:<10} {:<16} {}\n",
        "RESOURCE", "NAME", "PATTERN", "PRINCIPAL", "HOST", "OPERATION", "PERMISSION"
    );
    for res in &r.resources {
        for a in &res.acls {
            out.push_str(&format!(
                "{:<18} {:<24} {:<9} {:<20} {:<10} {:<16} {}\n",
                resource_type_name(res.resource_type),
                res.resource_name.as_str(),
                if res.pattern_type == acl::PREFIXED {
                    "PREFIXED"
                } else {
                    "LITERAL"
                },
                a.principal.as_str(),
                a.host.as_str(),
                operation_name(a.operation),
                if a.permission_type == acl::DENY {
                    "DENY"
                } else {
                    "ALLOW"
                },
            ));
        }
    }
    Ok(out)
}

fn mechanism_id(m: Mechanism) -> anyhow::Result<i8> {
    match m {
        Mechanism::ScramSha256 => Ok(1),
        Mechanism::ScramSha512 => Ok(2),
        Mechanism::Plain => {
            anyhow::bail!("PLAIN users live in sasl.plain.users.file, not in the cluster")
        }
    }
}

/// Creates or replaces a SCRAM credential for `user`.
pub fn user_add(
    bootstrap: &str,
    user: &str,
    mechanism: Mechanism,
    iterations: u32,
    password: &str,
) -> anyhow::Result<String> {
    let salt = crate::auth::random_bytes(32);
    let salted = scram::salted_password(mechanism, password.as_bytes(), &salt, iterations);
    let req = AlterUserScramCredentialsRequest::default().with_upsertions(vec![
        ScramCredentialUpsertion::default()
            .with_name(s(user))
            .with_mechanism(mechanism_id(mechanism)?)
            .with_iterations(iterations as i32)
            .with_salt(salt.into())
            .with_salted_password(salted.into()),
    ]);
    alter(bootstrap, &req)
}

pub fn user_remove(bootstrap: &str, user: &str, mechanism: Mechanism) -> anyhow::Result<String> {
    let req = AlterUserScramCredentialsRequest::default().with_deletions(vec![
        ScramCredentialDeletion::default()
            .with_name(s(user))
            .with_mechanism(mechanism_id(mechanism)?),
    ]);
    alter(bootstrap, &req)
}

fn alter(bootstrap: &str, req: &AlterUserScramCredentialsRequest) -> anyhow::Result<String> {
    let r: AlterUserScramCredentialsResponse =
        Client::connect(bootstrap)?.call(ApiKey::AlterUserScramCredentials, 0, req)?;
    match r.results.iter().find(|x| x.error_code != 0) {
        Some(x) => anyhow::bail!(
            "refused (error {}): {}",
            x.error_code,
            x.error_message.as_deref().unwrap_or("")
        ),
        None => Ok("done\n".into()),
    }
}

/// Every SCRAM user and its mechanisms.
pub fn user_list(bootstrap: &str) -> anyhow::Result<String> {
    let r: DescribeUserScramCredentialsResponse = Client::connect(bootstrap)?.call(
        ApiKey::DescribeUserScramCredentials,
        0,
        &DescribeUserScramCredentialsRequest::default().with_users(None::<Vec<UserName>>),
    )?;
    anyhow::ensure!(
        r.error_code == 0,
        "refused (error {}): {}",
        r.error_code,
        r.error_message.as_deref().unwrap_or("")
    );
    let mut out = format!("{:<24} MECHANISMS\n", "USER");
    for u in &r.results {
        let mechanisms: Vec<String> = u
            .credential_infos
            .iter()
            .map(|c| {
                let name = match c.mechanism {
                    1 => "SCRAM-SHA-256",
                    2 => "SCRAM-SHA-512",
                    _ => "?",
                };
                format!("{name} (iterations {})", c.iterations)
            })
            .collect();
        out.push_str(&format!(
            "{:<24} {}\n",
            u.user.as_str(),
            mechanisms.join(", ")
        ));
    }
    Ok(out)
}
