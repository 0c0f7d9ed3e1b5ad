//! Request decoding: header, then a body of one of the supported types.

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Decodable;

use crate::api::INTER_BROKER_APIS;
use crate::{supported_versions, ApiRange, ProtocolError};

/// A decoded request of a type Strata serves.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Produce(ProduceRequest),
    Fetch(FetchRequest),
    ListOffsets(ListOffsetsRequest),
    OffsetForLeaderEpoch(OffsetForLeaderEpochRequest),
    Metadata(MetadataRequest),
    ApiVersions(ApiVersionsRequest),
    CreateTopics(CreateTopicsRequest),
    DeleteTopics(DeleteTopicsRequest),
    InitProducerId(InitProducerIdRequest),
    DescribeConfigs(DescribeConfigsRequest),
    CreatePartitions(CreatePartitionsRequest),
    DescribeCluster(DescribeClusterRequest),
    FindCoordinator(FindCoordinatorRequest),
    JoinGroup(JoinGroupRequest),
    SyncGroup(SyncGroupRequest),
    Heartbeat(HeartbeatRequest),
    LeaveGroup(LeaveGroupRequest),
    OffsetCommit(OffsetCommitRequest),
    OffsetFetch(OffsetFetchRequest),
    DescribeGroups(DescribeGroupsRequest),
    ListGroups(ListGroupsRequest),
    DeleteGroups(DeleteGroupsRequest),
    OffsetDelete(OffsetDeleteRequest),
    ConsumerGroupHeartbeat(ConsumerGroupHeartbeatRequest),
    ConsumerGroupDescribe(ConsumerGroupDescribeRequest),
    DescribeProducers(DescribeProducersRequest),
    AddPartitionsToTxn(AddPartitionsToTxnRequest),
    AddOffsetsToTxn(AddOffsetsToTxnRequest),
    TxnOffsetCommit(TxnOffsetCommitRequest),
    EndTxn(EndTxnRequest),
    DescribeTransactions(DescribeTransactionsRequest),
    ListTransactions(ListTransactionsRequest),
    WriteTxnMarkers(WriteTxnMarkersRequest),
    ElectLeaders(ElectLeadersRequest),
    AlterPartitionReassignments(AlterPartitionReassignmentsRequest),
    ListPartitionReassignments(ListPartitionReassignmentsRequest),
    AlterConfigs(AlterConfigsRequest),
    DeleteRecords(DeleteRecordsRequest),
    DescribeLogDirs(DescribeLogDirsRequest),
    IncrementalAlterConfigs(IncrementalAlterConfigsRequest),
    DescribeQuorum(DescribeQuorumRequest),
    SaslHandshake(SaslHandshakeRequest),
    SaslAuthenticate(SaslAuthenticateRequest),
    DescribeUserScramCredentials(DescribeUserScramCredentialsRequest),
    AlterUserScramCredentials(AlterUserScramCredentialsRequest),
    CreateAcls(CreateAclsRequest),
    DescribeAcls(DescribeAclsRequest),
    DeleteAcls(DeleteAclsRequest),
    DescribeClientQuotas(DescribeClientQuotasRequest),
    AlterClientQuotas(AlterClientQuotasRequest),
    /// ApiVersions at a version newer than ours. KIP-511: answer in v0 with
    /// UNSUPPORTED_VERSION and our ranges, so the client can pick one.
    ApiVersionsTooNew,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RequestFrame {
    pub api_key: ApiKey,
    pub version: i16,
    pub header: RequestHeader,
    pub request: Request,
}

fn malformed(api_key: ApiKey, version: i16, e: impl std::fmt::Display) -> ProtocolError {
    ProtocolError::Malformed {
        api_key: api_key as i16,
        version,
        reason: e.to_string(),
    }
}

fn body<T: Decodable>(buf: &mut Bytes, key: ApiKey, version: i16) -> Result<T, ProtocolError> {
    T::decode(buf, version).map_err(|e| malformed(key, version, e))
}

/// Decodes one frame body (without its length prefix). Pure: no I/O, bounded by the frame.
pub fn decode_request(frame: Bytes) -> Result<RequestFrame, ProtocolError> {
    decode_with(frame, supported_versions)
}

/// Decodes one request a broker sent another on the inter-broker listener: only the APIs and
/// versions of [`INTER_BROKER_APIS`].
pub fn decode_inter_broker_request(frame: Bytes) -> Result<RequestFrame, ProtocolError> {
    decode_with(frame, |key| {
        INTER_BROKER_APIS.iter().copied().find(|r| r.key == key)
    })
}

