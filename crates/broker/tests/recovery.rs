//! Restart after a crash (issue 18): partitions recover in parallel after the coordinators'
//! internal topics, and the broker answers for the ones still recovering with retriable
//! errors (NOT_LEADER_OR_FOLLOWER; Metadata without a leader) instead of waiting for all.
//! On a cluster member, a partition goes into service with the role the metadata has then,
//! not the one it had when its recovery began.

mod common;

use common::call;

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use strata_broker::state::Availability;
use strata_broker::{Broker, BrokerConfig};
use strata_protocol::Request;
use strata_records::{BatchBuilder, Compression, Record};
use strata_storage::fs::CrashMode;
use strata_storage::{Clock, Fs, SimFs, SystemClock};

const NOT_LEADER_OR_FOLLOWER: i16 = 6;
const LEADER_NOT_AVAILABLE: i16 = 5;

fn config() -> BrokerConfig {
    BrokerConfig {
        data_dir: PathBuf::from("/data"),
        offsets_topic_num_partitions: 2,
        transaction_state_log_num_partitions: 2,
        num_recovery_threads_per_data_dir: 3,
        ..BrokerConfig::default()
    }
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn batch(value: &str) -> Bytes {
    let mut b = BatchBuilder::new(Compression::None);
    b.push(Record {
        value: Some(Bytes::from(value.to_string())),
        timestamp_ms: SystemClock.now_ms(),
        ..Default::default()
    });
    b.build().unwrap()
}

async fn produce(broker: &Arc<Broker>, topic: &str, partition: i32, value: &str) -> i16 {
    let data = produce_request::PartitionProduceData::default()
        .with_index(partition)
        .with_records(Some(batch(value)));
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
                .with_timeout_ms(5000)
                .with_topic_data(vec![t]),
        ),
    )
    .await;
    r.responses[0].partition_responses[0].error_code
}

