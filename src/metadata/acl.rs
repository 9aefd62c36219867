//! Access control lists as the metadata image holds them (Kafka's AclBinding: a resource pattern
//! and an entry), the filters DescribeAcls and DeleteAcls match them with, and the authorizer's
//! decision (Kafka's StandardAuthorizer rules). Pure code; the codes are Kafka's wire values.

use serde::{Deserialize, Serialize};

pub const ANY: i8 = 1;
/// Pattern type filter that matches the patterns applying to a name (literal, `*`, prefixes).
pub const MATCH: i8 = 2;
pub const LITERAL: i8 = 3;
pub const PREFIXED: i8 = 4;

pub const TOPIC: i8 = 2;
pub const GROUP: i8 = 3;
pub const CLUSTER: i8 = 4;
pub const TRANSACTIONAL_ID: i8 = 5;
/// The one cluster resource's name.
pub const CLUSTER_NAME: &str = "kafka-cluster";

pub const DENY: i8 = 2;
pub const ALLOW: i8 = 3;

/// Kafka's ACL operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i8)]
pub enum Operation {
    All = 2,
    Read = 3,
    Write = 4,
    Create = 5,
    Delete = 6,
    Alter = 7,
    Describe = 8,
    ClusterAction = 9,
    DescribeConfigs = 10,
    AlterConfigs = 11,
    IdempotentWrite = 12,
}

impl Operation {
    pub fn from_code(code: i8) -> Option<Operation> {
        use Operation::*;
        [
            All,
            Read,
            Write,
            Create,
            Delete,
            Alter,
            Describe,
            ClusterAction,
            DescribeConfigs,
            AlterConfigs,
            IdempotentWrite,
        ]
        .into_iter()
        .find(|o| *o as i8 == code)
    }

    /// Operations whose ALLOW also allows this one (Kafka: READ, WRITE, DELETE or ALTER imply
    /// DESCRIBE; ALTER_CONFIGS implies DESCRIBE_CONFIGS).
    fn implied_by(self) -> &'static [Operation] {
        use Operation::*;
        match self {
            Describe => &[Describe, Read, Write, Delete, Alter],
            DescribeConfigs => &[DescribeConfigs, AlterConfigs],
            Read => &[Read],
            Write => &[Write],
            Create => &[Create],
            Delete => &[Delete],
            Alter => &[Alter],
            ClusterAction => &[ClusterAction],
            AlterConfigs => &[AlterConfigs],
            IdempotentWrite => &[IdempotentWrite],
            All => &[],
        }
    }
}

/// One ACL: who (principal, host) may or may not do what (operation) to which resources.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: i8,
    pub resource_name: String,
    pub pattern_type: i8,
    pub principal: String,
    pub host: String,
    pub operation: i8,
    pub permission: i8,
}

impl AclBinding {
    /// Why Kafka would refuse to store this binding, if it would.
    pub fn invalid(&self) -> Option<&'static str> {
        if !matches!(
            self.resource_type,
            TOPIC | GROUP | CLUSTER | TRANSACTIONAL_ID
        ) {
            return Some("unknown or unsupported resource type");
        }
        if !matches!(self.pattern_type, LITERAL | PREFIXED) {
            return Some("the pattern type must be LITERAL or PREFIXED");
        }
        if self.resource_name.is_empty() {
            return Some("the resource name must not be empty");
        }
        if self.resource_type == CLUSTER && self.resource_name != CLUSTER_NAME {
            return Some("the cluster resource is named kafka-cluster");
        }
        if !self.principal.contains(':') {
            return Some("the principal must be TYPE:NAME, e.g. User:alice");
        }
        if self.host.is_empty() {
            return Some("the host must be * or an address");
        }
        if Operation::from_code(self.operation).is_none() {
            return Some("unknown operation");
        }
        if !matches!(self.permission, ALLOW | DENY) {
            return Some("the permission must be ALLOW or DENY");
        }
        None
    }

    /// Whether this binding's pattern covers resource `name` of `resource_type`.
    fn covers(&self, resource_type: i8, name: &str) -> bool {
        self.resource_type == resource_type
            && match self.pattern_type {
                LITERAL => self.resource_name == name || self.resource_name == "*",
                PREFIXED => name.starts_with(&self.resource_name),
                _ => false,
            }
    }
}

/// DescribeAcls / DeleteAcls filter: `None` and ANY match everything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AclFilter {
    pub resource_type: i8,
    pub resource_name: Option<String>,
    pub pattern_type: i8,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: i8,
    pub permission: i8,
}

impl AclFilter {
    pub fn matches(&self, b: &AclBinding) -> bool {
        let resource = (self.resource_type == ANY || self.resource_type == b.resource_type)
            && match self.pattern_type {
                MATCH => match &self.resource_name {
                    Some(name) => b.covers(b.resource_type, name),
                    None => true,
                },
                ANY => self
                    .resource_name
                    .as_ref()
                    .is_none_or(|n| *n == b.resource_name),
                p => {
                    p == b.pattern_type
                        && self
                            .resource_name
                            .as_ref()
                            .is_none_or(|n| *n == b.resource_name)
                }
            };
        resource
            && self.principal.as_ref().is_none_or(|p| *p == b.principal)
            && self.host.as_ref().is_none_or(|h| *h == b.host)
            && (self.operation == ANY || self.operation == b.operation)
            && (self.permission == ANY || self.permission == b.permission)
    }
}

