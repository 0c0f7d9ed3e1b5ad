//! Running queries against the log: persistent queries (a task per query reading its
//! source topic from its committed positions, writing its sink topic, committing its
//! positions) and push queries (a task per subscriber reading from the end or the start,
//! sending rows to the HTTP response).
//!
//! Exactly-once: a persistent query reads its source read_committed and writes each pass's
//! outputs, state changes (changelog) and new input positions in one transaction under its
//! own transactional id. After any error or a restart it first calls InitProducerId (which
//! fences an older instance and aborts what it left open), then reads its state and
//! positions as committed, so no output is ever repeated or lost.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use strata_records::DecodedRecord;
use strata_records::Record;
use strata_sql::aggregate::{AggOutcome, AggregateQuery, GroupMap, GroupState};
use strata_sql::ast::SourceKind;
use strata_sql::eval::NoFunctions;
use strata_sql::join::{JoinQuery, JoinState, Replay};
use strata_sql::pipeline::{Outcome, RecordIn, TransientQuery};
use strata_sql::planner::Planned;
use strata_sql::value::Value;
use tokio::sync::{mpsc, watch};

use crate::groups::{StateCodec, TaskGroups};
use crate::join_rows::{JoinRows, RowsHandle, SharedRows};
use crate::join_sync::JoinSync;
use crate::log::{LogClient, LogError, TxnProducer};
use crate::store::StateStore;

/// How long a query waits after finding nothing new in any partition.
const IDLE_WAIT: Duration = Duration::from_millis(50);
/// How long a split join waits before fetching again while an input lags.
const HOLD_WAIT: Duration = Duration::from_millis(100);
/// Backoff after an error reaching the log.
const ERROR_BACKOFF: Duration = Duration::from_millis(500);
/// How long a restore waits for an open transaction on its changelog to end.
const RESTORE_STALL_MAX: Duration = Duration::from_secs(120);
/// How long an idle task sleeps before its chores (purge, store flush).
const IDLE_CHORES: Duration = Duration::from_secs(1);
/// How often an aggregation after a repartition deletes the repartition topic's records
/// it has committed positions past.
const REPARTITION_PURGE_INTERVAL: Duration = Duration::from_secs(10);
/// How often an aggregation's committed state changes go to its local state store.
const STORE_FLUSH_INTERVAL: Duration = Duration::from_secs(5);
/// A store flushed longer ago than the changelog keeps tombstones (`delete.retention.ms`,
/// the topic default of a day) may miss a deletion compaction has since dropped.
const STORE_TRUST_MS: i64 = 86_400_000;

/// Where a query starts in partitions it has no committed position for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reset {
    Earliest,
    Latest,
}

impl Reset {
    pub fn from_properties(props: &BTreeMap<String, String>) -> Reset {
        let v = props
            .get("auto.offset.reset")
            .or_else(|| props.get("ksql.streams.auto.offset.reset"));
        match v.map(|s| s.to_ascii_lowercase()) {
            Some(s) if s == "earliest" => Reset::Earliest,
            _ => Reset::Latest,
        }
    }

    fn list_offsets_timestamp(self) -> i64 {
        match self {
            Reset::Earliest => -2,
            Reset::Latest => -1,
        }
    }
}

/// A persistent query's state as SHOW QUERIES reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryState {
    Running,
    /// Retrying after an error reaching the log (the error's text).
    Error(String),
}

/// What the engine keeps of a running persistent query.
/// An aggregate query's groups, shared with pull queries.
pub type Groups = Arc<Mutex<TaskGroups>>;

/// Where a task's aggregation state lives: its local state store's directory (None: in
/// memory only) and how many clean groups it caches in memory.
#[derive(Debug, Clone, Default)]
pub struct StateOptions {
    pub dir: Option<std::path::PathBuf>,
    pub cache_groups: usize,
}

/// An aggregation's groups in their changelog form (what its store holds).
struct AggCodec(Arc<Planned>);

impl AggCodec {
    fn query(&self) -> Option<&AggregateQuery> {
        match &*self.0 {
            Planned::Aggregate(q) | Planned::JoinAggregate(_, q) => Some(q),
            _ => None,
        }
    }
}

impl StateCodec for AggCodec {
    fn encode(&self, state: &GroupState) -> String {
        self.query()
            .map(|q| q.state_json(state))
            .unwrap_or_default()
    }

    fn decode(&self, bytes: &[u8]) -> Option<GroupState> {
        self.query()?.state_from_json(bytes)
    }
}

pub struct PersistentHandle {
    pub state: Arc<Mutex<QueryState>>,
    /// The materialized table of an aggregate query.
    pub groups: Groups,
    /// Records read and written so far.
    pub counts: Arc<Mutex<(u64, u64)>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl PersistentHandle {
    /// Stops the query and waits for its task to end (its last positions committed).
    pub async fn terminate(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// The consumer group holding a persistent query's positions (the broker's metrics name
/// queries by this prefix: `strata_sql_query_lag`).
pub fn query_group(query_id: &str) -> String {
    format!("_strata_ksql_query_{query_id}")
}

/// The transactional id a persistent query writes under (one producer per query).
pub fn transactional_id(query_id: &str) -> String {
    format!("_strata_ksql_{query_id}")
}

/// Headers of a table change in a repartition topic: the row it replaces (its value and
/// its record's timestamp, 8 bytes big-endian), for the group that row leaves.
const OLD_ROW_HEADER: &str = "_strata_old";
const OLD_ROW_TIMESTAMP_HEADER: &str = "_strata_old_ts";

/// The compacted topic holding an aggregate query's state, one record per group.
pub fn changelog_topic(query_id: &str) -> String {
    format!("_strata_ksql_{query_id}_changelog")
}

/// One unit of a persistent query that runs on one engine: the whole query, or on a
/// cluster the share of it that reads one input partition (its changelog partition is the
/// same number). Each task writes under its own transactional id, so whichever engine takes
/// a task over fences the one that ran it before.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Task {
    pub query_id: String,
    /// The input partition it reads (None: every partition).
    pub partition: Option<i32>,
    pub stage: Stage,
}

/// What a task does with its partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// Runs the query on its source.
    Direct,
    /// An aggregation's first step when its groups are not its source's keys: writes each
    /// record, unchanged, to the query's repartition topic, in the partition of its group.
    Repartition,
    /// A repartitioned join's step for its second input: writes each record, unchanged,
    /// in the partition of its join key, to the query's table repartition topic for a
    /// table (compacted: it is the table the join reads), or to its right repartition
    /// topic for a stream. (Its task id keeps the letter `t`.)
    RepartitionRight,
    /// The aggregation (or join) itself, on one partition of the repartition topic(s).
    AfterRepartition,
}

impl Task {
    pub fn whole(query_id: &str) -> Task {
        Task {
            query_id: query_id.to_string(),
            partition: None,
            stage: Stage::Direct,
        }
    }

    pub fn part(query_id: &str, partition: i32, stage: Stage) -> Task {
        Task {
            query_id: query_id.to_string(),
            partition: Some(partition),
            stage,
        }
    }

    /// The task's name: the query id, `<query id>#<partition>`, or for a repartitioning
    /// step `<query id>#r<partition>`. Names its transactional id, its local state store
    /// and its place in the engines' assignment.
    pub fn id(&self) -> String {
        match (self.partition, self.stage) {
            (None, _) => self.query_id.clone(),
            (Some(p), Stage::Repartition) => format!("{}#r{p}", self.query_id),
            (Some(p), Stage::RepartitionRight) => format!("{}#t{p}", self.query_id),
            (Some(p), _) => format!("{}#{p}", self.query_id),
        }
    }

    /// Whether it holds part of the query's state (what pull queries read).
    pub fn holds_state(&self) -> bool {
        !matches!(self.stage, Stage::Repartition | Stage::RepartitionRight)
    }

