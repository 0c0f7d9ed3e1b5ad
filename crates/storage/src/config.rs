//! Per-log configuration: the topic configs storage honours, with Kafka's names and defaults.

use strata_records::rewrite::Level;
use strata_records::Compression;

use crate::StorageError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`: roll the active segment when it would grow past this.
    pub segment_bytes: u64,
    /// `segment.ms`: roll the active segment when its first append is this old.
    pub segment_ms: i64,
    /// `retention.ms`: delete sealed segments whose newest timestamp is older; -1 = forever.
    pub retention_ms: i64,
    /// `retention.bytes`: delete oldest sealed segments while the log is larger; -1 = no limit.
    pub retention_bytes: i64,
    /// `max.message.bytes`: largest batch accepted (after the producer's compression).
    pub max_message_bytes: usize,
    /// `message.timestamp.type`.
    pub timestamp_type: TimestampType,
    /// `flush.messages`: fsync after this many messages. 1 (Strata's default) means every
    /// acknowledged write is on disk first; Kafka's relaxed default is `i64::MAX`.
    pub flush_messages: i64,
    /// `flush.ms`: fsync at least this often in relaxed mode.
    pub flush_ms: i64,
    /// `index.interval.bytes`: bytes of log between two offset index entries.
    pub index_interval_bytes: u64,
    /// `message.timestamp.before.max.ms`: CreateTime batches whose first timestamp is older
    /// than this are refused. Checked per batch, not per record.
    pub timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms`: CreateTime batches whose newest timestamp is further
    /// in the future than this are refused.
    pub timestamp_after_max_ms: i64,
    /// `producer.id.expiration.ms`: idempotent producer state of a producer silent this long
    /// is forgotten (its next batch is accepted with any sequence).
    pub producer_id_expiration_ms: i64,
    /// `cleanup.policy` contains `delete`: retention deletes old segments.
    pub cleanup_delete: bool,
    /// `cleanup.policy` contains `compact`: the cleaner keeps the latest record per key (and
    /// producers must give every record a key).
    pub cleanup_compact: bool,
    /// `delete.retention.ms`: how long a tombstone stays after it could be cleaned.
    pub delete_retention_ms: i64,
    /// `min.compaction.lag.ms`: records younger than this are not compacted.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: a log with dirty records older than this is cleaned whatever
    /// its dirty ratio.
    pub max_compaction_lag_ms: i64,
    /// `min.cleanable.dirty.ratio`, in parts per million (500000 = 0.5).
    pub min_cleanable_dirty_ratio_ppm: u32,
    /// `compression.type`: None (`producer`) stores batches in the producer's codec; a codec
    /// (`uncompressed` is `Some(Compression::None)`) has every produced batch in another codec
    /// re-encoded with it before it is stored.
    pub compression: Option<Compression>,
    /// `compression.{gzip,lz4,zstd}.level`: used when this log re-encodes a batch.
    pub compression_level: Level,
    /// `segment.index.bytes`: roll the active segment when either index would grow past this.
    pub segment_index_bytes: u64,
    /// `segment.jitter.ms`: each segment rolls up to this much before `segment.ms` (a
    /// per-segment amount derived from its base offset), so logs created together do not all
    /// roll at once.
    pub segment_jitter_ms: i64,
    /// `min.insync.replicas`: acks=all produces are refused (NOT_ENOUGH_REPLICAS) while fewer
    /// than min(this, replication factor) replicas are in sync, as Kafka's effective min ISR;
    /// on one node (one replica) that never happens. Kept for the replicated broker.
    pub min_insync_replicas: i32,
    /// Strata's own: a recovery point checkpoint also snapshots the idempotent producer state
    /// once this many bytes were appended since the last snapshot, so a restart replays
    /// producer state from near the recovery point instead of from the last segment roll.
    pub producer_snapshot_interval_bytes: u64,
    /// `remote.storage.enable`: sealed segments are copied to the object store (tiered
    /// storage); local retention then deletes only copied segments, by `local.retention.*`,
    /// and `retention.*` applies to the whole log, remote copies included.
    pub remote_storage_enable: bool,
    /// `local.retention.ms` / `local.retention.bytes`: what stays on local disk with tiered
    /// storage; -2 (Kafka's default) takes `retention.ms` / `retention.bytes`.
    pub local_retention_ms: i64,
    pub local_retention_bytes: i64,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3_600_000,
            retention_ms: 7 * 24 * 3_600_000,
            retention_bytes: -1,
            max_message_bytes: 1_048_588,
            timestamp_type: TimestampType::CreateTime,
            flush_messages: 1,
            flush_ms: i64::MAX,
            index_interval_bytes: 4096,
            timestamp_before_max_ms: i64::MAX,
            // Kafka 4.0's default (KIP-937): at most an hour in the future
            timestamp_after_max_ms: 3_600_000,
            producer_id_expiration_ms: 86_400_000,
            cleanup_delete: true,
            cleanup_compact: false,
            delete_retention_ms: 86_400_000,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            min_cleanable_dirty_ratio_ppm: 500_000,
            compression: None,
            compression_level: Level::default(),
            segment_index_bytes: 10 * 1024 * 1024,
            segment_jitter_ms: 0,
            min_insync_replicas: 1,
            producer_snapshot_interval_bytes: 16 << 20,
            remote_storage_enable: false,
            local_retention_ms: -2,
            local_retention_bytes: -2,
        }
    }
}

