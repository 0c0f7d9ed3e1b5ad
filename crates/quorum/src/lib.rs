//! The metadata quorum: cluster metadata agreed by raft (`openraft`) among the controllers.
//!
//! - [`log_store`]: raft's log on Strata's segment log (group-committed fsyncs).
//! - [`state_machine`]: the [`MetadataImage`] as the state machine; a batch of
//!   [`MetadataRecord`]s is one raft entry, applied all-or-nothing with the image's own
//!   checks, so every node decides a conflicting change the same way.
//! - [`network`]: the controller listener (raft RPCs, forwarded writes) and its client.
//!
//! [`Quorum`] ties them together: any node can [`Quorum::write`] (forwarded to the leader) and
//! every node follows the applied image through [`Quorum::subscribe`].
//!
//! The static voter set (`controller.quorum.voters`) initializes the quorum: every voter
//! proposes the same membership the first time it starts (openraft accepts that from all of
//! them); later starts find their log and vote on disk.

pub mod log_store;
pub mod network;
pub mod state_machine;
pub mod transport;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::async_runtime::WatchReceiver;
use openraft::BasicNode;
use serde::{Deserialize, Serialize};
use strata_cluster::{MetadataImage, MetadataRecord};
use strata_storage::{Clock, Fs};
use tokio::sync::watch;
use tracing::{debug, info};

pub use log_store::LogStore;
pub use network::WriteReply;
pub use state_machine::{Published, StateMachine};

/// The quorum's directory inside the metadata log directory.
pub const QUORUM_DIR: &str = "__cluster_metadata-quorum";

/// A broker-only member (not among the voters) asks the voters, following leader hints, to
/// add it as a learner, until the membership names it (retried while no leader answers).
async fn join_as_learner(
    raft: Raft,
    node_id: u64,
    addr: String,
    voters: BTreeMap<u64, String>,
    transport: Arc<transport::Transport>,
) {
    let request = network::JoinRequest {
        node_id,
        addr: addr.clone(),
    };
    let mut targets: Vec<String> = voters.values().cloned().collect();
    let mut next = 0usize;
    loop {
        let member = raft
            .metrics()
            .borrow_watched()
            .membership_config
            .membership()
            .get_node(&node_id)
            .is_some_and(|n| n.addr == addr);
        if member {
            info!(node_id, "following the metadata quorum as a learner");
            return;
        }
        let target = targets[next % targets.len()].clone();
        next += 1;
        match network::Connection::new(target.clone(), transport.clone())
            .join(&request, Duration::from_secs(5))
            .await
        {
            Ok(network::JoinReply::Added) => {
                // The membership change reaches this node with the leader's replication.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok(network::JoinReply::NotLeader { leader: Some(l) }) => {
                if !targets.contains(&l) {
                    targets.push(l.clone());
                }
                next = targets.iter().position(|t| *t == l).unwrap_or(0);
            }
            Ok(reply) => {
                debug!(%target, ?reply, "joining the metadata quorum: not yet");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(e) => {
                debug!(%target, error = %e, "joining the metadata quorum: voter unreachable");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }
}

/// Whether `data_dir` holds raft state of this member (a vote or log): false for a member
/// starting with nothing (new, or wiped).
pub fn has_raft_state(fs: &dyn strata_storage::Fs, data_dir: &std::path::Path) -> bool {
    fs.exists(&data_dir.join(QUORUM_DIR).join(log_store::STATE_FILE))
}

/// Sends `body` to every voter but `node_id` (their call handlers), before this member's
/// quorum starts: each answer, or why there was none.
pub async fn ask_peers(
    voters: &BTreeMap<u64, String>,
    node_id: u64,
    body: &[u8],
    ttl: Duration,
    transport: &Arc<transport::Transport>,
) -> Vec<(u64, io::Result<Vec<u8>>)> {
    let mut out = Vec::new();
    for (id, addr) in voters.iter().filter(|(id, _)| **id != node_id) {
        let answer = network::Connection::new(addr.clone(), transport.clone())
            .call_raw(body, ttl)
            .await;
        out.push((*id, answer));
    }
    out
}

/// One raft entry: metadata records applied together or not at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaBatch {
    pub records: Vec<MetadataRecord>,
}

impl fmt::Display for MetaBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} metadata records", self.records.len())
    }
}

