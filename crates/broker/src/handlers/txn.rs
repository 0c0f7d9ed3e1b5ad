//! Producer and transaction APIs: InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn,
//! TxnOffsetCommit, EndTxn, DescribeTransactions, ListTransactions. Each translates the
//! request for the `strata-txn` state machine (through `crate::txn`) and its answer back.
//! Every handler but TxnOffsetCommit runs on a blocking thread (they sync files).

use std::sync::Arc;

use kafka_protocol::messages::add_partitions_to_txn_response as apt;
use kafka_protocol::messages::*;
use strata_group::{CommitPartition, CommitRequest};
use tracing::{debug, warn};

use super::str;
use crate::errors::{self, group_error_code, txn_error_code, Fenced, NONE};
use crate::groups::OFFSETS_TOPIC;
use crate::Broker;

/// The code for a fenced producer in this API version (KIP-588 added PRODUCER_FENCED).
fn fenced(api: ApiKey, version: i16) -> Fenced {
    let since = match api {
        ApiKey::InitProducerId => 4,
        ApiKey::TxnOffsetCommit => 3,
        _ => 2, // AddPartitionsToTxn, AddOffsetsToTxn, EndTxn
    };
    if version >= since {
        Fenced::ProducerFenced
    } else {
        Fenced::InvalidProducerEpoch
    }
}

// ------------------------------------------------------------------ InitProducerId

fn init_response(code: i16, id: i64, epoch: i16) -> InitProducerIdResponse {
    InitProducerIdResponse::default()
        .with_error_code(code)
        .with_producer_id(ProducerId(id))
        .with_producer_epoch(epoch)
}

/// Idempotent producers get a fresh producer id (epoch 0). Transactional ones get their
/// transactional id's producer id with a bumped epoch, which fences older instances; an
/// open transaction of theirs is aborted (markers written) before the answer.
pub fn init_producer_id(
    broker: &Arc<Broker>,
    r: InitProducerIdRequest,
    version: i16,
) -> InitProducerIdResponse {
    let Some(transactional_id) = r.transactional_id.as_ref().map(|t| t.0.to_string()) else {
        return match broker.allocate_producer_id() {
            Ok(id) => init_response(NONE, id, 0),
            Err(e) => {
                warn!(error = %e, "could not allocate a producer id");
                init_response(errors::COORDINATOR_NOT_AVAILABLE, -1, -1)
            }
        };
    };
    if let Err(e) = broker.ensure_transaction_state_topic() {
        warn!(error = %e, "cannot create the transaction state topic");
        return init_response(errors::COORDINATOR_NOT_AVAILABLE, -1, -1);
    }
    let current =
        (version >= 3 && r.producer_id.0 >= 0).then_some((r.producer_id.0, r.producer_epoch));
    let now = broker.clock.steady_ms();
    let Some((result, pending)) = broker.txn_call_owned(&transactional_id, |c, alloc| {
        c.init_producer_id_from(
            &transactional_id,
            r.transaction_timeout_ms,
            current,
            now,
            alloc,
        )
    }) else {
        return init_response(broker.txn_not_coordinated_code(&transactional_id), -1, -1);
    };
    let (stored, _) = broker.txn_finish_blocking(pending);
    debug!(transactional_id = %transactional_id, result = ?result, stored, "InitProducerId answered");
    match result {
        Err(e) => init_response(
            txn_error_code(&e, fenced(ApiKey::InitProducerId, version)),
            -1,
            -1,
        ),
        Ok(_) if !stored => init_response(errors::COORDINATOR_NOT_AVAILABLE, -1, -1),
        Ok((id, epoch)) => init_response(NONE, id, epoch),
    }
}

// ------------------------------------------------------------------ AddPartitionsToTxn

