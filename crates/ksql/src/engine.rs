//! The engine: ksqlDB's statements executed against the catalog and the log, answered with
//! ksqlDB's REST entities.
//!
//! Statements that change what exists (CREATE, CREATE … AS SELECT, DROP, TERMINATE) are
//! appended, once they succeed, to the command topic ([`COMMAND_TOPIC`]); at start the
//! engine replays it, so streams, tables and persistent queries survive a restart (queries
//! resume from their committed positions). Statements run one at a time, as ksqlDB's
//! command runner runs them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Value as J};
use strata_records::Record;
use strata_sql::aggregate::GroupMap;

pub use crate::auth::{Caller, TopicOp};
use strata_sql::ast::{Query, SourceKind, SqlType, Statement};
use strata_sql::catalog::{Catalog, Source, Topics};
use strata_sql::eval::{cast, eval, NoFunctions, Row};
use strata_sql::format::{serialize, Format};
use strata_sql::pipeline::TransientQuery;
use strata_sql::planner::{plan_create_as_select, Planned};
use strata_sql::value::{type_name, Value};
use tokio::sync::{watch, Mutex};

use crate::log::{LogClient, LogError};
use crate::members::{MemberInfo, Ownership};
use crate::run::{
    changelog_topic, partition_local, repartition_topic, right_repartition_topic,
    second_repartition_topic, start_persistent, table_repartition_topic, Groups, PersistentHandle,
    QueryState, Reset, Stage, StateOptions, Task,
};

/// Where the engine keeps the statements that made its streams, tables and queries.
pub const COMMAND_TOPIC: &str = "_strata_ksql_command_topic";

/// How often a cluster's engine reads the statements other engines appended.
const FOLLOW_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

/// The version ksqlDB clients are told (the REST API this engine follows).
pub const KSQL_VERSION: &str = "0.29.0";

/// A statement that failed: ksqlDB's `statement_error` (HTTP 400).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct StatementError {
    pub message: String,
    pub statement: String,
    /// Entities of the statements before it in the same request.
    pub entities: Vec<J>,
    /// ksqlDB's error code: 40001 bad statement, 40301 topic authorization denied, 50000
    /// server error, 50300 the broker could not be asked.
    pub code: u32,
}

/// A syntax error as ksqlDB words it: the error, then `Statement:` and the statement of
/// the request that failed.
fn with_failing_statement(text: &str, e: &strata_sql::SqlError) -> String {
    let (texts, rest) = strata_sql::split_statements(text);
    let failing = texts
        .into_iter()
        .chain(std::iter::once(rest))
        .find(|t| !t.trim().is_empty() && strata_sql::parse_statement(t).is_err());
    match failing {
        Some(t) => format!("{e}\nStatement: {}", t.trim()),
        None => e.to_string(),
    }
}

impl StatementError {
    pub fn body(&self) -> J {
        json!({
            "@type": "statement_error",
            "error_code": self.code,
            "message": self.message,
            "statementText": self.statement,
            "entities": self.entities,
        })
    }
}

fn bad(message: impl Into<String>) -> String {
    message.into()
}

struct PersistentQuery {
    id: String,
    text: String,
    sink: String,
    sink_topic: String,
    /// The sources it reads (two for a join).
    sources: Vec<String>,
    /// An aggregation's plan: how its groups become the table's rows (pull queries).
    materialized: Option<Arc<strata_sql::aggregate::AggregateQuery>>,
    /// What runs, kept to start it whenever this engine comes to own the query.
    plan: Arc<Planned>,
    reset: Reset,
    /// How long a split join waits for a lagging input (`max.task.idle.ms`).
    max_task_idle: std::time::Duration,
    /// Its tasks: the whole query, or on a cluster one per input partition when each
    /// partition can be processed alone ([`partition_local`]).
    tasks: Vec<Task>,
    /// The tasks running here (every task on a lone engine; those the engines' group
    /// assigns to this one on a cluster).
    handles: BTreeMap<Task, PersistentHandle>,
}

impl PersistentQuery {
    /// Whether its tasks read one input partition each.
    fn split(&self) -> bool {
        self.tasks.iter().any(|t| t.partition.is_some())
    }

    /// Stops every task running here (their last positions committed).
    async fn stop(&mut self) {
        for (_, h) in std::mem::take(&mut self.handles) {
            h.terminate().await;
        }
    }
}

/// This engine's place among a cluster's engines ([`crate::members`]).
struct Cluster {
    info: watch::Sender<MemberInfo>,
    ownership: watch::Receiver<Ownership>,
}

struct State {
    catalog: Catalog,
    queries: BTreeMap<String, PersistentQuery>,
    /// Commands applied so far (ksqlDB's command sequence number): the command topic's
    /// offset read up to.
    command_seq: i64,
    /// Offsets of commands this engine appended past `command_seq` (another engine
    /// appended in between): already applied, skipped when read.
    own_commands: BTreeSet<i64>,
    command_topic_exists: bool,
    log: LogClient,
}

pub struct Engine {
    bootstrap: String,
    /// This engine's SQL listener, where other engines send pull queries for it.
    sql_addr: Option<String>,
    /// Set when the cluster has several brokers: queries are shared out among engines.
    cluster: std::sync::OnceLock<Cluster>,
    /// Where aggregations keep their local state stores (None: in memory only).
    state_options: StateOptions,
    state: Mutex<State>,
    /// Defaults of the properties clients may set per request.
    pub properties: BTreeMap<String, String>,
}

struct TopicCounts(BTreeMap<String, i32>);

impl Topics for TopicCounts {
    fn partitions(&self, topic: &str) -> Option<i32> {
        self.0.get(topic).copied()
    }
}

/// No columns: INSERT VALUES' expressions are evaluated on nothing.
struct NoRow;

impl Row for NoRow {
    fn column(&self, _: Option<&str>, _: &str) -> Option<&Value> {
        None
    }
}

fn format_name(f: &Format) -> &'static str {
    match f {
        Format::Json => "JSON",
        Format::Delimited { .. } => "DELIMITED",
        Format::Kafka => "KAFKA",
        Format::None => "NONE",
    }
}

fn kind_word(k: SourceKind) -> &'static str {
    match k {
        SourceKind::Stream => "STREAM",
        SourceKind::Table => "TABLE",
    }
}

/// A type as ksqlDB's REST API describes it (`schema` of a field).
pub fn schema_json(t: &SqlType) -> J {
    let base = |name: &str| json!({"type": name, "fields": null, "memberSchema": null});
    match t {
        SqlType::Boolean => base("BOOLEAN"),
        SqlType::Int => base("INTEGER"),
        SqlType::Bigint => base("BIGINT"),
        SqlType::Double => base("DOUBLE"),
        SqlType::Decimal { precision, scale } => json!({
            "type": "DECIMAL", "fields": null, "memberSchema": null,
            "parameters": {"precision": precision, "scale": scale}
        }),
        SqlType::String => base("STRING"),
        SqlType::Bytes => base("BYTES"),
        SqlType::Timestamp => base("TIMESTAMP"),
        SqlType::Date => base("DATE"),
        SqlType::Time => base("TIME"),
        SqlType::Array(item) => {
            json!({"type": "ARRAY", "fields": null, "memberSchema": schema_json(item)})
        }
        SqlType::Map(_, v) => {
            json!({"type": "MAP", "fields": null, "memberSchema": schema_json(v)})
        }
        SqlType::Struct(fields) => json!({
            "type": "STRUCT",
            "fields": fields.iter().map(|(n, t)| json!({"name": n, "schema": schema_json(t)})).collect::<Vec<_>>(),
            "memberSchema": null
        }),
        SqlType::Custom(n) => base(n),
    }
}

/// A statement's result: entities for the response, and whether to record it as a command.
struct Done {
    entity: Option<J>,
    command: Option<J>,
}

impl Engine {
    /// An engine for the brokers at `bootstrap`: replays the command topic (creating it if
    /// missing) and restarts the persistent queries.
    pub async fn start(bootstrap: &str) -> Result<Arc<Engine>, LogError> {
        Engine::start_with_state(bootstrap, None).await
    }

    /// `start`, with aggregations' local state stores under `state_dir`.
    pub async fn start_with_state(
        bootstrap: &str,
        state_dir: Option<std::path::PathBuf>,
    ) -> Result<Arc<Engine>, LogError> {
        let options = StateOptions {
            dir: state_dir,
            cache_groups: crate::groups::DEFAULT_CACHE_GROUPS,
        };
        Engine::start_in(bootstrap, options, None, false).await
    }

    /// `start_with_state`, serving SQL at `sql_addr`. `clustered` (a node of a cluster):
    /// the engines share out the persistent queries ([`crate::members`]), follow each
    /// other's statements through the command topic, and send pull queries to the engine
    /// running the table's query.
    pub async fn start_in(
        bootstrap: &str,
        state_options: StateOptions,
        sql_addr: Option<String>,
        clustered: bool,
    ) -> Result<Arc<Engine>, LogError> {
        let mut properties = BTreeMap::new();
        properties.insert("ksql.streams.auto.offset.reset".into(), "latest".into());
        properties.insert("ksql.service.id".into(), "default_".into());
        properties.insert("ksql.streams.bootstrap.servers".into(), bootstrap.into());
        let engine = Arc::new(Engine {
            bootstrap: bootstrap.to_string(),
            sql_addr,
            cluster: std::sync::OnceLock::new(),
            state_options,
            state: Mutex::new(State {
                catalog: Catalog::default(),
                queries: BTreeMap::new(),
                command_seq: 0,
                own_commands: BTreeSet::new(),
                command_topic_exists: false,
                log: LogClient::new(bootstrap),
            }),
            properties,
        });
        if let (true, Some(addr)) = (clustered, engine.sql_addr.clone()) {
            let (info, info_rx) = watch::channel(MemberInfo {
                sql: addr,
                ..MemberInfo::default()
            });
            let ownership = crate::members::start(bootstrap, info_rx);
            let _ = engine.cluster.set(Cluster { info, ownership });
        }
        engine.replay().await?;
        if engine.cluster.get().is_some() {
            tokio::spawn(follow(Arc::downgrade(&engine)));
            tokio::spawn(follow_ownership(Arc::downgrade(&engine)));
        }
        Ok(engine)
    }

