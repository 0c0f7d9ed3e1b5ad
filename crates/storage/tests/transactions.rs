//! Transactions at the log: the last stable offset, markers and the aborted-transaction
//! list read_committed fetches need (invariants 4 and 10), across restarts and crashes.

mod common;

use common::{producer_batch as batch, sync, World};
use strata_records::decode_records;
use strata_storage::fs::CrashMode;
use strata_storage::{Log, LogConfig};

fn small_segments() -> LogConfig {
    LogConfig {
        segment_bytes: 500,
        ..LogConfig::default()
    }
}

fn committed_offsets(log: &Log) -> Vec<i64> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while let Some(slice) = log.slice_committed(offset, 1 << 20, true).unwrap() {
        for r in decode_records(slice.read().unwrap()).unwrap() {
            out.push(r.offset);
            offset = r.offset + 1;
        }
    }
    out
}

#[test]
fn open_transaction_holds_the_last_stable_offset_until_its_marker() {
    let w = World::new();
    let mut log = w.open(small_segments());
    log.append(&batch(-1, -1, -1, 2, false), 0).unwrap(); // 0, 1
    log.append_transactional(&batch(7, 0, 0, 2, true), 0)
        .unwrap(); // 2, 3
    log.append(&batch(-1, -1, -1, 1, false), 0).unwrap(); // 4
    sync(&mut log);
    assert_eq!(log.high_watermark(), 5);
    assert_eq!(log.last_stable_offset(), 2);
    assert_eq!(
        committed_offsets(&log),
        vec![0, 1],
        "nothing at or past the LSO"
    );
    // Commit: everything becomes stable; no aborted transactions.
    let marker = log.append_marker(7, 0, true, 0, 0).unwrap();
    assert_eq!(marker.base_offset, 5);
    sync(&mut log);
    assert_eq!(log.last_stable_offset(), 6);
    assert!(log.aborted_transactions(0, 6).is_empty());
    assert_eq!(committed_offsets(&log), vec![0, 1, 2, 3, 4, 5]);
}

#[test]
fn aborted_transactions_are_listed_for_read_committed() {
    let w = World::new();
    let mut log = w.open(small_segments());
    log.append_transactional(&batch(1, 0, 0, 2, true), 0)
        .unwrap(); // 0, 1
    log.append_transactional(&batch(2, 0, 0, 1, true), 0)
        .unwrap(); // 2
    log.append_marker(1, 0, false, 0, 0).unwrap(); // 3: abort 1
    sync(&mut log);
    // Producer 2 still open at 2.
    assert_eq!(log.last_stable_offset(), 2);
    assert_eq!(log.aborted_transactions(0, 10), vec![(1, 0)]);
    log.append_marker(2, 0, true, 0, 0).unwrap(); // 4: commit 2
    sync(&mut log);
    assert_eq!(log.last_stable_offset(), 5);
    assert_eq!(log.aborted_transactions(0, 5), vec![(1, 0)]);
    // Fetching from past the aborted range does not list it.
    assert!(log.aborted_transactions(4, 5).is_empty());
}

#[test]
fn transaction_state_survives_clean_restart_and_crash() {
    for clean in [true, false] {
        let w = World::new();
        let mut log = w.open(small_segments());
        for i in 0..10 {
            log.append(&batch(-1, -1, -1, 3, false), 0).unwrap();
            log.append_transactional(&batch(5, 0, i * 2, 2, true), 0)
                .unwrap();
            log.append_marker(5, 0, i % 2 == 0, 0, 0).unwrap();
        }
        log.append_transactional(&batch(6, 0, 0, 1, true), 0)
            .unwrap();
        let open_at = log.log_end_offset() - 1;
        log.append(&batch(-1, -1, -1, 1, false), 0).unwrap();
        sync(&mut log);
        assert!(log.segment_count() > 2);
        let aborted = log.aborted_transactions(0, i64::MAX);
        assert_eq!(aborted.len(), 5);
        if clean {
            log.prepare_close().unwrap();
            w.fs.crash(CrashMode::KeepAll);
        } else {
            w.fs.crash(CrashMode::LoseUnsynced);
        }
        drop(log);
        let log = w.open(small_segments());
        assert_eq!(
            log.aborted_transactions(0, i64::MAX),
            aborted,
            "clean={clean}"
        );
        assert_eq!(
            log.last_stable_offset(),
            open_at,
            "clean={clean}: still open"
        );
    }
}