/// v0-3 (the client form). Partitions that do not exist fail the request: they get
/// UNKNOWN_TOPIC_OR_PARTITION and the others OPERATION_NOT_ATTEMPTED, as in Kafka.
pub fn add_partitions_to_txn(
    broker: &Arc<Broker>,
    r: AddPartitionsToTxnRequest,
    version: i16,
) -> AddPartitionsToTxnResponse {
    let wanted: Vec<(String, i32)> = r
        .v3_and_below_topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| (t.name.to_string(), *p)))
        .collect();
    // Known to the cluster's metadata, wherever its replicas live: on a cluster the
    // transaction coordinator need not host the partitions a transaction writes (with more
    // brokers than replicas it often does not; found by scripts/chaos on five nodes).
    let image = broker.image();
    let unknown = |topic: &str, p: i32| {
        crate::state::is_internal_topic(topic)
            || image
                .topic(topic)
                .is_none_or(|t| !t.partitions.contains_key(&p))
    };
    let any_unknown = wanted.iter().any(|(t, p)| unknown(t, *p));
    let codes: Vec<i16> = if any_unknown {
        wanted
            .iter()
            .map(|(t, p)| {
                if unknown(t, *p) {
                    errors::UNKNOWN_TOPIC_OR_PARTITION
                } else {
                    errors::OPERATION_NOT_ATTEMPTED
                }
            })
            .collect()
    } else {
        let id = r.v3_and_below_transactional_id.0.to_string();
        let (pid, epoch) = (r.v3_and_below_producer_id.0, r.v3_and_below_producer_epoch);
        let now = broker.clock.steady_ms();
        let code = match broker
            .txn_call_owned(&id, |c, _| c.add_partitions(&id, pid, epoch, &wanted, now))
        {
            None => broker.txn_not_coordinated_code(&id),
            Some((result, pending)) => {
                let (stored, _) = broker.txn_finish_blocking(pending);
                match result {
                    Err(e) => txn_error_code(&e, fenced(ApiKey::AddPartitionsToTxn, version)),
                    Ok(()) if !stored => errors::COORDINATOR_NOT_AVAILABLE,
                    Ok(()) => NONE,
                }
            }
        };
        debug!(transactional_id = %id, pid, epoch, code, "AddPartitionsToTxn answered");
        vec![code; wanted.len()]
    };
    let mut resp = AddPartitionsToTxnResponse::default();
    let mut i = 0;
    for t in &r.v3_and_below_topics {
        let mut rt = apt::AddPartitionsToTxnTopicResult::default();
        rt.name = t.name.clone();
        for p in &t.partitions {
            let mut rp = apt::AddPartitionsToTxnPartitionResult::default();
            rp.partition_index = *p;
            rp.partition_error_code = codes[i];
            i += 1;
            rt.results_by_partition.push(rp);
        }
        resp.results_by_topic_v3_and_below.push(rt);
    }
    resp
}

// ------------------------------------------------------------------ AddOffsetsToTxn

/// Adds the group's `__consumer_offsets` partition to the transaction (its marker decides
/// the offsets TxnOffsetCommit stores there).
pub fn add_offsets_to_txn(
    broker: &Arc<Broker>,
    r: AddOffsetsToTxnRequest,
    version: i16,
) -> AddOffsetsToTxnResponse {
    let resp = AddOffsetsToTxnResponse::default();
    if r.group_id.is_empty() {
        return resp.with_error_code(errors::INVALID_GROUP_ID);
    }
    if let Err(e) = broker.ensure_offsets_topic() {
        warn!(error = %e, "cannot create the offsets topic");
        return resp.with_error_code(errors::COORDINATOR_NOT_AVAILABLE);
    }
    let partition = broker.groups.coordinator().partition_for(&r.group_id);
    let id = r.transactional_id.0.to_string();
    let (pid, epoch) = (r.producer_id.0, r.producer_epoch);
    let now = broker.clock.steady_ms();
    let Some((result, pending)) = broker.txn_call_owned(&id, |c, _| {
        c.add_partitions(
            &id,
            pid,
            epoch,
            &[(OFFSETS_TOPIC.to_string(), partition)],
            now,
        )
    }) else {
        return resp.with_error_code(broker.txn_not_coordinated_code(&id));
    };
    let (stored, _) = broker.txn_finish_blocking(pending);
    let code = match result {
        Err(e) => txn_error_code(&e, fenced(ApiKey::AddOffsetsToTxn, version)),
        Ok(()) if !stored => errors::COORDINATOR_NOT_AVAILABLE,
        Ok(()) => NONE,
    };
    debug!(transactional_id = %id, pid, epoch, code, "AddOffsetsToTxn answered");
    resp.with_error_code(code)
}

