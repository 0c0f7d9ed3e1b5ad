//! One segment: a `.log` file of record batches plus its `.index` and `.timeindex`, all
//! named by the 20-digit base offset (`00000000000000000042.log`).
//!
//! Format: the `.log` file is a plain concatenation of RecordBatch v2 bytes, exactly as
//! produced except for the broker-owned fields. Offsets inside a segment start at the base
//! offset and are dense, except in segments the log cleaner rewrote (compacted topics): there
//! records and whole batches may be gone, batches keep their offset ranges, and the last
//! batch of the segment always stays, so the segment still ends where the next one starts.
//!
//! Types, not flags: [`ActiveSegment`] is the one segment of a log that takes appends; when
//! it rolls it is synced, its indexes are written, and it becomes a [`SealedSegment`], which
//! is never written again (until retention deletes it).
//!
//! Recovery: [`SegmentCore::recover`] scans the file batch by batch (length, magic, CRC,
//! offset continuity), truncates at the first torn or corrupt batch, and rebuilds both
//! indexes from what survived. [`SegmentCore::recover_from`] does the same from the index
//! entry at or below the recovery point (keeping the index entries before it), falling back
//! to the full scan when the index cannot place it. The active segment's index entries are
//! appended to its index files at each recovery point checkpoint
//! ([`ActiveSegment::persist_indexes`]), not only at seal.
//!
//! Thread safety: none inside; the owning [`crate::Log`] is behind the partition's lock.
//! Readers take an `Arc` of the file and read outside the lock.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use strata_records::{scan_batches, BatchHeader, ScanStop, BATCH_HEADER_BYTES};
use tracing::warn;

use crate::error::Result;
use crate::index::{OffsetIndex, TimeIndex};
use crate::{Fs, FsFile, StorageError};

/// Bytes read at once while scanning a segment for recovery.
const SCAN_CHUNK_BYTES: usize = 4 << 20;

pub fn segment_file(dir: &Path, base_offset: i64, ext: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}.{ext}"))
}

/// State shared by active and sealed segments.
pub struct SegmentCore {
    pub base_offset: i64,
    dir: PathBuf,
    file: Arc<dyn FsFile>,
    /// Bytes of valid batches in the `.log` file.
    size: u64,
    /// One past the last offset in this segment (`base_offset` when empty).
    next_offset: i64,
    /// Largest batch max_timestamp in this segment (-1 when none).
    max_timestamp: i64,
    offset_index: OffsetIndex,
    time_index: TimeIndex,
    bytes_since_index_entry: u64,
    index_interval_bytes: u64,
    /// When the first batch was appended (for `segment.ms`), by the broker's clock.
    first_append_ms: Option<i64>,
    /// Relative offset of the newest batch (for the final time index entry).
    last_batch_relative_offset: Option<u32>,
    /// How many offset / time index entries the index files hold (a prefix of the ones in
    /// memory); `None` when their contents are unknown, so the next write rewrites them.
    persisted: Option<(usize, usize)>,
    /// The index files may hold entries past the persisted ones (left by a crash): the next
    /// write cuts them off.
    index_tail_stale: bool,
    /// Log bytes the index entries in the files cover, as written and as last synced.
    persisted_at_size: u64,
    synced_at_size: u64,
}

/// The active segment's index entries go to their files once they cover this many
/// `index.interval.bytes` more of the log (a recovery then scans at most about that much
/// before the recovery point), and are synced once they cover this many more.
const PERSIST_INDEX_INTERVALS: u64 = 16;
const SYNC_INDEX_INTERVALS: u64 = 256;

/// How far a segment found at startup is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentTrust {
    /// Closed cleanly or wholly below the recovery point: indexes loaded, nothing scanned
    /// (but the newest segment's tail after its last index entry).
    Trusted,
    /// Holds the recovery point: synced up to it, so the scan starts at the index entry at or
    /// below it (see [`SegmentCore::recover_from`]).
    RecoverFrom(i64),
    /// Past the recovery point: scanned from its first byte.
    Untrusted,
}

/// Where a fetch should read: a byte range of one segment file, holding whole batches.
#[derive(Clone)]
pub struct SegmentSlice {
    pub file: Arc<dyn FsFile>,
    pub position: u64,
    pub bytes: usize,
}

