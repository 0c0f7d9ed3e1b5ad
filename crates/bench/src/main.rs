//! `strata-bench`: throughput and latency of any Kafka-compatible broker, through librdkafka.
//!
//! Prints one JSON object per workload on stdout and a human summary on stderr. Creates its
//! own topics (prefixed `strata-bench-`) and deletes them at the end. With `--broker-pid`,
//! also reports the broker's peak RSS and CPU time per workload (Linux /proc).

mod admin;
mod consume;
mod latency;
mod limits;
mod produce;
mod pull;
mod stats;

use std::time::Duration;

use anyhow::{bail, Result};
use clap::Parser;
use serde::Serialize;

pub const WORKLOADS: &[&str] = &[
    "limits",
    "produce-1k",
    "produce-100",
    "consume-1k",
    "e2e-latency",
    "partitions-10k",
    "produce-txn",
];

#[derive(Parser, Debug, Clone)]
#[command(
    name = "strata-bench",
    about = "Benchmark a Kafka-compatible broker through librdkafka"
)]
pub struct Args {
    /// Broker address
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub bootstrap: String,
    /// Workload: limits, produce-1k, produce-100, consume-1k, e2e-latency, partitions-10k,
    /// produce-txn, or all; sql-pull (pull queries against the SQL engine, with --sql)
    #[arg(long)]
    pub workload: String,
    /// Seconds each workload runs
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Producer instances for the throughput workloads
    #[arg(long, default_value_t = 2)]
    pub producers: usize,
    /// Consumer instances for consume-1k (each takes a share of the partitions)
    #[arg(long, default_value_t = 2)]
    pub consumers: usize,
    /// PID of the broker, to report its peak RSS and CPU time
    #[arg(long)]
    pub broker_pid: Option<u32>,
    /// Directory for the fdatasync write limit (use the broker's file system)
    #[arg(long, default_value = ".")]
    pub scratch_dir: std::path::PathBuf,
    /// Partitions for partitions-10k
    #[arg(long, default_value_t = 10_000)]
    pub many_partitions: i32,
    /// Keep the topics this run created (for tools that need data left behind)
    #[arg(long)]
    pub keep: bool,
    /// Target rate of e2e-latency, in MB/s
    #[arg(long, default_value_t = 50.0)]
    pub latency_mb_per_s: f64,
    /// Replicas of every topic the run creates (3 for the replicated workloads)
    #[arg(long, default_value_t = 1)]
    pub replication_factor: i32,
    /// sql-pull: the SQL engine's REST address (HOST:PORT)
    #[arg(long)]
    pub sql: Option<String>,
    /// sql-pull: the materialized table queried
    #[arg(long, default_value = "TOTALS")]
    pub pull_table: String,
    /// sql-pull: its key column
    #[arg(long, default_value = "CUSTOMER")]
    pub pull_key: String,
    /// sql-pull: keys are drawn from 0..N
    #[arg(long, default_value_t = 100_000)]
    pub pull_keys: u64,
}

impl Args {
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.seconds.max(0.1))
    }
}

#[derive(Debug, Default, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub samples: usize,
}

#[derive(Debug, Default, Serialize)]
pub struct Outcome {
    pub workload: String,
    pub seconds: f64,
    pub records: u64,
    pub bytes: u64,
    pub records_per_s: f64,
    pub mb_per_s: f64,
    pub errors: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<Latency>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partitions: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_loopback_mb_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fdatasync_write_mb_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_peak_rss_mb: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_cpu_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_cpu_s_per_gb: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transactions_per_s: Option<f64>,
}

impl Outcome {
    pub fn throughput(workload: &str, records: u64, bytes: u64, secs: f64, errors: u64) -> Self {
        Self {
            workload: workload.into(),
            seconds: round(secs, 3),
            records,
            bytes,
            records_per_s: round(records as f64 / secs, 0),
            mb_per_s: round(bytes as f64 / secs / 1e6, 1),
            errors,
            ..Self::default()
        }
    }
}

pub fn round(x: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    (x * m).round() / m
}

fn run_one(args: &Args, name: &str, state: &mut consume::Produced) -> Result<Outcome> {
    let sampler = args.broker_pid.map(stats::Sampler::start);
    let mut outcome = match name {
        "limits" => limits::run(args)?,
        "produce-1k" => {
            let (o, produced) = produce::run(args, "produce-1k", 1024, 8)?;
            *state = produced;
            o
        }
        "produce-100" => produce::run(args, "produce-100", 100, 8)?.0,
        "consume-1k" => consume::run(args, state)?,
        "e2e-latency" => latency::run(args)?,
        "partitions-10k" => produce::run_many_partitions(args)?,
        "produce-txn" => produce::run_transactional(args)?,
        "sql-pull" => pull::run(args)?,
        other => bail!(
            "unknown workload '{other}' (one of {} or all)",
            WORKLOADS.join(", ")
        ),
    };
    if let Some(s) = sampler {
        let (peak_rss_mb, cpu_s) = s.stop();
        outcome.broker_peak_rss_mb = Some(round(peak_rss_mb, 1));
        outcome.broker_cpu_s = Some(round(cpu_s, 2));
        if outcome.workload.starts_with("produce") && outcome.bytes > 0 {
            outcome.broker_cpu_s_per_gb = Some(round(cpu_s / (outcome.bytes as f64 / 1e9), 3));
        }
    }
    Ok(outcome)
}

fn main() {
    let args = Args::parse();
    admin::set_replication_factor(args.replication_factor);
    let names: Vec<&str> = if args.workload == "all" {
        WORKLOADS.to_vec()
    } else {
        args.workload.split(',').collect()
    };
    let mut state = consume::Produced::default();
    let mut failed = false;
    for name in names {
        eprintln!("== {name}");
        match run_one(&args, name, &mut state) {
            Ok(o) => {
                eprintln!("   {}", summary(&o));
                println!("{}", serde_json::to_string(&o).expect("serializable"));
            }
            Err(e) => {
                eprintln!("   {name} failed: {e:#}");
                failed = true;
            }
        }
    }
    if args.keep {
        eprintln!("keeping the topics this run created (--keep)");
    } else if let Err(e) = admin::cleanup(&args.bootstrap) {
        eprintln!("cleanup failed: {e:#}");
    }
    if failed {
        std::process::exit(1);
    }
}

fn summary(o: &Outcome) -> String {
    let mut s = format!(
        "{:.0} records/s, {:.1} MB/s over {:.1}s",
        o.records_per_s, o.mb_per_s, o.seconds
    );
    if let Some(l) = &o.latency {
        s += &format!(
            ", latency p50 {:.2} p99 {:.2} p99.9 {:.2} max {:.2} ms",
            l.p50_ms, l.p99_ms, l.p999_ms, l.max_ms
        );
    }
    if let (Some(t), Some(f)) = (o.tcp_loopback_mb_per_s, o.fdatasync_write_mb_per_s) {
        s = format!("loopback TCP {t:.0} MB/s, fdatasync'd writes {f:.0} MB/s");
    }
    if let Some(t) = o.transactions_per_s {
        s += &format!(", {t:.1} transactions/s");
    }
    if let Some(r) = o.broker_peak_rss_mb {
        s += &format!(", broker peak RSS {r:.0} MB");
    }
    if let Some(c) = o.broker_cpu_s_per_gb {
        s += &format!(", broker {c:.2} CPU-s/GB");
    }
    if o.errors > 0 {
        s += &format!(", {} errors", o.errors);
    }
    s
}
