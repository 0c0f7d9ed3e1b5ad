//! `Log::truncate_to`: a follower whose log diverged from its leader's (KIP-279) and a raft
//! log's conflicting suffix both cut the log's end. Offsets stay dense (invariant 2), the cut
//! survives a power loss, and everything derived from the log (producer state, the leader
//! epoch cache, the indexes) matches what the shorter log implies.

mod common;

use bytes::Bytes;
use common::{producer_batch, World};
use strata_records::{decode_records, BatchBuilder, Compression, Record};
use strata_storage::fs::CrashMode;
use strata_storage::{Log, LogConfig};

fn batch(i: i64) -> Vec<u8> {
    let mut b = BatchBuilder::new(Compression::None);
    b.push(Record {
        value: Some(Bytes::from(format!("value-{i:06}-{}", "x".repeat(200)))),
        timestamp_ms: 1_000_000 + i,
        ..Default::default()
    });
    b.build().unwrap().to_vec()
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 4 << 10,
        index_interval_bytes: 1024,
        ..LogConfig::default()
    }
}

fn offsets_in(log: &Log) -> Vec<i64> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.high_watermark() {
        let data = log.read(offset, 64 << 10).unwrap();
        let records = decode_records(data.records).unwrap();
        assert!(!records.is_empty(), "nothing read at {offset}");
        for r in records {
            out.push(r.offset);
            offset = r.offset + 1;
        }
    }
    out
}

#[test]
fn truncation_inside_an_older_segment_drops_later_segments_and_state_follows() {
    let w = World::new();
    let mut log = w.open(config());
    for i in 0..100 {
        log.append(&batch(i), 0).unwrap();
    }
    // Producer 7 writes sequences 0..50 at offsets 100..150, in leader epoch 3.
    for seq in 0..50 {
        log.append(&producer_batch(7, 0, seq, 1, false), 3).unwrap();
    }
    common::sync(&mut log);
    assert!(log.segment_count() > 3, "the test needs several segments");
    assert_eq!(log.end_offset_for_epoch(0), (0, 100));

    log.truncate_to(90).unwrap();
    assert_eq!(log.log_end_offset(), 90);
    assert_eq!(log.high_watermark(), 90);
    assert_eq!(offsets_in(&log), (0..90).collect::<Vec<_>>());
    // Epoch 3 began after the cut: it is gone (unknown, as Kafka answers for an epoch past
    // the latest), epoch 0 ends at the new end.
    assert_eq!(log.end_offset_for_epoch(3), (-1, -1));
    assert_eq!(log.end_offset_for_epoch(0), (0, 90));
    // Producer 7 has no batch left: any sequence is accepted again, at the new end.
    let info = log.append(&producer_batch(7, 0, 0, 1, false), 5).unwrap();
    assert_eq!(info.base_offset, 90);
    assert_eq!(log.end_offset_for_epoch(0), (0, 90));
    assert_eq!(log.end_offset_for_epoch(5), (5, 91));
    common::sync(&mut log);

    // Power loss after the cut: the shorter log is what comes back.
    drop(log);
    w.fs.crash(CrashMode::LoseUnsynced);
    let log = w.open(config());
    assert_eq!(log.log_end_offset(), 91);
    assert_eq!(offsets_in(&log), (0..91).collect::<Vec<_>>());
    assert_eq!(log.end_offset_for_epoch(5), (5, 91));
}

#[test]
fn truncation_keeps_producer_state_of_what_stays() {
    let w = World::new();
    let mut log = w.open(config());
    for seq in 0..40 {
        log.append(&producer_batch(9, 0, seq, 1, false), 0).unwrap();
    }
    common::sync(&mut log);
    log.truncate_to(25).unwrap();
    assert_eq!(log.log_end_offset(), 25);
    // Sequence 40 would have continued the old log; after the cut it is a gap.
    assert!(log.append(&producer_batch(9, 0, 40, 1, false), 0).is_err());
    // Sequence 25 continues the shorter one.
    assert_eq!(
        log.append(&producer_batch(9, 0, 25, 1, false), 0)
            .unwrap()
            .base_offset,
        25
    );
    // A retry of sequence 24 (still stored) is answered with its offset, not stored again.
    let retry = log.append(&producer_batch(9, 0, 24, 1, false), 0);
    assert!(
        retry.as_ref().map_or(true, |i| i.base_offset == 24),
        "{retry:?}"
    );
    assert_eq!(log.log_end_offset(), 26);
}

#[test]
fn truncation_to_the_log_start_or_before_empties_the_log_at_that_offset() {
    let w = World::new();
    let mut log = w.open(config());
    for i in 0..50 {
        log.append(&batch(i), 0).unwrap();
    }
    common::sync(&mut log);
    log.truncate_to(0).unwrap();
    assert_eq!(log.log_end_offset(), 0);
    assert_eq!(log.segment_count(), 1);
    assert_eq!(log.append(&batch(0), 1).unwrap().base_offset, 0);
    common::sync(&mut log);
    drop(log);
    w.fs.crash(CrashMode::LoseUnsynced);
    let log = w.open(config());
    assert_eq!(log.log_end_offset(), 1);
    assert_eq!(offsets_in(&log), vec![0]);
}

#[test]
fn truncation_at_or_past_the_end_changes_nothing() {
    let w = World::new();
    let mut log = w.open(config());
    for i in 0..10 {
        log.append(&batch(i), 0).unwrap();
    }
    common::sync(&mut log);
    log.truncate_to(10).unwrap();
    log.truncate_to(99).unwrap();
    assert_eq!(offsets_in(&log), (0..10).collect::<Vec<_>>());
}

#[test]
fn a_log_can_restart_empty_past_its_end() {
    let w = World::new();
    let mut log = w.open(config());
    for i in 0..10 {
        log.append(&batch(i), 0).unwrap();
    }
    common::sync(&mut log);
    log.truncate_fully_and_start_at(500).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (500, 500));
    assert_eq!(log.append(&batch(500), 0).unwrap().base_offset, 500);
    common::sync(&mut log);
    drop(log);
    w.fs.crash(CrashMode::LoseUnsynced);
    let log = w.open(config());
    assert_eq!(offsets_in(&log), vec![500]);
}