impl LogConfig {
    /// Durable mode: every acknowledged write is fsync'd before the acknowledgement, and the
    /// high watermark only covers synced data.
    pub fn is_durable(&self) -> bool {
        self.flush_messages <= 1
    }

    /// How long copied segments stay on local disk (`local.retention.ms`, -2 taking
    /// `retention.ms`; -1: forever).
    pub fn effective_local_retention_ms(&self) -> i64 {
        if self.local_retention_ms == -2 {
            self.retention_ms
        } else {
            self.local_retention_ms
        }
    }

    /// How large the local part of a tiered log may grow (`local.retention.bytes`, -2
    /// taking `retention.bytes`; -1: no limit).
    pub fn effective_local_retention_bytes(&self) -> i64 {
        if self.local_retention_bytes == -2 {
            self.retention_bytes
        } else {
            self.local_retention_bytes
        }
    }

    pub fn validate(&self) -> Result<(), StorageError> {
        let bad = |m: String| Err(StorageError::InvalidConfig(m));
        // Kafka's checks and words (LogConfig.validateRemoteStorage*, validateLocalRetention*).
        if self.local_retention_ms < -2 || self.local_retention_bytes < -2 {
            return bad("local.retention.ms and local.retention.bytes must be -2 or more".into());
        }
        if self.remote_storage_enable && self.cleanup_compact {
            return bad("Remote log storage is unsupported for the compacted topics".into());
        }
        if self.local_retention_ms != -2
            && self.retention_ms != -1
            && (self.local_retention_ms == -1 || self.local_retention_ms > self.retention_ms)
        {
            return bad(format!(
                "Invalid value {} for configuration local.retention.ms: Value must not be more than retention.ms property value: {}",
                self.local_retention_ms, self.retention_ms
            ));
        }
        if self.local_retention_bytes != -2
            && self.retention_bytes != -1
            && (self.local_retention_bytes == -1
                || self.local_retention_bytes > self.retention_bytes)
        {
            return bad(format!(
                "Invalid value {} for configuration local.retention.bytes: Value must not be more than retention.bytes property value: {}",
                self.local_retention_bytes, self.retention_bytes
            ));
        }
        if self.segment_bytes < 14 || self.segment_bytes > i32::MAX as u64 {
            return bad(format!(
                "segment.bytes {} must be in [14, {}]",
                self.segment_bytes,
                i32::MAX
            ));
        }
        if self.segment_ms < 1 {
            return bad(format!("segment.ms {} must be at least 1", self.segment_ms));
        }
        if self.retention_ms < -1 {
            return bad(format!(
                "retention.ms {} must be -1 or more",
                self.retention_ms
            ));
        }
        if self.retention_bytes < -1 {
            return bad(format!(
                "retention.bytes {} must be -1 or more",
                self.retention_bytes
            ));
        }
        if self.max_message_bytes == 0 || self.max_message_bytes > i32::MAX as usize {
            return bad(format!(
                "max.message.bytes {} must be in [1, {}]",
                self.max_message_bytes,
                i32::MAX
            ));
        }
        if self.flush_messages < 1 {
            return bad(format!(
                "flush.messages {} must be at least 1",
                self.flush_messages
            ));
        }
        if self.flush_ms < 0 {
            return bad(format!("flush.ms {} must be 0 or more", self.flush_ms));
        }
        if self.timestamp_before_max_ms < 0 || self.timestamp_after_max_ms < 0 {
            return bad("message.timestamp.before.max.ms and message.timestamp.after.max.ms must be 0 or more".into());
        }
        if !(self.cleanup_delete || self.cleanup_compact) {
            return bad("cleanup.policy must contain delete, compact or both".into());
        }
        if self.delete_retention_ms < 0 || self.min_compaction_lag_ms < 0 {
            return bad("delete.retention.ms and min.compaction.lag.ms must be 0 or more".into());
        }
        if self.max_compaction_lag_ms < 1 || self.max_compaction_lag_ms < self.min_compaction_lag_ms
        {
            return bad(format!(
                "max.compaction.lag.ms {} must be at least 1 and at least min.compaction.lag.ms {}",
                self.max_compaction_lag_ms, self.min_compaction_lag_ms
            ));
        }
        if self.min_cleanable_dirty_ratio_ppm > 1_000_000 {
            return bad("min.cleanable.dirty.ratio must be between 0 and 1".into());
        }
        if self.segment_index_bytes < 4 || self.segment_index_bytes > i32::MAX as u64 {
            return bad(format!(
                "segment.index.bytes {} must be in [4, {}]",
                self.segment_index_bytes,
                i32::MAX
            ));
        }
        if self.segment_jitter_ms < 0 {
            return bad("segment.jitter.ms must be 0 or more".into());
        }
        if self.min_insync_replicas < 1 {
            return bad("min.insync.replicas must be at least 1".into());
        }
        for codec in [Compression::Gzip, Compression::Lz4, Compression::Zstd] {
            let level = match codec {
                Compression::Gzip => self.compression_level.gzip,
                Compression::Lz4 => self.compression_level.lz4,
                _ => self.compression_level.zstd,
            };
            Level::check(codec, level).map_err(StorageError::InvalidConfig)?;
        }
        Ok(())
    }
}
