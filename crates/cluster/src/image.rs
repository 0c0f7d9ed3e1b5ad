use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    AclEntry, Endpoint, MetadataError, MetadataRecord, QuotaValue, RemoteSegment,
    RemoteSegmentState,
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionImage {
    pub leader: i32,
    pub leader_epoch: i32,
    /// Bumped by every change of the partition (KIP-841: AlterPartition names the epoch it
    /// changes, so a stale request is refused).
    pub partition_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// A reassignment in progress (KIP-455): replicas being added (catching up, counted in
    /// `replicas`) and replicas to drop once every target replica is in sync.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding_replicas: Vec<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing_replicas: Vec<i32>,
    /// Eligible leader replicas (KIP-966): replicas that left the ISR while it was below
    /// `min.insync.replicas`. The high watermark cannot advance then, so they hold every
    /// committed record and may lead when no in-sync replica is live. Kept by the image
    /// itself on each change (see `MetadataImage::apply`), so every node agrees.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub elr: Vec<i32>,
    /// Its segments' copies in the object store (tiered storage), by base offset then id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remote_segments: Vec<RemoteSegment>,
}

impl PartitionImage {
    /// Where a reassignment in progress is going (the replicas once it completes).
    pub fn target_replicas(&self) -> Vec<i32> {
        self.replicas
            .iter()
            .copied()
            .filter(|r| !self.removing_replicas.contains(r))
            .collect()
    }

    /// A new leader (-1: none) starts a new leader epoch; the same one keeps it.
    fn move_leader(&mut self, leader: i32) {
        if leader != self.leader {
            self.leader_epoch += 1;
        }
        self.leader = leader;
    }

    pub fn is_reassigning(&self) -> bool {
        !self.adding_replicas.is_empty() || !self.removing_replicas.is_empty()
    }

    /// The finished copies, in offset order: what fetches below the local log read.
    pub fn copied_segments(&self) -> impl Iterator<Item = &RemoteSegment> {
        self.remote_segments
            .iter()
            .filter(|s| s.state == RemoteSegmentState::CopyFinished)
    }

    /// The offset after the last finished copy (where the next copy starts), None when
    /// nothing is copied.
    pub fn copied_end(&self) -> Option<i64> {
        self.copied_segments().map(|s| s.end_offset + 1).max()
    }

    /// The finished copy holding `offset`.
    pub fn copy_holding(&self, offset: i64) -> Option<&RemoteSegment> {
        self.copied_segments()
            .find(|s| s.base_offset <= offset && offset <= s.end_offset)
    }

