//! The log of one partition: an ordered set of segments, the newest one active.
//!
//! Directory layout (`<data-dir>/<topic>-<partition>/`):
//! - `<base offset, 20 digits>.log|.index|.timeindex`: the segments.
//!
//! Recovery state: the recovery point (an offset below which every byte is known to be
//! synced) and whether the last close was clean (then indexes are trusted as written). A
//! broker keeps these for all its logs in one place and opens each log with
//! [`Log::open_managed`] and a [`RecoveryHint`]; a standalone log (the metadata log, tests)
//! keeps them in its own directory as `recovery-point` and `clean-shutdown` files (see
//! [`crate::checkpoint`]).
//!
//! Offsets: `log_start_offset` (first retained offset) ≤ `high_watermark` (what consumers may
//! read) ≤ `log_end_offset` (next offset to assign). In durable mode (`flush.messages` = 1)
//! the high watermark only covers synced bytes, so a consumer never sees a record that a power
//! loss could take back; in relaxed mode it equals the log end offset. On a single node the
//! two are equal once a produce is acknowledged; replication will move the high watermark by
//! follower acknowledgements instead.
//!
//! Recovery: segments wholly below the recovery point are trusted (indexes loaded, the tail
//! after the last index entry checked). The segment holding the recovery point is scanned
//! from the index entry at or below it (the index files' entries up to the recovery point
//! were synced before the checkpoint naming it was written: [`Log::prepare_checkpoint`]),
//! later segments from their first byte; each scan truncates at the first torn or corrupt
//! batch, and any later segment is then deleted, since offsets must stay dense. What
//! recovery kept past the recovery point is synced before the log is served, and the high
//! watermark starts at the recovered log end offset. Producer state comes from the newest
//! snapshot (written at roll, at clean close, and at checkpoints every
//! `producer_snapshot_interval_bytes`) plus the batch headers after it.
//!
//! Thread safety: `&mut self` for writes; [`crate::Partition`] wraps a `Log` in a mutex.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use strata_records::{
    control_batch, control_type, decode_records, scan_batches, set_base_offset,
    set_log_append_time_split, set_partition_leader_epoch, validate_produce, BatchHeader,
    BatchSpan, ScanStop, BATCH_HEADER_BYTES,
};
use tracing::{info, warn};

use crate::error::Result;
use crate::leader_epoch::LeaderEpochCache;
use crate::producer_state::{ProducerState, SequenceCheck};
use crate::segment::{
    open_existing, segment_file, ActiveSegment, SealedSegment, SegmentSlice, SegmentTrust,
};
use crate::{checkpoint, Clock, Fs, FsFile, LogConfig, StorageError, TimestampType};

const RECOVERY_POINT_FILE: &str = "recovery-point";
const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown";

/// Recovery state a broker keeps for all its logs in one place (Kafka's
/// `recovery-point-offset-checkpoint` and clean-shutdown file per data directory) instead of
/// a file per partition, so checkpointing 10,000 partitions is one write, not 10,000.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecoveryHint {
    pub recovery_point: Option<i64>,
    pub clean_shutdown: bool,
    /// A log start offset advanced inside a segment (DeleteRecords), from the broker's
    /// `log-start-offset-checkpoint`: the log start never goes back behind it.
    pub log_start_offset: Option<i64>,
    /// The caller makes what recovery kept durable itself (one syncfs for many logs) and
    /// then calls [`Log::recovery_synced`]; until then the high watermark stays at the
    /// recovery point.
    pub defer_sync: bool,
    /// A replica of a replicated partition: the high watermark it last knew (Kafka's
    /// `replication-offset-checkpoint`; the log start offset when it has none). The log
    /// opens with its high watermark there, never past the recovery point: its log end only
    /// says what this replica holds, not what the in-sync replicas acknowledged. None (a
    /// standalone node, the only replica) opens it at the recovery point.
    pub high_watermark: Option<i64>,
}

/// Who is appending, which decides the producer-state checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AppendOrigin {
    /// A producer: transactional batches are refused (no transaction was verified).
    Client,
    /// A producer whose ongoing transaction includes this partition (KIP-890 verification).
    VerifiedTransaction,
    /// A coordinator writing for a producer: epoch checked, sequences not tracked.
    Coordinator,
}

/// What an append assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    /// The broker time stamped on the batches under LogAppendTime, else -1.
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
    pub records: i64,
}

/// A sealed segment's files, opened (see [`Log::sealed_segment_files`]).
pub struct SegmentFiles {
    pub log: Arc<dyn FsFile>,
    pub index: Arc<dyn FsFile>,
    pub time_index: Arc<dyn FsFile>,
    /// The producer state as of the segment's end, if its snapshot is there.
    pub producer_snapshot: Option<Arc<dyn FsFile>>,
}

/// The result of a read: whole batches (possibly none) and the offsets a fetch reports.
#[derive(Debug, Clone)]
pub struct FetchData {
    pub records: Bytes,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
}

pub struct Log {
    fs: Arc<dyn Fs>,
    clock: Arc<dyn Clock>,
    dir: PathBuf,
    config: LogConfig,
    sealed: BTreeMap<i64, SealedSegment>,
    active: ActiveSegment,
    log_start_offset: i64,
    high_watermark: i64,
    /// Every offset below this is synced to disk.
    recovery_point: i64,
    /// Messages appended since the last sync (for relaxed `flush.messages`).
    unflushed_messages: i64,
    last_flush_ms: i64,
    /// The recovery point last written to disk (checkpoints skip unchanged values).
    checkpointed: i64,
    /// Bytes appended since the log was opened, and the count when the last checkpoint was
    /// prepared: what a recovery would have to scan is bounded by their difference.
    appended_bytes: u64,
    appended_at_checkpoint: u64,
    /// `appended_bytes` when the last producer state snapshot was written.
    appended_at_snapshot: u64,
    /// Where each leader epoch starts (see [`crate::leader_epoch`]).
    epochs: LeaderEpochCache,
    /// Set when a [`crate::Partition`] wraps this log: the partition decides the high
    /// watermark (from its replicas' durable ends) and the log no longer moves it itself.
    partition_owns_high_watermark: bool,
    /// Set when the partition is deleted: nothing is written to its directory any more.
    deleted: bool,
    /// Tiered storage: every offset below this is in a finished copy in the object store
    /// (None: nothing copied). Local retention deletes only segments wholly below it.
    remote_copied_end: Option<i64>,
    /// Opened with a [`RecoveryHint`]: the caller keeps the recovery state.
    managed: bool,
    /// Recovery kept bytes past the recovery point that the caller has yet to sync (see
    /// [`RecoveryHint::defer_sync`]).
    recovery_sync_pending: bool,
    /// Opened at a checkpointed high watermark (a replica): recovery does not raise it.
    high_watermark_checkpointed: bool,
    /// Set when a sync or a write failed (Kafka's log directory failure). After a failed
    /// fdatasync the kernel may have dropped the dirty pages, so no later sync can vouch for
    /// them; after a failed write (a full disk) the files may hold part of a change the
    /// memory does not. Either way the log refuses appends and never moves its recovery
    /// point or high watermark again until it is reopened, and recovery decides from the
    /// files what it holds. The broker takes a failed log as its data directory's failure.
    failed: bool,
    /// Idempotent producers' last batches (see [`crate::producer_state`]).
    producers: ProducerState,
    /// Where the last cleaning pass stopped (compacted logs): records before it were
    /// deduplicated against everything mapped so far.
    first_dirty_offset: i64,
}

const SNAPSHOT_EXTENSION: &str = "snapshot";

fn parse_snapshot_name(path: &Path) -> Option<i64> {
    if path.extension()? != SNAPSHOT_EXTENSION {
        return None;
    }
    let stem = path.file_stem()?.to_str()?;
    if stem.len() != 20 {
        return None;
    }
    stem.parse().ok()
}

fn parse_segment_name(path: &Path) -> Option<i64> {
    if path.extension()? != "log" {
        return None;
    }
    let stem = path.file_stem()?.to_str()?;
    if stem.len() != 20 {
        return None;
    }
    stem.parse().ok()
}

impl Log {
    /// Opens (creating if absent) and recovers the log in `dir`.
    pub fn open(
        fs: Arc<dyn Fs>,
        clock: Arc<dyn Clock>,
        dir: &Path,
        config: LogConfig,
    ) -> Result<Self> {
        Self::open_with(fs, clock, dir, config, None)
    }

    /// Opens a log whose recovery state the caller keeps (see [`RecoveryHint`]). Nothing is
    /// synced or checkpointed here: the caller syncs the file system once after opening all
    /// its logs, before serving them.
    pub fn open_managed(
        fs: Arc<dyn Fs>,
        clock: Arc<dyn Clock>,
        dir: &Path,
        config: LogConfig,
        hint: RecoveryHint,
    ) -> Result<Self> {
        Self::open_with(fs, clock, dir, config, Some(hint))
    }

