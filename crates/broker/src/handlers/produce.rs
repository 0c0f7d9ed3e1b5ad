//! Produce: validate and append every partition's batches now (in arrival order), then wait
//! for durability (acks=1/all in durable mode: the group-committed fdatasync) and answer.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse};
use strata_storage::Partition;
use tracing::warn;

use super::{encode, str, PendingResponse};
use crate::authorizer::Authz;
use crate::errors;
use crate::Broker;
use strata_security::acl::Operation;

struct Appended {
    partition: Arc<Partition>,
    /// Offset one past the last appended record: what must be synced before acknowledging.
    end_offset: i64,
}

/// A partition write in the topic's metrics: its bytes and records, or a failure.
fn record_produce(
    broker: &Broker,
    topic: &str,
    bytes: usize,
    appended: Option<&strata_storage::AppendInfo>,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let stats = broker.metrics.topic(topic);
    match appended {
        Some(info) => {
            stats.bytes_in.fetch_add(bytes as u64, Relaxed);
            stats
                .messages_in
                .fetch_add(info.records.max(0) as u64, Relaxed);
        }
        None => {
            stats.failed_produce.fetch_add(1, Relaxed);
        }
    }
}

fn failed(index: i32, code: i16, message: Option<String>) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(code)
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
        .with_error_message(message.map(|m| str(&m)))
}

/// Why a partition's records were refused: the error code, a message, and (KIP-467) which
/// records (by index in the partition's record set) caused it.
struct Refusal {
    code: i16,
    message: String,
    record_errors: Vec<(i32, String)>,
}

impl Refusal {
    fn new(code: i16, message: String) -> Self {
        Refusal {
            code,
            message,
            record_errors: Vec::new(),
        }
    }

    fn storage(e: &strata_storage::StorageError) -> Self {
        Refusal {
            code: errors::storage_error_code(e),
            message: e.to_string(),
            record_errors: e.record_errors(),
        }
    }

    fn response(self, index: i32) -> PartitionProduceResponse {
        let record_errors = self
            .record_errors
            .into_iter()
            .map(|(i, m)| {
                BatchIndexAndErrorMessage::default()
                    .with_batch_index(i)
                    .with_batch_index_error_message(Some(str(&m)))
            })
            .collect();
        failed(index, self.code, Some(self.message)).with_record_errors(record_errors)
    }
}

