//! A segment's files in the object store (Kafka's RemoteStorageManager).
//!
//! # Layout
//! Under the store's prefix, each copied segment is a set of objects named by its topic
//! (name and id: a topic deleted and created again never meets the old one's objects), its
//! partition, its base offset and a segment id chosen for each copy attempt (so a copy
//! retried after a crash, by this leader or the next, never overwrites one that metadata
//! may already name):
//!
//! ```text
//! <prefix>/<topic>-<topic id>/<partition>/<base offset, 20 digits>-<segment id>.log
//!                                                                  .index
//!                                                                  .timeindex
//!                                                                  .snapshot          (producer state, if any)
//!                                                                  .leader-epoch-checkpoint
//!                                                                  .txnindex          (aborted transactions, if any)
//!                                                                  .manifest.json     (written last)
//! ```
//!
//! The manifest lists each file's size and CRC-32C. It is written only after every other
//! object is in place, so a copy with a manifest is whole; a copy without one (the copier
//! died, or the store failed) is an orphan, found by [`RemoteStorage::list_partition`] and
//! removed by [`RemoteStorage::delete_segment`].
//!
//! # Reads
//! Index files and the other small files are read whole and checked against the
//! manifest. The log is read by byte ranges (a fetch needs only a chunk of it); each
//! record batch read back has its own CRC-32C checked ([`check_batches`]), so a corrupt
//! object is reported, never served.
//!
//! # Failures
//! Every call is a plain request to the store and either succeeds or returns an error;
//! retries and backoff belong to the caller, which deletes nothing locally until the
//! metadata records a finished copy.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Result, TieredError};

/// Files at most this large are put in one request; larger ones in parts of this size.
const PART_BYTES: usize = 8 << 20;
/// Parts of one upload in flight at once.
const PART_CONCURRENCY: usize = 4;
/// The largest manifest read back (a few hundred bytes in practice).
const MANIFEST_MAX_BYTES: u64 = 64 << 10;

/// Where the store is reached (besides its URL).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteConfig {
    /// An S3-compatible endpoint (`http://127.0.0.1:9000`); None: AWS's own.
    pub s3_endpoint: Option<String>,
    pub s3_region: Option<String>,
}

/// One copy of one segment: the objects it is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentObjects {
    pub topic: String,
    pub topic_id: Uuid,
    pub partition: i32,
    pub base_offset: i64,
    /// Chosen for each copy attempt.
    pub id: Uuid,
}

/// The files of one copied segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileKind {
    Log,
    Index,
    TimeIndex,
    ProducerSnapshot,
    LeaderEpochCheckpoint,
    /// Aborted transactions overlapping the copy, in Kafka's `.txnindex` format.
    TransactionIndex,
}

impl FileKind {
    pub const ALL: [FileKind; 6] = [
        FileKind::Log,
        FileKind::Index,
        FileKind::TimeIndex,
        FileKind::ProducerSnapshot,
        FileKind::LeaderEpochCheckpoint,
        FileKind::TransactionIndex,
    ];

    fn suffix(self) -> &'static str {
        match self {
            FileKind::Log => "log",
            FileKind::Index => "index",
            FileKind::TimeIndex => "timeindex",
            FileKind::ProducerSnapshot => "snapshot",
            FileKind::LeaderEpochCheckpoint => "leader-epoch-checkpoint",
            FileKind::TransactionIndex => "txnindex",
        }
    }
}

/// A local file as a copy reads it (the broker's files go through its `Fs`, so faults
/// can be injected; a plain `std::fs::File` is one too).
pub trait ReadAt: Send + Sync {
    fn size(&self) -> std::io::Result<u64>;
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize>;
}

impl ReadAt for std::fs::File {
    fn size(&self) -> std::io::Result<u64> {
        Ok(self.metadata()?.len())
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(self, buf, offset)
    }
}

/// A sealed segment's files on local disk, as they are copied. `file_base_offset` is the
/// segment's own base offset (its indexes are relative to it; a copy may be recorded as
/// starting later, where the copies before it end). The leader epochs are the checkpoint's
/// bytes for the segment's range (the log keeps one file for all segments).
#[derive(Clone)]
pub struct LocalSegmentFiles {
    pub file_base_offset: i64,
    pub log: Arc<dyn ReadAt>,
    pub index: Arc<dyn ReadAt>,
    pub time_index: Arc<dyn ReadAt>,
    pub producer_snapshot: Option<Arc<dyn ReadAt>>,
    pub leader_epoch_checkpoint: Bytes,
    /// The aborted transactions overlapping the segment (None: there are none).
    pub transaction_index: Option<Bytes>,
}

