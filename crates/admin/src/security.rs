//! ACLs, SCRAM users and client quotas over HTTP. Reads come from this node's metadata image;
//! changes go through the broker's own CreateAcls / DeleteAcls, AlterUserScramCredentials and
//! AlterClientQuotas handlers (`strata_broker::handlers::direct`), so they are validated and
//! recorded exactly as a Kafka admin client's would be, once the caller passed the check the
//! Kafka listener makes: ALTER on the cluster for ACLs and users, ALTER_CONFIGS for quotas
//! (the router checks it before calling in here).
//!
//! - `POST /v1/acls` adds one binding; `DELETE /v1/acls?…` removes those matching a filter
//!   (query parameters, Confluent REST v3's shape; at least one is required);
//! - `GET /v1/users` lists SCRAM users and their mechanisms (never a secret); `PUT
//!   /v1/users/{name}` sets a password for a mechanism (salted here, as `kafka-configs` does on
//!   the client); `DELETE /v1/users/{name}?mechanism=` removes one mechanism or all of them;
//! - `PUT /v1/quotas` sets and removes an entity's quota values.

use std::sync::Arc;

use hyper::{Request, Response, StatusCode};
use kafka_protocol::messages::{
    alter_client_quotas_request, create_acls_request, delete_acls_request,
    AlterClientQuotasRequest, AlterUserScramCredentialsRequest, CreateAclsRequest,
    DeleteAclsRequest,
};
use kafka_protocol::protocol::StrBytes;
use serde::Deserialize;
use serde_json::{json, Value};
use strata_broker::handlers::direct;
use strata_broker::Broker;
use strata_security::acl::{Operation, PatternType, Permission, ResourceType};
use strata_security::{ScramMechanism, SCRAM_ITERATIONS_MAX, SCRAM_ITERATIONS_MIN};

use crate::{error, json_response, kafka_status, read_json, Body};

/// Kafka's default (and `kafka-configs`') iterations for a SCRAM credential.
const DEFAULT_ITERATIONS: u32 = 4096;

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