impl SegmentSlice {
    pub fn read(&self) -> std::io::Result<Bytes> {
        let mut buf = BytesMut::zeroed(self.bytes);
        self.file.read_exact_at(&mut buf, self.position)?;
        Ok(buf.freeze())
    }
}

impl SegmentCore {
    fn open_file(
        fs: &dyn Fs,
        dir: &Path,
        base_offset: i64,
        create: bool,
    ) -> Result<Arc<dyn FsFile>> {
        let path = segment_file(dir, base_offset, "log");
        fs.open(&path, create)
            .map_err(|e| StorageError::io(path, e))
    }

    fn empty(fs: &dyn Fs, dir: &Path, base_offset: i64, index_interval_bytes: u64) -> Result<Self> {
        let file = Self::open_file(fs, dir, base_offset, true)?;
        file.set_len(0)
            .map_err(|e| StorageError::io(segment_file(dir, base_offset, "log"), e))?;
        Ok(Self::with_file(
            dir,
            base_offset,
            file,
            index_interval_bytes,
        ))
    }

    fn with_file(
        dir: &Path,
        base_offset: i64,
        file: Arc<dyn FsFile>,
        index_interval_bytes: u64,
    ) -> Self {
        Self {
            base_offset,
            dir: dir.to_path_buf(),
            file,
            size: 0,
            next_offset: base_offset,
            max_timestamp: -1,
            offset_index: OffsetIndex::default(),
            time_index: TimeIndex::default(),
            bytes_since_index_entry: 0,
            index_interval_bytes,
            first_append_ms: None,
            last_batch_relative_offset: None,
            persisted: None,
            index_tail_stale: false,
            persisted_at_size: 0,
            synced_at_size: 0,
        }
    }

