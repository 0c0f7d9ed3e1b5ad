//! AlterConfigs and IncrementalAlterConfigs (SET, DELETE, APPEND, SUBTRACT) for TOPIC
//! resources and BROKER resources (dynamic topic defaults: "" for the cluster-wide default,
//! or this broker's id). Values are validated as a whole before anything is stored; the
//! change is recorded in the metadata log and applied to the partitions at once.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::*;

use super::str;
use crate::errors;
use crate::state::TopicError;
use crate::Broker;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

/// Config keys whose values are comma-separated lists (APPEND / SUBTRACT apply to them).
const LIST_KEYS: &[(&str, &str)] = &[
    ("cleanup.policy", "delete"),
    ("log.cleanup.policy", "delete"),
];

/// (error code, message) of a failed resource.
type Failure = (i16, String);

fn failure(e: TopicError) -> Failure {
    (e.code(), e.to_string())
}

fn invalid_request(m: String) -> Failure {
    (errors::INVALID_REQUEST, m)
}

/// The resource's current dynamic configs.
fn current(
    broker: &Broker,
    resource_type: i8,
    name: &str,
) -> Result<BTreeMap<String, String>, Failure> {
    match resource_type {
        RESOURCE_TOPIC => broker
            .image()
            .topic(name)
            .map(|t| t.configs.clone())
            .ok_or_else(|| failure(TopicError::Unknown(name.to_string()))),
        RESOURCE_BROKER => Ok(broker
            .image()
            .broker_configs(name)
            .cloned()
            .unwrap_or_default()),
        other => Err(invalid_request(format!(
            "Unsupported resource type {other}"
        ))),
    }
}

fn store(
    broker: &Broker,
    resource_type: i8,
    name: &str,
    configs: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<(), Failure> {
    match resource_type {
        RESOURCE_TOPIC => broker.alter_topic_configs(name, configs, validate_only),
        _ => broker.alter_broker_configs(name, configs, validate_only),
    }
    .map_err(failure)
}

fn list_items(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Applies IncrementalAlterConfigs operations to a resource's dynamic configs.
fn apply_ops(
    mut configs: BTreeMap<String, String>,
    ops: &[(String, i8, Option<String>)],
) -> Result<BTreeMap<String, String>, Failure> {
    let mut seen = std::collections::HashSet::new();
    for (name, op, value) in ops {
        if !seen.insert(name.as_str()) {
            return Err(invalid_request(format!(
                "Error due to duplicate config keys: {name}"
            )));
        }
        let list_default = LIST_KEYS.iter().find(|(k, _)| k == name).map(|(_, d)| *d);
        match op {
            0 => {
                let Some(v) = value else {
                    return Err((
                        errors::INVALID_CONFIG,
                        format!("Null value not supported for SET of {name}"),
                    ));
                };
                configs.insert(name.clone(), v.clone());
            }
            1 => {
                configs.remove(name);
            }
            2 | 3 => {
                let Some(default) = list_default else {
                    return Err((
                        errors::INVALID_CONFIG,
                        format!(
                            "Config value {} is not allowed for config key {name}: it is not a list",
                            if *op == 2 { "append" } else { "subtract" }
                        ),
                    ));
                };
                let mut items = list_items(configs.get(name).map_or(default, |s| s.as_str()));
                for v in list_items(value.as_deref().unwrap_or("")) {
                    if *op == 2 {
                        if !items.contains(&v) {
                            items.push(v);
                        }
                    } else {
                        items.retain(|i| *i != v);
                    }
                }
                configs.insert(name.clone(), items.join(","));
            }
            other => {
                return Err(invalid_request(format!("Unknown config operation {other}")));
            }
        }
    }
    Ok(configs)
}

pub fn incremental_alter_configs(
    broker: &Arc<Broker>,
    r: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut resp = IncrementalAlterConfigsResponse::default();
    for res in &r.resources {
        let name = res.resource_name.to_string();
        let ops: Vec<(String, i8, Option<String>)> = res
            .configs
            .iter()
            .map(|c| {
                (
                    c.name.to_string(),
                    c.config_operation,
                    c.value.as_ref().map(|v| v.to_string()),
                )
            })
            .collect();
        let outcome = current(broker, res.resource_type, &name)
            .and_then(|configs| apply_ops(configs, &ops))
            .and_then(|configs| store(broker, res.resource_type, &name, configs, r.validate_only));
        let mut rr = incremental_alter_configs_response::AlterConfigsResourceResponse::default();
        rr.resource_type = res.resource_type;
        rr.resource_name = res.resource_name.clone();
        if let Err((code, message)) = outcome {
            rr.error_code = code;
            rr.error_message = Some(str(&message));
        }
        resp.responses.push(rr);
    }
    resp
}

/// AlterConfigs (the older form): the given configs replace all of the resource's dynamic
/// configs.
pub fn alter_configs(broker: &Arc<Broker>, r: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut resp = AlterConfigsResponse::default();
    for res in &r.resources {
        let name = res.resource_name.to_string();
        let mut configs = BTreeMap::new();
        let mut duplicate = None;
        for c in &res.configs {
            if let Some(v) = &c.value {
                if configs.insert(c.name.to_string(), v.to_string()).is_some() {
                    duplicate = Some(c.name.to_string());
                }
            }
        }
        let outcome = match duplicate {
            Some(d) => Err(invalid_request(format!(
                "Error due to duplicate config keys: {d}"
            ))),
            None => current(broker, res.resource_type, &name)
                .and_then(|_| store(broker, res.resource_type, &name, configs, r.validate_only)),
        };
        let mut rr = alter_configs_response::AlterConfigsResourceResponse::default();
        rr.resource_type = res.resource_type;
        rr.resource_name = res.resource_name.clone();
        if let Err((code, message)) = outcome {
            rr.error_code = code;
            rr.error_message = Some(str(&message));
        }
        resp.responses.push(rr);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(name: &str, op: i8, value: Option<&str>) -> (String, i8, Option<String>) {
        (name.to_string(), op, value.map(String::from))
    }

    #[test]
    fn set_delete_append_subtract() {
        let start = BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]);
        let out = apply_ops(
            start.clone(),
            &[
                op("retention.ms", 1, None),
                op("segment.bytes", 0, Some("4096")),
                op("cleanup.policy", 2, Some("compact")),
            ],
        )
        .unwrap();
        assert_eq!(out.get("retention.ms"), None);
        assert_eq!(out["segment.bytes"], "4096");
        assert_eq!(
            out["cleanup.policy"], "delete,compact",
            "appended to the default"
        );
        let out = apply_ops(out, &[op("cleanup.policy", 3, Some("delete"))]).unwrap();
        assert_eq!(out["cleanup.policy"], "compact");
        assert_eq!(
            apply_ops(start.clone(), &[op("retention.ms", 2, Some("5"))])
                .unwrap_err()
                .0,
            errors::INVALID_CONFIG,
            "append to a non-list"
        );
        assert_eq!(
            apply_ops(start.clone(), &[op("a", 0, Some("1")), op("a", 1, None)])
                .unwrap_err()
                .0,
            errors::INVALID_REQUEST
        );
        assert_eq!(
            apply_ops(start, &[op("a", 9, None)]).unwrap_err().0,
            errors::INVALID_REQUEST
        );
    }
}
