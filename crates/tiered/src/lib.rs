//! Tiered storage (Kafka's KIP-405): a partition's sealed segments are copied to an object
//! store, read back from it when a fetch asks for offsets no longer on local disk, and
//! deleted from it when retention says so. This crate owns the object store side: where a
//! segment's files go and in what form ([`remote`]), checked on the way back. It knows
//! nothing of the broker, the network protocol or the log's in-memory state; the broker
//! decides what to copy and when, and records each segment's progress (copy started,
//! copy finished, delete started) in cluster metadata.

pub mod reader;
pub mod remote;
pub mod throttle;
pub mod txn_index;

pub use reader::{ReaderConfig, ReaderStats, RemoteReader};
pub use remote::{
    check_batches, FileKind, LocalSegmentFiles, Manifest, ReadAt, RemoteConfig, RemoteStorage,
    SegmentObjects, StoredCopy,
};
pub use throttle::RateLimiter;
pub use txn_index::AbortedRange;

/// What can go wrong talking to the object store (reported; the caller retries with
/// backoff and nothing local is deleted meanwhile).
#[derive(Debug, thiserror::Error)]
pub enum TieredError {
    #[error("remote storage url {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("reading {path}: {source}")]
    LocalIo {
        path: String,
        source: std::io::Error,
    },
    #[error("{object}: {reason}")]
    Corrupt { object: String, reason: String },
    #[error("{object}: not in the object store")]
    Missing { object: String },
}

pub type Result<T> = std::result::Result<T, TieredError>;
