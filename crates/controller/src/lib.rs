//! The active controller's decisions, as a pure state machine: requests and time in, metadata
//! records to commit out. No I/O, no clock, no sockets; the broker runs it on the node that
//! leads the metadata quorum and commits what it returns through the quorum.
//!
//! - **Broker liveness** (KRaft's BrokerHeartbeatManager): each registered broker heartbeats
//!   (every 2 s); one silent for `broker.session.timeout.ms` (9 s) is fenced. Liveness is kept
//!   in memory only: a controller that becomes active gives every broker a fresh session (a
//!   grace period), as Kafka does. Stale brokers are fenced one per tick.
//! - **Fencing a broker** removes it from every ISR and moves its leaderships to another
//!   in-sync, live replica. The last member of an ISR stays in it (the partition goes offline,
//!   leader -1, rather than electing a replica that may lack acknowledged records: no unclean
//!   election) and leads again when it comes back.
//! - **Elections**: a partition without a leader gets the first live member of its ISR.
//! - **AlterPartition** (KIP-497/841/903): the partition leader asks for a new ISR naming
//!   the leader and partition epochs it saw; the change is refused if either moved, if the ISR
//!   leaves the replicas or drops the leader, or if it adds a fenced / shutting-down broker.
//!   The committed record carries the partition epoch it expects, so a change decided on an
//!   older view is refused again when applied.
//! - **Controlled shutdown**: a stopping broker's leaderships move to other in-sync replicas
//!   and it leaves every ISR it is not the last member of, before it stops; it is then fenced.
//! - **Placement** (`placement`): new replicas on rack-alternating brokers.

pub mod placement;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use strata_cluster::{MetadataImage, MetadataRecord, PartitionImage};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControllerConfig {
    /// `broker.session.timeout.ms`.
    pub session_timeout_ms: i64,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            session_timeout_ms: 9_000,
        }
    }
}

/// What brokers ask the controller (sent to the quorum leader's controller listener).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControllerRequest {
    Heartbeat {
        node_id: i32,
        broker_epoch: i64,
    },
    AlterPartition {
        node_id: i32,
        broker_epoch: i64,
        topic_id: Uuid,
        partition: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        new_isr: Vec<i32>,
    },
    ControlledShutdown {
        node_id: i32,
        broker_epoch: i64,
    },
    /// ElectLeaders: preferred (the first replica) or, for leaderless partitions, any live
    /// in-sync replica; `partitions` None means all.
    ElectLeaders {
        preferred: bool,
        partitions: Option<Vec<(Uuid, i32)>>,
    },
    /// AlterPartitionReassignments for one partition (`target` None: cancel).
    Reassign {
        topic_id: Uuid,
        partition: i32,
        target: Option<Vec<i32>>,
    },
}

/// What an election did for one partition (ElectLeaders' per-partition result).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Election {
    Elected(i32),
    /// The wanted leader already leads.
    NotNeeded,
    /// The wanted leader is down or not in sync (PREFERRED_LEADER_NOT_AVAILABLE /
    /// ELIGIBLE_LEADERS_NOT_AVAILABLE).
    NotAvailable,
    UnknownPartition,
}

/// Why the controller refused a request (the broker maps each to Kafka's error code).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ControllerError {
    #[error("this node is not the active controller")]
    NotController,
    #[error("broker {0} is not registered")]
    UnknownBroker(i32),
    #[error("broker {node_id} epoch {got} is stale (current {current})")]
    StaleBrokerEpoch {
        node_id: i32,
        got: i64,
        current: i64,
    },
    #[error("unknown topic or partition")]
    UnknownTopicOrPartition,
    #[error("broker {0} does not lead the partition")]
    NotLeader(i32),
    #[error("leader epoch {got} is fenced (current {current})")]
    FencedLeaderEpoch { got: i32, current: i32 },
    #[error("partition epoch {got} is stale (current {current})")]
    InvalidUpdateVersion { got: i32, current: i32 },
    #[error("the new ISR {0:?} is not valid: {1}")]
    InvalidIsr(Vec<i32>, String),
    #[error("replica {0} cannot join the ISR (fenced, shutting down or unknown)")]
    IneligibleReplica(i32),
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    #[error("no reassignment in progress")]
    NoReassignmentInProgress,
}

/// The controller's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControllerReply {
    Ok,
    /// Controlled shutdown: how many partitions the broker still leads (0: it may stop).
    ShutdownProgress {
        still_leading: usize,
    },
    Elections(Vec<(Uuid, i32, Election)>),
    Refused(ControllerError),
}

#[derive(Debug, Clone, Copy)]
struct Session {
    broker_epoch: i64,
    last_heartbeat_ms: i64,
}

/// A compare-and-set change of one partition (leader and/or ISR), decided on `epoch`.
fn partition_change(
    topic_id: Uuid,
    partition: i32,
    epoch: i32,
    leader: Option<i32>,
    isr: Option<Vec<i32>>,
) -> MetadataRecord {
    MetadataRecord::PartitionChange {
        topic_id,
        partition,
        leader,
        isr,
        replicas: None,
        expected_partition_epoch: Some(epoch),
    }
}

