//! The log cleaner (compaction): keeps the latest record per key in the sealed segments of a
//! `cleanup.policy=compact` log, as Kafka's cleaner does.
//!
//! One pass, in three parts so producers are never blocked by the I/O:
//! 1. [`Log::plan_clean`] (under the partition lock, in memory): which sealed segments, the
//!    first dirty offset (where the last pass stopped), and the first uncleanable offset —
//!    the active segment, the last stable offset (open transactions) and records younger
//!    than `min.compaction.lag.ms` are never touched.
//! 2. [`CleanJob::run`] (no lock; sealed segments never change): builds a key → latest offset
//!    map of the dirty section in a fixed memory budget (`log.cleaner.dedupe.buffer.size`; a
//!    larger dirty section is mapped in part and the rest left to the next pass), then
//!    rewrites every sealed segment below the mapped end into `<dir>/cleaning/`, keeping a
//!    record unless a later record with the same key was mapped, it belongs to an aborted
//!    transaction, or it is a tombstone older than `delete.retention.ms` (by its batch's
//!    newest timestamp). Offsets never change: batches keep their offset ranges (see
//!    `strata_records::rewrite`), the last batch of each segment and of each producer in it
//!    is kept even when emptied (segment offset ranges and idempotent producers' sequences
//!    survive), transaction markers are kept. Reads are throttled to
//!    `log.cleaner.io.max.bytes.per.second`.
//! 3. [`Log::finish_clean`] (under the lock): if the segments are still the ones planned on,
//!    swaps the cleaned ones in.
//!
//! Crash safety of the swap: the cleaned segments are complete and synced in `cleaning/`;
//! renaming `cleaning/` to `cleaned/` is the commit point. Then, per segment, the old index
//! files are removed, the cleaned `.log` renamed over the old one, and the cleaned indexes
//! moved in; `cleaned/` is removed last. At open, a `cleaning/` directory (not committed) is
//! deleted and a `cleaned/` one (committed) has its moves finished, so a kill at any moment
//! leaves either the old segments or the new ones, never a mix.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_records::rewrite::{filter_batch, Filtered};
use strata_records::{BatchHeader, BATCH_HEADER_BYTES};

use crate::error::Result;
use crate::segment::{open_existing, segment_file, ActiveSegment};
use crate::{Fs, FsFile, LogConfig, StorageError};

pub const CLEANING_DIR: &str = "cleaning";
pub const CLEANED_DIR: &str = "cleaned";

/// Bytes one map entry is budgeted (a 16-byte key hash, an 8-byte offset, table overhead).
const MAP_ENTRY_BYTES: usize = 48;
/// Bytes read from a segment at once.
const READ_CHUNK_BYTES: usize = 1 << 20;

/// Cleaner-wide settings (broker configs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CleanerConfig {
    /// `log.cleaner.dedupe.buffer.size`: memory for the key → offset map of one pass.
    pub dedupe_buffer_bytes: usize,
    /// `log.cleaner.io.max.bytes.per.second`: read throttle (f64::INFINITY: none).
    pub io_max_bytes_per_second: f64,
}

