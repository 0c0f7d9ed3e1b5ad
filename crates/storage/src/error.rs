use std::path::PathBuf;

use strata_records::RecordsError;
use thiserror::Error;

/// What can go wrong in storage. The broker maps each variant to a Kafka error code.
#[derive(Debug, Error)]
pub enum StorageError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid record batch: {0}")]
    InvalidBatch(#[from] RecordsError),
    #[error("batch of {size} bytes is larger than max.message.bytes ({limit})")]
    MessageTooLarge { size: usize, limit: usize },
    #[error("batch of {size} bytes cannot fit in a segment of segment.bytes {limit}")]
    RecordListTooLarge { size: usize, limit: usize },
    #[error("offset {offset} is out of range [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: i64,
        log_end_offset: i64,
    },
    #[error("timestamp {timestamp} is out of the accepted range [{min}, {max}] for CreateTime")]
    InvalidTimestamp { timestamp: i64, min: i64, max: i64 },
    #[error("invalid log configuration: {0}")]
    InvalidConfig(String),
    #[error("log directory {0} is not usable after an earlier I/O error")]
    LogDirFailed(PathBuf),
    #[error("{0}")]
    Sequence(#[from] crate::producer_state::SequenceError),
    #[error("a retried batch came together with other batches in one request")]
    DuplicateSequence,
    #[error(
        "transactional batch from producer {0}, which has no transaction open on this partition"
    )]
    NoOpenTransaction(i64),
    #[error("the cleaning pass was cancelled (shutdown)")]
    CleaningCancelled,
    #[error("Compacted topic cannot accept message without key (record at offset delta {0})")]
    KeylessRecordOnCompactedTopic(i64),
}

impl StorageError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, StorageError>;
