//! Groups, members and committed offsets; the classic rebalance protocol.
//!
//! Classic group states (Kafka's names):
//!
//! ```text
//!   Empty --join--> PreparingRebalance --all joined / timeout--> CompletingRebalance
//!     ^                    ^    |                                      | leader's SyncGroup
//!     |  last member gone  |    +--no members left--> Empty            v
//!     +--------------------+<--------- join / leave / expiry ------- Stable
//! ```

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;

use crate::codec::{self, GroupValue, OffsetValue, RecordKey, StoredMember};
use crate::consumer::ConsumerGroup;
use crate::error::{GroupError, Result};

/// Names a response the caller is waiting for.
pub type Token = u64;

#[derive(Debug, Clone)]
pub struct GroupConfig {
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms`: how long the first rebalance of an empty group
    /// waits for more members (extended by each new member, up to the rebalance timeout).
    pub initial_rebalance_delay_ms: i64,
    pub max_size: usize,
    pub offset_metadata_max_bytes: usize,
    /// `offsets.retention.minutes`, in ms.
    pub offsets_retention_ms: i64,
    pub offsets_retention_check_interval_ms: i64,
    /// Partitions of `__consumer_offsets`.
    pub offsets_topic_partitions: i32,
    /// KIP-848 `group.consumer.session.timeout.ms` and `group.consumer.heartbeat.interval.ms`.
    pub consumer_session_timeout_ms: i32,
    pub consumer_heartbeat_interval_ms: i32,
    /// KIP-848 server-side assignors; the first is the default.
    pub consumer_assignors: Vec<String>,
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            max_size: i32::MAX as usize,
            offset_metadata_max_bytes: 4096,
            offsets_retention_ms: 7 * 24 * 3600 * 1000,
            offsets_retention_check_interval_ms: 600_000,
            offsets_topic_partitions: 50,
            consumer_session_timeout_ms: 45_000,
            consumer_heartbeat_interval_ms: 5_000,
            consumer_assignors: vec!["uniform".into(), "range".into()],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassicState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl ClassicState {
    pub fn name(self) -> &'static str {
        match self {
            ClassicState::Empty => "Empty",
            ClassicState::PreparingRebalance => "PreparingRebalance",
            ClassicState::CompletingRebalance => "CompletingRebalance",
            ClassicState::Stable => "Stable",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRequest {
    pub group_id: String,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub client_id: String,
    pub client_host: String,
    /// KIP-394 (JoinGroup v4+): a new member first gets its id with MEMBER_ID_REQUIRED.
    pub require_known_member_id: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResponse {
    pub error: Option<GroupError>,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub skip_assignment: bool,
    pub member_id: String,
    pub members: Vec<JoinedMember>,
}

impl JoinResponse {
    fn error(e: GroupError, member_id: &str) -> Self {
        Self {
            error: Some(e),
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            skip_assignment: false,
            member_id: member_id.to_string(),
            members: vec![],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRequest {
    pub group_id: String,
    pub member_id: String,
    pub generation_id: i32,
    pub group_instance_id: Option<String>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignments: Vec<(String, Bytes)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResponse {
    pub error: Option<GroupError>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResponse {
    fn error(e: GroupError) -> Self {
        Self {
            error: Some(e),
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Join {
        token: Token,
        response: JoinResponse,
    },
    Sync {
        token: Token,
        response: SyncResponse,
    },
    /// A `__consumer_offsets` record to append to `partition` (value `None`: a tombstone).
    Persist {
        partition: i32,
        key: Bytes,
        value: Option<Bytes>,
    },
    /// An offset committed inside `producer_id`'s transaction: appended to `partition` in a
    /// transactional batch of that producer, decided by the transaction's marker there.
    PersistTransactional {
        partition: i32,
        producer_id: i64,
        producer_epoch: i16,
        key: Bytes,
        value: Bytes,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitPartition {
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitRequest {
    pub group_id: String,
    /// The classic generation, or the KIP-848 member epoch; -1 for a commit from outside
    /// group management.
    pub generation_id_or_member_epoch: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub topics: Vec<(String, Vec<CommitPartition>)>,
}

/// Per-partition commit results, in request order.
pub type CommitResults = Vec<(String, Vec<(i32, Option<GroupError>)>)>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: Option<OffsetValue>,
    /// An open transaction has committed an offset for this partition (OffsetFetch with
    /// `require_stable` answers UNSTABLE_OFFSET_COMMIT until it ends).
    pub unstable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<DescribedMember>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    pub group_id: String,
    pub protocol_type: String,
    pub state: &'static str,
    /// "classic" or "consumer" (KIP-848).
    pub group_type: &'static str,
}

#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub(crate) member_id: String,
    pub(crate) group_instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) session_timeout_ms: i32,
    pub(crate) rebalance_timeout_ms: i32,
    pub(crate) protocols: Vec<(String, Bytes)>,
    pub(crate) assignment: Bytes,
    pub(crate) join_waiter: Option<Token>,
    pub(crate) sync_waiter: Option<Token>,
    pub(crate) last_heartbeat_ms: i64,
    /// Order of joining: the first member becomes leader when there is none.
    pub(crate) join_seq: u64,
}

impl Member {
    fn metadata_for(&self, protocol: Option<&str>) -> Bytes {
        protocol
            .and_then(|p| self.protocols.iter().find(|(n, _)| n == p))
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone)]
pub(crate) struct ClassicGroup {
    pub(crate) state: ClassicState,
    pub(crate) generation_id: i32,
    pub(crate) protocol_type: Option<String>,
    pub(crate) protocol_name: Option<String>,
    pub(crate) leader: Option<String>,
    pub(crate) members: BTreeMap<String, Member>,
    /// group.instance.id -> member id (KIP-345).
    pub(crate) static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with the time they expire.
    pub(crate) pending_members: HashMap<String, i64>,
    pub(crate) rebalance_deadline_ms: Option<i64>,
    /// While the first rebalance of an empty group waits for more members: its end, and
    /// the latest it may be pushed to.
    pub(crate) initial_delay: Option<(i64, i64)>,
    pub(crate) sync_deadline_ms: Option<i64>,
    pub(crate) state_timestamp_ms: i64,
}

impl ClassicGroup {
    fn new(now: i64) -> Self {
        Self {
            state: ClassicState::Empty,
            generation_id: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            pending_members: HashMap::new(),
            rebalance_deadline_ms: None,
            initial_delay: None,
            sync_deadline_ms: None,
            state_timestamp_ms: now,
        }
    }

    fn is_empty(&self) -> bool {
        self.members.is_empty() && self.pending_members.is_empty()
    }

    /// Protocols every member supports.
    fn candidate_protocols(&self) -> Vec<String> {
        let mut iter = self.members.values();
        let Some(first) = iter.next() else {
            return vec![];
        };
        let mut candidates: Vec<String> = first.protocols.iter().map(|(n, _)| n.clone()).collect();
        for m in iter {
            candidates.retain(|c| m.protocols.iter().any(|(n, _)| n == c));
        }
        candidates
    }

    /// Each member votes for its most preferred candidate; the most votes win.
    fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols();
        let mut votes: Vec<(String, usize)> = candidates.iter().map(|c| (c.clone(), 0)).collect();
        for m in self.members.values() {
            if let Some((name, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(n)) {
                if let Some(v) = votes.iter_mut().find(|(c, _)| c == name) {
                    v.1 += 1;
                }
            }
        }
        // Ties go to the earlier candidate (the first member's preference order).
        let mut best: Option<(String, usize)> = None;
        for (c, n) in votes {
            if best.as_ref().is_none_or(|(_, b)| n > *b) {
                best = Some((c, n));
            }
        }
        best.map(|(c, _)| c)
    }

    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        let candidates = self.candidate_protocols();
        protocols.iter().any(|(n, _)| candidates.contains(n))
    }

    fn max_rebalance_timeout(&self) -> i64 {
        self.members
            .values()
            .map(|m| m.rebalance_timeout_ms as i64)
            .max()
            .unwrap_or(0)
    }

    /// The subscribed topics of the members, when they speak the consumer protocol.
    pub(crate) fn subscribed_topics(&self) -> Option<Vec<String>> {
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let mut topics = Vec::new();
        for m in self.members.values() {
            let meta = m.metadata_for(self.protocol_name.as_deref());
            topics.extend(codec::subscription_topics(&meta)?);
        }
        Some(topics)
    }
}

#[derive(Debug, Clone)]
pub(crate) enum GroupKind {
    Classic(ClassicGroup),
    Consumer(ConsumerGroup),
}

#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub(crate) kind: GroupKind,
    pub(crate) offsets: BTreeMap<(String, i32), OffsetValue>,
    /// Offsets committed inside a producer's open transaction (TxnOffsetCommit), by
    /// producer id: they become committed offsets at the transaction's commit marker in
    /// this group's `__consumer_offsets` partition and vanish at an abort marker.
    pub(crate) pending_txn_offsets: BTreeMap<i64, BTreeMap<(String, i32), OffsetValue>>,
}

impl Group {
    /// A plain commit of (topic, partition) came after these transactional ones: they are
    /// dropped, and returned (by producer id) so an unstored commit can put them back.
    fn supersede_pending(&mut self, topic: &str, partition: i32) -> Vec<(i64, OffsetValue)> {
        let key = (topic.to_string(), partition);
        let mut dropped = Vec::new();
        for (producer_id, pending) in self.pending_txn_offsets.iter_mut() {
            if let Some(v) = pending.remove(&key) {
                dropped.push((*producer_id, v));
            }
        }
        self.pending_txn_offsets.retain(|_, p| !p.is_empty());
        dropped
    }

    fn has_pending_txn_offset(&self, topic: &str, partition: i32) -> bool {
        let key = (topic.to_string(), partition);
        self.pending_txn_offsets
            .values()
            .any(|p| p.contains_key(&key))
    }

    fn has_members(&self) -> bool {
        match &self.kind {
            GroupKind::Classic(c) => !c.is_empty(),
            GroupKind::Consumer(c) => !c.members.is_empty(),
        }
    }
}

/// Every group this broker coordinates.
/// Whether the metadata makes this node the leader of a `__consumer_offsets` partition.
pub type LeaderHint = std::sync::Arc<dyn Fn(i32) -> bool + Send + Sync>;

pub struct Coordinator {
    pub(crate) config: GroupConfig,
    pub(crate) groups: BTreeMap<String, Group>,
    pub(crate) effects: Vec<Effect>,
    loaded: bool,
    /// The `__consumer_offsets` partitions whose groups this coordinator serves (None: all,
    /// a standalone node). A cluster member serves the partitions it leads.
    owned: Option<std::collections::BTreeSet<i32>>,
    /// Which `__consumer_offsets` partitions the metadata says this node leads (answers
    /// FindCoordinator from): one of them not yet [`owned`](Self::owned) is still loading.
    leads: Option<LeaderHint>,
    next_join_seq: u64,
    next_expiration_check_ms: i64,
    /// How to undo the offset commits made since [`Coordinator::take_offsets_undo`].
    undo: Vec<OffsetsUndo>,
}

/// What one (Txn)OffsetCommit changed in memory, to undo when its records were not stored:
/// the coordinator must never answer OffsetFetch with an offset its log does not have (a
/// failover would forget it; Kafka keeps such commits pending until the append completes).
#[derive(Debug, Default)]
pub struct OffsetsUndo {
    group_id: String,
    /// The producer whose pending transactional offsets were written (None: committed ones).
    transaction: Option<i64>,
    /// Each offset written, with the value it replaced.
    written: Vec<((String, i32), Option<OffsetValue>, OffsetValue)>,
    /// Transactional offsets a plain commit superseded, by producer id.
    superseded: Vec<(i64, (String, i32), OffsetValue)>,
}

fn validate_group_id(group_id: &str) -> Result<()> {
    if group_id.is_empty() {
        return Err(GroupError::InvalidGroupId);
    }
    Ok(())
}

pub(crate) fn new_member_id(client_id: &str) -> String {
    format!("{client_id}-{}", uuid::Uuid::new_v4())
}

impl Coordinator {
    /// A coordinator still loading: every group request gets COORDINATOR_LOAD_IN_PROGRESS
    /// until [`Coordinator::finish_loading`].
    pub fn new(config: GroupConfig) -> Self {
        Self {
            config,
            groups: BTreeMap::new(),
            effects: Vec::new(),
            loaded: false,
            owned: None,
            leads: None,
            next_join_seq: 0,
            next_expiration_check_ms: 0,
            undo: Vec::new(),
        }
    }

    /// How to undo the offset commits made since the last call (see [`OffsetsUndo`]).
    pub fn take_offsets_undo(&mut self) -> Vec<OffsetsUndo> {
        std::mem::take(&mut self.undo)
    }

    /// Undoes offset commits whose records were not stored. An offset that has changed
    /// since (a later commit, a replay) is left as it is.
    pub fn revert_offsets(&mut self, undo: Vec<OffsetsUndo>) {
        for u in undo.into_iter().rev() {
            let Some(group) = self.groups.get_mut(&u.group_id) else {
                continue;
            };
            for (key, previous, value) in u.written.into_iter().rev() {
                let stored = match u.transaction {
                    None => &mut group.offsets,
                    Some(producer_id) => group.pending_txn_offsets.entry(producer_id).or_default(),
                };
                if stored.get(&key) != Some(&value) {
                    continue;
                }
                match previous {
                    Some(v) => stored.insert(key, v),
                    None => stored.remove(&key),
                };
            }
            for (producer_id, key, value) in u.superseded {
                group
                    .pending_txn_offsets
                    .entry(producer_id)
                    .or_default()
                    .entry(key)
                    .or_insert(value);
            }
            group.pending_txn_offsets.retain(|_, p| !p.is_empty());
        }
    }

    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    pub fn is_loaded(&self) -> bool {
        self.loaded
    }

    /// Loaded, a usable group id, and a group this coordinator serves.
    fn check_request(&self, group_id: &str) -> Result<()> {
        self.check_loaded()?;
        validate_group_id(group_id)?;
        self.check_owner(group_id)
    }

    /// NOT_COORDINATOR for a group whose `__consumer_offsets` partition is not served here;
    /// COORDINATOR_LOAD_IN_PROGRESS (retriable in place, as Kafka answers while it loads a
    /// partition) when the metadata already makes this node its leader but its groups are
    /// not loaded yet: a client sent here by FindCoordinator must not be sent away.
    pub(crate) fn check_owner(&self, group_id: &str) -> Result<()> {
        let partition = self.partition_for(group_id);
        match &self.owned {
            Some(owned) if !owned.contains(&partition) => {
                if self.leads.as_ref().is_some_and(|leads| leads(partition)) {
                    Err(GroupError::CoordinatorLoadInProgress)
                } else {
                    Err(GroupError::NotCoordinator)
                }
            }
            _ => Ok(()),
        }
    }

    /// Tells the coordinator how to ask the metadata whether this node leads a partition
    /// (see [`Coordinator::check_owner`]).
    pub fn set_leader_hint(&mut self, leads: LeaderHint) {
        self.leads = Some(leads);
    }

    /// Serve only the groups of these `__consumer_offsets` partitions (a cluster member:
    /// the ones it leads); None serves every group.
    pub fn set_owned(&mut self, owned: Option<std::collections::BTreeSet<i32>>) {
        self.owned = owned;
    }

    /// The partitions served, when restricted.
    pub fn owned(&self) -> Option<&std::collections::BTreeSet<i32>> {
        self.owned.as_ref()
    }

    /// This node stopped leading `partition`: its groups are dropped from memory (their
    /// records stay in the log; the new leader loads them).
    /// Returns the answers of the requests waiting in those groups (JoinGroup / SyncGroup):
    /// NOT_COORDINATOR, so their members find the new coordinator at once.
    pub fn unload_partition(&mut self, partition: i32) -> Vec<Effect> {
        let n = self.config.offsets_topic_partitions;
        let mut answers = Vec::new();
        self.groups.retain(|g, group| {
            if codec::partition_for(g, n) != partition {
                return true;
            }
            if let GroupKind::Classic(classic) = &mut group.kind {
                for (member_id, m) in classic.members.iter_mut() {
                    if let Some(token) = m.join_waiter.take() {
                        answers.push(Effect::Join {
                            token,
                            response: JoinResponse::error(GroupError::NotCoordinator, member_id),
                        });
                    }
                    if let Some(token) = m.sync_waiter.take() {
                        answers.push(Effect::Sync {
                            token,
                            response: SyncResponse::error(GroupError::NotCoordinator),
                        });
                    }
                }
            }
            false
        });
        if let Some(owned) = &mut self.owned {
            owned.remove(&partition);
        }
        answers
    }

    /// The records of `partition` were replayed (see [`Coordinator::replay`]): its groups
    /// are served from now on, as [`Coordinator::finish_loading`] leaves them.
    pub fn finish_loading_partition(&mut self, partition: i32, now: i64) {
        let n = self.config.offsets_topic_partitions;
        for (g, group) in self.groups.iter_mut() {
            if codec::partition_for(g, n) == partition {
                Self::settle_loaded(group, now);
            }
        }
        if let Some(owned) = &mut self.owned {
            owned.insert(partition);
        }
    }

    pub(crate) fn check_loaded(&self) -> Result<()> {
        if self.loaded {
            Ok(())
        } else {
            Err(GroupError::CoordinatorLoadInProgress)
        }
    }

    fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// Partitions of the existing `__consumer_offsets` (set before loading).
    pub fn set_offsets_topic_partitions(&mut self, partitions: i32) {
        self.config.offsets_topic_partitions = partitions.max(1);
    }

    pub fn partition_for(&self, group_id: &str) -> i32 {
        codec::partition_for(group_id, self.config.offsets_topic_partitions)
    }

    pub(crate) fn persist(&mut self, group_id: &str, key: RecordKey, value: Option<Bytes>) {
        self.effects.push(Effect::Persist {
            partition: self.partition_for(group_id),
            key: codec::encode_key(&key),
            value,
        });
    }

    fn persist_offset(
        &mut self,
        group_id: &str,
        topic: String,
        partition: i32,
        value: Option<Bytes>,
    ) {
        let key = RecordKey::Offset {
            group: group_id.to_string(),
            topic,
            partition,
        };
        self.persist(group_id, key, value);
    }

    fn persist_group(&mut self, group_id: &str) {
        let Some(Group {
            kind: GroupKind::Classic(g),
            ..
        }) = self.groups.get(group_id)
        else {
            return;
        };
        let value = GroupValue {
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            generation: g.generation_id,
            protocol: g.protocol_name.clone(),
            leader: g.leader.clone(),
            current_state_timestamp: g.state_timestamp_ms,
            members: g
                .members
                .values()
                .map(|m| StoredMember {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m.metadata_for(g.protocol_name.as_deref()),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        };
        let bytes = codec::encode_group_value(&value);
        self.persist(
            group_id,
            RecordKey::Group {
                group: group_id.to_string(),
            },
            Some(bytes),
        );
    }

    fn classic(&mut self, group_id: &str) -> Option<&mut ClassicGroup> {
        match self.groups.get_mut(group_id) {
            Some(Group {
                kind: GroupKind::Classic(g),
                ..
            }) => Some(g),
            _ => None,
        }
    }

    // ---------------------------------------------------------------- loading

    /// Replays one `__consumer_offsets` record (in log order). Undecodable records are
    /// skipped and reported.
    pub fn replay(
        &mut self,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> std::result::Result<(), codec::CodecError> {
        match codec::decode_key(key)? {
            RecordKey::Offset {
                group,
                topic,
                partition,
            } => match value {
                Some(v) => {
                    let v = codec::decode_offset_value(v)?;
                    let g = self.group_entry(&group, 0);
                    g.supersede_pending(&topic, partition);
                    g.offsets.insert((topic, partition), v);
                }
                None => {
                    if let Some(g) = self.groups.get_mut(&group) {
                        g.offsets.remove(&(topic, partition));
                    }
                }
            },
            RecordKey::ConsumerGroup { group } => match value {
                Some(v) => {
                    let g = ConsumerGroup::decode(v)?;
                    self.group_entry(&group, 0).kind = GroupKind::Consumer(g);
                }
                None => {
                    if matches!(
                        self.groups.get(&group),
                        Some(Group {
                            kind: GroupKind::Consumer(_),
                            ..
                        })
                    ) {
                        self.groups.remove(&group);
                    }
                }
            },
            RecordKey::Group { group } => match value {
                Some(v) => {
                    let v = codec::decode_group_value(v)?;
                    let seq = &mut self.next_join_seq;
                    let mut g = ClassicGroup::new(v.current_state_timestamp);
                    g.generation_id = v.generation;
                    g.protocol_type = (!v.protocol_type.is_empty()).then_some(v.protocol_type);
                    g.protocol_name = v.protocol.clone();
                    g.leader = v.leader;
                    for m in v.members {
                        *seq += 1;
                        if let Some(i) = &m.group_instance_id {
                            g.static_members.insert(i.clone(), m.member_id.clone());
                        }
                        g.members.insert(
                            m.member_id.clone(),
                            Member {
                                member_id: m.member_id,
                                group_instance_id: m.group_instance_id,
                                client_id: m.client_id,
                                client_host: m.client_host,
                                session_timeout_ms: m.session_timeout_ms,
                                rebalance_timeout_ms: m.rebalance_timeout_ms,
                                protocols: vec![(
                                    v.protocol.clone().unwrap_or_default(),
                                    m.subscription,
                                )],
                                assignment: m.assignment,
                                join_waiter: None,
                                sync_waiter: None,
                                last_heartbeat_ms: 0,
                                join_seq: *seq,
                            },
                        );
                    }
                    let entry = self.group_entry(&group, 0);
                    entry.kind = GroupKind::Classic(g);
                }
                None => {
                    self.groups.remove(&group);
                }
            },
        }
        Ok(())
    }

    /// Loading is done: groups with members are Stable (their members keep their
    /// assignments as long as they heartbeat within their session timeout from now).
    pub fn finish_loading(&mut self, now: i64) {
        for g in self.groups.values_mut() {
            Self::settle_loaded(g, now);
        }
        self.loaded = true;
        self.next_expiration_check_ms = now + self.config.offsets_retention_check_interval_ms;
    }

    fn settle_loaded(g: &mut Group, now: i64) {
        if let GroupKind::Consumer(c) = &mut g.kind {
            c.loaded(now);
        }
        if let GroupKind::Classic(c) = &mut g.kind {
            c.state = if c.members.is_empty() {
                ClassicState::Empty
            } else {
                ClassicState::Stable
            };
            for m in c.members.values_mut() {
                m.last_heartbeat_ms = now;
            }
        }
    }

    fn group_entry(&mut self, group_id: &str, now: i64) -> &mut Group {
        self.groups
            .entry(group_id.to_string())
            .or_insert_with(|| Group {
                kind: GroupKind::Classic(ClassicGroup::new(now)),
                offsets: BTreeMap::new(),
                pending_txn_offsets: BTreeMap::new(),
            })
    }

    // ---------------------------------------------------------------- JoinGroup

    pub fn join(&mut self, req: JoinRequest, token: Token, now: i64) -> Vec<Effect> {
        if let Err(e) = self.join_inner(req.clone(), token, now) {
            self.effects.push(Effect::Join {
                token,
                response: JoinResponse::error(e, &req.member_id),
            });
        }
        self.take_effects()
    }

    fn join_inner(&mut self, req: JoinRequest, token: Token, now: i64) -> Result<()> {
        self.check_request(&req.group_id)?;
        let (min, max) = (
            self.config.min_session_timeout_ms,
            self.config.max_session_timeout_ms,
        );
        if req.session_timeout_ms < min || req.session_timeout_ms > max {
            return Err(GroupError::InvalidSessionTimeout {
                got: req.session_timeout_ms,
                min,
                max,
            });
        }
        if req.protocol_type.is_empty() || req.protocols.is_empty() {
            return Err(GroupError::InconsistentGroupProtocol(
                "a member must name a protocol type and at least one protocol".into(),
            ));
        }
        match self.groups.get_mut(&req.group_id) {
            None => {
                if !req.member_id.is_empty() {
                    return Err(GroupError::UnknownMemberId);
                }
                self.group_entry(&req.group_id, now);
            }
            Some(g) => {
                if let GroupKind::Consumer(c) = &g.kind {
                    if !c.members.is_empty() {
                        return Err(GroupError::GroupIdInUseByOtherProtocol(req.group_id));
                    }
                    // An empty KIP-848 group turns classic (its offsets stay).
                    g.kind = GroupKind::Classic(ClassicGroup::new(now));
                }
            }
        }
        let max_size = self.config.max_size;
        let initial_delay = self.config.initial_rebalance_delay_ms;
        let group_id = req.group_id.clone();
        let g = self.classic(&group_id).expect("classic group");
        if !g.supports(&req.protocol_type, &req.protocols) {
            return Err(GroupError::InconsistentGroupProtocol(format!(
                "protocol type {} / protocols {:?} do not match the group's",
                req.protocol_type,
                req.protocols.iter().map(|(n, _)| n).collect::<Vec<_>>()
            )));
        }
        if req.member_id.is_empty() {
            self.join_new_member(req, token, now, max_size, initial_delay)
        } else {
            self.join_known_member(req, token, now, max_size, initial_delay)
        }
    }

    fn join_new_member(
        &mut self,
        req: JoinRequest,
        token: Token,
        now: i64,
        max_size: usize,
        initial_delay: i64,
    ) -> Result<()> {
        let member_id = new_member_id(&req.client_id);
        let group_id = req.group_id.clone();
        let g = self.classic(&group_id).expect("classic group");
        if let Some(instance) = &req.group_instance_id {
            if let Some(old_id) = g.static_members.get(instance).cloned() {
                return self.replace_static_member(req, old_id, member_id, token, now);
            }
        } else if req.require_known_member_id {
            if g.members.len() + g.pending_members.len() >= max_size {
                return Err(GroupError::GroupMaxSizeReached(group_id));
            }
            g.pending_members
                .insert(member_id.clone(), now + req.session_timeout_ms as i64);
            self.effects.push(Effect::Join {
                token,
                response: JoinResponse::error(GroupError::MemberIdRequired, &member_id),
            });
            return Ok(());
        }
        self.add_member(req, member_id, token, now, max_size, initial_delay)
    }

    fn add_member(
        &mut self,
        req: JoinRequest,
        member_id: String,
        token: Token,
        now: i64,
        max_size: usize,
        initial_delay: i64,
    ) -> Result<()> {
        self.next_join_seq += 1;
        let seq = self.next_join_seq;
        let group_id = req.group_id.clone();
        let g = self.classic(&group_id).expect("classic group");
        if g.members.len() >= max_size {
            return Err(GroupError::GroupMaxSizeReached(group_id));
        }
        if g.members.is_empty() {
            g.protocol_type = Some(req.protocol_type.clone());
        }
        if let Some(i) = &req.group_instance_id {
            g.static_members.insert(i.clone(), member_id.clone());
        }
        g.members.insert(
            member_id.clone(),
            Member {
                member_id,
                group_instance_id: req.group_instance_id,
                client_id: req.client_id,
                client_host: req.client_host,
                session_timeout_ms: req.session_timeout_ms,
                rebalance_timeout_ms: req.rebalance_timeout_ms,
                protocols: req.protocols,
                assignment: Bytes::new(),
                join_waiter: Some(token),
                sync_waiter: None,
                last_heartbeat_ms: now,
                join_seq: seq,
            },
        );
        match g.state {
            ClassicState::PreparingRebalance => {
                if let Some((end, limit)) = g.initial_delay {
                    g.initial_delay = Some(((end.max(now + initial_delay)).min(limit), limit));
                }
                self.try_complete_join(&group_id, now);
            }
            _ => self.prepare_rebalance(&group_id, now),
        }
        Ok(())
    }

    fn replace_static_member(
        &mut self,
        req: JoinRequest,
        old_id: String,
        new_id: String,
        token: Token,
        now: i64,
    ) -> Result<()> {
        let group_id = req.group_id.clone();
        let g = self.classic(&group_id).expect("classic group");
        let mut member = g.members.remove(&old_id).expect("static member");
        let mut fenced = Vec::new();
        if let Some(t) = member.join_waiter.take() {
            fenced.push(Effect::Join {
                token: t,
                response: JoinResponse::error(
                    GroupError::FencedInstanceId(req.group_instance_id.clone().unwrap_or_default()),
                    &old_id,
                ),
            });
        }
        if let Some(t) = member.sync_waiter.take() {
            fenced.push(Effect::Sync {
                token: t,
                response: SyncResponse::error(GroupError::FencedInstanceId(
                    req.group_instance_id.clone().unwrap_or_default(),
                )),
            });
        }
        let protocols_unchanged = member.protocols == req.protocols;
        member.member_id = new_id.clone();
        member.client_id = req.client_id;
        member.client_host = req.client_host;
        member.session_timeout_ms = req.session_timeout_ms;
        member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        member.protocols = req.protocols;
        member.last_heartbeat_ms = now;
        if g.leader.as_deref() == Some(old_id.as_str()) {
            g.leader = Some(new_id.clone());
        }
        if let Some(i) = &req.group_instance_id {
            g.static_members.insert(i.clone(), new_id.clone());
        }
        g.members.insert(new_id.clone(), member);
        self.effects.extend(fenced);
        let g = self.classic(&group_id).expect("classic group");
        match g.state {
            ClassicState::Stable if protocols_unchanged => {
                // KIP-345: a static member coming back with the same subscription keeps its
                // assignment; no rebalance. The leader gets the members but must not reassign.
                let is_leader = g.leader.as_deref() == Some(new_id.as_str());
                let response = JoinResponse {
                    error: None,
                    generation_id: g.generation_id,
                    protocol_type: g.protocol_type.clone(),
                    protocol_name: g.protocol_name.clone(),
                    leader: g.leader.clone().unwrap_or_default(),
                    skip_assignment: is_leader,
                    member_id: new_id,
                    members: if is_leader { joined_members(g) } else { vec![] },
                };
                self.effects.push(Effect::Join { token, response });
                self.persist_group(&group_id);
            }
            ClassicState::PreparingRebalance => {
                g.members.get_mut(&new_id).expect("member").join_waiter = Some(token);
                self.try_complete_join(&group_id, now);
            }
            _ => {
                g.members.get_mut(&new_id).expect("member").join_waiter = Some(token);
                self.prepare_rebalance(&group_id, now);
            }
        }
        Ok(())
    }

    fn join_known_member(
        &mut self,
        req: JoinRequest,
        token: Token,
        now: i64,
        max_size: usize,
        initial_delay: i64,
    ) -> Result<()> {
        let group_id = req.group_id.clone();
        let g = self.classic(&group_id).expect("classic group");
        if g.pending_members.remove(&req.member_id).is_some() {
            let member_id = req.member_id.clone();
            return self.add_member(req, member_id, token, now, max_size, initial_delay);
        }
        check_instance(g, &req.member_id, req.group_instance_id.as_deref())?;
        let Some(member) = g.members.get_mut(&req.member_id) else {
            return Err(GroupError::UnknownMemberId);
        };
        let protocols_unchanged = member.protocols == req.protocols;
        member.protocols = req.protocols;
        member.session_timeout_ms = req.session_timeout_ms;
        member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        member.client_id = req.client_id;
        member.client_host = req.client_host;
        member.last_heartbeat_ms = now;
        let is_leader = g.leader.as_deref() == Some(req.member_id.as_str());
        match g.state {
            ClassicState::Empty => return Err(GroupError::UnknownMemberId),
            ClassicState::PreparingRebalance => {
                let member = g.members.get_mut(&req.member_id).expect("member");
                if let Some(old) = member.join_waiter.replace(token) {
                    self.effects.push(Effect::Join {
                        token: old,
                        response: JoinResponse::error(
                            GroupError::RebalanceInProgress,
                            &req.member_id,
                        ),
                    });
                }
                self.try_complete_join(&group_id, now);
            }
            ClassicState::CompletingRebalance | ClassicState::Stable
                if protocols_unchanged
                    && (g.state == ClassicState::CompletingRebalance || !is_leader) =>
            {
                // A duplicate or late JoinGroup from a member already in this generation:
                // answer with the generation it is in.
                let response = JoinResponse {
                    error: None,
                    generation_id: g.generation_id,
                    protocol_type: g.protocol_type.clone(),
                    protocol_name: g.protocol_name.clone(),
                    leader: g.leader.clone().unwrap_or_default(),
                    skip_assignment: false,
                    member_id: req.member_id.clone(),
                    members: if is_leader { joined_members(g) } else { vec![] },
                };
                self.effects.push(Effect::Join { token, response });
            }
            ClassicState::CompletingRebalance | ClassicState::Stable => {
                g.members
                    .get_mut(&req.member_id)
                    .expect("member")
                    .join_waiter = Some(token);
                self.prepare_rebalance(&group_id, now);
            }
        }
        Ok(())
    }

    fn prepare_rebalance(&mut self, group_id: &str, now: i64) {
        let initial_delay = self.config.initial_rebalance_delay_ms;
        let Some(g) = self.classic(group_id) else {
            return;
        };
        let mut effects = Vec::new();
        if g.state == ClassicState::CompletingRebalance {
            // Members waiting for the leader's assignment must rejoin.
            for m in g.members.values_mut() {
                if let Some(t) = m.sync_waiter.take() {
                    effects.push(Effect::Sync {
                        token: t,
                        response: SyncResponse::error(GroupError::RebalanceInProgress),
                    });
                }
                m.assignment = Bytes::new();
            }
        }
        let was_empty = g.state == ClassicState::Empty;
        g.state = ClassicState::PreparingRebalance;
        g.state_timestamp_ms = now;
        g.sync_deadline_ms = None;
        let rebalance_timeout = g.max_rebalance_timeout();
        g.rebalance_deadline_ms = Some(now + rebalance_timeout);
        g.initial_delay = (was_empty && initial_delay > 0).then(|| {
            let limit = now + rebalance_timeout;
            ((now + initial_delay).min(limit), limit)
        });
        self.effects.extend(effects);
        self.try_complete_join(group_id, now);
    }

    fn try_complete_join(&mut self, group_id: &str, now: i64) {
        let Some(g) = self.classic(group_id) else {
            return;
        };
        if g.state != ClassicState::PreparingRebalance {
            return;
        }
        let all_joined =
            g.pending_members.is_empty() && g.members.values().all(|m| m.join_waiter.is_some());
        let complete = match g.initial_delay {
            Some((end, _)) => now >= end,
            None => all_joined || g.rebalance_deadline_ms.is_some_and(|d| now >= d),
        };
        if complete {
            self.complete_join(group_id, now);
        }
    }

    fn complete_join(&mut self, group_id: &str, now: i64) {
        let Some(g) = self.classic(group_id) else {
            return;
        };
        // Members that did not rejoin in time are out.
        let gone: Vec<String> = g
            .members
            .values()
            .filter(|m| m.join_waiter.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for id in &gone {
            remove_member(g, id, &mut Vec::new());
        }
        g.pending_members.clear();
        g.initial_delay = None;
        g.rebalance_deadline_ms = None;
        g.generation_id += 1;
        g.state_timestamp_ms = now;
        if g.members.is_empty() {
            g.state = ClassicState::Empty;
            g.protocol_name = None;
            g.leader = None;
            self.persist_group(group_id);
            return;
        }
        g.protocol_name = g.select_protocol();
        if g.leader.as_ref().is_none_or(|l| !g.members.contains_key(l)) {
            g.leader = g
                .members
                .values()
                .min_by_key(|m| m.join_seq)
                .map(|m| m.member_id.clone());
        }
        g.state = ClassicState::CompletingRebalance;
        g.sync_deadline_ms = Some(now + g.max_rebalance_timeout());
        let leader = g.leader.clone().unwrap_or_default();
        let all = joined_members(g);
        let mut effects = Vec::new();
        for m in g.members.values_mut() {
            m.last_heartbeat_ms = now;
            m.assignment = Bytes::new();
            if let Some(token) = m.join_waiter.take() {
                effects.push(Effect::Join {
                    token,
                    response: JoinResponse {
                        error: None,
                        generation_id: g.generation_id,
                        protocol_type: g.protocol_type.clone(),
                        protocol_name: g.protocol_name.clone(),
                        leader: leader.clone(),
                        skip_assignment: false,
                        member_id: m.member_id.clone(),
                        members: if m.member_id == leader {
                            all.clone()
                        } else {
                            vec![]
                        },
                    },
                });
            }
        }
        self.effects.extend(effects);
    }

    // ---------------------------------------------------------------- SyncGroup

    pub fn sync(&mut self, req: SyncRequest, token: Token, now: i64) -> Vec<Effect> {
        if let Err(e) = self.sync_inner(req, token, now) {
            self.effects.push(Effect::Sync {
                token,
                response: SyncResponse::error(e),
            });
        }
        self.take_effects()
    }

    fn sync_inner(&mut self, req: SyncRequest, token: Token, now: i64) -> Result<()> {
        self.check_request(&req.group_id)?;
        let group_id = req.group_id.clone();
        let Some(g) = self.classic(&group_id) else {
            return Err(GroupError::UnknownMemberId);
        };
        check_instance(g, &req.member_id, req.group_instance_id.as_deref())?;
        if !g.members.contains_key(&req.member_id) {
            return Err(GroupError::UnknownMemberId);
        }
        if req.generation_id != g.generation_id {
            return Err(GroupError::IllegalGeneration {
                got: req.generation_id,
                current: g.generation_id,
            });
        }
        if req.protocol_type.is_some() && req.protocol_type != g.protocol_type
            || req.protocol_name.is_some() && req.protocol_name != g.protocol_name
        {
            return Err(GroupError::InconsistentGroupProtocol(
                "SyncGroup protocol does not match the group's".into(),
            ));
        }
        match g.state {
            ClassicState::Empty => Err(GroupError::UnknownMemberId),
            ClassicState::PreparingRebalance => Err(GroupError::RebalanceInProgress),
            ClassicState::Stable => {
                let m = g.members.get_mut(&req.member_id).expect("member");
                m.last_heartbeat_ms = now;
                let response = SyncResponse {
                    error: None,
                    protocol_type: g.protocol_type.clone(),
                    protocol_name: g.protocol_name.clone(),
                    assignment: m.assignment.clone(),
                };
                self.effects.push(Effect::Sync { token, response });
                Ok(())
            }
            ClassicState::CompletingRebalance => {
                let m = g.members.get_mut(&req.member_id).expect("member");
                m.last_heartbeat_ms = now;
                let mut effects = Vec::new();
                if let Some(old) = m.sync_waiter.replace(token) {
                    effects.push(Effect::Sync {
                        token: old,
                        response: SyncResponse::error(GroupError::RebalanceInProgress),
                    });
                }
                if g.leader.as_deref() != Some(req.member_id.as_str()) {
                    self.effects.extend(effects);
                    return Ok(());
                }
                let assignments: HashMap<String, Bytes> = req.assignments.into_iter().collect();
                for m in g.members.values_mut() {
                    m.assignment = assignments.get(&m.member_id).cloned().unwrap_or_default();
                }
                g.state = ClassicState::Stable;
                g.state_timestamp_ms = now;
                g.sync_deadline_ms = None;
                for m in g.members.values_mut() {
                    if let Some(t) = m.sync_waiter.take() {
                        effects.push(Effect::Sync {
                            token: t,
                            response: SyncResponse {
                                error: None,
                                protocol_type: g.protocol_type.clone(),
                                protocol_name: g.protocol_name.clone(),
                                assignment: m.assignment.clone(),
                            },
                        });
                    }
                }
                // The group record goes first: the caller makes it durable before answering.
                self.persist_group(&group_id);
                self.effects.extend(effects);
                Ok(())
            }
        }
    }

    // ---------------------------------------------------------------- Heartbeat

    pub fn heartbeat(
        &mut self,
        group_id: &str,
        member_id: &str,
        generation_id: i32,
        group_instance_id: Option<&str>,
        now: i64,
    ) -> Result<()> {
        self.check_request(group_id)?;
        let Some(g) = self.classic(group_id) else {
            return Err(GroupError::UnknownMemberId);
        };
        check_instance(g, member_id, group_instance_id)?;
        if g.state == ClassicState::Empty || !g.members.contains_key(member_id) {
            return Err(GroupError::UnknownMemberId);
        }
        if generation_id != g.generation_id {
            return Err(GroupError::IllegalGeneration {
                got: generation_id,
                current: g.generation_id,
            });
        }
        g.members
            .get_mut(member_id)
            .expect("member")
            .last_heartbeat_ms = now;
        match g.state {
            ClassicState::PreparingRebalance => Err(GroupError::RebalanceInProgress),
            _ => Ok(()),
        }
    }

    // ---------------------------------------------------------------- LeaveGroup

    /// Removes members (member id and/or group.instance.id each); one result per member.
    pub fn leave(
        &mut self,
        group_id: &str,
        members: &[(String, Option<String>)],
        now: i64,
    ) -> (Result<Vec<Result<()>>>, Vec<Effect>) {
        if let Err(e) = self.check_request(group_id) {
            return (Err(e), vec![]);
        }
        let Some(g) = self.classic(group_id) else {
            return (
                Ok(members
                    .iter()
                    .map(|_| Err(GroupError::UnknownMemberId))
                    .collect()),
                vec![],
            );
        };
        let mut results = Vec::new();
        let mut effects = Vec::new();
        let mut removed_any = false;
        for (member_id, instance) in members {
            let target = match instance {
                Some(i) => match g.static_members.get(i) {
                    None => Err(GroupError::UnknownMemberId),
                    Some(id) if !member_id.is_empty() && id != member_id => {
                        Err(GroupError::FencedInstanceId(i.clone()))
                    }
                    Some(id) => Ok(id.clone()),
                },
                None => Ok(member_id.clone()),
            };
            let result = target.and_then(|id| {
                if g.pending_members.remove(&id).is_some() {
                    return Ok(());
                }
                if !g.members.contains_key(&id) {
                    return Err(GroupError::UnknownMemberId);
                }
                remove_member(g, &id, &mut effects);
                removed_any = true;
                Ok(())
            });
            results.push(result);
        }
        self.effects.extend(effects);
        if removed_any {
            self.after_member_removed(group_id, now);
        }
        (Ok(results), self.take_effects())
    }

    fn after_member_removed(&mut self, group_id: &str, now: i64) {
        let Some(g) = self.classic(group_id) else {
            return;
        };
        match g.state {
            ClassicState::Stable | ClassicState::CompletingRebalance => {
                self.prepare_rebalance(group_id, now)
            }
            ClassicState::PreparingRebalance => self.try_complete_join(group_id, now),
            ClassicState::Empty => {}
        }
    }

    // ---------------------------------------------------------------- time

    /// Expires members whose session ran out, completes rebalances whose time is up, and
    /// (every `offsets_retention_check_interval_ms`) expires old offsets of empty groups.
    pub fn tick(&mut self, now: i64) -> Vec<Effect> {
        if !self.loaded {
            return vec![];
        }
        let ids: Vec<String> = self.groups.keys().cloned().collect();
        for id in &ids {
            self.tick_classic(id, now);
            self.tick_consumer(id, now);
        }
        if now >= self.next_expiration_check_ms {
            self.next_expiration_check_ms = now + self.config.offsets_retention_check_interval_ms;
            self.expire_offsets(now);
        }
        self.take_effects()
    }

    fn tick_classic(&mut self, group_id: &str, now: i64) {
        let Some(g) = self.classic(group_id) else {
            return;
        };
        g.pending_members.retain(|_, deadline| *deadline > now);
        let expired: Vec<String> = g
            .members
            .values()
            .filter(|m| {
                m.join_waiter.is_none()
                    && m.sync_waiter.is_none()
                    && now >= m.last_heartbeat_ms + m.session_timeout_ms as i64
            })
            .map(|m| m.member_id.clone())
            .collect();
        let mut effects = Vec::new();
        for id in &expired {
            remove_member(g, id, &mut effects);
        }
        // A leader that never sent its assignment: those who did not sync are out.
        let mut sync_timed_out = false;
        if g.state == ClassicState::CompletingRebalance
            && g.sync_deadline_ms.is_some_and(|d| now >= d)
        {
            let lagging: Vec<String> = g
                .members
                .values()
                .filter(|m| m.sync_waiter.is_none())
                .map(|m| m.member_id.clone())
                .collect();
            for id in &lagging {
                remove_member(g, id, &mut effects);
            }
            sync_timed_out = true;
        }
        self.effects.extend(effects);
        if !expired.is_empty() || sync_timed_out {
            self.after_member_removed(group_id, now);
        } else {
            self.try_complete_join(group_id, now);
        }
    }

    fn expire_offsets(&mut self, now: i64) {
        let retention = self.config.offsets_retention_ms;
        let mut tombstones = Vec::new();
        let mut dead_groups = Vec::new();
        for (id, g) in self.groups.iter_mut() {
            if g.has_members() {
                continue;
            }
            let empty_since = match &g.kind {
                GroupKind::Classic(c) => c.state_timestamp_ms,
                GroupKind::Consumer(c) => c.state_timestamp_ms,
            };
            g.offsets.retain(|(topic, partition), v| {
                let keep = v.commit_timestamp.max(empty_since) + retention > now;
                if !keep {
                    tombstones.push((id.clone(), topic.clone(), *partition));
                }
                keep
            });
            if g.offsets.is_empty()
                && g.pending_txn_offsets.is_empty()
                && empty_since + retention <= now
            {
                dead_groups.push(id.clone());
            }
        }
        for (group, topic, partition) in tombstones {
            self.persist_offset(&group, topic, partition, None);
        }
        for group in dead_groups {
            self.groups.remove(&group);
            self.persist(
                &group,
                RecordKey::Group {
                    group: group.clone(),
                },
                None,
            );
        }
    }

    // ---------------------------------------------------------------- offsets

    /// OffsetCommit. `high_watermark(topic, partition)` is `None` for a partition that does
    /// not exist. As in Kafka, an offset past the high watermark is stored as committed: the
    /// consumer's `auto.offset.reset` deals with it when it fetches (invariant 12).
    pub fn commit_offsets(
        &mut self,
        req: CommitRequest,
        now: i64,
        high_watermark: &dyn Fn(&str, i32) -> Option<i64>,
    ) -> (Result<CommitResults>, Vec<Effect>) {
        if let Err(e) = self.validate_commit(&req, now) {
            return (Err(e), vec![]);
        }
        self.store_offsets(req, None, now, high_watermark)
    }

    /// TxnOffsetCommit: offsets committed inside `producer_id`'s transaction, stored as
    /// pending until the transaction's marker (see [`Coordinator::complete_transaction`]).
    /// Without member information (generation -1, no member id: clients before KIP-447)
    /// the commit is taken whatever the group's state, as Kafka does.
    pub fn txn_commit_offsets(
        &mut self,
        req: CommitRequest,
        producer_id: i64,
        producer_epoch: i16,
        now: i64,
        high_watermark: &dyn Fn(&str, i32) -> Option<i64>,
    ) -> (Result<CommitResults>, Vec<Effect>) {
        let checked = if req.generation_id_or_member_epoch < 0 && req.member_id.is_empty() {
            self.check_request(&req.group_id)
        } else {
            self.validate_commit(&req, now)
        };
        if let Err(e) = checked {
            return (Err(e), vec![]);
        }
        self.store_offsets(
            req,
            Some((producer_id, producer_epoch)),
            now,
            high_watermark,
        )
    }

    fn store_offsets(
        &mut self,
        req: CommitRequest,
        transaction: Option<(i64, i16)>,
        now: i64,
        high_watermark: &dyn Fn(&str, i32) -> Option<i64>,
    ) -> (Result<CommitResults>, Vec<Effect>) {
        let max_meta = self.config.offset_metadata_max_bytes;
        let mut results = Vec::new();
        let mut accepted = Vec::new();
        for (topic, partitions) in &req.topics {
            let mut presults = Vec::new();
            for p in partitions {
                let meta = p.metadata.clone().unwrap_or_default();
                let r = if meta.len() > max_meta {
                    Err(GroupError::OffsetMetadataTooLarge {
                        got: meta.len(),
                        max: max_meta,
                    })
                } else {
                    match high_watermark(topic, p.partition) {
                        None => Err(GroupError::UnknownTopicOrPartition),
                        Some(_) if p.offset < 0 => Err(GroupError::InvalidRequest(format!(
                            "offset {} is negative",
                            p.offset
                        ))),
                        Some(_) => Ok(()),
                    }
                };
                if r.is_ok() {
                    accepted.push((
                        topic.clone(),
                        p.partition,
                        OffsetValue {
                            offset: p.offset,
                            leader_epoch: p.leader_epoch,
                            metadata: meta,
                            commit_timestamp: now,
                        },
                    ));
                }
                presults.push((p.partition, r.err()));
            }
            results.push((topic.clone(), presults));
        }
        let group = self.group_entry(&req.group_id, now);
        let mut undo = OffsetsUndo {
            group_id: req.group_id.clone(),
            transaction: transaction.map(|(producer_id, _)| producer_id),
            ..OffsetsUndo::default()
        };
        if transaction.is_none() {
            // A plain commit is later in the log than every pending transactional offset of
            // the same partition: it wins when they commit (Kafka keeps the later record).
            for (topic, partition, _) in &accepted {
                for (producer_id, v) in group.supersede_pending(topic, *partition) {
                    undo.superseded
                        .push((producer_id, (topic.clone(), *partition), v));
                }
            }
        }
        let stored = match transaction {
            None => &mut group.offsets,
            Some((producer_id, _)) => group.pending_txn_offsets.entry(producer_id).or_default(),
        };
        for (topic, partition, v) in &accepted {
            let key = (topic.clone(), *partition);
            let previous = stored.insert(key.clone(), v.clone());
            undo.written.push((key, previous, v.clone()));
        }
        if !undo.written.is_empty() {
            self.undo.push(undo);
        }
        for (topic, partition, v) in accepted {
            let value = codec::encode_offset_value(&v);
            match transaction {
                None => self.persist_offset(&req.group_id, topic, partition, Some(value)),
                Some((producer_id, producer_epoch)) => {
                    let key = codec::encode_key(&RecordKey::Offset {
                        group: req.group_id.clone(),
                        topic,
                        partition,
                    });
                    self.effects.push(Effect::PersistTransactional {
                        partition: self.partition_for(&req.group_id),
                        producer_id,
                        producer_epoch,
                        key,
                        value,
                    });
                }
            }
        }
        (Ok(results), self.take_effects())
    }

    /// A transaction marker for `producer_id` was written to `offsets_partition` (or
    /// replayed from it): its pending offsets in the groups living there become committed
    /// offsets (commit) or are dropped (abort). Nothing to persist: the marker decides.
    pub fn complete_transaction(&mut self, offsets_partition: i32, producer_id: i64, commit: bool) {
        let partitions = self.config.offsets_topic_partitions;
        for (id, g) in self.groups.iter_mut() {
            if codec::partition_for(id, partitions) != offsets_partition {
                continue;
            }
            if let Some(pending) = g.pending_txn_offsets.remove(&producer_id) {
                if commit {
                    g.offsets.extend(pending);
                }
            }
        }
    }

    /// Replays an offset record from a transactional batch of `producer_id`.
    pub fn replay_transactional(
        &mut self,
        producer_id: i64,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> std::result::Result<(), codec::CodecError> {
        if let (
            RecordKey::Offset {
                group,
                topic,
                partition,
            },
            Some(v),
        ) = (codec::decode_key(key)?, value)
        {
            let v = codec::decode_offset_value(v)?;
            self.group_entry(&group, 0)
                .pending_txn_offsets
                .entry(producer_id)
                .or_default()
                .insert((topic, partition), v);
        }
        Ok(())
    }

    fn validate_commit(&mut self, req: &CommitRequest, now: i64) -> Result<()> {
        self.check_request(&req.group_id)?;
        let generation = req.generation_id_or_member_epoch;
        let Some(group) = self.groups.get_mut(&req.group_id) else {
            // Not using group management: allowed, and creates an empty group.
            return if generation < 0 {
                Ok(())
            } else {
                Err(GroupError::IllegalGeneration {
                    got: generation,
                    current: -1,
                })
            };
        };
        match &mut group.kind {
            GroupKind::Classic(g) => {
                if generation < 0 && g.state == ClassicState::Empty {
                    return Ok(());
                }
                check_instance(g, &req.member_id, req.group_instance_id.as_deref())?;
                if g.state == ClassicState::CompletingRebalance {
                    return Err(GroupError::RebalanceInProgress);
                }
                let Some(m) = g.members.get_mut(&req.member_id) else {
                    return Err(GroupError::UnknownMemberId);
                };
                if generation != g.generation_id {
                    return Err(GroupError::IllegalGeneration {
                        got: generation,
                        current: g.generation_id,
                    });
                }
                m.last_heartbeat_ms = now;
                Ok(())
            }
            GroupKind::Consumer(c) => c.validate_commit(&req.member_id, generation, now),
        }
    }

    /// OffsetFetch for one group: `topics` `None` means every committed offset. Partitions
    /// without a committed offset come back with `offset: None`.
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        topics: Option<&[(String, Vec<i32>)]>,
        member: Option<(&str, i32)>,
    ) -> Result<Vec<FetchedOffset>> {
        self.check_request(group_id)?;
        let group = self.groups.get(group_id);
        if let (
            Some(Group {
                kind: GroupKind::Consumer(c),
                ..
            }),
            Some((member_id, epoch)),
        ) = (group, member)
        {
            if !member_id.is_empty() {
                c.validate_fetch(member_id, epoch)?;
            }
        }
        let mut out = Vec::new();
        match topics {
            None => {
                if let Some(g) = group {
                    for ((topic, partition), v) in &g.offsets {
                        out.push(FetchedOffset {
                            topic: topic.clone(),
                            partition: *partition,
                            offset: Some(v.clone()),
                            unstable: g.has_pending_txn_offset(topic, *partition),
                        });
                    }
                }
            }
            Some(topics) => {
                for (topic, partitions) in topics {
                    for &partition in partitions {
                        out.push(FetchedOffset {
                            topic: topic.clone(),
                            partition,
                            offset: group
                                .and_then(|g| g.offsets.get(&(topic.clone(), partition)))
                                .cloned(),
                            unstable: group
                                .is_some_and(|g| g.has_pending_txn_offset(topic, partition)),
                        });
                    }
                }
            }
        }
        Ok(out)
    }

    /// OffsetDelete: refused per partition for topics the group is still subscribed to.
    pub fn delete_offsets(
        &mut self,
        group_id: &str,
        topics: &[(String, Vec<i32>)],
    ) -> (Result<CommitResults>, Vec<Effect>) {
        if let Err(e) = self.check_request(group_id) {
            return (Err(e), vec![]);
        }
        let Some(group) = self.groups.get_mut(group_id) else {
            return (
                Err(GroupError::GroupIdNotFound(group_id.to_string())),
                vec![],
            );
        };
        let subscribed: Vec<String> = match &group.kind {
            GroupKind::Classic(c) if !c.members.is_empty() => match c.subscribed_topics() {
                Some(t) => t,
                // A non-consumer protocol with members: Kafka refuses for a non-empty group.
                None => return (Err(GroupError::NonEmptyGroup(group_id.to_string())), vec![]),
            },
            GroupKind::Classic(_) => vec![],
            GroupKind::Consumer(c) => c.subscribed_topics(),
        };
        let mut results = Vec::new();
        let mut deleted = Vec::new();
        for (topic, partitions) in topics {
            let mut presults = Vec::new();
            for &p in partitions {
                if subscribed.contains(topic) {
                    presults.push((p, Some(GroupError::GroupSubscribedToTopic)));
                } else {
                    if group.offsets.remove(&(topic.clone(), p)).is_some() {
                        deleted.push((topic.clone(), p));
                    }
                    presults.push((p, None));
                }
            }
            results.push((topic.clone(), presults));
        }
        for (topic, partition) in deleted {
            self.persist_offset(group_id, topic, partition, None);
        }
        (Ok(results), self.take_effects())
    }

    /// Drops committed offsets of a deleted topic from every group.
    pub fn topic_deleted(&mut self, topic: &str) -> Vec<Effect> {
        let mut gone = Vec::new();
        for (id, g) in self.groups.iter_mut() {
            g.offsets.retain(|(t, p), _| {
                if t == topic {
                    gone.push((id.clone(), *p));
                    false
                } else {
                    true
                }
            });
            for pending in g.pending_txn_offsets.values_mut() {
                pending.retain(|(t, _), _| t != topic);
            }
        }
        for (group, partition) in gone {
            self.persist_offset(&group, topic.to_string(), partition, None);
        }
        self.take_effects()
    }

    // ---------------------------------------------------------------- admin

    pub fn describe(&self, group_id: &str) -> Result<Option<GroupDescription>> {
        self.check_loaded()?;
        self.check_owner(group_id)?;
        let Some(g) = self.groups.get(group_id) else {
            return Ok(None);
        };
        Ok(Some(match &g.kind {
            GroupKind::Classic(c) => GroupDescription {
                group_id: group_id.to_string(),
                state: c.state.name(),
                protocol_type: c.protocol_type.clone().unwrap_or_default(),
                protocol: if c.state == ClassicState::Stable {
                    c.protocol_name.clone().unwrap_or_default()
                } else {
                    String::new()
                },
                members: c
                    .members
                    .values()
                    .map(|m| DescribedMember {
                        member_id: m.member_id.clone(),
                        group_instance_id: m.group_instance_id.clone(),
                        client_id: m.client_id.clone(),
                        client_host: m.client_host.clone(),
                        metadata: if c.state == ClassicState::Stable {
                            m.metadata_for(c.protocol_name.as_deref())
                        } else {
                            Bytes::new()
                        },
                        assignment: if c.state == ClassicState::Stable {
                            m.assignment.clone()
                        } else {
                            Bytes::new()
                        },
                    })
                    .collect(),
            },
            GroupKind::Consumer(c) => GroupDescription {
                group_id: group_id.to_string(),
                state: c.classic_state_name(),
                protocol_type: "consumer".into(),
                protocol: String::new(),
                members: vec![],
            },
        }))
    }

    pub fn list(&self) -> Result<Vec<GroupListing>> {
        self.check_loaded()?;
        Ok(self
            .groups
            .iter()
            .map(|(id, g)| match &g.kind {
                GroupKind::Classic(c) => GroupListing {
                    group_id: id.clone(),
                    protocol_type: c.protocol_type.clone().unwrap_or_default(),
                    state: c.state.name(),
                    group_type: "classic",
                },
                GroupKind::Consumer(c) => GroupListing {
                    group_id: id.clone(),
                    protocol_type: "consumer".into(),
                    state: c.state_name(),
                    group_type: "consumer",
                },
            })
            .collect())
    }

    /// DeleteGroups for one group: only an empty group can go; its offsets go with it.
    pub fn delete_group(&mut self, group_id: &str) -> (Result<()>, Vec<Effect>) {
        if let Err(e) = self.check_request(group_id) {
            return (Err(e), vec![]);
        }
        let Some(g) = self.groups.get(group_id) else {
            return (
                Err(GroupError::GroupIdNotFound(group_id.to_string())),
                vec![],
            );
        };
        if g.has_members() {
            return (Err(GroupError::NonEmptyGroup(group_id.to_string())), vec![]);
        }
        let g = self.groups.remove(group_id).expect("group");
        if let GroupKind::Consumer(_) = g.kind {
            self.persist(
                group_id,
                RecordKey::ConsumerGroup {
                    group: group_id.to_string(),
                },
                None,
            );
        }
        for (topic, partition) in g.offsets.into_keys() {
            self.persist_offset(group_id, topic, partition, None);
        }
        self.persist(
            group_id,
            RecordKey::Group {
                group: group_id.to_string(),
            },
            None,
        );
        (Ok(()), self.take_effects())
    }

    /// The state of a classic group, for tests and tools.
    pub fn classic_state(&self, group_id: &str) -> Option<(ClassicState, i32)> {
        match self.groups.get(group_id) {
            Some(Group {
                kind: GroupKind::Classic(c),
                ..
            }) => Some((c.state, c.generation_id)),
            _ => None,
        }
    }
}

fn joined_members(g: &ClassicGroup) -> Vec<JoinedMember> {
    let mut members: Vec<&Member> = g.members.values().collect();
    members.sort_by_key(|m| m.join_seq);
    members
        .into_iter()
        .map(|m| JoinedMember {
            member_id: m.member_id.clone(),
            group_instance_id: m.group_instance_id.clone(),
            metadata: m.metadata_for(g.protocol_name.as_deref()),
        })
        .collect()
}

/// KIP-345: a request naming a group.instance.id must come from the member that holds it.
fn check_instance(g: &ClassicGroup, member_id: &str, instance: Option<&str>) -> Result<()> {
    if let Some(i) = instance {
        match g.static_members.get(i) {
            Some(id) if id != member_id => return Err(GroupError::FencedInstanceId(i.to_string())),
            None if g.members.contains_key(member_id) => {
                return Err(GroupError::FencedInstanceId(i.to_string()))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Removes a member, answering whatever it was waiting for with UNKNOWN_MEMBER_ID.
fn remove_member(g: &mut ClassicGroup, member_id: &str, effects: &mut Vec<Effect>) {
    let Some(mut m) = g.members.remove(member_id) else {
        return;
    };
    if let Some(i) = &m.group_instance_id {
        if g.static_members.get(i).map(String::as_str) == Some(member_id) {
            g.static_members.remove(i);
        }
    }
    if let Some(t) = m.join_waiter.take() {
        effects.push(Effect::Join {
            token: t,
            response: JoinResponse::error(GroupError::UnknownMemberId, member_id),
        });
    }
    if let Some(t) = m.sync_waiter.take() {
        effects.push(Effect::Sync {
            token: t,
            response: SyncResponse::error(GroupError::UnknownMemberId),
        });
    }
    if g.leader.as_deref() == Some(member_id) {
        g.leader = None;
    }
}
