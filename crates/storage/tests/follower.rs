//! A follower's log is the leader's, byte for byte: `Log::append_replicated` takes the batches
//! a follower fetched (`Log::slice_replica`, up to the leader's log end) as stored, and the
//! state derived from them (producer sequences, open transactions, leader epochs) is what
//! the leader has, so the follower can lead next.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{producer_batch, World};
use strata_storage::{Clock, Fs, Log, LogConfig};

fn open(w: &World, dir: &str) -> Log {
    let fs: Arc<dyn Fs> = Arc::new(w.fs.clone());
    let clock: Arc<dyn Clock> = w.clock.clone();
    let config = LogConfig {
        segment_bytes: 600,
        ..LogConfig::default()
    };
    Log::open(fs, clock, &Path::new("/data").join(dir), config).unwrap()
}

/// Copies everything the follower lacks, as a fetch loop would.
fn replicate(leader: &Log, follower: &mut Log) {
    loop {
        let from = follower.log_end_offset();
        let Some(slice) = leader.slice_replica(from, 700).unwrap() else {
            return;
        };
        let bytes = slice.read().unwrap();
        follower.append_replicated(&bytes).unwrap();
        common::sync(follower);
    }
}

fn all_bytes(w: &World, dir: &str) -> Vec<u8> {
    let mut files: Vec<_> = w
        .fs
        .file_paths()
        .into_iter()
        .filter(|p| {
            p.starts_with(Path::new("/data").join(dir)) && p.extension().is_some_and(|e| e == "log")
        })
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let file = w.fs.open(&f, false).unwrap();
        let mut buf = vec![0u8; file.len().unwrap() as usize];
        file.read_exact_at(&mut buf, 0).unwrap();
        out.extend(buf);
    }
    out
}

#[test]
fn the_follower_holds_the_leaders_bytes_and_state() {
    let w = World::new();
    let mut leader = open(&w, "t-0");
    let mut follower = open(&w, "f-0");
    for seq in 0..20 {
        leader
            .append(&producer_batch(7, 0, seq * 2, 2, false), 0)
            .unwrap();
    }
    // A new leader epoch, and an open transaction.
    for seq in 40..45 {
        leader
            .append(&producer_batch(7, 0, seq, 1, false), 4)
            .unwrap();
    }
    leader
        .append_transactional(&producer_batch(9, 0, 0, 3, true), 4)
        .unwrap();
    common::sync(&mut leader);

    replicate(&leader, &mut follower);
    assert_eq!(follower.log_end_offset(), leader.log_end_offset());
    assert!(leader.segment_count() > 2, "several segments");
    assert_eq!(all_bytes(&w, "f-0"), all_bytes(&w, "t-0"));
    assert_eq!(
        follower.end_offset_for_epoch(0),
        leader.end_offset_for_epoch(0)
    );
    assert_eq!(
        follower.end_offset_for_epoch(4),
        leader.end_offset_for_epoch(4)
    );
    assert_eq!(follower.latest_epoch(), 4);
    // The open transaction holds back the last stable offset on both.
    assert_eq!(follower.last_stable_offset(), leader.last_stable_offset());
    assert!(follower.last_stable_offset() < follower.log_end_offset());

    // The marker replicates and closes it there too.
    leader.append_marker(9, 0, true, 0, 4).unwrap();
    common::sync(&mut leader);
    replicate(&leader, &mut follower);
    assert_eq!(follower.last_stable_offset(), follower.log_end_offset());

    // Were the follower to lead, producer 7's next sequence continues, and a retry of its
    // last batch is recognised instead of stored twice.
    let end = follower.log_end_offset();
    let retry = follower
        .append(&producer_batch(7, 0, 44, 1, false), 5)
        .unwrap();
    assert_eq!(
        follower.log_end_offset(),
        end,
        "a retry is not stored again"
    );
    assert!(retry.base_offset < end);
    assert!(
        follower
            .append(&producer_batch(7, 0, 50, 1, false), 5)
            .is_err(),
        "a gap is refused"
    );
    assert_eq!(
        follower
            .append(&producer_batch(7, 0, 45, 1, false), 5)
            .unwrap()
            .base_offset,
        end
    );
}

