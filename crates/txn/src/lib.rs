//! The transaction coordinator as a pure state machine (KIP-98, with KIP-890's fixes):
//! requests and time in, answers and effects (records to persist, markers to write) out.
//! The broker persists its effects in `__transaction_state` and writes the markers.
//!
//! One transactional id moves through Kafka's states:
//!
//! ```text
//!  Empty --AddPartitions--> Ongoing --EndTxn(commit)--> PrepareCommit --markers--> CompleteCommit
//!    ^                        |   \--EndTxn(abort) / timeout--> PrepareAbort --markers--> CompleteAbort
//!    +-- InitProducerId ------+ (aborts an ongoing transaction, bumps the epoch: zombie fencing)
//! ```
//!
//! KIP-890: for clients that speak it (EndTxn v5+), every transaction ends with an epoch bump
//! (`complete` returns the epoch the producer uses next), so a late EndTxn or produce from a
//! finished transaction carries an old epoch and is fenced instead of deciding a later
//! transaction (KAFKA-17754). Older clients keep their epoch (a bump would fence them), as in
//! Kafka; they still get part 1 (`verify`: no transactional write to a partition outside the
//! producer's ongoing transaction).

pub mod codec;

use std::collections::{BTreeMap, BTreeSet};

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TxnError {
    #[error("invalid transactional id")]
    InvalidTransactionalId,
    #[error("transaction timeout {0} ms is above transaction.max.timeout.ms or not positive")]
    InvalidTransactionTimeout(i32),
    #[error("producer id {0} does not own this transactional id")]
    InvalidProducerIdMapping(i64),
    #[error("producer epoch {got} is fenced by epoch {current}")]
    ProducerFenced { got: i16, current: i16 },
    #[error("another transaction operation is in progress")]
    ConcurrentTransactions,
    #[error("the transaction is in state {0:?}")]
    InvalidTxnState(TxnState),
    #[error("partition {0}-{1} was not added to the transaction")]
    PartitionNotInTransaction(String, i32),
}

pub type Result<T> = std::result::Result<T, TxnError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
}

impl TxnState {
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnConfig {
    /// `transaction.max.timeout.ms`.
    pub max_timeout_ms: i32,
    /// `transactional.id.expiration.ms`: an id with no transaction in progress and no
    /// activity for this long is forgotten (its next InitProducerId gets a new producer id).
    pub transactional_id_expiration_ms: i64,
}

impl Default for TxnConfig {
    fn default() -> Self {
        Self {
            max_timeout_ms: 900_000,
            transactional_id_expiration_ms: 7 * 24 * 3600 * 1000,
        }
    }
}

/// A transactional id's state (what `__transaction_state` will hold per key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMetadata {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// The epoch before the last end-of-transaction bump (-1: none), so a retried EndTxn
    /// of the transaction that just finished is recognised.
    pub prev_producer_epoch: i16,
    /// The EndTxn came from a KIP-890 (transaction version 2) client: bump the epoch at
    /// completion. Older clients keep their epoch and would be fenced by a bump.
    pub bump_on_complete: bool,
    pub timeout_ms: i32,
    pub state: TxnState,
    /// Partitions written in the current transaction (topic, partition).
    pub partitions: BTreeSet<(String, i32)>,
    pub start_ms: i64,
    pub last_update_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnEffect {
    /// Persist this transactional id's state before answering.
    Persist(TxnMetadata),
    /// Persist that this transactional id is gone (expired).
    Remove(String),
    /// Write a commit/abort marker for `producer_id` with `producer_epoch` to each partition,
    /// then call [`TxnCoordinator::complete`].
    WriteMarkers {
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        partitions: BTreeSet<(String, i32)>,
    },
}

#[derive(Default)]
pub struct TxnCoordinator {
    config: TxnConfig,
    txns: BTreeMap<String, TxnMetadata>,
    effects: Vec<TxnEffect>,
}

impl TxnCoordinator {
    pub fn new(config: TxnConfig) -> Self {
        Self {
            config,
            txns: BTreeMap::new(),
            effects: Vec::new(),
        }
    }

    fn take(&mut self) -> Vec<TxnEffect> {
        std::mem::take(&mut self.effects)
    }

    pub fn get(&self, transactional_id: &str) -> Option<&TxnMetadata> {
        self.txns.get(transactional_id)
    }

