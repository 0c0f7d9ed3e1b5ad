use thiserror::Error;

/// Why a group request failed. The broker maps each to its Kafka error code (in one place).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GroupError {
    #[error("the group coordinator is still loading group metadata")]
    CoordinatorLoadInProgress,
    #[error("this broker is not the group's coordinator")]
    NotCoordinator,
    #[error("invalid group id")]
    InvalidGroupId,
    #[error("unknown member id")]
    UnknownMemberId,
    #[error("the member must rejoin with the member id it was given")]
    MemberIdRequired,
    #[error("generation {got} is not the group's generation {current}")]
    IllegalGeneration { got: i32, current: i32 },
    #[error("the group is rebalancing")]
    RebalanceInProgress,
    #[error("{0}")]
    InconsistentGroupProtocol(String),
    #[error("session timeout {got} ms is outside [{min}, {max}] ms")]
    InvalidSessionTimeout { got: i32, min: i32, max: i32 },
    #[error("static member {0} was fenced by a newer instance")]
    FencedInstanceId(String),
    #[error("group {0} does not exist")]
    GroupIdNotFound(String),
    #[error("group {0} is not empty")]
    NonEmptyGroup(String),
    #[error("group {0} has reached its maximum size")]
    GroupMaxSizeReached(String),
    #[error("offset metadata is {got} bytes, more than {max}")]
    OffsetMetadataTooLarge { got: usize, max: usize },
    #[error("unknown topic or partition")]
    UnknownTopicOrPartition,
    #[error("the group is subscribed to this topic")]
    GroupSubscribedToTopic,
    #[error("member epoch {got} is stale (current {current})")]
    StaleMemberEpoch { got: i32, current: i32 },
    #[error("member epoch {got} is fenced (current {current})")]
    FencedMemberEpoch { got: i32, current: i32 },
    #[error("static member {0} has not released its instance id")]
    UnreleasedInstanceId(String),
    #[error("unsupported assignor {0}")]
    UnsupportedAssignor(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("group {0} uses the other group protocol")]
    GroupIdInUseByOtherProtocol(String),
}

pub type Result<T> = std::result::Result<T, GroupError>;
