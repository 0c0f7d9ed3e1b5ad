//! The inter-broker channel: Kafka requests one broker sends another, carried by the
//! quorum's call channel on the controller listener (never the client listener, so a client
//! cannot send them): transaction markers, commit markers included (WriteTxnMarkers v1), and
//! KIP-890's verification of a transactional write with its transaction coordinator
//! (AddPartitionsToTxn v4+, `verify_only`).
//!
//! A call body is [`KAFKA_CALL`] followed by a Kafka request frame without its length prefix
//! (decoded by `strata_protocol::decode_inter_broker_request`, which takes only those APIs);
//! the answer is the response frame without its length prefix, or empty when the request
//! could not be decoded. Controller requests share the channel as JSON (never a 0 byte
//! first).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::add_partitions_to_txn_request as aptq;
use kafka_protocol::messages::add_partitions_to_txn_response as apt;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use strata_protocol::{decode_inter_broker_request, Request};
use tracing::warn;

use crate::errors::{self, txn_error_code, Fenced, NONE};
use crate::Broker;

/// First byte of a call carrying a Kafka request.
pub(crate) const KAFKA_CALL: u8 = 0;

/// How long one inter-broker request may take (markers wait for their replicas).
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// Answers one inter-broker Kafka request (the call body after [`KAFKA_CALL`]).
pub(crate) async fn serve(broker: &Arc<Broker>, frame: &[u8]) -> Vec<u8> {
    let decoded = match decode_inter_broker_request(Bytes::copy_from_slice(frame)) {
        Ok(d) => d,
        Err(e) => {
            warn!(error = %e, "undecodable inter-broker request");
            return Vec::new();
        }
    };
    let (key, version, correlation_id) = (
        decoded.api_key,
        decoded.version,
        decoded.header.correlation_id,
    );
    let b = broker.clone();
    let answered = tokio::task::spawn_blocking(move || match decoded.request {
        Request::WriteTxnMarkers(r) => {
            let resp = crate::handlers::txn::write_txn_markers(&b, r, true);
            encode(correlation_id, key, version, &resp)
        }
        Request::AddPartitionsToTxn(r) => {
            let resp = verify_for_broker(&b, r);
            encode(correlation_id, key, version, &resp)
        }
        Request::DescribeQuorum(r) => {
            let resp = crate::handlers::quorum::describe_quorum(&b, r, version, true);
            encode(correlation_id, key, version, &resp)
        }
        _ => Vec::new(),
    })
    .await;
    answered.unwrap_or_default()
}

fn encode(correlation_id: i32, key: ApiKey, version: i16, body: &impl Encodable) -> Vec<u8> {
    match strata_protocol::encode_response(correlation_id, key, version, body) {
        Ok(frame) => frame[strata_protocol::FRAME_LENGTH_BYTES..].to_vec(),
        Err(e) => {
            warn!(error = %e, "could not encode an inter-broker response");
            Vec::new()
        }
    }
}

/// Sends `request` to broker `node` on the inter-broker channel and decodes its answer.
/// Blocking: from a blocking thread.
pub(crate) fn call_blocking<Req: Encodable, Resp: Decodable>(
    broker: &Broker,
    node: i32,
    key: ApiKey,
    version: i16,
    request: &Req,
) -> Result<Resp, String> {
    let quorum = broker
        .quorum()
        .cloned()
        .ok_or_else(|| "not a cluster member".to_string())?;
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_client_id(Some(StrBytes::from_static_str("strata-broker")));
    let frame =
        strata_protocol::encode_request(&header, key, request).map_err(|e| e.to_string())?;
    let mut body = Vec::with_capacity(frame.len() - strata_protocol::FRAME_LENGTH_BYTES + 1);
    body.push(KAFKA_CALL);
    body.extend_from_slice(&frame[strata_protocol::FRAME_LENGTH_BYTES..]);
    let answer = broker
        .block_on_quorum(quorum.call_node(node as u64, body, CALL_TIMEOUT))
        .ok_or_else(|| "not a cluster member".to_string())?
        .map_err(|e| e.to_string())?;
    if answer.is_empty() {
        return Err(format!("broker {node} could not take the request"));
    }
    strata_protocol::decode_response_frame::<Resp>(Bytes::from(answer), key, version)
        .map(|(_, r)| r)
        .map_err(|e| e.to_string())
}

