//! Moving replicas and leaders over HTTP, through `strata_client::partitions` as the CLI
//! does (AlterPartitionReassignments, ListPartitionReassignments, ElectLeaders at the node's
//! own listener, which takes them to the controller):
//!
//! - `GET /v1/reassignments`: moves in progress;
//! - `PUT /v1/topics/{name}/partitions/{p}/replicas` `{"replicas": [2, 3]}`: starts one
//!   (202: the copy runs on; the first replica leads once it is done);
//! - `DELETE /v1/topics/{name}/partitions/{p}/reassignment`: cancels one;
//! - `POST /v1/elections` `{"type": "preferred" | "leaderless", "topic"?, "partitions"?}`.

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::json;
use strata_client::{partitions, Router};

use crate::{client_error, error, json_response, read_json, Body};

/// The most replicas a move names (Kafka's replication factors are small).
const MAX_REPLICAS: usize = 32;

pub(crate) async fn list(mut router: Router) -> Response<Body> {
    match partitions::reassignments(router.any()).await {
        Ok(list) => json_response(StatusCode::OK, &json!(list)),
        Err(e) => client_error(&e),
    }
}

fn partition_index(text: &str) -> Result<i32, Response<Body>> {
    text.parse::<i32>().ok().filter(|p| *p >= 0).ok_or_else(|| {
        error(
            StatusCode::BAD_REQUEST,
            format!("a partition is a number, 0 or more (got '{text}')"),
        )
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Target {
    replicas: Vec<i32>,
}

pub(crate) async fn reassign(
    mut router: Router,
    topic: &str,
    partition: &str,
    req: Request<Incoming>,
) -> Response<Body> {
    let partition = or_respond!(partition_index(partition));
    let target: Target = or_respond!(read_json(req).await);
    if target.replicas.is_empty() || target.replicas.len() > MAX_REPLICAS {
        return error(
            StatusCode::BAD_REQUEST,
            format!("replicas names 1 to {MAX_REPLICAS} brokers"),
        );
    }
    match partitions::reassign(router.any(), topic, partition, Some(&target.replicas)).await {
        Ok(()) => json_response(
            StatusCode::ACCEPTED,
            &json!({"topic": topic, "partition": partition, "replicas": target.replicas}),
        ),
        Err(e) => client_error(&e),
    }
}

pub(crate) async fn cancel(mut router: Router, topic: &str, partition: &str) -> Response<Body> {
    let partition = or_respond!(partition_index(partition));
    match partitions::reassign(router.any(), topic, partition, None).await {
        Ok(()) => json_response(
            StatusCode::OK,
            &json!({"topic": topic, "partition": partition, "cancelled": true}),
        ),
        Err(e) => client_error(&e),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Election {
    /// "preferred" (default) or "leaderless".
    #[serde(default, rename = "type")]
    kind: Option<String>,
    topic: Option<String>,
    partitions: Option<Vec<i32>>,
}

pub(crate) async fn elect(mut router: Router, req: Request<Incoming>) -> Response<Body> {
    let e: Election = or_respond!(read_json(req).await);
    let leaderless = match e.kind.as_deref() {
        None | Some("preferred") => false,
        Some("leaderless") => true,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("type is preferred or leaderless (got '{other}')"),
            )
        }
    };
    let wanted = match (e.topic, e.partitions) {
        (None, None) => None,
        (None, Some(_)) => return error(StatusCode::BAD_REQUEST, "partitions need their topic"),
        (Some(topic), Some(list)) => Some(vec![(topic, list)]),
        (Some(topic), None) => {
            // Every partition of the topic.
            let md = match router.any().metadata(Some(vec![topic.clone()])).await {
                Ok(md) => md,
                Err(e) => return client_error(&e),
            };
            let Some(t) = md.topics.first().filter(|t| t.error_code == 0) else {
                return error(
                    StatusCode::NOT_FOUND,
                    format!("Topic '{topic}' does not exist."),
                );
            };
            let list = t.partitions.iter().map(|p| p.partition_index).collect();
            Some(vec![(topic, list)])
        }
    };
    match partitions::elect_leaders(router.any(), leaderless, wanted).await {
        Ok(done) => json_response(
            StatusCode::OK,
            &json!({
                "elected": done.elected,
                "not_needed": done.not_needed,
                "failed": done.failed.iter()
                    .map(|(p, why)| json!({"partition": p, "error": why}))
                    .collect::<Vec<_>>(),
            }),
        ),
        Err(e) => client_error(&e),
    }
}
