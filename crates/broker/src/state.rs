//! The broker's shared state: config, the metadata log, and the partitions it implies.
//!
//! Topic changes go metadata-log-first: a change is appended (and synced) to the metadata
//! log, then the partitions it implies are opened or removed. At start the metadata log is
//! replayed and directories of topics no longer in the metadata are deleted; the internal
//! topics' partitions are recovered (in parallel) and the coordinators loaded from them
//! before anything is served; every other partition is queued and recovered by
//! `num.recovery.threads.per.data.dir` workers while the broker already serves the ones that
//! are ready (a partition still recovering answers NOT_LEADER_OR_FOLLOWER, and Metadata
//! shows it without a leader, so clients retry; one that failed to open answers
//! KAFKA_STORAGE_ERROR and is retried at the next start).
//!
//! After start, partitions are opened and removed only by the replica manager
//! (`replicas.rs`), from the delta of each metadata change.
//!
//! Lock order: `metadata` before `applying` before `partitions` before `loading`; none is
//! held across an await.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use strata_cluster::{MetadataError, MetadataImage, MetadataLog, MetadataRecord, TopicImage};
use strata_quorum::{Quorum, QuorumError};
use strata_storage::log_manager::RecoveryState;
use strata_storage::{
    Clock, FilesystemSync, Fs, Log, LogManager, Partition, RecoveryHint, StorageError,
};
use tokio::sync::Notify;
use tracing::{info, warn};
use uuid::Uuid;

use crate::{topic_config, BrokerConfig};

/// Why a topic change was refused, each with the Kafka error code it maps to.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("{0}")]
    InvalidTopic(String),
    #[error("Topic '{0}' already exists.")]
    AlreadyExists(String),
    #[error("This server does not host this topic: {0}")]
    Unknown(String),
    #[error("{0}")]
    InvalidPartitions(String),
    #[error("{0}")]
    InvalidReplicationFactor(String),
    #[error("{0}")]
    InvalidConfig(String),
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    #[error("metadata log: {0}")]
    Metadata(#[from] MetadataError),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// The data directory belongs to another cluster or node.
    #[error("{0}")]
    Identity(String),
    /// The metadata quorum refused the change or could not be reached.
    #[error("{0}")]
    Quorum(#[from] QuorumError),
}

impl TopicError {
    pub fn code(&self) -> i16 {
        use crate::errors::*;
        match self {
            TopicError::InvalidTopic(_) => INVALID_TOPIC,
            TopicError::AlreadyExists(_) => TOPIC_ALREADY_EXISTS,
            TopicError::Unknown(_) => UNKNOWN_TOPIC_OR_PARTITION,
            TopicError::InvalidPartitions(_) => INVALID_PARTITIONS,
            TopicError::InvalidReplicationFactor(_) => INVALID_REPLICATION_FACTOR,
            TopicError::InvalidConfig(_) => INVALID_CONFIG,
            TopicError::InvalidReplicaAssignment(_) => INVALID_REPLICA_ASSIGNMENT,
            TopicError::Metadata(MetadataError::TopicExists(_)) => TOPIC_ALREADY_EXISTS,
            TopicError::Metadata(_) | TopicError::Storage(_) => KAFKA_STORAGE_ERROR,
            TopicError::Identity(_) => UNKNOWN_SERVER_ERROR,
            TopicError::Quorum(QuorumError::Rejected(r)) if r.topic_exists => TOPIC_ALREADY_EXISTS,
            TopicError::Quorum(QuorumError::Rejected(_)) => INVALID_REQUEST,
            // Retriable: clients try again (the quorum is electing, or a majority is away).
            TopicError::Quorum(_) => NOT_CONTROLLER,
        }
    }
}

/// Where this node's metadata changes go: its own metadata log (a standalone node), or the
/// metadata quorum (a cluster member).
pub enum MetadataStore {
    Local(Box<MetadataLog>),
    Quorum(QuorumMember),
}

/// A cluster member's view of the quorum: the quorum itself and the image whose changes
/// this node has applied to its partitions (what it serves from).
pub struct QuorumMember {
    pub quorum: Arc<Quorum>,
    pub(crate) applied: Arc<RwLock<Applied>>,
    pub(crate) runtime: tokio::runtime::Handle,
}

/// The latest image the replica manager applied, and its quorum index.
#[derive(Clone, Default)]
pub(crate) struct Applied {
    pub index: Option<u64>,
    pub image: Arc<MetadataImage>,
}

impl MetadataStore {
    /// The current image (on a cluster member: the one applied to this node's partitions).
    pub fn image(&self) -> Arc<MetadataImage> {
        match self {
            MetadataStore::Local(log) => log.image(),
            MetadataStore::Quorum(q) => q.applied_image(),
        }
    }

    /// How far the metadata log goes: its end offset (standalone) or the applied quorum index
    /// plus one (cluster member).
    pub fn end_offset(&self) -> i64 {
        match self {
            MetadataStore::Local(log) => log.end_offset(),
            MetadataStore::Quorum(q) => q
                .applied
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .index
                .map_or(0, |i| i as i64 + 1),
        }
    }

    fn close(&mut self) -> Result<(), MetadataError> {
        match self {
            MetadataStore::Local(log) => log.close(),
            // The quorum is stopped by the server (it is async).
            MetadataStore::Quorum(_) => Ok(()),
        }
    }
}

impl QuorumMember {
    pub(crate) fn applied_image(&self) -> Arc<MetadataImage> {
        self.applied
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .image
            .clone()
    }

    /// Runs a quorum call from synchronous code (a runtime worker or a blocking thread).
    pub(crate) fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        tokio::task::block_in_place(|| self.runtime.block_on(f))
    }
}

pub struct Broker {
    pub config: BrokerConfig,
    pub fs: Arc<dyn Fs>,
    pub clock: Arc<dyn Clock>,
    metadata: Mutex<MetadataStore>,
    /// Set on a cluster member (shares the quorum and the applied image with `metadata`, for
    /// readers that must not wait behind a metadata write).
    pub(crate) quorum: Option<QuorumMember>,
    /// Partitions by topic name, then partition index: looked up by `&str` on every
    /// produce and fetch, without allocating.
    partitions: RwLock<HashMap<String, BTreeMap<i32, Arc<Partition>>>>,
    /// Woken whenever a high watermark may have advanced (long-polling fetches wait on it).
    pub data_arrived: Notify,
    /// The object store of tiered storage (`remote.log.storage.system.enable`).
    pub tiering: Option<Arc<crate::tiering::Tiering>>,
    /// Counters for `GET /metrics` (see `metrics`).
    pub metrics: crate::metrics::Metrics,
    /// The next producer id and the end of the block it comes from.
    producer_ids: Mutex<(i64, i64)>,
    /// File-system-wide group commit for produces that touch many partitions.
    pub filesystem_sync: FilesystemSync,
    /// Set at shutdown so long-polling fetches answer now instead of at their deadline.
    shutting_down: AtomicBool,
    /// The group coordinator (consumer groups and committed offsets).
    pub groups: crate::groups::GroupService,
    /// The transaction coordinator.
    pub txns: crate::txn::TxnService,
    /// The data directory's checkpoints and clean-shutdown marker.
    log_manager: LogManager,
    /// Partitions found at start and not recovered yet (see [`Broker::recover_deferred`]).
    loading: Mutex<Loading>,
    /// Signalled whenever a deferred partition finishes (opened or failed).
    loading_changed: Condvar,
    /// Deferred partitions not yet opened, failed ones included (a lock-free "none" check
    /// for the request paths).
    unopened: AtomicUsize,
    /// What the checkpoints said at start, until every deferred partition is open.
    recovery: Mutex<Option<RecoveryState>>,
    /// Held while a metadata delta is applied to the partitions (see `replicas.rs`).
    pub(crate) applying: Mutex<()>,
    /// The active controller's state (used on the quorum leader of a cluster).
    pub(crate) controller: Mutex<strata_controller::Controller>,
    /// This broker's epoch from its latest registration (a cluster member).
    pub(crate) broker_epoch: std::sync::atomic::AtomicI64,
    /// Replication throttles' budgets (`throttle`).
    pub(crate) replication_quotas: crate::throttle::ReplicationQuotas,
    /// The data directory's id (`meta.properties`).
    directory_id: Option<Uuid>,
    /// Why the broker must stop at once, set once (see [`Broker::halt`]).
    halted: std::sync::OnceLock<String>,
    /// Signalled when `halted` is set; `serve` waits on it.
    halt_requested: Notify,
    /// Failed authentications (and later authorization denials), rate-limited.
    pub audit: Arc<crate::audit::AuditLog>,
    /// ACL enforcement (`authorizer.class.name`), with the ACLs of the latest image.
    pub authorizer: crate::authorizer::Authorizer,
    /// Client quotas' usage (the quotas themselves are cluster metadata).
    pub quotas: crate::quotas::QuotaManager,
    /// The TLS listeners' context, once the server made one (dynamic keystore changes
    /// reconfigure it).
    pub tls: std::sync::OnceLock<std::collections::BTreeMap<String, Arc<crate::tls::TlsContext>>>,
    /// How replica fetches connect to the peers' inter-broker listener (TLS, SASL).
    pub peer_security: strata_client::ClientSecurity,
    /// OAUTHBEARER's validator, when that mechanism is enabled.
    pub oauth: Option<Arc<crate::oauth::OAuthValidator>>,
    /// Each SASL listener's own PLAIN users (`listener.name.<l>.plain.sasl.jaas.config`'s
    /// `user_NAME="password"` entries), by listener name.
    pub plain_users: std::collections::HashMap<String, Arc<strata_security::JaasUsers>>,
    /// `queued.max.request.bytes` in KiB: what request frames being received or handled may
    /// hold, all connections together (see `connection.rs`).
    pub request_memory: Arc<tokio::sync::Semaphore>,
}