/// Runs a handler that commits metadata (it may wait on the quorum) off the async threads.
async fn blocking<T: Send + 'static>(
    broker: &Arc<Broker>,
    handler: impl FnOnce(&Arc<Broker>) -> T + Send + 'static,
) -> Result<T, Response<Body>> {
    let b = broker.clone();
    tokio::task::spawn_blocking(move || handler(&b))
        .await
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// A Kafka error code from a handler's answer as the HTTP error it maps to.
fn refused(code: i16, message: Option<&StrBytes>) -> Response<Body> {
    let message = message.map_or_else(
        || {
            kafka_protocol::error::ResponseError::try_from_code(code)
                .map_or(format!("error {code}"), |e| e.to_string())
        },
        |m| m.to_string(),
    );
    error(kafka_status(code), message)
}

fn binding_json(
    resource_type: ResourceType,
    resource_name: &str,
    pattern_type: PatternType,
    principal: &str,
    host: &str,
    operation: Operation,
    permission: Permission,
) -> Value {
    json!({
        "resource_type": resource_type.name(),
        "resource_name": resource_name,
        "pattern_type": pattern_type.name(),
        "principal": principal,
        "host": host,
        "operation": operation.name(),
        "permission": permission.name(),
    })
}

fn parse_permission(text: &str) -> Option<Permission> {
    match text.to_ascii_uppercase().as_str() {
        "ALLOW" => Some(Permission::Allow),
        "DENY" => Some(Permission::Deny),
        "ANY" => Some(Permission::Any),
        _ => None,
    }
}

/// Every ACL in the metadata, and whether an authorizer enforces them.
pub(crate) fn acls(broker: &Broker) -> Response<Body> {
    let image = broker.image();
    let out: Vec<Value> = image
        .acls()
        .values()
        .filter_map(strata_broker::authorizer::binding)
        .map(|b| {
            binding_json(
                b.resource_type,
                &b.resource_name,
                b.pattern_type,
                &b.principal,
                &b.host,
                b.operation,
                b.permission,
            )
        })
        .collect();
    json_response(
        StatusCode::OK,
        &json!({"authorizer": broker.authorizer.enabled(), "acls": out}),
    )
}

fn default_pattern() -> String {
    "LITERAL".into()
}

fn default_host() -> String {
    "*".into()
}

fn default_permission() -> String {
    "ALLOW".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAcl {
    resource_type: String,
    resource_name: String,
    #[serde(default = "default_pattern")]
    pattern_type: String,
    principal: String,
    #[serde(default = "default_host")]
    host: String,
    operation: String,
    #[serde(default = "default_permission")]
    permission: String,
}

/// `POST /v1/acls`: one binding, as CreateAcls makes it.
pub(crate) async fn create_acl(
    broker: &Arc<Broker>,
    req: Request<hyper::body::Incoming>,
) -> Response<Body> {
    let acl: NewAcl = or_respond!(read_json(req).await);
    let bad =
        |what: &str, got: &str| error(StatusCode::BAD_REQUEST, format!("unknown {what} '{got}'"));
    let Some(resource_type) = ResourceType::parse(&acl.resource_type) else {
        return bad("resource type", &acl.resource_type);
    };
    let Some(pattern_type) = PatternType::parse(&acl.pattern_type) else {
        return bad("pattern type", &acl.pattern_type);
    };
    let Some(operation) = Operation::parse(&acl.operation) else {
        return bad("operation", &acl.operation);
    };
    let Some(permission) = parse_permission(&acl.permission) else {
        return bad("permission", &acl.permission);
    };
    let request = CreateAclsRequest::default().with_creations(vec![
        create_acls_request::AclCreation::default()
            .with_resource_type(resource_type.code())
            .with_resource_name(s(&acl.resource_name))
            .with_resource_pattern_type(pattern_type.code())
            .with_principal(s(&acl.principal))
            .with_host(s(&acl.host))
            .with_operation(operation.code())
            .with_permission_type(permission.code()),
    ]);
    let response = or_respond!(blocking(broker, move |b| direct::create_acls(b, request)).await);
    match response.results.first() {
        Some(r) if r.error_code != 0 => refused(r.error_code, r.error_message.as_ref()),
        Some(_) => json_response(
            StatusCode::CREATED,
            &binding_json(
                resource_type,
                &acl.resource_name,
                pattern_type,
                &acl.principal,
                &acl.host,
                operation,
                permission,
            ),
        ),
        None => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "CreateAcls answered nothing",
        ),
    }
}

/// `%XX` and `+` decoded (a query parameter's value).
pub(crate) fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("bad percent-encoding in '{text}'"))?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| format!("'{text}' is not UTF-8 once decoded"))
}

/// `DELETE /v1/acls?resource_type=&resource_name=&pattern_type=&principal=&host=&operation=&permission=`:
/// what is not given matches anything (`pattern_type` defaults to ANY); at least one
/// parameter is required, so a bare DELETE cannot wipe every ACL by accident (pass
/// `resource_type=ANY` for that).
pub(crate) async fn delete_acls(broker: &Arc<Broker>, query: &str) -> Response<Body> {
    // (kafka-protocol's default for the nullable names is "", not null: each is set.)
    let mut filter = delete_acls_request::DeleteAclsFilter::default()
        .with_resource_name_filter(None)
        .with_principal_filter(None)
        .with_host_filter(None)
        .with_resource_type_filter(ResourceType::Any.code())
        .with_pattern_type_filter(PatternType::Any.code())
        .with_operation(Operation::Any.code())
        .with_permission_type(Permission::Any.code());
    let mut given = 0;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = match percent_decode(v) {
            Ok(v) => v,
            Err(e) => return error(StatusCode::BAD_REQUEST, e),
        };
        let bad = |what: &str| error(StatusCode::BAD_REQUEST, format!("unknown {what} '{v}'"));
        given += 1;
        match k {
            "resource_type" => match ResourceType::parse(&v) {
                Some(t) => filter.resource_type_filter = t.code(),
                None => return bad("resource type"),
            },
            "resource_name" => filter.resource_name_filter = Some(s(&v)),
            "pattern_type" => match PatternType::parse(&v) {
                Some(t) => filter.pattern_type_filter = t.code(),
                None => return bad("pattern type"),
            },
            "principal" => filter.principal_filter = Some(s(&v)),
            "host" => filter.host_filter = Some(s(&v)),
            "operation" => match Operation::parse(&v) {
                Some(o) => filter.operation = o.code(),
                None => return bad("operation"),
            },
            "permission" => match parse_permission(&v) {
                Some(p) => filter.permission_type = p.code(),
                None => return bad("permission"),
            },
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("unknown query parameter '{k}'"),
                )
            }
        }
    }
    if given == 0 {
        return error(
            StatusCode::BAD_REQUEST,
            "give at least one filter parameter (resource_type=ANY matches every ACL)",
        );
    }
    let request = DeleteAclsRequest::default().with_filters(vec![filter]);
    let response = or_respond!(blocking(broker, move |b| direct::delete_acls(b, request)).await);
    let Some(result) = response.filter_results.first() else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "DeleteAcls answered nothing",
        );
    };
    if result.error_code != 0 {
        return refused(result.error_code, result.error_message.as_ref());
    }
    let deleted: Vec<Value> = result
        .matching_acls
        .iter()
        .filter(|m| m.error_code == 0)
        .filter_map(|m| {
            Some(binding_json(
                ResourceType::from_code(m.resource_type)?,
                &m.resource_name,
                PatternType::from_code(m.pattern_type)?,
                &m.principal,
                &m.host,
                Operation::from_code(m.operation)?,
                Permission::from_code(m.permission_type)?,
            ))
        })
        .collect();
    json_response(StatusCode::OK, &json!({ "deleted": deleted }))
}

