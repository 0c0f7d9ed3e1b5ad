//! ACL enforcement: the ACLs of the latest metadata image (converted once per image), the
//! `authorizer.class.name` settings, and, per request, an [`Authz`] that answers "may this
//! principal from this host do this to that resource" the way Kafka's StandardAuthorizer
//! does (`strata_security::acl`), logging denials to the audit log.
//!
//! Without an authorizer every request is allowed and the ACL APIs answer
//! SECURITY_DISABLED, as in Kafka.

use std::sync::{Arc, Mutex};

use strata_cluster::{AclEntry, MetadataImage};
use strata_security::acl::{
    authorize, authorize_any, AclBinding, AuthorizerConfig, Operation, PatternType, Permission,
    Requester, ResourceType, CLUSTER_NAME,
};

use crate::audit::AuditLog;
use crate::connection::ConnectionContext;

/// A stored ACL as the authorizer's type (None if its codes are not Kafka's).
pub fn binding(entry: &AclEntry) -> Option<AclBinding> {
    Some(AclBinding {
        resource_type: ResourceType::from_code(entry.resource_type)?,
        resource_name: entry.resource_name.clone(),
        pattern_type: PatternType::from_code(entry.pattern_type)?,
        principal: entry.principal.clone(),
        host: entry.host.clone(),
        operation: Operation::from_code(entry.operation)?,
        permission: Permission::from_code(entry.permission_type)?,
    })
}

pub fn entry(b: &AclBinding) -> AclEntry {
    AclEntry {
        resource_type: b.resource_type.code(),
        resource_name: b.resource_name.clone(),
        pattern_type: b.pattern_type.code(),
        principal: b.principal.clone(),
        host: b.host.clone(),
        operation: b.operation.code(),
        permission_type: b.permission.code(),
    }
}

/// ACLs converted from the image they were taken from.
type AclCache = Option<(Arc<MetadataImage>, Arc<Vec<AclBinding>>)>;

/// The broker's authorizer (or its absence).
pub struct Authorizer {
    config: Option<Arc<AuthorizerConfig>>,
    /// The ACLs of the image they were taken from.
    cache: Mutex<AclCache>,
}

impl Authorizer {
    pub fn new(config: &Option<AuthorizerConfig>) -> Authorizer {
        Authorizer {
            config: config.clone().map(Arc::new),
            cache: Mutex::new(None),
        }
    }

    pub fn enabled(&self) -> bool {
        self.config.is_some()
    }

    fn acls(&self, image: &Arc<MetadataImage>) -> Arc<Vec<AclBinding>> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((cached, acls)) = &*cache {
            if Arc::ptr_eq(cached, image) || cached.acls() == image.acls() {
                let acls = acls.clone();
                *cache = Some((image.clone(), acls.clone()));
                return acls;
            }
        }
        let acls: Arc<Vec<AclBinding>> =
            Arc::new(image.acls().values().filter_map(binding).collect());
        *cache = Some((image.clone(), acls.clone()));
        acls
    }

    /// The authorization context of one request on `context`'s connection.
    pub fn for_request(
        &self,
        image: &Arc<MetadataImage>,
        context: &ConnectionContext,
        audit: &Arc<AuditLog>,
    ) -> Authz {
        let Some(config) = &self.config else {
            return Authz { inner: None };
        };
        Authz {
            inner: Some(Arc::new(Inner {
                acls: self.acls(image),
                config: config.clone(),
                principal: context.principal.clone(),
                host: context.peer.ip().to_string(),
                audit: audit.clone(),
            })),
        }
    }
}

struct Inner {
    acls: Arc<Vec<AclBinding>>,
    config: Arc<AuthorizerConfig>,
    principal: String,
    host: String,
    audit: Arc<AuditLog>,
}

/// What one request may do. Cheap to clone into the request's future.
#[derive(Clone)]
pub struct Authz {
    inner: Option<Arc<Inner>>,
}

