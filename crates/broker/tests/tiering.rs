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
use strata_broker::{Broker, BrokerConfig};
use strata_cluster::{MetadataRecord, RemoteSegment, RemoteSegmentState};
use strata_protocol::Request;
use strata_records::{BatchBuilder, Compression, Record};
use strata_storage::{Clock, SimFs, SystemClock};

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

/// A broker on a simulated disk whose object store is a real directory.
fn broker(remote: &std::path::Path) -> Arc<Broker> {
    let config = BrokerConfig {
        data_dir: PathBuf::from("/data"),
        remote_log_storage_system_enable: true,
        remote_log_storage_url: Some(format!("file://{}", remote.display())),
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
    let remote_dir = tempfile::tempdir().unwrap();
    let broker = broker(remote_dir.path());
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

    let tiering = broker.tiering.clone().unwrap();
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
    let local_start = {
        let log = partition.log();
        assert!(log.segment_count() < segments);
        assert!(log.log_start_offset() > 0);
        assert!(log.log_start_offset() <= remote.last().unwrap().end_offset + 1);
        log.log_start_offset()
    };
    // Consumers see the whole log: ListOffsets' earliest is the first copy's, KIP-1005's
    // earliest-local the local log's, and a fetch from 0 reads the object store, then disk.
    assert_eq!(list_offset(&broker, "events", -2).await, 0);
    assert_eq!(list_offset(&broker, "events", -4).await, local_start);
    let mut offset = 0;
    let mut read = Vec::new();
    while offset < 60 {
        let (code, records) = fetch(&broker, "events", offset, 3000).await;
        assert_eq!(code, 0, "at {offset}");
        let got = strata_records::decode_records(records).unwrap();
        assert!(!got.is_empty(), "nothing at {offset}");
        for r in got {
            if r.offset >= offset {
                read.push((r.offset, r.value.unwrap()));
            }
        }
        offset = read.last().unwrap().0 + 1;
    }
    assert_eq!(
        read.iter().map(|r| r.0).collect::<Vec<_>>(),
        (0..60).collect::<Vec<i64>>()
    );
    for (i, (_, v)) in read.iter().enumerate() {
        assert!(v.starts_with(format!("record-{i:05}").as_bytes()));
    }
    // A fetch from inside a copy starts at the batch holding the offset.
    let (_, records) = fetch(&broker, "events", 7, 100).await;
    let got = strata_records::decode_records(records).unwrap();
    assert_eq!(
        got[0].offset, 7,
        "one batch at least, from the one holding the offset"
    );
}

async fn list_offset(broker: &Arc<Broker>, topic: &str, timestamp: i64) -> i64 {
    let p = list_offsets_request::ListOffsetsPartition::default()
        .with_partition_index(0)
        .with_timestamp(timestamp);
    let t = list_offsets_request::ListOffsetsTopic::default()
        .with_name(TopicName(s(topic)))
        .with_partitions(vec![p]);
    let r: ListOffsetsResponse = call(
        broker,
        ApiKey::ListOffsets,
        9,
        Request::ListOffsets(
            ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![t]),
        ),
    )
    .await;
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.offset
}

