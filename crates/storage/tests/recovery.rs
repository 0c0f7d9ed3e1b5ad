//! Recovery that starts mid-segment (issue 18): the recovery point checkpoint plus the index
//! entries synced with it let a restart scan only what follows the checkpointed offset, and
//! the power-loss guarantees (invariants 1, 2 and 5) hold exactly as for a full scan: a
//! torn or corrupt tail past the recovery point is found and cut, an index that does not
//! match the log falls back to scanning the whole segment, producer state comes back whole.

mod common;

use std::path::Path;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use common::World;
use strata_records::{decode_records, BatchBuilder, Compression, Record};
use strata_storage::fs::CrashMode;
use strata_storage::{Fs, Log, LogConfig};

const SEGMENT: &str = "/data/t-0/00000000000000000000.log";
const INDEX: &str = "/data/t-0/00000000000000000000.index";

fn batch(i: usize) -> Vec<u8> {
    let mut b = BatchBuilder::new(Compression::None);
    b.push(Record {
        value: Some(Bytes::from(format!("value-{i:06}-{}", "x".repeat(100)))),
        timestamp_ms: 1_000_000 + i as i64,
        ..Default::default()
    });
    b.build().unwrap().to_vec()
}

/// Appends `from..to` as acks=all produces (each synced).
fn produce(log: &mut Log, from: usize, to: usize) {
    for i in from..to {
        log.append(&batch(i), 0).unwrap();
        common::sync(log);
    }
}

/// Appends `from..to` without syncing (a crash may take them).
fn append_unsynced(log: &mut Log, from: usize, to: usize) {
    for i in from..to {
        log.append(&batch(i), 0).unwrap();
    }
}

fn config() -> LogConfig {
    LogConfig {
        index_interval_bytes: 1024,
        producer_snapshot_interval_bytes: 64 << 10,
        ..LogConfig::default()
    }
}

/// Every record from the log start, checked to be value `i` at offset `i`.
fn check_contents(log: &Log, expected: usize) {
    let mut offset = 0;
    while offset < log.high_watermark() {
        let data = log.read(offset, 64 << 10).unwrap();
        let records = decode_records(data.records).unwrap();
        assert!(!records.is_empty(), "nothing read at {offset}");
        for r in records {
            let value = String::from_utf8(r.value.unwrap().to_vec()).unwrap();
            assert!(
                value.starts_with(&format!("value-{:06}-", r.offset)),
                "offset {} holds {value}",
                r.offset
            );
            offset = r.offset + 1;
        }
    }
    assert_eq!(offset as usize, expected);
    // Index lookups land on the right batch everywhere, also inside the trusted prefix.
    for probe in [0, 1, expected / 3, expected / 2, expected.saturating_sub(1)] {
        if probe < expected {
            let data = log.read(probe as i64, 200).unwrap();
            let first = decode_records(data.records).unwrap()[0].offset;
            assert_eq!(first, probe as i64, "read at {probe}");
        }
    }
}

fn bytes_read(w: &World) -> u64 {
    w.fs.stats().bytes_read.load(Ordering::SeqCst)
}

#[test]
fn a_recovery_point_inside_the_segment_limits_the_scan_to_what_follows_it() {
    let w = World::new();
    let mut log = w.open(config());
    produce(&mut log, 0, 3000);
    log.write_recovery_point().unwrap();
    produce(&mut log, 3000, 3100);
    drop(log); // the process dies: no clean close
    w.fs.crash(CrashMode::KeepAll);
    let segment_len = w.fs.open(Path::new(SEGMENT), false).unwrap().len().unwrap();

    let before = bytes_read(&w);
    let log = w.open(config());
    let read = bytes_read(&w) - before;
    assert_eq!(log.log_end_offset(), 3100);
    assert_eq!(
        log.segment_count(),
        1,
        "one segment: the whole log is in it"
    );
    assert!(
        read * 10 < segment_len,
        "recovery read {read} bytes of a {segment_len}-byte segment"
    );
    check_contents(&log, 3100);
    assert_eq!(log.max_timestamp(), 1_000_000 + 3099);
    assert_eq!(
        log.offset_for_timestamp(1_000_000 + 1234)
            .unwrap()
            .map(|(o, _)| o),
        Some(1234),
        "the time index kept from before the recovery point still finds records"
    );

    // Without the checkpoint the same log is scanned in full (what restarts did before).
    drop(log);
    w.fs.crash(CrashMode::KeepAll);
    w.fs.remove_file(Path::new("/data/t-0/recovery-point"))
        .unwrap();
    let before = bytes_read(&w);
    let log = w.open(config());
    assert!(bytes_read(&w) - before >= segment_len);
    check_contents(&log, 3100);
}

