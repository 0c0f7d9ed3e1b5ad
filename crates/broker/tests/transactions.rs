//! Transactions through the broker's request handlers on a simulated file system: KIP-890
//! part 2 (EndTxn v5 epoch bump fences late writes and late EndTxn), KIP-890 part 1
//! (transactional writes only inside a verified transaction), and a crash between
//! PrepareCommit and the markers finished at the next start.

mod common;

use common::call;

use std::path::PathBuf;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record as WireRecord, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use strata_broker::{Broker, BrokerConfig};
use strata_protocol::Request;
use strata_records::decode_records;
use strata_storage::fs::CrashMode;
use strata_storage::{Clock, SimFs, SystemClock};
use strata_txn::TxnState;

const INVALID_PRODUCER_EPOCH: i16 = 47;
const INVALID_TXN_STATE: i16 = 48;
const PRODUCER_FENCED: i16 = 90;

fn config() -> BrokerConfig {
    BrokerConfig {
        data_dir: PathBuf::from("/data"),
        offsets_topic_num_partitions: 2,
        transaction_state_log_num_partitions: 2,
        ..BrokerConfig::default()
    }
}

fn open(fs: &SimFs) -> Arc<Broker> {
    Arc::new(Broker::open(config(), Arc::new(fs.clone()), Arc::new(SystemClock)).unwrap())
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// A producer's transactional batch (sequence `seq`), as a client would send it.
fn txn_batch(pid: i64, epoch: i16, seq: i32, value: &str) -> Bytes {
    let record = WireRecord {
        transactional: true,
        control: false,
        partition_leader_epoch: -1,
        producer_id: pid,
        producer_epoch: epoch,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: seq,
        timestamp: SystemClock.now_ms(),
        key: None,
        value: Some(Bytes::from(value.to_string())),
        headers: Default::default(),
        delete_horizon: false,
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &[record],
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf.freeze()
}

async fn init(broker: &Arc<Broker>, id: &str) -> (i64, i16) {
    let r: InitProducerIdResponse = call(
        broker,
        ApiKey::InitProducerId,
        4,
        Request::InitProducerId(
            InitProducerIdRequest::default()
                .with_transactional_id(Some(TransactionalId(s(id))))
                .with_transaction_timeout_ms(60_000)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        ),
    )
    .await;
    assert_eq!(r.error_code, 0);
    (r.producer_id.0, r.producer_epoch)
}

async fn add_partition(broker: &Arc<Broker>, id: &str, pid: i64, epoch: i16, topic: &str) -> i16 {
    let t = add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
        .with_name(TopicName(s(topic)))
        .with_partitions(vec![0]);
    let r: AddPartitionsToTxnResponse = call(
        broker,
        ApiKey::AddPartitionsToTxn,
        3,
        Request::AddPartitionsToTxn(
            AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(TransactionalId(s(id)))
                .with_v3_and_below_producer_id(ProducerId(pid))
                .with_v3_and_below_producer_epoch(epoch)
                .with_v3_and_below_topics(vec![t]),
        ),
    )
    .await;
    r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code
}

async fn produce(broker: &Arc<Broker>, id: Option<&str>, topic: &str, batch: Bytes) -> i16 {
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
                .with_transactional_id(id.map(|i| TransactionalId(s(i))))
                .with_acks(-1)
                .with_timeout_ms(1000)
                .with_topic_data(vec![t]),
        ),
    )
    .await;
    r.responses[0].partition_responses[0].error_code
}

async fn end(
    broker: &Arc<Broker>,
    id: &str,
    pid: i64,
    epoch: i16,
    commit: bool,
    version: i16,
) -> EndTxnResponse {
    call(
        broker,
        ApiKey::EndTxn,
        version,
        Request::EndTxn(
            EndTxnRequest::default()
                .with_transactional_id(TransactionalId(s(id)))
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(epoch)
                .with_committed(commit),
        ),
    )
    .await
}

