//! The data directory's checkpoints and clean-shutdown marker (LogManager): what a clean
//! close leaves, what the next open reads, and that the marker is gone before logs open.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::World;
use strata_storage::log_manager::CLEAN_SHUTDOWN_FILE;
use strata_storage::{Clock, Fs, Log, LogConfig, LogManager, Partition};

fn partition(w: &World, topic: &str, p: i32, hint: strata_storage::RecoveryHint) -> Arc<Partition> {
    let fs: Arc<dyn Fs> = Arc::new(w.fs.clone());
    let clock: Arc<dyn Clock> = w.clock.clone();
    let dir = Path::new("/data").join(format!("{topic}-{p}"));
    let log = Log::open_managed(fs, clock, &dir, LogConfig::default(), hint).unwrap();
    Arc::new(Partition::new(topic.to_string(), p, 0, log))
}

#[test]
fn clean_close_then_open_gives_every_log_its_hint() {
    let w = World::new();
    let fs: Arc<dyn Fs> = Arc::new(w.fs.clone());
    let data = Path::new("/data");
    fs.create_dir_all(data).unwrap();
    let manager = LogManager::new(fs.clone(), data);
    let first = manager.begin_recovery(2).unwrap();
    assert!(!first.clean_shutdown && !first.has_log_starts());
    let ps = vec![
        partition(&w, "a", 0, first.hint("a", 0)),
        partition(&w, "b", 3, first.hint("b", 3)),
    ];
    manager.finish_recovery(&first, &ps).unwrap();
    for (i, p) in ps.iter().enumerate() {
        p.append(&common::producer_batch(-1, 0, 0, 3 + i, false))
            .unwrap();
    }
    ps[1].log().delete_records_before(0).unwrap();
    manager.checkpoint_log_start_offsets(&ps).unwrap();
    assert!(manager.close(&ps));
    assert!(fs.exists(&data.join(CLEAN_SHUTDOWN_FILE)));

    let again = LogManager::new(fs.clone(), data);
    let state = again.begin_recovery(2).unwrap();
    assert!(state.clean_shutdown);
    assert!(
        !fs.exists(&data.join(CLEAN_SHUTDOWN_FILE)),
        "the marker is removed before any log opens, so a crash now means full recovery"
    );
    let a = state.hint("a", 0);
    assert_eq!((a.recovery_point, a.clean_shutdown), (Some(3), true));
    assert_eq!(state.hint("b", 3).recovery_point, Some(4));
    assert_eq!(state.hint("b", 3).log_start_offset, Some(0));
    let unknown = state.hint("c", 0);
    assert_eq!(
        (unknown.recovery_point, unknown.clean_shutdown),
        (None, false),
        "a log the checkpoint does not know is recovered in full"
    );
}

#[test]
fn cleaner_offsets_round_trip_for_compacted_logs_only() {
    let w = World::new();
    let fs: Arc<dyn Fs> = Arc::new(w.fs.clone());
    let data = Path::new("/data");
    fs.create_dir_all(data).unwrap();
    let manager = LogManager::new(fs.clone(), data);
    let compacted = partition(&w, "c", 0, Default::default());
    compacted
        .append(&common::producer_batch(-1, 0, 0, 10, false))
        .unwrap();
    compacted
        .log()
        .set_config(LogConfig {
            cleanup_compact: true,
            ..LogConfig::default()
        })
        .unwrap();
    compacted.log().set_first_dirty_offset(7);
    let plain = partition(&w, "d", 0, Default::default());
    plain
        .append(&common::producer_batch(-1, 0, 0, 10, false))
        .unwrap();
    plain.log().set_first_dirty_offset(9);
    manager
        .checkpoint_cleaner_offsets(&[compacted.clone(), plain.clone()])
        .unwrap();
    let c2 = partition(&w, "c", 0, Default::default());
    let d2 = partition(&w, "d", 0, Default::default());
    manager.load_cleaner_offsets(&[c2.clone(), d2.clone()]);
    assert_eq!(c2.log().first_dirty_offset(), 7);
    assert_eq!(
        d2.log().first_dirty_offset(),
        0,
        "only compacted logs are checkpointed"
    );
}

