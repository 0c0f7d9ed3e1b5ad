//! The group coordinator's I/O: the pure [`Coordinator`] behind a mutex, its records in the
//! internal `__consumer_offsets` topic, and delivery of the responses it produces.
//!
//! Every call follows one order: under the coordinator lock, run the state machine and
//! append the records it asks to persist (so the log order is the order of state changes);
//! outside the lock, wait until those records are durable (group commit, like produce);
//! only then answer — the caller's own response and any responses it completed for other
//! members (JoinGroup/SyncGroup waiters).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use strata_group::{Coordinator, Effect, GroupConfig, OffsetsUndo, Token};
use strata_records::{BatchBuilder, BatchHeader, Compression, Record};
use strata_storage::{Partition, StorageError};
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use crate::state::{Broker, TopicError};

pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

pub struct GroupService {
    coordinator: Mutex<Coordinator>,
    waiters: Mutex<HashMap<Token, oneshot::Sender<Effect>>>,
    next_token: AtomicU64,
    /// Set at shutdown: waiting JoinGroup/SyncGroup requests are answered at once
    /// (COORDINATOR_NOT_AVAILABLE, so clients find the coordinator again after restart).
    closed: std::sync::atomic::AtomicBool,
    /// When the latest catch-up with the quorum leader for a misdirected-looking group
    /// request started (see [`Broker::settle_group_coordination`]); held while one runs.
    settled: tokio::sync::Mutex<Option<std::time::Instant>>,
}

/// How long a group request this node does not seem to coordinate waits for its metadata
/// to catch up with the quorum leader before it is answered from what it has.
const SETTLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Records appended and not yet durable: (partition, offset to sync to).
pub struct Pending {
    sync: Vec<(Arc<Partition>, i64)>,
    effects: Vec<Effect>,
    failed: bool,
    /// Undoes the call's offset commits if their records are not stored.
    undo: Vec<OffsetsUndo>,
}

impl GroupService {
    pub fn new(config: GroupConfig) -> Self {
        Self {
            coordinator: Mutex::new(Coordinator::new(config)),
            waiters: Mutex::new(HashMap::new()),
            next_token: AtomicU64::new(1),
            closed: std::sync::atomic::AtomicBool::new(false),
            settled: tokio::sync::Mutex::new(None),
        }
    }

    pub fn coordinator(&self) -> MutexGuard<'_, Coordinator> {
        self.coordinator.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A token whose response arrives on the returned receiver.
    pub fn waiter(&self) -> (Token, oneshot::Receiver<Effect>) {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let mut waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        if !self.closed.load(Ordering::SeqCst) {
            waiters.insert(token, tx);
        }
        (token, rx)
    }

    /// Answers every waiting request now (their senders are dropped) and every later one.
    pub fn close(&self) {
        let mut waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        self.closed.store(true, Ordering::SeqCst);
        waiters.clear();
    }

    fn deliver(&self, effects: Vec<Effect>) {
        let mut waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        for e in effects {
            let token = match &e {
                Effect::Join { token, .. } | Effect::Sync { token, .. } => *token,
                Effect::Persist { .. } | Effect::PersistTransactional { .. } => continue,
            };
            if let Some(tx) = waiters.remove(&token) {
                let _ = tx.send(e);
            }
        }
    }
}

impl Broker {
    /// Before a group request is answered on a cluster member: when this node's applied
    /// metadata does not make it the coordinator of one of `groups`, that metadata may just
    /// be behind. FindCoordinator answered on a node that applied the leadership first sends
    /// clients here early — always so when that FindCoordinator created `__consumer_offsets`.
    /// The request then waits (up to [`SETTLE_TIMEOUT`]) until this node applied everything
    /// the quorum leader had applied when asked, and takes up the coordination that gives
    /// it. The coordinator answers from current metadata afterwards: served,
    /// COORDINATOR_LOAD_IN_PROGRESS (retried in place by clients), or a NOT_COORDINATOR that
    /// is true. A stale NOT_COORDINATOR is not harmless: librdkafka's `committed()` fails on
    /// it instead of retrying.
    ///
    /// One catch-up runs at a time; a request that arrived before the latest one started
    /// takes its result instead of asking the leader again (a client with a stale
    /// coordinator costs one read index per burst, not one per request).
    pub async fn settle_group_coordination(self: &Arc<Self>, groups: &[&str]) {
        let Some(member) = &self.quorum else {
            return;
        };
        let coordinated = || {
            let c = self.groups.coordinator();
            groups.iter().all(|g| {
                g.is_empty()
                    || c.owned()
                        .is_none_or(|owned| owned.contains(&c.partition_for(g)))
            })
        };
        if coordinated() {
            return;
        }
        let arrived = std::time::Instant::now();
        let mut settled = self.groups.settled.lock().await;
        if settled.is_some_and(|started| started >= arrived) || coordinated() {
            return;
        }
        let started = std::time::Instant::now();
        // Recorded whatever the outcome: the requests queued behind a catch-up that failed
        // (no reachable leader) answer from what this node has instead of each waiting
        // their own timeout in turn.
        *settled = Some(started);
        if let Err(e) = member
            .quorum
            .catch_up_with_leader(started + SETTLE_TIMEOUT)
            .await
        {
            debug!(error = %e, "group request: could not catch up with the quorum leader");
            return;
        }
        let b = self.clone();
        let caught_up = tokio::task::spawn_blocking(move || {
            let applied = b.catch_up_with_quorum();
            b.refresh_group_coordination();
            applied
        })
        .await;
        if let Ok(Err(e)) = caught_up {
            warn!(error = %e, "a metadata change was not fully applied");
        }
    }

