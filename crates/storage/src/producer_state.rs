//! Idempotent producer state of one partition (KIP-98): per producer id, its epoch and the
//! sequence numbers and offsets of its last five batches.
//!
//! On append, a batch from producer id `p` with epoch `e` and sequences `first..=last` is
//! - **refused** (`InvalidProducerEpoch`) when `e` is older than `p`'s epoch (a zombie);
//! - **a duplicate** when the same epoch and sequences are among the last five batches: it is
//!   not stored again and the append answers with its original offsets;
//! - **refused** (`OutOfOrderSequence`) when it does not continue the last sequence (a gap),
//!   or starts a new epoch anywhere but at sequence 0;
//! - **accepted** otherwise, including any sequence for a producer id with no state (its
//!   state may have expired; Kafka does the same).
//!
//! Transactions: a transactional batch opens its producer's transaction on this partition
//! (the first such offset bounds the last stable offset); a marker closes it, and an abort
//! marker records the aborted range for read_committed fetches.
//!
//! Snapshot file (`<offset, 20 digits>.snapshot` in the partition directory, state after every
//! batch below that offset): int16 version 2, int32 producer count, then per producer: int64
//! id, int16 epoch, int64 last timestamp, int8 batch count, per batch int32 first sequence,
//! int32 last sequence, int64 first offset, int64 last offset; int32 open transaction count,
//! per open transaction int64 producer id, int64 first offset; int32 aborted count, per
//! aborted transaction int64 producer id, int64 first offset, int64 marker offset; then the
//! CRC-32C of all the preceding bytes. (Version 1 is the same without the transactions.) Recovery loads the newest snapshot at or below the log end offset and
//! replays the batch headers after it; a missing or corrupt snapshot means a replay from
//! the log start.

use std::collections::{BTreeMap, VecDeque};

use strata_records::BatchHeader;

