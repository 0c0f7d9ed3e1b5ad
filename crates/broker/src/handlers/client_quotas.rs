//! DescribeClientQuotas and AlterClientQuotas (KIP-546): client quotas are cluster metadata,
//! one record per (entity, key). (The caller checks DESCRIBE_CONFIGS / ALTER_CONFIGS on the
//! cluster, as Kafka does.)

use std::sync::Arc;

use kafka_protocol::messages::{
    alter_client_quotas_response, describe_client_quotas_response, AlterClientQuotasRequest,
    AlterClientQuotasResponse, DescribeClientQuotasRequest, DescribeClientQuotasResponse,
};
use strata_cluster::{MetadataRecord, QuotaValue};
use tracing::info;

use super::str;
use crate::errors;
use crate::quotas::{self, Entity};
use crate::Broker;

const MATCH_EXACT: i8 = 0;
const MATCH_DEFAULT: i8 = 1;
const MATCH_ANY: i8 = 2;

pub fn describe(
    broker: &Arc<Broker>,
    r: DescribeClientQuotasRequest,
) -> DescribeClientQuotasResponse {
    let fail = |m: String| {
        DescribeClientQuotasResponse::default()
            .with_error_code(errors::INVALID_REQUEST)
            .with_error_message(Some(str(&m)))
    };
    let mut seen = std::collections::BTreeSet::new();
    for c in &r.components {
        if !seen.insert(c.entity_type.to_string()) {
            return fail(format!(
                "Duplicate filter component entity type {}",
                c.entity_type
            ));
        }
        if !(MATCH_EXACT..=MATCH_ANY).contains(&c.match_type) {
            return fail(format!("Unknown match type {}", c.match_type));
        }
        if c.match_type == MATCH_EXACT && c._match.is_none() {
            return fail("An exact match needs a name".into());
        }
    }
    let image = broker.image();
    let entries = image
        .client_quotas()
        .iter()
        .filter(|q| {
            let covered = r.components.iter().all(|c| {
                let Some((_, name)) = q.entity.iter().find(|(t, _)| *t == c.entity_type.as_str())
                else {
                    return false;
                };
                match c.match_type {
                    MATCH_EXACT => name.as_deref() == c._match.as_deref(),
                    MATCH_DEFAULT => name.is_none(),
                    _ => true,
                }
            });
            covered && (!r.strict || q.entity.len() == r.components.len())
        })
        .map(|q| {
            describe_client_quotas_response::EntryData::default()
                .with_entity(
                    q.entity
                        .iter()
                        .map(|(t, n)| {
                            describe_client_quotas_response::EntityData::default()
                                .with_entity_type(str(t))
                                .with_entity_name(n.as_deref().map(str))
                        })
                        .collect(),
                )
                .with_values(
                    q.values
                        .iter()
                        .map(|(k, v)| {
                            describe_client_quotas_response::ValueData::default()
                                .with_key(str(k))
                                .with_value(v.0)
                        })
                        .collect(),
                )
        })
        .collect();
    DescribeClientQuotasResponse::default().with_entries(Some(entries))
}

pub fn alter(broker: &Arc<Broker>, r: AlterClientQuotasRequest) -> AlterClientQuotasResponse {
    let mut results = Vec::with_capacity(r.entries.len());
    let mut records = Vec::new();
    let mut accepted = Vec::new();
    for entry in &r.entries {
        let entity: Entity = quotas::canonical(
            entry
                .entity
                .iter()
                .map(|e| {
                    (
                        e.entity_type.to_string(),
                        e.entity_name.as_ref().map(|n| n.to_string()),
                    )
                })
                .collect(),
        );
        let result_entity = entry
            .entity
            .iter()
            .map(|e| {
                alter_client_quotas_response::EntityData::default()
                    .with_entity_type(e.entity_type.clone())
                    .with_entity_name(e.entity_name.clone())
            })
            .collect();
        let mut result =
            alter_client_quotas_response::EntryData::default().with_entity(result_entity);
        let mut keys = std::collections::BTreeSet::new();
        let duplicate_type = entity.windows(2).any(|w| w[0].0 == w[1].0);
        let why = if duplicate_type {
            Some("An entity names a type twice".to_string())
        } else {
            entry.ops.iter().find_map(|op| {
                if !keys.insert(op.key.to_string()) {
                    return Some(format!("Duplicate quota key {}", op.key));
                }
                quotas::invalid(&entity, &op.key, (!op.remove).then_some(op.value))
            })
        };
        match why {
            Some(m) => {
                result.error_code = errors::INVALID_REQUEST;
                result.error_message = Some(str(&m));
            }
            None => {
                for op in &entry.ops {
                    records.push(MetadataRecord::ClientQuota {
                        entity: entity.clone(),
                        key: op.key.to_string(),
                        value: (!op.remove).then_some(QuotaValue(op.value)),
                    });
                }
                accepted.push(results.len());
            }
        }
        results.push(result);
    }
    if !r.validate_only && !records.is_empty() {
        let metadata = broker.metadata();
        if let Err(e) = broker.commit_metadata(metadata, &records) {
            for i in accepted {
                results[i].error_code = e.code();
                results[i].error_message = Some(str(&e.to_string()));
            }
        } else {
            info!(changes = records.len(), "client quotas changed");
        }
    }
    AlterClientQuotasResponse::default().with_entries(results)
}

impl Broker {
    /// Sets (or with None removes) one client quota: AlterClientQuotas' effect, for
    /// embedding and tests.
    pub fn commit_client_quota(
        &self,
        entity: quotas::Entity,
        key: &str,
        value: Option<f64>,
    ) -> Result<(), crate::state::TopicError> {
        let entity = quotas::canonical(entity);
        if let Some(why) = quotas::invalid(&entity, key, value) {
            return Err(crate::state::TopicError::InvalidConfig(why));
        }
        let metadata = self.metadata();
        self.commit_metadata(
            metadata,
            &[MetadataRecord::ClientQuota {
                entity,
                key: key.to_string(),
                value: value.map(QuotaValue),
            }],
        )
        .map(|_| ())
    }
}