async fn fetch(broker: &Arc<Broker>, topic: &str, offset: i64, max_bytes: i32) -> (i16, Bytes) {
    let p = fetch_request::FetchPartition::default()
        .with_partition(0)
        .with_fetch_offset(offset)
        .with_partition_max_bytes(max_bytes);
    let t = fetch_request::FetchTopic::default()
        .with_topic(TopicName(s(topic)))
        .with_partitions(vec![p]);
    let r: FetchResponse = call(
        broker,
        ApiKey::Fetch,
        12,
        Request::Fetch(
            FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(0)
                .with_max_bytes(max_bytes)
                .with_topics(vec![t]),
        ),
    )
    .await;
    let p = &r.responses[0].partitions[0];
    (p.error_code, p.records.clone().unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_copy_is_deleted_and_copied_again() {
    let remote_dir = tempfile::tempdir().unwrap();
    let broker = broker(remote_dir.path());
    tiered_topic(&broker, "events");
    for i in 0..20 {
        assert_eq!(produce(&broker, "events", batch(i)).await, 0);
    }
    let image = broker.image();
    let topic = image.topic("events").unwrap();
    // A copier that died after recording its start and copying part of the files.
    let abandoned = RemoteSegment {
        id: uuid::Uuid::new_v4(),
        base_offset: 0,
        end_offset: 5,
        max_timestamp: 0,
        size_bytes: 0,
        leader_epochs: Vec::new(),
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
    let tiering = broker.tiering.clone().unwrap();
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

/// Total retention applies to the whole log: the oldest copies are deleted from the store
/// and the metadata, and the log start moves past them; deleting the topic deletes every
/// copy left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_the_oldest_copies_and_topic_deletion_the_rest() {
    let remote_dir = tempfile::tempdir().unwrap();
    let broker = broker(remote_dir.path());
    tiered_topic(&broker, "events");
    for i in 0..60 {
        assert_eq!(produce(&broker, "events", batch(i)).await, 0);
    }
    let tiering = broker.tiering.clone().unwrap();
    while broker.tiering_pass(&tiering).await.copied > 0 {}
    let before = remote_of(&broker, "events");
    assert!(before.len() > 4);
    let topic_id = broker.image().topic("events").unwrap().topic_id;
    let configs: BTreeMap<String, String> = [
        ("remote.storage.enable", "true"),
        ("segment.bytes", "2048"),
        ("local.retention.bytes", "4096"),
        ("retention.bytes", "8192"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    broker
        .alter_topic_configs("events", configs, false)
        .unwrap();
    let stats = broker.tiering_pass(&tiering).await;
    assert!(stats.deleted > 0, "{stats:?}");
    let after = remote_of(&broker, "events");
    assert_eq!(after.len() + stats.deleted, before.len());
    assert_eq!(after[0].id, before[stats.deleted].id, "the oldest went");
    let start = list_offset(&broker, "events", -2).await;
    assert_eq!(start, after[0].base_offset);
    let (code, _) = fetch(&broker, "events", 0, 1000).await;
    assert_eq!(code, 1, "OFFSET_OUT_OF_RANGE below the new log start");
    let listed = tiering
        .storage
        .list_partition("events", topic_id, 0)
        .await
        .unwrap();
    assert_eq!(listed.len(), after.len());
    broker.delete_topic("events").unwrap();
    for _ in 0..100 {
        if tiering
            .storage
            .list_partition("events", topic_id, 0)
            .await
            .unwrap()
            .is_empty()
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the deleted topic's copies are still in the store");
}

/// Objects no copy in the metadata names (a deleted topic's copies left by a crash, or a
/// deposed leader's late writes) are deleted by the orphan sweep once old enough; every
/// copy the metadata names stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_orphan_sweep_deletes_only_what_no_metadata_names() {
    let remote_dir = tempfile::tempdir().unwrap();
    let broker = broker(remote_dir.path());
    tiered_topic(&broker, "events");
    for i in 0..40 {
        assert_eq!(produce(&broker, "events", batch(i)).await, 0);
    }
    let tiering = broker.tiering.clone().unwrap();
    while broker.tiering_pass(&tiering).await.copied > 0 {}
    let named = remote_of(&broker, "events");
    assert!(named.len() > 2);
    let topic_id = broker.image().topic("events").unwrap().topic_id;
    // A gone topic's copy (whole) and a live partition's copy the metadata never named
    // (no manifest).
    let plant = |dir: String, base: i64, suffixes: &[&str]| {
        let dir = remote_dir.path().join(dir).join("0");
        std::fs::create_dir_all(&dir).unwrap();
        let id = uuid::Uuid::new_v4();
        for suffix in suffixes {
            std::fs::write(dir.join(format!("{base:020}-{id}.{suffix}")), b"x").unwrap();
        }
    };
    let gone = uuid::Uuid::new_v4();
    plant(
        format!("old-topic-{gone}"),
        0,
        &["log", "index", "manifest.json"],
    );
    plant(format!("events-{topic_id}"), 9000, &["log", "index"]);
    let listed = || async {
        let copies = tiering.storage.list_copies().await.unwrap();
        copies.len()
    };
    assert_eq!(listed().await, named.len() + 2);
    // Too young to be taken for orphans.
    assert_eq!(broker.sweep_orphans(&tiering, 3_600_000).await, Ok(0));
    assert_eq!(listed().await, named.len() + 2);
    assert_eq!(broker.sweep_orphans(&tiering, 0).await, Ok(2));
    let left = tiering
        .storage
        .list_partition("events", topic_id, 0)
        .await
        .unwrap();
    let ids: Vec<_> = left.iter().map(|(_, id, whole)| (*id, *whole)).collect();
    let want: Vec<_> = named.iter().map(|s| (s.id, true)).collect();
    assert_eq!(ids, want);
    assert_eq!(listed().await, named.len());
    // The copies still read: offset 0 is in the first.
    let (code, bytes) = fetch(&broker, "events", 0, 1000).await;
    assert_eq!((code, bytes.is_empty()), (0, false));
}

async fn epoch_end(broker: &Arc<Broker>, topic: &str, epoch: i32) -> (i32, i64) {
    let p = offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
        .with_partition(0)
        .with_current_leader_epoch(-1)
        .with_leader_epoch(epoch);
    let t = offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
        .with_topic(TopicName(s(topic)))
        .with_partitions(vec![p]);
    let r: OffsetForLeaderEpochResponse = call(
        broker,
        ApiKey::OffsetForLeaderEpoch,
        4,
        Request::OffsetForLeaderEpoch(
            OffsetForLeaderEpochRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![t]),
        ),
    )
    .await;
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    (p.leader_epoch, p.end_offset)
}

/// OffsetsForLeaderEpoch about an epoch whose records are only in the object store answers
/// from the copies' epochs: the true end of that epoch, not the local log's start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_epoch_only_in_the_store_ends_where_the_copies_say() {
    let remote_dir = tempfile::tempdir().unwrap();
    let broker = broker(remote_dir.path());
    tiered_topic(&broker, "events");
    for i in 0..30 {
        assert_eq!(produce(&broker, "events", batch(i)).await, 0);
    }
    // A new leader epoch from offset 30 on: the leader lost, then elected again.
    let image = broker.image();
    let topic = image.topic("events").unwrap();
    let before = topic.partitions[&0].clone();
    for leader in [-1, before.leader] {
        let now = broker.image().topic("events").unwrap().partitions[&0].clone();
        broker
            .commit_remote_records(&[MetadataRecord::PartitionChange {
                topic_id: topic.topic_id,
                partition: 0,
                leader: Some(leader),
                isr: None,
                replicas: None,
                expected_partition_epoch: Some(now.partition_epoch),
            }])
            .unwrap();
    }
    let partition = broker.partition("events", 0).unwrap();
    let epoch = partition.leader_epoch();
    assert!(epoch > before.leader_epoch, "{epoch}");
    for i in 30..90 {
        assert_eq!(produce(&broker, "events", batch(i)).await, 0);
    }
    let tiering = broker.tiering.clone().unwrap();
    while broker.tiering_pass(&tiering).await.copied > 0 {}
    partition.log().apply_retention().unwrap();
    let local_start = partition.log().log_start_offset();
    assert!(
        local_start > 30,
        "local retention trimmed past epoch {}: {local_start}",
        before.leader_epoch
    );
    assert_eq!(
        epoch_end(&broker, "events", before.leader_epoch).await,
        (before.leader_epoch, 30)
    );
    assert_eq!(epoch_end(&broker, "events", epoch).await, (epoch, 90));
}
