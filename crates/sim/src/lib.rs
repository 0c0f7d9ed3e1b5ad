//! Deterministic simulation of Strata's replication.
//!
//! One thread, one seed: a simulated cluster of brokers, each with its own `SimFs` (power
//! loss drops what was not fsync'd) and its own clock, exchanging messages over a simulated
//! network that drops, delays, duplicates and reorders them and can be partitioned. What
//! runs is the real code: the storage `Partition` and `Log` (appends, group-commit syncs,
//! recovery after a crash, leader epochs, truncation, idempotent producer state), the
//! replication rules (`strata-replication`: high watermark, ISR shrink and expand), the
//! replica-fetch rules both sides apply (`strata_storage::replica_fetch`), the active
//! controller (`strata-controller`: sessions, fencing, elections, AlterPartition) and the
//! metadata image (`strata-cluster`, all-or-nothing batches with compare-and-set). The
//! simulation plays the parts the broker's tokio tasks play (`fetcher.rs`, `handlers/fetch.rs`,
//! `handlers/produce.rs`, `control.rs`), step by step as they do them.
//!
//! Not simulated: the metadata quorum itself is one linearizable log here (openraft's own
//! tests run it under simulation; our quorum is exercised by `scripts/chaos`), and the
//! broker's sockets and request framing.
//!
//! A producer (idempotent, acks=all, one batch in flight per partition, retrying) and a
//! consumer per partition run against it while a nemesis injects faults; then the network
//! heals, every node runs again, and the cluster must recover. The [`Checker`] holds the
//! history and the invariants.

mod checker;
mod rng;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use strata_cluster::{ImageDelta, MetadataImage, MetadataRecord};
use strata_controller::{
    Controller, ControllerConfig, ControllerError, ControllerReply, ControllerRequest,
    IsrChangeOutcome,
};
use strata_records::{decode_records, BatchBuilder, Compression, Record};
use strata_storage::fs::CrashMode;
use strata_storage::{
    Clock, FetchPosition, LeaderAnswer, Log, LogConfig, LogManager, ManualClock, Partition, SimFs,
    StorageError,
};
use uuid::Uuid;

pub use checker::Checker;
use rng::Rng;

const TOPIC: &str = "sim";
const CONTROLLER: i32 = 0;
const CLIENT: i32 = -1;
const TICK_MS: i64 = 20;
const METADATA_FETCH_MS: i64 = 100;
const HEARTBEAT_MS: i64 = 500;
const SESSION_TIMEOUT_MS: i64 = 3_000;
const LAG_MAX_MS: i64 = 3_000;
const ISR_CHECK_MS: i64 = 250;
const CONTROLLER_TICK_MS: i64 = 250;
const REBALANCE_MS: i64 = 5_000;
const CALL_TIMEOUT_MS: i64 = 2_000;
const REPLICA_FETCH_TIMEOUT_MS: i64 = 2_000;
const PRODUCE_TIMEOUT_MS: i64 = 10_000;
const CLIENT_RETRY_MS: i64 = 1_500;
const READ_RETRY_MS: i64 = 1_000;
const FETCH_BYTES: usize = 16 * 1024;
const STRONG_ISR_CHECK_MS: i64 = 1_000;
/// Before the end, producers stop so the final checks see a quiet cluster.
const QUIET_MS: i64 = 5_000;

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub nodes: i32,
    pub partitions: i32,
    pub min_insync_replicas: usize,
    /// Faults are injected from 1 s until this simulated time (ms).
    pub fault_ms: i64,
    /// Then the network heals, every node runs again, and the cluster has this long to
    /// recover (liveness) before the final checks.
    pub heal_ms: i64,
    pub faults: bool,
    /// A rule broken on purpose, so tests can show the checker catches it.
    pub flaw: Option<Flaw>,
    /// Share of messages delivered twice while the network is lossy.
    pub duplicate_rate: f64,
    /// Adds the `disk-full` fault: every write on one node's disk fails with ENOSPC halfway
    /// for a while; the node halts as the broker does (a failed log, checkpoint) and is
    /// restarted once space is back. Off by default so the seeds recorded before it replay
    /// as they did.
    pub disk_full: bool,
    /// A power loss also rolls the node's metadata image back by up to five batches (the
    /// quorum member's applied index is not synced; the batches are applied again once the
    /// leader tells it the commit). Off by default so the seeds recorded before it replay as
    /// they did.
    pub stale_image: bool,
    /// A client also sends DeleteRecords now and then (every 1-4 s, below a random
    /// acknowledged offset); the checker then holds that deleted records stay deleted. Off
    /// by default so the seeds recorded before it replay as they did.
    pub delete_records: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            nodes: 3,
            partitions: 2,
            min_insync_replicas: 2,
            fault_ms: 20_000,
            heal_ms: 15_000,
            faults: true,
            flaw: None,
            duplicate_rate: 0.1,
            disk_full: false,
            stale_image: false,
            delete_records: false,
        }
    }
}

/// A replication rule broken on purpose (the checker must notice).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flaw {
    /// Acknowledge a produce once the leader alone has it on disk (acks=1).
    AckOnLeaderDisk,
    /// The leader never tells a follower its log diverged (no KIP-279 truncation).
    NoDivergenceCheck,
    /// A restarted broker goes on leading in the leader epoch it led before (the bug
    /// `MetadataRecord::ResignLeaderships` fixes).
    SameEpochAfterRestart,
    /// A leader whose AlterPartition went unanswered or was refused stops counting the
    /// replica it was adding at once (the bugs `IsrChangeOutcome` and
    /// `PartitionReplicas::refuse_pending` fix).
    GiveUpOnUnansweredIsrChange,
    /// A restarted replica opens its log with the high watermark at its log end (the bug the
    /// `replication-offset-checkpoint` fixes).
    HighWatermarkFromLogEnd,
    /// A partition change that leaves leader, epoch and ISR as they were is not applied
    /// (the bug the partition epoch in `ImageDelta` fixes), and the ISR loop does not settle
    /// the addition of a request the partition moved on without (the second defence, added
    /// after `scripts/chaos` found the same symptom through a stale image).
    IgnoreUnchangedIsr,
    /// A follower applies a leader's answer meant for an earlier fetch (the bug the fetch
    /// position check in `apply_leader_answer` fixes).
    ApplyStaleAnswers,
    /// A node whose disk failed stays up with its failed logs (no `Broker::halt`): its
    /// leaderships never move and its replicas never catch up (with `disk_full`).
    StayUpOnFailedDisk,
    /// DeleteRecords is answered once the leader applied it, without waiting for the
    /// in-sync replicas' log starts (Kafka's low watermark) to follow (with
    /// `delete_records`).
    AckDeleteRecordsOnLeader,
    /// Followers keep their own log start offset, whatever the leader's (the bug fixed in
    /// 3faad7f: records deleted on a leader came back after it died).
    FollowersIgnoreLogStart,
    /// A follower moves its log start offset in memory only (no checkpoint): after a crash
    /// it serves the deleted records again if it becomes leader first.
    FollowerLogStartNotDurable,
}

#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub events: u64,
    pub produced: u64,
    pub acknowledged: u64,
    pub read: u64,
    pub faults: BTreeMap<&'static str, u64>,
    pub leader_elections: u64,
    pub truncations: u64,
    pub messages: u64,
    /// DeleteRecords answered (with `delete_records`).
    pub deletes: u64,
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub seed: u64,
    pub violations: Vec<String>,
    /// A digest of every step: the same seed gives the same trace.
    pub trace: u64,
    pub stats: Stats,
}

/// Runs one seed.
pub fn run(seed: u64, config: &SimConfig) -> Outcome {
    let mut w = World::new(seed, config.clone());
    w.bootstrap();
    let end = config.fault_ms + config.heal_ms;
    while let Some(Reverse((at, id))) = w.queue.pop() {
        if at > end {
            break;
        }
        w.now = at;
        let event = w.events.remove(&id).expect("queued events exist");
        w.stats.events += 1;
        w.handle(event);
    }
    w.now = end;
    let mut outcome = w.finish();
    outcome.seed = seed;
    outcome
}

// ------------------------------------------------------------------ messages and events

#[derive(Debug, Clone)]
enum Body {
    Register {
        incarnation: u64,
        records: Vec<MetadataRecord>,
    },
    Registered {
        incarnation: u64,
        broker_epoch: i64,
    },
    Call {
        id: u64,
        request: ControllerRequest,
    },
    Reply {
        id: u64,
        reply: ControllerReply,
    },
    MetadataFetch {
        from: usize,
    },
    Metadata {
        from: usize,
        batches: Vec<Vec<MetadataRecord>>,
    },
    ReplicaFetch {
        incarnation: u64,
        replica_epoch: i64,
        partitions: Vec<(i32, i32, FetchPosition)>,
    },
    ReplicaAnswer {
        incarnation: u64,
        partitions: Vec<(i32, i32, FetchPosition, Answer)>,
    },
    Produce {
        partition: i32,
        value: u64,
        batch: Bytes,
    },
    Produced {
        partition: i32,
        value: u64,
        result: Result<i64, &'static str>,
    },
    Read {
        partition: i32,
        offset: i64,
    },
    ReadAnswer {
        partition: i32,
        offset: i64,
        result: Result<Bytes, &'static str>,
        /// The leader's log start offset (where a consumer below it goes on).
        log_start_offset: i64,
    },
    DeleteRecords {
        partition: i32,
        offset: i64,
    },
    RecordsDeleted {
        partition: i32,
        result: Result<i64, &'static str>,
    },
}

