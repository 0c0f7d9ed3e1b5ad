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

use crate::errors;
use crate::Broker;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;

pub fn handle(broker: &Arc<Broker>, req: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let resp = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index);
                    let Some(partition) = broker.partition(t.name.0.as_str(), p.partition_index)
                    else {
                        return resp
                            .with_error_code(
                                broker
                                    .missing_partition_error(t.name.0.as_str(), p.partition_index),
                            )
                            .with_offset(-1)
                            .with_timestamp(-1);
                    };
                    let epoch_error = errors::leader_epoch_check(
                        p.current_leader_epoch,
                        partition.leader_epoch(),
                    );
                    if epoch_error != errors::NONE {
                        return resp
                            .with_error_code(epoch_error)
                            .with_offset(-1)
                            .with_timestamp(-1);
                    }
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
                        EARLIEST | EARLIEST_LOCAL => Ok(Some((log.log_start_offset(), -1))),
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
) -> OffsetForLeaderEpochResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let resp = EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_leader_epoch(-1)
                        .with_end_offset(-1);
                    let Some(partition) = broker.partition(t.topic.0.as_str(), p.partition) else {
                        return resp.with_error_code(
                            broker.missing_partition_error(t.topic.0.as_str(), p.partition),
                        );
                    };
                    let epoch_error = errors::leader_epoch_check(
                        p.current_leader_epoch,
                        partition.leader_epoch(),
                    );
                    if epoch_error != errors::NONE {
                        return resp.with_error_code(epoch_error);
                    }
                    let (epoch, end) = partition.log().end_offset_for_epoch(p.leader_epoch);
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
