//! Tiered storage in the broker (issue 16): sealed segments of a topic with
//! `remote.storage.enable` copied to the object store and recorded in metadata, local
//! retention deleting only what is copied, and an interrupted copy cleaned up.

mod common;

use common::call;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use strata_broker::tiering::Tiering;
use strata_broker::{Broker, BrokerConfig};
use strata_cluster::{MetadataRecord, RemoteSegment, RemoteSegmentState};
use strata_protocol::Request;
use strata_records::{BatchBuilder, Compression, Record};
use strata_storage::{Clock, SimFs, SystemClock};
use strata_tiered::{RemoteConfig, RemoteStorage};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn batch(i: usize) -> Bytes {
    let mut b = BatchBuilder::new(Compression::None);
    b.push(Record {
        value: Some(Bytes::from(format!("record-{i:05}-{}", "x".repeat(200)))),
        timestamp_ms: SystemClock.now_ms(),
        ..Default::default()
    });
    b.build().unwrap()
}

async fn produce(broker: &Arc<Broker>, topic: &str, batch: Bytes) -> i16 {
    let data = produce_request::PartitionProduceData::default()
        .with_index(0)
        .with_records(Some(batch));
    let t = produce_request::TopicProduceData::default()
        .with_name(TopicName(s(topic)))
        .with_partition_data(vec![data]);
    let r: ProduceResponse = call(
        broker,
        ApiKey::Produce,
        9,
        Request::Produce(
            ProduceRequest::default()
                .with_acks(-1)
                .with_timeout_ms(1000)
                .with_topic_data(vec![t]),
        ),
    )
    .await;
    r.responses[0].partition_responses[0].error_code
}

fn broker() -> Arc<Broker> {
    let config = BrokerConfig {
        data_dir: PathBuf::from("/data"),
        remote_log_storage_system_enable: true,
        ..BrokerConfig::default()
    };
    Arc::new(Broker::open(config, Arc::new(SimFs::new()), Arc::new(SystemClock)).unwrap())
}

fn tiered_topic(broker: &Broker, name: &str) {
    let configs: BTreeMap<String, String> = [
        ("remote.storage.enable", "true"),
        ("segment.bytes", "2048"),
        ("local.retention.bytes", "4096"),
        ("retention.ms", "-1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    broker.create_topic(name, 1, -1, configs, false).unwrap();
}

fn remote_of(broker: &Broker, topic: &str) -> Vec<RemoteSegment> {
    broker.image().topic(topic).unwrap().partitions[&0]
        .remote_segments
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_segments_are_copied_recorded_and_only_then_deleted_locally() {
    let broker = broker();
    tiered_topic(&broker, "events");
    for i in 0..60 {
        assert_eq!(produce(&broker, "events", batch(i)).await, 0);
    }
    let partition = broker.partition("events", 0).unwrap();
    let segments = partition.log().segment_count();
    assert!(segments > 4, "{segments}");
    // Nothing copied: local retention deletes nothing, though the log is past 4 KiB.
    partition.log().apply_retention().unwrap();
    assert_eq!(partition.log().segment_count(), segments);

    let remote_dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", remote_dir.path().display());
    let tiering = Tiering::new(RemoteStorage::open(&url, &RemoteConfig::default()).unwrap());
    let mut copied = 0;
    loop {
        let stats = broker.tiering_pass(&tiering).await;
        assert_eq!(stats.failed, 0, "{stats:?}");
        if stats.copied == 0 {
            break;
        }
        copied += stats.copied;
    }
    assert_eq!(
        copied,
        segments - 1,
        "every sealed segment, not the active one"
    );
    let remote = remote_of(&broker, "events");
    assert_eq!(remote.len(), copied);
    assert!(remote
        .iter()
        .all(|s| s.state == RemoteSegmentState::CopyFinished));
    assert!(
        remote
            .windows(2)
            .all(|w| w[0].end_offset + 1 == w[1].base_offset),
        "contiguous, none twice: {remote:?}"
    );
    assert_eq!(remote[0].base_offset, 0);
    let listed = tiering
        .storage
        .list_partition(
            "events",
            broker.image().topic("events").unwrap().topic_id,
            0,
        )
        .await
        .unwrap();
    assert_eq!(listed.len(), copied);
    assert!(listed.iter().all(|(_, _, whole)| *whole));
    // Copied: local retention may now delete down to local.retention.bytes.
    partition.log().apply_retention().unwrap();
    let log = partition.log();
    assert!(log.segment_count() < segments);
    assert!(log.log_start_offset() > 0);
    assert!(log.log_start_offset() <= remote.last().unwrap().end_offset + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_copy_is_deleted_and_copied_again() {
    let broker = broker();
    tiered_topic(&broker, "events");
    for i in 0..20 {
        assert_eq!(produce(&broker, "events", batch(i)).await, 0);
    }
    let remote_dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", remote_dir.path().display());
    let storage = RemoteStorage::open(&url, &RemoteConfig::default()).unwrap();
    let image = broker.image();
    let topic = image.topic("events").unwrap();
    // A copier that died after recording its start and copying part of the files.
    let abandoned = RemoteSegment {
        id: uuid::Uuid::new_v4(),
        base_offset: 0,
        end_offset: 5,
        max_timestamp: 0,
        size_bytes: 0,
        leader_epochs: BTreeMap::new(),
        state: RemoteSegmentState::CopyStarted,
        broker: 0,
    };
    broker
        .commit_remote_records(&[MetadataRecord::RemoteSegment {
            topic_id: topic.topic_id,
            partition: 0,
            leader_epoch: topic.partitions[&0].leader_epoch,
            segment: abandoned.clone(),
        }])
        .unwrap();
    let tiering = Tiering::new(storage);
    let stats = broker.tiering_pass(&tiering).await;
    assert_eq!(
        (stats.cleaned, stats.copied, stats.failed),
        (1, 1, 0),
        "{stats:?}"
    );
    let remote = remote_of(&broker, "events");
    assert_eq!(remote.len(), 1);
    assert_ne!(remote[0].id, abandoned.id);
    assert_eq!(remote[0].state, RemoteSegmentState::CopyFinished);
}