// ------------------------------------------------------------------ TxnOffsetCommit

/// Offsets committed inside the transaction: verified against the transaction (its group's
/// offsets partition must have been added) and stored as pending under the transaction
/// coordinator's lock, so they land before the transaction's marker or not at all.
pub async fn txn_offset_commit(
    broker: Arc<Broker>,
    r: TxnOffsetCommitRequest,
    version: i16,
) -> TxnOffsetCommitResponse {
    let req = CommitRequest {
        group_id: r.group_id.to_string(),
        generation_id_or_member_epoch: r.generation_id,
        member_id: r.member_id.to_string(),
        group_instance_id: r.group_instance_id.as_ref().map(|s| s.to_string()),
        topics: r
            .topics
            .iter()
            .map(|t| {
                (
                    t.name.to_string(),
                    t.partitions
                        .iter()
                        .map(|p| CommitPartition {
                            partition: p.partition_index,
                            offset: p.committed_offset,
                            leader_epoch: p.committed_leader_epoch,
                            metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                        })
                        .collect(),
                )
            })
            .collect(),
    };
    let now = broker.clock.steady_ms();
    let offsets_partition = broker.groups.coordinator().partition_for(&req.group_id);
    let b = broker.clone();
    let high_watermark = move |topic: &str, p: i32| b.high_watermark_if_known(topic, p);
    // The transaction's coordinator is another broker: verified there first, then claimed
    // and appended under the group lock (markers for the offsets partition take it too).
    let remote = broker
        .quorum()
        .is_some()
        .then(|| broker.txn_coordinates(&broker.txns.lock(), &r.transactional_id))
        .is_some_and(|local| !local);
    if remote {
        return txn_offset_commit_remote(broker, r, req, offsets_partition, version).await;
    }
    // Under the transaction coordinator's lock: verify, then append.
    let outcome = {
        let inner = broker.txns.lock();
        match crate::txn::verify_write(
            &inner,
            &r.transactional_id,
            r.producer_id.0,
            r.producer_epoch,
            OFFSETS_TOPIC,
            offsets_partition,
        ) {
            Err(e) => Err(txn_error_code(&e, fenced(ApiKey::TxnOffsetCommit, version))),
            Ok(()) => Ok(broker.group_call(|c| {
                c.txn_commit_offsets(req, r.producer_id.0, r.producer_epoch, now, &high_watermark)
            })),
        }
    };
    let (result, stored): (Result<_, i16>, bool) = match outcome {
        Err(code) => (Err(code), true),
        Ok((result, pending)) => {
            let stored = broker.group_complete(pending).await;
            (result.map_err(|e| group_error_code(&e)), stored)
        }
    };
    debug!(transactional_id = %r.transactional_id.0, result = ?result.as_ref().err(), stored,
        remote = false, "TxnOffsetCommit answered");
    txn_offset_commit_response(&r, &result, stored)
}

