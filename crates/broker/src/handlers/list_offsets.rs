use std::sync::Arc;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{
    ListOffsetsRequest, ListOffsetsResponse, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse,
};

use crate::authorizer::Authz;
use crate::errors;
use crate::Broker;
use strata_security::acl::Operation;

/// ListOffsets' replica id for a debugging tool, which may read a follower's offsets (any
/// other request is answered by the leader alone).
const DEBUGGING_REPLICA_ID: i32 = -2;

/// The partition a leader-only request names, or its error code: not open here (unknown,
/// still recovering, failed), a `current_leader_epoch` that does not match (KIP-320), or,
/// with `only_leader`, a replica that follows: its log may lack the leader's latest
/// records and epochs, and a consumer told that its epoch is unknown (OffsetsForLeaderEpoch
/// answering -1) resets its position to `auto.offset.reset`, as Kafka's
/// `fetchOnlyFromLeader` guards against.
fn leader_partition(
    broker: &Broker,
    topic: &str,
    partition: i32,
    current_leader_epoch: i32,
    only_leader: bool,
) -> Result<Arc<strata_storage::Partition>, i16> {
    let Some(p) = broker.partition(topic, partition) else {
        return Err(broker.missing_partition_error(topic, partition));
    };
    match errors::leader_epoch_check(current_leader_epoch, p.leader_epoch()) {
        errors::NONE if only_leader && !p.is_leader() => Err(errors::NOT_LEADER_OR_FOLLOWER),
        errors::NONE => Ok(p),
        code => Err(code),
    }
}

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;

