//! The one place where Kafka error codes are chosen.

use kafka_protocol::error::ResponseError;
use strata_records::RecordsError;
use strata_storage::{SequenceError, StorageError};

/// Kafka's error code for a storage failure on the produce or fetch path.
pub fn storage_error_code(e: &StorageError) -> i16 {
    let error = match e {
        StorageError::InvalidBatch(r) => return records_error_code(r),
        StorageError::MessageTooLarge { .. } => ResponseError::MessageTooLarge,
        StorageError::RecordListTooLarge { .. } => ResponseError::RecordListTooLarge,
        StorageError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        StorageError::InvalidTimestamp { .. } => ResponseError::InvalidTimestamp,
        StorageError::InvalidConfig(_) => ResponseError::InvalidConfig,
        StorageError::Io { .. } | StorageError::LogDirFailed(_) => ResponseError::KafkaStorageError,
        StorageError::NotLeader => ResponseError::NotLeaderOrFollower,
        StorageError::Sequence(SequenceError::InvalidProducerEpoch { .. }) => {
            ResponseError::InvalidProducerEpoch
        }
        StorageError::Sequence(SequenceError::OutOfOrderSequence { .. }) => {
            ResponseError::OutOfOrderSequenceNumber
        }
        StorageError::DuplicateSequence => ResponseError::DuplicateSequenceNumber,
        StorageError::NoOpenTransaction(_) | StorageError::VerificationLost(_) => {
            ResponseError::InvalidTxnState
        }
        StorageError::KeylessRecordOnCompactedTopic(_) => ResponseError::InvalidRecord,
        StorageError::CleaningCancelled => ResponseError::UnknownServerError,
    };
    error.code()
}

/// Kafka's error code for an invalid produced batch.
pub fn records_error_code(e: &RecordsError) -> i16 {
    let error = match e {
        RecordsError::CrcMismatch { .. }
        | RecordsError::Truncated { .. }
        | RecordsError::InvalidLength { .. }
        | RecordsError::UnknownCompression(_) => ResponseError::CorruptMessage,
        RecordsError::BatchTooLarge { .. } => ResponseError::MessageTooLarge,
        RecordsError::InvalidTimestamp { .. } => ResponseError::InvalidTimestamp,
        RecordsError::UnsupportedMagic(_)
        | RecordsError::CountMismatch { .. }
        | RecordsError::ControlBatchFromProducer
        | RecordsError::Empty
        | RecordsError::Decode(_) => ResponseError::InvalidRecord,
    };
    error.code()
}

pub const NONE: i16 = 0;
pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = ResponseError::UnknownTopicOrPartition.code();
pub const UNKNOWN_TOPIC_ID: i16 = ResponseError::UnknownTopicId.code();
pub const INVALID_TOPIC: i16 = ResponseError::InvalidTopicException.code();
pub const TOPIC_ALREADY_EXISTS: i16 = ResponseError::TopicAlreadyExists.code();
pub const INVALID_PARTITIONS: i16 = ResponseError::InvalidPartitions.code();
pub const INVALID_REPLICATION_FACTOR: i16 = ResponseError::InvalidReplicationFactor.code();
pub const INVALID_REPLICA_ASSIGNMENT: i16 = ResponseError::InvalidReplicaAssignment.code();
pub const INVALID_CONFIG: i16 = ResponseError::InvalidConfig.code();
pub const INVALID_REQUEST: i16 = ResponseError::InvalidRequest.code();
pub const INVALID_REQUIRED_ACKS: i16 = ResponseError::InvalidRequiredAcks.code();
pub const INVALID_RECORD: i16 = ResponseError::InvalidRecord.code();
pub const UNSUPPORTED_VERSION: i16 = ResponseError::UnsupportedVersion.code();
pub const KAFKA_STORAGE_ERROR: i16 = ResponseError::KafkaStorageError.code();
pub const UNKNOWN_SERVER_ERROR: i16 = ResponseError::UnknownServerError.code();
pub const POLICY_VIOLATION: i16 = ResponseError::PolicyViolation.code();
pub const FENCED_LEADER_EPOCH: i16 = ResponseError::FencedLeaderEpoch.code();
pub const UNKNOWN_LEADER_EPOCH: i16 = ResponseError::UnknownLeaderEpoch.code();
pub const NOT_LEADER_OR_FOLLOWER: i16 = ResponseError::NotLeaderOrFollower.code();
pub const NOT_CONTROLLER: i16 = ResponseError::NotController.code();
pub const ELECTION_NOT_NEEDED: i16 = ResponseError::ElectionNotNeeded.code();
pub const NO_REASSIGNMENT_IN_PROGRESS: i16 = ResponseError::NoReassignmentInProgress.code();
pub const PREFERRED_LEADER_NOT_AVAILABLE: i16 = ResponseError::PreferredLeaderNotAvailable.code();
pub const ELIGIBLE_LEADERS_NOT_AVAILABLE: i16 = ResponseError::EligibleLeadersNotAvailable.code();
pub const NOT_ENOUGH_REPLICAS: i16 = ResponseError::NotEnoughReplicas.code();
pub const NOT_ENOUGH_REPLICAS_AFTER_APPEND: i16 =
    ResponseError::NotEnoughReplicasAfterAppend.code();
