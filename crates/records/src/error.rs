use thiserror::Error;

/// Why a batch (or a byte range claimed to hold batches) was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RecordsError {
    #[error("record batch truncated: needs {needed} bytes, {available} available")]
    Truncated { needed: usize, available: usize },
    #[error("record batch length {length} is invalid (minimum {minimum})")]
    InvalidLength { length: i64, minimum: usize },
    #[error("unsupported record batch magic {0}; only magic 2 is accepted")]
    UnsupportedMagic(i8),
    #[error("CRC mismatch: batch says {stored:#010x}, bytes give {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("records_count {records_count} does not match last_offset_delta {last_offset_delta}")]
    CountMismatch {
        records_count: i32,
        last_offset_delta: i32,
    },
    #[error("unknown compression codec {0}")]
    UnknownCompression(u8),
    #[error("control batches may only be written by the broker")]
    ControlBatchFromProducer,
    #[error("invalid timestamp: max_timestamp {max} is below base_timestamp {base}")]
    InvalidTimestamp { base: i64, max: i64 },
    #[error("batch of {size} bytes exceeds the limit of {limit} bytes")]
    BatchTooLarge { size: usize, limit: usize },
    #[error("no record batch in the request")]
    Empty,
    #[error("records could not be decoded: {0}")]
    Decode(String),
}