    pub fn list(&self) -> impl Iterator<Item = &TxnMetadata> {
        self.txns.values()
    }

    /// Rebuilds state from a persisted record (latest per id wins).
    pub fn replay(&mut self, metadata: TxnMetadata) {
        self.txns
            .insert(metadata.transactional_id.clone(), metadata);
    }

    /// Forgets the transactional ids `moved` selects (their `__transaction_state` partition is
    /// coordinated elsewhere now, or is about to be replayed afresh). Returns how many.
    pub fn unload(&mut self, mut moved: impl FnMut(&str) -> bool) -> usize {
        let before = self.txns.len();
        self.txns.retain(|id, _| !moved(id));
        before - self.txns.len()
    }

    /// Replays a removal (tombstone).
    pub fn replay_removal(&mut self, transactional_id: &str) {
        self.txns.remove(transactional_id);
    }

    /// After loading: transactions that were being ended when the coordinator stopped
    /// (PrepareCommit / PrepareAbort persisted, markers maybe not all written). Their
    /// markers are written again (a marker for a transaction already closed on a partition
    /// changes nothing there), then [`TxnCoordinator::complete`] is called as usual.
    pub fn unfinished(&self) -> Vec<TxnEffect> {
        self.txns
            .values()
            .filter(|m| matches!(m.state, TxnState::PrepareCommit | TxnState::PrepareAbort))
            .map(|m| TxnEffect::WriteMarkers {
                transactional_id: m.transactional_id.clone(),
                producer_id: m.producer_id,
                producer_epoch: m.producer_epoch,
                commit: m.state == TxnState::PrepareCommit,
                partitions: m.partitions.clone(),
            })
            .collect()
    }

    fn persist(&mut self, id: &str) {
        if let Some(m) = self.txns.get(id) {
            self.effects.push(TxnEffect::Persist(m.clone()));
        }
    }

    /// Starts aborting `id`'s ongoing transaction (epoch already bumped by the caller when
    /// fencing): PrepareAbort + markers.
    fn begin_end(&mut self, id: &str, commit: bool, now: i64) {
        let m = self.txns.get_mut(id).expect("txn");
        m.state = if commit {
            TxnState::PrepareCommit
        } else {
            TxnState::PrepareAbort
        };
        m.last_update_ms = now;
        let effect = TxnEffect::WriteMarkers {
            transactional_id: id.to_string(),
            producer_id: m.producer_id,
            producer_epoch: m.producer_epoch,
            commit,
            partitions: m.partitions.clone(),
        };
        self.persist(id);
        self.effects.push(effect);
    }

    /// InitProducerId with a transactional id: a new id gets a fresh producer id; an existing
    /// one gets its epoch bumped (fencing older instances), aborting an ongoing transaction
    /// first. `allocate` hands out a never-used producer id.
    pub fn init_producer_id(
        &mut self,
        transactional_id: &str,
        timeout_ms: i32,
        now: i64,
        allocate: &mut dyn FnMut() -> i64,
    ) -> (Result<(i64, i16)>, Vec<TxnEffect>) {
        self.init_producer_id_from(transactional_id, timeout_ms, None, now, allocate)
    }

