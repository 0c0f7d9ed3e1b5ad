//! `strata-sim`: runs seeds of the deterministic simulation and prints what they found.
//!
//! `strata-sim --seeds N [--start S] [--nodes K] [--seconds T]`; exits 1 if any seed found a
//! violation, printing the seed that replays it (`--start S --seeds 1`).

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Instant;

use strata_sim::{run, Flaw, SimConfig};

fn main() -> ExitCode {
    let mut seeds = 100u64;
    let mut start = 0u64;
    let mut config = SimConfig::default();
    let mut verbose = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| -> u64 {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} needs a number"))
        };
        match arg.as_str() {
            "--seeds" => seeds = value("--seeds"),
            "--start" => start = value("--start"),
            "--nodes" => config.nodes = value("--nodes") as i32,
            "--partitions" => config.partitions = value("--partitions") as i32,
            "--seconds" => {
                let total = value("--seconds") as i64 * 1000;
                config.fault_ms = total * 4 / 7;
                config.heal_ms = total - config.fault_ms;
            }
            "--verbose" => verbose = true,
            "--disk-full" => config.disk_full = true,
            "--stale-images" => config.stale_image = true,
            "--delete-records" => config.delete_records = true,
            "--duplicates" => config.duplicate_rate = value("--duplicates") as f64 / 100.0,
            "--flaw" => {
                config.flaw = Some(match args.next().as_deref() {
                    Some("ack-on-leader-disk") => Flaw::AckOnLeaderDisk,
                    Some("no-divergence-check") => Flaw::NoDivergenceCheck,
                    Some("same-epoch-after-restart") => Flaw::SameEpochAfterRestart,
                    Some("give-up-on-unanswered-isr-change") => Flaw::GiveUpOnUnansweredIsrChange,
                    Some("high-watermark-from-log-end") => Flaw::HighWatermarkFromLogEnd,
                    Some("ignore-unchanged-isr") => Flaw::IgnoreUnchangedIsr,
                    Some("apply-stale-answers") => Flaw::ApplyStaleAnswers,
                    Some("stay-up-on-failed-disk") => Flaw::StayUpOnFailedDisk,
                    Some("ack-delete-records-on-leader") => Flaw::AckDeleteRecordsOnLeader,
                    Some("followers-ignore-log-start") => Flaw::FollowersIgnoreLogStart,
                    Some("follower-log-start-not-durable") => Flaw::FollowerLogStartNotDurable,
                    other => panic!("unknown flaw {other:?}"),
                })
            }
            "-h" | "--help" => {
                println!("strata-sim --seeds N [--start S] [--nodes K] [--partitions P] [--seconds T] [--disk-full] [--stale-images] [--delete-records] [--duplicates PCT] [--flaw NAME] [--verbose]");
                return ExitCode::SUCCESS;
            }
            other => panic!("unknown argument {other}"),
        }
    }
    let started = Instant::now();
    let mut failed = Vec::new();
    let mut faults: BTreeMap<&'static str, u64> = BTreeMap::new();
    let (mut produced, mut acked, mut read, mut elections, mut truncations, mut events) =
        (0, 0, 0, 0, 0, 0);
    let mut deletes = 0;
    for seed in start..start + seeds {
        let o = run(seed, &config);
        for (k, v) in &o.stats.faults {
            *faults.entry(k).or_insert(0) += v;
        }
        produced += o.stats.produced;
        acked += o.stats.acknowledged;
        read += o.stats.read;
        elections += o.stats.leader_elections;
        truncations += o.stats.truncations;
        events += o.stats.events;
        deletes += o.stats.deletes;
        if verbose {
            println!(
                "seed {seed}: {} violations, trace {:016x}, {:?}",
                o.violations.len(),
                o.trace,
                o.stats
            );
        }
        if !o.violations.is_empty() {
            println!(
                "seed {seed} FAILED (replay: strata-sim --start {seed} --seeds 1 --nodes {}):",
                config.nodes
            );
            for v in o.violations.iter().take(10) {
                println!("  {v}");
            }
            failed.push(seed);
        }
    }
    println!(
        "{seeds} seeds from {start} ({} nodes, {} partitions, {} s simulated each) in {:.1} s: {} failed",
        config.nodes,
        config.partitions,
        (config.fault_ms + config.heal_ms) / 1000,
        started.elapsed().as_secs_f64(),
        failed.len()
    );
    println!("events {events}; writes produced {produced}, acknowledged {acked}; records read {read}; leader elections {elections}; truncations {truncations}; DeleteRecords answered {deletes}");
    println!("faults: {faults:?}");
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        println!("failed seeds: {failed:?}");
        ExitCode::FAILURE
    }
}
