//! The broker's metrics, rendered in Prometheus' text format (`GET /metrics`).
//!
//! Names follow Kafka's JMX metrics as the Prometheus JMX exporter (Strimzi's rules) names
//! them, so existing dashboards find them: `kafka_server_brokertopicmetrics_bytesin_total`
//! for `kafka.server:type=BrokerTopicMetrics,name=BytesInPerSec`,
//! `kafka_network_requestmetrics_requests_total{request="Produce"}` for
//! `kafka.network:type=RequestMetrics,name=RequestsPerSec,request=Produce`, and so on;
//! consumer lag as kafka_exporter names it (`kafka_consumergroup_lag`).
//!
//! Counters are kept as the broker works (atomics, no lock on the hot path but a read lock
//! to find a topic's counters); gauges (partition health, log sizes, lag) are computed from
//! the broker's state when scraped. Label cardinality: one series per API key, per listener,
//! per topic, and (unless `metrics.partition.level` is off) per partition and per group
//! partition.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histograms' buckets.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A latency histogram (cumulative buckets when rendered).
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    /// Microseconds.
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|&b| secs <= b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

/// Per API key: requests, their errors, and their time.
#[derive(Debug, Default)]
pub struct RequestStats {
    pub requests: AtomicU64,
    /// From receipt to the response ready to send (Kafka's TotalTimeMs less the send).
    pub total_time: Histogram,
    /// The time the request kept the broker busy (dispatch and each poll: Kafka's
    /// LocalTimeMs); the rest of the total is waiting (RemoteTimeMs: acks, long polls).
    pub local_time: Histogram,
    /// Waiting: for replicas' acknowledgements, for data to arrive (Kafka's RemoteTimeMs).
    pub remote_time: Histogram,
    /// From the request's last byte read to its dispatch, less any throttle (Kafka's
    /// RequestQueueTimeMs: decoding, authentication's admission).
    pub queue_time: Histogram,
    /// How long the request waited because its connection was throttled (a quota
    /// violation muted it: Kafka's ThrottleTimeMs).
    pub throttle_time: Histogram,
    /// Writing the response to the socket (Kafka's ResponseSendTimeMs).
    pub send_time: Histogram,
}

/// Per topic: what producers and consumers moved.
#[derive(Debug, Default)]
pub struct TopicStats {
    pub bytes_in: AtomicU64,
    pub messages_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub replication_bytes_out: AtomicU64,
    pub failed_produce: AtomicU64,
    pub failed_fetch: AtomicU64,
}

/// The log cleaner's work (compacted topics), as Kafka's LogCleaner metrics show it.
#[derive(Debug, Default)]
pub struct CleanerStats {
    pub passes: AtomicU64,
    pub failures: AtomicU64,
    pub bytes_read: AtomicU64,
    pub bytes_written: AtomicU64,
    pub records_removed: AtomicU64,
    /// The last pass: its duration (ms), bytes written per 10,000 read (recopy-percent in
    /// hundredths), and
    /// when it ended (ms since the epoch; 0: none yet).
    pub last_duration_ms: AtomicU64,
    pub last_recopy_percent: AtomicU64,
    pub last_end_ms: AtomicU64,
}

impl CleanerStats {
    pub fn record(&self, stats: &strata_storage::cleaner::CleanStats) {
        self.passes.fetch_add(1, Ordering::Relaxed);
        self.bytes_read
            .fetch_add(stats.bytes_read, Ordering::Relaxed);
        self.bytes_written
            .fetch_add(stats.bytes_written, Ordering::Relaxed);
        self.records_removed
            .fetch_add(stats.records_removed, Ordering::Relaxed);
        self.last_duration_ms
            .store(stats.duration_ms, Ordering::Relaxed);
        // In hundredths of a percent (a pass that drops nearly everything is not 0).
        let recopy = (stats.bytes_written * 10_000)
            .checked_div(stats.bytes_read)
            .unwrap_or(0);
        self.last_recopy_percent.store(recopy, Ordering::Relaxed);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.last_end_ms.store(now, Ordering::Relaxed);
    }

