//! The history checker: what was written, acknowledged and read, and the invariants of
//! Kafka's replication (from its TLA+ specifications, see `shared/design/CLUSTER-NOTES.md`)
//! checked against it as the run goes and at its end.
//!
//! - **No acknowledged write lost**: a record whose produce was acknowledged (acks=all) is in
//!   the partition's log at the offset it was acknowledged at, on every in-sync replica
//!   (strong ISR), on every newly elected leader (leader completeness) and at the end.
//! - **One offset, one value**: two acknowledgements never name the same offset for
//!   different records, nor one record at two offsets; a read of an offset always returns
//!   the same record (consistent reads) and never one nobody wrote (no phantoms).
//! - **Log matching**: at the end, after healing, every replica's log is the leader's.
//! - **No write stored twice**: the idempotent producer's retries are stored once.
//! - **Deleted stays deleted** (with DeleteRecords): once a DeleteRecords was answered, no
//!   leader serves a record below its offset again, and the final log starts at or past
//!   it; acknowledged writes below an offset someone asked to delete may be missing (only
//!   missing: never replaced by another record).

use std::collections::BTreeMap;

#[derive(Debug, Default)]
pub struct Checker {
    /// Every value a producer sent, with its partition.
    produced: BTreeMap<u64, i32>,
    /// (partition, offset) → value, for acknowledged writes.
    acked: BTreeMap<(i32, i64), u64>,
    acked_at: BTreeMap<u64, (i32, i64)>,
    /// Acknowledged writes in the order they were acknowledged.
    ack_order: Vec<(i32, i64, u64)>,
    /// (partition, offset) → value, as first read by a consumer.
    read: BTreeMap<(i32, i64), u64>,
    /// partition → the highest offset a DeleteRecords asked to delete below.
    delete_requested: BTreeMap<i32, i64>,
    /// partition → the highest offset a DeleteRecords was answered for.
    deleted: BTreeMap<i32, i64>,
    pub violations: Vec<String>,
}

impl Checker {
    pub fn produced(&mut self, value: u64, partition: i32) {
        self.produced.insert(value, partition);
    }

    fn violation(&mut self, now: i64, what: String) {
        if self.violations.len() < 50 {
            self.violations.push(format!("t={now}ms: {what}"));
        }
    }

    /// A produce of `value` was acknowledged at `offset` of `partition`.
    pub fn acknowledged(&mut self, now: i64, partition: i32, offset: i64, value: u64) {
        if let Some(&(p, o)) = self.acked_at.get(&value) {
            if (p, o) != (partition, offset) {
                self.violation(now, format!("write {value} acknowledged at {p}/{o} and again at {partition}/{offset} (stored twice)"));
            }
            return;
        }
        if let Some(&other) = self.acked.get(&(partition, offset)) {
            if other != value {
                self.violation(
                    now,
                    format!("writes {other} and {value} both acknowledged at {partition}/{offset}"),
                );
            }
        }
        if let Some(&seen) = self.read.get(&(partition, offset)) {
            if seen != value {
                self.violation(now, format!("{partition}/{offset} was read as {seen}, then {value} was acknowledged there"));
            }
        }
        self.acked.insert((partition, offset), value);
        self.acked_at.insert(value, (partition, offset));
        self.ack_order.push((partition, offset, value));
    }

    /// A DeleteRecords below `offset` of `partition` was sent (it may or may not apply).
    pub fn delete_requested(&mut self, partition: i32, offset: i64) {
        let at = self.delete_requested.entry(partition).or_insert(0);
        *at = (*at).max(offset);
    }

    /// A leader answered a DeleteRecords below `offset` of `partition`: from now on no
    /// leader may serve a record below it.
    pub fn deleted(&mut self, partition: i32, offset: i64) {
        let at = self.deleted.entry(partition).or_insert(0);
        *at = (*at).max(offset);
    }

    /// `node`, leading `partition` as the metadata says, served `offsets` to a consumer.
    pub fn served(&mut self, now: i64, node: i32, partition: i32, offsets: &[i64]) {
        let deleted = self.deleted.get(&partition).copied().unwrap_or(0);
        if let Some(&o) = offsets.iter().find(|&&o| o < deleted) {
            self.violation(now, format!("leader {node} served {partition}/{o}, below the acknowledged DeleteRecords offset {deleted}"));
        }
    }

    /// Whether an acknowledged write at `offset` may be missing from a log (deleted).
    pub fn may_be_deleted(&self, partition: i32, offset: i64) -> bool {
        offset < self.delete_requested.get(&partition).copied().unwrap_or(0)
    }

    /// A consumer read `records` (offset, value) of `partition` from `position`.
    pub fn read(&mut self, now: i64, partition: i32, position: i64, records: &[(i64, u64)]) {
        let mut expected = position;
        for &(offset, value) in records {
            if offset != expected {
                self.violation(now, format!("read of {partition} from {position}: offset {offset} where {expected} was next (non-monotonic or gap)"));
            }
            expected = offset + 1;
            match self.produced.get(&value) {
                None => self.violation(
                    now,
                    format!("phantom record {value} read at {partition}/{offset}"),
                ),
                Some(&p) if p != partition => self.violation(
                    now,
                    format!("record {value} of partition {p} read in {partition}"),
                ),
                _ => {}
            }
            if let Some(&first) = self.read.get(&(partition, offset)) {
                if first != value {
                    self.violation(
                        now,
                        format!(
                            "inconsistent reads of {partition}/{offset}: {first}, then {value}"
                        ),
                    );
                }
                continue;
            }
            if let Some(&acked) = self.acked.get(&(partition, offset)) {
                if acked != value {
                    self.violation(
                        now,
                        format!("{partition}/{offset} acknowledged as {acked} but read as {value}"),
                    );
                }
            }
            self.read.insert((partition, offset), value);
        }
    }