/// Transactional offset commits: a coordinator writes batches with no sequence for a
/// producer; they open its transaction like data does, repeat freely (no sequence to go out
/// of order), and an older epoch is fenced.
#[test]
fn coordinator_batches_skip_sequences_but_not_epochs() {
    let w = World::new();
    let mut log = w.open(small_segments());
    let offsets_batch = |epoch: i16| {
        let mut b = strata_records::BatchBuilder::new(strata_records::Compression::None);
        b.push(strata_records::Record {
            key: Some(bytes::Bytes::from_static(b"k")),
            value: Some(bytes::Bytes::from_static(b"v")),
            headers: vec![],
            timestamp_ms: 0,
        });
        b.transactional(9, epoch);
        b.build().unwrap().to_vec()
    };
    // A producer's own transactional batch refused without verification...
    assert!(log.append(&offsets_batch(3), 0).is_err());
    // ...but a coordinator's is taken, twice (no sequence), and holds the LSO.
    assert_eq!(
        log.append_coordinator(&offsets_batch(3), 0)
            .unwrap()
            .base_offset,
        0
    );
    assert_eq!(
        log.append_coordinator(&offsets_batch(3), 0)
            .unwrap()
            .base_offset,
        1
    );
    sync(&mut log);
    assert_eq!(log.last_stable_offset(), 0);
    // A newer epoch seen, then an older one is fenced.
    log.append_marker(9, 4, false, 0, 0).unwrap(); // 2
    assert!(matches!(
        log.append_coordinator(&offsets_batch(3), 0),
        Err(strata_storage::StorageError::Sequence(_))
    ));
    sync(&mut log);
    assert_eq!(log.last_stable_offset(), 3);
    assert_eq!(log.aborted_transactions(0, 3), vec![(9, 0)]);
}

/// A verified transactional record set must be one producer's transactional batches only.
#[test]
fn a_verified_record_set_holds_only_that_transaction() {
    let w = World::new();
    let mut log = w.open(small_segments());
    let mut mixed = batch(7, 0, 0, 1, true);
    mixed.extend(batch(8, 0, 0, 1, true));
    assert!(log.append_transactional(&mixed, 0).is_err());
    let mut with_plain = batch(7, 0, 0, 1, true);
    with_plain.extend(batch(-1, -1, -1, 1, false));
    assert!(log.append_transactional(&with_plain, 0).is_err());
    assert_eq!(log.log_end_offset(), 0, "nothing written");
    let mut two = batch(7, 0, 0, 1, true);
    two.extend(batch(7, 0, 1, 1, true));
    assert_eq!(log.append_transactional(&two, 0).unwrap().last_offset, 1);
}

/// KIP-890 across brokers: a write verified by a remote coordinator lands only if no marker
/// for its producer came between the verification and the write.
#[test]
fn a_marker_between_remote_verification_and_write_refuses_the_write() {
    let w = World::new();
    let partition = strata_storage::Partition::new("t".into(), 0, 0, w.open(small_segments()));
    assert!(partition.needs_verification(7));
    // Verified, then written: the transaction opens; later writes need no verification.
    let guard = partition.begin_verification(7);
    partition
        .append_verified(&batch(7, 0, 0, 1, true), 7, Some(guard))
        .unwrap();
    assert!(!partition.needs_verification(7));
    partition
        .append_verified(&batch(7, 0, 1, 1, true), 7, None)
        .unwrap();
    partition.append_marker(7, 0, true, 0).unwrap();
    assert!(partition.needs_verification(7));
    // Verified for the next transaction, but the transaction ended (marker) before the write.
    let late = partition.begin_verification(7);
    partition.append_marker(7, 0, false, 0).unwrap();
    let refused = partition.append_verified(&batch(7, 0, 2, 1, true), 7, Some(late));
    assert!(matches!(
        refused,
        Err(strata_storage::StorageError::VerificationLost(7))
    ));
    // Without a guard a write cannot open a transaction either.
    assert!(partition
        .append_verified(&batch(7, 0, 2, 1, true), 7, None)
        .is_err());
    // A guard is good once: a second verification replaces the first.
    let first = partition.begin_verification(7);
    let second = partition.begin_verification(7);
    assert!(partition
        .append_verified(&batch(7, 0, 2, 1, true), 7, Some(first))
        .is_err());
    partition
        .append_verified(&batch(7, 0, 2, 1, true), 7, Some(second))
        .unwrap();
}
