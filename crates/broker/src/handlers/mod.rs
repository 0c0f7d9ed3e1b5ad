//! One module per API. Each handler takes the shared [`Broker`] and a decoded request and
//! returns the response body; [`dispatch`] encodes it. Produce does its appends before
//! returning its future, so appends happen in the order requests arrived on a connection.

mod acls;
mod admin;
mod api_versions;
mod authorize;
mod client_quotas;
mod configs;
mod describe;
pub(crate) mod fetch;
mod groups;
mod list_offsets;
mod log_dirs;
mod metadata;
mod produce;
pub(crate) mod quorum;
pub(crate) mod scram;
pub(crate) mod txn;

/// The handlers the HTTP admin API calls with a request it built, once it has checked what
/// the connection would have checked (`authorize`): the same validation and the same
/// metadata records as through the Kafka listener.
pub mod direct {
    pub use super::acls::{create as create_acls, delete as delete_acls};
    pub use super::client_quotas::alter as alter_client_quotas;
    pub use super::scram::{
        alter as alter_user_scram_credentials, describe as describe_user_scram_credentials,
    };
}

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::{Encodable, StrBytes};
use strata_protocol::{encode_response, Request, RequestFrame};
use tracing::warn;

use crate::errors;
use crate::quotas;
use crate::Broker;

/// What a request produced: a response frame, nothing (acks=0), or a failure that closes the
/// connection (a client waiting for an answer that will never come is worse).
#[derive(Debug)]
pub enum Outcome {
    Respond(Bytes),
    /// A response in pieces, some of them file ranges sent with sendfile (fetch).
    RespondParts(Vec<crate::zero_copy::Part>),
    NoResponse,
    Close,
}

/// A response still being worked on.
pub type PendingResponse = Pin<Box<dyn Future<Output = Outcome> + Send>>;

pub(crate) fn encode<R: Encodable>(
    correlation_id: i32,
    key: ApiKey,
    version: i16,
    body: &R,
) -> Outcome {
    match encode_response(correlation_id, key, version, body) {
        Ok(b) => Outcome::Respond(b),
        Err(e) => {
            warn!(api = ?key, version, error = %e, "could not encode response; closing the connection");
            Outcome::Close
        }
    }
}

/// Encodes a fetch response, splicing its file ranges in as sendfile parts.
fn encode_fetch(correlation_id: i32, version: i16, prepared: fetch::Prepared) -> Outcome {
    if prepared.ranges.is_empty() {
        return encode(correlation_id, ApiKey::Fetch, version, &prepared.response);
    }
    let frame = match encode(correlation_id, ApiKey::Fetch, version, &prepared.response) {
        Outcome::Respond(frame) => frame,
        other => return other,
    };
    let flexible = ApiKey::Fetch.request_header_version(version) >= 2;
    match crate::zero_copy::splice(frame, &prepared.marker, flexible, prepared.ranges.clone()) {
        Some(parts) => Outcome::RespondParts(parts),
        None => match prepared.fill_records() {
            Ok(resp) => encode(correlation_id, ApiKey::Fetch, version, &resp),
            Err(e) => {
                warn!(error = %e, "fetch read failed; closing the connection");
                Outcome::Close
            }
        },
    }
}

fn ready(b: Outcome) -> PendingResponse {
    Box::pin(async move { b })
}