#[test]
fn a_torn_tail_past_a_mid_segment_recovery_point_is_cut_and_the_log_goes_on() {
    for keep in [0usize, 1, 61, 150, 1000] {
        let w = World::new();
        let mut log = w.open(config());
        produce(&mut log, 0, 2000);
        log.write_recovery_point().unwrap();
        produce(&mut log, 2000, 2050); // acknowledged: synced
        append_unsynced(&mut log, 2050, 2200);
        drop(log);
        w.fs.crash(CrashMode::Torn { keep });

        let mut log = w.open(config());
        let end = log.log_end_offset() as usize;
        assert!(
            (2050..2200).contains(&end),
            "keep {keep}: every acknowledged record stays, no torn one: end {end}"
        );
        check_contents(&log, end);
        // Offsets stay dense from where recovery stopped, and a second crash is fine too.
        produce(&mut log, end, end + 10);
        log.write_recovery_point().unwrap();
        drop(log);
        w.fs.crash(CrashMode::LoseUnsynced);
        let log = w.open(config());
        check_contents(&log, end + 10);
    }
}

#[test]
fn losing_everything_unsynced_keeps_what_the_checkpoint_and_later_syncs_covered() {
    let w = World::new();
    let mut log = w.open(config());
    produce(&mut log, 0, 1500);
    log.write_recovery_point().unwrap();
    // Index entries past the recovery point reach the index file (a later checkpoint
    // prepared them) but the log bytes they point at are lost.
    append_unsynced(&mut log, 1500, 1800);
    let (_, files) = log.prepare_checkpoint().unwrap();
    for f in files {
        f.sync_data().unwrap();
    }
    drop(log);
    w.fs.crash(CrashMode::LoseUnsynced);

    let log = w.open(config());
    assert_eq!(log.log_end_offset(), 1500);
    check_contents(&log, 1500);
}

#[test]
fn a_corrupt_batch_past_the_recovery_point_is_cut_there() {
    let w = World::new();
    let mut log = w.open(config());
    produce(&mut log, 0, 1000);
    log.write_recovery_point().unwrap();
    produce(&mut log, 1000, 1100);
    drop(log);
    w.fs.crash(CrashMode::KeepAll);
    let batch_len = batch(0).len();
    // A bit flip inside batch 1050 (media corruption after the checkpoint).
    w.fs.flip_bit(Path::new(SEGMENT), 1050 * batch_len + 70, 3);

    let log = w.open(config());
    assert_eq!(log.log_end_offset(), 1050, "truncated at the corrupt batch");
    check_contents(&log, 1050);
}