fn decode_with(
    mut frame: Bytes,
    versions: impl Fn(ApiKey) -> Option<ApiRange>,
) -> Result<RequestFrame, ProtocolError> {
    if frame.len() < 8 {
        return Err(ProtocolError::ShortFrame(frame.len()));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let api_key = ApiKey::try_from(raw_key).map_err(|()| ProtocolError::UnknownApiKey(raw_key))?;
    let range = versions(api_key).ok_or(ProtocolError::UnknownApiKey(raw_key))?;
    if api_key == ApiKey::ApiVersions && version > range.max {
        // The header of an unknown ApiVersions version cannot be trusted past client_id:
        // read it as header v1 and ignore the body.
        let header =
            RequestHeader::decode(&mut frame, 1).map_err(|e| malformed(api_key, version, e))?;
        return Ok(RequestFrame {
            api_key,
            version,
            header,
            request: Request::ApiVersionsTooNew,
        });
    }
    if version < range.min || version > range.max {
        return Err(ProtocolError::UnsupportedVersion {
            api_key: raw_key,
            version,
        });
    }
    let header_version = api_key.request_header_version(version);
    let header = RequestHeader::decode(&mut frame, header_version)
        .map_err(|e| malformed(api_key, version, e))?;
    let buf = &mut frame;
    let request = match api_key {
        ApiKey::Produce => Request::Produce(body(buf, api_key, version)?),
        ApiKey::Fetch => Request::Fetch(body(buf, api_key, version)?),
        ApiKey::ListOffsets => Request::ListOffsets(body(buf, api_key, version)?),
        ApiKey::OffsetForLeaderEpoch => Request::OffsetForLeaderEpoch(body(buf, api_key, version)?),
        ApiKey::Metadata => Request::Metadata(body(buf, api_key, version)?),
        ApiKey::ApiVersions => Request::ApiVersions(body(buf, api_key, version)?),
        ApiKey::CreateTopics => Request::CreateTopics(body(buf, api_key, version)?),
        ApiKey::DeleteTopics => Request::DeleteTopics(body(buf, api_key, version)?),
        ApiKey::InitProducerId => Request::InitProducerId(body(buf, api_key, version)?),
        ApiKey::DescribeConfigs => Request::DescribeConfigs(body(buf, api_key, version)?),
        ApiKey::CreatePartitions => Request::CreatePartitions(body(buf, api_key, version)?),
        ApiKey::DescribeCluster => Request::DescribeCluster(body(buf, api_key, version)?),
        ApiKey::FindCoordinator => Request::FindCoordinator(body(buf, api_key, version)?),
        ApiKey::JoinGroup => Request::JoinGroup(body(buf, api_key, version)?),
        ApiKey::SyncGroup => Request::SyncGroup(body(buf, api_key, version)?),
        ApiKey::Heartbeat => Request::Heartbeat(body(buf, api_key, version)?),
        ApiKey::LeaveGroup => Request::LeaveGroup(body(buf, api_key, version)?),
        ApiKey::OffsetCommit => Request::OffsetCommit(body(buf, api_key, version)?),
        ApiKey::OffsetFetch => Request::OffsetFetch(body(buf, api_key, version)?),
        ApiKey::DescribeGroups => Request::DescribeGroups(body(buf, api_key, version)?),
        ApiKey::ListGroups => Request::ListGroups(body(buf, api_key, version)?),
        ApiKey::DeleteGroups => Request::DeleteGroups(body(buf, api_key, version)?),
        ApiKey::OffsetDelete => Request::OffsetDelete(body(buf, api_key, version)?),
        ApiKey::ConsumerGroupHeartbeat => {
            Request::ConsumerGroupHeartbeat(body(buf, api_key, version)?)
        }
        ApiKey::ConsumerGroupDescribe => {
            Request::ConsumerGroupDescribe(body(buf, api_key, version)?)
        }
        ApiKey::DescribeProducers => Request::DescribeProducers(body(buf, api_key, version)?),
        ApiKey::AddPartitionsToTxn => Request::AddPartitionsToTxn(body(buf, api_key, version)?),
        ApiKey::AddOffsetsToTxn => Request::AddOffsetsToTxn(body(buf, api_key, version)?),
        ApiKey::TxnOffsetCommit => Request::TxnOffsetCommit(body(buf, api_key, version)?),
        ApiKey::EndTxn => Request::EndTxn(body(buf, api_key, version)?),
        ApiKey::DescribeTransactions => Request::DescribeTransactions(body(buf, api_key, version)?),
        ApiKey::ListTransactions => Request::ListTransactions(body(buf, api_key, version)?),
        ApiKey::WriteTxnMarkers => Request::WriteTxnMarkers(body(buf, api_key, version)?),
        ApiKey::ElectLeaders => Request::ElectLeaders(body(buf, api_key, version)?),
        ApiKey::AlterPartitionReassignments => {
            Request::AlterPartitionReassignments(body(buf, api_key, version)?)
        }
        ApiKey::ListPartitionReassignments => {
            Request::ListPartitionReassignments(body(buf, api_key, version)?)
        }
        ApiKey::AlterConfigs => Request::AlterConfigs(body(buf, api_key, version)?),
        ApiKey::DeleteRecords => Request::DeleteRecords(body(buf, api_key, version)?),
        ApiKey::DescribeLogDirs => Request::DescribeLogDirs(body(buf, api_key, version)?),
        ApiKey::DescribeQuorum => Request::DescribeQuorum(body(buf, api_key, version)?),
        ApiKey::IncrementalAlterConfigs => {
            Request::IncrementalAlterConfigs(body(buf, api_key, version)?)
        }
        ApiKey::SaslHandshake => Request::SaslHandshake(body(buf, api_key, version)?),
        ApiKey::SaslAuthenticate => Request::SaslAuthenticate(body(buf, api_key, version)?),
        ApiKey::DescribeUserScramCredentials => {
            Request::DescribeUserScramCredentials(body(buf, api_key, version)?)
        }
        ApiKey::AlterUserScramCredentials => {
            Request::AlterUserScramCredentials(body(buf, api_key, version)?)
        }
        ApiKey::CreateAcls => Request::CreateAcls(body(buf, api_key, version)?),
        ApiKey::DescribeAcls => Request::DescribeAcls(body(buf, api_key, version)?),
        ApiKey::DeleteAcls => Request::DeleteAcls(body(buf, api_key, version)?),
        ApiKey::DescribeClientQuotas => Request::DescribeClientQuotas(body(buf, api_key, version)?),
        ApiKey::AlterClientQuotas => Request::AlterClientQuotas(body(buf, api_key, version)?),
        _ => return Err(ProtocolError::UnknownApiKey(raw_key)),
    };
    // Trailing bytes are ignored, as Kafka does: librdkafka 2.x sends Metadata v12 with
    // fields this version no longer has.
    Ok(RequestFrame {
        api_key,
        version,
        header,
        request,
    })
}
