//! The HTTP admin listener (`strata serve --http-listen`, default `127.0.0.1:8080`):
//!
//! - `GET /metrics`: Prometheus' text format (`Broker::render_metrics`);
//! - `GET /healthz`: the process serves; `GET /readyz`: the broker takes requests (not
//!   shutting down; on a cluster, caught up with the metadata quorum);
//! - `/v1/…`: the admin API, described by `openapi.json` (served at `/v1/openapi.json`):
//!   the cluster and its brokers, topics (list, create, describe, delete), consumer groups.
//!
//! Requests are small JSON documents, bounded before they are read (`MAX_BODY_BYTES`); every
//! error is a JSON `{"error_code", "message"}` with a matching HTTP status. While the broker
//! enforces ACLs, the API answers only what needs no principal (metrics, health, the OpenAPI
//! file) and refuses the rest with 403: HTTP authentication is not built yet.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use strata_broker::Broker;
use tokio::net::TcpListener;

/// The largest request body read (a topic's creation with its configs fits many times).
const MAX_BODY_BYTES: usize = 1 << 20;

const OPENAPI: &str = include_str!("../openapi.json");

/// The most partitions a topic created through this API gets (a guard for a convenience
/// API; CreateTopics over the Kafka protocol takes up to 100,000).
const MAX_HTTP_PARTITIONS: i32 = 1000;

type Body = Full<Bytes>;

/// Serves the admin listener until the process ends.
pub async fn serve(listener: TcpListener, broker: Arc<Broker>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "HTTP listener: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let broker = broker.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let broker = broker.clone();
                async move { Ok::<_, Infallible>(handle(&broker, req).await) }
            });
            let builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            let _ = builder
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(body.into()))
        .expect("a valid response")
}

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    respond(
        status,
        "application/json",
        serde_json::to_vec(value).expect("JSON serializes"),
    )
}

/// An error answer: `{"error_code": <HTTP status>, "message": …}`.
fn error(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    json_response(
        status,
        &json!({"error_code": status.as_u16(), "message": message.into()}),
    )
}

