//! The transaction coordinator's I/O: the pure [`TxnCoordinator`] behind a mutex, its
//! records in the internal `__transaction_state` topic, and the transaction markers.
//!
//! Order of every call, like the group coordinator's: under the lock, run the state machine
//! and append the records it asks to persist; outside it, sync them; only then act on them.
//! Ending a transaction is three durable steps — PrepareCommit/PrepareAbort synced, a marker
//! synced in every partition of the transaction (for `__consumer_offsets` partitions the
//! group coordinator applies or drops the transaction's offsets at the same time), then
//! CompleteCommit/CompleteAbort synced — so a crash anywhere is finished at the next start:
//! a transaction found in a Prepare state has its markers written again (a marker for a
//! transaction already closed on a partition changes nothing there).
//!
//! KIP-890 part 1: a transactional write (produce, TxnOffsetCommit) is verified against the
//! coordinator and appended while the coordinator lock is held, so it lands either before
//! the transaction's markers or not at all: a late write cannot join the next transaction
//! or hang the last stable offset.
//!
//! Lock order: txn coordinator, then group coordinator, then partitions / metadata.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use strata_records::{BatchBuilder, Compression, Record};
use strata_storage::{Partition, StorageError};
use strata_txn::{codec, TxnCoordinator, TxnEffect, TxnError, TxnMetadata};
use tracing::{info, warn};

use crate::groups::OFFSETS_TOPIC;
use crate::state::{Broker, TopicError};

pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";

/// Threads one transaction's markers are synced on.
const MARKER_SYNC_THREADS_MAX: usize = 8;

pub struct TxnInner {
    pub coordinator: TxnCoordinator,
    /// Transactional ids whose markers someone is writing now (a request or the sweep):
    /// nobody else writes markers for them meanwhile. Updated under the same lock as the
    /// state change that asked for the markers.
    ending: HashSet<String>,
    /// On a cluster member, the `__transaction_state` partitions this node leads and so
    /// coordinates (their ids are loaded); `None` on a standalone node (all of them).
    owned: Option<BTreeSet<i32>>,
}

pub struct TxnService {
    inner: Mutex<TxnInner>,
    next_sweep_ms: AtomicI64,
}

/// A transaction to end: markers for `producer_id` in each partition.
#[derive(Debug, Clone)]
struct Markers {
    transactional_id: String,
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    partitions: BTreeSet<(String, i32)>,
}

/// What a coordinator call left to do: records to sync, then transactions to end.
#[must_use]
pub struct TxnPending {
    sync: Vec<(Arc<Partition>, i64)>,
    markers: Vec<Markers>,
    failed: bool,
    /// The transactional id a client request changed, as (id, before, after): if its record
    /// does not become durable, the change is undone (Kafka's pending state), so the
    /// coordinator's memory is never ahead of its log — a retry writes it again, and no
    /// client goes on with a transaction the log does not know (which a failover would
    /// forget, leaving its partitions' last stable offset stuck or a commit refused).
    revert: Option<(String, Option<TxnMetadata>, Option<TxnMetadata>)>,
}