    /// The changelog partition holding this task's state.
    fn changelog_partition(&self) -> i32 {
        self.partition.unwrap_or(0)
    }
}

/// The topic a repartitioned aggregation's records go through, by group.
pub fn repartition_topic(query_id: &str) -> String {
    format!("_strata_ksql_{query_id}_repartition")
}

/// A record as it came (stamped `timestamp_ms`), to `partition` of a repartition topic.
fn forward(
    r: &DecodedRecord,
    partition: i32,
    timestamp_ms: i64,
    outputs: &mut BTreeMap<i32, Vec<Record>>,
) {
    outputs.entry(partition).or_default().push(Record {
        key: r.key.clone(),
        value: r.value.clone(),
        headers: r.headers.clone(),
        timestamp_ms,
    });
}

/// The compacted topic a repartitioned join's table goes through, by key.
pub fn table_repartition_topic(query_id: &str) -> String {
    format!("_strata_ksql_{query_id}_repartition_table")
}

/// The topic a repartitioned stream–stream join's second stream goes through, by join
/// value (purged below what the join's windows can still need).
pub fn right_repartition_topic(query_id: &str) -> String {
    format!("_strata_ksql_{query_id}_repartition_right")
}

/// The repartition topic of a split join's second input.
pub fn second_repartition_topic(query_id: &str, j: &JoinQuery) -> String {
    if j.second_is_table() {
        table_repartition_topic(query_id)
    } else {
        right_repartition_topic(query_id)
    }
}

/// The topics a task reads: its query's inputs, or one of them for a repartitioning step
/// (a join's stream, or its table), or the repartition topic(s) after one.
pub fn stage_inputs(task: &Task, plan: &Planned) -> Vec<String> {
    let inputs = input_topics(plan);
    match (task.stage, plan) {
        (Stage::Direct, _) => inputs,
        (Stage::Repartition, Planned::Join(_)) => inputs.into_iter().take(1).collect(),
        (Stage::Repartition, _) => inputs,
        (Stage::RepartitionRight, _) => inputs.into_iter().skip(1).take(1).collect(),
        (Stage::AfterRepartition, Planned::Join(j)) => join_topics(task, j),
        (Stage::AfterRepartition, _) => vec![repartition_topic(&task.query_id)],
    }
}

/// The topic each of a join's inputs comes from for this task (after a repartition, the
/// repartition topics stand for the stream and the table).
fn join_topics(task: &Task, j: &JoinQuery) -> Vec<String> {
    if task.stage == Stage::AfterRepartition {
        vec![
            repartition_topic(&task.query_id),
            second_repartition_topic(&task.query_id, j),
        ]
    } else {
        j.topics().into_iter().map(str::to_string).collect()
    }
}

/// Starts a persistent query's task.
pub fn start_persistent(
    bootstrap: &str,
    task: Task,
    query: Arc<Planned>,
    sink_topic: String,
    reset: Reset,
    state_options: StateOptions,
    max_task_idle: Duration,
) -> PersistentHandle {
    let (stop, stopped) = watch::channel(false);
    let state = Arc::new(Mutex::new(QueryState::Running));
    let counts = Arc::new(Mutex::new((0, 0)));
    let groups: Groups = Arc::default();
    // A repartitioning step writes the repartition topic; the aggregation after it reads
    // that topic from its start (nothing written there may be skipped).
    let (sink_topic, reset) = match task.stage {
        Stage::Direct => (sink_topic, reset),
        Stage::Repartition => (repartition_topic(&task.query_id), reset),
        // A join's table whole: its rows from the start, whatever the query's reset.
        Stage::RepartitionRight => match &*query {
            Planned::Join(j) if !j.second_is_table() => {
                (right_repartition_topic(&task.query_id), reset)
            }
            _ => (table_repartition_topic(&task.query_id), Reset::Earliest),
        },
        Stage::AfterRepartition => (sink_topic, Reset::Earliest),
    };
    // A split join keeps its two inputs in step.
    let sync = match (&*query, task.stage) {
        (Planned::Join(j), Stage::AfterRepartition) => {
            let sources = input_topics(&query);
            match (j.input_skew_tolerance(), sources.as_slice()) {
                (Some(tolerance), [left, right]) => Some(JoinSync::new(
                    [
                        repartition_topic(&task.query_id),
                        second_repartition_topic(&task.query_id, j),
                    ],
                    [left.clone(), right.clone()],
                    query_group(&task.query_id),
                    tolerance,
                    max_task_idle,
                )),
                _ => None,
            }
        }
        _ => None,
    };
    let runner = Persistent {
        bootstrap: bootstrap.to_string(),
        log: LogClient::new(bootstrap),
        group: query_group(&task.query_id),
        query,
        groups: groups.clone(),
        txn: None,
        sequences: BTreeMap::new(),
        sink_topic,
        reset,
        state: state.clone(),
        counts: counts.clone(),
        id: task.id(),
        task,
        join_state: JoinState::default(),
        join_rows: None,
        last_join_flush: std::time::Instant::now(),
        state_options,
        store_failed: false,
        last_flush: std::time::Instant::now(),
        last_purge: std::time::Instant::now(),
        purged: BTreeMap::new(),
        table_rows: HashMap::new(),
        sync,
    };
    let task = tokio::spawn(runner.run(stopped));
    PersistentHandle {
        state,
        groups,
        counts,
        stop,
        task,
    }
}

struct Persistent {
    bootstrap: String,
    log: LogClient,
    group: String,
    query: Arc<Planned>,
    /// An aggregate query's groups (restored from its changelog at start).
    groups: Groups,
    /// The query's transactional producer and its next sequence per partition written.
    txn: Option<TxnProducer>,
    sequences: BTreeMap<(String, i32), i32>,
    sink_topic: String,
    reset: Reset,
    state: Arc<Mutex<QueryState>>,
    counts: Arc<Mutex<(u64, u64)>>,
    /// The task's name (logs, transactional id, state store).
    id: String,
    task: Task,
    /// A join's tables and windows (rebuilt from its inputs at start).
    join_state: JoinState,
    /// A stream–table join's table rows in the task's join store, when it has one.
    join_rows: Option<SharedRows>,
    last_join_flush: std::time::Instant,
    /// Where an aggregation's local state store lives, and its cache.
    state_options: StateOptions,
    /// The store failed once: the task keeps its state in memory from then on.
    store_failed: bool,
    last_flush: std::time::Instant,
    /// When an aggregation after a repartition last purged what it had consumed, and the
    /// positions it purged below.
    last_purge: std::time::Instant,
    purged: Positions,
    /// A repartitioning step of a table's aggregation: the table's rows in its input
    /// partition (key → value, timestamp), rebuilt from the input at start, so that each
    /// change can carry the row it replaces to that row's group.
    table_rows: HashMap<Vec<u8>, (Bytes, i64)>,
    /// A split join's wait for a lagging input ([`JoinSync`]).
    sync: Option<JoinSync>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The partition a keyed output record goes to (Kafka's default partitioner, as Kafka
/// Streams writes ksqlDB's outputs), or the input's for a record without a key.
fn output_partition(key: Option<&[u8]>, input_partition: i32, partitions: i32) -> i32 {
    match key {
        Some(k) => strata_client::partition_for_key(k, partitions),
        None => input_partition % partitions.max(1),
    }
}

/// Brings an aggregate task's groups to what its changelog holds: its local state store
/// plus the changelog's tail past the store's offset when the store can be trusted, else
/// the changelog from its start (the store cleared and refilled). The store is flushed as
/// the replay goes, whenever the cache is full, so memory stays bounded; at the end it is
/// at the changelog's end. Pull queries see the groups as they are restored.
async fn restore(
    log: &mut LogClient,
    task: &Task,
    q: &AggregateQuery,
    groups: &Groups,
) -> Result<(), LogError> {
    let query_id = task.id();
    let topic = changelog_topic(&task.query_id);
    let partition = task.changelog_partition();
    let start = log.offset(&topic, partition, -2).await?;
    let end = log.offset(&topic, partition, -1).await?;
    let mut at = start;
    let mut from_store = None;
    {
        let mut g = groups.lock().expect("groups lock");
        g.reset();
        match g.store_meta() {
            Some(m)
                if (start..=end).contains(&m.changelog_offset)
                    && now_ms() - m.flushed_at_ms < STORE_TRUST_MS =>
            {
                at = m.changelog_offset;
                from_store = Some(g.count());
            }
            Some(m) => {
                tracing::warn!(
                    query = %query_id, store_offset = m.changelog_offset, start, end,
                    "state store out of step with its changelog: restoring from the changelog"
                );
                g.clear();
            }
            None => g.clear(),
        }
        if let Some(e) = g.take_failure() {
            tracing::warn!(query = %query_id, error = %e, "state store unreadable: restoring from the changelog");
            at = start;
            from_store = None;
        }
    }
    let mut replayed = 0u64;
    // The latest timestamp among the replayed groups (windows' stream time).
    let mut latest = i64::MIN;
    // A transaction a previous owner left open holds the last stable offset back until
    // the coordinator aborts it (our InitProducerId asked it to): wait for it rather than
    // stop short with part of the state.
    let mut stalled_since: Option<std::time::Instant> = None;
    while at < end {
        let (records, next) = log.fetch_committed(&topic, partition, at).await?;
        if next <= at {
            let since = *stalled_since.get_or_insert_with(std::time::Instant::now);
            if since.elapsed() > RESTORE_STALL_MAX {
                return Err(LogError::Records(format!(
                    "{topic}: the last stable offset stayed at {at} (end {end}) for {} s",
                    RESTORE_STALL_MAX.as_secs()
                )));
            }
            tokio::time::sleep(IDLE_WAIT).await;
            continue;
        }
        stalled_since = None;
        at = next;
        cpu_bound(|| {
            let mut g = groups.lock().expect("groups lock");
            for r in records {
                let Some(key) = r.key else { continue };
                if key.is_empty() {
                    continue;
                }
                replayed += 1;
                match r.value.as_deref().and_then(|v| q.state_from_json(v)) {
                    Some(st) => {
                        latest = latest.max(st.timestamp);
                        g.insert(key.to_vec(), st);
                    }
                    None => {
                        g.remove(key.as_ref());
                    }
                }
            }
            if g.flush_due() {
                g.flush(next, now_ms());
            }
        });
    }
    let mut g = groups.lock().expect("groups lock");
    // Stream time (windows' grace): the store keeps it; else the latest group's.
    if q.window.is_some() {
        let stream_time = strata_sql::aggregate::STREAM_TIME_KEY;
        let stored = g.get(stream_time).map(|s| s.timestamp);
        if stored.is_none() && from_store.is_some() {
            g.for_each(&mut |_, st| {
                latest = latest.max(st.timestamp);
                true
            });
        }
        let t = stored.unwrap_or(i64::MIN).max(latest);
        if t > i64::MIN {
            g.insert(
                stream_time.to_vec(),
                GroupState {
                    accs: Vec::new(),
                    timestamp: t,
                },
            );
        }
    }
    cpu_bound(|| g.flush(end, now_ms()));
    if let Some(e) = g.take_failure() {
        return Err(LogError::Records(format!("state store: {e}")));
    }
    tracing::info!(
        query = %query_id,
        groups = g.count(),
        from_store = from_store.unwrap_or(0),
        replayed,
        cached = g.cached_len(),
        changelog_start = start,
        changelog_end = end,
        "aggregate state restored"
    );
    Ok(())
}

/// Whether each input partition of a query can be processed alone, as one task: what the
/// query writes for a record depends on that record's partition only (of each input, for
/// a join). So are stateless queries, aggregations grouped by exactly their source's key
/// columns (a group's records share a key, so a partition, as Kafka's default partitioner
/// places them) and joins on their inputs' keys ([`JoinQuery::co_partitioned`], given
/// inputs of as many partitions). Other groupings and joins combine records of several
/// partitions; they run whole (or through a repartition topic, see [`Stage`]).
pub fn partition_local(q: &Planned) -> bool {
    match q {
        Planned::Stateless(_) => true,
        Planned::Aggregate(a) => !a.source.key.is_empty()
            && a.group_by.len() == a.source.key.len()
            && a.group_by.iter().zip(&a.source.key).all(
                |(g, k)| matches!(g, strata_sql::ast::Expr::Column { name, .. } if *name == k.name),
            ),
        Planned::Join(j) => j.co_partitioned,
        Planned::JoinAggregate(..) => false,
    }
}

/// The topics a query reads (a join's two, once each).
pub(crate) fn input_topics(q: &Planned) -> Vec<String> {
    let mut topics: Vec<String> = match q {
        Planned::Stateless(q) => vec![q.source.topic.clone()],
        Planned::Aggregate(q) => vec![q.source.topic.clone()],
        Planned::Join(j) | Planned::JoinAggregate(j, _) => {
            j.topics().iter().map(|t| t.to_string()).collect()
        }
    };
    let mut seen = std::collections::BTreeSet::new();
    topics.retain(|t| seen.insert(t.clone()));
    topics
}

/// Positions by topic and partition.
type Positions = BTreeMap<(String, i32), i64>;

/// Records of several partitions in timestamp order, each partition's own order kept (as
/// Kafka Streams picks the partition whose next record is oldest); each with the index of
/// its partition in `parts`.
fn merge_by_timestamp(parts: Vec<Vec<DecodedRecord>>) -> Vec<(usize, DecodedRecord)> {
    let mut heads: Vec<std::collections::VecDeque<DecodedRecord>> =
        parts.into_iter().map(Into::into).collect();
    let mut out = Vec::new();
    loop {
        let next = heads
            .iter()
            .enumerate()
            .filter_map(|(i, q)| q.front().map(|r| (r.timestamp_ms, i)))
            .min();
        let Some((_, i)) = next else { break };
        let r = heads[i].pop_front().expect("non-empty");
        out.push((i, r));
    }
    out
}

/// One pass over a query's inputs: each partition's new records (read_committed), and the
/// positions after them.
struct Fetched {
    parts: Vec<((String, i32), Vec<DecodedRecord>)>,
    next: Positions,
}

/// Reads a query's inputs one pass ahead: the next pass is fetched (over its own
/// connections) while the query processes and commits the one before. Stops when dropped.
struct Prefetch {
    rx: mpsc::Receiver<Result<Fetched, LogError>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Prefetch {
    fn start(bootstrap: &str, from: Positions) -> Prefetch {
        let (tx, rx) = mpsc::channel(1);
        let mut log = LogClient::new(bootstrap);
        let task = tokio::spawn(async move {
            let mut at = from;
            loop {
                let mut parts = Vec::with_capacity(at.len());
                let mut next = at.clone();
                let mut any = false;
                for (tp, &offset) in &at {
                    match log.fetch_committed(&tp.0, tp.1, offset).await {
                        Ok((records, after)) => {
                            any |= !records.is_empty();
                            next.insert(tp.clone(), after.max(offset));
                            parts.push((tp.clone(), records));
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e)).await;
                            return;
                        }
                    }
                }
                if !any {
                    // Nothing to process; skip past aborted records and markers quietly.
                    at = next;
                    tokio::select! {
                        _ = tokio::time::sleep(IDLE_WAIT) => {}
                        _ = tx.closed() => return,
                    }
                    continue;
                }
                at = next.clone();
                if tx.send(Ok(Fetched { parts, next })).await.is_err() {
                    return;
                }
            }
        });
        Prefetch { rx, task }
    }
}

/// Runs CPU-bound work on a runtime worker without stalling the tasks queued behind it
/// (they move to another worker), where the runtime allows it.
fn cpu_bound<T>(f: impl FnOnce() -> T) -> T {
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi_thread {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}

/// Below this many records a stateless pass runs on one thread.
const PARALLEL_MIN_RECORDS: usize = 4096;

/// A stateless query over a run of records (of the partitions `tps`): the records it
/// writes, with their output partitions, in input order.
fn stateless_outputs(
    q: &strata_sql::pipeline::StreamQuery,
    tps: &[(String, i32)],
    records: &[(usize, DecodedRecord)],
    sink_partitions: i32,
    id: &str,
) -> Vec<(i32, Record)> {
    let mut out = Vec::with_capacity(records.len());
    for (i, r) in records {
        let p = tps[*i].1;
        let input = RecordIn {
            key: r.key.as_deref(),
            value: r.value.as_deref(),
            timestamp: r.timestamp_ms,
            partition: p,
            offset: r.offset,
        };
        match q.process(input, &NoFunctions) {
            Outcome::Emit(o) => out.push((
                output_partition(o.key.as_deref(), p, sink_partitions),
                Record {
                    key: o.key.map(Bytes::from),
                    value: o.value.map(Bytes::from),
                    headers: Vec::new(),
                    timestamp_ms: o.timestamp,
                },
            )),
            Outcome::Filtered => {}
            Outcome::Skipped(why) => {
                tracing::debug!(query = %id, partition = p, offset = r.offset, %why, "record skipped");
            }
        }
    }
    out
}

impl Persistent {
    async fn run(mut self, mut stopped: watch::Receiver<bool>) {
        let mut positions: Option<Positions> = None;
        let mut prefetch: Option<Prefetch> = None;
        let mut sink_partitions = 0;
        let inputs = stage_inputs(&self.task, &self.query);
        loop {
            if *stopped.borrow() {
                if let Some(at) = &positions {
                    let _ = self.flush_store().await;
                    let _ = self.flush_join_store(at);
                }
                return;
            }
            let step = async {
                if positions.is_none() {
                    let topics = self.log.topics().await?;
                    sink_partitions = *topics.get(&self.sink_topic).ok_or_else(|| {
                        LogError::Records(format!("sink topic {} does not exist", self.sink_topic))
                    })?;
                    // First fence any earlier instance of the task and end what it left
                    // open (a commit under way completes), then read state and positions
                    // as committed.
                    self.txn = Some(
                        self.log
                            .init_transactions(&transactional_id(&self.id))
                            .await?,
                    );
                    let committed = self
                        .log
                        .committed(&self.group, &inputs, self.task.partition)
                        .await?;
                    let mut start = BTreeMap::new();
                    for topic in &inputs {
                        let partitions = *topics.get(topic).ok_or_else(|| {
                            LogError::Records(format!("source topic {topic} does not exist"))
                        })?;
                        let mine: Vec<i32> = match self.task.partition {
                            None => (0..partitions).collect(),
                            Some(p) if p < partitions => vec![p],
                            Some(p) => {
                                return Err(LogError::Records(format!(
                                    "source topic {topic} has no partition {p}"
                                )))
                            }
                        };
                        for p in mine {
                            let at = match committed.get(&(topic.clone(), p)) {
                                Some(&o) => o,
                                None => {
                                    self.log
                                        .offset(topic, p, self.reset.list_offsets_timestamp())
                                        .await?
                                }
                            };
                            start.insert((topic.clone(), p), at);
                        }
                    }
                    self.sequences.clear();
                    if self.task.stage == Stage::Repartition {
                        if let Planned::Aggregate(q) = &*self.query {
                            if q.source.kind == SourceKind::Table {
                                self.table_rows =
                                    replay_table(&mut self.log, &self.id, &start).await?;
                            }
                        }
                    }
                    let stateful = self.task.holds_state()
                        && matches!(
                            *self.query,
                            Planned::Aggregate(_) | Planned::JoinAggregate(..)
                        );
                    if stateful {
                        self.open_store();
                    }
                    let query = self.query.clone();
                    match &*query {
                        Planned::Aggregate(_) if !stateful => {}
                        Planned::Aggregate(q) => {
                            restore(&mut self.log, &self.task, q, &self.groups).await?;
                        }
                        Planned::Join(_) if !self.task.holds_state() => {}
                        Planned::Join(j) => {
                            self.open_join_store(j);
                            self.join_state = replay_join(
                                &mut self.log,
                                &self.task,
                                j,
                                &committed,
                                self.join_rows.as_ref(),
                            )
                            .await?;
                            self.store_failure()?;
                        }
                        Planned::JoinAggregate(j, q) => {
                            restore(&mut self.log, &self.task, q, &self.groups).await?;
                            self.open_join_store(j);
                            self.join_state = replay_join(
                                &mut self.log,
                                &self.task,
                                j,
                                &committed,
                                self.join_rows.as_ref(),
                            )
                            .await?;
                            self.store_failure()?;
                        }
                        Planned::Stateless(_) => {}
                    }
                    prefetch = Some(Prefetch::start(&self.bootstrap, start.clone()));
                    positions = Some(start);
                    *self.state.lock().expect("state lock") = QueryState::Running;
                }
                let reader = prefetch.as_mut().expect("started above");
                // Idle, the task still wakes up now and then to purge and flush.
                let fetched = tokio::select! {
                    f = reader.rx.recv() => Some(f.ok_or_else(|| {
                        LogError::Records("the query's input reader stopped".into())
                    })??),
                    _ = stopped.changed() => return Ok::<(), LogError>(()),
                    _ = tokio::time::sleep(IDLE_CHORES) => None,
                };
                let at = positions.as_mut().expect("set above");
                if let Some(mut fetched) = fetched {
                    let held = match self.sync.as_mut() {
                        Some(sync) => {
                            sync.hold_back(&mut self.log, &mut fetched.parts, &mut fetched.next)
                                .await
                        }
                        None => false,
                    };
                    if fetched.parts.iter().any(|(_, r)| !r.is_empty()) || fetched.next != *at {
                        self.poll_once(at, sink_partitions, fetched).await?;
                    }
                    if held {
                        // Fetched again, from what was committed, in a moment.
                        prefetch = None;
                        tokio::select! {
                            _ = tokio::time::sleep(HOLD_WAIT) => {}
                            _ = stopped.changed() => return Ok(()),
                        }
                        prefetch = Some(Prefetch::start(&self.bootstrap, at.clone()));
                    }
                }
                if self.task.stage == Stage::AfterRepartition
                    && self.last_purge.elapsed() >= REPARTITION_PURGE_INTERVAL
                {
                    self.last_purge = std::time::Instant::now();
                    self.purge(at).await;
                }
                let (dirty, due) = {
                    let g = self.groups.lock().expect("groups lock");
                    (g.has_store() && g.dirty_len() > 0, g.flush_due())
                };
                if due || (dirty && self.last_flush.elapsed() >= STORE_FLUSH_INTERVAL) {
                    self.flush_store().await?;
                }
                if let Some(rows) = &self.join_rows {
                    let (dirty, due) = {
                        let r = rows.lock().expect("join rows lock");
                        (r.has_store() && r.dirty_len() > 0, r.flush_due())
                    };
                    if due || (dirty && self.last_join_flush.elapsed() >= STORE_FLUSH_INTERVAL) {
                        self.flush_join_store(at)?;
                    }
                }
                Ok(())
            };
            match step.await {
                Ok(()) => {
                    *self.state.lock().expect("state lock") = QueryState::Running;
                }
                Err(e) => {
                    tracing::warn!(query = %self.id, error = %e, "persistent query: retrying after an error");
                    *self.state.lock().expect("state lock") = QueryState::Error(e.to_string());
                    positions = None;
                    prefetch = None;
                    tokio::select! {
                        _ = tokio::time::sleep(ERROR_BACKOFF) => {}
                        _ = stopped.changed() => {}
                    }
                }
            }
        }
    }

    /// Opens the task's local state store, once, under its groups (a file that cannot be
    /// opened is removed and created again; failing that, or after a store failure, the
    /// task keeps its groups in memory).
    fn open_store(&mut self) {
        let Some(dir) = &self.state_options.dir else {
            return;
        };
        let mut groups = self.groups.lock().expect("groups lock");
        if groups.has_store() {
            return;
        }
        if self.store_failed {
            crate::store::remove_file(&crate::store::store_path(dir, &self.id));
            return;
        }
        let opened = StateStore::open(dir, &self.id).or_else(|e| {
            tracing::warn!(query = %self.id, error = %e, "state store unusable: starting it over");
            crate::store::remove_file(&crate::store::store_path(dir, &self.id));
            StateStore::open(dir, &self.id)
        });
        match opened {
            Ok(s) => {
                *groups = TaskGroups::with_store(
                    s,
                    Arc::new(AggCodec(self.query.clone())),
                    self.state_options.cache_groups,
                )
            }
            Err(e) => {
                tracing::warn!(query = %self.id, error = %e, "running without a local state store")
            }
        }
    }

    /// A store failure seen by the groups or the join's rows: the task starts over, in
    /// memory from now on.
    fn store_failure(&mut self) -> Result<(), LogError> {
        if let Some(e) = self.groups.lock().expect("groups lock").take_failure() {
            self.store_failed = true;
            return Err(LogError::Records(format!("state store: {e}")));
        }
        if let Some(rows) = &self.join_rows {
            if let Some(e) = rows.lock().expect("join rows lock").take_failure() {
                return Err(LogError::Records(format!("join store: {e}")));
            }
        }
        Ok(())
    }

    /// Opens the task's join store, once, for a join whose table rows may live there
    /// ([`JoinQuery::table_in_store`]; a file that cannot be opened is removed and created
    /// again; failing that, the rows stay in memory, in the join state).
    fn open_join_store(&mut self, j: &JoinQuery) {
        let Some(dir) = &self.state_options.dir else {
            return;
        };
        if self.join_rows.is_some() || !j.table_in_store() {
            return;
        }
        let name = crate::store::join_store_name(&self.id);
        let opened = StateStore::open(dir, &name).or_else(|e| {
            tracing::warn!(query = %self.id, error = %e, "join store unusable: starting it over");
            crate::store::remove_file(&crate::store::store_path(dir, &name));
            StateStore::open(dir, &name)
        });
        match opened {
            Ok(s) => {
                self.join_rows = Some(Arc::new(Mutex::new(JoinRows::with_store(
                    s,
                    self.state_options.cache_groups,
                ))))
            }
            Err(e) => {
                tracing::warn!(query = %self.id, error = %e, "running the join without a local store")
            }
        }
    }

    /// Writes the join's table changes to its store, covering the table partitions up to
    /// the committed positions `at` (this runs between passes: every change is committed).
    fn flush_join_store(&mut self, at: &Positions) -> Result<(), LogError> {
        self.last_join_flush = std::time::Instant::now();
        let (Some(rows), Planned::Join(j) | Planned::JoinAggregate(j, _)) =
            (&self.join_rows, &*self.query)
        else {
            return Ok(());
        };
        let tables = table_positions(&self.task, j, at, None);
        cpu_bound(|| {
            rows.lock()
                .expect("join rows lock")
                .flush(&tables, now_ms())
        });
        self.store_failure()
    }

    /// Writes the changes not yet in the store, with the changelog's end (every change is
    /// committed: this runs between passes).
    async fn flush_store(&mut self) -> Result<(), LogError> {
        self.last_flush = std::time::Instant::now();
        if !self.groups.lock().expect("groups lock").has_store() {
            return Ok(());
        }
        let end = match self
            .log
            .offset(
                &changelog_topic(&self.task.query_id),
                self.task.changelog_partition(),
                -1,
            )
            .await
        {
            Ok(e) => e,
            Err(e) => {
                tracing::debug!(query = %self.id, error = %e, "state store flush postponed");
                return Ok(());
            }
        };
        let groups = &self.groups;
        cpu_bound(|| groups.lock().expect("groups lock").flush(end, now_ms()));
        // A failed write dropped the store and the groups with it: the task restores them
        // from the changelog, in memory.
        self.store_failure()
    }

    /// One record through the query: the records it writes (partition, record) and the
    /// state changes for the changelog.
    fn process(
        &mut self,
        tp: &(String, i32),
        r: &DecodedRecord,
        sink_partitions: i32,
        outputs: &mut BTreeMap<i32, Vec<Record>>,
        changelog: &mut Vec<Record>,
    ) {
        let p = tp.1;
        let input = RecordIn {
            key: r.key.as_deref(),
            value: r.value.as_deref(),
            timestamp: r.timestamp_ms,
            partition: p,
            offset: r.offset,
        };
        let mut emit = |key: Option<Vec<u8>>,
                        value: Option<Vec<u8>>,
                        timestamp: i64,
                        placed_by: Option<&[u8]>| {
            let partition = output_partition(placed_by.or(key.as_deref()), p, sink_partitions);
            outputs.entry(partition).or_default().push(Record {
                key: key.map(Bytes::from),
                value: value.map(Bytes::from),
                headers: Vec::new(),
                timestamp_ms: timestamp,
            });
        };
        if let (Stage::Repartition | Stage::RepartitionRight, Planned::Join(j)) =
            (self.task.stage, &*self.query)
        {
            let side = usize::from(self.task.stage == Stage::RepartitionRight);
            if side == 1 && j.second_is_table() {
                // A join's table row as it came, in the partition of its key (Kafka's
                // default partitioner, whatever placed it in the table's topic).
                let partition = match r.key.as_deref() {
                    Some(k) => strata_client::partition_for_key(k, sink_partitions),
                    None => p % sink_partitions.max(1),
                };
                forward(r, partition, r.timestamp_ms, outputs);
                return;
            }
            // A join's stream record as it came, in the partition of its join key (for a
            // stream–table join, of the table key it looks up), stamped with its event
            // time so that the join's replay finds its window by the log's time index.
            // One that meets nothing (no join key, or unreadable) stays in its
            // partition's number.
            let (partition, timestamp) = match j.join_key(side, input, &NoFunctions) {
                Some((Some(k), t)) => (strata_client::partition_for_key(&k, sink_partitions), t),
                Some((None, t)) => (p % sink_partitions.max(1), t),
                None => (p % sink_partitions.max(1), r.timestamp_ms),
            };
            forward(r, partition, timestamp, outputs);
            return;
        }
        if self.task.stage == Stage::Repartition {
            // The record as it came, in the partition of its group.
            let query = self.query.clone();
            if let Planned::Aggregate(q) = &*query {
                if q.source.kind == SourceKind::Table {
                    self.repartition_table_change(q, input, r, sink_partitions, outputs);
                } else if let Some(group) = q.group_key_of(input, &NoFunctions) {
                    let partition = strata_client::partition_for_key(&group, sink_partitions);
                    forward(r, partition, r.timestamp_ms, outputs);
                }
            }
            return;
        }
        match &*self.query {
            Planned::Stateless(q) => {
                for (partition, record) in stateless_outputs(
                    q,
                    std::slice::from_ref(tp),
                    &[(0, r.clone())],
                    sink_partitions,
                    &self.id,
                ) {
                    outputs.entry(partition).or_default().push(record);
                }
            }
            Planned::Join(j) => {
                for (i, topic) in join_topics(&self.task, j).into_iter().enumerate() {
                    if topic != tp.0 {
                        continue;
                    }
                    match j.process(i, input, &mut self.join_state, &NoFunctions) {
                        Ok(records) => {
                            for out in records {
                                emit(out.key, out.value, out.timestamp, None);
                            }
                        }
                        Err(why) => {
                            tracing::debug!(query = %self.id, partition = p, offset = r.offset, %why, "record skipped");
                        }
                    }
                }
            }
            Planned::Aggregate(q) => {
                let groups = &mut *self.groups.lock().expect("groups lock");
                let outcome = if self.task.stage == Stage::AfterRepartition
                    && q.source.kind == SourceKind::Table
                {
                    let header = |name: &str| {
                        r.headers
                            .iter()
                            .find(|(k, _)| k == name)
                            .and_then(|(_, v)| v.as_deref())
                    };
                    let old = header(OLD_ROW_HEADER).map(|value| RecordIn {
                        value: Some(value),
                        timestamp: header(OLD_ROW_TIMESTAMP_HEADER)
                            .and_then(|t| <[u8; 8]>::try_from(t).ok())
                            .map_or(r.timestamp_ms, i64::from_be_bytes),
                        ..input
                    });
                    let input = RecordIn {
                        value: r.value.as_deref(),
                        ..input
                    };
                    q.process_table_change(input, old, groups, &NoFunctions)
                } else {
                    q.process(input, groups, &NoFunctions)
                };
                aggregate_outcome(
                    q,
                    outcome,
                    r.timestamp_ms,
                    changelog,
                    &mut emit,
                    &self.id,
                    p,
                    r.offset,
                );
            }
            Planned::JoinAggregate(j, q) => {
                for (i, topic) in j.topics().into_iter().enumerate() {
                    if topic != tp.0 {
                        continue;
                    }
                    let rows = match j.process_rows(i, input, &mut self.join_state, &NoFunctions) {
                        Ok(rows) => rows,
                        Err(why) => {
                            tracing::debug!(query = %self.id, partition = p, offset = r.offset, %why, "record skipped");
                            continue;
                        }
                    };
                    for (values, timestamp) in rows {
                        let row = strata_sql::aggregate::Named {
                            names: j.joined_names(),
                            values: &values,
                        };
                        let outcome = match q.process_row(
                            &row,
                            timestamp,
                            &mut *self.groups.lock().expect("groups lock"),
                            &NoFunctions,
                        ) {
                            Ok(o) => o,
                            Err(why) => AggOutcome::Skipped(why),
                        };
                        aggregate_outcome(
                            q, outcome, timestamp, changelog, &mut emit, &self.id, p, r.offset,
                        );
                    }
                }
            }
        }
    }

    /// A repartitioning step of a table's aggregation: one change of the table to the
    /// repartition topic, where its groups are. A row that stays in its group goes there
    /// once, carrying the row it replaces (headers); a row that moves goes as a tombstone
    /// carrying the old row to the old group, and as itself to the new one.
    fn repartition_table_change(
        &mut self,
        q: &AggregateQuery,
        input: RecordIn<'_>,
        r: &DecodedRecord,
        partitions: i32,
        outputs: &mut BTreeMap<i32, Vec<Record>>,
    ) {
        let Some(key) = r.key.as_ref().filter(|k| !k.is_empty()) else {
            return; // a table's row has a key (ksqlDB drops the others)
        };
        let old = self.table_rows.get(key.as_ref()).cloned();
        let old_in = old.as_ref().map(|(value, timestamp)| RecordIn {
            value: Some(value),
            timestamp: *timestamp,
            ..input
        });
        let (leaves, joins) = q.table_groups(input, old_in, &NoFunctions);
        let old_headers = || match &old {
            Some((value, timestamp)) => vec![
                (OLD_ROW_HEADER.to_string(), Some(value.clone())),
                (
                    OLD_ROW_TIMESTAMP_HEADER.to_string(),
                    Some(Bytes::copy_from_slice(&timestamp.to_be_bytes())),
                ),
            ],
            None => Vec::new(),
        };
        let mut send = |group: &[u8], value: Option<Bytes>, headers| {
            let partition = strata_client::partition_for_key(group, partitions);
            outputs.entry(partition).or_default().push(Record {
                key: Some(key.clone()),
                value,
                headers,
                timestamp_ms: r.timestamp_ms,
            });
        };
        match (&leaves, &joins) {
            (Some(a), Some(b)) if a == b => send(b, r.value.clone(), old_headers()),
            _ => {
                if let Some(a) = &leaves {
                    send(a, None, old_headers());
                }
                if let Some(b) = &joins {
                    send(b, r.value.clone(), Vec::new());
                }
            }
        }
        match &r.value {
            Some(v) => {
                self.table_rows
                    .insert(key.to_vec(), (v.clone(), r.timestamp_ms));
            }
            None => {
                self.table_rows.remove(key.as_ref());
            }
        }
    }

    /// One pass over the input partitions: processes what was read, writes the outputs,
    /// then commits the positions, all in one transaction.
    async fn poll_once(
        &mut self,
        positions: &mut Positions,
        sink_partitions: i32,
        fetched: Fetched,
    ) -> Result<(), LogError> {
        let Fetched { parts, next } = fetched;
        let mut outputs: BTreeMap<i32, Vec<Record>> = BTreeMap::new();
        let mut changelog: Vec<Record> = Vec::new();
        let (tps, records): (Vec<(String, i32)>, Vec<Vec<DecodedRecord>>) =
            parts.into_iter().unzip();
        let ordered: Vec<(usize, DecodedRecord)> =
            if matches!(*self.query, Planned::Join(_) | Planned::JoinAggregate(..)) {
                merge_by_timestamp(records)
            } else {
                records
                    .into_iter()
                    .enumerate()
                    .flat_map(|(i, records)| records.into_iter().map(move |r| (i, r)))
                    .collect()
            };
        let read = ordered.len() as u64;
        cpu_bound(|| {
            if let Planned::Stateless(q) = &*self.query {
                // Stateless: runs of records on two threads, their outputs joined in input
                // order (so each key's order is kept).
                let threads = if ordered.len() >= PARALLEL_MIN_RECORDS {
                    std::thread::available_parallelism().map_or(1, |n| n.get().min(2))
                } else {
                    1
                };
                let runs: Vec<Vec<(i32, Record)>> = if threads > 1 {
                    std::thread::scope(|scope| {
                        let handles: Vec<_> = ordered
                            .chunks(ordered.len().div_ceil(threads))
                            .map(|run| {
                                let (tps, id) = (&tps, &self.id);
                                scope.spawn(move || {
                                    stateless_outputs(q, tps, run, sink_partitions, id)
                                })
                            })
                            .collect();
                        handles
                            .into_iter()
                            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                            .collect()
                    })
                } else {
                    vec![stateless_outputs(
                        q,
                        &tps,
                        &ordered,
                        sink_partitions,
                        &self.id,
                    )]
                };
                for (partition, record) in runs.into_iter().flatten() {
                    outputs.entry(partition).or_default().push(record);
                }
            } else {
                for (i, r) in &ordered {
                    self.process(&tps[*i], r, sink_partitions, &mut outputs, &mut changelog);
                }
            }
        });
        // A store that failed during the pass may have answered without some groups: the
        // pass is not committed, and the task starts over from its changelog.
        self.store_failure()?;
        // Outputs, state changes and positions in one transaction: all or none of them.
        let mut written = 0u64;
        let mut batches = Vec::new();
        for (partition, records) in outputs {
            written += records.len() as u64;
            batches.push((self.sink_topic.clone(), partition, records));
        }
        if !changelog.is_empty() {
            batches.push((
                changelog_topic(&self.task.query_id),
                self.task.changelog_partition(),
                changelog,
            ));
        }
        let with_sequences: Vec<(String, i32, Vec<Record>, i32)> = batches
            .into_iter()
            .map(|(t, p, r)| {
                let seq = *self.sequences.get(&(t.clone(), p)).unwrap_or(&0);
                (t, p, r, seq)
            })
            .collect();
        let advanced: Vec<((String, i32), i32)> = with_sequences
            .iter()
            .map(|(t, p, r, seq)| ((t.clone(), *p), seq.wrapping_add(r.len() as i32)))
            .collect();
        let producer = self
            .txn
            .ok_or_else(|| LogError::Records("no transactional producer".into()))?;
        self.log
            .commit_transaction(
                &transactional_id(&self.id),
                producer,
                with_sequences,
                &self.group,
                &next,
            )
            .await?;
        self.sequences.extend(advanced);
        tracing::debug!(query = %self.id, read, written, "pass committed");
        *positions = next;
        let mut c = self.counts.lock().expect("counts lock");
        c.0 += read;
        c.1 += written;
        Ok(())
    }

    /// Deletes what an aggregation or join after a repartition is done with, as Kafka
    /// Streams purges its repartition topics: records below the committed positions `at`,
    /// but for a windowed join only those older than what a restart replays (its
    /// horizon), and never a join's table (the compacted topic is the table). A failed
    /// purge is tried again next time.
    async fn purge(&mut self, at: &Positions) {
        let mut below: Positions = BTreeMap::new();
        match &*self.query {
            Planned::Join(j) if j.repartitionable() && !j.second_is_table() => {
                let plan = replay_plan(&self.task, j);
                let horizon = match join_horizon(&mut self.log, &plan, at).await {
                    Ok(Some(h)) if h > 0 => h,
                    // Nothing old enough yet (or nothing read).
                    Ok(_) => return,
                    Err(e) => {
                        tracing::debug!(task = %self.id, error = %e, "repartition topics not purged");
                        return;
                    }
                };
                for (tp, &before) in at {
                    if !matches!(plan.get(tp.0.as_str()), Some(Replay::Within(_))) {
                        continue;
                    }
                    match self.log.offset(&tp.0, tp.1, horizon).await {
                        Ok(o) if o >= 0 => below.insert(tp.clone(), o.min(before)),
                        Ok(_) => below.insert(tp.clone(), before),
                        Err(_) => continue,
                    };
                }
            }
            _ => {
                let purgeable = repartition_topic(&self.task.query_id);
                below.extend(
                    at.iter()
                        .filter(|(tp, _)| tp.0 == purgeable)
                        .map(|(tp, &o)| (tp.clone(), o)),
                );
            }
        }
        for (tp, before) in below {
            if self.purged.get(&tp).is_some_and(|&p| p >= before) {
                continue;
            }
            match self.log.delete_records(&tp.0, tp.1, before).await {
                Ok(()) => {
                    self.purged.insert(tp, before);
                }
                Err(e) => {
                    tracing::debug!(task = %self.id, error = %e, "repartition topic not purged")
                }
            }
        }
    }
}

/// Where a query's output records go: (key, value, timestamp, bytes that place it).
type Emit<'a> = dyn FnMut(Option<Vec<u8>>, Option<Vec<u8>>, i64, Option<&[u8]>) + 'a;

/// An aggregation's outcome for one row: its state changes to the changelog, its output
/// records to `emit` (a windowed key placed by its inner key, as Kafka Streams'
/// WindowedStreamPartitioner does).
#[allow(clippy::too_many_arguments)]
fn aggregate_outcome(
    q: &AggregateQuery,
    outcome: AggOutcome,
    timestamp_ms: i64,
    changelog: &mut Vec<Record>,
    emit: &mut Emit<'_>,
    id: &str,
    partition: i32,
    offset: i64,
) {
    match outcome {
        AggOutcome::Updates(updates) => {
            for u in updates {
                changelog.push(Record {
                    key: Some(Bytes::from(u.state_key)),
                    value: u.state.map(Bytes::from),
                    headers: Vec::new(),
                    timestamp_ms,
                });
                if let Some((key, value, timestamp)) = u.record {
                    // A session's key ends with its end and start, a time window's with
                    // its start.
                    let suffix = match &q.window {
                        Some(w) if w.session => 16,
                        _ => 8,
                    };
                    let inner = match (&q.window, key.as_deref()) {
                        (Some(_), Some(k)) if k.len() >= suffix => {
                            Some(k[..k.len() - suffix].to_vec())
                        }
                        _ => None,
                    };
                    emit(key, value, timestamp, inner.as_deref());
                }
            }
        }
        AggOutcome::Filtered => {}
        AggOutcome::Skipped(why) => {
            tracing::debug!(query = %id, partition, offset, %why, "record skipped");
        }
    }
}

/// How much of each topic a join task reads again at start ([`JoinQuery::replay`]); a
/// topic read by several inputs (a self-join) as its most demanding use.
fn replay_plan(task: &Task, j: &JoinQuery) -> BTreeMap<String, Replay> {
    let repartitioned = task.stage == Stage::AfterRepartition;
    let mut plan: BTreeMap<String, Replay> = BTreeMap::new();
    let rank = |r: &Replay| match r {
        Replay::Skip => 0,
        Replay::Within(_) => 1,
        Replay::Full => 2,
    };
    for (topic, replay) in join_topics(task, j)
        .into_iter()
        .zip(j.replay(repartitioned))
    {
        let entry = plan.entry(topic).or_insert(replay);
        if rank(&replay) > rank(entry) {
            *entry = replay;
        }
    }
    plan
}

/// The windowed streams' horizon at `committed`: their smallest stream time (bounded
/// below by each partition's last record before its committed position) less the
/// retention. Records older than it are not replayed at start (nor kept after a purge).
/// None when none of them has a record.
async fn join_horizon(
    log: &mut LogClient,
    plan: &BTreeMap<String, Replay>,
    committed: &Positions,
) -> Result<Option<i64>, LogError> {
    let mut stream_times: BTreeMap<&str, i64> = BTreeMap::new();
    for (tp, &end) in committed {
        if let Some(Replay::Within(_)) = plan.get(tp.0.as_str()) {
            let start = log.offset(&tp.0, tp.1, -2).await?;
            if let Some(t) = last_timestamp_before(log, &tp.0, tp.1, start, end).await? {
                let e = stream_times.entry(tp.0.as_str()).or_insert(t);
                *e = (*e).max(t);
            }
        }
    }
    let mut horizon: Option<i64> = None;
    for (topic, t) in &stream_times {
        if let Some(Replay::Within(retention)) = plan.get(*topic) {
            let h = t.saturating_sub(*retention);
            horizon = Some(horizon.map_or(h, |x: i64| x.min(h)));
        }
    }
    Ok(horizon)
}

/// A join's state as it was at the query's committed positions: its inputs read again up
/// to there, in timestamp order, the outputs dropped (they were written then). Tables are
/// read from their start (each key's latest row); a stream in a windowed join from what
/// its window can still hold (`Replay::Within`); a stream that only looks tables up not at
/// all (it keeps no state).
///
/// With a join store (`rows`), the table's rows are in it as of the positions it records:
/// the table is read again only from there, when the store can be trusted (it covers
/// exactly the table partitions committed, each position within the partition's log and
/// at or below the committed one, flushed within a day: a tombstone compaction dropped
/// since would be missed); otherwise the store is emptied and refilled from the table's
/// start, flushed whenever a cache's worth of rows waits.
async fn replay_join(
    log: &mut LogClient,
    task: &Task,
    j: &JoinQuery,
    committed: &Positions,
    rows: Option<&SharedRows>,
) -> Result<JoinState, LogError> {
    let id = task.query_id.as_str();
    let topics = join_topics(task, j);
    let plan = replay_plan(task, j);
    let horizon = join_horizon(log, &plan, committed).await?;
    let stored = rows.and_then(|r| {
        let mut r = r.lock().expect("join rows lock");
        r.reset();
        r.positions()
    });
    let tables = table_positions(task, j, committed, None);
    let mut from_store: Option<Positions> = None;
    if let Some(s) = stored {
        let mut trusted = !s.positions.is_empty()
            && now_ms() - s.flushed_at_ms < STORE_TRUST_MS
            && s.positions.keys().eq(tables.keys());
        for (tp, &p) in &s.positions {
            if !trusted {
                break;
            }
            trusted = p <= tables[tp] && log.offset(&tp.0, tp.1, -2).await? <= p;
        }
        if trusted {
            from_store = Some(s.positions);
        } else {
            tracing::info!(query = %id, stored = ?s.positions, committed = ?tables, "join store out of step with its table: refilled from the start");
            if let Some(r) = rows {
                r.lock().expect("join rows lock").clear();
            }
        }
    }
    let mut state = match rows {
        Some(r) => JoinState::with_table_rows(j, Box::new(RowsHandle(r.clone()))),
        None => JoinState::default(),
    };
    let mut at: Positions = BTreeMap::new();
    for (tp, &end) in committed {
        if let Some(&p) = from_store.as_ref().and_then(|s| s.get(tp)) {
            if p < end {
                at.insert(tp.clone(), p);
            }
            continue;
        }
        let start = match plan.get(tp.0.as_str()) {
            Some(Replay::Skip) | None => continue,
            Some(Replay::Within(_)) => match horizon {
                Some(h) if h > 0 => match log.offset(&tp.0, tp.1, h).await? {
                    o if o >= 0 => o,
                    _ => end,
                },
                Some(_) => log.offset(&tp.0, tp.1, -2).await?,
                None => end,
            },
            _ => log.offset(&tp.0, tp.1, -2).await?,
        };
        if start < end {
            at.insert(tp.clone(), start);
        }
    }
    let mut replayed = 0u64;
    while !at.is_empty() {
        let mut tps = Vec::new();
        let mut fetched = Vec::new();
        for (tp, from) in at.iter_mut() {
            let end = committed[tp];
            let (mut records, next) = log.fetch_committed(&tp.0, tp.1, *from).await?;
            records.retain(|r| r.offset < end);
            *from = if next > *from { next } else { end };
            tps.push(tp.clone());
            fetched.push(records);
        }
        at.retain(|tp, from| *from < committed[tp]);
        for (i, r) in merge_by_timestamp(fetched) {
            let tp = &tps[i];
            replayed += 1;
            for (i, topic) in topics.iter().enumerate() {
                if *topic == tp.0 {
                    let input = RecordIn {
                        key: r.key.as_deref(),
                        value: r.value.as_deref(),
                        timestamp: r.timestamp_ms,
                        partition: tp.1,
                        offset: r.offset,
                    };
                    let _ = j.process(i, input, &mut state, &NoFunctions);
                }
            }
        }
        if let Some(r) = rows {
            // Memory stays bounded: what was read so far goes to the store.
            let mut r = r.lock().expect("join rows lock");
            if r.flush_due() || (at.is_empty() && r.has_store() && r.dirty_len() > 0) {
                let reached = table_positions(task, j, committed, Some(&at));
                cpu_bound(|| r.flush(&reached, now_ms()));
            }
        }
    }
    tracing::info!(query = %id, replayed, held = state.len(), from_store = from_store.is_some(), ?horizon, "join state rebuilt from its inputs");
    Ok(state)
}

/// The positions of a join's table partitions (the inputs it replays whole) in `at`, or,
/// during a replay, as far as it has read them (`reading`: the partitions not done yet and
/// where they are).
fn table_positions(
    task: &Task,
    j: &JoinQuery,
    at: &Positions,
    reading: Option<&Positions>,
) -> Positions {
    let plan = replay_plan(task, j);
    at.iter()
        .filter(|(tp, _)| plan.get(tp.0.as_str()) == Some(&Replay::Full))
        .map(|(tp, &p)| {
            let p = reading.and_then(|r| r.get(tp).copied()).unwrap_or(p);
            (tp.clone(), p)
        })
        .collect()
}

/// A table's rows in the partitions of `until` below each one's position (read_committed,
/// from the start): the last value and timestamp of each key, tombstones removing it.
async fn replay_table(
    log: &mut LogClient,
    id: &str,
    until: &Positions,
) -> Result<HashMap<Vec<u8>, (Bytes, i64)>, LogError> {
    let mut rows = HashMap::new();
    let mut replayed = 0u64;
    for ((topic, partition), &end) in until {
        let mut at = log.offset(topic, *partition, -2).await?;
        let mut stalled_since: Option<std::time::Instant> = None;
        while at < end {
            let (records, next) = log.fetch_committed(topic, *partition, at).await?;
            if next <= at {
                let since = *stalled_since.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() > RESTORE_STALL_MAX {
                    return Err(LogError::Records(format!(
                        "{topic}: the last stable offset stayed at {at} (end {end})"
                    )));
                }
                tokio::time::sleep(IDLE_WAIT).await;
                continue;
            }
            stalled_since = None;
            at = next;
            for r in records.into_iter().filter(|r| r.offset < end) {
                let Some(key) = r.key.filter(|k| !k.is_empty()) else {
                    continue;
                };
                replayed += 1;
                match r.value {
                    Some(v) => {
                        rows.insert(key.to_vec(), (v, r.timestamp_ms));
                    }
                    None => {
                        rows.remove(key.as_ref());
                    }
                }
            }
        }
    }
    tracing::info!(query = %id, replayed, rows = rows.len(), "table rows rebuilt from the input");
    Ok(rows)
}

/// The timestamp of a partition's last record before `end` (read_committed), None when
/// there is none from `start` on.
async fn last_timestamp_before(
    log: &mut LogClient,
    topic: &str,
    partition: i32,
    start: i64,
    end: i64,
) -> Result<Option<i64>, LogError> {
    let mut back: i64 = 64;
    loop {
        let from = end.saturating_sub(back).max(start);
        if from >= end {
            return Ok(None);
        }
        let (records, _) = log.fetch_committed(topic, partition, from).await?;
        if let Some(r) = records.iter().rev().find(|r| r.offset < end) {
            return Ok(Some(r.timestamp_ms));
        }
        if from == start {
            return Ok(None);
        }
        back = back.saturating_mul(16);
    }
}

/// Records of one topic as a shared scan hands them out: (partition, record).
type ScanBatch = Arc<Vec<(i32, DecodedRecord)>>;

/// Batches a shared scan holds for its slowest subscriber before that one falls behind.
const SCAN_BATCHES_BUFFERED: usize = 1024;

/// Push queries from the latest offsets share one read of their source topic: one task
/// per topic fetches what is appended and broadcasts it; each subscriber runs its own
/// filter and projection. The scan stops when its last subscriber leaves.
#[derive(Default)]
pub struct SharedScans {
    scans: Mutex<BTreeMap<String, std::sync::Weak<Scan>>>,
}

/// One shared scan: dropping the last `Arc` (its subscribers hold them) stops its task.
pub struct Scan {
    batches: tokio::sync::broadcast::Sender<Result<ScanBatch, String>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Scan {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SharedScans {
    /// A subscription to `topic`'s scan from now on (started if none runs), and the scan
    /// kept alive while the subscriber holds it.
    pub fn subscribe(
        &self,
        bootstrap: &str,
        topic: &str,
    ) -> (
        Arc<Scan>,
        tokio::sync::broadcast::Receiver<Result<ScanBatch, String>>,
    ) {
        let mut scans = self.scans.lock().expect("scans lock");
        scans.retain(|_, s| s.strong_count() > 0);
        if let Some(scan) = scans.get(topic).and_then(std::sync::Weak::upgrade) {
            let rx = scan.batches.subscribe();
            return (scan, rx);
        }
        let (tx, rx) = tokio::sync::broadcast::channel(SCAN_BATCHES_BUFFERED);
        tracing::info!(%topic, "shared scan started for push queries");
        let task = tokio::spawn(scan_topic(
            bootstrap.to_string(),
            topic.to_string(),
            tx.clone(),
        ));
        let scan = Arc::new(Scan { batches: tx, task });
        scans.insert(topic.to_string(), Arc::downgrade(&scan));
        (scan, rx)
    }
}

/// A shared scan's task: `topic` from its end on, read_committed, broadcast in batches.
async fn scan_topic(
    bootstrap: String,
    topic: String,
    tx: tokio::sync::broadcast::Sender<Result<ScanBatch, String>>,
) {
    let mut log = LogClient::new(&bootstrap);
    let start = async {
        let partitions = *log
            .topics()
            .await?
            .get(&topic)
            .ok_or_else(|| LogError::Records(format!("topic {topic} does not exist")))?;
        let mut at = BTreeMap::new();
        for p in 0..partitions {
            at.insert(p, log.offset(&topic, p, -1).await?);
        }
        Ok::<_, LogError>(at)
    };
    let mut positions = match start.await {
        Ok(p) => p,
        Err(e) => {
            let _ = tx.send(Err(e.to_string()));
            return;
        }
    };
    loop {
        let mut batch = Vec::new();
        for (&p, at) in positions.iter_mut() {
            match log.fetch_committed(&topic, p, *at).await {
                Ok((records, next)) => {
                    *at = (*at).max(next);
                    batch.extend(records.into_iter().map(|r| (p, r)));
                }
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    return;
                }
            }
        }
        if batch.is_empty() {
            tokio::time::sleep(IDLE_WAIT).await;
        } else if tx.send(Ok(Arc::new(batch))).is_err() {
            return; // no subscriber left
        }
    }
}

/// One record through a push query: its row (if it passes) sent to `rows`. False when the
/// query is over (the receiver gone, or `limit` rows sent).
async fn push_row(
    query: &TransientQuery,
    partition: i32,
    r: &DecodedRecord,
    rows: &mpsc::Sender<Result<Vec<Value>, String>>,
    sent: &mut i64,
    limit: Option<i64>,
) -> bool {
    let row = query.process(
        RecordIn {
            key: r.key.as_deref(),
            value: r.value.as_deref(),
            timestamp: r.timestamp_ms,
            partition,
            offset: r.offset,
        },
        &NoFunctions,
    );
    if let Ok(Some(values)) = row {
        if rows.send(Ok(values)).await.is_err() {
            return false;
        }
        *sent += 1;
        if limit.is_some_and(|l| *sent >= l) {
            return false;
        }
    }
    true
}

/// A push query: rows go to `rows` until the receiver is dropped, `limit` rows were sent,
/// or `stop` fires. An error reaching the log ends the query with the error's text. From
/// the latest offsets it reads through `shared` (one scan per topic for all such
/// queries); from the earliest, on its own.
pub async fn run_push(
    bootstrap: String,
    shared: Arc<SharedScans>,
    query: TransientQuery,
    reset: Reset,
    limit: Option<i64>,
    rows: mpsc::Sender<Result<Vec<Value>, String>>,
    mut stop: watch::Receiver<bool>,
) {
    if reset == Reset::Latest {
        let (_scan, mut batches) = shared.subscribe(&bootstrap, &query.source.topic);
        let mut sent = 0i64;
        loop {
            let batch = tokio::select! {
                b = batches.recv() => b,
                _ = stop.changed() => return,
                _ = rows.closed() => return,
            };
            let batch = match batch {
                Ok(Ok(batch)) => batch,
                Ok(Err(e)) => {
                    let _ = rows.send(Err(e)).await;
                    return;
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    let _ = rows
                        .send(Err(format!(
                            "the push query fell behind its source and lost {n} batches of records"
                        )))
                        .await;
                    return;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            for (p, r) in batch.iter() {
                if !push_row(&query, *p, r, &rows, &mut sent, limit).await {
                    return;
                }
            }
        }
    }
    let mut log = LogClient::new(&bootstrap);
    let topic = query.source.topic.clone();
    let mut sent = 0i64;
    let start = async {
        let partitions = *log
            .topics()
            .await?
            .get(&topic)
            .ok_or_else(|| LogError::Records(format!("topic {topic} does not exist")))?;
        let mut at = BTreeMap::new();
        for p in 0..partitions {
            at.insert(
                p,
                log.offset(&topic, p, reset.list_offsets_timestamp())
                    .await?,
            );
        }
        Ok::<_, LogError>(at)
    };
    let mut positions = match start.await {
        Ok(p) => p,
        Err(e) => {
            let _ = rows.send(Err(e.to_string())).await;
            return;
        }
    };
    loop {
        if *stop.borrow() || rows.is_closed() {
            return;
        }
        let mut any = false;
        for (&p, at) in positions.iter_mut() {
            let records = match log.fetch_committed(&topic, p, *at).await {
                Ok((records, next)) => {
                    *at = (*at).max(next);
                    records
                }
                Err(e) => {
                    let _ = rows.send(Err(e.to_string())).await;
                    return;
                }
            };
            for r in &records {
                any = true;
                if !push_row(&query, p, r, &rows, &mut sent, limit).await {
                    return;
                }
            }
        }
        if !any {
            tokio::select! {
                _ = tokio::time::sleep(IDLE_WAIT) => {}
                _ = stop.changed() => {}
                _ = rows.closed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_sql::catalog::{Catalog, Topics};

    struct SixPartitions;

    impl Topics for SixPartitions {
        fn partitions(&self, _: &str) -> Option<i32> {
            Some(6)
        }
    }

    fn plan(select: &str) -> Planned {
        let mut catalog = Catalog::default();
        for ddl in [
            "CREATE STREAM clicks (user STRING KEY, page STRING, n INT) WITH (kafka_topic='clicks', value_format='JSON');",
            "CREATE TABLE users (id STRING PRIMARY KEY, region STRING) WITH (kafka_topic='users', value_format='JSON');",
            "CREATE TABLE users_json (id STRING PRIMARY KEY, region STRING) WITH (kafka_topic='users_json', key_format='JSON', value_format='JSON');",
            "CREATE TABLE visits (vid STRING PRIMARY KEY, uid STRING) WITH (kafka_topic='visits', value_format='JSON');",
            "CREATE STREAM clicks_again (user STRING KEY, page STRING) WITH (kafka_topic='clicks', value_format='JSON');",
            "CREATE STREAM views (vid STRING KEY, page STRING, ts BIGINT) WITH (kafka_topic='views', value_format='JSON', timestamp='ts');",
        ] {
            let stmt = strata_sql::parse_statement(ddl).expect("parses");
            catalog.create_source(&stmt, &SixPartitions).expect("created");
        }
        let stmt = strata_sql::parse_statement(select).expect("parses");
        strata_sql::planner::plan_create_as_select(&stmt, &catalog, &SixPartitions)
            .expect("planned")
            .query
    }

    #[test]
    fn only_queries_whose_partitions_stand_alone_are_split() {
        assert!(partition_local(&plan(
            "CREATE STREAM big AS SELECT * FROM clicks WHERE n > 5;"
        )));
        assert!(partition_local(&plan(
            "CREATE STREAM by_page AS SELECT * FROM clicks PARTITION BY page;"
        )));
        assert!(partition_local(&plan(
            "CREATE TABLE t AS SELECT user, COUNT(*) AS c FROM clicks GROUP BY user;"
        )));
        assert!(partition_local(&plan(
            "CREATE TABLE w AS SELECT user, COUNT(*) AS c FROM clicks WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY user;"
        )));
        // A group's records come from every partition.
        assert!(!partition_local(&plan(
            "CREATE TABLE p AS SELECT page, COUNT(*) AS c FROM clicks GROUP BY page;"
        )));
        assert!(!partition_local(&plan(
            "CREATE TABLE u WITH (key_format='JSON') AS SELECT user, page, COUNT(*) AS c FROM clicks GROUP BY user, page;"
        )));
        // On both keys: co-partitioned.
        assert!(partition_local(&plan(
            "CREATE STREAM j AS SELECT * FROM clicks c JOIN users u ON c.user = u.id;"
        )));
        // On a value column of the stream: its records meet the table's anywhere.
        assert!(!partition_local(&plan(
            "CREATE STREAM j2 AS SELECT * FROM clicks c JOIN users u ON c.page = u.id;"
        )));
        // Keys written differently place equal keys in different partitions.
        assert!(!partition_local(&plan(
            "CREATE STREAM j3 AS SELECT * FROM clicks c JOIN users_json u ON c.user = u.id;"
        )));
        // A foreign-key join looks the right table up by a left value.
        assert!(!partition_local(&plan(
            "CREATE TABLE fk AS SELECT * FROM visits v JOIN users u ON v.uid = u.id;"
        )));
        assert!(partition_local(&plan(
            "CREATE TABLE tt AS SELECT * FROM visits v JOIN users u ON v.vid = u.id;"
        )));
    }

    #[test]
    fn a_task_is_named_by_its_query_step_and_partition() {
        let whole = Task::whole("CTAS_T_3");
        assert_eq!(whole.id(), "CTAS_T_3");
        let part = Task::part("CTAS_T_3", 4, Stage::Direct);
        assert_eq!(part.id(), "CTAS_T_3#4");
        assert_eq!(
            Task::part("CTAS_T_3", 4, Stage::AfterRepartition).id(),
            "CTAS_T_3#4"
        );
        assert_eq!(
            Task::part("CTAS_T_3", 4, Stage::Repartition).id(),
            "CTAS_T_3#r4"
        );
        assert_eq!(part.changelog_partition(), 4);
        assert_eq!(whole.changelog_partition(), 0);
        assert!(!Task::part("Q", 0, Stage::Repartition).holds_state());
        assert_eq!(
            Task::part("CSAS_J_1", 2, Stage::RepartitionRight).id(),
            "CSAS_J_1#t2"
        );
        assert!(!Task::part("Q", 0, Stage::RepartitionRight).holds_state());
    }

    /// A stream–table join on a stream value column is split through two repartition
    /// topics: the stream's records placed by the table key they look up, written as the
    /// table writes its keys (here JSON), the table's rows by their key; foreign-key and
    /// key-on-key joins are not (the latter needs no repartition).
    #[test]
    fn a_join_on_a_stream_value_goes_through_two_repartition_topics() {
        let Planned::Join(j) =
            plan("CREATE STREAM j3 AS SELECT * FROM clicks c JOIN users_json u ON c.page = u.id;")
        else {
            panic!("a join")
        };
        assert!(j.repartitionable());
        let record = RecordIn {
            key: Some(b"alice"),
            value: Some(br#"{"page":"home","n":1}"#),
            timestamp: 0,
            partition: 0,
            offset: 0,
        };
        assert_eq!(
            j.join_key(0, record, &NoFunctions),
            Some((Some(br#""home""#.to_vec()), 0))
        );
        let no_page = RecordIn {
            value: Some(br#"{"n":1}"#),
            ..record
        };
        assert_eq!(j.join_key(0, no_page, &NoFunctions), Some((None, 0)));
        let planned =
            plan("CREATE STREAM j3 AS SELECT * FROM clicks c JOIN users_json u ON c.page = u.id;");
        let inputs = |stage| stage_inputs(&Task::part("Q", 1, stage), &planned);
        assert_eq!(inputs(Stage::Repartition), vec!["clicks"]);
        assert_eq!(inputs(Stage::RepartitionRight), vec!["users_json"]);
        assert_eq!(
            inputs(Stage::AfterRepartition),
            vec![repartition_topic("Q"), table_repartition_topic("Q")]
        );
        for keyed in [
            "CREATE TABLE fk AS SELECT * FROM visits v JOIN users u ON v.uid = u.id;",
            "CREATE STREAM j AS SELECT * FROM clicks c JOIN users u ON c.user = u.id;",
            "CREATE STREAM j AS SELECT * FROM clicks c JOIN clicks_again d WITHIN 1 MINUTE ON c.page = d.page;",
        ] {
            let Planned::Join(j) = plan(keyed) else {
                panic!("a join")
            };
            assert!(!j.repartitionable(), "{keyed}");
        }
    }

    /// A stream–stream join on value columns is split too: each stream through its own
    /// repartition topic (the second one not compacted), placed by join value, each record
    /// stamped with its event time (here from a TIMESTAMP column) so that the join's
    /// restart replays its windows from the log's time index.
    #[test]
    fn a_stream_stream_join_on_values_goes_through_two_repartition_topics() {
        let planned = plan(
            "CREATE STREAM seen AS SELECT * FROM clicks c JOIN views v WITHIN 1 MINUTE ON c.page = v.page;",
        );
        let Planned::Join(j) = &planned else {
            panic!("a join")
        };
        assert!(j.repartitionable() && !j.second_is_table());
        let click = RecordIn {
            key: Some(b"alice"),
            value: Some(br#"{"page":"home","n":1}"#),
            timestamp: 5,
            partition: 0,
            offset: 0,
        };
        let view = RecordIn {
            key: Some(b"v1"),
            value: Some(br#"{"page":"home","ts":123}"#),
            timestamp: 9,
            partition: 3,
            offset: 7,
        };
        let (c, v) = (
            j.join_key(0, click, &NoFunctions).unwrap(),
            j.join_key(1, view, &NoFunctions).unwrap(),
        );
        assert_eq!((c.1, v.1), (5, 123));
        assert!(c.0.is_some() && c.0 == v.0);
        let inputs = |stage| stage_inputs(&Task::part("Q", 1, stage), &planned);
        assert_eq!(inputs(Stage::RepartitionRight), vec!["views"]);
        assert_eq!(
            inputs(Stage::AfterRepartition),
            vec![repartition_topic("Q"), right_repartition_topic("Q")]
        );
        // Replayed from the repartition topics, the windows are bounded by retention even
        // though one side's time is a column.
        let task = Task::part("Q", 1, Stage::AfterRepartition);
        let replay = replay_plan(&task, j);
        assert!(
            replay.values().all(|r| matches!(r, Replay::Within(_))),
            "{replay:?}"
        );
        let whole = replay_plan(&Task::whole("Q"), j);
        assert!(whole.values().all(|r| *r == Replay::Full), "{whole:?}");
    }
}
