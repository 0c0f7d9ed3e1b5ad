//! Broker configs. `GET /v1/brokers/{id}/configs` gives every config of broker `id` as its
//! DescribeConfigs answers them (value, where it comes from, whether it can change at
//! runtime); `PATCH /v1/brokers/{id}/configs` sets or removes dynamic ones
//! (IncrementalAlterConfigs SET / DELETE). `id` is a node id, or `default` for the
//! cluster-wide dynamic default every broker takes (Kafka's `--entity-default`). Both go to
//! the broker concerned over the Kafka protocol, so any node answers for any other.

use std::collections::BTreeMap;

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use kafka_protocol::messages::{
    describe_configs_request, incremental_alter_configs_request, DescribeConfigsRequest,
    IncrementalAlterConfigsRequest,
};
use kafka_protocol::protocol::StrBytes;
use serde::Deserialize;
use serde_json::{json, Value};
use strata_client::{ClientError, Router};

use crate::{client_error, error, json_response, kafka_status, read_json, Body};

/// Kafka's ConfigResource type of a broker.
const RESOURCE_BROKER: i8 = 4;
/// IncrementalAlterConfigs operations.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
/// The path's name of the cluster-wide default.
pub(crate) const DEFAULT: &str = "default";

/// Kafka's ConfigSource, by the name its tools print.
fn source_name(code: i8) -> &'static str {
    match code {
        1 => "DYNAMIC_TOPIC_CONFIG",
        2 => "DYNAMIC_BROKER_CONFIG",
        3 => "DYNAMIC_DEFAULT_BROKER_CONFIG",
        4 => "STATIC_BROKER_CONFIG",
        5 => "DEFAULT_CONFIG",
        6 => "DYNAMIC_BROKER_LOGGER_CONFIG",
        _ => "UNKNOWN",
    }
}

/// The broker resource's name in Kafka's requests ("" for the default), and the connection
/// to ask: the broker itself, or any for the default.
async fn target<'r>(
    router: &'r mut Router,
    id: &str,
) -> Result<(String, &'r mut strata_client::Client), Response<Body>> {
    if id == DEFAULT {
        return Ok((String::new(), router.any()));
    }
    let Ok(node) = id.parse::<i32>() else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("a broker is a node id or '{DEFAULT}' (got '{id}')"),
        ));
    };
    let brokers = router.brokers().await.map_err(|e| client_error(&e))?;
    let Some((_, addr)) = brokers.into_iter().find(|(n, _)| *n == node) else {
        return Err(error(
            StatusCode::NOT_FOUND,
            format!("no live broker {node}"),
        ));
    };
    let client = router
        .connection(&addr)
        .await
        .map_err(|e| client_error(&e))?;
    Ok((node.to_string(), client))
}

pub(crate) async fn describe(mut router: Router, id: &str) -> Response<Body> {
    let (name, client) = or_respond!(target(&mut router, id).await);
    let request = DescribeConfigsRequest::default().with_resources(vec![
        describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(RESOURCE_BROKER)
            .with_resource_name(StrBytes::from_string(name))
            .with_configuration_keys(None),
    ]);
    let response = match client.send(request, 4).await {
        Ok(r) => r,
        Err(e) => return client_error(&e),
    };
    let Some(result) = response.results.first() else {
        return error(StatusCode::BAD_GATEWAY, "DescribeConfigs answered nothing");
    };
    if result.error_code != 0 {
        return error(
            kafka_status(result.error_code),
            result
                .error_message
                .as_ref()
                .map_or_else(|| format!("error {}", result.error_code), |m| m.to_string()),
        );
    }
    let configs: Vec<Value> = result
        .configs
        .iter()
        .map(|c| {
            json!({
                "name": c.name.as_str(),
                // Kafka hides a sensitive value (null), as here.
                "value": if c.is_sensitive { None } else { c.value.as_ref().map(|v| v.as_str()) },
                "source": source_name(c.config_source),
                "read_only": c.read_only,
                "sensitive": c.is_sensitive,
            })
        })
        .collect();
    json_response(StatusCode::OK, &json!({"broker": id, "configs": configs}))
}

/// `{"configs": {"name": "value" | null}}`: null removes the dynamic value.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Changes {
    configs: BTreeMap<String, Option<String>>,
}

pub(crate) async fn alter(mut router: Router, id: &str, req: Request<Incoming>) -> Response<Body> {
    let changes: Changes = or_respond!(read_json(req).await);
    if changes.configs.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "nothing to change: configs is empty",
        );
    }
    let (name, client) = or_respond!(target(&mut router, id).await);
    let configs = changes
        .configs
        .iter()
        .map(|(k, v)| {
            incremental_alter_configs_request::AlterableConfig::default()
                .with_name(StrBytes::from_string(k.clone()))
                .with_config_operation(if v.is_some() { OP_SET } else { OP_DELETE })
                .with_value(v.as_deref().map(|v| StrBytes::from_string(v.to_string())))
        })
        .collect();
    let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
        incremental_alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(RESOURCE_BROKER)
            .with_resource_name(StrBytes::from_string(name))
            .with_configs(configs),
    ]);
    let answered: Result<_, ClientError> = client.send(request, 1).await;
    let response = match answered {
        Ok(r) => r,
        Err(e) => return client_error(&e),
    };
    match response.responses.first() {
        Some(r) if r.error_code != 0 => error(
            kafka_status(r.error_code),
            r.error_message
                .as_ref()
                .map_or_else(|| format!("error {}", r.error_code), |m| m.to_string()),
        ),
        Some(_) => describe(router, id).await,
        None => error(
            StatusCode::BAD_GATEWAY,
            "IncrementalAlterConfigs answered nothing",
        ),
    }
}