    /// Whether this engine runs the task named `task_id` (always, unless the cluster's
    /// engines share them out).
    fn owns(&self, task_id: &str) -> bool {
        match self.cluster.get() {
            None => true,
            Some(c) => c.ownership.borrow().mine.contains(task_id),
        }
    }

    /// A new query's tasks: on a cluster, when its input has several partitions, one per
    /// input partition for a partition-local query, and for an aggregation of a stream by
    /// anything else a repartitioning task per input partition plus an aggregating task
    /// per partition of its repartition topic; else the whole query. A query keeps its
    /// layout: once its changelog exists, its partition count decides.
    /// `split_join`: a repartitionable join is split (it is being created, so the topics
    /// a split needs may be made, or its command says it was split: an engine following
    /// the statement may not see those topics yet). Otherwise (an INSERT INTO, or a
    /// command recorded before splits were) it is split only if its repartition topics
    /// exist, so a query that ran whole keeps running whole.
    fn tasks_for(
        &self,
        id: &str,
        plan: &Planned,
        topics: &BTreeMap<String, i32>,
        split_join: bool,
    ) -> Vec<Task> {
        let whole = vec![Task::whole(id)];
        if self.cluster.get().is_none() {
            return whole;
        }
        let Some(source) = crate::run::input_topics(plan).into_iter().next() else {
            return whole;
        };
        let count = match plan {
            Planned::Aggregate(_) => topics
                .get(&changelog_topic(id))
                .or_else(|| topics.get(&source))
                .copied(),
            _ => topics.get(&source).copied(),
        }
        .unwrap_or(1);
        if count <= 1 {
            return whole;
        }
        // A join's inputs must have as many partitions for partition p of one to meet
        // partition p of the other.
        let inputs_alike = crate::run::input_topics(plan)
            .iter()
            .all(|t| topics.get(t) == Some(&count));
        if partition_local(plan) && inputs_alike {
            return (0..count)
                .map(|p| Task::part(id, p, Stage::Direct))
                .collect();
        }
        match plan {
            // An aggregation by anything but its source's key goes through a repartition
            // topic. A table's change carries the row it replaces there (the repartitioning
            // step keeps the table's rows), so that row can leave its own group.
            Planned::Aggregate(_) => {
                let Some(&inputs) = topics.get(&source) else {
                    return whole;
                };
                (0..inputs)
                    .map(|p| Task::part(id, p, Stage::Repartition))
                    .chain((0..count).map(|p| Task::part(id, p, Stage::AfterRepartition)))
                    .collect()
            }
            // A stream–table join on a stream expression that is not its key, or a
            // stream–stream join not on both keys: both inputs go through repartition
            // topics, placed by the join key, and a task per partition joins them (as
            // many partitions as the table, or as the larger stream).
            Planned::Join(j)
                if j.repartitionable()
                    && (split_join
                        || (topics.contains_key(&repartition_topic(id))
                            && topics.contains_key(&second_repartition_topic(id, j)))) =>
            {
                let inputs = crate::run::input_topics(plan);
                let (Some(&lefts), Some(&rights)) = (
                    inputs.first().and_then(|t| topics.get(t)),
                    inputs.get(1).and_then(|t| topics.get(t)),
                ) else {
                    return whole;
                };
                let count = match topics.get(&second_repartition_topic(id, j)) {
                    Some(&n) => n,
                    None if j.second_is_table() => rights,
                    None => lefts.max(rights),
                };
                (0..lefts)
                    .map(|p| Task::part(id, p, Stage::Repartition))
                    .chain((0..rights).map(|p| Task::part(id, p, Stage::RepartitionRight)))
                    .chain((0..count).map(|p| Task::part(id, p, Stage::AfterRepartition)))
                    .collect()
            }
            // Foreign-key joins, chains of joins and aggregations of joins read records of
            // every partition together: they run whole.
            _ => whole,
        }
    }

    /// Starts the queries this engine should run and stops the others; tells the engines'
    /// group what it knows and runs.
    async fn reconcile(&self, st: &mut State) {
        for q in st.queries.values_mut() {
            for task in &q.tasks {
                let mine = self.owns(&task.id());
                if mine && !q.handles.contains_key(task) {
                    q.handles.insert(
                        task.clone(),
                        start_persistent(
                            &self.bootstrap,
                            task.clone(),
                            q.plan.clone(),
                            q.sink_topic.clone(),
                            q.reset,
                            self.state_options.clone(),
                            q.max_task_idle,
                        ),
                    );
                } else if !mine {
                    if let Some(h) = q.handles.remove(task) {
                        tracing::info!(task = %task.id(), "persistent query task moved to another engine");
                        h.terminate().await;
                    }
                }
            }
        }
        if let Some(c) = self.cluster.get() {
            let known: BTreeSet<String> = st
                .queries
                .values()
                .flat_map(|q| q.tasks.iter().map(Task::id))
                .collect();
            let running: BTreeSet<String> = st
                .queries
                .values()
                .flat_map(|q| q.handles.keys().map(Task::id))
                .collect();
            c.info.send_if_modified(|info| {
                let changed = info.known != known || info.running != running;
                info.known = known;
                info.running = running;
                changed
            });
        }
    }

    /// EXPLAIN's `tasksMetadata` (each task: its id, the partitions it reads, where it runs
    /// and in which state) and `ksqlHostQueryStatus` (each engine running some of it).
    fn tasks_metadata(&self, q: &PersistentQuery) -> (J, J) {
        let here = self.sql_addr.clone().unwrap_or_else(|| "local".into());
        let mut hosts = serde_json::Map::new();
        let tasks = q
            .tasks
            .iter()
            .map(|t| {
                let (host, state) = match q.handles.get(t) {
                    Some(h) => (
                        Some(here.clone()),
                        match &*h.state.lock().expect("state lock") {
                            QueryState::Running => "RUNNING",
                            QueryState::Error(_) => "ERROR",
                        },
                    ),
                    None => (self.remote_owner(&t.id()), "RUNNING"),
                };
                if let Some(h) = &host {
                    hosts.insert(h.clone(), json!(state));
                }
                let topics = crate::run::stage_inputs(t, &q.plan);
                json!({
                    "taskId": t.id(),
                    "topicPartitions": topics.iter().map(|topic| json!({
                        "topic": topic,
                        "partition": t.partition.map_or(J::Null, |p| json!(p)),
                    })).collect::<Vec<_>>(),
                    "host": host,
                    "state": if host.is_some() { state } else { "UNASSIGNED" },
                })
            })
            .collect();
        (J::Array(tasks), J::Object(hosts))
    }

    /// The SQL listener of the engine running the task named `task_id`, when another
    /// engine runs it.
    fn remote_owner(&self, task_id: &str) -> Option<String> {
        let c = self.cluster.get()?;
        let o = c.ownership.borrow();
        (!o.mine.contains(task_id))
            .then(|| o.owners.get(task_id).cloned())
            .flatten()
    }

    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    async fn replay(&self) -> Result<(), LogError> {
        let mut st = self.state.lock().await;
        let replayed = self.catch_up(&mut st).await?;
        // An engine nobody uses leaves no trace in the cluster and holds no connection.
        st.log = LogClient::new(&self.bootstrap);
        if replayed > 0 {
            tracing::info!(
                commands = replayed,
                queries = st.queries.len(),
                "SQL engine restored its streams, tables and queries"
            );
        }
        Ok(())
    }