/// TxnOffsetCommit whose transaction is coordinated by another broker (KIP-890 across
/// brokers, as produce does).
async fn txn_offset_commit_remote(
    broker: Arc<Broker>,
    r: TxnOffsetCommitRequest,
    req: CommitRequest,
    offsets_partition: i32,
    version: i16,
) -> TxnOffsetCommitResponse {
    let Some(partition) = broker.partition(OFFSETS_TOPIC, offsets_partition) else {
        return txn_offset_commit_response(&r, &Err(errors::NOT_COORDINATOR), true);
    };
    let (pid, epoch) = (r.producer_id.0, r.producer_epoch);
    let guard = partition
        .needs_verification(pid)
        .then(|| partition.begin_verification(pid));
    let id = r.transactional_id.to_string();
    let b = broker.clone();
    let verified: Result<(), i16> = match guard {
        None => Ok(()),
        Some(_) => tokio::task::spawn_blocking(move || {
            let Some(node) = b.txn_coordinator_node(&id) else {
                return Err(errors::COORDINATOR_NOT_AVAILABLE);
            };
            let codes = crate::inter_broker::verify_remotely(
                &b,
                node,
                &id,
                pid,
                epoch,
                &[(OFFSETS_TOPIC.to_string(), offsets_partition)],
            );
            match codes
                .first()
                .copied()
                .unwrap_or(errors::UNKNOWN_SERVER_ERROR)
            {
                NONE => Ok(()),
                code => Err(code),
            }
        })
        .await
        .unwrap_or(Err(errors::UNKNOWN_SERVER_ERROR)),
    };
    let fenced_as = fenced(ApiKey::TxnOffsetCommit, version);
    let verified =
        verified.map_err(|code| errors::txn_offset_commit_verification_code(code, fenced_as));
    let now = broker.clock.steady_ms();
    let b = broker.clone();
    let high_watermark = move |topic: &str, p: i32| b.high_watermark_if_known(topic, p);
    let (result, stored): (Result<_, i16>, bool) = match verified {
        Err(code) => (Err(code), true),
        Ok(()) => {
            let (result, pending) = broker.group_call(|c| {
                if !partition.claim_verification(pid, guard) {
                    // The transaction ended between the verification and now.
                    return (Err(errors::INVALID_TXN_STATE), Vec::new());
                }
                let (result, effects) = c.txn_commit_offsets(req, pid, epoch, now, &high_watermark);
                (result.map_err(|e| group_error_code(&e)), effects)
            });
            let stored = broker.group_complete(pending).await;
            (result, stored)
        }
    };
    debug!(transactional_id = %r.transactional_id.0, result = ?result.as_ref().err(), stored,
        remote = true, "TxnOffsetCommit answered");
    txn_offset_commit_response(&r, &result, stored)
}

fn txn_offset_commit_response(
    r: &TxnOffsetCommitRequest,
    result: &Result<strata_group::CommitResults, i16>,
    stored: bool,
) -> TxnOffsetCommitResponse {
    let mut resp = TxnOffsetCommitResponse::default();
    for t in &r.topics {
        let mut rt = txn_offset_commit_response::TxnOffsetCommitResponseTopic::default();
        rt.name = t.name.clone();
        for (i, p) in t.partitions.iter().enumerate() {
            let mut rp = txn_offset_commit_response::TxnOffsetCommitResponsePartition::default();
            rp.partition_index = p.partition_index;
            rp.error_code = super::groups::commit_code(result, &t.name, i, stored);
            rt.partitions.push(rp);
        }
        resp.topics.push(rt);
    }
    resp
}

// ------------------------------------------------------------------ EndTxn

/// Ends the transaction: PrepareCommit/PrepareAbort synced, markers written and synced in
/// every partition, CompleteCommit/CompleteAbort synced — all before the answer. v5
/// (KIP-890 part 2) bumps the epoch at completion and returns it.
pub fn end_txn(broker: &Arc<Broker>, r: EndTxnRequest, version: i16) -> EndTxnResponse {
    let id = r.transactional_id.0.to_string();
    let (pid, epoch) = (r.producer_id.0, r.producer_epoch);
    let kip890 = version >= 5;
    let now = broker.clock.steady_ms();
    let mut resp = EndTxnResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let Some((result, pending)) = broker.txn_call_owned(&id, |c, _| {
        c.end_txn(&id, pid, epoch, r.committed, kip890, now)
    }) else {
        return resp.with_error_code(broker.txn_not_coordinated_code(&id));
    };
    let (stored, next) = broker.txn_finish_blocking(pending);
    resp.error_code = match result {
        Err(e @ strata_txn::TxnError::InvalidTxnState(_)) => {
            // Fatal for the client: worth one line with the state it met.
            warn!(transactional_id = %id, pid, epoch, committed = r.committed, error = %e,
                "EndTxn refused");
            txn_error_code(&e, fenced(ApiKey::EndTxn, version))
        }
        Err(e) => txn_error_code(&e, fenced(ApiKey::EndTxn, version)),
        Ok(()) if !stored => errors::COORDINATOR_NOT_AVAILABLE,
        Ok(()) => NONE,
    };
    if version >= 5 && resp.error_code == NONE {
        // The epoch to use next: from this completion, or (a retried EndTxn) the current one.
        let (pid, epoch) = next.unwrap_or_else(|| {
            broker
                .txns
                .lock()
                .coordinator
                .get(&id)
                .map(|m| (m.producer_id, m.producer_epoch))
                .unwrap_or((-1, -1))
        });
        resp.producer_id = ProducerId(pid);
        resp.producer_epoch = epoch;
    }
    debug!(transactional_id = %id, pid, epoch, committed = r.committed, code = resp.error_code,
        "EndTxn answered");
    resp
}