/// What applying an entry gave: nothing, or why its batch was refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub rejected: Option<Rejected>,
}

/// A batch the image refused (every node refuses it the same way).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct Rejected {
    /// The refusal was a topic name already taken (TOPIC_ALREADY_EXISTS to clients).
    pub topic_exists: bool,
    pub message: String,
}

/// Idle call connections kept per peer.
const CALL_CONNECTIONS_IDLE_MAX: usize = 4;

openraft::declare_raft_types!(
    /// Strata's raft types: metadata batches in, refusals out, nodes by controller address.
    pub TypeConfig:
        D = MetaBatch,
        R = Applied,
);

pub type Raft = openraft::Raft<TypeConfig, StateMachine>;

#[derive(Debug, thiserror::Error)]
pub enum QuorumError {
    #[error("metadata change refused: {0}")]
    Rejected(Rejected),
    #[error("metadata quorum unavailable: {0}")]
    Unavailable(String),
    #[error("metadata quorum storage: {0}")]
    Io(#[from] io::Error),
    #[error("metadata quorum: {0}")]
    Raft(String),
}

/// How a node takes part in the quorum.
#[derive(Debug, Clone)]
pub struct QuorumConfig {
    pub node_id: u64,
    /// The voters' controller addresses (`controller.quorum.voters`).
    pub voters: BTreeMap<u64, String>,
    /// Where this node's controller listener binds.
    pub listen: String,
    /// The metadata log directory (the quorum's files go in [`QUORUM_DIR`] inside it).
    pub dir: PathBuf,
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// How long a write waits for a leader before it fails.
    pub write_timeout: Duration,
    /// How the controller listener is secured (plaintext unless the application says).
    pub transport: Arc<transport::Transport>,
}

impl QuorumConfig {
    /// Kafka-like timings, generous for small machines: heartbeats every 250 ms, elections
    /// after 1–2 s of silence.
    pub fn new(node_id: u64, voters: BTreeMap<u64, String>, listen: String, dir: PathBuf) -> Self {
        Self {
            node_id,
            voters,
            listen,
            dir,
            heartbeat_ms: 250,
            election_timeout_min_ms: 1000,
            election_timeout_max_ms: 2000,
            write_timeout: Duration::from_secs(30),
            transport: transport::Transport::plaintext(),
        }
    }
}

/// Who leads, as this node knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumStatus {
    pub node_id: u64,
    pub leader: Option<u64>,
    pub term: u64,
    pub last_log_index: Option<u64>,
    pub last_applied: Option<u64>,
    /// On the leader: each member's last replicated index.
    pub replication: BTreeMap<u64, Option<u64>>,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
}

/// A running quorum member.
pub struct Quorum {
    config: QuorumConfig,
    raft: Raft,
    state_machine: StateMachine,
    log: LogStore,
    server: tokio::task::JoinHandle<()>,
    /// The connection forwarded writes use, and the address it goes to.
    forward: tokio::sync::Mutex<Option<(String, network::Connection)>>,
    /// The connection calls to the leader use, and the address it goes to.
    /// Idle connections for calls, by address: a call takes one (or opens one) and gives it
    /// back after, so a heartbeat never queues behind a slow call.
    calls_out: std::sync::Mutex<HashMap<String, Vec<network::Connection>>>,
    /// A broker-only member's task asking the leader to add it as a learner.
    joining: Option<tokio::task::JoinHandle<()>>,
    /// Where calls from other members go.
    calls_in: network::CallSlot,
}

