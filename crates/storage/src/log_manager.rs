//! The data directory's own files, beside the partition directories (Kafka's `LogManager`):
//!
//! - `recovery-point-offset-checkpoint`: every partition's recovery point (Kafka's format: `0`,
//!   a count, then `topic partition offset` lines), written periodically and at clean close;
//! - `log-start-offset-checkpoint`: every partition's log start offset, written (and synced)
//!   before DeleteRecords answers, since it can lie inside a segment where recovery alone
//!   would not find it;
//! - `replication-offset-checkpoint`: every partition's high watermark (written with the
//!   recovery points), read by a replicated partition's log at open, so a restarted replica
//!   never takes records it holds for acknowledged ones (its log end says only what it has);
//! - `cleaner-offset-checkpoint`: every compacted log's first dirty offset, written after each
//!   cleaning pass, so a restart resumes cleaning where it stopped (losing it only means
//!   remapping from the log start);
//! - `clean-shutdown`: present only after a clean close.
//!
//! Recovery story: at open the marker is removed (synced) before any log opens, so a crash
//! while opening means a recovery next time; the checkpoints give each log its
//! [`RecoveryHint`]; each log syncs what its recovery kept; logs may open in the background
//! while others serve ([`LogManager::defer`]: checkpoints carry their old entries, and a
//! close before they are all open leaves no marker); once every log is open the checkpoints
//! are rewritten (dropping entries of topics deleted since). Every file is replaced
//! atomically (`checkpoint`), so a crash leaves the old or the new contents.
//!
//! Recovery points are checkpointed often (the broker: every second, or sooner after many
//! bytes): each checkpoint first writes the active segments' new index entries (syncing them
//! every 256 index intervals of log), so a recovery finds the checkpointed offset through the
//! index and scans only what follows the entry it starts at
//! (`segment::SegmentCore::recover_from`, which checks that entry's batch).
//!
//! The manager does not own the partitions (the broker does, driven by metadata): callers
//! pass the partitions a checkpoint covers. Thread safety: log start checkpoints are
//! serialized by a lock, so an older list never overwrites a newer one; recovery point
//! checkpoints come from one background task and the close path.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::error::Result;
use crate::{checkpoint, Fs, Partition, RecoveryHint, StorageError};

/// Every partition's recovery point (Kafka's file name).
pub const RECOVERY_POINTS_FILE: &str = "recovery-point-offset-checkpoint";
/// Present only after a clean shutdown.
pub const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown";
/// Every partition's log start offset (Kafka's file name).
pub const LOG_START_FILE: &str = "log-start-offset-checkpoint";
/// Every partition's high watermark (Kafka's file name).
pub const HIGH_WATERMARK_FILE: &str = "replication-offset-checkpoint";
/// Every compacted log's first dirty offset (Kafka's file name).
pub const CLEANER_CHECKPOINT_FILE: &str = "cleaner-offset-checkpoint";

/// What the data directory said about its partitions when it was opened.
#[derive(Debug, Default)]
pub struct RecoveryState {
    /// The previous run closed cleanly (the marker was there).
    pub clean_shutdown: bool,
    recovery_points: HashMap<(String, i32), i64>,
    log_starts: HashMap<(String, i32), i64>,
    cleaner_offsets: HashMap<(String, i32), i64>,
    high_watermarks: HashMap<(String, i32), i64>,
}

impl RecoveryState {
    /// How the log of `topic`-`partition` should recover.
    pub fn hint(&self, topic: &str, partition: i32) -> RecoveryHint {
        let key = (topic.to_string(), partition);
        let recovery_point = self.recovery_points.get(&key).copied();
        RecoveryHint {
            recovery_point,
            clean_shutdown: self.clean_shutdown && recovery_point.is_some(),
            log_start_offset: self.log_starts.get(&key).copied(),
            defer_sync: false,
            high_watermark: None,
        }
    }

    /// [`RecoveryState::hint`] for a replica of a replicated partition: with the high
    /// watermark this directory last checkpointed for it (its log start offset, 0 at most,
    /// when there is none).
    pub fn replica_hint(&self, topic: &str, partition: i32) -> RecoveryHint {
        let key = (topic.to_string(), partition);
        RecoveryHint {
            high_watermark: Some(self.high_watermarks.get(&key).copied().unwrap_or(0)),
            ..self.hint(topic, partition)
        }
    }

