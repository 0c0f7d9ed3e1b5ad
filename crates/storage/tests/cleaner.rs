//! The log cleaner against a model (invariants 2, 3 and 6): random keyed workloads with
//! tombstones; after cleaning, reading the log gives exactly the latest record of every key
//! below the active segment, every record read is the one written at that offset, and a
//! kill at any step of the swap leaves a log that reads as before or as after.

mod common;

use std::collections::BTreeMap;

use bytes::Bytes;
use common::{sync, World};
use proptest::prelude::*;
use strata_records::{decode_records, BatchBuilder, Compression, Record};
use strata_storage::cleaner::CleanerConfig;
use strata_storage::fs::CrashMode;
use strata_storage::{Log, LogConfig};

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 600,
        cleanup_compact: true,
        cleanup_delete: false,
        delete_retention_ms: 1_000_000_000,
        ..LogConfig::default()
    }
}

/// What was written: offset → (key, value; None = tombstone).
type Written = BTreeMap<i64, (String, Option<String>)>;

fn write(log: &mut Log, written: &mut Written, records: &[(String, Option<String>)], ts: i64) {
    let mut b = BatchBuilder::new(Compression::None);
    for (k, v) in records {
        b.push(Record {
            key: Some(Bytes::from(k.clone())),
            value: v.as_ref().map(|v| Bytes::from(v.clone())),
            headers: vec![],
            timestamp_ms: ts,
        });
    }
    let info = log.append(&b.build().unwrap(), 0).unwrap();
    for (i, r) in records.iter().enumerate() {
        written.insert(info.base_offset + i as i64, r.clone());
    }
}

/// Every record in the log (offset, key, value).
fn read_all(log: &Log) -> Vec<(i64, String, Option<String>)> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.high_watermark() {
        let data = log.read(offset, 1 << 20).unwrap();
        let records = decode_records(data.records).unwrap();
        let mut next = offset;
        for r in records {
            next = next.max(r.offset + 1);
            if r.offset < offset {
                continue;
            }
            out.push((
                r.offset,
                String::from_utf8(r.key.unwrap().to_vec()).unwrap(),
                r.value.map(|v| String::from_utf8(v.to_vec()).unwrap()),
            ));
        }
        if next == offset {
            // an emptied batch: step over its offsets
            next = offset + 1;
        }
        offset = next;
    }
    out
}

fn clean_fully(log: &mut Log, cleaner: &CleanerConfig) -> usize {
    let mut passes = 0;
    while let Some(job) = log.plan_clean() {
        let out = job.run(cleaner).unwrap();
        log.finish_clean(out).unwrap().expect("segments unchanged");
        passes += 1;
        assert!(passes < 1000, "cleaning does not converge");
    }
    passes
}

/// Records read are the ones written at their offsets; the latest of every key is there;
/// below `boundary`, nothing else is.
fn check(log: &Log, written: &Written, boundary: i64, tombstones_gone: bool) {
    let read = read_all(log);
    let mut latest: BTreeMap<&str, i64> = BTreeMap::new();
    // The latest below the boundary: what cleaning could see (later ones are uncleanable).
    let mut latest_below: BTreeMap<&str, i64> = BTreeMap::new();
    for (offset, (k, _)) in written {
        latest.insert(k, *offset);
        if *offset < boundary {
            latest_below.insert(k, *offset);
        }
    }
    for (offset, k, v) in &read {
        let (wk, wv) = &written[offset];
        assert_eq!(
            (k, v),
            (wk, wv),
            "offset {offset} holds what was written there"
        );
        if *offset < boundary {
            assert_eq!(
                latest_below[k.as_str()],
                *offset,
                "superseded record of {k} at {offset} kept"
            );
        }
    }
    let present: std::collections::HashSet<i64> = read.iter().map(|r| r.0).collect();
    for (k, offset) in &latest {
        let tombstone = written[offset].1.is_none();
        if tombstone && tombstones_gone && *offset < boundary {
            assert!(!present.contains(offset), "expired tombstone of {k} kept");
        } else {
            assert!(
                present.contains(offset),
                "latest record of {k} at {offset} lost"
            );
        }
    }
}

fn workload(log: &mut Log, written: &mut Written, rounds: usize, keys: usize, seed: u64) {
    let mut x = seed;
    let mut next = || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 33) as usize
    };
    for round in 0..rounds {
        let mut batch = Vec::new();
        for _ in 0..(1 + next() % 4) {
            let k = format!("key-{}", next() % keys);
            let v = (next() % 7 != 0).then(|| format!("r{round}-{}", next() % 1000));
            batch.push((k, v));
        }
        write(log, written, &batch, 1_000_000);
    }
    sync(log);
}

