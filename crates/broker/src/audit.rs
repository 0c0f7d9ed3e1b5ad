//! The audit log: failed authentications (and, with authorization, denials) as log lines a
//! person can act on, rate-limited so that a client retrying in a loop cannot flood the log
//! or slow the broker with logging. Lines over the limit are counted and the count is
//! reported with the next line that gets through.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use tracing::warn;

use crate::connection::ConnectionContext;

/// Lines logged per second at most.
const LINES_PER_SECOND: u64 = 10;

#[derive(Debug)]
pub struct AuditLog {
    start: Instant,
    /// (second since start, lines logged in it)
    window: Mutex<(u64, u64)>,
    suppressed: AtomicU64,
    /// Every failed authentication since start (logged or not).
    pub authentication_failures: AtomicU64,
    /// Every authorization denial since start (logged or not).
    pub authorization_denials: AtomicU64,
}

impl Default for AuditLog {
    fn default() -> Self {
        AuditLog {
            start: Instant::now(),
            window: Mutex::new((0, 0)),
            suppressed: AtomicU64::new(0),
            authentication_failures: AtomicU64::new(0),
            authorization_denials: AtomicU64::new(0),
        }
    }
}

impl AuditLog {
    /// Whether a line may be logged now; if not, it is counted as suppressed.
    fn admit(&self) -> Option<u64> {
        let second = self.start.elapsed().as_secs();
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        if w.0 != second {
            *w = (second, 0);
        }
        if w.1 >= LINES_PER_SECOND {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        w.1 += 1;
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }

    /// A client failed to authenticate (a TLS handshake, later SASL).
    pub fn authentication_failed(&self, context: &ConnectionContext, reason: &str) {
        self.authentication_failures.fetch_add(1, Ordering::Relaxed);
        if let Some(suppressed) = self.admit() {
            warn!(
                peer = %context.peer,
                listener = %context.listener,
                principal = %context.principal,
                suppressed,
                "authentication failed: {reason}"
            );
        }
    }
}

impl AuditLog {
    /// A connection was closed at once: over a per-IP limit or creation rate.
    pub fn connection_refused(&self, context: &ConnectionContext, reason: &str) {
        if let Some(suppressed) = self.admit() {
            warn!(peer = %context.peer, listener = %context.listener, suppressed, "connection refused: {reason}");
        }
    }

    /// The authorizer refused `principal` from `host` an operation on a resource (Kafka's
    /// authorizer log line).
    pub fn authorization_denied(
        &self,
        principal: &str,
        host: &str,
        operation: &str,
        resource: &str,
    ) {
        self.authorization_denials.fetch_add(1, Ordering::Relaxed);
        if let Some(suppressed) = self.admit() {
            warn!(%principal, %host, %operation, %resource, suppressed, "authorization denied");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_over_the_rate_are_counted_not_logged() {
        let audit = AuditLog::default();
        let admitted = (0..100).filter(|_| audit.admit().is_some()).count() as u64;
        // all in the same second, unless the test straddles a second boundary
        assert!(
            (LINES_PER_SECOND..=2 * LINES_PER_SECOND).contains(&admitted),
            "{admitted}"
        );
        assert_eq!(
            audit.suppressed.load(Ordering::Relaxed),
            100 - admitted,
            "the rest are counted"
        );
    }
}