/// Recovered logs that need a sync are synced together: at most this many per syncfs, and a
/// log waits at most this long for its batch to fill.
const RECOVERY_SYNC_BATCH: usize = 512;
const RECOVERY_SYNC_WAIT: Duration = Duration::from_millis(50);

/// The partitions recovery has not opened yet.
#[derive(Default)]
struct Loading {
    queued: VecDeque<(String, i32)>,
    in_progress: HashSet<(String, i32)>,
    /// Failed to open (I/O error): unavailable until the next start retries them.
    failed: HashSet<(String, i32)>,
    /// Topics being deleted: their deletion holds the `applying` lock while it waits for
    /// their partitions' recovery to end, and a log of one that recovers meanwhile is
    /// dropped, not served (see [`Broker::serve_recovered`]).
    cancelled: HashSet<String>,
}

/// Whether a partition this broker hosts can serve now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    Open,
    /// Still being recovered after start.
    Recovering,
    /// Its log could not be opened.
    Failed,
    /// Not hosted here (or no such partition).
    Unknown,
}

fn known_topic(metadata: &MetadataStore, name: &str) -> Result<TopicImage, TopicError> {
    metadata
        .image()
        .topic(name)
        .cloned()
        .ok_or_else(|| TopicError::Unknown(name.to_string()))
}

/// Topics only the broker itself writes (refused to CreateTopics, DeleteTopics, Produce;
/// flagged internal in Metadata).
pub fn is_internal_topic(name: &str) -> bool {
    name == crate::groups::OFFSETS_TOPIC || name == crate::txn::TRANSACTION_STATE_TOPIC
}