impl TxnService {
    pub fn new(config: strata_txn::TxnConfig) -> Self {
        Self {
            inner: Mutex::new(TxnInner {
                coordinator: TxnCoordinator::new(config),
                ending: HashSet::new(),
                owned: None,
            }),
            next_sweep_ms: AtomicI64::new(0),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, TxnInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Broker {
    /// `__transaction_state` partition of a transactional id (Kafka's partitioning).
    fn txn_partition_for(&self, transactional_id: &str) -> i32 {
        let partitions = self
            .image()
            .topic(TRANSACTION_STATE_TOPIC)
            .map(|t| t.partitions.len() as i32)
            .unwrap_or(self.config.transaction_state_log_num_partitions);
        strata_group::codec::partition_for(transactional_id, partitions.max(1))
    }

    /// Whether this node coordinates `transactional_id` now (it leads the id's partition of
    /// `__transaction_state` and loaded it).
    pub(crate) fn txn_coordinates(&self, inner: &TxnInner, transactional_id: &str) -> bool {
        inner
            .owned
            .as_ref()
            .is_none_or(|owned| owned.contains(&self.txn_partition_for(transactional_id)))
    }

    /// The broker that coordinates `transactional_id` (the leader of its partition of
    /// `__transaction_state`), if it has one.
    pub(crate) fn txn_coordinator_node(&self, transactional_id: &str) -> Option<i32> {
        let p = self.txn_partition_for(transactional_id);
        self.image()
            .topic(TRANSACTION_STATE_TOPIC)
            .and_then(|t| t.partitions.get(&p).map(|p| p.leader))
            .filter(|l| *l >= 0)
    }

    /// What a request about `transactional_id` gets when this node does not coordinate it:
    /// COORDINATOR_LOAD_IN_PROGRESS (retried here) while the metadata already makes this node
    /// the leader of its partition, whose records are still being loaded — FindCoordinator
    /// sends clients here from that moment — and NOT_COORDINATOR otherwise.
    pub(crate) fn txn_not_coordinated_code(&self, transactional_id: &str) -> i16 {
        if self.txn_coordinator_node(transactional_id) == Some(self.config.node_id) {
            crate::errors::COORDINATOR_LOAD_IN_PROGRESS
        } else {
            crate::errors::NOT_COORDINATOR
        }
    }

    /// [`Broker::txn_call`] for a request about `transactional_id`: `None` (see
    /// [`Broker::txn_not_coordinated_code`]) unless this node coordinates it, checked under
    /// the same lock.
    pub fn txn_call_owned<R>(
        &self,
        transactional_id: &str,
        f: impl FnOnce(&mut TxnCoordinator, &mut dyn FnMut() -> i64) -> (R, Vec<TxnEffect>),
    ) -> Option<(R, TxnPending)> {
        let mut inner = self.txns.lock();
        if !self.txn_coordinates(&inner, transactional_id) {
            return None;
        }
        let before = inner.coordinator.get(transactional_id).cloned();
        let (r, mut pending) = self.txn_call_locked(&mut inner, f);
        let after = inner.coordinator.get(transactional_id).cloned();
        if after != before {
            pending.revert = Some((transactional_id.to_string(), before, after));
        }
        Some((r, pending))
    }

    /// Undoes a client request's change to its transactional id whose record did not
    /// become durable (see [`TxnPending::revert`]), unless something changed it since.
    fn revert_unstored(&self, revert: Option<(String, Option<TxnMetadata>, Option<TxnMetadata>)>) {
        let Some((id, before, after)) = revert else {
            return;
        };
        let mut inner = self.txns.lock();
        if inner.coordinator.get(&id) != after.as_ref() {
            return;
        }
        match before {
            Some(m) => inner.coordinator.replay(m),
            None => {
                inner.coordinator.unload(|t| t == id);
            }
        }
        inner.ending.remove(&id);
    }

    /// Runs `f` on the coordinator (with a producer id allocator) and appends the records
    /// it asks to persist, under the lock.
    pub fn txn_call<R>(
        &self,
        f: impl FnOnce(&mut TxnCoordinator, &mut dyn FnMut() -> i64) -> (R, Vec<TxnEffect>),
    ) -> (R, TxnPending) {
        let mut inner = self.txns.lock();
        self.txn_call_locked(&mut inner, f)
    }

    fn txn_call_locked<R>(
        &self,
        inner: &mut TxnInner,
        f: impl FnOnce(&mut TxnCoordinator, &mut dyn FnMut() -> i64) -> (R, Vec<TxnEffect>),
    ) -> (R, TxnPending) {
        let mut allocate = || {
            // Ids come from blocks recorded in the metadata log; only a failing metadata
            // log refuses one, and then nothing else can be persisted either.
            self.allocate_producer_id().unwrap_or_else(|e| {
                warn!(error = %e, "could not allocate a producer id");
                -1
            })
        };
        let (r, effects) = f(&mut inner.coordinator, &mut allocate);
        let pending = self.append_txn_records(inner, effects);
        (r, pending)
    }

    fn append_txn_records(&self, inner: &mut TxnInner, effects: Vec<TxnEffect>) -> TxnPending {
        let mut pending = TxnPending {
            sync: Vec::new(),
            markers: Vec::new(),
            failed: false,
            revert: None,
        };
        let now = self.clock.steady_ms();
        for e in effects {
            let (id, value) = match e {
                TxnEffect::Persist(m) => {
                    let v = codec::encode_value(&m);
                    (m.transactional_id, Some(Bytes::from(v)))
                }
                TxnEffect::Remove(id) => (id, None),
                TxnEffect::WriteMarkers {
                    transactional_id,
                    producer_id,
                    producer_epoch,
                    commit,
                    partitions,
                } => {
                    inner.ending.insert(transactional_id.clone());
                    pending.markers.push(Markers {
                        transactional_id,
                        producer_id,
                        producer_epoch,
                        commit,
                        partitions,
                    });
                    continue;
                }
            };
            if let Err(e) = self.ensure_transaction_state_topic() {
                warn!(error = %e, "cannot create {TRANSACTION_STATE_TOPIC}");
                pending.failed = true;
                continue;
            }
            let p = self.txn_partition_for(&id);
            let Some(partition) = self
                .partition(TRANSACTION_STATE_TOPIC, p)
                .filter(|p| p.is_leader())
            else {
                // Not here, or led elsewhere now: only the partition's leader writes it.
                pending.failed = true;
                continue;
            };
            let mut builder = BatchBuilder::new(Compression::None);
            builder.push(Record {
                key: Some(Bytes::from(codec::encode_key(&id))),
                value,
                headers: vec![],
                timestamp_ms: now,
            });
            let appended = builder
                .build()
                .map_err(StorageError::InvalidBatch)
                .and_then(|batch| partition.append(&batch));
            match appended {
                Ok(info) => pending.sync.push((partition, info.last_offset + 1)),
                Err(e) => {
                    warn!(partition = p, error = %e, "could not append to {TRANSACTION_STATE_TOPIC}");
                    pending.failed = true;
                }
            }
        }
        pending
    }

    /// Creates `__transaction_state` on first use, as Kafka does.
    pub fn ensure_transaction_state_topic(&self) -> Result<(), TopicError> {
        // Replicated on a cluster (`transaction.state.log.replication.factor`, at most the
        // live brokers): transaction coordinators fail over with their partitions.
        let replication_factor = if self.quorum.is_some() {
            let live = self.image().live_brokers().count().max(1) as i16;
            self.config
                .transaction_state_log_replication_factor
                .clamp(1, live)
        } else {
            1
        };
        self.ensure_internal_topic(
            TRANSACTION_STATE_TOPIC,
            self.config.transaction_state_log_num_partitions,
            self.config.transaction_state_log_segment_bytes,
            replication_factor,
        )
    }

    /// Makes the records durable, then ends the transactions the call asked to end (markers
    /// synced, then the completion record synced). Blocking: call from a blocking thread.
    /// Returns false if anything could not be stored (retriable for the client), and the
    /// producer id/epoch the last ended transaction leaves the producer with.
    pub fn txn_finish_blocking(&self, pending: TxnPending) -> (bool, Option<(i64, i16)>) {
        let TxnPending {
            sync,
            markers,
            mut failed,
            revert,
        } = pending;
        for (p, offset) in &sync {
            if let Err(e) = p.sync_to(*offset) {
                warn!(error = %e, "could not sync {TRANSACTION_STATE_TOPIC}");
                failed = true;
            }
        }
        if !failed && !self.wait_replicated_blocking(&sync) {
            warn!("{TRANSACTION_STATE_TOPIC} records did not reach the in-sync replicas in time");
            failed = true;
        }
        if failed {
            // Not durable: the client is told to retry, and the coordinator forgets the
            // change (markers of an EndTxn included: the retry writes Prepare again).
            self.revert_unstored(revert);
        }
        let mut next = None;
        for m in markers {
            if failed {
                // The Prepare record may not be durable: leave the transaction to the sweep.
                self.txns.lock().ending.remove(&m.transactional_id);
                continue;
            }
            let written = self.write_markers(&m);
            let completed = written.then(|| {
                let id = m.transactional_id.clone();
                let now = self.clock.steady_ms();
                let (r, pending) = self.txn_call(|c, alloc| c.complete(&id, now, alloc));
                let synced = pending
                    .sync
                    .iter()
                    .all(|(p, offset)| p.sync_to(*offset).is_ok())
                    && !pending.failed
                    && self.wait_replicated_blocking(&pending.sync);
                if !synced {
                    warn!(transactional_id = %id, "the completed transaction's record was not stored in time");
                }
                (r, synced)
            });
            self.txns.lock().ending.remove(&m.transactional_id);
            match completed {
                Some((r, true)) => next = r.or(next),
                _ => failed = true,
            }
        }
        self.data_arrived.notify_waiters();
        (!failed, next)
    }

    /// Writes and syncs one transaction's markers: in the partitions led here directly, in
    /// the others through their leaders (WriteTxnMarkers on the inter-broker channel); each
    /// is answered once the partition's in-sync replicas have it. False if any partition
    /// refused or could not be reached (the sweep writes them again).
    fn write_markers(&self, m: &Markers) -> bool {
        let mut written: Vec<(Arc<Partition>, i64)> = Vec::new();
        let mut remote: BTreeMap<i32, Vec<(String, i32)>> = BTreeMap::new();
        let mut ok = true;
        for (topic, p) in &m.partitions {
            let local = self.partition(topic, *p).filter(|p| p.is_leader());
            let Some(partition) = local else {
                if self.quorum.is_some() {
                    let leader = self
                        .image()
                        .topic(topic)
                        .map(|t| t.partitions.get(p).map(|p| p.leader));
                    match leader {
                        None => {} // topic deleted since: nothing to close there
                        Some(Some(l)) if l >= 0 && l != self.config.node_id => {
                            remote.entry(l).or_default().push((topic.clone(), *p));
                        }
                        // Leaderless, or led here but not open yet: later.
                        Some(_) => ok = false,
                    }
                } else if self.availability(topic, *p) != crate::state::Availability::Unknown {
                    ok = false; // not open yet (recovering): the sweep writes it later
                }
                continue;
            };
            let appended = if topic == OFFSETS_TOPIC {
                // The marker and the offsets it decides change together, under the group
                // coordinator's lock (its records are appended under it too).
                let mut groups = self.groups.coordinator();
                let r = partition.append_marker(m.producer_id, m.producer_epoch, m.commit, 0);
                if r.is_ok() {
                    groups.complete_transaction(*p, m.producer_id, m.commit);
                }
                r
            } else {
                partition.append_marker(m.producer_id, m.producer_epoch, m.commit, 0)
            };
            match appended {
                Ok(info) => written.push((partition, info.last_offset + 1)),
                Err(e) => {
                    warn!(topic = %topic, partition = p, error = %e, "could not write a transaction marker");
                    ok = false;
                }
            }
        }
        // The device takes parallel flushes far better than one after another (as produce).
        let sync = |(partition, end): &(Arc<Partition>, i64)| match partition.sync_to(*end) {
            Ok(()) => true,
            Err(e) => {
                warn!(topic = %partition.topic, partition = partition.partition, error = %e, "could not sync a transaction marker");
                false
            }
        };
        // Every partition is synced even after a failure (the failure is reported once).
        let failures = |part: &[(Arc<Partition>, i64)]| part.iter().filter(|w| !sync(w)).count();
        let failed = if written.len() <= 1 {
            failures(&written)
        } else {
            std::thread::scope(|scope| {
                let chunk = written.len().div_ceil(MARKER_SYNC_THREADS_MAX);
                let handles: Vec<_> = written
                    .chunks(chunk)
                    .map(|part| scope.spawn(move || failures(part)))
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap_or(1)).sum()
            })
        };
        let synced = failed == 0;
        let replicated = synced && self.wait_replicated_blocking(&written);
        for (node, partitions) in remote {
            ok &= self.write_markers_remotely(node, m, &partitions);
        }
        ok && synced && replicated
    }

    /// Sends one transaction's markers for `partitions` to their leader, broker `node`.
    fn write_markers_remotely(&self, node: i32, m: &Markers, partitions: &[(String, i32)]) -> bool {
        use kafka_protocol::messages::write_txn_markers_request as w;
        use kafka_protocol::messages::{ApiKey, ProducerId, TopicName, WriteTxnMarkersRequest};
        use kafka_protocol::protocol::StrBytes;
        let mut topics: Vec<w::WritableTxnMarkerTopic> = Vec::new();
        for (topic, p) in partitions {
            match topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
                Some(t) => t.partition_indexes.push(*p),
                None => topics.push(
                    w::WritableTxnMarkerTopic::default()
                        .with_name(TopicName(StrBytes::from_string(topic.clone())))
                        .with_partition_indexes(vec![*p]),
                ),
            }
        }
        let request =
            WriteTxnMarkersRequest::default().with_markers(vec![w::WritableTxnMarker::default()
                .with_producer_id(ProducerId(m.producer_id))
                .with_producer_epoch(m.producer_epoch)
                .with_transaction_result(m.commit)
                .with_topics(topics)
                .with_coordinator_epoch(0)]);
        let answered: Result<kafka_protocol::messages::WriteTxnMarkersResponse, String> =
            crate::inter_broker::call_blocking(self, node, ApiKey::WriteTxnMarkers, 1, &request);
        match answered {
            Ok(resp) => {
                let refused: Vec<(String, i32, i16)> = resp
                    .markers
                    .iter()
                    .flat_map(|m| &m.topics)
                    .flat_map(|t| {
                        t.partitions
                            .iter()
                            .map(move |p| (t.name.to_string(), p.partition_index, p.error_code))
                    })
                    .filter(|(_, _, code)| *code != crate::errors::NONE)
                    .collect();
                let answered_all = resp
                    .markers
                    .iter()
                    .flat_map(|m| &m.topics)
                    .map(|t| t.partitions.len())
                    .sum::<usize>()
                    == partitions.len();
                for (topic, p, code) in &refused {
                    warn!(node, topic = %topic, partition = p, code, "a leader refused a transaction marker");
                }
                refused.is_empty() && answered_all
            }
            Err(e) => {
                warn!(node, error = %e, "could not send transaction markers");
                false
            }
        }
    }

    /// Async form of [`Broker::txn_finish_blocking`].
    pub async fn txn_finish(self: &Arc<Self>, pending: TxnPending) -> (bool, Option<(i64, i16)>) {
        if pending.sync.is_empty() && pending.markers.is_empty() {
            return (!pending.failed, None);
        }
        let b = self.clone();
        tokio::task::spawn_blocking(move || b.txn_finish_blocking(pending))
            .await
            .unwrap_or((false, None))
    }

    /// Replays `__transaction_state` (at startup, after the groups are loaded, before
    /// serving): every partition on a standalone node; on a cluster member the ones it leads
    /// (see [`Broker::refresh_txn_coordination`] for later changes). The transactions a stop
    /// interrupted are ended once the partitions they wrote are open.
    pub(crate) fn load_transactions(&self) -> Result<(), TopicError> {
        let partitions: Vec<Arc<Partition>> = self
            .image()
            .topic(TRANSACTION_STATE_TOPIC)
            .map(|t| t.partitions.keys().copied().collect::<Vec<i32>>())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|p| self.partition(TRANSACTION_STATE_TOPIC, p))
            .filter(|p| self.quorum.is_none() || p.is_leader())
            .collect();
        let mut inner = self.txns.lock();
        if self.quorum.is_some() {
            inner.owned = Some(partitions.iter().map(|p| p.partition).collect());
        }
        let (mut records, mut bad) = (0u64, 0u64);
        for partition in &partitions {
            let (r, b) = replay_txn_partition(&mut inner.coordinator, partition)?;
            records += r;
            bad += b;
        }
        if !partitions.is_empty() {
            info!(records, skipped = bad, "transaction state loaded");
        }
        Ok(())
    }

