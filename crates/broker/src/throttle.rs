//! Replication throttles (KIP-73, used by reassignments): a partition's replication traffic
//! is limited when its topic lists it in `leader.replication.throttled.replicas` (on the
//! leader, as `partition:leader`) or `follower.replication.throttled.replicas` (on the
//! follower, as `partition:follower`), or `*`; the rates are the dynamic broker configs
//! `leader.replication.throttled.rate` / `follower.replication.throttled.rate` (bytes per
//! second, this broker's own value first, then the cluster-wide default; unset: no limit).
//!
//! Over its rate the leader answers a throttled partition with no records (the follower
//! still counts towards the high watermark) and the follower leaves throttled partitions out
//! of its fetches, until the budget refills; other partitions are never held back.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use strata_cluster::MetadataImage;

pub const LEADER_RATE: &str = "leader.replication.throttled.rate";
pub const FOLLOWER_RATE: &str = "follower.replication.throttled.rate";
pub const LEADER_REPLICAS: &str = "leader.replication.throttled.replicas";
pub const FOLLOWER_REPLICAS: &str = "follower.replication.throttled.replicas";

/// The broker configs that are rates (not topic defaults).
pub const RATE_CONFIGS: &[&str] = &[LEADER_RATE, FOLLOWER_RATE];

/// A byte budget refilled at a rate, holding at most one second of it.
#[derive(Debug)]
pub struct RateLimiter {
    state: Mutex<Option<(f64, Instant)>>,
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self {
            state: Mutex::new(None),
        }
    }
}

impl RateLimiter {
    /// Whether throttled bytes may go now at `rate` bytes per second.
    pub fn allows(&self, rate: u64, now: Instant) -> bool {
        self.refilled(rate, now) > 0.0
    }

    /// Takes `bytes` from the budget (it may go below zero: the next sends wait longer).
    pub fn record(&self, rate: u64, bytes: u64, now: Instant) {
        let tokens = self.refilled(rate, now);
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = Some((tokens - bytes as f64, now));
    }

    fn refilled(&self, rate: u64, now: Instant) -> f64 {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, last) = state.unwrap_or((rate as f64, now));
        let elapsed = now.saturating_duration_since(last).as_secs_f64();
        let tokens = (tokens + elapsed * rate as f64).min(rate as f64);
        *state = Some((tokens, now));
        tokens
    }
}

/// This broker's leader and follower replication budgets.
#[derive(Debug, Default)]
pub struct ReplicationQuotas {
    pub leader: RateLimiter,
    pub follower: RateLimiter,
}

/// The rate `key` sets for broker `node` (its own dynamic config, else the cluster default).
pub fn rate(image: &MetadataImage, node: i32, key: &str) -> Option<u64> {
    image
        .broker_configs(&node.to_string())
        .and_then(|c| c.get(key))
        .or_else(|| image.broker_configs("").and_then(|c| c.get(key)))
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// Whether `list` (a throttled replicas config: `*` or `partition:broker,…`) names
/// `partition` on `broker`.
pub fn lists(list: &str, partition: i32, broker: i32) -> bool {
    let list = list.trim();
    list == "*"
        || list.split(',').any(|pair| {
            pair.trim().split_once(':').is_some_and(|(p, b)| {
                p.trim().parse::<i32>() == Ok(partition) && b.trim().parse::<i32>() == Ok(broker)
            })
        })
}

/// Whether a topic's `key` list throttles `partition` on `broker`.
pub fn throttled(
    configs: &BTreeMap<String, String>,
    key: &str,
    partition: i32,
    broker: i32,
) -> bool {
    configs
        .get(key)
        .is_some_and(|l| lists(l, partition, broker))
}

/// Checks a rate config's value (a positive number of bytes per second).
pub fn check_rate(key: &str, value: &str) -> Result<(), String> {
    match value.trim().parse::<u64>() {
        Ok(r) if r > 0 => Ok(()),
        _ => Err(format!(
            "Invalid value {value} for configuration {key}: must be a positive number of bytes per second"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn lists_match_partition_and_broker() {
        assert!(lists("*", 3, 9));
        assert!(lists("0:1, 3:9", 3, 9));
        assert!(!lists("0:1,3:8", 3, 9));
        assert!(!lists("", 0, 1));
    }

    #[test]
    fn the_budget_refills_at_the_rate_and_holds_one_second() {
        let limiter = RateLimiter::default();
        let t0 = Instant::now();
        assert!(limiter.allows(1000, t0));
        limiter.record(1000, 3000, t0);
        // 2000 bytes over: two seconds before anything throttled goes again.
        assert!(!limiter.allows(1000, t0 + Duration::from_millis(1900)));
        assert!(limiter.allows(1000, t0 + Duration::from_millis(2100)));
        // A long pause refills at most one second's worth.
        let later = t0 + Duration::from_secs(60);
        limiter.record(1000, 1500, later);
        assert!(!limiter.allows(1000, later + Duration::from_millis(400)));
    }
}