#[test]
fn cleaning_keeps_exactly_the_latest_record_per_key() {
    let w = World::new();
    let mut log = w.open(config());
    let mut written = Written::new();
    workload(&mut log, &mut written, 300, 40, 7);
    let size_before = log.size_bytes();
    let passes = clean_fully(&mut log, &CleanerConfig::default());
    assert!(passes >= 1);
    let boundary = log.first_dirty_offset();
    assert!(boundary > 0);
    check(&log, &written, boundary, false);
    assert!(
        log.size_bytes() < size_before / 2,
        "{} -> {}",
        size_before,
        log.size_bytes()
    );
    // A restart (clean and crash) reads the same.
    log.close().unwrap();
    drop(log);
    let log = w.open(config());
    check(&log, &written, boundary, false);
    drop(log);
    w.fs.crash(CrashMode::LoseUnsynced);
    let log = w.open(config());
    check(&log, &written, boundary, false);
}

#[test]
fn a_small_map_cleans_in_several_passes() {
    let w = World::new();
    let mut log = w.open(config());
    let mut written = Written::new();
    workload(&mut log, &mut written, 400, 60, 11);
    let tiny = CleanerConfig {
        dedupe_buffer_bytes: 48 * 10, // ten keys per pass
        ..CleanerConfig::default()
    };
    let passes = clean_fully(&mut log, &tiny);
    assert!(passes > 3, "{passes} passes");
    check(&log, &written, log.first_dirty_offset(), false);
}

#[test]
fn tombstones_go_after_delete_retention() {
    let w = World::new();
    let mut log = w.open(LogConfig {
        delete_retention_ms: 10_000,
        ..config()
    });
    let mut written = Written::new();
    workload(&mut log, &mut written, 200, 20, 3);
    clean_fully(&mut log, &CleanerConfig::default());
    check(&log, &written, log.first_dirty_offset(), false);
    // Later: new data makes the log dirty again, and the tombstones have expired.
    w.clock.advance_ms(20_000);
    workload(&mut log, &mut written, 100, 20, 5);
    clean_fully(&mut log, &CleanerConfig::default());
    check(&log, &written, log.first_dirty_offset(), true);
}

#[test]
fn the_active_segment_and_open_transactions_are_never_cleaned() {
    let w = World::new();
    let mut log = w.open(config());
    let mut written = Written::new();
    workload(&mut log, &mut written, 100, 5, 1);
    clean_fully(&mut log, &CleanerConfig::default());
    assert!(log.first_dirty_offset() <= log.log_end_offset());
    // Everything in the active segment is still there, duplicates included.
    let read = read_all(&log);
    let active_base = log.first_dirty_offset();
    let in_active: Vec<i64> = written
        .keys()
        .copied()
        .filter(|o| *o >= active_base)
        .collect();
    let read_active: Vec<i64> = read
        .iter()
        .map(|r| r.0)
        .filter(|o| *o >= active_base)
        .collect();
    assert_eq!(in_active, read_active);
}