pub(crate) fn str(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// Starts handling one request. Work that must happen in arrival order (produce appends)
/// is done before this returns; the rest runs in the returned future.
pub fn dispatch(
    broker: &Arc<Broker>,
    frame: RequestFrame,
    context: &crate::connection::ConnectionContext,
) -> PendingResponse {
    let peer = context.peer;
    let RequestFrame {
        api_key,
        version,
        header,
        request,
    } = frame;
    let cid = header.correlation_id;
    let client_id = || {
        header
            .client_id
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_default()
    };
    // Kafka's form of a member's host.
    let client_host = || format!("/{}", peer.ip());
    let authz = broker.authz(context);
    if let Some(denied) = authorize::cluster_denied(&authz, &request, cid, api_key, version)
        .or_else(|| authorize::resource_denied(&authz, &request, cid, api_key, version))
    {
        return ready(denied);
    }
    match request {
        Request::ApiVersions(_) => ready(encode(
            cid,
            api_key,
            version,
            &api_versions::handle(version, false),
        )),
        // A SASL listener's connection answers these itself (see `sasl.rs`); on any other
        // listener they are out of place, as in Kafka.
        Request::SaslHandshake(_) => ready(encode(
            cid,
            api_key,
            version,
            &kafka_protocol::messages::SaslHandshakeResponse::default()
                .with_error_code(crate::errors::ILLEGAL_SASL_STATE),
        )),
        Request::SaslAuthenticate(_) => ready(encode(
            cid,
            api_key,
            version,
            &kafka_protocol::messages::SaslAuthenticateResponse::default()
                .with_error_code(crate::errors::ILLEGAL_SASL_STATE)
                .with_error_message(Some(str(&format!(
                    "listener {} does not use SASL",
                    context.listener
                )))),
        )),
        Request::DescribeUserScramCredentials(r) => {
            ready(encode(cid, api_key, version, &scram::describe(broker, r)))
        }
        Request::AlterUserScramCredentials(r) => blocking(broker, move |b| {
            encode(cid, api_key, version, &scram::alter(&b, r))
        }),
        Request::CreateAcls(r) => blocking(broker, move |b| {
            encode(cid, api_key, version, &acls::create(&b, r))
        }),
        Request::DescribeAcls(r) => {
            ready(encode(cid, api_key, version, &acls::describe(broker, r)))
        }
        Request::DeleteAcls(r) => blocking(broker, move |b| {
            encode(cid, api_key, version, &acls::delete(&b, r))
        }),
        Request::DescribeClientQuotas(r) => ready(encode(
            cid,
            api_key,
            version,
            &client_quotas::describe(broker, r),
        )),
        Request::AlterClientQuotas(r) => blocking(broker, move |b| {
            encode(cid, api_key, version, &client_quotas::alter(&b, r))
        }),
        Request::ApiVersionsTooNew => {
            ready(encode(cid, api_key, 0, &api_versions::handle(0, true)))
        }
        Request::Metadata(r) => ready(encode(
            cid,
            api_key,
            version,
            &metadata::handle(broker, r, version, &context.listener, &authz),
        )),
        Request::Produce(r) => {
            let bytes: usize = r
                .topic_data
                .iter()
                .flat_map(|t| &t.partition_data)
                .filter_map(|p| p.records.as_ref().map(|b| b.len()))
                .sum();
            let throttle = quota(
                broker,
                context,
                quotas::PRODUCER_BYTE_RATE,
                &client_id(),
                bytes,
            );
            produce::handle(
                broker,
                r,
                version,
                cid,
                context.listener.clone(),
                &authz,
                throttle,
            )
        }
        Request::Fetch(r) => {
            let b = broker.clone();
            let authz = authz.clone();
            let (context, client_id) = (context.clone(), client_id());
            Box::pin(async move {
                let consumer = r.replica_id.0 < 0 && r.replica_state.replica_id.0 < 0;
                let mut prepared = fetch::handle(&b, r, version, &authz).await;
                if consumer {
                    let bytes = prepared.ranges.iter().map(|s| s.bytes).sum::<usize>()
                        + prepared
                            .response
                            .responses
                            .iter()
                            .flat_map(|t| &t.partitions)
                            .filter_map(|p| p.records.as_ref().map(|r| r.len()))
                            .sum::<usize>();
                    let throttle =
                        quota(&b, &context, quotas::CONSUMER_BYTE_RATE, &client_id, bytes);
                    prepared.response.throttle_time_ms = throttle;
                }
                encode_fetch(cid, version, prepared)
            })
        }
        Request::ListOffsets(r) => ready(encode(
            cid,
            api_key,
            version,
            &list_offsets::handle(broker, r, version, &authz),
        )),
        Request::OffsetForLeaderEpoch(r) => ready(encode(
            cid,
            api_key,
            version,
            &list_offsets::offset_for_leader_epoch(broker, r, &authz),
        )),
        Request::CreateTopics(mut r) => {
            let denied = authorize::create_topics(&authz, &mut r);
            let (context, client_id) = (context.clone(), client_id());
            blocking(broker, move |b| {
                // KIP-599: over the controller mutation rate, v6+ is refused (older clients
                // cannot tell, so they are only throttled).
                let over = mutation_throttle(&b, &context, &client_id);
                let mut resp = if over > 0 && version >= 6 && !r.validate_only {
                    throttled_create_topics(&r, over)
                } else {
                    let partitions: i64 = r
                        .topics
                        .iter()
                        .map(|t| {
                            if t.num_partitions > 0 {
                                t.num_partitions as i64
                            } else if !t.assignments.is_empty() {
                                t.assignments.len() as i64
                            } else {
                                b.config.num_partitions as i64
                            }
                        })
                        .sum();
                    let validate_only = r.validate_only;
                    let mut resp = admin::create_topics(&b, r, version);
                    if !validate_only {
                        let made = resp
                            .topics
                            .iter()
                            .filter(|t| t.error_code == errors::NONE)
                            .count();
                        if made > 0 {
                            record_mutations(&b, &context, &client_id, partitions);
                        }
                    }
                    resp.throttle_time_ms = over;
                    resp
                };
                resp.topics.extend(denied);
                encode(cid, api_key, version, &resp)
            })
        }
        Request::DeleteTopics(mut r) => {
            let denied = authorize::delete_topics(&authz, &broker.image(), &mut r);
            let (context, client_id) = (context.clone(), client_id());
            blocking(broker, move |b| {
                let over = mutation_throttle(&b, &context, &client_id);
                let image = b.image();
                let partitions: i64 = r
                    .topic_names
                    .iter()
                    .map(|n| n.0.to_string())
                    .chain(r.topics.iter().filter_map(|t| {
                        t.name
                            .as_ref()
                            .map(|n| n.0.to_string())
                            .or_else(|| image.topic_by_id(&t.topic_id).map(|t| t.name.clone()))
                    }))
                    .filter_map(|n| image.topic(&n).map(|t| t.partitions.len() as i64))
                    .sum();
                let mut resp = admin::delete_topics(&b, r, version);
                if over > 0 && version >= 5 {
                    // Deleting is let through even then (it frees resources); the client
                    // is told to slow down.
                    resp.throttle_time_ms = over;
                }
                record_mutations(&b, &context, &client_id, partitions);
                resp.responses.extend(denied);
                encode(cid, api_key, version, &resp)
            })
        }
        Request::CreatePartitions(mut r) => {
            let denied = authorize::create_partitions(&authz, &mut r);
            let (context, client_id) = (context.clone(), client_id());
            blocking(broker, move |b| {
                let over = mutation_throttle(&b, &context, &client_id);
                let mut resp = if over > 0 && version >= 3 && !r.validate_only {
                    let mut resp = kafka_protocol::messages::CreatePartitionsResponse::default();
                    resp.throttle_time_ms = over;
                    resp.results = r
                        .topics
                        .iter()
                        .map(|t| {
                            kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult::default()
                                .with_name(t.name.clone())
                                .with_error_code(errors::THROTTLING_QUOTA_EXCEEDED)
                                .with_error_message(Some(str("controller_mutation_rate exceeded")))
                        })
                        .collect();
                    resp
                } else {
                    let image = b.image();
                    let added: i64 = r
                        .topics
                        .iter()
                        .filter_map(|t| {
                            image
                                .topic(&t.name.0)
                                .map(|x| (t.count as i64 - x.partitions.len() as i64).max(0))
                        })
                        .sum();
                    let validate_only = r.validate_only;
                    let mut resp = admin::create_partitions(&b, r);
                    if !validate_only {
                        record_mutations(&b, &context, &client_id, added);
                    }
                    resp.throttle_time_ms = over;
                    resp
                };
                resp.results.extend(denied);
                encode(cid, api_key, version, &resp)
            })
        }
        Request::DeleteRecords(mut r) => {
            let denied = authorize::delete_records(&authz, &mut r);
            blocking(broker, move |b| {
                let mut resp = log_dirs::delete_records(&b, r);
                resp.topics.extend(denied);
                encode(cid, api_key, version, &resp)
            })
        }
        Request::DescribeQuorum(r) => blocking(broker, move |b| {
            encode(
                cid,
                api_key,
                version,
                &quorum::describe_quorum(&b, r, version, false),
            )
        }),
        Request::DescribeLogDirs(r) => blocking(broker, move |b| {
            encode(cid, api_key, version, &log_dirs::describe_log_dirs(&b, r))
        }),
        Request::AlterConfigs(mut r) => {
            let denied = authorize::alter_configs(&authz, &mut r);
            blocking(broker, move |b| {
                let mut resp = configs::alter_configs(&b, r);
                resp.responses.extend(denied);
                encode(cid, api_key, version, &resp)
            })
        }
        Request::IncrementalAlterConfigs(mut r) => {
            let denied = authorize::incremental_alter_configs(&authz, &mut r);
            blocking(broker, move |b| {
                let mut resp = configs::incremental_alter_configs(&b, r);
                resp.responses.extend(denied);
                encode(cid, api_key, version, &resp)
            })
        }
        Request::DescribeConfigs(mut r) => {
            let denied = authorize::describe_configs(&authz, &mut r);
            let mut resp = describe::describe_configs(broker, r);
            resp.results.extend(denied);
            ready(encode(cid, api_key, version, &resp))
        }
        Request::DescribeCluster(r) => {
            let include = r.include_cluster_authorized_operations;
            let mut resp = describe::describe_cluster(broker, r, &context.listener);
            if include {
                resp.cluster_authorized_operations = authz.authorized_operations(
                    strata_security::acl::ResourceType::Cluster,
                    strata_security::acl::CLUSTER_NAME,
                );
            }
            ready(encode(cid, api_key, version, &resp))
        }
        Request::InitProducerId(r) => blocking(broker, move |b| {
            encode(
                cid,
                api_key,
                version,
                &txn::init_producer_id(&b, r, version),
            )
        }),
        Request::AddPartitionsToTxn(r) => {
            if let Some(denied) = authorize::add_partitions_to_txn(&authz, &r, version) {
                return ready(encode(cid, api_key, version, &denied));
            }
            blocking(broker, move |b| {
                encode(
                    cid,
                    api_key,
                    version,
                    &txn::add_partitions_to_txn(&b, r, version),
                )
            })
        }
        Request::AddOffsetsToTxn(r) => blocking(broker, move |b| {
            encode(
                cid,
                api_key,
                version,
                &txn::add_offsets_to_txn(&b, r, version),
            )
        }),
        Request::TxnOffsetCommit(mut r) => {
            let b = broker.clone();
            let denied = authorize::txn_offset_commit(&authz, &mut r);
            Box::pin(async move {
                let mut resp = if r.topics.is_empty() && !denied.is_empty() {
                    Default::default()
                } else {
                    b.settle_group_coordination(&[&r.group_id]).await;
                    txn::txn_offset_commit(b, r, version).await
                };
                resp.topics.extend(denied);
                encode(cid, api_key, version, &resp)
            })
        }
        Request::EndTxn(r) => blocking(broker, move |b| {
            encode(cid, api_key, version, &txn::end_txn(&b, r, version))
        }),
        Request::DescribeTransactions(r) => {
            let mut resp = txn::describe_transactions(broker, r);
            authorize::describe_transactions(&authz, &mut resp);
            ready(encode(cid, api_key, version, &resp))
        }
        Request::AlterPartitionReassignments(r) => blocking(broker, move |b| {
            encode(
                cid,
                api_key,
                version,
                &admin::alter_partition_reassignments(&b, r),
            )
        }),
        Request::ListPartitionReassignments(r) => ready(encode(
            cid,
            api_key,
            version,
            &admin::list_partition_reassignments(broker, r),
        )),
        Request::ElectLeaders(r) => blocking(broker, move |b| {
            encode(cid, api_key, version, &admin::elect_leaders(&b, r, version))
        }),
        Request::WriteTxnMarkers(r) => blocking(broker, move |b| {
            encode(cid, api_key, version, &txn::write_txn_markers(&b, r, false))
        }),
        Request::ListTransactions(r) => {
            let mut resp = txn::list_transactions(broker, r);
            authorize::list_transactions(&authz, &mut resp);
            ready(encode(cid, api_key, version, &resp))
        }
        Request::FindCoordinator(r) => {
            let listener = context.listener.clone();
            let authz = authz.clone();
            blocking(broker, move |b| {
                let asked = r.clone();
                let mut resp = groups::find_coordinator(&b, r, version, &listener);
                authorize::find_coordinator(&authz, &asked, &mut resp, version);
                encode(cid, api_key, version, &resp)
            })
        }
        Request::JoinGroup(r) => {
            let (b, client_id, client_host) = (broker.clone(), client_id(), client_host());
            Box::pin(async move {
                b.settle_group_coordination(&[&r.group_id]).await;
                let resp = groups::join_group(b, r, version, client_id, client_host).await;
                encode(cid, api_key, version, &resp)
            })
        }
        Request::SyncGroup(r) => {
            let b = broker.clone();
            Box::pin(async move {
                b.settle_group_coordination(&[&r.group_id]).await;
                encode(
                    cid,
                    api_key,
                    version,
                    &groups::sync_group(b, r, version).await,
                )
            })
        }
        Request::Heartbeat(r) => {
            let b = broker.clone();
            Box::pin(async move {
                b.settle_group_coordination(&[&r.group_id]).await;
                encode(cid, api_key, version, &groups::heartbeat(b, r).await)
            })
        }
        Request::LeaveGroup(r) => {
            let b = broker.clone();
            Box::pin(async move {
                b.settle_group_coordination(&[&r.group_id]).await;
                encode(
                    cid,
                    api_key,
                    version,
                    &groups::leave_group(b, r, version).await,
                )
            })
        }
        Request::OffsetCommit(mut r) => {
            let b = broker.clone();
            let denied = authorize::offset_commit(&authz, &mut r);
            Box::pin(async move {
                let mut resp = if r.topics.is_empty() && !denied.is_empty() {
                    Default::default()
                } else {
                    b.settle_group_coordination(&[&r.group_id]).await;
                    groups::offset_commit(b, r).await
                };
                resp.topics.extend(denied);
                encode(cid, api_key, version, &resp)
            })
        }
        Request::OffsetFetch(r) => {
            let b = broker.clone();
            let authz = authz.clone();
            Box::pin(async move {
                let ids: Vec<&str> = if version >= 8 {
                    r.groups.iter().map(|g| &**g.group_id).collect()
                } else {
                    vec![&*r.group_id]
                };
                b.settle_group_coordination(&ids).await;
                let asked_all: Vec<bool> = if version >= 8 {
                    r.groups.iter().map(|g| g.topics.is_none()).collect()
                } else {
                    vec![r.topics.is_none()]
                };
                let group_id = r.group_id.to_string();
                let mut resp = groups::offset_fetch(&b, r, version);
                authorize::offset_fetch(&authz, &asked_all, &mut resp, &group_id, version);
                encode(cid, api_key, version, &resp)
            })
        }
        Request::OffsetDelete(mut r) => {
            let denied = match authorize::offset_delete(&authz, &mut r) {
                Ok(denied) => denied,
                Err(code) => {
                    let resp = kafka_protocol::messages::OffsetDeleteResponse::default()
                        .with_error_code(code);
                    return ready(encode(cid, api_key, version, &resp));
                }
            };
            let b = broker.clone();
            Box::pin(async move {
                b.settle_group_coordination(&[&r.group_id]).await;
                let mut resp = groups::offset_delete(b, r).await;
                resp.topics.extend(denied);
                encode(cid, api_key, version, &resp)
            })
        }
        Request::DescribeGroups(r) => {
            let include = version >= 3 && r.include_authorized_operations;
            let mut resp = groups::describe_groups(broker, r);
            authorize::describe_groups(&authz, &mut resp, include);
            ready(encode(cid, api_key, version, &resp))
        }
        Request::ListGroups(r) => {
            let mut resp = groups::list_groups(broker, r);
            authorize::list_groups(&authz, &mut resp);
            ready(encode(cid, api_key, version, &resp))
        }
        Request::DeleteGroups(mut r) => {
            let denied = authorize::delete_groups(&authz, &mut r);
            let b = broker.clone();
            Box::pin(async move {
                let mut resp = groups::delete_groups(b, r).await;
                resp.results.extend(denied);
                encode(cid, api_key, version, &resp)
            })
        }
        Request::ConsumerGroupHeartbeat(r) => {
            let (b, client_id, client_host) = (broker.clone(), client_id(), client_host());
            Box::pin(async move {
                b.settle_group_coordination(&[&r.group_id]).await;
                let resp =
                    groups::consumer_group_heartbeat(b, r, version, client_id, client_host).await;
                encode(cid, api_key, version, &resp)
            })
        }
        Request::DescribeProducers(r) => {
            let mut resp = describe::describe_producers(broker, r);
            authorize::describe_producers(&authz, &mut resp);
            ready(encode(cid, api_key, version, &resp))
        }
        Request::ConsumerGroupDescribe(r) => {
            let include = r.include_authorized_operations;
            let mut resp = groups::consumer_group_describe(broker, r);
            authorize::consumer_group_describe(&authz, &mut resp, include);
            ready(encode(cid, api_key, version, &resp))
        }
    }
}

/// Records `bytes` against the connection's `key` quota: the throttle time in ms for the
/// response (0: within quota or none set), and the connection muted for that long.
fn quota(
    broker: &Broker,
    context: &crate::connection::ConnectionContext,
    key: &'static str,
    client_id: &str,
    bytes: usize,
) -> i32 {
    let image = broker.image();
    if image.client_quotas().is_empty() {
        return 0;
    }
    let throttle = broker.quotas.record(
        &image,
        key,
        quotas::quota_user(&context.principal),
        client_id,
        bytes as f64,
        std::time::Instant::now(),
    );
    context.mute_for(throttle);
    throttle.as_millis().min(i32::MAX as u128) as i32
}

/// How long the connection's entity is over its `controller_mutation_rate` (ms; 0: not).
fn mutation_throttle(
    broker: &Broker,
    context: &crate::connection::ConnectionContext,
    client_id: &str,
) -> i32 {
    let image = broker.image();
    if image.client_quotas().is_empty() {
        return 0;
    }
    let over = broker.quotas.over(
        &image,
        quotas::CONTROLLER_MUTATION_RATE,
        quotas::quota_user(&context.principal),
        client_id,
        std::time::Instant::now(),
    );
    over.as_millis().min(i32::MAX as u128) as i32
}

/// Counts partitions created or deleted against the controller mutation rate (KIP-599).
fn record_mutations(
    broker: &Broker,
    context: &crate::connection::ConnectionContext,
    client_id: &str,
    partitions: i64,
) {
    let image = broker.image();
    if partitions <= 0 || image.client_quotas().is_empty() {
        return;
    }
    broker.quotas.record(
        &image,
        quotas::CONTROLLER_MUTATION_RATE,
        quotas::quota_user(&context.principal),
        client_id,
        partitions as f64,
        std::time::Instant::now(),
    );
}

/// CreateTopics refused whole: the entity is over its controller mutation rate.
fn throttled_create_topics(
    r: &kafka_protocol::messages::CreateTopicsRequest,
    throttle_ms: i32,
) -> kafka_protocol::messages::CreateTopicsResponse {
    use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
    let mut resp = kafka_protocol::messages::CreateTopicsResponse::default();
    resp.throttle_time_ms = throttle_ms;
    resp.topics = r
        .topics
        .iter()
        .map(|t| {
            CreatableTopicResult::default()
                .with_name(t.name.clone())
                .with_error_code(errors::THROTTLING_QUOTA_EXCEEDED)
                .with_error_message(Some(str("controller_mutation_rate exceeded")))
                .with_num_partitions(-1)
                .with_replication_factor(-1)
        })
        .collect();
    resp
}

/// Runs a handler that syncs files (metadata changes) off the async worker threads.
fn blocking(
    broker: &Arc<Broker>,
    f: impl FnOnce(Arc<Broker>) -> Outcome + Send + 'static,
) -> PendingResponse {
    let b = broker.clone();
    Box::pin(async move {
        match crate::quotas::offload(move || f(b)).await {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %e, "admin handler failed");
                Outcome::Close
            }
        }
    })
}
