//! Cluster metadata as a log of records, replayed into an image at start.
//!
//! Every change to topics, partitions and their configs is a [`MetadataRecord`] appended to
//! the metadata log (`<data-dir>/__cluster_metadata-0`, a storage [`Log`] like any partition,
//! one JSON record per change, synced before the change is applied). The
//! [`MetadataImage`] is a pure state machine: `apply(record)`, no I/O. On a single node the
//! broker appends directly; a later change puts the same records through `openraft`, and the
//! image and the broker's use of it stay as they are.

mod delta;
mod image;
mod log;
mod record;

pub use delta::{ImageDelta, PartitionRef};
pub use image::{
    BrokerRegistration, ClientQuotaImage, MetadataImage, PartitionImage, ScramCredentialImage,
    TopicImage,
};
pub use log::MetadataLog;
pub use record::{
    AclEntry, Endpoint, MetadataRecord, QuotaValue, RemoteSegment, RemoteSegmentState,
};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum MetadataError {
    #[error("topic '{0}' already exists")]
    TopicExists(String),
    #[error("unknown topic id {0}")]
    UnknownTopicId(uuid::Uuid),
    #[error("partition {partition} of topic {topic_id} already exists")]
    PartitionExists {
        topic_id: uuid::Uuid,
        partition: i32,
    },
    #[error(
        "partitions of topic {topic_id} must be added in order: expected {expected}, got {got}"
    )]
    PartitionOutOfOrder {
        topic_id: uuid::Uuid,
        expected: i32,
        got: i32,
    },
    #[error("unknown partition {partition} of topic {topic_id}")]
    UnknownPartition {
        topic_id: uuid::Uuid,
        partition: i32,
    },
    #[error("invalid change of partition {partition} of topic {topic_id}: {why}")]
    InvalidPartitionChange {
        topic_id: uuid::Uuid,
        partition: i32,
        why: String,
    },
    #[error("unknown broker {0}")]
    UnknownBroker(i32),
    #[error("node {node_id} is registered with data directory {registered}, not {new}: a node id is never reused by another (or a wiped) directory")]
    DirectoryChanged {
        node_id: i32,
        registered: uuid::Uuid,
        new: uuid::Uuid,
    },
    #[error("producer id block must start at {actual}, not {expected}")]
    ProducerIdsMoved { expected: i64, actual: i64 },
    #[error("broker {node_id} epoch {got} is not its current epoch {current}")]
    StaleBrokerEpoch {
        node_id: i32,
        got: i64,
        current: i64,
    },
    #[error("metadata log storage: {0}")]
    Storage(#[from] strata_storage::StorageError),
    #[error("metadata record at offset {offset} is unreadable: {reason}")]
    BadRecord { offset: i64, reason: String },
}
