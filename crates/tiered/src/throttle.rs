//! Bandwidth limits for the object store (Kafka's KIP-956:
//! `remote.log.manager.copy.max.bytes.per.second` and
//! `remote.log.manager.fetch.max.bytes.per.second`).
//!
//! A [`RateLimiter`] is a token bucket holding at most one second's worth of bytes. A
//! caller takes the bytes it is about to move before it moves them; when the bucket runs
//! dry the bucket goes into debt and the caller sleeps until the debt is paid, so a large
//! request is never refused and callers are served in the order they asked. Time is
//! tokio's, so tests run it on a paused clock.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Bytes per second, at most; `u64::MAX` (Kafka's default) is no limit.
#[derive(Debug)]
pub struct RateLimiter {
    bytes_per_second: u64,
    bucket: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    /// Bytes that may go now; negative: owed.
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    /// A limiter of `bytes_per_second` (0 and `u64::MAX` are no limit).
    pub fn new(bytes_per_second: u64) -> RateLimiter {
        RateLimiter {
            bytes_per_second,
            bucket: Mutex::new(Bucket {
                tokens: bytes_per_second as f64,
                at: Instant::now(),
            }),
        }
    }

    pub fn is_unlimited(&self) -> bool {
        self.bytes_per_second == 0 || self.bytes_per_second == u64::MAX
    }

    /// How long a caller taking `bytes` now must wait before moving them (the bytes are
    /// taken either way).
    pub fn take(&self, bytes: u64) -> Duration {
        if self.is_unlimited() || bytes == 0 {
            return Duration::ZERO;
        }
        let rate = self.bytes_per_second as f64;
        let mut b = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(rate);
        b.at = now;
        b.tokens -= bytes as f64;
        if b.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-b.tokens / rate)
        }
    }

    /// Takes `bytes`, sleeping while the limit says so.
    pub async fn acquire(&self, bytes: u64) {
        let wait = self.take(bytes);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_limited_mover_takes_as_long_as_the_rate_says() {
        let limiter = RateLimiter::new(1 << 20);
        let start = Instant::now();
        // One second's worth goes at once (the bucket starts full), the next three take 3 s.
        for _ in 0..16 {
            limiter.acquire(256 << 10).await;
        }
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(2990) && took <= Duration::from_millis(3010),
            "{took:?}"
        );
        // A request larger than the bucket is served, and paid for afterwards.
        let start = Instant::now();
        limiter.acquire(4 << 20).await;
        assert!(
            start.elapsed() >= Duration::from_millis(3990),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_limiter_saves_at_most_one_second() {
        let limiter = RateLimiter::new(1000);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(limiter.take(1000), Duration::ZERO);
        assert_eq!(limiter.take(500), Duration::from_millis(500));
    }

    #[test]
    fn no_limit_never_waits() {
        for unlimited in [RateLimiter::new(0), RateLimiter::new(u64::MAX)] {
            assert!(unlimited.is_unlimited());
            assert_eq!(unlimited.take(u64::MAX / 2), Duration::ZERO);
        }
    }
}