    fn render(&self, out: &mut Exposition) {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
        for (name, kind, help, value) in [
            (
                "kafka_log_logcleaner_passes_total",
                "counter",
                "Cleaning passes finished (compacted logs rewritten).",
                load(&self.passes),
            ),
            (
                "kafka_log_logcleaner_failures_total",
                "counter",
                "Cleaning passes that failed (the log is left as it was).",
                load(&self.failures),
            ),
            (
                "kafka_log_logcleaner_read_bytes_total",
                "counter",
                "Bytes the cleaner read.",
                load(&self.bytes_read),
            ),
            (
                "kafka_log_logcleaner_written_bytes_total",
                "counter",
                "Bytes the cleaner wrote.",
                load(&self.bytes_written),
            ),
            (
                "kafka_log_logcleaner_records_removed_total",
                "counter",
                "Records compaction removed (superseded values, expired tombstones).",
                load(&self.records_removed),
            ),
            (
                "kafka_log_logcleaner_cleaner_recopy_percent",
                "gauge",
                "Bytes written per 100 read in the last pass (LogCleaner cleaner-recopy-percent).",
                load(&self.last_recopy_percent) / 100.0,
            ),
            (
                "kafka_log_logcleaner_max_clean_time_secs",
                "gauge",
                "How long the last pass took (LogCleaner max-clean-time-secs).",
                load(&self.last_duration_ms) / 1000.0,
            ),
            (
                "kafka_log_logcleaner_last_run_timestamp_seconds",
                "gauge",
                "When the last pass ended (0: none yet).",
                load(&self.last_end_ms) / 1000.0,
            ),
        ] {
            out.family(name, kind, help);
            out.sample(name, &[], value);
        }
    }
}

/// Per listener: connections open and ever accepted.
#[derive(Debug, Default)]
pub struct ListenerStats {
    pub open: AtomicI64,
    pub accepted: AtomicU64,
}

/// One slot per API key (Kafka's keys are below 128).
#[derive(Debug)]
struct ByKey(Vec<std::sync::OnceLock<Arc<RequestStats>>>);

impl Default for ByKey {
    fn default() -> Self {
        ByKey((0..128).map(|_| std::sync::OnceLock::new()).collect())
    }
}

/// Partition counts by health ([`crate::Broker::summary`]).
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct PartitionHealth {
    /// Partitions this node hosts.
    pub partitions: u64,
    pub leaders: u64,
    pub under_replicated: u64,
    pub under_min_isr: u64,
    /// Cluster-wide: partitions without a leader.
    pub offline: u64,
    /// 1 on the node leading the metadata quorum (a standalone node is its own).
    pub active_controller: u64,
}

/// This node's counters and partition health at one moment.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Summary {
    pub node_id: i32,
    /// Since the process started, over every topic.
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub messages_in: u64,
    pub connections: u64,
    pub topics: u64,
    /// Bytes of the logs this node hosts, on local disk.
    pub log_bytes: u64,
    #[serde(flatten)]
    pub health: PartitionHealth,
}

/// The counters the broker keeps as it works.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: RwLock<BTreeMap<String, Arc<RequestStats>>>,
    /// The same counters by API key, found without a lock or a lookup by name.
    by_key: ByKey,
    topics: RwLock<HashMap<String, Arc<TopicStats>>>,
    listeners: RwLock<BTreeMap<String, Arc<ListenerStats>>>,
    /// Produce requests waiting for their acknowledgement (acks=all: replication, sync).
    pub produce_purgatory: AtomicI64,
    /// Fetches waiting for data (long polls).
    pub fetch_purgatory: AtomicI64,
    pub isr_shrinks: AtomicU64,
    pub isr_expands: AtomicU64,
    /// Leaderships this node took.
    pub leader_elections: AtomicU64,
    /// Responses sent with a throttle time (quotas).
    pub throttled_responses: AtomicU64,
    pub log_flush: Histogram,
    pub cleaner: CleanerStats,
}

