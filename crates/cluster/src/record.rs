use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A broker's listener as registered (Kafka's BrokerEndpoint).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// The listener's name (`PLAINTEXT`, `SASL_SSL`, `INTERNAL`, …).
    pub listener: String,
    pub host: String,
    pub port: i32,
    /// Kafka's security protocol name (`PLAINTEXT`, `SSL`, `SASL_PLAINTEXT`, `SASL_SSL`).
    pub security_protocol: String,
}

/// One change to cluster metadata. Records are facts: applying the same sequence always
/// gives the same image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum MetadataRecord {
    /// A topic exists, with its dynamic (non-default) configs.
    Topic {
        name: String,
        topic_id: Uuid,
        configs: BTreeMap<String, String>,
    },
    /// A partition exists, led by `leader` in `leader_epoch`.
    Partition {
        topic_id: Uuid,
        partition: i32,
        leader: i32,
        leader_epoch: i32,
        replicas: Vec<i32>,
        isr: Vec<i32>,
    },
    /// A partition's leadership or replica sets changed (Kafka's PartitionChangeRecord):
    /// `None` fields are unchanged. A new leader (-1: none) starts a new leader epoch; every
    /// change starts a new partition epoch. With `expected_partition_epoch` the change applies
    /// only to that epoch of the partition (compare-and-set: a change decided on an older
    /// view is refused, KIP-841).
    PartitionChange {
        topic_id: Uuid,
        partition: i32,
        leader: Option<i32>,
        isr: Option<Vec<i32>>,
        replicas: Option<Vec<i32>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expected_partition_epoch: Option<i32>,
    },
    /// A reassignment of the partition's replicas to `target` starts (KIP-455): target
    /// replicas not yet hosted are added (they catch up as followers), the others are marked
    /// for removal; `None` cancels one in progress (back to the replicas before it). `leader`
    /// moves leadership when the current one is dropped at once (a cancel).
    Reassign {
        topic_id: Uuid,
        partition: i32,
        target: Option<Vec<i32>>,
        leader: Option<i32>,
        expected_partition_epoch: i32,
    },
    /// Every target replica is in sync: the replicas marked for removal go (and leadership
    /// moves to `leader` when the leader was one of them).
    ReassignmentDone {
        topic_id: Uuid,
        partition: i32,
        leader: Option<i32>,
        expected_partition_epoch: i32,
    },
    /// The topic's dynamic configs are now exactly `configs`.
    TopicConfig {
        topic_id: Uuid,
        configs: BTreeMap<String, String>,
    },
    /// The topic and its partitions are gone.
    RemoveTopic { topic_id: Uuid },
    /// Producer ids below `next_block_end` are handed out (Kafka's ProducerIdsRecord): a
    /// broker allocates from a block it recorded, so no id is ever given out twice, even
    /// across restarts (the rest of a block is skipped after one).
    /// With `block_start`, the block applies only if it starts where the last one ended
    /// (compare-and-set: two brokers asking at once never get the same ids).
    ProducerIds {
        next_block_end: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        block_start: Option<i64>,
    },
    /// The dynamic broker configs of `resource` are now exactly `configs` (Kafka's
    /// ConfigRecord for BROKER resources): `resource` "" is the cluster-wide default, a
    /// node id that broker alone.
    BrokerConfig {
        resource: String,
        configs: BTreeMap<String, String>,
    },
    /// A broker process announced itself (Kafka's RegisterBrokerRecord): each registration
    /// gives the node a new broker epoch, and it starts fenced (serving nothing) until it is
    /// unfenced.
    RegisterBroker {
        node_id: i32,
        /// Random per process start: a restarted broker is a new incarnation.
        incarnation_id: Uuid,
        host: String,
        port: i32,
        rack: Option<String>,
        /// The data directory's id (`meta.properties`): a node id is never taken over by
        /// another directory (one that was wiped lost the replicas the cluster counts on).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        directory_id: Option<Uuid>,
        /// Every client listener, by name (Kafka's BrokerEndpoint): a client is told each
        /// broker's endpoint on the listener it asked through. Empty in registrations
        /// written before listeners existed (`host`/`port` is then the only one).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        endpoints: Vec<Endpoint>,
    },
    /// The leaderships the broker's previous incarnation held move to a new leader epoch,
    /// part of a registration: a restarted broker must not go on leading in the epoch it led
    /// before. It may have lost, in a power loss, the unsynced tail its followers had
    /// already copied; appending anew in the same epoch would leave two replicas with
    /// different records under one epoch, which the followers' epoch-based truncation
    /// (KIP-279) cannot see. Each partition goes to another live in-sync replica, or to none
    /// until the controller elects one (possibly this broker, in the epoch after). The
    /// broker stays in the ISRs: its log holds everything it had synced, which is all it
    /// ever reported (Kafka, which does not sync, removes it, KIP-966).
    /// Decided from the image the record is applied to, never from the registering
    /// broker's own view, which after a power loss may miss a leadership it was given (its
    /// quorum member's committed index is not synced, so it replays less after a restart).
    ResignLeaderships { node_id: i32 },
    /// The broker in `broker_epoch` may lead and serve partitions (UnfenceBrokerRecord).
    UnfenceBroker { node_id: i32, broker_epoch: i64 },
    /// The broker in `broker_epoch` may not (FenceBrokerRecord: it went silent or stopped).
    FenceBroker { node_id: i32, broker_epoch: i64 },
    /// `user`'s SCRAM credential for `mechanism` (`SCRAM-SHA-256` or `SCRAM-SHA-512`) is now
    /// this one (Kafka's UserScramCredentialRecord): salt, iteration count, StoredKey and
    /// ServerKey, never the password.
    ScramCredential {
        user: String,
        mechanism: String,
        salt: Vec<u8>,
        stored_key: Vec<u8>,
        server_key: Vec<u8>,
        iterations: u32,
    },
    /// `user` has no credential for `mechanism` any more (RemoveUserScramCredentialRecord);
    /// one that was not there is no change.
    RemoveScramCredential { user: String, mechanism: String },
    /// An ACL exists (Kafka's AccessControlEntryRecord), with Kafka's wire codes for the
    /// resource type, pattern type, operation and permission.
    Acl { id: Uuid, acl: AclEntry },
    /// The ACL is gone (RemoveAccessControlEntryRecord); one that was not there is no change.
    RemoveAcl { id: Uuid },
    /// A client quota of an entity is set to `value`, or removed with None (Kafka's
    /// ClientQuotaRecord). The entity is a sorted list of (type, name) with type `user`,
    /// `client-id` or `ip` and a None name for the type's default.
    ClientQuota {
        entity: Vec<(String, Option<String>)>,
        key: String,
        value: Option<QuotaValue>,
    },
    /// A copy of a segment of the partition in the object store is now `segment` (Kafka's
    /// RemoteLogSegmentMetadataRecord and its updates). Written by the partition's leader
    /// in `leader_epoch`, and refused unless that is the partition's leader epoch, so a
    /// deposed leader never records a copy or a deletion. Its state moves only forward:
    /// a new copy starts (an id not listed yet), a started copy finishes (and then must
    /// begin past every other finished copy's end: nothing is copied twice), any copy
    /// starts being deleted.
    RemoteSegment {
        topic_id: Uuid,
        partition: i32,
        leader_epoch: i32,
        segment: RemoteSegment,
    },
    /// A copy's objects are all deleted (DELETE_SEGMENT_FINISHED): it is no longer listed.
    /// Only a copy being deleted may go, by the leader in `leader_epoch`.
    RemoveRemoteSegment {
        topic_id: Uuid,
        partition: i32,
        leader_epoch: i32,
        id: Uuid,
    },
}