/// Kafka's topic name rules.
pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    if name.is_empty() || name.len() > 249 || name == "." || name == ".." {
        return Err(TopicError::InvalidTopic(format!(
            "Topic name '{name}' is illegal: it must be 1 to 249 characters and not '.' or '..'"
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '.' || *c == '_' || *c == '-'))
    {
        return Err(TopicError::InvalidTopic(format!("Topic name '{name}' is illegal: it contains '{c}'; only ASCII alphanumerics, '.', '_' and '-' are allowed")));
    }
    if name.starts_with("__cluster_metadata") {
        return Err(TopicError::InvalidTopic(format!(
            "Topic name '{name}' is reserved"
        )));
    }
    Ok(())
}

impl Broker {
    /// Opens the data directory: replays the metadata log and opens every partition (the
    /// whole recovery, before returning).
    pub fn open(
        config: BrokerConfig,
        fs: Arc<dyn Fs>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, TopicError> {
        let broker = Self::open_deferred(config, fs, clock)?;
        broker.recover_deferred();
        Ok(broker)
    }

    /// Opens the data directory with only the internal topics' partitions recovered and the
    /// coordinators loaded from them; every other partition is queued for
    /// [`Broker::recover_deferred`], which the server runs while it already serves.
    pub fn open_deferred(
        config: BrokerConfig,
        fs: Arc<dyn Fs>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, TopicError> {
        Self::open_member(config, fs, clock, None)
    }

    /// [`Broker::open_deferred`] for a cluster member: metadata comes from (and goes to) the
    /// running `quorum` instead of a local metadata log. Called on a runtime worker thread.
    pub fn open_member(
        config: BrokerConfig,
        fs: Arc<dyn Fs>,
        clock: Arc<dyn Clock>,
        quorum: Option<Arc<Quorum>>,
    ) -> Result<Self, TopicError> {
        fs.create_dir_all(&config.data_dir)
            .map_err(|e| StorageError::io(&config.data_dir, e))?;
        let directory_id = Self::check_identity(fs.as_ref(), &config)?;
        let member = quorum.map(|quorum| QuorumMember {
            quorum,
            applied: Arc::new(RwLock::new(Applied::default())),
            runtime: tokio::runtime::Handle::current(),
        });
        let metadata = match &member {
            None => MetadataStore::Local(Box::new(MetadataLog::open(
                fs.clone(),
                clock.clone(),
                &config.data_dir,
            )?)),
            Some(m) => MetadataStore::Quorum(QuorumMember {
                quorum: m.quorum.clone(),
                applied: m.applied.clone(),
                runtime: m.runtime.clone(),
            }),
        };
        let (fs_for_logs, data_dir_for_logs) = (fs.clone(), config.data_dir.clone());
        let group_config = config.group_config();
        let config_session_timeout_ms = config.broker_session_timeout_ms as i64;
        let txn_config = config.txn_config();
        let peer_security = match config.resolved_listeners() {
            Ok(listeners) if config.controller_quorum_voters.is_some() => {
                crate::peer_security::peer_security(&config, &listeners)
                    .map_err(TopicError::InvalidConfig)?
            }
            _ => strata_client::ClientSecurity::default(),
        };
        let plain_users = config
            .resolved_listeners()
            .map(|l| l.clients)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|l| {
                let users = strata_security::JaasUsers::parse(config.listener_plain_jaas(&l.name)?);
                (!users.is_empty()).then(|| (l.name, Arc::new(users)))
            })
            .collect();
        let oauth_validator = config
            .oauth_validator()
            .map_err(|e| TopicError::InvalidConfig(e.to_string()))?
            .map(Arc::new);
        let request_memory_kib = (config.queued_max_request_bytes / 1024).clamp(1, 1 << 28);
        let quota_window = crate::quotas::Window {
            samples: config.quota_window_num.max(2),
            sample: std::time::Duration::from_secs(config.quota_window_size_seconds.max(1)),
        };
        let config_authorizer = config
            .authorizer_config()
            .map_err(|e| TopicError::InvalidConfig(e.to_string()))?;
        let tiering = match (
            config.remote_log_storage_system_enable,
            config.remote_log_storage_url.as_deref(),
        ) {
            (true, Some(url)) => {
                let remote = strata_tiered::RemoteConfig {
                    s3_endpoint: config.remote_log_storage_s3_endpoint.clone(),
                    s3_region: config.remote_log_storage_s3_region.clone(),
                };
                let storage = strata_tiered::RemoteStorage::open(url, &remote)
                    .map_err(|e| TopicError::InvalidConfig(e.to_string()))?;
                let tiering = crate::tiering::Tiering::new(storage, &config)
                    .map_err(|e| TopicError::InvalidConfig(format!("tiered storage: {e}")))?;
                Some(Arc::new(tiering))
            }
            _ => None,
        };
        let broker = Self {
            tiering,
            metrics: crate::metrics::Metrics::default(),
            producer_ids: Mutex::new((0, 0)),
            config,
            fs,
            clock,
            metadata: Mutex::new(metadata),
            quorum: member,
            partitions: RwLock::new(HashMap::new()),
            data_arrived: Notify::new(),
            halted: std::sync::OnceLock::new(),
            halt_requested: Notify::new(),
            shutting_down: AtomicBool::new(false),
            filesystem_sync: FilesystemSync::default(),
            groups: crate::groups::GroupService::new(group_config),
            txns: crate::txn::TxnService::new(txn_config),
            log_manager: LogManager::new(fs_for_logs, &data_dir_for_logs),
            loading: Mutex::new(Loading::default()),
            loading_changed: Condvar::new(),
            unopened: AtomicUsize::new(0),
            recovery: Mutex::new(None),
            applying: Mutex::new(()),
            controller: Mutex::new(strata_controller::Controller::new(
                strata_controller::ControllerConfig {
                    session_timeout_ms: config_session_timeout_ms,
                },
            )),
            broker_epoch: std::sync::atomic::AtomicI64::new(-1),
            replication_quotas: Default::default(),
            directory_id,
            audit: Default::default(),
            authorizer: crate::authorizer::Authorizer::new(&config_authorizer),
            quotas: crate::quotas::QuotaManager::new(quota_window),
            oauth: oauth_validator,
            plain_users,
            peer_security,
            tls: std::sync::OnceLock::new(),
            request_memory: Arc::new(tokio::sync::Semaphore::new(request_memory_kib)),
        };
        broker.register()?;
        broker.apply_bootstrap()?;
        // What this node hosts: on a cluster member the partitions with a replica here; a
        // standalone node hosts everything (also a directory written under another node id
        // before identities existed).
        let node = broker.config.node_id;
        let clustered = broker.quorum.is_some();
        let image = broker.image();
        let topics: Vec<TopicImage> = image
            .topics()
            .map(|t| {
                let mut t = t.clone();
                t.partitions
                    .retain(|_, p| !clustered || p.replicas.contains(&node));
                t
            })
            .collect();
        // Recovery state for every partition, from the data directory's checkpoints (the
        // clean-shutdown marker goes first, so a crash while opening means a recovery).
        let partition_count: usize = topics.iter().map(|t| t.partitions.len()).sum();
        let recovery = broker.log_manager.begin_recovery(partition_count)?;
        // Only directories of partitions the metadata no longer has are ever removed (one
        // hosted elsewhere is kept: its replica may come back here).
        let mut live_dirs: std::collections::HashSet<PathBuf> = image
            .topics()
            .flat_map(|t| {
                t.partitions
                    .keys()
                    .map(|&p| broker.partition_dir(&t.name, p))
            })
            .collect();
        let (mut internal, mut others) = (Vec::new(), Vec::new());
        for topic in &topics {
            for &p in topic.partitions.keys() {
                live_dirs.insert(broker.partition_dir(&topic.name, p));
                broker.log_manager.defer(&recovery, &topic.name, p);
                if is_internal_topic(&topic.name) {
                    internal.push((topic.name.clone(), p));
                } else {
                    others.push((topic.name.clone(), p));
                }
            }
        }
        broker
            .unopened
            .store(internal.len() + others.len(), Ordering::SeqCst);
        *broker.recovery_state() = Some(recovery);
        // Directories of deleted topics (a crash between the metadata record and the delete).
        let entries = broker
            .fs
            .list_dir(&broker.config.data_dir)
            .map_err(|e| StorageError::io(&broker.config.data_dir, e))?;
        for dir in entries {
            if broker.fs.is_dir(&dir)
                && !live_dirs.contains(&dir)
                && broker.is_stale_partition_dir(&dir)
            {
                warn!(dir = %dir.display(), "removing directory of a topic that no longer exists");
                let _ = broker.fs.remove_dir_all(&dir);
            }
        }
        // The coordinators need their partitions before anything is served.
        broker.loading_state().queued.extend(internal);
        broker.recover_queued();
        if let Some((topic, p)) = broker
            .loading_state()
            .failed
            .iter()
            .find(|(t, _)| is_internal_topic(t))
        {
            return Err(TopicError::Storage(StorageError::LogDirFailed(
                broker.partition_dir(topic, *p),
            )));
        }
        broker.compact_internal_topics();
        broker.load_groups()?;
        broker.load_transactions()?;
        let queued = others.len();
        broker.loading_state().queued.extend(others);
        info!(
            topics = topics.len(),
            partitions = broker.all_partitions().len(),
            queued_for_recovery = queued,
            "data directory opened"
        );
        Ok(broker)
    }

    /// Recovers every queued partition, `num.recovery.threads.per.data.dir` at a time, each
    /// served as soon as it is open; then, if none is left, rewrites the checkpoints for
    /// exactly the open partitions. Stops early at shutdown (the rest recover next start).
    pub fn recover_deferred(&self) {
        let started = std::time::Instant::now();
        let queued = self.loading_state().queued.len();
        self.recover_queued();
        if queued > 0 {
            info!(
                partitions = queued,
                millis = started.elapsed().as_millis() as u64,
                "recovery of the remaining partitions finished"
            );
        }
        if self.is_shutting_down() {
            return;
        }
        self.finish_interrupted_transactions();
        if !self.log_manager.all_opened() {
            return;
        }
        let Some(state) = self.recovery_state().take() else {
            return;
        };
        if let Err(e) = self
            .log_manager
            .finish_recovery(&state, &self.all_partitions())
        {
            warn!(error = %e, "could not rewrite the checkpoints after recovery");
        }
    }

    /// Runs recovery workers until the queue is empty (or shutdown begins).
    fn recover_queued(&self) {
        let threads = self
            .config
            .recovery_threads()
            .min(self.loading_state().queued.len());
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    // Logs whose recovery kept unsynced bytes wait here for one syncfs per
                    // batch (not an fdatasync each: thousands of partitions after a crash).
                    let mut unsynced: Vec<((String, i32), TopicImage, Log)> = Vec::new();
                    let mut oldest = std::time::Instant::now();
                    while let Some(key) = self.next_to_recover() {
                        match self.recover_deferred_log(&key.0, key.1) {
                            Ok(Some((image, log))) if log.recovery_sync_pending() => {
                                if unsynced.is_empty() {
                                    oldest = std::time::Instant::now();
                                }
                                unsynced.push((key, image, log));
                                if unsynced.len() >= RECOVERY_SYNC_BATCH
                                    || oldest.elapsed() >= RECOVERY_SYNC_WAIT
                                {
                                    self.sync_and_serve(&mut unsynced);
                                }
                            }
                            Ok(Some((image, log))) => {
                                self.serve_recovered(&key, &image, log);
                                self.recovered(key, Ok(()));
                            }
                            Ok(None) => self.recovered(key, Ok(())),
                            Err(e) => self.recovered(key, Err(e)),
                        }
                    }
                    self.sync_and_serve(&mut unsynced);
                });
            }
        });
    }

    /// One syncfs makes what recovery kept in `logs` durable; then they serve (or, if the
    /// sync failed, stay unavailable).
    fn sync_and_serve(&self, logs: &mut Vec<((String, i32), TopicImage, Log)>) {
        if logs.is_empty() {
            return;
        }
        let synced = self.fs.sync_filesystem(&self.config.data_dir);
        for (key, image, mut log) in logs.drain(..) {
            match &synced {
                Ok(()) => {
                    log.recovery_synced();
                    self.serve_recovered(&key, &image, log);
                    self.recovered(key, Ok(()));
                }
                Err(e) => {
                    let e = std::io::Error::new(e.kind(), e.to_string());
                    let dir = self.partition_dir(&key.0, key.1);
                    self.recovered(key, Err(StorageError::io(dir, e).into()));
                }
            }
        }
    }

    /// Bookkeeping once a deferred partition is done: open, gone, or failed.
    fn recovered(&self, key: (String, i32), result: Result<(), TopicError>) {
        let mut loading = self.loading_state();
        loading.in_progress.remove(&key);
        match result {
            Ok(()) => {
                self.unopened.fetch_sub(1, Ordering::SeqCst);
            }
            Err(e) => {
                warn!(topic = %key.0, partition = key.1, error = %e, "could not open the partition; it stays unavailable until the next start");
                loading.failed.insert(key);
            }
        }
        self.loading_changed.notify_all();
    }

    fn next_to_recover(&self) -> Option<(String, i32)> {
        if self.is_shutting_down() {
            return None;
        }
        let mut loading = self.loading_state();
        let key = loading.queued.pop_front()?;
        loading.in_progress.insert(key.clone());
        Some(key)
    }

    /// Opens (recovering) one deferred partition's log, its sync left to the caller; None if
    /// its topic was deleted meanwhile.
    fn recover_deferred_log(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<Option<(TopicImage, Log)>, TopicError> {
        let Some(image) = self.image().topic(topic).cloned() else {
            self.log_manager.forget(topic, partition);
            return Ok(None);
        };
        // A replica's log opens at the high watermark it checkpointed, not at its log end.
        let replicated = self.quorum.is_some();
        let mut hint = self
            .recovery_state()
            .as_ref()
            .map(|r| {
                if replicated {
                    r.replica_hint(topic, partition)
                } else {
                    r.hint(topic, partition)
                }
            })
            .unwrap_or_default();
        hint.defer_sync = true;
        let config =
            topic_config::log_config_with(&self.config, &self.dynamic_defaults(), &image.configs)
                .map_err(TopicError::InvalidConfig)?;
        let dir = self.partition_dir(topic, partition);
        let log = Log::open_managed(self.fs.clone(), self.clock.clone(), &dir, config, hint)?;
        Ok(Some((image, log)))
    }

    /// Starts serving a recovered (and synced) log.
    /// Puts a recovered log into service. Its role (leader, epoch, ISR) and config come from
    /// the image applied at that moment, taken under the metadata and `applying` locks: a
    /// delta applied while the log recovered skipped it (it was not open yet), so the image
    /// its recovery started from may be out of date. (Chaos seed 25107: a leadership given
    /// while the log recovered was never taken up; the controller saw a live leader, the
    /// broker did not lead, and the partition stayed without one.) A log whose topic was
    /// deleted meanwhile is dropped.
    fn serve_recovered(&self, key: &(String, i32), image: &TopicImage, mut log: Log) {
        let (topic, partition) = (key.0.as_str(), key.1);
        if let Some(dirty) = self.log_manager.opened(topic, partition) {
            log.set_first_dirty_offset(dirty);
        }
        let metadata = self.metadata();
        // A deletion of this topic may hold `applying` while it waits for this recovery.
        let _applying = loop {
            match self.applying.try_lock() {
                Ok(guard) => break guard,
                Err(std::sync::TryLockError::Poisoned(p)) => break p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => {}
            }
            if self.loading_state().cancelled.contains(topic) {
                log.mark_deleted();
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        let current = metadata.image();
        let Some(t) = current
            .topic(topic)
            .filter(|t| t.topic_id == image.topic_id)
        else {
            log.mark_deleted();
            return;
        };
        let dynamic = self.dynamic_defaults_of(&current);
        if let Ok(config) = topic_config::log_config_with(&self.config, &dynamic, &t.configs) {
            if let Err(e) = log.set_config(config) {
                warn!(topic, partition, error = %e, "config not applied");
            }
        }
        self.insert_partition(t, partition, log);
    }

    /// Whether a partition can serve now (only asked when [`Broker::partition`] found none).
    pub fn availability(&self, topic: &str, partition: i32) -> Availability {
        if self.partition(topic, partition).is_some() {
            return Availability::Open;
        }
        if self.unopened.load(Ordering::SeqCst) == 0 {
            return Availability::Unknown;
        }
        let key = (topic.to_string(), partition);
        let loading = self.loading_state();
        if loading.failed.contains(&key) {
            Availability::Failed
        } else if loading.queued.contains(&key) || loading.in_progress.contains(&key) {
            Availability::Recovering
        } else {
            Availability::Unknown
        }
    }

    /// The error for a request on a partition [`Broker::partition`] did not find: one that
    /// exists but is hosted elsewhere (a cluster member) is NOT_LEADER_OR_FOLLOWER, so the
    /// client refreshes its metadata and goes to the leader.
    pub fn missing_partition_error(&self, topic: &str, partition: i32) -> i16 {
        let availability = self.availability(topic, partition);
        if availability == Availability::Unknown
            && self.quorum.is_some()
            && self
                .image()
                .topic(topic)
                .is_some_and(|t| t.partitions.contains_key(&partition))
        {
            return crate::errors::NOT_LEADER_OR_FOLLOWER;
        }
        crate::errors::missing_partition(availability)
    }

    /// KIP-951: the partition's leader and leader epoch as this broker knows them (its
    /// replica's view first, else the applied metadata), with the leader's endpoint when it
    /// is a live registered broker — for NOT_LEADER_OR_FOLLOWER / FENCED_LEADER_EPOCH
    /// answers, so a client goes to the new leader without a metadata round trip.
    pub fn current_leader(
        &self,
        topic: &str,
        partition: i32,
        listener: &str,
    ) -> Option<CurrentLeader> {
        let image = self.image();
        let (leader_id, leader_epoch) = match self.partition(topic, partition) {
            Some(p) => (p.leader_id(), p.leader_epoch()),
            None => {
                let p = image.topic(topic)?.partitions.get(&partition)?;
                (p.leader, p.leader_epoch)
            }
        };
        let endpoint = image.broker(leader_id).filter(|b| !b.fenced).and_then(|b| {
            let (host, port) = b.endpoint(listener)?;
            Some((host.to_string(), port, b.rack.clone()))
        });
        Some(CurrentLeader {
            leader_id,
            leader_epoch,
            endpoint,
        })
    }

    /// An offset commit's view of a partition: its high watermark when open here, -1 when it
    /// exists but its high watermark is not known here (still recovering, or hosted by
    /// another broker), None when there is no such partition.
    pub fn high_watermark_if_known(&self, topic: &str, partition: i32) -> Option<i64> {
        if let Some(p) = self.partition(topic, partition) {
            return Some(p.high_watermark());
        }
        let known = self.availability(topic, partition) != Availability::Unknown
            || self
                .image()
                .topic(topic)
                .is_some_and(|t| t.partitions.contains_key(&partition));
        known.then_some(-1)
    }

    /// Whether any partition found at start is still unopened (recovering or failed).
    pub fn has_unopened_partitions(&self) -> bool {
        self.unopened.load(Ordering::SeqCst) > 0
    }

    /// Drops a deleted topic's partitions from recovery: queued ones are never opened, and
    /// the caller waits for ones being recovered right now (their files are about to go).
    pub(crate) fn cancel_recovery(&self, topic: &str, partitions: &[i32]) {
        let mut loading = self.loading_state();
        let before = loading.queued.len() + loading.failed.len();
        loading.queued.retain(|(t, _)| t != topic);
        loading.failed.retain(|(t, _)| t != topic);
        let dropped = before - loading.queued.len() - loading.failed.len();
        if dropped > 0 {
            self.unopened.fetch_sub(dropped, Ordering::SeqCst);
        }
        loading.cancelled.insert(topic.to_string());
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while loading.in_progress.iter().any(|(t, _)| t == topic) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                warn!(
                    topic,
                    "a partition of the deleted topic is still recovering after 60 s"
                );
                break;
            }
            loading = self
                .loading_changed
                .wait_timeout(loading, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        loading.cancelled.remove(topic);
        drop(loading);
        for &p in partitions {
            self.log_manager.forget(topic, p);
        }
    }

    fn loading_state(&self) -> MutexGuard<'_, Loading> {
        self.loading.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn recovery_state(&self) -> MutexGuard<'_, Option<RecoveryState>> {
        self.recovery.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every client listener, as registered (what other brokers' Metadata answers name),
    /// and the HTTP admin listener when there is one.
    fn endpoints(&self) -> Vec<strata_cluster::Endpoint> {
        let listeners = self
            .config
            .resolved_listeners()
            .expect("validated listeners");
        let mut endpoints: Vec<strata_cluster::Endpoint> = listeners
            .clients
            .iter()
            .map(|l| strata_cluster::Endpoint {
                listener: l.name.clone(),
                host: l.advertised_host.clone(),
                port: l.advertised_port,
                security_protocol: l.protocol.name().to_string(),
            })
            .collect();
        if let Some((host, port)) = &self.config.http_advertised {
            endpoints.push(strata_cluster::Endpoint {
                listener: crate::config::HTTP_ENDPOINT.to_string(),
                host: host.clone(),
                port: i32::from(*port),
                security_protocol: "HTTP".to_string(),
            });
        }
        endpoints
    }

    /// Registers this broker process in the cluster metadata (a new broker epoch, with its
    /// advertised endpoint and rack) and unfences it: on one node there is no controller to
    /// wait for, so both records go in one batch.
    fn register(&self) -> Result<(), TopicError> {
        if let Some(member) = &self.quorum {
            return self.register_with_quorum(member);
        }
        let (host, port) = self.config.advertised_host_port();
        let node_id = self.config.node_id;
        let metadata = self.metadata();
        let next_epoch = metadata
            .image()
            .broker(node_id)
            .map_or(0, |b| b.broker_epoch + 1);
        self.commit_metadata(
            metadata,
            &[
                MetadataRecord::RegisterBroker {
                    node_id,
                    incarnation_id: Uuid::new_v4(),
                    host,
                    port,
                    rack: self.config.broker_rack.clone(),
                    directory_id: self.directory_id(),
                    endpoints: self.endpoints(),
                },
                MetadataRecord::UnfenceBroker {
                    node_id,
                    broker_epoch: next_epoch,
                },
            ],
        )?;
        info!(node_id, broker_epoch = next_epoch, "broker registered");
        Ok(())
    }

    /// Registers this broker through the quorum and takes the resulting image (everything
    /// committed up to the registration) as the one its partitions are opened from. The
    /// broker epoch is computed from this node's image, which may lag: a refusal (someone
    /// registered in between) is retried from the newer image.
    fn register_with_quorum(&self, member: &QuorumMember) -> Result<(), TopicError> {
        let (host, port) = self.config.advertised_host_port();
        let node_id = self.config.node_id;
        let directory_id = self.directory_id();
        let mut attempts = 0;
        let index = loop {
            let image = member.quorum.image();
            let next_epoch = image.broker(node_id).map_or(0, |b| b.broker_epoch + 1);
            let mut records = vec![
                MetadataRecord::RegisterBroker {
                    node_id,
                    incarnation_id: Uuid::new_v4(),
                    host: host.clone(),
                    port,
                    rack: self.config.broker_rack.clone(),
                    directory_id,
                    endpoints: self.endpoints(),
                },
                MetadataRecord::UnfenceBroker {
                    node_id,
                    broker_epoch: next_epoch,
                },
            ];
            // Leaderships of the previous incarnation move to a new leader epoch (decided
            // from the quorum's image when applied: this node's may be behind).
            records.push(MetadataRecord::ResignLeaderships { node_id });
            match member.block_on(member.quorum.write(records)) {
                Ok(index) => {
                    info!(
                        node_id,
                        broker_epoch = next_epoch,
                        "broker registered with the metadata quorum"
                    );
                    break index;
                }
                Err(QuorumError::Rejected(r)) if attempts < 5 => {
                    let registered = member
                        .quorum
                        .image()
                        .broker(node_id)
                        .and_then(|b| b.directory_id);
                    if registered.is_some() && directory_id.is_some() && registered != directory_id
                    {
                        return Err(TopicError::Identity(r.message));
                    }
                    attempts += 1;
                    warn!(error = %r, "registration refused; retrying from a newer image");
                }
                Err(e) => return Err(e.into()),
            }
        };
        let image = member.quorum.image();
        if let Some(b) = image.broker(node_id) {
            self.broker_epoch
                .store(b.broker_epoch, std::sync::atomic::Ordering::SeqCst);
        }
        *member.applied.write().unwrap_or_else(|p| p.into_inner()) = Applied {
            index: Some(index),
            image,
        };
        Ok(())
    }

    /// This data directory's id (`meta.properties`), when it has a readable one.
    fn directory_id(&self) -> Option<Uuid> {
        self.directory_id
    }

    /// The data directory's `meta.properties` must name this cluster and node; a directory
    /// without one (new, or written before identities existed) is given this node's.
    /// Returns the directory's id.
    pub(crate) fn check_identity(
        fs: &dyn Fs,
        config: &BrokerConfig,
    ) -> Result<Option<Uuid>, TopicError> {
        let dir = &config.data_dir;
        match strata_storage::MetaProperties::read(fs, dir)? {
            Some(meta) => match meta.mismatch(dir, &config.cluster_id, config.node_id) {
                Some(why) => Err(TopicError::Identity(why)),
                None => Ok(Uuid::parse_str(&meta.directory_id).ok()),
            },
            None => {
                let directory_id = Uuid::new_v4();
                strata_storage::MetaProperties {
                    cluster_id: config.cluster_id.clone(),
                    node_id: config.node_id,
                    directory_id: directory_id.to_string(),
                }
                .write(fs, dir)?;
                info!(dir = %dir.display(), cluster_id = %config.cluster_id, node_id = config.node_id, "data directory identity written (meta.properties)");
                Ok(Some(directory_id))
            }
        }
    }

    /// Only directories that look like ours (`<topic>-<partition>` holding nothing but log
    /// files) are ever removed; anything else in the data directory is left alone.
    fn is_stale_partition_dir(&self, dir: &std::path::Path) -> bool {
        let Some(name) = dir.file_name().and_then(|n| n.to_str()) else {
            return false;
        };
        let Some((topic, partition)) = name.rsplit_once('-') else {
            return false;
        };
        if name == MetadataLog::DIR_NAME
            || validate_topic_name(topic).is_err()
            || partition.parse::<u32>().is_err()
        {
            return false;
        }
        let Ok(files) = self.fs.list_dir(dir) else {
            return false;
        };
        files.iter().all(|f| {
            let file = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
            [".log", ".index", ".timeindex", ".snapshot", ".tmp"]
                .iter()
                .any(|ext| file.ends_with(ext))
                || file == "recovery-point"
                || file == "clean-shutdown"
                || file == strata_storage::leader_epoch::LEADER_EPOCH_FILE
                || file == strata_storage::cleaner::CLEANING_DIR
                || file == strata_storage::cleaner::CLEANED_DIR
        })
    }

    pub fn metadata(&self) -> MutexGuard<'_, MetadataStore> {
        self.metadata.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current metadata image (an `Arc`: take it once per request). On a cluster member,
    /// the image applied to this node's partitions (read without waiting for a metadata
    /// change in flight).
    pub fn image(&self) -> Arc<MetadataImage> {
        match &self.quorum {
            Some(member) => member.applied_image(),
            None => self.metadata().image(),
        }
    }

    /// The broker leading the partition of internal topic `topic` that `key` (a group or
    /// transactional id) maps to, as (node id, advertised host, port); None while it has no
    /// live leader.
    pub fn coordinator_endpoint(
        &self,
        topic: &str,
        key: &str,
        listener: &str,
    ) -> Option<(i32, String, i32)> {
        let image = self.image();
        let t = image.topic(topic)?;
        let partition = strata_group::codec::partition_for(key, (t.partitions.len() as i32).max(1));
        let leader = t.partitions.get(&partition)?.leader;
        if leader == self.config.node_id && self.quorum.is_none() {
            let listeners = self.config.resolved_listeners().ok()?;
            let l = listeners.get(listener)?;
            return Some((leader, l.advertised_host.clone(), l.advertised_port));
        }
        let b = image.broker(leader).filter(|b| !b.fenced)?;
        let (host, port) = b.endpoint(listener)?;
        Some((leader, host.to_string(), port))
    }

    /// The controller id Metadata and DescribeCluster report: this node. As in KRaft
    /// (KIP-590), clients cannot reach the quorum itself; any broker takes admin requests and
    /// forwards the change to the quorum leader, so the answering broker — alive by
    /// definition — is the one to name (naming a dead quorum leader would strand librdkafka's
    /// admin client, which waits for that broker).
    pub fn controller_id(&self) -> i32 {
        self.config.node_id
    }

    /// Runs a quorum call from synchronous code on a cluster member (None when standalone).
    pub(crate) fn block_on_quorum<F: std::future::Future>(&self, f: F) -> Option<F::Output> {
        self.quorum.as_ref().map(|m| m.block_on(f))
    }

    /// The metadata quorum, on a cluster member.
    pub fn quorum(&self) -> Option<&Arc<Quorum>> {
        self.quorum.as_ref().map(|m| &m.quorum)
    }

    pub(crate) fn partition_dir(&self, topic: &str, partition: i32) -> PathBuf {
        self.config.data_dir.join(format!("{topic}-{partition}"))
    }

    /// Opens (recovering) one partition's log and starts serving it. Takes no metadata lock
    /// (the replica manager calls it while applying a delta).
    pub(crate) fn open_partition(
        &self,
        topic: &TopicImage,
        partition: i32,
        hint: RecoveryHint,
        dynamic: &topic_config::DynamicDefaults,
    ) -> Result<(), TopicError> {
        let config = topic_config::log_config_with(&self.config, dynamic, &topic.configs)
            .map_err(TopicError::InvalidConfig)?;
        let dir = self.partition_dir(&topic.name, partition);
        let log = Log::open_managed(self.fs.clone(), self.clock.clone(), &dir, config, hint)?;
        self.insert_partition(topic, partition, log);
        Ok(())
    }

    /// Serves `log` as `topic`'s `partition`, under the leader epoch the image gives it.
    fn insert_partition(&self, topic: &TopicImage, partition: i32, log: Log) {
        let epoch = topic
            .partitions
            .get(&partition)
            .map(|p| p.leader_epoch)
            .unwrap_or(0);
        let min_isr = log.config().min_insync_replicas.max(1) as usize;
        let p = Arc::new(Partition::new(topic.name.clone(), partition, epoch, log));
        if let Some(image) = topic.partitions.get(&partition) {
            self.set_role(&p, image, min_isr);
            if p.is_leader() {
                self.metrics
                    .leader_elections
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        self.partitions
            .write()
            .expect("partitions lock")
            .entry(topic.name.clone())
            .or_default()
            .insert(partition, p);
    }

    /// Leader or follower, as the image says (a cluster member; a standalone node leads
    /// everything and keeps its single-replica rules).
    pub(crate) fn set_role(
        &self,
        p: &Partition,
        image: &strata_cluster::PartitionImage,
        min_insync_replicas: usize,
    ) {
        if self.quorum.is_none() {
            p.set_leader_epoch(image.leader_epoch);
            return;
        }
        p.set_role(
            self.config.node_id,
            image.leader,
            image.leader_epoch,
            image.partition_epoch,
            &image.isr,
            min_insync_replicas,
        );
    }

    pub fn partition(&self, topic: &str, partition: i32) -> Option<Arc<Partition>> {
        self.partitions
            .read()
            .expect("partitions lock")
            .get(topic)
            .and_then(|t| t.get(&partition))
            .cloned()
    }

    /// The partition map, for the replica manager.
    pub(crate) fn partitions_mut(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, HashMap<String, BTreeMap<i32, Arc<Partition>>>> {
        self.partitions.write().expect("partitions lock")
    }

    pub fn all_partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions
            .read()
            .expect("partitions lock")
            .values()
            .flat_map(|t| t.values().cloned())
            .collect()
    }

    /// Creates a topic (or only checks that it could be, with `validate_only`).
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<TopicImage, TopicError> {
        refuse_internal(name)?;
        self.create_topic_unchecked(name, partitions, replication_factor, configs, validate_only)
    }

    /// CreateTopics with a `replica_assignment`: partition `i` on exactly `assignment[i]`
    /// (its first broker leading), checked as Kafka does.
    pub fn create_topic_assigned(
        &self,
        name: &str,
        assignment: Vec<Vec<i32>>,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<TopicImage, TopicError> {
        refuse_internal(name)?;
        self.check_assignment(&assignment, None)?;
        self.create_topic_inner(
            name,
            assignment.len() as i32,
            None,
            Some(&assignment),
            configs,
            validate_only,
        )
    }

    /// Kafka's checks of a manual assignment: no empty or repeating replica lists, only
    /// registered brokers, and every partition with the same number of replicas (`expected`
    /// when adding partitions to a topic).
    pub(crate) fn check_assignment(
        &self,
        assignment: &[Vec<i32>],
        expected: Option<usize>,
    ) -> Result<(), TopicError> {
        let image = self.image();
        let mut width = expected;
        for replicas in assignment {
            if replicas.is_empty() {
                return Err(TopicError::InvalidReplicaAssignment(
                    "The manual partition assignment includes an empty replica list.".into(),
                ));
            }
            let mut seen = std::collections::BTreeSet::new();
            for &b in replicas {
                if !seen.insert(b) {
                    return Err(TopicError::InvalidReplicaAssignment(format!(
                        "The manual partition assignment includes the broker {b} more than once."
                    )));
                }
                let known = if self.quorum.is_some() {
                    image.broker(b).is_some()
                } else {
                    b == self.config.node_id
                };
                if !known {
                    return Err(TopicError::InvalidReplicaAssignment(format!(
                        "The manual partition assignment includes broker {b}, but no such broker is registered."
                    )));
                }
            }
            match width {
                Some(w) if w != replicas.len() => {
                    return Err(TopicError::InvalidReplicaAssignment(format!(
                        "The manual partition assignment includes a partition with {} replica(s), but this is not consistent with previous partitions, which have {w} replica(s).",
                        replicas.len()
                    )));
                }
                _ => width = Some(replicas.len()),
            }
        }
        Ok(())
    }

    /// [`Broker::create_topic`] without the internal-topic check.
    pub(crate) fn create_topic_unchecked(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<TopicImage, TopicError> {
        self.create_topic_inner(
            name,
            partitions,
            Some(replication_factor),
            None,
            configs,
            validate_only,
        )
    }

    fn create_topic_inner(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: Option<i16>,
        assignment: Option<&[Vec<i32>]>,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<TopicImage, TopicError> {
        validate_topic_name(name)?;
        let replication_factor = match replication_factor {
            Some(rf) => self.replication_factor(rf)?,
            None => assignment.and_then(|a| a.first()).map_or(1, Vec::len),
        };
        if partitions < 1 {
            return Err(TopicError::InvalidPartitions(format!(
                "Number of partitions must be at least 1, got {partitions}."
            )));
        }
        if partitions > 100_000 {
            return Err(TopicError::InvalidPartitions(format!(
                "Number of partitions {partitions} exceeds the limit of 100000."
            )));
        }
        let mut configs = configs;
        let log_config =
            topic_config::log_config_with(&self.config, &self.dynamic_defaults(), &configs)
                .map_err(TopicError::InvalidConfig)?;
        if self.quorum.is_some()
            && replication_factor >= DEFAULT_CLUSTER_REPLICATION as usize
            && log_config.min_insync_replicas <= 1
            && !configs.contains_key("min.insync.replicas")
        {
            // With three or more copies an acknowledged write is on at least two by default
            // (a broker-wide or per-topic min.insync.replicas still decides).
            configs.insert(
                "min.insync.replicas".to_string(),
                DEFAULT_CLUSTER_MIN_INSYNC.to_string(),
            );
        }
        let metadata = self.metadata();
        if metadata.image().topic(name).is_some() {
            return Err(TopicError::AlreadyExists(name.to_string()));
        }
        // Kafka refuses names that differ only in '.' versus '_' (their metrics collide).
        let normalized = name.replace('.', "_");
        if let Some(other) = metadata
            .image()
            .topics()
            .find(|t| t.name.replace('.', "_") == normalized)
        {
            return Err(TopicError::InvalidTopic(format!(
                "Topic '{name}' collides with existing topic: {}",
                other.name
            )));
        }
        let topic_id = Uuid::new_v4();
        let mut records = vec![MetadataRecord::Topic {
            name: name.to_string(),
            topic_id,
            configs,
        }];
        records.extend((0..partitions).map(|p| {
            let assigned = assignment
                .and_then(|a| a.get(p as usize))
                .map(Vec::as_slice);
            self.partition_record(topic_id, p, replication_factor, assigned)
        }));
        if validate_only {
            let mut img = (*metadata.image()).clone();
            for r in &records {
                img.apply(r)?;
            }
            return Ok(img.topic(name).expect("just applied").clone());
        }
        let image = self.commit_metadata(metadata, &records)?;
        info!(topic = name, partitions, "topic created");
        Ok(image.topic(name).expect("just created").clone())
    }

    /// `default.replication.factor` as it applies now: the configured value, or (automatic)
    /// 1 on a standalone node and 3 on a cluster, at most the live brokers.
    pub fn default_replication_factor(&self) -> i16 {
        match self.config.default_replication_factor {
            rf if rf >= 1 => rf,
            _ if self.quorum.is_some() => {
                (self.image().live_brokers().count() as i16).clamp(1, DEFAULT_CLUSTER_REPLICATION)
            }
            _ => 1,
        }
    }

    /// The replication factor a CreateTopics asks for (-1: `default.replication.factor`),
    /// checked against the live brokers (one on a standalone node).
    fn replication_factor(&self, requested: i16) -> Result<usize, TopicError> {
        let rf = if requested == -1 {
            self.default_replication_factor()
        } else {
            requested
        };
        let available = if self.quorum.is_some() {
            self.image().live_brokers().count()
        } else {
            1
        };
        if rf < 1 {
            return Err(TopicError::InvalidReplicationFactor(
                "Replication factor must be larger than 0, or -1 to use the default value."
                    .to_string(),
            ));
        }
        if rf as usize > available {
            return Err(TopicError::InvalidReplicationFactor(format!(
                "Replication factor: {rf} larger than available brokers: {available}."
            )));
        }
        Ok(rf as usize)
    }

    /// A new partition's record. A standalone node hosts everything; a cluster member places
    /// `replication_factor` replicas on live brokers with racks alternating
    /// (`strata_controller::placement`), starting from a broker picked by the topic id, the
    /// first one leading; or exactly on `assigned` (CreateTopics' `replica_assignment`).
    fn partition_record(
        &self,
        topic_id: Uuid,
        partition: i32,
        replication_factor: usize,
        assigned: Option<&[i32]>,
    ) -> MetadataRecord {
        let mut replicas = vec![self.config.node_id];
        if let Some(assigned) = assigned.filter(|a| !a.is_empty()) {
            replicas = assigned.to_vec();
        } else if self.quorum.is_some() {
            let image = self.image();
            let live: Vec<(i32, Option<String>)> = image
                .live_brokers()
                .map(|b| (b.node_id, b.rack.clone()))
                .collect();
            if !live.is_empty() {
                let start = (topic_id.as_u128() % live.len() as u128) as usize;
                replicas = strata_controller::placement::replicas_for(
                    &live,
                    start,
                    partition,
                    replication_factor,
                );
            }
        }
        MetadataRecord::Partition {
            topic_id,
            partition,
            leader: replicas[0],
            leader_epoch: 0,
            isr: replicas.clone(),
            replicas,
        }
    }

    /// Grows a topic to `count` partitions.
    pub fn create_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        self.create_partitions_assigned(name, count, None, validate_only)
    }

    /// Grows a topic to `count` partitions, the new ones on `assignment` when given
    /// (CreatePartitions' assignments: one replica list per new partition).
    pub fn create_partitions_assigned(
        &self,
        name: &str,
        count: i32,
        assignment: Option<Vec<Vec<i32>>>,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        let metadata = self.metadata();
        let topic = known_topic(&metadata, name)?;
        let current = topic.partitions.len() as i32;
        if count <= current {
            return Err(TopicError::InvalidPartitions(format!("Topic currently has {current} partitions, which is higher than or equal to the requested {count}.")));
        }
        if count > 100_000 {
            return Err(TopicError::InvalidPartitions(format!(
                "Number of partitions {count} exceeds the limit of 100000."
            )));
        }
        if validate_only {
            return Ok(());
        }
        let replication_factor = topic
            .partitions
            .values()
            .next()
            .map_or(1, |p| p.replicas.len().max(1));
        if let Some(a) = &assignment {
            if a.len() as i32 != count - current {
                return Err(TopicError::InvalidReplicaAssignment(format!(
                    "Increasing the number of partitions by {} but {} assignments provided.",
                    count - current,
                    a.len()
                )));
            }
            self.check_assignment(a, Some(replication_factor))?;
        }
        let records: Vec<_> = (current..count)
            .map(|p| {
                let assigned = assignment
                    .as_ref()
                    .and_then(|a| a.get((p - current) as usize))
                    .map(Vec::as_slice);
                self.partition_record(topic.topic_id, p, replication_factor, assigned)
            })
            .collect();
        self.commit_metadata(metadata, &records)?;
        info!(
            topic = name,
            from = current,
            to = count,
            "partitions created"
        );
        Ok(())
    }

    /// Deletes a topic: the metadata record first, then the partitions and their files.
    pub fn delete_topic(&self, name: &str) -> Result<Uuid, TopicError> {
        let metadata = self.metadata();
        let topic = known_topic(&metadata, name)?;
        self.commit_metadata(
            metadata,
            &[MetadataRecord::RemoveTopic {
                topic_id: topic.topic_id,
            }],
        )?;
        info!(topic = name, "topic deleted");
        Ok(topic.topic_id)
    }

    /// The dynamic broker configs (this node's and the cluster default) from the metadata.
    pub fn dynamic_defaults(&self) -> topic_config::DynamicDefaults {
        self.dynamic_defaults_of(&self.image())
    }

    /// Replaces a topic's dynamic configs (validated first), then applies them to its
    /// partitions at once: nothing restarts.
    pub fn alter_topic_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        let metadata = self.metadata();
        let topic = known_topic(&metadata, name)?;
        let dynamic = self.dynamic_defaults_of(&metadata.image());
        topic_config::log_config_with(&self.config, &dynamic, &configs)
            .map_err(TopicError::InvalidConfig)?;
        if validate_only || configs == topic.configs {
            return Ok(());
        }
        self.commit_metadata(
            metadata,
            &[MetadataRecord::TopicConfig {
                topic_id: topic.topic_id,
                configs,
            }],
        )?;
        info!(topic = name, "topic configs changed");
        Ok(())
    }

    /// Replaces the dynamic configs of a BROKER resource ("" = cluster default, or this
    /// node's id), validated, then applies the new defaults to every topic.
    pub fn alter_broker_configs(
        &self,
        resource: &str,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        if !resource.is_empty() && resource != self.config.node_id.to_string() {
            return Err(TopicError::InvalidConfig(format!(
                "Unknown broker {resource}"
            )));
        }
        topic_config::validate_broker_configs(&self.config, &configs)
            .map_err(TopicError::InvalidConfig)?;
        // New keystores / truststores must work before they are stored (Kafka checks them
        // the same way); setting one again re-reads its files (certificates renewed in place).
        let tls_change = configs.keys().any(|k| crate::tls::dynamic_key(k).is_some());
        let tls_config = if tls_change {
            let mut merged = self.image().broker_configs("").cloned().unwrap_or_default();
            if resource.is_empty() {
                merged = configs.clone();
                merged.extend(
                    self.image()
                        .broker_configs(&self.config.node_id.to_string())
                        .cloned()
                        .unwrap_or_default(),
                );
            } else {
                merged.extend(configs.clone());
            }
            // Each TLS listener's new settings (or, with none, the broker-wide ones).
            let names: Vec<String> = match self.tls.get().filter(|m| !m.is_empty()) {
                Some(contexts) => contexts.keys().cloned().collect(),
                None => vec![String::new()],
            };
            let mut candidates = Vec::new();
            for name in names {
                let candidate = crate::tls::with_overrides(&self.config, &merged, &name);
                crate::tls::TlsContext::check(&candidate).map_err(|e| {
                    TopicError::InvalidConfig(format!("the new TLS settings do not work: {e}"))
                })?;
                candidates.push((name, candidate));
            }
            Some(candidates)
        } else {
            None
        };
        if let (Some(candidates), false) = (&tls_config, validate_only) {
            if let Some(contexts) = self.tls.get() {
                for (name, candidate) in candidates {
                    if let Some(tls) = contexts.get(name) {
                        tls.reconfigure(candidate)
                            .map_err(|e| TopicError::InvalidConfig(e.to_string()))?;
                        info!(resource, listener = %name, "TLS keystore/truststore reloaded");
                    }
                }
            }
        }
        let metadata = self.metadata();
        let image = metadata.image();
        // Every topic must still have a valid config under the new defaults.
        let mut dynamic = self.dynamic_defaults_of(&image);
        if resource.is_empty() {
            dynamic.cluster = configs.clone();
        } else {
            dynamic.broker = configs.clone();
        }
        for t in image.topics() {
            topic_config::log_config_with(&self.config, &dynamic, &t.configs).map_err(|e| {
                TopicError::InvalidConfig(format!("topic {} would be invalid: {e}", t.name))
            })?;
        }
        if validate_only || image.broker_configs(resource).cloned().unwrap_or_default() == configs {
            return Ok(());
        }
        self.commit_metadata(
            metadata,
            &[MetadataRecord::BrokerConfig {
                resource: resource.to_string(),
                configs,
            }],
        )?;
        info!(resource, "dynamic broker configs changed");
        Ok(())
    }

    pub(crate) fn dynamic_defaults_of(
        &self,
        image: &MetadataImage,
    ) -> topic_config::DynamicDefaults {
        topic_config::DynamicDefaults {
            broker: image
                .broker_configs(&self.config.node_id.to_string())
                .cloned()
                .unwrap_or_default(),
            cluster: image.broker_configs("").cloned().unwrap_or_default(),
        }
    }

    /// Internal topics are compacted (Kafka's setting); ones created before compaction
    /// existed get `cleanup.policy=compact` at start.
    fn compact_internal_topics(&self) {
        let topics: Vec<TopicImage> = self
            .image()
            .topics()
            .filter(|t| is_internal_topic(&t.name) && !t.configs.contains_key("cleanup.policy"))
            .cloned()
            .collect();
        for t in topics {
            let mut configs = t.configs.clone();
            configs.insert("cleanup.policy".into(), "compact".into());
            match self.alter_topic_configs(&t.name, configs, false) {
                Ok(()) => info!(topic = %t.name, "internal topic now compacted"),
                Err(e) => {
                    warn!(topic = %t.name, error = %e, "could not make the internal topic compacted")
                }
            }
        }
    }

    /// Recomputes the log config of one topic's partitions (or every topic's) from the
    /// metadata and applies it live.
    pub(crate) fn reconfigure(&self, image: &MetadataImage, only: Option<&str>) {
        let dynamic = self.dynamic_defaults_of(image);
        for t in image.topics() {
            if only.is_some_and(|n| n != t.name) {
                continue;
            }
            let config = match topic_config::log_config_with(&self.config, &dynamic, &t.configs) {
                Ok(c) => c,
                Err(e) => {
                    warn!(topic = %t.name, error = %e, "config not applied");
                    continue;
                }
            };
            for &p in t.partitions.keys() {
                if let Some(partition) = self.partition(&t.name, p) {
                    if let Err(e) = partition.log().set_config(config.clone()) {
                        warn!(topic = %t.name, partition = p, error = %e, "config not applied");
                    }
                    partition.set_min_insync_replicas(config.min_insync_replicas.max(1) as usize);
                }
            }
        }
    }

    /// A producer id never handed out before: taken from a block of ids recorded (and
    /// synced) in the metadata log first, so a restart never repeats one.
    pub fn allocate_producer_id(&self) -> Result<i64, TopicError> {
        const BLOCK: i64 = 1000;
        let mut ids = self.producer_ids.lock().unwrap_or_else(|p| p.into_inner());
        // A block starts where the last one (this broker's or another's) ended; the record
        // is refused if another broker took that block first, and then the next is tried.
        let mut attempts = 0;
        while ids.0 >= ids.1 {
            attempts += 1;
            let metadata = self.metadata();
            let start = ids.1.max(metadata.image().producer_ids_end());
            let committed = self.commit_metadata(
                metadata,
                &[MetadataRecord::ProducerIds {
                    next_block_end: start + BLOCK,
                    block_start: Some(start),
                }],
            );
            match committed {
                Ok(_) => *ids = (start, start + BLOCK),
                Err(e) if attempts < 5 && is_producer_ids_race(&e) => continue,
                Err(e) => return Err(e),
            }
        }
        let id = ids.0;
        ids.0 += 1;
        Ok(id)
    }

    /// The data directory's checkpoints and clean-shutdown marker.
    pub fn log_manager(&self) -> &LogManager {
        &self.log_manager
    }

    /// Writes every partition's recovery point to the data directory's one checkpoint file,
    /// then (a cluster member) every high watermark to its own.
    pub fn checkpoint_recovery_points(&self) {
        let partitions = self.all_partitions();
        if let Err(e) = self.log_manager.checkpoint_recovery_points(&partitions) {
            self.halt(format!(
                "could not write the recovery point checkpoint: {e}"
            ));
        }
        if self.quorum.is_some() {
            if let Err(e) = self.log_manager.checkpoint_high_watermarks(&partitions) {
                self.halt(format!(
                    "could not write the high watermark checkpoint: {e}"
                ));
            }
        }
    }

    /// DeleteRecords on one partition: the new log start offset, made durable in the data
    /// directory's `log-start-offset-checkpoint` before this returns.
    pub fn delete_records(&self, partition: &Partition, offset: i64) -> Result<i64, StorageError> {
        let start = partition.log().delete_records_before(offset)?;
        self.checkpoint_log_start_offsets()?;
        Ok(start)
    }

    pub(crate) fn checkpoint_log_start_offsets(&self) -> Result<(), StorageError> {
        self.log_manager
            .checkpoint_log_start_offsets(&self.all_partitions())
    }

    /// The broker cannot go on: its data directory failed (a log's write or sync failed, a
    /// checkpoint could not be written) or its metadata quorum member stopped. As Kafka does
    /// when its last log directory goes offline, the broker stops at once: `serve` returns
    /// [`crate::server::ServeError::Halted`] without closing its logs (nothing more is
    /// written there). The controller fences it when its heartbeats stop and moves its
    /// leaderships to other in-sync replicas; the next start recovers from what the files
    /// hold, as after a crash. Only the first reason is kept.
    pub fn halt(&self, reason: String) {
        if self.halted.set(reason.clone()).is_ok() {
            tracing::error!(dir = %self.config.data_dir.display(), %reason, "stopping the broker at once");
            self.halt_requested.notify_one();
        }
    }

    /// Resolves (with the reason) once [`Broker::halt`] was called.
    pub async fn halt_requested(&self) -> String {
        if self.halted.get().is_none() {
            self.halt_requested.notified().await;
        }
        self.halted.get().cloned().unwrap_or_default()
    }

    /// Halts the broker if a log failed or its metadata quorum member stopped (see
    /// [`Broker::halt`]).
    pub fn check_logs_failed(&self) {
        if self.is_shutting_down() {
            return;
        }
        if let Some(fatal) = self.quorum.as_ref().and_then(|m| m.quorum.fatal()) {
            self.halt(format!("the metadata quorum member stopped: {fatal}"));
        }
        let failed = self
            .all_partitions()
            .into_iter()
            .find(|p| p.log().is_failed());
        if let Some(p) = failed {
            self.halt(format!(
                "the log of {}-{} failed (a write or sync to the data directory failed)",
                p.topic, p.partition
            ));
        }
    }

    /// Wakes every waiting fetch and makes new ones answer at once.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        self.data_arrived.notify_waiters();
        self.groups.close();
    }

    /// Set once shutdown begins (long background work checks it to stop early).
    pub fn shutdown_flag(&self) -> &AtomicBool {
        &self.shutting_down
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Clean shutdown of every log (see `LogManager::close`: indexes written, one file-system
    /// sync, recovery points at the log end offsets, the clean-shutdown marker last) and of the
    /// metadata log.
    pub fn close(&self) {
        self.log_manager.close(&self.all_partitions());
        if let Err(e) = self.metadata().close() {
            warn!(error = %e, "error closing metadata log");
        }
    }
}

/// Clients may not create an internal topic: its partition count decides where each group /
/// transactional id lives, so only its coordinator creates it, with its configured count
/// (Kafka refuses this too).
fn refuse_internal(name: &str) -> Result<(), TopicError> {
    if is_internal_topic(name) {
        return Err(TopicError::InvalidTopic(format!(
            "Creation of internal topic {name} is prohibited."
        )));
    }
    Ok(())
}

/// Who leads a partition, for KIP-951's answers (see [`Broker::current_leader`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentLeader {
    pub leader_id: i32,
    pub leader_epoch: i32,
    /// Host, port and rack of the leader, when it is a live registered broker.
    pub endpoint: Option<(String, i32, Option<String>)>,
}

/// The automatic default replication factor on a cluster, and the min.insync.replicas its
/// topics get unless one is configured.
const DEFAULT_CLUSTER_REPLICATION: i16 = 3;
const DEFAULT_CLUSTER_MIN_INSYNC: i32 = 2;

/// A producer id block refused because another broker took it first (retry the next one).
fn is_producer_ids_race(e: &TopicError) -> bool {
    matches!(
        e,
        TopicError::Quorum(QuorumError::Rejected(_))
            | TopicError::Metadata(MetadataError::ProducerIdsMoved { .. })
    )
}