impl Authz {
    /// No authorizer: everything is allowed (tests, and brokers without ACLs).
    pub fn allow_all() -> Authz {
        Authz { inner: None }
    }

    pub fn enforced(&self) -> bool {
        self.inner.is_some()
    }

    /// Whether the operation is allowed; a denial goes to the audit log.
    pub fn can(&self, operation: Operation, resource_type: ResourceType, name: &str) -> bool {
        let ok = self.sees(operation, resource_type, name);
        if let (false, Some(i)) = (ok, &self.inner) {
            i.audit.authorization_denied(
                &i.principal,
                &i.host,
                operation.name(),
                &format!("{}:{name}", resource_type.name()),
            );
        }
        ok
    }

    /// Like [`Authz::can`] but silent: for filtering lists (Metadata of all topics, ListGroups),
    /// where leaving out what the client may not see is not a denial worth a log line.
    pub fn sees(&self, operation: Operation, resource_type: ResourceType, name: &str) -> bool {
        let Some(i) = &self.inner else { return true };
        let who = Requester {
            principal: &i.principal,
            host: &i.host,
        };
        authorize(
            i.acls.iter(),
            &i.config,
            &who,
            operation,
            resource_type,
            name,
        )
    }

    /// Whether the operation is allowed on some resource of the type (KIP-679).
    pub fn can_any(&self, operation: Operation, resource_type: ResourceType) -> bool {
        let Some(i) = &self.inner else { return true };
        let who = Requester {
            principal: &i.principal,
            host: &i.host,
        };
        authorize_any(i.acls.iter(), &i.config, &who, operation, resource_type)
    }

    /// Kafka's authorized-operations bit set of a resource (bit = operation code) for the
    /// `include_*_authorized_operations` answers: the operations of that resource type this
    /// principal may perform (all of them without an authorizer).
    pub fn authorized_operations(&self, resource_type: ResourceType, name: &str) -> i32 {
        let ops: &[Operation] = match resource_type {
            ResourceType::Topic => &[
                Operation::Read,
                Operation::Write,
                Operation::Create,
                Operation::Delete,
                Operation::Alter,
                Operation::Describe,
                Operation::DescribeConfigs,
                Operation::AlterConfigs,
            ],
            ResourceType::Group => &[Operation::Read, Operation::Describe, Operation::Delete],
            ResourceType::Cluster => &[
                Operation::Create,
                Operation::ClusterAction,
                Operation::DescribeConfigs,
                Operation::AlterConfigs,
                Operation::IdempotentWrite,
                Operation::Alter,
                Operation::Describe,
            ],
            ResourceType::TransactionalId => &[Operation::Describe, Operation::Write],
            _ => &[],
        };
        ops.iter()
            .filter(|op| self.sees(**op, resource_type, name))
            .fold(0i32, |bits, op| bits | (1 << op.code()))
    }

    pub fn cluster(&self, operation: Operation) -> bool {
        self.can(operation, ResourceType::Cluster, CLUSTER_NAME)
    }

    pub fn topic(&self, operation: Operation, name: &str) -> bool {
        self.can(operation, ResourceType::Topic, name)
    }

    pub fn group(&self, operation: Operation, name: &str) -> bool {
        self.can(operation, ResourceType::Group, name)
    }

    pub fn transactional_id(&self, operation: Operation, name: &str) -> bool {
        self.can(operation, ResourceType::TransactionalId, name)
    }
}

impl crate::Broker {
    /// The authorization context of one request on `context`'s connection.
    /// Whether ACLs are enforced (an authorizer is configured).
    pub fn acls_enforced(&self) -> bool {
        self.authorizer.enabled()
    }

    pub fn authz(&self, context: &ConnectionContext) -> Authz {
        if !self.authorizer.enabled() {
            return Authz::allow_all();
        }
        self.authorizer
            .for_request(&self.image(), context, &self.audit)
    }
}
