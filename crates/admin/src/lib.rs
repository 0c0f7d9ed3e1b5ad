//! The HTTP admin listener (`strata serve --http-listen`, default `127.0.0.1:8080`):
//!
//! - `GET /metrics`: Prometheus' text format (`Broker::render_metrics`);
//! - `GET /healthz`: the process serves; `GET /readyz`: the broker takes requests (not
//!   shutting down; on a cluster, caught up with the metadata quorum);
//! - `/v1/…`: the admin API, described by `openapi.json` (served at `/v1/openapi.json`):
//!   the cluster, topics and their configs and partitions, messages ([`records`]), consumer
//!   groups, transactions, ACLs, SCRAM users and quotas ([`security`]), and the SQL
//!   passthrough ([`sql`]);
//! - `/`: the web console ([`console`]).
//!
//! Requests are small JSON documents, bounded before they are read (`MAX_BODY_BYTES`); every
//! error is a JSON `{"error_code", "message"}` with a matching HTTP status.
//!
//! Callers are authorized with the broker's own ACLs, as their Kafka client would be: with
//! `--http-auth basic` as the SASL user their credentials name (checked by logging in to the
//! node's SASL listener, `strata_ksql::auth::BasicAuth`), else as `User:ANONYMOUS` (a
//! PLAINTEXT listener's principal). Health, metrics and the OpenAPI file need no credentials.

// Handlers return their refusal as the response itself (`Result<_, Response<Body>>`).
#![allow(clippy::result_large_err)]

/// The value of a `Result<T, Response<Body>>`, or that response returned (handlers answer
/// a refusal with the response itself).
macro_rules! or_respond {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(response) => return response,
        }
    };
}

mod brokers;
mod console;
mod moves;
mod peers;
mod records;
mod security;
mod sql;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use strata_broker::authorizer::Authz;
use strata_broker::Broker;
use strata_client::{ClientError, Router};
use strata_ksql::auth::Verdict;
use strata_security::acl::{Operation, ResourceType, CLUSTER_NAME};
use tokio::net::TcpListener;

/// The largest request body read (a topic's creation with its configs fits many times).
pub(crate) const MAX_BODY_BYTES: usize = 1 << 20;

const OPENAPI: &str = include_str!("../openapi.json");

/// The most partitions a topic created through this API gets (a guard for a convenience
/// API; CreateTopics over the Kafka protocol takes up to 100,000).
const MAX_HTTP_PARTITIONS: i32 = 1000;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub(crate) type Body = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// What the listener reaches besides the broker in this process.
#[derive(Clone, Default)]
pub struct AdminOptions {
    /// This node's own Kafka listener: messages, consumer groups and transactions are read
    /// and written through the Kafka protocol from there (as any client), so they are right
    /// on a cluster whichever node leads or coordinates what. None: those resources answer
    /// 503.
    pub bootstrap: Option<String>,
    /// This node's SQL engine (its REST API's address), for `/v1/sql/…`. None: 503.
    pub sql: Option<String>,
    /// Whether the SQL engine checks each request's user itself (`--sql-auth basic`): the
    /// passthrough forwards the caller's credentials. When it does not, the engine would
    /// run anyone's statement with its own rights, so with `--http-auth basic` only callers
    /// allowed ALTER on the cluster may use the passthrough.
    pub sql_authenticates: bool,
    /// HTTP Basic credentials checked against the broker's SASL users (`--http-auth basic`);
    /// None: callers are `User:ANONYMOUS`, as on a Kafka PLAINTEXT listener.
    pub auth: Option<Arc<strata_ksql::auth::BasicAuth>>,
}

struct Admin {
    broker: Arc<Broker>,
    options: AdminOptions,
}

/// Serves the admin listener until the process ends.
pub async fn serve(listener: TcpListener, broker: Arc<Broker>, options: AdminOptions) {
    let admin = Arc::new(Admin { broker, options });
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "HTTP listener: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let admin = admin.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let admin = admin.clone();
                async move { Ok::<_, Infallible>(handle(&admin, peer, req).await) }
            });
            let builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            let _ = builder
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

pub(crate) fn respond(
    status: StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(
            Full::new(body.into())
                .map_err(|never| match never {})
                .boxed(),
        )
        .expect("a valid response")
}

pub(crate) fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    respond(
        status,
        "application/json",
        serde_json::to_vec(value).expect("JSON serializes"),
    )
}

/// An error answer: `{"error_code": <HTTP status>, "message": …}`.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    json_response(
        status,
        &json!({"error_code": status.as_u16(), "message": message.into()}),
    )
}

/// Who is asking, and what the broker's ACLs let them do.
pub(crate) struct Caller {
    principal: String,
    authz: Authz,
}

impl Caller {
    /// None when allowed; else the 403 answer (the denial is in the audit log).
    fn require(&self, op: Operation, resource: ResourceType, name: &str) -> Option<Response<Body>> {
        if self.authz.can(op, resource, name) {
            return None;
        }
        Some(error(
            StatusCode::FORBIDDEN,
            format!(
                "{} is not authorized to {} {} '{name}'",
                self.principal,
                op.name(),
                resource.name()
            ),
        ))
    }

    fn sees(&self, op: Operation, resource: ResourceType, name: &str) -> bool {
        self.authz.sees(op, resource, name)
    }
}

/// Resources anyone may read without credentials: probes, metrics and the API's description.
fn is_open(method: &Method, segments: &[&str]) -> bool {
    method == Method::GET
        && matches!(
            segments,
            ["metrics" | "healthz" | "readyz"] | ["v1", "openapi.json"]
        )
}