    /// A cluster member coordinates the transactional ids of the `__transaction_state`
    /// partitions it leads: after each metadata change, a partition it just became leader of
    /// is replayed (and the transactions its last coordinator left half-ended are ended by
    /// the next sweep, which is brought forward); the ids of one it lost are forgotten. Runs
    /// outside every metadata lock (the transaction lock comes first in the lock order).
    pub(crate) fn refresh_txn_coordination(&self) {
        if self.quorum.is_none() {
            return;
        }
        let count = self
            .image()
            .topic(TRANSACTION_STATE_TOPIC)
            .map_or(0, |t| t.partitions.len() as i32);
        let led: BTreeSet<i32> = (0..count)
            .filter(|&p| {
                self.partition(TRANSACTION_STATE_TOPIC, p)
                    .is_some_and(|p| p.is_leader())
            })
            .collect();
        let mut inner = self.txns.lock();
        let owned = inner.owned.clone().unwrap_or_default();
        if owned == led {
            return;
        }
        let partition_of = |id: &str| strata_group::codec::partition_for(id, count.max(1));
        let lost: BTreeSet<i32> = owned.difference(&led).copied().collect();
        if !lost.is_empty() {
            let forgotten = inner
                .coordinator
                .unload(|id| lost.contains(&partition_of(id)));
            info!(
                partitions = ?lost,
                transactional_ids = forgotten,
                "no longer coordinating the transactions of {TRANSACTION_STATE_TOPIC}"
            );
        }
        let mut loaded = BTreeSet::new();
        for &p in led.difference(&owned) {
            let Some(partition) = self.partition(TRANSACTION_STATE_TOPIC, p) else {
                continue;
            };
            // Whatever an earlier term left here is replaced by the log's contents.
            inner.coordinator.unload(|id| partition_of(id) == p);
            match replay_txn_partition(&mut inner.coordinator, &partition) {
                Ok((records, _)) => {
                    loaded.insert(p);
                    if records > 0 {
                        info!(
                            partition = p,
                            records,
                            "now coordinating the transactions of {TRANSACTION_STATE_TOPIC}"
                        );
                    }
                }
                Err(e) => {
                    inner.coordinator.unload(|id| partition_of(id) == p);
                    warn!(partition = p, error = %e, "could not load transaction state");
                }
            }
        }
        if !loaded.is_empty() {
            info!(partitions = ?loaded, "loaded transaction coordination for {TRANSACTION_STATE_TOPIC} partitions");
        }
        let mut now_owned: BTreeSet<i32> = owned.intersection(&led).copied().collect();
        now_owned.extend(&loaded);
        inner.owned = Some(now_owned);
        if !loaded.is_empty() {
            self.txns.next_sweep_ms.store(0, Ordering::Relaxed);
        }
    }