    /// Applies the commands of the command topic this engine has not applied yet (all of
    /// them at start; on a cluster, those other engines appended since), then starts and
    /// stops queries accordingly. The number applied.
    async fn catch_up(&self, st: &mut State) -> Result<usize, LogError> {
        if !st.command_topic_exists {
            // Nothing to replay; the topic is created with the first command.
            if !st.log.topics().await?.contains_key(COMMAND_TOPIC) {
                return Ok(0);
            }
            st.command_topic_exists = true;
        }
        let end = st.log.offset(COMMAND_TOPIC, 0, -1).await?;
        if st.command_seq >= end {
            return Ok(0);
        }
        let mut at = st
            .command_seq
            .max(st.log.offset(COMMAND_TOPIC, 0, -2).await?);
        let mut applied = 0;
        while at < end {
            let (records, _) = st.log.fetch(COMMAND_TOPIC, 0, at, 0).await?;
            let Some(last) = records.last() else {
                break;
            };
            at = last.offset + 1;
            for r in records {
                st.command_seq = st.command_seq.max(r.offset + 1);
                // This engine's own statement, applied when it ran.
                if st.own_commands.remove(&r.offset) {
                    continue;
                }
                let Some(value) = r.value else { continue };
                let Ok(command) = serde_json::from_slice::<J>(&value) else {
                    tracing::warn!(offset = r.offset, "unreadable SQL command skipped");
                    continue;
                };
                let text = command["statement"].as_str().unwrap_or_default();
                let props: BTreeMap<String, String> = command["properties"]
                    .as_object()
                    .map(|o| {
                        o.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                            .collect()
                    })
                    .unwrap_or_default();
                let recorded = Recorded {
                    query_id: command["queryId"].as_str().map(str::to_string),
                    split_join: command["splitJoin"].as_bool() == Some(true),
                };
                match strata_sql::parse_statement(text) {
                    Ok(stmt) => {
                        if let Err(e) = self.apply(st, text, &stmt, &props, true, recorded).await {
                            tracing::warn!(statement = text, error = %e, "SQL command not replayed");
                        } else {
                            applied += 1;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(statement = text, error = %e, "SQL command does not parse")
                    }
                }
            }
        }
        if applied > 0 {
            self.reconcile(st).await;
        }
        Ok(applied)
    }

    async fn create_command_topic(log: &mut LogClient) -> Result<(), LogError> {
        let r = log
            .create_topic(
                COMMAND_TOPIC,
                1,
                &[("retention.ms".to_string(), "-1".to_string())],
            )
            .await;
        match r {
            // Another node may have created it meanwhile.
            Err(_) if log.topics().await?.contains_key(COMMAND_TOPIC) => Ok(()),
            r => r,
        }
    }

    /// Runs a request's statements in order (POST /ksql). The first failing statement ends
    /// the request with the entities of those before it.
    pub async fn execute(
        &self,
        text: &str,
        request_properties: &BTreeMap<String, String>,
        session_variables: &BTreeMap<String, String>,
    ) -> Result<Vec<J>, StatementError> {
        self.execute_as(text, request_properties, session_variables, None)
            .await
    }

    /// `execute`, each statement first checked against the caller's rights on the topics
    /// it touches when `caller` is given ([`crate::auth`]).
    pub async fn execute_as(
        &self,
        text: &str,
        request_properties: &BTreeMap<String, String>,
        session_variables: &BTreeMap<String, String>,
        caller: Option<&Caller<'_>>,
    ) -> Result<Vec<J>, StatementError> {
        let upper = text.to_ascii_uppercase();
        let uses_variables =
            !session_variables.is_empty() || text.contains("${") || upper.contains("DEFINE");
        let statements = if uses_variables {
            // DEFINE / UNDEFINE in order, each statement parsed with the variables defined
            // before it substituted (all parsed before any runs, as without variables).
            let (texts, rest) = strata_sql::split_statements(text);
            let mut variables: BTreeMap<String, String> = session_variables
                .iter()
                .map(|(k, v)| (k.to_ascii_uppercase(), v.clone()))
                .collect();
            let mut out = Vec::new();
            for own in texts
                .into_iter()
                .chain((!rest.trim().is_empty()).then_some(rest))
            {
                let substituted = strata_sql::substitute_variables(&own, &variables);
                let stmt =
                    strata_sql::parse_statement(&substituted).map_err(|e| StatementError {
                        message: with_failing_statement(&substituted, &e),
                        statement: substituted.clone(),
                        entities: Vec::new(),
                        code: 40001,
                    })?;
                match &stmt {
                    Statement::Define { name, value } => {
                        variables.insert(name.to_ascii_uppercase(), value.clone());
                    }
                    Statement::Undefine { name } => {
                        variables.remove(&name.to_ascii_uppercase());
                    }
                    _ => {}
                }
                out.push((substituted, stmt));
            }
            out
        } else {
            strata_sql::parse_statements_with_text(text).map_err(|e| StatementError {
                message: with_failing_statement(text, &e),
                statement: text.to_string(),
                entities: Vec::new(),
                code: 40001,
            })?
        };
        let mut props = request_properties.clone();
        let mut entities = Vec::new();
        let mut st = self.state.lock().await;
        if self.cluster.get().is_some() {
            // Other engines' statements first, so this one sees what they made.
            if let Err(e) = self.catch_up(&mut st).await {
                tracing::debug!(error = %e, "SQL engine: command topic not read");
            }
        }
        for (own, stmt) in statements {
            match &stmt {
                Statement::SetProperty { name, value } => {
                    props.insert(name.clone(), value.clone());
                    continue;
                }
                Statement::UnsetProperty { name } => {
                    props.remove(name);
                    continue;
                }
                _ => {}
            }
            if let Some(caller) = caller {
                let needs = match st.log.topics().await {
                    Ok(existing) => Ok(required_access(&st.catalog, &stmt, &props, &existing)),
                    Err(e) => Err(crate::auth::Denied::Unavailable(e.to_string())),
                };
                let checked = match needs {
                    Ok(needs) => caller.require(&needs).await,
                    Err(e) => Err(e),
                };
                if let Err(denied) = checked {
                    let (message, code) = match denied {
                        crate::auth::Denied::Topics(m) => (m, 40301),
                        crate::auth::Denied::Unavailable(why) => {
                            (format!("Topic access could not be checked: {why}"), 50300)
                        }
                    };
                    return Err(StatementError {
                        message,
                        statement: own,
                        entities,
                        code,
                    });
                }
            }
            match self
                .apply(&mut st, &own, &stmt, &props, false, Recorded::default())
                .await
            {
                Ok(done) => {
                    if let Some(command) = done.command {
                        if !st.command_topic_exists {
                            if let Err(e) = Self::create_command_topic(&mut st.log).await {
                                return Err(StatementError {
                                    message: format!("Could not create the command topic: {e}"),
                                    statement: own,
                                    entities,
                                    code: 50000,
                                });
                            }
                            st.command_topic_exists = true;
                        }
                        let record = Record {
                            key: None,
                            value: Some(Bytes::from(command.to_string())),
                            headers: Vec::new(),
                            timestamp_ms: now_ms(),
                        };
                        match st.log.produce(COMMAND_TOPIC, 0, vec![record]).await {
                            Ok(offset) if offset == st.command_seq => st.command_seq += 1,
                            // Another engine appended first: theirs is read later, ours
                            // skipped then.
                            Ok(offset) => {
                                st.own_commands.insert(offset);
                            }
                            Err(e) => {
                                return Err(StatementError {
                                    message: format!(
                                        "Could not write the statement to the command topic: {e}"
                                    ),
                                    statement: own,
                                    entities,
                                    code: 50000,
                                });
                            }
                        }
                    }
                    if let Some(mut entity) = done.entity {
                        if let Some(o) = entity.as_object_mut() {
                            if o.contains_key("commandSequenceNumber") {
                                o.insert("commandSequenceNumber".into(), json!(st.command_seq));
                            }
                        }
                        entities.push(entity);
                    }
                }
                Err(message) => {
                    return Err(StatementError {
                        message,
                        statement: own,
                        entities,
                        code: 40001,
                    })
                }
            }
        }
        Ok(entities)
    }

    /// Executes one statement. `replay`: from the command topic (at start, or another
    /// engine's): no topics created, nothing recorded, the query laid out as `recorded`.
    async fn apply(
        &self,
        st: &mut State,
        text: &str,
        stmt: &Statement,
        props: &BTreeMap<String, String>,
        replay: bool,
        recorded: Recorded,
    ) -> Result<Done, String> {
        let query_id = recorded.query_id;
        let status = |command_id: String, message: String, query_id: Option<&str>| {
            json!({
                "@type": "currentStatus",
                "statementText": text,
                "commandId": command_id,
                "commandStatus": {"status": "SUCCESS", "message": message, "queryId": query_id},
                "commandSequenceNumber": 0,
                "warnings": [],
            })
        };
        let command = |query_id: Option<&str>| {
            let mut c = json!({"statement": text, "properties": props});
            if let Some(q) = query_id {
                c["queryId"] = json!(q);
            }
            c
        };
        // A split join says so in its command.
        let split_command = |query_id: &str, tasks: &[Task]| {
            let mut c = command(Some(query_id));
            if tasks.iter().any(|t| t.stage == Stage::RepartitionRight) {
                c["splitJoin"] = json!(true);
            }
            c
        };
        match stmt {
            Statement::CreateSource { kind, name, .. } => {
                let topics = TopicCounts(st.log.topics().await.map_err(|e| e.to_string())?);
                let request = st
                    .catalog
                    .create_source(stmt, &topics)
                    .map_err(|e| e.0)?;
                if let (Some(req), false) = (request, replay) {
                    let mut configs = Vec::new();
                    if *kind == SourceKind::Table {
                        configs.push(("cleanup.policy".to_string(), "compact".to_string()));
                    }
                    if let Err(e) = st.log.create_topic(&req.name, req.partitions, &configs).await {
                        st.catalog
                            .drop_source(*kind, name, true)
                            .map_err(|e| e.0)?;
                        return Err(format!("Could not create topic '{}': {e}", req.name));
                    }
                }
                let what = match kind {
                    SourceKind::Stream => "Stream",
                    SourceKind::Table => "Table",
                };
                Ok(Done {
                    entity: Some(status(
                        format!("{}/`{name}`/create", kind_word(*kind).to_ascii_lowercase()),
                        format!("{what} created"),
                        None,
                    )),
                    command: Some(command(None)),
                })
            }
            Statement::CreateAsSelect {
                kind,
                name,
                or_replace,
                if_not_exists,
                query,
                ..
            } => {
                if st.catalog.get(name).is_some() && *if_not_exists {
                    return Ok(Done {
                        entity: None,
                        command: None,
                    });
                }
                if st.catalog.get(name).is_some() && !*or_replace {
                    let existing = st.catalog.get(name).expect("checked");
                    return Err(format!(
                        "Cannot add {} '{name}': A {} with the same name already exists",
                        kind_word(*kind).to_ascii_lowercase(),
                        kind_word(existing.kind).to_ascii_lowercase()
                    ));
                }
                let mut topics = st.log.topics().await.map_err(|e| e.to_string())?;
                // A source topic another engine has just created may not be in this node's
                // metadata yet (a cluster member applies it a moment later): wait a little
                // for it, so the query is planned (and split) by its real partition count,
                // not run whole as if it had one.
                for _ in 0..50 {
                    if replay {
                        break;
                    }
                    let probe = with_sink_defaults(stmt, props, &st.catalog, &TopicCounts(topics.clone()));
                    let missing = plan_create_as_select(&probe, &st.catalog, &TopicCounts(topics.clone()))
                        .is_ok_and(|p| {
                            crate::run::input_topics(&p.query)
                                .iter()
                                .any(|t| !topics.contains_key(t))
                        });
                    if !missing {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    topics = st.log.topics().await.map_err(|e| e.to_string())?;
                }
                let stmt = &with_sink_defaults(stmt, props, &st.catalog, &TopicCounts(topics.clone()));
                // ksqlDB's limits on COLLECT_LIST / COLLECT_SET, from the statement's properties.
                let limit = |k: &str| props.get(k).and_then(|v| v.trim().parse::<usize>().ok());
                let limits = (
                    limit("ksql.functions.collect_list.limit"),
                    limit("ksql.functions.collect_set.limit"),
                );
                let mut planned =
                    plan_create_as_select(stmt, &st.catalog, &TopicCounts(topics.clone()))
                        .map_err(|e| e.0)?;
                if let Planned::Aggregate(a) | Planned::JoinAggregate(_, a) = &mut planned.query {
                    a.limit_collections(limits.0, limits.1);
                }
                // A second copy of an aggregation's plan answers pull queries on its table.
                let materialized =
                    match plan_create_as_select(stmt, &st.catalog, &TopicCounts(topics.clone()))
                        .map_err(|e| e.0)?
                        .query
                    {
                        Planned::Aggregate(mut a) | Planned::JoinAggregate(_, mut a) => {
                            a.limit_collections(limits.0, limits.1);
                            Some(Arc::new(a))
                        }
                        Planned::Stateless(_) | Planned::Join(_) => None,
                    };
                if !replay && !topics.contains_key(&planned.sink.topic) {
                    let mut configs = Vec::new();
                    if *kind == SourceKind::Table {
                        configs.push(("cleanup.policy".to_string(), "compact".to_string()));
                    }
                    st.log
                        .create_topic(&planned.sink.topic, planned.partitions, &configs)
                        .await
                        .map_err(|e| format!("Could not create topic '{}': {e}", planned.sink.topic))?;
                }
                let prefix = match kind {
                    SourceKind::Stream => "CSAS",
                    SourceKind::Table => "CTAS",
                };
                let id = query_id.unwrap_or_else(|| format!("{prefix}_{name}_{}", st.command_seq));
                if let Some(old) = st.queries.values().find(|q| q.sink == *name).map(|q| q.id.clone()) {
                    if let Some(mut q) = st.queries.remove(&old) {
                        q.stop().await;
                        self.remove_stores(&q);
                    }
                }
                let tasks = self.tasks_for(
                    &id,
                    &planned.query,
                    &topics,
                    !replay || recorded.split_join,
                );
                let state_partitions = tasks.iter().filter(|t| t.holds_state()).count() as i32;
                if tasks.iter().any(|t| t.stage == Stage::Repartition) {
                    let repartition = repartition_topic(&id);
                    if !topics.contains_key(&repartition) {
                        st.log
                            .ensure_topic(&repartition, state_partitions, &[])
                            .await
                            .map_err(|e| format!("Could not create topic '{repartition}': {e}"))?;
                    }
                }
                if let (true, Planned::Join(j)) = (
                    tasks.iter().any(|t| t.stage == Stage::RepartitionRight),
                    &planned.query,
                ) {
                    // A join's table, by key: compacted, never purged (it is the table);
                    // a second stream, by join value: purged as the windows close.
                    let repartition = second_repartition_topic(&id, j);
                    let configs = if j.second_is_table() {
                        vec![("cleanup.policy".to_string(), "compact".to_string())]
                    } else {
                        Vec::new()
                    };
                    if !topics.contains_key(&repartition) {
                        st.log
                            .ensure_topic(&repartition, state_partitions, &configs)
                            .await
                            .map_err(|e| format!("Could not create topic '{repartition}': {e}"))?;
                    }
                }
                if matches!(planned.query, Planned::Aggregate(_) | Planned::JoinAggregate(..)) {
                    let changelog = changelog_topic(&id);
                    if !topics.contains_key(&changelog) {
                        st.log
                            .ensure_topic(
                                &changelog,
                                state_partitions,
                                &[("cleanup.policy".to_string(), "compact".to_string())],
                            )
                            .await
                            .map_err(|e| format!("Could not create topic '{changelog}': {e}"))?;
                    }
                }
                let sink_topic = planned.sink.topic.clone();
                st.catalog
                    .insert_derived(planned.sink, *or_replace)
                    .map_err(|e| e.0)?;
                let reset = Reset::from_properties(props);
                let plan = Arc::new(planned.query);
                if !replay {
                    self.start_from_here(st, &id, &plan, reset).await?;
                }
                let recorded_command = split_command(&id, &tasks);
                st.queries.insert(
                    id.clone(),
                    PersistentQuery {
                        id: id.clone(),
                        text: text.to_string(),
                        sink: name.clone(),
                        sink_topic,
                        sources: std::iter::once(query.from.clone())
                            .chain(query.joins.iter().map(|j| j.source.clone()))
                            .collect(),
                        materialized,
                        plan,
                        reset,
                        max_task_idle: crate::join_sync::max_task_idle(props),
                        tasks,
                        handles: BTreeMap::new(),
                    },
                );
                self.reconcile(st).await;
                Ok(Done {
                    entity: Some(status(
                        format!("{}/`{name}`/create", kind_word(*kind).to_ascii_lowercase()),
                        format!("Created query with ID {id}"),
                        Some(&id),
                    )),
                    command: Some(recorded_command),
                })
            }
            Statement::InsertInto { target, query, .. } => {
                let topics = st.log.topics().await.map_err(|e| e.to_string())?;
                let planned = strata_sql::planner::plan_insert_into(
                    stmt,
                    &st.catalog,
                    &TopicCounts(topics.clone()),
                )
                .map_err(|e| e.0)?;
                if matches!(planned.query, Planned::Aggregate(_) | Planned::JoinAggregate(..)) {
                    return Err("INSERT INTO a stream takes a query without aggregation.".into());
                }
                let id = query_id.unwrap_or_else(|| format!("INSERTQUERY_{}", st.command_seq));
                let tasks = self.tasks_for(&id, &planned.query, &topics, recorded.split_join);
                let sink_topic = planned.sink.topic.clone();
                let reset = Reset::from_properties(props);
                let plan = Arc::new(planned.query);
                if !replay {
                    self.start_from_here(st, &id, &plan, reset).await?;
                }
                let recorded_command = split_command(&id, &tasks);
                st.queries.insert(
                    id.clone(),
                    PersistentQuery {
                        id: id.clone(),
                        text: text.to_string(),
                        sink: target.clone(),
                        sink_topic,
                        sources: std::iter::once(query.from.clone())
                            .chain(query.joins.iter().map(|j| j.source.clone()))
                            .collect(),
                        materialized: None,
                        plan,
                        reset,
                        max_task_idle: crate::join_sync::max_task_idle(props),
                        tasks,
                        handles: BTreeMap::new(),
                    },
                );
                self.reconcile(st).await;
                Ok(Done {
                    entity: Some(status(
                        format!("stream/`{target}`/create"),
                        format!("Created query with ID {id}"),
                        Some(&id),
                    )),
                    command: Some(recorded_command),
                })
            }
            Statement::Drop {
                kind,
                if_exists,
                name,
                delete_topic,
            } => {
                let readers: Vec<&str> = st
                    .queries
                    .values()
                    .filter(|q| q.sources.contains(name))
                    .map(|q| q.id.as_str())
                    .collect();
                let writers: Vec<&str> = st
                    .queries
                    .values()
                    .filter(|q| q.sink == *name)
                    .map(|q| q.id.as_str())
                    .collect();
                if !readers.is_empty() || !writers.is_empty() {
                    let mut m = format!("Cannot drop {name}.");
                    if !readers.is_empty() {
                        m.push_str(&format!(
                            "\nThe following queries read from this source: [{}].",
                            readers.join(", ")
                        ));
                    }
                    if !writers.is_empty() {
                        m.push_str(&format!(
                            "\nThe following queries write into this source: [{}].",
                            writers.join(", ")
                        ));
                    }
                    m.push_str("\nYou need to terminate them before dropping ");
                    m.push_str(name);
                    m.push('.');
                    return Err(m);
                }
                let dropped = st
                    .catalog
                    .drop_source(*kind, name, *if_exists)
                    .map_err(|e| e.0)?;
                let Some(dropped) = dropped else {
                    return Ok(Done {
                        entity: Some(status(
                            format!("{}/`{name}`/drop", kind_word(*kind).to_ascii_lowercase()),
                            format!("Source `{name}` does not exist."),
                            None,
                        )),
                        command: None,
                    });
                };
                if *delete_topic && !replay {
                    st.log
                        .delete_topic(&dropped.topic)
                        .await
                        .map_err(|e| format!("Could not delete the topic '{}': {e}", dropped.topic))?;
                }
                Ok(Done {
                    entity: Some(status(
                        format!("{}/`{name}`/drop", kind_word(*kind).to_ascii_lowercase()),
                        format!("Source `{name}` (topic: {}) was dropped.", dropped.topic),
                        None,
                    )),
                    command: Some(command(None)),
                })
            }
            Statement::Terminate { query_id: which } => {
                let ids: Vec<String> = match which {
                    None => st.queries.keys().cloned().collect(),
                    Some(id) => {
                        let id = id.to_ascii_uppercase();
                        if !st.queries.contains_key(&id) {
                            if replay {
                                return Ok(Done { entity: None, command: None });
                            }
                            return Err(format!("Unknown queryId: {id}"));
                        }
                        vec![id]
                    }
                };
                for id in ids {
                    if let Some(mut q) = st.queries.remove(&id) {
                        q.stop().await;
                        self.remove_stores(&q);
                        // Its state goes with it, as ksqlDB deletes a query's internal topics.
                        let internal = [
                            changelog_topic(&id),
                            repartition_topic(&id),
                            table_repartition_topic(&id),
                            right_repartition_topic(&id),
                        ];
                        for topic in internal {
                            if !replay && st.log.topics().await.is_ok_and(|t| t.contains_key(&topic)) {
                                let _ = st.log.delete_topic(&topic).await;
                            }
                        }
                    }
                }
                Ok(Done {
                    entity: Some(status(
                        "terminate/query".into(),
                        "Query terminated.".into(),
                        None,
                    )),
                    command: Some(command(None)),
                })
            }
            Statement::InsertValues {
                target,
                columns,
                values,
            } => {
                self.insert_values(st, target, columns, values).await?;
                Ok(Done {
                    entity: None,
                    command: None,
                })
            }
            Statement::ListStreams { .. } | Statement::ListTables { .. } => {
                let want = match stmt {
                    Statement::ListStreams { .. } => SourceKind::Stream,
                    _ => SourceKind::Table,
                };
                let list: Vec<J> = st
                    .catalog
                    .sources()
                    .filter(|s| s.kind == want)
                    .map(|s| {
                        json!({
                            "type": kind_word(s.kind),
                            "name": s.name,
                            "topic": s.topic,
                            "keyFormat": format_name(&s.key_format),
                            "valueFormat": format_name(&s.value_format),
                            "isWindowed": false,
                        })
                    })
                    .collect();
                let (ty, field) = match want {
                    SourceKind::Stream => ("streams", "streams"),
                    SourceKind::Table => ("tables", "tables"),
                };
                Ok(Done {
                    entity: Some(json!({"@type": ty, "statementText": text, field: list, "warnings": []})),
                    command: None,
                })
            }
            Statement::ListTopics { all, .. } => {
                let topics = st.log.topics().await.map_err(|e| e.to_string())?;
                let list: Vec<J> = topics
                    .iter()
                    .filter(|(n, _)| *all || !n.starts_with('_'))
                    .map(|(n, p)| json!({"name": n, "replicaInfo": vec![1; *p as usize]}))
                    .collect();
                Ok(Done {
                    entity: Some(json!({"@type": "kafka_topics", "statementText": text, "topics": list, "warnings": []})),
                    command: None,
                })
            }
            Statement::ListQueries { .. } => {
                let list: Vec<J> = st.queries.values().map(query_json).collect();
                Ok(Done {
                    entity: Some(json!({"@type": "queries", "statementText": text, "queries": list, "warnings": []})),
                    command: None,
                })
            }
            Statement::ListFunctions => {
                let mut list: Vec<(&str, &str, &str)> = strata_sql::functions::FUNCTIONS.to_vec();
                list.extend(strata_sql::functions_more::NAMES.iter().map(|(n, c)| (*n, "SCALAR", *c)));
                list.extend([("FILTER", "SCALAR", "LAMBDA"), ("REDUCE", "SCALAR", "LAMBDA"), ("TRANSFORM", "SCALAR", "LAMBDA")]);
                list.sort();
                let list: Vec<J> = list
                    .iter()
                    .map(|(name, kind, category)| json!({"name": name, "type": kind, "category": category}))
                    .collect();
                Ok(Done {
                    entity: Some(json!({"@type": "function_names", "statementText": text, "functions": list, "warnings": []})),
                    command: None,
                })
            }
            Statement::Explain(target) => {
                let description = match target.as_ref() {
                    strata_sql::ast::ExplainTarget::QueryId(id) => {
                        let q = st
                            .queries
                            .get(id)
                            .or_else(|| st.queries.get(&id.to_ascii_uppercase()))
                            .ok_or_else(|| format!("Query with id:{id} does not exist, use SHOW QUERIES to view the full set of running queries."))?;
                        let state = query_state(q).to_string();
                        let sink = st.catalog.get(&q.sink);
                        let mut e = explain_json(&q.id, &q.text, &q.sources, sink, &state);
                        let (tasks, hosts) = self.tasks_metadata(q);
                        e["tasksMetadata"] = tasks;
                        e["ksqlHostQueryStatus"] = hosts;
                        e
                    }
                    strata_sql::ast::ExplainTarget::Statement(inner) => {
                        let topics = TopicCounts(st.log.topics().await.map_err(|e| e.to_string())?);
                        let planned = match inner.as_ref() {
                            Statement::CreateAsSelect { .. } => plan_create_as_select(inner, &st.catalog, &topics).map_err(|e| e.0)?,
                            Statement::InsertInto { .. } => strata_sql::planner::plan_insert_into(inner, &st.catalog, &topics).map_err(|e| e.0)?,
                            _ => return Err("EXPLAIN takes a query id, a CREATE … AS SELECT or an INSERT INTO … SELECT.".into()),
                        };
                        let sources: Vec<String> = match inner.as_ref() {
                            Statement::CreateAsSelect { query, .. } | Statement::InsertInto { query, .. } => {
                                std::iter::once(query.from.clone()).chain(query.joins.iter().map(|j| j.source.clone())).collect()
                            }
                            _ => Vec::new(),
                        };
                        let inner_text = text.trim().strip_prefix("EXPLAIN").or_else(|| text.trim().strip_prefix("explain")).unwrap_or(text).trim();
                        explain_json("", inner_text, &sources, Some(&planned.sink), "NOT_RUNNING")
                    }
                };
                Ok(Done {
                    entity: Some(json!({"@type": "queryDescription", "statementText": text, "queryDescription": description, "warnings": []})),
                    command: None,
                })
            }
            Statement::ListProperties => {
                let mut all = self.properties.clone();
                all.extend(props.clone());
                let list: Vec<J> = all
                    .iter()
                    .map(|(k, v)| json!({"name": k, "scope": "KSQL", "value": v}))
                    .collect();
                Ok(Done {
                    entity: Some(json!({
                        "@type": "properties", "statementText": text, "properties": list,
                        "overwrittenProperties": props.keys().collect::<Vec<_>>(),
                        "defaultProperties": [], "warnings": []
                    })),
                    command: None,
                })
            }
            Statement::Describe { name, extended } => {
                let source = st
                    .catalog
                    .get(name)
                    .ok_or_else(|| format!("Could not find STREAM/TABLE '{name}' in the Metastore"))?;
                let topics = st.log.topics().await.map_err(|e| e.to_string())?;
                Ok(Done {
                    entity: Some(json!({
                        "@type": "sourceDescription",
                        "statementText": text,
                        "sourceDescription": describe(source, &st.queries, *extended, topics.get(&source.topic).copied().unwrap_or(0)),
                        "warnings": [],
                    })),
                    command: None,
                })
            }
            Statement::DescribeStreams { extended } => {
                let topics = st.log.topics().await.map_err(|e| e.to_string())?;
                let list: Vec<J> = st
                    .catalog
                    .sources()
                    .map(|s| describe(s, &st.queries, *extended, topics.get(&s.topic).copied().unwrap_or(0)))
                    .collect();
                Ok(Done {
                    entity: Some(json!({"@type": "source_descriptions", "statementText": text, "sourceDescriptions": list, "warnings": []})),
                    command: None,
                })
            }
            Statement::Query(_) | Statement::Print { .. } => Err(bad(
                "The following statement types should be issued to the websocket endpoint '/query':\n\t* PRINT\n\t* SELECT",
            )),
            Statement::Define { .. } | Statement::Undefine { .. } => Ok(Done { entity: None, command: None }),
            Statement::DescribeFunction { name } => {
                let upper = name.to_ascii_uppercase();
                let known = strata_sql::functions::FUNCTIONS
                    .iter()
                    .map(|(n, k, c)| (*n, *k, *c))
                    .chain(strata_sql::functions_more::NAMES.iter().map(|(n, c)| (*n, "SCALAR", *c)))
                    .chain([("FILTER", "SCALAR", "LAMBDA"), ("REDUCE", "SCALAR", "LAMBDA"), ("TRANSFORM", "SCALAR", "LAMBDA")])
                    .find(|(n, _, _)| *n == upper);
                let Some((fname, kind, category)) = known else {
                    return Err(format!("Can't find any functions with the name '{upper}'"));
                };
                Ok(Done {
                    entity: Some(json!({
                        "@type": "describe_function", "statementText": text, "name": fname,
                        "description": format!("A built-in {} {} function.", category.to_ascii_lowercase(), kind.to_ascii_lowercase()),
                        "author": "Strata", "version": env!("CARGO_PKG_VERSION"), "path": "internal",
                        // Argument signatures are not catalogued by this engine.
                        "functions": [], "type": kind, "warnings": []
                    })),
                    command: None,
                })
            }
            Statement::RunScript { .. } => Err(
                "RUN SCRIPT is run by the client: `strata sql` (as ksqlDB's CLI) reads the file and sends its statements.".into(),
            ),
            _ => Err(format!(
                "This statement is not supported by this engine yet: {}",
                text.trim()
            )),
        }
    }

    async fn insert_values(
        &self,
        st: &mut State,
        target: &str,
        columns: &[String],
        values: &[strata_sql::ast::Expr],
    ) -> Result<(), String> {
        let source = insert_target(st, target)?;
        let all: Vec<&strata_sql::catalog::Column> =
            source.key.iter().chain(&source.value).collect();
        let names: Vec<String> = if columns.is_empty() {
            all.iter().map(|c| c.name.clone()).collect()
        } else {
            columns.to_vec()
        };
        if names.len() != values.len() {
            return Err(format!(
                "Failed to prepare statement: Expected number columns and values to match: [{}], [{}]",
                names.join(", "),
                values.iter().map(strata_sql::analyzer::format_expr).collect::<Vec<_>>().join(", ")
            ));
        }
        let mut row: BTreeMap<String, Value> = BTreeMap::new();
        for (n, e) in names.iter().zip(values) {
            let v = eval(e, &NoRow, &NoFunctions).map_err(|e| e.to_string())?;
            row.insert(n.clone(), v);
        }
        Self::insert_row(st, target, &source, row).await
    }

    /// `/inserts-stream`: one row (a JSON object by column name, ROWTIME optional) into
    /// `target`, as INSERT INTO … VALUES would write it.
    pub async fn insert_json(
        &self,
        target: &str,
        object: &serde_json::Map<String, J>,
    ) -> Result<(), String> {
        let mut st = self.state.lock().await;
        let source = insert_target(&st, target)?;
        let mut row: BTreeMap<String, Value> = BTreeMap::new();
        for (name, j) in object {
            let upper = name.to_ascii_uppercase();
            let column = source
                .key
                .iter()
                .chain(&source.value)
                .find(|c| c.name == *name || c.name == upper);
            let (n, v) = match column {
                Some(c) => (
                    c.name.clone(),
                    strata_sql::format::from_json(j, &c.sql_type).map_err(|e| {
                        format!("Failed to insert values into '{target}'. Expected type {} for column {}: {e}", type_name(&c.sql_type), c.name)
                    })?,
                ),
                None if upper == "ROWTIME" => (
                    upper,
                    strata_sql::format::from_json(j, &SqlType::Bigint).map_err(|e| e.to_string())?,
                ),
                None => return Err(format!("Column name {name} does not exist.")),
            };
            row.insert(n, v);
        }
        Self::insert_row(&mut st, target, &source, row).await
    }

    async fn insert_row(
        st: &mut State,
        target: &str,
        source: &strata_sql::catalog::Source,
        mut row: BTreeMap<String, Value>,
    ) -> Result<(), String> {
        let all: Vec<&strata_sql::catalog::Column> =
            source.key.iter().chain(&source.value).collect();
        let mut timestamp = now_ms();
        if let Some(t) = row.remove("ROWTIME") {
            timestamp = match cast(t, &SqlType::Bigint).map_err(|e| e.to_string())? {
                Value::Bigint(t) => t,
                _ => timestamp,
            };
        }
        for n in row.keys() {
            if !all.iter().any(|c| c.name == *n) {
                return Err(format!("Column name {n} does not exist."));
            }
        }
        let typed = |cols: &[strata_sql::catalog::Column],
                     row: &BTreeMap<String, Value>|
         -> Result<Vec<Value>, String> {
            cols.iter()
                .map(|c| {
                    let v = row.get(&c.name).cloned().unwrap_or(Value::Null);
                    cast(v, &c.sql_type).map_err(|e| {
                        format!("Failed to insert values into '{target}'. Expected type {} for column {}: {e}", type_name(&c.sql_type), c.name)
                    })
                })
                .collect()
        };
        let key_values = typed(&source.key, &row)?;
        let value_values = typed(&source.value, &row)?;
        let key_cols = strata_sql::catalog::name_types(&source.key);
        let value_cols = strata_sql::catalog::name_types(&source.value);
        let key = if key_cols.is_empty() {
            None
        } else {
            serialize(&source.key_format, &key_cols, &key_values, false).map_err(|e| {
                format!("Failed to insert values into '{target}'. Could not serialize key: {e}")
            })?
        };
        let value = serialize(
            &source.value_format,
            &value_cols,
            &value_values,
            source.wrap_single_value || value_cols.len() != 1,
        )
        .map_err(|e| {
            format!("Failed to insert values into '{target}'. Could not serialize value: {e}")
        })?;
        let topics = st.log.topics().await.map_err(|e| e.to_string())?;
        let partitions = *topics
            .get(&source.topic)
            .ok_or_else(|| format!("Topic '{}' does not exist", source.topic))?;
        let partition = match &key {
            Some(k) => strata_client::partition_for_key(k, partitions),
            None => (timestamp.rem_euclid(partitions as i64)) as i32,
        };
        st.log
            .produce(
                &source.topic,
                partition,
                vec![Record {
                    key: key.map(Bytes::from),
                    value: value.map(Bytes::from),
                    headers: Vec::new(),
                    timestamp_ms: timestamp,
                }],
            )
            .await
            .map_err(|e| format!("Failed to insert values into '{target}': {e}"))?;
        Ok(())
    }

    /// Plans a push query (SELECT … EMIT CHANGES): the query, its column names and types.
    /// A SELECT: a push query to run (EMIT CHANGES), or a pull query's answer, read from
    /// the materialized table's state.
    /// Where `tasks` of `q` run: the groups of those running here, and the other engines
    /// (SQL listeners) with the tasks each runs. `here_only`: each must run here.
    #[allow(clippy::type_complexity)]
    fn locate(
        &self,
        q: &PersistentQuery,
        tasks: &[&Task],
        here_only: bool,
        table: &str,
    ) -> Result<(Vec<Groups>, BTreeMap<String, Vec<String>>), String> {
        let mut local = Vec::new();
        let mut remotes: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for task in tasks {
            if let Some(h) = q.handles.get(*task) {
                local.push(h.groups.clone());
                continue;
            }
            if here_only {
                return Err(format!(
                    "Task {} of the query materializing `{table}` moved away from this engine: try again.",
                    task.id()
                ));
            }
            match self.remote_owner(&task.id()) {
                Some(addr) => remotes.entry(addr).or_default().push(task.id()),
                None => {
                    return Err(format!(
                        "The query materializing `{table}` is not running on any engine yet: try again shortly."
                    ))
                }
            }
        }
        Ok((local, remotes))
    }

    /// What a query or PRINT (`/query`, `/query-stream`) reads: READ on its sources'
    /// topics. Text that does not parse needs nothing (it fails on its own).
    pub async fn query_access(&self, text: &str) -> Vec<(String, TopicOp)> {
        let Ok(stmt) = strata_sql::parse_statement(text) else {
            return Vec::new();
        };
        if !matches!(stmt, Statement::Query(_) | Statement::Print { .. }) {
            return Vec::new();
        }
        let st = self.state.lock().await;
        // (Reads only: whether topics exist does not matter.)
        required_access(&st.catalog, &stmt, &BTreeMap::new(), &BTreeMap::new())
    }

    /// The topic `/inserts-stream` writes for a source: WRITE on it.
    pub async fn insert_access(&self, target: &str) -> Vec<(String, TopicOp)> {
        let st = self.state.lock().await;
        st.catalog
            .get(target)
            .map(|s| vec![(s.topic.clone(), TopicOp::Write)])
            .unwrap_or_default()
    }

    pub async fn query(&self, text: &str) -> Result<QueryPlan, String> {
        self.query_tasks(text, None).await
    }

    /// `query`; `only`: a pull query's answer from these tasks of the table's query alone,
    /// each of which must run here (the share another engine gathers for a scan).
    pub async fn query_tasks(
        &self,
        text: &str,
        only: Option<&BTreeSet<String>>,
    ) -> Result<QueryPlan, String> {
        let stmt = strata_sql::parse_statement(text).map_err(|e| e.to_string())?;
        let Statement::Query(query) = stmt else {
            return Err("Only SELECT statements can be run as queries here.".into());
        };
        let st = self.state.lock().await;
        if query.emit.is_some() {
            return plan_transient(&query, &st.catalog).map(|p| QueryPlan::Push(Box::new(p)));
        }
        let source = st
            .catalog
            .get(&query.from)
            .ok_or_else(|| format!("{} does not exist.", query.from))?;
        if source.kind != SourceKind::Table {
            return Err(format!(
                "Pull queries are not supported on streams. Did you mean to issue a push query by adding EMIT CHANGES?\nStatement: {}",
                text.trim()
            ));
        }
        let owner = st.queries.values().find(|q| q.sink == query.from);
        let Some((q, materialized)) = owner.and_then(|q| q.materialized.clone().map(|m| (q, m)))
        else {
            return Err(format!(
                "The `{}` table isn't queryable. To derive a queryable table, you can do 'CREATE TABLE QUERYABLE_{} AS SELECT * FROM {};'. See https://cnfl.io/queries for more info.\nAdd EMIT CHANGES if you intended to issue a push query.",
                query.from, query.from, query.from
            ));
        };
        if !query.group_by.is_empty() || query.window.is_some() || !query.joins.is_empty() {
            return Err("Pull queries don't support GROUP BY, WINDOW or JOIN clauses.".into());
        }
        let columns = strata_sql::analyzer::select_columns(&query, &st.catalog).map_err(|e| e.0)?;
        let names: Vec<String> = source
            .key
            .iter()
            .chain(&source.value)
            .map(|c| c.name.clone())
            .collect();
        // A lookup by the key (`WHERE k = literal` on a one-column key) reads one group;
        // anything else scans the table.
        let lookup = match (&query.where_clause, materialized.group_by.len()) {
            (
                Some(strata_sql::ast::Expr::Binary {
                    op: strata_sql::ast::BinaryOp::Eq,
                    left,
                    right,
                }),
                1,
            ) => {
                let key_name = &names[0];
                match (left.as_ref(), right.as_ref()) {
                    (
                        strata_sql::ast::Expr::Column { name, .. },
                        lit @ strata_sql::ast::Expr::Literal(_),
                    )
                    | (
                        lit @ strata_sql::ast::Expr::Literal(_),
                        strata_sql::ast::Expr::Column { name, .. },
                    ) if name == key_name => eval(lit, &NoRow, &NoFunctions)
                        .ok()
                        .and_then(|v| cast(v, &materialized.group_types[0]).ok()),
                    _ => None,
                }
            }
            _ => None,
        };
        // The tasks holding the answer: a key's partition (as Kafka's default partitioner
        // placed it in the source, or as the repartitioning step placed its group), else
        // every task holding state.
        let stateful: Vec<&Task> = q.tasks.iter().filter(|t| t.holds_state()).collect();
        let repartitioned = q.tasks.iter().any(|t| t.stage == Stage::Repartition);
        let key_partition = match (only, &lookup) {
            (None, Some(k)) if q.split() => Some(if repartitioned {
                let group =
                    strata_sql::aggregate::AggregateQuery::group_key(std::slice::from_ref(k));
                Some(strata_client::partition_for_key(
                    &group,
                    stateful.len() as i32,
                ))
            } else {
                strata_sql::format::serialize(
                    &materialized.source.key_format,
                    &materialized.source.key,
                    std::slice::from_ref(k),
                    false,
                )
                .ok()
                .flatten()
                .map(|b| strata_client::partition_for_key(&b, stateful.len() as i32))
            }),
            _ => None,
        };
        let wanted: Vec<&Task> = match (only, key_partition) {
            (Some(only), _) => stateful
                .iter()
                .copied()
                .filter(|t| only.contains(&t.id()))
                .collect(),
            (None, Some(p)) => stateful
                .iter()
                .copied()
                .filter(|t| t.partition == p)
                .collect(),
            (None, None) => stateful.clone(),
        };
        let (local, remotes) = self.locate(q, &wanted, only.is_some(), &query.from)?;
        // Records produced with another partitioner (librdkafka's default hashes with
        // CRC32) put a key elsewhere in the source: a key not found in its partition is
        // looked for in the others.
        let elsewhere = match key_partition {
            Some(p) if !repartitioned => {
                let others: Vec<&Task> = stateful
                    .iter()
                    .copied()
                    .filter(|t| t.partition != p)
                    .collect();
                // Only an error once needed: a key found in its partition does not
                // depend on where the others run.
                Some(self.locate(q, &others, false, &query.from))
            }
            _ => None,
        };
        let out_names: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
        let out_types: Vec<String> = columns.iter().map(|c| type_name(&c.sql_type)).collect();
        if local.is_empty() && remotes.len() == 1 && (!q.split() || key_partition.is_some()) {
            // One engine holds all of it: it answers.
            let addr = remotes.into_keys().next().expect("one");
            return Ok(QueryPlan::Remote(addr));
        }
        let sql_types = columns.iter().map(|c| c.sql_type.clone()).collect();
        drop(st);
        let mut rows = Vec::new();
        let answer = |group: Vec<Value>,
                      state: &strata_sql::aggregate::GroupState|
         -> Result<Option<Vec<Value>>, String> {
            let Some(values) = materialized.row_values(&group, state, &NoFunctions)? else {
                return Ok(None);
            };
            let row = NamedRow {
                names: &names,
                values: &values,
            };
            if let Some(f) = &query.where_clause {
                if !matches!(
                    eval(f, &row, &NoFunctions).map_err(|e| e.to_string())?,
                    Value::Boolean(true)
                ) {
                    return Ok(None);
                }
            }
            columns
                .iter()
                .map(|c| {
                    eval(&c.expr, &row, &NoFunctions)
                        .and_then(|v| cast(v, &c.sql_type))
                        .map_err(|e| e.to_string())
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some)
        };
        let (mut local, mut remotes) = (local, remotes);
        let read = |local: &[Groups], rows: &mut Vec<Vec<Value>>| -> Result<(), String> {
            for groups in local {
                let mut groups = groups.lock().expect("groups lock");
                match &lookup {
                    Some(k) => {
                        let gk = strata_sql::aggregate::AggregateQuery::group_key(
                            std::slice::from_ref(k),
                        );
                        if let Some(state) = groups.get(&gk) {
                            rows.extend(answer(vec![k.clone()], &state)?);
                        }
                    }
                    None => {
                        let mut failed = None;
                        groups.for_each(&mut |gk, state| {
                            if let Some(group) = materialized.group_from_key(gk) {
                                match answer(group, state) {
                                    Ok(r) => rows.extend(r),
                                    Err(e) => {
                                        failed = Some(e);
                                        return false;
                                    }
                                }
                            }
                            query.limit.is_none_or(|l| (rows.len() as i64) < l)
                        });
                        if let Some(e) = failed {
                            return Err(e);
                        }
                        if query.limit.is_some_and(|l| rows.len() as i64 >= l) {
                            break;
                        }
                    }
                }
            }
            Ok(())
        };
        read(&local, &mut rows)?;
        if let (true, Some(others)) = (rows.is_empty(), elsewhere) {
            (local, remotes) = others?;
            read(&local, &mut rows)?;
        }
        if remotes.is_empty() {
            return Ok(QueryPlan::Pull {
                names: out_names,
                types: out_types,
                rows,
            });
        }
        Ok(QueryPlan::Gather {
            names: out_names,
            types: out_types,
            sql_types,
            rows,
            remotes: remotes.into_iter().collect(),
            limit: query.limit,
        })
    }

    /// On a cluster, a new query from the latest offsets starts from those of now, wherever
    /// and whenever an engine comes to run it: they are committed for its group here.
    async fn start_from_here(
        &self,
        st: &mut State,
        query_id: &str,
        plan: &Planned,
        reset: Reset,
    ) -> Result<(), String> {
        if self.cluster.get().is_none() || reset != Reset::Latest {
            return Ok(());
        }
        let topics = st.log.topics().await.map_err(|e| e.to_string())?;
        let mut inputs = crate::run::input_topics(plan);
        if let Planned::Join(j) = plan {
            if j.repartitionable() && j.second_is_table() {
                // A split join's table is read whole from its start, whatever the reset.
                inputs.truncate(1);
            }
        }
        for topic in inputs {
            let mut ends = BTreeMap::new();
            for p in 0..topics.get(&topic).copied().unwrap_or(0) {
                ends.insert(
                    p,
                    st.log
                        .offset(&topic, p, -1)
                        .await
                        .map_err(|e| e.to_string())?,
                );
            }
            st.log
                .commit(&crate::run::query_group(query_id), &topic, &ends)
                .await
                .map_err(|e| format!("Could not record where query {query_id} starts: {e}"))?;
        }
        Ok(())
    }

    /// Deletes a terminated query's local state stores (one per task).
    fn remove_stores(&self, q: &PersistentQuery) {
        if let Some(dir) = &self.state_options.dir {
            for task in &q.tasks {
                crate::store::remove(dir, &task.id());
            }
        }
    }

    /// Stops every persistent query (their positions committed).
    pub async fn shutdown(&self) {
        let mut st = self.state.lock().await;
        let queries = std::mem::take(&mut st.queries);
        for (_, mut q) in queries {
            q.stop().await;
        }
    }
}

/// What a SELECT becomes.
pub enum QueryPlan {
    Push(Box<PushPlan>),
    /// A pull query another engine answers: its SQL listener.
    Remote(String),
    /// A scan of a table whose query's tasks run on several engines: the rows of the
    /// tasks running here, and the other engines (SQL listeners) with the tasks each is
    /// asked for; LIMIT applies to the whole.
    Gather {
        names: Vec<String>,
        types: Vec<String>,
        sql_types: Vec<SqlType>,
        rows: Vec<Vec<Value>>,
        remotes: Vec<(String, Vec<String>)>,
        limit: Option<i64>,
    },
    Pull {
        names: Vec<String>,
        types: Vec<String>,
        rows: Vec<Vec<Value>>,
    },
}

struct NamedRow<'a> {
    names: &'a [String],
    values: &'a [Value],
}

impl Row for NamedRow<'_> {
    fn column(&self, _: Option<&str>, name: &str) -> Option<&Value> {
        self.names
            .iter()
            .position(|n| n == name)
            .map(|i| &self.values[i])
    }
}

/// A push query ready to run: the query, its LIMIT, its column names and type names.
pub type PushPlan = (TransientQuery, Option<i64>, Vec<String>, Vec<String>);

fn plan_transient(query: &Query, catalog: &Catalog) -> Result<PushPlan, String> {
    if query.emit.is_none() {
        return Err(
            "Pull queries are not supported yet by this engine: add EMIT CHANGES for a push query."
                .into(),
        );
    }
    if query.emit == Some(strata_sql::ast::Emit::Final)
        || !query.group_by.is_empty()
        || query.window.is_some()
        || !query.joins.is_empty()
    {
        return Err(
            "Aggregations, windows, joins and EMIT FINAL are not supported yet by this engine."
                .into(),
        );
    }
    let columns = strata_sql::analyzer::select_columns(query, catalog).map_err(|e| e.0)?;
    let source: Source = catalog
        .get(&query.from)
        .ok_or_else(|| format!("{} does not exist.", query.from))?
        .clone();
    let names = columns.iter().map(|c| c.name.clone()).collect();
    let types = columns.iter().map(|c| type_name(&c.sql_type)).collect();
    Ok((
        TransientQuery {
            source,
            columns,
            filter: query.where_clause.clone(),
        },
        query.limit,
        names,
        types,
    ))
}

/// A query's state as SHOW QUERIES names it; one that another engine of the cluster runs
/// is reported RUNNING (its owner reports its errors).
fn query_state(q: &PersistentQuery) -> &'static str {
    let failing = q
        .handles
        .values()
        .any(|h| matches!(*h.state.lock().expect("state lock"), QueryState::Error(_)));
    if failing {
        "ERROR"
    } else {
        "RUNNING"
    }
}

