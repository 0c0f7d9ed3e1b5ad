//! DescribeQuorum (KIP-595, KIP-836, KIP-853): the metadata quorum as its leader sees it —
//! leader and epoch (raft term), high watermark (the committed index), each voter's log end
//! and observers. A broker that does not lead the quorum forwards the request to the one
//! that does (over the inter-broker channel), as Kafka brokers forward it to the controller.
//! A standalone node answers as the single voter of its own metadata log.

use std::sync::Arc;

use kafka_protocol::messages::describe_quorum_response as dq;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::str;
use crate::errors::{self, NONE};
use crate::Broker;

const METADATA_TOPIC: &str = "__cluster_metadata";

pub fn describe_quorum(
    broker: &Arc<Broker>,
    r: DescribeQuorumRequest,
    version: i16,
    forwarded: bool,
) -> DescribeQuorumResponse {
    let asked_metadata = r.topics.iter().any(|t| {
        t.topic_name.0.as_str() == METADATA_TOPIC
            && t.partitions.iter().any(|p| p.partition_index == 0)
    });
    if !asked_metadata {
        return DescribeQuorumResponse::default()
            .with_error_code(errors::INVALID_REQUEST)
            .with_error_message(Some(str("only __cluster_metadata-0 has a quorum")));
    }
    let now = broker.clock.now_ms();
    let Some(quorum) = broker.quorum() else {
        // Standalone: one voter, this node, leading its own metadata log.
        let end = broker.metadata().end_offset();
        let me = dq::ReplicaState::default()
            .with_replica_id(BrokerId(broker.config.node_id))
            .with_log_end_offset(end)
            .with_last_fetch_timestamp(now)
            .with_last_caught_up_timestamp(now);
        let nodes = vec![node(
            broker.config.node_id,
            "PLAINTEXT",
            &broker.config.advertised_host_port(),
        )];
        return answer(
            version,
            broker.config.node_id,
            0,
            end,
            vec![me],
            vec![],
            nodes,
        );
    };
    let status = quorum.status();
    if status.leader != Some(status.node_id) {
        return match status.leader {
            Some(leader) if !forwarded => {
                let forwarded: Result<DescribeQuorumResponse, String> =
                    crate::inter_broker::call_blocking(
                        broker,
                        leader as i32,
                        ApiKey::DescribeQuorum,
                        version,
                        &r,
                    );
                forwarded.unwrap_or_else(|e| {
                    DescribeQuorumResponse::default()
                        .with_error_code(errors::NOT_LEADER_OR_FOLLOWER)
                        .with_error_message(Some(str(&format!("quorum leader {leader}: {e}"))))
                })
            }
            _ => DescribeQuorumResponse::default()
                .with_error_code(errors::NOT_LEADER_OR_FOLLOWER)
                .with_error_message(Some(str("no quorum leader now"))),
        };
    }
    let committed = status.last_applied.map_or(-1, |i| i as i64);
    let state = |id: u64| {
        let end = if id == status.node_id {
            status.last_log_index
        } else {
            status.replication.get(&id).copied().flatten()
        };
        let end = end.map_or(-1, |i| i as i64 + 1);
        let caught_up = end > committed && committed >= 0;
        dq::ReplicaState::default()
            .with_replica_id(BrokerId(id as i32))
            .with_log_end_offset(end)
            .with_last_fetch_timestamp(if end >= 0 { now } else { -1 })
            .with_last_caught_up_timestamp(if caught_up { now } else { -1 })
    };
    let voters = status.voters.iter().map(|&id| state(id)).collect();
    let observers = status.learners.iter().map(|&id| state(id)).collect();
    let nodes = quorum
        .voter_addresses()
        .iter()
        .filter_map(|(id, addr)| {
            let (host, port) = addr.rsplit_once(':')?;
            Some(node(
                *id as i32,
                "CONTROLLER",
                &(host.to_string(), port.parse().ok()?),
            ))
        })
        .collect();
    answer(
        version,
        status.node_id as i32,
        status.term.min(i32::MAX as u64) as i32,
        committed + 1,
        voters,
        observers,
        nodes,
    )
}

fn node(id: i32, listener: &str, (host, port): &(String, i32)) -> dq::Node {
    dq::Node::default()
        .with_node_id(BrokerId(id))
        .with_listeners(vec![dq::Listener::default()
            .with_name(StrBytes::from_string(listener.to_string()))
            .with_host(StrBytes::from_string(host.clone()))
            .with_port(u16::try_from(*port).unwrap_or(0))])
}

fn answer(
    version: i16,
    leader: i32,
    epoch: i32,
    high_watermark: i64,
    voters: Vec<dq::ReplicaState>,
    observers: Vec<dq::ReplicaState>,
    nodes: Vec<dq::Node>,
) -> DescribeQuorumResponse {
    let partition = dq::PartitionData::default()
        .with_partition_index(0)
        .with_error_code(NONE)
        .with_leader_id(BrokerId(leader))
        .with_leader_epoch(epoch)
        .with_high_watermark(high_watermark)
        .with_current_voters(voters)
        .with_observers(observers);
    let mut partition = partition;
    if version < 1 {
        // Fetch and caught-up times came with v1.
        for r in partition
            .current_voters
            .iter_mut()
            .chain(partition.observers.iter_mut())
        {
            r.last_fetch_timestamp = -1;
            r.last_caught_up_timestamp = -1;
        }
    }
    DescribeQuorumResponse::default()
        .with_topics(vec![dq::TopicData::default()
            .with_topic_name(TopicName(str(METADATA_TOPIC)))
            .with_partitions(vec![partition])])
        // Listeners came with v2.
        .with_nodes(if version >= 2 { nodes } else { Vec::new() })
}