    /// Ends the transactions a crash left between their Prepare record and their markers
    /// (once the partitions are recovered, since the markers go there).
    pub(crate) fn finish_interrupted_transactions(&self) {
        let (ok, _) = self.txn_finish_blocking(self.take_unfinished());
        if !ok {
            warn!(
                "some interrupted transactions could not be ended yet; retrying in the background"
            );
        }
    }

    /// Transactions left in a Prepare state with nobody writing their markers. Their
    /// Prepare record is written again first: after a failed write it may never have become
    /// durable, and markers must not be out before it is.
    fn take_unfinished(&self) -> TxnPending {
        let mut inner = self.txns.lock();
        let mut effects: Vec<TxnEffect> = Vec::new();
        for e in inner.coordinator.unfinished() {
            let TxnEffect::WriteMarkers {
                transactional_id, ..
            } = &e
            else {
                continue;
            };
            if inner.ending.contains(transactional_id) {
                continue;
            }
            if let Some(m) = inner.coordinator.get(transactional_id) {
                effects.push(TxnEffect::Persist(m.clone()));
            }
            effects.push(e);
        }
        if !effects.is_empty() {
            info!(
                transactions = effects.len() / 2,
                "ending interrupted transactions"
            );
        }
        self.append_txn_records(&mut inner, effects)
    }