impl Quorum {
    /// Opens the quorum's storage, binds the controller listener and starts raft. A voter
    /// whose log is empty proposes the configured voter set.
    pub async fn start(
        fs: Arc<dyn Fs>,
        clock: Arc<dyn Clock>,
        config: QuorumConfig,
    ) -> Result<Arc<Self>, QuorumError> {
        let dir = config.dir.join(QUORUM_DIR);
        fs.create_dir_all(&dir)?;
        let log = LogStore::open(fs.clone(), clock, &dir)?;
        let state_machine = StateMachine::new(fs, &dir);
        let raft_config = openraft::Config {
            cluster_name: "strata".into(),
            heartbeat_interval: config.heartbeat_ms,
            election_timeout_min: config.election_timeout_min_ms,
            election_timeout_max: config.election_timeout_max_ms,
            enable_pre_vote: Some(true),
            ..Default::default()
        }
        .validate()
        .map_err(|e| QuorumError::Raft(e.to_string()))?;
        let listener = tokio::net::TcpListener::bind(&config.listen).await?;
        let raft = Raft::new(
            config.node_id,
            Arc::new(raft_config),
            network::Network {
                transport: config.transport.clone(),
            },
            log.clone(),
            state_machine.clone(),
        )
        .await
        .map_err(|e| QuorumError::Raft(e.to_string()))?;
        let calls_in: network::CallSlot = Arc::new(std::sync::RwLock::new(None));
        let server = tokio::spawn(network::serve(
            listener,
            raft.clone(),
            calls_in.clone(),
            config.transport.clone(),
            state_machine.clone(),
        ));
        if config.voters.contains_key(&config.node_id) {
            let members: BTreeMap<u64, BasicNode> = config
                .voters
                .iter()
                .map(|(id, addr)| (*id, BasicNode { addr: addr.clone() }))
                .collect();
            match raft.initialize(members).await {
                Ok(()) => info!(
                    node_id = config.node_id,
                    "metadata quorum initialized with the configured voters"
                ),
                Err(e) => debug!(error = %e, "metadata quorum already initialized"),
            }
        }
        let joining = (!config.voters.contains_key(&config.node_id)).then(|| {
            tokio::spawn(join_as_learner(
                raft.clone(),
                config.node_id,
                config.listen.clone(),
                config.voters.clone(),
                config.transport.clone(),
            ))
        });
        info!(node_id = config.node_id, listen = %config.listen, voters = ?config.voters, learner = joining.is_some(), security = ?config.transport, "metadata quorum started");
        Ok(Arc::new(Self {
            config,
            raft,
            state_machine,
            log,
            server,
            forward: tokio::sync::Mutex::new(None),
            calls_out: std::sync::Mutex::new(HashMap::new()),
            calls_in,
            joining,
        }))
    }

    pub fn node_id(&self) -> u64 {
        self.config.node_id
    }

