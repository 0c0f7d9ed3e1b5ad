//! KIP-848 consumer groups: members heartbeat with ConsumerGroupHeartbeat, the coordinator
//! computes a target assignment (server-side assignor) and reconciles each member towards
//! it, one heartbeat at a time:
//!
//! - a change (member joins, leaves, changes subscription, or a subscribed topic changes
//!   partition count) bumps the **group epoch** and computes a new target assignment;
//! - a member that owns partitions its target no longer has is first told to revoke them
//!   (its member epoch stays); only when its heartbeat shows they are released does it move
//!   to the new epoch;
//! - a partition is handed to its new owner only once no other member still owns it
//!   (so no partition is ever owned by two members);
//! - a member that does not revoke within its rebalance timeout, or stops heartbeating for
//!   the session timeout, is fenced and its partitions go back to the pool.
//!
//! The whole group (epochs, members, current and target assignments) is one
//! `__consumer_offsets` record (key version 100), rewritten when its state changes — not on
//! heartbeats that change nothing — so members carry on across a broker restart with no
//! rebalance.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use uuid::Uuid;

use bytes::{BufMut, Bytes, BytesMut};

use crate::assignor::{self, Assignment, AssignorMember};
use crate::codec::{put_nullable_str, put_str, CodecError, Reader, RecordKey};
use crate::coordinator::{new_member_id, Coordinator, Effect, Group, GroupKind};
use crate::error::{GroupError, Result};