#[test]
fn corrupt_or_misplaced_batches_are_refused_and_a_partial_tail_waits() {
    let w = World::new();
    let mut leader = open(&w, "t-0");
    let mut follower = open(&w, "f-0");
    for seq in 0..3 {
        leader
            .append(&producer_batch(-1, 0, seq, 1, false), 0)
            .unwrap();
    }
    common::sync(&mut leader);
    let bytes = leader
        .slice_replica(0, 1 << 20)
        .unwrap()
        .unwrap()
        .read()
        .unwrap();
    // A torn tail: only the whole batches before it are taken.
    let cut = bytes.len() - 5;
    let appended = follower.append_replicated(&bytes[..cut]).unwrap();
    assert_eq!(appended, Some((0, 1)));
    // Batches the follower already has are not appended again at a new place.
    assert!(follower.append_replicated(&bytes).is_err());
    // A flipped bit fails the CRC.
    let rest = leader
        .slice_replica(2, 1 << 20)
        .unwrap()
        .unwrap()
        .read()
        .unwrap();
    let mut corrupt = rest.to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    assert!(follower.append_replicated(&corrupt).is_err());
    assert_eq!(follower.append_replicated(&rest).unwrap(), Some((2, 2)));
    assert_eq!(follower.log_end_offset(), 3);
}

/// A leader's log of three two-record batches (offsets 0..6) in `leader_dir`, and a fresh
/// follower in `follower_dir` with the bytes its first fetch would get.
fn follower_of_three_batches(
    w: &World,
    leader_dir: &str,
    follower_dir: &str,
) -> (strata_storage::Partition, Vec<u8>) {
    let mut leader = open(w, leader_dir);
    for i in 0..3 {
        leader
            .append(&producer_batch(-1, 0, 0, 1 + i, false), 1)
            .unwrap();
        common::sync(&mut leader);
    }
    let follower = strata_storage::Partition::new("t".into(), 0, 1, open(w, follower_dir));
    follower.become_follower(2, 1, 1);
    let bytes = leader
        .slice_replica(0, 1 << 20)
        .unwrap()
        .unwrap()
        .read()
        .unwrap();
    (follower, bytes.to_vec())
}

/// Found by the simulation: an answer meant for an earlier fetch (a late or repeated one) is
/// ignored, so a stale "diverged" never cuts records this replica has since reported to the
/// leader as held.
#[test]
fn a_stale_answer_from_the_leader_is_ignored() {
    use strata_storage::LeaderAnswer;
    let w = World::new();
    let (follower, bytes) = follower_of_three_batches(&w, "t-0", "t-1");
    let before = follower.replica_fetch_position().unwrap();
    let records = LeaderAnswer::Records {
        records: Some(&bytes),
        high_watermark: 0,
        log_start_offset: 0,
    };
    assert!(follower.apply_leader_answer(before, records).unwrap());
    let end = follower.log().log_end_offset();
    assert_eq!(end, 6);
    let stale = LeaderAnswer::Diverging {
        epoch: 0,
        end_offset: 0,
    };
    assert!(
        !follower.apply_leader_answer(before, stale).unwrap(),
        "asked from 0, now at 6"
    );
    assert!(
        !follower.apply_leader_answer(before, records).unwrap(),
        "nor appended twice"
    );
    assert_eq!(follower.log().log_end_offset(), end);
    let now = follower.replica_fetch_position().unwrap();
    assert!(follower.apply_leader_answer(now, stale).unwrap());
    assert_eq!(
        follower.log().log_end_offset(),
        0,
        "an answer to the latest fetch applies"
    );
}