pub fn handle(
    broker: &Arc<Broker>,
    req: ProduceRequest,
    version: i16,
    correlation_id: i32,
    listener: Arc<str>,
    authz: &Authz,
    throttle_time_ms: i32,
) -> PendingResponse {
    let acks = req.acks;
    let transactional_id = req.transactional_id.as_ref().map(|t| t.0.to_string());
    let txn_denied = transactional_id
        .as_ref()
        .is_some_and(|id| !authz.transactional_id(Operation::Write, id));
    let mut responses = Vec::with_capacity(req.topic_data.len());
    let mut appended: Vec<Appended> = Vec::new();
    let mut remote: Vec<RemoteVerified> = Vec::new();
    let valid_acks = matches!(acks, -1..=1);
    for topic in req.topic_data {
        let name = topic.name.0.to_string();
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        let denied = if txn_denied {
            Some(errors::TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
        } else if !authz.topic(Operation::Write, &name) {
            Some(errors::TOPIC_AUTHORIZATION_FAILED)
        } else {
            None
        };
        for data in topic.partition_data {
            let index = data.index;
            if !valid_acks {
                partitions.push(failed(index, errors::INVALID_REQUIRED_ACKS, None));
                continue;
            }
            if let Some(code) = denied {
                partitions.push(failed(index, code, None));
                continue;
            }
            if crate::state::is_internal_topic(&name) {
                // Only the coordinators write their internal topics (as in Kafka).
                partitions.push(failed(index, errors::INVALID_TOPIC, None));
                continue;
            }
            let Some(partition) = broker.partition(&name, index) else {
                let code = broker.missing_partition_error(&name, index);
                partitions.push(failed(index, code, None));
                continue;
            };
            if !partition.is_leader() {
                partitions.push(failed(index, errors::NOT_LEADER_OR_FOLLOWER, None));
                continue;
            }
            if acks == -1 {
                // Nothing is taken that too few replicas would hold (Kafka refuses up front).
                let (isr, min_isr) = partition.isr();
                if isr.len() < min_isr {
                    partitions.push(failed(
                        index,
                        errors::NOT_ENOUGH_REPLICAS,
                        Some(format!(
                            "{} in-sync replicas, min.insync.replicas is {min_isr}",
                            isr.len()
                        )),
                    ));
                    continue;
                }
            }
            let Some(records) = data.records else {
                partitions.push(failed(
                    index,
                    errors::INVALID_RECORD,
                    Some("no records".into()),
                ));
                continue;
            };
            // Written from the request buffer as it came; only batch headers are patched
            // (base offset, leader epoch), on copies.
            let transactional = transactional_producer(&records);
            if let (Some((producer_id, producer_epoch)), Some(id)) =
                (transactional, transactional_id.as_deref())
            {
                if let Some(coordinator) = remote_coordinator(broker, id) {
                    // Verified with the coordinator on another broker, then appended.
                    partitions.push(failed(index, errors::UNKNOWN_SERVER_ERROR, None));
                    remote.push(RemoteVerified {
                        topic_slot: responses.len(),
                        partition_slot: partitions.len() - 1,
                        index,
                        partition,
                        records,
                        producer_id,
                        producer_epoch,
                        coordinator,
                    });
                    continue;
                }
            }
            let outcome = match transactional {
                None => partition.append(&records).map_err(|e| Refusal::storage(&e)),
                Some((producer_id, epoch)) => append_transactional(
                    broker,
                    transactional_id.as_deref(),
                    &partition,
                    &records,
                    producer_id,
                    epoch,
                ),
            };
            record_produce(broker, &name, records.len(), outcome.as_ref().ok());
            match outcome {
                Ok(info) => {
                    partitions.push(
                        PartitionProduceResponse::default()
                            .with_index(index)
                            .with_base_offset(info.base_offset)
                            .with_log_append_time_ms(info.log_append_time_ms)
                            .with_log_start_offset(info.log_start_offset),
                    );
                    appended.push(Appended {
                        partition,
                        end_offset: info.last_offset + 1,
                    });
                }
                Err(refusal) => {
                    warn!(topic = %name, partition = index, error = %refusal.message, "produce refused");
                    partitions.push(refusal.response(index));
                }
            }
        }
        // The name is copied: the request's own is a slice of its frame, and a response
        // waiting for fsync would keep the whole (up to 1 MB) frame alive with it.
        responses.push(
            TopicProduceResponse::default()
                .with_name(kafka_protocol::messages::TopicName(str(&name)))
                .with_partition_responses(partitions),
        );
    }
    let broker = broker.clone();
    let timeout = Duration::from_millis(req.timeout_ms.max(0) as u64);
    Box::pin(async move {
        let mut responses = responses;
        let mut appended = appended;
        if !remote.is_empty() {
            let b = broker.clone();
            let id = transactional_id.unwrap_or_default();
            let done = tokio::task::spawn_blocking(move || append_remote_verified(&b, &id, remote))
                .await
                .unwrap_or_default();
            for (topic_slot, partition_slot, response, written) in done {
                responses[topic_slot].partition_responses[partition_slot] = response;
                appended.extend(written);
            }
        }
        // acks=all: answered once the high watermark (the in-sync replicas' synced ends)
        // passes what was appended; on one node that is the local sync.
        let replicated: Vec<(Arc<Partition>, i64)> = if acks == -1 {
            appended
                .iter()
                .map(|a| (a.partition.clone(), a.end_offset))
                .collect()
        } else {
            Vec::new()
        };
        let durable: Vec<Appended> = appended
            .into_iter()
            .filter(|a| a.partition.log().config().is_durable())
            .collect();
        let _waiting = crate::metrics::Gauged::new(&broker.metrics.produce_purgatory);
        let synced = if durable.is_empty() {
            make_durable(&broker, durable).await
        } else {
            let flushing = std::time::Instant::now();
            let synced = make_durable(&broker, durable).await;
            broker.metrics.log_flush.observe(flushing.elapsed());
            synced
        };
        if acks == 0 {
            // Kafka sends no response to acks=0; a failed write closes the connection instead,
            // which is the only way such a producer learns of it (and refreshes metadata).
            let failed = !synced.failures.is_empty()
                || responses
                    .iter()
                    .flat_map(|t| &t.partition_responses)
                    .any(|p| p.error_code != errors::NONE);
            return if failed {
                super::Outcome::Close
            } else {
                super::Outcome::NoResponse
            };
        }
        let mut failures = synced.failures;
        failures.extend(wait_for_replicas(&broker, replicated, timeout).await);
        for (topic, partition, code) in failures {
            if let Some(r) = responses
                .iter_mut()
                .find(|t| t.name.0.as_str() == topic)
                .and_then(|t| {
                    t.partition_responses
                        .iter_mut()
                        .find(|p| p.index == partition)
                })
            {
                let why = match code {
                    errors::REQUEST_TIMED_OUT => {
                        "the in-sync replicas did not all store the write in time"
                    }
                    errors::NOT_ENOUGH_REPLICAS_AFTER_APPEND => {
                        "appended, but the in-sync replicas fell below min.insync.replicas"
                    }
                    errors::NOT_LEADER_OR_FOLLOWER => {
                        "appended, but this broker no longer leads the partition"
                    }
                    _ => "the write could not be made durable",
                };
                *r = failed(partition, code, Some(why.into()));
            }
        }
        let mut resp = ProduceResponse::default()
            .with_responses(responses)
            .with_throttle_time_ms(throttle_time_ms);
        if version >= 10 {
            name_current_leaders(&broker, &mut resp, &listener);
        }
        encode(correlation_id, ApiKey::Produce, version, &resp)
    })
}

/// KIP-951: a partition refused because this broker does not lead it carries the leader and
/// epoch this broker knows, and the response lists that leader's endpoint, so the producer
/// sends there next without waiting for a metadata refresh.
fn name_current_leaders(broker: &Broker, resp: &mut ProduceResponse, listener: &str) {
    use kafka_protocol::messages::produce_response::{LeaderIdAndEpoch, NodeEndpoint};
    use kafka_protocol::messages::BrokerId;
    let mut endpoints: Vec<NodeEndpoint> = Vec::new();
    for t in &mut resp.responses {
        for p in &mut t.partition_responses {
            if p.error_code != errors::NOT_LEADER_OR_FOLLOWER {
                continue;
            }
            let Some(leader) = broker.current_leader(t.name.0.as_str(), p.index, listener) else {
                continue;
            };
            p.current_leader = LeaderIdAndEpoch::default()
                .with_leader_id(BrokerId(leader.leader_id))
                .with_leader_epoch(leader.leader_epoch);
            if let Some((host, port, rack)) = leader.endpoint {
                if !endpoints.iter().any(|e| e.node_id.0 == leader.leader_id) {
                    endpoints.push(
                        NodeEndpoint::default()
                            .with_node_id(BrokerId(leader.leader_id))
                            .with_host(str(&host))
                            .with_port(port)
                            .with_rack(rack.as_deref().map(str)),
                    );
                }
            }
        }
    }
    resp.node_endpoints = endpoints;
}

/// The producer of a transactional record set (from its first batch; the log checks that
/// every batch belongs to the same verified transaction), or None for a plain one.
fn transactional_producer(records: &[u8]) -> Option<(i64, i16)> {
    strata_records::BatchHeader::parse(records)
        .ok()
        .filter(|h| h.is_transactional())
        .map(|h| (h.producer_id, h.producer_epoch))
}

/// KIP-890 part 1: a transactional write is taken only inside the producer's ongoing
/// transaction, for a partition added to it — checked and appended under the transaction
/// coordinator's lock, so it cannot land after the transaction's markers.
fn append_transactional(
    broker: &Broker,
    transactional_id: Option<&str>,
    partition: &Partition,
    records: &[u8],
    producer_id: i64,
    epoch: i16,
) -> Result<strata_storage::AppendInfo, Refusal> {
    let Some(transactional_id) = transactional_id else {
        return Err(Refusal::new(
            errors::INVALID_TXN_STATE,
            "transactional records in a request without a transactional id".into(),
        ));
    };
    let inner = broker.txns.lock();
    crate::txn::verify_write(
        &inner,
        transactional_id,
        producer_id,
        epoch,
        &partition.topic,
        partition.partition,
    )
    .map_err(|e| {
        Refusal::new(
            errors::txn_error_code(&e, errors::Fenced::InvalidProducerEpoch),
            e.to_string(),
        )
    })?;
    partition
        .append_transactional(records)
        .map_err(|e| Refusal::storage(&e))
}

/// A transactional write whose coordinator is another broker: verified there (KIP-890
/// across brokers), then appended.
struct RemoteVerified {
    topic_slot: usize,
    partition_slot: usize,
    index: i32,
    partition: Arc<Partition>,
    records: bytes::Bytes,
    producer_id: i64,
    producer_epoch: i16,
    coordinator: i32,
}

/// The broker coordinating `transactional_id`, when it is not this one (a cluster member
/// that does not lead the id's `__transaction_state` partition); -1 when nobody does now.
fn remote_coordinator(broker: &Broker, transactional_id: &str) -> Option<i32> {
    broker.quorum()?;
    if broker.txn_coordinates(&broker.txns.lock(), transactional_id) {
        return None;
    }
    Some(broker.txn_coordinator_node(transactional_id).unwrap_or(-1))
}

/// Verifies the writes with their coordinator (one request for the partitions that need
/// it: a producer's transaction already open on a partition needs none), then appends each
/// verified one unless a marker for the producer came in between (the partition's guard).
/// Blocking. Returns, per write, where its answer goes, the answer, and what was appended.
fn append_remote_verified(
    broker: &Broker,
    transactional_id: &str,
    writes: Vec<RemoteVerified>,
) -> Vec<(usize, usize, PartitionProduceResponse, Option<Appended>)> {
    let guards: Vec<Option<u64>> = writes
        .iter()
        .map(|w| {
            w.partition
                .needs_verification(w.producer_id)
                .then(|| w.partition.begin_verification(w.producer_id))
        })
        .collect();
    let asked: Vec<(String, i32)> = writes
        .iter()
        .zip(&guards)
        .filter(|(_, g)| g.is_some())
        .map(|(w, _)| (w.partition.topic.clone(), w.partition.partition))
        .collect();
    let first = &writes[0];
    let codes = if asked.is_empty() {
        Vec::new()
    } else if first.coordinator < 0 {
        vec![errors::COORDINATOR_NOT_AVAILABLE; asked.len()]
    } else {
        crate::inter_broker::verify_remotely(
            broker,
            first.coordinator,
            transactional_id,
            first.producer_id,
            first.producer_epoch,
            &asked,
        )
    };
    let mut codes = codes.into_iter();
    let mut out = Vec::with_capacity(writes.len());
    for (w, guard) in writes.into_iter().zip(guards) {
        let verified = match guard {
            None => Ok(()),
            Some(_) => match codes.next().unwrap_or(errors::UNKNOWN_SERVER_ERROR) {
                errors::NONE => Ok(()),
                code => Err(Refusal::new(
                    errors::verification_code(code, errors::Fenced::InvalidProducerEpoch),
                    format!(
                        "the transaction coordinator (broker {}) refused the write",
                        w.coordinator
                    ),
                )),
            },
        };
        let outcome = verified.and_then(|()| {
            w.partition
                .append_verified(&w.records, w.producer_id, guard)
                .map_err(|e| Refusal::storage(&e))
        });
        record_produce(
            broker,
            &w.partition.topic,
            w.records.len(),
            outcome.as_ref().ok(),
        );
        let (response, written) = match outcome {
            Ok(info) => (
                PartitionProduceResponse::default()
                    .with_index(w.index)
                    .with_base_offset(info.base_offset)
                    .with_log_append_time_ms(info.log_append_time_ms)
                    .with_log_start_offset(info.log_start_offset),
                Some(Appended {
                    partition: w.partition.clone(),
                    end_offset: info.last_offset + 1,
                }),
            ),
            Err(refusal) => {
                warn!(topic = %w.partition.topic, partition = w.index, error = %refusal.message, "produce refused");
                (refusal.response(w.index), None)
            }
        };
        out.push((w.topic_slot, w.partition_slot, response, written));
    }
    out
}

/// Waits until each partition's high watermark reaches its end offset (acks=all), at most
/// `timeout`; the ones that did not are answered REQUEST_TIMED_OUT (the write stays: a retry
/// of an idempotent producer finds it).
async fn wait_for_replicas(
    broker: &Arc<Broker>,
    mut waiting: Vec<(Arc<Partition>, i64)>,
    timeout: Duration,
) -> Vec<(String, i32, i16)> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut failed = Vec::new();
    loop {
        let notified = broker.data_arrived.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        waiting.retain(|(p, end)| p.high_watermark() < *end);
        if waiting.is_empty() {
            return failed;
        }
        // Appended, but the in-sync replicas fell below min.insync.replicas (the high
        // watermark is frozen then), or leadership moved away: answered now, as Kafka does.
        waiting.retain(|(p, _)| {
            let code = if !p.is_leader() {
                errors::NOT_LEADER_OR_FOLLOWER
            } else {
                let (isr, min_isr) = p.isr();
                if isr.len() >= min_isr {
                    return true;
                }
                errors::NOT_ENOUGH_REPLICAS_AFTER_APPEND
            };
            failed.push((p.topic.clone(), p.partition, code));
            false
        });
        if waiting.is_empty() {
            return failed;
        }
        if broker.is_shutting_down() || tokio::time::Instant::now() >= deadline {
            failed.extend(
                waiting
                    .iter()
                    .map(|(p, _)| (p.topic.clone(), p.partition, errors::REQUEST_TIMED_OUT)),
            );
            return failed;
        }
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// Threads one produce request may use to sync its partitions in parallel.
const SYNC_THREADS_PER_REQUEST_MAX: usize = 8;

struct SyncOutcome {
    failures: Vec<(String, i32, i16)>,
}

/// Syncs each appended partition up to its end offset (sharing fdatasyncs with concurrent
/// produces) and wakes waiting fetches.
async fn make_durable(broker: &Arc<Broker>, appended: Vec<Appended>) -> SyncOutcome {
    let mut failures = Vec::new();
    if appended.is_empty() {
        broker.data_arrived.notify_waiters();
        return SyncOutcome { failures };
    }
    let syncfs_min = broker.config.syncfs_partitions_min;
    if syncfs_min > 0 && appended.len() >= syncfs_min {
        let partitions: Vec<Arc<Partition>> = appended.into_iter().map(|a| a.partition).collect();
        let b = broker.clone();
        let result = tokio::task::spawn_blocking(move || {
            b.filesystem_sync.sync(&partitions).map_err(|e| {
                warn!(error = %e, "syncfs failed");
                partitions
                    .iter()
                    .map(|p| (p.topic.clone(), p.partition, errors::storage_error_code(&e)))
                    .collect::<Vec<_>>()
            })
        })
        .await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(f)) => failures = f,
            Err(e) => warn!(error = %e, "sync task failed"),
        }
        broker.data_arrived.notify_waiters();
        return SyncOutcome { failures };
    }
    // A request that touches several partitions syncs them on several threads at once: the
    // device handles parallel flushes far better than one after another.
    let chunk = appended.len().div_ceil(SYNC_THREADS_PER_REQUEST_MAX);
    let mut tasks = Vec::new();
    let mut rest = appended;
    while !rest.is_empty() {
        let tail = rest.split_off(chunk.min(rest.len()));
        let mine = std::mem::replace(&mut rest, tail);
        tasks.push(tokio::task::spawn_blocking(move || {
            mine.into_iter()
                .filter_map(|a| match a.partition.sync_to(a.end_offset) {
                    Ok(()) => None,
                    Err(e) => {
                        warn!(topic = %a.partition.topic, partition = a.partition.partition, error = %e, "fdatasync failed");
                        Some((a.partition.topic.clone(), a.partition.partition, errors::storage_error_code(&e)))
                    }
                })
                .collect::<Vec<_>>()
        }));
    }
    for task in tasks {
        match task.await {
            Ok(f) => failures.extend(f),
            Err(e) => warn!(error = %e, "sync task failed"),
        }
    }
    broker.data_arrived.notify_waiters();
    SyncOutcome { failures }
}