#[derive(Debug, Clone)]
enum Answer {
    Records {
        bytes: Bytes,
        high_watermark: i64,
        log_start_offset: i64,
    },
    Diverging {
        epoch: i32,
        end_offset: i64,
    },
    OutOfRange {
        log_start_offset: i64,
        high_watermark: i64,
    },
    Refused,
}

#[derive(Debug, Clone)]
struct Msg {
    from: i32,
    to: i32,
    body: Body,
}

#[derive(Debug)]
enum Event {
    Deliver(Msg),
    NodeTick(i32),
    ControllerTick,
    ClientTick,
    Sync {
        node: i32,
        incarnation: u64,
        partition: i32,
        offset: i64,
    },
    Nemesis,
    Restart(i32),
    Unblock(Vec<(i32, i32)>),
    EndLossy,
    EndClockJump(i32, i64),
    EndSlowDisk(i32),
    EndDiskFull(i32),
    Heal,
    StrongIsrCheck,
}

// ------------------------------------------------------------------ the parts

/// The metadata quorum as one linearizable log, and the active controller on it.
struct Quorum {
    batches: Vec<Vec<MetadataRecord>>,
    image: MetadataImage,
    controller: Controller,
    last_rebalance_ms: i64,
}

impl Quorum {
    /// Commits a batch all-or-nothing, as the quorum's state machine applies it.
    fn commit(&mut self, records: Vec<MetadataRecord>) -> bool {
        let mut next = self.image.clone();
        for r in &records {
            if next.apply(r).is_err() {
                return false;
            }
        }
        self.image = next;
        self.batches.push(records);
        true
    }
}

