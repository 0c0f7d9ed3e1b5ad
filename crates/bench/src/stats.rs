//! The broker's memory and CPU, sampled from /proc while a workload runs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<f64>,
    pid: u32,
    cpu_start: f64,
}

fn rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// user + system CPU seconds of the process so far.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // fields after the ")" that ends the command name; utime and stime are fields 14 and 15
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields
        .get(11)
        .and_then(|u| u.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0);
    ticks / clock_ticks()
}

impl Sampler {
    pub fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = 0f64;
            while !flag.load(Ordering::Relaxed) {
                peak = peak.max(rss_mb(pid).unwrap_or(0.0));
                std::thread::sleep(Duration::from_millis(50));
            }
            peak.max(rss_mb(pid).unwrap_or(0.0))
        });
        Self {
            stop,
            thread,
            pid,
            cpu_start: cpu_seconds(pid),
        }
    }

    /// Peak RSS in MB and CPU seconds used since `start`.
    pub fn stop(self) -> (f64, f64) {
        self.stop.store(true, Ordering::Relaxed);
        let peak = self.thread.join().unwrap_or(0.0);
        (peak, cpu_seconds(self.pid) - self.cpu_start)
    }
}
