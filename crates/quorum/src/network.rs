//! The controller listener: raft's RPCs between quorum members, and metadata writes forwarded
//! to the leader, over TCP.
//!
//! Framing (Strata's own, on the controller listener only): a request is one kind byte, a
//! big-endian u32 length and that many bytes of JSON; the answer is a u32 length and JSON.
//! Lengths above [`FRAME_MAX`] close the connection before anything is allocated for them.
//! A connection carries one request at a time; a failed or timed-out call drops it and the
//! next call connects again (raft retries on its own schedule). TLS, SASL and admission come
//! first when the listener is secured ([`crate::transport`]).

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use openraft::alias::{SnapshotOf, VoteOf};
use openraft::async_runtime::WatchReceiver;
use openraft::error::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::v2::RaftNetworkV2;
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tracing::{debug, warn};

use crate::transport::{read_bounded, Stream, Transport};
use crate::{MetaBatch, Raft, Rejected, StateMachine, TypeConfig};

type C = TypeConfig;

/// The largest request or answer accepted (a snapshot of a large cluster's metadata).
pub const FRAME_MAX: u32 = 256 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Kind {
    AppendEntries = 1,
    Vote = 2,
    PreVote = 3,
    Snapshot = 4,
    Write = 5,
    Call = 6,
    Join = 7,
    ReadIndex = 8,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => Kind::AppendEntries,
            2 => Kind::Vote,
            3 => Kind::PreVote,
            4 => Kind::Snapshot,
            5 => Kind::Write,
            6 => Kind::Call,
            7 => Kind::Join,
            8 => Kind::ReadIndex,
            _ => return None,
        })
    }
}

#[derive(Serialize, Deserialize)]
struct SnapshotRequest {
    vote: VoteOf<C>,
    meta: openraft::alias::SnapshotMetaOf<C>,
    data: Vec<u8>,
}

/// The answer to a forwarded metadata write.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum WriteReply {
    /// Committed and applied at `index` (`rejected`: applied as a refusal, nothing changed).
    Applied {
        index: u64,
        rejected: Option<Rejected>,
    },
    /// This node does not lead; `leader` is the controller address of the one that does, if
    /// known.
    NotLeader { leader: Option<String> },
    /// The write may or may not have been committed (the leader changed meanwhile, or raft
    /// stopped).
    Failed(String),
}

async fn read_frame(stream: &mut Stream) -> io::Result<Vec<u8>> {
    read_bounded(stream, FRAME_MAX).await
}

fn json<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(io::Error::other)
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> io::Result<T> {
    serde_json::from_slice(body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// What the application answers to a [`Kind::Call`] (opaque bytes both ways: the broker's
/// controller requests).
pub type CallHandler =
    Arc<dyn Fn(Vec<u8>) -> std::pin::Pin<Box<dyn Future<Output = Vec<u8>> + Send>> + Send + Sync>;

/// The handler calls go to, once the application set one.
pub type CallSlot = Arc<std::sync::RwLock<Option<CallHandler>>>;

/// Serves the controller listener until the process stops.
pub async fn serve(
    listener: TcpListener,
    raft: Raft,
    calls: CallSlot,
    transport: Arc<Transport>,
    state_machine: StateMachine,
) {
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => {
                let raft = raft.clone();
                let calls = calls.clone();
                let transport = transport.clone();
                let state_machine = state_machine.clone();
                tokio::spawn(async move {
                    let stream = match transport.accept(tcp, peer, || state_machine.image()).await {
                        Ok((stream, _)) => stream,
                        Err(e) => {
                            debug!(%peer, error = %e, "controller connection refused");
                            return;
                        }
                    };
                    if let Err(e) = serve_connection(stream, raft, calls).await {
                        debug!(%peer, error = %e, "controller connection closed");
                    }
                });
            }
            Err(e) => {
                warn!(error = %e, "controller listener accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn serve_connection(mut stream: Stream, raft: Raft, calls: CallSlot) -> io::Result<()> {
    loop {
        let kind = match stream.read_u8().await {
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        };
        let kind = Kind::from_u8(kind).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unknown request kind {kind}"),
            )
        })?;
        let body = read_frame(&mut stream).await?;
        let answer = match kind {
            Kind::AppendEntries => {
                let req: AppendEntriesRequest<C> = parse(&body)?;
                json(&raft.append_entries(req).await.map_err(io::Error::other)?)?
            }
            Kind::Vote => {
                let req: VoteRequest<C> = parse(&body)?;
                json(&raft.vote(req).await.map_err(io::Error::other)?)?
            }
            Kind::PreVote => {
                let req: VoteRequest<C> = parse(&body)?;
                json(&raft.pre_vote(req).await.map_err(io::Error::other)?)?
            }
            Kind::Snapshot => {
                let req: SnapshotRequest = parse(&body)?;
                let snapshot = SnapshotOf::<C, io::Cursor<Vec<u8>>> {
                    meta: req.meta,
                    snapshot: io::Cursor::new(req.data),
                };
                json(
                    &raft
                        .install_full_snapshot(req.vote, snapshot)
                        .await
                        .map_err(io::Error::other)?,
                )?
            }
            Kind::Write => {
                let batch: MetaBatch = parse(&body)?;
                json(&write_locally(&raft, batch).await)?
            }
            Kind::Join => {
                let req: JoinRequest = parse(&body)?;
                json(&join_locally(&raft, req).await)?
            }
            Kind::ReadIndex => json(&read_index_locally(&raft).await)?,
            Kind::Call => {
                let handler = calls.read().unwrap_or_else(|p| p.into_inner()).clone();
                match handler {
                    Some(h) => h(body).await,
                    None => {
                        return Err(io::Error::other("no call handler on this node yet"));
                    }
                }
            }
        };
        let mut frame = Vec::with_capacity(answer.len() + 4);
        frame.extend_from_slice(&(answer.len() as u32).to_be_bytes());
        frame.extend_from_slice(&answer);
        stream.write_all(&frame).await?;
        stream.flush().await?;
    }
}

/// A broker-only member asks to follow the quorum as a learner (non-voting: it receives
/// the metadata log, never votes or leads).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    pub node_id: u64,
    /// Its controller listener, where the leader replicates to.
    pub addr: String,
}