fn query_json(q: &PersistentQuery) -> J {
    let state = query_state(q);
    json!({
        "queryString": q.text,
        "sinks": [q.sink],
        "sinkKafkaTopics": [q.sink_topic],
        "id": q.id,
        "statusCount": {state: 1},
        "queryType": "PERSISTENT",
        "state": state,
    })
}

/// The stream or table INSERT VALUES and /inserts-stream write into: it must exist and
/// not be read-only.
fn insert_target(st: &State, target: &str) -> Result<Source, String> {
    let source = st
        .catalog
        .get(target)
        .ok_or_else(|| format!("Cannot insert values into an unknown stream/table: `{target}`"))?
        .clone();
    if source.read_only {
        return Err(format!(
            "Cannot insert values into read-only {}: {target}",
            kind_word(source.kind).to_ascii_lowercase()
        ));
    }
    Ok(source)
}

/// EXPLAIN's query description (ksqlDB's `queryDescription`): the sink's fields, the
/// sources and sink, and the plan as text.
fn explain_json(id: &str, text: &str, sources: &[String], sink: Option<&Source>, state: &str) -> J {
    let fields: Vec<J> = sink
        .map(|s| {
            s.key
                .iter()
                .map(|c| json!({"name": c.name, "schema": schema_json(&c.sql_type), "type": "KEY"}))
                .chain(
                    s.value
                        .iter()
                        .map(|c| json!({"name": c.name, "schema": schema_json(&c.sql_type)})),
                )
                .collect()
        })
        .unwrap_or_default();
    let schema = |s: &Source| {
        s.key
            .iter()
            .map(|c| format!("`{}` {} KEY", c.name, type_name(&c.sql_type)))
            .chain(
                s.value
                    .iter()
                    .map(|c| format!("`{}` {}", c.name, type_name(&c.sql_type))),
            )
            .collect::<Vec<_>>()
            .join(", ")
    };
    let plan = match sink {
        Some(s) => format!(
            " > [ SINK ] | Topic: {} | Schema: {} | Key format: {} | Value format: {}\n\t\t > [ {} ] | Sources: {}\n",
            s.topic,
            schema(s),
            format_name(&s.key_format),
            format_name(&s.value_format),
            if sources.len() > 1 { "JOIN" } else { "PROJECT" },
            sources.join(", ")
        ),
        None => String::new(),
    };
    json!({
        "id": id,
        "statementText": text,
        "windowType": null,
        "fields": fields,
        "sources": sources,
        "sinks": sink.map(|s| vec![s.name.clone()]).unwrap_or_default(),
        "sinkKafkaTopics": sink.map(|s| vec![s.topic.clone()]).unwrap_or_default(),
        "topology": "",
        "executionPlan": plan,
        "overriddenProperties": {},
        "ksqlHostQueryStatus": {},
        "queryType": "PERSISTENT",
        "queryErrors": [],
        "tasksMetadata": [],
        "state": state,
    })
}