/// The caller of `req`: with `--http-auth basic`, the broker's SASL user its credentials
/// name (else the 401 or 503 answer); without, `User:ANONYMOUS`.
async fn authenticate(
    admin: &Admin,
    peer: std::net::SocketAddr,
    req: &Request<Incoming>,
) -> Result<Caller, Response<Body>> {
    let principal = match &admin.options.auth {
        None => strata_broker::connection::ANONYMOUS.to_string(),
        Some(auth) => {
            let header = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok());
            match auth.check(header).await {
                Verdict::User(user) => format!("User:{user}"),
                Verdict::Refused => {
                    tracing::info!(%peer, path = %req.uri().path(), "HTTP admin request refused: no valid credentials");
                    let mut r = error(
                        StatusCode::UNAUTHORIZED,
                        "credentials required (HTTP Basic, a SASL user of the broker)",
                    );
                    r.headers_mut().insert(
                        "www-authenticate",
                        hyper::header::HeaderValue::from_static(
                            "Basic realm=\"Strata\", charset=\"UTF-8\"",
                        ),
                    );
                    return Err(r);
                }
                Verdict::Unavailable(why) => {
                    return Err(error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("credentials could not be checked: {why}"),
                    ))
                }
            }
        }
    };
    let mut context = strata_broker::connection::ConnectionContext::on(
        peer,
        Arc::from("HTTP"),
        strata_broker::listeners::SecurityProtocol::Plaintext,
    );
    context.principal = principal.clone();
    Ok(Caller {
        authz: admin.broker.authz(&context),
        principal,
    })
}