    fn open_with(
        fs: Arc<dyn Fs>,
        clock: Arc<dyn Clock>,
        dir: &Path,
        config: LogConfig,
        hint: Option<RecoveryHint>,
    ) -> Result<Self> {
        config.validate()?;
        fs.create_dir_all(dir)
            .map_err(|e| StorageError::io(dir, e))?;
        // A cleaning pass a crash interrupted: undone before its commit, finished after.
        crate::cleaner::recover(fs.as_ref(), dir)?;
        let entries = fs.list_dir(dir).map_err(|e| StorageError::io(dir, e))?;
        let mut bases: Vec<i64> = entries
            .iter()
            .filter_map(|p| parse_segment_name(p))
            .collect();
        bases.sort_unstable();
        let (clean, recovery_point) = match hint {
            Some(h) => (h.clean_shutdown, h.recovery_point.unwrap_or(0)),
            None => {
                let clean_path = dir.join(CLEAN_SHUTDOWN_FILE);
                let clean = fs.exists(&clean_path);
                if clean {
                    fs.remove_file(&clean_path)
                        .map_err(|e| StorageError::io(&clean_path, e))?;
                }
                (
                    clean,
                    checkpoint::read(fs.as_ref(), &dir.join(RECOVERY_POINT_FILE)).unwrap_or(0),
                )
            }
        };

        let mut sealed = BTreeMap::new();
        let mut truncated_total = 0u64;
        let mut deleted_any = false;
        let mut expected_next: Option<i64> = None;
        let mut after_truncation = false;
        for (i, &base) in bases.iter().enumerate() {
            if after_truncation || expected_next.is_some_and(|next| base != next) {
                // After a truncated segment (or a gap) later segments cannot keep offsets
                // dense, so they go: they only ever held unacknowledged or corrupt data.
                warn!(dir = %dir.display(), base, "deleting segment that no longer follows the log");
                for ext in ["log", "index", "timeindex"] {
                    let _ = fs.remove_file(&segment_file(dir, base, ext));
                }
                deleted_any = true;
                continue;
            }
            let next_base = bases.get(i + 1).copied();
            let trust = if clean || next_base.is_some_and(|nb| nb <= recovery_point) {
                SegmentTrust::Trusted
            } else if base < recovery_point {
                SegmentTrust::RecoverFrom(recovery_point)
            } else {
                SegmentTrust::Untrusted
            };
            let (segment, truncated) = open_existing(
                fs.as_ref(),
                dir,
                base,
                config.index_interval_bytes,
                trust,
                next_base,
            )?;
            truncated_total += truncated;
            after_truncation = truncated > 0;
            expected_next = Some(segment.0.next_offset());
            sealed.insert(base, segment);
        }
        let active = match sealed.pop_last() {
            Some((_, last)) => last.into_active(),
            None => {
                // A new log: its first segment's name (and the partition directory's, in the
                // data directory) made durable before anything in it can be acknowledged —
                // a file's fdatasync does not cover its directory entry.
                let created =
                    ActiveSegment::create(fs.as_ref(), dir, 0, config.index_interval_bytes)?;
                fs.sync_dir(dir).map_err(|e| StorageError::io(dir, e))?;
                if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                    fs.sync_dir(parent)
                        .map_err(|e| StorageError::io(parent, e))?;
                }
                created
            }
        };
        let log_start_offset = sealed
            .keys()
            .next()
            .copied()
            .unwrap_or(active.0.base_offset);
        let now = clock.now_ms();
        let mut log = Self {
            fs,
            clock,
            dir: dir.to_path_buf(),
            config,
            sealed,
            active,
            log_start_offset,
            high_watermark: 0,
            recovery_point: 0,
            unflushed_messages: 0,
            last_flush_ms: now,
            // an absent checkpoint reads as 0, which a new empty log need not write
            checkpointed: recovery_point,
            appended_bytes: 0,
            appended_at_checkpoint: 0,
            appended_at_snapshot: 0,
            partition_owns_high_watermark: false,
            epochs: LeaderEpochCache::implicit(0),
            deleted: false,
            remote_copied_end: None,
            managed: hint.is_some(),
            recovery_sync_pending: false,
            high_watermark_checkpointed: false,
            failed: false,
            producers: ProducerState::default(),
            first_dirty_offset: 0,
        };
        // What survived recovery past the recovery point may still be only in the page
        // cache, and the active segment's index files may lag or hold stale entries: sync
        // both before anyone reads the log (or a checkpoint names its end), so nothing
        // served can disappear later. A log that ends at its recovery point and lost no
        // segment needs nothing.
        let leo = log.log_end_offset();
        let index_files = log.active.persist_indexes(log.fs.as_ref(), true)?;
        let needs_sync = hint.is_none() || (!clean && (leo > recovery_point || deleted_any));
        let defer = needs_sync && hint.is_some_and(|h| h.defer_sync);
        if needs_sync && !defer {
            let active = segment_file(&log.dir, log.active.0.base_offset, "log");
            log.active
                .0
                .file()
                .sync_data()
                .map_err(|e| StorageError::io(&active, e))?;
            for f in index_files {
                f.sync_data().map_err(|e| StorageError::io(&active, e))?;
            }
            if deleted_any {
                log.fs
                    .sync_dir(&log.dir)
                    .map_err(|e| StorageError::io(&log.dir, e))?;
            }
        }
        if defer {
            // Durable below the old recovery point only, until the caller's sync.
            log.recovery_point = recovery_point.min(leo);
            log.recovery_sync_pending = true;
        } else {
            log.recovery_point = leo;
        }
        log.high_watermark = log.recovery_point;
        if let Some(start) = hint.and_then(|h| h.log_start_offset) {
            if start > leo {
                warn!(dir = %log.dir.display(), checkpointed = start, log_end_offset = leo, "log start offset checkpoint is past the log end; using the log end");
            }
            log.log_start_offset = log.log_start_offset.max(start.min(leo));
        }
        if let Some(hw) = hint.and_then(|h| h.high_watermark) {
            log.high_watermark = hw.clamp(log.log_start_offset, log.recovery_point);
            log.high_watermark_checkpointed = true;
        }
        if hint.is_none() {
            log.write_recovery_point()?;
        }
        if truncated_total > 0 || deleted_any || (!clean && leo > recovery_point) {
            info!(dir = %log.dir.display(), log_end_offset = leo, truncated_bytes = truncated_total, clean, "log recovered");
        }
        log.load_producer_state()?;
        log.load_leader_epochs()?;
        Ok(log)
    }

    /// Whether recovery kept bytes the caller must still sync (see
    /// [`RecoveryHint::defer_sync`]).
    pub fn recovery_sync_pending(&self) -> bool {
        self.recovery_sync_pending
    }

    /// The caller synced the file system after recovery: everything recovered is durable.
    pub fn recovery_synced(&mut self) {
        if self.recovery_sync_pending {
            self.recovery_sync_pending = false;
            self.recovery_point = self.log_end_offset();
            if !self.high_watermark_checkpointed {
                self.high_watermark = self.high_watermark.max(self.recovery_point);
            }
        }
    }

    /// The leader epoch cache: from its file (rebuilt from the batches if the file is
    /// unusable), cut to the recovered log.
    fn load_leader_epochs(&mut self) -> Result<()> {
        let start = self.log_start_offset;
        let mut epochs = match LeaderEpochCache::load(self.fs.as_ref(), &self.dir, start) {
            Some(c) => c,
            None => {
                warn!(dir = %self.dir.display(), "leader epoch checkpoint unusable; rebuilding it from the log");
                let mut batches = Vec::new();
                for segment in self
                    .sealed
                    .values()
                    .map(|s| &s.0)
                    .chain(std::iter::once(&self.active.0))
                {
                    segment.visit_batches(
                        start,
                        |_| false,
                        |h, _| batches.push((h.partition_leader_epoch, h.base_offset)),
                    )?;
                }
                let rebuilt = LeaderEpochCache::rebuild(batches, start);
                rebuilt.write(self.fs.as_ref(), &self.dir)?;
                rebuilt
            }
        };
        let cut = epochs.truncate_from_end(self.log_end_offset());
        let trimmed = epochs.truncate_from_start(start);
        if cut || trimmed {
            epochs.write(self.fs.as_ref(), &self.dir)?;
        }
        self.epochs = epochs;
        Ok(())
    }

    /// Records (durably) that `leader_epoch` starts at the log end, before its first batch
    /// is written, if it is newer than the latest epoch.
    fn begin_epoch(&mut self, leader_epoch: i32) -> Result<()> {
        if self
            .epochs
            .latest_epoch()
            .is_some_and(|l| leader_epoch <= l)
        {
            return Ok(());
        }
        let mut next = self.epochs.clone();
        if next.assign(leader_epoch, self.log_end_offset()) {
            next.write(self.fs.as_ref(), &self.dir)?;
            self.epochs = next;
        }
        Ok(())
    }

    /// OffsetsForLeaderEpoch: the largest epoch not above `epoch` and the offset where it
    /// ended (see [`LeaderEpochCache::end_offset_for`]).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        self.epochs.end_offset_for(epoch, self.log_end_offset())
    }

    /// The leader epochs this log knows, (epoch, start offset) in order (the first
    /// starting at the log start at the latest).
    pub fn leader_epoch_entries(&self) -> Vec<(i32, i64)> {
        self.epochs.entries().to_vec()
    }

    /// The log start moved: epochs before it go (persisted if the file is in use).
    fn trim_leader_epochs(&mut self) {
        if self.epochs.truncate_from_start(self.log_start_offset) {
            if let Err(e) = self.epochs.write(self.fs.as_ref(), &self.dir) {
                warn!(dir = %self.dir.display(), error = %e, "could not rewrite the leader epoch checkpoint");
            }
        }
    }

    /// Idempotent producer state: the newest intact snapshot at or below the log end offset,
    /// then the headers of every batch after it.
    fn load_producer_state(&mut self) -> Result<()> {
        let leo = self.log_end_offset();
        let entries = self
            .fs
            .list_dir(&self.dir)
            .map_err(|e| StorageError::io(&self.dir, e))?;
        let mut snapshots: Vec<(i64, PathBuf)> = entries
            .into_iter()
            .filter_map(|p| parse_snapshot_name(&p).map(|o| (o, p)))
            .collect();
        snapshots.sort();
        let mut state = None;
        for (offset, path) in snapshots.iter().rev() {
            if *offset > leo || *offset < self.log_start_offset {
                continue;
            }
            if let Some(s) = self.read_snapshot(path) {
                state = Some((*offset, s));
                break;
            }
        }
        let (from, state) = state.unwrap_or((self.log_start_offset, ProducerState::default()));
        // Snapshots past the log end (truncated away) would be wrong next time.
        for (offset, path) in &snapshots {
            if *offset > leo {
                let _ = self.fs.remove_file(path);
            }
        }
        // Batch headers from the snapshot on (control batches whole, for their type).
        let mut producers = state;
        for segment in self
            .sealed
            .values()
            .map(|s| &s.0)
            .chain(std::iter::once(&self.active.0))
            .filter(|s| s.next_offset() > from)
        {
            segment.visit_batches(
                from,
                |h| h.is_control(),
                |h, bytes| {
                    let timestamp = h.max_timestamp.max(h.base_timestamp);
                    match bytes {
                        Some(bytes) => {
                            if let Some(commit) = control_type(bytes) {
                                producers.apply_marker(h, commit, timestamp);
                            }
                        }
                        None => producers.apply(h, timestamp),
                    }
                },
            )?;
        }
        self.producers = producers;
        let now = self.clock.now_ms();
        self.producers
            .expire(now.saturating_sub(self.config.producer_id_expiration_ms));
        Ok(())
    }

    fn read_snapshot(&self, path: &Path) -> Option<ProducerState> {
        let file = self.fs.open(path, false).ok()?;
        let len = file.len().ok()? as usize;
        if len > 256 << 20 {
            return None;
        }
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, 0).ok()?;
        ProducerState::decode(&buf)
    }

    /// Writes the producer state as of the log end offset (at roll and clean close), keeping
    /// the previous snapshot too. Not synced: a lost or torn snapshot fails its CRC and
    /// recovery replays from an older one.
    fn write_producer_snapshot(&mut self) -> Result<()> {
        self.write_producer_snapshot_synced(false)
    }

    /// [`Log::write_producer_snapshot`], durable when `synced` (file and directory entry):
    /// after DeleteRecords no older snapshot can stand in for it.
    fn write_producer_snapshot_synced(&mut self, synced: bool) -> Result<()> {
        if self.deleted {
            return Ok(());
        }
        let now = self.clock.now_ms();
        self.producers
            .expire(now.saturating_sub(self.config.producer_id_expiration_ms));
        self.appended_at_snapshot = self.appended_bytes;
        let leo = self.log_end_offset();
        let path = self.dir.join(format!("{leo:020}.{SNAPSHOT_EXTENSION}"));
        let tmp = self.dir.join(format!("{leo:020}.{SNAPSHOT_EXTENSION}.tmp"));
        let bytes = self.producers.encode();
        let file = self
            .fs
            .open(&tmp, true)
            .map_err(|e| StorageError::io(&tmp, e))?;
        file.set_len(0).map_err(|e| StorageError::io(&tmp, e))?;
        file.write_all_at(&bytes, 0)
            .map_err(|e| StorageError::io(&tmp, e))?;
        if synced {
            file.sync_data().map_err(|e| StorageError::io(&tmp, e))?;
        }
        drop(file);
        self.fs
            .rename(&tmp, &path)
            .map_err(|e| StorageError::io(&path, e))?;
        if synced {
            self.fs
                .sync_dir(&self.dir)
                .map_err(|e| StorageError::io(&self.dir, e))?;
        }
        let entries = self
            .fs
            .list_dir(&self.dir)
            .map_err(|e| StorageError::io(&self.dir, e))?;
        let mut older: Vec<(i64, PathBuf)> = entries
            .into_iter()
            .filter_map(|p| parse_snapshot_name(&p).map(|o| (o, p)))
            .filter(|(o, _)| *o < leo)
            .collect();
        older.sort();
        // Keep the newest older one as a fallback.
        older.pop();
        // A tiered log keeps the snapshots of the segments not yet copied (each copy takes
        // the one at its segment's end, for replicas that start over there).
        if self.config.remote_storage_enable {
            let copied = self.remote_copied_end.unwrap_or(i64::MIN);
            older.retain(|(o, _)| *o <= copied);
        }
        for (_, p) in older {
            let _ = self.fs.remove_file(&p);
        }
        Ok(())
    }

    /// The idempotent producer state (for DescribeProducers and tests).
    /// A replica that started over at `offset` (its leader's local log start; the records
    /// below it are in tiered storage) takes the producer state as of `offset` from the
    /// snapshot copied with the segment that ends there, so it deduplicates, fences and
    /// knows aborted transactions as its leader does. Only while the log is still empty
    /// at `offset` (Ok(false) otherwise: records arrived first, and the state is left as
    /// they built it). The snapshot is written durably, as a recovery would read it.
    pub fn restore_producer_state(&mut self, offset: i64, snapshot: &[u8]) -> Result<bool> {
        if self.log_start_offset != offset || self.log_end_offset() != offset {
            return Ok(false);
        }
        let Some(state) = ProducerState::decode(snapshot) else {
            return Err(StorageError::io(
                &self.dir,
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "the producer snapshot to restore is not valid",
                ),
            ));
        };
        self.producers = state;
        self.write_producer_snapshot_synced(true)?;
        Ok(true)
    }

    pub fn producer_state(&self) -> &ProducerState {
        &self.producers
    }

    pub fn fs(&self) -> Arc<dyn Fs> {
        self.fs.clone()
    }
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn config(&self) -> &LogConfig {
        &self.config
    }
    pub fn set_config(&mut self, config: LogConfig) -> Result<()> {
        config.validate()?;
        self.config = config;
        Ok(())
    }
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }
    pub fn log_end_offset(&self) -> i64 {
        self.active.0.next_offset()
    }
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    /// Hands the high watermark to the partition wrapping this log (see
    /// [`Log::advance_high_watermark`]).
    pub fn hand_high_watermark_to_partition(&mut self) {
        self.partition_owns_high_watermark = true;
    }

    /// Moves the high watermark forward to `offset` (never back, never past the log end).
    pub fn advance_high_watermark(&mut self, offset: i64) {
        let offset = offset.min(self.log_end_offset());
        if offset > self.high_watermark {
            self.high_watermark = offset;
        }
    }

    /// This replica's end as replication counts it: in durable mode the synced end (an
    /// acknowledged record is on disk), else the log end offset.
    pub fn durable_end(&self) -> i64 {
        if self.config.is_durable() {
            self.recovery_point.min(self.log_end_offset())
        } else {
            self.log_end_offset()
        }
    }

    /// The log's clock, in milliseconds.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }
    pub fn recovery_point(&self) -> i64 {
        self.recovery_point
    }
    pub fn segment_count(&self) -> usize {
        self.sealed.len() + 1
    }
    pub fn size_bytes(&self) -> u64 {
        self.sealed.values().map(|s| s.0.size()).sum::<u64>() + self.active.0.size()
    }

    /// Bytes of the segments holding offsets at or past `offset` (tiered storage: the local
    /// part not yet copied, counted with the copies against `retention.bytes`).
    pub fn size_bytes_past(&self, offset: i64) -> u64 {
        self.sealed
            .values()
            .filter(|s| s.0.next_offset() > offset)
            .map(|s| s.0.size())
            .sum::<u64>()
            + self.active.0.size()
    }

    /// Validates `batches` (a producer's record set for this partition), assigns offsets from
    /// the log end offset, stamps the leader epoch (and LogAppendTime if configured) and
    /// writes them. Nothing is written unless every batch is valid.
    pub fn append(&mut self, batches: &[u8], leader_epoch: i32) -> Result<AppendInfo> {
        let appended = self.append_inner(batches, leader_epoch, AppendOrigin::Client);
        self.offline_on_io(appended)
    }

    /// [`Log::append`] for a producer whose transaction the caller verified with the
    /// transaction coordinator (KIP-890): transactional batches are accepted and open the
    /// producer's transaction on this partition.
    pub fn append_transactional(
        &mut self,
        batches: &[u8],
        leader_epoch: i32,
    ) -> Result<AppendInfo> {
        let appended = self.append_inner(batches, leader_epoch, AppendOrigin::VerifiedTransaction);
        self.offline_on_io(appended)
    }

    /// Appends batches written by a coordinator on behalf of a producer (transactional
    /// offset commits in `__consumer_offsets`): no sequence numbers (`base_sequence` -1), so
    /// only the producer epoch is checked (an older epoch is fenced).
    pub fn append_coordinator(&mut self, batches: &[u8], leader_epoch: i32) -> Result<AppendInfo> {
        let appended = self.append_inner(batches, leader_epoch, AppendOrigin::Coordinator);
        self.offline_on_io(appended)
    }

    /// Any I/O error while changing the log's files fails the log (see the `failed` field):
    /// a full disk or a failing device is the data directory's failure, not the request's,
    /// as Kafka's `LogDirFailureChannel` makes it.
    fn offline_on_io<T>(&mut self, result: Result<T>) -> Result<T> {
        if let Err(StorageError::Io { path, source }) = &result {
            if !self.deleted {
                warn!(dir = %self.dir.display(), path = %path.display(), error = %source, "write failed");
                self.mark_failed();
            }
        }
        result
    }

    /// Writes a transaction marker (commit or abort) for `producer_id`, closing its
    /// transaction on this partition.
    pub fn append_marker(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
        leader_epoch: i32,
    ) -> Result<AppendInfo> {
        let appended = self.append_marker_inner(
            producer_id,
            producer_epoch,
            commit,
            coordinator_epoch,
            leader_epoch,
        );
        self.offline_on_io(appended)
    }

    fn append_marker_inner(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
        leader_epoch: i32,
    ) -> Result<AppendInfo> {
        if self.failed {
            return Err(StorageError::LogDirFailed(self.dir.clone()));
        }
        let now = self.clock.now_ms();
        let mut batch = control_batch(producer_id, producer_epoch, commit, coordinator_epoch, now);
        self.maybe_roll(batch.len() as u64, now)?;
        self.begin_epoch(leader_epoch)?;
        let base_offset = self.log_end_offset();
        set_base_offset(&mut batch, base_offset);
        set_partition_leader_epoch(&mut batch, leader_epoch);
        let header = BatchHeader::parse(&batch)?;
        self.active.append(&[&batch], &[(0, header)], now)?;
        self.appended_bytes += batch.len() as u64;
        self.producers.apply_marker(&header, commit, now);
        self.unflushed_messages += 1;
        if !self.config.is_durable() && !self.partition_owns_high_watermark {
            self.high_watermark = self.log_end_offset();
        }
        Ok(AppendInfo {
            base_offset,
            last_offset: base_offset,
            log_append_time_ms: -1,
            log_start_offset: self.log_start_offset,
            records: 1,
        })
    }

    /// The last stable offset: below it every transaction is decided (read_committed
    /// consumers read up to here). At most the high watermark.
    pub fn last_stable_offset(&self) -> i64 {
        match self.producers.first_unstable_offset() {
            Some(first) => first.min(self.high_watermark),
            None => self.high_watermark,
        }
    }

    /// Aborted transactions whose data overlaps `[from, upto)`: (producer id, first offset).
    pub fn aborted_transactions(&self, from: i64, upto: i64) -> Vec<(i64, i64)> {
        self.producers
            .aborted_between(from, upto)
            .into_iter()
            .map(|a| (a.producer_id, a.first_offset))
            .collect()
    }

    /// Aborted transactions whose data or marker overlaps `[from, upto)`, whole: (producer
    /// id, first offset, marker offset). Tiered storage copies them with a segment.
    pub fn aborted_ranges(&self, from: i64, upto: i64) -> Vec<(i64, i64, i64)> {
        self.producers
            .aborted_between(from, upto)
            .into_iter()
            .map(|a| (a.producer_id, a.first_offset, a.last_offset))
            .collect()
    }

    fn append_inner(
        &mut self,
        batches: &[u8],
        leader_epoch: i32,
        origin: AppendOrigin,
    ) -> Result<AppendInfo> {
        if self.failed {
            return Err(StorageError::LogDirFailed(self.dir.clone()));
        }
        let produced = validate_produce(batches)?;
        for span in &produced.spans {
            if span.len() > self.config.max_message_bytes {
                return Err(StorageError::MessageTooLarge {
                    size: span.len(),
                    limit: self.config.max_message_bytes,
                });
            }
        }
        if batches.len() as u64 > self.config.segment_bytes {
            return Err(StorageError::RecordListTooLarge {
                size: batches.len(),
                limit: self.config.segment_bytes as usize,
            });
        }
        if let Some(codec) = self.config.compression {
            // compression.type: the broker re-encodes batches in another codec (Kafka's
            // broker-side compression); the re-encoded set is appended instead (and checked
            // again: sizes after re-encoding count). Sizes were checked first, so nothing
            // larger than max.message.bytes is decompressed.
            let differs = |s: &BatchSpan| s.header.compression().ok() != Some(codec);
            if produced.spans.iter().any(differs) {
                let mut reencoded = Vec::with_capacity(batches.len());
                for span in &produced.spans {
                    let batch = &batches[span.position..span.position + span.len()];
                    if differs(span) {
                        reencoded.extend_from_slice(&strata_records::rewrite::recompress(
                            batch,
                            codec,
                            self.config.compression_level,
                        )?);
                    } else {
                        reencoded.extend_from_slice(batch);
                    }
                }
                return self.append_inner(&reencoded, leader_epoch, origin);
            }
        }
        let now = self.clock.now_ms();
        if self.config.timestamp_type == TimestampType::CreateTime {
            let min = now.saturating_sub(self.config.timestamp_before_max_ms);
            let max = now.saturating_add(self.config.timestamp_after_max_ms);
            let bad = |t: i64| t >= 0 && (t < min || t > max);
            let out_of_range = produced
                .spans
                .iter()
                .any(|s| bad(s.header.base_timestamp) || bad(s.header.max_timestamp));
            if out_of_range {
                // Only on refusal are the records decoded, to name each bad one (KIP-467).
                let mut records = Vec::new();
                let mut first = None;
                Self::for_each_produced_record(batches, &produced, |index, r| {
                    if bad(r.timestamp) {
                        records.push(index);
                        first.get_or_insert(r.timestamp);
                    }
                })?;
                let timestamp = first.unwrap_or(produced.spans[0].header.max_timestamp);
                return Err(StorageError::InvalidTimestamp {
                    timestamp,
                    min,
                    max,
                    records,
                });
            }
        }
        if self.config.cleanup_compact {
            // Compaction keeps the latest record per key: a record without one has no place.
            let mut keyless = Vec::new();
            Self::for_each_produced_record(batches, &produced, |index, r| {
                if r.key.is_none() {
                    keyless.push(index);
                }
            })?;
            if !keyless.is_empty() {
                return Err(StorageError::KeylessRecordOnCompactedTopic(keyless));
            }
        }
        let mut in_sequence: Vec<BatchHeader> = Vec::new();
        for span in &produced.spans {
            // Transactional data is accepted only from a producer whose transaction the
            // coordinator verified (KIP-890): a stray transactional batch would hold back
            // read_committed consumers until it timed out.
            if span.header.is_transactional() && origin == AppendOrigin::Client {
                return Err(StorageError::NoOpenTransaction(span.header.producer_id));
            }
            // One verified transaction per record set: every batch must belong to it (the
            // caller verified the producer of the first).
            let first = &produced.spans[0].header;
            if origin == AppendOrigin::VerifiedTransaction
                && !(span.header.is_transactional()
                    && (span.header.producer_id, span.header.producer_epoch)
                        == (first.producer_id, first.producer_epoch))
            {
                return Err(StorageError::InvalidBatch(
                    strata_records::RecordsError::Decode(
                        "a transactional record set mixes producers or non-transactional batches"
                            .into(),
                    ),
                ));
            }
            if origin == AppendOrigin::Coordinator {
                self.producers.check_epoch(&span.header)?;
                in_sequence.push(span.header);
                continue;
            }
            match self.producers.check(&span.header, &in_sequence)? {
                SequenceCheck::Append => in_sequence.push(span.header),
                SequenceCheck::Duplicate {
                    first_offset,
                    last_offset,
                } => {
                    if produced.spans.len() > 1 {
                        return Err(StorageError::DuplicateSequence);
                    }
                    // A retry of a stored batch: answered with its original offsets.
                    return Ok(AppendInfo {
                        base_offset: first_offset,
                        last_offset,
                        log_append_time_ms: -1,
                        log_start_offset: self.log_start_offset,
                        records: 0,
                    });
                }
            }
        }
        self.maybe_roll(batches.len() as u64, now)?;
        self.begin_epoch(leader_epoch)?;
        let base_offset = self.log_end_offset();
        let log_append = self.config.timestamp_type == TimestampType::LogAppendTime;
        let mut next = base_offset;
        // Only the 61-byte headers are copied and patched; the records are written from the
        // request buffer as they came.
        let mut patched: Vec<[u8; BATCH_HEADER_BYTES]> = Vec::with_capacity(produced.spans.len());
        let mut headers = Vec::with_capacity(produced.spans.len());
        for span in &produced.spans {
            let batch = &batches[span.position..span.position + span.len()];
            let mut h = [0u8; BATCH_HEADER_BYTES];
            h.copy_from_slice(&batch[..BATCH_HEADER_BYTES]);
            set_base_offset(&mut h, next);
            set_partition_leader_epoch(&mut h, leader_epoch);
            if log_append {
                set_log_append_time_split(&mut h, &batch[BATCH_HEADER_BYTES..], now);
            }
            let mut header = span.header;
            header.base_offset = next;
            header.partition_leader_epoch = leader_epoch;
            if log_append {
                header.max_timestamp = now;
            }
            next = header.next_offset();
            headers.push((span.position, header));
            patched.push(h);
        }
        let mut parts: Vec<&[u8]> = Vec::with_capacity(produced.spans.len() * 2);
        for (span, h) in produced.spans.iter().zip(&patched) {
            parts.push(h);
            parts.push(&batches[span.position + BATCH_HEADER_BYTES..span.position + span.len()]);
        }
        self.active.append(&parts, &headers, now)?;
        self.appended_bytes += parts.iter().map(|p| p.len() as u64).sum::<u64>();
        for (_, header) in &headers {
            self.producers.apply(header, now);
        }
        self.unflushed_messages += produced.records;
        if !self.config.is_durable() && !self.partition_owns_high_watermark {
            self.high_watermark = self.log_end_offset();
        }
        Ok(AppendInfo {
            base_offset,
            last_offset: next - 1,
            log_append_time_ms: if log_append { now } else { -1 },
            log_start_offset: self.log_start_offset,
            records: produced.records,
        })
    }

    /// Calls `f` with each record of a produced record set (decompressed) and its index in
    /// the set, counting from 0 across batches.
    fn for_each_produced_record(
        batches: &[u8],
        produced: &strata_records::ProducedBatches,
        mut f: impl FnMut(i32, &strata_records::rewrite::RecordView),
    ) -> Result<()> {
        let mut index = 0i32;
        for span in &produced.spans {
            let batch = &batches[span.position..span.position + span.len()];
            for r in strata_records::rewrite::batch_records(batch)? {
                f(index, &r);
                index = index.saturating_add(1);
            }
        }
        Ok(())
    }

    fn maybe_roll(&mut self, incoming_bytes: u64, now: i64) -> Result<()> {
        use crate::index::TimeIndex;
        let size = self.active.0.size();
        if size == 0 {
            return Ok(());
        }
        let full = size + incoming_bytes > self.config.segment_bytes
            || self.active.index_bytes() + TimeIndex::ENTRY_BYTES as u64
                > self.config.segment_index_bytes;
        let roll_after = self.config.segment_ms.saturating_sub(segment_jitter(
            self.active.0.base_offset,
            self.config.segment_jitter_ms,
        ));
        let old = self
            .active
            .first_append_ms()
            .is_some_and(|t| now - t >= roll_after);
        if full || old {
            self.roll()?;
        }
        Ok(())
    }

    /// Seals the active segment (syncing it) and starts a new one at the log end offset.
    pub fn roll(&mut self) -> Result<()> {
        let rolled = self.roll_inner();
        self.offline_on_io(rolled)
    }

    fn roll_inner(&mut self) -> Result<()> {
        let leo = self.log_end_offset();
        // Seal before the swap: if either step fails, the active segment (and everything
        // in it) is still where reads find it; the log is failed and takes no appends.
        self.active.complete_on_disk(self.fs.as_ref())?;
        let fresh = ActiveSegment::create(
            self.fs.as_ref(),
            &self.dir,
            leo,
            self.config.index_interval_bytes,
        )?;
        let old = std::mem::replace(&mut self.active, fresh);
        self.sealed.insert(old.0.base_offset, old.into_sealed());
        self.fs
            .sync_dir(&self.dir)
            .map_err(|e| StorageError::io(&self.dir, e))?;
        // Sealing synced everything before the new segment.
        self.mark_flushed(leo);
        if let Err(e) = self.write_producer_snapshot() {
            warn!(dir = %self.dir.display(), error = %e, "could not write the producer state snapshot");
        }
        Ok(())
    }

    /// Appends batches exactly as the leader stored them (a follower's fetch): offsets,
    /// leader epochs and timestamps are kept, each batch is CRC-checked and must start at or
    /// after the log end offset (a compacted leader log has gaps), and producer state and the
    /// leader epoch cache follow as recovery would rebuild them from the same bytes. A
    /// trailing partial batch is ignored (the next fetch brings it whole). Returns the offset
    /// range appended, or None if `records` held no whole batch.
    pub fn append_replicated(&mut self, records: &[u8]) -> Result<Option<(i64, i64)>> {
        let appended = self.append_replicated_inner(records);
        self.offline_on_io(appended)
    }

    fn append_replicated_inner(&mut self, records: &[u8]) -> Result<Option<(i64, i64)>> {
        if self.failed {
            return Err(StorageError::LogDirFailed(self.dir.clone()));
        }
        let (spans, stop) = scan_batches(records, Some(self.log_end_offset()));
        if let ScanStop::Corrupt { error, .. } = stop {
            return Err(StorageError::InvalidBatch(error));
        }
        let (Some(first), Some(last)) = (spans.first(), spans.last()) else {
            return Ok(None);
        };
        let range = (first.header.base_offset, last.header.last_offset());
        let now = self.clock.now_ms();
        for span in &spans {
            let bytes = &records[span.position..span.position + span.len()];
            let h = span.header;
            self.maybe_roll(bytes.len() as u64, now)?;
            self.begin_epoch(h.partition_leader_epoch)?;
            self.active.append(&[bytes], &[(0, h)], now)?;
            self.appended_bytes += bytes.len() as u64;
            self.unflushed_messages += i64::from(h.records_count);
            let timestamp = h.max_timestamp.max(h.base_timestamp);
            if h.is_control() {
                if let Some(commit) = control_type(bytes) {
                    self.producers.apply_marker(&h, commit, timestamp);
                }
            } else {
                self.producers.apply(&h, timestamp);
            }
        }
        if !self.config.is_durable() && !self.partition_owns_high_watermark {
            self.high_watermark = self.log_end_offset();
        }
        Ok(Some(range))
    }

    /// Whole batches from `offset` up to the log end offset, not the high watermark (what a
    /// follower fetches: the leader's uncommitted tail too). At least one batch.
    pub fn slice_replica(&self, offset: i64, max_bytes: usize) -> Result<Option<SegmentSlice>> {
        self.slice_upto(offset, max_bytes, self.log_end_offset())
    }

    /// A replica became leader in `epoch`: the epoch starts at the log end offset (recorded,
    /// synced, before anything is appended in it; Kafka does this on election), so
    /// OffsetsForLeaderEpoch and diverging followers see where the previous epoch ended.
    pub fn begin_leader_epoch(&mut self, epoch: i32) -> Result<()> {
        let begun = self.begin_epoch(epoch);
        self.offline_on_io(begun)
    }

    /// Where the latest leader epoch began (the log start offset while none is recorded).
    pub fn latest_epoch_start(&self) -> i64 {
        self.epochs
            .entries()
            .last()
            .map_or(self.log_start_offset, |&(_, start)| start)
    }

    /// The latest leader epoch in this log (-1 if none): a follower's `last_fetched_epoch`.
    pub fn latest_epoch(&self) -> i32 {
        self.epochs.latest_epoch().unwrap_or(-1)
    }

    /// Removes every batch from the one holding `offset` on, so the log ends at `offset`
    /// (or at the start of the batch holding it): a follower whose log diverged from its
    /// leader's (KIP-279), a raft log's conflicting suffix. An `offset` at or before the log
    /// start empties the log and starts it at `offset` (Kafka's truncateFullyAndStartAt).
    ///
    /// Crash safety: the cut is made in the files and synced (the shortened segment, then the
    /// directory after later segments are deleted) before the log is reopened from them, so
    /// recovery, producer state, the leader epoch cache and the indexes are rebuilt by the
    /// same code that opens a log; a crash halfway leaves a shorter log that recovery cuts
    /// the same way.
    ///
    /// An `offset` at or past the log end cuts nothing but still drops leader epochs that
    /// start at the log end: a replica that led an epoch without appending to it, then
    /// follows a leader that never knew that epoch, would otherwise report it as its last
    /// fetched epoch forever and be told to truncate to where it already ends (as Kafka's
    /// `UnifiedLog.truncateTo` does; found by the simulation).
    pub fn truncate_to(&mut self, offset: i64) -> Result<()> {
        if offset >= self.log_end_offset() {
            if !self.failed && !self.deleted && self.epochs.truncate_from_end(self.log_end_offset())
            {
                let written = self.epochs.write(self.fs.as_ref(), &self.dir);
                return self.offline_on_io(written);
            }
            return Ok(());
        }
        let cut = self.cut(offset, offset <= self.log_start_offset);
        self.offline_on_io(cut)
    }

    /// Deletes the whole log and starts it empty at `offset`, before or after its old end (a
    /// follower whose fetch offset fell below the leader's log start; a raft log that
    /// installed a snapshot past its end). Crash-safe as [`Log::truncate_to`].
    pub fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<()> {
        let cut = self.cut(offset, true);
        self.offline_on_io(cut)
    }

    fn cut(&mut self, offset: i64, empty_from: bool) -> Result<()> {
        if self.failed {
            return Err(StorageError::LogDirFailed(self.dir.clone()));
        }
        if self.deleted {
            return Err(StorageError::io(
                &self.dir,
                std::io::Error::other("log is deleted"),
            ));
        }
        let fs = self.fs.clone();
        let dir = self.dir.clone();
        let mut segments: Vec<&crate::segment::SegmentCore> =
            self.sealed.values().map(|s| &s.0).collect();
        segments.push(&self.active.0);
        let mut end = offset;
        for segment in segments {
            if empty_from || segment.base_offset >= offset {
                segment.delete_files(fs.as_ref());
                continue;
            }
            if segment.next_offset() <= offset {
                continue;
            }
            // The segment holding `offset`: cut at the start of its batch.
            if let Some((position, header)) = segment.position_of(offset)? {
                end = header.base_offset;
                let file = segment.file();
                let path = segment_file(&dir, segment.base_offset, "log");
                file.set_len(position)
                    .and_then(|()| file.sync_data())
                    .map_err(|e| StorageError::io(&path, e))?;
                for ext in ["index", "timeindex"] {
                    let _ = fs.remove_file(&segment_file(&dir, segment.base_offset, ext));
                }
            }
        }
        let log_start = if empty_from {
            ActiveSegment::create(fs.as_ref(), &dir, offset, self.config.index_interval_bytes)?;
            offset
        } else {
            self.log_start_offset
        };
        fs.sync_dir(&dir).map_err(|e| StorageError::io(&dir, e))?;
        let recovery_point = if empty_from {
            offset
        } else {
            self.recovery_point.min(end)
        };
        let hint = RecoveryHint {
            recovery_point: Some(recovery_point),
            clean_shutdown: false,
            log_start_offset: Some(log_start),
            defer_sync: false,
            high_watermark: None,
        };
        let mut reopened = Self::open_with(
            fs,
            self.clock.clone(),
            &dir,
            self.config.clone(),
            Some(hint),
        )?;
        reopened.managed = self.managed;
        // The checkpoint on disk may name an offset past the new end: rewrite it (a standalone
        // log now; a managed one at its log manager's next checkpoint, which sees the change).
        reopened.checkpointed = i64::MIN;
        reopened.partition_owns_high_watermark = self.partition_owns_high_watermark;
        if self.partition_owns_high_watermark {
            reopened.high_watermark = self.high_watermark.min(reopened.log_end_offset());
        }
        reopened.first_dirty_offset = self.first_dirty_offset.min(reopened.log_end_offset());
        if !reopened.managed {
            reopened.write_recovery_point()?;
        }
        info!(dir = %dir.display(), offset, log_end_offset = reopened.log_end_offset(), "log truncated");
        *self = reopened;
        Ok(())
    }

    /// The file to fdatasync for everything appended so far, and the offset it covers.
    /// The caller syncs outside any lock, then calls [`Log::mark_flushed`].
    pub fn flush_target(&self) -> (Arc<dyn FsFile>, i64) {
        (self.active.0.file(), self.log_end_offset())
    }

    /// Records that a sync or write failed: see the `failed` field.
    pub fn mark_failed(&mut self) {
        if !self.failed {
            warn!(dir = %self.dir.display(), "log failed: it takes no more writes until it is reopened");
        }
        self.failed = true;
    }

    pub fn is_failed(&self) -> bool {
        self.failed
    }

    /// Records that every offset below `offset` is synced.
    pub fn mark_flushed(&mut self, offset: i64) {
        if self.failed {
            return;
        }
        if offset > self.recovery_point {
            self.recovery_point = offset;
        }
        if self.recovery_point >= self.log_end_offset() {
            self.unflushed_messages = 0;
        }
        self.last_flush_ms = self.clock.now_ms();
        if self.config.is_durable()
            && !self.partition_owns_high_watermark
            && self.recovery_point > self.high_watermark
        {
            self.high_watermark = self.recovery_point.min(self.log_end_offset());
        }
    }

    /// In relaxed mode: whether `flush.messages` or `flush.ms` call for a sync now.
    pub fn flush_due(&self) -> bool {
        if self.recovery_point >= self.log_end_offset() {
            return false;
        }
        self.config.is_durable()
            || self.unflushed_messages >= self.config.flush_messages
            || self.clock.now_ms() - self.last_flush_ms >= self.config.flush_ms
    }

    /// Marks the log deleted (its directory is about to go): later checkpoints and closes
    /// are no-ops instead of errors about missing files.
    pub fn mark_deleted(&mut self) {
        self.deleted = true;
    }

    /// Writes the recovery point checkpoint if it moved since the last write (a standalone
    /// log's own file): the active segment's index entries go to disk first (see
    /// [`Log::prepare_checkpoint`]), since recovery locates the recovery point through them.
    pub fn write_recovery_point(&mut self) -> Result<()> {
        if self.deleted || self.checkpointed == self.recovery_point {
            return Ok(());
        }
        let (recovery_point, index_files) = self.prepare_checkpoint()?;
        for f in index_files {
            f.sync_data().map_err(|e| StorageError::io(&self.dir, e))?;
        }
        checkpoint::write(
            self.fs.as_ref(),
            &self.dir.join(RECOVERY_POINT_FILE),
            recovery_point,
        )?;
        self.checkpointed = recovery_point;
        Ok(())
    }

    /// The first half of a recovery point checkpoint: the recovery point to record and the
    /// index files the caller must sync before the checkpoint naming it is written (the
    /// active segment's entries not yet on disk are written here, under the partition's
    /// lock, in steps; the syncs, every 256 index intervals, happen outside it). Recovery
    /// after a crash then starts scanning at the index entry at or below the checkpointed
    /// offset, not at the segment's first byte.
    pub fn prepare_checkpoint(&mut self) -> Result<(i64, Vec<Arc<dyn FsFile>>)> {
        if self.deleted {
            return Ok((self.recovery_point, Vec::new()));
        }
        let files = self.active.persist_indexes(self.fs.as_ref(), false)?;
        self.appended_at_checkpoint = self.appended_bytes;
        if self.appended_bytes - self.appended_at_snapshot
            >= self.config.producer_snapshot_interval_bytes
        {
            if let Err(e) = self.write_producer_snapshot() {
                warn!(dir = %self.dir.display(), error = %e, "could not write the producer state snapshot");
            }
        }
        Ok((self.recovery_point, files))
    }

    /// Bytes appended since the last checkpoint was prepared: a crash now would leave at
    /// most about this much (plus what was unsynced then) for recovery to scan.
    pub fn bytes_since_checkpoint(&self) -> u64 {
        self.appended_bytes - self.appended_at_checkpoint
    }

    /// The recovery point a checkpoint last recorded for this log.
    pub fn checkpointed_recovery_point(&self) -> i64 {
        self.checkpointed
    }

    /// Records that a checkpoint holding `recovery_point` for this log is durable.
    pub fn note_checkpointed(&mut self, recovery_point: i64) {
        self.checkpointed = recovery_point;
    }

    /// Where a fetch from `offset` reads: whole batches up to `max_bytes` below the high
    /// watermark. With `min_one_batch` (KIP-74: the first partition of a fetch) the first
    /// batch comes even if it alone exceeds `max_bytes`; without, such a read yields nothing.
    /// An offset equal to the high watermark yields nothing.
    pub fn slice(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<Option<SegmentSlice>> {
        let slice = self.slice_from(offset, max_bytes)?;
        Ok(slice.filter(|s| min_one_batch || s.bytes <= max_bytes))
    }

    /// [`Log::slice`] for read_committed consumers: nothing at or past the last stable offset.
    pub fn slice_committed(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<Option<SegmentSlice>> {
        let slice = self.slice_upto(offset, max_bytes, self.last_stable_offset())?;
        Ok(slice.filter(|s| min_one_batch || s.bytes <= max_bytes))
    }

    fn slice_from(&self, offset: i64, max_bytes: usize) -> Result<Option<SegmentSlice>> {
        self.slice_upto(offset, max_bytes, self.high_watermark)
    }

    fn slice_upto(
        &self,
        offset: i64,
        max_bytes: usize,
        upper: i64,
    ) -> Result<Option<SegmentSlice>> {
        if self.failed {
            // Offline (Kafka's KAFKA_STORAGE_ERROR): its memory may be ahead of or behind
            // its files, and the broker is about to halt.
            return Err(StorageError::LogDirFailed(self.dir.clone()));
        }
        let leo = self.log_end_offset();
        if offset < self.log_start_offset || offset > leo {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset,
                log_end_offset: leo,
            });
        }
        if offset >= upper {
            return Ok(None);
        }
        let hw = upper;
        for segment in self
            .sealed
            .range(..=offset)
            .next_back()
            .into_iter()
            .map(|(_, s)| &s.0)
            .chain(self.sealed.range(offset + 1..).map(|(_, s)| &s.0))
        {
            if let Some(slice) = segment.slice(offset, max_bytes, hw)? {
                return Ok(Some(slice));
            }
        }
        self.active.0.slice(offset, max_bytes, hw)
    }

    /// Reads batches from `offset`, at least one (see [`Log::slice`]).
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<FetchData> {
        let records = match self.slice(offset, max_bytes, true)? {
            Some(slice) => slice.read().map_err(|e| StorageError::io(&self.dir, e))?,
            None => Bytes::new(),
        };
        Ok(FetchData {
            records,
            high_watermark: self.high_watermark,
            log_start_offset: self.log_start_offset,
            log_end_offset: self.log_end_offset(),
        })
    }

    /// The earliest record with timestamp ≥ `target_ms` below the high watermark, as
    /// `(offset, timestamp)`; None if there is none (ListOffsets then answers -1).
    pub fn offset_for_timestamp(&self, target_ms: i64) -> Result<Option<(i64, i64)>> {
        let segments = self
            .sealed
            .values()
            .map(|s| &s.0)
            .chain(std::iter::once(&self.active.0));
        for segment in segments {
            if segment.max_timestamp() < target_ms {
                continue;
            }
            let Some((mut position, _)) = segment.timestamp_scan_start(target_ms)? else {
                continue;
            };
            while let Some(header) = segment.header_at(position)? {
                if header.base_offset >= self.high_watermark {
                    return Ok(None);
                }
                if header.max_timestamp >= target_ms {
                    let bytes = crate::segment::SegmentSlice {
                        file: segment.file(),
                        position,
                        bytes: header.total_bytes(),
                    }
                    .read()
                    .map_err(|e| StorageError::io(&self.dir, e))?;
                    let records = decode_records(bytes)?;
                    // Records below the log start offset (DeleteRecords) are gone.
                    if let Some(r) = records
                        .iter()
                        .find(|r| r.timestamp_ms >= target_ms && r.offset >= self.log_start_offset)
                    {
                        return Ok(Some((r.offset, r.timestamp_ms)));
                    }
                }
                position += header.total_bytes() as u64;
            }
        }
        Ok(None)
    }

    /// The largest timestamp and its offset (ListOffsets MAX_TIMESTAMP, KIP-734).
    pub fn max_timestamp(&self) -> i64 {
        self.sealed
            .values()
            .map(|s| s.0.max_timestamp())
            .chain(std::iter::once(self.active.0.max_timestamp()))
            .max()
            .unwrap_or(-1)
    }

    /// Deletes whole segments past `retention.ms` (by their newest timestamp) or beyond
    /// `retention.bytes`, oldest first, and advances the log start offset. An expired active
    /// segment is rolled first so it can go too, as Kafka does; the log then holds one empty
    /// active segment at the log end offset. Returns the number of segments deleted.
    pub fn apply_retention(&mut self) -> Result<usize> {
        if !self.config.cleanup_delete {
            return Ok(0); // cleanup.policy=compact: only the cleaner removes records
        }
        if self.config.remote_storage_enable {
            return self.apply_local_retention();
        }
        let now = self.clock.now_ms();
        let retention_ms = self.config.retention_ms;
        let expired = move |max_ts: i64| retention_ms >= 0 && max_ts < now - retention_ms;
        let active = &self.active.0;
        if active.size() > 0
            && expired(active.max_timestamp())
            && active.next_offset() <= self.high_watermark
        {
            self.roll()?;
        }
        let mut total = self.size_bytes() as i64;
        let mut deleted = 0;
        while let Some((&base, segment)) = self.sealed.first_key_value() {
            let by_time = expired(segment.0.max_timestamp());
            let by_size = self.config.retention_bytes >= 0
                && total - segment.0.size() as i64 >= self.config.retention_bytes;
            // never delete what consumers could not yet read
            let readable = segment.0.next_offset() <= self.high_watermark;
            if !(by_time || by_size) || !readable {
                break;
            }
            let segment = self.sealed.remove(&base).expect("present");
            total -= segment.0.size() as i64;
            let next = segment.0.next_offset();
            segment.delete(self.fs.as_ref());
            self.log_start_offset = next;
            deleted += 1;
        }
        if deleted > 0 {
            self.trim_leader_epochs();
            self.producers.prune_aborted(self.log_start_offset);
            info!(dir = %self.dir.display(), deleted, log_start_offset = self.log_start_offset, "retention deleted segments");
        }
        Ok(deleted)
    }

    /// The leader epochs in force in `[from, to)`: each with the first offset it covers
    /// there (the epoch in force at `from` starts at `from`). A copy of a segment carries
    /// them, so OffsetsForLeaderEpoch can still be answered once it is gone locally.
    pub fn leader_epochs_between(&self, from: i64, to: i64) -> Vec<(i32, i64)> {
        let entries = self.epochs.entries();
        let mut out: Vec<(i32, i64)> = Vec::new();
        for (i, &(epoch, start)) in entries.iter().enumerate() {
            let next = entries.get(i + 1).map_or(i64::MAX, |e| e.1);
            if next <= from || start >= to {
                continue;
            }
            out.push((epoch, start.max(from)));
        }
        out
    }

    /// The files of the sealed segment based at `base_offset` (log, offset index, time
    /// index), and the producer snapshot written when it rolled (named by its next
    /// offset), if there is one: what a copy to the object store reads.
    pub fn sealed_segment_files(&self, base_offset: i64) -> Option<SegmentFiles> {
        let segment = &self.sealed.get(&base_offset)?.0;
        let open = |ext: &str, offset: i64| {
            let path = segment_file(&self.dir, offset, ext);
            if !self.fs.exists(&path) {
                return None;
            }
            self.fs.open(&path, false).ok()
        };
        let log = open("log", base_offset)?;
        let index = open("index", base_offset)?;
        let time_index = open("timeindex", base_offset)?;
        let producer_snapshot = open(SNAPSHOT_EXTENSION, segment.next_offset());
        Some(SegmentFiles {
            log,
            index,
            time_index,
            producer_snapshot,
        })
    }

    /// Tiered storage: the offset below which every record is in a finished copy in the
    /// object store (the partition's metadata says; None: nothing copied).
    pub fn set_remote_copied_end(&mut self, end: Option<i64>) {
        self.remote_copied_end = end;
    }

    pub fn remote_copied_end(&self) -> Option<i64> {
        self.remote_copied_end
    }

    /// Sealed segments that may be copied to the object store, oldest first: wholly below
    /// the last stable offset (so below the high watermark, with no open transaction's
    /// records a copy would fix in place), from `from` (where copies end) on. Each as
    /// (base offset, next offset, largest timestamp, bytes).
    pub fn copyable_segments(&self, from: i64) -> Vec<(i64, i64, i64, u64)> {
        let upper = self.last_stable_offset();
        self.sealed
            .values()
            .map(|s| &s.0)
            .filter(|s| s.next_offset() > from && s.next_offset() <= upper)
            .map(|s| (s.base_offset, s.next_offset(), s.max_timestamp(), s.size()))
            .collect()
    }

    /// Local retention of a tiered log (`remote.storage.enable`): sealed segments past
    /// `local.retention.ms` / `local.retention.bytes` are deleted from local disk, oldest
    /// first, but only those wholly copied to the object store. The log start offset on
    /// local disk moves; the partition's log start (remote copies included) is the
    /// broker's to keep, and `retention.*` applies to it there.
    fn apply_local_retention(&mut self) -> Result<usize> {
        let now = self.clock.now_ms();
        let retention_ms = self.config.effective_local_retention_ms();
        let retention_bytes = self.config.effective_local_retention_bytes();
        let expired = move |max_ts: i64| retention_ms >= 0 && max_ts < now - retention_ms;
        let Some(copied) = self.remote_copied_end else {
            return Ok(0);
        };
        let mut total = self.size_bytes() as i64;
        let mut deleted = 0;
        while let Some((&base, segment)) = self.sealed.first_key_value() {
            let by_time = expired(segment.0.max_timestamp());
            let by_size =
                retention_bytes >= 0 && total - segment.0.size() as i64 >= retention_bytes;
            if !(by_time || by_size) || segment.0.next_offset() > copied {
                break;
            }
            let segment = self.sealed.remove(&base).expect("present");
            total -= segment.0.size() as i64;
            let next = segment.0.next_offset();
            segment.delete(self.fs.as_ref());
            self.log_start_offset = next;
            deleted += 1;
        }
        if deleted > 0 {
            self.trim_leader_epochs();
            self.producers.prune_aborted(self.log_start_offset);
            info!(dir = %self.dir.display(), deleted, local_log_start_offset = self.log_start_offset, "local retention deleted copied segments");
        }
        Ok(deleted)
    }

    /// DeleteRecords: makes `offset` (-1: the high watermark) the log start offset. Records
    /// below it are no longer served; sealed segments wholly below it are deleted; offsets
    /// never move. The caller persists the new log start (it may lie inside a segment).
    /// Returns the log start offset after the call (never lower than before).
    pub fn delete_records_before(&mut self, offset: i64) -> Result<i64> {
        let target = if offset == -1 {
            self.high_watermark
        } else {
            offset
        };
        if target < 0 || target > self.high_watermark {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset,
                log_end_offset: self.high_watermark,
            });
        }
        if target <= self.log_start_offset {
            return Ok(self.log_start_offset);
        }
        self.log_start_offset = target;
        self.trim_leader_epochs();
        let mut deleted = 0;
        while let Some((&base, segment)) = self.sealed.first_key_value() {
            if segment.0.next_offset() > target {
                break;
            }
            let segment = self.sealed.remove(&base).expect("present");
            segment.delete(self.fs.as_ref());
            deleted += 1;
        }
        self.producers.prune_aborted(self.log_start_offset);
        // The idempotent producers' state outlives the batches it came from (a retry of a
        // deleted batch is still known as one): recovery reads only a snapshot at or past
        // the log start, and one written at a roll may not be durable, so a synced one is
        // written here. Kafka forgets such producers and then accepts any sequence from them.
        self.write_producer_snapshot_synced(true)?;
        info!(dir = %self.dir.display(), deleted, log_start_offset = target, "records deleted");
        Ok(target)
    }

    /// Where the next cleaning pass starts mapping (never before the log start).
    pub fn first_dirty_offset(&self) -> i64 {
        self.first_dirty_offset.max(self.log_start_offset)
    }

    /// Restores the cleaner's checkpoint (kept by the broker).
    pub fn set_first_dirty_offset(&mut self, offset: i64) {
        self.first_dirty_offset = offset.min(self.log_end_offset());
    }

    /// Bytes of sealed segments at or past the first dirty offset, and of all sealed
    /// segments: the dirty ratio the cleaner ranks logs by.
    pub fn dirty_bytes(&self) -> (u64, u64) {
        let first_dirty = self.first_dirty_offset();
        let mut dirty = 0;
        let mut total = 0;
        for s in self.sealed.values() {
            total += s.0.size();
            if s.0.next_offset() > first_dirty {
                dirty += s.0.size();
            }
        }
        (dirty, total)
    }

    /// The newest timestamp of the oldest dirty sealed segment (for `max.compaction.lag.ms`).
    pub fn oldest_dirty_timestamp(&self) -> Option<i64> {
        let first_dirty = self.first_dirty_offset();
        self.sealed
            .values()
            .find(|s| s.0.next_offset() > first_dirty)
            .map(|s| s.0.max_timestamp())
    }

    /// Plans one cleaning pass (in memory, under the caller's lock): None if the log is not
    /// compacted or nothing is cleanable yet. See [`crate::cleaner`].
    pub fn plan_clean(&self) -> Option<crate::cleaner::CleanJob> {
        if !self.config.cleanup_compact || self.sealed.is_empty() || self.deleted || self.failed {
            return None;
        }
        let now = self.clock.now_ms();
        let mut uncleanable = self.active.0.base_offset.min(self.last_stable_offset());
        if self.config.min_compaction_lag_ms > 0 {
            let young = now.saturating_sub(self.config.min_compaction_lag_ms);
            if let Some(s) = self.sealed.values().find(|s| s.0.max_timestamp() > young) {
                uncleanable = uncleanable.min(s.0.base_offset);
            }
        }
        let first_dirty = self.first_dirty_offset();
        if first_dirty >= uncleanable {
            return None;
        }
        let segments = self
            .sealed
            .values()
            .filter(|s| s.0.base_offset < uncleanable)
            .map(|s| crate::cleaner::PlannedSegment {
                base_offset: s.0.base_offset,
                next_offset: s.0.next_offset(),
                size: s.0.size(),
                file: s.0.file(),
            })
            .collect();
        let aborted = self
            .producers
            .aborted_between(self.log_start_offset, uncleanable)
            .into_iter()
            .map(|a| (a.producer_id, a.first_offset, a.last_offset))
            .collect();
        Some(crate::cleaner::CleanJob {
            fs: self.fs.clone(),
            dir: self.dir.clone(),
            config: self.config.clone(),
            segments,
            first_dirty,
            uncleanable,
            aborted,
            now_ms: now,
        })
    }

    /// Swaps in what a cleaning pass wrote, if the segments it read are all still here
    /// (retention or DeleteRecords may have removed some meanwhile: then the pass is thrown
    /// away and None returned). Crash-safe; see [`crate::cleaner`].
    pub fn finish_clean(
        &mut self,
        out: crate::cleaner::CleanOutput,
    ) -> Result<Option<crate::cleaner::CleanStats>> {
        self.finish_clean_inner(out, None)
    }

    /// [`Log::finish_clean`] that stops dead after `step` steps of the swap, as a crash
    /// would (for tests: the log must then be dropped and reopened).
    #[doc(hidden)]
    pub fn finish_clean_interrupted(
        &mut self,
        out: crate::cleaner::CleanOutput,
        step: usize,
    ) -> Result<()> {
        self.finish_clean_inner(out, Some(step)).map(|_| ())
    }

    fn finish_clean_inner(
        &mut self,
        out: crate::cleaner::CleanOutput,
        crash_after: Option<usize>,
    ) -> Result<Option<crate::cleaner::CleanStats>> {
        use crate::cleaner::{complete_swap, CLEANED_DIR, CLEANING_DIR};
        let cleaning = self.dir.join(CLEANING_DIR);
        let unchanged = out
            .planned
            .iter()
            .all(|(base, size)| self.sealed.get(base).is_some_and(|s| s.0.size() == *size));
        if !unchanged || self.deleted || self.failed {
            let _ = self.fs.remove_dir_all(&cleaning);
            return Ok(None);
        }
        if crash_after == Some(0) {
            return Ok(None);
        }
        if !out.rewritten.is_empty() {
            let cleaned = self.dir.join(CLEANED_DIR);
            // A swap an I/O error interrupted earlier is finished first.
            complete_swap(self.fs.as_ref(), &self.dir, None)?;
            self.fs
                .rename(&cleaning, &cleaned)
                .map_err(|e| StorageError::io(&cleaning, e))?;
            self.fs
                .sync_dir(&self.dir)
                .map_err(|e| StorageError::io(&self.dir, e))?;
            if crash_after == Some(1) {
                return Ok(None);
            }
            complete_swap(self.fs.as_ref(), &self.dir, crash_after.map(|s| s - 2))?;
            if crash_after.is_some() {
                return Ok(None);
            }
            for base in &out.rewritten {
                let next = self.sealed[base].0.next_offset();
                let segment = crate::cleaner::reopen(
                    self.fs.as_ref(),
                    &self.dir,
                    *base,
                    self.config.index_interval_bytes,
                    next,
                )?;
                self.sealed.insert(*base, segment);
            }
        } else {
            let _ = self.fs.remove_dir_all(&cleaning);
        }
        self.first_dirty_offset = self.first_dirty_offset.max(out.stats.mapped_end);
        Ok(Some(out.stats))
    }

    /// Clean shutdown: sync, write indexes and the recovery point, leave the marker.
    /// The first half of a managed clean shutdown: writes the active segment's indexes
    /// without syncing them and returns the log end offset. The caller syncs the file system
    /// once for all its logs, then records each log end offset as its recovery point.
    pub fn prepare_close(&mut self) -> Result<i64> {
        if !self.deleted {
            self.active.write_indexes_unsynced(self.fs.as_ref())?;
            self.write_producer_snapshot()?;
        }
        Ok(self.log_end_offset())
    }

    pub fn close(&mut self) -> Result<()> {
        if self.deleted {
            return Ok(());
        }
        let (file, leo) = self.flush_target();
        file.sync_data()
            .map_err(|e| StorageError::io(&self.dir, e))?;
        self.mark_flushed(leo);
        self.active.write_indexes(self.fs.as_ref())?;
        self.write_recovery_point()?;
        checkpoint::write(self.fs.as_ref(), &self.dir.join(CLEAN_SHUTDOWN_FILE), leo)
    }
}

/// How much earlier than `segment.ms` the segment starting at `base_offset` rolls: a
/// pseudo-random amount in `[0, jitter_ms)` fixed per segment (Kafka draws one per segment).
fn segment_jitter(base_offset: i64, jitter_ms: i64) -> i64 {
    if jitter_ms <= 0 {
        return 0;
    }
    // splitmix64 of the base offset: spread, deterministic, no RNG state to keep
    let mut z = (base_offset as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z % jitter_ms as u64) as i64
}
