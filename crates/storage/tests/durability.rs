//! Group commit, relaxed flushing, and how much recovery reads, counted through `SimFs`.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Barrier};

use bytes::Bytes;
use strata_records::{BatchBuilder, Compression, Record};
use strata_storage::fs::CrashMode;
use strata_storage::{Clock, Fs, Log, LogConfig, ManualClock, Partition, SimFs};

fn batch(value: &str) -> Vec<u8> {
    let mut b = BatchBuilder::new(Compression::None);
    b.push(Record {
        value: Some(Bytes::from(value.to_string())),
        timestamp_ms: 1_000_000,
        ..Default::default()
    });
    b.build().unwrap().to_vec()
}

fn open(fs: &SimFs, clock: &Arc<ManualClock>, config: LogConfig) -> Log {
    let fs: Arc<dyn Fs> = Arc::new(fs.clone());
    let clock: Arc<dyn Clock> = clock.clone();
    Log::open(fs, clock, Path::new("/d/t-0"), config).unwrap()
}

#[test]
fn one_fdatasync_covers_every_append_before_it() {
    let fs = SimFs::new();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let partition = Arc::new(Partition::new(
        "t".into(),
        0,
        0,
        open(&fs, &clock, LogConfig::default()),
    ));
    let ends: Vec<i64> = (0..8)
        .map(|i| {
            partition
                .append(&batch(&format!("v{i}")))
                .unwrap()
                .last_offset
                + 1
        })
        .collect();
    assert_eq!(
        partition.high_watermark(),
        0,
        "nothing acknowledged or visible before the sync"
    );
    let syncs_before = fs.stats().syncs.load(Ordering::SeqCst);
    let barrier = Arc::new(Barrier::new(ends.len()));
    let threads: Vec<_> = ends
        .into_iter()
        .map(|end| {
            let (p, b) = (partition.clone(), barrier.clone());
            std::thread::spawn(move || {
                b.wait();
                p.sync_to(end).unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(
        fs.stats().syncs.load(Ordering::SeqCst) - syncs_before,
        1,
        "eight writers, one fdatasync"
    );
    assert_eq!(partition.high_watermark(), 8);
}

#[test]
fn relaxed_mode_flushes_by_message_count_and_by_time() {
    let fs = SimFs::new();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let config = LogConfig {
        flush_messages: 5,
        flush_ms: 60_000,
        ..LogConfig::default()
    };
    let mut log = open(&fs, &clock, config);
    for i in 0..4 {
        log.append(&batch(&format!("v{i}")), 0).unwrap();
        assert_eq!(log.high_watermark(), i + 1, "relaxed: visible at once");
    }
    assert!(!log.flush_due());
    log.append(&batch("v4"), 0).unwrap();
    assert!(log.flush_due(), "flush.messages reached");
    let (file, end) = log.flush_target();
    file.sync_data().unwrap();
    log.mark_flushed(end);
    assert!(!log.flush_due());
    log.append(&batch("v5"), 0).unwrap();
    assert!(!log.flush_due());
    clock.advance_ms(60_000);
    assert!(log.flush_due(), "flush.ms elapsed");
}

#[test]
fn recovery_scans_only_what_the_recovery_point_does_not_cover() {
    let config = LogConfig {
        segment_bytes: 4096,
        ..LogConfig::default()
    };
    let total_bytes = |fs: &SimFs| -> u64 {
        fs.file_paths()
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .map(|p| fs.open(p, false).unwrap().len().unwrap())
            .sum()
    };
    let fs = SimFs::new();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let mut log = open(&fs, &clock, config.clone());
    for i in 0..600 {
        log.append(&batch(&format!("value-{i:05}")), 0).unwrap();
        let (file, end) = log.flush_target();
        file.sync_data().unwrap();
        log.mark_flushed(end);
    }
    log.write_recovery_point().unwrap();
    let segments = log.segment_count();
    drop(log); // no clean shutdown
    fs.crash(CrashMode::KeepAll);
    let total = total_bytes(&fs);
    assert!(segments > 10);

    let before = fs.stats().bytes_read.load(Ordering::SeqCst);
    let log = open(&fs, &clock, config.clone());
    let read_with_checkpoint = fs.stats().bytes_read.load(Ordering::SeqCst) - before;
    assert_eq!(log.log_end_offset(), 600);
    drop(log);
    fs.crash(CrashMode::KeepAll);
    fs.remove_file(Path::new("/d/t-0/recovery-point")).unwrap();
    fs.remove_file(Path::new("/d/t-0/clean-shutdown")).ok();
    let before = fs.stats().bytes_read.load(Ordering::SeqCst);
    let log = open(&fs, &clock, config);
    let read_without = fs.stats().bytes_read.load(Ordering::SeqCst) - before;
    assert_eq!(log.log_end_offset(), 600);
    assert!(
        read_without >= total,
        "without a checkpoint every segment is scanned ({read_without} of {total})"
    );
    assert!(
        read_with_checkpoint * 4 < total,
        "with one, only the tail: {read_with_checkpoint} of {total} bytes"
    );
}

#[test]
fn one_syncfs_makes_many_partitions_durable() {
    let fs = SimFs::new();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let open_at = |i: usize| {
        let dynfs: Arc<dyn Fs> = Arc::new(fs.clone());
        let c: Arc<dyn Clock> = clock.clone();
        Log::open(
            dynfs,
            c,
            Path::new(&format!("/d/t-{i}")),
            LogConfig::default(),
        )
        .unwrap()
    };
    let partitions: Vec<Arc<Partition>> = (0..20)
        .map(|i| Arc::new(Partition::new("t".into(), i as i32, 0, open_at(i))))
        .collect();
    for p in &partitions {
        p.append(&batch("durable")).unwrap();
    }
    assert!(partitions.iter().all(|p| p.high_watermark() == 0));
    strata_storage::FilesystemSync::default()
        .sync(&partitions)
        .unwrap();
    assert!(
        partitions.iter().all(|p| p.high_watermark() == 1),
        "every partition's data is acknowledged"
    );
    drop(partitions);
    fs.crash(CrashMode::LoseUnsynced);
    for i in 0..20 {
        assert_eq!(
            open_at(i).log_end_offset(),
            1,
            "partition {i} survived power loss"
        );
    }
}

/// After a failed fdatasync nothing more is acknowledged or made visible from that log
/// ("fsyncgate": the kernel may have dropped the pages it could not write).
#[test]
fn a_failed_sync_stops_the_log_until_it_is_recovered() {
    let fs = SimFs::new();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let partition = Partition::new("t".into(), 0, 0, open(&fs, &clock, LogConfig::default()));
    let end = partition.append(&batch("first")).unwrap().last_offset + 1;
    partition.sync_to(end).unwrap();
    let end = partition.append(&batch("second")).unwrap().last_offset + 1;
    fs.stats().fail_syncs.store(true, Ordering::SeqCst);
    assert!(partition.sync_to(end).is_err(), "the failure is reported");
    fs.stats().fail_syncs.store(false, Ordering::SeqCst);
    assert!(
        matches!(
            partition.sync_to(end),
            Err(strata_storage::StorageError::LogDirFailed(_))
        ),
        "a later sync cannot vouch for it"
    );
    assert!(matches!(
        partition.append(&batch("third")),
        Err(strata_storage::StorageError::LogDirFailed(_))
    ));
    assert_eq!(
        partition.high_watermark(),
        1,
        "only what was acknowledged is visible"
    );
    drop(partition);
    fs.crash(CrashMode::LoseUnsynced);
    let mut log = open(&fs, &clock, LogConfig::default());
    assert!(
        log.log_end_offset() >= 1,
        "the acknowledged record survives (unacknowledged ones may)"
    );
    let first = strata_records::decode_records(log.read(0, 1 << 20).unwrap().records).unwrap();
    assert_eq!(first[0].value.as_deref(), Some(&b"first"[..]));
    let leo = log.log_end_offset();
    assert_eq!(
        log.append(&batch("after"), 0).unwrap().base_offset,
        leo,
        "reopened, the log takes writes again"
    );
}

/// The partition owns the high watermark (the replication rules over its in-sync replicas,
/// this replica alone here): in relaxed mode it follows the log end at once, in durable mode
/// only what a sync covered; the log inside never moves it by itself.
#[test]
fn the_partition_sets_the_high_watermark_from_its_durable_end() {
    let fs = SimFs::new();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let relaxed = LogConfig {
        flush_messages: i64::MAX,
        ..LogConfig::default()
    };
    let p = Partition::new("r".into(), 0, 0, open(&fs, &clock, relaxed));
    p.append(&batch("a")).unwrap();
    p.append(&batch("b")).unwrap();
    assert_eq!(p.high_watermark(), 2, "relaxed: the log end counts");

    let fs = SimFs::new();
    let p = Partition::new("d".into(), 0, 0, open(&fs, &clock, LogConfig::default()));
    p.append(&batch("a")).unwrap();
    {
        // A sync marked on the log alone does not publish anything: the partition decides.
        let mut log = p.log();
        let (file, end) = log.flush_target();
        file.sync_data().unwrap();
        log.mark_flushed(end);
        assert_eq!(log.high_watermark(), 0);
    }
    p.append(&batch("b")).unwrap();
    assert_eq!(
        p.high_watermark(),
        1,
        "the next change reports the synced end"
    );
    p.sync_to(2).unwrap();
    assert_eq!(p.high_watermark(), 2);
}

/// A roll that meets a full disk fails the log but keeps its active segment: the log
/// refuses reads (the broker halts on a failed log), its memory still holds every record,
/// and a restart on the same files serves all of them.
#[test]
fn a_roll_on_a_full_disk_fails_the_log_and_loses_nothing() {
    let fs = SimFs::new();
    let clock = Arc::new(ManualClock::new(1_000_000));
    let config = LogConfig {
        segment_bytes: 2 * batch("r0").len() as u64,
        ..LogConfig::default()
    };
    let mut log = open(&fs, &clock, config.clone());
    for i in 0..2 {
        log.append(&batch(&format!("r{i}")), 0).unwrap();
    }
    let (segments, bytes) = (log.segment_count(), log.size_bytes());
    fs.stats().fail_writes.store(true, Ordering::SeqCst);
    assert!(
        log.append(&batch("r2"), 0).is_err(),
        "the roll fails on the full disk"
    );
    fs.stats().fail_writes.store(false, Ordering::SeqCst);
    assert!(log.is_failed());
    assert_eq!(
        (log.segment_count(), log.size_bytes()),
        (segments, bytes),
        "the segment being sealed is still the active one"
    );
    assert!(
        matches!(
            log.read(0, 1 << 20),
            Err(strata_storage::StorageError::LogDirFailed(_))
        ),
        "a failed log is offline for reads"
    );
    assert!(matches!(
        log.append(&batch("r3"), 0),
        Err(strata_storage::StorageError::LogDirFailed(_))
    ));
    drop(log);
    fs.crash(CrashMode::KeepAll);
    let log = open(&fs, &clock, config);
    assert_eq!(log.log_end_offset(), 2);
    let mut values = Vec::new();
    let mut offset = 0;
    while offset < log.log_end_offset() {
        let records =
            strata_records::decode_records(log.read(offset, 1 << 20).unwrap().records).unwrap();
        offset = records.last().unwrap().offset + 1;
        values.extend(records.into_iter().map(|r| r.value.unwrap()));
    }
    assert_eq!(values, vec![Bytes::from("r0"), Bytes::from("r1")]);
}
