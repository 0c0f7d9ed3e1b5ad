//! Client quotas (KIP-13 byte rates, KIP-55 user quotas, KIP-257 entity precedence): which
//! quota applies to a request, how fast its entity has been going, and how long it must be
//! throttled. Pure apart from the sensors' lock: time comes in as an argument.
//!
//! Quotas live in the cluster metadata as (entity, key, value), the entity being a user, a
//! client id, both, or an IP, each possibly the type's `<default>`. A request from user U
//! with client id C takes the first of Kafka's eight levels that sets the key:
//! `U/C`, `U/<default C>`, `U`, `<default U>/C`, `<default U>/<default C>`, `<default U>`,
//! `C`, `<default C>`. Usage is measured per entity at the level found, with defaults
//! applied to each user / client separately (as Kafka's quota metric tags do).
//!
//! The rate is Kafka's: bytes over `quota.window.num` samples of `quota.window.size.seconds`,
//! divided by the time they span (at least all but one sample, so a new client is not
//! throttled for a burst in its first second). Over the quota the throttle time is
//! `(rate - quota) / quota * window`, at most one whole window; the response carries it as
//! `throttle_time_ms` and the connection reads nothing more until it has passed (KIP-219).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use strata_cluster::{ClientQuotaImage, MetadataImage};

pub const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
pub const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";
pub const REQUEST_PERCENTAGE: &str = "request_percentage";
pub const CONTROLLER_MUTATION_RATE: &str = "controller_mutation_rate";
pub const CONNECTION_CREATION_RATE: &str = "connection_creation_rate";

pub const USER: &str = "user";
pub const CLIENT_ID: &str = "client-id";
pub const IP: &str = "ip";

/// A quota entity: sorted (type, name) pairs, None for the type's default.
pub type Entity = Vec<(String, Option<String>)>;

/// Why a quota may not be set, if it may not (Kafka's checks).
pub fn invalid(entity: &Entity, key: &str, value: Option<f64>) -> Option<String> {
    let types: Vec<&str> = entity.iter().map(|(t, _)| t.as_str()).collect();
    let valid_entity = matches!(
        types.as_slice(),
        [CLIENT_ID] | [USER] | [CLIENT_ID, USER] | [IP]
    );
    if !valid_entity {
        return Some(format!(
            "Invalid quota entity {types:?}: user, client-id, user and client-id, or ip"
        ));
    }
    let ip = types == [IP];
    let known = if ip {
        key == CONNECTION_CREATION_RATE
    } else {
        [
            PRODUCER_BYTE_RATE,
            CONSUMER_BYTE_RATE,
            REQUEST_PERCENTAGE,
            CONTROLLER_MUTATION_RATE,
        ]
        .contains(&key)
    };
    if !known {
        return Some(format!(
            "Invalid configuration key {key} for a {} entity",
            types.join("/")
        ));
    }
    if let Some((_, Some(addr))) = entity.iter().find(|(t, _)| t == IP) {
        if addr.parse::<std::net::IpAddr>().is_err() {
            return Some(format!("{addr} is not a valid IP address"));
        }
    }
    match value {
        Some(v) if !v.is_finite() || v <= 0.0 => {
            Some(format!("Quota {key} must be a positive number, not {v}"))
        }
        _ => None,
    }
}

/// Sorts an entity's pairs (the order every record and lookup uses).
pub fn canonical(mut entity: Entity) -> Entity {
    entity.sort();
    entity
}

fn pair(t: &str, name: Option<&str>) -> (String, Option<String>) {
    (t.to_string(), name.map(str::to_string))
}

/// The quota for `key` that applies to `user` / `client_id`, and the identity of the
/// entity whose usage counts against it; None: unlimited.
pub fn resolve(
    quotas: &[ClientQuotaImage],
    user: &str,
    client_id: &str,
    key: &str,
) -> Option<(f64, (String, String))> {
    let (u, c) = (Some(user), Some(client_id));
    // Kafka's eight levels, most specific first; the sensor is per actual user / client id
    // wherever the level has that type (also for defaults).
    let levels: [(Entity, bool, bool); 8] = [
        (vec![pair(CLIENT_ID, c), pair(USER, u)], true, true),
        (vec![pair(CLIENT_ID, None), pair(USER, u)], true, true),
        (vec![pair(USER, u)], true, false),
        (vec![pair(CLIENT_ID, c), pair(USER, None)], true, true),
        (vec![pair(CLIENT_ID, None), pair(USER, None)], true, true),
        (vec![pair(USER, None)], true, false),
        (vec![pair(CLIENT_ID, c)], false, true),
        (vec![pair(CLIENT_ID, None)], false, true),
    ];
    for (entity, by_user, by_client) in levels {
        let Ok(at) = quotas.binary_search_by(|q| q.entity.cmp(&entity)) else {
            continue;
        };
        if let Some(v) = quotas[at].values.get(key) {
            let id = (
                if by_user { user } else { "" }.to_string(),
                if by_client { client_id } else { "" }.to_string(),
            );
            return Some((v.0, id));
        }
    }
    None
}