/// What a partition leader makes of the answer to its AlterPartition (`None`: no answer —
/// not delivered, timed out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsrChangeOutcome {
    /// Committed: the leader applies the new ISR at once (the metadata brings it too).
    Committed,
    /// Refused with nothing committed, on the partition state the leader knows: the leader
    /// asks to confirm its ISR without the refused addition (which counts until then).
    Refused,
    /// Not known, or refused because the partition moved on (a newer partition or leader
    /// epoch: maybe this very change, sent before and answered too late). A pending
    /// addition keeps counting for the high watermark — it may be in the committed ISR, and
    /// a leader that stopped counting it would acknowledge writes that replica lacks — and
    /// the leader sends the same request again until an answer or the metadata settles it.
    Unknown,
}

/// Classifies an AlterPartition answer (see [`IsrChangeOutcome`]). Only errors the
/// controller finds after its compare-and-set check passed, or that no later state can
/// change, are refusals — and even then another copy of the request may still commit, so a
/// refused addition keeps counting until a change with a newer partition epoch settles it
/// (`strata_replication::PartitionReplicas::refuse_pending`).
pub fn isr_change_outcome(reply: Option<&ControllerReply>) -> IsrChangeOutcome {
    match reply {
        Some(ControllerReply::Ok) => IsrChangeOutcome::Committed,
        Some(ControllerReply::Refused(
            ControllerError::IneligibleReplica(_)
            | ControllerError::InvalidIsr(..)
            | ControllerError::UnknownTopicOrPartition,
        )) => IsrChangeOutcome::Refused,
        _ => IsrChangeOutcome::Unknown,
    }
}

/// The active controller's in-memory state.
#[derive(Debug, Default)]
pub struct Controller {
    config: ControllerConfig,
    sessions: BTreeMap<i32, Session>,
    /// Brokers in controlled shutdown, with the broker epoch that asked (a registration
    /// after it, a restart, ends it).
    shutting_down: BTreeMap<i32, i64>,
}

