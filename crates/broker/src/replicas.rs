//! The replica manager: the only code that opens, closes and reconfigures partitions after
//! start. Every metadata change is committed through [`Broker::commit_metadata`], which takes
//! the images before and after, computes what this node must do
//! ([`strata_cluster::ImageDelta`]) and applies it: removed partitions are closed and their
//! files deleted, created ones opened, changed configs re-applied. Admin handlers only build
//! metadata records; at start the image replayed from the metadata log is opened the same way
//! (in the background, see `state.rs`).
//!
//! Deltas are applied in the order their records were committed: the `applying` lock is
//! taken before the metadata lock is released, and held while the delta is applied (lock
//! order: metadata, applying, partitions, loading; never the metadata lock while applying,
//! and the group coordinator's work for a deleted topic after `applying` is released).

use std::collections::BTreeMap;
use std::sync::{Arc, MutexGuard};

use strata_cluster::{ImageDelta, MetadataImage, MetadataRecord};
use strata_storage::RecoveryHint;
use tracing::{info, warn};

use crate::state::{is_internal_topic, Applied, MetadataStore, TopicError};
use crate::Broker;

impl Broker {
    /// Commits `records` as one change under the held metadata lock, then applies to this
    /// node's partitions what changed. Returns the new image.
    ///
    /// A standalone node appends to its metadata log (synced). A cluster member writes
    /// through the quorum (forwarded to its leader) and, once the change is applied to this
    /// node's image, catches its partitions up with every change applied so far, its own and
    /// other nodes' (the same step the quorum follower task runs for changes made elsewhere).
    pub(crate) fn commit_metadata(
        &self,
        mut metadata: MutexGuard<'_, MetadataStore>,
        records: &[MetadataRecord],
    ) -> Result<Arc<MetadataImage>, TopicError> {
        let log = match &mut *metadata {
            MetadataStore::Local(log) => log,
            MetadataStore::Quorum(member) => {
                let write = member.quorum.write(records.to_vec());
                let result = member.block_on(write);
                drop(metadata);
                // Whatever happened, apply what the quorum applied meanwhile.
                let caught_up = self.catch_up_with_quorum();
                result?;
                return caught_up;
            }
        };
        let old = log.image();
        log.append(records)?;
        let new = log.image();
        let _applying = self.applying.lock().unwrap_or_else(|p| p.into_inner());
        drop(metadata);
        let delta = ImageDelta::between(&old, &new, self.config.node_id);
        let applied = self.apply_delta(&new, &delta);
        drop(_applying);
        self.after_delta(&new, &delta);
        applied.map(|()| new)
    }

    /// Outside the `applying` lock: the group coordinator's lock is taken before this one
    /// elsewhere (creating `__consumer_offsets` on first use commits metadata under it).
    fn after_delta(&self, new: &MetadataImage, delta: &ImageDelta) {
        for r in &delta.removed {
            if new.topic_by_id(&r.topic_id).is_none() {
                self.delete_remote_copies(&r.topic, r.topic_id, r.partition);
            }
        }
        let deleted: std::collections::BTreeSet<&str> =
            delta.removed.iter().map(|r| r.topic.as_str()).collect();
        for topic in deleted {
            if !is_internal_topic(topic) && new.topic(topic).is_none() {
                self.forget_topic_offsets(topic);
            }
        }
    }

    /// On a cluster member: applies to this node's partitions every change the quorum
    /// applied since the last call (one delta from the image applied before to the latest),
    /// and makes the latest image the one this node serves from. Returns that image.
    pub fn catch_up_with_quorum(&self) -> Result<Arc<MetadataImage>, TopicError> {
        let Some(member) = &self.quorum else {
            return Ok(self.image());
        };
        let applying = self.applying.lock().unwrap_or_else(|p| p.into_inner());
        let published = member.quorum.subscribe().borrow().clone();
        let old = member
            .applied
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if published.index <= old.index {
            return Ok(old.image);
        }
        let delta = ImageDelta::between(&old.image, &published.image, self.config.node_id);
        let applied = self.apply_delta(&published.image, &delta);
        *member.applied.write().unwrap_or_else(|p| p.into_inner()) = Applied {
            index: published.index,
            image: published.image.clone(),
        };
        drop(applying);
        self.after_delta(&published.image, &delta);
        applied.map(|()| published.image)
    }