    /// A copy's state change (see `MetadataRecord::RemoteSegment`), or why it is refused.
    fn change_remote_segment(&mut self, segment: &RemoteSegment) -> Result<(), String> {
        let at = self.remote_segments.iter().position(|s| s.id == segment.id);
        let old = at.map(|i| self.remote_segments[i].state);
        match (old, segment.state) {
            (None, RemoteSegmentState::CopyStarted) => {}
            (Some(RemoteSegmentState::CopyStarted), RemoteSegmentState::CopyFinished) => {
                if let Some(end) = self.copied_end() {
                    if segment.base_offset < end {
                        return Err(format!(
                            "a copy from {} overlaps what is copied already (up to {end})",
                            segment.base_offset
                        ));
                    }
                }
            }
            (Some(_), RemoteSegmentState::DeleteStarted) => {}
            (old, new) => {
                return Err(format!(
                    "copy {} cannot go from {old:?} to {new:?}",
                    segment.id
                ))
            }
        }
        if segment.end_offset < segment.base_offset {
            return Err(format!(
                "copy {} ends ({}) before it begins ({})",
                segment.id, segment.end_offset, segment.base_offset
            ));
        }
        match at {
            Some(i) => self.remote_segments[i] = segment.clone(),
            None => {
                let i = self
                    .remote_segments
                    .partition_point(|s| (s.base_offset, s.id) < (segment.base_offset, segment.id));
                self.remote_segments.insert(i, segment.clone());
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicImage {
    pub name: String,
    pub topic_id: Uuid,
    pub configs: BTreeMap<String, String>,
    pub partitions: BTreeMap<i32, PartitionImage>,
}

const STALE_PARTITION_EPOCH: &str = "the partition changed since (stale partition epoch)";

/// A topic's `min.insync.replicas`: its own config, else the cluster-wide dynamic default,
/// else 1.
pub fn min_insync_replicas(
    topic_configs: &BTreeMap<String, String>,
    broker_configs: &BTreeMap<String, BTreeMap<String, String>>,
) -> usize {
    topic_configs
        .get("min.insync.replicas")
        .or_else(|| {
            broker_configs
                .get("")
                .and_then(|c| c.get("min.insync.replicas"))
        })
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1)
}

/// KIP-966: the eligible leader replicas after the ISR goes from `isr` to `isr_after`.
/// Replicas leaving an ISR that ends up below `min_isr` become eligible (the high watermark
/// is frozen from then on); an ISR back at `min_isr` or more clears the set; members back in
/// the ISR, and replicas no longer hosting the partition, leave it.
fn eligible_leader_replicas(
    isr: &[i32],
    elr: &[i32],
    isr_after: &[i32],
    replicas_after: &[i32],
    min_isr: usize,
) -> Vec<i32> {
    if isr_after.len() >= min_isr {
        return Vec::new();
    }
    let mut out: Vec<i32> = elr.to_vec();
    out.extend(isr.iter().filter(|r| !isr_after.contains(r)));
    out.retain(|r| !isr_after.contains(r) && replicas_after.contains(r));
    out.sort_unstable();
    out.dedup();
    out
}

/// Builds the refusal of a change to one partition.
fn invalid_change(topic_id: Uuid, partition: i32) -> impl Fn(&str) -> MetadataError {
    move |why| MetadataError::InvalidPartitionChange {
        topic_id,
        partition,
        why: why.to_string(),
    }
}

/// A broker as the cluster knows it (from its latest registration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub node_id: i32,
    /// Increases with every registration of the node (a restart is a new epoch).
    pub broker_epoch: i64,
    pub incarnation_id: Uuid,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
    pub fenced: bool,
    /// The data directory it registered with (see `MetadataRecord::RegisterBroker`).
    #[serde(default)]
    pub directory_id: Option<Uuid>,
    /// Its client listeners (empty: only `host`/`port`, registered before listeners).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<Endpoint>,
}

impl BrokerRegistration {
    /// The broker's `(host, port)` on `listener`: the registered endpoint of that name, or,
    /// for a registration without endpoints, its only one. None if it has no such listener
    /// (Kafka leaves such a broker out of the answer).
    pub fn endpoint(&self, listener: &str) -> Option<(&str, i32)> {
        if self.endpoints.is_empty() {
            return Some((&self.host, self.port));
        }
        self.endpoints
            .iter()
            .find(|e| e.listener == listener)
            .map(|e| (e.host.as_str(), e.port))
    }
}

/// One user's SCRAM credential for one mechanism (see `MetadataRecord::ScramCredential`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredentialImage {
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: u32,
}

/// The cluster's metadata as of some metadata log offset. Pure: no I/O.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataImage {
    by_name: BTreeMap<String, Uuid>,
    topics: HashMap<Uuid, TopicImage>,
    /// Producer ids below this were handed out (see `MetadataRecord::ProducerIds`).
    producer_ids_end: i64,
    /// Dynamic broker configs by resource ("" = cluster default, else a node id).
    broker_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// Registered brokers by node id.
    brokers: BTreeMap<i32, BrokerRegistration>,
    /// SCRAM credentials by user, then mechanism name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    scram: BTreeMap<String, BTreeMap<String, ScramCredentialImage>>,
    /// ACLs by id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    acls: BTreeMap<Uuid, AclEntry>,
    /// Client quotas: each entity (sorted (type, name) pairs) with its values by key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    client_quotas: Vec<ClientQuotaImage>,
}

/// One quota entity's values (see `MetadataRecord::ClientQuota`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientQuotaImage {
    pub entity: Vec<(String, Option<String>)>,
    pub values: BTreeMap<String, QuotaValue>,
}

impl MetadataImage {
    /// A partition, if `leader_epoch` is its leader epoch (a record its leader wrote
    /// while it still led).
    fn leading_partition(
        &mut self,
        topic_id: Uuid,
        partition: i32,
        leader_epoch: i32,
    ) -> Result<&mut PartitionImage, MetadataError> {
        let p = self
            .topics
            .get_mut(&topic_id)
            .ok_or(MetadataError::UnknownTopicId(topic_id))?
            .partitions
            .get_mut(&partition)
            .ok_or(MetadataError::UnknownPartition {
                topic_id,
                partition,
            })?;
        if p.leader_epoch != leader_epoch {
            return Err(MetadataError::InvalidPartitionChange {
                topic_id,
                partition,
                why: format!(
                    "written in leader epoch {leader_epoch}, the partition is in {}",
                    p.leader_epoch
                ),
            });
        }
        Ok(p)
    }