/// `GET /v1/users`: each SCRAM user with its mechanisms and their iterations.
pub(crate) fn users(broker: &Broker) -> Response<Body> {
    let image = broker.image();
    let out: Vec<Value> = image
        .scram_users()
        .map(|(user, creds)| {
            json!({
                "name": user,
                "credentials": creds.iter()
                    .map(|(mechanism, c)| json!({"mechanism": mechanism, "iterations": c.iterations}))
                    .collect::<Vec<_>>(),
            })
        })
        .collect();
    json_response(StatusCode::OK, &Value::Array(out))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserCredential {
    mechanism: String,
    password: String,
    iterations: Option<u32>,
}

/// `PUT /v1/users/{name}`: sets (creates or replaces) the user's credential for one mechanism.
pub(crate) async fn put_user(
    broker: &Arc<Broker>,
    name: &str,
    req: Request<hyper::body::Incoming>,
) -> Response<Body> {
    let body: UserCredential = or_respond!(read_json(req).await);
    let Some(mechanism) = ScramMechanism::parse(&body.mechanism) else {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "unknown mechanism '{}' (SCRAM-SHA-256 or SCRAM-SHA-512)",
                body.mechanism
            ),
        );
    };
    let iterations = body.iterations.unwrap_or(DEFAULT_ITERATIONS);
    if !(SCRAM_ITERATIONS_MIN..=SCRAM_ITERATIONS_MAX).contains(&iterations) {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "iterations must be {SCRAM_ITERATIONS_MIN} to {SCRAM_ITERATIONS_MAX} (got {iterations})"
            ),
        );
    }
    if body.password.is_empty() {
        return error(StatusCode::BAD_REQUEST, "the password is empty");
    }
    // Salted here, as Kafka's admin client does: only the salted password travels on.
    let request = strata_client::users::set_password(name, mechanism, &body.password, iterations);
    alter_scram(
        broker,
        request,
        json!({"name": name, "mechanism": mechanism.name(), "iterations": iterations}),
    )
    .await
}

/// Runs AlterUserScramCredentials (one user's changes): `done` when it took them, else the
/// broker's refusal.
async fn alter_scram(
    broker: &Arc<Broker>,
    request: AlterUserScramCredentialsRequest,
    done: Value,
) -> Response<Body> {
    let response = or_respond!(
        blocking(broker, move |b| direct::alter_user_scram_credentials(
            b, request
        ))
        .await
    );
    match response.results.first() {
        Some(r) if r.error_code != 0 => refused(r.error_code, r.error_message.as_ref()),
        _ => json_response(StatusCode::OK, &done),
    }
}

