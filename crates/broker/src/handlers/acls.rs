//! CreateAcls, DescribeAcls and DeleteAcls: ACLs are cluster metadata (one record each, by a
//! random id), so every node enforces the same set. Without an authorizer the three answer
//! SECURITY_DISABLED, as Kafka does. (The caller checks ALTER / DESCRIBE on the cluster.)

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;
use strata_cluster::MetadataRecord;
use strata_security::acl::{
    AclBinding, AclFilter, Operation, PatternType, Permission, ResourceType,
};
use tracing::info;
use uuid::Uuid;

use super::str;
use crate::authorizer::{binding, entry};
use crate::errors;
use crate::Broker;

const DISABLED: &str = "No Authorizer is configured on the broker";

fn invalid(m: &str) -> (i16, String) {
    (errors::INVALID_REQUEST, m.to_string())
}

/// A filter from the request's codes, or why it is invalid.
#[allow(clippy::too_many_arguments)]
fn filter(
    resource_type: i8,
    resource_name: &Option<StrBytes>,
    pattern_type: i8,
    principal: &Option<StrBytes>,
    host: &Option<StrBytes>,
    operation: i8,
    permission: i8,
) -> Result<AclFilter, (i16, String)> {
    Ok(AclFilter {
        resource_type: ResourceType::from_code(resource_type)
            .ok_or_else(|| invalid("unknown resource type"))?,
        resource_name: resource_name.as_ref().map(|s| s.to_string()),
        pattern_type: PatternType::from_code(pattern_type)
            .ok_or_else(|| invalid("unknown pattern type"))?,
        principal: principal.as_ref().map(|s| s.to_string()),
        host: host.as_ref().map(|s| s.to_string()),
        operation: Operation::from_code(operation).ok_or_else(|| invalid("unknown operation"))?,
        permission: Permission::from_code(permission)
            .ok_or_else(|| invalid("unknown permission type"))?,
    })
}

pub fn create(broker: &Arc<Broker>, r: CreateAclsRequest) -> CreateAclsResponse {
    let mut response = CreateAclsResponse::default();
    if !broker.authorizer.enabled() {
        response.results = r
            .creations
            .iter()
            .map(|_| {
                AclCreationResult::default()
                    .with_error_code(errors::SECURITY_DISABLED)
                    .with_error_message(Some(str(DISABLED)))
            })
            .collect();
        return response;
    }
    let metadata = broker.metadata();
    let image = metadata.image();
    let existing: BTreeSet<AclBinding> = image.acls().values().filter_map(binding).collect();
    let mut records = Vec::new();
    let mut added = BTreeSet::new();
    let mut results = Vec::with_capacity(r.creations.len());
    for c in &r.creations {
        let parsed = (|| {
            let b = AclBinding {
                resource_type: ResourceType::from_code(c.resource_type)
                    .ok_or("unknown resource type")?,
                resource_name: c.resource_name.to_string(),
                pattern_type: PatternType::from_code(c.resource_pattern_type)
                    .ok_or("unknown pattern type")?,
                principal: c.principal.to_string(),
                host: c.host.to_string(),
                operation: Operation::from_code(c.operation).ok_or("unknown operation")?,
                permission: Permission::from_code(c.permission_type)
                    .ok_or("unknown permission type")?,
            };
            match b.invalid() {
                Some(why) => Err(why),
                None => Ok(b),
            }
        })();
        let result = match parsed {
            Err(why) => AclCreationResult::default()
                .with_error_code(errors::INVALID_REQUEST)
                .with_error_message(Some(str(&format!("Invalid ACL creation: {why}")))),
            Ok(b) => {
                // An ACL that exists already is created again as a no-op, as Kafka does.
                if !existing.contains(&b) && added.insert(b.clone()) {
                    records.push(MetadataRecord::Acl {
                        id: Uuid::new_v4(),
                        acl: entry(&b),
                    });
                }
                AclCreationResult::default()
            }
        };
        results.push(result);
    }
    if records.is_empty() {
        drop(metadata);
    } else if let Err(e) = broker.commit_metadata(metadata, &records) {
        for r in results.iter_mut().filter(|r| r.error_code == errors::NONE) {
            r.error_code = e.code();
            r.error_message = Some(str(&e.to_string()));
        }
        response.results = results;
        return response;
    } else {
        for b in &added {
            info!(acl = ?b, "ACL created");
        }
    }
    response.results = results;
    response
}