/// KIP-890 across brokers: asks `transactional_id`'s coordinator (broker `node`) whether the
/// producer may write transactionally to each partition now. One code per partition, in
/// order (NONE: verified); a failed call gives every partition a retriable code.
pub(crate) fn verify_remotely(
    broker: &Broker,
    node: i32,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    partitions: &[(String, i32)],
) -> Vec<i16> {
    let mut topics: Vec<aptq::AddPartitionsToTxnTopic> = Vec::new();
    for (topic, p) in partitions {
        match topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
            Some(t) => t.partitions.push(*p),
            None => topics.push(
                aptq::AddPartitionsToTxnTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.clone())))
                    .with_partitions(vec![*p]),
            ),
        }
    }
    let request = AddPartitionsToTxnRequest::default().with_transactions(vec![
        aptq::AddPartitionsToTxnTransaction::default()
            .with_transactional_id(TransactionalId(StrBytes::from_string(
                transactional_id.to_string(),
            )))
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(producer_epoch)
            .with_verify_only(true)
            .with_topics(topics),
    ]);
    let answered: Result<AddPartitionsToTxnResponse, String> =
        call_blocking(broker, node, ApiKey::AddPartitionsToTxn, 4, &request);
    let resp = match answered {
        Ok(r) => r,
        Err(e) => {
            warn!(node, error = %e, "could not verify a transactional write with its coordinator");
            return vec![errors::COORDINATOR_NOT_AVAILABLE; partitions.len()];
        }
    };
    let code_of = |topic: &str, p: i32| -> i16 {
        if resp.error_code != NONE {
            return resp.error_code;
        }
        resp.results_by_transaction
            .iter()
            .flat_map(|t| &t.topic_results)
            .filter(|t| t.name.0.as_str() == topic)
            .flat_map(|t| &t.results_by_partition)
            .find(|r| r.partition_index == p)
            .map_or(errors::UNKNOWN_SERVER_ERROR, |r| r.partition_error_code)
    };
    partitions.iter().map(|(t, p)| code_of(t, *p)).collect()
}

/// AddPartitionsToTxn v4+ from another broker. Only `verify_only` is served (clients add
/// partitions themselves with v0-3): each partition is checked against the producer's
/// ongoing transaction (KIP-890 part 1).
fn verify_for_broker(broker: &Broker, r: AddPartitionsToTxnRequest) -> AddPartitionsToTxnResponse {
    let mut resp = AddPartitionsToTxnResponse::default();
    for t in &r.transactions {
        let id = t.transactional_id.0.as_str();
        let mut result = apt::AddPartitionsToTxnResult::default();
        result.transactional_id = t.transactional_id.clone();
        let inner = broker.txns.lock();
        let coordinates = broker.txn_coordinates(&inner, id);
        for topic in &t.topics {
            let mut tr = apt::AddPartitionsToTxnTopicResult::default();
            tr.name = topic.name.clone();
            for &p in &topic.partitions {
                let code = if !t.verify_only {
                    errors::INVALID_REQUEST
                } else if !coordinates {
                    broker.txn_not_coordinated_code(id)
                } else {
                    match crate::txn::verify_write(
                        &inner,
                        id,
                        t.producer_id.0,
                        t.producer_epoch,
                        &topic.name,
                        p,
                    ) {
                        Ok(()) => NONE,
                        Err(e) => txn_error_code(&e, Fenced::ProducerFenced),
                    }
                };
                tr.results_by_partition.push(
                    apt::AddPartitionsToTxnPartitionResult::default()
                        .with_partition_index(p)
                        .with_partition_error_code(code),
                );
            }
            result.topic_results.push(tr);
        }
        resp.results_by_transaction.push(result);
    }
    resp
}

/// First byte of a call asking which data directory a node id is registered with (sent by
/// a member starting without raft state, before it joins the quorum).
pub(crate) const IDENTITY_CALL: u8 = 1;

#[derive(serde::Serialize, serde::Deserialize)]
struct IdentityQuery {
    node_id: i32,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct IdentityAnswer {
    directory_id: Option<uuid::Uuid>,
}

/// Answers an identity query from this member's latest metadata image.
pub(crate) fn identity_answer(broker: &Broker, body: &[u8]) -> Vec<u8> {
    let Ok(q) = serde_json::from_slice::<IdentityQuery>(body) else {
        return Vec::new();
    };
    let directory_id = broker.quorum().and_then(|quorum| {
        quorum
            .image()
            .broker(q.node_id)
            .and_then(|b| b.directory_id)
    });
    serde_json::to_vec(&IdentityAnswer { directory_id }).unwrap_or_default()
}

/// A member starting without raft state (a new node, or one whose directory was wiped)
/// asks the other voters which directory its node id is registered with: if the cluster
/// knows it with another directory, this one lost that node's data (its raft vote and log,
/// its replicas), and joining would let the quorum and the ISRs count on data that is gone.
/// Refused then; unreachable peers (the whole cluster starting) are no objection.
pub(crate) async fn refuse_a_wiped_directory(
    voters: &std::collections::BTreeMap<u64, String>,
    node_id: i32,
    directory_id: Option<uuid::Uuid>,
    transport: &std::sync::Arc<strata_quorum::transport::Transport>,
) -> Result<(), String> {
    let Some(ours) = directory_id else {
        return Ok(());
    };
    let mut body = vec![IDENTITY_CALL];
    body.extend(serde_json::to_vec(&IdentityQuery { node_id }).unwrap_or_default());
    let answers = strata_quorum::ask_peers(
        voters,
        node_id as u64,
        &body,
        Duration::from_secs(2),
        transport,
    )
    .await;
    for (peer, answer) in answers {
        let Ok(answer) = answer else { continue };
        let Ok(answer) = serde_json::from_slice::<IdentityAnswer>(&answer) else {
            continue;
        };
        if let Some(registered) = answer.directory_id.filter(|d| *d != ours) {
            return Err(format!(
                "node {node_id} is registered in the cluster with data directory {registered} \
                 (node {peer} says so), but this data directory ({ours}) has no metadata quorum \
                 state: it is new or was wiped, and the data the cluster counts on for node \
                 {node_id} is gone. A node id is never reused by another directory: start this \
                 node with a new node id (and move the old one's replicas away)"
            ));
        }
    }
    Ok(())
}