async fn handle(
    admin: &Arc<Admin>,
    peer: std::net::SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    let broker = &admin.broker;
    let method = req.method().clone();
    let path = req.uri().path().trim_end_matches('/').to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let caller = if is_open(&method, &segments) {
        None
    } else {
        match authenticate(admin, peer, &req).await {
            Ok(c) => Some(c),
            Err(response) => return response,
        }
    };
    let anonymous = Caller {
        principal: strata_broker::connection::ANONYMOUS.to_string(),
        authz: Authz::allow_all(),
    };
    // Past the open resources every request has its caller (the open ones need none).
    let who = caller.as_ref().unwrap_or(&anonymous);
    match (&method, segments.as_slice()) {
        (&Method::GET, ["metrics"]) => {
            let high_watermarks = remote_high_watermarks(admin).await;
            let broker = broker.clone();
            match tokio::task::spawn_blocking(move || broker.render_metrics_with(&high_watermarks))
                .await
            {
                Ok(text) => respond(
                    StatusCode::OK,
                    "text/plain; version=0.0.4; charset=utf-8",
                    text,
                ),
                Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            }
        }
        (&Method::GET, ["healthz"]) => json_response(StatusCode::OK, &json!({"status": "ok"})),
        (&Method::GET, ["readyz"]) => readyz(broker),
        (&Method::GET, []) => console::index(),
        (&Method::GET, ["console", file]) => console::asset(file),
        (&Method::GET, ["v1", "openapi.json"]) => {
            respond(StatusCode::OK, "application/json", OPENAPI)
        }
        (&Method::GET, ["v1", "cluster"]) => cluster(broker),
        (&Method::GET, ["v1", "stats"]) => match query.as_str() {
            "" => stats(broker).await,
            "scope=cluster" => {
                let authorization = req.headers().get(hyper::header::AUTHORIZATION).cloned();
                cluster_stats(broker, authorization).await
            }
            _ => error(
                StatusCode::BAD_REQUEST,
                "the only query stats takes is scope=cluster",
            ),
        },
        // As DescribeConfigs / IncrementalAlterConfigs of a BROKER resource.
        (&Method::GET, ["v1", "brokers", id, "configs"]) => {
            match who.require(
                Operation::DescribeConfigs,
                ResourceType::Cluster,
                CLUSTER_NAME,
            ) {
                Some(denied) => denied,
                None => brokers::describe(or_respond!(router(admin).await), id).await,
            }
        }
        (&Method::PATCH, ["v1", "brokers", id, "configs"]) => {
            match who.require(Operation::AlterConfigs, ResourceType::Cluster, CLUSTER_NAME) {
                Some(denied) => denied,
                None => brokers::alter(or_respond!(router(admin).await), id, req).await,
            }
        }
        // As AlterPartitionReassignments / ListPartitionReassignments / ElectLeaders.
        (&Method::GET, ["v1", "reassignments"]) => {
            match who.require(Operation::Describe, ResourceType::Cluster, CLUSTER_NAME) {
                Some(denied) => denied,
                None => moves::list(or_respond!(router(admin).await)).await,
            }
        }
        (&Method::PUT, ["v1", "topics", name, "partitions", p, "replicas"]) => {
            match who.require(Operation::Alter, ResourceType::Cluster, CLUSTER_NAME) {
                Some(denied) => denied,
                None => moves::reassign(or_respond!(router(admin).await), name, p, req).await,
            }
        }
        (&Method::DELETE, ["v1", "topics", name, "partitions", p, "reassignment"]) => {
            match who.require(Operation::Alter, ResourceType::Cluster, CLUSTER_NAME) {
                Some(denied) => denied,
                None => moves::cancel(or_respond!(router(admin).await), name, p).await,
            }
        }
        (&Method::POST, ["v1", "elections"]) => {
            match who.require(Operation::Alter, ResourceType::Cluster, CLUSTER_NAME) {
                Some(denied) => denied,
                None => moves::elect(or_respond!(router(admin).await), req).await,
            }
        }
        (&Method::GET, ["v1", "topics"]) => json_response(StatusCode::OK, &topics(broker, who)),
        (&Method::POST, ["v1", "topics"]) => create_topic(broker, who, req).await,
        (&Method::GET, ["v1", "topics", name]) => {
            match who.require(Operation::Describe, ResourceType::Topic, name) {
                Some(denied) => denied,
                None => describe_topic_everywhere(admin, who, name).await,
            }
        }
        (&Method::DELETE, ["v1", "topics", name]) => {
            match who.require(Operation::Delete, ResourceType::Topic, name) {
                Some(denied) => denied,
                None => delete_topic(broker, name).await,
            }
        }
        (&Method::PATCH, ["v1", "topics", name, "configs"]) => {
            match who.require(Operation::AlterConfigs, ResourceType::Topic, name) {
                Some(denied) => denied,
                None => alter_topic_configs(broker, who, name, req).await,
            }
        }
        (&Method::POST, ["v1", "topics", name, "partitions"]) => {
            match who.require(Operation::Alter, ResourceType::Topic, name) {
                Some(denied) => denied,
                None => create_partitions(broker, who, name, req).await,
            }
        }
        (&Method::GET, ["v1", "topics", name, "records"]) => {
            match who.require(Operation::Read, ResourceType::Topic, name) {
                Some(denied) => denied,
                None => read_records(admin, name, &query).await,
            }
        }
        (&Method::POST, ["v1", "topics", name, "records"]) => {
            match who.require(Operation::Write, ResourceType::Topic, name) {
                Some(denied) => denied,
                None => produce_record(admin, name, req).await,
            }
        }
        (&Method::GET, ["v1", "groups"]) => groups(admin, who).await,
        (&Method::GET, ["v1", "groups", id]) => {
            match who.require(Operation::Describe, ResourceType::Group, id) {
                Some(denied) => denied,
                None => describe_group(admin, id).await,
            }
        }
        (&Method::POST, ["v1", "groups", id, "offsets"]) => {
            match who.require(Operation::Read, ResourceType::Group, id) {
                Some(denied) => denied,
                None => reset_offsets(admin, who, id, req).await,
            }
        }
        (&Method::GET, ["v1", "transactions"]) => transactions(admin, who).await,
        (&Method::GET, ["v1", "acls"]) => {
            match who.require(Operation::Describe, ResourceType::Cluster, CLUSTER_NAME) {
                Some(denied) => denied,
                None => security::acls(broker),
            }
        }
        // As CreateAcls / DeleteAcls: ALTER on the cluster.
        (&Method::POST, ["v1", "acls"]) => {
            match who.require(Operation::Alter, ResourceType::Cluster, CLUSTER_NAME) {
                Some(denied) => denied,
                None => security::create_acl(broker, req).await,
            }
        }
        (&Method::DELETE, ["v1", "acls"]) => {
            match who.require(Operation::Alter, ResourceType::Cluster, CLUSTER_NAME) {
                Some(denied) => denied,
                None => security::delete_acls(broker, &query).await,
            }
        }
        // As Describe / AlterUserScramCredentials: DESCRIBE / ALTER on the cluster.
        (&Method::GET, ["v1", "users"]) => {
            match who.require(Operation::Describe, ResourceType::Cluster, CLUSTER_NAME) {
                Some(denied) => denied,
                None => security::users(broker),
            }
        }
        (&Method::PUT | &Method::DELETE, ["v1", "users", name]) => {
            let name = match security::percent_decode(name) {
                Ok(n) => n,
                Err(e) => return error(StatusCode::BAD_REQUEST, e),
            };
            let response = match who.require(Operation::Alter, ResourceType::Cluster, CLUSTER_NAME)
            {
                Some(denied) => return denied,
                None if method == Method::PUT => security::put_user(broker, &name, req).await,
                None => security::delete_user(broker, &name, &query).await,
            };
            // The old password no longer logs in here (other nodes forget theirs within
            // the minute they remember a login).
            if let (true, Some(auth)) = (response.status().is_success(), &admin.options.auth) {
                auth.forget();
            }
            response
        }
        (&Method::GET, ["v1", "quotas"]) => {
            match who.require(
                Operation::DescribeConfigs,
                ResourceType::Cluster,
                CLUSTER_NAME,
            ) {
                Some(denied) => denied,
                None => security::quotas(broker),
            }
        }
        // As AlterClientQuotas: ALTER_CONFIGS on the cluster.
        (&Method::PUT, ["v1", "quotas"]) => {
            match who.require(Operation::AlterConfigs, ResourceType::Cluster, CLUSTER_NAME) {
                Some(denied) => denied,
                None => security::alter_quotas(broker, req).await,
            }
        }
        (&Method::POST, ["v1", "sql", endpoint])
        | (&Method::GET, ["v1", "sql", endpoint @ "info"])
            if sql::ENDPOINTS.contains(endpoint) =>
        {
            let unchecked = admin.options.auth.is_some() && !admin.options.sql_authenticates;
            match &admin.options.sql {
                Some(_) if unchecked && !who.sees(Operation::Alter, ResourceType::Cluster, CLUSTER_NAME) => error(
                    StatusCode::FORBIDDEN,
                    format!(
                        "the SQL engine on this node does not check users (start it with --sql-auth basic); until it does, only callers allowed ALTER on the cluster may use it, and {} is not",
                        who.principal
                    ),
                ),
                Some(addr) => sql::forward(addr, endpoint, req).await,
                None => error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the SQL engine is off on this node (--sql-listen none)",
                ),
            }
        }
        (_, ["v1", "topics"]) => not_allowed(&method, &path, "GET, POST"),
        (_, ["v1", "topics", _]) => not_allowed(&method, &path, "GET, DELETE"),
        (_, ["v1", "topics", _, "configs"]) => not_allowed(&method, &path, "PATCH"),
        (_, ["v1", "topics", _, "partitions"] | ["v1", "groups", _, "offsets"]) => {
            not_allowed(&method, &path, "POST")
        }
        (_, ["v1", "topics", _, "records"]) => not_allowed(&method, &path, "GET, POST"),
        (_, ["v1", "groups", _]) => not_allowed(&method, &path, "GET"),
        (_, ["v1", "acls"]) => not_allowed(&method, &path, "GET, POST, DELETE"),
        (_, ["v1", "brokers", _, "configs"]) => not_allowed(&method, &path, "GET, PATCH"),
        (_, ["v1", "topics", _, "partitions", _, "replicas"]) => not_allowed(&method, &path, "PUT"),
        (_, ["v1", "topics", _, "partitions", _, "reassignment"]) => {
            not_allowed(&method, &path, "DELETE")
        }
        (_, ["v1", "elections"]) => not_allowed(&method, &path, "POST"),
        (_, ["v1", "users", _]) => not_allowed(&method, &path, "PUT, DELETE"),
        (_, ["v1", "quotas"]) => not_allowed(&method, &path, "GET, PUT"),
        (_, ["v1", "sql", "info"]) => not_allowed(&method, &path, "GET"),
        (_, ["v1", "sql", endpoint]) if sql::ENDPOINTS.contains(endpoint) => {
            not_allowed(&method, &path, "POST")
        }
        (
            _,
            ["metrics" | "healthz" | "readyz"]
            | ["v1", "openapi.json" | "cluster" | "groups" | "stats" | "transactions" | "users"
            | "reassignments"],
        ) => not_allowed(&method, &path, "GET"),
        _ => error(StatusCode::NOT_FOUND, format!("no such resource: {path}")),
    }
}