    /// The coordinator's clock: aborts timed-out transactions (fencing their producers),
    /// expires idle transactional ids, retries endings that failed. Called periodically;
    /// works every `transaction.abort.timed.out.transaction.cleanup.interval.ms`.
    pub async fn txn_tick(self: &Arc<Self>) {
        let now = self.clock.steady_ms();
        let due = self.txns.next_sweep_ms.load(Ordering::Relaxed);
        if now < due {
            return;
        }
        let interval =
            self.config
                .transaction_abort_timed_out_transaction_cleanup_interval_ms as i64;
        self.txns
            .next_sweep_ms
            .store(now + interval.max(10), Ordering::Relaxed);
        let b = self.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let (_, pending) = b.txn_call(|c, alloc| ((), c.tick(now, alloc)));
            let (timed_out, _) = b.txn_finish_blocking(pending);
            let (retried, _) = b.txn_finish_blocking(b.take_unfinished());
            if !(timed_out && retried) {
                warn!("could not end some transactions; retrying at the next sweep");
            }
        })
        .await;
    }
}

/// A transactional write's verification failure, for the produce path's error codes.
pub fn verify_write(
    inner: &TxnInner,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    topic: &str,
    partition: i32,
) -> Result<(), TxnError> {
    inner.coordinator.verify(
        transactional_id,
        producer_id,
        producer_epoch,
        topic,
        partition,
    )
}