// ------------------------------------------------------------------ operators

fn txn_topics(
    partitions: &std::collections::BTreeSet<(String, i32)>,
) -> Vec<describe_transactions_response::TopicData> {
    let mut out: Vec<describe_transactions_response::TopicData> = Vec::new();
    for (topic, p) in partitions {
        match out.last_mut() {
            Some(t) if t.topic.0.as_str() == topic => t.partitions.push(*p),
            _ => {
                let mut t = describe_transactions_response::TopicData::default();
                t.topic = TopicName(str(topic));
                t.partitions = vec![*p];
                out.push(t);
            }
        }
    }
    out
}

pub fn describe_transactions(
    broker: &Arc<Broker>,
    r: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let inner = broker.txns.lock();
    let mut resp = DescribeTransactionsResponse::default();
    for id in &r.transactional_ids {
        let mut s = describe_transactions_response::TransactionState::default();
        s.transactional_id = id.clone();
        match inner.coordinator.get(id) {
            None => {
                s.error_code = errors::TRANSACTIONAL_ID_NOT_FOUND;
                s.producer_id = ProducerId(-1);
                s.producer_epoch = -1;
                s.transaction_start_time_ms = -1;
            }
            Some(m) => {
                s.transaction_state = str(m.state.name());
                s.transaction_timeout_ms = m.timeout_ms;
                s.transaction_start_time_ms = m.start_ms;
                s.producer_id = ProducerId(m.producer_id);
                s.producer_epoch = m.producer_epoch;
                s.topics = txn_topics(&m.partitions);
            }
        }
        resp.transaction_states.push(s);
    }
    resp
}

/// Kafka's state names (the ones ListTransactions filters accept).
const STATE_NAMES: &[&str] = &[
    "Empty",
    "Ongoing",
    "PrepareCommit",
    "PrepareAbort",
    "CompleteCommit",
    "CompleteAbort",
    "Dead",
    "PrepareEpochFence",
];

/// v0-1: filters by state, producer id and (v1) minimum running time.
pub fn list_transactions(
    broker: &Arc<Broker>,
    r: ListTransactionsRequest,
) -> ListTransactionsResponse {
    let mut resp = ListTransactionsResponse::default();
    let states: Vec<String> = r.state_filters.iter().map(|s| s.to_string()).collect();
    resp.unknown_state_filters = states
        .iter()
        .filter(|s| !STATE_NAMES.contains(&s.as_str()))
        .map(|s| str(s))
        .collect();
    let now = broker.clock.steady_ms();
    let inner = broker.txns.lock();
    for m in inner.coordinator.list() {
        if !states.is_empty() && !states.iter().any(|s| s == m.state.name()) {
            continue;
        }
        if !r.producer_id_filters.is_empty()
            && !r.producer_id_filters.iter().any(|p| p.0 == m.producer_id)
        {
            continue;
        }
        // v1: only transactions running (not yet complete) for longer than the filter.
        let running = matches!(
            m.state,
            strata_txn::TxnState::Ongoing
                | strata_txn::TxnState::PrepareCommit
                | strata_txn::TxnState::PrepareAbort
        );
        if r.duration_filter >= 0 && (!running || now - m.start_ms <= r.duration_filter) {
            continue;
        }
        let mut s = list_transactions_response::TransactionState::default();
        s.transactional_id = TransactionalId(str(&m.transactional_id));
        s.producer_id = ProducerId(m.producer_id);
        s.transaction_state = str(m.state.name());
        resp.transaction_states.push(s);
    }
    resp
}