    /// Runs `f` on the coordinator and appends what it asks to persist, under the lock.
    pub fn group_call<R>(
        &self,
        f: impl FnOnce(&mut Coordinator) -> (R, Vec<Effect>),
    ) -> (R, Pending) {
        let mut coordinator = self.groups.coordinator();
        let (r, effects) = f(&mut coordinator);
        let mut pending = self.append_group_records(effects);
        pending.undo = coordinator.take_offsets_undo();
        drop(coordinator);
        (r, pending)
    }

    fn append_group_records(&self, effects: Vec<Effect>) -> Pending {
        // One batch per partition and producer (None: plain records; Some: a transaction's
        // offsets, in a transactional batch of that producer).
        type BatchKey = (i32, Option<(i64, i16)>);
        let mut batches: BTreeMap<BatchKey, Vec<Record>> = BTreeMap::new();
        let now = self.clock.steady_ms();
        for e in &effects {
            let (batch, key, value) = match e {
                Effect::Persist {
                    partition,
                    key,
                    value,
                } => ((*partition, None), key, value.clone()),
                Effect::PersistTransactional {
                    partition,
                    producer_id,
                    producer_epoch,
                    key,
                    value,
                } => (
                    (*partition, Some((*producer_id, *producer_epoch))),
                    key,
                    Some(value.clone()),
                ),
                _ => continue,
            };
            batches.entry(batch).or_default().push(Record {
                key: Some(key.clone()),
                value,
                headers: vec![],
                timestamp_ms: now,
            });
        }
        let mut pending = Pending {
            sync: Vec::new(),
            effects,
            failed: false,
            undo: Vec::new(),
        };
        if batches.is_empty() {
            return pending;
        }
        if let Err(e) = self.ensure_offsets_topic() {
            warn!(error = %e, "cannot create {OFFSETS_TOPIC}; group state not persisted");
            pending.failed = true;
            return pending;
        }
        for ((p, transaction), records) in batches {
            // Only the partition's leader writes (a coordinator that just lost it fails the
            // request, retriably; the new leader's coordinator takes over).
            let Some(partition) = self
                .partition(OFFSETS_TOPIC, p)
                .filter(|partition| partition.is_leader())
            else {
                pending.failed = true;
                continue;
            };
            let mut builder = BatchBuilder::new(Compression::None);
            for r in records {
                builder.push(r);
            }
            if let Some((producer_id, epoch)) = transaction {
                builder.transactional(producer_id, epoch);
            }
            let appended = builder
                .build()
                .map_err(StorageError::InvalidBatch)
                .and_then(|batch| match transaction {
                    None => partition.append(&batch),
                    Some(_) => partition.append_coordinator(&batch),
                });
            match appended {
                Ok(info) => pending.sync.push((partition, info.last_offset + 1)),
                Err(e) => {
                    warn!(partition = p, error = %e, "could not append to {OFFSETS_TOPIC}");
                    pending.failed = true;
                }
            }
        }
        pending
    }