/// The answer to a [`JoinRequest`]: added (or already a member), or who leads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum JoinReply {
    Added,
    NotLeader { leader: Option<String> },
    Failed(String),
}

/// Adds the asking node as a learner, when this node leads.
async fn join_locally(raft: &Raft, req: JoinRequest) -> JoinReply {
    let known = raft
        .metrics()
        .borrow_watched()
        .membership_config
        .membership()
        .get_node(&req.node_id)
        .map(|n| n.addr.clone());
    if let Some(addr) = known {
        if addr == req.addr {
            return JoinReply::Added;
        }
    }
    if raft.metrics().borrow_watched().current_leader != Some(raft_id(raft)) {
        let leader = raft
            .metrics()
            .borrow_watched()
            .current_leader
            .and_then(|l| {
                raft.metrics()
                    .borrow_watched()
                    .membership_config
                    .membership()
                    .get_node(&l)
                    .map(|n| n.addr.clone())
            });
        return JoinReply::NotLeader { leader };
    }
    match raft
        .add_learner(req.node_id, BasicNode { addr: req.addr }, false)
        .await
    {
        Ok(_) => JoinReply::Added,
        Err(e) => match e.forward_to_leader() {
            Some(f) => JoinReply::NotLeader {
                leader: f.leader_node.as_ref().map(|n| n.addr.clone()),
            },
            None => JoinReply::Failed(e.to_string()),
        },
    }
}

/// The answer to a read-index request: how far the leader applied the metadata log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ReadIndexReply {
    /// Every change acknowledged to a writer so far is at or below `index` (a leader
    /// answers a write only once it applied it).
    Applied {
        index: u64,
    },
    NotLeader {
        leader: Option<String>,
    },
    /// No majority confirmed this node's leadership.
    Failed(String),
}

/// What this node answers to a read index: when it leads (confirmed by a round of
/// heartbeats acknowledged by a majority, so a deposed leader cannot answer), its commit
/// index once applied here.
pub(crate) async fn read_index_locally(raft: &Raft) -> ReadIndexReply {
    match raft
        .ensure_linearizable(openraft::ReadPolicy::ReadIndex)
        .await
    {
        Ok(read) => ReadIndexReply::Applied {
            index: read.index(),
        },
        Err(e) => match e.forward_to_leader() {
            Some(f) => ReadIndexReply::NotLeader {
                leader: f.leader_node.as_ref().map(|n| n.addr.clone()),
            },
            None => ReadIndexReply::Failed(e.to_string()),
        },
    }
}

fn raft_id(raft: &Raft) -> u64 {
    raft.metrics().borrow_watched().id
}

/// Proposes `batch` through this node's raft.
pub(crate) async fn write_locally(raft: &Raft, batch: MetaBatch) -> WriteReply {
    match raft.client_write(batch).await {
        Ok(r) => WriteReply::Applied {
            index: r.log_id.index,
            rejected: r.data.rejected,
        },
        Err(e) => match e.forward_to_leader() {
            Some(f) => WriteReply::NotLeader {
                leader: f.leader_node.as_ref().map(|n| n.addr.clone()),
            },
            None => WriteReply::Failed(e.to_string()),
        },
    }
}

