//! Kafka's ACL model and the decision its standard authorizer makes, without I/O: resource
//! types, LITERAL / PREFIXED patterns and the `*` wildcard, ALLOW / DENY with deny winning,
//! principals and hosts with their wildcards, every operation and the ones it implies,
//! `super.users` and `allow.everyone.if.no.acl.found`; and the filters of DescribeAcls /
//! DeleteAcls. Codes are Kafka's wire values.

use std::collections::BTreeSet;

/// Kafka's `ResourceType` codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceType {
    Any,
    Topic,
    Group,
    Cluster,
    TransactionalId,
    DelegationToken,
    User,
}

impl ResourceType {
    pub fn from_code(code: i8) -> Option<Self> {
        Some(match code {
            1 => Self::Any,
            2 => Self::Topic,
            3 => Self::Group,
            4 => Self::Cluster,
            5 => Self::TransactionalId,
            6 => Self::DelegationToken,
            7 => Self::User,
            _ => return None,
        })
    }

    pub fn code(self) -> i8 {
        match self {
            Self::Any => 1,
            Self::Topic => 2,
            Self::Group => 3,
            Self::Cluster => 4,
            Self::TransactionalId => 5,
            Self::DelegationToken => 6,
            Self::User => 7,
        }
    }

    /// The names `kafka-acls` and `strata acl` use.
    pub fn parse(s: &str) -> Option<Self> {
        Some(
            match s.to_ascii_lowercase().replace(['-', '_'], "").as_str() {
                "any" => Self::Any,
                "topic" => Self::Topic,
                "group" => Self::Group,
                "cluster" => Self::Cluster,
                "transactionalid" => Self::TransactionalId,
                "delegationtoken" => Self::DelegationToken,
                "user" => Self::User,
                _ => return None,
            },
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Any => "ANY",
            Self::Topic => "TOPIC",
            Self::Group => "GROUP",
            Self::Cluster => "CLUSTER",
            Self::TransactionalId => "TRANSACTIONAL_ID",
            Self::DelegationToken => "DELEGATION_TOKEN",
            Self::User => "USER",
        }
    }
}

/// Kafka's `PatternType` codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PatternType {
    Any,
    /// A filter only: LITERAL and PREFIXED patterns that would match the name.
    Match,
    Literal,
    Prefixed,
}

impl PatternType {
    pub fn from_code(code: i8) -> Option<Self> {
        Some(match code {
            1 => Self::Any,
            2 => Self::Match,
            3 => Self::Literal,
            4 => Self::Prefixed,
            _ => return None,
        })
    }

    pub fn code(self) -> i8 {
        match self {
            Self::Any => 1,
            Self::Match => 2,
            Self::Literal => 3,
            Self::Prefixed => 4,
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "any" => Self::Any,
            "match" => Self::Match,
            "literal" => Self::Literal,
            "prefixed" => Self::Prefixed,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Any => "ANY",
            Self::Match => "MATCH",
            Self::Literal => "LITERAL",
            Self::Prefixed => "PREFIXED",
        }
    }
}

/// Kafka's `AclOperation` codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    Any,
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
    CreateTokens,
    DescribeTokens,
    TwoPhaseCommit,
}