#[test]
fn an_index_that_does_not_match_the_log_falls_back_to_a_full_scan() {
    let w = World::new();
    let mut log = w.open(config());
    produce(&mut log, 0, 2000);
    log.write_recovery_point().unwrap();
    produce(&mut log, 2000, 2100);
    drop(log);
    w.fs.crash(CrashMode::KeepAll);
    // Shift every index entry's position by one byte: still increasing, inside the log,
    // and wrong.
    let index = w.fs.open(Path::new(INDEX), false).unwrap();
    let mut bytes = vec![0u8; index.len().unwrap() as usize];
    index.read_exact_at(&mut bytes, 0).unwrap();
    assert!(bytes.len() >= 16, "the checkpoint wrote index entries");
    for entry in bytes.chunks_exact_mut(8) {
        let p = u32::from_be_bytes(entry[4..8].try_into().unwrap()) + 1;
        entry[4..8].copy_from_slice(&p.to_be_bytes());
    }
    index.write_all_at(&bytes, 0).unwrap();
    index.sync_data().unwrap();
    let segment_len = w.fs.open(Path::new(SEGMENT), false).unwrap().len().unwrap();

    let before = bytes_read(&w);
    let log = w.open(config());
    assert!(bytes_read(&w) - before >= segment_len, "scanned in full");
    assert_eq!(
        log.log_end_offset(),
        2100,
        "nothing was cut on the index's word"
    );
    check_contents(&log, 2100);
}

#[test]
fn producer_state_comes_back_whole_after_a_mid_segment_recovery() {
    let w = World::new();
    let mut log = w.open(config());
    let mut seq = 0;
    for _ in 0..300 {
        log.append(&common::producer_batch(7, 0, seq, 2, false), 0)
            .unwrap();
        common::sync(&mut log);
        seq += 2;
    }
    log.write_recovery_point().unwrap();
    for _ in 0..20 {
        log.append(&common::producer_batch(7, 0, seq, 2, false), 0)
            .unwrap();
        common::sync(&mut log);
        seq += 2;
    }
    drop(log);
    w.fs.crash(CrashMode::KeepAll);

    let mut log = w.open(config());
    assert_eq!(log.log_end_offset(), 640);
    let state = log.producer_state().get(7).expect("producer 7 known");
    assert_eq!(state.batches.back().map(|b| b.last_seq), Some(seq - 1));
    // A retry of the last batch is a duplicate, the next sequence is accepted.
    let dup = log.append(&common::producer_batch(7, 0, seq - 2, 2, false), 0);
    assert_eq!(
        dup.unwrap().base_offset,
        638,
        "duplicate answered with its offset"
    );
    assert_eq!(log.log_end_offset(), 640);
    log.append(&common::producer_batch(7, 0, seq, 2, false), 0)
        .unwrap();
    assert_eq!(log.log_end_offset(), 642);
}

/// The leader epoch cache (OffsetsForLeaderEpoch): a new epoch is recorded before its first
/// batch, survives restarts, and an epoch whose batches a crash took is forgotten.
#[test]
fn leader_epochs_survive_restarts_and_follow_truncation() {
    use strata_storage::leader_epoch::UNDEFINED_EPOCH;
    let w = World::new();
    let mut log = w.open(config());
    for (i, epoch) in [0, 0, 0, 2, 2].into_iter().enumerate() {
        log.append(&batch(i), epoch).unwrap();
        common::sync(&mut log);
    }
    assert_eq!(log.end_offset_for_epoch(0), (0, 3));
    assert_eq!(log.end_offset_for_epoch(2), (2, 5));
    log.append(&batch(5), 5).unwrap(); // never synced: lost below
    assert_eq!(log.end_offset_for_epoch(5), (5, 6));
    drop(log);
    w.fs.crash(CrashMode::LoseUnsynced);

    let log = w.open(config());
    assert_eq!(log.log_end_offset(), 5);
    assert_eq!(
        log.end_offset_for_epoch(2),
        (2, 5),
        "epoch 2 is the latest again"
    );
    assert_eq!(
        log.end_offset_for_epoch(5).0,
        UNDEFINED_EPOCH,
        "epoch 5 never happened here: newer than every known epoch (Kafka's answer)"
    );
    assert_eq!(log.end_offset_for_epoch(1), (0, 3));
    assert_eq!(log.end_offset_for_epoch(-1).0, UNDEFINED_EPOCH);
    drop(log);
    // An unreadable checkpoint is rebuilt from the batches' epochs.
    let path = Path::new("/data/t-0/leader-epoch-checkpoint");
    let f = w.fs.open(path, false).unwrap();
    f.write_all_at(b"x", 0).unwrap();
    f.sync_data().unwrap();
    let log = w.open(config());
    assert_eq!(log.end_offset_for_epoch(0), (0, 3));
    assert_eq!(log.end_offset_for_epoch(2), (2, 5));
}