/// Found by the simulation (seed 16716): an AlterPartition answer that arrives after the
/// metadata moved past it is ignored — applying it left the leader counting a replica the
/// committed ISR no longer had, so it never asked to add that replica back.
#[test]
fn a_late_isr_answer_does_not_undo_newer_metadata() {
    use strata_storage::Partition;
    let w = World::new();
    let p = Partition::new("t".into(), 0, 0, open(&w, "t-2"));
    p.set_role(1, 1, 3, 9, &[1, 3], 2); // the metadata: epoch 9 took 2 out again
    p.isr_change_committed(&[1, 3, 2], 9); // the answer to the request made at epoch 8
    assert_eq!(p.isr().0, vec![1, 3], "stale: ignored");
    p.isr_change_committed(&[1, 3, 2], 10);
    assert_eq!(p.isr().0, vec![1, 3, 2], "newer than the metadata: applied");
    assert_eq!(p.partition_epoch(), 10);
}

/// A request checked for leadership before it waited (a transactional write's verification)
/// must not land in the log once the replica follows: a follower's own append would take an
/// offset its leader fills with another batch, and fetching on from its own end it would
/// keep the difference (seed 33069 of `scripts/chaos`: one replica held a producer's batch
/// at the offset where the others held a transaction marker, and the batch twice).
#[test]
fn a_follower_refuses_a_leaders_append() {
    use strata_storage::{Partition, StorageError};
    let w = World::new();
    let p = Partition::new("t".into(), 0, 0, open(&w, "t-3"));
    p.set_role(1, 1, 1, 1, &[1, 2], 1);
    p.append(&producer_batch(-1, 0, 0, 1, false)).unwrap();
    p.set_role(1, 2, 2, 2, &[1, 2], 1);
    for refused in [
        p.append(&producer_batch(-1, 0, 0, 1, false)),
        p.append_transactional(&producer_batch(7, 0, 0, 1, true)),
        p.append_coordinator(&producer_batch(7, 0, -1, 1, true)),
        p.append_marker(7, 0, true, 0),
    ] {
        assert!(
            matches!(refused, Err(StorageError::NotLeader)),
            "{refused:?}"
        );
    }
    assert_eq!(
        p.log().log_end_offset(),
        1,
        "nothing appended as a follower"
    );
}

/// Records deleted on the leader (DeleteRecords, retention) are deleted on its followers:
/// each fetch answer carries the leader's log start offset and the follower's follows it,
/// never past what the follower knows is committed. Otherwise a new leader would serve again
/// what a consumer of the old one had seen deleted (found by the SQL cluster test: a
/// repartition topic purged by its query reappeared whole after a failover).
#[test]
fn the_follower_follows_the_leaders_log_start_offset() {
    use strata_storage::LeaderAnswer;
    let w = World::new();
    let (follower, bytes) = follower_of_three_batches(&w, "t-3", "t-4");
    let at = follower.replica_fetch_position().unwrap();
    let answer = LeaderAnswer::Records {
        records: Some(&bytes),
        high_watermark: 4,
        log_start_offset: 5,
    };
    assert!(follower.apply_leader_answer(at, answer).unwrap());
    assert_eq!(follower.high_watermark(), 4);
    assert_eq!(
        follower.log().log_start_offset(),
        4,
        "not past the follower's high watermark"
    );
    let at = follower.replica_fetch_position().unwrap();
    let answer = LeaderAnswer::Records {
        records: None,
        high_watermark: 6,
        log_start_offset: 5,
    };
    assert!(follower.apply_leader_answer(at, answer).unwrap());
    assert_eq!(follower.log().log_start_offset(), 5);
    let at = follower.replica_fetch_position().unwrap();
    let unknown = LeaderAnswer::Records {
        records: None,
        high_watermark: 6,
        log_start_offset: -1,
    };
    follower.apply_leader_answer(at, unknown).unwrap();
    assert_eq!(follower.log().log_start_offset(), 5, "never moves back");
    assert_eq!(follower.log().log_end_offset(), 6, "offsets never move");
}
