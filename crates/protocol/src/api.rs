//! The APIs and version ranges Strata serves. ApiVersions advertises exactly this table, so
//! it lists only what the broker implements.

use kafka_protocol::messages::ApiKey;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiRange {
    pub key: ApiKey,
    pub min: i16,
    pub max: i16,
}

const fn range(key: ApiKey, min: i16, max: i16) -> ApiRange {
    ApiRange { key, min, max }
}

/// Upper bounds stop where a version needs something not built yet: Produce v13 addresses
/// topics by id only; Fetch v16 adds node endpoints (KIP-951) and v17 directory ids;
/// ListOffsets v9+ adds tiered-storage offsets; FindCoordinator
/// v6 adds share groups; OffsetCommit v10 / OffsetFetch v10 address topics by id;
/// AddPartitionsToTxn v4+ is the broker-to-broker batched form; TxnOffsetCommit v5 means the
/// coordinator adds the offsets partition itself (transaction version 2, not advertised);
/// ListTransactions v2 filters by regex.
pub const SUPPORTED_APIS: &[ApiRange] = &[
    range(ApiKey::Produce, 3, 12),
    range(ApiKey::Fetch, 4, 15),
    range(ApiKey::ListOffsets, 1, 8),
    range(ApiKey::OffsetForLeaderEpoch, 2, 4),
    range(ApiKey::Metadata, 0, 12),
    range(ApiKey::ApiVersions, 0, 3),
    range(ApiKey::CreateTopics, 2, 7),
    range(ApiKey::DeleteTopics, 1, 6),
    range(ApiKey::InitProducerId, 0, 4),
    range(ApiKey::DescribeConfigs, 1, 4),
    range(ApiKey::CreatePartitions, 0, 3),
    range(ApiKey::DescribeCluster, 0, 1),
    range(ApiKey::FindCoordinator, 0, 5),
    range(ApiKey::JoinGroup, 0, 9),
    range(ApiKey::SyncGroup, 0, 5),
    range(ApiKey::Heartbeat, 0, 4),
    range(ApiKey::LeaveGroup, 0, 5),
    range(ApiKey::OffsetCommit, 2, 9),
    range(ApiKey::OffsetFetch, 1, 9),
    range(ApiKey::DescribeGroups, 0, 5),
    range(ApiKey::ListGroups, 0, 5),
    range(ApiKey::DeleteGroups, 0, 2),
    range(ApiKey::OffsetDelete, 0, 0),
    range(ApiKey::ConsumerGroupHeartbeat, 0, 1),
    range(ApiKey::ConsumerGroupDescribe, 0, 1),
    range(ApiKey::DescribeProducers, 0, 0),
    range(ApiKey::AddPartitionsToTxn, 0, 3),
    range(ApiKey::AddOffsetsToTxn, 0, 4),
    range(ApiKey::TxnOffsetCommit, 0, 4),
    range(ApiKey::EndTxn, 0, 5),
    range(ApiKey::DescribeTransactions, 0, 0),
    range(ApiKey::ListTransactions, 0, 1),
    range(ApiKey::WriteTxnMarkers, 1, 1),
    range(ApiKey::ElectLeaders, 0, 2),
    range(ApiKey::AlterPartitionReassignments, 0, 0),
    range(ApiKey::ListPartitionReassignments, 0, 0),
    range(ApiKey::AlterConfigs, 0, 2),
    range(ApiKey::IncrementalAlterConfigs, 0, 1),
    range(ApiKey::DeleteRecords, 0, 2),
    range(ApiKey::DescribeLogDirs, 1, 4),
    range(ApiKey::DescribeQuorum, 0, 2),
    // SaslHandshake v0 is advertised because librdkafka only sees SASL handshake support
    // in a range that includes it, but a v0 handshake (raw SASL tokens without Kafka
    // framing after it, clients older than Kafka 1.0) is refused: every client that speaks
    // v1 uses SaslAuthenticate, which is all Strata reads.
    range(ApiKey::SaslHandshake, 0, 1),
    range(ApiKey::SaslAuthenticate, 0, 2),
    range(ApiKey::DescribeUserScramCredentials, 0, 0),
    range(ApiKey::AlterUserScramCredentials, 0, 0),
    range(ApiKey::CreateAcls, 1, 3),
    range(ApiKey::DescribeAcls, 1, 3),
    range(ApiKey::DeleteAcls, 1, 3),
    range(ApiKey::DescribeClientQuotas, 0, 1),
    range(ApiKey::AlterClientQuotas, 0, 1),
];

/// What brokers send each other on the inter-broker (controller) listener, never accepted
/// from clients: transaction markers (commit markers included) and KIP-890's verification
/// of a transactional write with its coordinator (AddPartitionsToTxn v4+, verify only), and
/// DescribeQuorum forwarded to the quorum leader.
pub const INTER_BROKER_APIS: &[ApiRange] = &[
    range(ApiKey::WriteTxnMarkers, 1, 1),
    range(ApiKey::AddPartitionsToTxn, 4, 5),
    // A broker that does not lead the metadata quorum forwards DescribeQuorum to the one that does.
    range(ApiKey::DescribeQuorum, 0, 2),
];

pub fn supported_versions(key: ApiKey) -> Option<ApiRange> {
    SUPPORTED_APIS.iter().copied().find(|r| r.key == key)
}
