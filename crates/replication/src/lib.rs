//! The replication rules of one partition, as its leader applies them: pure state, offsets
//! and time in, a high watermark and ISR changes out. No I/O, no clock, no sockets.
//!
//! - **High watermark** (Kafka's rule, with Strata's durability on top): the minimum over the
//!   *maximal* ISR (the ISR plus replicas whose addition is pending, KIP-497) of each
//!   replica's end as the leader knows it, where a replica's end is its *fsync'd* log end
//!   offset in durable mode (`flush.messages=1`): an acknowledged record is on disk on every
//!   in-sync replica. It never moves backwards, and it is frozen while the ISR is smaller
//!   than `min.insync.replicas` (KIP-966's strict min ISR: nothing becomes committed that
//!   too few replicas hold).
//! - **ISR shrink**: a follower that has not caught up to the leader's end for
//!   `replica.lag.time.max.ms` is a candidate for removal (the controller decides, through
//!   AlterPartition).
//! - **ISR expand**: a follower outside the ISR that reached the high watermark (and the start
//!   of the leader's epoch) is a candidate for addition.
//!
//! On one node the ISR is the leader alone, so the high watermark is the leader's durable end,
//! exactly what the single-node broker always did.

use std::collections::BTreeMap;

/// What the leader knows of one replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaProgress {
    /// The replica's durable log end offset as last reported (its fetch offset, for a
    /// follower that fetches only after syncing what it has).
    pub end: i64,
    /// When the replica last had everything the leader had at that moment (ms).
    pub last_caught_up_ms: i64,
    /// When the replica last fetched (ms; `i64::MIN` before its first fetch).
    pub last_fetch_ms: i64,
}

/// A replica joins the ISR only while it is fetching: its last fetch at most this long ago
/// (ms), or `replica.lag.time.max.ms` if shorter. Kafka evaluates an addition when the
/// follower fetches; a leader that judged from a stopped replica's last known end (a broker
/// in controlled shutdown) would ask again and again to add it, each time counting it for the
/// high watermark (KIP-497) and holding the high watermark at its end (found by
/// `scripts/chaos`: a transaction coordinator's writes stalled).
pub const EXPAND_FETCH_WINDOW_MS: i64 = 2_000;

/// One partition's replicas as its leader tracks them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionReplicas {
    leader: i32,
    isr: Vec<i32>,
    /// Replicas whose addition to the ISR was requested and not yet confirmed (KIP-497:
    /// already counted for the high watermark).
    pending_isr: Vec<i32>,
    /// The controller refused the pending addition. It still counts — another attempt of
    /// the same request may yet commit — until the metadata settles it; the leader asks the
    /// controller to confirm the ISR without it (see [`PartitionReplicas::refuse_pending`]).
    pending_refused: bool,
    min_insync_replicas: usize,
    progress: BTreeMap<i32, ReplicaProgress>,
    /// Each follower's log start offset as its fetches report it (unknown until then).
    log_starts: BTreeMap<i32, i64>,
    high_watermark: i64,
}

impl PartitionReplicas {
    /// A partition led by `leader` with `isr`, its high watermark at `high_watermark`.
    pub fn new(leader: i32, isr: &[i32], min_insync_replicas: usize, high_watermark: i64) -> Self {
        Self::new_at(leader, isr, min_insync_replicas, high_watermark, 0)
    }

    /// [`PartitionReplicas::new`] for a leader elected at `now_ms`: its followers count as
    /// caught up then, so none leaves the ISR before it had `replica.lag.time.max.ms` to
    /// fetch from the new leader.
    pub fn new_at(
        leader: i32,
        isr: &[i32],
        min_insync_replicas: usize,
        high_watermark: i64,
        now_ms: i64,
    ) -> Self {
        // A new leader knows its own end; its followers' are unknown until they fetch.
        let progress = isr
            .iter()
            .map(|&r| {
                let end = if r == leader { high_watermark } else { -1 };
                (
                    r,
                    ReplicaProgress {
                        end,
                        last_caught_up_ms: now_ms,
                        last_fetch_ms: if r == leader { now_ms } else { i64::MIN },
                    },
                )
            })
            .collect();
        PartitionReplicas {
            leader,
            isr: isr.to_vec(),
            pending_isr: Vec::new(),
            pending_refused: false,
            min_insync_replicas: min_insync_replicas.max(1),
            progress,
            log_starts: BTreeMap::new(),
            high_watermark,
        }
    }

