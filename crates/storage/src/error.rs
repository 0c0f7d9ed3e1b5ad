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
    /// `records`: the index of each offending record in the produced record set (KIP-467).
    #[error("timestamp {timestamp} is out of the accepted range [{min}, {max}] for CreateTime")]
    InvalidTimestamp {
        timestamp: i64,
        min: i64,
        max: i64,
        records: Vec<i32>,
    },
    #[error("invalid log configuration: {0}")]
    InvalidConfig(String),
    #[error("log directory {0} is not usable after an earlier I/O error")]
    LogDirFailed(PathBuf),
    /// A leader's append reached a replica that follows another since the request was
    /// checked (a role change while the request waited, e.g. on transaction verification).
    #[error("this replica no longer leads the partition")]
    NotLeader,
    #[error("{0}")]
    Sequence(#[from] crate::producer_state::SequenceError),
    #[error("a retried batch came together with other batches in one request")]
    DuplicateSequence,
    #[error(
        "transactional batch from producer {0}, which has no transaction open on this partition"
    )]
    NoOpenTransaction(i64),
    #[error(
        "producer {0}'s transaction ended on this partition between its verification and its write"
    )]
    VerificationLost(i64),
    #[error("the cleaning pass was cancelled (shutdown)")]
    CleaningCancelled,
    /// The index of each keyless record in the produced record set (KIP-467).
    #[error("Compacted topic cannot accept message without key (records {0:?} of the request)")]
    KeylessRecordOnCompactedTopic(Vec<i32>),
}

impl StorageError {
    /// KIP-467: the records (by index in the produced record set) that made the whole set be
    /// refused, each with why; empty when the refusal is not about particular records.
    pub fn record_errors(&self) -> Vec<(i32, String)> {
        match self {
            StorageError::KeylessRecordOnCompactedTopic(records) => records
                .iter()
                .map(|&i| {
                    (
                        i,
                        "Compacted topic cannot accept message without key".to_string(),
                    )
                })
                .collect(),
            StorageError::InvalidTimestamp {
                min, max, records, ..
            } => records
                .iter()
                .map(|&i| {
                    (
                        i,
                        format!(
                            "Timestamp is out of the accepted range [{min}, {max}] for CreateTime"
                        ),
                    )
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, StorageError>;