    pub fn apply(&mut self, record: &MetadataRecord) -> Result<(), MetadataError> {
        match record {
            MetadataRecord::Topic {
                name,
                topic_id,
                configs,
            } => {
                if self.by_name.contains_key(name) {
                    return Err(MetadataError::TopicExists(name.clone()));
                }
                self.by_name.insert(name.clone(), *topic_id);
                self.topics.insert(
                    *topic_id,
                    TopicImage {
                        name: name.clone(),
                        topic_id: *topic_id,
                        configs: configs.clone(),
                        partitions: BTreeMap::new(),
                    },
                );
            }
            MetadataRecord::Partition {
                topic_id,
                partition,
                leader,
                leader_epoch,
                replicas,
                isr,
            } => {
                let topic = self
                    .topics
                    .get_mut(topic_id)
                    .ok_or(MetadataError::UnknownTopicId(*topic_id))?;
                if topic.partitions.contains_key(partition) {
                    return Err(MetadataError::PartitionExists {
                        topic_id: *topic_id,
                        partition: *partition,
                    });
                }
                let expected = topic.partitions.len() as i32;
                if *partition != expected {
                    return Err(MetadataError::PartitionOutOfOrder {
                        topic_id: *topic_id,
                        expected,
                        got: *partition,
                    });
                }
                topic.partitions.insert(
                    *partition,
                    PartitionImage {
                        leader: *leader,
                        leader_epoch: *leader_epoch,
                        partition_epoch: 0,
                        replicas: replicas.clone(),
                        isr: isr.clone(),
                        adding_replicas: Vec::new(),
                        removing_replicas: Vec::new(),
                        elr: Vec::new(),
                        remote_segments: Vec::new(),
                    },
                );
            }
            MetadataRecord::Reassign {
                topic_id,
                partition,
                target,
                leader,
                expected_partition_epoch,
            } => {
                let p = self.partition_mut(topic_id, *partition)?;
                let invalid = invalid_change(*topic_id, *partition);
                if *expected_partition_epoch != p.partition_epoch {
                    return Err(invalid(STALE_PARTITION_EPOCH));
                }
                // Back to where the partition was before any reassignment in progress.
                let original: Vec<i32> = p
                    .replicas
                    .iter()
                    .copied()
                    .filter(|r| !p.adding_replicas.contains(r))
                    .collect();
                let (replicas, adding, removing) = match target {
                    Some(t) => {
                        if t.is_empty() {
                            return Err(invalid("a reassignment needs at least one replica"));
                        }
                        let mut replicas = t.clone();
                        replicas.extend(original.iter().copied().filter(|r| !t.contains(r)));
                        let adding = t
                            .iter()
                            .copied()
                            .filter(|r| !original.contains(r))
                            .collect();
                        let removing = original
                            .iter()
                            .copied()
                            .filter(|r| !t.contains(r))
                            .collect();
                        (replicas, adding, removing)
                    }
                    None => (original, Vec::new(), Vec::new()),
                };
                let isr: Vec<i32> = p
                    .isr
                    .iter()
                    .copied()
                    .filter(|r| replicas.contains(r))
                    .collect();
                let leader_after = leader.unwrap_or(p.leader);
                if leader_after >= 0 && !isr.contains(&leader_after) {
                    return Err(invalid("the leader is not in sync"));
                }
                p.move_leader(leader_after);
                p.elr.retain(|r| replicas.contains(r));
                p.replicas = replicas;
                p.isr = isr;
                p.adding_replicas = adding;
                p.removing_replicas = removing;
                p.partition_epoch += 1;
            }
            MetadataRecord::ReassignmentDone {
                topic_id,
                partition,
                leader,
                expected_partition_epoch,
            } => {
                let p = self.partition_mut(topic_id, *partition)?;
                let invalid = invalid_change(*topic_id, *partition);
                if *expected_partition_epoch != p.partition_epoch {
                    return Err(invalid(STALE_PARTITION_EPOCH));
                }
                let target = p.target_replicas();
                if target.iter().any(|r| !p.isr.contains(r)) {
                    return Err(invalid("a target replica is not in sync yet"));
                }
                let leader_after = leader.unwrap_or(p.leader);
                if !target.contains(&leader_after) {
                    return Err(invalid("the leader must be a target replica"));
                }
                p.move_leader(leader_after);
                p.isr.retain(|r| target.contains(r));
                p.elr.retain(|r| target.contains(r));
                p.replicas = target;
                p.adding_replicas.clear();
                p.removing_replicas.clear();
                p.partition_epoch += 1;
            }
            MetadataRecord::PartitionChange {
                topic_id,
                partition,
                leader,
                isr,
                replicas,
                expected_partition_epoch,
            } => {
                let topic = self
                    .topics
                    .get_mut(topic_id)
                    .ok_or(MetadataError::UnknownTopicId(*topic_id))?;
                let topic_configs = &topic.configs;
                let p =
                    topic
                        .partitions
                        .get_mut(partition)
                        .ok_or(MetadataError::UnknownPartition {
                            topic_id: *topic_id,
                            partition: *partition,
                        })?;
                let replicas_after = replicas.clone().unwrap_or_else(|| p.replicas.clone());
                let isr_after = isr.clone().unwrap_or_else(|| p.isr.clone());
                let leader_after = leader.unwrap_or(p.leader);
                let invalid = invalid_change(*topic_id, *partition);
                if expected_partition_epoch.is_some_and(|e| e != p.partition_epoch) {
                    return Err(invalid(STALE_PARTITION_EPOCH));
                }
                if isr_after.iter().any(|r| !replicas_after.contains(r)) {
                    return Err(invalid("an in-sync replica is not a replica"));
                }
                if leader_after >= 0 && !isr_after.contains(&leader_after) {
                    return Err(invalid("the leader is not in sync"));
                }
                let min_isr = min_insync_replicas(topic_configs, &self.broker_configs);
                let unclean = leader_after >= 0
                    && leader_after != p.leader
                    && !p.isr.contains(&leader_after)
                    && !p.elr.contains(&leader_after);
                p.elr = if unclean {
                    // Elected from outside the ISR and ELR: what the others hold beyond it
                    // is gone from the log's history; none of them is eligible any more.
                    Vec::new()
                } else {
                    eligible_leader_replicas(&p.isr, &p.elr, &isr_after, &replicas_after, min_isr)
                };
                p.move_leader(leader_after);
                p.isr = isr_after;
                p.replicas = replicas_after;
                p.partition_epoch += 1;
            }
            MetadataRecord::RemoteSegment {
                topic_id,
                partition,
                leader_epoch,
                segment,
            } => {
                let p = self.leading_partition(*topic_id, *partition, *leader_epoch)?;
                p.change_remote_segment(segment).map_err(|why| {
                    MetadataError::InvalidPartitionChange {
                        topic_id: *topic_id,
                        partition: *partition,
                        why,
                    }
                })?;
            }
            MetadataRecord::RemoveRemoteSegment {
                topic_id,
                partition,
                leader_epoch,
                id,
            } => {
                let p = self.leading_partition(*topic_id, *partition, *leader_epoch)?;
                match p.remote_segments.iter().position(|s| s.id == *id) {
                    Some(i) if p.remote_segments[i].state == RemoteSegmentState::DeleteStarted => {
                        p.remote_segments.remove(i);
                    }
                    found => {
                        return Err(MetadataError::InvalidPartitionChange {
                            topic_id: *topic_id,
                            partition: *partition,
                            why: format!(
                                "copy {id} is {:?}, not being deleted",
                                found.map(|i| p.remote_segments[i].state)
                            ),
                        })
                    }
                }
            }
            MetadataRecord::TopicConfig { topic_id, configs } => {
                let topic = self
                    .topics
                    .get_mut(topic_id)
                    .ok_or(MetadataError::UnknownTopicId(*topic_id))?;
                topic.configs = configs.clone();
            }
            MetadataRecord::RemoveTopic { topic_id } => {
                let topic = self
                    .topics
                    .remove(topic_id)
                    .ok_or(MetadataError::UnknownTopicId(*topic_id))?;
                self.by_name.remove(&topic.name);
            }
            MetadataRecord::BrokerConfig { resource, configs } => {
                if configs.is_empty() {
                    self.broker_configs.remove(resource);
                } else {
                    self.broker_configs
                        .insert(resource.clone(), configs.clone());
                }
            }
            MetadataRecord::RegisterBroker {
                node_id,
                incarnation_id,
                host,
                port,
                rack,
                directory_id,
                endpoints,
            } => {
                let registered = self.brokers.get(node_id).and_then(|b| b.directory_id);
                if let (Some(registered), Some(new)) = (registered, directory_id) {
                    if registered != *new {
                        return Err(MetadataError::DirectoryChanged {
                            node_id: *node_id,
                            registered,
                            new: *new,
                        });
                    }
                }
                let directory_id = directory_id.or(registered);
                let broker_epoch = self.brokers.get(node_id).map_or(0, |b| b.broker_epoch + 1);
                self.brokers.insert(
                    *node_id,
                    BrokerRegistration {
                        node_id: *node_id,
                        broker_epoch,
                        incarnation_id: *incarnation_id,
                        host: host.clone(),
                        port: *port,
                        rack: rack.clone(),
                        fenced: true,
                        directory_id,
                        endpoints: endpoints.clone(),
                    },
                );
            }
            MetadataRecord::ResignLeaderships { node_id } => {
                let node = *node_id;
                let live = |r: i32| self.broker(r).is_some_and(|b| !b.fenced);
                let moves: Vec<MetadataRecord> = self
                    .topics
                    .values()
                    .flat_map(|t| {
                        t.partitions.iter().filter(|(_, p)| p.leader == node).map(
                            |(&partition, p)| MetadataRecord::PartitionChange {
                                topic_id: t.topic_id,
                                partition,
                                leader: Some(
                                    p.isr
                                        .iter()
                                        .copied()
                                        .find(|&r| r != node && live(r))
                                        .unwrap_or(-1),
                                ),
                                isr: None,
                                replicas: None,
                                expected_partition_epoch: None,
                            },
                        )
                    })
                    .collect();
                for change in &moves {
                    self.apply(change)?;
                }
            }
            MetadataRecord::UnfenceBroker {
                node_id,
                broker_epoch,
            }
            | MetadataRecord::FenceBroker {
                node_id,
                broker_epoch,
            } => {
                let b = self
                    .brokers
                    .get_mut(node_id)
                    .ok_or(MetadataError::UnknownBroker(*node_id))?;
                if b.broker_epoch != *broker_epoch {
                    return Err(MetadataError::StaleBrokerEpoch {
                        node_id: *node_id,
                        got: *broker_epoch,
                        current: b.broker_epoch,
                    });
                }
                b.fenced = matches!(record, MetadataRecord::FenceBroker { .. });
            }
            MetadataRecord::ScramCredential {
                user,
                mechanism,
                salt,
                stored_key,
                server_key,
                iterations,
            } => {
                self.scram.entry(user.clone()).or_default().insert(
                    mechanism.clone(),
                    ScramCredentialImage {
                        salt: salt.clone(),
                        stored_key: stored_key.clone(),
                        server_key: server_key.clone(),
                        iterations: *iterations,
                    },
                );
            }
            MetadataRecord::ClientQuota { entity, key, value } => {
                let at = self
                    .client_quotas
                    .binary_search_by(|q| q.entity.cmp(entity));
                match (at, value) {
                    (Ok(i), Some(v)) => {
                        self.client_quotas[i].values.insert(key.clone(), *v);
                    }
                    (Ok(i), None) => {
                        self.client_quotas[i].values.remove(key);
                        if self.client_quotas[i].values.is_empty() {
                            self.client_quotas.remove(i);
                        }
                    }
                    (Err(i), Some(v)) => self.client_quotas.insert(
                        i,
                        ClientQuotaImage {
                            entity: entity.clone(),
                            values: BTreeMap::from([(key.clone(), *v)]),
                        },
                    ),
                    (Err(_), None) => {}
                }
            }
            MetadataRecord::Acl { id, acl } => {
                self.acls.insert(*id, acl.clone());
            }
            MetadataRecord::RemoveAcl { id } => {
                self.acls.remove(id);
            }
            MetadataRecord::RemoveScramCredential { user, mechanism } => {
                if let Some(m) = self.scram.get_mut(user) {
                    m.remove(mechanism);
                    if m.is_empty() {
                        self.scram.remove(user);
                    }
                }
            }
            MetadataRecord::ProducerIds {
                next_block_end,
                block_start,
            } => {
                if let Some(start) = block_start.filter(|s| *s != self.producer_ids_end) {
                    return Err(MetadataError::ProducerIdsMoved {
                        expected: start,
                        actual: self.producer_ids_end,
                    });
                }
                // Never backwards, whatever the log says.
                self.producer_ids_end = self.producer_ids_end.max(*next_block_end);
            }
        }
        Ok(())
    }

