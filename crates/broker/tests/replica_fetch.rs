//! The leader's side of replication through Kafka's Fetch (v12): a follower (replica id ≥ 0)
//! reads up to the log end offset, and one whose last fetched epoch ends earlier on the
//! leader (or is unknown there) is told where to truncate (KIP-279 diverging epoch) instead
//! of being given records.

mod common;

use common::call;

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use strata_broker::{Broker, BrokerConfig};
use strata_protocol::Request;
use strata_records::{decode_records, BatchBuilder, Compression, Record};
use strata_storage::{Clock, SimFs, SystemClock};

fn batch(n: usize) -> Bytes {
    let mut b = BatchBuilder::new(Compression::None);
    for i in 0..n {
        b.push(Record {
            value: Some(Bytes::from(format!("v{i}"))),
            timestamp_ms: SystemClock.now_ms(),
            ..Default::default()
        });
    }
    b.build().unwrap()
}

/// A standalone broker (node 1) with topic "t" of one partition.
fn broker_with_topic() -> Arc<Broker> {
    let config = BrokerConfig {
        data_dir: PathBuf::from("/data"),
        ..BrokerConfig::default()
    };
    let broker =
        Arc::new(Broker::open(config, Arc::new(SimFs::new()), Arc::new(SystemClock)).unwrap());
    broker
        .create_topic("t", 1, -1, Default::default(), false)
        .unwrap();
    broker
}