fn committed_values(broker: &Broker, topic: &str) -> Vec<String> {
    let p = broker.partition(topic, 0).unwrap();
    let slice = p.slice_isolated(0, 1 << 20, true, true).unwrap();
    let Some(range) = slice.range else {
        return vec![];
    };
    let aborted = slice.aborted;
    decode_records(range.read().unwrap())
        .unwrap()
        .into_iter()
        .filter(|r| !r.control && !aborted.iter().any(|a| r.offset >= a.1))
        .map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap())
        .collect()
}

/// Invariants 9 and 11 (KAFKA-17754).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kip890_epoch_bump_fences_late_writes_and_late_end_txn() {
    let fs = SimFs::new();
    let broker = open(&fs);
    broker
        .create_topic("t", 1, -1, Default::default(), false)
        .unwrap();
    let (pid, e0) = init(&broker, "tx").await;
    assert_eq!(add_partition(&broker, "tx", pid, e0, "t").await, 0);
    assert_eq!(
        produce(&broker, Some("tx"), "t", txn_batch(pid, e0, 0, "first")).await,
        0
    );
    let r = end(&broker, "tx", pid, e0, true, 5).await;
    assert_eq!(r.error_code, 0);
    let e1 = r.producer_epoch;
    assert_eq!(
        (r.producer_id.0, e1),
        (pid, e0 + 1),
        "v5 returns the bumped epoch"
    );
    // The next transaction under the new epoch.
    assert_eq!(add_partition(&broker, "tx", pid, e1, "t").await, 0);
    assert_eq!(
        produce(&broker, Some("tx"), "t", txn_batch(pid, e1, 0, "second")).await,
        0
    );
    // A late produce of the first transaction (old epoch) cannot join the second...
    assert_eq!(
        produce(&broker, Some("tx"), "t", txn_batch(pid, e0, 1, "late")).await,
        INVALID_PRODUCER_EPOCH
    );
    // ...and a late (or duplicated) EndTxn of the first cannot decide it (KAFKA-17754).
    let late = end(&broker, "tx", pid, e0, false, 5).await;
    assert_eq!(late.error_code, PRODUCER_FENCED);
    let state = broker.txns.lock().coordinator.get("tx").unwrap().state;
    assert_eq!(state, TxnState::Ongoing);
    assert_eq!(end(&broker, "tx", pid, e1, true, 5).await.error_code, 0);
    assert_eq!(committed_values(&broker, "t"), vec!["first", "second"]);
}

/// Invariants 10 and 14: a stray transactional write could hold the LSO back forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactional_writes_need_a_verified_transaction() {
    let fs = SimFs::new();
    let broker = open(&fs);
    broker
        .create_topic("t", 1, -1, Default::default(), false)
        .unwrap();
    broker
        .create_topic("u", 1, -1, Default::default(), false)
        .unwrap();
    let (pid, e0) = init(&broker, "tx").await;
    // No transaction yet; then a partition not added; then no transactional id at all.
    assert_eq!(
        produce(&broker, Some("tx"), "t", txn_batch(pid, e0, 0, "x")).await,
        INVALID_TXN_STATE
    );
    assert_eq!(add_partition(&broker, "tx", pid, e0, "t").await, 0);
    assert_eq!(
        produce(&broker, Some("tx"), "u", txn_batch(pid, e0, 0, "x")).await,
        INVALID_TXN_STATE
    );
    assert_eq!(
        produce(&broker, None, "t", txn_batch(pid, e0, 0, "x")).await,
        INVALID_TXN_STATE
    );
    // Nothing stray holds the last stable offset of `u` back.
    let u = broker.partition("u", 0).unwrap();
    {
        let log = u.log();
        assert_eq!(log.last_stable_offset(), log.log_end_offset());
    }
    // A partition that does not exist fails the whole AddPartitionsToTxn.
    assert_eq!(add_partition(&broker, "tx", pid, e0, "missing").await, 3);
}