/// One file of a copy, as its manifest records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub kind: FileKind,
    pub size: u64,
    pub crc32c: u32,
}

/// What a finished copy holds (its `.manifest.json`). `base_offset` is the segment
/// file's own (its indexes' base).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub base_offset: i64,
    pub files: Vec<FileEntry>,
}

impl Manifest {
    pub fn file(&self, kind: FileKind) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.kind == kind)
    }

    /// Bytes the copy takes in the store (its files, not the manifest).
    pub fn size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// The object store, under its prefix.
#[derive(Clone)]
pub struct RemoteStorage {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    url: String,
    /// Taken before each file or part is put (`remote.log.manager.copy.max.bytes.per.second`).
    copy_limit: Option<Arc<crate::RateLimiter>>,
}

impl std::fmt::Debug for RemoteStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RemoteStorage({})", self.url)
    }
}

impl RemoteStorage {
    /// The store named by `url`: `file:///some/dir` (the directory is created) or
    /// `s3://bucket/prefix` (credentials from the usual AWS environment variables).
    pub fn open(url: &str, config: &RemoteConfig) -> Result<RemoteStorage> {
        let bad = |reason: &str| TieredError::BadUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        if let Some(dir) = url.strip_prefix("file://") {
            if !dir.starts_with('/') {
                return Err(bad("a file URL needs an absolute path (file:///dir)"));
            }
            std::fs::create_dir_all(dir).map_err(|e| bad(&e.to_string()))?;
            let store = object_store::local::LocalFileSystem::new_with_prefix(dir)?
                .with_automatic_cleanup(true);
            return Ok(RemoteStorage {
                store: Arc::new(store),
                prefix: Path::default(),
                url: url.to_string(),
                copy_limit: None,
            });
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad("no bucket (s3://bucket/prefix)"));
            }
            // reqwest's TLS takes the process's rustls provider: ring, as the broker's.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let mut builder =
                object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
            if let Some(endpoint) = &config.s3_endpoint {
                builder = builder
                    .with_endpoint(endpoint)
                    .with_allow_http(endpoint.starts_with("http://"));
            }
            if let Some(region) = &config.s3_region {
                builder = builder.with_region(region);
            }
            let store = builder.build()?;
            return Ok(RemoteStorage {
                store: Arc::new(store),
                prefix: Path::from(prefix.trim_matches('/')),
                url: url.to_string(),
                copy_limit: None,
            });
        }
        Err(bad("expected file:///dir or s3://bucket/prefix"))
    }

    /// Over any object store (tests: one that fails or hangs on demand).
    pub fn with_store(store: Arc<dyn ObjectStore>, prefix: &str, url: &str) -> RemoteStorage {
        RemoteStorage {
            store,
            prefix: Path::from(prefix.trim_matches('/')),
            url: url.to_string(),
            copy_limit: None,
        }
    }

    /// Copies take at most this bandwidth (None or an unlimited limiter: no limit).
    pub fn with_copy_limit(mut self, limit: Option<Arc<crate::RateLimiter>>) -> RemoteStorage {
        self.copy_limit = limit.filter(|l| !l.is_unlimited());
        self
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn partition_dir(&self, topic: &str, topic_id: Uuid, partition: i32) -> Path {
        self.prefix
            .clone()
            .join(format!("{topic}-{topic_id}"))
            .join(partition.to_string())
    }

    fn object(&self, seg: &SegmentObjects, suffix: &str) -> Path {
        self.partition_dir(&seg.topic, seg.topic_id, seg.partition)
            .join(format!("{:020}-{}.{suffix}", seg.base_offset, seg.id))
    }

    fn manifest_object(&self, seg: &SegmentObjects) -> Path {
        self.object(seg, "manifest.json")
    }

    /// Copies a sealed segment's files, the manifest last. Returns the manifest written.
    /// A failure leaves some objects behind without a manifest: an orphan for
    /// [`RemoteStorage::delete_segment`].
    pub async fn copy_segment(
        &self,
        seg: &SegmentObjects,
        files: &LocalSegmentFiles,
    ) -> Result<Manifest> {
        let mut entries = Vec::new();
        for (kind, source) in [
            (FileKind::Log, Some(&files.log)),
            (FileKind::Index, Some(&files.index)),
            (FileKind::TimeIndex, Some(&files.time_index)),
            (FileKind::ProducerSnapshot, files.producer_snapshot.as_ref()),
        ] {
            let Some(source) = source else { continue };
            let (size, crc32c) = self
                .put_file(&self.object(seg, kind.suffix()), source.as_ref(), kind)
                .await?;
            entries.push(FileEntry { kind, size, crc32c });
        }
        for (kind, bytes) in [
            (
                FileKind::LeaderEpochCheckpoint,
                Some(&files.leader_epoch_checkpoint),
            ),
            (FileKind::TransactionIndex, files.transaction_index.as_ref()),
        ] {
            let Some(bytes) = bytes else { continue };
            if let Some(limit) = &self.copy_limit {
                limit.acquire(bytes.len() as u64).await;
            }
            self.store
                .put(
                    &self.object(seg, kind.suffix()),
                    PutPayload::from_bytes(bytes.clone()),
                )
                .await?;
            entries.push(FileEntry {
                kind,
                size: bytes.len() as u64,
                crc32c: crc32c::crc32c(bytes),
            });
        }
        let manifest = Manifest {
            base_offset: files.file_base_offset,
            files: entries,
        };
        let text = serde_json::to_vec(&manifest).expect("a manifest serializes");
        self.store
            .put(&self.manifest_object(seg), PutPayload::from(text))
            .await?;
        Ok(manifest)
    }

    /// Puts one local file, in parts when large; returns its size and CRC-32C.
    async fn put_file(
        &self,
        object: &Path,
        source: &dyn ReadAt,
        kind: FileKind,
    ) -> Result<(u64, u32)> {
        let io = |source: std::io::Error| TieredError::LocalIo {
            path: format!("{object} ({})", kind.suffix()),
            source,
        };
        let size = source.size().map_err(io)?;
        // Reads `len` bytes at `at`, all of them (the file ending first is an error).
        let read = |at: u64, len: usize| -> std::io::Result<Vec<u8>> {
            let mut buf = vec![0u8; len];
            let mut done = 0;
            while done < len {
                let n = source.read_at(&mut buf[done..], at + done as u64)?;
                if n == 0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("the file ended at {} of {size} bytes", at + done as u64),
                    ));
                }
                done += n;
            }
            Ok(buf)
        };
        if size as usize <= PART_BYTES {
            if let Some(limit) = &self.copy_limit {
                limit.acquire(size).await;
            }
            let data = tokio::task::block_in_place(|| read(0, size as usize)).map_err(io)?;
            let crc = crc32c::crc32c(&data);
            self.store.put(object, PutPayload::from(data)).await?;
            return Ok((size, crc));
        }
        let upload = self.store.put_multipart(object).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut crc = 0u32;
        let mut at = 0u64;
        while at < size {
            let len = (size - at).min(PART_BYTES as u64) as usize;
            let chunk = match tokio::task::block_in_place(|| read(at, len)) {
                Ok(c) => c,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(io(e));
                }
            };
            crc = crc32c::crc32c_append(crc, &chunk);
            at += len as u64;
            writer.wait_for_capacity(PART_CONCURRENCY).await?;
            if let Some(limit) = &self.copy_limit {
                limit.acquire(len as u64).await;
            }
            writer.put(Bytes::from(chunk));
        }
        writer.finish().await?;
        Ok((size, crc))
    }

    /// A copy's manifest; None when the copy has none (not finished, or deleted).
    pub async fn manifest(&self, seg: &SegmentObjects) -> Result<Option<Manifest>> {
        let object = self.manifest_object(seg);
        let meta = match self.store.head(&object).await {
            Ok(m) => m,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let corrupt = |reason: String| TieredError::Corrupt {
            object: object.to_string(),
            reason,
        };
        if meta.size > MANIFEST_MAX_BYTES {
            return Err(corrupt(format!(
                "{} bytes, more than a manifest takes",
                meta.size
            )));
        }
        let bytes = self.store.get(&object).await?.bytes().await?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| corrupt(e.to_string()))
    }

    /// A whole file of a copy (an index, the producer snapshot, the leader epochs),
    /// checked against its manifest entry.
    pub async fn fetch_file(
        &self,
        seg: &SegmentObjects,
        manifest: &Manifest,
        kind: FileKind,
    ) -> Result<Bytes> {
        let object = self.object(seg, kind.suffix());
        let Some(entry) = manifest.file(kind) else {
            return Err(TieredError::Missing {
                object: object.to_string(),
            });
        };
        if entry.size == 0 {
            return Ok(Bytes::new()); // (an empty range is no request at all)
        }
        let bytes = self.get_range(&object, 0..entry.size).await?;
        if bytes.len() as u64 != entry.size || crc32c::crc32c(&bytes) != entry.crc32c {
            return Err(TieredError::Corrupt {
                object: object.to_string(),
                reason: format!(
                    "{} bytes with CRC-32C {:08x}, the manifest says {} with {:08x}",
                    bytes.len(),
                    crc32c::crc32c(&bytes),
                    entry.size,
                    entry.crc32c
                ),
            });
        }
        Ok(bytes)
    }

    /// A byte range of a copy's log (clamped to the log's size), every whole record
    /// batch in it checked; a batch cut by the range's end is left out.
    pub async fn fetch_log(
        &self,
        seg: &SegmentObjects,
        manifest: &Manifest,
        range: Range<u64>,
    ) -> Result<Bytes> {
        let object = self.object(seg, FileKind::Log.suffix());
        let size = manifest.file(FileKind::Log).map_or(0, |f| f.size);
        let range = range.start.min(size)..range.end.min(size);
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        let bytes = self.get_range(&object, range.clone()).await?;
        let whole = check_batches(&bytes).map_err(|reason| TieredError::Corrupt {
            object: object.to_string(),
            reason: format!("at byte {}: {reason}", range.start),
        })?;
        Ok(bytes.slice(..whole))
    }

    /// A byte range of a copy's log as stored, unchecked (the reader checks the batches
    /// it serves; a range past the end is an error from the store).
    pub async fn fetch_log_bytes(&self, seg: &SegmentObjects, range: Range<u64>) -> Result<Bytes> {
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        self.get_range(&self.object(seg, FileKind::Log.suffix()), range)
            .await
    }

    async fn get_range(&self, object: &Path, range: Range<u64>) -> Result<Bytes> {
        match self.store.get_range(object, range).await {
            Ok(b) => Ok(b),
            Err(object_store::Error::NotFound { .. }) => Err(TieredError::Missing {
                object: object.to_string(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes every object of a copy, the manifest first (so a copy is never seen whole
    /// with a file gone). Objects already gone are fine: deletion may be retried.
    pub async fn delete_segment(&self, seg: &SegmentObjects) -> Result<()> {
        let mut objects = vec![self.manifest_object(seg)];
        objects.extend(FileKind::ALL.iter().map(|k| self.object(seg, k.suffix())));
        for object in objects {
            match self.store.delete(&object).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// The copies present for a partition, whole or not: (base offset, segment id, whether
    /// its manifest is there), in offset order. Orphans (no manifest, or not named by
    /// metadata) are found this way.
    pub async fn list_partition(
        &self,
        topic: &str,
        topic_id: Uuid,
        partition: i32,
    ) -> Result<Vec<(i64, Uuid, bool)>> {
        let dir = self.partition_dir(topic, topic_id, partition);
        Ok(self
            .list_under(&dir)
            .await?
            .into_iter()
            .map(|c| (c.objects.base_offset, c.objects.id, c.whole))
            .collect())
    }

    /// Every copy in the store, whole or not, by topic, partition and offset (one listing
    /// of the prefix: about six objects per copy).
    pub async fn list_copies(&self) -> Result<Vec<StoredCopy>> {
        let prefix = self.prefix.clone();
        self.list_under(&prefix).await
    }

    async fn list_under(&self, dir: &Path) -> Result<Vec<StoredCopy>> {
        // (topic, topic id, partition, base offset, copy id) -> (whole, last modified)
        type Key = (String, Uuid, i32, i64, Uuid);
        let mut found: std::collections::BTreeMap<Key, (bool, i64)> = Default::default();
        let depth = self.prefix.parts().count();
        let mut listing = self.store.list(Some(dir));
        while let Some(meta) = listing.try_next().await? {
            // <prefix>/<topic>-<topic id>/<partition>/<base>-<id>.<suffix>
            let parts: Vec<_> = meta.location.parts().skip(depth).collect();
            let [topic_dir, partition, name] = &parts[..] else {
                continue;
            };
            let topic_dir = topic_dir.as_ref();
            // A topic id is the last 36 characters, after a '-'.
            let Some(split) = topic_dir.len().checked_sub(37) else {
                continue;
            };
            let (Some(topic), Some(topic_id)) = (
                topic_dir
                    .get(..split)
                    .filter(|_| topic_dir.as_bytes()[split] == b'-'),
                topic_dir
                    .get(split + 1..)
                    .and_then(|id| Uuid::parse_str(id).ok()),
            ) else {
                continue;
            };
            let Ok(partition) = partition.as_ref().parse::<i32>() else {
                continue;
            };
            let Some((stem, suffix)) = name.as_ref().split_once('.') else {
                continue;
            };
            let Some((base, id)) = stem.split_once('-') else {
                continue;
            };
            let (Ok(base), Ok(id)) = (base.parse::<i64>(), Uuid::parse_str(id)) else {
                continue;
            };
            let entry = found
                .entry((topic.to_string(), topic_id, partition, base, id))
                .or_insert((false, i64::MIN));
            entry.0 |= suffix == "manifest.json";
            entry.1 = entry.1.max(meta.last_modified.timestamp_millis());
        }
        Ok(found
            .into_iter()
            .map(
                |((topic, topic_id, partition, base_offset, id), (whole, last_modified_ms))| {
                    StoredCopy {
                        objects: SegmentObjects {
                            topic,
                            topic_id,
                            partition,
                            base_offset,
                            id,
                        },
                        whole,
                        last_modified_ms,
                    }
                },
            )
            .collect())
    }
}

/// A copy found in the store by listing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCopy {
    pub objects: SegmentObjects,
    /// Its manifest is there.
    pub whole: bool,
    /// When its newest object was written (ms since the epoch).
    pub last_modified_ms: i64,
}

/// The length of the whole record batches at the start of `bytes` (Kafka's format v2:
/// base offset 8, length 4, leader epoch 4, magic 1, CRC-32C 4 over the rest), each
/// batch's CRC checked. A batch cut short at the end is not counted; a bad CRC, a magic
/// other than 2 or a length below a batch header's is an error.
pub fn check_batches(bytes: &[u8]) -> std::result::Result<usize, String> {
    const HEADER: usize = 61;
    let mut at = 0;
    while bytes.len() - at >= 17 {
        let length = i32::from_be_bytes(bytes[at + 8..at + 12].try_into().expect("4 bytes"));
        if length < (HEADER - 12) as i32 {
            return Err(format!("batch length {length}"));
        }
        let end = at + 12 + length as usize;
        if end > bytes.len() {
            break;
        }
        let magic = bytes[at + 16];
        if magic != 2 {
            return Err(format!("magic {magic}"));
        }
        let stored = u32::from_be_bytes(bytes[at + 17..at + 21].try_into().expect("4 bytes"));
        let computed = crc32c::crc32c(&bytes[at + 21..end]);
        if stored != computed {
            return Err(format!("batch CRC-32C {computed:08x}, stored {stored:08x}"));
        }
        at = end;
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record batch of format v2 with `body` bytes after its CRC (any content: only the
    /// framing and the CRC are read here).
    fn batch(base_offset: i64, body: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&base_offset.to_be_bytes());
        b.extend_from_slice(&((4 + 1 + 4 + body.len()) as i32).to_be_bytes());
        b.extend_from_slice(&0i32.to_be_bytes());
        b.push(2);
        b.extend_from_slice(&crc32c::crc32c(body).to_be_bytes());
        b.extend_from_slice(body);
        b
    }

    fn file(path: std::path::PathBuf, bytes: &[u8]) -> Arc<dyn ReadAt> {
        std::fs::write(&path, bytes).unwrap();
        Arc::new(std::fs::File::open(path).unwrap())
    }

    fn segment(dir: &std::path::Path, log: &[u8]) -> LocalSegmentFiles {
        LocalSegmentFiles {
            file_base_offset: 0,
            log: file(dir.join("0.log"), log),
            index: file(dir.join("0.index"), b"index entries"),
            time_index: file(dir.join("0.timeindex"), b"time index entries"),
            producer_snapshot: None,
            leader_epoch_checkpoint: Bytes::from_static(b"0\n1\n0 0\n"),
            transaction_index: None,
        }
    }

    fn seg(base_offset: i64) -> SegmentObjects {
        SegmentObjects {
            topic: "events".into(),
            topic_id: Uuid::from_u128(7),
            partition: 3,
            base_offset,
            id: Uuid::new_v4(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_copied_segment_reads_back_checked_and_deletes_whole() {
        let local = tempfile::tempdir().unwrap();
        let remote_dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", remote_dir.path().display());
        let store = RemoteStorage::open(&url, &RemoteConfig::default()).unwrap();
        let body = vec![0xabu8; 100];
        let log: Vec<u8> = (0..3).flat_map(|i| batch(i * 10, &body)).collect();
        let files = segment(local.path(), &log);
        let s = seg(0);
        assert_eq!(store.manifest(&s).await.unwrap(), None);
        let manifest = store.copy_segment(&s, &files).await.unwrap();
        assert_eq!(store.manifest(&s).await.unwrap().as_ref(), Some(&manifest));
        assert_eq!(manifest.file(FileKind::Log).unwrap().size, log.len() as u64);
        assert!(manifest.file(FileKind::ProducerSnapshot).is_none());
        assert_eq!(
            store
                .fetch_file(&s, &manifest, FileKind::TimeIndex)
                .await
                .unwrap(),
            Bytes::from_static(b"time index entries")
        );
        // A range ending inside the second batch gives the first whole batch only.
        let one = log.len() / 3;
        let got = store
            .fetch_log(&s, &manifest, 0..(one + 10) as u64)
            .await
            .unwrap();
        assert_eq!(got.as_ref(), &log[..one]);
        let got = store
            .fetch_log(&s, &manifest, one as u64..u64::MAX)
            .await
            .unwrap();
        assert_eq!(got.as_ref(), &log[one..]);
        assert!(store
            .fetch_log(&s, &manifest, 9999..10000)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            store
                .list_partition("events", Uuid::from_u128(7), 3)
                .await
                .unwrap(),
            vec![(0, s.id, true)]
        );
        // A corrupt object is reported, never served.
        let object = remote_dir
            .path()
            .join(format!("events-{}", Uuid::from_u128(7)))
            .join("3")
            .join(format!("{:020}-{}.log", 0, s.id));
        let mut bytes = std::fs::read(&object).unwrap();
        bytes[one + 40] ^= 1;
        std::fs::write(&object, &bytes).unwrap();
        let err = store
            .fetch_log(&s, &manifest, 0..u64::MAX)
            .await
            .unwrap_err();
        assert!(matches!(err, TieredError::Corrupt { .. }), "{err}");
        let index = object.with_extension("index");
        std::fs::write(&index, b"index entriez").unwrap();
        let err = store
            .fetch_file(&s, &manifest, FileKind::Index)
            .await
            .unwrap_err();
        assert!(matches!(err, TieredError::Corrupt { .. }), "{err}");
        // Deleted whole, and again (a retried delete) without error.
        store.delete_segment(&s).await.unwrap();
        store.delete_segment(&s).await.unwrap();
        assert!(store
            .list_partition("events", Uuid::from_u128(7), 3)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(store.manifest(&s).await.unwrap(), None);
        let err = store.fetch_log(&s, &manifest, 0..10).await.unwrap_err();
        assert!(matches!(err, TieredError::Missing { .. }), "{err}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_large_log_goes_in_parts_and_an_unfinished_copy_is_an_orphan() {
        let local = tempfile::tempdir().unwrap();
        let remote_dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", remote_dir.path().display());
        let store = RemoteStorage::open(&url, &RemoteConfig::default()).unwrap();
        let body: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let log: Vec<u8> = (0..20).flat_map(|i| batch(i, &body)).collect();
        assert!(log.len() > 2 * PART_BYTES);
        let mut files = segment(local.path(), &log);
        files.producer_snapshot = Some(file(local.path().join("0.snapshot"), b"producers"));
        let s = seg(500);
        let manifest = store.copy_segment(&s, &files).await.unwrap();
        assert_eq!(
            manifest.file(FileKind::Log).unwrap().crc32c,
            crc32c::crc32c(&log)
        );
        let got = store.fetch_log(&s, &manifest, 0..u64::MAX).await.unwrap();
        assert!(got.as_ref() == log.as_slice());
        assert_eq!(
            store
                .fetch_file(&s, &manifest, FileKind::ProducerSnapshot)
                .await
                .unwrap(),
            Bytes::from_static(b"producers")
        );
        // A copy cut short before its manifest: listed, not whole.
        let orphan = seg(1000);
        let object = store.object(&orphan, "log");
        store
            .store
            .put(&object, PutPayload::from(log[..100].to_vec()))
            .await
            .unwrap();
        let listed = store
            .list_partition("events", Uuid::from_u128(7), 3)
            .await
            .unwrap();
        assert_eq!(listed, vec![(500, s.id, true), (1000, orphan.id, false)]);
        store.delete_segment(&orphan).await.unwrap();
        let listed = store
            .list_partition("events", Uuid::from_u128(7), 3)
            .await
            .unwrap();
        assert_eq!(listed, vec![(500, s.id, true)]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn the_whole_store_lists_by_topic_partition_and_copy() {
        let local = tempfile::tempdir().unwrap();
        let memory = Arc::new(object_store::memory::InMemory::new());
        let store = RemoteStorage::with_store(memory.clone(), "/deep/prefix/", "mem://x");
        let files = segment(local.path(), &batch(0, b"body"));
        let mut a = seg(0);
        a.topic = "orders-eu-1".into(); // dashes in the name: the id is the last 36
        let mut b = seg(40);
        b.partition = 11;
        store.copy_segment(&a, &files).await.unwrap();
        store.copy_segment(&b, &files).await.unwrap();
        // An unfinished copy, and objects that are not copies at all.
        let c = seg(80);
        store
            .store
            .put(&store.object(&c, "log"), PutPayload::from(vec![1u8]))
            .await
            .unwrap();
        for junk in [
            "deep/prefix/README",
            "deep/prefix/t-nope/0/x.log",
            "elsewhere/a/b/c.log",
        ] {
            memory
                .put(&Path::from(junk), PutPayload::from(vec![1u8]))
                .await
                .unwrap();
        }
        let listed = store.list_copies().await.unwrap();
        let got: Vec<_> = listed
            .iter()
            .map(|c| (c.objects.clone(), c.whole))
            .collect();
        assert_eq!(got, vec![(c, false), (b, true), (a, true)]); // by topic name first
        assert!(listed.iter().all(|c| c.last_modified_ms > 0));
    }

    #[test]
    fn urls_are_checked() {
        for bad in [
            "",
            "file://relative/dir",
            "s3://",
            "gs://bucket",
            "/plain/path",
        ] {
            assert!(
                matches!(
                    RemoteStorage::open(bad, &RemoteConfig::default()),
                    Err(TieredError::BadUrl { .. })
                ),
                "{bad}"
            );
        }
        let s3 = RemoteStorage::open(
            "s3://bucket/some/prefix/",
            &RemoteConfig {
                s3_endpoint: Some("http://127.0.0.1:9".into()),
                s3_region: Some("us-east-1".into()),
            },
        )
        .unwrap();
        assert_eq!(s3.prefix.as_ref(), "some/prefix");
    }

    #[test]
    fn batches_are_framed_and_checked() {
        let a = batch(0, &[1u8; 60]);
        let b = batch(1, &[2u8; 70]);
        let both = [a.clone(), b.clone()].concat();
        assert_eq!(check_batches(&both), Ok(both.len()));
        assert_eq!(check_batches(&both[..both.len() - 1]), Ok(a.len()));
        assert_eq!(check_batches(&both[..a.len() + 5]), Ok(a.len()));
        assert_eq!(check_batches(&[]), Ok(0));
        let mut bad = both.clone();
        bad[a.len() + 30] ^= 0x80;
        assert!(check_batches(&bad).unwrap_err().contains("CRC"));
        let mut bad = both.clone();
        bad[16] = 1;
        assert!(check_batches(&bad).unwrap_err().contains("magic"));
        let mut bad = both;
        bad[8..12].copy_from_slice(&3i32.to_be_bytes());
        assert!(check_batches(&bad).unwrap_err().contains("length"));
    }
}