pub const OFFSET_OUT_OF_RANGE: i16 = ResponseError::OffsetOutOfRange.code();
pub const REQUEST_TIMED_OUT: i16 = ResponseError::RequestTimedOut.code();
pub const LEADER_NOT_AVAILABLE: i16 = ResponseError::LeaderNotAvailable.code();
pub const ILLEGAL_SASL_STATE: i16 = ResponseError::IllegalSaslState.code();
pub const TOPIC_AUTHORIZATION_FAILED: i16 = ResponseError::TopicAuthorizationFailed.code();
pub const GROUP_AUTHORIZATION_FAILED: i16 = ResponseError::GroupAuthorizationFailed.code();
pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 =
    ResponseError::TransactionalIdAuthorizationFailed.code();
pub const SECURITY_DISABLED: i16 = ResponseError::SecurityDisabled.code();
pub const THROTTLING_QUOTA_EXCEEDED: i16 = ResponseError::ThrottlingQuotaExceeded.code();

/// A request on a partition this broker has no open log for: still recovering after a
/// restart is NOT_LEADER_OR_FOLLOWER (retriable: clients refresh metadata, where it shows
/// without a leader, and retry), a log that failed to open KAFKA_STORAGE_ERROR, anything
/// else UNKNOWN_TOPIC_OR_PARTITION.
pub fn missing_partition(availability: crate::state::Availability) -> i16 {
    use crate::state::Availability;
    match availability {
        Availability::Recovering => NOT_LEADER_OR_FOLLOWER,
        Availability::Failed => KAFKA_STORAGE_ERROR,
        Availability::Open | Availability::Unknown => UNKNOWN_TOPIC_OR_PARTITION,
    }
}

/// KIP-320: a request that names a leader epoch (not -1) must match the current one: an
/// older epoch means the client's metadata is stale (fenced), a newer one that ours is.
pub fn leader_epoch_check(requested: i32, current: i32) -> i16 {
    match requested {
        -1 => NONE,
        e if e < current => FENCED_LEADER_EPOCH,
        e if e > current => UNKNOWN_LEADER_EPOCH,
        _ => NONE,
    }
}

/// Kafka's error code for a group coordinator error.
pub fn group_error_code(e: &strata_group::GroupError) -> i16 {
    use strata_group::GroupError as G;
    let error = match e {
        G::CoordinatorLoadInProgress => ResponseError::CoordinatorLoadInProgress,
        G::NotCoordinator => ResponseError::NotCoordinator,
        G::InvalidGroupId => ResponseError::InvalidGroupId,
        G::UnknownMemberId => ResponseError::UnknownMemberId,
        G::MemberIdRequired => ResponseError::MemberIdRequired,
        G::IllegalGeneration { .. } => ResponseError::IllegalGeneration,
        G::RebalanceInProgress => ResponseError::RebalanceInProgress,
        G::InconsistentGroupProtocol(_) | G::GroupIdInUseByOtherProtocol(_) => {
            ResponseError::InconsistentGroupProtocol
        }
        G::InvalidSessionTimeout { .. } => ResponseError::InvalidSessionTimeout,
        G::FencedInstanceId(_) => ResponseError::FencedInstanceId,
        G::GroupIdNotFound(_) => ResponseError::GroupIdNotFound,
        G::NonEmptyGroup(_) => ResponseError::NonEmptyGroup,
        G::GroupMaxSizeReached(_) => ResponseError::GroupMaxSizeReached,
        G::OffsetMetadataTooLarge { .. } => ResponseError::OffsetMetadataTooLarge,
        G::UnknownTopicOrPartition => ResponseError::UnknownTopicOrPartition,
        G::GroupSubscribedToTopic => ResponseError::GroupSubscribedToTopic,
        G::StaleMemberEpoch { .. } => ResponseError::StaleMemberEpoch,
        G::FencedMemberEpoch { .. } => ResponseError::FencedMemberEpoch,
        G::UnreleasedInstanceId(_) => ResponseError::UnreleasedInstanceId,
        G::UnsupportedAssignor(_) => ResponseError::UnsupportedAssignor,
        G::InvalidRequest(_) => ResponseError::InvalidRequest,
    };
    error.code()
}

