//! Keeping a split join's two inputs in step.
//!
//! A join split on a cluster reads its inputs from two repartition topics, each written
//! by its own repartitioning tasks, on any engine. When one side's repartitioning lags
//! (its engine died and the task is moving, or it is simply slower), the join task would
//! see only the other side and move its stream time on; the lagging side's records then
//! arrive late: a stream–stream join's windows have closed on them (outer rows went out
//! unmatched, window stores dropped what they needed), a stream record has met the table
//! as it is now rather than at its time.
//!
//! Kafka Streams bounds this within one task with `max.task.idle.ms` (KIP-695: a task
//! waits while a partition it reads is empty but still has fetch lag); a repartition
//! topic's lag upstream it cannot see, and by default it does not wait at all. Here a
//! split join looks upstream: before processing a record that runs more than the join
//! tolerates ([`strata_sql::join::JoinQuery::input_skew_tolerance`]) ahead of the other
//! input's latest record, it asks whether that input's repartitioning still has records
//! to forward (its committed positions short of its source's last stable offset, with a
//! committed record past them) or whether the repartition topic holds more than was
//! fetched. While so, the pass stops before that record and the task fetches again a
//! moment later; after `max.task.idle.ms` (ksqlDB's property, 60 s by default here) it
//! proceeds as Kafka Streams would, until the lag is gone.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use strata_records::DecodedRecord;

use crate::log::{LogClient, LogError};

/// How long a split join waits for a lagging input unless the query says
/// (`ksql.streams.max.task.idle.ms`): long enough for a repartitioning task to move
/// after its engine died.
pub const DEFAULT_MAX_TASK_IDLE: Duration = Duration::from_secs(60);

/// How long an input found caught up is taken to stay so (a check costs a few requests).
const CAUGHT_UP_FOR: Duration = Duration::from_millis(100);

/// `max.task.idle.ms` from a query's properties (ksqlDB's `ksql.streams.` prefix or not):
/// a negative value never waits (Kafka's -1); unset or unreadable, the default.
pub fn max_task_idle(props: &BTreeMap<String, String>) -> Duration {
    props
        .get("ksql.streams.max.task.idle.ms")
        .or_else(|| props.get("max.task.idle.ms"))
        .and_then(|v| v.trim().parse::<i64>().ok())
        .map_or(DEFAULT_MAX_TASK_IDLE, |ms| {
            Duration::from_millis(ms.max(0) as u64)
        })
}

/// How many records of each part may be processed now, walking them in the order the
/// pass will (the oldest head first, ties to the lower part, as `merge_by_timestamp`):
/// up to the first record of one side more than `tolerance` ahead of the other side's
/// latest record seen, when that other side is `lagging` (any record of it, when none of
/// the other side was seen yet). None when every record may go. `seen` is moved on to the
/// records that may go.
pub fn synchronized_counts(
    parts: &[&[DecodedRecord]],
    side_of: &[usize],
    seen: &mut [Option<i64>; 2],
    tolerance: i64,
    lagging: [bool; 2],
) -> Option<Vec<usize>> {
    let mut taken = vec![0usize; parts.len()];
    loop {
        let (t, i) = parts
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.get(taken[i]).map(|r| (r.timestamp_ms, i)))
            .min()?;
        let side = side_of[i];
        let other = 1 - side;
        if lagging[other] && seen[other].is_none_or(|s| t > s.saturating_add(tolerance)) {
            return Some(taken);
        }
        seen[side] = Some(seen[side].map_or(t, |s| s.max(t)));
        taken[i] += 1;
    }
}

/// A split join task's view of its inputs' progress.
pub struct JoinSync {
    /// The repartition topic of each side, and the topic its repartitioning reads.
    repartition: [String; 2],
    source: [String; 2],
    /// The query's consumer group, where the repartitioning tasks commit their positions.
    group: String,
    tolerance: i64,
    max_idle: Duration,
    /// The latest event time processed of each side (since this task started).
    seen: [Option<i64>; 2],
    /// Since when the task has been waiting for a lagging input (and whether it said it
    /// stopped waiting).
    waiting_since: Option<Instant>,
    gave_up: bool,
    caught_up_at: [Option<Instant>; 2],
    /// The sources' partition counts (found once).
    source_partitions: [Option<i32>; 2],
}