pub fn handle(
    broker: &Arc<Broker>,
    req: ListOffsetsRequest,
    version: i16,
    authz: &Authz,
) -> ListOffsetsResponse {
    let only_leader = req.replica_id.0 != DEBUGGING_REPLICA_ID;
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let allowed = authz.topic(Operation::Describe, t.name.0.as_str());
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let resp = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index);
                    if !allowed {
                        return resp
                            .with_error_code(errors::TOPIC_AUTHORIZATION_FAILED)
                            .with_offset(-1)
                            .with_timestamp(-1);
                    }
                    let partition = match leader_partition(
                        broker,
                        t.name.0.as_str(),
                        p.partition_index,
                        p.current_leader_epoch,
                        only_leader,
                    ) {
                        Ok(partition) => partition,
                        Err(code) => {
                            return resp
                                .with_error_code(code)
                                .with_offset(-1)
                                .with_timestamp(-1)
                        }
                    };
                    // leader_epoch exists in the response from v4 on
                    let epoch = if version >= 4 {
                        partition.leader_epoch()
                    } else {
                        -1
                    };
                    let log = partition.log();
                    let found = match p.timestamp {
                        // read_committed consumers start at the last stable offset.
                        LATEST if req.isolation_level == 1 => {
                            Ok(Some((log.last_stable_offset(), -1)))
                        }
                        LATEST => Ok(Some((log.high_watermark(), -1))),
                        // Tiered storage: the earliest offset is in the first copy in the
                        // object store; KIP-1005's earliest-local is the local log's.
                        EARLIEST => Ok(Some((
                            remote_log_start(broker, t.name.0.as_str(), p.partition_index)
                                .map_or(log.log_start_offset(), |s| s.min(log.log_start_offset())),
                            -1,
                        ))),
                        EARLIEST_LOCAL => Ok(Some((log.log_start_offset(), -1))),
                        MAX_TIMESTAMP => {
                            let max = log.max_timestamp();
                            if max < 0 {
                                Ok(None)
                            } else {
                                log.offset_for_timestamp(max)
                            }
                        }
                        ts if ts >= 0 => log.offset_for_timestamp(ts),
                        _ => {
                            return resp
                                .with_error_code(errors::INVALID_REQUEST)
                                .with_offset(-1)
                                .with_timestamp(-1)
                        }
                    };
                    match found {
                        Ok(Some((offset, ts))) => resp
                            .with_offset(offset)
                            .with_timestamp(ts)
                            .with_leader_epoch(epoch),
                        Ok(None) => resp.with_offset(-1).with_timestamp(-1),
                        Err(e) => resp
                            .with_error_code(errors::storage_error_code(&e))
                            .with_offset(-1)
                            .with_timestamp(-1),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

/// OffsetsForLeaderEpoch (KIP-101/279; KIP-320 for consumers): for each partition, the
/// largest leader epoch not above the one asked and the offset where it ended, from the
/// partition's leader epoch cache. A `current_leader_epoch` is checked as for Fetch.
pub fn offset_for_leader_epoch(
    broker: &Arc<Broker>,
    req: OffsetForLeaderEpochRequest,
    authz: &Authz,
) -> OffsetForLeaderEpochResponse {
    // Followers need CLUSTER_ACTION, consumers DESCRIBE on the topic.
    let replica_allowed = req.replica_id.0 < 0 || authz.cluster(Operation::ClusterAction);
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let allowed = replica_allowed
                && (req.replica_id.0 >= 0 || authz.topic(Operation::Describe, t.topic.0.as_str()));
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let resp = EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_leader_epoch(-1)
                        .with_end_offset(-1);
                    if !allowed {
                        return resp.with_error_code(errors::TOPIC_AUTHORIZATION_FAILED);
                    }
                    let partition = match leader_partition(
                        broker,
                        t.topic.0.as_str(),
                        p.partition,
                        p.current_leader_epoch,
                        true,
                    ) {
                        Ok(partition) => partition,
                        Err(code) => return resp.with_error_code(code),
                    };
                    let (epoch, end) = end_offset_for_epoch(broker, &partition, p.leader_epoch);
                    resp.with_leader_epoch(epoch).with_end_offset(end)
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}

/// OffsetsForLeaderEpoch's answer: from the local log's epochs, and for a tiered partition
/// asked about an epoch older than its local log's first, from its copies' epochs too (as
/// Kafka answers from the remote segments' epochs), so a consumer reading from the object
/// store gets the true end of its epoch.
fn end_offset_for_epoch(
    broker: &Broker,
    partition: &strata_storage::Partition,
    requested: i32,
) -> (i32, i64) {
    let (local, log_end) = {
        let log = partition.log();
        (log.leader_epoch_entries(), log.log_end_offset())
    };
    let older_than_local = local.first().is_some_and(|&(e, _)| requested < e);
    if !older_than_local || broker.tiering.is_none() {
        return strata_storage::leader_epoch::end_offset_for(&local, requested, log_end);
    }
    let image = broker.image();
    let Some(meta) = image
        .topic(&partition.topic)
        .and_then(|t| t.partitions.get(&partition.partition))
    else {
        return strata_storage::leader_epoch::end_offset_for(&local, requested, log_end);
    };
    // Each epoch's earliest start, copies first, then the local log's (whose first entry
    // may have been moved up to the local log start).
    let mut starts: std::collections::BTreeMap<i32, i64> = std::collections::BTreeMap::new();
    for (epoch, start) in meta
        .copied_segments()
        .flat_map(|c| c.leader_epochs.iter().copied())
        .chain(local.iter().copied())
    {
        starts
            .entry(epoch)
            .and_modify(|s| *s = (*s).min(start))
            .or_insert(start);
    }
    let entries: Vec<(i32, i64)> = starts.into_iter().collect();
    strata_storage::leader_epoch::end_offset_for(&entries, requested, log_end)
}

/// A tiered partition's log start: its first finished copy's base offset in the object
/// store (None without one).
fn remote_log_start(broker: &Broker, topic: &str, partition: i32) -> Option<i64> {
    broker.tiering.as_ref()?;
    let image = broker.image();
    let p = image.topic(topic)?.partitions.get(&partition)?;
    let start = p.copied_segments().next().map(|s| s.base_offset);
    start
}