impl Operation {
    const TABLE: [(Operation, i8, &'static str); 15] = [
        (Operation::Any, 1, "ANY"),
        (Operation::All, 2, "ALL"),
        (Operation::Read, 3, "READ"),
        (Operation::Write, 4, "WRITE"),
        (Operation::Create, 5, "CREATE"),
        (Operation::Delete, 6, "DELETE"),
        (Operation::Alter, 7, "ALTER"),
        (Operation::Describe, 8, "DESCRIBE"),
        (Operation::ClusterAction, 9, "CLUSTER_ACTION"),
        (Operation::DescribeConfigs, 10, "DESCRIBE_CONFIGS"),
        (Operation::AlterConfigs, 11, "ALTER_CONFIGS"),
        (Operation::IdempotentWrite, 12, "IDEMPOTENT_WRITE"),
        (Operation::CreateTokens, 13, "CREATE_TOKENS"),
        (Operation::DescribeTokens, 14, "DESCRIBE_TOKENS"),
        (Operation::TwoPhaseCommit, 15, "TWO_PHASE_COMMIT"),
    ];

    pub fn from_code(code: i8) -> Option<Self> {
        Self::TABLE.iter().find(|t| t.1 == code).map(|t| t.0)
    }

    pub fn code(self) -> i8 {
        Self::TABLE
            .iter()
            .find(|t| t.0 == self)
            .map(|t| t.1)
            .unwrap_or(0)
    }

    pub fn name(self) -> &'static str {
        Self::TABLE
            .iter()
            .find(|t| t.0 == self)
            .map(|t| t.2)
            .unwrap_or("UNKNOWN")
    }

    /// `Read`, `read`, `DescribeConfigs`, `describe-configs`, `DESCRIBE_CONFIGS`.
    pub fn parse(s: &str) -> Option<Self> {
        let norm = |x: &str| x.to_ascii_lowercase().replace(['-', '_'], "");
        let s = norm(s);
        Self::TABLE.iter().find(|t| norm(t.2) == s).map(|t| t.0)
    }

    /// Operations an ALLOW of `self` also allows (Kafka: READ, WRITE, DELETE and ALTER imply
    /// DESCRIBE; ALTER_CONFIGS implies DESCRIBE_CONFIGS).
    fn implies(self, wanted: Operation) -> bool {
        self == wanted
            || self == Operation::All
            || (wanted == Operation::Describe
                && matches!(
                    self,
                    Operation::Read | Operation::Write | Operation::Delete | Operation::Alter
                ))
            || (wanted == Operation::DescribeConfigs && self == Operation::AlterConfigs)
    }
}

/// Kafka's `AclPermissionType` codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    Any,
    Deny,
    Allow,
}

impl Permission {
    pub fn from_code(code: i8) -> Option<Self> {
        Some(match code {
            1 => Self::Any,
            2 => Self::Deny,
            3 => Self::Allow,
            _ => return None,
        })
    }

    pub fn code(self) -> i8 {
        match self {
            Self::Any => 1,
            Self::Deny => 2,
            Self::Allow => 3,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Any => "ANY",
            Self::Deny => "DENY",
            Self::Allow => "ALLOW",
        }
    }
}

/// The name of the one CLUSTER resource.
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// The wildcard resource name, principal (`User:*`) and host.
pub const WILDCARD: &str = "*";
pub const WILDCARD_PRINCIPAL: &str = "User:*";

/// One ACL: who may (or may not) do what to which resources from where.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    pub resource_name: String,
    pub pattern_type: PatternType,
    pub principal: String,
    pub host: String,
    pub operation: Operation,
    pub permission: Permission,
}

impl AclBinding {
    /// Why this binding cannot be stored, as Kafka words it, if it cannot.
    pub fn invalid(&self) -> Option<String> {
        if matches!(self.resource_type, ResourceType::Any) {
            return Some("Invalid resource type ANY".into());
        }
        if !matches!(
            self.pattern_type,
            PatternType::Literal | PatternType::Prefixed
        ) {
            return Some(format!(
                "Invalid pattern type {} (LITERAL or PREFIXED)",
                self.pattern_type.name()
            ));
        }
        if matches!(self.operation, Operation::Any) {
            return Some("Invalid operation ANY".into());
        }
        if matches!(self.permission, Permission::Any) {
            return Some("Invalid permission type ANY".into());
        }
        if self.resource_name.is_empty() {
            return Some("Resource name must not be empty".into());
        }
        if self.resource_type == ResourceType::Cluster && self.resource_name != CLUSTER_NAME {
            return Some(format!(
                "The only valid name for the CLUSTER resource is {CLUSTER_NAME}"
            ));
        }
        if self.pattern_type == PatternType::Prefixed && self.resource_name == WILDCARD {
            return Some("A PREFIXED pattern cannot be the wildcard '*'".into());
        }
        match self.principal.split_once(':') {
            Some((kind, name)) if !kind.is_empty() && !name.is_empty() => {}
            _ => {
                return Some(format!(
                    "Could not parse principal '{}' (expected TYPE:NAME, e.g. User:alice)",
                    self.principal
                ))
            }
        }
        if self.host.is_empty() {
            return Some("Host must not be empty ('*' for any)".into());
        }
        None
    }