/// Who asks: the authenticated principal (`User:alice`) and the client's address.
pub struct Asker<'a> {
    pub principal: &'a str,
    pub host: &'a str,
}

/// Kafka's StandardAuthorizer decision over `acls`: a matching DENY wins; else a matching ALLOW
/// (or one that implies the operation) allows; with no ACL at all on the resource,
/// `allow_if_none` decides.
pub fn authorize<'a>(
    acls: impl IntoIterator<Item = &'a AclBinding>,
    asker: &Asker<'_>,
    op: Operation,
    resource_type: i8,
    name: &str,
    allow_if_none: bool,
) -> bool {
    let mut any_on_resource = false;
    let mut allowed = false;
    for b in acls {
        if !b.covers(resource_type, name) {
            continue;
        }
        any_on_resource = true;
        let who = b.principal == asker.principal || b.principal == "User:*";
        let from = b.host == "*" || b.host == asker.host;
        if !who || !from {
            continue;
        }
        let Some(bop) = Operation::from_code(b.operation) else {
            continue;
        };
        if b.permission == DENY && (bop == Operation::All || bop == op) {
            return false;
        }
        if b.permission == ALLOW && (bop == Operation::All || op.implied_by().contains(&bop)) {
            allowed = true;
        }
    }
    allowed || (!any_on_resource && allow_if_none)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(name: &str, pattern: i8, principal: &str, op: Operation, permission: i8) -> AclBinding {
        AclBinding {
            resource_type: TOPIC,
            resource_name: name.into(),
            pattern_type: pattern,
            principal: principal.into(),
            host: "*".into(),
            operation: op as i8,
            permission,
        }
    }

    #[test]
    fn deny_beats_allow_prefixes_and_wildcards_apply_and_describe_is_implied() {
        let alice = Asker {
            principal: "User:alice",
            host: "10.0.0.1",
        };
        let acls = [
            acl("orders", LITERAL, "User:alice", Operation::Write, ALLOW),
            acl("logs-", PREFIXED, "User:alice", Operation::Read, ALLOW),
            acl("logs-secret", LITERAL, "User:alice", Operation::All, DENY),
            acl("*", LITERAL, "User:*", Operation::Describe, ALLOW),
        ];
        let can = |op, name: &str| authorize(&acls, &alice, op, TOPIC, name, false);
        assert!(can(Operation::Write, "orders"));
        assert!(!can(Operation::Read, "orders"), "WRITE does not give READ");
        assert!(can(Operation::Describe, "orders"));
        assert!(can(Operation::Read, "logs-app"));
        assert!(
            !can(Operation::Read, "logs-secret"),
            "a DENY beats the prefixed ALLOW"
        );
        assert!(!can(Operation::Write, "logs-app"));
        assert!(can(Operation::Describe, "anything"), "the wildcard");
        let bob = Asker {
            principal: "User:bob",
            host: "10.0.0.2",
        };
        assert!(
            !authorize(&acls, &bob, Operation::Read, TOPIC, "logs-app", true),
            "ACLs exist for it"
        );
        assert!(
            authorize(&[], &bob, Operation::Read, GROUP, "g", true),
            "none: allow.everyone.if.no.acl.found"
        );
        assert!(!authorize(&[], &bob, Operation::Read, GROUP, "g", false));
        let from = [AclBinding {
            host: "10.0.0.1".into(),
            ..acl("orders", LITERAL, "User:*", Operation::Read, ALLOW)
        }];
        assert!(authorize(
            &from,
            &alice,
            Operation::Read,
            TOPIC,
            "orders",
            false
        ));
        assert!(
            !authorize(&from, &bob, Operation::Read, TOPIC, "orders", false),
            "another host"
        );
    }

    #[test]
    fn filters_match_as_describe_and_delete_acls_do() {
        let b = acl("logs-", PREFIXED, "User:alice", Operation::Read, ALLOW);
        let all = AclFilter {
            resource_type: ANY,
            resource_name: None,
            pattern_type: ANY,
            principal: None,
            host: None,
            operation: ANY,
            permission: ANY,
        };
        assert!(all.matches(&b));
        let exact = AclFilter {
            resource_name: Some("logs-".into()),
            pattern_type: PREFIXED,
            ..all.clone()
        };
        assert!(exact.matches(&b));
        let literal = AclFilter {
            pattern_type: LITERAL,
            ..exact.clone()
        };
        assert!(!literal.matches(&b));
        let applying = AclFilter {
            resource_name: Some("logs-app".into()),
            pattern_type: MATCH,
            ..all.clone()
        };
        assert!(applying.matches(&b));
        let other = AclFilter {
            principal: Some("User:bob".into()),
            ..all
        };
        assert!(!other.matches(&b));
    }
}