    /// InitProducerId from a producer that already has an id and epoch (KIP-360, v3+: it
    /// bumps its epoch to recover from an abortable error). Only the current instance may:
    /// an id/epoch that is not the current one (or the one just before a bump) is fenced.
    pub fn init_producer_id_from(
        &mut self,
        transactional_id: &str,
        timeout_ms: i32,
        current: Option<(i64, i16)>,
        now: i64,
        allocate: &mut dyn FnMut() -> i64,
    ) -> (Result<(i64, i16)>, Vec<TxnEffect>) {
        if transactional_id.is_empty() {
            return (Err(TxnError::InvalidTransactionalId), vec![]);
        }
        if timeout_ms <= 0 || timeout_ms > self.config.max_timeout_ms {
            return (Err(TxnError::InvalidTransactionTimeout(timeout_ms)), vec![]);
        }
        if let (Some((producer_id, epoch)), Some(m)) = (
            current.filter(|c| c.0 >= 0),
            self.txns.get(transactional_id),
        ) {
            let known = producer_id == m.producer_id
                && (epoch == m.producer_epoch || epoch == m.prev_producer_epoch);
            if !known {
                return (
                    Err(TxnError::ProducerFenced {
                        got: epoch,
                        current: m.producer_epoch,
                    }),
                    vec![],
                );
            }
        }
        let id = transactional_id.to_string();
        match self.txns.get(&id).map(|m| m.state) {
            None => {
                let m = TxnMetadata {
                    transactional_id: id.clone(),
                    producer_id: allocate(),
                    producer_epoch: 0,
                    prev_producer_epoch: -1,
                    bump_on_complete: false,
                    timeout_ms,
                    state: TxnState::Empty,
                    partitions: BTreeSet::new(),
                    start_ms: -1,
                    last_update_ms: now,
                };
                self.txns.insert(id.clone(), m);
            }
            Some(TxnState::PrepareCommit | TxnState::PrepareAbort) => {
                return (Err(TxnError::ConcurrentTransactions), vec![]);
            }
            Some(state) => {
                let m = self.txns.get_mut(&id).expect("txn");
                m.prev_producer_epoch = m.producer_epoch;
                bump_epoch(m, allocate);
                m.bump_on_complete = false;
                m.timeout_ms = timeout_ms;
                m.last_update_ms = now;
                if state == TxnState::Ongoing {
                    // The old instance's transaction is aborted under the new epoch: its
                    // markers fence anything it still sends.
                    self.begin_end(&id, false, now);
                    let m = self.txns.get(&id).expect("txn");
                    return (Ok((m.producer_id, m.producer_epoch)), self.take());
                }
                m.state = TxnState::Empty;
                m.partitions.clear();
            }
        }
        self.persist(&id);
        let m = &self.txns[&id];
        (Ok((m.producer_id, m.producer_epoch)), self.take())
    }

    fn check_producer(&self, id: &str, producer_id: i64, epoch: i16) -> Result<&TxnMetadata> {
        let m = self
            .txns
            .get(id)
            .ok_or(TxnError::InvalidProducerIdMapping(producer_id))?;
        if m.producer_id != producer_id {
            return Err(TxnError::InvalidProducerIdMapping(producer_id));
        }
        if epoch != m.producer_epoch {
            return Err(TxnError::ProducerFenced {
                got: epoch,
                current: m.producer_epoch,
            });
        }
        Ok(m)
    }

