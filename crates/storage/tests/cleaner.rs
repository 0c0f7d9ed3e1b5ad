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
    for step in 0..12 {
        let w = World::new();
        let mut log = w.open(config());
        let mut written = Written::new();
        workload(&mut log, &mut written, 150, 10, 42 + step as u64);
        let job = log.plan_clean().unwrap();
        let out = job.run(&CleanerConfig::default()).unwrap();
        log.finish_clean_interrupted(out, step).unwrap();
        drop(log); // the process dies here
        w.fs.crash(CrashMode::LoseUnsynced);
        let mut log = w.open(config());
        // Old or new: every record is the one written, every key's latest is there.
        check(&log, &written, 0, false);
        clean_fully(&mut log, &CleanerConfig::default());
        check(&log, &written, log.first_dirty_offset(), false);
    }
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