#[test]
fn a_kill_at_any_step_of_the_swap_leaves_the_old_or_the_new_log() {
    let mut step = 0;
    let mut steps = usize::MAX;
    while step <= steps {
        let w = World::new();
        let mut log = w.open(config());
        let mut written = Written::new();
        workload(&mut log, &mut written, 150, 10, 42 + step as u64);
        let job = log.plan_clean().unwrap();
        let out = job.run(&CleanerConfig::default()).unwrap();
        steps = out.swap_steps();
        log.finish_clean_interrupted(out, step).unwrap();
        drop(log); // the process dies here
        w.fs.crash(CrashMode::LoseUnsynced);
        let mut log = w.open(config());
        // Old or new: every record is the one written, every key's latest is there.
        check(&log, &written, 0, false);
        clean_fully(&mut log, &CleanerConfig::default());
        check(&log, &written, log.first_dirty_offset(), false);
        step += 1;
    }
    assert!(
        steps > 10,
        "{steps} steps: the swap covered several segments"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn random_workloads_match_the_model(
        seed in any::<u64>(),
        keys in 1usize..50,
        rounds in 20usize..200,
        budget_keys in 1usize..40,
    ) {
        let w = World::new();
        let mut log = w.open(config());
        let mut written = Written::new();
        workload(&mut log, &mut written, rounds, keys, seed);
        let cleaner = CleanerConfig {
            dedupe_buffer_bytes: 48 * budget_keys,
            ..CleanerConfig::default()
        };
        clean_fully(&mut log, &cleaner);
        check(&log, &written, log.first_dirty_offset(), false);
        // More data and another round of cleaning on top of a cleaned log.
        workload(&mut log, &mut written, rounds / 2, keys, seed ^ 0xABCD);
        clean_fully(&mut log, &cleaner);
        check(&log, &written, log.first_dirty_offset(), false);
    }
}

fn keyed_producer_batch(
    pid: i64,
    seq: i32,
    key: &str,
    value: &str,
    transactional: bool,
) -> Vec<u8> {
    let mut b = BatchBuilder::new(Compression::None);
    b.push(Record {
        key: Some(Bytes::from(key.to_string())),
        value: Some(Bytes::from(value.to_string())),
        headers: vec![],
        timestamp_ms: 1_000_000,
    });
    let mut bytes = b.build().unwrap().to_vec();
    bytes[43..51].copy_from_slice(&pid.to_be_bytes());
    bytes[51..53].copy_from_slice(&0i16.to_be_bytes());
    bytes[53..57].copy_from_slice(&seq.to_be_bytes());
    if transactional {
        bytes[22] |= 0x10;
    }
    let crc = strata_records::crc_of(&bytes);
    bytes[17..21].copy_from_slice(&crc.to_be_bytes());
    bytes
}

/// Aborted transactional records go; committed ones and the markers stay (invariant 6).
#[test]
fn aborted_transactions_are_removed_and_markers_kept() {
    let w = World::new();
    let mut log = w.open(config());
    for i in 0..3 {
        log.append_transactional(
            &keyed_producer_batch(5, i, &format!("a{i}"), "aborted", true),
            0,
        )
        .unwrap();
    }
    let abort = log.append_marker(5, 0, false, 0, 0).unwrap().base_offset;
    for i in 0..3 {
        log.append_transactional(
            &keyed_producer_batch(6, i, &format!("c{i}"), "committed", true),
            0,
        )
        .unwrap();
    }
    let commit = log.append_marker(6, 0, true, 0, 0).unwrap().base_offset;
    let mut written = Written::new();
    workload(&mut log, &mut written, 100, 5, 9); // roll the transactions into sealed segments
    clean_fully(&mut log, &CleanerConfig::default());
    let mut offset = 0;
    let mut values = Vec::new();
    let mut markers = Vec::new();
    while offset < commit + 1 {
        let records = decode_records(log.read(offset, 1 << 20).unwrap().records).unwrap();
        for r in &records {
            if r.offset >= offset && r.offset <= commit {
                if r.control {
                    markers.push(r.offset);
                } else {
                    values.push(String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap());
                }
            }
        }
        offset = records
            .iter()
            .map(|r| r.offset + 1)
            .max()
            .unwrap_or(offset + 1)
            .max(offset + 1);
    }
    assert_eq!(values, vec!["committed"; 3]);
    assert_eq!(markers, vec![abort, commit]);
}

/// Records younger than min.compaction.lag.ms are not compacted.
#[test]
fn min_compaction_lag_holds_young_records_back() {
    let w = World::new();
    let lagged = LogConfig {
        min_compaction_lag_ms: 60_000,
        ..config()
    };
    let mut log = w.open(lagged);
    let mut written = Written::new();
    workload(&mut log, &mut written, 100, 5, 2); // timestamps are the clock's now
                                                 // All segments are younger than the lag: nothing to clean.
    assert!(log.plan_clean().is_none());
    w.clock.advance_ms(120_000);
    assert!(clean_fully(&mut log, &CleanerConfig::default()) > 0);
    check(&log, &written, log.first_dirty_offset(), false);
}

/// An idempotent producer keeps its sequence across cleaning, also when the producer
/// snapshots are lost and the state is rebuilt from the cleaned log.
#[test]
fn producer_sequences_survive_cleaning() {
    let w = World::new();
    let mut log = w.open(config());
    for seq in 0..60 {
        log.append(
            &keyed_producer_batch(9, seq, "same-key", &format!("v{seq}"), false),
            0,
        )
        .unwrap();
    }
    // Another writer supersedes every record of producer 9: its batches empty out, and
    // its last one must stay (empty) for its sequence state.
    let mut written = Written::new();
    for _ in 0..20 {
        write(
            &mut log,
            &mut written,
            &[("same-key".into(), Some("other".into()))],
            1_000_000,
        );
    }
    workload(&mut log, &mut written, 40, 3, 4);
    clean_fully(&mut log, &CleanerConfig::default());
    log.close().unwrap();
    drop(log);
    for path in w.fs.file_paths() {
        if path.extension().is_some_and(|e| e == "snapshot") {
            use strata_storage::Fs;
            w.fs.remove_file(&path).unwrap();
        }
    }
    let mut log = w.open(config());
    // The next sequence is accepted, a retry of the last one is a duplicate, a gap refused.
    assert!(log
        .append(&keyed_producer_batch(9, 60, "same-key", "v60", false), 0)
        .is_ok());
    let retry = log
        .append(&keyed_producer_batch(9, 60, "same-key", "v60", false), 0)
        .unwrap();
    assert_eq!(retry.records, 0, "a retry is answered, not stored");
    assert!(log
        .append(&keyed_producer_batch(9, 65, "same-key", "v65", false), 0)
        .is_err());
}

/// A cancelled pass (shutdown) changes nothing; the next one cleans.
#[test]
fn a_cancelled_pass_changes_nothing() {
    let w = World::new();
    let mut log = w.open(config());
    let mut written = Written::new();
    workload(&mut log, &mut written, 150, 10, 8);
    let before = read_all(&log);
    let job = log.plan_clean().unwrap();
    let cancel = std::sync::atomic::AtomicBool::new(true);
    assert!(matches!(
        job.run_cancellable(&CleanerConfig::default(), &cancel),
        Err(strata_storage::StorageError::CleaningCancelled)
    ));
    assert_eq!(read_all(&log), before);
    clean_fully(&mut log, &CleanerConfig::default());
    check(&log, &written, log.first_dirty_offset(), false);
}