    pub fn size(&self) -> u64 {
        self.size
    }
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }
    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }
    pub fn file(&self) -> Arc<dyn FsFile> {
        self.file.clone()
    }
    fn path(&self, ext: &str) -> PathBuf {
        segment_file(&self.dir, self.base_offset, ext)
    }

    fn relative(&self, offset: i64) -> u32 {
        u32::try_from(offset - self.base_offset).expect("offset within segment range")
    }

    /// Index bookkeeping for a batch already written at `position`. Both indexes get an
    /// entry every `index.interval.bytes` (and the time index one for the first batch), so
    /// index memory is per interval, not per batch.
    fn note_batch(&mut self, header: &BatchHeader, position: u64) {
        let total = header.total_bytes() as u64;
        self.max_timestamp = self.max_timestamp.max(header.max_timestamp);
        let relative = self.relative(header.base_offset);
        if position == 0 || self.bytes_since_index_entry >= self.index_interval_bytes {
            if position > 0 {
                self.offset_index.append(relative, position as u32);
            }
            self.time_index.maybe_append(self.max_timestamp, relative);
            self.bytes_since_index_entry = 0;
        }
        self.bytes_since_index_entry += total;
        self.last_batch_relative_offset = Some(relative);
        self.next_offset = header.next_offset();
        self.size = position + total;
    }

    /// Scans the whole `.log` file, keeping the valid prefix whose offsets follow on from
    /// the base offset and truncating the rest. Returns the bytes truncated.
    pub fn recover(&mut self) -> Result<u64> {
        let path = self.path("log");
        let file_len = self.file.len().map_err(|e| StorageError::io(&path, e))?;
        self.size = 0;
        self.next_offset = self.base_offset;
        self.max_timestamp = -1;
        self.offset_index = OffsetIndex::default();
        self.time_index = TimeIndex::default();
        self.bytes_since_index_entry = 0;
        self.persisted = None;
        self.scan_from(0, file_len)?;
        self.truncate_to_valid(file_len)
    }

    /// Recovery of the segment holding `recovery_point`, every byte before which was synced
    /// (the checkpoint's promise), so only what follows needs checking. The index files,
    /// whose entries up to the recovery point were synced before that checkpoint was
    /// written, locate it: the scan starts at the last entry at or below it, and their
    /// entries up to there are kept. When they cannot place it (missing, short, or the
    /// batches there do not follow on), the whole segment is scanned instead; nothing is
    /// truncated before that decision.
    pub fn recover_from(&mut self, fs: &dyn Fs, recovery_point: i64) -> Result<u64> {
        let path = self.path("log");
        let file_len = self.file.len().map_err(|e| StorageError::io(&path, e))?;
        let Ok(relative_rp) = u32::try_from(recovery_point - self.base_offset) else {
            return self.recover();
        };
        let mut offsets = self
            .read_index_file(fs, "index")
            .map(|b| OffsetIndex::decode_prefix(&b, file_len))
            .unwrap_or_default();
        let (relative, position) = offsets.lookup(relative_rp);
        if position == 0 {
            return self.recover();
        }
        let mut times = self
            .read_index_file(fs, "timeindex")
            .map(|b| TimeIndex::decode_prefix(&b))
            .unwrap_or_default();
        offsets.keep_through(relative);
        times.keep_through(relative);
        let kept = (offsets.len(), times.len());
        self.max_timestamp = times.last().map_or(-1, |(t, _)| t);
        self.offset_index = offsets;
        self.time_index = times;
        self.size = u64::from(position);
        self.next_offset = self.base_offset + i64::from(relative);
        self.bytes_since_index_entry = 0;
        self.last_batch_relative_offset = None;
        self.scan_from(u64::from(position), file_len)?;
        if self.next_offset < recovery_point {
            warn!(segment = %path.display(), recovery_point, found_up_to = self.next_offset, "the index does not locate the recovery point; scanning the whole segment");
            return self.recover();
        }
        self.persisted = Some(kept);
        self.index_tail_stale = true;
        self.persisted_at_size = u64::from(position);
        self.synced_at_size = u64::from(position);
        self.truncate_to_valid(file_len)
    }

    /// Scans batches from `position` (where the batch holding `self.next_offset` starts) to
    /// the first torn or corrupt one, noting each in the indexes. Truncates nothing.
    fn scan_from(&mut self, mut position: u64, file_len: u64) -> Result<()> {
        let path = self.path("log");
        let mut chunk = vec![
            0u8;
            SCAN_CHUNK_BYTES
                .min(file_len.saturating_sub(position) as usize)
                .max(BATCH_HEADER_BYTES)
        ];
        while position < file_len {
            let want = chunk.len().min((file_len - position) as usize);
            self.file
                .read_exact_at(&mut chunk[..want], position)
                .map_err(|e| StorageError::io(&path, e))?;
            let (spans, stop) = scan_batches(&chunk[..want], Some(self.next_offset));
            for span in &spans {
                self.note_batch(&span.header, position + span.position as u64);
            }
            match stop {
                ScanStop::End => position += want as u64,
                ScanStop::Incomplete { position: at } => {
                    let at_abs = position + at as u64;
                    let left_in_file = file_len - at_abs;
                    let needed = BatchHeader::parse(&chunk[at..want])
                        .map(|h| h.total_bytes() as u64)
                        .unwrap_or(BATCH_HEADER_BYTES as u64);
                    if needed > left_in_file {
                        // the batch cannot be whole: a torn tail, cut at self.size
                        return Ok(());
                    }
                    if needed as usize > chunk.len() {
                        chunk.resize(needed as usize, 0); // bounded by the file length
                    }
                    position = at_abs; // re-read from the start of this batch
                }
                ScanStop::Corrupt {
                    position: at,
                    error,
                } => {
                    position += at as u64;
                    warn!(segment = %path.display(), position, %error, "corrupt batch found in recovery");
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Cuts the `.log` file to the valid bytes a scan found (synced). Returns the bytes cut.
    fn truncate_to_valid(&mut self, file_len: u64) -> Result<u64> {
        let path = self.path("log");
        let truncated = file_len - self.size;
        if truncated > 0 {
            warn!(segment = %path.display(), valid_bytes = self.size, truncated_bytes = truncated, "truncating torn or corrupt tail");
            self.file
                .set_len(self.size)
                .map_err(|e| StorageError::io(&path, e))?;
            self.file
                .sync_data()
                .map_err(|e| StorageError::io(&path, e))?;
        }
        Ok(truncated)
    }

    /// The whole contents of this segment's `ext` index file, if it can be read.
    fn read_index_file(&self, fs: &dyn Fs, ext: &str) -> Option<Vec<u8>> {
        let f = fs.open(&self.path(ext), false).ok()?;
        let len = f.len().ok()? as usize;
        let mut buf = vec![0u8; len];
        f.read_exact_at(&mut buf, 0).ok()?;
        Some(buf)
    }

    /// Loads trusted indexes written at seal or clean shutdown; false if they are unusable.
    ///
    /// A sealed segment (`next_base` known from the next segment's file name) is not read at
    /// all, as in Kafka: its size is the file length and its newest timestamp the time
    /// index's last entry (written at seal). The newest segment's tail after its last index
    /// entry is scanned to learn its next offset.
    fn load_indexes(&mut self, fs: &dyn Fs, next_base: Option<i64>) -> Result<bool> {
        let log_len = self
            .file
            .len()
            .map_err(|e| StorageError::io(self.path("log"), e))?;
        let (Some(oi), Some(ti)) = (
            self.read_index_file(fs, "index"),
            self.read_index_file(fs, "timeindex"),
        ) else {
            return Ok(false);
        };
        let (Some(oi), Some(ti)) = (OffsetIndex::decode(&oi, log_len), TimeIndex::decode(&ti))
        else {
            return Ok(false);
        };
        let (last_rel, last_pos) = oi.last().unwrap_or((0, 0));
        let index_max_ts = ti.last().map(|(t, _)| t).unwrap_or(-1);
        if let Some(next) = next_base {
            if next <= self.base_offset + i64::from(last_rel)
                || (log_len == 0) != (next == self.base_offset)
            {
                return Ok(false);
            }
            self.next_offset = next;
            self.max_timestamp = index_max_ts;
            self.size = log_len;
            self.persisted = Some((oi.len(), ti.len()));
            (self.persisted_at_size, self.synced_at_size) = (log_len, log_len);
            self.offset_index = oi;
            self.time_index = ti;
            return Ok(true);
        }
        let tail_len = (log_len - u64::from(last_pos)) as usize;
        if tail_len > 64 << 20 {
            return Ok(false);
        }
        let mut tail = vec![0u8; tail_len];
        self.file
            .read_exact_at(&mut tail, u64::from(last_pos))
            .map_err(|e| StorageError::io(self.path("log"), e))?;
        let expected = self.base_offset + i64::from(last_rel);
        let (spans, stop) = scan_batches(&tail, Some(expected));
        if stop != ScanStop::End || (tail_len > 0 && spans.is_empty()) {
            return Ok(false);
        }
        self.next_offset = spans
            .last()
            .map(|s| s.header.next_offset())
            .unwrap_or(self.base_offset);
        self.max_timestamp = spans
            .iter()
            .map(|s| s.header.max_timestamp)
            .fold(index_max_ts, i64::max);
        self.size = log_len;
        self.bytes_since_index_entry = tail_len as u64;
        self.persisted = Some((oi.len(), ti.len()));
        (self.persisted_at_size, self.synced_at_size) = (log_len, log_len);
        self.offset_index = oi;
        self.time_index = ti;
        Ok(true)
    }

    /// Records the segment's newest timestamp in the time index, so a reopened segment knows
    /// it without reading the log (Kafka does the same when a segment becomes inactive).
    fn finish_time_index(&mut self) {
        if let Some(last_batch) = self.last_batch_relative_offset {
            self.time_index.maybe_append(self.max_timestamp, last_batch);
        }
    }

    fn write_indexes(&mut self, fs: &dyn Fs) -> Result<()> {
        self.write_index_files(fs, true)
    }

    fn write_index_files(&mut self, fs: &dyn Fs, sync: bool) -> Result<()> {
        for (ext, bytes) in [
            ("index", self.offset_index.encode()),
            ("timeindex", self.time_index.encode()),
        ] {
            let path = self.path(ext);
            let f = fs
                .open(&path, true)
                .map_err(|e| StorageError::io(&path, e))?;
            f.set_len(0).map_err(|e| StorageError::io(&path, e))?;
            f.write_all_at(&bytes, 0)
                .map_err(|e| StorageError::io(&path, e))?;
            if sync {
                f.sync_data().map_err(|e| StorageError::io(&path, e))?;
            }
        }
        self.persisted = Some((self.offset_index.len(), self.time_index.len()));
        self.index_tail_stale = false;
        (self.persisted_at_size, self.synced_at_size) = (self.size, self.size);
        Ok(())
    }

    /// Appends the index entries the index files lack (not synced), rewriting files whose
    /// contents are unknown and cutting off stale entries a crash left. Unless `force`d, new
    /// entries wait until they cover `PERSIST_INDEX_INTERVALS` intervals of log, and the
    /// files written are returned for the caller to sync only once `SYNC_INDEX_INTERVALS`
    /// intervals were written since the last sync (a checkpoint of thousands of slow
    /// partitions costs no fsync each; a recovery uses unsynced entries too, checking the
    /// batch it starts at). Forced: everything written, every file returned.
    fn persist_indexes(&mut self, fs: &dyn Fs, force: bool) -> Result<Vec<Arc<dyn FsFile>>> {
        let lens = (self.offset_index.len(), self.time_index.len());
        let unknown = self.persisted.is_none() || self.index_tail_stale;
        let interval = self.index_interval_bytes.max(1);
        if !force
            && !unknown
            && self.size.saturating_sub(self.persisted_at_size) < PERSIST_INDEX_INTERVALS * interval
        {
            return Ok(Vec::new());
        }
        let (from, cut) = match self.persisted {
            Some(done) if done == lens && !self.index_tail_stale => {
                self.persisted_at_size = self.size;
                return Ok(Vec::new());
            }
            Some(done) => (done, self.index_tail_stale),
            None => ((0, 0), true),
        };
        let mut written = Vec::new();
        for (ext, bytes, at, total) in [
            (
                "index",
                self.offset_index.encode_from(from.0),
                from.0 * OffsetIndex::ENTRY_BYTES,
                lens.0 * OffsetIndex::ENTRY_BYTES,
            ),
            (
                "timeindex",
                self.time_index.encode_from(from.1),
                from.1 * TimeIndex::ENTRY_BYTES,
                lens.1 * TimeIndex::ENTRY_BYTES,
            ),
        ] {
            if bytes.is_empty() && !cut {
                continue;
            }
            let path = self.path(ext);
            let f = fs
                .open(&path, true)
                .map_err(|e| StorageError::io(&path, e))?;
            if !bytes.is_empty() {
                f.write_all_at(&bytes, at as u64)
                    .map_err(|e| StorageError::io(&path, e))?;
            }
            if cut {
                f.set_len(total as u64)
                    .map_err(|e| StorageError::io(&path, e))?;
            }
            written.push(f);
        }
        self.persisted = Some(lens);
        self.index_tail_stale = false;
        self.persisted_at_size = self.size;
        if force || cut || self.size - self.synced_at_size >= SYNC_INDEX_INTERVALS * interval {
            self.synced_at_size = self.size;
            Ok(written)
        } else {
            Ok(Vec::new())
        }
    }

    fn read_header(&self, position: u64) -> Result<BatchHeader> {
        let mut buf = [0u8; BATCH_HEADER_BYTES];
        self.file
            .read_exact_at(&mut buf, position)
            .map_err(|e| StorageError::io(self.path("log"), e))?;
        Ok(BatchHeader::parse(&buf)?)
    }

    /// Byte position of the batch holding `offset`, or None if `offset` is past this segment.
    pub(crate) fn position_of(&self, offset: i64) -> Result<Option<(u64, BatchHeader)>> {
        if offset >= self.next_offset {
            return Ok(None);
        }
        let (_, mut position) = self
            .offset_index
            .lookup(self.relative(offset.max(self.base_offset)));
        let mut position = u64::from(std::mem::take(&mut position));
        while position < self.size {
            let header = self.read_header(position)?;
            if header.last_offset() >= offset {
                return Ok(Some((position, header)));
            }
            position += header.total_bytes() as u64;
        }
        Ok(None)
    }

    /// Whole batches from the one holding `offset`, up to `max_bytes` (but at least one batch,
    /// KIP-74) and stopping before `max_offset` (the high watermark).
    pub fn slice(
        &self,
        offset: i64,
        max_bytes: usize,
        max_offset: i64,
    ) -> Result<Option<SegmentSlice>> {
        let Some((mut start, mut first)) = self.position_of(offset)? else {
            return Ok(None);
        };
        // Batches the cleaner emptied (kept for their offset range and producer state) are
        // skipped: a response holding nothing but them looks to clients like a message too
        // large to fetch. A segment with nothing else yields nothing (the next one is read).
        while first.records_count == 0 {
            start += first.total_bytes() as u64;
            if start >= self.size {
                return Ok(None);
            }
            first = self.read_header(start)?;
        }
        if first.base_offset >= max_offset {
            return Ok(None);
        }
        let mut end = start + first.total_bytes() as u64;
        while end < self.size {
            let header = self.read_header(end)?;
            let next_end = end + header.total_bytes() as u64;
            if header.base_offset >= max_offset || (next_end - start) as usize > max_bytes {
                break;
            }
            end = next_end;
        }
        Ok(Some(SegmentSlice {
            file: self.file.clone(),
            position: start,
            bytes: (end - start) as usize,
        }))
    }

    /// Visits every batch from the one holding `offset` to the end of the segment: its
    /// header, and its bytes when `want_bytes` asks (control batches). Otherwise only headers
    /// are read, a chunk at a time when batches are small and one header at a time when they
    /// are large, so replaying producer state reads a fraction of the segment.
    pub fn visit_batches(
        &self,
        offset: i64,
        want_bytes: impl Fn(&BatchHeader) -> bool,
        mut visit: impl FnMut(&BatchHeader, Option<&[u8]>),
    ) -> Result<()> {
        const SMALL_READ: usize = 4 << 10;
        const LARGE_READ: usize = 64 << 10;
        let Some((mut position, _)) = self.position_of(offset)? else {
            return Ok(());
        };
        let path = self.path("log");
        let mut buf: Vec<u8> = Vec::new();
        let mut buf_at = 0u64;
        let mut last_total = 0usize;
        while position + BATCH_HEADER_BYTES as u64 <= self.size {
            if position < buf_at || position + BATCH_HEADER_BYTES as u64 > buf_at + buf.len() as u64
            {
                let want = if last_total > LARGE_READ {
                    SMALL_READ
                } else {
                    LARGE_READ
                };
                let want = want.min((self.size - position) as usize);
                buf.resize(want, 0);
                self.file
                    .read_exact_at(&mut buf, position)
                    .map_err(|e| StorageError::io(&path, e))?;
                buf_at = position;
            }
            let header = BatchHeader::parse(&buf[(position - buf_at) as usize..])?;
            let total = header.total_bytes();
            if position + total as u64 > self.size {
                break;
            }
            if want_bytes(&header) {
                let mut bytes = vec![0u8; total];
                self.file
                    .read_exact_at(&mut bytes, position)
                    .map_err(|e| StorageError::io(&path, e))?;
                visit(&header, Some(&bytes));
            } else {
                visit(&header, None);
            }
            position += total as u64;
            last_total = total;
        }
        Ok(())
    }

    /// First batch position at or after which a record with timestamp ≥ `target` may be.
    pub fn timestamp_scan_start(&self, target: i64) -> Result<Option<(u64, BatchHeader)>> {
        let rel = self.time_index.scan_start(target);
        self.position_of(self.base_offset + i64::from(rel))
    }

    /// Iterates batch headers from `position` (for timestamp lookups).
    pub fn header_at(&self, position: u64) -> Result<Option<BatchHeader>> {
        if position >= self.size {
            return Ok(None);
        }
        self.read_header(position).map(Some)
    }

    pub(crate) fn delete_files(&self, fs: &dyn Fs) {
        for ext in ["log", "index", "timeindex"] {
            let _ = fs.remove_file(&self.path(ext));
        }
    }
}

/// The segment that takes appends.
pub struct ActiveSegment(pub(crate) SegmentCore);

/// A segment that is full (or old) and never written again.
pub struct SealedSegment(pub(crate) SegmentCore);

impl ActiveSegment {
    pub fn create(
        fs: &dyn Fs,
        dir: &Path,
        base_offset: i64,
        index_interval_bytes: u64,
    ) -> Result<Self> {
        Ok(Self(SegmentCore::empty(
            fs,
            dir,
            base_offset,
            index_interval_bytes,
        )?))
    }

    /// Appends already-validated batches with assigned offsets, given as slices whose
    /// concatenation is the batches (patched headers and untouched records), in one write.
    pub fn append(
        &mut self,
        parts: &[&[u8]],
        headers: &[(usize, BatchHeader)],
        now_ms: i64,
    ) -> Result<()> {
        let start = self.0.size;
        self.0
            .file
            .write_all_vectored_at(parts, start)
            .map_err(|e| StorageError::io(self.0.path("log"), e))?;
        for (position, header) in headers {
            self.0.note_batch(header, start + *position as u64);
        }
        self.0.first_append_ms.get_or_insert(now_ms);
        Ok(())
    }

    pub fn first_append_ms(&self) -> Option<i64> {
        self.0.first_append_ms
    }

    /// Bytes the larger of the two indexes takes on disk (`segment.index.bytes` bounds it).
    pub fn index_bytes(&self) -> u64 {
        let offsets = self.0.offset_index.len() * OffsetIndex::ENTRY_BYTES;
        let times = self.0.time_index.len() * TimeIndex::ENTRY_BYTES;
        offsets.max(times) as u64
    }

    /// Syncs the data and writes the indexes; the segment is complete on disk after this.
    pub fn seal(mut self, fs: &dyn Fs) -> Result<SealedSegment> {
        self.complete_on_disk(fs)?;
        Ok(self.into_sealed())
    }

    /// What sealing writes (synced data, final indexes), in place: on an error the segment
    /// is still this log's active segment and loses nothing in memory, so a roll does this
    /// before it replaces the active segment.
    pub fn complete_on_disk(&mut self, fs: &dyn Fs) -> Result<()> {
        self.0.finish_time_index();
        self.0
            .file
            .sync_data()
            .map_err(|e| StorageError::io(self.0.path("log"), e))?;
        self.0.write_indexes(fs)
    }

    /// Sealed without more I/O: after [`ActiveSegment::complete_on_disk`].
    pub fn into_sealed(self) -> SealedSegment {
        SealedSegment(self.0)
    }

    /// Writes the indexes without sealing or syncing them (clean shutdown: the caller syncs
    /// the file system).
    pub fn write_indexes_unsynced(&mut self, fs: &dyn Fs) -> Result<()> {
        self.0.finish_time_index();
        self.0.write_index_files(fs, false)
    }

    pub fn write_indexes(&mut self, fs: &dyn Fs) -> Result<()> {
        self.0.finish_time_index();
        self.0.write_indexes(fs)
    }

    /// Brings the index files up to the entries in memory (see
    /// [`SegmentCore::persist_indexes`]): at each recovery point checkpoint, so a recovery
    /// can start at the checkpointed offset instead of the segment's first byte.
    pub fn persist_indexes(&mut self, fs: &dyn Fs, force: bool) -> Result<Vec<Arc<dyn FsFile>>> {
        self.0.persist_indexes(fs, force)
    }
}

impl SealedSegment {
    pub fn delete(self, fs: &dyn Fs) {
        self.0.delete_files(fs);
    }

    /// Reopens as active: used at startup for the newest segment.
    pub fn into_active(self) -> ActiveSegment {
        ActiveSegment(self.0)
    }
}

/// Opens an existing segment at startup. Trusted segments load their indexes (a sealed one
/// reads nothing else; the newest scans only the tail after its last index entry); the one
/// holding the recovery point is scanned from there; the others, or any whose indexes do not
/// check out, are scanned in full. Every scan truncates at the first bad batch.
pub fn open_existing(
    fs: &dyn Fs,
    dir: &Path,
    base_offset: i64,
    index_interval_bytes: u64,
    trust: SegmentTrust,
    next_base: Option<i64>,
) -> Result<(SealedSegment, u64)> {
    let file = SegmentCore::open_file(fs, dir, base_offset, false)?;
    let mut core = SegmentCore::with_file(dir, base_offset, file, index_interval_bytes);
    let truncated = match trust {
        SegmentTrust::Trusted if core.load_indexes(fs, next_base)? => 0,
        SegmentTrust::RecoverFrom(recovery_point) => core.recover_from(fs, recovery_point)?,
        _ => core.recover()?,
    };
    Ok((SealedSegment(core), truncated))
}