    /// Whether this binding's pattern covers `(resource_type, name)`.
    fn covers(&self, resource_type: ResourceType, name: &str) -> bool {
        self.resource_type == resource_type
            && match self.pattern_type {
                PatternType::Literal => {
                    self.resource_name == name || self.resource_name == WILDCARD
                }
                PatternType::Prefixed => name.starts_with(&self.resource_name),
                _ => false,
            }
    }
}

/// DescribeAcls / DeleteAcls filters: `None` fields and ANY match everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclFilter {
    pub resource_type: ResourceType,
    pub resource_name: Option<String>,
    pub pattern_type: PatternType,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Operation,
    pub permission: Permission,
}

impl AclFilter {
    pub fn matches(&self, acl: &AclBinding) -> bool {
        let resource = (self.resource_type == ResourceType::Any
            || self.resource_type == acl.resource_type)
            && match (self.pattern_type, &self.resource_name) {
                (PatternType::Any, None) => true,
                (PatternType::Any, Some(n)) => acl.resource_name == *n,
                (PatternType::Match, None) => true,
                (PatternType::Match, Some(n)) => match acl.pattern_type {
                    PatternType::Literal => {
                        acl.resource_name == *n || acl.resource_name == WILDCARD
                    }
                    PatternType::Prefixed => n.starts_with(&acl.resource_name),
                    _ => false,
                },
                (p, None) => acl.pattern_type == p,
                (p, Some(n)) => acl.pattern_type == p && acl.resource_name == *n,
            };
        resource
            && self.principal.as_ref().is_none_or(|p| *p == acl.principal)
            && self.host.as_ref().is_none_or(|h| *h == acl.host)
            && (self.operation == Operation::Any || self.operation == acl.operation)
            && (self.permission == Permission::Any || self.permission == acl.permission)
    }
}

/// The authorizer's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorizerConfig {
    /// `super.users`: principals allowed everything.
    pub super_users: BTreeSet<String>,
    /// `allow.everyone.if.no.acl.found`.
    pub allow_if_no_acl: bool,
}

/// Who asks: Kafka's principal (`User:alice`) and the client's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requester<'a> {
    pub principal: &'a str,
    pub host: &'a str,
}

/// Kafka's standard authorizer decision for one action on one resource.
pub fn authorize<'a>(
    acls: impl IntoIterator<Item = &'a AclBinding>,
    config: &AuthorizerConfig,
    who: &Requester<'_>,
    operation: Operation,
    resource_type: ResourceType,
    name: &str,
) -> bool {
    if config.super_users.contains(who.principal) {
        return true;
    }
    let mut any_for_resource = false;
    let mut allowed = false;
    for acl in acls {
        if !acl.covers(resource_type, name) {
            continue;
        }
        any_for_resource = true;
        if !(acl.principal == who.principal || acl.principal == WILDCARD_PRINCIPAL)
            || !(acl.host == who.host || acl.host == WILDCARD)
        {
            continue;
        }
        match acl.permission {
            Permission::Deny if acl.operation == operation || acl.operation == Operation::All => {
                return false
            }
            Permission::Allow if acl.operation.implies(operation) => allowed = true,
            _ => {}
        }
    }
    allowed || (!any_for_resource && config.allow_if_no_acl)
}

