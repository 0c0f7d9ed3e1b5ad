//! A partition's log shared between request handlers, with group commit.
//!
//! Appends take the log lock only to write (a `pwrite` into the page cache). Durability is a
//! separate step, [`Partition::sync_to`]: the first caller to need a sync takes the flush lock,
//! notes the log end offset, fdatasyncs outside the log lock, and marks everything up to that
//! offset flushed. Callers that queued behind it find their offset already covered and return
//! without a sync of their own: one fdatasync serves every append that landed before it.
//!
//! The partition owns the high watermark: after every append and sync it reports this
//! replica's durable end to its [`PartitionReplicas`] (the replication rules) and moves the
//! log's high watermark to what they allow. On one node the in-sync replicas are this one, so
//! the high watermark is its own synced end (durable mode) or log end (relaxed mode).
//!
//! Lock order: `flush_lock` before `log` before `replicas`; `log` is never held across a
//! sync.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::Result;
use crate::segment::SegmentSlice;
use crate::{AppendInfo, FetchData, Log, StorageError};
use strata_replication::PartitionReplicas;

/// This node's replica id in a partition's replica set, until the cluster gives replicas
/// node ids.
const LOCAL_REPLICA: i32 = 0;

pub struct Partition {
    pub topic: String,
    pub partition: i32,
    /// The leader epoch this replica appends under (from cluster metadata); stamped on every
    /// batch as its partition leader epoch.
    leader_epoch: AtomicI32,
    /// The partition epoch of the latest change applied (see [`Partition::partition_epoch`]).
    partition_epoch: AtomicI32,
    log: Mutex<Log>,
    flush_lock: Mutex<()>,
    /// The in-sync replicas and their durable ends (this replica alone on one node).
    replicas: Mutex<PartitionReplicas>,
    /// This replica's node id, and the leader's as cluster metadata says: equal on the
    /// leader (a standalone node leads everything).
    replica_id: AtomicI32,
    leader_id: AtomicI32,
    /// KIP-890 across brokers: producers whose next transactional write was sent to a remote
    /// transaction coordinator for verification, with the guard that verification holds. A
    /// marker for the producer removes its guard, so a write verified before the marker but
    /// arriving after it is refused instead of opening a transaction nobody will end.
    verification_guards: Mutex<HashMap<i64, u64>>,
}

static NEXT_VERIFICATION_GUARD: AtomicU64 = AtomicU64::new(1);

impl Partition {
    pub fn new(topic: String, partition: i32, leader_epoch: i32, mut log: Log) -> Self {
        log.hand_high_watermark_to_partition();
        let replicas = PartitionReplicas::single(LOCAL_REPLICA, log.high_watermark());
        Self {
            leader_epoch: AtomicI32::new(leader_epoch),
            partition_epoch: AtomicI32::new(-1),
            topic,
            partition,
            log: Mutex::new(log),
            flush_lock: Mutex::new(()),
            replicas: Mutex::new(replicas),
            replica_id: AtomicI32::new(LOCAL_REPLICA),
            leader_id: AtomicI32::new(LOCAL_REPLICA),
            verification_guards: Mutex::new(HashMap::new()),
        }
    }

    /// Whether this replica leads the partition (takes produces, serves consumers).
    pub fn is_leader(&self) -> bool {
        self.leader_id.load(Ordering::SeqCst) == self.replica_id.load(Ordering::SeqCst)
    }

    /// The leader's node id as cluster metadata says.
    pub fn leader_id(&self) -> i32 {
        self.leader_id.load(Ordering::SeqCst)
    }