    /// Whether a log start offset checkpoint was read (it must then be rewritten, so entries
    /// of topics deleted since never apply to a later topic of that name).
    pub fn has_log_starts(&self) -> bool {
        !self.log_starts.is_empty()
    }
}

/// The data directory's checkpoints and clean-shutdown marker.
pub struct LogManager {
    fs: Arc<dyn Fs>,
    data_dir: PathBuf,
    /// Serializes writes of the log start offset checkpoint.
    log_start_checkpoint: Mutex<()>,
    /// The recovery point checkpoint as last written (an unchanged one is not rewritten);
    /// its lock also serializes those writes.
    last_recovery_points: Mutex<Vec<(String, i32, i64)>>,
    last_high_watermarks: Mutex<Vec<(String, i32, i64)>>,
    /// Partitions found at start whose logs are not open yet (recovery runs while the broker
    /// serves the others): their entries are carried into every checkpoint unchanged, and
    /// while any is left a close does not claim to be clean.
    unopened: Mutex<HashMap<(String, i32), Carried>>,
}

/// What a checkpoint keeps for a partition whose log is not open.
#[derive(Debug, Clone, Copy, Default)]
struct Carried {
    recovery_point: Option<i64>,
    log_start_offset: Option<i64>,
    cleaner_offset: Option<i64>,
    high_watermark: Option<i64>,
}

impl LogManager {
    pub fn new(fs: Arc<dyn Fs>, data_dir: &Path) -> Self {
        LogManager {
            fs,
            data_dir: data_dir.to_path_buf(),
            log_start_checkpoint: Mutex::new(()),
            last_recovery_points: Mutex::new(Vec::new()),
            last_high_watermarks: Mutex::new(Vec::new()),
            unopened: Mutex::new(HashMap::new()),
        }
    }

    /// Reads the checkpoints (at most `partitions_max` entries each) and removes the
    /// clean-shutdown marker, synced, before any log is opened.
    pub fn begin_recovery(&self, partitions_max: usize) -> Result<RecoveryState> {
        let clean_path = self.data_dir.join(CLEAN_SHUTDOWN_FILE);
        let clean_shutdown = self.fs.exists(&clean_path);
        if clean_shutdown {
            self.fs
                .remove_file(&clean_path)
                .map_err(|e| StorageError::io(&clean_path, e))?;
            self.fs
                .sync_dir(&self.data_dir)
                .map_err(|e| StorageError::io(&self.data_dir, e))?;
        }
        let read = |name: &str| {
            checkpoint::read_offsets(
                self.fs.as_ref(),
                &self.data_dir.join(name),
                partitions_max + 1,
            )
        };
        Ok(RecoveryState {
            clean_shutdown,
            recovery_points: read(RECOVERY_POINTS_FILE),
            log_starts: read(LOG_START_FILE),
            cleaner_offsets: read(CLEANER_CHECKPOINT_FILE),
            high_watermarks: read(HIGH_WATERMARK_FILE),
        })
    }

    /// Records that the log of `topic`-`partition` will be opened later (by a background
    /// recovery): until [`LogManager::opened`] or [`LogManager::forget`], checkpoints keep
    /// its entries as they were read.
    pub fn defer(&self, state: &RecoveryState, topic: &str, partition: i32) {
        let hint = state.hint(topic, partition);
        let cleaner_offset = state
            .cleaner_offsets
            .get(&(topic.to_string(), partition))
            .copied();
        self.unopened_entries().insert(
            (topic.to_string(), partition),
            Carried {
                recovery_point: hint.recovery_point,
                log_start_offset: hint.log_start_offset,
                cleaner_offset,
                high_watermark: state
                    .high_watermarks
                    .get(&(topic.to_string(), partition))
                    .copied(),
            },
        );
    }

    /// The deferred log of `topic`-`partition` is open (its own values count from now on).
    /// Returns its cleaner checkpoint entry, to restore into the log.
    pub fn opened(&self, topic: &str, partition: i32) -> Option<i64> {
        self.unopened_entries()
            .remove(&(topic.to_string(), partition))
            .and_then(|c| c.cleaner_offset)
    }