/// Kafka's `quota.window.num` and `quota.window.size.seconds`.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub samples: u32,
    pub sample: Duration,
}

/// Byte counts in consecutive samples.
#[derive(Debug, Default)]
struct Sensor {
    /// (start of the sample, bytes in it), oldest first.
    samples: VecDeque<(Instant, f64)>,
}

impl Sensor {
    fn record(&mut self, bytes: f64, now: Instant, w: Window) {
        match self.samples.back_mut() {
            Some((start, total)) if now.duration_since(*start) < w.sample => *total += bytes,
            _ => self.samples.push_back((now, bytes)),
        }
        let span = w.sample * w.samples;
        while self
            .samples
            .front()
            .is_some_and(|(start, _)| now.duration_since(*start) >= span)
        {
            self.samples.pop_front();
        }
    }

    /// (bytes per second, the time the rate is measured over).
    fn rate(&self, now: Instant, w: Window) -> (f64, Duration) {
        let total: f64 = self.samples.iter().map(|(_, b)| b).sum();
        let oldest = self.samples.front().map_or(now, |(s, _)| *s);
        let elapsed = now
            .duration_since(oldest)
            .max(w.sample * (w.samples.saturating_sub(1)).max(1));
        (total / elapsed.as_secs_f64(), elapsed)
    }
}

/// Sensors kept before idle ones are forgotten.
const SENSORS_BEFORE_PRUNE: usize = 4096;

/// A sensor's identity: the quota key and the (user, client id) it measures.
type SensorKey = (&'static str, (String, String));

/// Usage of every quota entity, by quota key.
pub struct QuotaManager {
    window: Window,
    sensors: Mutex<HashMap<SensorKey, Sensor>>,
}

impl QuotaManager {
    pub fn new(window: Window) -> QuotaManager {
        QuotaManager {
            window,
            sensors: Mutex::new(HashMap::new()),
        }
    }

    /// Records `amount` (bytes) for the request of `user` / `client_id` under `key` and
    /// returns how long it must be throttled (zero when under its quota or unlimited).
    pub fn record(
        &self,
        image: &MetadataImage,
        key: &'static str,
        user: &str,
        client_id: &str,
        amount: f64,
        now: Instant,
    ) -> Duration {
        let Some((quota, id)) = resolve(image.client_quotas(), user, client_id, key) else {
            return Duration::ZERO;
        };
        let mut sensors = self.sensors.lock().unwrap_or_else(|p| p.into_inner());
        if sensors.len() >= SENSORS_BEFORE_PRUNE {
            // Client ids come from clients: forget the ones idle for a whole window (Kafka
            // expires idle quota sensors too), so made-up ids cannot grow this map.
            let span = self.window.sample * self.window.samples;
            sensors.retain(|_, s| {
                s.samples
                    .back()
                    .is_some_and(|(start, _)| now.duration_since(*start) < span)
            });
        }
        let sensor = sensors.entry((key, id)).or_default();
        sensor.record(amount, now, self.window);
        let (rate, elapsed) = sensor.rate(now, self.window);
        throttle_time(rate, quota, elapsed, self.window)
    }
}

impl QuotaManager {
    /// How long the entity is over its `key` quota now, without recording anything (KIP-599
    /// refuses a mutation while its entity is over the quota: the request that crossed it
    /// was let through whole).
    pub fn over(
        &self,
        image: &MetadataImage,
        key: &'static str,
        user: &str,
        client_id: &str,
        now: Instant,
    ) -> Duration {
        let Some((quota, id)) = resolve(image.client_quotas(), user, client_id, key) else {
            return Duration::ZERO;
        };
        let sensors = self.sensors.lock().unwrap_or_else(|p| p.into_inner());
        match sensors.get(&(key, id)) {
            Some(sensor) => {
                let (rate, elapsed) = sensor.rate(now, self.window);
                throttle_time(rate, quota, elapsed, self.window)
            }
            None => Duration::ZERO,
        }
    }
}

tokio::task_local! {
    /// Microseconds the request being polled kept threads of the blocking pool busy.
    static OFFLOADED: Arc<AtomicU64>;
}

/// Runs `f` on the blocking pool (admin handlers); its time there counts as the current
/// request's busy time for `request_percentage`, as Kafka counts a request handler thread's.
pub async fn offload<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    let busy = OFFLOADED.try_with(Arc::clone).ok();
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let out = f();
        if let Some(busy) = busy {
            busy.fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        }
        out
    })
    .await
}

