//! RecordBatch v2, the unit Strata stores and serves.
//!
//! The broker never decompresses or re-encodes a batch on the produce path: it validates the
//! 61-byte header and the CRC-32C, then overwrites only the fields the broker owns (base
//! offset, partition leader epoch, and the max timestamp under LogAppendTime). This crate
//! knows the byte layout and nothing about files or sockets.
//!
//! Layout (big-endian), offsets in bytes:
//! ```text
//!  0 base_offset i64        | owned by the broker, outside the CRC
//!  8 batch_length i32       | bytes after this field
//! 12 partition_leader_epoch | owned by the broker, outside the CRC
//! 16 magic i8 (= 2)
//! 17 crc u32                | CRC-32C of bytes 21..end
//! 21 attributes i16         | bits 0-2 codec, 3 timestamp type, 4 transactional, 5 control
//! 23 last_offset_delta i32
//! 27 base_timestamp i64
//! 35 max_timestamp i64
//! 43 producer_id i64
//! 51 producer_epoch i16
//! 53 base_sequence i32
//! 57 records_count i32
//! 61 records...
//! ```

mod batch;
mod builder;
mod decode;
mod error;
mod validate;

pub use batch::{
    control_batch, control_type, crc_of, set_base_offset, set_log_append_time,
    set_log_append_time_split, set_partition_leader_epoch,
};
pub use batch::{BatchHeader, Compression, TimestampType, BATCH_HEADER_BYTES, LOG_OVERHEAD_BYTES};
pub use builder::{BatchBuilder, Record};
pub use decode::{decode_records, DecodedRecord};
pub use error::RecordsError;
pub mod rewrite;
pub use validate::{scan_batches, validate_produce, BatchSpan, ProducedBatches, ScanStop};