/// Group state that could not be made durable: retriable, the client tries again.
pub const COORDINATOR_NOT_AVAILABLE: i16 = ResponseError::CoordinatorNotAvailable.code();
pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = ResponseError::CoordinatorLoadInProgress.code();
pub const OPERATION_NOT_ATTEMPTED: i16 = ResponseError::OperationNotAttempted.code();
pub const NOT_COORDINATOR: i16 = ResponseError::NotCoordinator.code();
pub const PRODUCER_FENCED: i16 = ResponseError::ProducerFenced.code();
pub const INVALID_PRODUCER_EPOCH: i16 = ResponseError::InvalidProducerEpoch.code();
pub const CLUSTER_AUTHORIZATION_FAILED: i16 = ResponseError::ClusterAuthorizationFailed.code();
pub const INVALID_TXN_STATE: i16 = ResponseError::InvalidTxnState.code();
pub const TRANSACTIONAL_ID_NOT_FOUND: i16 = ResponseError::TransactionalIdNotFound.code();
pub const UNSTABLE_OFFSET_COMMIT: i16 = ResponseError::UnstableOffsetCommit.code();

/// Which code a fenced producer gets: PRODUCER_FENCED where the request version knows it
/// (KIP-588), INVALID_PRODUCER_EPOCH before (and always on Produce).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fenced {
    ProducerFenced,
    InvalidProducerEpoch,
}

/// Kafka's error code for a transaction coordinator error.
pub fn txn_error_code(e: &strata_txn::TxnError, fenced: Fenced) -> i16 {
    use strata_txn::TxnError as T;
    let error = match e {
        T::InvalidTransactionalId => ResponseError::InvalidRequest,
        T::InvalidTransactionTimeout(_) => ResponseError::InvalidTransactionTimeout,
        T::InvalidProducerIdMapping(_) => ResponseError::InvalidProducerIdMapping,
        T::ProducerFenced { .. } => match fenced {
            Fenced::ProducerFenced => ResponseError::ProducerFenced,
            Fenced::InvalidProducerEpoch => ResponseError::InvalidProducerEpoch,
        },
        T::ConcurrentTransactions => ResponseError::ConcurrentTransactions,
        T::InvalidTxnState(_) | T::PartitionNotInTransaction(..) => ResponseError::InvalidTxnState,
    };
    error.code()
}
/// A remote coordinator's verification answer as a produce (or TxnOffsetCommit) error: a
/// fenced producer is INVALID_PRODUCER_EPOCH in produce answers, and a coordinator that is
/// moving or busy is NOT_ENOUGH_REPLICAS, which every client retries (Kafka does the same so
/// clients older than KIP-890 retry it too).
pub fn verification_code(code: i16, fenced: Fenced) -> i16 {
    let coordinator_busy = [
        NOT_COORDINATOR,
        COORDINATOR_NOT_AVAILABLE,
        ResponseError::CoordinatorLoadInProgress.code(),
        ResponseError::ConcurrentTransactions.code(),
    ];
    if coordinator_busy.contains(&code) {
        NOT_ENOUGH_REPLICAS
    } else if code == PRODUCER_FENCED && matches!(fenced, Fenced::InvalidProducerEpoch) {
        INVALID_PRODUCER_EPOCH
    } else {
        code
    }
}

/// A remote coordinator's verification answer as a TxnOffsetCommit error: as
/// [`verification_code`], but a busy or moving coordinator is COORDINATOR_NOT_AVAILABLE, the
/// code Kafka's group coordinator gives when the offsets cannot be stored yet (clients retry
/// it; librdkafka treats NOT_ENOUGH_REPLICAS there as abortable).
pub fn txn_offset_commit_verification_code(code: i16, fenced: Fenced) -> i16 {
    match verification_code(code, fenced) {
        NOT_ENOUGH_REPLICAS => COORDINATOR_NOT_AVAILABLE,
        code => code,
    }
}
pub const GROUP_ID_NOT_FOUND: i16 = ResponseError::GroupIdNotFound.code();
pub const INVALID_GROUP_ID: i16 = ResponseError::InvalidGroupId.code();

#[cfg(test)]
mod tests {
    use super::*;

    /// A remote coordinator that is moving or loading is retried by every client: as
    /// NOT_ENOUGH_REPLICAS in a produce answer, as COORDINATOR_NOT_AVAILABLE in a
    /// TxnOffsetCommit answer (Kafka's group coordinator code there); a fenced producer keeps
    /// its code, in the form the API version knows.
    #[test]
    fn verification_answers_map_to_codes_each_api_retries() {
        let old = Fenced::InvalidProducerEpoch;
        for busy in [
            NOT_COORDINATOR,
            COORDINATOR_NOT_AVAILABLE,
            COORDINATOR_LOAD_IN_PROGRESS,
        ] {
            assert_eq!(verification_code(busy, old), NOT_ENOUGH_REPLICAS);
            assert_eq!(
                txn_offset_commit_verification_code(busy, old),
                COORDINATOR_NOT_AVAILABLE
            );
        }
        assert_eq!(
            verification_code(PRODUCER_FENCED, old),
            INVALID_PRODUCER_EPOCH
        );
        assert_eq!(
            txn_offset_commit_verification_code(PRODUCER_FENCED, Fenced::ProducerFenced),
            PRODUCER_FENCED
        );
        assert_eq!(txn_offset_commit_verification_code(NONE, old), NONE);
    }
}