    /// This replica (node `local`) leads in `epoch` with `isr`: the replication rules start
    /// over from its own end; followers count once they fetch (until then the high
    /// watermark stays where it is, unless the ISR is this replica alone).
    pub fn become_leader(&self, local: i32, epoch: i32, isr: &[i32], min_insync_replicas: usize) {
        let mut log = self.log();
        let isr = if isr.contains(&local) {
            isr.to_vec()
        } else {
            vec![local]
        };
        if self.is_leader()
            && self.replica_id.load(Ordering::SeqCst) == local
            && self.leader_epoch() == epoch
        {
            // Same leadership, a new ISR (an AlterPartition applied): progress is kept.
            let mut replicas = self.replicas.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(hw) = replicas.set_isr(&isr) {
                log.advance_high_watermark(hw);
            }
            return;
        }
        self.replica_id.store(local, Ordering::SeqCst);
        self.leader_id.store(local, Ordering::SeqCst);
        self.set_leader_epoch(epoch);
        if let Err(e) = log.begin_leader_epoch(epoch) {
            tracing::warn!(topic = %self.topic, partition = self.partition, error = %e, "could not record the new leader epoch");
        }
        let now = log.now_ms();
        *self.replicas.lock().unwrap_or_else(|p| p.into_inner()) =
            PartitionReplicas::new_at(local, &isr, min_insync_replicas, log.high_watermark(), now);
        self.update_high_watermark(&mut log);
    }

    /// On the leader: the ISR change to ask the controller for, if any — followers that
    /// have not caught up for `lag_max_ms` leave; replicas that reached the high watermark
    /// and the start of this leader's epoch join (counted for the high watermark at once,
    /// KIP-497). While an addition is pending: None, or after a refusal the ISR without it,
    /// for the controller to confirm.
    pub fn isr_change(&self, lag_max_ms: i64) -> Option<Vec<i32>> {
        if !self.is_leader() {
            return None;
        }
        let log = self.log();
        let now = log.now_ms();
        let epoch_start = log.latest_epoch_start();
        let log_start = log.log_start_offset();
        let mut replicas = self.replicas.lock().unwrap_or_else(|p| p.into_inner());
        if replicas.has_pending() {
            // Waiting for the controller, or asking it to confirm the ISR without an
            // addition it refused.
            return replicas.settling_request();
        }
        let shrink = replicas.shrink_candidates(now, lag_max_ms);
        if !shrink.is_empty() {
            return Some(
                replicas
                    .isr()
                    .iter()
                    .copied()
                    .filter(|r| !shrink.contains(r))
                    .collect(),
            );
        }
        let expand = replicas.expand_candidates(epoch_start, log_start, now, lag_max_ms);
        if expand.is_empty() {
            return None;
        }
        for &r in &expand {
            replicas.begin_expand(r);
        }
        Some(replicas.maximal_isr())
    }

    /// The controller committed the ISR change this leader asked for: applied now (the
    /// metadata brings the same ISR later), pending additions settled.
    ///
    /// `partition_epoch` is the epoch the change committed (the request's plus one): an
    /// answer older than the metadata this replica applied since is ignored (the metadata is
    /// the truth: a later change, applied first, may have undone it — found by the
    /// simulation, where such a late answer left the leader counting a replica the committed
    /// ISR no longer had, and it never asked to add it back).
    pub fn isr_change_committed(&self, isr: &[i32], partition_epoch: i32) {
        let mut log = self.log();
        if !self.is_leader() || partition_epoch <= self.partition_epoch() {
            return;
        }
        self.note_partition_epoch(partition_epoch);
        let mut replicas = self.replicas.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(hw) = replicas.set_isr(isr) {
            log.advance_high_watermark(hw);
        }
    }

    /// `min.insync.replicas` changed in the topic's config: the leader applies it at once
    /// (to acks=all produce, the high watermark and DeleteRecords' low watermark).
    pub fn set_min_insync_replicas(&self, min_insync_replicas: usize) {
        let mut log = self.log();
        if !self.is_leader() {
            return; // a follower's replica view is rebuilt when it becomes leader
        }
        let mut replicas = self.replicas.lock().unwrap_or_else(|p| p.into_inner());
        if replicas.min_insync_replicas() == min_insync_replicas.max(1) {
            return;
        }
        if let Some(hw) = replicas.set_min_insync_replicas(min_insync_replicas) {
            log.advance_high_watermark(hw);
        }
    }

