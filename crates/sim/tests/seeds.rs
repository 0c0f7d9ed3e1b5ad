//! The simulation in `cargo test`: a few hundred seeds (`SIM_SEEDS` to change; the committed
//! campaign in bench/CHAOS.md runs `scripts/simulate`), each seed replaying exactly, and every
//! bug the simulation found, put back on purpose (a [`Flaw`]), caught again by the checker.

use strata_sim::{run, Flaw, SimConfig};

fn seeds() -> u64 {
    std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300)
}

#[test]
fn every_seed_keeps_the_replication_invariants() {
    let config = SimConfig::default();
    let mut failed = Vec::new();
    for seed in 0..seeds() {
        let o = run(seed, &config);
        assert!(
            o.stats.acknowledged > 0,
            "seed {seed} made no progress: {:?}",
            o.stats
        );
        if !o.violations.is_empty() {
            failed.push((seed, o.violations));
        }
    }
    assert!(
        failed.is_empty(),
        "{} seeds failed (replay: scripts/simulate --start SEED --seeds 1, SIM_TRACE=1 for the steps); first: {:#?}",
        failed.len(),
        failed.first()
    );
}

#[test]
fn five_nodes_keep_the_replication_invariants() {
    let config = SimConfig {
        nodes: 5,
        partitions: 3,
        ..SimConfig::default()
    };
    for seed in 0..seeds() / 5 {
        let o = run(1_000_000 + seed, &config);
        assert!(
            o.violations.is_empty(),
            "seed {}: {:#?}",
            o.seed,
            o.violations
        );
    }
}

#[test]
fn a_seed_replays_the_same_trace() {
    let config = SimConfig::default();
    for seed in [3, 17] {
        let a = run(seed, &config);
        let b = run(seed, &config);
        assert_eq!(a.trace, b.trace, "seed {seed}");
        assert_eq!(a.stats.events, b.stats.events);
        assert!(
            a.stats.acknowledged > 100,
            "the workload made progress: {:?}",
            a.stats
        );
        assert!(
            !a.stats.faults.is_empty(),
            "faults were injected: {:?}",
            a.stats
        );
    }
    assert_ne!(run(3, &config).trace, run(4, &config).trace);
}

/// Full disks too: a node whose writes fail halts and comes back once space is back; and a
/// power loss may bring a node's metadata image back a few batches old.
#[test]
fn full_disks_and_stale_images_keep_the_replication_invariants() {
    let config = SimConfig {
        disk_full: true,
        stale_image: true,
        ..SimConfig::default()
    };
    let mut failed = Vec::new();
    let (mut halts, mut stale) = (0, 0);
    for seed in 0..seeds() / 3 {
        let o = run(seed, &config);
        halts += o.stats.faults.get("halt").copied().unwrap_or(0);
        stale += o.stats.faults.get("stale-image").copied().unwrap_or(0);
        if !o.violations.is_empty() {
            failed.push((seed, o.violations));
        }
    }
    assert!(halts > 0, "no node ever halted on a full disk");
    assert!(stale > 0, "no power loss ever rolled a metadata image back");
    assert!(
        failed.is_empty(),
        "{} seeds failed (replay: scripts/simulate --disk-full --stale-images --start SEED --seeds 1); first: {:#?}",
        failed.len(),
        failed.first()
    );
}

/// DeleteRecords now and then: what an answered DeleteRecords deleted is never served
/// again, whatever fails (the bugs of 3faad7f and after, see bench/CHAOS.md).
#[test]
fn deleted_records_stay_deleted() {
    let config = SimConfig {
        delete_records: true,
        ..SimConfig::default()
    };
    let mut failed = Vec::new();
    let mut deletes = 0;
    for seed in 0..seeds() / 3 {
        let o = run(2_000_000 + seed, &config);
        deletes += o.stats.deletes;
        if !o.violations.is_empty() {
            failed.push((o.seed, o.violations));
        }
    }
    assert!(deletes > 0, "no DeleteRecords was answered");
    assert!(
        failed.is_empty(),
        "{} seeds failed (replay: scripts/simulate --delete-records --start SEED --seeds 1); first: {:#?}",
        failed.len(),
        failed.first()
    );
}