impl JoinSync {
    pub fn new(
        repartition: [String; 2],
        source: [String; 2],
        group: String,
        tolerance: i64,
        max_idle: Duration,
    ) -> JoinSync {
        JoinSync {
            repartition,
            source,
            group,
            tolerance,
            max_idle,
            seen: [None, None],
            waiting_since: None,
            gave_up: false,
            caught_up_at: [None, None],
            source_partitions: [None, None],
        }
    }

    /// Cuts a pass (`parts`, and `next`, the positions after it) back to what may be
    /// processed now. True when something was held back: the caller processes the rest,
    /// then fetches again from the positions it committed.
    pub async fn hold_back(
        &mut self,
        log: &mut LogClient,
        parts: &mut [((String, i32), Vec<DecodedRecord>)],
        next: &mut BTreeMap<(String, i32), i64>,
    ) -> bool {
        if self.max_idle.is_zero() {
            return false;
        }
        let side_of: Vec<usize> = parts
            .iter()
            .map(|((t, _), _)| usize::from(*t == self.repartition[1]))
            .collect();
        let records: Vec<&[DecodedRecord]> = parts.iter().map(|(_, r)| r.as_slice()).collect();
        // Would anything wait, were both sides lagging? Mostly not: no request is made.
        let mut seen = self.seen;
        if synchronized_counts(&records, &side_of, &mut seen, self.tolerance, [true, true])
            .is_none()
        {
            self.seen = seen;
            self.level();
            return false;
        }
        let mut lagging = [false; 2];
        for (side, lag) in lagging.iter_mut().enumerate() {
            *lag = self.lagging(log, side, parts, next).await;
        }
        let mut seen = self.seen;
        let counts = synchronized_counts(&records, &side_of, &mut seen, self.tolerance, lagging);
        let Some(counts) = counts else {
            self.seen = seen;
            self.level();
            return false;
        };
        let since = *self.waiting_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= self.max_idle {
            // Waited long enough: on, as Kafka Streams after max.task.idle.ms (the wait
            // starts again once the inputs are level).
            if !std::mem::replace(&mut self.gave_up, true) {
                tracing::warn!(
                    lagging = ?lagging,
                    waited_ms = since.elapsed().as_millis() as u64,
                    "split join: an input still lags after max.task.idle.ms; processing without it"
                );
            }
            let mut seen = self.seen;
            let _ = synchronized_counts(&records, &side_of, &mut seen, 0, [false, false]);
            self.seen = seen;
            return false;
        }
        self.seen = seen;
        for ((tp, records), n) in parts.iter_mut().zip(counts) {
            if let Some(first_held) = records.get(n) {
                next.insert(tp.clone(), first_held.offset);
                records.truncate(n);
            }
        }
        true
    }

    /// The inputs are level: a later lag is waited for again.
    fn level(&mut self) {
        self.waiting_since = None;
        self.gave_up = false;
    }

    /// Whether `side` may still have records on their way to this task: its repartition
    /// partition holds more than this pass fetched or has a transaction open, or one of its repartitioning tasks has
    /// committed records of its source left to forward (or a commit under way). Unknown
    /// (an error) counts as lagging: the wait is bounded.
    async fn lagging(
        &mut self,
        log: &mut LogClient,
        side: usize,
        parts: &[((String, i32), Vec<DecodedRecord>)],
        next: &BTreeMap<(String, i32), i64>,
    ) -> bool {
        if self.caught_up_at[side].is_some_and(|t| t.elapsed() < CAUGHT_UP_FOR) {
            return false;
        }
        let lag = self.lag(log, side, parts, next).await;
        let lagging = lag.unwrap_or_else(|e| {
            tracing::debug!(error = %e, "split join: an input's progress is unknown");
            true
        });
        self.caught_up_at[side] = (!lagging).then(Instant::now);
        lagging
    }