impl Metrics {
    fn get_or_insert<K, V>(
        map: &RwLock<K>,
        key: &str,
        insert: impl FnOnce(&mut K) -> Arc<V>,
    ) -> Arc<V>
    where
        K: MapLike<V>,
    {
        if let Some(v) = map.read().unwrap_or_else(|p| p.into_inner()).find(key) {
            return v;
        }
        let mut w = map.write().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = w.find(key) {
            return v;
        }
        insert(&mut w)
    }

    /// The counters of API key `key`, named `name` (called once per key).
    pub fn request_by_key(&self, key: i16, name: impl FnOnce() -> String) -> Arc<RequestStats> {
        match usize::try_from(key).ok().and_then(|k| self.by_key.0.get(k)) {
            Some(slot) => slot.get_or_init(|| self.request(&name())).clone(),
            None => self.request(&name()),
        }
    }

    /// The counters of API `name` (Kafka's request name: "Produce", "Fetch", …).
    pub fn request(&self, name: &str) -> Arc<RequestStats> {
        Self::get_or_insert(&self.requests, name, |m| {
            m.entry(name.to_string()).or_default().clone()
        })
    }

    pub fn topic(&self, topic: &str) -> Arc<TopicStats> {
        Self::get_or_insert(&self.topics, topic, |m| {
            m.entry(topic.to_string()).or_default().clone()
        })
    }

    /// A deleted topic's counters go (bounded cardinality).
    pub fn forget_topic(&self, topic: &str) {
        self.topics
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(topic);
    }

    pub fn listener(&self, name: &str) -> Arc<ListenerStats> {
        Self::get_or_insert(&self.listeners, name, |m| {
            m.entry(name.to_string()).or_default().clone()
        })
    }