/// The first seed (below `limit`) whose run breaks an invariant with `flaw` put in.
fn first_catch(flaw: Flaw, limit: u64) -> Option<(u64, Vec<String>)> {
    let config = SimConfig {
        flaw: Some(flaw),
        disk_full: flaw == Flaw::StayUpOnFailedDisk,
        delete_records: matches!(
            flaw,
            Flaw::AckDeleteRecordsOnLeader
                | Flaw::FollowersIgnoreLogStart
                | Flaw::FollowerLogStartNotDurable
        ),
        ..SimConfig::default()
    };
    (0..limit).find_map(|seed| {
        let o = run(seed, &config);
        (!o.violations.is_empty()).then_some((seed, o.violations))
    })
}

fn caught(flaw: Flaw, limit: u64, expected: &str) {
    let Some((seed, violations)) = first_catch(flaw, limit) else {
        panic!("{flaw:?}: no seed below {limit} caught it");
    };
    assert!(
        violations.iter().any(|v| v.contains(expected)),
        "{flaw:?} caught by seed {seed}, but not as {expected:?}: {violations:#?}"
    );
}

/// The checker is not vacuous: acknowledging on the leader's disk alone (acks=1) loses
/// acknowledged writes.
#[test]
fn acks_on_the_leader_alone_are_caught() {
    caught(Flaw::AckOnLeaderDisk, 50, "acknowledged write");
}

/// A leader that never reports a diverged follower leaves replicas whose logs differ.
#[test]
fn a_missing_divergence_check_is_caught() {
    caught(Flaw::NoDivergenceCheck, 2_000, "");
}

/// Bug 1 found by the simulation: a restarted leader went on in its old leader epoch.
#[test]
fn leading_on_in_the_same_epoch_after_a_restart_is_caught() {
    caught(Flaw::SameEpochAfterRestart, 3_000, "acknowledged write");
}

/// Bug 2: a restarted replica took its log end for its high watermark.
#[test]
fn a_high_watermark_taken_from_the_log_end_is_caught() {
    caught(Flaw::HighWatermarkFromLogEnd, 2_000, "acknowledged write");
}

/// Bug 3: a leader stopped counting a replica whose ISR addition went unanswered.
#[test]
fn giving_up_on_an_unanswered_isr_change_is_caught() {
    caught(
        Flaw::GiveUpOnUnansweredIsrChange,
        2_000,
        "acknowledged write",
    );
}

/// Bug 4: a partition change that ended where it started was not applied, leaving a
/// leader's ISR addition pending for good.
#[test]
fn ignoring_a_change_that_ends_where_it_started_is_caught() {
    caught(Flaw::IgnoreUnchangedIsr, 2_000, "liveness");
}

/// The broker's halt on a failed disk is what moves its leaderships and brings its replicas
/// back: a node that stays up with failed logs never recovers.
#[test]
fn staying_up_on_a_failed_disk_is_caught() {
    caught(Flaw::StayUpOnFailedDisk, 200, "liveness");
}

/// DeleteRecords answered before the in-sync replicas deleted too: a new leader serves the
/// deleted records.
#[test]
fn answering_delete_records_on_the_leader_alone_is_caught() {
    caught(
        Flaw::AckDeleteRecordsOnLeader,
        300,
        "below the acknowledged DeleteRecords",
    );
}

/// Followers that keep their own log start (the bug 3faad7f fixed): since a replica joins
/// the ISR only once it deleted what its leader deleted, they never join it again.
#[test]
fn followers_ignoring_the_leaders_log_start_are_caught() {
    caught(Flaw::FollowersIgnoreLogStart, 50, "liveness");
}

/// A follower's log start moved in memory only: a crash brings the deleted records back.
/// (Seed 513 is the first to catch it since DeleteRecords is refused below
/// `min.insync.replicas`: fewer deletions apply while faults are in force.)
#[test]
fn a_follower_log_start_not_made_durable_is_caught() {
    caught(
        Flaw::FollowerLogStartNotDurable,
        600,
        "below the acknowledged DeleteRecords",
    );
}
