//! Tiered storage in the broker (Kafka's RemoteLogManager), for topics with
//! `remote.storage.enable`: their sealed segments are copied to the object store
//! (`strata_tiered`), and each copy's progress is recorded in cluster metadata
//! (`MetadataRecord::RemoteSegment`), so whichever replica leads next knows exactly what is
//! copied.
//!
//! A pass ([`Broker::tiering_pass`]) goes over the tiered partitions this node hosts:
//! - every replica learns from the metadata where the finished copies end, and its local
//!   retention then deletes only segments below that (`Log::set_remote_copied_end`);
//! - the leader first settles what an earlier copier left: a copy started and not
//!   finished (its copier died, or lost the leadership) and a deletion started are
//!   deleted from the store and then from the metadata;
//! - then it copies its next sealed segment wholly below the last stable offset: the copy
//!   is recorded as started (with a new id, in the leader's epoch), its files copied
//!   (the manifest last), then recorded as finished. A copy starts where the finished ones
//!   end (a segment that straddles that point is recorded from there on), so nothing is
//!   copied twice, and a deposed leader's records are refused by the metadata.
//!
//! Nothing local is deleted before a finished copy is committed in the metadata, and an
//! interrupted copy is always either finished or deleted by the next leader's pass.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use std::time::Duration;
use strata_cluster::{MetadataRecord, RemoteSegment, RemoteSegmentState};
use strata_storage::{FsFile, Partition};

use strata_tiered::{
    AbortedRange, FileKind, LocalSegmentFiles, RateLimiter, ReadAt, ReaderConfig, RemoteReader,
    RemoteStorage, SegmentObjects,
};
use tracing::{info, warn};
use uuid::Uuid;

use crate::config::BrokerConfig;
use crate::Broker;

/// A tokio runtime of its own, for work that must not hold up request handling: copies
/// and remote reads wait on the object store (and read local files to copy them).
struct Pool(Option<tokio::runtime::Runtime>);