    /// Makes the appended records durable, then delivers the responses. False if any
    /// record could not be stored (the caller answers with a retriable error).
    pub async fn group_complete(self: &Arc<Self>, pending: Pending) -> bool {
        let Pending {
            sync,
            effects,
            mut failed,
            undo,
        } = pending;
        if !sync.is_empty() {
            let sync_copy: Vec<(Arc<Partition>, i64)> = sync.clone();
            let synced = tokio::task::spawn_blocking(move || {
                sync.iter()
                    .map(|(p, offset)| p.sync_to(*offset))
                    .collect::<Result<Vec<()>, _>>()
            })
            .await;
            match synced {
                Ok(Ok(_)) => {
                    self.data_arrived.notify_waiters();
                    // Replicated: answered once every in-sync replica has it (as acks=all).
                    if !self.wait_for_high_watermark(&sync_copy).await {
                        warn!("{OFFSETS_TOPIC} write not replicated in time");
                        failed = true;
                    }
                }
                _ => {
                    warn!("could not sync {OFFSETS_TOPIC}");
                    failed = true;
                    self.data_arrived.notify_waiters();
                }
            }
        }
        if failed && !undo.is_empty() {
            self.groups.coordinator().revert_offsets(undo);
        }
        self.groups.deliver(effects);
        !failed
    }

    /// Waits (at most 10 s) until each partition's high watermark covers its offset; false if
    /// one did not (its leadership moved, or too few replicas are in sync).
    /// [`Broker::wait_for_high_watermark`] from a blocking thread (on a standalone node the
    /// high watermark is the synced end: nothing to wait for).
    pub(crate) fn wait_replicated_blocking(&self, written: &[(Arc<Partition>, i64)]) -> bool {
        if written.is_empty() {
            return true;
        }
        self.block_on_quorum(self.wait_for_high_watermark(written))
            .unwrap_or(true)
    }