/// A response future whose busy time (the time its polls take, the time it kept the
/// blocking pool busy through [`offload`], plus `spent` before it) is recorded against the
/// connection's `request_percentage` quota when it completes; over the quota, the connection
/// is muted for the throttle time (KIP-124). Without any client quota set it is the future
/// itself.
pub fn timed(
    pending: crate::handlers::PendingResponse,
    spent: Duration,
    broker: Arc<crate::Broker>,
    context: crate::connection::ConnectionContext,
    client_id: String,
) -> crate::handlers::PendingResponse {
    if broker.image().client_quotas().is_empty() {
        return pending;
    }
    let offloaded = Arc::new(AtomicU64::new(0));
    Box::pin(Timed {
        inner: Box::pin(OFFLOADED.scope(offloaded.clone(), pending)),
        offloaded,
        spent,
        broker,
        context,
        client_id,
    })
}

struct Timed {
    inner: crate::handlers::PendingResponse,
    offloaded: Arc<AtomicU64>,
    spent: Duration,
    broker: Arc<crate::Broker>,
    context: crate::connection::ConnectionContext,
    client_id: String,
}

impl std::future::Future for Timed {
    type Output = crate::handlers::Outcome;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let started = Instant::now();
        let polled = self.inner.as_mut().poll(cx);
        self.spent += started.elapsed();
        if polled.is_ready() {
            let offloaded = Duration::from_micros(self.offloaded.load(Ordering::Relaxed));
            // Kafka's unit: percent of one thread over a second, as percent-seconds.
            let percent_seconds = (self.spent + offloaded).as_secs_f64() * 100.0;
            let image = self.broker.image();
            let throttle = self.broker.quotas.record(
                &image,
                REQUEST_PERCENTAGE,
                quota_user(&self.context.principal),
                &self.client_id,
                percent_seconds,
                Instant::now(),
            );
            if !throttle.is_zero() {
                self.broker
                    .metrics
                    .throttled_responses
                    .fetch_add(1, Ordering::Relaxed);
            }
            self.context.mute_for(throttle);
        }
        polled
    }
}

/// Kafka's throttle time for a measured rate over its quota.
pub fn throttle_time(rate: f64, quota: f64, elapsed: Duration, w: Window) -> Duration {
    if rate <= quota || quota <= 0.0 {
        return Duration::ZERO;
    }
    let ms = (rate - quota) / quota * elapsed.as_secs_f64() * 1000.0;
    Duration::from_millis(ms.round() as u64).min(w.sample * w.samples)
}

