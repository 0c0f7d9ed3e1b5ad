//! Log behaviour through the injected file system and clock: append/read, roll, indexes,
//! retention, timestamps, and the recovery story (lost unsynced data, torn writes, bit
//! flips, missing indexes). Invariant names refer to shared/design/INVARIANTS.md.

mod common;

use bytes::Bytes;
use common::World;
use std::path::Path;
use strata_records::{decode_records, BatchBuilder, Compression, Record};
use strata_storage::fs::CrashMode;

use strata_storage::{Clock, Fs, Log, LogConfig, StorageError};

fn batch(values: &[&str], ts: i64) -> Vec<u8> {
    let mut b = BatchBuilder::new(Compression::None);
    for (i, v) in values.iter().enumerate() {
        b.push(Record {
            key: None,
            value: Some(Bytes::from(v.to_string())),
            timestamp_ms: ts + i as i64,
            ..Default::default()
        });
    }
    b.build().unwrap().to_vec()
}

/// Appends and syncs like an acks=all produce; returns the acknowledged base offset.
fn produce(log: &mut Log, values: &[&str], ts: i64) -> i64 {
    let b = batch(values, ts);
    let info = log.append(&b, 0).unwrap();
    let (file, end) = log.flush_target();
    file.sync_data().unwrap();
    log.mark_flushed(end);
    info.base_offset
}

fn read_all(log: &Log) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.high_watermark() {
        let data = log.read(offset, 1 << 20).unwrap();
        let recs = decode_records(data.records).unwrap();
        assert!(
            !recs.is_empty(),
            "read at {offset} below the high watermark returned nothing"
        );
        for r in recs {
            if r.offset >= offset {
                out.push((
                    r.offset,
                    String::from_utf8(r.value.unwrap().to_vec()).unwrap(),
                ));
            }
        }
        offset = out.last().unwrap().0 + 1;
    }
    out
}

fn small_segments() -> LogConfig {
    LogConfig {
        segment_bytes: 300,
        index_interval_bytes: 100,
        ..LogConfig::default()
    }
}