/// How long a scrape waits for other leaders' high watermarks, and for how many partitions.
const REMOTE_HIGH_WATERMARKS_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
const REMOTE_HIGH_WATERMARKS_MAX: usize = 2000;

/// The high watermarks of the partitions of this node's groups that other nodes lead, as
/// their leaders answer ListOffsets (one request per leader, for all its partitions), so
/// consumer lag covers every partition on a cluster. Partitions without a leader or of
/// deleted topics are not asked; what does not answer within the budget is left out of the
/// lag (the committed offset is still reported).
async fn remote_high_watermarks(admin: &Admin) -> std::collections::HashMap<(String, i32), i64> {
    let mut found = std::collections::HashMap::new();
    // By leader, as this node's metadata has them.
    let mut by_leader: BTreeMap<i32, Vec<(String, i32)>> = BTreeMap::new();
    {
        let image = admin.broker.image();
        for (t, p) in admin
            .broker
            .group_partitions_led_elsewhere()
            .into_iter()
            .take(REMOTE_HIGH_WATERMARKS_MAX)
        {
            let leader = image
                .topic(&t)
                .and_then(|topic| topic.partitions.get(&p))
                .map_or(-1, |p| p.leader);
            if leader >= 0 {
                by_leader.entry(leader).or_default().push((t, p));
            }
        }
    }
    if by_leader.is_empty() {
        return found;
    }
    let Ok(mut router) = router(admin).await else {
        return found;
    };
    let _ = tokio::time::timeout(REMOTE_HIGH_WATERMARKS_WAIT, async {
        let Ok(brokers) = router.brokers().await else {
            return;
        };
        for (leader, partitions) in by_leader {
            let Some((_, addr)) = brokers.iter().find(|(id, _)| *id == leader) else {
                continue;
            };
            let Ok(client) = router.connection(addr).await else {
                continue;
            };
            // A leader that moved meanwhile answers NOT_LEADER for it: the next scrape asks
            // the new one.
            if let Ok(answers) = client.high_watermarks(&partitions).await {
                found.extend(
                    answers
                        .into_iter()
                        .filter_map(|(tp, hw)| hw.ok().map(|hw| (tp, hw))),
                );
            }
        }
    })
    .await;
    found
}

/// 405, with the methods the resource takes (RFC 9110's `Allow`).
fn not_allowed(method: &Method, path: &str, allow: &'static str) -> Response<Body> {
    let mut r = error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {path} (allowed: {allow})"),
    );
    r.headers_mut()
        .insert("allow", hyper::header::HeaderValue::from_static(allow));
    r
}

fn readyz(broker: &Broker) -> Response<Body> {
    if broker.is_shutting_down() {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "shutting down"}),
        );
    }
    json_response(StatusCode::OK, &json!({"status": "ready"}))
}

fn cluster(broker: &Broker) -> Response<Body> {
    let image = broker.image();
    let mut brokers: Vec<Value> = image
        .brokers()
        .map(|b| {
            let http = b
                .endpoints
                .iter()
                .find(|e| e.listener == strata_broker::config::HTTP_ENDPOINT)
                .map(|e| format!("{}:{}", e.host, e.port));
            json!({"node_id": b.node_id, "host": b.host, "port": b.port, "rack": b.rack,
                   "fenced": b.fenced, "http": http})
        })
        .collect();
    if brokers.is_empty() {
        // A standalone node registers with nobody: it is the cluster.
        brokers.push(
            json!({"node_id": broker.config.node_id, "host": Value::Null,
                            "port": Value::Null, "rack": Value::Null, "fenced": false,
                            "http": Value::Null}),
        );
    }
    json_response(
        StatusCode::OK,
        &json!({
            "cluster_id": broker.config.cluster_id,
            "node_id": broker.config.node_id,
            "controller_id": broker.controller_id(),
            "brokers": brokers,
        }),
    )
}