/// One connection to a peer's controller listener.
pub struct Connection {
    addr: String,
    transport: Arc<Transport>,
    stream: Option<Stream>,
}

impl Connection {
    pub fn new(addr: String, transport: Arc<Transport>) -> Self {
        Self {
            addr,
            transport,
            stream: None,
        }
    }

    /// Sends one request and reads its answer within `ttl`; any failure drops the connection.
    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &mut self,
        kind: Kind,
        req: &Req,
        ttl: Duration,
    ) -> io::Result<Resp> {
        let body = json(req)?;
        parse(&self.bounded_exchange(kind, &body, ttl).await?)
    }

    /// One request and its answer within `ttl`; any failure drops the connection (the next
    /// call connects again, so a late answer cannot be taken for the next request's).
    async fn bounded_exchange(
        &mut self,
        kind: Kind,
        body: &[u8],
        ttl: Duration,
    ) -> io::Result<Vec<u8>> {
        match tokio::time::timeout(ttl, self.exchange(kind, body)).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => {
                self.stream = None;
                Err(e)
            }
            Err(_) => {
                self.stream = None;
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{kind:?} to {} timed out after {ttl:?}", self.addr),
                ))
            }
        }
    }

    async fn exchange(&mut self, kind: Kind, body: &[u8]) -> io::Result<Vec<u8>> {
        if self.stream.is_none() {
            self.stream = Some(self.transport.connect(&self.addr).await?);
        }
        let stream = self.stream.as_mut().expect("connected above");
        let len = u32::try_from(body.len())
            .ok()
            .filter(|&l| l <= FRAME_MAX)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "request too large"))?;
        let mut frame = Vec::with_capacity(body.len() + 5);
        frame.push(kind as u8);
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(body);
        stream.write_all(&frame).await?;
        stream.flush().await?;
        read_frame(stream).await
    }

    /// Sends an application call to this peer (see [`CallHandler`]).
    pub async fn call_raw(&mut self, body: &[u8], ttl: Duration) -> io::Result<Vec<u8>> {
        self.bounded_exchange(Kind::Call, body, ttl).await
    }

    /// Asks this peer to add a learner.
    pub async fn join(&mut self, req: &JoinRequest, ttl: Duration) -> io::Result<JoinReply> {
        self.call(Kind::Join, req, ttl).await
    }

    /// Asks this peer how far it applied the metadata log, if it leads.
    pub async fn read_index(&mut self, ttl: Duration) -> io::Result<ReadIndexReply> {
        self.call(Kind::ReadIndex, &(), ttl).await
    }

    /// Forwards a metadata write to this peer.
    pub async fn write(&mut self, batch: &MetaBatch, ttl: Duration) -> io::Result<WriteReply> {
        self.call(Kind::Write, batch, ttl).await
    }

    async fn rpc<Req: Serialize, Resp: DeserializeOwned>(
        &mut self,
        kind: Kind,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<C>> {
        self.call(kind, req, option.soft_ttl())
            .await
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))
    }
}

/// Makes raft's connections to its peers.
#[derive(Clone, Default)]
pub struct Network {
    pub transport: Arc<Transport>,
}

impl RaftNetworkFactory<C> for Network {
    type Network = Connection;

    async fn new_client(&mut self, _target: u64, node: &BasicNode) -> Self::Network {
        Connection::new(node.addr.clone(), self.transport.clone())
    }
}

impl RaftNetworkV2<C> for Connection {
    type SnapshotData = io::Cursor<Vec<u8>>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<C>, RPCError<C>> {
        self.rpc(Kind::AppendEntries, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<C>,
        option: RPCOption,
    ) -> Result<VoteResponse<C>, RPCError<C>> {
        self.rpc(Kind::Vote, &rpc, &option).await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<C>,
        option: RPCOption,
    ) -> Result<VoteResponse<C>, RPCError<C>> {
        self.rpc(Kind::PreVote, &rpc, &option).await
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<C>,
        snapshot: SnapshotOf<C, Self::SnapshotData>,
        _cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<C>, StreamingError<C>> {
        let req = SnapshotRequest {
            vote,
            meta: snapshot.meta,
            data: snapshot.snapshot.into_inner(),
        };
        self.call(Kind::Snapshot, &req, option.soft_ttl())
            .await
            .map_err(|e| StreamingError::Unreachable(Unreachable::new(&e)))
    }
}