impl Default for CleanerConfig {
    fn default() -> Self {
        Self {
            dedupe_buffer_bytes: 128 << 20,
            io_max_bytes_per_second: f64::INFINITY,
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanStats {
    pub segments_read: usize,
    pub segments_rewritten: usize,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub keys: usize,
    pub records_removed: u64,
    /// The dirty section mapped: `[first_dirty, mapped_end)`.
    pub first_dirty: i64,
    pub mapped_end: i64,
    pub duration_ms: u64,
}

/// A key's 128-bit fingerprint (two independent SipHash values): collisions, which would
/// remove a record wrongly, are as unlikely as with Kafka's MD5.
fn fingerprint(key: &[u8]) -> u128 {
    let half = |salt: u8| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        salt.hash(&mut h);
        key.hash(&mut h);
        h.finish()
    };
    (u128::from(half(1)) << 64) | u128::from(half(2))
}

/// The key → latest offset map of one pass, bounded by its memory budget.
pub struct OffsetMap {
    map: HashMap<u128, i64>,
    capacity: usize,
}

impl OffsetMap {
    pub fn with_budget(bytes: usize) -> Self {
        let capacity = (bytes / MAP_ENTRY_BYTES).max(1);
        Self {
            map: HashMap::new(),
            capacity,
        }
    }

    /// Records `offset` as the latest for `key`; false when a new key does not fit.
    pub fn put(&mut self, key: &[u8], offset: i64) -> bool {
        let k = fingerprint(key);
        if let Some(v) = self.map.get_mut(&k) {
            *v = (*v).max(offset);
            return true;
        }
        if self.map.len() >= self.capacity {
            return false;
        }
        self.map.insert(k, offset);
        true
    }

    pub fn get(&self, key: &[u8]) -> Option<i64> {
        self.map.get(&fingerprint(key)).copied()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// A sealed segment as planned on.
#[derive(Clone)]
pub struct PlannedSegment {
    pub base_offset: i64,
    pub next_offset: i64,
    pub size: u64,
    pub file: Arc<dyn FsFile>,
}

/// One pass's work, taken from the log under its lock and run without it.
pub struct CleanJob {
    pub(crate) fs: Arc<dyn Fs>,
    pub(crate) dir: std::path::PathBuf,
    pub(crate) config: LogConfig,
    pub(crate) segments: Vec<PlannedSegment>,
    pub(crate) first_dirty: i64,
    /// Records at or past this are not mapped (active segment, LSO, min compaction lag).
    pub(crate) uncleanable: i64,
    /// Aborted transactions: (producer id, first offset, marker offset).
    pub(crate) aborted: Vec<(i64, i64, i64)>,
    pub(crate) now_ms: i64,
}

/// The cleaned segments written under `cleaning/`, ready to swap in.
pub struct CleanOutput {
    pub(crate) planned: Vec<(i64, u64)>,
    pub(crate) rewritten: Vec<i64>,
    pub stats: CleanStats,
}

impl CleanOutput {
    /// Steps [`crate::Log::finish_clean_interrupted`] can stop after: the commit rename,
    /// then three per rewritten segment.
    pub fn swap_steps(&self) -> usize {
        2 + 3 * self.rewritten.len()
    }
}

/// Calls `f` with each whole batch of a segment file, in order, reading it in chunks.
fn for_each_batch(
    segment: &PlannedSegment,
    throttle: &mut Throttle<'_>,
    stats: &mut CleanStats,
    mut f: impl FnMut(&BatchHeader, &[u8]) -> Result<bool>,
) -> Result<()> {
    let mut position = 0u64;
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_start = 0u64;
    while position < segment.size {
        // Make sure the batch at `position` is whole in `buf`.
        let need_header = position + BATCH_HEADER_BYTES as u64;
        if need_header > buf_start + buf.len() as u64 {
            buf = read_range(segment, position, READ_CHUNK_BYTES, throttle, stats)?;
            buf_start = position;
        }
        let rel = (position - buf_start) as usize;
        let header = BatchHeader::parse(&buf[rel..])?;
        let total = header.total_bytes();
        if position + total as u64 > buf_start + buf.len() as u64 {
            buf = read_range(
                segment,
                position,
                total.max(READ_CHUNK_BYTES),
                throttle,
                stats,
            )?;
            buf_start = position;
        }
        let rel = (position - buf_start) as usize;
        if rel + total > buf.len() {
            return Err(StorageError::InvalidBatch(
                strata_records::RecordsError::Truncated {
                    needed: total,
                    available: buf.len() - rel,
                },
            ));
        }
        if !f(&header, &buf[rel..rel + total])? {
            return Ok(());
        }
        position += total as u64;
    }
    Ok(())
}

fn read_range(
    segment: &PlannedSegment,
    position: u64,
    len: usize,
    throttle: &mut Throttle<'_>,
    stats: &mut CleanStats,
) -> Result<Vec<u8>> {
    if throttle.cancel.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(StorageError::CleaningCancelled);
    }
    let len = len.min((segment.size - position) as usize);
    let mut buf = vec![0u8; len];
    segment
        .file
        .read_exact_at(&mut buf, position)
        .map_err(|e| StorageError::io(Path::new("segment"), e))?;
    stats.bytes_read += len as u64;
    throttle.account(len as u64);
    Ok(buf)
}

/// Sleeps as needed to keep reads under a rate; carries the cancellation flag.
struct Throttle<'a> {
    bytes_per_second: f64,
    start: Instant,
    bytes: u64,
    cancel: &'a std::sync::atomic::AtomicBool,
}

impl Throttle<'_> {
    fn account(&mut self, bytes: u64) {
        self.bytes += bytes;
        if !self.bytes_per_second.is_finite() || self.bytes_per_second <= 0.0 {
            return;
        }
        let due = Duration::from_secs_f64(self.bytes as f64 / self.bytes_per_second);
        let elapsed = self.start.elapsed();
        if due > elapsed {
            std::thread::sleep(due - elapsed);
        }
    }
}

impl CleanJob {
    fn is_aborted(&self, producer_id: i64, offset: i64) -> bool {
        self.aborted
            .iter()
            .any(|&(p, first, last)| p == producer_id && offset >= first && offset <= last)
    }

    /// Builds the map and writes the cleaned segments into `<dir>/cleaning/`.
    pub fn run(self, cleaner: &CleanerConfig) -> Result<CleanOutput> {
        self.run_cancellable(cleaner, &std::sync::atomic::AtomicBool::new(false))
    }