fn partition_json(
    broker: &Broker,
    topic: &str,
    index: i32,
    p: &strata_cluster::PartitionImage,
) -> Value {
    let mut v = json!({
        "partition": index,
        "leader": p.leader,
        "leader_epoch": p.leader_epoch,
        "replicas": p.replicas,
        "isr": p.isr,
    });
    // Offsets where this node leads the partition (others answer for theirs).
    if let Some(local) = broker.partition(topic, index).filter(|l| l.is_leader()) {
        let high_watermark = local.high_watermark();
        let log = local.log();
        v["log_start_offset"] = json!(log.log_start_offset());
        v["high_watermark"] = json!(high_watermark);
        v["size_bytes"] = json!(log.size_bytes());
    }
    v
}

fn topics(broker: &Broker, who: &Caller) -> Value {
    let image = broker.image();
    let mut out: Vec<Value> = image
        .topics()
        .filter(|t| who.sees(Operation::Describe, ResourceType::Topic, &t.name))
        .map(|t| {
            json!({
                "name": t.name,
                "topic_id": t.topic_id.to_string(),
                "internal": t.name.starts_with("__"),
                "partitions": t.partitions.iter()
                    .map(|(i, p)| partition_json(broker, &t.name, *i, p))
                    .collect::<Vec<_>>(),
            })
        })
        .collect();
    out.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    Value::Array(out)
}

fn describe_topic(broker: &Broker, who: &Caller, name: &str) -> Response<Body> {
    match topic_json(broker, who, name) {
        Ok(topic) => json_response(StatusCode::OK, &topic),
        Err(response) => response,
    }
}

/// A topic as this node's metadata has it (offsets and sizes of the partitions it leads).
fn topic_json(broker: &Broker, who: &Caller, name: &str) -> Result<Value, Response<Body>> {
    let image = broker.image();
    let Some(t) = image.topic(name) else {
        return Err(error(
            StatusCode::NOT_FOUND,
            format!("Topic '{name}' does not exist."),
        ));
    };
    Ok(json!({
            "name": t.name,
            "topic_id": t.topic_id.to_string(),
            "internal": t.name.starts_with("__"),
            // Its overrides, for a caller who may see them (DescribeConfigs).
            "configs": if who.sees(Operation::DescribeConfigs, ResourceType::Topic, name) {
                json!(t.configs)
            } else {
                json!({})
            },
            "partitions": t.partitions.iter()
                .map(|(i, p)| partition_json(broker, &t.name, *i, p))
                .collect::<Vec<_>>(),
    }))
}

/// How long `GET /v1/topics/{name}` waits for the other leaders' offsets and sizes.
const REMOTE_PARTITIONS_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The topic with every partition's log start, high watermark and size: this node's from
/// its own logs, the others' asked of their leaders (ListOffsets, DescribeLogDirs) through
/// the node's listener. A leader that does not answer in time leaves its partition without
/// them.
async fn describe_topic_everywhere(admin: &Admin, who: &Caller, name: &str) -> Response<Body> {
    let mut topic = or_respond!(topic_json(&admin.broker, who, name));
    let led_elsewhere: Vec<i32> = {
        let image = admin.broker.image();
        let Some(t) = image.topic(name) else {
            return json_response(StatusCode::OK, &topic);
        };
        t.partitions
            .iter()
            .filter(|(i, p)| {
                p.leader >= 0
                    && admin
                        .broker
                        .partition(name, **i)
                        .is_none_or(|l| !l.is_leader())
            })
            .map(|(i, _)| *i)
            .collect()
    };
    if led_elsewhere.is_empty() {
        return json_response(StatusCode::OK, &topic);
    }
    let Ok(mut router) = router(admin).await else {
        return json_response(StatusCode::OK, &topic);
    };
    let mut remote = BTreeMap::new();
    let asked = tokio::time::timeout(REMOTE_PARTITIONS_WAIT, async {
        for p in led_elsewhere {
            let offsets = async {
                let start = router.list_offset(name, p, -2).await?;
                let end = router.list_offset(name, p, -1).await?;
                let size = router.leader(name, p).await?.log_dir_sizes(name, p).await?;
                Ok::<_, ClientError>((start, end, size.first().map(|(_, s)| *s)))
            };
            if let Ok(found) = offsets.await {
                remote.insert(p, found);
            }
        }
    })
    .await;
    if asked.is_err() {
        tracing::debug!(
            topic = name,
            "some leaders did not answer for their partitions in time"
        );
    }
    for v in topic["partitions"].as_array_mut().into_iter().flatten() {
        let Some((start, end, size)) = v["partition"]
            .as_i64()
            .and_then(|p| remote.get(&(p as i32)))
        else {
            continue;
        };
        v["log_start_offset"] = json!(start);
        v["high_watermark"] = json!(end);
        if let Some(size) = size {
            v["size_bytes"] = json!(size);
        }
    }
    json_response(StatusCode::OK, &topic)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTopic {
    name: String,
    #[serde(default = "default_count")]
    partitions: i32,
    #[serde(default = "default_count_i16")]
    replication_factor: i16,
    #[serde(default)]
    configs: BTreeMap<String, String>,
}

fn default_count() -> i32 {
    -1
}

fn default_count_i16() -> i16 {
    -1
}

async fn read_json<T: serde::de::DeserializeOwned>(
    req: Request<Incoming>,
) -> Result<T, Response<Body>> {
    let body = Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
        .map_err(|e| {
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body unreadable or over {MAX_BODY_BYTES} bytes: {e}"),
            )
        })?
        .to_bytes();
    // Every body is a JSON object (serde would take a struct's fields from an array too).
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")))?;
    if !value.is_object() {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "the body must be a JSON object",
        ));
    }
    serde_json::from_value(value)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("invalid request: {e}")))
}

