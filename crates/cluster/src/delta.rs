//! What changed between two metadata images, as one node sees it (Kafka's `TopicsDelta` /
//! `LocalReplicaChanges`): the partitions it must open, close or re-role, and the configs to
//! re-apply. Pure: the broker's replica manager turns a delta into file-system work, so every
//! partition opened or removed follows from a metadata record and nothing else.

use std::collections::BTreeSet;

use uuid::Uuid;

use crate::{MetadataImage, PartitionImage};

/// One partition of a topic, named as the broker's files and maps name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionRef {
    pub topic: String,
    pub topic_id: Uuid,
    pub partition: i32,
}

/// The changes one node applies after a metadata change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageDelta {
    /// Partitions this node now hosts and did not before (new topics and partitions, or a
    /// replica newly assigned here), with their state in the new image.
    pub created: Vec<(PartitionRef, PartitionImage)>,
    /// Partitions this node hosted and no longer does (topic deleted, replica moved away).
    pub removed: Vec<PartitionRef>,
    /// Partitions hosted before and after that changed (a new partition epoch: leader,
    /// leader epoch, ISR or replicas).
    pub leadership: Vec<(PartitionRef, PartitionImage)>,
    /// Topics (hosted before and after) whose configs changed.
    pub reconfigured: BTreeSet<String>,
    /// Dynamic broker configs changed: every topic's effective config may have.
    pub broker_configs_changed: bool,
}

impl ImageDelta {
    /// The changes node `node` applies to go from `old` to `new`. Topics are matched by id,
    /// so a topic deleted and recreated under its name is a removal plus a creation.
    pub fn between(old: &MetadataImage, new: &MetadataImage, node: i32) -> Self {
        let hosted = |p: &PartitionImage| p.replicas.contains(&node);
        let mut delta = ImageDelta {
            broker_configs_changed: old.all_broker_configs() != new.all_broker_configs(),
            ..Default::default()
        };
        for t in new.topics() {
            let before = old.topic_by_id(&t.topic_id);
            if before.is_some_and(|b| b.configs != t.configs) {
                delta.reconfigured.insert(t.name.clone());
            }
            for (&index, p) in &t.partitions {
                if !hosted(p) {
                    continue;
                }
                let at = PartitionRef {
                    topic: t.name.clone(),
                    topic_id: t.topic_id,
                    partition: index,
                };
                match before
                    .and_then(|b| b.partitions.get(&index))
                    .filter(|b| hosted(b))
                {
                    None => delta.created.push((at, p.clone())),
                    // Every change of the partition (a new partition epoch) is applied, even one
                    // that ends where it started (an ISR expanded, then shrunk back, between
                    // two catch-ups): it is what settles the leader's pending ISR change.
                    Some(b)
                        if b.leader != p.leader
                            || b.leader_epoch != p.leader_epoch
                            || b.isr != p.isr
                            || b.replicas != p.replicas
                            || b.partition_epoch != p.partition_epoch =>
                    {
                        delta.leadership.push((at, p.clone()))
                    }
                    Some(_) => {}
                }
            }
        }
        for t in old.topics() {
            let after = new.topic_by_id(&t.topic_id);
            for (&index, p) in &t.partitions {
                let still = after
                    .and_then(|a| a.partitions.get(&index))
                    .is_some_and(hosted);
                if hosted(p) && !still {
                    delta.removed.push(PartitionRef {
                        topic: t.name.clone(),
                        topic_id: t.topic_id,
                        partition: index,
                    });
                }
            }
        }
        delta
    }