/// Invariant 11 across a crash: the coordinator stops after PrepareCommit is durable but
/// before any marker: the next start writes the markers, commits the transaction's offsets
/// and completes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_between_prepare_commit_and_markers_is_finished_at_start() {
    let fs = SimFs::new();
    let broker = open(&fs);
    broker
        .create_topic("t", 1, -1, Default::default(), false)
        .unwrap();
    let (pid, epoch) = init(&broker, "tx").await;
    assert_eq!(add_partition(&broker, "tx", pid, epoch, "t").await, 0);
    assert_eq!(
        produce(&broker, Some("tx"), "t", txn_batch(pid, epoch, 0, "v")).await,
        0
    );
    // send_offsets_to_transaction: AddOffsetsToTxn + TxnOffsetCommit.
    let r: AddOffsetsToTxnResponse = call(
        &broker,
        ApiKey::AddOffsetsToTxn,
        3,
        Request::AddOffsetsToTxn(
            AddOffsetsToTxnRequest::default()
                .with_transactional_id(TransactionalId(s("tx")))
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(epoch)
                .with_group_id(GroupId(s("g"))),
        ),
    )
    .await;
    assert_eq!(r.error_code, 0);
    let p = txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
        .with_partition_index(0)
        .with_committed_offset(1);
    let t = txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
        .with_name(TopicName(s("t")))
        .with_partitions(vec![p]);
    let r: TxnOffsetCommitResponse = call(
        &broker,
        ApiKey::TxnOffsetCommit,
        3,
        Request::TxnOffsetCommit(
            TxnOffsetCommitRequest::default()
                .with_transactional_id(TransactionalId(s("tx")))
                .with_group_id(GroupId(s("g")))
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(epoch)
                .with_generation_id(-1)
                .with_topics(vec![t]),
        ),
    )
    .await;
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
    // EndTxn(commit) up to the durable PrepareCommit, then the process dies.
    let now = SystemClock.now_ms();
    let (result, pending) = broker.txn_call(|c, _| c.end_txn("tx", pid, epoch, true, false, now));
    result.unwrap();
    drop(pending); // the markers are never written
    let offsets_fetch = |b: &Broker| {
        b.groups
            .coordinator()
            .fetch_offsets("g", Some(&[("t".to_string(), vec![0])]), None)
            .unwrap()[0]
            .clone()
    };
    assert!(offsets_fetch(&broker).offset.is_none());
    // Make the Prepare record durable (txn_finish would have), then lose the rest.
    for p in broker.all_partitions() {
        let end = p.log().log_end_offset();
        p.sync_to(end).unwrap();
    }
    drop(broker);
    fs.crash(CrashMode::LoseUnsynced);

    let broker = open(&fs);
    let m = broker.txns.lock().coordinator.get("tx").unwrap().clone();
    assert_eq!(m.state, TxnState::CompleteCommit);
    assert_eq!(committed_values(&broker, "t"), vec!["v"]);
    let t0 = broker.partition("t", 0).unwrap();
    {
        let log = t0.log();
        assert_eq!(log.last_stable_offset(), log.log_end_offset());
    }
    let fetched = offsets_fetch(&broker);
    assert_eq!(fetched.offset.map(|o| o.offset), Some(1));
    assert!(!fetched.unstable);
    // And once more: the completed state and the offsets survive another restart.
    drop(broker);
    fs.crash(CrashMode::LoseUnsynced);
    let broker = open(&fs);
    assert_eq!(offsets_fetch(&broker).offset.map(|o| o.offset), Some(1));
    assert_eq!(committed_values(&broker, "t"), vec!["v"]);
}

/// A partition directory of a deleted topic is removed at start even when a cleaning pass
/// left its `cleaning/` directory there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_partition_directories_with_cleaner_leftovers_are_removed() {
    use strata_storage::Fs;
    let fs = SimFs::new();
    let broker = open(&fs);
    broker
        .create_topic("gone", 1, -1, Default::default(), false)
        .unwrap();
    broker.delete_topic("gone").unwrap();
    drop(broker);
    let leftover = std::path::Path::new("/data/gone-0/cleaning");
    fs.create_dir_all(leftover).unwrap();
    fs.open(&leftover.join("00000000000000000000.log"), true)
        .unwrap();
    let _broker = open(&fs);
    assert!(!fs.exists(std::path::Path::new("/data/gone-0")));
}