fn topic_error_status(e: &strata_broker::TopicError) -> StatusCode {
    use strata_broker::TopicError as E;
    match e {
        // The replication factor conflicts with the brokers there are now.
        E::AlreadyExists(_) | E::InvalidReplicationFactor(_) => StatusCode::CONFLICT,
        E::Unknown(_) => StatusCode::NOT_FOUND,
        E::InvalidTopic(_)
        | E::InvalidPartitions(_)
        | E::InvalidConfig(_)
        | E::InvalidReplicaAssignment(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

async fn create_topic(
    broker: &Arc<Broker>,
    who: &Caller,
    req: Request<Incoming>,
) -> Response<Body> {
    let new: NewTopic = or_respond!(read_json(req).await);
    // As CreateTopics: CREATE on the cluster, or on the topic.
    if !who.sees(Operation::Create, ResourceType::Cluster, CLUSTER_NAME) {
        if let Some(denied) = who.require(Operation::Create, ResourceType::Topic, &new.name) {
            return denied;
        }
    }
    let b = broker.clone();
    let name = new.name.clone();
    // -1 (or absent): the broker's num.partitions, as CreateTopics takes it.
    let partitions = if new.partitions == -1 {
        broker.config.num_partitions
    } else {
        new.partitions
    };
    if partitions > MAX_HTTP_PARTITIONS {
        return error(
            StatusCode::BAD_REQUEST,
            format!("the HTTP API creates topics of at most {MAX_HTTP_PARTITIONS} partitions (got {partitions}); larger ones through the Kafka protocol"),
        );
    }
    let created = tokio::task::spawn_blocking(move || {
        b.create_topic(
            &new.name,
            partitions,
            new.replication_factor,
            new.configs,
            false,
        )
    })
    .await;
    match created {
        Ok(Ok(_)) => {
            // Answer with the topic as this node's metadata has it.
            let mut r = describe_topic(broker, who, &name);
            *r.status_mut() = StatusCode::CREATED;
            r
        }
        Ok(Err(e)) => error(topic_error_status(&e), e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn delete_topic(broker: &Arc<Broker>, name: &str) -> Response<Body> {
    if broker.image().topic(name).is_none() {
        return error(
            StatusCode::NOT_FOUND,
            format!("Topic '{name}' does not exist."),
        );
    }
    let b = broker.clone();
    let topic = name.to_string();
    match tokio::task::spawn_blocking(move || b.delete_topic(&topic)).await {
        Ok(Ok(_)) => respond(StatusCode::NO_CONTENT, "application/json", Bytes::new()),
        Ok(Err(e)) => error(topic_error_status(&e), e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// This node's summary (`Broker::summary`), as JSON with the time it was taken.
async fn own_stats(broker: &Arc<Broker>) -> Result<Value, Response<Body>> {
    let b = broker.clone();
    match tokio::task::spawn_blocking(move || b.summary()).await {
        Ok(summary) => {
            let mut v = serde_json::to_value(summary).expect("a summary serializes");
            v["time_ms"] = json!(now_ms());
            Ok(v)
        }
        Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

async fn stats(broker: &Arc<Broker>) -> Response<Body> {
    json_response(StatusCode::OK, &or_respond!(own_stats(broker).await))
}

/// The counters every node keeps for itself (summed over the nodes that answered).
const SUMMED: [&str; 10] = [
    "bytes_in",
    "bytes_out",
    "messages_in",
    "connections",
    "log_bytes",
    "partitions",
    "leaders",
    "under_replicated",
    "under_min_isr",
    "active_controller",
];

/// `GET /v1/stats?scope=cluster`: every live node's summary (this one's, and its peers'
/// asked over HTTP with the caller's credentials), their totals, and the nodes that did not
/// answer. Rates are the client's to compute, node by node, so a node missing from one
/// sample does not read as a drop.
async fn cluster_stats(
    broker: &Arc<Broker>,
    authorization: Option<hyper::header::HeaderValue>,
) -> Response<Body> {
    let own = or_respond!(own_stats(broker).await);
    let (peers, without_http) = peers::live_peers(broker);
    let mut asked = tokio::task::JoinSet::new();
    for (id, addr) in peers {
        let authorization = authorization.clone();
        asked.spawn(async move {
            (
                id,
                addr.clone(),
                peers::get_json(&addr, "/v1/stats", authorization).await,
            )
        });
    }
    let mut nodes = vec![own.clone()];
    let mut missing: Vec<Value> = without_http
        .into_iter()
        .map(|id| json!({"node_id": id, "reason": "its HTTP listener is off"}))
        .collect();
    while let Some(done) = asked.join_next().await {
        match done {
            Ok((_, _, Ok(stats))) => nodes.push(stats),
            Ok((id, addr, Err(why))) => {
                missing.push(json!({"node_id": id, "reason": format!("{addr}: {why}")}))
            }
            Err(e) => missing.push(json!({"node_id": null, "reason": e.to_string()})),
        }
    }
    nodes.sort_by_key(|n| n["node_id"].as_i64());
    let mut totals = serde_json::Map::new();
    for key in SUMMED {
        let sum: u64 = nodes.iter().filter_map(|n| n[key].as_u64()).sum();
        totals.insert(key.to_string(), json!(sum));
    }
    // Known cluster-wide by every node.
    totals.insert("topics".into(), own["topics"].clone());
    totals.insert("offline".into(), own["offline"].clone());
    json_response(
        StatusCode::OK,
        &json!({"time_ms": now_ms(), "nodes": nodes, "missing": missing, "totals": totals}),
    )
}

/// `{"configs": {"name": "value" | null}}`: sets each named config (null removes the
/// override), leaving the others as they are (IncrementalAlterConfigs' SET and DELETE).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigChanges {
    configs: BTreeMap<String, Option<String>>,
}

async fn alter_topic_configs(
    broker: &Arc<Broker>,
    who: &Caller,
    name: &str,
    req: Request<Incoming>,
) -> Response<Body> {
    let changes: ConfigChanges = or_respond!(read_json(req).await);
    let Some(topic) = broker.image().topic(name).cloned() else {
        return error(
            StatusCode::NOT_FOUND,
            format!("Topic '{name}' does not exist."),
        );
    };
    let mut configs = topic.configs.clone();
    for (k, v) in changes.configs {
        match v {
            Some(v) => configs.insert(k, v),
            None => configs.remove(&k),
        };
    }
    let b = broker.clone();
    let topic_name = name.to_string();
    match tokio::task::spawn_blocking(move || b.alter_topic_configs(&topic_name, configs, false))
        .await
    {
        Ok(Ok(())) => describe_topic(broker, who, name),
        Ok(Err(e)) => error(topic_error_status(&e), e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PartitionCount {
    count: i32,
}

async fn create_partitions(
    broker: &Arc<Broker>,
    who: &Caller,
    name: &str,
    req: Request<Incoming>,
) -> Response<Body> {
    let wanted: PartitionCount = or_respond!(read_json(req).await);
    if wanted.count > MAX_HTTP_PARTITIONS {
        return error(
            StatusCode::BAD_REQUEST,
            format!("the HTTP API grows topics to at most {MAX_HTTP_PARTITIONS} partitions"),
        );
    }
    let b = broker.clone();
    let topic = name.to_string();
    match tokio::task::spawn_blocking(move || b.create_partitions(&topic, wanted.count, false))
        .await
    {
        Ok(Ok(())) => describe_topic(broker, who, name),
        Ok(Err(e)) => error(topic_error_status(&e), e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// A client of this node's Kafka listener, or the answer saying there is none.
async fn router(admin: &Admin) -> Result<Router, Response<Body>> {
    let Some(bootstrap) = &admin.options.bootstrap else {
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "this node has no listener the admin API can reach the brokers through",
        ));
    };
    Router::connect(bootstrap)
        .await
        .map_err(|e| client_error(&e))
}

/// The HTTP status of a Kafka error code (the one place the API maps them).
pub(crate) fn kafka_status(code: i16) -> StatusCode {
    match code {
        // UNKNOWN_TOPIC_OR_PARTITION, GROUP_ID_NOT_FOUND, NO_REASSIGNMENT_IN_PROGRESS,
        // RESOURCE_NOT_FOUND, TRANSACTIONAL_ID_NOT_FOUND
        3 | 69 | 85 | 91 | 105 => StatusCode::NOT_FOUND,
        // OFFSET_OUT_OF_RANGE, CORRUPT_MESSAGE, INVALID_TOPIC_EXCEPTION (an internal topic),
        // INVALID_TIMESTAMP, UNSUPPORTED_SASL_MECHANISM, INVALID_PARTITIONS,
        // INVALID_REPLICATION_FACTOR, INVALID_REPLICA_ASSIGNMENT, INVALID_CONFIG,
        // INVALID_REQUEST, POLICY_VIOLATION, INVALID_RECORD, DUPLICATE_RESOURCE,
        // UNACCEPTABLE_CREDENTIAL
        1 | 2 | 17 | 32 | 33 | 37..=40 | 42 | 44 | 87 | 92 | 93 => StatusCode::BAD_REQUEST,
        // NON_EMPTY_GROUP, UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION, REBALANCE_IN_PROGRESS,
        // SECURITY_DISABLED (no authorizer to hold ACLs)
        68 | 25 | 22 | 27 | 54 => StatusCode::CONFLICT,
        // MESSAGE_TOO_LARGE, RECORD_LIST_TOO_LARGE
        10 | 18 => StatusCode::PAYLOAD_TOO_LARGE,
        // *_AUTHORIZATION_FAILED
        29..=31 => StatusCode::FORBIDDEN,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// A Kafka error as an HTTP answer.
pub(crate) fn client_error(e: &ClientError) -> Response<Body> {
    let status = match e {
        ClientError::Kafka { code, .. } => kafka_status(*code),
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    error(status, e.to_string())
}

fn partition_count(broker: &Broker, topic: &str) -> Result<i32, Response<Body>> {
    broker
        .image()
        .topic(topic)
        .map(|t| t.partitions.len() as i32)
        .ok_or_else(|| {
            error(
                StatusCode::NOT_FOUND,
                format!("Topic '{topic}' does not exist."),
            )
        })
}

async fn read_records(admin: &Admin, topic: &str, query: &str) -> Response<Body> {
    let page = match records::PageRequest::parse(query) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let partitions = or_respond!(partition_count(&admin.broker, topic));
    if page.partition.is_some_and(|p| p >= partitions) {
        return error(
            StatusCode::NOT_FOUND,
            format!(
                "partition {} does not exist (the topic has {partitions})",
                page.partition.unwrap_or(0)
            ),
        );
    }
    let mut router = or_respond!(router(admin).await);
    match records::read_page(&mut router, topic, partitions, &page).await {
        Ok(v) => json_response(StatusCode::OK, &v),
        Err(e) => client_error(&e),
    }
}

async fn produce_record(admin: &Admin, topic: &str, req: Request<Incoming>) -> Response<Body> {
    let record: records::NewRecord = or_respond!(read_json(req).await);
    let partitions = or_respond!(partition_count(&admin.broker, topic));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let (partition, batch) = match record.build(partitions, now) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let mut router = or_respond!(router(admin).await);
    match router.produce(topic, partition, batch, -1).await {
        Ok(offset) => json_response(
            StatusCode::CREATED,
            &json!({"topic": topic, "partition": partition, "offset": offset, "timestamp": now}),
        ),
        Err(e) => client_error(&e),
    }
}

/// Every group of the cluster (each broker lists those it coordinates).
async fn groups(admin: &Admin, who: &Caller) -> Response<Body> {
    let mut router = or_respond!(router(admin).await);
    match strata_client::groups::list_groups(&mut router).await {
        Ok(mut groups) => {
            groups.retain(|g| who.sees(Operation::Describe, ResourceType::Group, &g.group_id));
            json_response(
                StatusCode::OK,
                &serde_json::to_value(groups).expect("groups serialize"),
            )
        }
        Err(e) => client_error(&e),
    }
}

/// One group: state, members with their assignments, and per partition its committed
/// offset, the log end offset and the lag (asked of each partition's leader).
async fn describe_group(admin: &Admin, id: &str) -> Response<Body> {
    let mut router = or_respond!(router(admin).await);
    match strata_client::groups::describe_group(&mut router, id).await {
        Ok(view) => json_response(
            StatusCode::OK,
            &serde_json::to_value(view).expect("a group serializes"),
        ),
        Err(e) => client_error(&e),
    }
}

/// `{"topic", "partitions"?: [..], "to": "earliest" | "latest", | "offset": n |
/// "timestamp": ms}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OffsetReset {
    topic: String,
    #[serde(default)]
    partitions: Option<Vec<i32>>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    offset: Option<i64>,
    #[serde(default)]
    timestamp: Option<i64>,
}

async fn reset_offsets(
    admin: &Admin,
    who: &Caller,
    group: &str,
    req: Request<Incoming>,
) -> Response<Body> {
    use strata_client::groups::ResetTo;
    let reset: OffsetReset = or_respond!(read_json(req).await);
    let to = match (reset.to.as_deref(), reset.offset, reset.timestamp) {
        (Some("earliest"), None, None) => ResetTo::Earliest,
        (Some("latest"), None, None) => ResetTo::Latest,
        (None, Some(o), None) if o >= 0 => ResetTo::Offset(o),
        (None, None, Some(ts)) => ResetTo::Timestamp(ts),
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "say where to with exactly one of: \"to\": \"earliest\" | \"latest\", \"offset\": n (0 or more), \"timestamp\": ms",
            )
        }
    };
    // As OffsetCommit: READ on the group (checked by the caller) and on the topic.
    if let Some(denied) = who.require(Operation::Read, ResourceType::Topic, &reset.topic) {
        return denied;
    }
    if let Err(response) = partition_count(&admin.broker, &reset.topic) {
        return response;
    }
    let mut router = or_respond!(router(admin).await);
    match strata_client::groups::reset_offsets(
        &mut router,
        group,
        &reset.topic,
        reset.partitions,
        to,
    )
    .await
    {
        Ok(planned) => json_response(
            StatusCode::OK,
            &json!({
                "group_id": group,
                "topic": reset.topic,
                "offsets": planned.iter()
                    .map(|(p, o)| json!({"partition": p, "offset": o}))
                    .collect::<Vec<_>>(),
            }),
        ),
        Err(e) => client_error(&e),
    }
}

/// Every broker's transactional ids with their producer and state (ListTransactions).
async fn transactions(admin: &Admin, who: &Caller) -> Response<Body> {
    use kafka_protocol::messages::ListTransactionsRequest;
    let mut router = or_respond!(router(admin).await);
    let listed = async {
        let mut out = Vec::new();
        for (id, addr) in router.brokers().await? {
            let resp = router
                .connection(&addr)
                .await?
                .send(ListTransactionsRequest::default(), 1)
                .await?;
            strata_client::check(resp.error_code, "ListTransactions", None)?;
            out.extend(
                resp.transaction_states
                    .into_iter()
                    .filter(|t| {
                        who.sees(
                            Operation::Describe,
                            ResourceType::TransactionalId,
                            t.transactional_id.as_str(),
                        )
                    })
                    .map(|t| {
                        json!({"transactional_id": t.transactional_id.as_str(),
                       "producer_id": t.producer_id.0,
                       "state": t.transaction_state.as_str(),
                       "coordinator": id})
                    }),
            );
        }
        out.sort_by(|a, b| {
            a["transactional_id"]
                .as_str()
                .cmp(&b["transactional_id"].as_str())
        });
        Ok::<_, ClientError>(out)
    };
    match listed.await {
        Ok(out) => json_response(StatusCode::OK, &Value::Array(out)),
        Err(e) => client_error(&e),
    }
}