    pub fn is_empty(&self) -> bool {
        self == &ImageDelta::default()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::MetadataRecord;

    fn apply(img: &MetadataImage, records: &[MetadataRecord]) -> MetadataImage {
        let mut next = img.clone();
        for r in records {
            next.apply(r).unwrap();
        }
        next
    }

    fn topic(name: &str, id: u128) -> MetadataRecord {
        MetadataRecord::Topic {
            name: name.into(),
            topic_id: Uuid::from_u128(id),
            configs: BTreeMap::new(),
        }
    }

    fn partition(id: u128, p: i32, replicas: &[i32]) -> MetadataRecord {
        MetadataRecord::Partition {
            topic_id: Uuid::from_u128(id),
            partition: p,
            leader: replicas[0],
            leader_epoch: 0,
            replicas: replicas.to_vec(),
            isr: replicas.to_vec(),
        }
    }

    /// Found by the simulation (seed 84): a leader asked to add a replica to the ISR, the
    /// controller added it, then fenced it again before the leader caught up; both changes
    /// arrived in one catch-up, the ISR looked unchanged, and the leader's pending addition
    /// was never settled, so it never asked again (under-replicated for good).
    #[test]
    fn a_change_that_ends_where_it_started_is_still_a_change() {
        let base = apply(
            &MetadataImage::default(),
            &[topic("a", 1), partition(1, 0, &[1, 2])],
        );
        let change = |isr: Vec<i32>, epoch: i32| MetadataRecord::PartitionChange {
            topic_id: Uuid::from_u128(1),
            partition: 0,
            leader: None,
            isr: Some(isr),
            replicas: None,
            expected_partition_epoch: Some(epoch),
        };
        let shrunk = apply(&base, &[change(vec![1], 0)]);
        let back_and_forth = apply(&shrunk, &[change(vec![1, 2], 1), change(vec![1], 2)]);
        let d = ImageDelta::between(&shrunk, &back_and_forth, 1);
        assert_eq!(d.leadership.len(), 1, "{d:?}");
        assert_eq!(d.leadership[0].1.isr, vec![1]);
    }

    #[test]
    fn creation_growth_config_and_removal_as_one_node_sees_them() {
        let empty = MetadataImage::default();
        let one = apply(
            &empty,
            &[topic("a", 1), partition(1, 0, &[1]), partition(1, 1, &[2])],
        );
        let d = ImageDelta::between(&empty, &one, 1);
        assert_eq!(
            d.created.len(),
            1,
            "only the partition with a replica on node 1"
        );
        assert_eq!(
            (d.created[0].0.topic.as_str(), d.created[0].0.partition),
            ("a", 0)
        );
        assert!(ImageDelta::between(&one, &one, 1).is_empty());

        let grown = apply(&one, &[partition(1, 2, &[1, 2])]);
        let d = ImageDelta::between(&one, &grown, 1);
        assert_eq!(d.created.len(), 1);
        assert_eq!(d.created[0].0.partition, 2);
        assert!(d.removed.is_empty() && d.reconfigured.is_empty());

        let configured = apply(
            &grown,
            &[MetadataRecord::TopicConfig {
                topic_id: Uuid::from_u128(1),
                configs: BTreeMap::from([("retention.ms".into(), "1".into())]),
            }],
        );
        let d = ImageDelta::between(&grown, &configured, 1);
        assert_eq!(d.reconfigured, BTreeSet::from(["a".to_string()]));
        assert!(d.created.is_empty());

        let broker_cfg = apply(
            &configured,
            &[MetadataRecord::BrokerConfig {
                resource: String::new(),
                configs: BTreeMap::from([("log.retention.ms".into(), "5".into())]),
            }],
        );
        assert!(ImageDelta::between(&configured, &broker_cfg, 1).broker_configs_changed);

        // Deleted and recreated under the same name: a removal and a creation.
        let recreated = apply(
            &broker_cfg,
            &[
                MetadataRecord::RemoveTopic {
                    topic_id: Uuid::from_u128(1),
                },
                topic("a", 9),
                partition(9, 0, &[1]),
            ],
        );
        let d = ImageDelta::between(&broker_cfg, &recreated, 1);
        let removed: Vec<i32> = d.removed.iter().map(|r| r.partition).collect();
        assert_eq!(removed, vec![0, 2]);
        assert!(d.removed.iter().all(|r| r.topic_id == Uuid::from_u128(1)));
        assert_eq!(d.created.len(), 1);
        assert_eq!(d.created[0].0.topic_id, Uuid::from_u128(9));

        // A new leader: a leadership change for every node hosting a replica; so is an ISR
        // change (the leader counts its high watermark over the new ISR).
        let three = apply(&recreated, &[topic("b", 5), partition(5, 0, &[1, 2, 3])]);
        let moved = apply(
            &three,
            &[MetadataRecord::PartitionChange {
                expected_partition_epoch: None,
                topic_id: Uuid::from_u128(5),
                partition: 0,
                leader: Some(2),
                isr: None,
                replicas: None,
            }],
        );
        for node in [1, 2, 3] {
            let d = ImageDelta::between(&three, &moved, node);
            assert_eq!(d.leadership.len(), 1, "node {node}");
            assert_eq!(
                (d.leadership[0].1.leader, d.leadership[0].1.leader_epoch),
                (2, 1)
            );
        }
        assert!(ImageDelta::between(&three, &moved, 4).is_empty());
        let shrunk = apply(
            &moved,
            &[MetadataRecord::PartitionChange {
                expected_partition_epoch: None,
                topic_id: Uuid::from_u128(5),
                partition: 0,
                leader: None,
                isr: Some(vec![2, 3]),
                replicas: None,
            }],
        );
        let d = ImageDelta::between(&moved, &shrunk, 2);
        assert_eq!(d.leadership.len(), 1);
        assert_eq!(d.leadership[0].1.isr, vec![2, 3]);
        assert!(ImageDelta::between(&shrunk, &shrunk, 2).is_empty());
    }
}