    /// [`CleanJob::run`] that gives up (`StorageError::CleaningCancelled`, nothing swapped)
    /// soon after `cancel` is set: a shutdown does not wait for a long pass.
    pub fn run_cancellable(
        self,
        cleaner: &CleanerConfig,
        cancel: &std::sync::atomic::AtomicBool,
    ) -> Result<CleanOutput> {
        let started = Instant::now();
        let mut stats = CleanStats {
            first_dirty: self.first_dirty,
            ..CleanStats::default()
        };
        let mut throttle = Throttle {
            bytes_per_second: cleaner.io_max_bytes_per_second,
            start: started,
            bytes: 0,
            cancel,
        };
        // 1. Map the dirty section.
        let mut map = OffsetMap::with_budget(cleaner.dedupe_buffer_bytes);
        let mut mapped_end = self.first_dirty;
        let mut full = false;
        for segment in &self.segments {
            if full || segment.next_offset <= self.first_dirty {
                continue;
            }
            if segment.base_offset >= self.uncleanable {
                break;
            }
            for_each_batch(segment, &mut throttle, &mut stats, |header, batch| {
                if header.last_offset() < self.first_dirty {
                    return Ok(true);
                }
                if header.base_offset >= self.uncleanable {
                    full = true; // stop: nothing past here is cleanable yet
                    return Ok(false);
                }
                if header.is_control()
                    || (header.is_transactional()
                        && self.is_aborted(header.producer_id, header.base_offset))
                {
                    mapped_end = mapped_end.max(header.last_offset() + 1);
                    return Ok(true);
                }
                let records = strata_records::rewrite::batch_records(batch)?;
                for r in &records {
                    if r.offset < self.first_dirty {
                        continue;
                    }
                    if let Some(key) = &r.key {
                        if !map.put(key, r.offset) {
                            full = true;
                            return Ok(false);
                        }
                    }
                    mapped_end = r.offset + 1;
                }
                mapped_end = mapped_end.max(header.last_offset() + 1);
                Ok(true)
            })?;
            stats.segments_read += 1;
        }
        stats.keys = map.len();
        stats.mapped_end = mapped_end;
        // 2. Rewrite every sealed segment below the mapped end.
        let cleaning = self.dir.join(CLEANING_DIR);
        let _ = self.fs.remove_dir_all(&cleaning);
        self.fs
            .create_dir_all(&cleaning)
            .map_err(|e| StorageError::io(&cleaning, e))?;
        let horizon = self.now_ms.saturating_sub(self.config.delete_retention_ms);
        let mut rewritten = Vec::new();
        let mut planned = Vec::new();
        for segment in &self.segments {
            planned.push((segment.base_offset, segment.size));
            if segment.base_offset >= mapped_end || map.is_empty() {
                continue;
            }
            // Filter every batch, keeping emptied ones for now: which of those must stay
            // (the segment's last batch, each producer's last) is known at the end.
            let mut out: Vec<(Vec<u8>, i64, bool)> = Vec::new(); // (bytes, producer, emptied)
            let mut changed = false;
            let mut removed = 0u64;
            for_each_batch(segment, &mut throttle, &mut stats, |h, batch| {
                let aborted = h.is_transactional()
                    && !h.is_control()
                    && self.is_aborted(h.producer_id, h.base_offset);
                let tombstones_expire = h.max_timestamp < horizon;
                let filtered = filter_batch(batch, true, |r| {
                    let keep = if aborted {
                        false
                    } else if let Some(key) = &r.key {
                        match map.get(key) {
                            Some(latest) if latest > r.offset => false,
                            _ => !(r.value.is_none() && tombstones_expire && r.offset < mapped_end),
                        }
                    } else {
                        true
                    };
                    if !keep {
                        removed += 1;
                    }
                    keep
                })?;
                match filtered {
                    Filtered::Unchanged => out.push((batch.to_vec(), h.producer_id, false)),
                    Filtered::Rewritten(b) => {
                        changed = true;
                        let emptied = BatchHeader::parse(&b)?.records_count == 0;
                        out.push((b, h.producer_id, emptied));
                    }
                    Filtered::Dropped => changed = true,
                }
                Ok(true)
            })?;
            let mut last_of_producer: BTreeMap<i64, usize> = BTreeMap::new();
            for (i, (_, producer, _)) in out.iter().enumerate() {
                if *producer >= 0 {
                    last_of_producer.insert(*producer, i);
                }
            }
            let last = out.len().saturating_sub(1);
            let out: Vec<Vec<u8>> = out
                .into_iter()
                .enumerate()
                .filter(|(i, (_, producer, emptied))| {
                    !*emptied || *i == last || last_of_producer.get(producer) == Some(i)
                })
                .map(|(_, (b, _, _))| b)
                .collect();
            if !changed {
                continue;
            }
            stats.records_removed += removed;
            let mut cleaned = ActiveSegment::create(
                self.fs.as_ref(),
                &cleaning,
                segment.base_offset,
                self.config.index_interval_bytes,
            )?;
            let mut position = 0usize;
            let mut headers = Vec::with_capacity(out.len());
            for b in &out {
                headers.push((position, BatchHeader::parse(b)?));
                position += b.len();
            }
            let parts: Vec<&[u8]> = out.iter().map(|b| b.as_slice()).collect();
            cleaned.append(&parts, &headers, self.now_ms)?;
            stats.bytes_written += position as u64;
            cleaned.seal(self.fs.as_ref())?;
            rewritten.push(segment.base_offset);
            stats.segments_rewritten += 1;
        }
        self.fs
            .sync_dir(&cleaning)
            .map_err(|e| StorageError::io(&cleaning, e))?;
        stats.duration_ms = started.elapsed().as_millis() as u64;
        Ok(CleanOutput {
            planned,
            rewritten,
            stats,
        })
    }
}

/// Moves committed cleaned segments (`<dir>/cleaned/`) over the old ones, then removes the
/// directory. Idempotent: what a crash left half done is finished by running it again.
pub(crate) fn complete_swap(fs: &dyn Fs, dir: &Path, mut crash_after: Option<usize>) -> Result<()> {
    let cleaned = dir.join(CLEANED_DIR);
    if !fs.is_dir(&cleaned) {
        return Ok(());
    }
    let mut step = || -> bool {
        match crash_after.as_mut() {
            Some(0) => true,
            Some(n) => {
                *n -= 1;
                false
            }
            None => false,
        }
    };
    let io = |p: &Path, e| StorageError::io(p, e);
    let mut bases: Vec<i64> = fs
        .list_dir(&cleaned)
        .map_err(|e| io(&cleaned, e))?
        .iter()
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?;
            let (stem, _) = name.split_once('.')?;
            (stem.len() == 20).then(|| stem.parse().ok()).flatten()
        })
        .collect();
    bases.sort_unstable();
    bases.dedup();
    for base in bases {
        let new_log = segment_file(&cleaned, base, "log");
        if fs.exists(&new_log) {
            // Old indexes first: a new log must never meet an old index.
            for ext in ["index", "timeindex"] {
                let _ = fs.remove_file(&segment_file(dir, base, ext));
            }
            if step() {
                return Ok(());
            }
            fs.rename(&new_log, &segment_file(dir, base, "log"))
                .map_err(|e| io(&new_log, e))?;
            if step() {
                return Ok(());
            }
        }
        for ext in ["index", "timeindex"] {
            let from = segment_file(&cleaned, base, ext);
            if fs.exists(&from) {
                fs.rename(&from, &segment_file(dir, base, ext))
                    .map_err(|e| io(&from, e))?;
            }
        }
        fs.sync_dir(dir).map_err(|e| io(dir, e))?;
        if step() {
            return Ok(());
        }
    }
    fs.remove_dir_all(&cleaned).map_err(|e| io(&cleaned, e))?;
    fs.sync_dir(dir).map_err(|e| io(dir, e))?;
    Ok(())
}