/// Where a copy of a segment in the object store stands (Kafka's RemoteLogSegmentState;
/// DELETE_SEGMENT_FINISHED is the copy's removal from metadata,
/// [`MetadataRecord::RemoveRemoteSegment`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RemoteSegmentState {
    /// Being copied: its objects may be partial; never read. A leader that finds one it
    /// did not start (its copier died) deletes it.
    CopyStarted,
    /// Whole in the object store: served to fetches below the local log, and the local
    /// segment it copies may be deleted.
    CopyFinished,
    /// Being deleted (retention, or an abandoned copy): never read again.
    DeleteStarted,
}

/// One copy of one of a partition's segments in the object store (Kafka's
/// RemoteLogSegmentMetadata). `id` is chosen per copy attempt, so two attempts at one
/// segment never share objects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteSegment {
    pub id: Uuid,
    pub base_offset: i64,
    /// Its last offset (inclusive).
    pub end_offset: i64,
    pub max_timestamp: i64,
    pub size_bytes: u64,
    /// The leader epochs that start in it, with their first offsets (the leader-epoch
    /// cache's entries for its range: OffsetsForLeaderEpoch below the local log).
    pub leader_epochs: Vec<(i32, i64)>,
    pub state: RemoteSegmentState,
    /// The broker that started the copy.
    pub broker: i32,
}

/// A quota value (Kafka's doubles), compared by bits so records stay `Eq`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(transparent)]
pub struct QuotaValue(pub f64);

impl PartialEq for QuotaValue {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for QuotaValue {}

/// One ACL as cluster metadata keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AclEntry {
    pub resource_type: i8,
    pub resource_name: String,
    pub pattern_type: i8,
    pub principal: String,
    pub host: String,
    pub operation: i8,
    pub permission_type: i8,
}
