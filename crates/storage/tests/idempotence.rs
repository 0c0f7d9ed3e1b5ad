//! Idempotent producers at the log (invariants 7 and 8): a retried batch is answered with
//! its original offsets and never stored twice, gaps and zombie epochs are refused, and
//! the state that decides this survives clean restarts, crashes and snapshot loss.

mod common;

use common::{producer_batch, sync, World};
use strata_records::crc_of;
use strata_storage::fs::CrashMode;
use strata_storage::{Fs, LogConfig, StorageError};

fn batch(pid: i64, epoch: i16, seq: i32, n: usize) -> Vec<u8> {
    producer_batch(pid, epoch, seq, n, false)
}

fn small_segments() -> LogConfig {
    LogConfig {
        segment_bytes: 400,
        ..LogConfig::default()
    }
}

#[test]
fn retries_are_answered_with_original_offsets_and_stored_once() {
    let w = World::new();
    let mut log = w.open(LogConfig::default());
    let a = log.append(&batch(7, 0, 0, 3), 0).unwrap();
    let b = log.append(&batch(7, 0, 3, 2), 0).unwrap();
    assert_eq!((a.base_offset, b.base_offset), (0, 3));
    // Both retried: same offsets, nothing appended.
    let ra = log.append(&batch(7, 0, 0, 3), 0).unwrap();
    let rb = log.append(&batch(7, 0, 3, 2), 0).unwrap();
    assert_eq!((ra.base_offset, ra.last_offset), (0, 2));
    assert_eq!((rb.base_offset, rb.last_offset), (3, 4));
    assert_eq!(log.log_end_offset(), 5);
    // A gap is refused and stores nothing.
    let gap = log.append(&batch(7, 0, 9, 1), 0).unwrap_err();
    assert!(matches!(gap, StorageError::Sequence(_)), "{gap}");
    // A zombie epoch after a bump is refused.
    log.append(&batch(7, 1, 0, 1), 0).unwrap();
    let zombie = log.append(&batch(7, 0, 5, 1), 0).unwrap_err();
    assert!(
        zombie.to_string().contains("older than its current epoch"),
        "{zombie}"
    );
    assert_eq!(log.log_end_offset(), 6);
    // Other producers and non-idempotent batches are independent.
    log.append(&batch(8, 0, 100, 1), 0).unwrap();
    log.append(&batch(-1, -1, -1, 1), 0).unwrap();
    log.append(&batch(-1, -1, -1, 1), 0).unwrap();
    assert_eq!(log.log_end_offset(), 9);
}

#[test]
fn two_batches_of_one_request_are_checked_in_order() {
    let w = World::new();
    let mut log = w.open(LogConfig::default());
    let mut two = batch(3, 0, 0, 2);
    two.extend(batch(3, 0, 2, 2));
    assert_eq!(log.append(&two, 0).unwrap().last_offset, 3);
    let mut gap = batch(3, 0, 4, 1);
    gap.extend(batch(3, 0, 9, 1));
    assert!(log.append(&gap, 0).is_err());
    assert_eq!(log.log_end_offset(), 4, "all batches or none");
}

/// The state must survive every way of reopening, or a retry after a restart would be
/// stored twice.
#[test]
fn producer_state_survives_clean_restart_crash_and_lost_snapshots() {
    for how in ["clean", "crash", "snapshots-lost", "snapshot-corrupt"] {
        let w = World::new();
        let mut log = w.open(small_segments());
        let mut seq = 0;
        for _ in 0..20 {
            log.append(&batch(42, 0, seq, 2), 0).unwrap();
            seq += 2;
        }
        sync(&mut log);
        assert!(log.segment_count() > 3, "rolled, so snapshots were written");
        match how {
            "clean" => {
                log.prepare_close().unwrap();
                w.fs.crash(CrashMode::KeepAll);
            }
            "crash" => w.fs.crash(CrashMode::LoseUnsynced),
            _ => {
                let snaps: Vec<_> =
                    w.fs.file_paths()
                        .into_iter()
                        .filter(|p| p.extension().is_some_and(|e| e == "snapshot"))
                        .collect();
                assert!(!snaps.is_empty());
                for p in snaps {
                    if how == "snapshots-lost" {
                        w.fs.remove_file(&p).unwrap();
                    } else {
                        w.fs.flip_bit(&p, 7, 1);
                    }
                }
                w.fs.crash(CrashMode::KeepAll);
            }
        }
        drop(log);
        let mut log = w.open(small_segments());
        assert_eq!(log.log_end_offset(), 40, "{how}");
        // The last five batches are recognised as duplicates with their offsets...
        for back in 1..=5 {
            let s = seq - 2 * back;
            let info = log.append(&batch(42, 0, s, 2), 0).unwrap();
            assert_eq!(info.base_offset, s as i64, "{how}: retry of sequence {s}");
        }
        assert_eq!(log.log_end_offset(), 40, "{how}: nothing stored twice");
        // ...and the sequence goes on where it was.
        assert!(log.append(&batch(42, 0, seq + 1, 1), 0).is_err(), "{how}");
        assert_eq!(
            log.append(&batch(42, 0, seq, 1), 0).unwrap().base_offset,
            40
        );
    }
}