    /// The deferred log of `topic`-`partition` will never open (its topic was deleted).
    pub fn forget(&self, topic: &str, partition: i32) {
        self.unopened_entries()
            .remove(&(topic.to_string(), partition));
    }

    /// Whether every log found at start is open.
    pub fn all_opened(&self) -> bool {
        self.unopened_entries().is_empty()
    }

    fn unopened_entries(&self) -> std::sync::MutexGuard<'_, HashMap<(String, i32), Carried>> {
        self.unopened.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Entries of the logs not open yet, for the checkpoint `pick` selects.
    fn carried(&self, pick: impl Fn(&Carried) -> Option<i64>) -> Vec<(String, i32, i64)> {
        self.unopened_entries()
            .iter()
            .filter_map(|((t, p), c)| pick(c).map(|o| (t.clone(), *p, o)))
            .collect()
    }

    /// After every log was opened (each synced what its recovery kept past its recovery
    /// point): the checkpoints are rewritten for exactly `partitions`, dropping entries of
    /// topics deleted since.
    pub fn finish_recovery(
        &self,
        state: &RecoveryState,
        partitions: &[Arc<Partition>],
    ) -> Result<()> {
        self.checkpoint_recovery_points(partitions)?;
        if state.has_log_starts() {
            self.checkpoint_log_start_offsets(partitions)?;
        }
        Ok(())
    }

    /// Writes every partition's recovery point to the one checkpoint file, if any changed
    /// since the last write. Each log first writes its active segment's new index entries
    /// (in steps of 16 index intervals; synced every 256, before the checkpoint is written: a
    /// log whose sync fails keeps its previous entry), so a recovery finds the checkpointed
    /// offset through the index.
    pub fn checkpoint_recovery_points(&self, partitions: &[Arc<Partition>]) -> Result<()> {
        let mut last = self
            .last_recovery_points
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut prepared = Vec::with_capacity(partitions.len());
        for p in partitions {
            let mut log = p.log();
            let before = log.checkpointed_recovery_point();
            match log.prepare_checkpoint() {
                Ok((recovery_point, files)) => prepared.push((p, recovery_point, before, files)),
                Err(e) => {
                    tracing::warn!(topic = %p.topic, partition = p.partition, error = %e, "could not write index entries for a checkpoint");
                    prepared.push((p, before, before, Vec::new()));
                }
            }
        }
        let mut entries = Vec::with_capacity(prepared.len());
        for (p, recovery_point, before, files) in &prepared {
            let synced = files.iter().try_for_each(|f| f.sync_data());
            let offset = match synced {
                Ok(()) => *recovery_point,
                Err(e) => {
                    tracing::warn!(topic = %p.topic, partition = p.partition, error = %e, "could not sync index files for a checkpoint");
                    *before
                }
            };
            entries.push((p.topic.clone(), p.partition, offset));
        }
        entries.extend(self.carried(|c| c.recovery_point));
        if !self.write_if_changed(&mut last, RECOVERY_POINTS_FILE, entries)? {
            return Ok(());
        }
        let entries = &*last;
        for (p, _, _, _) in &prepared {
            let written = entries
                .binary_search_by(|(t, i, _)| {
                    (t.as_str(), *i).cmp(&(p.topic.as_str(), p.partition))
                })
                .map(|i| entries[i].2);
            if let Ok(offset) = written {
                p.log().note_checkpointed(offset);
            }
        }
        Ok(())
    }

    /// Writes every partition's high watermark, if any changed since the last write.
    /// Written after the recovery points, so an entry is never past what a restart recovers
    /// (the log clamps it to its recovery point anyway).
    pub fn checkpoint_high_watermarks(&self, partitions: &[Arc<Partition>]) -> Result<()> {
        let mut last = self
            .last_high_watermarks
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut entries: Vec<(String, i32, i64)> = partitions
            .iter()
            .map(|p| (p.topic.clone(), p.partition, p.high_watermark()))
            .collect();
        entries.extend(self.carried(|c| c.high_watermark));
        self.write_if_changed(&mut last, HIGH_WATERMARK_FILE, entries)
            .map(|_| ())
    }

