//! Time, injected: the broker uses the system clock; tests move a manual one.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub trait Clock: Send + Sync + 'static {
    /// Wall-clock milliseconds since the Unix epoch (Kafka's timestamp unit).
    fn now_ms(&self) -> i64;

    /// Wall-clock milliseconds as they were when this process started, advanced since by the
    /// monotonic clock: never jumps when the wall clock is stepped (NTP, an operator, a VM
    /// resumed). Coordinators time sessions and transaction timeouts on it, so a clock step
    /// on their node neither expires members nor aborts transactions (Kafka times both on the
    /// wall clock). A clock that only moves when told to has nothing to smooth.
    fn steady_ms(&self) -> i64 {
        self.now_ms()
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }

    fn steady_ms(&self) -> i64 {
        static ANCHOR: OnceLock<(i64, Instant)> = OnceLock::new();
        let (wall, start) = *ANCHOR.get_or_init(|| (SystemClock.now_ms(), Instant::now()));
        wall + start.elapsed().as_millis() as i64
    }
}

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(now_ms: i64) -> Self {
        Self(AtomicI64::new(now_ms))
    }
    pub fn advance_ms(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
    pub fn set_ms(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}
