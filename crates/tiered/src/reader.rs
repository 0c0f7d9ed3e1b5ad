//! Reading copies back for fetches below the local log start (Kafka's
//! RemoteLogReader with its index cache, plus a chunk cache of our own).
//!
//! A read finds the byte position of its offset in the copy's offset index, then reads
//! the log in fixed-size chunks (`chunk_bytes`, aligned in the file). Both the copies'
//! indexes and the chunks live in caches bounded by bytes and evicted least recently used
//! first. A chunk or index wanted by several readers at once is asked for once (the others
//! wait for that request). A read of chunk `k` of a copy whose chunk `k - 1` was read
//! lately (or `k` = 0) is taken as sequential: the next `prefetch_chunks` are asked for in
//! the background, so a consumer replaying from the start finds them in memory.
//!
//! Every batch returned has its CRC-32C checked; a chunk shorter than its range, a batch
//! whose length runs past the copy, or a bad CRC is reported as corrupt, never served.
//! The fetch limit (when configured) is taken before each chunk is asked for, prefetches
//! included.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use tokio::sync::OnceCell;
use uuid::Uuid;

use crate::remote::{FileKind, Manifest, RemoteStorage, SegmentObjects};
use crate::throttle::RateLimiter;
use crate::txn_index::AbortedRange;
use crate::{Result, TieredError};

/// Record batch framing (format v2): base offset 8, length 4, …, last offset delta at 23.
const BATCH_HEADER: usize = 61;
/// The largest batch a copy may hold (a bound before anything is read for it).
const MAX_BATCH_BYTES: usize = 1 << 30;

#[derive(Debug, Clone)]
pub struct ReaderConfig {
    /// The size of a log read from the store (and of a cache entry).
    pub chunk_bytes: u64,
    /// Bytes of chunks kept in memory.
    pub chunk_cache_bytes: u64,
    /// Bytes of indexes kept in memory (Kafka's
    /// `remote.log.index.file.cache.total.size.bytes`).
    pub index_cache_bytes: u64,
    /// Chunks read ahead for a sequential reader.
    pub prefetch_chunks: u64,
}

impl Default for ReaderConfig {
    fn default() -> Self {
        ReaderConfig {
            chunk_bytes: 4 << 20,
            chunk_cache_bytes: 256 << 20,
            index_cache_bytes: 64 << 20,
            prefetch_chunks: 2,
        }
    }
}

/// Counters of the reader's work since it started.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReaderStats {
    pub chunk_hits: u64,
    pub chunk_misses: u64,
    pub prefetched: u64,
    pub bytes_fetched: u64,
}

/// A copy's manifest and offset index, as reads use them.
#[derive(Debug)]
struct CopyIndex {
    manifest: Manifest,
    /// (relative offset, byte position) entries of its `.index`.
    entries: Vec<(u32, u32)>,
    /// Its aborted transactions (`.txnindex`; none when the copy has no such file).
    aborted: Vec<AbortedRange>,
}

impl CopyIndex {
    fn log_size(&self) -> u64 {
        self.manifest.file(FileKind::Log).map_or(0, |f| f.size)
    }
}

/// A cache bounded by the bytes of its values, least recently used out first, where each
/// missing key is loaded once however many ask for it at the same time.
struct LoadingCache<K, V> {
    inner: Mutex<CacheState<K, V>>,
    budget: u64,
}

struct CacheState<K, V> {
    /// value, its weight, when it was last used
    entries: HashMap<K, (V, u64, u64)>,
    loading: HashMap<K, Arc<OnceCell<V>>>,
    bytes: u64,
    tick: u64,
}