    pub(crate) async fn wait_for_high_watermark(&self, written: &[(Arc<Partition>, i64)]) -> bool {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let notified = self.data_arrived.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if written.iter().all(|(p, end)| p.high_watermark() >= *end) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                let behind: Vec<String> = written
                    .iter()
                    .filter(|(p, end)| p.high_watermark() < *end)
                    .map(|(p, end)| {
                        format!(
                            "{}-{}: high watermark {} < {end}, log end {}, replicas {}",
                            p.topic,
                            p.partition,
                            p.high_watermark(),
                            p.log().log_end_offset(),
                            p.replication_state()
                        )
                    })
                    .collect();
                warn!(
                    ?behind,
                    "a write of the broker's own did not reach the in-sync replicas in 10 s"
                );
                return false;
            }
            if self.is_shutting_down() || written.iter().any(|(p, _)| !p.is_leader()) {
                return false;
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    /// Creates `__consumer_offsets` on first use, as Kafka does.
    pub fn ensure_offsets_topic(&self) -> Result<(), TopicError> {
        // Replicated on a cluster (`offsets.topic.replication.factor`, at most the live
        // brokers): groups fail over with their partitions.
        let replication_factor = if self.quorum.is_some() {
            let live = self.image().live_brokers().count().max(1) as i16;
            self.config.offsets_topic_replication_factor.clamp(1, live)
        } else {
            1
        };
        self.ensure_internal_topic(
            OFFSETS_TOPIC,
            self.config.offsets_topic_num_partitions,
            self.config.offsets_topic_segment_bytes,
            replication_factor,
        )
    }

    /// Creates a coordinator's internal topic if it does not exist yet: compacted, kept
    /// forever otherwise (Kafka's settings).
    pub(crate) fn ensure_internal_topic(
        &self,
        name: &str,
        partitions: i32,
        segment_bytes: u64,
        replication_factor: i16,
    ) -> Result<(), TopicError> {
        if self.image().topic(name).is_some() {
            return Ok(());
        }
        let configs = BTreeMap::from([
            ("cleanup.policy".to_string(), "compact".to_string()),
            ("retention.ms".to_string(), "-1".to_string()),
            ("retention.bytes".to_string(), "-1".to_string()),
            ("segment.bytes".to_string(), segment_bytes.to_string()),
        ]);
        match self.create_topic_unchecked(name, partitions, replication_factor, configs, false) {
            Ok(_) | Err(TopicError::AlreadyExists(_)) => Ok(()),
            Err(TopicError::Metadata(strata_cluster::MetadataError::TopicExists(_))) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Replays `__consumer_offsets` into the coordinator (at startup, before serving): every
    /// partition on a standalone node; on a cluster member the ones it leads (it coordinates
    /// their groups; see [`Broker::refresh_group_coordination`] for later changes).
    pub(crate) fn load_groups(&self) -> Result<(), TopicError> {
        let image = self.image();
        let count = image
            .topic(OFFSETS_TOPIC)
            .map_or(0, |t| t.partitions.len() as i32);
        let partitions: Vec<Arc<Partition>> = (0..count)
            .filter_map(|p| self.partition(OFFSETS_TOPIC, p))
            .filter(|p| self.quorum.is_none() || p.is_leader())
            .collect();
        let mut coordinator = self.groups.coordinator();
        if count > 0 {
            // The topic's partition count, not the configured one, decides where a group's
            // records go: a changed setting must not split a group across partitions.
            coordinator.set_offsets_topic_partitions(count);
        }
        if let Some(member) = &self.quorum {
            coordinator.set_owned(Some(partitions.iter().map(|p| p.partition).collect()));
            // The image FindCoordinator answers from (group lock, then the applied image's
            // read lock: the documented lock order).
            let (applied, node_id) = (member.applied.clone(), self.config.node_id);
            coordinator.set_leader_hint(Arc::new(move |p| {
                let image = applied
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .image
                    .clone();
                image
                    .topic(OFFSETS_TOPIC)
                    .and_then(|t| t.partitions.get(&p))
                    .is_some_and(|partition| partition.leader == node_id)
            }));
        }
        let (mut records, mut bad) = (0u64, 0u64);
        for partition in &partitions {
            let (r, b) = replay_offsets_partition(&mut coordinator, partition)?;
            records += r;
            bad += b;
        }
        coordinator.finish_loading(self.clock.steady_ms());
        if !partitions.is_empty() {
            info!(records, skipped = bad, "group metadata loaded");
        }
        Ok(())
    }

    /// A cluster member coordinates the groups of the `__consumer_offsets` partitions it
    /// leads: after each metadata change, the partitions it just became leader of are
    /// replayed into the coordinator and the ones it lost are dropped from it. Runs outside
    /// every metadata lock (the group lock comes first in the lock order).
    pub(crate) fn refresh_group_coordination(&self) {
        if self.quorum.is_none() {
            return;
        }
        let count = self
            .image()
            .topic(OFFSETS_TOPIC)
            .map_or(0, |t| t.partitions.len() as i32);
        let led: std::collections::BTreeSet<i32> = (0..count)
            .filter(|&p| {
                self.partition(OFFSETS_TOPIC, p)
                    .is_some_and(|p| p.is_leader())
            })
            .collect();
        let mut coordinator = self.groups.coordinator();
        let owned = coordinator.owned().cloned().unwrap_or_default();
        if owned == led {
            return;
        }
        if count > 0 {
            coordinator.set_offsets_topic_partitions(count);
        }
        for &p in owned.difference(&led) {
            // Requests waiting in its groups learn at once that this node no longer
            // coordinates them.
            let answers = coordinator.unload_partition(p);
            self.groups.deliver(answers);
            info!(
                partition = p,
                "no longer coordinating the groups of {OFFSETS_TOPIC}"
            );
        }
        let now = self.clock.steady_ms();
        for &p in led.difference(&owned) {
            let Some(partition) = self.partition(OFFSETS_TOPIC, p) else {
                continue;
            };
            match replay_offsets_partition(&mut coordinator, &partition) {
                Ok((records, _)) => {
                    coordinator.finish_loading_partition(p, now);
                    info!(
                        partition = p,
                        records, "now coordinating the groups of {OFFSETS_TOPIC}"
                    );
                }
                Err(e) => warn!(partition = p, error = %e, "could not load group metadata"),
            }
        }
    }

    /// The coordinator's clock: expirations and delayed rebalances. Called periodically.
    pub async fn group_tick(self: &Arc<Self>) {
        let now = self.clock.steady_ms();
        let (_, pending) = self.group_call(|c| ((), c.tick(now)));
        self.group_complete(pending).await;
    }

    /// Offsets of a deleted topic go from every group.
    pub(crate) fn forget_topic_offsets(&self, topic: &str) {
        let (_, pending) = self.group_call(|c| ((), c.topic_deleted(topic)));
        for (p, offset) in &pending.sync {
            if let Err(e) = p.sync_to(*offset) {
                warn!(error = %e, "could not sync {OFFSETS_TOPIC}");
            }
        }
    }
}

/// Replays one `__consumer_offsets` partition into the coordinator (records in log order;
/// transaction markers decide pending transactional offsets). Returns (records, skipped).
fn replay_offsets_partition(
    coordinator: &mut Coordinator,
    partition: &Partition,
) -> Result<(u64, u64), StorageError> {
    let offsets_partition = partition.partition;
    let (mut records, mut bad) = (0u64, 0u64);
    for_each_batch(partition, |header, batch| {
        if header.is_control() {
            // A transaction marker decides that producer's pending offsets here.
            if let Some(commit) = strata_records::control_type(&batch) {
                coordinator.complete_transaction(offsets_partition, header.producer_id, commit);
            }
            return;
        }
        let decoded = match strata_records::decode_records(batch) {
            Ok(d) => d,
            Err(e) => {
                bad += 1;
                warn!(error = %e, "undecodable batch in {OFFSETS_TOPIC}; skipped");
                return;
            }
        };
        for r in decoded {
            let Some(key) = r.key.as_ref() else { continue };
            records += 1;
            let replayed = if header.is_transactional() {
                coordinator.replay_transactional(header.producer_id, key, r.value.as_deref())
            } else {
                coordinator.replay(key, r.value.as_deref())
            };
            if let Err(e) = replayed {
                bad += 1;
                warn!(error = %e, offset = r.offset, "skipping record of {OFFSETS_TOPIC}");
            }
        }
    })?;
    Ok((records, bad))
}

/// Calls `f` with every stored batch of `partition` up to its log end offset, in order (the
/// header, then the whole batch): how a coordinator loads an internal topic's partition when
/// this node becomes its leader (or at start). To the log end, not the high watermark, as
/// Kafka's loaders do: a new leader's log is the partition's truth from now on (followers
/// truncate to it), and its tail may hold records the previous leader already acknowledged
/// — a follower's high watermark trails the leader's by a fetch, so stopping there forgot
/// transactions and offset commits that clients had been told were stored.
pub(crate) fn for_each_batch(
    partition: &Partition,
    mut f: impl FnMut(&BatchHeader, Bytes),
) -> Result<(), StorageError> {
    let mut offset = partition.log().log_start_offset();
    let name = format!("{}-{}", partition.topic, partition.partition);
    loop {
        let slice = partition.slice_replica(offset, 1 << 20, true)?;
        let mut buf = match slice.range {
            Some(range) => range.read().map_err(|e| StorageError::io(&name, e))?,
            None => Bytes::new(),
        };
        if buf.is_empty() {
            return Ok(());
        }
        let start = offset;
        while buf.len() >= strata_records::BATCH_HEADER_BYTES {
            let header = match BatchHeader::parse(&buf) {
                Ok(h) => h,
                Err(e) => {
                    warn!(topic = %partition.topic, partition = partition.partition, error = %e, "unreadable batch; the rest of the partition is skipped");
                    return Ok(());
                }
            };
            let total = header.total_bytes();
            if total > buf.len() {
                break;
            }
            let batch = buf.split_to(total);
            if header.last_offset() < offset {
                continue; // already seen: never replay a batch twice or move backwards
            }
            offset = header.last_offset() + 1;
            f(&header, batch);
        }
        if offset == start {
            return Ok(()); // no whole batch came back: nothing more to read
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use strata_records::Record;
    use strata_storage::{Clock, Fs, Log, LogConfig, ManualClock, SimFs};

    fn batch(key: &str) -> Bytes {
        let mut builder = BatchBuilder::new(Compression::None);
        builder.push(Record {
            key: Some(Bytes::from(key.to_string())),
            value: Some(Bytes::from_static(b"v")),
            headers: Vec::new(),
            timestamp_ms: 0,
        });
        builder.build().unwrap()
    }

    /// A coordinator loading a partition it now leads replays the whole log, not just what
    /// this replica knew to be below the high watermark: a follower's high watermark trails
    /// the leader's, so records the previous leader had acknowledged (a transaction's
    /// Ongoing state, an offset commit) sit above it. Found by scripts/chaos (issue 13): a
    /// new transaction coordinator answered INVALID_TXN_STATE to the EndTxn of a
    /// transaction whose partitions the previous coordinator had acknowledged adding.
    #[test]
    fn loading_an_internal_partition_reads_up_to_its_log_end() {
        let fs: Arc<dyn Fs> = Arc::new(SimFs::new());
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(0));
        let log = Log::open(
            fs,
            clock,
            Path::new("/data/__consumer_offsets-0"),
            LogConfig::default(),
        )
        .unwrap();
        let partition = Partition::new(OFFSETS_TOPIC.to_string(), 0, 0, log);
        // Leader with a follower that has not fetched: the high watermark stays at 0.
        partition.become_leader(1, 1, &[1, 2], 2);
        for key in ["a", "b", "c"] {
            let info = partition.append(&batch(key)).unwrap();
            partition.mark_flushed(info.last_offset + 1);
        }
        assert_eq!(partition.high_watermark(), 0);
        let mut keys = Vec::new();
        for_each_batch(&partition, |_, batch| {
            for r in strata_records::decode_records(batch).unwrap() {
                keys.push(r.key.unwrap());
            }
        })
        .unwrap();
        assert_eq!(keys, vec!["a", "b", "c"]);
    }
}