    /// The single-node case: the leader is the whole ISR.
    pub fn single(node: i32, high_watermark: i64) -> Self {
        Self::new(node, &[node], 1, high_watermark)
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    pub fn isr(&self) -> &[i32] {
        &self.isr
    }

    pub fn min_insync_replicas(&self) -> usize {
        self.min_insync_replicas
    }

    /// The leader's own durable end moved (a sync finished; in relaxed mode, an append).
    /// Returns the new high watermark if it advanced.
    pub fn leader_end(&mut self, end: i64, now_ms: i64) -> Option<i64> {
        self.progress.insert(
            self.leader,
            ReplicaProgress {
                end,
                last_caught_up_ms: now_ms,
                last_fetch_ms: now_ms,
            },
        );
        self.recompute()
    }

    /// A follower reported its durable end (`fetch_offset`). It is caught up if it has
    /// everything the leader has (`leader_end`). Returns the new high watermark if it
    /// advanced.
    pub fn follower_end(
        &mut self,
        node: i32,
        fetch_offset: i64,
        leader_end: i64,
        now_ms: i64,
    ) -> Option<i64> {
        let last = self.progress.get(&node).map_or(0, |p| p.last_caught_up_ms);
        self.progress.insert(
            node,
            ReplicaProgress {
                end: fetch_offset,
                last_caught_up_ms: if fetch_offset >= leader_end {
                    now_ms
                } else {
                    last
                },
                last_fetch_ms: now_ms,
            },
        );
        self.recompute()
    }

    /// A follower reported its log start offset (in its fetch), which follows the leader's.
    pub fn follower_log_start(&mut self, node: i32, log_start_offset: i64) {
        self.log_starts.insert(node, log_start_offset);
    }

    /// Kafka's low watermark: the lowest log start offset over the maximal ISR (with a
    /// pending addition), the leader's being `leader_log_start` (a follower that has not
    /// reported one counts as -1); -1 while the ISR is below `min.insync.replicas`. Records
    /// below it are gone from every replica that may be elected, so DeleteRecords is done
    /// when it reaches the requested offset.
    pub fn low_watermark(&self, leader_log_start: i64) -> i64 {
        if self.isr.len() < self.min_insync_replicas {
            // Replicas that left the ISR may be elected (KIP-966's eligible leader
            // replicas), and this leader does not know what they deleted.
            return -1;
        }
        self.isr
            .iter()
            .chain(&self.pending_isr)
            .map(|r| {
                if *r == self.leader {
                    leader_log_start
                } else {
                    self.log_starts.get(r).copied().unwrap_or(-1)
                }
            })
            .min()
            .unwrap_or(leader_log_start)
    }

    /// Followers in the ISR that have not caught up for `lag_max_ms`.
    pub fn shrink_candidates(&self, now_ms: i64, lag_max_ms: i64) -> Vec<i32> {
        self.isr
            .iter()
            .copied()
            .filter(|&r| r != self.leader)
            .filter(|r| {
                self.progress
                    .get(r)
                    .is_none_or(|p| now_ms - p.last_caught_up_ms > lag_max_ms)
            })
            .collect()
    }

    /// Replicas outside the ISR (and not pending) that are fetching (see
    /// [`EXPAND_FETCH_WINDOW_MS`]) and whose end reached the high watermark and
    /// `epoch_start_offset` (the leader's first offset in its current epoch), and whose log
    /// start followed `leader_log_start` up to the high watermark.
    pub fn expand_candidates(
        &self,
        epoch_start_offset: i64,
        leader_log_start: i64,
        now_ms: i64,
        lag_max_ms: i64,
    ) -> Vec<i32> {
        let window = EXPAND_FETCH_WINDOW_MS.min(lag_max_ms.max(1));
        // A joining replica has also deleted what the leader deleted (as far as it can,
        // below the high watermark), so an in-sync replica never brings deleted records back.
        let deleted_below = leader_log_start.min(self.high_watermark);
        self.progress
            .iter()
            .filter(|(r, _)| !self.isr.contains(r) && !self.pending_isr.contains(r))
            .filter(|(_, p)| p.last_fetch_ms >= now_ms.saturating_sub(window))
            .filter(|(_, p)| p.end >= self.high_watermark && p.end >= epoch_start_offset)
            .filter(|(r, _)| self.log_starts.get(r).copied().unwrap_or(0) >= deleted_below)
            .map(|(&r, _)| r)
            .collect()
    }

    /// An ISR addition was requested: counted for the high watermark from now (KIP-497).
    pub fn begin_expand(&mut self, node: i32) {
        if !self.isr.contains(&node) && !self.pending_isr.contains(&node) {
            self.pending_isr.push(node);
        }
    }

    /// Whether an ISR addition is waiting for the controller.
    pub fn has_pending(&self) -> bool {
        !self.pending_isr.is_empty()
    }

    /// The controller refused the pending addition. It keeps counting for the high
    /// watermark: a copy of the same request (sent again after a lost answer) may still
    /// commit it, and a leader that stopped counting a replica the committed ISR names would
    /// acknowledge writes that replica lacks (found by the simulation). The leader asks the
    /// controller to confirm the ISR without it ([`PartitionReplicas::settling_request`]);
    /// that change's new partition epoch fences every older copy, and the metadata that
    /// brings it settles the pending addition ([`PartitionReplicas::set_isr`]).
    pub fn refuse_pending(&mut self) {
        if self.has_pending() {
            self.pending_refused = true;
        }
    }

    /// The ISR to ask the controller to confirm after a refused addition, if any.
    pub fn settling_request(&self) -> Option<Vec<i32>> {
        (self.has_pending() && self.pending_refused).then(|| self.isr.clone())
    }

    /// The replicas counted for the high watermark: the ISR plus pending additions.
    pub fn maximal_isr(&self) -> Vec<i32> {
        self.isr
            .iter()
            .chain(self.pending_isr.iter())
            .copied()
            .collect()
    }

    /// The controller's answer: the ISR is now `isr` (pending additions are settled).
    /// Returns the new high watermark if it advanced.
    pub fn set_isr(&mut self, isr: &[i32]) -> Option<i64> {
        self.isr = isr.to_vec();
        self.pending_isr.clear();
        self.pending_refused = false;
        self.recompute()
    }

    /// `min.insync.replicas` changed (a live topic config): applied at once, as Kafka does.
    /// Returns the new high watermark if lowering it let the high watermark advance.
    pub fn set_min_insync_replicas(&mut self, min_insync_replicas: usize) -> Option<i64> {
        self.min_insync_replicas = min_insync_replicas.max(1);
        self.recompute()
    }

    fn recompute(&mut self) -> Option<i64> {
        if self.isr.len() < self.min_insync_replicas {
            return None; // frozen: too few replicas in sync to commit anything
        }
        let maximal = self.isr.iter().chain(self.pending_isr.iter());
        let mut low: Option<i64> = None;
        for r in maximal {
            let end = self.progress.get(r).map_or(i64::MIN, |p| p.end);
            low = Some(low.map_or(end, |l: i64| l.min(end)));
        }
        let candidate = low?;
        if candidate > self.high_watermark {
            self.high_watermark = candidate;
            Some(candidate)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_node_the_high_watermark_is_the_leaders_durable_end() {
        let mut r = PartitionReplicas::single(1, 0);
        assert_eq!(r.leader_end(10, 0), Some(10));
        assert_eq!(r.leader_end(10, 1), None, "unchanged");
        assert_eq!(r.leader_end(7, 2), None, "never backwards");
        assert_eq!(r.high_watermark(), 10);
    }

    #[test]
    fn three_replicas_the_high_watermark_is_the_slowest_in_sync_end() {
        let mut r = PartitionReplicas::new(1, &[1, 2, 3], 2, 0);
        assert_eq!(r.leader_end(100, 0), None, "followers have nothing yet");
        assert_eq!(r.follower_end(2, 60, 100, 0), None);
        assert_eq!(r.follower_end(3, 80, 100, 0), Some(60));
        assert_eq!(r.follower_end(2, 100, 100, 1), Some(80));
        assert_eq!(r.high_watermark(), 80);
    }

    #[test]
    fn a_lagging_follower_is_a_shrink_candidate_and_leaving_frees_the_high_watermark() {
        let mut r = PartitionReplicas::new(1, &[1, 2, 3], 2, 0);
        r.leader_end(100, 0);
        r.follower_end(2, 100, 100, 0);
        r.follower_end(3, 10, 100, 0);
        assert_eq!(r.high_watermark(), 10);
        assert!(r.shrink_candidates(20_000, 30_000).is_empty());
        r.leader_end(100, 39_000);
        r.follower_end(2, 100, 100, 39_000); // 2 keeps fetching, caught up
        assert_eq!(r.shrink_candidates(40_000, 30_000), vec![3]);
        assert_eq!(r.set_isr(&[1, 2]), Some(100));
    }

    #[test]
    fn the_low_watermark_is_the_lowest_log_start_in_the_isr() {
        let r = PartitionReplicas::single(1, 0);
        assert_eq!(r.low_watermark(40), 40, "alone, the leader's");
        let mut r = PartitionReplicas::new(1, &[1, 2, 3], 2, 0);
        assert_eq!(r.low_watermark(40), -1, "followers not heard from yet");
        r.follower_log_start(2, 40);
        r.follower_log_start(3, 10);
        assert_eq!(r.low_watermark(40), 10);
        r.follower_log_start(3, 40);
        assert_eq!(r.low_watermark(40), 40);
        r.follower_log_start(3, 0);
        r.set_isr(&[1, 2]);
        assert_eq!(r.low_watermark(40), 40, "only the ISR counts");
        r.begin_expand(3);
        assert_eq!(r.low_watermark(40), 0, "and a replica being added to it");
        r.set_isr(&[1]);
        assert_eq!(
            r.low_watermark(40),
            -1,
            "below min.insync.replicas: unknown"
        );
    }

    #[test]
    fn a_replica_joins_the_isr_once_it_deleted_what_the_leader_deleted() {
        let mut r = PartitionReplicas::new(1, &[1, 2], 1, 0);
        r.leader_end(100, 0);
        r.follower_end(2, 100, 100, 0);
        r.follower_end(3, 100, 100, 0);
        r.follower_log_start(3, 10);
        assert!(r.expand_candidates(0, 40, 10, 30_000).is_empty());
        r.follower_log_start(3, 40);
        assert_eq!(r.expand_candidates(0, 40, 10, 30_000), vec![3]);
    }

    #[test]
    fn below_min_isr_the_high_watermark_is_frozen() {
        let mut r = PartitionReplicas::new(1, &[1, 2, 3], 2, 50);
        r.set_isr(&[1]);
        assert_eq!(r.leader_end(100, 0), None);
        assert_eq!(r.high_watermark(), 50, "nothing committed on one copy");
        r.follower_end(2, 100, 100, 0);
        assert_eq!(r.expand_candidates(0, 0, 0, 30_000), vec![2]);
        assert_eq!(r.set_isr(&[1, 2]), Some(100));
    }

    /// `min.insync.replicas` is a live config: raised above the ISR it freezes the high
    /// watermark and the low watermark at once; lowered again, what the ISR holds commits.
    #[test]
    fn min_isr_changes_apply_at_once() {
        let mut r = PartitionReplicas::new(1, &[1, 2], 2, 50);
        r.follower_end(2, 60, 60, 0);
        r.follower_log_start(2, 10);
        assert_eq!(r.leader_end(60, 0), Some(60));
        assert_eq!(r.low_watermark(10), 10);
        assert_eq!(r.set_min_insync_replicas(3), None);
        assert_eq!(
            r.low_watermark(10),
            -1,
            "a replica out of the ISR may be elected"
        );
        r.follower_end(2, 80, 80, 0);
        assert_eq!(r.leader_end(80, 0), None);
        assert_eq!(r.high_watermark(), 60, "frozen below min.insync.replicas");
        assert_eq!(r.set_min_insync_replicas(2), Some(80));
        assert_eq!(r.low_watermark(10), 10);
    }

    /// A replica that stopped fetching (a broker in controlled shutdown, or gone) is not
    /// asked into the ISR from its last known end, however good that end was: only a
    /// fetching replica joins (as in Kafka, where the follower's fetch triggers it).
    #[test]
    fn only_a_fetching_replica_is_an_expansion_candidate() {
        let mut r = PartitionReplicas::new(1, &[1, 3], 2, 0);
        r.leader_end(100, 0);
        r.follower_end(3, 100, 100, 0);
        r.follower_end(2, 100, 100, 0);
        assert_eq!(r.expand_candidates(0, 0, 1_000, 30_000), vec![2]);
        // 2 stops fetching; nothing new is written, so its end still equals the high
        // watermark.
        assert_eq!(
            r.expand_candidates(0, 0, 1 + EXPAND_FETCH_WINDOW_MS, 30_000),
            Vec::<i32>::new()
        );
        // It fetches again: a candidate again.
        r.follower_end(2, 100, 100, 5_000);
        assert_eq!(r.expand_candidates(0, 0, 5_100, 30_000), vec![2]);
        // Never fetched from this leader: never a candidate.
        let fresh = PartitionReplicas::new_at(1, &[1, 2, 3], 2, 0, 0);
        assert!(fresh.expand_candidates(0, 0, 10, 30_000).is_empty());
    }

    #[test]
    fn a_refused_addition_counts_until_the_metadata_settles_it() {
        let mut r = PartitionReplicas::new(1, &[1, 2], 1, 0);
        r.leader_end(100, 0);
        r.follower_end(2, 100, 100, 0);
        r.follower_end(3, 100, 100, 0);
        r.begin_expand(3);
        assert_eq!(r.settling_request(), None, "waiting for the answer");
        r.refuse_pending();
        assert_eq!(r.settling_request(), Some(vec![1, 2]));
        r.leader_end(200, 1);
        r.follower_end(2, 200, 200, 1);
        assert_eq!(r.high_watermark(), 100, "3 still counts");
        assert_eq!(r.set_isr(&[1, 2]), Some(200), "settled without it");
        assert_eq!(r.settling_request(), None);
    }

    #[test]
    fn a_pending_addition_counts_for_the_high_watermark_at_once() {
        // KIP-497: the maximal ISR, so the leader never commits past a replica it is adding.
        let mut r = PartitionReplicas::new(1, &[1, 2], 1, 0);
        r.leader_end(100, 0);
        r.follower_end(2, 100, 100, 0);
        r.follower_end(3, 100, 100, 0);
        assert_eq!(r.high_watermark(), 100);
        r.leader_end(150, 1);
        r.follower_end(2, 150, 150, 1);
        r.begin_expand(3);
        assert_eq!(r.high_watermark(), 150, "set before 3 was pending");
        r.leader_end(200, 2);
        r.follower_end(2, 200, 200, 2);
        assert_eq!(r.high_watermark(), 150, "held back by pending 3 at 100");
        r.follower_end(3, 200, 200, 3);
        assert_eq!(r.high_watermark(), 200);
    }
}