    /// The end of the last producer id block handed out (0: none yet).
    /// Dynamic broker configs of a resource ("" = cluster default, else a node id).
    fn partition_mut(
        &mut self,
        topic_id: &Uuid,
        partition: i32,
    ) -> Result<&mut PartitionImage, MetadataError> {
        self.topics
            .get_mut(topic_id)
            .ok_or(MetadataError::UnknownTopicId(*topic_id))?
            .partitions
            .get_mut(&partition)
            .ok_or(MetadataError::UnknownPartition {
                topic_id: *topic_id,
                partition,
            })
    }

    /// The registered broker `node_id`, fenced or not.
    pub fn broker(&self, node_id: i32) -> Option<&BrokerRegistration> {
        self.brokers.get(&node_id)
    }

    /// Brokers that may serve (registered and unfenced), by node id.
    /// Every registered broker, fenced or not.
    pub fn brokers(&self) -> impl Iterator<Item = &BrokerRegistration> {
        self.brokers.values()
    }

    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerRegistration> {
        self.brokers.values().filter(|b| !b.fenced)
    }

    /// Every resource's dynamic broker configs.
    pub fn all_broker_configs(&self) -> &BTreeMap<String, BTreeMap<String, String>> {
        &self.broker_configs
    }

    pub fn broker_configs(&self, resource: &str) -> Option<&BTreeMap<String, String>> {
        self.broker_configs.get(resource)
    }