// ------------------------------------------------------------------ WriteTxnMarkers

/// WriteTxnMarkers. From another broker (`from_broker`, on the inter-broker channel): a
/// transaction coordinator's commit or abort markers for the partitions led here. From a
/// client (KIP-664's `abort` of a hanging transaction, sent by admin clients with coordinator
/// epoch -1) only aborts are taken: a commit marker from a client could decide a transaction
/// its coordinator has not (Kafka guards it with CLUSTER_ACTION). A marker whose epoch is
/// older than the producer's on that partition is refused. Each partition is answered once
/// its in-sync replicas have the marker.
pub fn write_txn_markers(
    broker: &Arc<Broker>,
    r: WriteTxnMarkersRequest,
    from_broker: bool,
) -> WriteTxnMarkersResponse {
    use write_txn_markers_response as w;
    let mut resp = WriteTxnMarkersResponse::default();
    for m in &r.markers {
        let mut mr = w::WritableTxnMarkerResult::default();
        mr.producer_id = m.producer_id;
        let mut synced: Vec<(Arc<strata_storage::Partition>, i64)> = Vec::new();
        let mut codes: Vec<Vec<i16>> = Vec::new();
        let commit = m.transaction_result;
        {
            // Under the transaction coordinator's lock, like verified transactional writes.
            let _txns = broker.txns.lock();
            for t in &m.topics {
                let mut tc = Vec::new();
                for &p in &t.partition_indexes {
                    let code = if commit && !from_broker {
                        errors::CLUSTER_AUTHORIZATION_FAILED
                    } else {
                        match broker.partition(&t.name, p) {
                            None => broker.missing_partition_error(&t.name, p),
                            Some(partition) if !partition.is_leader() => {
                                errors::NOT_LEADER_OR_FOLLOWER
                            }
                            Some(partition) => {
                                let current = partition
                                    .log()
                                    .producer_state()
                                    .get(m.producer_id.0)
                                    .map(|e| e.epoch);
                                if current.is_some_and(|e| m.producer_epoch < e) {
                                    errors::INVALID_PRODUCER_EPOCH
                                } else {
                                    let append = || {
                                        partition.append_marker(
                                            m.producer_id.0,
                                            m.producer_epoch,
                                            commit,
                                            m.coordinator_epoch,
                                        )
                                    };
                                    let appended = if t.name.as_str() == OFFSETS_TOPIC {
                                        // The marker and the offsets it decides change
                                        // together, under the group coordinator's lock.
                                        let mut groups = broker.groups.coordinator();
                                        let a = append();
                                        if a.is_ok() {
                                            groups.complete_transaction(p, m.producer_id.0, commit);
                                        }
                                        a
                                    } else {
                                        append()
                                    };
                                    match appended {
                                        Ok(info) => {
                                            synced.push((partition, info.last_offset + 1));
                                            NONE
                                        }
                                        Err(e) => errors::storage_error_code(&e),
                                    }
                                }
                            }
                        }
                    };
                    tc.push(code);
                }
                codes.push(tc);
            }
        }
        let mut failed_code = NONE;
        for (p, end) in &synced {
            if let Err(e) = p.sync_to(*end) {
                warn!(error = %e, "could not sync a transaction marker");
                failed_code = errors::KAFKA_STORAGE_ERROR;
            }
        }
        if failed_code == NONE && !broker.wait_replicated_blocking(&synced) {
            failed_code = errors::REQUEST_TIMED_OUT;
        }
        for (t, tc) in m.topics.iter().zip(codes) {
            let mut tr = w::WritableTxnMarkerTopicResult::default();
            tr.name = t.name.clone();
            for (&p, code) in t.partition_indexes.iter().zip(tc) {
                let mut pr = w::WritableTxnMarkerPartitionResult::default();
                pr.partition_index = p;
                pr.error_code = if code == NONE { failed_code } else { code };
                tr.partitions.push(pr);
            }
            mr.topics.push(tr);
        }
        resp.markers.push(mr);
    }
    broker.data_arrived.notify_waiters();
    resp
}