    /// The counters, rendered (the broker adds its gauges: see `Broker::render_metrics`).
    pub fn render_counters(&self, out: &mut Exposition) {
        let requests = self.requests.read().unwrap_or_else(|p| p.into_inner());
        out.family(
            "kafka_network_requestmetrics_requests_total",
            "counter",
            "Requests received, by API (RequestMetrics RequestsPerSec).",
        );
        for (name, s) in requests.iter() {
            out.sample(
                "kafka_network_requestmetrics_requests_total",
                &[("request", name)],
                s.requests.load(Ordering::Relaxed) as f64,
            );
        }
        for (family, help, pick) in [
            (
                "kafka_network_requestmetrics_totaltime_seconds",
                "Time from receipt to the response ready, by API (RequestMetrics TotalTimeMs).",
                (|s: &RequestStats| &s.total_time) as fn(&RequestStats) -> &Histogram,
            ),
            (
                "kafka_network_requestmetrics_localtime_seconds",
                "Time the request kept the broker busy, by API (RequestMetrics LocalTimeMs).",
                |s: &RequestStats| &s.local_time,
            ),
            (
                "kafka_network_requestmetrics_remotetime_seconds",
                "Time the request waited (acknowledgements, long polls), by API (RequestMetrics RemoteTimeMs).",
                |s: &RequestStats| &s.remote_time,
            ),
            (
                "kafka_network_requestmetrics_requestqueuetime_seconds",
                "Time from the request read to its dispatch, by API (RequestMetrics RequestQueueTimeMs).",
                |s: &RequestStats| &s.queue_time,
            ),
            (
                "kafka_network_requestmetrics_throttletime_seconds",
                "Time the request waited on its throttled connection, by API (RequestMetrics ThrottleTimeMs).",
                |s: &RequestStats| &s.throttle_time,
            ),
            (
                "kafka_network_requestmetrics_responsesendtime_seconds",
                "Time writing the response to the socket, by API (RequestMetrics ResponseSendTimeMs).",
                |s: &RequestStats| &s.send_time,
            ),
        ] {
            out.family(family, "histogram", help);
            for (name, s) in requests.iter() {
                pick(s).render(&mut out.text, family, &format!("request=\"{name}\""));
            }
        }
        drop(requests);
        let topics = self.topics.read().unwrap_or_else(|p| p.into_inner());
        let mut names: Vec<&String> = topics.keys().collect();
        names.sort();
        for (family, help, pick) in [
            (
                "kafka_server_brokertopicmetrics_bytesin_total",
                "Bytes produced, by topic (BrokerTopicMetrics BytesInPerSec).",
                (|t: &TopicStats| &t.bytes_in) as fn(&TopicStats) -> &AtomicU64,
            ),
            (
                "kafka_server_brokertopicmetrics_messagesin_total",
                "Records produced, by topic (BrokerTopicMetrics MessagesInPerSec).",
                |t: &TopicStats| &t.messages_in,
            ),
            (
                "kafka_server_brokertopicmetrics_bytesout_total",
                "Bytes fetched by consumers, by topic (BrokerTopicMetrics BytesOutPerSec).",
                |t: &TopicStats| &t.bytes_out,
            ),
            (
                "kafka_server_brokertopicmetrics_replicationbytesout_total",
                "Bytes fetched by follower replicas, by topic (ReplicationBytesOutPerSec).",
                |t: &TopicStats| &t.replication_bytes_out,
            ),
            (
                "kafka_server_brokertopicmetrics_failedproducerequests_total",
                "Partition writes refused, by topic (FailedProduceRequestsPerSec).",
                |t: &TopicStats| &t.failed_produce,
            ),
            (
                "kafka_server_brokertopicmetrics_failedfetchrequests_total",
                "Partition reads that failed, by topic (FailedFetchRequestsPerSec).",
                |t: &TopicStats| &t.failed_fetch,
            ),
        ] {
            out.family(family, "counter", help);
            for name in &names {
                let v = pick(&topics[*name]).load(Ordering::Relaxed);
                out.sample(family, &[("topic", name)], v as f64);
            }
        }
        drop(topics);
        let listeners = self.listeners.read().unwrap_or_else(|p| p.into_inner());
        out.family(
            "kafka_server_socket_server_metrics_connection_count",
            "gauge",
            "Connections open, by listener.",
        );
        for (name, l) in listeners.iter() {
            out.sample(
                "kafka_server_socket_server_metrics_connection_count",
                &[("listener", name)],
                l.open.load(Ordering::Relaxed) as f64,
            );
        }
        out.family(
            "kafka_server_socket_server_metrics_connection_creation_total",
            "counter",
            "Connections accepted, by listener.",
        );
        for (name, l) in listeners.iter() {
            out.sample(
                "kafka_server_socket_server_metrics_connection_creation_total",
                &[("listener", name)],
                l.accepted.load(Ordering::Relaxed) as f64,
            );
        }
        drop(listeners);
        for (name, kind, help, value) in [
            (
                "kafka_server_delayedoperationpurgatory_purgatorysize_produce",
                "gauge",
                "Produce requests waiting for acknowledgement (DelayedOperationPurgatory Produce).",
                self.produce_purgatory.load(Ordering::Relaxed) as f64,
            ),
            (
                "kafka_server_delayedoperationpurgatory_purgatorysize_fetch",
                "gauge",
                "Fetches waiting for data (DelayedOperationPurgatory Fetch).",
                self.fetch_purgatory.load(Ordering::Relaxed) as f64,
            ),
            (
                "kafka_server_replicamanager_isrshrinks_total",
                "counter",
                "In-sync replica sets that shrank on partitions this node leads (IsrShrinksPerSec).",
                self.isr_shrinks.load(Ordering::Relaxed) as f64,
            ),
            (
                "kafka_server_replicamanager_isrexpands_total",
                "counter",
                "In-sync replica sets that grew on partitions this node leads (IsrExpandsPerSec).",
                self.isr_expands.load(Ordering::Relaxed) as f64,
            ),
            (
                "kafka_controller_controllerstats_leaderelections_total",
                "counter",
                "Partition leaderships this node took (LeaderElectionRateAndTimeMs).",
                self.leader_elections.load(Ordering::Relaxed) as f64,
            ),
            (
                "kafka_server_quota_throttled_responses_total",
                "counter",
                "Responses sent with a throttle time (client quotas).",
                self.throttled_responses.load(Ordering::Relaxed) as f64,
            ),
        ] {
            out.family(name, kind, help);
            out.sample(name, &[], value);
        }
        out.family(
            "kafka_log_logflushstats_logflush_seconds",
            "histogram",
            "Log flushes (fdatasync) and their time (LogFlushStats LogFlushRateAndTimeMs).",
        );
        self.log_flush.render(
            &mut out.text,
            "kafka_log_logflushstats_logflush_seconds",
            "",
        );
        self.cleaner.render(out);
    }
}