/// A transaction change whose `__transaction_state` record does not become durable is
/// undone in the coordinator (Kafka's pending state): the client is told to retry
/// (COORDINATOR_NOT_AVAILABLE) and its transaction is not Ongoing in memory while the log
/// does not know it — otherwise a retry is answered from memory alone, and a restart or a
/// failover loses a transaction its client went on with (found by scripts/chaos: EndTxn
/// refused with INVALID_TXN_STATE after a coordinator move).
#[tokio::test(flavor = "multi_thread")]
async fn a_transaction_change_that_was_not_stored_is_undone() {
    const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    let fs = SimFs::new();
    let broker = open(&fs);
    broker
        .create_topic("t", 1, -1, Default::default(), false)
        .unwrap();
    let (pid, epoch) = init(&broker, "tx").await;
    let state = |b: &Broker| b.txns.lock().coordinator.get("tx").unwrap().clone();
    let before = state(&broker);
    fs.stats()
        .fail_syncs
        .store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        add_partition(&broker, "tx", pid, epoch, "t").await,
        COORDINATOR_NOT_AVAILABLE
    );
    fs.stats()
        .fail_syncs
        .store(false, std::sync::atomic::Ordering::SeqCst);
    // Memory agrees with the log: no Ongoing transaction, no partition added.
    assert_eq!(state(&broker), before);
    assert_ne!(state(&broker).state, TxnState::Ongoing);
    // The retry is not answered from memory: the write fails again while the log is down.
    assert_eq!(
        add_partition(&broker, "tx", pid, epoch, "t").await,
        COORDINATOR_NOT_AVAILABLE
    );
}

async fn commit_offset(broker: &Arc<Broker>, group: &str, topic: &str, offset: i64) -> i16 {
    let p = offset_commit_request::OffsetCommitRequestPartition::default()
        .with_partition_index(0)
        .with_committed_offset(offset);
    let t = offset_commit_request::OffsetCommitRequestTopic::default()
        .with_name(TopicName(s(topic)))
        .with_partitions(vec![p]);
    let r: OffsetCommitResponse = call(
        broker,
        ApiKey::OffsetCommit,
        8,
        Request::OffsetCommit(
            OffsetCommitRequest::default()
                .with_group_id(GroupId(s(group)))
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![t]),
        ),
    )
    .await;
    r.topics[0].partitions[0].error_code
}

async fn committed_offset(broker: &Arc<Broker>, group: &str, topic: &str) -> i64 {
    let t = offset_fetch_request::OffsetFetchRequestTopic::default()
        .with_name(TopicName(s(topic)))
        .with_partition_indexes(vec![0]);
    let r: OffsetFetchResponse = call(
        broker,
        ApiKey::OffsetFetch,
        7,
        Request::OffsetFetch(
            OffsetFetchRequest::default()
                .with_group_id(GroupId(s(group)))
                .with_topics(Some(vec![t])),
        ),
    )
    .await;
    assert_eq!(r.error_code, 0);
    r.topics[0].partitions[0].committed_offset
}

/// The group coordinator's version of the undo above: an offset commit whose
/// `__consumer_offsets` record did not become durable is answered with a retriable error and
/// is not served by OffsetFetch — the log does not have it, so a failover would hand out the
/// older offset after another member had been given the newer one.
#[tokio::test(flavor = "multi_thread")]
async fn an_offset_commit_that_was_not_stored_is_undone() {
    const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    let fs = SimFs::new();
    let broker = open(&fs);
    broker
        .create_topic("t", 1, -1, Default::default(), false)
        .unwrap();
    assert_eq!(commit_offset(&broker, "g", "t", 5).await, 0);
    assert_eq!(committed_offset(&broker, "g", "t").await, 5);
    let fail = |on: bool| {
        fs.stats()
            .fail_syncs
            .store(on, std::sync::atomic::Ordering::SeqCst)
    };
    fail(true);
    assert_eq!(
        commit_offset(&broker, "g", "t", 10).await,
        COORDINATOR_NOT_AVAILABLE
    );
    fail(false);
    assert_eq!(committed_offset(&broker, "g", "t").await, 5);
    // A first commit that was not stored leaves no offset at all.
    fail(true);
    assert_eq!(
        commit_offset(&broker, "g2", "t", 7).await,
        COORDINATOR_NOT_AVAILABLE
    );
    fail(false);
    assert_eq!(committed_offset(&broker, "g2", "t").await, -1);
}