    /// AddPartitionsToTxn (and AddOffsetsToTxn with the group's offsets partition).
    pub fn add_partitions(
        &mut self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
        now: i64,
    ) -> (Result<()>, Vec<TxnEffect>) {
        let state = match self.check_producer(transactional_id, producer_id, epoch) {
            Ok(m) => m.state,
            Err(e) => return (Err(e), vec![]),
        };
        match state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                return (Err(TxnError::ConcurrentTransactions), vec![])
            }
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                let m = self.txns.get_mut(transactional_id).expect("txn");
                m.state = TxnState::Ongoing;
                m.partitions.clear();
                m.start_ms = now;
            }
            TxnState::Ongoing => {}
        }
        let m = self.txns.get_mut(transactional_id).expect("txn");
        let before = m.partitions.len();
        m.partitions.extend(partitions.iter().cloned());
        m.last_update_ms = now;
        if m.partitions.len() != before || state != TxnState::Ongoing {
            self.persist(transactional_id);
        }
        (Ok(()), self.take())
    }

    /// KIP-890 part 1: may this producer write transactional data (or, for the group's
    /// offsets partition, transactional offsets) to this partition now? Only inside its
    /// ongoing transaction, under its current epoch, to a partition added to it.
    pub fn verify(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        topic: &str,
        partition: i32,
    ) -> Result<()> {
        let m = self.check_producer(transactional_id, producer_id, epoch)?;
        if m.state != TxnState::Ongoing {
            return Err(TxnError::InvalidTxnState(m.state));
        }
        if !m.partitions.contains(&(topic.to_string(), partition)) {
            return Err(TxnError::PartitionNotInTransaction(
                topic.to_string(),
                partition,
            ));
        }
        Ok(())
    }

    /// EndTxn. A retry of the EndTxn that finished the last transaction succeeds again; any
    /// other EndTxn outside an ongoing transaction is refused.
    /// `kip890`: the client bumps its epoch per transaction (EndTxn v5+).
    pub fn end_txn(
        &mut self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        kip890: bool,
        now: i64,
    ) -> (Result<()>, Vec<TxnEffect>) {
        let m = match self.txns.get(transactional_id) {
            Some(m) if m.producer_id == producer_id => m,
            _ => return (Err(TxnError::InvalidProducerIdMapping(producer_id)), vec![]),
        };
        // A retry of the EndTxn that finished the last transaction, under the epoch that
        // transaction had (the previous one if completion bumped it).
        let last_epoch = if m.bump_on_complete {
            m.prev_producer_epoch
        } else {
            m.producer_epoch
        };
        let retry_of_last = epoch == last_epoch
            && matches!(
                (m.state, commit),
                (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false)
            );
        if retry_of_last {
            return (Ok(()), vec![]);
        }
        if epoch != m.producer_epoch {
            return (
                Err(TxnError::ProducerFenced {
                    got: epoch,
                    current: m.producer_epoch,
                }),
                vec![],
            );
        }
        match m.state {
            TxnState::Ongoing => {
                self.txns
                    .get_mut(transactional_id)
                    .expect("txn")
                    .bump_on_complete = kip890;
                self.begin_end(transactional_id, commit, now);
                (Ok(()), self.take())
            }
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                (Err(TxnError::ConcurrentTransactions), vec![])
            }
            // Aborting a transaction that never began under this epoch (its
            // AddPartitionsToTxn failed — say the topic was not known here yet — and
            // librdkafka aborts anyway): nothing to undo, and nothing can have been
            // committed since InitProducerId. A refusal would be fatal to the client.
            TxnState::Empty if !commit => (Ok(()), vec![]),
            s => (Err(TxnError::InvalidTxnState(s)), vec![]),
        }
    }

    /// The markers of `transactional_id`'s ending transaction are written: CompleteCommit or
    /// CompleteAbort, and (KIP-890 part 2) the epoch moves on so nothing from the finished
    /// transaction can touch the next one. Returns the epoch the producer uses next.
    pub fn complete(
        &mut self,
        transactional_id: &str,
        now: i64,
        allocate: &mut dyn FnMut() -> i64,
    ) -> (Option<(i64, i16)>, Vec<TxnEffect>) {
        let Some(m) = self.txns.get_mut(transactional_id) else {
            return (None, vec![]);
        };
        m.state = match m.state {
            TxnState::PrepareCommit => TxnState::CompleteCommit,
            TxnState::PrepareAbort => TxnState::CompleteAbort,
            _ => return (None, vec![]),
        };
        if m.bump_on_complete {
            m.prev_producer_epoch = m.producer_epoch;
            bump_epoch(m, allocate);
        }
        m.partitions.clear();
        m.last_update_ms = now;
        let next = (m.producer_id, m.producer_epoch);
        self.persist(transactional_id);
        (Some(next), self.take())
    }

    /// Aborts transactions open longer than their timeout (bumping the epoch, which fences
    /// the producer that let it time out).
    pub fn tick(&mut self, now: i64, allocate: &mut dyn FnMut() -> i64) -> Vec<TxnEffect> {
        let expiration = self.config.transactional_id_expiration_ms;
        let idle: Vec<String> = self
            .txns
            .values()
            .filter(|m| {
                matches!(
                    m.state,
                    TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
                ) && now >= m.last_update_ms.saturating_add(expiration)
            })
            .map(|m| m.transactional_id.clone())
            .collect();
        for id in idle {
            self.txns.remove(&id);
            self.effects.push(TxnEffect::Remove(id));
        }
        let expired: Vec<String> = self
            .txns
            .values()
            .filter(|m| m.state == TxnState::Ongoing && now >= m.start_ms + m.timeout_ms as i64)
            .map(|m| m.transactional_id.clone())
            .collect();
        for id in expired {
            let m = self.txns.get_mut(&id).expect("txn");
            m.prev_producer_epoch = m.producer_epoch;
            bump_epoch(m, allocate);
            m.bump_on_complete = false;
            self.begin_end(&id, false, now);
        }
        self.take()
    }
}

/// The next epoch; an exhausted epoch moves to a fresh producer id at epoch 0.
fn bump_epoch(m: &mut TxnMetadata, allocate: &mut dyn FnMut() -> i64) {
    if m.producer_epoch >= i16::MAX - 1 {
        m.producer_id = allocate();
        m.producer_epoch = 0;
    } else {
        m.producer_epoch += 1;
    }
}