/// Kafka's principal `User:alice` as the quota user name `alice` (ANONYMOUS for none).
pub fn quota_user(principal: &str) -> &str {
    principal.strip_prefix("User:").unwrap_or(principal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_cluster::{MetadataRecord, QuotaValue};

    #[tokio::test]
    async fn time_on_the_blocking_pool_counts_for_the_request_that_offloaded_it() {
        let busy = Arc::new(AtomicU64::new(0));
        let out = OFFLOADED
            .scope(busy.clone(), async {
                offload(|| std::thread::sleep(Duration::from_millis(30)))
                    .await
                    .unwrap();
                offload(|| 7).await.unwrap()
            })
            .await;
        assert_eq!(out, 7);
        let micros = busy.load(Ordering::Relaxed);
        assert!((30_000..1_000_000).contains(&micros), "{micros} µs");
        // Outside a timed request nothing is recorded and nothing fails.
        assert_eq!(offload(|| 1).await.unwrap(), 1);
    }

    fn image(quotas: &[(Entity, &str, f64)]) -> MetadataImage {
        let mut image = MetadataImage::default();
        for (entity, key, value) in quotas {
            image
                .apply(&MetadataRecord::ClientQuota {
                    entity: canonical(entity.clone()),
                    key: key.to_string(),
                    value: Some(QuotaValue(*value)),
                })
                .unwrap();
        }
        image
    }

    fn e(pairs: &[(&str, Option<&str>)]) -> Entity {
        pairs.iter().map(|(t, n)| pair(t, *n)).collect()
    }

    #[test]
    fn kafkas_eight_levels_most_specific_first() {
        let levels = [
            (e(&[(USER, Some("u")), (CLIENT_ID, Some("c"))]), 1.0),
            (e(&[(USER, Some("u")), (CLIENT_ID, None)]), 2.0),
            (e(&[(USER, Some("u"))]), 3.0),
            (e(&[(USER, None), (CLIENT_ID, Some("c"))]), 4.0),
            (e(&[(USER, None), (CLIENT_ID, None)]), 5.0),
            (e(&[(USER, None)]), 6.0),
            (e(&[(CLIENT_ID, Some("c"))]), 7.0),
            (e(&[(CLIENT_ID, None)]), 8.0),
        ];
        // Remove levels one by one from the most specific: the next one applies.
        for skip in 0..levels.len() {
            let set: Vec<(Entity, &str, f64)> = levels[skip..]
                .iter()
                .map(|(en, v)| (en.clone(), PRODUCER_BYTE_RATE, *v))
                .collect();
            let img = image(&set);
            let got = resolve(img.client_quotas(), "u", "c", PRODUCER_BYTE_RATE);
            assert_eq!(got.map(|g| g.0), Some(levels[skip].1), "level {}", skip + 1);
        }
        let img = image(&[]);
        assert_eq!(
            resolve(img.client_quotas(), "u", "c", PRODUCER_BYTE_RATE),
            None
        );
    }

    #[test]
    fn defaults_apply_to_each_user_and_a_user_quota_is_shared_by_its_clients() {
        let img = image(&[
            (e(&[(USER, None)]), PRODUCER_BYTE_RATE, 100.0),
            (e(&[(USER, Some("alice"))]), CONSUMER_BYTE_RATE, 50.0),
        ]);
        let q = img.client_quotas();
        let (_, a) = resolve(q, "alice", "c1", PRODUCER_BYTE_RATE).unwrap();
        let (_, b) = resolve(q, "bob", "c1", PRODUCER_BYTE_RATE).unwrap();
        assert_ne!(a, b, "each user has the default quota to themselves");
        let (_, c1) = resolve(q, "alice", "c1", CONSUMER_BYTE_RATE).unwrap();
        let (_, c2) = resolve(q, "alice", "c2", CONSUMER_BYTE_RATE).unwrap();
        assert_eq!(c1, c2, "alice's clients share her quota");
        assert!(resolve(q, "bob", "c1", CONSUMER_BYTE_RATE).is_none());
    }

    #[test]
    fn throttle_follows_kafkas_formula_and_converges_to_the_quota() {
        let w = Window {
            samples: 3,
            sample: Duration::from_secs(1),
        };
        assert_eq!(
            throttle_time(150.0, 100.0, Duration::from_secs(2), w),
            Duration::from_millis(1000)
        );
        assert_eq!(
            throttle_time(90.0, 100.0, Duration::from_secs(2), w),
            Duration::ZERO
        );
        assert_eq!(
            throttle_time(1e9, 1.0, Duration::from_secs(2), w),
            Duration::from_secs(3),
            "at most one window"
        );
        // A client sending 10 KB each time it is allowed to, under a 100 KB/s quota,
        // simulated for 30 s: it gets about 100 KB/s.
        let img = image(&[(e(&[(USER, Some("u"))]), PRODUCER_BYTE_RATE, 100_000.0)]);
        let m = QuotaManager::new(w);
        let start = Instant::now();
        let mut now = start;
        let mut sent = 0.0;
        while now < start + Duration::from_secs(30) {
            let t = m.record(&img, PRODUCER_BYTE_RATE, "u", "c", 10_000.0, now);
            sent += 10_000.0;
            now += t.max(Duration::from_millis(1));
        }
        let rate = sent / 30.0;
        assert!((90_000.0..=125_000.0).contains(&rate), "{rate}");
    }

    #[test]
    fn invalid_quotas() {
        assert_eq!(
            invalid(&e(&[(USER, Some("u"))]), PRODUCER_BYTE_RATE, Some(1.0)),
            None
        );
        assert_eq!(
            invalid(
                &e(&[(IP, Some("10.0.0.1"))]),
                CONNECTION_CREATION_RATE,
                Some(5.0)
            ),
            None
        );
        assert!(invalid(&e(&[(IP, Some("x"))]), CONNECTION_CREATION_RATE, Some(5.0)).is_some());
        assert!(invalid(&e(&[(IP, None)]), PRODUCER_BYTE_RATE, Some(5.0)).is_some());
        assert!(invalid(&e(&[(USER, None)]), CONNECTION_CREATION_RATE, Some(5.0)).is_some());
        assert!(invalid(&e(&[(USER, None)]), "colour", Some(5.0)).is_some());
        assert!(invalid(&e(&[(USER, None)]), PRODUCER_BYTE_RATE, Some(0.0)).is_some());
        assert!(invalid(&e(&[(USER, None)]), PRODUCER_BYTE_RATE, Some(f64::NAN)).is_some());
        assert!(invalid(
            &e(&[(USER, None), (IP, None)]),
            PRODUCER_BYTE_RATE,
            Some(1.0)
        )
        .is_some());
        assert_eq!(invalid(&e(&[(USER, None)]), PRODUCER_BYTE_RATE, None), None);
    }
}