async fn fetch(
    broker: &Arc<Broker>,
    replica: i32,
    offset: i64,
    last_fetched_epoch: i32,
) -> fetch_response::PartitionData {
    let p = fetch_request::FetchPartition::default()
        .with_partition(0)
        .with_fetch_offset(offset)
        .with_last_fetched_epoch(last_fetched_epoch)
        .with_partition_max_bytes(1 << 20);
    let t = fetch_request::FetchTopic::default()
        .with_topic(TopicName(StrBytes::from_static_str("t")))
        .with_partitions(vec![p]);
    let r: FetchResponse = call(
        broker,
        ApiKey::Fetch,
        12,
        Request::Fetch(
            FetchRequest::default()
                .with_replica_id(BrokerId(replica))
                .with_max_wait_ms(0)
                .with_topics(vec![t])
                .with_session_epoch(-1),
        ),
    )
    .await;
    r.responses[0].partitions[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_read_to_the_log_end_and_diverging_ones_are_told_where_to_truncate() {
    let broker = broker_with_topic();
    let partition = broker.partition("t", 0).unwrap();
    partition.append(&batch(3)).unwrap();
    partition.sync_to(3).unwrap();

    // A replica id the metadata does not list for the partition is refused: its fetch offset
    // would count towards the high watermark.
    let d = fetch(&broker, 2, 0, -1).await;
    assert_eq!(d.error_code, 6, "NOT_LEADER_OR_FOLLOWER");
    assert!(d.records.unwrap_or_default().is_empty());

    // A follower in step (replica 1, this node's id, is the partition's replica): the
    // records, and no divergence.
    let d = fetch(&broker, 1, 0, -1).await;
    assert_eq!(d.error_code, 0);
    assert_eq!(d.diverging_epoch.epoch, -1);
    assert_eq!(decode_records(d.records.unwrap()).unwrap().len(), 3);

    // A follower that has epoch 0 up to offset 10 (more than the leader ever had in it).
    let d = fetch(&broker, 1, 10, 0).await;
    assert_eq!(
        (d.diverging_epoch.epoch, d.diverging_epoch.end_offset),
        (0, 3)
    );
    assert!(d.records.unwrap_or_default().is_empty());

    // A follower whose last epoch is newer than any here truncates to this leader's end.
    let d = fetch(&broker, 1, 3, 5).await;
    assert_eq!(
        (d.diverging_epoch.epoch, d.diverging_epoch.end_offset),
        (0, 3)
    );

    // One at the end in the same epoch: nothing to do.
    let d = fetch(&broker, 1, 3, 0).await;
    assert_eq!(d.error_code, 0);
    assert_eq!(d.diverging_epoch.epoch, -1);

    // A consumer (replica -1) is unaffected by epochs it does not send.
    let d = fetch(&broker, -1, 0, -1).await;
    assert_eq!(decode_records(d.records.unwrap()).unwrap().len(), 3);
    broker.close();
}

/// KIP-951: a produce or fetch refused because this broker does not lead the partition (or
/// not in the epoch the client named) names the leader and epoch this broker knows; older
/// versions, which have no such field, answer as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_name_the_current_leader() {
    let broker = broker_with_topic();
    // This replica learns that broker 2 leads the partition in epoch 4.
    broker.partition("t", 0).unwrap().become_follower(1, 2, 4);

    let produce = |version: i16| {
        let data = produce_request::PartitionProduceData::default()
            .with_index(0)
            .with_records(Some(batch(1)));
        let t = produce_request::TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partition_data(vec![data]);
        let broker = broker.clone();
        async move {
            let r: ProduceResponse = call(
                &broker,
                ApiKey::Produce,
                version,
                Request::Produce(
                    ProduceRequest::default()
                        .with_acks(1)
                        .with_timeout_ms(1000)
                        .with_topic_data(vec![t]),
                ),
            )
            .await;
            r.responses[0].partition_responses[0].clone()
        }
    };
    let p = produce(10).await;
    assert_eq!(p.error_code, 6, "NOT_LEADER_OR_FOLLOWER");
    assert_eq!(
        (p.current_leader.leader_id.0, p.current_leader.leader_epoch),
        (2, 4)
    );
    let p = produce(9).await;
    assert_eq!(p.error_code, 6);
    assert_eq!(p.current_leader.leader_id.0, -1, "not in v9");

    // A consumer's fetch: refused, with the leader named.
    let d = fetch(&broker, -1, 0, -1).await;
    assert_eq!(d.error_code, 6);
    assert_eq!(
        (d.current_leader.leader_id.0, d.current_leader.leader_epoch),
        (2, 4)
    );
    broker.close();
}

/// ListOffsets and OffsetsForLeaderEpoch are the leader's to answer, as Fetch is: a
/// follower's log may lack the latest records and epochs, and a consumer told its epoch is
/// unknown (-1) resets its position to `auto.offset.reset`. A debugging tool's ListOffsets
/// (replica id -2) may still read a follower.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_answers_a_consumers_offset_requests() {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::offset_for_leader_epoch_request::{
        OffsetForLeaderPartition, OffsetForLeaderTopic,
    };
    let broker = broker_with_topic();
    let epochs = |current: i32| {
        let broker = broker.clone();
        async move {
            let t = OffsetForLeaderTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(vec![OffsetForLeaderPartition::default()
                    .with_partition(0)
                    .with_current_leader_epoch(current)
                    .with_leader_epoch(0)]);
            let r: OffsetForLeaderEpochResponse = call(
                &broker,
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
            (p.error_code, p.leader_epoch, p.end_offset)
        }
    };
    let offsets = |replica: i32, current: i32| {
        let broker = broker.clone();
        async move {
            let t = ListOffsetsTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_current_leader_epoch(current)
                    .with_timestamp(-1)]);
            let r: ListOffsetsResponse = call(
                &broker,
                ApiKey::ListOffsets,
                7,
                Request::ListOffsets(
                    ListOffsetsRequest::default()
                        .with_replica_id(BrokerId(replica))
                        .with_topics(vec![t]),
                ),
            )
            .await;
            let p = &r.topics[0].partitions[0];
            (p.error_code, p.offset)
        }
    };
    let partition = broker.partition("t", 0).unwrap();
    partition.append(&batch(3)).unwrap();
    assert_eq!(epochs(-1).await, (0, 0, 3), "the leader answers");
    let (code, latest) = offsets(-1, -1).await;
    assert_eq!(code, 0);

    // Broker 2 now leads in epoch 4; this replica follows.
    partition.become_follower(1, 2, 4);
    for current in [-1, 4] {
        assert_eq!(epochs(current).await.0, 6, "NOT_LEADER_OR_FOLLOWER");
        assert_eq!(offsets(-1, current).await.0, 6, "NOT_LEADER_OR_FOLLOWER");
    }
    assert_eq!(epochs(3).await.0, 74, "FENCED_LEADER_EPOCH first");
    assert_eq!(
        offsets(-2, -1).await,
        (0, latest),
        "a debugging tool reads the follower"
    );
    broker.close();
}