    /// Makes this node's partitions match `new`: removals first (a topic deleted and
    /// recreated under its name in one delta frees the name), then creations, then configs.
    /// Takes no metadata lock (it is after it in the lock order).
    fn apply_delta(&self, new: &MetadataImage, delta: &ImageDelta) -> Result<(), TopicError> {
        let mut removed: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for r in &delta.removed {
            removed.entry(&r.topic).or_default().push(r.partition);
        }
        for (topic, indexes) in &removed {
            self.close_partitions(topic, indexes);
        }
        if !removed.is_empty() {
            if let Err(e) = self.checkpoint_log_start_offsets() {
                warn!(error = %e, "could not rewrite the log start offset checkpoint");
            }
        }
        let dynamic = self.dynamic_defaults_of(new);
        let mut first_error = None;
        for (at, _) in &delta.created {
            let Some(topic) = new.topic_by_id(&at.topic_id) else {
                continue;
            };
            // A replica's high watermark comes from its leader, never from what it finds in
            // a directory left from before.
            let hint = RecoveryHint {
                high_watermark: self.quorum().is_some().then_some(0),
                ..RecoveryHint::default()
            };
            if let Err(e) = self.open_partition(topic, at.partition, hint, &dynamic) {
                warn!(topic = %at.topic, partition = at.partition, error = %e, "could not open a new partition");
                first_error.get_or_insert(e);
            }
        }
        // A new leader epoch is stamped on what this replica appends from now on. (Leading
        // versus following arrives with replication: on one node the leader is this node.)
        for (at, p) in &delta.leadership {
            if let Some(partition) = self.partition(&at.topic, at.partition) {
                let min_isr = partition.log().config().min_insync_replicas.max(1) as usize;
                let was_leading =
                    partition.is_leader() && partition.leader_epoch() == p.leader_epoch;
                let isr_before = partition.isr().0.len();
                self.set_role(&partition, p, min_isr);
                // ISR changes of a partition this node goes on leading, whoever made them
                // (this leader's AlterPartition, or the controller fencing a broker).
                if was_leading && partition.is_leader() && p.isr.len() != isr_before {
                    let counter = if p.isr.len() < isr_before {
                        &self.metrics.isr_shrinks
                    } else {
                        &self.metrics.isr_expands
                    };
                    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                if self.quorum.is_some() {
                    info!(topic = %at.topic, partition = at.partition, leader = p.leader, leader_epoch = p.leader_epoch, isr = ?p.isr, role = if partition.is_leader() { "leader" } else { "follower" }, "partition leadership or ISR changed");
                }
                if !was_leading && partition.is_leader() {
                    self.metrics
                        .leader_elections
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
        if delta.broker_configs_changed {
            self.reconfigure(new, None);
        } else {
            for topic in &delta.reconfigured {
                self.reconfigure(new, Some(topic));
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Stops serving `topic`'s `indexes` and deletes their files (a partition still queued
    /// for recovery is dropped; one being recovered is waited for).
    fn close_partitions(&self, topic: &str, indexes: &[i32]) {
        self.cancel_recovery(topic, indexes);
        let closed = {
            let mut map = self.partitions_mut();
            let mut closed = Vec::new();
            if let Some(t) = map.get_mut(topic) {
                for i in indexes {
                    closed.extend(t.remove(i));
                }
                if t.is_empty() {
                    map.remove(topic);
                }
            }
            closed
        };
        for p in closed {
            p.log().mark_deleted();
        }
        for &p in indexes {
            let dir = self.partition_dir(topic, p);
            if let Err(e) = self.fs.remove_dir_all(&dir) {
                warn!(dir = %dir.display(), error = %e, "could not remove partition directory; it is removed at next start");
            }
        }
        info!(
            topic,
            partitions = indexes.len(),
            "partitions closed and removed"
        );
    }
}