fn describe(
    source: &Source,
    queries: &BTreeMap<String, PersistentQuery>,
    extended: bool,
    partitions: i32,
) -> J {
    let mut fields: Vec<J> = Vec::new();
    for c in &source.key {
        fields.push(json!({"name": c.name, "schema": schema_json(&c.sql_type), "type": "KEY"}));
    }
    for c in &source.value {
        fields.push(json!({"name": c.name, "schema": schema_json(&c.sql_type)}));
    }
    let read: Vec<J> = queries
        .values()
        .filter(|q| q.sources.contains(&source.name))
        .map(query_json)
        .collect();
    let write: Vec<J> = queries
        .values()
        .filter(|q| q.sink == source.name)
        .map(query_json)
        .collect();
    let statistics = if extended {
        // What the queries read from their sources and wrote to this sink: a
        // repartitioning step's reads are the source's, its writes internal; the step
        // after it reads internal records and writes the sink.
        let (r, w) = queries
            .values()
            .filter(|q| q.sink == source.name)
            .flat_map(|q| q.handles.iter())
            .map(|(task, h)| {
                let (r, w) = *h.counts.lock().expect("counts lock");
                match task.stage {
                    Stage::Direct => (r, w),
                    Stage::Repartition | Stage::RepartitionRight => (r, 0),
                    Stage::AfterRepartition => (0, w),
                }
            })
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        format!("records-read: {r}, records-written: {w}")
    } else {
        String::new()
    };
    json!({
        "name": source.name,
        "windowType": null,
        "readQueries": read,
        "writeQueries": write,
        "fields": fields,
        "type": kind_word(source.kind),
        "timestamp": source.timestamp_column.clone().unwrap_or_default(),
        "statistics": statistics,
        "errorStats": "",
        "extended": extended,
        "keyFormat": format_name(&source.key_format),
        "valueFormat": format_name(&source.value_format),
        "topic": source.topic,
        "partitions": partitions,
        "replication": if extended { 1 } else { 0 },
        "statement": "",
        "queryOffsetSummaries": [],
        "sourceConstraints": [],
    })
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The topics a statement touches and what it does to each, for authorization
/// ([`crate::auth`], as ksqlDB's topic access validator): READ on every source a query
/// reads and on a topic a CREATE STREAM/TABLE declares or PRINT prints; WRITE on the sink
/// of a CREATE … AS SELECT, INSERT INTO or INSERT VALUES; CREATE for a topic that does not
/// exist yet and will be created; DELETE for DROP … DELETE TOPIC. Sources the catalog
/// does not know are left out (the statement fails on its own).
fn required_access(
    catalog: &Catalog,
    stmt: &Statement,
    props: &BTreeMap<String, String>,
    existing: &BTreeMap<String, i32>,
) -> Vec<(String, TopicOp)> {
    let topic_of = |name: &str| catalog.get(name).map(|s| s.topic.clone());
    let reads = |q: &Query| -> Vec<(String, TopicOp)> {
        std::iter::once(q.from.as_str())
            .chain(q.joins.iter().map(|j| j.source.as_str()))
            .filter_map(topic_of)
            .map(|t| (t, TopicOp::Read))
            .collect()
    };
    let property = |properties: &strata_sql::ast::Properties, key: &str| {
        properties.iter().find_map(|(k, v)| match v {
            strata_sql::ast::Literal::String(s) if k.eq_ignore_ascii_case(key) => Some(s.clone()),
            _ => None,
        })
    };
    let write_or_create = |topic: String| {
        let op = if existing.contains_key(&topic) {
            TopicOp::Write
        } else {
            TopicOp::Create
        };
        (topic, op)
    };
    let mut needs = match stmt {
        Statement::Query(q) => reads(q),
        Statement::Print { topic, .. } => vec![(topic.clone(), TopicOp::Read)],
        Statement::CreateSource {
            name, properties, ..
        } => {
            let topic = property(properties, "KAFKA_TOPIC").unwrap_or_else(|| name.clone());
            let op = if existing.contains_key(&topic) {
                TopicOp::Read
            } else {
                TopicOp::Create
            };
            vec![(topic, op)]
        }
        Statement::CreateAsSelect {
            name,
            properties,
            query,
            ..
        } => {
            let topic = property(properties, "KAFKA_TOPIC").unwrap_or_else(|| {
                match props.get("ksql.output.topic.name.prefix") {
                    Some(prefix) => format!("{prefix}{name}"),
                    None => name.clone(),
                }
            });
            let mut needs = reads(query);
            needs.push(write_or_create(topic));
            needs
        }
        Statement::InsertInto { target, query, .. } => {
            let mut needs = reads(query);
            needs.extend(topic_of(target).map(|t| (t, TopicOp::Write)));
            needs
        }
        Statement::InsertValues { target, .. } => topic_of(target)
            .map(|t| vec![(t, TopicOp::Write)])
            .unwrap_or_default(),
        Statement::Drop {
            name,
            delete_topic: true,
            ..
        } => topic_of(name)
            .map(|t| vec![(t, TopicOp::Delete)])
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    needs.sort();
    needs.dedup();
    needs
}

/// ksqlDB's session defaults for a CREATE … AS SELECT's sink, each unless its WITH clause
/// sets its own: `ksql.output.topic.name.prefix` before a topic named after the sink, and
/// `ksql.persistence.wrap.single.values=false` for a sink of one value column.
fn with_sink_defaults(
    stmt: &Statement,
    props: &BTreeMap<String, String>,
    catalog: &Catalog,
    topics: &dyn Topics,
) -> Statement {
    let mut out = stmt.clone();
    let Statement::CreateAsSelect {
        name, properties, ..
    } = &mut out
    else {
        return out;
    };
    let has =
        |p: &strata_sql::ast::Properties, k: &str| p.iter().any(|(n, _)| n.eq_ignore_ascii_case(k));
    if let Some(prefix) = props.get("ksql.output.topic.name.prefix") {
        if !has(properties, "KAFKA_TOPIC") {
            properties.push((
                "KAFKA_TOPIC".into(),
                strata_sql::ast::Literal::String(format!("{prefix}{name}")),
            ));
        }
    }
    let unwrap = props
        .get("ksql.persistence.wrap.single.values")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("false"));
    if unwrap && !has(properties, "WRAP_SINGLE_VALUE") {
        let mut unwrapped = out.clone();
        if let Statement::CreateAsSelect { properties, .. } = &mut unwrapped {
            properties.push((
                "WRAP_SINGLE_VALUE".into(),
                strata_sql::ast::Literal::Boolean(false),
            ));
        }
        // Refused for several value columns: those stay wrapped.
        if plan_create_as_select(&unwrapped, catalog, topics).is_ok() {
            return unwrapped;
        }
    }
    out
}

/// What the command topic holds with a statement besides its text: the id its query
/// runs under, and whether its join was split (an engine following it splits it alike,
/// even before the repartition topics reach its metadata).
#[derive(Debug, Default)]
struct Recorded {
    query_id: Option<String>,
    split_join: bool,
}

/// Applies the statements other engines append to the command topic, every
/// `FOLLOW_INTERVAL`, while the engine lives.
async fn follow(engine: std::sync::Weak<Engine>) {
    loop {
        tokio::time::sleep(FOLLOW_INTERVAL).await;
        let Some(engine) = engine.upgrade() else {
            return;
        };
        let mut st = engine.state.lock().await;
        if let Err(e) = engine.catch_up(&mut st).await {
            tracing::debug!(error = %e, "SQL engine: command topic not read");
        }
    }
}

/// Starts and stops queries as the engines' group assigns them.
async fn follow_ownership(engine: std::sync::Weak<Engine>) {
    let mut ownership = match engine
        .upgrade()
        .and_then(|e| e.cluster.get().map(|c| c.ownership.clone()))
    {
        Some(o) => o,
        None => return,
    };
    while ownership.changed().await.is_ok() {
        let Some(engine) = engine.upgrade() else {
            return;
        };
        let mut st = engine.state.lock().await;
        engine.reconcile(&mut st).await;
    }
}