async fn handle(broker: &Arc<Broker>, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().trim_end_matches('/').to_string();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match (&method, segments.as_slice()) {
        (&Method::GET, ["metrics"]) => {
            let broker = broker.clone();
            match tokio::task::spawn_blocking(move || broker.render_metrics()).await {
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
        (&Method::GET, []) => respond(StatusCode::OK, "text/html; charset=utf-8", INDEX),
        (&Method::GET, ["v1", "openapi.json"]) => {
            respond(StatusCode::OK, "application/json", OPENAPI)
        }
        _ if segments.first() == Some(&"v1") && broker.acls_enforced() => error(
            StatusCode::FORBIDDEN,
            "the broker enforces ACLs and the HTTP admin API has no authentication yet: use the Kafka listeners",
        ),
        (&Method::GET, ["v1", "cluster"]) => cluster(broker),
        (&Method::GET, ["v1", "topics"]) => json_response(StatusCode::OK, &topics(broker)),
        (&Method::POST, ["v1", "topics"]) => create_topic(broker, req).await,
        (&Method::GET, ["v1", "topics", name]) => describe_topic(broker, name),
        (&Method::DELETE, ["v1", "topics", name]) => delete_topic(broker, name).await,
        (&Method::GET, ["v1", "groups"]) => groups(broker),
        (&Method::GET, ["v1", "groups", id]) => describe_group(broker, id),
        (_, ["v1", "topics"]) => not_allowed(&method, &path, "GET, POST"),
        (_, ["v1", "topics", _]) => not_allowed(&method, &path, "GET, DELETE"),
        (_, ["v1", "groups", _]) => not_allowed(&method, &path, "GET"),
        (_, ["metrics" | "healthz" | "readyz"] | ["v1", "openapi.json" | "cluster" | "groups"]) => {
            not_allowed(&method, &path, "GET")
        }
        _ => error(StatusCode::NOT_FOUND, format!("no such resource: {path}")),
    }
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

/// The page at `/` until the web console exists: where things are.
const INDEX: &str =
    "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Strata</title></head>\
<body><h1>Strata</h1><ul>\
<li><a href=\"/metrics\">/metrics</a> (Prometheus)</li>\
<li><a href=\"/v1/openapi.json\">/v1/openapi.json</a> (the admin API)</li>\
<li><a href=\"/v1/topics\">/v1/topics</a></li>\
<li><a href=\"/healthz\">/healthz</a>, <a href=\"/readyz\">/readyz</a></li>\
</ul></body></html>";

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
            json!({"node_id": b.node_id, "host": b.host, "port": b.port, "rack": b.rack,
                   "fenced": b.fenced})
        })
        .collect();
    if brokers.is_empty() {
        // A standalone node registers with nobody: it is the cluster.
        brokers.push(
            json!({"node_id": broker.config.node_id, "host": Value::Null,
                            "port": Value::Null, "rack": Value::Null, "fenced": false}),
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

fn topics(broker: &Broker) -> Value {
    let image = broker.image();
    let mut out: Vec<Value> = image
        .topics()
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

fn describe_topic(broker: &Broker, name: &str) -> Response<Body> {
    let image = broker.image();
    let Some(t) = image.topic(name) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("Topic '{name}' does not exist."),
        );
    };
    json_response(
        StatusCode::OK,
        &json!({
            "name": t.name,
            "topic_id": t.topic_id.to_string(),
            "internal": t.name.starts_with("__"),
            "configs": t.configs,
            "partitions": t.partitions.iter()
                .map(|(i, p)| partition_json(broker, &t.name, *i, p))
                .collect::<Vec<_>>(),
        }),
    )
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
    serde_json::from_slice(&body)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")))
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

async fn create_topic(broker: &Arc<Broker>, req: Request<Incoming>) -> Response<Body> {
    let new: NewTopic = match read_json(req).await {
        Ok(t) => t,
        Err(response) => return response,
    };
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
            let mut r = describe_topic(broker, &name);
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

fn groups(broker: &Broker) -> Response<Body> {
    let listed = broker.groups.coordinator().list();
    match listed {
        Ok(groups) => {
            let mut out: Vec<Value> = groups
                .into_iter()
                .map(|g| {
                    json!({"group_id": g.group_id, "state": g.state, "type": g.group_type,
                           "protocol_type": g.protocol_type})
                })
                .collect();
            out.sort_by(|a, b| a["group_id"].as_str().cmp(&b["group_id"].as_str()));
            json_response(StatusCode::OK, &Value::Array(out))
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// One group: its state and members, and per partition its committed offset with the lag
/// behind the high watermark (where this node leads the partition; null elsewhere).
fn describe_group(broker: &Broker, id: &str) -> Response<Body> {
    let (described, offsets) = {
        let coordinator = broker.groups.coordinator();
        let described = coordinator.describe(id);
        let offsets = coordinator.fetch_offsets(id, None, None);
        (described, offsets)
    };
    let group = match described {
        Ok(Some(g)) if g.state != "Dead" => g,
        Ok(_) => {
            return error(
                StatusCode::NOT_FOUND,
                format!("Group '{id}' does not exist."),
            )
        }
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    let mut partitions: Vec<Value> = offsets
        .unwrap_or_default()
        .into_iter()
        .filter_map(|o| {
            let committed = o.offset?.offset;
            let high_watermark = broker
                .partition(&o.topic, o.partition)
                .filter(|p| p.is_leader())
                .map(|p| p.high_watermark());
            Some(json!({
                "topic": o.topic,
                "partition": o.partition,
                "committed_offset": committed,
                "high_watermark": high_watermark,
                "lag": high_watermark.map(|hw| (hw - committed).max(0)),
            }))
        })
        .collect();
    partitions.sort_by(|a, b| {
        (a["topic"].as_str(), a["partition"].as_i64())
            .cmp(&(b["topic"].as_str(), b["partition"].as_i64()))
    });
    json_response(
        StatusCode::OK,
        &json!({
            "group_id": group.group_id,
            "state": group.state,
            "protocol_type": group.protocol_type,
            "protocol": group.protocol,
            "members": group.members.iter().map(|m| json!({
                "member_id": m.member_id,
                "group_instance_id": m.group_instance_id,
                "client_id": m.client_id,
                "client_host": m.client_host,
            })).collect::<Vec<_>>(),
            "offsets": partitions,
        }),
    )
}