async fn fetch_error(broker: &Arc<Broker>, topic: &str, partition: i32) -> i16 {
    let p = fetch_request::FetchPartition::default()
        .with_partition(partition)
        .with_fetch_offset(0)
        .with_partition_max_bytes(1 << 20);
    let t = fetch_request::FetchTopic::default()
        .with_topic(TopicName(s(topic)))
        .with_partitions(vec![p]);
    let r: FetchResponse = call(
        broker,
        ApiKey::Fetch,
        11,
        Request::Fetch(
            FetchRequest::default()
                .with_max_wait_ms(0)
                .with_topics(vec![t])
                .with_session_epoch(-1),
        ),
    )
    .await;
    r.responses[0].partitions[0].error_code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_still_recovering_answer_retriably_and_serve_once_open() {
    let fs = SimFs::new();
    let broker =
        Arc::new(Broker::open(config(), Arc::new(fs.clone()), Arc::new(SystemClock)).unwrap());
    broker
        .create_topic("t", 8, -1, Default::default(), false)
        .unwrap();
    for p in 0..8 {
        for i in 0..=p {
            assert_eq!(produce(&broker, "t", p, &format!("{p}-{i}")).await, 0);
        }
    }
    drop(broker);
    fs.crash(CrashMode::KeepAll); // kill -9: no clean shutdown

    let broker = Arc::new(
        Broker::open_deferred(config(), Arc::new(fs.clone()), Arc::new(SystemClock)).unwrap(),
    );
    assert_eq!(broker.availability("t", 3), Availability::Recovering);
    assert_eq!(broker.availability("t", 99), Availability::Unknown);
    assert!(broker.has_unopened_partitions());
    assert_eq!(
        produce(&broker, "t", 3, "early").await,
        NOT_LEADER_OR_FOLLOWER
    );
    assert_eq!(fetch_error(&broker, "t", 3).await, NOT_LEADER_OR_FOLLOWER);
    let md: MetadataResponse = call(
        &broker,
        ApiKey::Metadata,
        12,
        Request::Metadata(MetadataRequest::default().with_topics(Some(vec![
            metadata_request::MetadataRequestTopic::default().with_name(Some(TopicName(s("t")))),
        ]))),
    )
    .await;
    let p = &md.topics[0].partitions[3];
    assert_eq!((p.error_code, p.leader_id.0), (LEADER_NOT_AVAILABLE, -1));

    let recovering = broker.clone();
    tokio::task::spawn_blocking(move || recovering.recover_deferred())
        .await
        .unwrap();
    assert!(!broker.has_unopened_partitions());
    for p in 0..8 {
        assert_eq!(broker.availability("t", p), Availability::Open);
        let partition = broker.partition("t", p).unwrap();
        assert_eq!(partition.log().log_end_offset(), i64::from(p) + 1);
        assert_eq!(partition.high_watermark(), i64::from(p) + 1);
    }
    assert_eq!(produce(&broker, "t", 3, "later").await, 0);
    assert_eq!(fetch_error(&broker, "t", 3).await, 0);
    let md: MetadataResponse = call(
        &broker,
        ApiKey::Metadata,
        12,
        Request::Metadata(MetadataRequest::default().with_topics(None)),
    )
    .await;
    assert!(md
        .topics
        .iter()
        .all(|t| t.partitions.iter().all(|p| p.error_code == 0)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_deleted_while_its_partitions_wait_for_recovery_is_never_opened() {
    let fs = SimFs::new();
    let broker =
        Arc::new(Broker::open(config(), Arc::new(fs.clone()), Arc::new(SystemClock)).unwrap());
    broker
        .create_topic("gone", 4, -1, Default::default(), false)
        .unwrap();
    broker
        .create_topic("kept", 2, -1, Default::default(), false)
        .unwrap();
    assert_eq!(produce(&broker, "gone", 0, "x").await, 0);
    assert_eq!(produce(&broker, "kept", 1, "y").await, 0);
    drop(broker);
    fs.crash(CrashMode::KeepAll);

    let broker = Arc::new(
        Broker::open_deferred(config(), Arc::new(fs.clone()), Arc::new(SystemClock)).unwrap(),
    );
    broker.delete_topic("gone").unwrap();
    assert_eq!(broker.availability("gone", 0), Availability::Unknown);
    let recovering = broker.clone();
    tokio::task::spawn_blocking(move || recovering.recover_deferred())
        .await
        .unwrap();
    assert!(broker.partition("gone", 0).is_none());
    assert!(!fs.exists(&PathBuf::from("/data/gone-0")));
    assert_eq!(
        broker.partition("kept", 1).unwrap().log().log_end_offset(),
        1
    );
    assert!(!broker.has_unopened_partitions());
    // Every log open: a clean close leaves the marker.
    broker.close();
    assert!(fs.exists(&PathBuf::from("/data/clean-shutdown")));
}

/// One partition whose log cannot be opened (its sync fails: EIO) stays unavailable with
/// KAFKA_STORAGE_ERROR while every other partition serves, and the close leaves no
/// clean-shutdown marker, so the next start recovers it (and then it serves).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_that_fails_to_open_does_not_hold_the_others_back() {
    const KAFKA_STORAGE_ERROR: i16 = 56;
    let fs = SimFs::new();
    let broker =
        Arc::new(Broker::open(config(), Arc::new(fs.clone()), Arc::new(SystemClock)).unwrap());
    broker
        .create_topic("t", 2, -1, Default::default(), false)
        .unwrap();
    assert_eq!(produce(&broker, "t", 0, "a").await, 0);
    assert_eq!(produce(&broker, "t", 1, "b").await, 0);
    broker.checkpoint_recovery_points();
    // Past partition 0's checkpointed recovery point: its recovery must sync.
    assert_eq!(produce(&broker, "t", 0, "c").await, 0);
    drop(broker);
    fs.crash(CrashMode::KeepAll);

    let broker = Arc::new(
        Broker::open_deferred(config(), Arc::new(fs.clone()), Arc::new(SystemClock)).unwrap(),
    );
    fs.stats()
        .fail_syncs
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let recovering = broker.clone();
    tokio::task::spawn_blocking(move || recovering.recover_deferred())
        .await
        .unwrap();
    fs.stats()
        .fail_syncs
        .store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(broker.availability("t", 0), Availability::Failed);
    assert_eq!(
        produce(&broker, "t", 0, "refused").await,
        KAFKA_STORAGE_ERROR
    );
    assert_eq!(broker.availability("t", 1), Availability::Open);
    assert_eq!(produce(&broker, "t", 1, "d").await, 0);
    broker.close();
    assert!(!fs.exists(&PathBuf::from("/data/clean-shutdown")));
    drop(broker);

    let broker =
        Arc::new(Broker::open(config(), Arc::new(fs.clone()), Arc::new(SystemClock)).unwrap());
    assert_eq!(broker.partition("t", 0).unwrap().log().log_end_offset(), 2);
    assert_eq!(broker.partition("t", 1).unwrap().log().log_end_offset(), 2);
}

/// Passes everything to a [`SimFs`], except that, once armed, the first listing of `held`
/// (a log's recovery lists its directory first) reports on `entered` and waits for
/// `release`: the test acts while that partition is being recovered.
struct HoldingFs {
    inner: SimFs,
    held: PathBuf,
    armed: std::sync::atomic::AtomicBool,
    entered: std::sync::Mutex<std::sync::mpsc::Sender<()>>,
    release: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
}

impl Fs for HoldingFs {
    fn create_dir_all(&self, path: &std::path::Path) -> std::io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn list_dir(&self, path: &std::path::Path) -> std::io::Result<Vec<PathBuf>> {
        if path == self.held && self.armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
            self.entered.lock().unwrap().send(()).unwrap();
            self.release.lock().unwrap().recv().unwrap();
        }
        self.inner.list_dir(path)
    }
    fn is_dir(&self, path: &std::path::Path) -> bool {
        self.inner.is_dir(path)
    }
    fn exists(&self, path: &std::path::Path) -> bool {
        self.inner.exists(path)
    }
    fn open(
        &self,
        path: &std::path::Path,
        create: bool,
    ) -> std::io::Result<Arc<dyn strata_storage::FsFile>> {
        self.inner.open(path, create)
    }
    fn remove_file(&self, path: &std::path::Path) -> std::io::Result<()> {
        self.inner.remove_file(path)
    }
    fn remove_dir_all(&self, path: &std::path::Path) -> std::io::Result<()> {
        self.inner.remove_dir_all(path)
    }
    fn rename(&self, from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
        self.inner.rename(from, to)
    }
    fn sync_dir(&self, path: &std::path::Path) -> std::io::Result<()> {
        self.inner.sync_dir(path)
    }
    fn sync_filesystem(&self, path: &std::path::Path) -> std::io::Result<()> {
        self.inner.sync_filesystem(path)
    }
}

async fn start_quorum(fs: &SimFs, controller: &str) -> Arc<strata_quorum::Quorum> {
    let voters = std::collections::BTreeMap::from([(1u64, controller.to_string())]);
    let mut config =
        strata_quorum::QuorumConfig::new(1, voters, controller.to_string(), config().data_dir);
    config.election_timeout_min_ms = 100;
    config.election_timeout_max_ms = 200;
    config.heartbeat_ms = 50;
    strata_quorum::Quorum::start(Arc::new(fs.clone()), Arc::new(SystemClock), config)
        .await
        .unwrap()
}

/// Chaos finding 12 (seeds 25107, 35153): a cluster member restarts, its registration takes
/// its old leaderships away (leader -1: no other replica in sync), and the controller gives
/// one back while that partition's log is still being recovered. That delta skips the
/// partition (not open yet); the log must then go into service with the role the image has
/// when it does, not the one it had when its recovery began, or the partition stays without
/// a serving leader while the controller sees one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leadership_given_while_a_partition_recovers_is_taken_up() {
    let fs = SimFs::new();
    // A single voter never calls its own address, so the restart takes a new one (the old
    // listener may not be closed yet).
    let controller = || {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        format!("127.0.0.1:{port}")
    };
    let member_config = || BrokerConfig {
        node_id: 1,
        ..config()
    };
    let quorum = start_quorum(&fs, &controller()).await;
    let broker = Arc::new(tokio::task::block_in_place(|| {
        let b = Broker::open_member(
            member_config(),
            Arc::new(fs.clone()),
            Arc::new(SystemClock),
            Some(quorum.clone()),
        )
        .unwrap();
        b.create_topic("t", 1, 1, Default::default(), false)
            .unwrap();
        b
    }));
    assert!(broker.partition("t", 0).unwrap().is_leader());
    assert_eq!(produce(&broker, "t", 0, "before").await, 0);
    drop(broker);
    quorum.shutdown().await;
    drop(quorum);
    fs.crash(CrashMode::KeepAll);

    let (entered_tx, entered) = std::sync::mpsc::channel();
    let (release, release_rx) = std::sync::mpsc::channel();
    let holding = Arc::new(HoldingFs {
        inner: fs.clone(),
        held: PathBuf::from("/data/t-0"),
        armed: false.into(),
        entered: std::sync::Mutex::new(entered_tx),
        release: std::sync::Mutex::new(release_rx),
    });
    let quorum = start_quorum(&fs, &controller()).await;
    let broker = Arc::new(tokio::task::block_in_place(|| {
        Broker::open_member(
            member_config(),
            holding.clone(),
            Arc::new(SystemClock),
            Some(quorum.clone()),
        )
        .unwrap()
    }));
    let topic = quorum.image().topic("t").unwrap().clone();
    let before = topic.partitions[&0].clone();
    assert_eq!(before.leader, -1, "registration moved the old leadership");
    holding
        .armed
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let recovering = broker.clone();
    let recovery = tokio::task::spawn_blocking(move || recovering.recover_deferred());
    tokio::task::spawn_blocking(move || entered.recv().unwrap())
        .await
        .unwrap();

    // The controller's election, applied while t-0 recovers.
    quorum
        .write(vec![strata_cluster::MetadataRecord::PartitionChange {
            topic_id: topic.topic_id,
            partition: 0,
            leader: Some(1),
            isr: None,
            replicas: None,
            expected_partition_epoch: Some(before.partition_epoch),
        }])
        .await
        .unwrap();
    let image = tokio::task::block_in_place(|| broker.catch_up_with_quorum()).unwrap();
    let elected = image.topic("t").unwrap().partitions[&0].clone();
    assert_eq!(elected.leader, 1);
    assert!(elected.leader_epoch > before.leader_epoch);
    assert!(broker.partition("t", 0).is_none(), "still recovering");

    release.send(()).unwrap();
    recovery.await.unwrap();
    let p = broker.partition("t", 0).unwrap();
    assert!(p.is_leader(), "the leadership given meanwhile is taken up");
    assert_eq!(p.leader_epoch(), elected.leader_epoch);
    assert_eq!(produce(&broker, "t", 0, "after").await, 0);
    assert_eq!(p.log().log_end_offset(), 2);
    quorum.shutdown().await;
}