/// Whether `who` may `operation` on some resource of `resource_type` (Kafka's
/// `authorizeByResourceType`, used for idempotent writes: WRITE on any topic, KIP-679): an
/// ALLOW that covers some name and no DENY that covers every name of that allow.
pub fn authorize_any<'a>(
    acls: impl IntoIterator<Item = &'a AclBinding> + Clone,
    config: &AuthorizerConfig,
    who: &Requester<'_>,
    operation: Operation,
    resource_type: ResourceType,
) -> bool {
    if config.super_users.contains(who.principal) {
        return true;
    }
    let applies = |acl: &&AclBinding| {
        acl.resource_type == resource_type
            && (acl.principal == who.principal || acl.principal == WILDCARD_PRINCIPAL)
            && (acl.host == who.host || acl.host == WILDCARD)
    };
    let denies: Vec<&AclBinding> = acls
        .clone()
        .into_iter()
        .filter(applies)
        .filter(|a| {
            a.permission == Permission::Deny
                && (a.operation == operation || a.operation == Operation::All)
        })
        .collect();
    // A deny of the wildcard literal denies every name.
    if denies
        .iter()
        .any(|d| d.pattern_type == PatternType::Literal && d.resource_name == WILDCARD)
    {
        return false;
    }
    acls.into_iter()
        .filter(applies)
        .filter(|a| a.permission == Permission::Allow && a.operation.implies(operation))
        .any(|allow| {
            // Some name the allow covers that no deny covers.
            !denies
                .iter()
                .any(|d| match (allow.pattern_type, d.pattern_type) {
                    (PatternType::Literal, PatternType::Literal) => {
                        d.resource_name == allow.resource_name
                    }
                    (PatternType::Literal, PatternType::Prefixed) => {
                        allow.resource_name != WILDCARD
                            && allow.resource_name.starts_with(&d.resource_name)
                    }
                    (PatternType::Prefixed, PatternType::Prefixed) => {
                        allow.resource_name.starts_with(&d.resource_name)
                    }
                    _ => false,
                })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(
        rt: ResourceType,
        name: &str,
        pt: PatternType,
        principal: &str,
        host: &str,
        op: Operation,
        perm: Permission,
    ) -> AclBinding {
        AclBinding {
            resource_type: rt,
            resource_name: name.into(),
            pattern_type: pt,
            principal: principal.into(),
            host: host.into(),
            operation: op,
            permission: perm,
        }
    }

    use Operation::*;
    use PatternType::{Literal, Prefixed};
    use Permission::{Allow, Deny};
    use ResourceType::{Cluster, Group, Topic};

    const ALICE: Requester = Requester {
        principal: "User:alice",
        host: "10.0.0.1",
    };

    fn check(acls: &[AclBinding], op: Operation, rt: ResourceType, name: &str) -> bool {
        authorize(acls, &AuthorizerConfig::default(), &ALICE, op, rt, name)
    }

    #[test]
    fn the_operation_matrix_with_implied_operations() {
        // For each granted operation: what it allows on the same resource.
        let all_ops = [
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
        ];
        for granted in all_ops.iter().copied().chain([All]) {
            let acls = [acl(Topic, "t", Literal, "User:alice", "*", granted, Allow)];
            for wanted in all_ops {
                let expected = granted == wanted
                    || granted == All
                    || (wanted == Describe && matches!(granted, Read | Write | Delete | Alter))
                    || (wanted == DescribeConfigs && granted == AlterConfigs);
                assert_eq!(
                    check(&acls, wanted, Topic, "t"),
                    expected,
                    "{granted:?} -> {wanted:?}"
                );
            }
        }
    }

    #[test]
    fn a_deny_is_never_implied_and_always_wins() {
        // DENY READ does not deny DESCRIBE (implication is for ALLOW only).
        let acls = [
            acl(Topic, "t", Literal, "User:alice", "*", Read, Deny),
            acl(Topic, "t", Literal, "User:alice", "*", All, Allow),
        ];
        assert!(!check(&acls, Read, Topic, "t"));
        assert!(check(&acls, Describe, Topic, "t"));
        assert!(check(&acls, Write, Topic, "t"));
        // DENY ALL denies everything; a wildcard deny beats a literal allow.
        let acls = [
            acl(Topic, "*", Literal, "User:*", "*", All, Deny),
            acl(Topic, "t", Literal, "User:alice", "*", Read, Allow),
        ];
        assert!(!check(&acls, Read, Topic, "t"));
    }

    #[test]
    fn patterns_principals_and_hosts() {
        let acls = [
            acl(Topic, "orders-", Prefixed, "User:alice", "*", Read, Allow),
            acl(Topic, "*", Literal, "User:*", "10.0.0.1", Describe, Allow),
            acl(Group, "g1", Literal, "User:bob", "*", Read, Allow),
        ];
        assert!(check(&acls, Read, Topic, "orders-eu"));
        assert!(check(&acls, Read, Topic, "orders-"));
        assert!(!check(&acls, Read, Topic, "order"));
        assert!(!check(&acls, Read, Topic, "payments"));
        assert!(
            check(&acls, Describe, Topic, "payments"),
            "wildcard name, principal"
        );
        let elsewhere = Requester {
            principal: "User:alice",
            host: "10.0.0.2",
        };
        let cfg = AuthorizerConfig::default();
        assert!(!authorize(
            &acls, &cfg, &elsewhere, Describe, Topic, "payments"
        ));
        assert!(!check(&acls, Read, Group, "g1"), "bob's, not alice's");
        // The resource type must match: a TOPIC acl says nothing of a GROUP of that name.
        assert!(!check(&acls, Read, Group, "orders-eu"));
    }

    #[test]
    fn super_users_and_the_no_acl_default() {
        let acls = [acl(Topic, "t", Literal, "User:bob", "*", Read, Allow)];
        let mut cfg = AuthorizerConfig::default();
        assert!(!authorize(&acls, &cfg, &ALICE, Read, Topic, "other"));
        cfg.allow_if_no_acl = true;
        assert!(
            authorize(&acls, &cfg, &ALICE, Read, Topic, "other"),
            "no acl for it"
        );
        assert!(
            !authorize(&acls, &cfg, &ALICE, Read, Topic, "t"),
            "t has acls"
        );
        cfg.super_users.insert("User:alice".into());
        assert!(authorize(&acls, &cfg, &ALICE, Alter, Cluster, CLUSTER_NAME));
    }

    #[test]
    fn authorize_any_for_idempotent_writes() {
        let cfg = AuthorizerConfig::default();
        let any = |acls: &[AclBinding]| authorize_any(acls, &cfg, &ALICE, Write, Topic);
        assert!(!any(&[]));
        assert!(any(&[acl(
            Topic,
            "t",
            Literal,
            "User:alice",
            "*",
            Write,
            Allow
        )]));
        assert!(any(&[acl(
            Topic,
            "t",
            Literal,
            "User:alice",
            "*",
            All,
            Allow
        )]));
        assert!(!any(&[acl(
            Topic,
            "t",
            Literal,
            "User:alice",
            "*",
            Read,
            Allow
        )]));
        assert!(!any(&[
            acl(Topic, "t", Literal, "User:alice", "*", Write, Allow),
            acl(Topic, "t", Literal, "User:alice", "*", Write, Deny),
        ]));
        assert!(!any(&[
            acl(Topic, "t-1", Literal, "User:alice", "*", Write, Allow),
            acl(Topic, "t-", Prefixed, "User:*", "*", Write, Deny),
        ]));
        assert!(any(&[
            acl(Topic, "t-1", Literal, "User:alice", "*", Write, Allow),
            acl(Topic, "u-", Prefixed, "User:*", "*", Write, Deny),
        ]));
        assert!(!any(&[
            acl(Topic, "t-1", Literal, "User:alice", "*", Write, Allow),
            acl(Topic, "*", Literal, "User:alice", "*", All, Deny),
        ]));
    }

    #[test]
    fn filters_of_describe_and_delete() {
        let acls = [
            acl(Topic, "orders-", Prefixed, "User:alice", "*", Read, Allow),
            acl(Topic, "orders-eu", Literal, "User:bob", "*", Write, Deny),
            acl(Topic, "*", Literal, "User:carol", "*", Describe, Allow),
            acl(Group, "g", Literal, "User:alice", "*", Read, Allow),
        ];
        let filter = |rt, name: Option<&str>, pt, principal: Option<&str>| AclFilter {
            resource_type: rt,
            resource_name: name.map(String::from),
            pattern_type: pt,
            principal: principal.map(String::from),
            host: None,
            operation: Any,
            permission: Permission::Any,
        };
        let count = |f: AclFilter| acls.iter().filter(|a| f.matches(a)).count();
        assert_eq!(
            count(filter(ResourceType::Any, None, PatternType::Any, None)),
            4
        );
        assert_eq!(count(filter(Topic, None, PatternType::Any, None)), 3);
        assert_eq!(count(filter(Topic, None, Prefixed, None)), 1);
        assert_eq!(count(filter(Topic, Some("orders-eu"), Literal, None)), 1);
        assert_eq!(
            count(filter(Topic, Some("orders-eu"), PatternType::Any, None)),
            1
        );
        // MATCH: every pattern that applies to the name.
        assert_eq!(
            count(filter(Topic, Some("orders-eu"), PatternType::Match, None)),
            3
        );
        assert_eq!(
            count(filter(
                ResourceType::Any,
                None,
                PatternType::Any,
                Some("User:alice")
            )),
            2
        );
    }

    #[test]
    fn invalid_bindings() {
        let ok = acl(Topic, "t", Literal, "User:alice", "*", Read, Allow);
        assert_eq!(ok.invalid(), None);
        for bad in [
            AclBinding {
                resource_type: ResourceType::Any,
                ..ok.clone()
            },
            AclBinding {
                pattern_type: PatternType::Match,
                ..ok.clone()
            },
            AclBinding {
                operation: Any,
                ..ok.clone()
            },
            AclBinding {
                permission: Permission::Any,
                ..ok.clone()
            },
            AclBinding {
                resource_name: String::new(),
                ..ok.clone()
            },
            AclBinding {
                principal: "alice".into(),
                ..ok.clone()
            },
            AclBinding {
                host: String::new(),
                ..ok.clone()
            },
            AclBinding {
                resource_type: Cluster,
                resource_name: "x".into(),
                ..ok.clone()
            },
            AclBinding {
                pattern_type: Prefixed,
                resource_name: "*".into(),
                ..ok.clone()
            },
        ] {
            assert!(bad.invalid().is_some(), "{bad:?}");
        }
    }

    #[test]
    fn names_and_codes_round_trip() {
        for (op, code, name) in Operation::TABLE {
            assert_eq!(Operation::from_code(code), Some(op));
            assert_eq!(op.code(), code);
            assert_eq!(Operation::parse(name), Some(op));
        }
        assert_eq!(Operation::parse("describe-configs"), Some(DescribeConfigs));
        assert_eq!(Operation::parse("IdempotentWrite"), Some(IdempotentWrite));
        for c in 1..=7 {
            let rt = ResourceType::from_code(c).unwrap();
            assert_eq!(rt.code(), c);
            assert_eq!(ResourceType::parse(rt.name()), Some(rt));
        }
        assert_eq!(ResourceType::from_code(0), None);
        assert_eq!(PatternType::from_code(5), None);
        assert_eq!(Permission::from_code(3), Some(Allow));
    }
}