/// Logs recovered in the background while others serve: until they open, every checkpoint
/// carries their entries as read, and a close does not claim to be clean (they must recover
/// next time).
#[test]
fn deferred_logs_keep_their_entries_and_block_the_clean_marker() {
    let w = World::new();
    let fs: Arc<dyn Fs> = Arc::new(w.fs.clone());
    let data = Path::new("/data");
    fs.create_dir_all(data).unwrap();
    let manager = LogManager::new(fs.clone(), data);
    let state = manager.begin_recovery(2).unwrap();
    let ps = vec![
        partition(&w, "a", 0, state.hint("a", 0)),
        partition(&w, "b", 0, state.hint("b", 0)),
    ];
    for p in &ps {
        p.append(&common::producer_batch(-1, 0, 0, 5, false))
            .unwrap();
    }
    assert!(manager.close(&ps));

    let manager = LogManager::new(fs.clone(), data);
    let state = manager.begin_recovery(2).unwrap();
    manager.defer(&state, "a", 0);
    manager.defer(&state, "b", 0);
    let a = partition(&w, "a", 0, state.hint("a", 0));
    manager.opened("a", 0);
    a.append(&common::producer_batch(-1, 0, 0, 2, false))
        .unwrap();
    a.sync_to(7).unwrap();
    manager
        .checkpoint_recovery_points(std::slice::from_ref(&a))
        .unwrap();
    let read = LogManager::new(fs.clone(), data).begin_recovery(2).unwrap();
    assert_eq!(
        read.hint("a", 0).recovery_point,
        Some(7),
        "the open log's own value"
    );
    assert_eq!(
        read.hint("b", 0).recovery_point,
        Some(5),
        "the deferred one's, carried"
    );
    assert!(!manager.all_opened());
    assert!(
        !manager.close(std::slice::from_ref(&a)),
        "b never recovered: no clean marker"
    );
    assert!(!fs.exists(&data.join(CLEAN_SHUTDOWN_FILE)));
    let read = LogManager::new(fs.clone(), data).begin_recovery(2).unwrap();
    assert_eq!(
        read.hint("b", 0).recovery_point,
        Some(5),
        "still carried at close"
    );
    manager.forget("b", 0);
    assert!(manager.all_opened());
}

/// The high watermark checkpoint (`replication-offset-checkpoint`): written with the
/// recovery points, read back as a replica's hint.
#[test]
fn high_watermarks_round_trip_as_replica_hints() {
    let w = World::new();
    let fs: Arc<dyn Fs> = Arc::new(w.fs.clone());
    let data = Path::new("/data");
    fs.create_dir_all(data).unwrap();
    let manager = LogManager::new(fs.clone(), data);
    let state = manager.begin_recovery(2).unwrap();
    let p = partition(&w, "a", 0, state.replica_hint("a", 0));
    p.append(&common::producer_batch(-1, 0, 0, 5, false))
        .unwrap();
    p.sync_to(5).unwrap();
    assert_eq!(p.high_watermark(), 5);
    manager
        .checkpoint_recovery_points(std::slice::from_ref(&p))
        .unwrap();
    manager
        .checkpoint_high_watermarks(std::slice::from_ref(&p))
        .unwrap();
    let again = LogManager::new(fs.clone(), data).begin_recovery(2).unwrap();
    assert_eq!(again.replica_hint("a", 0).high_watermark, Some(5));
    assert_eq!(
        again.replica_hint("b", 0).high_watermark,
        Some(0),
        "unknown: log start"
    );
    assert_eq!(again.hint("a", 0).high_watermark, None, "standalone hint");
}