#[test]
fn unsynced_batch_lost_in_a_crash_is_not_a_duplicate_when_retried() {
    let w = World::new();
    let mut log = w.open(LogConfig::default());
    log.append(&batch(5, 0, 0, 1), 0).unwrap();
    sync(&mut log);
    // Appended but never synced (so never acknowledged), then power loss.
    log.append(&batch(5, 0, 1, 1), 0).unwrap();
    w.fs.crash(CrashMode::LoseUnsynced);
    drop(log);
    let mut log = w.open(LogConfig::default());
    assert_eq!(log.log_end_offset(), 1);
    // The producer's retry is stored, once.
    assert_eq!(log.append(&batch(5, 0, 1, 1), 0).unwrap().base_offset, 1);
    assert_eq!(log.append(&batch(5, 0, 1, 1), 0).unwrap().base_offset, 1);
    assert_eq!(log.log_end_offset(), 2);
}

#[test]
fn silent_producers_expire() {
    let w = World::new();
    let config = LogConfig {
        producer_id_expiration_ms: 60_000,
        ..small_segments()
    };
    let mut log = w.open(config.clone());
    log.append(&batch(9, 0, 0, 1), 0).unwrap();
    sync(&mut log);
    log.prepare_close().unwrap();
    drop(log);
    w.clock.advance_ms(120_000);
    let mut log = w.open(config);
    assert!(log.producer_state().get(9).is_none());
    // An expired producer's next batch is accepted whatever its sequence.
    log.append(&batch(9, 0, 17, 1), 0).unwrap();
}

#[test]
fn transactional_batches_need_an_open_transaction() {
    let w = World::new();
    let mut log = w.open(LogConfig::default());
    let mut b = batch(11, 0, 0, 1);
    // attributes bit 4: transactional.
    b[22] |= 0x10;
    let crc = crc_of(&b);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    assert!(matches!(
        log.append(&b, 0).unwrap_err(),
        StorageError::NoOpenTransaction(11)
    ));
    assert_eq!(log.log_end_offset(), 0);
}

/// DeleteRecords past every batch of a producer (the broker's log start checkpoint then
/// places the log start past them, inside a segment): its state survives a crash, so its
/// retry of a deleted batch is answered as the duplicate it is, not stored again. (Kafka
/// forgets such a producer and accepts any sequence from it; the simulation's
/// `--delete-records` found the write stored twice here before.)
#[test]
fn a_producer_whose_batches_were_deleted_is_still_known_after_a_crash() {
    use strata_storage::RecoveryHint;
    let w = World::new();
    let mut log = w.open(small_segments());
    log.append(&batch(5, 0, 0, 1), 0).unwrap();
    log.roll().unwrap();
    log.append(&batch(-1, -1, -1, 1), 0).unwrap();
    log.append(&batch(5, 0, 1, 1), 0).unwrap();
    sync(&mut log);
    assert_eq!(log.delete_records_before(3).unwrap(), 3);
    w.fs.crash(CrashMode::KeepAll);
    drop(log);
    let hint = RecoveryHint {
        log_start_offset: Some(3),
        ..RecoveryHint::default()
    };
    let mut log = w.open_managed(small_segments(), hint);
    assert_eq!(log.log_start_offset(), 3);
    let retry = log.append(&batch(5, 0, 1, 1), 0).unwrap();
    assert_eq!(retry.base_offset, 2, "answered with its original offset");
    assert_eq!(log.log_end_offset(), 3, "not stored again");
}

/// A replica that starts over at its leader's local log start (tiered storage holds what
/// is below) takes the producer state from the copied snapshot: a retry of a batch written
/// before that offset is recognised, a gap refused, and the state survives a crash.
#[test]
fn a_replica_starting_over_restores_producer_state_from_a_snapshot() {
    let w = World::new();
    let mut leader = w.open_at("leader", LogConfig::default());
    leader.append(&batch(7, 0, 0, 3), 0).unwrap();
    leader.append(&batch(7, 0, 3, 2), 0).unwrap();
    let snapshot = leader.producer_state().encode();
    let start = leader.log_end_offset();

    let mut replica = w.open_at("replica", LogConfig::default());
    replica.truncate_fully_and_start_at(start).unwrap();
    assert!(replica.restore_producer_state(start, &snapshot).unwrap());
    // The retried batch is the one at 3..=4, below this log's start: not stored again.
    let retried = replica.append(&batch(7, 0, 3, 2), 0).unwrap();
    assert_eq!((retried.base_offset, retried.last_offset), (3, 4));
    assert_eq!(replica.log_end_offset(), start);
    let gap = replica.append(&batch(7, 0, 9, 1), 0).unwrap_err();
    assert!(matches!(gap, StorageError::Sequence(_)), "{gap}");
    replica.append(&batch(7, 0, 5, 1), 0).unwrap();
    sync(&mut replica);
    drop(replica);
    w.fs.crash(CrashMode::LoseUnsynced);
    let mut replica = w.open_at("replica", LogConfig::default());
    let retried = replica.append(&batch(7, 0, 5, 1), 0).unwrap();
    assert_eq!(retried.base_offset, start);
    // Only an empty log at that offset takes a snapshot; a bad one is refused.
    assert!(!replica.restore_producer_state(start, &snapshot).unwrap());
    let mut other = w.open_at("other", LogConfig::default());
    other.truncate_fully_and_start_at(start).unwrap();
    assert!(other
        .restore_producer_state(start, b"not a snapshot")
        .is_err());
}