/// At open: an uncommitted `cleaning/` goes, a committed `cleaned/` is finished.
pub(crate) fn recover(fs: &dyn Fs, dir: &Path) -> Result<()> {
    let cleaning = dir.join(CLEANING_DIR);
    if fs.is_dir(&cleaning) {
        tracing::warn!(dir = %dir.display(), "removing an unfinished cleaning pass");
        fs.remove_dir_all(&cleaning)
            .map_err(|e| StorageError::io(&cleaning, e))?;
    }
    if fs.is_dir(&dir.join(CLEANED_DIR)) {
        tracing::warn!(dir = %dir.display(), "finishing an interrupted swap of cleaned segments");
        complete_swap(fs, dir, None)?;
    }
    Ok(())
}

/// Reopens a segment after its files were replaced.
pub(crate) fn reopen(
    fs: &dyn Fs,
    dir: &Path,
    base: i64,
    index_interval_bytes: u64,
    next_base: i64,
) -> Result<crate::segment::SealedSegment> {
    let (segment, truncated) = open_existing(
        fs,
        dir,
        base,
        index_interval_bytes,
        crate::segment::SegmentTrust::Trusted,
        Some(next_base),
    )?;
    if truncated > 0 {
        return Err(StorageError::io(
            segment_file(dir, base, "log"),
            std::io::Error::other("cleaned segment failed its checks"),
        ));
    }
    Ok(segment)
}