pub fn describe(broker: &Arc<Broker>, r: DescribeAclsRequest) -> DescribeAclsResponse {
    let response = DescribeAclsResponse::default();
    if !broker.authorizer.enabled() {
        return response
            .with_error_code(errors::SECURITY_DISABLED)
            .with_error_message(Some(str(DISABLED)));
    }
    let f = match filter(
        r.resource_type_filter,
        &r.resource_name_filter,
        r.pattern_type_filter,
        &r.principal_filter,
        &r.host_filter,
        r.operation,
        r.permission_type,
    ) {
        Ok(f) => f,
        Err((code, m)) => {
            return response
                .with_error_code(code)
                .with_error_message(Some(str(&m)))
        }
    };
    let image = broker.image();
    let mut by_resource: BTreeMap<(i8, String, i8), Vec<AclDescription>> = BTreeMap::new();
    for b in image.acls().values().filter_map(binding) {
        if !f.matches(&b) {
            continue;
        }
        by_resource
            .entry((
                b.resource_type.code(),
                b.resource_name.clone(),
                b.pattern_type.code(),
            ))
            .or_default()
            .push(
                AclDescription::default()
                    .with_principal(str(&b.principal))
                    .with_host(str(&b.host))
                    .with_operation(b.operation.code())
                    .with_permission_type(b.permission.code()),
            );
    }
    response.with_resources(
        by_resource
            .into_iter()
            .map(|((rt, name, pt), acls)| {
                DescribeAclsResource::default()
                    .with_resource_type(rt)
                    .with_resource_name(str(&name))
                    .with_pattern_type(pt)
                    .with_acls(acls)
            })
            .collect(),
    )
}

pub fn delete(broker: &Arc<Broker>, r: DeleteAclsRequest) -> DeleteAclsResponse {
    let mut response = DeleteAclsResponse::default();
    if !broker.authorizer.enabled() {
        response.filter_results = r
            .filters
            .iter()
            .map(|_| {
                DeleteAclsFilterResult::default()
                    .with_error_code(errors::SECURITY_DISABLED)
                    .with_error_message(Some(str(DISABLED)))
            })
            .collect();
        return response;
    }
    let metadata = broker.metadata();
    let image = metadata.image();
    let mut removed = BTreeSet::new();
    let mut results = Vec::with_capacity(r.filters.len());
    for fr in &r.filters {
        let f = match filter(
            fr.resource_type_filter,
            &fr.resource_name_filter,
            fr.pattern_type_filter,
            &fr.principal_filter,
            &fr.host_filter,
            fr.operation,
            fr.permission_type,
        ) {
            Ok(f) => f,
            Err((code, m)) => {
                results.push(
                    DeleteAclsFilterResult::default()
                        .with_error_code(code)
                        .with_error_message(Some(str(&m))),
                );
                continue;
            }
        };
        let mut matching = Vec::new();
        for (id, e) in image.acls() {
            let Some(b) = binding(e) else { continue };
            if !f.matches(&b) {
                continue;
            }
            removed.insert(*id);
            matching.push(
                DeleteAclsMatchingAcl::default()
                    .with_resource_type(b.resource_type.code())
                    .with_resource_name(str(&b.resource_name))
                    .with_pattern_type(b.pattern_type.code())
                    .with_principal(str(&b.principal))
                    .with_host(str(&b.host))
                    .with_operation(b.operation.code())
                    .with_permission_type(b.permission.code()),
            );
        }
        results.push(DeleteAclsFilterResult::default().with_matching_acls(matching));
    }
    let records: Vec<MetadataRecord> = removed
        .iter()
        .map(|id| MetadataRecord::RemoveAcl { id: *id })
        .collect();
    if records.is_empty() {
        drop(metadata);
    } else if let Err(e) = broker.commit_metadata(metadata, &records) {
        for r in results.iter_mut().filter(|r| r.error_code == errors::NONE) {
            r.error_code = e.code();
            r.error_message = Some(str(&e.to_string()));
            r.matching_acls.clear();
        }
    } else {
        info!(count = records.len(), "ACLs deleted");
    }
    response.filter_results = results;
    response
}
