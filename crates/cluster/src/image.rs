use std::collections::{BTreeMap, HashMap};

use uuid::Uuid;

use crate::{MetadataError, MetadataRecord};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionImage {
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicImage {
    pub name: String,
    pub topic_id: Uuid,
    pub configs: BTreeMap<String, String>,
    pub partitions: BTreeMap<i32, PartitionImage>,
}

/// The cluster's metadata as of some metadata log offset. Pure: no I/O.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataImage {
    by_name: BTreeMap<String, Uuid>,
    topics: HashMap<Uuid, TopicImage>,
    /// Producer ids below this were handed out (see `MetadataRecord::ProducerIds`).
    producer_ids_end: i64,
    /// Dynamic broker configs by resource ("" = cluster default, else a node id).
    broker_configs: BTreeMap<String, BTreeMap<String, String>>,
}

impl MetadataImage {
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
                        replicas: replicas.clone(),
                        isr: isr.clone(),
                    },
                );
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
            MetadataRecord::ProducerIds { next_block_end } => {
                // Never backwards, whatever the log says.
                self.producer_ids_end = self.producer_ids_end.max(*next_block_end);
            }
        }
        Ok(())
    }

    /// The end of the last producer id block handed out (0: none yet).
    /// Dynamic broker configs of a resource ("" = cluster default, else a node id).
    /// Every resource's dynamic broker configs.
    pub fn all_broker_configs(&self) -> &BTreeMap<String, BTreeMap<String, String>> {
        &self.broker_configs
    }

    pub fn broker_configs(&self, resource: &str) -> Option<&BTreeMap<String, String>> {
        self.broker_configs.get(resource)
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