/// Replays one `__transaction_state` partition into the coordinator (latest record per id
/// wins; a tombstone removes the id). Returns (records, skipped).
fn replay_txn_partition(
    coordinator: &mut TxnCoordinator,
    partition: &Partition,
) -> Result<(u64, u64), StorageError> {
    let (mut records, mut bad) = (0u64, 0u64);
    crate::groups::for_each_batch(partition, |header, batch| {
        if header.is_control() {
            return;
        }
        let decoded = match strata_records::decode_records(batch) {
            Ok(d) => d,
            Err(e) => {
                bad += 1;
                warn!(error = %e, "undecodable batch in {TRANSACTION_STATE_TOPIC}");
                return;
            }
        };
        for r in decoded {
            let Some(key) = r.key.as_ref() else { continue };
            records += 1;
            let id = match codec::decode_key(key) {
                Ok(id) => id,
                Err(e) => {
                    bad += 1;
                    warn!(error = %e, offset = r.offset, "skipping record of {TRANSACTION_STATE_TOPIC}");
                    continue;
                }
            };
            match r.value.as_deref() {
                None => coordinator.replay_removal(&id),
                Some(v) => match codec::decode_value(&id, v) {
                    Ok(m) => coordinator.replay(m),
                    Err(e) => {
                        bad += 1;
                        warn!(error = %e, offset = r.offset, "skipping record of {TRANSACTION_STATE_TOPIC}");
                    }
                },
            }
        }
    })?;
    Ok((records, bad))
}