/// A broker recovering many logs syncs them together (one syncfs) instead of one fdatasync
/// each: until it says so, a deferred log exposes nothing past its old recovery point.
#[test]
fn a_deferred_recovery_sync_keeps_the_high_watermark_at_the_recovery_point() {
    let w = World::new();
    let mut log = w.open_managed(config(), Default::default());
    produce(&mut log, 0, 10);
    append_unsynced(&mut log, 10, 15);
    drop(log);
    w.fs.crash(CrashMode::KeepAll);
    let hint = strata_storage::RecoveryHint {
        recovery_point: Some(10),
        defer_sync: true,
        ..Default::default()
    };
    let mut log = w.open_managed(config(), hint);
    assert_eq!(log.log_end_offset(), 15);
    assert!(log.recovery_sync_pending());
    assert_eq!(
        log.high_watermark(),
        10,
        "the unsynced tail is not served yet"
    );
    w.fs.sync_filesystem(Path::new("/data")).unwrap();
    log.recovery_synced();
    assert!(!log.recovery_sync_pending());
    assert_eq!((log.high_watermark(), log.recovery_point()), (15, 15));
    check_contents(&log, 15);
    // Without deferral the log syncs itself and serves everything at once.
    drop(log);
    w.fs.crash(CrashMode::KeepAll);
    let log = w.open_managed(config(), Default::default());
    assert!(!log.recovery_sync_pending());
    assert_eq!(log.high_watermark(), 15);
}

/// Found by the simulation: a replica that led an epoch without appending to it (the epoch
/// recorded at its log end) and then follows a leader that never knew that epoch is told its
/// log diverged where it already ends. Truncating there must drop that epoch, or it reports
/// it as its last fetched epoch forever and never catches up (Kafka's `truncateTo` does the
/// same).
#[test]
fn truncating_at_the_log_end_drops_an_epoch_that_starts_there() {
    let w = World::new();
    let mut log = w.open(config());
    for i in 0..3 {
        log.append(&batch(i), 0).unwrap();
        common::sync(&mut log);
    }
    log.begin_leader_epoch(4).unwrap(); // led epoch 4, appended nothing
    assert_eq!(log.latest_epoch(), 4);
    log.truncate_to(3).unwrap(); // what the leader's diverging epoch says (epoch 0 ends at 3)
    assert_eq!(log.log_end_offset(), 3);
    assert_eq!(log.latest_epoch(), 0, "the empty epoch is gone");
    drop(log);
    let log = w.open(config());
    assert_eq!(log.latest_epoch(), 0, "and stays gone after a restart");
}

/// Found by the simulation: a replica of a replicated partition that restarts must not take
/// its log end for its high watermark (records only it holds would count as acknowledged);
/// it opens at the high watermark it checkpointed, or at its log start without one.
#[test]
fn a_replica_opens_at_its_checkpointed_high_watermark() {
    let w = World::new();
    let mut log = w.open_managed(config(), Default::default());
    produce(&mut log, 0, 10);
    drop(log);
    w.fs.crash(CrashMode::KeepAll);
    let replica = |hw| strata_storage::RecoveryHint {
        recovery_point: Some(10),
        high_watermark: hw,
        ..Default::default()
    };
    let log = w.open_managed(config(), replica(Some(6)));
    assert_eq!((log.log_end_offset(), log.high_watermark()), (10, 6));
    drop(log);
    let log = w.open_managed(config(), replica(Some(0)));
    assert_eq!(log.high_watermark(), 0, "no checkpoint: the log start");
    drop(log);
    let log = w.open_managed(config(), replica(Some(99)));
    assert_eq!(log.high_watermark(), 10, "never past what recovery kept");
    drop(log);
    let log = w.open_managed(config(), replica(None));
    assert_eq!(
        log.high_watermark(),
        10,
        "a standalone log: the only replica"
    );
}