/// Applies committed metadata batches to a broker's image, each all-or-nothing, as a quorum
/// member's state machine does.
fn apply_batches(image: &mut MetadataImage, batches: &[Vec<MetadataRecord>]) {
    for batch in batches {
        let mut next = image.clone();
        if batch.iter().all(|r| next.apply(r).is_ok()) {
            *image = next;
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum CallKind {
    Heartbeat,
    AlterPartition(i32, ControllerRequest),
}

struct Waiting {
    partition: Arc<Partition>,
    index: i32,
    end: i64,
    value: u64,
    deadline: i64,
}

/// A DeleteRecords applied on the leader, answered once the ISR's low watermark reaches
/// `target` (the broker's `handlers/log_dirs.rs::delete_records`).
struct Deleting {
    partition: Arc<Partition>,
    index: i32,
    leader_epoch: i32,
    target: i64,
    deadline: i64,
}

type Role = (i32, i32, Vec<i32>);

struct Node {
    id: i32,
    fs: SimFs,
    clock: Arc<ManualClock>,
    skew_ms: i64,
    disk_latency_ms: (i64, i64),
    up: bool,
    paused_until: i64,
    incarnation: u64,
    broker_epoch: Option<i64>,
    next_register_ms: i64,
    /// The metadata this node applied (its local copy of the metadata log survives
    /// crashes, as a KRaft member's does).
    image: MetadataImage,
    applied: usize,
    metadata_sent_ms: Option<i64>,
    partitions: BTreeMap<i32, Arc<Partition>>,
    /// The data directory's checkpoints (recovery points, high watermarks).
    manager: Option<LogManager>,
    next_checkpoint_ms: i64,
    roles: BTreeMap<i32, Role>,
    waiting: Vec<Waiting>,
    deleting: Vec<Deleting>,
    /// A checkpoint written outside the checkpoint task failed: the node halts at its
    /// next tick.
    checkpoint_failed: bool,
    /// Replica fetches in flight, by leader, with when they were sent.
    fetching: BTreeMap<i32, i64>,
    calls: BTreeMap<u64, (i64, CallKind)>,
    /// AlterPartition requests whose outcome is unknown, sent again (the broker's
    /// `isr_loop`).
    unsettled: BTreeMap<i32, ControllerRequest>,
    next_heartbeat_ms: i64,
    next_isr_check_ms: i64,
}

impl Node {
    fn set_clock(&self, now: i64) {
        self.clock.set_ms(now + self.skew_ms);
    }
}

struct Producer {
    producer_id: i64,
    sequence: i32,
    inflight: Option<(u64, Bytes, i64)>,
}

struct Consumer {
    position: i64,
    sent_ms: Option<i64>,
}

struct Net {
    /// Blocked directed links (from, to), counted: faults may overlap.
    blocked: BTreeMap<(i32, i32), u32>,
    drop: f64,
    duplicate: f64,
    max_delay_ms: i64,
}

struct World {
    cfg: SimConfig,
    rng: Rng,
    now: i64,
    next_id: u64,
    queue: BinaryHeap<Reverse<(i64, u64)>>,
    events: HashMap<u64, Event>,
    net: Net,
    quorum: Quorum,
    nodes: BTreeMap<i32, Node>,
    producers: BTreeMap<i32, Producer>,
    consumers: BTreeMap<i32, Consumer>,
    /// DeleteRecords: when the next is sent, and the one in flight per partition.
    next_delete_ms: i64,
    deletes_in_flight: BTreeMap<i32, i64>,
    next_value: u64,
    next_producer_id: i64,
    checker: Checker,
    stats: Stats,
    trace: u64,
    topic_id: Uuid,
    healed: bool,
    acked_after_heal: u64,
    /// SIM_TRACE=1: print the run's notable steps (to read a failing seed).
    verbose: bool,
    /// (partition, leader epoch) → writes acknowledged when the epoch was committed.
    epoch_started: BTreeMap<(i32, i32), usize>,
}

macro_rules! trace {
    ($w:expr, $($arg:tt)*) => {
        if $w.verbose {
            eprintln!("t={:>6} {}", $w.now, format!($($arg)*));
        }
    };
}

fn log_config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096, // many segments: rolls, and slices that stop at segment ends
        ..LogConfig::default()
    }
}

fn partition_dir(partition: i32) -> PathBuf {
    PathBuf::from(format!("/data/{TOPIC}-{partition}"))
}

fn value_of(bytes: &Option<Bytes>) -> u64 {
    bytes
        .as_ref()
        .and_then(|b| <[u8; 8]>::try_from(&b[..]).ok())
        .map_or(u64::MAX, u64::from_be_bytes)
}

/// Every record of a replica's log (offset → value), to its log end.
fn log_values(p: &Partition) -> Result<BTreeMap<i64, u64>, String> {
    let (mut offset, end) = {
        let log = p.log();
        (log.log_start_offset(), log.log_end_offset())
    };
    let mut out = BTreeMap::new();
    while offset < end {
        let slice = p
            .slice_replica(offset, 1 << 20, true)
            .map_err(|e| e.to_string())?;
        let Some(range) = slice.range else { break };
        let bytes = range.read().map_err(|e| e.to_string())?;
        let records = decode_records(bytes).map_err(|e| e.to_string())?;
        let Some(last) = records.last().map(|r| r.offset) else {
            break;
        };
        for r in records.into_iter().filter(|r| !r.control) {
            out.insert(r.offset, value_of(&r.value));
        }
        offset = last + 1;
    }
    Ok(out)
}

impl World {
    fn new(seed: u64, cfg: SimConfig) -> Self {
        let mut rng = Rng::new(seed);
        let topic_id = Uuid::from_u64_pair(rng.next_u64(), rng.next_u64());
        World {
            cfg,
            rng,
            now: 0,
            next_id: 0,
            queue: BinaryHeap::new(),
            events: HashMap::new(),
            net: Net {
                blocked: BTreeMap::new(),
                drop: 0.0,
                duplicate: 0.0,
                max_delay_ms: 3,
            },
            quorum: Quorum {
                batches: Vec::new(),
                image: MetadataImage::default(),
                controller: Controller::new(ControllerConfig {
                    session_timeout_ms: SESSION_TIMEOUT_MS,
                }),
                last_rebalance_ms: 0,
            },
            nodes: BTreeMap::new(),
            producers: BTreeMap::new(),
            consumers: BTreeMap::new(),
            next_delete_ms: 2_000,
            deletes_in_flight: BTreeMap::new(),
            next_value: 1,
            next_producer_id: 1000,
            checker: Checker::default(),
            stats: Stats::default(),
            trace: 0xcbf2_9ce4_8422_2325,
            topic_id,
            healed: false,
            acked_after_heal: 0,
            verbose: std::env::var_os("SIM_TRACE").is_some(),
            epoch_started: BTreeMap::new(),
        }
    }

    /// Commits a metadata batch; every leader epoch it starts is noted with how many writes
    /// were acknowledged by then (leader completeness holds for those).
    fn commit(&mut self, records: Vec<MetadataRecord>) -> bool {
        if !self.quorum.commit(records) {
            return false;
        }
        if let Some(t) = self.quorum.image.topic(TOPIC) {
            let acked = self.checker.acknowledged_count();
            for (&p, image) in &t.partitions {
                self.epoch_started
                    .entry((p, image.leader_epoch))
                    .or_insert(acked);
            }
        }
        true
    }

    fn note(&mut self, values: &[i64]) {
        for v in values {
            self.trace ^= *v as u64;
            self.trace = self.trace.wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn schedule(&mut self, at: i64, event: Event) {
        let id = self.next_id;
        self.next_id += 1;
        self.queue.push(Reverse((at, id)));
        self.events.insert(id, event);
    }

    fn send(&mut self, from: i32, to: i32, body: Body) {
        self.stats.messages += 1;
        if self.net.blocked.contains_key(&(from, to)) || self.rng.chance(self.net.drop) {
            return;
        }
        let copies = if self.rng.chance(self.net.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let at = self.now + self.rng.between(1, self.net.max_delay_ms.max(1));
            let msg = Msg {
                from,
                to,
                body: body.clone(),
            };
            self.schedule(at, Event::Deliver(msg));
        }
    }

    fn replicas_of(&self, partition: i32) -> Vec<i32> {
        let n = self.cfg.nodes;
        let rf = n.min(3);
        (0..rf).map(|i| (partition + i).rem_euclid(n) + 1).collect()
    }

    fn bootstrap(&mut self) {
        let mut records = Vec::new();
        for n in 1..=self.cfg.nodes {
            records.push(MetadataRecord::RegisterBroker {
                node_id: n,
                incarnation_id: Uuid::from_u64_pair(n as u64, 0),
                host: format!("node{n}"),
                port: 9092,
                rack: None,
                directory_id: None,
                endpoints: Vec::new(),
            });
            records.push(MetadataRecord::UnfenceBroker {
                node_id: n,
                broker_epoch: 0,
            });
        }
        records.push(MetadataRecord::Topic {
            name: TOPIC.into(),
            topic_id: self.topic_id,
            configs: BTreeMap::from([(
                "min.insync.replicas".to_string(),
                self.cfg.min_insync_replicas.to_string(),
            )]),
        });
        for p in 0..self.cfg.partitions {
            let replicas = self.replicas_of(p);
            records.push(MetadataRecord::Partition {
                topic_id: self.topic_id,
                partition: p,
                leader: replicas[0],
                leader_epoch: 0,
                isr: replicas.clone(),
                replicas,
            });
        }
        assert!(self.commit(records), "bootstrap metadata applies");
        self.quorum.controller.activate(&self.quorum.image, 0);
        for n in 1..=self.cfg.nodes {
            let node = Node {
                id: n,
                fs: SimFs::new(),
                clock: Arc::new(ManualClock::new(0)),
                skew_ms: 0,
                disk_latency_ms: (0, 2),
                up: true,
                paused_until: 0,
                incarnation: 0,
                broker_epoch: Some(0),
                next_register_ms: 0,
                image: MetadataImage::default(),
                applied: 0,
                metadata_sent_ms: None,
                partitions: BTreeMap::new(),
                manager: None,
                next_checkpoint_ms: 1_000,
                roles: BTreeMap::new(),
                waiting: Vec::new(),
                deleting: Vec::new(),
                checkpoint_failed: false,
                fetching: BTreeMap::new(),
                calls: BTreeMap::new(),
                unsettled: BTreeMap::new(),
                next_heartbeat_ms: 0,
                next_isr_check_ms: 0,
            };
            self.nodes.insert(n, node);
            self.open_partitions(n);
            let first = self.rng.between(0, TICK_MS);
            self.schedule(first, Event::NodeTick(n));
        }
        for p in 0..self.cfg.partitions {
            let producer_id = self.next_producer_id;
            self.next_producer_id += 1;
            self.producers.insert(
                p,
                Producer {
                    producer_id,
                    sequence: 0,
                    inflight: None,
                },
            );
            self.consumers.insert(
                p,
                Consumer {
                    position: 0,
                    sent_ms: None,
                },
            );
        }
        self.schedule(0, Event::ControllerTick);
        self.schedule(100, Event::ClientTick);
        self.schedule(STRONG_ISR_CHECK_MS, Event::StrongIsrCheck);
        if self.cfg.faults {
            self.schedule(1_000, Event::Nemesis);
        }
        self.schedule(self.cfg.fault_ms, Event::Heal);
    }

    /// Opens (recovering) this node's logs of every partition it is a replica of.
    fn open_partitions(&mut self, n: i32) {
        let partitions: Vec<i32> = (0..self.cfg.partitions)
            .filter(|&p| self.replicas_of(p).contains(&n))
            .collect();
        let now = self.now;
        let flaw = self.cfg.flaw;
        let node = self.nodes.get_mut(&n).expect("node exists");
        node.set_clock(now);
        let mut failed = Vec::new();
        // As the broker opens its data directory: checkpoints read, each replica's log
        // recovered with its hint (the checkpointed high watermark), checkpoints rewritten.
        let fs: Arc<dyn strata_storage::Fs> = Arc::new(node.fs.clone());
        let manager = LogManager::new(fs.clone(), std::path::Path::new("/data"));
        match manager.begin_recovery(64) {
            Ok(state) => {
                for p in partitions {
                    let clock: Arc<dyn Clock> = node.clock.clone();
                    let hint = if flaw == Some(Flaw::HighWatermarkFromLogEnd) {
                        state.hint(TOPIC, p)
                    } else {
                        state.replica_hint(TOPIC, p)
                    };
                    match Log::open_managed(
                        fs.clone(),
                        clock,
                        &partition_dir(p),
                        log_config(),
                        hint,
                    ) {
                        Ok(log) => {
                            let partition = Partition::new(TOPIC.into(), p, 0, log);
                            node.partitions.insert(p, Arc::new(partition));
                        }
                        Err(e) => {
                            failed.push(format!("node {n}: log {p} could not be recovered: {e}"))
                        }
                    }
                }
                let opened: Vec<Arc<Partition>> = node.partitions.values().cloned().collect();
                if let Err(e) = manager.finish_recovery(&state, &opened) {
                    failed.push(format!(
                        "node {n}: checkpoints not rewritten after recovery: {e}"
                    ));
                }
            }
            Err(e) => failed.push(format!("node {n}: data directory unreadable: {e}")),
        }
        node.manager = Some(manager);
        for f in failed {
            self.checker.violations.push(f);
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Deliver(msg) => self.deliver(msg),
            Event::NodeTick(n) => {
                self.note(&[1, self.now, n as i64]);
                self.node_tick(n);
                self.schedule(self.now + TICK_MS, Event::NodeTick(n));
            }
            Event::ControllerTick => {
                self.controller_tick();
                self.schedule(self.now + CONTROLLER_TICK_MS, Event::ControllerTick);
            }
            Event::ClientTick => {
                self.client_tick();
                self.schedule(self.now + 10, Event::ClientTick);
            }
            Event::Sync {
                node,
                incarnation,
                partition,
                offset,
            } => {
                let Some(nd) = self.nodes.get(&node) else {
                    return;
                };
                if !nd.up || nd.incarnation != incarnation {
                    return; // the process that asked for it is gone
                }
                nd.set_clock(self.now);
                if let Some(p) = nd.partitions.get(&partition) {
                    let _ = p.sync_to(offset);
                }
                self.note(&[2, self.now, node as i64, offset]);
                self.check_waiting(node);
            }
            Event::Nemesis => self.nemesis(),
            Event::Restart(n) => self.restart(n),
            Event::Unblock(links) => {
                for l in links {
                    if let Some(c) = self.net.blocked.get_mut(&l) {
                        *c -= 1;
                        if *c == 0 {
                            self.net.blocked.remove(&l);
                        }
                    }
                }
            }
            Event::EndLossy => {
                self.net.drop = 0.0;
                self.net.duplicate = 0.0;
                self.net.max_delay_ms = 3;
            }
            Event::EndClockJump(n, jump) => {
                if let Some(nd) = self.nodes.get_mut(&n) {
                    nd.skew_ms -= jump;
                }
            }
            Event::EndSlowDisk(n) => {
                if let Some(nd) = self.nodes.get_mut(&n) {
                    nd.disk_latency_ms = (0, 2);
                }
            }
            Event::EndDiskFull(n) => {
                if let Some(nd) = self.nodes.get(&n) {
                    nd.fs.stats().fail_writes.store(false, Ordering::SeqCst);
                }
            }
            Event::Heal => self.heal(),
            Event::StrongIsrCheck => {
                self.strong_isr_check();
                self.schedule(self.now + STRONG_ISR_CHECK_MS, Event::StrongIsrCheck);
            }
        }
    }

    // -------------------------------------------------------------- delivery

    fn deliver(&mut self, msg: Msg) {
        self.note(&[3, self.now, msg.from as i64, msg.to as i64]);
        match msg.to {
            CONTROLLER => self.controller_receive(msg),
            CLIENT => self.client_receive(msg),
            n => {
                let Some(node) = self.nodes.get(&n) else {
                    return;
                };
                if !node.up {
                    return;
                }
                if node.paused_until > self.now {
                    // A stopped process reads its socket when it resumes.
                    let at = node.paused_until;
                    self.schedule(at, Event::Deliver(msg));
                    return;
                }
                node.set_clock(self.now);
                self.node_receive(n, msg);
                self.check_waiting(n);
            }
        }
    }

    // -------------------------------------------------------------- the controller

    fn controller_receive(&mut self, msg: Msg) {
        match msg.body {
            Body::Register {
                incarnation,
                records,
            } => {
                // The broker's own registration (`register_with_quorum`): one batch, built
                // from the broker's own view of the metadata (registered, unfenced at the
                // epoch after the one it knows, its previous leaderships moved to a new
                // epoch); a stale view is refused whole, and the broker retries.
                let node = msg.from;
                let incarnation_id = Uuid::from_u64_pair(node as u64, incarnation);
                let registered = self
                    .quorum
                    .image
                    .broker(node)
                    .filter(|b| b.incarnation_id == incarnation_id)
                    .map(|b| b.broker_epoch);
                let epoch = match registered {
                    // A retried registration of the same incarnation is answered again.
                    Some(epoch) => Some(epoch),
                    None => {
                        trace!(self, "registration: {records:?}");
                        if self.commit(records) {
                            self.quorum.image.broker(node).map(|b| b.broker_epoch)
                        } else {
                            None
                        }
                    }
                };
                if let Some(broker_epoch) = epoch {
                    self.send(
                        CONTROLLER,
                        msg.from,
                        Body::Registered {
                            incarnation,
                            broker_epoch,
                        },
                    );
                }
            }
            Body::Call { id, request } => {
                let image = self.quorum.image.clone();
                let decided = self.quorum.controller.handle(&image, &request, self.now);
                let reply = match decided {
                    Ok((records, reply)) => {
                        if !records.is_empty() {
                            trace!(self, "controller on {request:?}: {records:?}");
                        }
                        if records.is_empty() || self.commit(records) {
                            reply
                        } else {
                            ControllerReply::Refused(ControllerError::InvalidUpdateVersion {
                                got: -1,
                                current: -1,
                            })
                        }
                    }
                    Err(e) => ControllerReply::Refused(e),
                };
                self.send(CONTROLLER, msg.from, Body::Reply { id, reply });
            }
            Body::MetadataFetch { from } => {
                let end = self.quorum.batches.len().min(from + 50);
                let batches = self.quorum.batches.get(from..end).unwrap_or(&[]).to_vec();
                self.send(CONTROLLER, msg.from, Body::Metadata { from, batches });
            }
            _ => {}
        }
    }

    fn controller_tick(&mut self) {
        let image = self.quorum.image.clone();
        let mut records = self.quorum.controller.tick(&image, self.now);
        if records.is_empty() && self.now - self.quorum.last_rebalance_ms >= REBALANCE_MS {
            self.quorum.last_rebalance_ms = self.now;
            records = self.quorum.controller.elect(&image, true, None).0;
        }
        if !records.is_empty() {
            self.note(&[4, self.now, records.len() as i64]);
            trace!(self, "controller tick: {records:?}");
            self.commit(records);
        }
    }

    // -------------------------------------------------------------- brokers

    fn node_tick(&mut self, n: i32) {
        let now = self.now;
        let flaw = self.cfg.flaw;
        let node = self.nodes.get_mut(&n).expect("node exists");
        if !node.up || node.paused_until > now {
            return;
        }
        node.set_clock(now);
        let mut halt = false;
        if now >= node.next_checkpoint_ms {
            // The broker's checkpoint task (every second).
            node.next_checkpoint_ms = now + 1_000;
            if let Some(manager) = &node.manager {
                let partitions: Vec<Arc<Partition>> = node.partitions.values().cloned().collect();
                halt |= manager.checkpoint_recovery_points(&partitions).is_err();
                halt |= manager.checkpoint_high_watermarks(&partitions).is_err();
            }
        }
        // `Broker::halt`: a failed log or checkpoint stops the broker at once; its files
        // stay as the page cache holds them (a process exit, not a power loss).
        let failed =
            halt || node.checkpoint_failed || node.partitions.values().any(|p| p.log().is_failed());
        if failed && flaw != Some(Flaw::StayUpOnFailedDisk) {
            trace!(self, "node {n} halts: its disk failed");
            *self.stats.faults.entry("halt").or_insert(0) += 1;
            self.crash(n, CrashMode::KeepAll);
            return;
        }
        let node = self.nodes.get_mut(&n).expect("node exists");
        let Some(broker_epoch) = node.broker_epoch else {
            if now >= node.next_register_ms {
                node.next_register_ms = now + 200;
                let incarnation = node.incarnation;
                let next_epoch = node.image.broker(n).map_or(0, |b| b.broker_epoch + 1);
                let mut records = vec![
                    MetadataRecord::RegisterBroker {
                        node_id: n,
                        incarnation_id: Uuid::from_u64_pair(n as u64, incarnation),
                        host: format!("node{n}"),
                        port: 9092,
                        rack: None,
                        directory_id: None,
                        endpoints: Vec::new(),
                    },
                    MetadataRecord::UnfenceBroker {
                        node_id: n,
                        broker_epoch: next_epoch,
                    },
                ];
                if flaw != Some(Flaw::SameEpochAfterRestart) {
                    records.push(MetadataRecord::ResignLeaderships { node_id: n });
                }
                // Its view of the metadata moves on meanwhile (a quorum member's does).
                let from = node.applied;
                self.send(
                    n,
                    CONTROLLER,
                    Body::Register {
                        incarnation,
                        records,
                    },
                );
                self.send(n, CONTROLLER, Body::MetadataFetch { from });
            }
            return;
        };
        let mut out: Vec<(i32, Body)> = Vec::new();
        if node.metadata_sent_ms.is_none_or(|t| now - t >= 1_000)
            && now % METADATA_FETCH_MS < TICK_MS
        {
            node.metadata_sent_ms = Some(now);
            out.push((CONTROLLER, Body::MetadataFetch { from: node.applied }));
        }
        // Controller calls that got no answer in time.
        let expired: Vec<u64> = node
            .calls
            .iter()
            .filter(|(_, (sent, _))| now - sent >= CALL_TIMEOUT_MS)
            .map(|(&id, _)| id)
            .collect();
        for id in expired {
            if let Some((_, CallKind::AlterPartition(p, request))) = node.calls.remove(&id) {
                if flaw == Some(Flaw::GiveUpOnUnansweredIsrChange) {
                    if let Some(partition) = node.partitions.get(&p) {
                        // Drops the pending addition at once (what the broker did).
                        partition.isr_change_committed(
                            &partition.isr().0,
                            partition.partition_epoch() + 1,
                        );
                    }
                } else {
                    node.unsettled.insert(p, request);
                }
            }
        }
        if now >= node.next_heartbeat_ms {
            node.next_heartbeat_ms = now + HEARTBEAT_MS;
            let id = self.next_id;
            self.next_id += 1;
            node.calls.insert(id, (now, CallKind::Heartbeat));
            out.push((
                CONTROLLER,
                Body::Call {
                    id,
                    request: ControllerRequest::Heartbeat {
                        node_id: n,
                        broker_epoch,
                    },
                },
            ));
        }
        // The replica fetcher: one fetch in flight per leader.
        let mut by_leader: BTreeMap<i32, Vec<(i32, i32, FetchPosition)>> = BTreeMap::new();
        for (&p, (leader, _, _)) in &node.roles {
            if *leader == n || *leader < 0 {
                continue;
            }
            if node.image.broker(*leader).is_none_or(|b| b.fenced) {
                continue;
            }
            if node
                .fetching
                .get(leader)
                .is_some_and(|&t| now - t < REPLICA_FETCH_TIMEOUT_MS)
            {
                continue;
            }
            let partition = &node.partitions[&p];
            if let Some(at) = partition.replica_fetch_position() {
                by_leader
                    .entry(*leader)
                    .or_default()
                    .push((p, partition.leader_epoch(), at));
            }
        }
        for (leader, partitions) in by_leader {
            node.fetching.insert(leader, now);
            out.push((
                leader,
                Body::ReplicaFetch {
                    incarnation: node.incarnation,
                    replica_epoch: broker_epoch,
                    partitions,
                },
            ));
        }
        // The ISR loop: changes the replication rules call for, one call per partition.
        if now >= node.next_isr_check_ms {
            node.next_isr_check_ms = now + ISR_CHECK_MS;
            let busy: BTreeSet<i32> = node
                .calls
                .values()
                .filter_map(|(_, k)| match k {
                    CallKind::AlterPartition(p, _) => Some(*p),
                    CallKind::Heartbeat => None,
                })
                .collect();
            for (&p, partition) in &node.partitions {
                if busy.contains(&p) || !node.roles.contains_key(&p) {
                    continue;
                }
                let current = node
                    .image
                    .topic(TOPIC)
                    .and_then(|t| t.partitions.get(&p))
                    .cloned();
                let retry = match node.unsettled.remove(&p) {
                    Some(r)
                        if matches!(&r, ControllerRequest::AlterPartition { partition_epoch, .. }
                            if current.as_ref().is_some_and(|c| c.partition_epoch == *partition_epoch))
                            && partition.is_leader() =>
                    {
                        Some(r)
                    }
                    // (The S4 bug as it was: neither this nor the delta settled it.)
                    Some(_) if flaw == Some(Flaw::IgnoreUnchangedIsr) => None,
                    Some(_) => {
                        // As the broker's ISR loop: a request the partition moved on without
                        // can never commit; an addition it carried is settled as refused.
                        partition.isr_change_refused();
                        None
                    }
                    None => None,
                };
                let request = match retry {
                    Some(request) => request,
                    None => {
                        let Some(new_isr) = partition.isr_change(LAG_MAX_MS) else {
                            continue;
                        };
                        let Some(current) = current else {
                            partition.isr_change_refused();
                            continue;
                        };
                        ControllerRequest::AlterPartition {
                            node_id: n,
                            broker_epoch,
                            topic_id: self.topic_id,
                            partition: p,
                            leader_epoch: current.leader_epoch,
                            partition_epoch: current.partition_epoch,
                            new_isr,
                        }
                    }
                };
                let id = self.next_id;
                self.next_id += 1;
                if self.verbose {
                    eprintln!(
                        "t={now:>6} node {n} asks {request:?} (isr now {:?})",
                        partition.isr()
                    );
                }
                node.calls
                    .insert(id, (now, CallKind::AlterPartition(p, request.clone())));
                out.push((CONTROLLER, Body::Call { id, request }));
            }
        }
        for (to, body) in out {
            self.send(n, to, body);
        }
        self.check_waiting(n);
    }

    fn node_receive(&mut self, n: i32, msg: Msg) {
        let now = self.now;
        let min_isr = self.cfg.min_insync_replicas;
        let flaw = self.cfg.flaw;
        let node = self.nodes.get_mut(&n).expect("node exists");
        match msg.body {
            Body::Registered {
                incarnation,
                broker_epoch,
            } if incarnation == node.incarnation && node.broker_epoch.is_none() => {
                node.broker_epoch = Some(broker_epoch);
                node.metadata_sent_ms = None;
            }
            Body::Reply { id, reply } => {
                if let Some((_, CallKind::AlterPartition(p, request))) = node.calls.remove(&id) {
                    let Some(partition) = node.partitions.get(&p) else {
                        return;
                    };
                    let ControllerRequest::AlterPartition {
                        new_isr,
                        partition_epoch,
                        ..
                    } = &request
                    else {
                        return;
                    };
                    if self.verbose {
                        eprintln!(
                            "t={now:>6} node {n} partition {p}: AlterPartition answered {reply:?}"
                        );
                    }
                    match strata_controller::isr_change_outcome(Some(&reply)) {
                        IsrChangeOutcome::Committed => {
                            partition.isr_change_committed(new_isr, partition_epoch + 1)
                        }
                        IsrChangeOutcome::Unknown | IsrChangeOutcome::Refused
                            if flaw == Some(Flaw::GiveUpOnUnansweredIsrChange) =>
                        {
                            // Drops the pending addition at once (what the broker did).
                            partition.isr_change_committed(
                                &partition.isr().0,
                                partition.partition_epoch() + 1,
                            )
                        }
                        IsrChangeOutcome::Refused => partition.isr_change_refused(),
                        IsrChangeOutcome::Unknown => {
                            node.unsettled.insert(p, request);
                        }
                    }
                }
            }
            Body::Metadata { from, batches } => {
                node.metadata_sent_ms = None;
                if from != node.applied {
                    return;
                }
                let before = node.image.clone();
                apply_batches(&mut node.image, &batches);
                node.applied += batches.len();
                // Partitions take roles once the broker is registered (as the broker opens
                // them after its registration).
                if node.broker_epoch.is_some() {
                    self.apply_roles(n, &before, min_isr);
                }
            }
            Body::ReplicaFetch {
                incarnation,
                replica_epoch,
                partitions,
            } => {
                let replica = msg.from;
                let stale = node
                    .image
                    .broker(replica)
                    .is_some_and(|b| b.broker_epoch != replica_epoch);
                let mut answers = Vec::new();
                for (p, current_leader_epoch, at) in partitions {
                    let answer = match node.partitions.get(&p) {
                        Some(partition) if node.roles.contains_key(&p) => {
                            let is_replica = node
                                .image
                                .topic(TOPIC)
                                .and_then(|t| t.partitions.get(&p))
                                .is_some_and(|i| i.replicas.contains(&replica));
                            if current_leader_epoch != partition.leader_epoch()
                                || !partition.is_leader()
                                || stale
                                || !is_replica
                            {
                                if self.verbose {
                                    eprintln!(
                                        "t={now:>6} node {n} refuses a fetch of {p} from {replica}: epoch {current_leader_epoch} vs {}, leader {}, stale {stale}, replica {is_replica}",
                                        partition.leader_epoch(), partition.is_leader()
                                    );
                                }
                                Answer::Refused
                            } else {
                                let answer = serve_replica(partition, replica, at, flaw);
                                if self.verbose {
                                    eprintln!("t={now:>6} node {n} serves {replica} partition {p} at {} (epoch {}): hw now {} ({})", at.fetch_offset, at.last_fetched_epoch, partition.high_watermark(), match &answer { Answer::Records { bytes, .. } => format!("{} bytes", bytes.len()), other => format!("{other:?}") });
                                }
                                answer
                            }
                        }
                        _ => Answer::Refused,
                    };
                    answers.push((p, current_leader_epoch, at, answer));
                }
                self.send(
                    n,
                    replica,
                    Body::ReplicaAnswer {
                        incarnation,
                        partitions: answers,
                    },
                );
            }
            Body::ReplicaAnswer {
                incarnation,
                partitions,
            } => {
                let leader = msg.from;
                if incarnation != node.incarnation {
                    return;
                }
                node.fetching.remove(&leader);
                for (p, epoch, asked, answer) in partitions {
                    let Some(partition) = node.partitions.get(&p) else {
                        continue;
                    };
                    // Leadership moved since the request: what this leader sent is not kept.
                    if partition.is_leader()
                        || partition.leader_id() != leader
                        || partition.leader_epoch() != epoch
                    {
                        continue;
                    }
                    let applied = match &answer {
                        Answer::Records {
                            bytes,
                            high_watermark,
                            log_start_offset,
                        } => LeaderAnswer::Records {
                            records: Some(&bytes[..]),
                            high_watermark: *high_watermark,
                            log_start_offset: if flaw == Some(Flaw::FollowersIgnoreLogStart) {
                                i64::MIN
                            } else {
                                *log_start_offset
                            },
                        },
                        Answer::Diverging { epoch, end_offset } => {
                            self.stats.truncations += 1;
                            if self.verbose {
                                eprintln!("t={:>6} node {n} partition {p}: diverged from {leader} (epoch {epoch} ends at {end_offset}; local end {})", now, partition.log().log_end_offset());
                            }
                            LeaderAnswer::Diverging {
                                epoch: *epoch,
                                end_offset: *end_offset,
                            }
                        }
                        Answer::OutOfRange {
                            log_start_offset,
                            high_watermark,
                        } => {
                            self.stats.truncations += 1;
                            LeaderAnswer::OutOfRange {
                                log_start_offset: *log_start_offset,
                                high_watermark: *high_watermark,
                            }
                        }
                        Answer::Refused => continue,
                    };
                    // A failed sync leaves the log failed; it stops fetching (as the broker).
                    // A late or repeated answer is applied as if it answered the latest fetch.
                    let asked = match (flaw, partition.replica_fetch_position()) {
                        (Some(Flaw::ApplyStaleAnswers), Some(now_at)) => now_at,
                        _ => asked,
                    };
                    let start_before = partition.log().log_start_offset();
                    let result = partition.apply_leader_answer(asked, applied);
                    // The broker's fetcher: a log start moved is made durable before the
                    // next fetch reports it (the leader's low watermark counts on it).
                    if partition.log().log_start_offset() != start_before
                        && flaw != Some(Flaw::FollowerLogStartNotDurable)
                    {
                        let partitions: Vec<Arc<Partition>> =
                            node.partitions.values().cloned().collect();
                        if let Some(manager) = &node.manager {
                            node.checkpoint_failed |=
                                manager.checkpoint_log_start_offsets(&partitions).is_err();
                        }
                    }
                    if self.verbose {
                        let log = partition.log();
                        eprintln!("t={now:>6} node {n} partition {p}: answer from {leader} to a fetch at {} (epoch {}): {result:?}; log end {} epoch {}", asked.fetch_offset, asked.last_fetched_epoch, log.log_end_offset(), log.latest_epoch());
                    }
                }
            }
            Body::Produce {
                partition: p,
                value,
                batch,
            } => {
                let refused = |reason| Body::Produced {
                    partition: p,
                    value,
                    result: Err(reason),
                };
                let Some(partition) = node
                    .partitions
                    .get(&p)
                    .filter(|_| node.roles.contains_key(&p))
                    .cloned()
                else {
                    self.send(n, CLIENT, refused("not leader"));
                    return;
                };
                if !partition.is_leader() {
                    self.send(n, CLIENT, refused("not leader"));
                    return;
                }
                let (isr, min) = partition.isr();
                if isr.len() < min {
                    self.send(n, CLIENT, refused("not enough replicas"));
                    return;
                }
                match partition.append(&batch) {
                    Ok(info) => {
                        let end = info.last_offset + 1;
                        let latency = self
                            .rng
                            .between(node.disk_latency_ms.0, node.disk_latency_ms.1);
                        let incarnation = node.incarnation;
                        node.waiting.push(Waiting {
                            partition: partition.clone(),
                            index: p,
                            end,
                            value,
                            deadline: now + PRODUCE_TIMEOUT_MS,
                        });
                        self.schedule(
                            now + latency,
                            Event::Sync {
                                node: n,
                                incarnation,
                                partition: p,
                                offset: end,
                            },
                        );
                    }
                    Err(StorageError::Sequence(_)) => self.send(n, CLIENT, refused("sequence")),
                    Err(_) => self.send(n, CLIENT, refused("storage")),
                }
            }
            Body::Read {
                partition: p,
                offset,
            } => {
                let mut log_start_offset = -1;
                let mut epoch = -1;
                let result = match node.partitions.get(&p) {
                    Some(partition) if node.roles.contains_key(&p) && partition.is_leader() => {
                        epoch = partition.leader_epoch();
                        match partition.read(offset, FETCH_BYTES, true) {
                            Ok(data) => Ok(data.records),
                            Err(StorageError::OffsetOutOfRange {
                                log_start_offset: start,
                                ..
                            }) if offset < start => {
                                log_start_offset = start;
                                Err("below log start")
                            }
                            Err(StorageError::OffsetOutOfRange { .. }) => Err("out of range"),
                            Err(_) => Err("storage"),
                        }
                    }
                    _ => Err("not leader"),
                };
                // A leader the metadata names (not a deposed one that does not know yet)
                // never serves what an answered DeleteRecords deleted.
                let current = self
                    .quorum
                    .image
                    .topic(TOPIC)
                    .and_then(|t| t.partitions.get(&p))
                    .is_some_and(|image| image.leader == n && image.leader_epoch == epoch);
                if let (true, Ok(bytes)) = (current && self.cfg.delete_records, &result) {
                    if let Ok(records) = decode_records(bytes.clone()) {
                        let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
                        self.checker.served(now, n, p, &offsets);
                    }
                }
                self.send(
                    n,
                    CLIENT,
                    Body::ReadAnswer {
                        partition: p,
                        offset,
                        result,
                        log_start_offset,
                    },
                );
            }
            Body::DeleteRecords {
                partition: p,
                offset,
            } => {
                let answer = |result| Body::RecordsDeleted {
                    partition: p,
                    result,
                };
                let Some(partition) = node
                    .partitions
                    .get(&p)
                    .filter(|partition| node.roles.contains_key(&p) && partition.is_leader())
                    .cloned()
                else {
                    self.send(n, CLIENT, answer(Err("not leader")));
                    return;
                };
                if partition.isr().0.len() < partition.isr().1 {
                    // The broker refuses up front: no low watermark can be known.
                    self.send(n, CLIENT, answer(Err("not enough replicas")));
                    return;
                }
                // The broker's `Broker::delete_records`: applied, then checkpointed.
                let applied = partition.log().delete_records_before(offset);
                let result = match applied {
                    Ok(_) => {
                        let partitions: Vec<Arc<Partition>> =
                            node.partitions.values().cloned().collect();
                        match &node.manager {
                            Some(manager) => manager
                                .checkpoint_log_start_offsets(&partitions)
                                .map_err(|_| "storage"),
                            None => Err("storage"),
                        }
                    }
                    Err(StorageError::OffsetOutOfRange { .. }) => Err("out of range"),
                    Err(_) => Err("storage"),
                };
                match result {
                    Err(e) => self.send(n, CLIENT, answer(Err(e))),
                    Ok(()) => node.deleting.push(Deleting {
                        leader_epoch: partition.leader_epoch(),
                        partition,
                        index: p,
                        target: offset,
                        deadline: now + PRODUCE_TIMEOUT_MS,
                    }),
                }
            }
            _ => {}
        }
    }

    /// Leader or follower as the node's metadata says, for each partition whose
    /// leadership or ISR changed (the broker's `catch_up_with_quorum`); a replica that
    /// becomes leader must hold every acknowledged write (leader completeness).
    fn apply_roles(&mut self, n: i32, before: &MetadataImage, min_isr: usize) {
        let node = self.nodes.get_mut(&n).expect("node exists");
        let Some(topic) = node.image.topic(TOPIC).cloned() else {
            return;
        };
        // What the broker's replica manager re-roles: the partitions the delta names, and
        // (at start) every partition opened since.
        let delta = ImageDelta::between(before, &node.image, n);
        let changed: BTreeSet<i32> = delta
            .created
            .iter()
            .chain(delta.leadership.iter())
            .map(|(at, _)| at.partition)
            .collect();
        let mut new_leaderships = Vec::new();
        for (&p, image) in &topic.partitions {
            let Some(partition) = node.partitions.get(&p) else {
                continue;
            };
            if node.roles.contains_key(&p) && !changed.contains(&p) {
                continue;
            }
            let role: Role = (image.leader, image.leader_epoch, image.isr.clone());
            if self.cfg.flaw == Some(Flaw::IgnoreUnchangedIsr) && node.roles.get(&p) == Some(&role)
            {
                continue;
            }
            let was_leader = node
                .roles
                .get(&p)
                .is_some_and(|(l, e, _)| *l == n && *e == image.leader_epoch);
            partition.set_role(
                n,
                image.leader,
                image.leader_epoch,
                image.partition_epoch,
                &image.isr,
                min_isr,
            );
            if self.verbose {
                let log = partition.log();
                eprintln!(
                    "t={:>6} node {n} partition {p}: leader {} epoch {} isr {:?} (log end {}, durable {}, hw {})",
                    self.now, image.leader, image.leader_epoch, image.isr,
                    log.log_end_offset(), log.durable_end(), log.high_watermark()
                );
            }
            if image.leader == n && !was_leader {
                new_leaderships.push((p, partition.clone()));
            }
            node.roles.insert(p, role);
        }
        for (p, partition) in new_leaderships {
            self.stats.leader_elections += 1;
            self.note(&[5, self.now, n as i64, p as i64]);
            if partition.log().is_failed() {
                // Offline: it serves nothing, and the node halts at its next tick.
                continue;
            }
            // Leader completeness: a leader of an epoch holds every write acknowledged before
            // the epoch began (a node catching up may apply an old epoch's leadership).
            let before = self
                .epoch_started
                .get(&(p, partition.leader_epoch()))
                .copied()
                .unwrap_or(0);
            match log_values(&partition) {
                Ok(log) => self.checker.holds_acknowledged_before(
                    self.now,
                    &format!("node {n} leading epoch {}", partition.leader_epoch()),
                    p,
                    &log,
                    before,
                ),
                Err(e) => self
                    .checker
                    .violations
                    .push(format!("node {n}: log {p} unreadable: {e}")),
            }
        }
    }

    /// Answers produce requests whose records are committed (or failed), as the broker's
    /// `wait_for_replicas` does.
    fn check_waiting(&mut self, n: i32) {
        let now = self.now;
        let flaw = self.cfg.flaw;
        let Some(node) = self.nodes.get_mut(&n) else {
            return;
        };
        let mut answers = Vec::new();
        node.waiting.retain(|w| {
            let p = &w.partition;
            let done = match flaw {
                Some(Flaw::AckOnLeaderDisk) => p.log().durable_end() >= w.end,
                _ => p.high_watermark() >= w.end,
            };
            let result = if done {
                Ok(w.end - 1)
            } else if !p.is_leader() {
                Err("not leader")
            } else if p.isr().0.len() < p.isr().1 {
                Err("not enough replicas after append")
            } else if now >= w.deadline {
                Err("timed out")
            } else {
                return true;
            };
            answers.push((w.index, w.value, result));
            false
        });
        let mut deleted = Vec::new();
        node.deleting.retain(|d| {
            let low = d.partition.low_watermark(d.leader_epoch);
            let result = if flaw == Some(Flaw::AckDeleteRecordsOnLeader) {
                Ok(d.partition.log().log_start_offset())
            } else if let Some(low) = low.filter(|&low| low >= d.target) {
                Ok(low)
            } else if low.is_none() {
                Err("not leader")
            } else if d.partition.isr().0.len() < d.partition.isr().1 {
                Err("not enough replicas")
            } else if now >= d.deadline {
                Err("timed out")
            } else {
                return true;
            };
            deleted.push((d.index, d.target, result));
            false
        });
        for (p, target, result) in deleted {
            if result.is_ok() {
                self.checker.deleted(p, target);
                self.stats.deletes += 1;
                trace!(
                    self,
                    "node {n} answers DeleteRecords below {p}/{target}: {result:?}"
                );
            }
            self.send(
                n,
                CLIENT,
                Body::RecordsDeleted {
                    partition: p,
                    result,
                },
            );
        }
        for (p, value, result) in answers {
            if let Ok(offset) = result {
                // Committed as far as the broker knows: checked from now on, whether the
                // answer reaches the client or not.
                self.checker.acknowledged(now, p, offset, value);
                self.note(&[6, now, p as i64, offset]);
                trace!(self, "node {n} acknowledges {value} at {p}/{offset}");
            }
            self.send(
                n,
                CLIENT,
                Body::Produced {
                    partition: p,
                    value,
                    result,
                },
            );
        }
    }

    // -------------------------------------------------------------- clients

    fn leader_of(&self, partition: i32) -> i32 {
        self.quorum
            .image
            .topic(TOPIC)
            .and_then(|t| t.partitions.get(&partition))
            .map_or(-1, |p| p.leader)
    }

    fn client_tick(&mut self) {
        let now = self.now;
        let producing = now < self.cfg.fault_ms + self.cfg.heal_ms - QUIET_MS;
        for p in 0..self.cfg.partitions {
            let leader = self.leader_of(p);
            let producer = self.producers.get_mut(&p).expect("producer exists");
            let send = match &mut producer.inflight {
                None if producing => {
                    let value = self.next_value;
                    self.next_value += 1;
                    let mut builder = BatchBuilder::new(Compression::None);
                    builder
                        .push(Record {
                            key: None,
                            value: Some(Bytes::copy_from_slice(&value.to_be_bytes())),
                            headers: vec![],
                            timestamp_ms: now,
                        })
                        .idempotent(producer.producer_id, 0, producer.sequence);
                    let batch = builder.build().expect("a one-record batch builds");
                    producer.inflight = Some((value, batch.clone(), now));
                    self.checker.produced(value, p);
                    self.stats.produced += 1;
                    Some((value, batch))
                }
                Some((value, batch, sent)) if now - *sent >= CLIENT_RETRY_MS => {
                    *sent = now;
                    Some((*value, batch.clone()))
                }
                _ => None,
            };
            if let Some((value, batch)) = send {
                if leader > 0 {
                    self.send(
                        CLIENT,
                        leader,
                        Body::Produce {
                            partition: p,
                            value,
                            batch,
                        },
                    );
                }
            }
            if self.cfg.delete_records && producing && leader > 0 && now >= self.next_delete_ms {
                let stuck = self
                    .deletes_in_flight
                    .get(&p)
                    .is_some_and(|&sent| now - sent < PRODUCE_TIMEOUT_MS + 2_000);
                let end = self.checker.acknowledged_end(p);
                if !stuck && end > 0 {
                    self.next_delete_ms = now + self.rng.between(1_000, 4_000);
                    let offset = self.rng.between(end / 2, end);
                    self.deletes_in_flight.insert(p, now);
                    self.checker.delete_requested(p, offset);
                    trace!(self, "client asks {leader} to delete below {p}/{offset}");
                    self.send(
                        CLIENT,
                        leader,
                        Body::DeleteRecords {
                            partition: p,
                            offset,
                        },
                    );
                }
            }
            let consumer = self.consumers.get_mut(&p).expect("consumer exists");
            if leader > 0 && consumer.sent_ms.is_none_or(|t| now - t >= READ_RETRY_MS) {
                consumer.sent_ms = Some(now);
                let offset = consumer.position;
                self.send(
                    CLIENT,
                    leader,
                    Body::Read {
                        partition: p,
                        offset,
                    },
                );
            }
        }
    }

    fn client_receive(&mut self, msg: Msg) {
        let now = self.now;
        match msg.body {
            Body::Produced {
                partition,
                value,
                result,
            } => {
                if let Ok(offset) = result {
                    self.checker.acknowledged(now, partition, offset, value);
                }
                let next_producer_id = self.next_producer_id;
                let producer = self.producers.get_mut(&partition).expect("producer exists");
                let Some((inflight, _, sent)) = &mut producer.inflight else {
                    return;
                };
                if *inflight != value {
                    return;
                }
                match result {
                    Ok(_) => {
                        producer.inflight = None;
                        producer.sequence += 1;
                        self.stats.acknowledged += 1;
                        if self.healed {
                            self.acked_after_heal += 1;
                        }
                    }
                    Err("sequence") => {
                        // As a client whose producer state the broker lost: a new producer
                        // id; the write in flight may or may not be stored.
                        producer.inflight = None;
                        producer.producer_id = next_producer_id;
                        producer.sequence = 0;
                        self.next_producer_id += 1;
                    }
                    Err(_) => *sent = now - CLIENT_RETRY_MS + 100, // retry soon
                }
            }
            Body::RecordsDeleted { partition, result } => {
                trace!(
                    self,
                    "client: DeleteRecords of {partition} answered {result:?}"
                );
                self.deletes_in_flight.remove(&partition);
            }
            Body::ReadAnswer {
                partition,
                offset,
                result,
                log_start_offset,
            } => {
                let consumer = self.consumers.get_mut(&partition).expect("consumer exists");
                if offset != consumer.position {
                    return; // an answer to an earlier read (duplicated or late)
                }
                consumer.sent_ms = None;
                match result {
                    Ok(bytes) => {
                        let records: Vec<(i64, u64)> = match decode_records(bytes) {
                            Ok(r) => r
                                .into_iter()
                                .filter(|r| !r.control)
                                .map(|r| (r.offset, value_of(&r.value)))
                                .collect(),
                            Err(e) => {
                                self.checker.violations.push(format!(
                                    "t={now}ms: undecodable read of {partition}: {e}"
                                ));
                                return;
                            }
                        };
                        if let Some(&(last, _)) = records.last() {
                            consumer.position = last + 1;
                        }
                        self.stats.read += records.len() as u64;
                        self.checker.read(now, partition, offset, &records);
                    }
                    Err("below log start") => {
                        // Deleted: go on from the log start, as auto.offset.reset=earliest.
                        consumer.position = consumer.position.max(log_start_offset);
                    }
                    Err("out of range") => {
                        self.checker.violations.push(format!(
                            "t={now}ms: consumer of {partition} at {offset} (read below a high watermark) is past the leader's log end"
                        ));
                        // Go on from the start, as auto.offset.reset=earliest would.
                        consumer.position = 0;
                    }
                    Err(_) => {}
                }
            }
            _ => {}
        }
    }

    // -------------------------------------------------------------- faults

    fn up_nodes(&self) -> Vec<i32> {
        self.nodes
            .values()
            .filter(|n| n.up && n.paused_until <= self.now)
            .map(|n| n.id)
            .collect()
    }

    fn block(&mut self, links: Vec<(i32, i32)>, hold: i64) {
        for l in &links {
            *self.net.blocked.entry(*l).or_insert(0) += 1;
        }
        self.schedule(self.now + hold, Event::Unblock(links));
    }

    fn isolate(&mut self, n: i32, hold: i64) {
        let mut links = Vec::new();
        for other in (1..=self.cfg.nodes).chain([CONTROLLER, CLIENT]) {
            if other != n {
                links.push((n, other));
                links.push((other, n));
            }
        }
        self.block(links, hold);
    }

    fn crash(&mut self, n: i32, mode: CrashMode) {
        trace!(self, "node {n} crashes ({mode:?})");
        let node = self.nodes.get_mut(&n).expect("node exists");
        if self.cfg.stale_image && mode != CrashMode::KeepAll {
            // The quorum member's applied index is not synced: after a power loss its
            // image may come back without the last few batches it had applied (they are
            // re-applied when the leader tells it the commit again). Up to five, drawn from
            // the node's state rather than the run's random stream.
            let z = (self.now as u64) ^ ((n as u64) << 32) ^ node.applied as u64;
            let lost = (rng::mix(z) % 6) as usize;
            let keep = node.applied.saturating_sub(lost);
            if keep < node.applied {
                let mut image = MetadataImage::default();
                apply_batches(&mut image, &self.quorum.batches[..keep]);
                trace!(
                    self,
                    "node {n} comes back with {keep} of {} metadata batches",
                    node.applied
                );
                let node = self.nodes.get_mut(&n).expect("node exists");
                node.image = image;
                node.applied = keep;
                *self.stats.faults.entry("stale-image").or_insert(0) += 1;
            }
        }
        let node = self.nodes.get_mut(&n).expect("node exists");
        node.fs.crash(mode);
        node.up = false;
        node.partitions.clear();
        node.manager = None;
        node.roles.clear();
        node.waiting.clear();
        node.deleting.clear();
        node.checkpoint_failed = false;
        node.fetching.clear();
        node.calls.clear();
        node.unsettled.clear();
        node.broker_epoch = None;
        node.metadata_sent_ms = None;
        node.paused_until = 0;
        let back = self.now + self.rng.between(100, 4_000);
        self.schedule(back, Event::Restart(n));
    }

    fn restart(&mut self, n: i32) {
        let node = self.nodes.get_mut(&n).expect("node exists");
        if node.up {
            return;
        }
        if node.fs.stats().fail_writes.load(Ordering::SeqCst) {
            // Halted on a full disk: an operator (or systemd) tries again later.
            self.schedule(self.now + 500, Event::Restart(n));
            return;
        }
        node.up = true;
        node.incarnation += 1;
        node.next_register_ms = self.now;
        self.note(&[7, self.now, n as i64]);
        self.open_partitions(n);
        if self.verbose {
            for (p, partition) in &self.nodes[&n].partitions {
                let log = partition.log();
                eprintln!(
                    "t={:>6} node {n} restarts: partition {p} log end {} epoch {}",
                    self.now,
                    log.log_end_offset(),
                    log.latest_epoch()
                );
            }
        }
    }

    fn nemesis(&mut self) {
        let now = self.now;
        if now >= self.cfg.fault_ms - 1_000 {
            return;
        }
        const KINDS: [&str; 11] = [
            "power-loss",
            "kill",
            "pause",
            "isolate-node",
            "isolate-leader",
            "isolate-controller",
            "partition-halves",
            "partition-one-way",
            "lossy-network",
            "clock-jump",
            "slow-disk",
        ];
        let kind = if self.cfg.disk_full {
            *self.rng.pick(&[KINDS.as_slice(), &["disk-full"]].concat())
        } else {
            *self.rng.pick(&KINDS)
        };
        let up = self.up_nodes();
        let hold = self.rng.between(300, 6_000);
        let mut done = true;
        match kind {
            "power-loss" | "kill" if up.len() > 1 => {
                let n = *self.rng.pick(&up);
                let mode = if kind == "kill" {
                    CrashMode::KeepAll
                } else if self.rng.chance(0.5) {
                    CrashMode::LoseUnsynced
                } else {
                    CrashMode::Torn {
                        keep: self.rng.between(0, 4_096) as usize,
                    }
                };
                self.crash(n, mode);
            }
            "pause" if !up.is_empty() => {
                let n = *self.rng.pick(&up);
                self.nodes.get_mut(&n).expect("node exists").paused_until = now + hold;
            }
            "isolate-node" => {
                let n = self.rng.between(1, self.cfg.nodes as i64) as i32;
                self.isolate(n, hold);
            }
            "isolate-leader" => {
                let p = self.rng.between(0, self.cfg.partitions as i64 - 1) as i32;
                let leader = self.leader_of(p);
                if leader > 0 {
                    self.isolate(leader, hold);
                } else {
                    done = false;
                }
            }
            "isolate-controller" => {
                let links = (1..=self.cfg.nodes)
                    .flat_map(|n| [(n, CONTROLLER), (CONTROLLER, n)])
                    .collect();
                self.block(links, hold);
            }
            "partition-halves" => {
                // A minority of nodes on one side; the controller and the client on
                // either.
                let minority = (self.cfg.nodes - 1) / 2;
                let mut side: Vec<i32> = (1..=self.cfg.nodes).collect();
                let mut one = Vec::new();
                for _ in 0..minority {
                    let i = self.rng.between(0, side.len() as i64 - 1) as usize;
                    one.push(side.remove(i));
                }
                if self.rng.chance(0.5) {
                    one.push(CONTROLLER);
                } else {
                    side.push(CONTROLLER);
                }
                if self.rng.chance(0.5) {
                    one.push(CLIENT);
                } else {
                    side.push(CLIENT);
                }
                let links = one
                    .iter()
                    .flat_map(|&a| side.iter().flat_map(move |&b| [(a, b), (b, a)]))
                    .collect();
                self.block(links, hold);
            }
            "partition-one-way" => {
                let a = self.rng.between(1, self.cfg.nodes as i64) as i32;
                let others: Vec<i32> = (1..=self.cfg.nodes)
                    .filter(|&b| b != a)
                    .chain([CONTROLLER])
                    .collect();
                let b = *self.rng.pick(&others);
                self.block(vec![(a, b)], hold);
            }
            "lossy-network" => {
                self.net.drop = 0.2;
                self.net.duplicate = self.cfg.duplicate_rate;
                self.net.max_delay_ms = 400;
                self.schedule(now + hold, Event::EndLossy);
            }
            "clock-jump" => {
                let n = self.rng.between(1, self.cfg.nodes as i64) as i32;
                let jump = self.rng.between(-30_000, 120_000);
                self.nodes.get_mut(&n).expect("node exists").skew_ms += jump;
                self.schedule(now + hold, Event::EndClockJump(n, jump));
            }
            "slow-disk" => {
                let n = self.rng.between(1, self.cfg.nodes as i64) as i32;
                self.nodes.get_mut(&n).expect("node exists").disk_latency_ms = (50, 500);
                self.schedule(now + hold, Event::EndSlowDisk(n));
            }
            "disk-full" => {
                let n = self.rng.between(1, self.cfg.nodes as i64) as i32;
                let node = self.nodes.get(&n).expect("node exists");
                node.fs.stats().fail_writes.store(true, Ordering::SeqCst);
                self.schedule(now + hold, Event::EndDiskFull(n));
            }
            _ => done = false,
        }
        if done {
            trace!(self, "nemesis: {kind} (hold {hold})");
            *self.stats.faults.entry(kind).or_insert(0) += 1;
            self.note(&[8, now, kind.len() as i64]);
        }
        let next = now + self.rng.between(300, 2_500);
        self.schedule(next, Event::Nemesis);
    }

    fn heal(&mut self) {
        self.healed = true;
        self.net.blocked.clear();
        self.net.drop = 0.0;
        self.net.duplicate = 0.0;
        self.net.max_delay_ms = 3;
        let down: Vec<i32> = self
            .nodes
            .values()
            .filter(|n| !n.up)
            .map(|n| n.id)
            .collect();
        for node in self.nodes.values_mut() {
            node.paused_until = 0;
            node.skew_ms = 0;
            node.disk_latency_ms = (0, 2);
            node.fs.stats().fail_writes.store(false, Ordering::SeqCst);
        }
        for n in down {
            self.restart(n);
        }
    }

    // -------------------------------------------------------------- invariants

    /// Strong ISR: every replica the metadata lists as in sync holds every acknowledged
    /// write (checked on the replicas that are running).
    fn strong_isr_check(&mut self) {
        let Some(topic) = self.quorum.image.topic(TOPIC).cloned() else {
            return;
        };
        for (&p, image) in &topic.partitions {
            for &r in &image.isr {
                let Some(partition) = self
                    .nodes
                    .get(&r)
                    .filter(|n| n.up)
                    .and_then(|n| n.partitions.get(&p))
                    .cloned()
                else {
                    continue;
                };
                if let Ok(log) = log_values(&partition) {
                    self.checker.holds_acknowledged(
                        self.now,
                        &format!("in-sync replica {r}"),
                        p,
                        &log,
                    );
                }
            }
        }
    }

    fn finish(mut self) -> Outcome {
        let now = self.now;
        let topic = self.quorum.image.topic(TOPIC).cloned();
        for p in 0..self.cfg.partitions {
            let Some(image) = topic.as_ref().and_then(|t| t.partitions.get(&p)) else {
                continue;
            };
            let leader = image.leader;
            let leader_log = self
                .nodes
                .get(&leader)
                .and_then(|n| n.partitions.get(&p))
                .map(|partition| (log_values(partition), partition.high_watermark()));
            let Some((Ok(log), hw)) = leader_log else {
                self.checker.violations.push(format!(
                    "liveness: partition {p} has no serving leader after healing (leader {leader})"
                ));
                continue;
            };
            self.checker.final_log(now, p, &log);
            let leo = log.keys().next_back().map_or(0, |o| o + 1);
            if hw < leo {
                self.checker.violations.push(format!(
                    "liveness: partition {p}: high watermark {hw} below the log end {leo} after healing"
                ));
            }
            if image.isr.len() != image.replicas.len() {
                self.checker.violations.push(format!(
                    "liveness: partition {p}: ISR {:?} of replicas {:?} after healing",
                    image.isr, image.replicas
                ));
            }
            for &r in &image.replicas {
                let replica = self
                    .nodes
                    .get(&r)
                    .and_then(|n| n.partitions.get(&p))
                    .map(|partition| log_values(partition));
                // A DeleteRecords that went unanswered (its leader deposed) may have moved
                // some replicas' log starts and not others': the logs must match from the
                // later start on.
                let suffix = |a: &BTreeMap<i64, u64>, b: &BTreeMap<i64, u64>| {
                    let from = match (a.keys().next(), b.keys().next()) {
                        (Some(&x), Some(&y)) => x.max(y),
                        _ => return false,
                    };
                    self.checker.may_be_deleted(p, from - 1) && a.range(from..).eq(b.range(from..))
                };
                match replica {
                    Some(Ok(other)) if other == log || suffix(&log, &other) => {}
                    Some(Ok(other)) => {
                        let first = log
                            .iter()
                            .zip(other.iter())
                            .find(|(a, b)| a != b)
                            .map(|(a, b)| format!("{a:?} vs {b:?}"))
                            .unwrap_or_else(|| format!("lengths {} vs {}", log.len(), other.len()));
                        self.checker.violations.push(format!(
                            "log matching: partition {p}: replica {r} differs from leader {leader}: {first}"
                        ));
                    }
                    _ => self.checker.violations.push(format!(
                        "liveness: partition {p}: replica {r} not running after healing"
                    )),
                }
            }
        }
        if self.cfg.faults && self.acked_after_heal == 0 {
            self.checker
                .violations
                .push("liveness: no write acknowledged after healing".into());
        }
        self.stats.acknowledged = self.checker.acknowledged_count() as u64;
        self.stats.read = self.checker.read_count() as u64;
        let trace = self.trace ^ self.stats.events;
        Outcome {
            seed: 0,
            violations: self.checker.violations,
            trace,
            stats: self.stats,
        }
    }
}

/// The leader's side of one partition of a replica fetch (the broker's fetch handler for
/// replica ids): a diverged follower is told where to truncate; otherwise the batches from
/// its fetch offset, and its fetch offset counts for the high watermark.
fn serve_replica(
    partition: &Partition,
    replica: i32,
    at: FetchPosition,
    flaw: Option<Flaw>,
) -> Answer {
    if flaw != Some(Flaw::NoDivergenceCheck) {
        if let Some((epoch, end_offset)) =
            partition.diverging_epoch(at.last_fetched_epoch, at.fetch_offset)
        {
            return Answer::Diverging { epoch, end_offset };
        }
    }
    match partition.slice_replica(at.fetch_offset, FETCH_BYTES, true) {
        Ok(found) => {
            partition.follower_fetched(replica, at.fetch_offset, at.log_start_offset);
            let bytes = match found.range.map(|r| r.read()).transpose() {
                Ok(b) => b.unwrap_or_default(),
                Err(_) => return Answer::Refused,
            };
            Answer::Records {
                bytes,
                high_watermark: found.high_watermark,
                log_start_offset: found.log_start_offset,
            }
        }
        Err(StorageError::OffsetOutOfRange { .. }) => {
            let log = partition.log();
            Answer::OutOfRange {
                log_start_offset: log.log_start_offset(),
                high_watermark: log.high_watermark(),
            }
        }
        Err(_) => Answer::Refused,
    }
}
