//! The two halves of replica fetching as plain data over a [`Partition`], shared by the
//! broker (which carries them in Kafka Fetch requests) and the deterministic simulation
//! (which carries them in simulated messages): what a follower asks for, how the leader
//! decides whether the follower's log diverged (KIP-279), and what the follower does with
//! the leader's answer. No sockets, no Kafka error codes.

use crate::error::Result;
use crate::Partition;

/// Where a follower fetches from: its synced log end, the epoch of its last batch and its
/// log start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchPosition {
    pub fetch_offset: i64,
    pub last_fetched_epoch: i32,
    pub log_start_offset: i64,
}

/// The leader's answer to one partition of a replica fetch, as the follower applies it.
#[derive(Debug, Clone, Copy)]
pub enum LeaderAnswer<'a> {
    /// Batches from the fetch offset (possibly none), the leader's high watermark and its
    /// log start offset (-1: not told), which the follower's log start follows (records
    /// deleted on the leader are deleted on its replicas, so they stay deleted when
    /// leadership moves).
    Records {
        records: Option<&'a [u8]>,
        high_watermark: i64,
        log_start_offset: i64,
    },
    /// The follower's last epoch ends at `end_offset` on the leader (or is unknown there:
    /// `end_offset` < 0): it truncates there (KIP-279).
    Diverging { epoch: i32, end_offset: i64 },
    /// The fetch offset is outside the leader's log.
    OutOfRange {
        log_start_offset: i64,
        high_watermark: i64,
    },
}

impl Partition {
    /// What this follower fetches, or None when it must not: a log whose end is not all
    /// synced (a sync failed; it takes no more writes) does not fetch, and leaves the ISR
    /// instead of vouching for bytes it may not have.
    pub fn replica_fetch_position(&self) -> Option<FetchPosition> {
        let log = self.log();
        if log.is_failed() || log.durable_end() < log.log_end_offset() {
            return None;
        }
        Some(FetchPosition {
            fetch_offset: log.log_end_offset(),
            last_fetched_epoch: log.latest_epoch(),
            log_start_offset: log.log_start_offset(),
        })
    }

    /// On the leader (KIP-279): a follower whose last fetched epoch ends earlier here than
    /// its fetch offset, or is newer than any epoch here, diverged; returns the epoch and
    /// end offset it truncates to. None: the follower's log is a prefix of this one.
    pub fn diverging_epoch(
        &self,
        last_fetched_epoch: i32,
        fetch_offset: i64,
    ) -> Option<(i32, i64)> {
        if last_fetched_epoch < 0 {
            return None;
        }
        let log = self.log();
        let (mut epoch, mut end) = log.end_offset_for_epoch(last_fetched_epoch);
        if epoch < 0 {
            // The follower's epoch is newer than any here: it truncates to where this
            // leader's latest epoch ends (at most).
            (epoch, end) = log.end_offset_for_epoch(log.latest_epoch());
        }
        (epoch < last_fetched_epoch || end < fetch_offset).then_some((epoch, end))
    }

    /// On a follower: applies the leader's answer to a fetch from `asked` — truncates a
    /// diverged or out-of-range log, appends and syncs the batches, then takes the leader's
    /// high watermark (capped at what this replica has synced). True if the log or the high
    /// watermark moved. An answer to a fetch from another position than the log's now (its
    /// end offset and last epoch: a late or repeated answer) is ignored, as Kafka's fetcher
    /// ignores one whose fetch offset is no longer the partition's: applied, a stale
    /// "diverged" could cut records this replica has since reported to the leader as held
    /// (found by the simulation, where the network repeats and delays messages).
    pub fn apply_leader_answer(
        &self,
        asked: FetchPosition,
        answer: LeaderAnswer<'_>,
    ) -> Result<bool> {
        {
            let log = self.log();
            if log.log_end_offset() != asked.fetch_offset
                || log.latest_epoch() != asked.last_fetched_epoch
            {
                return Ok(false);
            }
        }
        match answer {
            LeaderAnswer::OutOfRange {
                log_start_offset,
                high_watermark,
            } => {
                let leo = self.log().log_end_offset();
                if log_start_offset > leo {
                    tracing::info!(topic = %self.topic, partition = self.partition, leader_log_start = log_start_offset, "behind the leader's log start: starting over there");
                    self.truncate_fully_and_start_at(log_start_offset)?;
                } else if high_watermark >= 0 && high_watermark < leo {
                    self.truncate_to(high_watermark)?;
                }
                Ok(true)
            }
            LeaderAnswer::Diverging { epoch, end_offset } => {
                let target = if end_offset >= 0 {
                    let local = self.log().end_offset_for_epoch(epoch).1;
                    if local >= 0 {
                        end_offset.min(local)
                    } else {
                        end_offset
                    }
                } else {
                    self.high_watermark()
                };
                tracing::info!(topic = %self.topic, partition = self.partition, epoch, end_offset, truncate_to = target, "log diverged from the leader's: truncating");
                self.truncate_to(target)?;
                Ok(true)
            }
            LeaderAnswer::Records {
                records,
                high_watermark,
                log_start_offset,
            } => {
                let mut moved = false;
                if let Some(records) = records.filter(|r| !r.is_empty()) {
                    if let Some((_, last)) = self.append_replicated(records)? {
                        self.sync_to(last + 1)?;
                        moved = true;
                    }
                }
                let before = self.high_watermark();
                self.follow_high_watermark(high_watermark);
                self.follow_log_start_offset(log_start_offset)?;
                Ok(moved || self.high_watermark() > before)
            }
        }
    }

    /// Moves this follower's log start offset up to the leader's (as Kafka's follower does
    /// with each fetch answer), never past its own high watermark: what DeleteRecords or
    /// retention removed on the leader is removed here too. The caller makes a moved log
    /// start durable (the log start checkpoint) before the next fetch reports it: the
    /// leader answers DeleteRecords on those reports.
    pub fn follow_log_start_offset(&self, leader_log_start_offset: i64) -> Result<()> {
        let mut log = self.log();
        let target = leader_log_start_offset.min(log.high_watermark());
        if target > log.log_start_offset() {
            log.delete_records_before(target)?;
        }
        Ok(())
    }

    /// Leader or follower, as cluster metadata says (`leader` node in `epoch` with `isr`, at
    /// `partition_epoch`).
    pub fn set_role(
        &self,
        local: i32,
        leader: i32,
        epoch: i32,
        partition_epoch: i32,
        isr: &[i32],
        min_insync_replicas: usize,
    ) {
        self.note_partition_epoch(partition_epoch);
        if leader == local {
            self.become_leader(local, epoch, isr, min_insync_replicas);
        } else {
            self.become_follower(local, leader, epoch);
        }
    }
}