    /// Replaces checkpoint `file` with `entries` (sorted) unless they are what was last
    /// written there (`last`, updated). True if it wrote.
    fn write_if_changed(
        &self,
        last: &mut Vec<(String, i32, i64)>,
        file: &str,
        mut entries: Vec<(String, i32, i64)>,
    ) -> Result<bool> {
        entries.sort();
        if *last == entries {
            return Ok(false);
        }
        checkpoint::write_offsets(self.fs.as_ref(), &self.data_dir.join(file), &entries)?;
        *last = entries;
        Ok(true)
    }

    /// Writes every partition's log start offset; durable when this returns.
    pub fn checkpoint_log_start_offsets(&self, partitions: &[Arc<Partition>]) -> Result<()> {
        let _one = self
            .log_start_checkpoint
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        self.write(
            LOG_START_FILE,
            partitions,
            |p| p.log().log_start_offset(),
            |c| c.log_start_offset,
        )
    }

    /// Writes every compacted log's first dirty offset.
    pub fn checkpoint_cleaner_offsets(&self, partitions: &[Arc<Partition>]) -> Result<()> {
        let compacted: Vec<Arc<Partition>> = partitions
            .iter()
            .filter(|p| p.log().config().cleanup_compact)
            .cloned()
            .collect();
        self.write(
            CLEANER_CHECKPOINT_FILE,
            &compacted,
            |p| p.log().first_dirty_offset(),
            |c| c.cleaner_offset,
        )
    }

    /// Restores each log's first dirty offset from the cleaner checkpoint (at start).
    pub fn load_cleaner_offsets(&self, partitions: &[Arc<Partition>]) {
        let offsets = checkpoint::read_offsets(
            self.fs.as_ref(),
            &self.data_dir.join(CLEANER_CHECKPOINT_FILE),
            partitions.len() + 1,
        );
        for p in partitions {
            if let Some(o) = offsets.get(&(p.topic.clone(), p.partition)) {
                p.log().set_first_dirty_offset(*o);
            }
        }
    }

    /// Clean close of `partitions`: indexes written, one file-system sync, recovery points at
    /// the log end offsets, and the clean-shutdown marker last. False if any step failed (the
    /// marker is then not written, so the next start recovers).
    pub fn close(&self, partitions: &[Arc<Partition>]) -> bool {
        let mut ends = Vec::new();
        let mut ok = true;
        for p in partitions {
            match p.log().prepare_close() {
                Ok(end) => ends.push((p, end)),
                Err(e) => {
                    ok = false;
                    tracing::warn!(topic = %p.topic, partition = p.partition, error = %e, "error closing log");
                }
            }
        }
        if let Err(e) = self.fs.sync_filesystem(&self.data_dir) {
            tracing::warn!(error = %e, "could not sync the data directory at shutdown");
            return false;
        }
        if !ok {
            return false;
        }
        if !self.all_opened() {
            // Logs still unrecovered must recover next time: no marker.
            for (p, end) in &ends {
                p.mark_flushed(*end);
            }
            if let Err(e) = self.checkpoint_recovery_points(partitions) {
                tracing::warn!(error = %e, "could not write the recovery points");
            }
            return false;
        }
        for (p, end) in &ends {
            p.mark_flushed(*end);
        }
        if let Err(e) = self.checkpoint_high_watermarks(partitions) {
            tracing::warn!(error = %e, "could not write the high watermarks");
        }
        let marked = self.checkpoint_recovery_points(partitions).and_then(|()| {
            checkpoint::write(
                self.fs.as_ref(),
                &self.data_dir.join(CLEAN_SHUTDOWN_FILE),
                0,
            )
        });
        if let Err(e) = marked {
            tracing::warn!(error = %e, "could not write the recovery points or the clean-shutdown marker");
            return false;
        }
        true
    }
}

impl LogManager {
    /// Replaces the data directory's checkpoint `file` with one `topic partition offset`
    /// line per partition (sorted, Kafka's format).
    fn write(
        &self,
        file: &str,
        partitions: &[Arc<Partition>],
        offset: impl Fn(&Partition) -> i64,
        carried: impl Fn(&Carried) -> Option<i64>,
    ) -> Result<()> {
        let mut entries: Vec<(String, i32, i64)> = partitions
            .iter()
            .map(|p| (p.topic.clone(), p.partition, offset(p)))
            .collect();
        entries.extend(self.carried(carried));
        entries.sort();
        checkpoint::write_offsets(self.fs.as_ref(), &self.data_dir.join(file), &entries)
    }
}