impl<K: Hash + Eq + Clone, V: Clone> LoadingCache<K, V> {
    fn new(budget: u64) -> Self {
        LoadingCache {
            inner: Mutex::new(CacheState {
                entries: HashMap::new(),
                loading: HashMap::new(),
                bytes: 0,
                tick: 0,
            }),
            budget,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, CacheState<K, V>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `key` is cached or loading; a cached one is marked as used now (a reader
    /// about to want it keeps it from being the next evicted).
    fn touch(&self, key: &K) -> bool {
        let mut s = self.state();
        s.tick += 1;
        let tick = s.tick;
        if let Some(e) = s.entries.get_mut(key) {
            e.2 = tick;
            return true;
        }
        s.loading.contains_key(key)
    }

    #[cfg(test)]
    fn get(&self, key: &K) -> Option<V> {
        let mut s = self.state();
        s.tick += 1;
        let tick = s.tick;
        s.entries.get_mut(key).map(|e| {
            e.2 = tick;
            e.0.clone()
        })
    }

    fn contains(&self, key: &K) -> bool {
        let s = self.state();
        s.entries.contains_key(key) || s.loading.contains_key(key)
    }

    fn loading(&self) -> usize {
        self.state().loading.len()
    }

    /// The cached value, or the one `load` gives (once for all who ask meanwhile).
    /// Returns whether it was cached.
    async fn get_or_load<F, Fut>(&self, key: K, weigh: fn(&V) -> u64, load: F) -> Result<(V, bool)>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<V>>,
    {
        let cell = {
            let mut s = self.state();
            s.tick += 1;
            let tick = s.tick;
            if let Some(e) = s.entries.get_mut(&key) {
                e.2 = tick;
                return Ok((e.0.clone(), true));
            }
            s.loading.entry(key.clone()).or_default().clone()
        };
        let value = cell.get_or_try_init(load).await?.clone();
        let mut s = self.state();
        if s.loading.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            s.loading.remove(&key);
            let weight = weigh(&value);
            if weight <= self.budget {
                s.tick += 1;
                let tick = s.tick;
                if let Some(old) = s.entries.insert(key, (value.clone(), weight, tick)) {
                    s.bytes -= old.1;
                }
                s.bytes += weight;
                while s.bytes > self.budget {
                    let Some(oldest) = s
                        .entries
                        .iter()
                        .min_by_key(|(_, e)| e.2)
                        .map(|(k, _)| k.clone())
                    else {
                        break;
                    };
                    let (_, w, _) = s.entries.remove(&oldest).expect("present");
                    s.bytes -= w;
                }
            }
        }
        Ok((value, false))
    }

    #[cfg(test)]
    fn bytes(&self) -> u64 {
        self.state().bytes
    }
}

/// Reads copies for fetches, through the caches.
pub struct RemoteReader {
    storage: RemoteStorage,
    config: ReaderConfig,
    fetch_limit: Option<Arc<RateLimiter>>,
    indexes: LoadingCache<Uuid, Arc<CopyIndex>>,
    chunks: LoadingCache<(Uuid, u64), Bytes>,
    chunk_hits: AtomicU64,
    chunk_misses: AtomicU64,
    prefetched: AtomicU64,
    bytes_fetched: AtomicU64,
}

impl RemoteReader {
    pub fn new(
        storage: RemoteStorage,
        mut config: ReaderConfig,
        fetch_limit: Option<Arc<RateLimiter>>,
    ) -> RemoteReader {
        config.chunk_bytes = config.chunk_bytes.clamp(4 << 10, 256 << 20);
        RemoteReader {
            storage,
            indexes: LoadingCache::new(config.index_cache_bytes),
            chunks: LoadingCache::new(config.chunk_cache_bytes),
            config,
            fetch_limit: fetch_limit.filter(|l| !l.is_unlimited()),
            chunk_hits: AtomicU64::new(0),
            chunk_misses: AtomicU64::new(0),
            prefetched: AtomicU64::new(0),
            bytes_fetched: AtomicU64::new(0),
        }
    }

    pub fn storage(&self) -> &RemoteStorage {
        &self.storage
    }

    pub fn stats(&self) -> ReaderStats {
        ReaderStats {
            chunk_hits: self.chunk_hits.load(Ordering::Relaxed),
            chunk_misses: self.chunk_misses.load(Ordering::Relaxed),
            prefetched: self.prefetched.load(Ordering::Relaxed),
            bytes_fetched: self.bytes_fetched.load(Ordering::Relaxed),
        }
    }

    async fn index(&self, objects: &SegmentObjects) -> Result<Arc<CopyIndex>> {
        let weigh =
            |i: &Arc<CopyIndex>| 8 * i.entries.len() as u64 + 24 * i.aborted.len() as u64 + 256;
        let load = || async {
            let manifest =
                self.storage
                    .manifest(objects)
                    .await?
                    .ok_or_else(|| TieredError::Missing {
                        object: format!("manifest of copy {}", objects.id),
                    })?;
            let bytes = self
                .storage
                .fetch_file(objects, &manifest, FileKind::Index)
                .await?;
            let entries = bytes
                .chunks_exact(8)
                .map(|e| {
                    (
                        u32::from_be_bytes(e[..4].try_into().expect("4 bytes")),
                        u32::from_be_bytes(e[4..].try_into().expect("4 bytes")),
                    )
                })
                .collect();
            let aborted = match manifest.file(FileKind::TransactionIndex) {
                None => Vec::new(),
                Some(_) => {
                    let bytes = self
                        .storage
                        .fetch_file(objects, &manifest, FileKind::TransactionIndex)
                        .await?;
                    crate::txn_index::decode(&bytes).map_err(|reason| TieredError::Corrupt {
                        object: format!("transaction index of copy {}", objects.id),
                        reason,
                    })?
                }
            };
            Ok(Arc::new(CopyIndex {
                manifest,
                entries,
                aborted,
            }))
        };
        Ok(self.indexes.get_or_load(objects.id, weigh, load).await?.0)
    }

    /// Chunk `k` of a copy's log, from the cache or the store (a prefetch is counted as
    /// neither a hit nor a miss).
    async fn chunk(
        &self,
        objects: &SegmentObjects,
        index: &CopyIndex,
        k: u64,
        prefetch: bool,
    ) -> Result<Bytes> {
        let size = index.log_size();
        let c = self.config.chunk_bytes;
        let range = k * c..((k + 1) * c).min(size);
        let load = || async {
            if let Some(limit) = &self.fetch_limit {
                limit.acquire(range.end - range.start).await;
            }
            let bytes = self.storage.fetch_log_bytes(objects, range.clone()).await?;
            if bytes.len() as u64 != range.end - range.start {
                return Err(TieredError::Corrupt {
                    object: format!("log of copy {}", objects.id),
                    reason: format!(
                        "{} bytes at {}, the manifest says {} are there",
                        bytes.len(),
                        range.start,
                        range.end - range.start
                    ),
                });
            }
            self.bytes_fetched
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
            Ok(bytes)
        };
        let (bytes, hit) = self
            .chunks
            .get_or_load((objects.id, k), |b: &Bytes| b.len() as u64, load)
            .await?;
        if !prefetch {
            let counter = if hit {
                &self.chunk_hits
            } else {
                &self.chunk_misses
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        Ok(bytes)
    }

    /// Asks for the chunks after `k` in the background, when the reader looks sequential.
    fn prefetch(self: &Arc<Self>, objects: &SegmentObjects, index: &Arc<CopyIndex>, k: u64) {
        let c = self.config.chunk_bytes;
        let sequential = k == 0 || self.chunks.contains(&(objects.id, k - 1));
        if !sequential || self.config.prefetch_chunks == 0 {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        for next in k + 1..=k + self.config.prefetch_chunks {
            if next * c >= index.log_size() {
                break;
            }
            // Already there (kept, as it is wanted next: a scan longer than the cache
            // would otherwise evict exactly the chunks it is about to read), or too many
            // chunk requests in flight already.
            if self.chunks.touch(&(objects.id, next)) || self.chunks.loading() >= 256 {
                continue;
            }
            let reader = self.clone();
            let objects = objects.clone();
            let index = index.clone();
            self.prefetched.fetch_add(1, Ordering::Relaxed);
            runtime.spawn(async move {
                if let Err(e) = reader.chunk(&objects, &index, next, true).await {
                    tracing::debug!(id = %objects.id, chunk = next, error = %e, "remote prefetch failed");
                }
            });
        }
    }

    /// `len` bytes of a copy's log from byte `from` (fewer at its end).
    async fn log_bytes(
        self: &Arc<Self>,
        objects: &SegmentObjects,
        index: &Arc<CopyIndex>,
        from: u64,
        len: u64,
    ) -> Result<Bytes> {
        let end = from.saturating_add(len).min(index.log_size());
        if from >= end {
            return Ok(Bytes::new());
        }
        let c = self.config.chunk_bytes;
        let (first, last) = (from / c, (end - 1) / c);
        if first == last {
            let chunk = self.chunk(objects, index, first, false).await?;
            self.prefetch(objects, index, first);
            return Ok(chunk.slice((from - first * c) as usize..(end - first * c) as usize));
        }
        let mut out = BytesMut::with_capacity((end - from) as usize);
        for k in first..=last {
            let chunk = self.chunk(objects, index, k, false).await?;
            let lo = from.max(k * c) - k * c;
            let hi = end.min((k + 1) * c) - k * c;
            out.extend_from_slice(&chunk[lo as usize..hi as usize]);
        }
        self.prefetch(objects, index, last);
        Ok(out.freeze())
    }

    /// Whole record batches of a copy from the one holding `offset` on: at most
    /// `max_bytes`, but at least one batch (KIP-74), as a local read gives them (empty at
    /// the copy's end), and the aborted transactions overlapping them (for read_committed).
    pub async fn read(
        self: &Arc<Self>,
        objects: &SegmentObjects,
        offset: i64,
        max_bytes: usize,
    ) -> Result<(Bytes, Vec<AbortedRange>)> {
        let index = self.index(objects).await?;
        let base = index.manifest.base_offset;
        let relative = u32::try_from((offset - base).max(0)).unwrap_or(u32::MAX);
        let at = index.entries.partition_point(|&(o, _)| o <= relative);
        let mut position = if at == 0 {
            0
        } else {
            u64::from(index.entries[at - 1].1)
        };
        let size = index.log_size();
        let corrupt = |position: u64, reason: String| TieredError::Corrupt {
            object: format!("log of copy {}", objects.id),
            reason: format!("at byte {position}: {reason}"),
        };
        // What the fetch may take, from the indexed position (a little before `offset`).
        let mut want = (max_bytes as u64).clamp(BATCH_HEADER as u64, MAX_BATCH_BYTES as u64);
        loop {
            if position >= size {
                return Ok((Bytes::new(), Vec::new()));
            }
            let bytes = self.log_bytes(objects, &index, position, want).await?;
            // Walk the framing: skip batches wholly before `offset`, then take whole
            // batches up to max_bytes (at least one).
            let (mut skip, mut end, mut last_offset) = (0usize, None, offset);
            let mut at = 0usize;
            while bytes.len() - at >= BATCH_HEADER {
                let b = &bytes[at..];
                let length = i32::from_be_bytes(b[8..12].try_into().expect("4 bytes"));
                let total = 12usize.saturating_add(usize::try_from(length).unwrap_or(0));
                if !(BATCH_HEADER..=MAX_BATCH_BYTES).contains(&total) {
                    return Err(corrupt(
                        position + at as u64,
                        format!("batch length {length}"),
                    ));
                }
                if position + (at + total) as u64 > size {
                    return Err(corrupt(
                        position + at as u64,
                        format!("a batch of {total} bytes runs past the log's {size}"),
                    ));
                }
                if at + total > bytes.len() {
                    break; // cut by this read
                }
                let base_offset = i64::from_be_bytes(b[..8].try_into().expect("8 bytes"));
                let last_delta = i32::from_be_bytes(b[23..27].try_into().expect("4 bytes"));
                if end.is_none() && base_offset + i64::from(last_delta) < offset {
                    skip = at + total;
                } else if end.is_some_and(|e: usize| e > skip && at + total - skip > max_bytes) {
                    break;
                } else {
                    end = Some(at + total);
                    last_offset = base_offset + i64::from(last_delta);
                }
                at += total;
            }
            match end {
                Some(end) => {
                    let out = bytes.slice(skip..end);
                    let whole = crate::check_batches(&out)
                        .map_err(|r| corrupt(position + skip as u64, r))?;
                    if whole != out.len() {
                        return Err(corrupt(position + skip as u64, "a batch cut short".into()));
                    }
                    let aborted = index
                        .aborted
                        .iter()
                        .filter(|a| a.first_offset <= last_offset && a.last_offset >= offset)
                        .copied()
                        .collect();
                    return Ok((out, aborted));
                }
                None if skip > 0 => position += skip as u64,
                None => {
                    // The next batch is larger than what was read.
                    if position + want >= size {
                        return Err(corrupt(position, "no whole batch to the log's end".into()));
                    }
                    want = want.saturating_mul(2);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::LocalSegmentFiles;
    use crate::ReadAt;

    /// A format v2 batch of `records` offsets from `base_offset` with `body` bytes after
    /// the header (only framing and CRC matter here).
    fn batch(base_offset: i64, records: i32, body: usize) -> Vec<u8> {
        let mut b = vec![0u8; BATCH_HEADER + body];
        b[..8].copy_from_slice(&base_offset.to_be_bytes());
        b[8..12].copy_from_slice(&((BATCH_HEADER + body - 12) as i32).to_be_bytes());
        b[16] = 2;
        b[23..27].copy_from_slice(&(records - 1).to_be_bytes());
        for (i, x) in b[BATCH_HEADER..].iter_mut().enumerate() {
            *x = (i as u64 * 31 + base_offset as u64) as u8;
        }
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }

    /// The last offset of the last batch in `bytes`.
    fn last_offset(bytes: &[u8]) -> i64 {
        let mut at = 0;
        let mut last = -1;
        while at < bytes.len() {
            let base = i64::from_be_bytes(bytes[at..at + 8].try_into().unwrap());
            let len = i32::from_be_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
            let delta = i32::from_be_bytes(bytes[at + 23..at + 27].try_into().unwrap());
            last = base + i64::from(delta);
            at += 12 + len;
        }
        last
    }

    fn transaction_index(aborted: &[(i64, i64, i64)]) -> Bytes {
        let aborted: Vec<_> = aborted
            .iter()
            .map(|&(producer_id, first_offset, last_offset)| AbortedRange {
                producer_id,
                first_offset,
                last_offset,
            })
            .collect();
        crate::txn_index::encode(&aborted)
    }

    fn file(path: std::path::PathBuf, bytes: &[u8]) -> Arc<dyn ReadAt> {
        std::fs::write(&path, bytes).unwrap();
        Arc::new(std::fs::File::open(path).unwrap())
    }

    /// A copy of `batches` batches of 10 offsets and ~3 KiB each, indexed every 4th.
    async fn copy(
        dir: &std::path::Path,
        storage: &RemoteStorage,
        batches: i64,
    ) -> (SegmentObjects, Vec<Vec<u8>>) {
        let mut log = Vec::new();
        let mut index = Vec::new();
        let mut all = Vec::new();
        for i in 0..batches {
            if i % 4 == 0 {
                index.extend_from_slice(&((i * 10) as u32).to_be_bytes());
                index.extend_from_slice(&(log.len() as u32).to_be_bytes());
            }
            let b = batch(100 + i * 10, 10, 3000 + (i as usize % 7) * 100);
            log.extend_from_slice(&b);
            all.push(b);
        }
        let files = LocalSegmentFiles {
            file_base_offset: 100,
            log: file(dir.join("s.log"), &log),
            index: file(dir.join("s.index"), &index),
            time_index: file(dir.join("s.timeindex"), b""),
            producer_snapshot: None,
            leader_epoch_checkpoint: Bytes::from_static(b"0\n1\n0 100\n"),
            transaction_index: Some(transaction_index(&[(7, 130, 175), (9, 1000, 1200)])),
        };
        let objects = SegmentObjects {
            topic: "t".into(),
            topic_id: Uuid::from_u128(1),
            partition: 0,
            base_offset: 100,
            id: Uuid::new_v4(),
        };
        storage.copy_segment(&objects, &files).await.unwrap();
        (objects, all)
    }

    fn reader(dir: &std::path::Path, config: ReaderConfig) -> Arc<RemoteReader> {
        let url = format!("file://{}", dir.join("store").display());
        let storage = RemoteStorage::open(&url, &Default::default()).unwrap();
        Arc::new(RemoteReader::new(storage, config, None))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_give_whole_batches_from_the_offset_across_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let r = reader(
            dir.path(),
            ReaderConfig {
                chunk_bytes: 8 << 10, // smaller than three batches: reads cross chunks
                chunk_cache_bytes: 64 << 10,
                index_cache_bytes: 1 << 20,
                prefetch_chunks: 2,
            },
        );
        let (objects, batches) = copy(dir.path(), r.storage(), 200).await;
        // Every offset, with limits below one batch, of about one, and of many.
        for offset in (100..2100).step_by(7) {
            for max_bytes in [1usize, 3500, 20_000] {
                let (got, aborted) = r.read(&objects, offset, max_bytes).await.unwrap();
                // An aborted transaction comes with a read that overlaps it.
                let last = last_offset(&got);
                let want: Vec<i64> = [(7, 130, 175), (9, 1000, 1200)]
                    .into_iter()
                    .filter(|&(_, first, marker)| offset <= marker && first <= last)
                    .map(|(pid, _, _)| pid)
                    .collect();
                let pids: Vec<i64> = aborted.iter().map(|a| a.producer_id).collect();
                assert_eq!(pids, want, "offset {offset} to {last}");
                // Whole batches from the one holding the offset, at least one, within
                // max_bytes beyond the first.
                let first = ((offset - 100) / 10) as usize;
                let mut expected = batches[first].clone();
                let mut taken = 1;
                while expected.len() < got.len() {
                    expected.extend_from_slice(&batches[first + taken]);
                    taken += 1;
                }
                assert!(got[..] == expected[..], "offset {offset} max {max_bytes}");
                assert!(
                    taken == 1 || got.len() <= max_bytes,
                    "offset {offset} max {max_bytes}"
                );
                // A fetch of a few batches' room gets more than one.
                if max_bytes == 20_000 && first + 6 < batches.len() {
                    assert!(taken >= 2, "offset {offset}: {taken}");
                }
            }
        }
        assert!(r.read(&objects, 2100, 1 << 20).await.unwrap().0.is_empty());
        // The caches stayed within their budgets.
        assert!(r.chunks.bytes() <= 64 << 10);
        let stats = r.stats();
        assert!(stats.chunk_hits > stats.chunk_misses, "{stats:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sequential_reader_finds_the_next_chunks_prefetched() {
        let dir = tempfile::tempdir().unwrap();
        let r = reader(
            dir.path(),
            ReaderConfig {
                chunk_bytes: 64 << 10,
                prefetch_chunks: 3,
                ..Default::default()
            },
        );
        let (objects, _) = copy(dir.path(), r.storage(), 400).await; // ~1.3 MB, 21 chunks
        let mut offset = 100;
        let mut reads = 0;
        loop {
            let (got, _) = r.read(&objects, offset, 64 << 10).await.unwrap();
            if got.is_empty() {
                break;
            }
            offset = last_offset(&got) + 1;
            reads += 1;
            // Let the prefetches land, as a consumer's round trip would.
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(offset, 4100);
        let stats = r.stats();
        assert!(stats.prefetched > 0, "{stats:?}");
        // Nearly every chunk a read wanted was there already.
        assert!(stats.chunk_misses <= 3, "{stats:?} after {reads} reads");
        // Nothing was fetched twice.
        let size = r.index(&objects).await.unwrap().log_size();
        assert_eq!(stats.bytes_fetched, size, "{stats:?}");
    }

    /// A copy larger than the chunk cache read from the start twice: the second scan is
    /// served by prefetch as the first was (a cached chunk about to be read is kept, not
    /// evicted as the least recently used).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_scan_longer_than_the_cache_is_prefetched_every_time() {
        let dir = tempfile::tempdir().unwrap();
        let r = reader(
            dir.path(),
            ReaderConfig {
                chunk_bytes: 16 << 10,
                chunk_cache_bytes: 40 * (16 << 10), // 40 chunks of 42: nearly all
                prefetch_chunks: 2,
                ..Default::default()
            },
        );
        let (objects, _) = copy(dir.path(), r.storage(), 200).await;
        for scan in 0..2 {
            let before = r.stats();
            let mut offset = 100;
            loop {
                let (got, _) = r.read(&objects, offset, 12 << 10).await.unwrap();
                if got.is_empty() {
                    break;
                }
                offset = last_offset(&got) + 1;
                tokio::time::sleep(std::time::Duration::from_millis(3)).await;
            }
            assert_eq!(offset, 2100);
            let misses = r.stats().chunk_misses - before.chunk_misses;
            assert!(misses <= 3, "scan {scan}: {misses} misses, {:?}", r.stats());
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_corrupt_copy_is_reported_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let r = reader(dir.path(), ReaderConfig::default());
        let (objects, _) = copy(dir.path(), r.storage(), 20).await;
        // Flip a byte inside batch 5 in the store.
        let path = std::fs::read_dir(
            dir.path()
                .join("store/t-00000000-0000-0000-0000-000000000001/0"),
        )
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "log"))
        .unwrap();
        let mut log = std::fs::read(&path).unwrap();
        let at = 5 * 3300;
        log[at] ^= 0xff;
        std::fs::write(&path, &log).unwrap();
        let e = r.read(&objects, 150, 1 << 20).await.unwrap_err();
        assert!(matches!(e, TieredError::Corrupt { .. }), "{e}");
        // Batches before it are still served.
        assert_eq!(
            r.read(&objects, 100, 1).await.unwrap().0[..8],
            100i64.to_be_bytes()
        );
    }

    #[tokio::test]
    async fn a_value_wanted_by_many_at_once_is_loaded_once() {
        let cache: Arc<LoadingCache<u32, Bytes>> = Arc::new(LoadingCache::new(100));
        let loads = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (cache, loads) = (cache.clone(), loads.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_load(
                        1,
                        |b: &Bytes| b.len() as u64,
                        || async {
                            loads.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                            Ok(Bytes::from_static(&[7; 40]))
                        },
                    )
                    .await
                    .unwrap()
                    .0
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().len(), 40);
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        // Over budget, the least recently used goes.
        for k in 2..5 {
            cache
                .get_or_load(
                    k,
                    |b: &Bytes| b.len() as u64,
                    || async { Ok(Bytes::from_static(&[0; 40])) },
                )
                .await
                .unwrap();
            assert!(cache.bytes() <= 100);
        }
        assert!(cache.get(&1).is_none() && cache.get(&4).is_some());
    }
}