    /// The controller refused an ISR change, committing nothing: a pending addition keeps
    /// counting until the metadata settles it (see
    /// `strata_replication::PartitionReplicas::refuse_pending`); the next
    /// [`Partition::isr_change`] asks to confirm the ISR without it.
    pub fn isr_change_refused(&self) {
        self.replicas
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .refuse_pending();
    }

    /// This replica (node `local`) follows `leader` in `epoch`: it takes only the leader's
    /// batches, and its high watermark only from the leader.
    pub fn become_follower(&self, local: i32, leader: i32, epoch: i32) {
        // Under the log lock: a leader's append in progress finishes first, and every later
        // one sees the new role (see [`Partition::leader_log`]).
        let _log = self.log();
        self.replica_id.store(local, Ordering::SeqCst);
        self.leader_id.store(leader, Ordering::SeqCst);
        self.set_leader_epoch(epoch);
    }

    /// The log, for an append only the leader may make: refused once this replica follows
    /// another (checked under the lock that the role change takes too). A request checked
    /// for leadership before it waited (a transactional write's verification, a
    /// coordinator's write) must not land in a follower's log: there it would take an offset
    /// the leader fills with another batch, and the follower, fetching on from its own end,
    /// would keep the difference (found by `scripts/chaos`, seed 33069).
    fn leader_log(&self) -> Result<MutexGuard<'_, Log>> {
        let log = self.log();
        if !self.is_leader() {
            return Err(StorageError::NotLeader);
        }
        Ok(log)
    }

    /// On the leader: follower `replica` fetched from `fetch_offset`, so it holds (synced)
    /// everything before it, and its log starts at `log_start_offset`. True if the high
    /// watermark advanced.
    pub fn follower_fetched(&self, replica: i32, fetch_offset: i64, log_start_offset: i64) -> bool {
        let mut log = self.log();
        let leo = log.log_end_offset();
        let now = log.now_ms();
        let moved = {
            let mut replicas = self.replicas.lock().unwrap_or_else(|p| p.into_inner());
            replicas.follower_log_start(replica, log_start_offset);
            replicas.follower_end(replica, fetch_offset, leo, now)
        };
        match moved {
            Some(hw) => {
                let before = log.high_watermark();
                log.advance_high_watermark(hw);
                log.high_watermark() > before
            }
            None => false,
        }
    }

    /// Kafka's low watermark as this replica knows it while it leads in `leader_epoch`: the
    /// lowest log start offset over the in-sync replicas. None once it no longer leads in
    /// that epoch — a follower's own log start says nothing of the other replicas', so a
    /// DeleteRecords waiting on it must not be answered by a deposed leader.
    pub fn low_watermark(&self, leader_epoch: i32) -> Option<i64> {
        let leads = || self.is_leader() && self.leader_epoch() == leader_epoch;
        if !leads() {
            return None;
        }
        let low = {
            let log = self.log();
            self.replicas
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .low_watermark(log.log_start_offset())
        };
        // Epochs only grow: leading in the same epoch after as before means no change of
        // role came in between.
        leads().then_some(low)
    }

    /// The leader's view of its replicas (ISR, pending additions, each replica's end), for
    /// diagnostics.
    pub fn replication_state(&self) -> String {
        format!(
            "{:?}",
            self.replicas.lock().unwrap_or_else(|p| p.into_inner())
        )
    }

    /// The in-sync replicas and `min.insync.replicas` as the leader applies them.
    pub fn isr(&self) -> (Vec<i32>, usize) {
        let r = self.replicas.lock().unwrap_or_else(|p| p.into_inner());
        (r.isr().to_vec(), r.min_insync_replicas())
    }

    /// On a follower: appends the leader's batches as stored (see
    /// [`Log::append_replicated`]).
    pub fn append_replicated(&self, records: &[u8]) -> Result<Option<(i64, i64)>> {
        self.log().append_replicated(records)
    }

    /// On a follower: the leader's high watermark, capped at what this replica has synced.
    pub fn follow_high_watermark(&self, leader_high_watermark: i64) {
        let mut log = self.log();
        let hw = leader_high_watermark.min(log.durable_end());
        log.advance_high_watermark(hw);
    }

    /// Reports this replica's durable end to the replication rules and moves the log's high
    /// watermark to what they allow. Called under the log lock after every change; a
    /// follower's high watermark comes from its leader instead.
    fn update_high_watermark(&self, log: &mut Log) {
        if !self.is_leader() {
            return;
        }
        let mut replicas = self.replicas.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(hw) = replicas.leader_end(log.durable_end(), log.now_ms()) {
            log.advance_high_watermark(hw);
        }
    }

    /// Records that every offset below `offset` is synced (see [`Log::mark_flushed`]).
    pub fn mark_flushed(&self, offset: i64) {
        let mut log = self.log();
        log.mark_flushed(offset);
        self.update_high_watermark(&mut log);
    }

    /// The log, locked. Keep the guard short-lived.
    pub fn log(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The partition epoch of the latest change this replica applied (from the metadata, or
    /// from an AlterPartition answer).
    pub fn partition_epoch(&self) -> i32 {
        self.partition_epoch.load(Ordering::SeqCst)
    }

    pub(crate) fn note_partition_epoch(&self, epoch: i32) {
        self.partition_epoch.fetch_max(epoch, Ordering::SeqCst);
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch.load(Ordering::SeqCst)
    }

    /// A new leader epoch from cluster metadata (leader changes; never decreases).
    pub fn set_leader_epoch(&self, epoch: i32) {
        self.leader_epoch.fetch_max(epoch, Ordering::SeqCst);
    }

    /// Appends as leader, under the current leader epoch.
    pub fn append(&self, batches: &[u8]) -> Result<AppendInfo> {
        let epoch = self.leader_epoch();
        let mut log = self.leader_log()?;
        let info = log.append(batches, epoch)?;
        self.update_high_watermark(&mut log);
        Ok(info)
    }

    /// Blocks until every offset below `offset` is synced (group commit, see module docs).
    pub fn sync_to(&self, offset: i64) -> Result<()> {
        if self.log().recovery_point() >= offset {
            return Ok(());
        }
        let _flushing = self.flush_lock.lock().unwrap_or_else(|p| p.into_inner());
        let (file, end) = {
            let log = self.log();
            if log.recovery_point() >= offset {
                return Ok(());
            }
            log.flush_target()
        };
        if let Err(e) = file.sync_data() {
            let mut log = self.log();
            log.mark_failed();
            return Err(StorageError::io(log.dir(), e));
        }
        let mut log = self.log();
        if log.is_failed() {
            return Err(StorageError::LogDirFailed(log.dir().to_path_buf()));
        }
        log.mark_flushed(end);
        self.update_high_watermark(&mut log);
        Ok(())
    }

    /// Syncs if the relaxed flush policy says so; true if a sync happened.
    pub fn maybe_flush(&self) -> Result<bool> {
        let due = { self.log().flush_due() };
        if due {
            let leo = self.log().log_end_offset();
            self.sync_to(leo)?;
        }
        Ok(due)
    }

    /// Reads whole batches from `offset` (see [`Log::slice`] for `min_one_batch`).
    pub fn read(&self, offset: i64, max_bytes: usize, min_one_batch: bool) -> Result<FetchData> {
        let found = self.slice_isolated(offset, max_bytes, min_one_batch, false)?;
        let records = match found.range {
            Some(s) => s
                .read()
                .map_err(|e| StorageError::io(format!("{}-{}", self.topic, self.partition), e))?,
            None => bytes::Bytes::new(),
        };
        Ok(FetchData {
            records,
            high_watermark: found.high_watermark,
            log_start_offset: found.log_start_offset,
            log_end_offset: found.log_end_offset,
        })
    }

    /// Where a read would come from, without reading it: the byte range of whole batches and
    /// the offsets a fetch reports. Found under the lock; the caller reads (or sendfiles) the
    /// range outside it. Stored bytes are never rewritten in place, and the range holds its
    /// file open, so it stays valid even if retention deletes the segment. read_committed
    /// stops at the last stable offset and gets the aborted transactions it covers.
    pub fn slice_isolated(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
        read_committed: bool,
    ) -> Result<IsolatedSlice> {
        let log = self.log();
        let last_stable_offset = log.last_stable_offset();
        let range = if read_committed {
            log.slice_committed(offset, max_bytes, min_one_batch)?
        } else {
            log.slice(offset, max_bytes, min_one_batch)?
        };
        let aborted = if read_committed {
            log.aborted_transactions(offset, last_stable_offset)
        } else {
            Vec::new()
        };
        Ok(IsolatedSlice {
            range,
            high_watermark: log.high_watermark(),
            last_stable_offset,
            log_start_offset: log.log_start_offset(),
            log_end_offset: log.log_end_offset(),
            aborted,
        })
    }

    /// What a follower fetches: whole batches from `offset` up to the log end offset (the
    /// uncommitted tail too), with the offsets a fetch reports.
    pub fn slice_replica(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<IsolatedSlice> {
        let log = self.log();
        let range = log
            .slice_replica(offset, max_bytes)?
            .filter(|s| min_one_batch || s.bytes <= max_bytes);
        Ok(IsolatedSlice {
            range,
            high_watermark: log.high_watermark(),
            last_stable_offset: log.last_stable_offset(),
            log_start_offset: log.log_start_offset(),
            log_end_offset: log.log_end_offset(),
            aborted: Vec::new(),
        })
    }

    /// Cuts this replica's log at `offset` (a follower whose log diverged from the leader's).
    pub fn truncate_to(&self, offset: i64) -> Result<()> {
        self.log().truncate_to(offset)
    }

    /// Empties this replica's log and restarts it at `offset` (a follower behind the
    /// leader's log start).
    /// See [`Log::restore_producer_state`].
    pub fn restore_producer_state(&self, offset: i64, snapshot: &[u8]) -> Result<bool> {
        self.log().restore_producer_state(offset, snapshot)
    }

    pub fn truncate_fully_and_start_at(&self, offset: i64) -> Result<()> {
        self.log().truncate_fully_and_start_at(offset)
    }

    /// Appends a producer's transactional batches after the caller verified its
    /// transaction with the coordinator.
    pub fn append_transactional(&self, batches: &[u8]) -> Result<AppendInfo> {
        let epoch = self.leader_epoch();
        let mut log = self.leader_log()?;
        let info = log.append_transactional(batches, epoch)?;
        self.update_high_watermark(&mut log);
        Ok(info)
    }

    /// Appends batches a coordinator writes for a producer (see [`Log::append_coordinator`]).
    pub fn append_coordinator(&self, batches: &[u8]) -> Result<AppendInfo> {
        let epoch = self.leader_epoch();
        let mut log = self.leader_log()?;
        let info = log.append_coordinator(batches, epoch)?;
        self.update_high_watermark(&mut log);
        Ok(info)
    }

    /// Whether a transactional write of `producer_id` needs its coordinator's verification:
    /// not when the producer's transaction is already open here (its first write was
    /// verified, and only its marker closes it).
    pub fn needs_verification(&self, producer_id: i64) -> bool {
        self.log()
            .producer_state()
            .ongoing_transaction(producer_id)
            .is_none()
    }

    /// Starts a remote verification of `producer_id`'s next transactional write: the guard
    /// [`Partition::append_verified`] must present (a marker in between removes it).
    pub fn begin_verification(&self, producer_id: i64) -> u64 {
        let guard = NEXT_VERIFICATION_GUARD.fetch_add(1, Ordering::Relaxed);
        self.guards().insert(producer_id, guard);
        guard
    }

    /// Appends a transactional write verified by a remote coordinator: taken if the
    /// producer's transaction is open here, or if `guard` is still the producer's guard
    /// (no marker since the verification began); refused otherwise.
    pub fn append_verified(
        &self,
        batches: &[u8],
        producer_id: i64,
        guard: Option<u64>,
    ) -> Result<AppendInfo> {
        let epoch = self.leader_epoch();
        let mut log = self.log();
        let open = log
            .producer_state()
            .ongoing_transaction(producer_id)
            .is_some();
        if !open {
            let mut guards = self.guards();
            if guard.is_none() || guards.get(&producer_id) != guard.as_ref() {
                return Err(StorageError::VerificationLost(producer_id));
            }
            guards.remove(&producer_id);
        }
        let info = log.append_transactional(batches, epoch)?;
        self.update_high_watermark(&mut log);
        Ok(info)
    }

    /// For writes appended by another path under a lock markers also take (the group
    /// coordinator's transactional offsets): whether the verified write may go ahead now, by
    /// the rule of [`Partition::append_verified`] (the guard is used up).
    pub fn claim_verification(&self, producer_id: i64, guard: Option<u64>) -> bool {
        let log = self.log();
        if log
            .producer_state()
            .ongoing_transaction(producer_id)
            .is_some()
        {
            return true;
        }
        let mut guards = self.guards();
        if guard.is_some() && guards.get(&producer_id) == guard.as_ref() {
            guards.remove(&producer_id);
            return true;
        }
        false
    }

    fn guards(&self) -> MutexGuard<'_, HashMap<i64, u64>> {
        self.verification_guards
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Writes a commit or abort marker for `producer_id`.
    pub fn append_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
    ) -> Result<AppendInfo> {
        let epoch = self.leader_epoch();
        let mut log = self.leader_log()?;
        self.guards().remove(&producer_id);
        let info = log.append_marker(
            producer_id,
            producer_epoch,
            commit,
            coordinator_epoch,
            epoch,
        )?;
        self.update_high_watermark(&mut log);
        Ok(info)
    }

    pub fn high_watermark(&self) -> i64 {
        self.log().high_watermark()
    }
}

/// What [`Partition::slice_isolated`] found.
pub struct IsolatedSlice {
    pub range: Option<SegmentSlice>,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    /// (producer id, first offset) of aborted transactions in the range (read_committed).
    pub aborted: Vec<(i64, i64)>,
}

/// Group commit at the file-system level: writes that touched many partitions are made
/// durable with one syncfs, and one syncfs serves every caller whose writes were done before
/// it started (callers queue while one runs, then usually find themselves covered).
#[derive(Default)]
pub struct FilesystemSync {
    /// Taken by a caller once its writes are done; increases.
    next_ticket: AtomicU64,
    /// Every ticket below this was covered by a completed syncfs.
    synced_below: AtomicU64,
    lock: Mutex<()>,
}

impl FilesystemSync {
    /// Makes everything appended so far to `partitions` durable. Log end offsets are taken
    /// before the sync, so only what a sync covered is marked flushed.
    pub fn sync(&self, partitions: &[Arc<Partition>]) -> Result<()> {
        let Some(first) = partitions.first() else {
            return Ok(());
        };
        let ends: Vec<i64> = partitions
            .iter()
            .map(|p| p.log().log_end_offset())
            .collect();
        let ticket = self.next_ticket.fetch_add(1, Ordering::SeqCst);
        {
            let _one_at_a_time = self.lock.lock().unwrap_or_else(|p| p.into_inner());
            if self.synced_below.load(Ordering::SeqCst) <= ticket {
                // Everyone who took a ticket before now has written: this sync covers them.
                let covers_below = self.next_ticket.load(Ordering::SeqCst);
                let (fs, dir) = {
                    let log = first.log();
                    (log.fs(), log.dir().to_path_buf())
                };
                if let Err(e) = fs.sync_filesystem(&dir) {
                    for p in partitions {
                        p.log().mark_failed();
                    }
                    return Err(StorageError::io(&dir, e));
                }
                self.synced_below.store(covers_below, Ordering::SeqCst);
            }
        }
        for (p, end) in partitions.iter().zip(ends) {
            let mut log = p.log();
            log.mark_flushed(end);
            p.update_high_watermark(&mut log);
            if log.is_failed() {
                return Err(StorageError::LogDirFailed(log.dir().to_path_buf()));
            }
        }
        Ok(())
    }
}