    async fn lag(
        &mut self,
        log: &mut LogClient,
        side: usize,
        parts: &[((String, i32), Vec<DecodedRecord>)],
        next: &BTreeMap<(String, i32), i64>,
    ) -> Result<bool, LogError> {
        for ((topic, p), _) in parts {
            if *topic == self.repartition[side] {
                let fetched_to = next.get(&(topic.clone(), *p)).copied().unwrap_or(0);
                let stable = log.last_stable_offset(topic, *p).await?;
                if stable > fetched_to {
                    return Ok(true);
                }
                // A transaction still open there: its records are on their way. (Its
                // commit may already show in the repartitioning's committed positions
                // while its marker has not reached this partition yet.)
                if log.high_watermark(topic, *p).await? > stable {
                    return Ok(true);
                }
            }
        }
        let source = self.source[side].clone();
        let partitions = match self.source_partitions[side] {
            Some(n) => n,
            None => {
                let n = *log.topics().await?.get(&source).ok_or_else(|| {
                    LogError::Records(format!("source topic {source} does not exist"))
                })?;
                self.source_partitions[side] = Some(n);
                n
            }
        };
        let committed = log
            .committed(&self.group, std::slice::from_ref(&source), None)
            .await?;
        for p in 0..partitions {
            // A partition its repartitioning never committed: it starts where the query
            // was created to (that position is committed then), so it has nothing owed.
            let Some(&at) = committed.get(&(source.clone(), p)) else {
                continue;
            };
            if log.last_stable_offset(&source, p).await? > at {
                // Records, or only markers and aborted records past the position?
                let (records, _) = log.fetch_committed(&source, p, at).await?;
                if !records.is_empty() {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(offsets_and_times: &[(i64, i64)]) -> Vec<DecodedRecord> {
        offsets_and_times
            .iter()
            .map(|&(offset, timestamp_ms)| DecodedRecord {
                offset,
                timestamp_ms,
                key: None,
                value: None,
                headers: Vec::new(),
                control: false,
            })
            .collect()
    }

    /// Side 0 has records far ahead of side 1's latest one: while side 1 lags they wait
    /// (those within the tolerance go); once it is level, everything goes.
    #[test]
    fn a_side_running_ahead_of_a_lagging_side_waits_within_the_tolerance() {
        let left = records(&[(10, 100), (11, 1_000), (12, 5_000)]);
        let right = records(&[(7, 900)]);
        let parts: Vec<&[DecodedRecord]> = vec![&left, &right];
        let mut seen = [None, Some(800)];
        let counts = synchronized_counts(&parts, &[0, 1], &mut seen, 500, [false, true]);
        // 100 goes, 900 (right) goes and moves right's time, 1000 is within 900 + 500,
        // 5000 is not.
        assert_eq!(counts, Some(vec![2, 1]));
        assert_eq!(seen, [Some(1_000), Some(900)]);
        let mut seen = [None, Some(800)];
        assert_eq!(
            synchronized_counts(&parts, &[0, 1], &mut seen, 500, [false, false]),
            None
        );
        assert_eq!(seen, [Some(5_000), Some(900)]);
    }

    /// A lagging side never seen holds back every record of the other; records of the
    /// lagging side itself always go.
    #[test]
    fn nothing_waits_for_a_side_that_is_not_lagging_and_a_side_never_seen_holds_all() {
        let left = records(&[(0, 100)]);
        let right = records(&[(0, 50), (1, 60)]);
        let parts: Vec<&[DecodedRecord]> = vec![&left, &right];
        let mut seen = [None, None];
        assert_eq!(
            synchronized_counts(&parts, &[0, 1], &mut seen, 0, [false, true]),
            Some(vec![0, 2]),
            "right's records go (only right lags), left's wait for right's to catch up"
        );
        assert_eq!(seen, [None, Some(60)]);
        // With right lagging and never seen, left's record waits though it is the oldest.
        let mut seen = [None, None];
        let right_later = records(&[(0, 500)]);
        let parts: Vec<&[DecodedRecord]> = vec![&left, &right_later];
        assert_eq!(
            synchronized_counts(&parts, &[0, 1], &mut seen, 0, [false, true]),
            Some(vec![0, 0])
        );
        assert_eq!(seen, [None, None]);
    }

    #[test]
    fn max_task_idle_reads_ksqldbs_property() {
        let props = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
        assert_eq!(
            max_task_idle(&props("ksql.streams.max.task.idle.ms", "0")),
            Duration::ZERO
        );
        assert_eq!(
            max_task_idle(&props("max.task.idle.ms", "2500")),
            Duration::from_millis(2500)
        );
        assert_eq!(max_task_idle(&BTreeMap::new()), DEFAULT_MAX_TASK_IDLE);
        assert_eq!(
            max_task_idle(&props("max.task.idle.ms", "-1")),
            Duration::ZERO
        );
        assert_eq!(
            max_task_idle(&props("max.task.idle.ms", "soon")),
            DEFAULT_MAX_TASK_IDLE
        );
    }
}