/// `pending` (a request's response to come), with its time recorded in `stats` when the
/// response is ready: the total since `received`, the time spent dispatching and polling it
/// (local), and the rest (remote: waiting).
pub fn measured(
    pending: crate::handlers::PendingResponse,
    stats: Arc<RequestStats>,
    received: std::time::Instant,
) -> crate::handlers::PendingResponse {
    stats.requests.fetch_add(1, Ordering::Relaxed);
    let local = received.elapsed();
    Box::pin(Measured {
        inner: pending,
        stats,
        received,
        local,
    })
}

struct Measured {
    inner: crate::handlers::PendingResponse,
    stats: Arc<RequestStats>,
    received: std::time::Instant,
    local: Duration,
}

impl std::future::Future for Measured {
    type Output = crate::handlers::Outcome;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let started = std::time::Instant::now();
        let polled = self.inner.as_mut().poll(cx);
        self.local += started.elapsed();
        if polled.is_ready() {
            let total = self.received.elapsed();
            self.stats.total_time.observe(total);
            self.stats.local_time.observe(self.local);
            self.stats
                .remote_time
                .observe(total.saturating_sub(self.local));
        }
        polled
    }
}

/// A gauge counting something while it lasts (a request in purgatory).
pub struct Gauged<'a>(&'a AtomicI64);

impl<'a> Gauged<'a> {
    pub fn new(gauge: &'a AtomicI64) -> Self {
        gauge.fetch_add(1, Ordering::Relaxed);
        Gauged(gauge)
    }
}

impl Drop for Gauged<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A map the metrics keep counters in, found by a `&str` key.
trait MapLike<V> {
    fn find(&self, key: &str) -> Option<Arc<V>>;
}

impl<V> MapLike<V> for BTreeMap<String, Arc<V>> {
    fn find(&self, key: &str) -> Option<Arc<V>> {
        self.get(key).cloned()
    }
}

impl<V> MapLike<V> for HashMap<String, Arc<V>> {
    fn find(&self, key: &str) -> Option<Arc<V>> {
        self.get(key).cloned()
    }
}

/// Prometheus' text exposition format (version 0.0.4), written family by family.
#[derive(Debug, Default)]
pub struct Exposition {
    pub text: String,
}

impl Exposition {
    /// `# HELP` and `# TYPE` of a family; its samples follow.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{k}=\"{}\"", escape_label(v));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {}", format_value(value));
    }

    /// A gauge family of one sample.
    pub fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.family(name, "gauge", help);
        self.sample(name, &[], value);
    }
}