    /// `user`'s SCRAM credential for `mechanism` (`SCRAM-SHA-256`, `SCRAM-SHA-512`).
    pub fn scram_credential(&self, user: &str, mechanism: &str) -> Option<&ScramCredentialImage> {
        self.scram.get(user).and_then(|m| m.get(mechanism))
    }

    /// Every user with a SCRAM credential, by name, with their credentials by mechanism.
    pub fn scram_users(
        &self,
    ) -> impl Iterator<Item = (&String, &BTreeMap<String, ScramCredentialImage>)> {
        self.scram.iter()
    }

    /// Every client quota entity with its values, in entity order.
    pub fn client_quotas(&self) -> &[ClientQuotaImage] {
        &self.client_quotas
    }

    /// The values of exactly this quota entity (sorted pairs).
    pub fn client_quota(&self, entity: &[(String, Option<String>)]) -> Option<&ClientQuotaImage> {
        self.client_quotas
            .binary_search_by(|q| q.entity.as_slice().cmp(entity))
            .ok()
            .map(|i| &self.client_quotas[i])
    }

    /// Every ACL, by id.
    pub fn acls(&self) -> &BTreeMap<Uuid, AclEntry> {
        &self.acls
    }

    pub fn producer_ids_end(&self) -> i64 {
        self.producer_ids_end
    }

    pub fn topic(&self, name: &str) -> Option<&TopicImage> {
        self.by_name.get(name).and_then(|id| self.topics.get(id))
    }

    pub fn topic_by_id(&self, id: &Uuid) -> Option<&TopicImage> {
        self.topics.get(id)
    }