/// `DELETE /v1/users/{name}[?mechanism=]`: one mechanism's credential, or every one the user
/// has.
pub(crate) async fn delete_user(broker: &Arc<Broker>, name: &str, query: &str) -> Response<Body> {
    let mut only = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=').unwrap_or((pair, "")) {
            ("mechanism", m) => match ScramMechanism::parse(m) {
                Some(m) => only = Some(m),
                None => return error(StatusCode::BAD_REQUEST, format!("unknown mechanism '{m}'")),
            },
            (k, _) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("unknown query parameter '{k}'"),
                )
            }
        }
    }
    let mechanisms: Vec<ScramMechanism> = match only {
        Some(m) => vec![m],
        None => {
            let image = broker.image();
            let Some((_, creds)) = image.scram_users().find(|(u, _)| u.as_str() == name) else {
                return error(StatusCode::NOT_FOUND, format!("no SCRAM user '{name}'"));
            };
            creds
                .keys()
                .filter_map(|m| ScramMechanism::parse(m))
                .collect()
        }
    };
    let request = strata_client::users::remove(name, &mechanisms);
    let deleted: Vec<&str> = mechanisms.iter().map(|m| m.name()).collect();
    alter_scram(broker, request, json!({"name": name, "deleted": deleted})).await
}

/// Client quotas in the metadata: each entity (user / client-id, a null name being the
/// default) with its values.
pub(crate) fn quotas(broker: &Broker) -> Response<Body> {
    let image = broker.image();
    let out: Vec<Value> = image
        .client_quotas()
        .iter()
        .map(|q| {
            json!({
                "entity": q.entity.iter()
                    .map(|(kind, name)| json!({"type": kind, "name": name}))
                    .collect::<Vec<_>>(),
                "values": q.values.iter()
                    .map(|(k, v)| (k.clone(), json!(v.0)))
                    .collect::<serde_json::Map<_, _>>(),
            })
        })
        .collect();
    json_response(StatusCode::OK, &Value::Array(out))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntityPart {
    #[serde(rename = "type")]
    kind: String,
    /// None: the default of every entity of this type.
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QuotaChange {
    entity: Vec<EntityPart>,
    #[serde(default)]
    set: std::collections::BTreeMap<String, f64>,
    #[serde(default)]
    remove: Vec<String>,
}

/// `PUT /v1/quotas`: sets and removes values of one entity (AlterClientQuotas).
pub(crate) async fn alter_quotas(
    broker: &Arc<Broker>,
    req: Request<hyper::body::Incoming>,
) -> Response<Body> {
    let change: QuotaChange = or_respond!(read_json(req).await);
    if change.set.is_empty() && change.remove.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "nothing to change: give set or remove",
        );
    }
    let entity = change
        .entity
        .iter()
        .map(|p| {
            alter_client_quotas_request::EntityData::default()
                .with_entity_type(s(&p.kind))
                .with_entity_name(p.name.as_deref().map(s))
        })
        .collect();
    let ops = change
        .set
        .iter()
        .map(|(k, v)| {
            alter_client_quotas_request::OpData::default()
                .with_key(s(k))
                .with_value(*v)
        })
        .chain(change.remove.iter().map(|k| {
            alter_client_quotas_request::OpData::default()
                .with_key(s(k))
                .with_remove(true)
        }))
        .collect();
    let request = AlterClientQuotasRequest::default().with_entries(vec![
        alter_client_quotas_request::EntryData::default()
            .with_entity(entity)
            .with_ops(ops),
    ]);
    let response =
        or_respond!(blocking(broker, move |b| direct::alter_client_quotas(b, request)).await);
    match response.entries.first() {
        Some(r) if r.error_code != 0 => refused(r.error_code, r.error_message.as_ref()),
        _ => quotas(broker),
    }
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn query_values_are_percent_decoded() {
        assert_eq!(percent_decode("User%3Aal+ice").unwrap(), "User:al ice");
        assert_eq!(percent_decode("caf%C3%A9").unwrap(), "café");
        assert!(percent_decode("%zz").is_err());
        assert!(percent_decode("%4").is_err());
        assert!(percent_decode("%ff").is_err());
    }
}