impl Pool {
    fn new(name: &str, threads: usize) -> std::io::Result<Pool> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name(name)
            .enable_all()
            .build()?;
        Ok(Pool(Some(runtime)))
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        self.0.as_ref().expect("a pool runs until dropped").handle()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Dropped wherever the broker is (maybe inside another runtime): never block.
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// The broker's handle on its object store: the copies it has in flight (never taken for
/// abandoned ones), the reader with its caches, and the pools copies and remote reads run
/// on (Kafka's copier and reader thread pools), each apart from request handling.
pub struct Tiering {
    pub storage: RemoteStorage,
    pub reader: Arc<RemoteReader>,
    in_flight: Mutex<HashSet<Uuid>>,
    copier: Pool,
    readers: Pool,
    /// Remote reads queued or running (`remote.log.reader.max.pending.tasks`).
    pending_reads: Arc<tokio::sync::Semaphore>,
    /// `remote.fetch.max.wait.ms`.
    fetch_max_wait: Duration,
    /// What the passes did since start (for metrics).
    totals: Mutex<TieringStats>,
}

impl Tiering {
    /// Tiered storage over `storage` as the broker's configuration says (its limits,
    /// caches and pools).
    pub fn new(storage: RemoteStorage, config: &BrokerConfig) -> std::io::Result<Tiering> {
        let limit = |bytes_per_second: u64| Some(Arc::new(RateLimiter::new(bytes_per_second)));
        let storage =
            storage.with_copy_limit(limit(config.remote_log_manager_copy_max_bytes_per_second));
        let reader = RemoteReader::new(
            storage.clone(),
            ReaderConfig {
                chunk_bytes: config.remote_log_reader_chunk_bytes,
                chunk_cache_bytes: config.remote_log_reader_chunk_cache_size_bytes,
                index_cache_bytes: config.remote_log_index_file_cache_total_size_bytes,
                prefetch_chunks: config.remote_log_reader_prefetch_chunks,
            },
            limit(config.remote_log_manager_fetch_max_bytes_per_second),
        );
        Ok(Tiering {
            storage,
            reader: Arc::new(reader),
            in_flight: Mutex::new(HashSet::new()),
            copier: Pool::new("strata-remote-copier", 2)?,
            readers: Pool::new("strata-remote-reader", config.remote_log_reader_threads)?,
            pending_reads: Arc::new(tokio::sync::Semaphore::new(
                config.remote_log_reader_max_pending_tasks.max(1),
            )),
            fetch_max_wait: Duration::from_millis(config.remote_fetch_max_wait_ms),
            totals: Mutex::new(TieringStats::default()),
        })
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, HashSet<Uuid>> {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tiered storage's metrics (Kafka's KIP-405 names where it has them).
    pub fn render_metrics(
        &self,
        out: &mut crate::metrics::Exposition,
        image: &strata_cluster::MetadataImage,
    ) {
        let t = self
            .totals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let r = self.reader.stats();
        for (name, help, value) in [
            (
                "kafka_server_brokertopicmetrics_remotecopyrequests_total",
                "Segments copied to the object store.",
                t.copied as u64,
            ),
            (
                "kafka_server_brokertopicmetrics_remotecopybytes_total",
                "Bytes copied to the object store.",
                t.copied_bytes,
            ),
            (
                "kafka_server_brokertopicmetrics_remotecopyerrors_total",
                "Partition passes that failed (retried with backoff).",
                t.failed as u64,
            ),
            (
                "kafka_server_brokertopicmetrics_remotedeleterequests_total",
                "Copies deleted by retention.",
                t.deleted as u64,
            ),
            (
                "kafka_server_brokertopicmetrics_remotefetchbytes_total",
                "Bytes read from the object store for fetches (prefetch included).",
                r.bytes_fetched,
            ),
            (
                "strata_remote_reader_chunk_hits_total",
                "Remote log chunks a read found in the chunk cache.",
                r.chunk_hits,
            ),
            (
                "strata_remote_reader_chunk_misses_total",
                "Remote log chunks a read had to wait for.",
                r.chunk_misses,
            ),
            (
                "strata_remote_reader_prefetches_total",
                "Remote log chunks asked for ahead of a sequential reader.",
                r.prefetched,
            ),
        ] {
            out.family(name, "counter", help);
            out.sample(name, &[], value as f64);
        }
        out.family(
            "kafka_server_brokertopicmetrics_remotelogsizebytes",
            "gauge",
            "Bytes of a tiered topic's finished copies in the object store (RemoteLogSizeBytes).",
        );
        let mut sizes: Vec<(String, u64)> = image
            .topics()
            .map(|t| {
                let bytes = t
                    .partitions
                    .values()
                    .flat_map(|p| p.copied_segments())
                    .map(|c| c.size_bytes)
                    .sum();
                (t.name.clone(), bytes)
            })
            .filter(|(_, b)| *b > 0)
            .collect();
        sizes.sort();
        for (topic, bytes) in sizes {
            out.sample(
                "kafka_server_brokertopicmetrics_remotelogsizebytes",
                &[("topic", &topic)],
                bytes as f64,
            );
        }
    }

    /// Reads for one fetch (copy, offset, max bytes each), run on the reader pool and
    /// waited for together up to `remote.fetch.max.wait.ms`. Each gives whole batches,
    /// or None when its read is not done in time or the pool is full (the fetch answers
    /// without it and the client asks again; a read that was started goes on and fills
    /// the cache), or an error.
    pub async fn fetch(
        &self,
        reads: Vec<(SegmentObjects, i64, usize)>,
    ) -> Vec<Result<Option<(Bytes, Vec<AbortedRange>)>, String>> {
        let deadline = tokio::time::Instant::now() + self.fetch_max_wait;
        let handles: Vec<_> = reads
            .into_iter()
            .map(|(objects, offset, max_bytes)| {
                let permit = self.pending_reads.clone().try_acquire_owned().ok()?;
                let reader = self.reader.clone();
                Some(self.readers.handle().spawn(async move {
                    let _permit = permit;
                    let started = std::time::Instant::now();
                    let read = reader.read(&objects, offset, max_bytes).await;
                    if let Ok((records, _)) = &read {
                        tracing::debug!(
                            offset,
                            max_bytes,
                            bytes = records.len(),
                            us = started.elapsed().as_micros() as u64,
                            "remote read"
                        );
                    }
                    read
                }))
            })
            .collect();
        let mut results = Vec::with_capacity(handles.len());
        for handle in handles {
            let Some(handle) = handle else {
                tracing::debug!("remote read not started: the reader pool is full");
                results.push(Ok(None));
                continue;
            };
            results.push(match tokio::time::timeout_at(deadline, handle).await {
                Ok(Ok(read)) => read.map(Some).map_err(|e| e.to_string()),
                Ok(Err(e)) => Err(format!("the remote read failed: {e}")),
                Err(_) => {
                    tracing::debug!("remote read not done within remote.fetch.max.wait.ms");
                    Ok(None)
                }
            });
        }
        results
    }
}

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TieringStats {
    pub copied: usize,
    pub copied_bytes: u64,
    /// Abandoned copies and started deletions finished.
    pub cleaned: usize,
    /// Copies deleted by retention.
    pub deleted: usize,
    pub failed: usize,
}

/// A storage file as a copy reads it.
struct FsSource(Arc<dyn FsFile>);

impl ReadAt for FsSource {
    fn size(&self) -> std::io::Result<u64> {
        self.0.len()
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        self.0.read_at(buf, offset)
    }
}

/// A leader epoch checkpoint's text (Kafka's format) for the epochs of one segment.
fn epoch_checkpoint(epochs: &[(i32, i64)]) -> Bytes {
    let mut text = format!("0\n{}\n", epochs.len());
    for (epoch, start) in epochs {
        text.push_str(&format!("{epoch} {start}\n"));
    }
    Bytes::from(text)
}

impl Broker {
    /// Commits metadata records as tiered storage does (tests: a copier that died midway).
    pub fn commit_remote_records(&self, records: &[MetadataRecord]) -> Result<(), String> {
        let metadata = self.metadata();
        self.commit_metadata(metadata, records)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Commits one metadata record for tiered storage (off the async threads: a cluster
    /// member waits for its quorum).
    async fn commit_remote(self: &Arc<Self>, record: MetadataRecord) -> Result<(), String> {
        let broker = self.clone();
        tokio::task::spawn_blocking(move || broker.commit_remote_records(&[record]))
            .await
            .map_err(|e| e.to_string())?
    }

    /// One pass of tiered storage's work over the partitions this node hosts (see the
    /// module's documentation).
    pub async fn tiering_pass(self: &Arc<Self>, tiering: &Tiering) -> TieringStats {
        let mut stats = TieringStats::default();
        for partition in self.all_partitions() {
            if !partition.log().config().remote_storage_enable {
                continue;
            }
            if let Err(e) = self.tier_partition(tiering, &partition, &mut stats).await {
                stats.failed += 1;
                warn!(topic = %partition.topic, partition = partition.partition, error = %e, "tiered storage: will retry");
            }
        }
        let mut totals = tiering.totals.lock().unwrap_or_else(|p| p.into_inner());
        totals.copied += stats.copied;
        totals.copied_bytes += stats.copied_bytes;
        totals.cleaned += stats.cleaned;
        totals.deleted += stats.deleted;
        totals.failed += stats.failed;
        drop(totals);
        stats
    }

    /// Deletes one copy, Kafka's way: recorded as being deleted (unless it already is),
    /// its objects deleted, then removed from the metadata, all in the leader's `epoch`.
    async fn delete_copy(
        self: &Arc<Self>,
        tiering: &Tiering,
        objects: &SegmentObjects,
        segment: &RemoteSegment,
        topic_id: Uuid,
        epoch: i32,
    ) -> Result<(), String> {
        if segment.state != RemoteSegmentState::DeleteStarted {
            let mut deleting = segment.clone();
            deleting.state = RemoteSegmentState::DeleteStarted;
            self.commit_remote(MetadataRecord::RemoteSegment {
                topic_id,
                partition: objects.partition,
                leader_epoch: epoch,
                segment: deleting,
            })
            .await?;
        }
        tiering
            .storage
            .delete_segment(objects)
            .await
            .map_err(|e| e.to_string())?;
        self.commit_remote(MetadataRecord::RemoveRemoteSegment {
            topic_id,
            partition: objects.partition,
            leader_epoch: epoch,
            id: segment.id,
        })
        .await
    }

    async fn tier_partition(
        self: &Arc<Self>,
        tiering: &Tiering,
        partition: &Arc<Partition>,
        stats: &mut TieringStats,
    ) -> Result<(), String> {
        let image = self.image();
        let Some(topic) = image.topic(&partition.topic) else {
            return Ok(());
        };
        let Some(meta) = topic.partitions.get(&partition.partition) else {
            return Ok(());
        };
        partition.log().set_remote_copied_end(meta.copied_end());
        let epoch = partition.leader_epoch();
        if !partition.is_leader() || meta.leader_epoch != epoch {
            return Ok(()); // a follower, or metadata not caught up with this leadership
        }
        let objects = |s: &RemoteSegment| SegmentObjects {
            topic: topic.name.clone(),
            topic_id: topic.topic_id,
            partition: partition.partition,
            base_offset: s.base_offset,
            id: s.id,
        };
        let record = |segment: RemoteSegment| MetadataRecord::RemoteSegment {
            topic_id: topic.topic_id,
            partition: partition.partition,
            leader_epoch: epoch,
            segment,
        };
        // What an earlier copier left: abandoned copies and deletions under way.
        let leftovers: Vec<RemoteSegment> = {
            let in_flight = tiering.in_flight();
            meta.remote_segments
                .iter()
                .filter(|s| match s.state {
                    RemoteSegmentState::CopyStarted => !in_flight.contains(&s.id),
                    RemoteSegmentState::DeleteStarted => true,
                    RemoteSegmentState::CopyFinished => false,
                })
                .cloned()
                .collect()
        };
        for s in leftovers {
            self.delete_copy(tiering, &objects(&s), &s, topic.topic_id, epoch)
                .await?;
            stats.cleaned += 1;
            info!(topic = %topic.name, partition = partition.partition, id = %s.id, base_offset = s.base_offset, "tiered storage: unfinished copy deleted");
        }
        // Total retention (`retention.ms` / `retention.bytes`) over the whole log, copies
        // included: the oldest copies go, and the log start moves past them (on local disk
        // too, should it still hold them).
        let (retention_ms, retention_bytes, uncopied) = {
            let log = partition.log();
            let config = log.config();
            let copied_end = meta.copied_end().unwrap_or(0);
            (
                config.retention_ms,
                config.retention_bytes,
                log.size_bytes_past(copied_end) as i64,
            )
        };
        let now = self.clock.now_ms();
        let mut total: i64 = meta
            .copied_segments()
            .map(|c| c.size_bytes as i64)
            .sum::<i64>()
            + uncopied;
        let mut expired = Vec::new();
        for c in meta.copied_segments() {
            let by_time = retention_ms >= 0 && c.max_timestamp < now - retention_ms;
            let by_size = retention_bytes >= 0 && total - c.size_bytes as i64 >= retention_bytes;
            if !(by_time || by_size) {
                break;
            }
            total -= c.size_bytes as i64;
            expired.push(c.clone());
        }
        for c in expired {
            self.delete_copy(tiering, &objects(&c), &c, topic.topic_id, epoch)
                .await?;
            stats.deleted += 1;
            let start = c.end_offset + 1;
            if partition.log().log_start_offset() < start {
                let broker = self.clone();
                let p = partition.clone();
                tokio::task::spawn_blocking(move || broker.delete_records(&p, start))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?;
            }
            info!(topic = %topic.name, partition = partition.partition, id = %c.id, log_start_offset = start, "tiered storage: retention deleted a copy");
        }
        // The next segment to copy.
        let (from, candidate) = {
            let log = partition.log();
            let from = meta.copied_end().unwrap_or_else(|| log.log_start_offset());
            let Some(&(base, next, max_timestamp, size)) = log.copyable_segments(from).first()
            else {
                return Ok(());
            };
            let Some(segment_files) = log.sealed_segment_files(base) else {
                return Ok(()); // deleted meanwhile (DeleteRecords)
            };
            let start = base.max(from);
            let epochs = log.leader_epochs_between(start, next);
            let files = LocalSegmentFiles {
                file_base_offset: base,
                log: Arc::new(FsSource(segment_files.log)),
                index: Arc::new(FsSource(segment_files.index)),
                time_index: Arc::new(FsSource(segment_files.time_index)),
                producer_snapshot: segment_files
                    .producer_snapshot
                    .map(|f| Arc::new(FsSource(f)) as Arc<dyn ReadAt>),
                leader_epoch_checkpoint: epoch_checkpoint(&epochs),
                transaction_index: {
                    let aborted: Vec<AbortedRange> = log
                        .aborted_ranges(start, next)
                        .into_iter()
                        .map(|(producer_id, first_offset, last_offset)| AbortedRange {
                            producer_id,
                            first_offset,
                            last_offset,
                        })
                        .collect();
                    (!aborted.is_empty()).then(|| strata_tiered::txn_index::encode(&aborted))
                },
            };
            let segment = RemoteSegment {
                id: Uuid::new_v4(),
                base_offset: start,
                end_offset: next - 1,
                max_timestamp,
                size_bytes: size,
                leader_epochs: epochs,
                state: RemoteSegmentState::CopyStarted,
                broker: self.config.node_id,
            };
            (from, (segment, files))
        };
        let (segment, files) = candidate;
        tiering.in_flight().insert(segment.id);
        let result = async {
            self.commit_remote(record(segment.clone())).await?;
            let manifest = tiering
                .storage
                .copy_segment(&objects(&segment), &files)
                .await
                .map_err(|e| e.to_string())?;
            let mut finished = segment.clone();
            finished.state = RemoteSegmentState::CopyFinished;
            finished.size_bytes = manifest.size();
            self.commit_remote(record(finished)).await?;
            Ok::<u64, String>(manifest.size())
        }
        .await;
        tiering.in_flight().remove(&segment.id);
        let bytes = result?;
        stats.copied += 1;
        stats.copied_bytes += bytes;
        partition
            .log()
            .set_remote_copied_end(Some(segment.end_offset + 1));
        info!(topic = %topic.name, partition = partition.partition, id = %segment.id, from, base_offset = segment.base_offset, end_offset = segment.end_offset, bytes, "tiered storage: segment copied");
        Ok(())
    }
}

impl Broker {
    /// Deletes the store's orphans older than `min_age_ms`: copies of topics that no longer
    /// exist (a crash while a deleted topic's copies were being deleted), and copies of a
    /// partition this node leads that its metadata does not name (objects a deposed leader
    /// went on writing after the next leader had deleted its unfinished copy). Returns how
    /// many copies were deleted.
    pub async fn sweep_orphans(
        self: &Arc<Self>,
        tiering: &Tiering,
        min_age_ms: i64,
    ) -> Result<usize, String> {
        // The metadata read must be current: a node still catching up (at start, or
        // partitioned away) would take every newer topic for a deleted one.
        if let Some(member) = &self.quorum {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            member
                .quorum
                .catch_up_with_leader(deadline)
                .await
                .map_err(|e| format!("not caught up with the metadata quorum: {e}"))?;
            let broker = self.clone();
            tokio::task::spawn_blocking(move || broker.catch_up_with_quorum())
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
        }
        let copies = tiering
            .storage
            .list_copies()
            .await
            .map_err(|e| e.to_string())?;
        let now = self.clock.now_ms();
        let mut deleted = 0;
        for copy in copies {
            if now.saturating_sub(copy.last_modified_ms) < min_age_ms {
                continue;
            }
            let o = &copy.objects;
            let orphan = {
                let image = self.image();
                match image.topic_by_id(&o.topic_id) {
                    None => true,
                    Some(topic) => {
                        let Some(meta) = topic.partitions.get(&o.partition) else {
                            continue;
                        };
                        let Some(partition) = self.partition(&topic.name, o.partition) else {
                            continue;
                        };
                        partition.is_leader()
                            && meta.leader_epoch == partition.leader_epoch()
                            && !meta.remote_segments.iter().any(|s| s.id == o.id)
                            && !tiering.in_flight().contains(&o.id)
                    }
                }
            };
            if !orphan {
                continue;
            }
            tiering
                .storage
                .delete_segment(o)
                .await
                .map_err(|e| e.to_string())?;
            deleted += 1;
            info!(topic = %o.topic, topic_id = %o.topic_id, partition = o.partition, id = %o.id, base_offset = o.base_offset, whole = copy.whole, "tiered storage: orphaned copy deleted");
        }
        Ok(deleted)
    }
}

impl Broker {
    /// A replica of a tiered partition started over at `offset`, its leader's local log
    /// start (Kafka's follower does the same on OFFSET_MOVED_TO_TIERED_STORAGE): the
    /// producer state there comes from the snapshot copied with the segment that ends at
    /// `offset`. Without it (no such copy, no snapshot in it: no producers, or the store
    /// failing) the replica goes on with the state its own log builds, as before.
    pub async fn restore_producer_state_from_copy(
        self: &Arc<Self>,
        partition: &Arc<Partition>,
        offset: i64,
    ) {
        let Some(tiering) = self.tiering.clone() else {
            return;
        };
        if !partition.log().config().remote_storage_enable {
            return;
        }
        let objects = {
            let image = self.image();
            let Some(topic) = image.topic(&partition.topic) else {
                return;
            };
            let Some(copy) = topic.partitions.get(&partition.partition).and_then(|m| {
                m.copied_segments()
                    .find(|c| c.end_offset + 1 == offset)
                    .cloned()
            }) else {
                info!(topic = %partition.topic, partition = partition.partition, offset, "tiered storage: no copy ends where this replica starts; producer state from its own log");
                return;
            };
            SegmentObjects {
                topic: topic.name.clone(),
                topic_id: topic.topic_id,
                partition: partition.partition,
                base_offset: copy.base_offset,
                id: copy.id,
            }
        };
        let fetch = async {
            let Some(manifest) = tiering.storage.manifest(&objects).await? else {
                return Ok(None);
            };
            if manifest.file(FileKind::ProducerSnapshot).is_none() {
                return Ok(None);
            }
            tiering
                .storage
                .fetch_file(&objects, &manifest, FileKind::ProducerSnapshot)
                .await
                .map(Some)
        };
        let snapshot = match tokio::time::timeout(Duration::from_secs(10), fetch).await {
            Ok(Ok(Some(s))) => s,
            Ok(Ok(None)) => return,
            Ok(Err(e)) => {
                warn!(topic = %partition.topic, partition = partition.partition, offset, error = %e, "tiered storage: the producer snapshot could not be read");
                return;
            }
            Err(_) => {
                warn!(topic = %partition.topic, partition = partition.partition, offset, "tiered storage: reading the producer snapshot timed out");
                return;
            }
        };
        let p = partition.clone();
        match tokio::task::spawn_blocking(move || p.restore_producer_state(offset, &snapshot)).await
        {
            Ok(Ok(true)) => {
                info!(topic = %partition.topic, partition = partition.partition, offset, id = %objects.id, "tiered storage: producer state restored from the copy")
            }
            Ok(Ok(false)) => {}
            Ok(Err(e)) => {
                warn!(topic = %partition.topic, partition = partition.partition, offset, error = %e, "tiered storage: the producer snapshot was not restored")
            }
            Err(e) => {
                warn!(topic = %partition.topic, partition = partition.partition, error = %e, "tiered storage: restoring producer state failed")
            }
        }
    }
}

/// Runs tiered storage's passes while the broker serves (with
/// `remote.log.storage.system.enable`): every `remote.log.manager.task.interval.ms`, or at
/// once again while a pass still finds segments to copy.
pub async fn tiering_work(broker: Arc<Broker>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let Some(tiering) = broker.tiering.clone() else {
        return;
    };
    let interval =
        std::time::Duration::from_millis(broker.config.remote_log_manager_task_interval_ms.max(10));
    let sweep_every =
        std::time::Duration::from_millis(broker.config.remote_log_orphan_sweep_interval_ms.max(10));
    let mut last_sweep: Option<std::time::Instant> = None;
    let mut failed_passes = 0u32;
    loop {
        if *stop.borrow() {
            return;
        }
        if last_sweep.is_none_or(|t| t.elapsed() >= sweep_every) {
            last_sweep = Some(std::time::Instant::now());
            let sweep = {
                let (broker, tiering) = (broker.clone(), tiering.clone());
                let min_age = broker.config.remote_log_orphan_min_age_ms;
                tiering
                    .copier
                    .handle()
                    .clone()
                    .spawn(async move { broker.sweep_orphans(&tiering, min_age).await })
            };
            match sweep.await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    last_sweep = None; // again after the next pass
                    warn!(error = %e, "tiered storage: the orphan sweep will retry");
                }
                Err(_) => return,
            }
        }
        let pass = {
            let (broker, tiering) = (broker.clone(), tiering.clone());
            tiering
                .copier
                .handle()
                .clone()
                .spawn(async move { broker.tiering_pass(&tiering).await })
        };
        let Ok(stats) = pass.await else {
            return; // the pool is gone: the broker is stopping
        };
        if stats.copied > 0 && stats.failed == 0 {
            failed_passes = 0;
            continue;
        }
        // A store that fails is retried with exponential backoff (never less often than
        // every 5 minutes, nor more often than the interval).
        failed_passes = if stats.failed > 0 {
            failed_passes + 1
        } else {
            0
        };
        let wait = retry_wait(interval, failed_passes);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
    }
}

/// How long to wait before the next pass after `failed_passes` failed ones in a row:
/// the interval doubled for each, at most 64 times it and at most 5 minutes (but never less
/// than the interval).
fn retry_wait(interval: Duration, failed_passes: u32) -> Duration {
    let backoff = interval.saturating_mul(1 << failed_passes.min(6));
    backoff.min(Duration::from_secs(300)).max(interval)
}

impl Broker {
    /// A topic is gone: its copies in the object store go too (each replica host deletes
    /// what it finds for the partitions it hosted; deletions are idempotent).
    pub(crate) fn delete_remote_copies(&self, topic: &str, topic_id: Uuid, partition: i32) {
        let Some(tiering) = self.tiering.clone() else {
            return;
        };
        let topic = topic.to_string();
        let copier = tiering.copier.handle().clone();
        copier.spawn(async move {
            let copies = match tiering.storage.list_partition(&topic, topic_id, partition).await {
                Ok(c) => c,
                Err(e) => {
                    warn!(topic, partition, error = %e, "tiered storage: the deleted topic's copies could not be listed");
                    return;
                }
            };
            for (base_offset, id, _) in copies {
                let objects = SegmentObjects {
                    topic: topic.clone(),
                    topic_id,
                    partition,
                    base_offset,
                    id,
                };
                if let Err(e) = tiering.storage.delete_segment(&objects).await {
                    warn!(topic, partition, error = %e, "tiered storage: a deleted topic's copy was not deleted");
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_passes_back_off_exponentially_within_bounds() {
        let ms = Duration::from_millis;
        let waits: Vec<_> = (0..9).map(|n| retry_wait(ms(200), n)).collect();
        assert_eq!(
            waits,
            [200, 400, 800, 1600, 3200, 6400, 12800, 12800, 12800].map(ms)
        );
        assert_eq!(
            retry_wait(Duration::from_secs(30), 5),
            Duration::from_secs(300)
        );
        assert_eq!(
            retry_wait(Duration::from_secs(600), 3),
            Duration::from_secs(600)
        );
    }
}