    /// `log` (offset → value, the whole log of one replica) must hold every acknowledged
    /// write of `partition`: checked on every in-sync replica and at the end.
    pub fn holds_acknowledged(
        &mut self,
        now: i64,
        what: &str,
        partition: i32,
        log: &BTreeMap<i64, u64>,
    ) {
        self.holds_acknowledged_before(now, what, partition, log, usize::MAX);
    }

    /// [`Checker::holds_acknowledged`] for the first `count` writes acknowledged (those a
    /// leader epoch that began then must hold).
    pub fn holds_acknowledged_before(
        &mut self,
        now: i64,
        what: &str,
        partition: i32,
        log: &BTreeMap<i64, u64>,
        count: usize,
    ) {
        let upto = count.min(self.ack_order.len());
        let missing: Vec<(i64, u64, Option<u64>)> = self.ack_order[..upto]
            .iter()
            .filter(|&&(p, o, v)| {
                p == partition
                    && log.get(&o) != Some(&v)
                    && !(log.get(&o).is_none() && self.may_be_deleted(p, o))
            })
            .map(|&(_, o, v)| (o, v, log.get(&o).copied()))
            .take(3)
            .collect();
        for (o, v, found) in missing {
            self.violation(
                now,
                format!(
                    "{what}: acknowledged write {v} at {partition}/{o} missing (found {found:?})"
                ),
            );
        }
    }

    /// At the end: the final leader's log of `partition` against everything read, and
    /// no value stored twice.
    pub fn final_log(&mut self, now: i64, partition: i32, log: &BTreeMap<i64, u64>) {
        self.holds_acknowledged(now, "final leader", partition, log);
        let changed: Vec<(i64, u64, Option<u64>)> = self
            .read
            .range((partition, i64::MIN)..=(partition, i64::MAX))
            .filter(|(&(_, o), v)| {
                log.get(&o) != Some(v)
                    && !(log.get(&o).is_none() && self.may_be_deleted(partition, o))
            })
            .map(|(&(_, o), &v)| (o, v, log.get(&o).copied()))
            .take(3)
            .collect();
        for (o, v, found) in changed {
            self.violation(
                now,
                format!("{partition}/{o} was read as {v} but the final log has {found:?}"),
            );
        }
        let deleted = self.deleted.get(&partition).copied().unwrap_or(0);
        if let Some((&first, _)) = log.first_key_value().filter(|(&o, _)| o < deleted) {
            self.violation(now, format!("the final log of {partition} holds {first}, below the acknowledged DeleteRecords offset {deleted}"));
        }
        let mut seen: BTreeMap<u64, i64> = BTreeMap::new();
        for (&o, &v) in log {
            if let Some(first) = seen.insert(v, o) {
                self.violation(
                    now,
                    format!("write {v} stored twice in {partition}: at {first} and {o}"),
                );
            }
        }
    }

    /// One past the highest acknowledged offset of `partition` (0: none yet).
    pub fn acknowledged_end(&self, partition: i32) -> i64 {
        self.acked
            .range((partition, i64::MIN)..=(partition, i64::MAX))
            .next_back()
            .map_or(0, |(&(_, o), _)| o + 1)
    }

    pub fn acknowledged_count(&self) -> usize {
        self.acked.len()
    }

    pub fn read_count(&self) -> usize {
        self.read.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_anomaly_is_reported() {
        let mut c = Checker::default();
        c.produced(1, 0);
        c.produced(2, 0);
        c.acknowledged(0, 0, 0, 1);
        assert!(c.violations.is_empty());
        c.acknowledged(1, 0, 0, 2); // two writes at one offset
        c.read(2, 0, 0, &[(0, 1), (2, 2)]); // a gap
        c.read(3, 0, 0, &[(0, 9)]); // phantom, inconsistent
        let log = BTreeMap::from([(0, 1), (1, 1)]);
        c.final_log(4, 0, &log); // stored twice
        let all = c.violations.join("\n");
        for needle in [
            "both acknowledged",
            "gap",
            "phantom",
            "inconsistent",
            "stored twice",
        ] {
            assert!(all.contains(needle), "{needle} not reported in:\n{all}");
        }
        let mut d = Checker::default();
        for v in 1..=3 {
            d.produced(v, 0);
            d.acknowledged(0, 0, v as i64 - 1, v);
        }
        d.delete_requested(0, 2);
        d.holds_acknowledged(1, "replica", 0, &BTreeMap::from([(2, 3)]));
        assert!(d.violations.is_empty(), "{:?}", d.violations);
        d.holds_acknowledged(1, "replica", 0, &BTreeMap::from([(0, 9), (2, 3)]));
        assert_eq!(
            d.violations.len(),
            1,
            "a deleted offset holding another record"
        );
        d.deleted(0, 2);
        d.served(2, 1, 0, &[1, 2]);
        d.final_log(3, 0, &BTreeMap::from([(1, 2), (2, 3)]));
        let all = d.violations.join("\n");
        assert!(all.contains("served 0/1, below"), "{all}");
        assert!(all.contains("final log of 0 holds 1"), "{all}");
        let mut ok = Checker::default();
        ok.produced(5, 1);
        ok.acknowledged(0, 1, 0, 5);
        ok.read(1, 1, 0, &[(0, 5)]);
        ok.final_log(2, 1, &BTreeMap::from([(0, 5)]));
        assert!(ok.violations.is_empty(), "{:?}", ok.violations);
    }
}