    /// The latest applied image on this node.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.state_machine.image()
    }

    /// Follows every image this node applies, in order (intermediate ones may be skipped).
    pub fn subscribe(&self) -> watch::Receiver<Published> {
        self.state_machine.subscribe()
    }

    /// Appends `records` as one batch through the leader, wherever it is, and returns once
    /// the batch is committed and applied on this node (so this node's image shows it).
    pub async fn write(&self, records: Vec<MetadataRecord>) -> Result<u64, QuorumError> {
        let batch = MetaBatch { records };
        let deadline = Instant::now() + self.config.write_timeout;
        let mut hint: Option<String> = None;
        let mut last_error = String::from("no leader elected yet");
        loop {
            let leader = self.raft.current_leader().await;
            let reply = if leader == Some(self.config.node_id) && hint.is_none() {
                Some(network::write_locally(&self.raft, batch.clone()).await)
            } else {
                let addr = hint
                    .take()
                    .or_else(|| leader.and_then(|id| self.leader_address(id)));
                match addr {
                    Some(addr) => match self.forward_to(&addr, &batch, deadline).await {
                        Ok(r) => Some(r),
                        Err(e) => {
                            last_error = format!("{addr}: {e}");
                            None
                        }
                    },
                    None => None,
                }
            };
            match reply {
                Some(WriteReply::Applied { index, rejected }) => {
                    self.wait_applied(index, deadline).await?;
                    return match rejected {
                        Some(r) => Err(QuorumError::Rejected(r)),
                        None => Ok(index),
                    };
                }
                Some(WriteReply::NotLeader { leader }) => {
                    hint = leader;
                    last_error = "the contacted controller does not lead".into();
                }
                Some(WriteReply::Failed(e)) => return Err(QuorumError::Unavailable(e)),
                None => {}
            }
            if Instant::now() >= deadline {
                return Err(QuorumError::Unavailable(last_error));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether this member leads the quorum now.
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow_watched().current_leader == Some(self.config.node_id)
    }

    /// Sets what this member answers to calls (the broker's controller requests).
    pub fn set_call_handler(&self, handler: network::CallHandler) {
        *self.calls_in.write().unwrap_or_else(|p| p.into_inner()) = Some(handler);
    }

    /// Sends `body` to the quorum leader's call handler (this member's own when it leads)
    /// and returns its answer.
    pub async fn call_leader(&self, body: Vec<u8>, ttl: Duration) -> Result<Vec<u8>, QuorumError> {
        let leader = self
            .raft
            .metrics()
            .borrow_watched()
            .current_leader
            .ok_or_else(|| QuorumError::Unavailable("no quorum leader".into()))?;
        self.call_node(leader, body, ttl).await
    }

    /// Sends `body` to member `node`'s call handler (this member's own for itself) and
    /// returns its answer: the inter-broker channel.
    pub async fn call_node(
        &self,
        node: u64,
        body: Vec<u8>,
        ttl: Duration,
    ) -> Result<Vec<u8>, QuorumError> {
        if node == self.config.node_id {
            let handler = self
                .calls_in
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
                .ok_or_else(|| QuorumError::Unavailable("no call handler yet".into()))?;
            return Ok(handler(body).await);
        }
        let addr = self
            .leader_address(node)
            .ok_or_else(|| QuorumError::Unavailable(format!("no address for node {node}")))?;
        let idle = self
            .calls_out
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&addr)
            .and_then(Vec::pop);
        let mut connection = idle.unwrap_or_else(|| {
            network::Connection::new(addr.clone(), self.config.transport.clone())
        });
        let result = connection.call_raw(&body, ttl).await;
        if result.is_ok() {
            self.give_back(addr.clone(), connection);
        }
        result.map_err(|e| QuorumError::Unavailable(format!("{addr}: {e}")))
    }

    fn leader_address(&self, id: u64) -> Option<String> {
        if let Some(a) = self.config.voters.get(&id) {
            return Some(a.clone());
        }
        let metrics = self.raft.metrics().borrow_watched().clone();
        metrics
            .membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.addr.clone())
    }

    /// One attempt through `addr`, bounded by a few election timeouts (a leader that stopped
    /// answering is given up on, and the write goes to whoever leads next).
    async fn forward_to(
        &self,
        addr: &str,
        batch: &MetaBatch,
        deadline: Instant,
    ) -> io::Result<WriteReply> {
        let attempt = Duration::from_millis(3 * self.config.election_timeout_max_ms)
            .min(deadline.saturating_duration_since(Instant::now()))
            .max(Duration::from_millis(100));
        let mut forward = self.forward.lock().await;
        if forward.as_ref().is_none_or(|(a, _)| a != addr) {
            *forward = Some((
                addr.to_string(),
                network::Connection::new(addr.to_string(), self.config.transport.clone()),
            ));
        }
        let (_, connection) = forward.as_mut().expect("set above");
        connection.write(batch, attempt).await
    }

    /// Waits until this node applied every change the quorum leader had applied when asked
    /// (a read index: after it returns, this node's image is at least as new as any image a
    /// write was acknowledged from, on any member, before the call). Fails at `deadline`,
    /// or at once without a known leader.
    pub async fn catch_up_with_leader(&self, deadline: Instant) -> Result<u64, QuorumError> {
        let mut hint: Option<String> = None;
        loop {
            let leader = self.raft.metrics().borrow_watched().current_leader;
            let reply = if leader == Some(self.config.node_id) && hint.is_none() {
                network::read_index_locally(&self.raft).await
            } else {
                let addr = hint
                    .take()
                    .or_else(|| leader.and_then(|id| self.leader_address(id)))
                    .ok_or_else(|| QuorumError::Unavailable("no quorum leader".into()))?;
                let ttl = deadline.saturating_duration_since(Instant::now());
                let idle = self
                    .calls_out
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_mut(&addr)
                    .and_then(Vec::pop);
                let mut connection = idle.unwrap_or_else(|| {
                    network::Connection::new(addr.clone(), self.config.transport.clone())
                });
                let reply = connection
                    .read_index(ttl)
                    .await
                    .map_err(|e| QuorumError::Unavailable(format!("{addr}: {e}")))?;
                self.give_back(addr, connection);
                reply
            };
            match reply {
                network::ReadIndexReply::Applied { index } => {
                    self.wait_applied(index, deadline).await?;
                    return Ok(index);
                }
                network::ReadIndexReply::NotLeader { leader: Some(addr) } => hint = Some(addr),
                network::ReadIndexReply::NotLeader { leader: None } => {
                    return Err(QuorumError::Unavailable("no quorum leader".into()))
                }
                network::ReadIndexReply::Failed(e) => return Err(QuorumError::Unavailable(e)),
            }
            if Instant::now() >= deadline {
                return Err(QuorumError::Unavailable("the quorum leader moved".into()));
            }
        }
    }

    /// Keeps a call connection that worked for the next call to `addr`.
    fn give_back(&self, addr: String, connection: network::Connection) {
        let mut idle = self.calls_out.lock().unwrap_or_else(|p| p.into_inner());
        let pool = idle.entry(addr).or_default();
        if pool.len() < CALL_CONNECTIONS_IDLE_MAX {
            pool.push(connection);
        }
    }

    /// Waits until this node applied `index`.
    pub async fn wait_applied(&self, index: u64, deadline: Instant) -> Result<(), QuorumError> {
        let mut rx = self.subscribe();
        let wait = async move {
            rx.wait_for(|p| p.index.is_some_and(|i| i >= index))
                .await
                .map(|_| ())
        };
        match tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), wait).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(QuorumError::Unavailable("the quorum stopped".into())),
            Err(_) => Err(QuorumError::Unavailable(format!(
                "committed at {index} but not applied here in time"
            ))),
        }
    }

    /// Who leads and how far each member got, as this node knows it.
    pub fn status(&self) -> QuorumStatus {
        let m = self.raft.metrics().borrow_watched().clone();
        let membership = m.membership_config.membership();
        QuorumStatus {
            node_id: self.config.node_id,
            leader: m.current_leader,
            term: m.current_term,
            last_log_index: m.last_log_index,
            last_applied: m.last_applied.as_ref().map(|l| l.index),
            replication: m
                .replication
                .as_ref()
                .map(|r| {
                    r.iter()
                        .map(|(id, l)| (*id, l.as_ref().map(|l| l.index)))
                        .collect()
                })
                .unwrap_or_default(),
            voters: membership.voter_ids().collect(),
            learners: membership.learner_ids().collect(),
        }
    }

    /// The voters' controller listener addresses, by node id.
    pub fn voter_addresses(&self) -> BTreeMap<u64, String> {
        self.config.voters.clone()
    }

    /// Takes a snapshot of the image now (raft also takes them every 5000 entries) and lets
    /// raft purge the log entries it covers.
    pub async fn snapshot_now(&self) -> Result<(), QuorumError> {
        self.raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| QuorumError::Raft(e.to_string()))
    }

    /// Why this member's raft stopped on its own (a storage error: a full or failing
    /// disk), or None while it runs.
    pub fn fatal(&self) -> Option<String> {
        self.raft
            .metrics()
            .borrow_watched()
            .running_state
            .as_ref()
            .err()
            .map(|e| e.to_string())
    }

    /// Stops raft and the controller listener without closing the log (the broker halts:
    /// the next start recovers the log as after a crash).
    pub async fn abort(&self) {
        if let Some(joining) = &self.joining {
            joining.abort();
        }
        let _ = self.raft.shutdown().await;
        self.server.abort();
    }

    /// Stops raft and the controller listener, and closes the log cleanly.
    pub async fn shutdown(&self) {
        if let Some(joining) = &self.joining {
            joining.abort();
        }
        let _ = self.raft.shutdown().await;
        self.server.abort();
        if let Err(e) = self.log.close() {
            tracing::warn!(error = %e, "closing the metadata quorum log");
        }
    }
}