/// A topic as the coordinator needs it for assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    pub id: Uuid,
    pub partitions: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerHeartbeat {
    pub group_id: String,
    /// Empty for a v0 join (the coordinator picks one); v1 clients pick their own.
    pub member_id: String,
    pub member_epoch: i32,
    pub group_instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub rebalance_timeout_ms: i32,
    /// `None`: unchanged since the last heartbeat.
    pub subscribed_topic_names: Option<Vec<String>>,
    pub server_assignor: Option<String>,
    /// The partitions the member owns now; `None`: unchanged.
    pub owned: Option<Vec<(Uuid, Vec<i32>)>>,
    pub client_id: String,
    pub client_host: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerHeartbeatResponse {
    pub member_id: String,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i32,
    /// Sent when it changed (or the member's view differs); `None` otherwise.
    pub assignment: Option<Vec<(Uuid, Vec<i32>)>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerMemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub member_epoch: i32,
    pub client_id: String,
    pub client_host: String,
    pub subscribed_topic_names: Vec<String>,
    pub assignment: Assignment,
    pub target_assignment: Assignment,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerDescription {
    pub group_id: String,
    pub state: &'static str,
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub assignor_name: String,
    pub members: Vec<ConsumerMemberDescription>,
}

#[derive(Debug, Clone)]
pub(crate) struct ConsumerMember {
    member_id: String,
    group_instance_id: Option<String>,
    rack_id: Option<String>,
    client_id: String,
    client_host: String,
    member_epoch: i32,
    previous_member_epoch: i32,
    subscribed: Vec<String>,
    server_assignor: Option<String>,
    rebalance_timeout_ms: i32,
    /// What the member has been given and not told to give back.
    assigned: Assignment,
    /// What it was told to give back and has not yet confirmed.
    pending_revocation: Assignment,
    revocation_deadline_ms: Option<i64>,
    last_heartbeat_ms: i64,
    /// A static member that left with epoch -2: its partitions wait for its return until
    /// the session timeout.
    left_temporarily: bool,
    assignment_changed: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct ConsumerGroup {
    pub(crate) members: BTreeMap<String, ConsumerMember>,
    group_epoch: i32,
    assignment_epoch: i32,
    static_members: HashMap<String, String>,
    /// Member ids replaced by a newer instance of their static member: fenced for good.
    fenced_instances: HashMap<String, String>,
    target: BTreeMap<String, Assignment>,
    /// Subscribed topics as of the last target computation (name -> id, partitions).
    subscription_metadata: BTreeMap<String, (Uuid, i32)>,
    assignor: String,
    pub(crate) state_timestamp_ms: i64,
    /// Changed since it was last persisted.
    dirty: bool,
}

fn is_empty_assignment(a: &Assignment) -> bool {
    a.values().all(BTreeSet::is_empty)
}

fn to_wire(a: &Assignment) -> Vec<(Uuid, Vec<i32>)> {
    a.iter()
        .filter(|(_, ps)| !ps.is_empty())
        .map(|(t, ps)| (*t, ps.iter().copied().collect()))
        .collect()
}

fn from_wire(owned: &[(Uuid, Vec<i32>)]) -> Assignment {
    let mut a = Assignment::new();
    for (t, ps) in owned {
        a.entry(*t).or_default().extend(ps.iter().copied());
    }
    a
}

fn minus(a: &Assignment, b: &Assignment) -> Assignment {
    let mut out = Assignment::new();
    for (t, ps) in a {
        let rest: BTreeSet<i32> = match b.get(t) {
            Some(other) => ps.difference(other).copied().collect(),
            None => ps.clone(),
        };
        if !rest.is_empty() {
            out.insert(*t, rest);
        }
    }
    out
}

fn intersect(a: &Assignment, b: &Assignment) -> Assignment {
    let mut out = Assignment::new();
    for (t, ps) in a {
        if let Some(other) = b.get(t) {
            let both: BTreeSet<i32> = ps.intersection(other).copied().collect();
            if !both.is_empty() {
                out.insert(*t, both);
            }
        }
    }
    out
}

fn contains(a: &Assignment, t: &Uuid, p: i32) -> bool {
    a.get(t).is_some_and(|ps| ps.contains(&p))
}

fn put_assignment(b: &mut BytesMut, a: &Assignment) {
    b.put_i32(a.len() as i32);
    for (t, ps) in a {
        b.put_slice(t.as_bytes());
        b.put_i32(ps.len() as i32);
        for p in ps {
            b.put_i32(*p);
        }
    }
}

fn get_count(r: &mut Reader<'_>, min_item_bytes: usize) -> std::result::Result<usize, CodecError> {
    let n = r.i32()?;
    if n < 0 || n as usize > r.buf.len() / min_item_bytes.max(1) {
        return Err(CodecError(format!("count {n} is impossible")));
    }
    Ok(n as usize)
}

fn get_uuid(r: &mut Reader<'_>) -> std::result::Result<Uuid, CodecError> {
    Ok(Uuid::from_bytes(r.take(16)?.try_into().expect("16 bytes")))
}

fn get_assignment(r: &mut Reader<'_>) -> std::result::Result<Assignment, CodecError> {
    let mut a = Assignment::new();
    for _ in 0..get_count(r, 20)? {
        let t = get_uuid(r)?;
        let mut ps = BTreeSet::new();
        for _ in 0..get_count(r, 4)? {
            ps.insert(r.i32()?);
        }
        a.insert(t, ps);
    }
    Ok(a)
}

impl ConsumerGroup {
    /// The record value for key version 100: version 0, then the fields in declaration order.
    pub(crate) fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        b.put_i16(0);
        b.put_i32(self.group_epoch);
        b.put_i32(self.assignment_epoch);
        put_str(&mut b, &self.assignor);
        b.put_i64(self.state_timestamp_ms);
        b.put_i32(self.subscription_metadata.len() as i32);
        for (name, (id, partitions)) in &self.subscription_metadata {
            put_str(&mut b, name);
            b.put_slice(id.as_bytes());
            b.put_i32(*partitions);
        }
        b.put_i32(self.members.len() as i32);
        for m in self.members.values() {
            put_str(&mut b, &m.member_id);
            put_nullable_str(&mut b, m.group_instance_id.as_deref());
            put_nullable_str(&mut b, m.rack_id.as_deref());
            put_str(&mut b, &m.client_id);
            put_str(&mut b, &m.client_host);
            b.put_i32(m.member_epoch);
            b.put_i32(m.previous_member_epoch);
            b.put_i32(m.subscribed.len() as i32);
            for t in &m.subscribed {
                put_str(&mut b, t);
            }
            put_nullable_str(&mut b, m.server_assignor.as_deref());
            b.put_i32(m.rebalance_timeout_ms);
            put_assignment(&mut b, &m.assigned);
            put_assignment(&mut b, &m.pending_revocation);
            b.put_i8(m.left_temporarily as i8);
        }
        b.put_i32(self.target.len() as i32);
        for (id, a) in &self.target {
            put_str(&mut b, id);
            put_assignment(&mut b, a);
        }
        b.freeze()
    }

    pub(crate) fn decode(bytes: &[u8]) -> std::result::Result<Self, CodecError> {
        let mut r = Reader { buf: bytes };
        let version = r.i16()?;
        if version != 0 {
            return Err(CodecError(format!(
                "unknown consumer group value version {version}"
            )));
        }
        let group_epoch = r.i32()?;
        let assignment_epoch = r.i32()?;
        let assignor = r.str()?;
        let state_timestamp_ms = r.i64()?;
        let mut subscription_metadata = BTreeMap::new();
        for _ in 0..get_count(&mut r, 22)? {
            let name = r.str()?;
            let id = get_uuid(&mut r)?;
            subscription_metadata.insert(name, (id, r.i32()?));
        }
        let mut members = BTreeMap::new();
        let mut static_members = HashMap::new();
        for _ in 0..get_count(&mut r, 40)? {
            let member_id = r.str()?;
            let group_instance_id = r.nullable_str()?;
            let rack_id = r.nullable_str()?;
            let client_id = r.str()?;
            let client_host = r.str()?;
            let member_epoch = r.i32()?;
            let previous_member_epoch = r.i32()?;
            let mut subscribed = Vec::new();
            for _ in 0..get_count(&mut r, 2)? {
                subscribed.push(r.str()?);
            }
            let server_assignor = r.nullable_str()?;
            let rebalance_timeout_ms = r.i32()?;
            let assigned = get_assignment(&mut r)?;
            let pending_revocation = get_assignment(&mut r)?;
            let left_temporarily = r.take(1)?[0] != 0;
            if let Some(i) = &group_instance_id {
                static_members.insert(i.clone(), member_id.clone());
            }
            members.insert(
                member_id.clone(),
                ConsumerMember {
                    member_id,
                    group_instance_id,
                    rack_id,
                    client_id,
                    client_host,
                    member_epoch,
                    previous_member_epoch,
                    subscribed,
                    server_assignor,
                    rebalance_timeout_ms,
                    assigned,
                    pending_revocation,
                    revocation_deadline_ms: None,
                    last_heartbeat_ms: 0,
                    left_temporarily,
                    assignment_changed: false,
                },
            );
        }
        let mut target = BTreeMap::new();
        for _ in 0..get_count(&mut r, 6)? {
            let id = r.str()?;
            target.insert(id, get_assignment(&mut r)?);
        }
        Ok(Self {
            members,
            group_epoch,
            assignment_epoch,
            static_members,
            fenced_instances: HashMap::new(),
            target,
            subscription_metadata,
            assignor,
            state_timestamp_ms,
            dirty: false,
        })
    }

    /// After a restart: sessions and revocation deadlines start again from now.
    pub(crate) fn loaded(&mut self, now: i64) {
        for m in self.members.values_mut() {
            m.last_heartbeat_ms = now;
            if !is_empty_assignment(&m.pending_revocation) {
                m.revocation_deadline_ms = Some(now + m.rebalance_timeout_ms.max(0) as i64);
            }
        }
    }

    fn new(now: i64, assignor: String) -> Self {
        Self {
            members: BTreeMap::new(),
            group_epoch: 0,
            assignment_epoch: 0,
            static_members: HashMap::new(),
            fenced_instances: HashMap::new(),
            target: BTreeMap::new(),
            subscription_metadata: BTreeMap::new(),
            assignor,
            state_timestamp_ms: now,
            dirty: true,
        }
    }

    pub(crate) fn state_name(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.assignment_epoch < self.group_epoch {
            "Assigning"
        } else if self.members.values().any(|m| {
            m.member_epoch != self.assignment_epoch
                || !is_empty_assignment(&m.pending_revocation)
                || m.assigned != self.target.get(&m.member_id).cloned().unwrap_or_default()
        }) {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    /// DescribeGroups' view of a KIP-848 group, in classic state names.
    pub(crate) fn classic_state_name(&self) -> &'static str {
        match self.state_name() {
            "Empty" => "Empty",
            "Stable" => "Stable",
            _ => "PreparingRebalance",
        }
    }

    pub(crate) fn subscribed_topics(&self) -> Vec<String> {
        self.members
            .values()
            .flat_map(|m| m.subscribed.iter().cloned())
            .collect()
    }

    pub(crate) fn validate_commit(&mut self, member_id: &str, epoch: i32, now: i64) -> Result<()> {
        if member_id.is_empty() && epoch < 0 && self.members.is_empty() {
            return Ok(());
        }
        let Some(m) = self.members.get_mut(member_id) else {
            return Err(GroupError::UnknownMemberId);
        };
        if epoch != m.member_epoch {
            return Err(GroupError::StaleMemberEpoch {
                got: epoch,
                current: m.member_epoch,
            });
        }
        m.last_heartbeat_ms = now;
        Ok(())
    }

    pub(crate) fn validate_fetch(&self, member_id: &str, epoch: i32) -> Result<()> {
        let Some(m) = self.members.get(member_id) else {
            return Err(GroupError::UnknownMemberId);
        };
        if epoch >= 0 && epoch != m.member_epoch {
            return Err(GroupError::StaleMemberEpoch {
                got: epoch,
                current: m.member_epoch,
            });
        }
        Ok(())
    }

    /// Who owns a partition now (given and not yet confirmed revoked), other than `except`.
    fn owned_by_other(&self, except: &str, t: &Uuid, p: i32) -> bool {
        self.members.iter().any(|(id, m)| {
            id != except && (contains(&m.assigned, t, p) || contains(&m.pending_revocation, t, p))
        })
    }

    fn subscription_metadata(&self, topics: &[TopicInfo]) -> BTreeMap<String, (Uuid, i32)> {
        let wanted: BTreeSet<&str> = self
            .members
            .values()
            .flat_map(|m| m.subscribed.iter().map(String::as_str))
            .collect();
        topics
            .iter()
            .filter(|t| wanted.contains(t.name.as_str()))
            .map(|t| (t.name.clone(), (t.id, t.partitions)))
            .collect()
    }

    /// Bumps the group epoch and computes a new target assignment.
    fn recompute_target(&mut self, topics: &[TopicInfo]) {
        self.group_epoch += 1;
        self.subscription_metadata = self.subscription_metadata(topics);
        let partitions: BTreeMap<Uuid, i32> =
            self.subscription_metadata.values().copied().collect();
        let previous = self.target.clone();
        let members: Vec<AssignorMember<'_>> = self
            .members
            .values()
            .map(|m| AssignorMember {
                member_id: &m.member_id,
                topics: m
                    .subscribed
                    .iter()
                    .filter_map(|n| self.subscription_metadata.get(n).map(|(id, _)| *id))
                    .collect(),
                previous: previous.get(&m.member_id),
            })
            .collect();
        self.target = assignor::assign(&self.assignor, &members, &partitions);
        self.assignment_epoch = self.group_epoch;
        self.dirty = true;
    }

    /// Moves one member towards its target assignment.
    fn reconcile(&mut self, member_id: &str, owned: Option<&Assignment>, now: i64) {
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        let assignment_epoch = self.assignment_epoch;
        let Some(m) = self.members.get(member_id) else {
            return;
        };
        let mut m = m.clone();
        let before = (
            m.member_epoch,
            m.assigned.clone(),
            m.pending_revocation.clone(),
        );
        // Revocation confirmed when the member no longer reports those partitions.
        if !is_empty_assignment(&m.pending_revocation) {
            if let Some(owned) = owned {
                if is_empty_assignment(&intersect(owned, &m.pending_revocation)) {
                    m.pending_revocation.clear();
                    m.revocation_deadline_ms = None;
                }
            }
        }
        if is_empty_assignment(&m.pending_revocation) {
            let revoke = minus(&m.assigned, &target);
            if !is_empty_assignment(&revoke) {
                m.assigned = intersect(&m.assigned, &target);
                m.pending_revocation = revoke;
                m.revocation_deadline_ms = Some(now + m.rebalance_timeout_ms.max(0) as i64);
                m.assignment_changed = true;
            } else {
                if m.member_epoch != assignment_epoch {
                    m.previous_member_epoch = m.member_epoch;
                    m.member_epoch = assignment_epoch;
                    m.assignment_changed = true;
                }
                // Hand over what is free now; the rest follows once released.
                for (t, ps) in minus(&target, &m.assigned) {
                    for p in ps {
                        if !self.owned_by_other(member_id, &t, p) {
                            m.assigned.entry(t).or_default().insert(p);
                            m.assignment_changed = true;
                        }
                    }
                }
            }
        }
        if before
            != (
                m.member_epoch,
                m.assigned.clone(),
                m.pending_revocation.clone(),
            )
        {
            self.dirty = true;
        }
        self.members.insert(member_id.to_string(), m);
    }

    fn remove_member(&mut self, member_id: &str) {
        if let Some(m) = self.members.remove(member_id) {
            self.dirty = true;
            if let Some(i) = &m.group_instance_id {
                if self.static_members.get(i).map(String::as_str) == Some(member_id) {
                    self.static_members.remove(i);
                }
            }
        }
        self.target.remove(member_id);
    }
}

impl Coordinator {
    fn consumer(&mut self, group_id: &str) -> Option<&mut ConsumerGroup> {
        match self.groups.get_mut(group_id) {
            Some(Group {
                kind: GroupKind::Consumer(g),
                ..
            }) => Some(g),
            _ => None,
        }
    }

    /// ConsumerGroupHeartbeat. `topics`: every topic that exists now. The effects persist
    /// the group when its state changed: answer only once they are durable.
    pub fn consumer_heartbeat(
        &mut self,
        req: ConsumerHeartbeat,
        topics: &[TopicInfo],
        now: i64,
    ) -> (Result<ConsumerHeartbeatResponse>, Vec<Effect>) {
        let group_id = req.group_id.clone();
        let result = self.consumer_heartbeat_inner(req, topics, now);
        self.persist_consumer_group(&group_id);
        (result, std::mem::take(&mut self.effects))
    }

    /// Appends the group's record if it changed since last persisted.
    pub(crate) fn persist_consumer_group(&mut self, group_id: &str) {
        let Some(g) = self.consumer(group_id) else {
            return;
        };
        if !g.dirty {
            return;
        }
        g.dirty = false;
        let value = g.encode();
        self.persist(
            group_id,
            RecordKey::ConsumerGroup {
                group: group_id.to_string(),
            },
            Some(value),
        );
    }

    fn consumer_heartbeat_inner(
        &mut self,
        req: ConsumerHeartbeat,
        topics: &[TopicInfo],
        now: i64,
    ) -> Result<ConsumerHeartbeatResponse> {
        self.check_loaded()?;
        if req.group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        self.check_owner(&req.group_id)?;
        if let Some(a) = &req.server_assignor {
            if !self.config.consumer_assignors.contains(a) {
                return Err(GroupError::UnsupportedAssignor(a.clone()));
            }
        }
        if req.member_epoch == 0 {
            if req.subscribed_topic_names.is_none() {
                return Err(GroupError::InvalidRequest(
                    "SubscribedTopicNames must be set in the first heartbeat".into(),
                ));
            }
            if req.rebalance_timeout_ms < 0 {
                return Err(GroupError::InvalidRequest(
                    "RebalanceTimeoutMs must be set in the first heartbeat".into(),
                ));
            }
        }
        let default_assignor = self
            .config
            .consumer_assignors
            .first()
            .cloned()
            .unwrap_or_else(|| "uniform".into());
        match self.groups.get_mut(&req.group_id) {
            None => {
                if req.member_epoch != 0 {
                    return Err(GroupError::UnknownMemberId);
                }
                self.groups.insert(
                    req.group_id.clone(),
                    Group {
                        kind: GroupKind::Consumer(ConsumerGroup::new(now, default_assignor)),
                        offsets: BTreeMap::new(),
                        pending_txn_offsets: BTreeMap::new(),
                    },
                );
            }
            Some(g) => {
                if let GroupKind::Classic(c) = &g.kind {
                    if !c.members.is_empty() || !c.pending_members.is_empty() {
                        return Err(GroupError::GroupIdInUseByOtherProtocol(req.group_id));
                    }
                    if req.member_epoch != 0 {
                        return Err(GroupError::UnknownMemberId);
                    }
                    g.kind = GroupKind::Consumer(ConsumerGroup::new(now, default_assignor));
                }
            }
        }
        let interval = self.config.consumer_heartbeat_interval_ms;
        let g = self.consumer(&req.group_id).expect("consumer group");
        if req.member_epoch < 0 {
            return Ok(leave(g, req, topics, now, interval));
        }
        let mut member_id = req.member_id.clone();
        let mut joined = false;
        let mut took_over = false;
        if req.member_epoch == 0 {
            if member_id.is_empty() {
                member_id = new_member_id(&req.client_id);
            }
            joined = true;
            let mut inherited: Option<ConsumerMember> = None;
            if let Some(i) = &req.group_instance_id {
                if let Some(old_id) = g.static_members.get(i).cloned() {
                    // KIP-848 static membership: the returning instance takes over the old
                    // member's assignment and epoch, with no rebalance. Kafka refuses this
                    // (UNRELEASED_INSTANCE_ID) until the old member left or timed out, so a
                    // static member restarted after kill -9 cannot come back for a whole
                    // session timeout; like the classic protocol (KIP-345) we let the new
                    // instance in and fence the old member id instead.
                    let old = g.members.remove(&old_id).expect("static member");
                    if !old.left_temporarily && old_id != member_id {
                        if g.fenced_instances.len() >= 10_000 {
                            g.fenced_instances.clear();
                        }
                        g.fenced_instances.insert(old_id.clone(), i.clone());
                    }
                    if let Some(t) = g.target.remove(&old_id) {
                        g.target.insert(member_id.clone(), t);
                    }
                    inherited = Some(old);
                }
            }
            took_over = inherited.is_some();
            let m = match inherited {
                Some(mut old) => {
                    g.dirty = true;
                    old.member_id = member_id.clone();
                    old.left_temporarily = false;
                    old.assignment_changed = true;
                    old
                }
                None => {
                    // A member rejoining with epoch 0 starts over: what it had is released.
                    g.remove_member(&member_id);
                    ConsumerMember {
                        member_id: member_id.clone(),
                        group_instance_id: req.group_instance_id.clone(),
                        rack_id: req.rack_id.clone(),
                        client_id: req.client_id.clone(),
                        client_host: req.client_host.clone(),
                        member_epoch: 0,
                        previous_member_epoch: -1,
                        subscribed: Vec::new(),
                        server_assignor: None,
                        rebalance_timeout_ms: req.rebalance_timeout_ms,
                        assigned: Assignment::new(),
                        pending_revocation: Assignment::new(),
                        revocation_deadline_ms: None,
                        last_heartbeat_ms: now,
                        left_temporarily: false,
                        assignment_changed: true,
                    }
                }
            };
            if let Some(i) = &req.group_instance_id {
                g.static_members.insert(i.clone(), member_id.clone());
            }
            g.members.insert(member_id.clone(), m);
        } else {
            let Some(m) = g.members.get(&member_id) else {
                if let Some(instance) = g.fenced_instances.get(&member_id) {
                    return Err(GroupError::FencedInstanceId(instance.clone()));
                }
                return Err(GroupError::UnknownMemberId);
            };
            if req.member_epoch != m.member_epoch {
                let owned_ok = req
                    .owned
                    .as_ref()
                    .is_some_and(|o| minus(&from_wire(o), &m.assigned).is_empty());
                // A lost response: the member is one epoch behind and owns nothing it
                // should not; it gets the current state again.
                if !(req.member_epoch == m.previous_member_epoch && owned_ok) {
                    return Err(GroupError::FencedMemberEpoch {
                        got: req.member_epoch,
                        current: m.member_epoch,
                    });
                }
            }
        }
        // Update what the member told us.
        // A static member taking over its old place changes nothing by itself.
        let mut changed = joined && !took_over;
        {
            let m = g.members.get_mut(&member_id).expect("member");
            m.last_heartbeat_ms = now;
            if let Some(subscribed) = &req.subscribed_topic_names {
                let mut s = subscribed.clone();
                s.sort();
                s.dedup();
                if s != m.subscribed {
                    m.subscribed = s;
                    changed = true;
                }
            }
            if req.server_assignor.is_some() && req.server_assignor != m.server_assignor {
                m.server_assignor = req.server_assignor.clone();
                changed = true;
            }
            if req.rebalance_timeout_ms >= 0 {
                m.rebalance_timeout_ms = req.rebalance_timeout_ms;
            }
            if req.rack_id.is_some() {
                m.rack_id = req.rack_id.clone();
            }
            if joined {
                m.client_id = req.client_id.clone();
                m.client_host = req.client_host.clone();
            }
        }
        if let Some(a) = g.members.values().find_map(|m| m.server_assignor.clone()) {
            if a != g.assignor {
                g.assignor = a;
                changed = true;
            }
        }
        if changed || g.subscription_metadata(topics) != g.subscription_metadata {
            g.recompute_target(topics);
        }
        let owned = req.owned.as_ref().map(|o| from_wire(o));
        g.reconcile(&member_id, owned.as_ref(), now);
        let m = g.members.get_mut(&member_id).expect("member");
        let differs = owned.as_ref().is_some_and(|o| *o != m.assigned);
        let send = joined || m.assignment_changed || differs;
        m.assignment_changed = false;
        Ok(ConsumerHeartbeatResponse {
            member_id,
            member_epoch: m.member_epoch,
            heartbeat_interval_ms: interval,
            assignment: send.then(|| to_wire(&m.assigned)),
        })
    }

    pub(crate) fn tick_consumer(&mut self, group_id: &str, now: i64) {
        let session = self.config.consumer_session_timeout_ms as i64;
        let Some(g) = self.consumer(group_id) else {
            return;
        };
        let expired: Vec<String> = g
            .members
            .values()
            .filter(|m| {
                now >= m.last_heartbeat_ms + session
                    || m.revocation_deadline_ms.is_some_and(|d| now >= d)
            })
            .map(|m| m.member_id.clone())
            .collect();
        if expired.is_empty() {
            return;
        }
        for id in &expired {
            g.remove_member(id);
        }
        // Recompute from the topics as last seen; the next heartbeat refreshes them.
        let topics: Vec<TopicInfo> = g
            .subscription_metadata
            .iter()
            .map(|(name, (id, partitions))| TopicInfo {
                name: name.clone(),
                id: *id,
                partitions: *partitions,
            })
            .collect();
        g.recompute_target(&topics);
        if g.members.is_empty() {
            g.state_timestamp_ms = now;
        }
        self.persist_consumer_group(group_id);
    }

    pub fn consumer_describe(&self, group_id: &str) -> Result<Option<ConsumerDescription>> {
        self.check_loaded()?;
        self.check_owner(group_id)?;
        let Some(Group {
            kind: GroupKind::Consumer(g),
            ..
        }) = self.groups.get(group_id)
        else {
            return Ok(None);
        };
        Ok(Some(ConsumerDescription {
            group_id: group_id.to_string(),
            state: g.state_name(),
            group_epoch: g.group_epoch,
            assignment_epoch: g.assignment_epoch,
            assignor_name: g.assignor.clone(),
            members: g
                .members
                .values()
                .map(|m| ConsumerMemberDescription {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    rack_id: m.rack_id.clone(),
                    member_epoch: m.member_epoch,
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    subscribed_topic_names: m.subscribed.clone(),
                    assignment: m.assigned.clone(),
                    target_assignment: g.target.get(&m.member_id).cloned().unwrap_or_default(),
                })
                .collect(),
        }))
    }

    /// True when `group_id` is a KIP-848 group (for DescribeGroups/ConsumerGroupDescribe).
    pub fn is_consumer_group(&self, group_id: &str) -> bool {
        matches!(
            self.groups.get(group_id),
            Some(Group {
                kind: GroupKind::Consumer(_),
                ..
            })
        )
    }
}

fn leave(
    g: &mut ConsumerGroup,
    req: ConsumerHeartbeat,
    topics: &[TopicInfo],
    now: i64,
    interval: i32,
) -> ConsumerHeartbeatResponse {
    let member_id = match (&req.group_instance_id, req.member_id.is_empty()) {
        (Some(i), true) => g.static_members.get(i).cloned().unwrap_or_default(),
        _ => req.member_id.clone(),
    };
    if req.member_epoch == -2 && req.group_instance_id.is_some() {
        // A static member leaving for a while: keep its place until its session times out.
        if let Some(m) = g.members.get_mut(&member_id) {
            m.left_temporarily = true;
            m.last_heartbeat_ms = now;
            g.dirty = true;
        }
    } else if g.members.contains_key(&member_id) {
        g.remove_member(&member_id);
        g.recompute_target(topics);
        if g.members.is_empty() {
            g.state_timestamp_ms = now;
        }
    }
    ConsumerHeartbeatResponse {
        member_id,
        member_epoch: req.member_epoch,
        heartbeat_interval_ms: interval,
        assignment: None,
    }
}