    /// Topics in name order.
    pub fn topics(&self) -> impl Iterator<Item = &TopicImage> {
        self.by_name.values().filter_map(|id| self.topics.get(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scram_credentials_are_set_replaced_and_removed_per_mechanism() {
        let mut image = MetadataImage::default();
        let set = |user: &str, mechanism: &str, iterations: u32| MetadataRecord::ScramCredential {
            user: user.into(),
            mechanism: mechanism.into(),
            salt: vec![1],
            stored_key: vec![2],
            server_key: vec![3],
            iterations,
        };
        let remove = |user: &str, mechanism: &str| MetadataRecord::RemoveScramCredential {
            user: user.into(),
            mechanism: mechanism.into(),
        };
        image.apply(&set("alice", "SCRAM-SHA-256", 4096)).unwrap();
        image.apply(&set("alice", "SCRAM-SHA-512", 8192)).unwrap();
        image.apply(&set("alice", "SCRAM-SHA-256", 5000)).unwrap();
        assert_eq!(
            image
                .scram_credential("alice", "SCRAM-SHA-256")
                .unwrap()
                .iterations,
            5000
        );
        assert_eq!(image.scram_users().count(), 1);
        image.apply(&remove("alice", "SCRAM-SHA-256")).unwrap();
        assert!(image.scram_credential("alice", "SCRAM-SHA-256").is_none());
        assert!(image.scram_credential("alice", "SCRAM-SHA-512").is_some());
        image.apply(&remove("bob", "SCRAM-SHA-512")).unwrap();
        image.apply(&remove("alice", "SCRAM-SHA-512")).unwrap();
        assert_eq!(
            image.scram_users().count(),
            0,
            "a user without credentials is gone"
        );
        // An image without credentials serializes as before they existed.
        assert!(!serde_json::to_string(&image).unwrap().contains("scram"));
    }

    #[test]
    fn a_node_id_is_never_taken_over_by_another_directory() {
        let mut image = MetadataImage::default();
        let register = |dir: Option<u128>| MetadataRecord::RegisterBroker {
            node_id: 2,
            incarnation_id: Uuid::new_v4(),
            host: "h".into(),
            port: 1,
            rack: None,
            directory_id: dir.map(Uuid::from_u128),
            endpoints: Vec::new(),
        };
        image.apply(&register(Some(7))).unwrap();
        // Restarts with the same directory are new epochs.
        image.apply(&register(Some(7))).unwrap();
        assert_eq!(image.broker(2).unwrap().broker_epoch, 1);
        // A registration without a directory id (older records) keeps the known one.
        image.apply(&register(None)).unwrap();
        assert_eq!(
            image.broker(2).unwrap().directory_id,
            Some(Uuid::from_u128(7))
        );
        // Another directory (the old one was wiped) is refused, and nothing changes.
        assert!(matches!(
            image.apply(&register(Some(8))),
            Err(MetadataError::DirectoryChanged { node_id: 2, .. })
        ));
        assert_eq!(image.broker(2).unwrap().broker_epoch, 2);
    }

    #[test]
    fn producer_id_blocks_are_handed_out_once() {
        let mut image = MetadataImage::default();
        let block = |start: i64| MetadataRecord::ProducerIds {
            next_block_end: start + 1000,
            block_start: Some(start),
        };
        image.apply(&block(0)).unwrap();
        assert_eq!(image.producer_ids_end(), 1000);
        // A second broker that saw the same end asks for the same block: refused.
        assert!(matches!(
            image.apply(&block(0)),
            Err(MetadataError::ProducerIdsMoved {
                expected: 0,
                actual: 1000
            })
        ));
        assert_eq!(image.producer_ids_end(), 1000);
        image.apply(&block(1000)).unwrap();
        assert_eq!(image.producer_ids_end(), 2000);
        // Records written before compare-and-set only move the end forward.
        image
            .apply(&MetadataRecord::ProducerIds {
                next_block_end: 1500,
                block_start: None,
            })
            .unwrap();
        assert_eq!(image.producer_ids_end(), 2000);
    }

    fn topic(name: &str, id: u128) -> MetadataRecord {
        MetadataRecord::Topic {
            name: name.into(),
            topic_id: Uuid::from_u128(id),
            configs: BTreeMap::new(),
        }
    }
    fn partition(id: u128, p: i32) -> MetadataRecord {
        MetadataRecord::Partition {
            topic_id: Uuid::from_u128(id),
            partition: p,
            leader: 1,
            leader_epoch: 0,
            replicas: vec![1],
            isr: vec![1],
        }
    }

    /// Copies of segments in the object store: recorded only by the partition's current
    /// leader, moving only forward, never copying a range twice, and gone only once
    /// deleted.
    #[test]
    fn remote_segment_copies_move_forward_under_the_current_leader() {
        let mut img = MetadataImage::default();
        img.apply(&topic("t", 1)).unwrap();
        img.apply(&partition(1, 0)).unwrap();
        let copy = |id: u128, base: i64, end: i64, state| RemoteSegment {
            id: Uuid::from_u128(id),
            base_offset: base,
            end_offset: end,
            max_timestamp: 0,
            size_bytes: 100,
            leader_epochs: vec![(0, 0)],
            state,
            broker: 1,
        };
        let record = |epoch: i32, segment: RemoteSegment| MetadataRecord::RemoteSegment {
            topic_id: Uuid::from_u128(1),
            partition: 0,
            leader_epoch: epoch,
            segment,
        };
        let remove = |epoch: i32, id: u128| MetadataRecord::RemoveRemoteSegment {
            topic_id: Uuid::from_u128(1),
            partition: 0,
            leader_epoch: epoch,
            id: Uuid::from_u128(id),
        };
        use RemoteSegmentState::*;
        let p = |img: &MetadataImage| img.topic("t").unwrap().partitions[&0].clone();
        // As the quorum's log carries it (through a JSON value: map keys would be strings).
        let r = record(0, copy(10, 0, 99, CopyStarted));
        let through: MetadataRecord =
            serde_json::from_value(serde_json::to_value(&r).unwrap()).unwrap();
        assert_eq!(through, r);
        img.apply(&r).unwrap();
        assert_eq!(p(&img).copied_end(), None, "a started copy is not read");
        assert!(
            img.apply(&record(0, copy(10, 0, 99, CopyStarted))).is_err(),
            "started twice"
        );
        img.apply(&record(0, copy(10, 0, 99, CopyFinished)))
            .unwrap();
        assert_eq!(p(&img).copied_end(), Some(100));
        assert_eq!(
            p(&img).copy_holding(50).map(|s| s.id),
            Some(Uuid::from_u128(10))
        );
        assert!(p(&img).copy_holding(100).is_none());
        // A second attempt at the same range never finishes.
        img.apply(&record(0, copy(11, 0, 99, CopyStarted))).unwrap();
        assert!(img
            .apply(&record(0, copy(11, 0, 99, CopyFinished)))
            .is_err());
        assert!(
            img.apply(&record(0, copy(12, 50, 40, CopyStarted)))
                .is_err(),
            "ends before it begins"
        );
        // A deposed leader's record is refused.
        img.apply(&MetadataRecord::PartitionChange {
            topic_id: Uuid::from_u128(1),
            partition: 0,
            leader: Some(2),
            isr: Some(vec![1, 2]),
            replicas: Some(vec![1, 2]),
            expected_partition_epoch: None,
        })
        .unwrap();
        assert!(img
            .apply(&record(0, copy(13, 100, 199, CopyStarted)))
            .is_err());
        // The new leader cleans up the abandoned attempt and goes on from the end.
        assert!(img.apply(&remove(1, 11)).is_err(), "not being deleted");
        img.apply(&record(1, copy(11, 0, 99, DeleteStarted)))
            .unwrap();
        img.apply(&remove(1, 11)).unwrap();
        img.apply(&record(1, copy(13, 100, 199, CopyStarted)))
            .unwrap();
        img.apply(&record(1, copy(13, 100, 199, CopyFinished)))
            .unwrap();
        assert_eq!(p(&img).copied_end(), Some(200));
        assert!(
            img.apply(&record(1, copy(13, 100, 199, CopyStarted)))
                .is_err(),
            "no way back"
        );
        // Retention deletes the oldest: no longer read, then gone.
        img.apply(&record(1, copy(10, 0, 99, DeleteStarted)))
            .unwrap();
        assert!(p(&img).copy_holding(50).is_none());
        img.apply(&remove(1, 10)).unwrap();
        let ids: Vec<Uuid> = p(&img).remote_segments.iter().map(|s| s.id).collect();
        assert_eq!(ids, vec![Uuid::from_u128(13)]);
        // The image keeps them across a snapshot.
        let json = serde_json::to_string(&img).unwrap();
        let back: MetadataImage = serde_json::from_str(&json).unwrap();
        assert_eq!(p(&back), p(&img));
    }

    #[test]
    fn brokers_register_with_new_epochs_and_are_fenced_until_unfenced() {
        let mut img = MetadataImage::default();
        let register = |incarnation: u128, rack: Option<&str>| MetadataRecord::RegisterBroker {
            directory_id: None,
            node_id: 2,
            incarnation_id: Uuid::from_u128(incarnation),
            host: "h".into(),
            port: 9092,
            rack: rack.map(str::to_string),
            endpoints: Vec::new(),
        };
        assert!(matches!(
            img.apply(&MetadataRecord::UnfenceBroker {
                node_id: 2,
                broker_epoch: 0
            }),
            Err(MetadataError::UnknownBroker(2))
        ));
        img.apply(&register(1, None)).unwrap();
        assert_eq!(img.live_brokers().count(), 0, "fenced until unfenced");
        img.apply(&MetadataRecord::UnfenceBroker {
            node_id: 2,
            broker_epoch: 0,
        })
        .unwrap();
        assert_eq!(img.live_brokers().count(), 1);
        img.apply(&register(2, Some("eu-1a"))).unwrap();
        let b = img.broker(2).unwrap();
        assert_eq!(
            (b.broker_epoch, b.fenced, b.rack.as_deref()),
            (1, true, Some("eu-1a"))
        );
        assert!(matches!(
            img.apply(&MetadataRecord::UnfenceBroker {
                node_id: 2,
                broker_epoch: 0
            }),
            Err(MetadataError::StaleBrokerEpoch {
                got: 0,
                current: 1,
                ..
            })
        ));
        img.apply(&MetadataRecord::UnfenceBroker {
            node_id: 2,
            broker_epoch: 1,
        })
        .unwrap();
        img.apply(&MetadataRecord::FenceBroker {
            node_id: 2,
            broker_epoch: 1,
        })
        .unwrap();
        assert_eq!(img.live_brokers().count(), 0);
    }

    /// Found by the simulation first (then computed by the registering broker from its own
    /// view, which after a power loss may miss a leadership it was given): a broker that
    /// registers again gets a new leader epoch on every partition it led. Another live
    /// in-sync replica leads, or none until an election; the ISR stays.
    #[test]
    fn a_registering_broker_resigns_its_old_leaderships_in_the_current_image() {
        let setup = |isr: Vec<i32>| {
            let mut img = MetadataImage::default();
            for node_id in 1..=3 {
                img.apply(&MetadataRecord::RegisterBroker {
                    directory_id: None,
                    node_id,
                    incarnation_id: Uuid::from_u128(node_id as u128),
                    host: "h".into(),
                    port: 9092,
                    rack: None,
                    endpoints: Vec::new(),
                })
                .unwrap();
                img.apply(&MetadataRecord::UnfenceBroker {
                    node_id,
                    broker_epoch: 0,
                })
                .unwrap();
            }
            img.apply(&topic("a", 1)).unwrap();
            img.apply(&MetadataRecord::Partition {
                topic_id: Uuid::from_u128(1),
                partition: 0,
                leader: 1,
                leader_epoch: 4,
                replicas: vec![1, 2, 3],
                isr,
            })
            .unwrap();
            img
        };
        let part = |img: &MetadataImage| img.topic("a").unwrap().partitions[&0].clone();
        let resign = |node_id| MetadataRecord::ResignLeaderships { node_id };

        let mut img = setup(vec![1, 2, 3]);
        img.apply(&resign(3)).unwrap();
        assert_eq!(part(&img).leader_epoch, 4, "a follower resigns nothing");
        img.apply(&resign(9)).unwrap();
        assert_eq!(
            part(&img).leader_epoch,
            4,
            "an unknown broker resigns nothing"
        );
        // Node 2 is fenced: node 3 is the live in-sync replica that leads.
        img.apply(&MetadataRecord::FenceBroker {
            node_id: 2,
            broker_epoch: 0,
        })
        .unwrap();
        let epoch = part(&img).partition_epoch;
        img.apply(&resign(1)).unwrap();
        let p = part(&img);
        assert_eq!((p.leader, p.leader_epoch), (3, 5));
        assert_eq!(p.isr, vec![1, 2, 3]);
        assert!(p.partition_epoch > epoch);

        // The last in-sync replica: no leader until the controller elects one.
        let mut img = setup(vec![1]);
        img.apply(&resign(1)).unwrap();
        let p = part(&img);
        assert_eq!((p.leader, p.leader_epoch, p.isr.clone()), (-1, 5, vec![1]));
    }

    #[test]
    fn partition_changes_bump_epochs_and_keep_the_leader_in_sync() {
        let mut img = MetadataImage::default();
        img.apply(&topic("a", 1)).unwrap();
        img.apply(&MetadataRecord::Partition {
            topic_id: Uuid::from_u128(1),
            partition: 0,
            leader: 1,
            leader_epoch: 0,
            replicas: vec![1, 2, 3],
            isr: vec![1, 2, 3],
        })
        .unwrap();
        let change = |leader: Option<i32>, isr: Option<Vec<i32>>| MetadataRecord::PartitionChange {
            expected_partition_epoch: None,
            topic_id: Uuid::from_u128(1),
            partition: 0,
            leader,
            isr,
            replicas: None,
        };
        img.apply(&change(None, Some(vec![1, 2]))).unwrap();
        let p = &img.topic("a").unwrap().partitions[&0];
        assert_eq!(
            (p.leader, p.leader_epoch, p.partition_epoch),
            (1, 0, 1),
            "ISR shrink: same leader epoch"
        );
        img.apply(&change(Some(2), None)).unwrap();
        let p = &img.topic("a").unwrap().partitions[&0];
        assert_eq!(
            (p.leader, p.leader_epoch, p.partition_epoch),
            (2, 1, 2),
            "new leader, new epoch"
        );
        assert!(
            img.apply(&change(Some(3), None)).is_err(),
            "3 is not in sync"
        );
        assert!(
            img.apply(&change(None, Some(vec![2, 4]))).is_err(),
            "4 is not a replica"
        );
        img.apply(&change(Some(-1), Some(vec![]))).unwrap();
        assert_eq!(img.topic("a").unwrap().partitions[&0].leader, -1, "offline");
    }

    #[test]
    fn create_grow_configure_remove() {
        let mut img = MetadataImage::default();
        img.apply(&topic("a", 1)).unwrap();
        img.apply(&partition(1, 0)).unwrap();
        img.apply(&partition(1, 1)).unwrap();
        assert!(matches!(
            img.apply(&partition(1, 3)),
            Err(MetadataError::PartitionOutOfOrder { .. })
        ));
        assert!(matches!(
            img.apply(&topic("a", 2)),
            Err(MetadataError::TopicExists(_))
        ));
        let cfg = BTreeMap::from([("retention.ms".to_string(), "10".to_string())]);
        img.apply(&MetadataRecord::TopicConfig {
            topic_id: Uuid::from_u128(1),
            configs: cfg.clone(),
        })
        .unwrap();
        assert_eq!(img.topic("a").unwrap().partitions.len(), 2);
        assert_eq!(img.topic("a").unwrap().configs, cfg);
        img.apply(&MetadataRecord::RemoveTopic {
            topic_id: Uuid::from_u128(1),
        })
        .unwrap();
        assert!(img.topic("a").is_none());
        img.apply(&topic("a", 3)).unwrap(); // the name can be reused with a new id
        assert_eq!(img.topic("a").unwrap().topic_id, Uuid::from_u128(3));
    }
}
