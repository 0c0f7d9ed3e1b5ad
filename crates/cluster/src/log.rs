use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use strata_records::{decode_records, BatchBuilder, Compression, Record};
use strata_storage::{Clock, Fs, Log, LogConfig};
use tracing::info;

use crate::{MetadataError, MetadataImage, MetadataRecord};

/// Metadata records read per replay step.
const REPLAY_READ_BYTES: usize = 1 << 20;

/// The metadata log on one node: a durable storage log plus the image it replays to.
pub struct MetadataLog {
    log: Log,
    /// Shared with readers: a change builds a new image and swaps the `Arc`.
    image: Arc<MetadataImage>,
    leader_epoch: i32,
}

impl MetadataLog {
    pub const DIR_NAME: &'static str = "__cluster_metadata-0";

    /// Opens the metadata log in `data_dir` and replays it into the image.
    pub fn open(
        fs: Arc<dyn Fs>,
        clock: Arc<dyn Clock>,
        data_dir: &Path,
    ) -> Result<Self, MetadataError> {
        let config = LogConfig {
            segment_bytes: 64 << 20,
            // One change may be large: a topic of 100,000 partitions is ≈ 20 MB of records.
            max_message_bytes: 48 << 20,
            retention_ms: -1,
            ..LogConfig::default()
        };
        let log = Log::open(fs, clock, &data_dir.join(Self::DIR_NAME), config)?;
        let mut image = MetadataImage::default();
        let mut offset = log.log_start_offset();
        let mut applied = 0usize;
        while offset < log.high_watermark() {
            let data = log.read(offset, REPLAY_READ_BYTES)?;
            let records = decode_records(data.records).map_err(|e| MetadataError::BadRecord {
                offset,
                reason: e.to_string(),
            })?;
            let Some(last) = records.last().map(|r| r.offset) else {
                break;
            };
            for r in records.into_iter().filter(|r| r.offset >= offset) {
                let value = r.value.unwrap_or_default();
                let record: MetadataRecord =
                    serde_json::from_slice(&value).map_err(|e| MetadataError::BadRecord {
                        offset: r.offset,
                        reason: e.to_string(),
                    })?;
                image.apply(&record)?;
                applied += 1;
            }
            offset = last + 1;
        }
        info!(
            records = applied,
            topics = image.topics().count(),
            "metadata log replayed"
        );
        Ok(Self {
            log,
            image: Arc::new(image),
            leader_epoch: 0,
        })
    }

    /// The current image, cheap to clone and safe to hold while the log moves on.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.image.clone()
    }

    /// The offset the next batch gets (everything below is applied to the image).
    pub fn end_offset(&self) -> i64 {
        self.log.log_end_offset()
    }

    /// Appends `records` as one atomic batch: all are checked against the image first, the
    /// batch is synced, and only then is the image changed.
    pub fn append(&mut self, records: &[MetadataRecord]) -> Result<(), MetadataError> {
        let mut next = (*self.image).clone();
        for r in records {
            next.apply(r)?;
        }
        let mut builder = BatchBuilder::new(Compression::None);
        for r in records {
            let value = serde_json::to_vec(r).expect("metadata records always serialize");
            builder.push(Record {
                value: Some(Bytes::from(value)),
                timestamp_ms: 0,
                ..Default::default()
            });
        }
        let batch = builder
            .build()
            .map_err(strata_storage::StorageError::from)?
            .to_vec();
        self.log.append(&batch, self.leader_epoch)?;
        let (file, end) = self.log.flush_target();
        file.sync_data()
            .map_err(|e| strata_storage::StorageError::io(self.log.dir(), e))?;
        self.log.mark_flushed(end);
        self.image = Arc::new(next);
        Ok(())
    }

    pub fn close(&mut self) -> Result<(), MetadataError> {
        Ok(self.log.close()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use strata_storage::{ManualClock, SimFs};
    use uuid::Uuid;

    #[test]
    fn changes_survive_reopen_and_failed_changes_leave_no_trace() {
        let fs = SimFs::new();
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(0));
        let open =
            || MetadataLog::open(Arc::new(fs.clone()), clock.clone(), Path::new("/d")).unwrap();
        let mut m = open();
        let id = Uuid::from_u128(7);
        m.append(&[
            MetadataRecord::Topic {
                name: "t".into(),
                topic_id: id,
                configs: BTreeMap::new(),
            },
            MetadataRecord::Partition {
                topic_id: id,
                partition: 0,
                leader: 1,
                leader_epoch: 0,
                replicas: vec![1],
                isr: vec![1],
            },
        ])
        .unwrap();
        let dup = MetadataRecord::Topic {
            name: "t".into(),
            topic_id: Uuid::from_u128(8),
            configs: BTreeMap::new(),
        };
        assert!(m.append(&[dup]).is_err());
        drop(m);
        fs.crash(strata_storage::fs::CrashMode::LoseUnsynced);
        let m = open();
        assert_eq!(m.image().topic("t").unwrap().partitions.len(), 1);
        assert_eq!(m.image().topics().count(), 1);
    }
}