fn format_value(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

impl crate::Broker {
    /// Every metric, counters and the gauges computed now, in Prometheus' text format.
    pub fn render_metrics(&self) -> String {
        self.render_metrics_with(&HashMap::new())
    }

    /// The partitions of the groups this node coordinates that another node leads: their
    /// high watermarks are not known here (the admin API asks their leaders, and passes
    /// them to [`Broker::render_metrics_with`], so lag covers every partition on a cluster).
    pub fn group_partitions_led_elsewhere(&self) -> Vec<(String, i32)> {
        let mut out: Vec<(String, i32)> = self
            .group_offsets()
            .into_iter()
            .filter(|row| row.4 < 0)
            .map(|row| (row.1, row.2))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The metrics, with `high_watermarks` of partitions other nodes lead (as their leaders
    /// answered) for the lag of the groups this node coordinates.
    pub fn render_metrics_with(&self, high_watermarks: &HashMap<(String, i32), i64>) -> String {
        let mut out = Exposition::default();
        self.metrics.render_counters(&mut out);
        let per_partition = self.config.metrics_partition_level;
        let mut offsets = self.group_offsets();
        for row in offsets.iter_mut().filter(|row| row.4 < 0) {
            if let Some(hw) = high_watermarks.get(&(row.1.clone(), row.2)) {
                row.4 = *hw;
            }
        }
        let image = self.image();
        let partitions = self.all_partitions();
        let health = self.partition_health(&image, &partitions);
        let PartitionHealth {
            leaders,
            under_replicated,
            under_min_isr,
            offline,
            active_controller,
            ..
        } = health;
        let mut logs: Vec<(String, i32, u64, i64, i64)> = Vec::new();
        for p in &partitions {
            let log = p.log();
            logs.push((
                p.topic.clone(),
                p.partition,
                log.size_bytes(),
                log.log_start_offset(),
                log.log_end_offset(),
            ));
        }
        for (name, help, value) in [
            (
                "kafka_server_replicamanager_partitioncount",
                "Partitions this node hosts (ReplicaManager PartitionCount).",
                partitions.len() as f64,
            ),
            (
                "kafka_server_replicamanager_leadercount",
                "Partitions this node leads (ReplicaManager LeaderCount).",
                leaders as f64,
            ),
            (
                "kafka_server_replicamanager_underreplicatedpartitions",
                "Led partitions whose ISR is smaller than their replicas (UnderReplicatedPartitions).",
                under_replicated as f64,
            ),
            (
                "kafka_server_replicamanager_underminisrpartitioncount",
                "Led partitions whose ISR is below min.insync.replicas (UnderMinIsrPartitionCount).",
                under_min_isr as f64,
            ),
            (
                "kafka_controller_kafkacontroller_offlinepartitionscount",
                "Partitions without a leader, cluster-wide (KafkaController OfflinePartitionsCount).",
                offline as f64,
            ),
            (
                "kafka_controller_kafkacontroller_activecontrollercount",
                "1 on the node leading the metadata quorum (KafkaController ActiveControllerCount).",
                active_controller as f64,
            ),
            (
                "kafka_controller_kafkacontroller_globaltopiccount",
                "Topics in the cluster (KafkaController GlobalTopicCount).",
                image.topics().count() as f64,
            ),
        ] {
            out.gauge(name, help, value);
        }
        out.family(
            "kafka_server_socket_server_metrics_failed_authentication_total",
            "counter",
            "Connections that failed to authenticate (failed-authentication-total).",
        );
        out.sample(
            "kafka_server_socket_server_metrics_failed_authentication_total",
            &[],
            self.audit.authentication_failures.load(Ordering::Relaxed) as f64,
        );
        if per_partition {
            logs.sort();
            for (family, help, pick) in [
                (
                    "kafka_log_log_size",
                    "Bytes of the partition's log on local disk (Log Size).",
                    (|l: &(String, i32, u64, i64, i64)| l.2 as f64) as fn(&_) -> f64,
                ),
                (
                    "kafka_log_log_logstartoffset",
                    "The local log's start offset (Log LogStartOffset).",
                    |l: &(String, i32, u64, i64, i64)| l.3 as f64,
                ),
                (
                    "kafka_log_log_logendoffset",
                    "The log end offset (Log LogEndOffset).",
                    |l: &(String, i32, u64, i64, i64)| l.4 as f64,
                ),
            ] {
                out.family(family, "gauge", help);
                for l in &logs {
                    let partition = l.1.to_string();
                    out.sample(
                        family,
                        &[("topic", &l.0), ("partition", &partition)],
                        pick(l),
                    );
                }
            }
            self.render_group_lag(&mut out, &offsets);
        }
        render_sql_queries(&mut out, &offsets);
        if let Some(tiering) = &self.tiering {
            tiering.render_metrics(&mut out, &image);
        }
        out.text
    }

    /// Partition health as this node sees it: what it hosts and leads, the led partitions
    /// short of replicas, and the cluster's partitions without a leader.
    fn partition_health(
        &self,
        image: &strata_cluster::MetadataImage,
        partitions: &[Arc<strata_storage::Partition>],
    ) -> PartitionHealth {
        let mut health = PartitionHealth {
            partitions: partitions.len() as u64,
            ..PartitionHealth::default()
        };
        for p in partitions {
            if !p.is_leader() {
                continue;
            }
            health.leaders += 1;
            let (isr, min_isr) = p.isr();
            let replicas = image
                .topic(&p.topic)
                .and_then(|t| t.partitions.get(&p.partition))
                .map_or(1, |m| m.replicas.len());
            if isr.len() < replicas {
                health.under_replicated += 1;
            }
            if isr.len() < min_isr {
                health.under_min_isr += 1;
            }
        }
        health.offline = image
            .topics()
            .flat_map(|t| t.partitions.values())
            .filter(|p| p.leader < 0)
            .count() as u64;
        health.active_controller = match &self.quorum {
            None => 1,
            Some(member) => u64::from(member.quorum.is_leader()),
        };
        health
    }

    /// This node's totals now (the admin API's `/v1/stats`; a console computes rates from
    /// two of them).
    pub fn summary(&self) -> Summary {
        let image = self.image();
        let partitions = self.all_partitions();
        let health = self.partition_health(&image, &partitions);
        let mut summary = Summary {
            node_id: self.config.node_id,
            health,
            topics: image.topics().count() as u64,
            ..Summary::default()
        };
        for t in self
            .metrics
            .topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            summary.bytes_in += t.bytes_in.load(Ordering::Relaxed);
            summary.bytes_out += t.bytes_out.load(Ordering::Relaxed);
            summary.messages_in += t.messages_in.load(Ordering::Relaxed);
        }
        for l in self
            .metrics
            .listeners
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            summary.connections += l.open.load(Ordering::Relaxed).max(0) as u64;
        }
        summary.log_bytes = partitions.iter().map(|p| p.log().size_bytes()).sum();
        summary
    }

    /// Consumer lag of the groups this node coordinates: the high watermark (this node's
    /// where it leads, else as the leader answered the admin API) less the committed offset
    /// (kafka_exporter's names).
    fn render_group_lag(&self, out: &mut Exposition, rows: &[GroupOffset]) {
        out.family(
            "kafka_consumergroup_current_offset",
            "gauge",
            "A group's committed offset, by group, topic and partition.",
        );
        for (group, topic, partition, committed, _) in rows {
            let partition = partition.to_string();
            out.sample(
                "kafka_consumergroup_current_offset",
                &[
                    ("consumergroup", group),
                    ("topic", topic),
                    ("partition", &partition),
                ],
                *committed as f64,
            );
        }
        out.family(
            "kafka_consumergroup_lag",
            "gauge",
            "Records between a group's committed offset and the high watermark, for the groups this node coordinates.",
        );
        for (group, topic, partition, committed, hw) in rows {
            if *hw < 0 {
                continue;
            }
            let partition = partition.to_string();
            out.sample(
                "kafka_consumergroup_lag",
                &[
                    ("consumergroup", group),
                    ("topic", topic),
                    ("partition", &partition),
                ],
                (hw - committed).max(0) as f64,
            );
        }
    }

    /// Committed offsets of the groups this node coordinates, with the high watermark
    /// where it leads the partition (-1 elsewhere), sorted.
    fn group_offsets(&self) -> Vec<GroupOffset> {
        let mut rows: Vec<GroupOffset> = Vec::new();
        {
            let coordinator = self.groups.coordinator();
            let Ok(groups) = coordinator.list() else {
                return rows;
            };
            for g in groups {
                let Ok(offsets) = coordinator.fetch_offsets(&g.group_id, None, None) else {
                    continue;
                };
                for o in offsets {
                    let Some(committed) = o.offset else { continue };
                    rows.push((
                        g.group_id.clone(),
                        o.topic,
                        o.partition,
                        committed.offset,
                        -1,
                    ));
                }
            }
        }
        for row in &mut rows {
            if let Some(p) = self.partition(&row.1, row.2).filter(|p| p.is_leader()) {
                row.4 = p.high_watermark();
            }
        }
        rows.sort();
        rows
    }
}

/// (group, topic, partition, committed offset, high watermark or -1).
type GroupOffset = (String, String, i32, i64, i64);

/// The consumer groups that hold the SQL engine's persistent queries' positions are named
/// `_strata_ksql_query_<query id>` (strata-ksql's `run::query_group`).
const SQL_QUERY_GROUP_PREFIX: &str = "_strata_ksql_query_";

/// Per persistent SQL query (one series each, whatever its partitions): the records it has
/// consumed (the sum of its committed positions; its rate is the query's throughput) and
/// its lag, over the partitions this node coordinates and leads.
fn render_sql_queries(out: &mut Exposition, rows: &[GroupOffset]) {
    let mut queries: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for (group, _, _, committed, hw) in rows {
        let Some(query) = group.strip_prefix(SQL_QUERY_GROUP_PREFIX) else {
            continue;
        };
        let q = queries.entry(query).or_default();
        q.0 += committed;
        if *hw >= 0 {
            q.1 += (hw - committed).max(0);
        }
    }
    out.family(
        "strata_sql_query_consumed_offset",
        "gauge",
        "A persistent SQL query's committed input positions, summed (its rate is records consumed per second).",
    );
    for (query, (consumed, _)) in &queries {
        out.sample(
            "strata_sql_query_consumed_offset",
            &[("query", query)],
            *consumed as f64,
        );
    }
    out.family(
        "strata_sql_query_lag",
        "gauge",
        "Input records a persistent SQL query has yet to process (partitions this node leads).",
    );
    for (query, (_, lag)) in &queries {
        out.sample("strata_sql_query_lag", &[("query", query)], *lag as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_queries_sum_their_groups_positions_and_lag() {
        let rows: Vec<GroupOffset> = vec![
            ("_strata_ksql_query_CSAS_A_1".into(), "t".into(), 0, 10, 15),
            ("_strata_ksql_query_CSAS_A_1".into(), "t".into(), 1, 20, -1),
            ("readers".into(), "t".into(), 0, 3, 15),
        ];
        let mut out = Exposition::default();
        render_sql_queries(&mut out, &rows);
        assert!(
            out.text
                .contains("strata_sql_query_consumed_offset{query=\"CSAS_A_1\"} 30"),
            "{}",
            out.text
        );
        assert!(
            out.text
                .contains("strata_sql_query_lag{query=\"CSAS_A_1\"} 5"),
            "{}",
            out.text
        );
        assert!(!out.text.contains("readers"), "{}", out.text);
    }

    #[test]
    fn counters_and_histograms_render_in_the_text_format() {
        let m = Metrics::default();
        let produce = m.request("Produce");
        produce.requests.fetch_add(3, Ordering::Relaxed);
        produce.total_time.observe(Duration::from_micros(700));
        produce.total_time.observe(Duration::from_millis(30));
        m.topic("orders \"eu\"")
            .bytes_in
            .fetch_add(1024, Ordering::Relaxed);
        let mut out = Exposition::default();
        m.render_counters(&mut out);
        let t = out.text;
        assert!(
            t.contains("kafka_network_requestmetrics_requests_total{request=\"Produce\"} 3\n"),
            "{t}"
        );
        assert!(t.contains("kafka_network_requestmetrics_totaltime_seconds_bucket{request=\"Produce\",le=\"0.001\"} 1\n"), "{t}");
        assert!(t.contains("kafka_network_requestmetrics_totaltime_seconds_bucket{request=\"Produce\",le=\"0.05\"} 2\n"), "{t}");
        assert!(
            t.contains(
                "kafka_network_requestmetrics_totaltime_seconds_count{request=\"Produce\"} 2\n"
            ),
            "{t}"
        );
        assert!(
            t.contains(
                "kafka_server_brokertopicmetrics_bytesin_total{topic=\"orders \\\"eu\\\"\"} 1024\n"
            ),
            "{t}"
        );
        // Every family has its HELP and TYPE once.
        let types = t
            .lines()
            .filter(|l| l.starts_with("# TYPE kafka_network_requestmetrics_requests_total "))
            .count();
        assert_eq!(types, 1);
    }
}