#[test]
fn offsets_are_dense_and_reads_return_whole_batches() {
    let w = World::new();
    let mut log = w.open(LogConfig::default());
    assert_eq!(produce(&mut log, &["a", "b", "c"], 10), 0);
    assert_eq!(produce(&mut log, &["d"], 20), 3);
    assert_eq!(log.log_end_offset(), 4);
    assert_eq!(log.high_watermark(), 4);
    // a read from the middle of a batch returns the whole batch (the consumer skips)
    let data = log.read(1, 1).unwrap();
    let recs = decode_records(data.records).unwrap();
    assert_eq!(
        recs.iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![0, 1, 2],
        "KIP-74: one whole batch even over max_bytes"
    );
    assert_eq!(
        read_all(&log).iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
}

#[test]
fn high_watermark_covers_only_synced_data_in_durable_mode() {
    let w = World::new();
    let mut log = w.open(LogConfig::default());
    let b = batch(&["x"], 1);
    log.append(&b, 0).unwrap();
    assert_eq!((log.log_end_offset(), log.high_watermark()), (1, 0));
    assert!(
        log.read(0, 1000).unwrap().records.is_empty(),
        "unsynced data is not served"
    );
    let relaxed = LogConfig {
        flush_messages: i64::MAX,
        ..LogConfig::default()
    };
    let w2 = World::new();
    let mut log2 = w2.open(relaxed);
    log2.append(&batch(&["x"], 1), 0).unwrap();
    assert_eq!(log2.high_watermark(), 1, "relaxed mode: HW = LEO");
}

#[test]
fn rolls_by_size_and_time_and_reads_across_segments() {
    let w = World::new();
    let mut log = w.open(small_segments());
    let values: Vec<String> = (0..40).map(|i| format!("value-{i:03}")).collect();
    for v in &values {
        produce(&mut log, &[v.as_str()], 5);
    }
    assert!(
        log.segment_count() > 5,
        "segment.bytes=300 rolls often: {}",
        log.segment_count()
    );
    let all = read_all(&log);
    assert_eq!(all.len(), 40);
    for (i, (offset, v)) in all.iter().enumerate() {
        assert_eq!((*offset, v.as_str()), (i as i64, values[i].as_str()));
    }
    // every offset is found directly through the indexes
    for target in [0i64, 7, 13, 39] {
        let recs = decode_records(log.read(target, 1).unwrap().records).unwrap();
        assert_eq!(recs[0].offset, target);
    }
    let before = log.segment_count();
    let cfg = LogConfig {
        segment_ms: 1000,
        ..LogConfig::default()
    };
    log.set_config(cfg).unwrap();
    w.clock.advance_ms(1001);
    produce(&mut log, &["late"], 5);
    assert_eq!(log.segment_count(), before + 1, "segment.ms rolls");
}

/// Tiered storage: local retention (`local.retention.*`) deletes only segments wholly
/// copied to the object store, whatever `retention.*` says; nothing is copyable past the
/// last stable offset.
#[test]
fn local_retention_of_a_tiered_log_deletes_only_copied_segments() {
    let w = World::new();
    let mut log = w.open(small_segments());
    for i in 0..30 {
        produce(&mut log, &[&format!("v{i:04}")], 1_000 + i);
    }
    let segments = log.segment_count();
    let mut cfg = small_segments();
    cfg.remote_storage_enable = true;
    cfg.retention_ms = 10;
    cfg.local_retention_bytes = 600;
    log.set_config(cfg.clone()).unwrap();
    assert_eq!(
        log.apply_retention().unwrap(),
        0,
        "nothing copied: nothing deleted"
    );
    assert_eq!(log.segment_count(), segments);
    let copyable = log.copyable_segments(0);
    assert_eq!(
        copyable.len(),
        segments - 1,
        "every sealed segment, not the active one"
    );
    assert_eq!(copyable[0].0, 0);
    assert!(copyable.windows(2).all(|w| w[0].1 == w[1].0), "contiguous");
    assert_eq!(
        log.copyable_segments(copyable[1].0).len(),
        segments - 2,
        "from where copies end"
    );
    // The first two segments are copied: only they may go, though more breach retention.
    let copied = copyable[1].1;
    log.set_remote_copied_end(Some(copied));
    assert_eq!(log.apply_retention().unwrap(), 2);
    assert_eq!(log.log_start_offset(), copied, "the local log start");
    assert_eq!(log.segment_count(), segments - 2);
    assert_eq!(read_all(&log).first().unwrap().0, copied);
    // All copied, nothing expires by time: local.retention.bytes bounds what stays.
    cfg.retention_ms = -1;
    log.set_config(cfg).unwrap();
    log.set_remote_copied_end(Some(log.log_end_offset()));
    log.apply_retention().unwrap();
    assert!(log.size_bytes() <= 600 + 300, "{}", log.size_bytes());
    assert!(log.segment_count() >= 2);
    assert_eq!(produce(&mut log, &["next"], w.clock.now_ms()), 30);
}

#[test]
fn retention_deletes_whole_sealed_segments_and_advances_log_start() {
    let w = World::new();
    let mut log = w.open(small_segments());
    for i in 0..30 {
        produce(&mut log, &[&format!("v{i:04}")], 1_000 + i);
    }
    let segments = log.segment_count();
    let mut cfg = small_segments();
    cfg.retention_bytes = 600;
    log.set_config(cfg.clone()).unwrap();
    let deleted = log.apply_retention().unwrap();
    assert!(deleted > 0 && log.segment_count() == segments - deleted);
    assert!(log.size_bytes() <= 600 + 300);
    let start = log.log_start_offset();
    assert!(start > 0);
    let all = read_all(&log);
    assert_eq!(all.first().unwrap().0, start);
    assert!(matches!(
        log.read(0, 100),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    // by time: everything sealed is older than retention.ms
    cfg.retention_bytes = -1;
    cfg.retention_ms = 10;
    log.set_config(cfg).unwrap();
    log.apply_retention().unwrap();
    assert_eq!(
        log.segment_count(),
        1,
        "an expired active segment is rolled and deleted too"
    );
    assert_eq!(
        (log.log_start_offset(), log.log_end_offset()),
        (30, 30),
        "offsets are never reused (invariant 2)"
    );
    assert!(log.read(30, 100).unwrap().records.is_empty());
    assert_eq!(produce(&mut log, &["next"], w.clock.now_ms()), 30);
}

#[test]
fn offset_for_timestamp_finds_first_record_at_or_after() {
    let w = World::new();
    let mut log = w.open(small_segments());
    for i in 0..20 {
        produce(&mut log, &["a", "b"], 1000 + i * 10); // timestamps 1000+10i, 1001+10i
    }
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some((0, 1000)));
    assert_eq!(log.offset_for_timestamp(1001).unwrap(), Some((1, 1001)));
    assert_eq!(log.offset_for_timestamp(1055).unwrap(), Some((12, 1060)));
    assert_eq!(log.offset_for_timestamp(1191).unwrap(), Some((39, 1191)));
    assert_eq!(log.offset_for_timestamp(5000).unwrap(), None);
    // the same answers from indexes loaded after a clean restart, and after an unclean one
    log.close().unwrap();
    drop(log);
    for _ in 0..2 {
        let log = w.open(small_segments());
        assert_eq!(log.offset_for_timestamp(1001).unwrap(), Some((1, 1001)));
        assert_eq!(log.offset_for_timestamp(1055).unwrap(), Some((12, 1060)));
        assert_eq!(log.offset_for_timestamp(1191).unwrap(), Some((39, 1191)));
        assert_eq!(log.max_timestamp(), 1191);
        drop(log);
        w.fs.crash(CrashMode::KeepAll);
    }
}

#[test]
fn invalid_batches_store_nothing() {
    let w = World::new();
    let mut log = w.open(LogConfig {
        max_message_bytes: 200,
        ..LogConfig::default()
    });
    produce(&mut log, &["ok"], 1);
    let mut corrupt = batch(&["x"], 1);
    let n = corrupt.len();
    corrupt[n - 1] ^= 0xff;
    assert!(matches!(
        log.append(&corrupt, 0),
        Err(StorageError::InvalidBatch(_))
    ));
    let big = "x".repeat(300);
    let large = batch(&[big.as_str()], 1);
    assert!(matches!(
        log.append(&large, 0),
        Err(StorageError::MessageTooLarge { .. })
    ));
    // a valid batch followed by a corrupt one: neither is stored
    let mut mixed = batch(&["good"], 1);
    mixed.extend(&corrupt);
    assert!(log.append(&mixed, 0).is_err());
    assert_eq!(log.log_end_offset(), 1);
    assert_eq!(read_all(&log).len(), 1);
}

/// Invariant 1 (no lost acknowledged write) and 5 (nothing corrupt served) across crash modes.
#[test]
fn recovery_keeps_every_acknowledged_record_after_power_loss() {
    for mode in [
        CrashMode::LoseUnsynced,
        CrashMode::Torn { keep: 7 },
        CrashMode::Torn { keep: 70 },
        CrashMode::KeepAll,
    ] {
        let w = World::new();
        let mut log = w.open(small_segments());
        let mut acked = Vec::new();
        for i in 0..25 {
            let v = format!("acked-{i}");
            let off = produce(&mut log, &[&v], 1);
            acked.push((off, v));
        }
        // unacknowledged appends: written but never synced
        for i in 0..3 {
            log.append(&batch(&[&format!("unacked-{i}")], 1), 0)
                .unwrap();
        }
        drop(log);
        w.fs.crash(mode);
        let log = w.open(small_segments());
        let all = read_all(&log);
        assert_eq!(
            &all[..acked.len()],
            &acked[..],
            "mode {mode:?}: acknowledged records at their offsets"
        );
        for (i, (offset, _)) in all.iter().enumerate() {
            assert_eq!(*offset, i as i64, "dense offsets after recovery");
        }
        assert_eq!(log.high_watermark(), log.log_end_offset());
        for (i, (_, v)) in all[acked.len()..].iter().enumerate() {
            assert_eq!(
                v,
                &format!("unacked-{i}"),
                "survivors past the acknowledged ones are a prefix, in order"
            );
        }
        if mode == CrashMode::KeepAll {
            assert_eq!(
                log.log_end_offset(),
                28,
                "process crash: page cache survives"
            );
        }
    }
}

#[test]
fn recovery_truncates_at_a_flipped_bit_and_drops_later_segments() {
    let w = World::new();
    let mut log = w.open(small_segments());
    for i in 0..20 {
        produce(&mut log, &[&format!("v{i:03}")], 1);
    }
    let segments = log.segment_count();
    drop(log);
    // corrupt the newest complete segment's second batch; a recovery point of 0 makes
    // recovery scan everything
    let logs: Vec<_> =
        w.fs.file_paths()
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
    let victim = &logs[logs.len() - 2];
    w.fs.flip_bit(victim, 80, 3);
    let _ = w.fs.remove_file(Path::new("/data/t-0/recovery-point")); // absent if never moved
    let log = w.open(small_segments());
    let all = read_all(&log);
    assert!(all.len() < 20 && log.segment_count() < segments);
    for (i, (offset, v)) in all.iter().enumerate() {
        assert_eq!(
            (*offset, v.clone()),
            (i as i64, format!("v{i:03}")),
            "only valid data is served"
        );
    }
}

#[test]
fn missing_or_corrupt_indexes_are_rebuilt() {
    let w = World::new();
    let mut log = w.open(small_segments());
    for i in 0..30 {
        produce(&mut log, &[&format!("v{i:03}")], 1);
    }
    log.close().unwrap();
    drop(log);
    for p in w.fs.file_paths() {
        if p.extension().is_some_and(|e| e == "index") {
            let f = w.fs.open(&p, false).unwrap();
            f.write_all_at(&[0xff; 5], 0).unwrap(); // garbage, and no longer whole entries
        }
    }
    let log = w.open(small_segments());
    assert_eq!(read_all(&log).len(), 30);
    for target in [0i64, 11, 29] {
        assert_eq!(
            decode_records(log.read(target, 1).unwrap().records).unwrap()[0].offset,
            target
        );
    }
}

#[test]
fn clean_shutdown_reopens_without_scanning_and_keeps_appending() {
    let w = World::new();
    let mut log = w.open(small_segments());
    for i in 0..10 {
        produce(&mut log, &[&format!("v{i}")], 1);
    }
    log.close().unwrap();
    drop(log);
    let mut log = w.open(small_segments());
    assert_eq!(log.log_end_offset(), 10);
    assert_eq!(produce(&mut log, &["after"], 1), 10);
    assert_eq!(read_all(&log).len(), 11);
}

#[test]
fn without_min_one_batch_an_oversized_first_batch_is_left_for_later() {
    let w = World::new();
    let mut log = w.open(LogConfig::default());
    let big = "b".repeat(500);
    produce(&mut log, &[big.as_str()], 1);
    produce(&mut log, &["small"], 1);
    let slice = log.slice(0, 100, false).unwrap();
    assert!(
        slice.is_none(),
        "a later partition of a fetch gets nothing rather than over budget"
    );
    let first = log
        .slice(0, 100, true)
        .unwrap()
        .expect("KIP-74: one whole batch");
    assert!(first.bytes > 500);
    let both = log.slice(0, 10_000, false).unwrap().unwrap();
    assert!(
        both.bytes > first.bytes,
        "both batches fit in a larger budget"
    );
}

#[test]
fn create_time_outside_the_accepted_window_is_refused() {
    let w = World::new();
    let now = w.clock.now_ms();
    let config = LogConfig {
        timestamp_after_max_ms: 1000,
        timestamp_before_max_ms: 5000,
        ..LogConfig::default()
    };
    let mut log = w.open(config);
    assert!(matches!(
        log.append(&batch(&["future"], now + 2000), 0),
        Err(StorageError::InvalidTimestamp { .. })
    ));
    assert!(matches!(
        log.append(&batch(&["ancient"], now - 6000), 0),
        Err(StorageError::InvalidTimestamp { .. })
    ));
    assert_eq!(
        produce(&mut log, &["now"], now),
        0,
        "nothing of the refused batches was stored"
    );
    let lat = LogConfig {
        timestamp_type: strata_storage::TimestampType::LogAppendTime,
        timestamp_after_max_ms: 0,
        ..LogConfig::default()
    };
    log.set_config(lat).unwrap();
    assert_eq!(
        produce(&mut log, &["any time"], now + 999_999),
        1,
        "LogAppendTime ignores producer timestamps"
    );
}

/// DeleteRecords (invariants 2 and 4): the log start offset moves forward (never back),
/// to any offset up to the high watermark, also inside a segment; sealed segments below it
/// are deleted; offsets never change; a restart keeps it only through the caller's
/// checkpoint (`RecoveryHint::log_start_offset`), since it can lie inside a segment.
#[test]
fn delete_records_advances_the_log_start_offset() {
    use strata_storage::RecoveryHint;
    let w = World::new();
    let config = LogConfig {
        segment_bytes: 300,
        ..LogConfig::default()
    };
    let mut log = w.open(config.clone());
    let sync = |log: &mut Log| common::sync(log);
    for i in 0..30 {
        log.append(&batch(&[&format!("v{i}")], 1_000_000), 0)
            .unwrap();
    }
    sync(&mut log);
    let segments = log.segment_count();
    assert!(segments > 3);
    assert!(
        log.delete_records_before(31).is_err(),
        "past the high watermark"
    );
    assert_eq!(log.delete_records_before(17).unwrap(), 17);
    assert_eq!(log.delete_records_before(5).unwrap(), 17, "never backwards");
    assert_eq!(log.log_start_offset(), 17);
    assert!(log.segment_count() < segments, "segments below deleted");
    assert!(log.read(16, 1 << 20).is_err(), "below the log start");
    let first = decode_records(log.read(17, 1 << 20).unwrap().records).unwrap();
    assert!(first
        .iter()
        .any(|r| r.offset == 17 && r.value.as_deref() == Some(&b"v17"[..])));
    assert_eq!(
        log.offset_for_timestamp(0).unwrap().map(|(o, _)| o),
        Some(17)
    );
    log.close().unwrap();
    let hint = RecoveryHint {
        log_start_offset: Some(17),
        ..RecoveryHint::default()
    };
    let reopened = w.open_managed(config.clone(), hint);
    assert_eq!(reopened.log_start_offset(), 17);
    drop(reopened);
    assert!(
        w.open(config).log_start_offset() <= 17,
        "without the checkpoint: a segment base"
    );
    // -1 means the high watermark.
    let mut log = w.open_managed(
        LogConfig {
            segment_bytes: 300,
            ..LogConfig::default()
        },
        hint,
    );
    assert_eq!(log.delete_records_before(-1).unwrap(), 30);
}

/// KIP-467: a refused record set names its bad records (index in the set, across batches).
#[test]
fn refusals_name_the_bad_records() {
    let w = World::new();
    let now = w.clock.now_ms();
    let mut log = w.open(LogConfig {
        timestamp_after_max_ms: 1000,
        ..LogConfig::default()
    });
    let mut set = batch(&["ok", "ok"], now);
    let mut b = BatchBuilder::new(Compression::Gzip);
    for (i, ts) in [now, now + 5000, now, now + 9000].into_iter().enumerate() {
        b.push(Record {
            value: Some(Bytes::from(format!("v{i}"))),
            timestamp_ms: ts,
            ..Default::default()
        });
    }
    set.extend_from_slice(&b.build().unwrap());
    let e = log.append(&set, 0).unwrap_err();
    assert_eq!(
        e.record_errors().iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![3, 5]
    );
    let mut compacted = w.open_at(
        "compacted-0",
        LogConfig {
            cleanup_compact: true,
            cleanup_delete: false,
            ..LogConfig::default()
        },
    );
    let mut b = BatchBuilder::new(Compression::Zstd);
    for key in [Some("a"), None, Some("b"), None] {
        b.push(Record {
            key: key.map(|k| Bytes::from(k.to_string())),
            value: Some(Bytes::from_static(b"v")),
            timestamp_ms: now,
            ..Default::default()
        });
    }
    let e = compacted.append(&b.build().unwrap(), 0).unwrap_err();
    assert!(matches!(e, StorageError::KeylessRecordOnCompactedTopic(ref r) if *r == vec![1, 3]));
    assert_eq!(compacted.high_watermark(), 0, "nothing stored");
}

/// compression.type: batches in another codec are stored re-encoded, with the same offsets,
/// records and producer fields; batches already in the codec are stored as they came.
#[test]
fn compression_type_reencodes_other_codecs() {
    let w = World::new();
    let now = w.clock.now_ms();
    let mut log = w.open(LogConfig {
        compression: Some(Compression::Zstd),
        ..LogConfig::default()
    });
    for codec in [
        Compression::None,
        Compression::Gzip,
        Compression::Zstd,
        Compression::Lz4,
    ] {
        let mut b = BatchBuilder::new(codec);
        for i in 0..3 {
            b.push(Record {
                value: Some(Bytes::from(format!("{codec:?}-{i}"))),
                timestamp_ms: now,
                ..Default::default()
            });
        }
        let info = log.append(&b.build().unwrap(), 0).unwrap();
        let (file, end) = log.flush_target();
        file.sync_data().unwrap();
        log.mark_flushed(end);
        assert_eq!(info.records, 3);
    }
    let data = log.read(0, 1 << 20).unwrap();
    let (spans, _) = strata_records::scan_batches(&data.records, Some(0));
    assert_eq!(spans.len(), 4);
    assert!(spans
        .iter()
        .all(|s| s.header.compression().unwrap() == Compression::Zstd));
    let values: Vec<String> = read_all(&log).into_iter().map(|(_, v)| v).collect();
    assert_eq!(values.len(), 12);
    assert_eq!(values[0], "None-0");
    assert_eq!(values[11], "Lz4-2");
}