/// How many batches per producer are remembered for duplicate detection (Kafka's 5, the
/// most a producer may have in flight with idempotence).
pub const BATCHES_PER_PRODUCER: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMetadata {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: i64,
    pub last_offset: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: i16,
    pub last_timestamp: i64,
    pub batches: VecDeque<BatchMetadata>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Not idempotent, or in sequence: store it.
    Append,
    /// Already stored at these offsets.
    Duplicate { first_offset: i64, last_offset: i64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SequenceError {
    #[error("producer {producer_id} epoch {epoch} is older than its current epoch {current}")]
    InvalidProducerEpoch {
        producer_id: i64,
        epoch: i16,
        current: i16,
    },
    #[error("producer {producer_id}: sequence {got} does not follow {last}")]
    OutOfOrderSequence {
        producer_id: i64,
        got: i32,
        last: i32,
    },
}

fn last_seq(h: &BatchHeader) -> i32 {
    // Sequences wrap at i32::MAX back to 0, as in Kafka.
    let last = h.base_sequence as i64 + h.last_offset_delta as i64;
    if last > i32::MAX as i64 {
        (last - i32::MAX as i64 - 1) as i32
    } else {
        last as i32
    }
}

fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

/// A transaction that was aborted: its data lies in `[first_offset, last_offset)` and its
/// abort marker at `last_offset`. read_committed consumers get these to drop its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerState {
    producers: BTreeMap<i64, ProducerEntry>,
    /// Open transactions on this partition: producer id -> offset of its first batch.
    ongoing: BTreeMap<i64, i64>,
    /// Aborted transactions still in the log, by marker offset.
    aborted: Vec<AbortedTxn>,
}

impl ProducerState {
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    pub fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Every producer with state, by id.
    pub fn iter(&self) -> impl Iterator<Item = (i64, &ProducerEntry)> {
        self.producers.iter().map(|(id, e)| (*id, e))
    }

    /// Checks one batch against the state (and against `pending`: batches of the same
    /// request checked before it, not yet applied).
    /// Only the epoch: for batches a coordinator writes on a producer's behalf.
    pub fn check_epoch(&self, h: &BatchHeader) -> Result<(), SequenceError> {
        match self.producers.get(&h.producer_id) {
            Some(e) if h.producer_epoch < e.epoch => Err(SequenceError::InvalidProducerEpoch {
                producer_id: h.producer_id,
                epoch: h.producer_epoch,
                current: e.epoch,
            }),
            _ => Ok(()),
        }
    }

    pub fn check(
        &self,
        h: &BatchHeader,
        pending: &[BatchHeader],
    ) -> Result<SequenceCheck, SequenceError> {
        if h.producer_id < 0 {
            return Ok(SequenceCheck::Append);
        }
        // The latest view of this producer: the state, then earlier batches of this request.
        let mut epoch = self.producers.get(&h.producer_id).map(|e| e.epoch);
        let mut last = self
            .producers
            .get(&h.producer_id)
            .and_then(|e| e.batches.back().map(|b| b.last_seq));
        for p in pending.iter().filter(|p| p.producer_id == h.producer_id) {
            epoch = Some(p.producer_epoch);
            last = Some(last_seq(p));
        }
        let Some(current) = epoch else {
            return Ok(SequenceCheck::Append);
        };
        if h.producer_epoch < current {
            return Err(SequenceError::InvalidProducerEpoch {
                producer_id: h.producer_id,
                epoch: h.producer_epoch,
                current,
            });
        }
        if h.producer_epoch > current {
            return if h.base_sequence == 0 {
                Ok(SequenceCheck::Append)
            } else {
                Err(SequenceError::OutOfOrderSequence {
                    producer_id: h.producer_id,
                    got: h.base_sequence,
                    last: -1,
                })
            };
        }
        if let Some(entry) = self.producers.get(&h.producer_id) {
            if entry.epoch == h.producer_epoch {
                let last = last_seq(h);
                if let Some(b) = entry
                    .batches
                    .iter()
                    .find(|b| b.first_seq == h.base_sequence && b.last_seq == last)
                {
                    return Ok(SequenceCheck::Duplicate {
                        first_offset: b.first_offset,
                        last_offset: b.last_offset,
                    });
                }
            }
        }
        match last {
            Some(l) if h.base_sequence != next_seq(l) => Err(SequenceError::OutOfOrderSequence {
                producer_id: h.producer_id,
                got: h.base_sequence,
                last: l,
            }),
            _ => Ok(SequenceCheck::Append),
        }
    }

    /// The first offset of the oldest open transaction (the last stable offset cannot pass it).
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.ongoing.values().min().copied()
    }

    /// The first offset of `producer_id`'s open transaction here, if any.
    pub fn ongoing_transaction(&self, producer_id: i64) -> Option<i64> {
        self.ongoing.get(&producer_id).copied()
    }

    /// Aborted transactions overlapping `[from, upto)`. The list is in marker order, so
    /// those that ended before `from` (most of it, for a consumer near the tail) are skipped
    /// by binary search.
    pub fn aborted_between(&self, from: i64, upto: i64) -> Vec<AbortedTxn> {
        let start = self.aborted.partition_point(|a| a.last_offset < from);
        self.aborted[start..]
            .iter()
            .filter(|a| a.last_offset >= from && a.first_offset < upto)
            .copied()
            .collect()
    }

    /// Forgets aborted transactions wholly below the log start offset.
    pub fn prune_aborted(&mut self, log_start_offset: i64) {
        self.aborted.retain(|a| a.last_offset >= log_start_offset);
    }

    /// Records a stored transaction marker: closes the producer's open transaction here.
    pub fn apply_marker(&mut self, h: &BatchHeader, commit: bool, timestamp: i64) {
        if let Some(e) = self.producers.get_mut(&h.producer_id) {
            e.last_timestamp = e.last_timestamp.max(timestamp);
            if h.producer_epoch > e.epoch {
                e.epoch = h.producer_epoch;
                e.batches.clear();
            }
        }
        if let Some(first_offset) = self.ongoing.remove(&h.producer_id) {
            if !commit {
                self.aborted.push(AbortedTxn {
                    producer_id: h.producer_id,
                    first_offset,
                    last_offset: h.base_offset,
                });
            }
        }
    }

    /// Records a stored batch (its header as written: real offsets).
    pub fn apply(&mut self, h: &BatchHeader, timestamp: i64) {
        if h.producer_id < 0 || h.is_control() {
            return;
        }
        if h.is_transactional() {
            self.ongoing.entry(h.producer_id).or_insert(h.base_offset);
        }
        let entry = self
            .producers
            .entry(h.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: h.producer_epoch,
                last_timestamp: timestamp,
                batches: VecDeque::new(),
            });
        if entry.epoch != h.producer_epoch {
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        }
        entry.last_timestamp = entry.last_timestamp.max(timestamp);
        if h.base_sequence < 0 {
            // Written by a coordinator (no sequence): nothing to deduplicate against.
            return;
        }
        if entry.batches.len() == BATCHES_PER_PRODUCER {
            entry.batches.pop_front();
        }
        entry.batches.push_back(BatchMetadata {
            first_seq: h.base_sequence,
            last_seq: last_seq(h),
            first_offset: h.base_offset,
            last_offset: h.last_offset(),
        });
    }

    /// Forgets producers silent since before `older_than` (`producer.id.expiration.ms`).
    pub fn expire(&mut self, older_than: i64) -> usize {
        let before = self.producers.len();
        let ongoing = &self.ongoing;
        self.producers
            .retain(|id, e| e.last_timestamp >= older_than || ongoing.contains_key(id));
        before - self.producers.len()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(14 + self.producers.len() * 64 + self.aborted.len() * 24);
        b.extend_from_slice(&2i16.to_be_bytes());
        b.extend_from_slice(&(self.producers.len() as i32).to_be_bytes());
        for (id, e) in &self.producers {
            b.extend_from_slice(&id.to_be_bytes());
            b.extend_from_slice(&e.epoch.to_be_bytes());
            b.extend_from_slice(&e.last_timestamp.to_be_bytes());
            b.push(e.batches.len() as u8);
            for m in &e.batches {
                b.extend_from_slice(&m.first_seq.to_be_bytes());
                b.extend_from_slice(&m.last_seq.to_be_bytes());
                b.extend_from_slice(&m.first_offset.to_be_bytes());
                b.extend_from_slice(&m.last_offset.to_be_bytes());
            }
        }
        b.extend_from_slice(&(self.ongoing.len() as i32).to_be_bytes());
        for (id, first) in &self.ongoing {
            b.extend_from_slice(&id.to_be_bytes());
            b.extend_from_slice(&first.to_be_bytes());
        }
        b.extend_from_slice(&(self.aborted.len() as i32).to_be_bytes());
        for a in &self.aborted {
            b.extend_from_slice(&a.producer_id.to_be_bytes());
            b.extend_from_slice(&a.first_offset.to_be_bytes());
            b.extend_from_slice(&a.last_offset.to_be_bytes());
        }
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_be_bytes());
        b
    }

    /// `None` for anything but an intact snapshot.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < 10 {
            return None;
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32c::crc32c(body) != u32::from_be_bytes(crc.try_into().ok()?) {
            return None;
        }
        let mut at = 0usize;
        let mut take = |n: usize| -> Option<&[u8]> {
            let s = body.get(at..at + n)?;
            at += n;
            Some(s)
        };
        let version = i16::from_be_bytes(take(2)?.try_into().ok()?);
        if version != 1 && version != 2 {
            return None;
        }
        let count = i32::from_be_bytes(take(4)?.try_into().ok()?);
        if count < 0 || count as usize > body.len() / 19 {
            return None;
        }
        let mut producers = BTreeMap::new();
        for _ in 0..count {
            let id = i64::from_be_bytes(take(8)?.try_into().ok()?);
            let epoch = i16::from_be_bytes(take(2)?.try_into().ok()?);
            let last_timestamp = i64::from_be_bytes(take(8)?.try_into().ok()?);
            let n = take(1)?[0] as usize;
            if n > BATCHES_PER_PRODUCER {
                return None;
            }
            let mut batches = VecDeque::with_capacity(n);
            for _ in 0..n {
                batches.push_back(BatchMetadata {
                    first_seq: i32::from_be_bytes(take(4)?.try_into().ok()?),
                    last_seq: i32::from_be_bytes(take(4)?.try_into().ok()?),
                    first_offset: i64::from_be_bytes(take(8)?.try_into().ok()?),
                    last_offset: i64::from_be_bytes(take(8)?.try_into().ok()?),
                });
            }
            producers.insert(
                id,
                ProducerEntry {
                    epoch,
                    last_timestamp,
                    batches,
                },
            );
        }
        let mut ongoing = BTreeMap::new();
        let mut aborted = Vec::new();
        if version >= 2 {
            let n = i32::from_be_bytes(take(4)?.try_into().ok()?);
            if n < 0 || n as usize > body.len() / 16 {
                return None;
            }
            for _ in 0..n {
                let id = i64::from_be_bytes(take(8)?.try_into().ok()?);
                ongoing.insert(id, i64::from_be_bytes(take(8)?.try_into().ok()?));
            }
            let n = i32::from_be_bytes(take(4)?.try_into().ok()?);
            if n < 0 || n as usize > body.len() / 24 {
                return None;
            }
            for _ in 0..n {
                aborted.push(AbortedTxn {
                    producer_id: i64::from_be_bytes(take(8)?.try_into().ok()?),
                    first_offset: i64::from_be_bytes(take(8)?.try_into().ok()?),
                    last_offset: i64::from_be_bytes(take(8)?.try_into().ok()?),
                });
            }
        }
        if at != body.len() {
            return None;
        }
        Some(Self {
            producers,
            ongoing,
            aborted,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(pid: i64, epoch: i16, seq: i32, count: i32, offset: i64) -> BatchHeader {
        BatchHeader {
            base_offset: offset,
            batch_length: 0,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            records_count: count,
        }
    }

    #[test]
    fn sequences_duplicates_gaps_and_epochs() {
        let mut s = ProducerState::default();
        // Unknown producer: any sequence.
        assert_eq!(
            s.check(&batch(1, 0, 7, 3, 0), &[]),
            Ok(SequenceCheck::Append)
        );
        s.apply(&batch(1, 0, 7, 3, 0), 1);
        // In sequence.
        assert_eq!(
            s.check(&batch(1, 0, 10, 2, 3), &[]),
            Ok(SequenceCheck::Append)
        );
        s.apply(&batch(1, 0, 10, 2, 3), 2);
        // A retry of either is a duplicate with its original offsets.
        assert_eq!(
            s.check(&batch(1, 0, 7, 3, 99), &[]),
            Ok(SequenceCheck::Duplicate {
                first_offset: 0,
                last_offset: 2
            })
        );
        assert_eq!(
            s.check(&batch(1, 0, 10, 2, 99), &[]),
            Ok(SequenceCheck::Duplicate {
                first_offset: 3,
                last_offset: 4
            })
        );
        // A gap.
        assert!(matches!(
            s.check(&batch(1, 0, 13, 1, 5), &[]),
            Err(SequenceError::OutOfOrderSequence {
                got: 13,
                last: 11,
                ..
            })
        ));
        // A zombie with an older epoch; a new epoch must start at 0.
        s.apply(&batch(1, 1, 0, 1, 5), 3);
        assert!(matches!(
            s.check(&batch(1, 0, 12, 1, 6), &[]),
            Err(SequenceError::InvalidProducerEpoch { .. })
        ));
        assert!(matches!(
            s.check(&batch(1, 2, 5, 1, 6), &[]),
            Err(SequenceError::OutOfOrderSequence { .. })
        ));
        assert_eq!(
            s.check(&batch(1, 2, 0, 1, 6), &[]),
            Ok(SequenceCheck::Append)
        );
        // Earlier batches of the same request count.
        let first = batch(1, 1, 1, 2, 6);
        assert_eq!(
            s.check(&batch(1, 1, 3, 1, 8), &[first]),
            Ok(SequenceCheck::Append)
        );
        assert!(s.check(&batch(1, 1, 4, 1, 8), &[first]).is_err());
        // Non-idempotent batches pass.
        assert_eq!(
            s.check(&batch(-1, -1, -1, 5, 0), &[]),
            Ok(SequenceCheck::Append)
        );
    }

    #[test]
    fn only_five_batches_are_remembered_and_sequences_wrap() {
        let mut s = ProducerState::default();
        for i in 0..7 {
            s.apply(&batch(1, 0, i, 1, i as i64), 0);
        }
        assert_eq!(s.get(1).unwrap().batches.len(), BATCHES_PER_PRODUCER);
        // Batch 0 is forgotten: a retry of it now looks like a gap.
        assert!(s.check(&batch(1, 0, 0, 1, 9), &[]).is_err());
        let mut s = ProducerState::default();
        s.apply(&batch(2, 0, i32::MAX - 1, 2, 0), 0);
        assert_eq!(
            s.check(&batch(2, 0, 0, 1, 2), &[]),
            Ok(SequenceCheck::Append)
        );
    }

    #[test]
    fn snapshot_round_trip_and_corruption() {
        let mut s = ProducerState::default();
        for pid in 0..10 {
            for i in 0..pid {
                s.apply(&batch(pid, 3, i as i32, 1, pid * 100 + i), 50 + pid);
            }
        }
        let bytes = s.encode();
        assert_eq!(ProducerState::decode(&bytes), Some(s.clone()));
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert_eq!(ProducerState::decode(&bad), None, "flip at {i}");
        }
        assert_eq!(ProducerState::decode(&bytes[..bytes.len() - 1]), None);
        assert_eq!(s.clone().expire(55), 4);
    }
}