impl Controller {
    pub fn new(config: ControllerConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// This node became the active controller at `now`: every registered broker starts a
    /// fresh session.
    pub fn activate(&mut self, image: &MetadataImage, now_ms: i64) {
        self.sessions.clear();
        self.shutting_down.clear();
        for b in image.brokers() {
            self.sessions.insert(
                b.node_id,
                Session {
                    broker_epoch: b.broker_epoch,
                    last_heartbeat_ms: now_ms,
                },
            );
        }
    }

    fn check_epoch(
        image: &MetadataImage,
        node_id: i32,
        broker_epoch: i64,
    ) -> Result<(), ControllerError> {
        let b = image
            .broker(node_id)
            .ok_or(ControllerError::UnknownBroker(node_id))?;
        if b.broker_epoch != broker_epoch {
            return Err(ControllerError::StaleBrokerEpoch {
                node_id,
                got: broker_epoch,
                current: b.broker_epoch,
            });
        }
        Ok(())
    }

    /// Decides one request as the active controller: the records to commit and the reply
    /// to send once they are committed.
    pub fn handle(
        &mut self,
        image: &MetadataImage,
        request: &ControllerRequest,
        now_ms: i64,
    ) -> Result<(Vec<MetadataRecord>, ControllerReply), ControllerError> {
        match request {
            ControllerRequest::Heartbeat {
                node_id,
                broker_epoch,
            } => self
                .heartbeat(image, *node_id, *broker_epoch, now_ms)
                .map(|()| {
                    // A broker fenced for silence that is back: it may serve again.
                    let fenced = image.broker(*node_id).is_some_and(|b| b.fenced);
                    let records = if fenced {
                        vec![MetadataRecord::UnfenceBroker {
                            node_id: *node_id,
                            broker_epoch: *broker_epoch,
                        }]
                    } else {
                        Vec::new()
                    };
                    (records, ControllerReply::Ok)
                }),
            ControllerRequest::AlterPartition {
                node_id,
                broker_epoch,
                topic_id,
                partition,
                leader_epoch,
                partition_epoch,
                new_isr,
            } => self
                .alter_partition(
                    image,
                    *node_id,
                    *broker_epoch,
                    *topic_id,
                    *partition,
                    *leader_epoch,
                    *partition_epoch,
                    new_isr,
                )
                .map(|records| (records, ControllerReply::Ok)),
            ControllerRequest::ControlledShutdown {
                node_id,
                broker_epoch,
            } => self
                .controlled_shutdown(image, *node_id, *broker_epoch)
                .map(|(records, still_leading)| {
                    (records, ControllerReply::ShutdownProgress { still_leading })
                }),
            ControllerRequest::Reassign {
                topic_id,
                partition,
                target,
            } => self
                .reassign(image, *topic_id, *partition, target.as_deref())
                .map(|records| (records, ControllerReply::Ok)),
            ControllerRequest::ElectLeaders {
                preferred,
                partitions,
            } => {
                let (records, results) = self.elect(image, *preferred, partitions.as_deref());
                Ok((records, ControllerReply::Elections(results)))
            }
        }
    }

    /// A broker is alive at `now`.
    pub fn heartbeat(
        &mut self,
        image: &MetadataImage,
        node_id: i32,
        broker_epoch: i64,
        now_ms: i64,
    ) -> Result<(), ControllerError> {
        Self::check_epoch(image, node_id, broker_epoch)?;
        self.sessions.insert(
            node_id,
            Session {
                broker_epoch,
                last_heartbeat_ms: now_ms,
            },
        );
        Ok(())
    }

    /// Whether `node` may lead or join an ISR: registered, unfenced, not shutting down.
    fn is_live(&self, image: &MetadataImage, node: i32) -> bool {
        image
            .broker(node)
            .is_some_and(|b| !b.fenced && self.shutting_down.get(&node) != Some(&b.broker_epoch))
    }

    /// What time alone decides: fence one broker whose session expired, and give leaderless
    /// partitions a leader from their ISR.
    pub fn tick(&mut self, image: &MetadataImage, now_ms: i64) -> Vec<MetadataRecord> {
        for b in image.live_brokers() {
            let session = self.sessions.entry(b.node_id).or_insert(Session {
                broker_epoch: b.broker_epoch,
                last_heartbeat_ms: now_ms,
            });
            if session.broker_epoch != b.broker_epoch {
                // Registered again since: a new session.
                *session = Session {
                    broker_epoch: b.broker_epoch,
                    last_heartbeat_ms: now_ms,
                };
            }
            if now_ms - session.last_heartbeat_ms > self.config.session_timeout_ms {
                let mut records = vec![MetadataRecord::FenceBroker {
                    node_id: b.node_id,
                    broker_epoch: b.broker_epoch,
                }];
                records.extend(self.leave_partitions(image, b.node_id));
                return records;
            }
        }
        let mut records = Vec::new();
        for t in image.topics() {
            for (&partition, p) in &t.partitions {
                if p.is_reassigning() {
                    // Done once every target replica is in sync; the leader moves into the
                    // target first if it is being removed.
                    let target = p.target_replicas();
                    if target.iter().all(|r| p.isr.contains(r)) {
                        let leader = if target.contains(&p.leader) {
                            None
                        } else {
                            target.iter().copied().find(|&r| self.is_live(image, r))
                        };
                        if target.contains(&p.leader) || leader.is_some() {
                            records.push(MetadataRecord::ReassignmentDone {
                                topic_id: t.topic_id,
                                partition,
                                leader,
                                expected_partition_epoch: p.partition_epoch,
                            });
                            continue;
                        }
                    }
                }
                if p.leader >= 0 {
                    continue;
                }
                if let Some((leader, isr)) = self.leader_for_leaderless(image, &t.configs, p) {
                    records.push(partition_change(
                        t.topic_id,
                        partition,
                        p.partition_epoch,
                        Some(leader),
                        isr,
                    ));
                }
            }
        }
        records
    }

    /// A leader for a partition without one, in KIP-966's order: a live in-sync replica;
    /// else a live eligible leader replica (it holds every committed record; the ISR becomes
    /// it alone); else, only when `unclean.leader.election.enable` is set for the topic (or
    /// cluster-wide), any live replica (records only the others had are lost). Returns the
    /// leader and the new ISR when it changes.
    fn leader_for_leaderless(
        &self,
        image: &MetadataImage,
        topic_configs: &BTreeMap<String, String>,
        p: &PartitionImage,
    ) -> Option<(i32, Option<Vec<i32>>)> {
        if let Some(&leader) = p.isr.iter().find(|&&r| self.is_live(image, r)) {
            return Some((leader, None));
        }
        if let Some(&leader) = p.elr.iter().find(|&&r| self.is_live(image, r)) {
            return Some((leader, Some(vec![leader])));
        }
        let unclean = topic_configs
            .get("unclean.leader.election.enable")
            .or_else(|| {
                image
                    .all_broker_configs()
                    .get("")
                    .and_then(|c| c.get("unclean.leader.election.enable"))
            })
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        if unclean {
            if let Some(&leader) = p.replicas.iter().find(|&&r| self.is_live(image, r)) {
                return Some((leader, Some(vec![leader])));
            }
        }
        None
    }

    /// `node` leaves every ISR it is not the last member of, and its leaderships move to the
    /// first other live in-sync replica (or to none, -1, when it was the last one in sync).
    fn leave_partitions(&self, image: &MetadataImage, node: i32) -> Vec<MetadataRecord> {
        let mut records = Vec::new();
        for t in image.topics() {
            for (&partition, p) in &t.partitions {
                if let Some(change) = self.without(image, node, p) {
                    let (leader, isr) = change;
                    records.push(partition_change(
                        t.topic_id,
                        partition,
                        p.partition_epoch,
                        leader,
                        isr,
                    ));
                }
            }
        }
        records
    }

    /// The change (new leader, new ISR) that takes `node` out of partition `p`, if any.
    #[allow(clippy::type_complexity)]
    fn without(
        &self,
        image: &MetadataImage,
        node: i32,
        p: &PartitionImage,
    ) -> Option<(Option<i32>, Option<Vec<i32>>)> {
        if !p.isr.contains(&node) && p.leader != node {
            return None;
        }
        let others: Vec<i32> = p.isr.iter().copied().filter(|&r| r != node).collect();
        let leader = if p.leader == node {
            Some(
                others
                    .iter()
                    .copied()
                    .find(|&r| self.is_live(image, r))
                    .unwrap_or(-1),
            )
        } else {
            None
        };
        let isr = if others.is_empty() {
            None
        } else {
            Some(others)
        };
        if leader.is_none() && isr.is_none() {
            return None;
        }
        Some((leader, isr))
    }

    /// Elections for `partitions` (all when None): `preferred` moves leadership to the first
    /// replica when it is live and in sync; otherwise only leaderless partitions get the first
    /// live in-sync replica (no unclean election).
    pub fn elect(
        &self,
        image: &MetadataImage,
        preferred: bool,
        partitions: Option<&[(Uuid, i32)]>,
    ) -> (Vec<MetadataRecord>, Vec<(Uuid, i32, Election)>) {
        let wanted: Vec<(Uuid, i32)> = match partitions {
            Some(p) => p.to_vec(),
            None => image
                .topics()
                .flat_map(|t| t.partitions.keys().map(move |&p| (t.topic_id, p)))
                .collect(),
        };
        let mut records = Vec::new();
        let mut results = Vec::with_capacity(wanted.len());
        for (topic_id, partition) in wanted {
            let Some((configs, p)) = image
                .topic_by_id(&topic_id)
                .and_then(|t| t.partitions.get(&partition).map(|p| (&t.configs, p)))
            else {
                results.push((topic_id, partition, Election::UnknownPartition));
                continue;
            };
            let (target, isr) = if preferred {
                (p.replicas.first().copied(), None)
            } else if p.leader >= 0 {
                (Some(p.leader), None)
            } else {
                match self.leader_for_leaderless(image, configs, p) {
                    Some((leader, isr)) => (Some(leader), isr),
                    None => (None, None),
                }
            };
            let outcome = match target {
                Some(t) if t == p.leader => Election::NotNeeded,
                Some(t)
                    if self.is_live(image, t)
                        && (p.isr.contains(&t) || isr.as_ref().is_some_and(|i| i.contains(&t))) =>
                {
                    records.push(partition_change(
                        topic_id,
                        partition,
                        p.partition_epoch,
                        Some(t),
                        isr,
                    ));
                    Election::Elected(t)
                }
                _ => Election::NotAvailable,
            };
            results.push((topic_id, partition, outcome));
        }
        (records, results)
    }

    /// Starts (or with `target` None cancels) a reassignment of one partition's replicas.
    pub fn reassign(
        &self,
        image: &MetadataImage,
        topic_id: Uuid,
        partition: i32,
        target: Option<&[i32]>,
    ) -> Result<Vec<MetadataRecord>, ControllerError> {
        let p = image
            .topic_by_id(&topic_id)
            .and_then(|t| t.partitions.get(&partition))
            .ok_or(ControllerError::UnknownTopicOrPartition)?;
        let leader = match target {
            Some(t) => {
                let mut seen = BTreeSet::new();
                if t.is_empty() {
                    return Err(ControllerError::InvalidReplicaAssignment(
                        "The replica list must not be empty.".into(),
                    ));
                }
                for r in t {
                    if !seen.insert(*r) {
                        return Err(ControllerError::InvalidReplicaAssignment(format!(
                            "Replica {r} appears more than once."
                        )));
                    }
                    if image.broker(*r).is_none() {
                        return Err(ControllerError::InvalidReplicaAssignment(format!(
                            "Replica {r} is not a registered broker."
                        )));
                    }
                }
                None
            }
            None => {
                if !p.is_reassigning() {
                    return Err(ControllerError::NoReassignmentInProgress);
                }
                // The original replicas stay; a leader among the added ones hands over.
                if p.adding_replicas.contains(&p.leader) {
                    let back = p
                        .isr
                        .iter()
                        .copied()
                        .find(|r| !p.adding_replicas.contains(r) && self.is_live(image, *r));
                    Some(back.unwrap_or(-1))
                } else {
                    None
                }
            }
        };
        Ok(vec![MetadataRecord::Reassign {
            topic_id,
            partition,
            target: target.map(|t| t.to_vec()),
            leader,
            expected_partition_epoch: p.partition_epoch,
        }])
    }

    /// A partition leader asks for a new ISR (shrink or expand).
    #[allow(clippy::too_many_arguments)]
    pub fn alter_partition(
        &self,
        image: &MetadataImage,
        node_id: i32,
        broker_epoch: i64,
        topic_id: Uuid,
        partition: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        new_isr: &[i32],
    ) -> Result<Vec<MetadataRecord>, ControllerError> {
        Self::check_epoch(image, node_id, broker_epoch)?;
        let p = image
            .topic_by_id(&topic_id)
            .and_then(|t| t.partitions.get(&partition))
            .ok_or(ControllerError::UnknownTopicOrPartition)?;
        if leader_epoch != p.leader_epoch {
            return Err(ControllerError::FencedLeaderEpoch {
                got: leader_epoch,
                current: p.leader_epoch,
            });
        }
        if p.leader != node_id {
            return Err(ControllerError::NotLeader(node_id));
        }
        if partition_epoch != p.partition_epoch {
            return Err(ControllerError::InvalidUpdateVersion {
                got: partition_epoch,
                current: p.partition_epoch,
            });
        }
        let mut seen = BTreeSet::new();
        for r in new_isr {
            if !seen.insert(*r) {
                return Err(ControllerError::InvalidIsr(
                    new_isr.to_vec(),
                    format!("{r} appears twice"),
                ));
            }
            if !p.replicas.contains(r) {
                return Err(ControllerError::InvalidIsr(
                    new_isr.to_vec(),
                    format!("{r} is not a replica"),
                ));
            }
        }
        if !new_isr.contains(&node_id) {
            return Err(ControllerError::InvalidIsr(
                new_isr.to_vec(),
                "the leader must stay in sync".into(),
            ));
        }
        if let Some(&joining) = new_isr
            .iter()
            .find(|r| !p.isr.contains(r) && !self.is_live(image, **r))
        {
            return Err(ControllerError::IneligibleReplica(joining));
        }
        // Even an unchanged ISR is committed: its new partition epoch fences every older
        // copy of a request decided on this one (a leader confirms its ISR this way after a
        // refused addition).
        Ok(vec![partition_change(
            topic_id,
            partition,
            partition_epoch,
            None,
            Some(new_isr.to_vec()),
        )])
    }

    /// A broker is stopping: move its leaderships away and take it out of the ISRs (except
    /// where it is the last in-sync replica, which cannot move). Returns the records and how
    /// many leaderships they move (0: nothing left to move, the broker may stop).
    pub fn controlled_shutdown(
        &mut self,
        image: &MetadataImage,
        node_id: i32,
        broker_epoch: i64,
    ) -> Result<(Vec<MetadataRecord>, usize), ControllerError> {
        Self::check_epoch(image, node_id, broker_epoch)?;
        self.shutting_down.insert(node_id, broker_epoch);
        let mut records = Vec::new();
        let mut still_leading = 0;
        for t in image.topics() {
            for (&partition, p) in &t.partitions {
                let Some((leader, isr)) = self.without(image, node_id, p) else {
                    continue;
                };
                if leader == Some(-1) {
                    // The last in-sync replica: nobody to hand it to; it leads until it stops
                    // (and the partition is offline until it is back). Not waited for.
                    continue;
                }
                if leader.is_some() {
                    still_leading += 1;
                }
                records.push(partition_change(
                    t.topic_id,
                    partition,
                    p.partition_epoch,
                    leader,
                    isr,
                ));
            }
        }
        Ok((records, still_leading))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap as Map;

    fn apply(image: &mut MetadataImage, records: &[MetadataRecord]) {
        for r in records {
            image.apply(r).unwrap();
        }
    }

    /// Three registered, unfenced brokers and one topic with `isr` == replicas [1, 2, 3]
    /// led by 1.
    fn cluster() -> (MetadataImage, Uuid) {
        let mut image = MetadataImage::default();
        for node in 1..=3 {
            apply(
                &mut image,
                &[
                    MetadataRecord::RegisterBroker {
                        directory_id: None,
                        node_id: node,
                        incarnation_id: Uuid::from_u128(node as u128),
                        host: "h".into(),
                        port: 9000 + node,
                        rack: None,
                        endpoints: Vec::new(),
                    },
                    MetadataRecord::UnfenceBroker {
                        node_id: node,
                        broker_epoch: 0,
                    },
                ],
            );
        }
        let topic_id = Uuid::from_u128(42);
        apply(
            &mut image,
            &[
                MetadataRecord::Topic {
                    name: "t".into(),
                    topic_id,
                    configs: Map::new(),
                },
                MetadataRecord::Partition {
                    topic_id,
                    partition: 0,
                    leader: 1,
                    leader_epoch: 0,
                    replicas: vec![1, 2, 3],
                    isr: vec![1, 2, 3],
                },
            ],
        );
        (image, topic_id)
    }

    fn part(image: &MetadataImage) -> PartitionImage {
        image.topic("t").unwrap().partitions[&0].clone()
    }

    /// A leader that restarts resigns its leaderships (`ResignLeaderships`, tested in the
    /// cluster crate); the last in-sync replica's partition then waits for an election,
    /// which gives it back in a new epoch.
    #[test]
    fn a_resigned_last_in_sync_leader_is_elected_again_in_a_new_epoch() {
        let (mut image, topic_id) = cluster();
        apply(
            &mut image,
            &[partition_change(topic_id, 0, 0, None, Some(vec![1]))],
        );
        apply(
            &mut image,
            &[MetadataRecord::ResignLeaderships { node_id: 1 }],
        );
        let p = part(&image);
        assert_eq!((p.leader, p.leader_epoch), (-1, 1));
        let mut c = Controller::new(ControllerConfig::default());
        c.activate(&image, 0);
        let elected = c.tick(&image, 1);
        apply(&mut image, &elected);
        let p = part(&image);
        assert_eq!((p.leader, p.leader_epoch), (1, 2));
    }

    /// An AlterPartition answer that proves nothing (none, or a refusal because the
    /// partition moved on) leaves a pending ISR addition counting.
    #[test]
    fn only_definite_refusals_settle_an_isr_change() {
        use IsrChangeOutcome::*;
        let refused = |e| Some(ControllerReply::Refused(e));
        assert_eq!(isr_change_outcome(Some(&ControllerReply::Ok)), Committed);
        assert_eq!(isr_change_outcome(None), Unknown);
        for e in [
            ControllerError::InvalidUpdateVersion { got: 1, current: 2 },
            ControllerError::FencedLeaderEpoch { got: 1, current: 2 },
            ControllerError::NotLeader(1),
            ControllerError::NotController,
        ] {
            assert_eq!(
                isr_change_outcome(refused(e.clone()).as_ref()),
                Unknown,
                "{e}"
            );
        }
        for e in [
            ControllerError::IneligibleReplica(3),
            ControllerError::InvalidIsr(vec![], "x".into()),
            ControllerError::UnknownTopicOrPartition,
        ] {
            assert_eq!(
                isr_change_outcome(refused(e.clone()).as_ref()),
                Refused,
                "{e}"
            );
        }
    }

    #[test]
    fn a_silent_leader_is_fenced_and_its_leadership_moves_to_an_in_sync_replica() {
        let (mut image, _) = cluster();
        let mut c = Controller::new(ControllerConfig::default());
        c.activate(&image, 0);
        for now in [2_000, 4_000, 6_000, 8_000, 9_000] {
            for node in [2, 3] {
                c.heartbeat(&image, node, 0, now).unwrap();
            }
            assert!(c.tick(&image, now).is_empty(), "nothing at {now}");
        }
        let records = c.tick(&image, 9_001);
        apply(&mut image, &records);
        assert!(image.broker(1).unwrap().fenced);
        let p = part(&image);
        assert_eq!(
            (p.leader, p.isr.clone(), p.leader_epoch),
            (2, vec![2, 3], 1)
        );
    }

    #[test]
    fn the_last_in_sync_replica_stays_in_the_isr_and_leads_again_when_back() {
        let (mut image, topic_id) = cluster();
        let mut c = Controller::new(ControllerConfig::default());
        c.activate(&image, 0);
        // 2 and 3 already left the ISR.
        let records = c
            .alter_partition(&image, 1, 0, topic_id, 0, 0, 0, &[1])
            .unwrap();
        apply(&mut image, &records);
        for now in [2_000, 4_000, 6_000, 8_000] {
            c.heartbeat(&image, 2, 0, now).unwrap();
            c.heartbeat(&image, 3, 0, now).unwrap();
        }
        c.heartbeat(&image, 2, 0, 10_000).unwrap();
        c.heartbeat(&image, 3, 0, 10_000).unwrap();
        let records = c.tick(&image, 10_000);
        apply(&mut image, &records);
        let p = part(&image);
        assert_eq!(
            (p.leader, p.isr.clone()),
            (-1, vec![1]),
            "offline, not unclean"
        );
        // No election while the only in-sync replica is away.
        assert!(c.tick(&image, 10_100).is_empty());
        // It registers again (a restart): elected.
        apply(
            &mut image,
            &[
                MetadataRecord::RegisterBroker {
                    directory_id: None,
                    node_id: 1,
                    incarnation_id: Uuid::from_u128(99),
                    host: "h".into(),
                    port: 9001,
                    rack: None,
                    endpoints: Vec::new(),
                },
                MetadataRecord::UnfenceBroker {
                    node_id: 1,
                    broker_epoch: 1,
                },
            ],
        );
        let records = c.tick(&image, 11_000);
        apply(&mut image, &records);
        assert_eq!(part(&image).leader, 1);
    }

    /// Broker 1 (the partition's last in-sync replica and leader) stops: what leave_partitions
    /// decides for it.
    fn fence_leader_one(image: &mut MetadataImage, topic_id: Uuid) {
        let epoch = part(image).partition_epoch;
        apply(
            image,
            &[
                MetadataRecord::FenceBroker {
                    node_id: 1,
                    broker_epoch: 0,
                },
                partition_change(topic_id, 0, epoch, Some(-1), None),
            ],
        );
    }

    fn set_topic_config(image: &mut MetadataImage, topic_id: Uuid, key: &str, value: &str) {
        apply(
            image,
            &[MetadataRecord::TopicConfig {
                topic_id,
                configs: Map::from([(key.to_string(), value.to_string())]),
            }],
        );
    }

    #[test]
    fn replicas_leaving_an_isr_below_min_isr_are_eligible_to_lead() {
        let (mut image, topic_id) = cluster();
        set_topic_config(&mut image, topic_id, "min.insync.replicas", "2");
        let mut c = Controller::new(ControllerConfig::default());
        c.activate(&image, 0);
        // 3 leaves; the ISR keeps two (min ISR): 3 is not eligible (it misses what follows).
        let records = c
            .alter_partition(&image, 1, 0, topic_id, 0, 0, 0, &[1, 2])
            .unwrap();
        apply(&mut image, &records);
        assert!(part(&image).elr.is_empty());
        // 2 leaves too: the ISR is below min ISR, the high watermark is frozen, and 2 holds
        // every committed record: eligible.
        let records = c
            .alter_partition(&image, 1, 0, topic_id, 0, 0, 1, &[1])
            .unwrap();
        apply(&mut image, &records);
        assert_eq!(part(&image).elr, vec![2]);
        // The last in-sync replica dies: offline for the ISR, but 2 may lead.
        fence_leader_one(&mut image, topic_id);
        assert_eq!(part(&image).leader, -1);
        let records = c.tick(&image, 100);
        apply(&mut image, &records);
        let p = part(&image);
        assert_eq!(
            (p.leader, p.isr.clone(), p.elr.clone()),
            (2, vec![2], vec![1])
        );
        // The ISR grows back to min ISR: nobody outside it is eligible any more.
        let records = c
            .alter_partition(
                &image,
                2,
                0,
                topic_id,
                0,
                p.leader_epoch,
                p.partition_epoch,
                &[2, 3],
            )
            .unwrap();
        apply(&mut image, &records);
        assert!(part(&image).elr.is_empty());
    }

    #[test]
    fn unclean_election_only_when_the_topic_allows_it() {
        let (mut image, topic_id) = cluster();
        let mut c = Controller::new(ControllerConfig::default());
        c.activate(&image, 0);
        let records = c
            .alter_partition(&image, 1, 0, topic_id, 0, 0, 0, &[1])
            .unwrap();
        apply(&mut image, &records);
        assert!(
            part(&image).elr.is_empty(),
            "min ISR 1: no eligible replicas"
        );
        fence_leader_one(&mut image, topic_id);
        assert!(
            c.tick(&image, 100).is_empty(),
            "no unclean election by default"
        );
        let (records, results) = c.elect(&image, false, Some(&[(topic_id, 0)]));
        assert!(records.is_empty());
        assert_eq!(results[0].2, Election::NotAvailable);
        set_topic_config(
            &mut image,
            topic_id,
            "unclean.leader.election.enable",
            "true",
        );
        let records = c.tick(&image, 200);
        apply(&mut image, &records);
        let p = part(&image);
        assert_eq!((p.leader, p.isr.clone()), (2, vec![2]));
        assert!(p.elr.is_empty());
    }

    #[test]
    fn alter_partition_checks_epochs_membership_and_eligibility() {
        let (mut image, topic_id) = cluster();
        let mut c = Controller::new(ControllerConfig::default());
        c.activate(&image, 0);
        let alter = |c: &Controller, image: &MetadataImage, node, le, pe, isr: &[i32]| {
            c.alter_partition(image, node, 0, topic_id, 0, le, pe, isr)
        };
        assert_eq!(
            alter(&c, &image, 2, 0, 0, &[2, 3]),
            Err(ControllerError::NotLeader(2))
        );
        assert!(matches!(
            alter(&c, &image, 1, 1, 0, &[1, 2]),
            Err(ControllerError::FencedLeaderEpoch { .. })
        ));
        assert!(matches!(
            alter(&c, &image, 1, 0, 7, &[1, 2]),
            Err(ControllerError::InvalidUpdateVersion { .. })
        ));
        assert!(matches!(
            alter(&c, &image, 1, 0, 0, &[2, 3]),
            Err(ControllerError::InvalidIsr(..))
        ));
        assert!(matches!(
            alter(&c, &image, 1, 0, 0, &[1, 4]),
            Err(ControllerError::InvalidIsr(..))
        ));
        // Shrink to [1, 2], then a stale second shrink decided on epoch 0 is refused.
        let shrink = alter(&c, &image, 1, 0, 0, &[1, 2]).unwrap();
        let stale = alter(&c, &image, 1, 0, 0, &[1]).unwrap();
        apply(&mut image, &shrink);
        assert!(image.apply(&stale[0]).is_err(), "compare-and-set in apply");
        assert_eq!(part(&image).isr, vec![1, 2]);
        // 3 is fenced: it cannot come back into the ISR (KIP-903).
        apply(
            &mut image,
            &[MetadataRecord::FenceBroker {
                node_id: 3,
                broker_epoch: 0,
            }],
        );
        assert_eq!(
            alter(&c, &image, 1, 0, 1, &[1, 2, 3]),
            Err(ControllerError::IneligibleReplica(3))
        );
    }

    #[test]
    fn controlled_shutdown_moves_leadership_before_the_broker_stops() {
        let (mut image, _) = cluster();
        let mut c = Controller::new(ControllerConfig::default());
        c.activate(&image, 0);
        let (records, moving) = c.controlled_shutdown(&image, 1, 0).unwrap();
        apply(&mut image, &records);
        assert_eq!(moving, 1);
        assert_eq!(
            c.controlled_shutdown(&image, 1, 0).unwrap(),
            (vec![], 0),
            "done"
        );
        let p = part(&image);
        assert_eq!((p.leader, p.isr.clone()), (2, vec![2, 3]));
        // The others do not elect it back while it shuts down, nor take it into the ISR.
        assert!(c.tick(&image, 100).is_empty());
        let topic_id = image.topic("t").unwrap().topic_id;
        assert_eq!(
            c.alter_partition(&image, 2, 0, topic_id, 0, 1, 1, &[1, 2, 3]),
            Err(ControllerError::IneligibleReplica(1))
        );
        // It restarts (a new registration): it may rejoin.
        apply(
            &mut image,
            &[
                MetadataRecord::RegisterBroker {
                    directory_id: None,
                    node_id: 1,
                    incarnation_id: Uuid::from_u128(77),
                    host: "h".into(),
                    port: 9001,
                    rack: None,
                    endpoints: Vec::new(),
                },
                MetadataRecord::UnfenceBroker {
                    node_id: 1,
                    broker_epoch: 1,
                },
            ],
        );
        assert_eq!(
            c.alter_partition(&image, 2, 0, topic_id, 0, 1, 1, &[2, 3, 1])
                .map(|r| r.len()),
            Ok(1)
        );
    }

    #[test]
    fn preferred_elections_move_leadership_back_to_the_first_replica_when_it_can_lead() {
        let (mut image, topic_id) = cluster();
        let mut c = Controller::new(ControllerConfig::default());
        c.activate(&image, 0);
        let (records, _) = c.controlled_shutdown(&image, 1, 0).unwrap();
        apply(&mut image, &records);
        assert_eq!(part(&image).leader, 2);
        // 1 is shutting down, then out of the ISR: not available.
        let (records, results) = c.elect(&image, true, None);
        assert!(records.is_empty());
        assert_eq!(results, vec![(topic_id, 0, Election::NotAvailable)]);
        // It restarts and rejoins the ISR: elected back.
        apply(
            &mut image,
            &[
                MetadataRecord::RegisterBroker {
                    directory_id: None,
                    node_id: 1,
                    incarnation_id: Uuid::from_u128(5),
                    host: "h".into(),
                    port: 9001,
                    rack: None,
                    endpoints: Vec::new(),
                },
                MetadataRecord::UnfenceBroker {
                    node_id: 1,
                    broker_epoch: 1,
                },
            ],
        );
        let p = part(&image);
        let rejoin = c
            .alter_partition(
                &image,
                2,
                0,
                topic_id,
                0,
                p.leader_epoch,
                p.partition_epoch,
                &[2, 3, 1],
            )
            .unwrap();
        apply(&mut image, &rejoin);
        let (records, results) = c.elect(&image, true, Some(&[(topic_id, 0), (topic_id, 7)]));
        apply(&mut image, &records);
        assert_eq!(
            results,
            vec![
                (topic_id, 0, Election::Elected(1)),
                (topic_id, 7, Election::UnknownPartition)
            ]
        );
        assert_eq!(part(&image).leader, 1);
        assert_eq!(c.elect(&image, true, None).1[0].2, Election::NotNeeded);
    }

    #[test]
    fn a_reassignment_adds_targets_waits_for_them_to_sync_then_drops_the_rest() {
        let (mut image, topic_id) = cluster();
        apply(
            &mut image,
            &[
                MetadataRecord::RegisterBroker {
                    directory_id: None,
                    node_id: 4,
                    incarnation_id: Uuid::from_u128(4),
                    host: "h".into(),
                    port: 9004,
                    rack: None,
                    endpoints: Vec::new(),
                },
                MetadataRecord::UnfenceBroker {
                    node_id: 4,
                    broker_epoch: 0,
                },
            ],
        );
        let mut c = Controller::new(ControllerConfig::default());
        c.activate(&image, 0);
        assert!(matches!(
            c.reassign(&image, topic_id, 0, Some(&[2, 9])),
            Err(ControllerError::InvalidReplicaAssignment(_))
        ));
        assert_eq!(
            c.reassign(&image, topic_id, 0, None),
            Err(ControllerError::NoReassignmentInProgress)
        );
        // [1, 2, 3] led by 1 -> [4, 2]
        let start = c.reassign(&image, topic_id, 0, Some(&[4, 2])).unwrap();
        apply(&mut image, &start);
        let p = part(&image);
        assert_eq!(p.replicas, vec![4, 2, 1, 3]);
        assert_eq!(
            (p.adding_replicas.clone(), p.removing_replicas.clone()),
            (vec![4], vec![1, 3])
        );
        assert_eq!(
            p.leader, 1,
            "the old leader leads until the new replicas caught up"
        );
        assert!(c.tick(&image, 0).is_empty(), "4 is not in sync yet");
        // 4 caught up: the leader adds it to the ISR; the reassignment completes and the
        // leadership moves into the target.
        let rejoin = c
            .alter_partition(
                &image,
                1,
                0,
                topic_id,
                0,
                0,
                p.partition_epoch,
                &[1, 2, 3, 4],
            )
            .unwrap();
        apply(&mut image, &rejoin);
        let done = c.tick(&image, 0);
        apply(&mut image, &done);
        let p = part(&image);
        assert_eq!(p.replicas, vec![4, 2]);
        assert_eq!(p.isr, vec![2, 4]);
        assert_eq!(p.leader, 4);
        assert!(!p.is_reassigning());
    }

    #[test]
    fn heartbeats_with_a_stale_broker_epoch_are_refused() {
        let (image, _) = cluster();
        let mut c = Controller::new(ControllerConfig::default());
        c.activate(&image, 0);
        assert!(matches!(
            c.heartbeat(&image, 1, 5, 10),
            Err(ControllerError::StaleBrokerEpoch { .. })
        ));
        assert_eq!(
            c.heartbeat(&image, 9, 0, 10),
            Err(ControllerError::UnknownBroker(9))
        );
    }
}
