//! The whole broker in-process on a simulated file system: power loss (unsynced data lost,
//! which a kill -9 test cannot show), long polling, and topics surviving restarts.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use strata_broker::server::{serve, ServeError};
use strata_broker::BrokerConfig;
use strata_client::Client;
use strata_records::{decode_records, BatchBuilder, Compression, Record};
use strata_storage::fs::CrashMode;
use strata_storage::{Clock, Fs, SimFs, SystemClock};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

struct Running {
    addr: String,
    stop: Option<oneshot::Sender<()>>,
    /// What `serve` returned (a halt, or a clean close).
    task: JoinHandle<Result<(), ServeError>>,
}

async fn start(fs: &SimFs) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let config = BrokerConfig {
        data_dir: PathBuf::from("/data"),
        listen: addr.clone(),
        ..BrokerConfig::default()
    };
    let (tx, rx) = oneshot::channel::<()>();
    let fs = Arc::new(fs.clone());
    let task = tokio::spawn(async move {
        serve(listener, config, fs, Arc::new(SystemClock), async {
            let _ = rx.await;
        })
        .await
    });
    Running {
        addr,
        stop: Some(tx),
        task,
    }
}

impl Running {
    /// Clean shutdown.
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }

    /// The process vanishes: no shutdown code runs.
    async fn crash(self) {
        self.task.abort();
        let _ = self.task.await;
        tokio::time::sleep(Duration::from_millis(50)).await; // let blocking syncs finish
    }
}

/// Records stamped now: retention (7 days by default) would delete older ones at start.
fn batch(values: &[String]) -> Bytes {
    let now = SystemClock.now_ms();
    let mut b = BatchBuilder::new(Compression::None);
    for v in values {
        b.push(Record {
            value: Some(Bytes::from(v.clone())),
            timestamp_ms: now,
            ..Default::default()
        });
    }
    b.build().unwrap()
}

async fn read_all(client: &mut Client, topic: &str) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let (records, hw) = client.fetch(topic, 0, offset, 0).await.unwrap();
        for r in decode_records(records).unwrap() {
            if r.offset >= offset {
                out.push((
                    r.offset,
                    String::from_utf8(r.value.unwrap().to_vec()).unwrap(),
                ));
                offset = r.offset + 1;
            }
        }
        if offset >= hw {
            return out;
        }
    }
}

/// Invariant 1 with the page cache lost: every acks=all record survives a power loss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_loss_keeps_every_acknowledged_record_and_the_topics() {
    let fs = SimFs::new();
    let broker = start(&fs).await;
    let mut client = Client::connect(&broker.addr).await.unwrap();
    client.create_topic("ledger", 1, &[]).await.unwrap();
    let mut acked = Vec::new();
    for i in 0..50 {
        let values: Vec<String> = (0..3).map(|j| format!("entry-{i}-{j}")).collect();
        let base = client
            .produce("ledger", 0, batch(&values), -1)
            .await
            .unwrap();
        for (j, v) in values.into_iter().enumerate() {
            acked.push((base + j as i64, v));
        }
    }
    // acks=1 is durable too in the default mode
    let base = client
        .produce("ledger", 0, batch(&["acks-1".to_string()]), 1)
        .await
        .unwrap();
    acked.push((base, "acks-1".to_string()));
    drop(client);
    broker.crash().await;
    fs.crash(CrashMode::LoseUnsynced);

    let broker = start(&fs).await;
    let mut client = Client::connect(&broker.addr).await.unwrap();
    let stored = read_all(&mut client, "ledger").await;
    assert_eq!(
        &stored[..acked.len()],
        &acked[..],
        "acknowledged records at their offsets"
    );
    let next = client
        .produce("ledger", 0, batch(&["after".to_string()]), -1)
        .await
        .unwrap();
    assert_eq!(
        next,
        stored.len() as i64,
        "offsets continue densely after recovery"
    );
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_answers_when_data_arrives_and_empty_at_deadline() {
    let fs = SimFs::new();
    let broker = start(&fs).await;
    let mut setup = Client::connect(&broker.addr).await.unwrap();
    setup.create_topic("poll", 1, &[]).await.unwrap();

    // Nothing there and no wait: an empty answer at once.
    let (records, hw) = setup.fetch("poll", 0, 0, 0).await.unwrap();
    assert!(records.is_empty() && hw == 0);

    let addr = broker.addr.clone();
    let waiter = tokio::spawn(async move {
        let mut c = Client::connect(&addr).await.unwrap();
        c.fetch("poll", 0, 0, 20_000).await.unwrap()
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !waiter.is_finished(),
        "the fetch waits for data (min_bytes=1)"
    );
    setup
        .produce("poll", 0, batch(&["wake".to_string()]), -1)
        .await
        .unwrap();
    let (records, hw) = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("woken well before its 20 s deadline")
        .unwrap();
    assert_eq!(hw, 1);
    assert_eq!(
        decode_records(records).unwrap()[0].value.as_deref(),
        Some(&b"wake"[..])
    );

    // A fetch past the log end offset is OFFSET_OUT_OF_RANGE.
    let err = setup.fetch("poll", 0, 5, 0).await.unwrap_err().to_string();
    assert!(err.contains("code 1"), "{err}");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_restart_keeps_topics_configs_and_data() {
    let fs = SimFs::new();
    let broker = start(&fs).await;
    let mut c = Client::connect(&broker.addr).await.unwrap();
    c.create_topic("kept", 3, &[("retention.ms".into(), "86400000".into())])
        .await
        .unwrap();
    c.create_topic("gone", 1, &[]).await.unwrap();
    // 30 KB in the partition, in 300 batches: reading its log at restart (beyond the tail
    // after the last index entry, which is checked) would show in the bytes read.
    for i in 0..300 {
        c.produce("kept", 2, batch(&[format!("{i:0>100}")]), -1)
            .await
            .unwrap();
    }
    c.delete_topic("gone").await.unwrap();
    drop(c);
    broker.stop().await;
    let broker = start(&fs).await;
    let mut c = Client::connect(&broker.addr).await.unwrap();
    let md = c.metadata(None).await.unwrap();
    let names: Vec<String> = md
        .topics
        .iter()
        .map(|t| t.name.as_ref().unwrap().0.to_string())
        .collect();
    assert_eq!(names, vec!["kept".to_string()]);
    assert_eq!(md.topics[0].partitions.len(), 3);
    let configs = c.describe_topic_configs("kept").await.unwrap();
    assert!(configs
        .iter()
        .any(|(k, v, source)| k == "retention.ms" && v == "86400000" && *source == 1));
    assert_eq!(c.list_offset("kept", 2, -1).await.unwrap(), 300);
    assert!(
        fs.file_paths()
            .iter()
            .all(|p| !p.starts_with("/data/gone-0")),
        "deleted topic's files are gone"
    );
    broker.stop().await;
    // Recovery state lives in two files of the data directory, not one per partition.
    let files = fs.file_paths();
    assert!(files.contains(&PathBuf::from("/data/recovery-point-offset-checkpoint")));
    assert!(files.contains(&PathBuf::from("/data/clean-shutdown")));
    assert!(!files
        .iter()
        .any(|p| p.starts_with("/data/kept-0") && p.ends_with("recovery-point")));
    // and the clean restart trusts it: the partition logs are not read (only checkpoints,
    // indexes, the identity file and the metadata log, which is replayed whole)
    let metadata_log_bytes: u64 = fs
        .file_paths()
        .iter()
        .filter(|p| {
            p.starts_with("/data/__cluster_metadata-0") && p.extension().is_some_and(|e| e == "log")
        })
        .map(|p| fs.open(p, false).unwrap().len().unwrap())
        .sum();
    let before = fs
        .stats()
        .bytes_read
        .load(std::sync::atomic::Ordering::SeqCst);
    let broker = start(&fs).await;
    let mut c = Client::connect(&broker.addr).await.unwrap();
    // Partitions open in the background after the listener is up: ask until it answers.
    let mut end = c.list_offset("kept", 2, -1).await;
    for _ in 0..100 {
        if end.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        end = c.list_offset("kept", 2, -1).await;
    }
    assert_eq!(end.unwrap(), 300);
    let read = fs
        .stats()
        .bytes_read
        .load(std::sync::atomic::Ordering::SeqCst)
        - before
        - metadata_log_bytes;
    assert!(
        read < 12 * 1024,
        "a clean restart reads checkpoints, indexes and the log's tail only, not the 30 KB log ({read} bytes)"
    );
    assert!(
        !fs.file_paths()
            .contains(&PathBuf::from("/data/clean-shutdown")),
        "the marker is consumed"
    );
    broker.stop().await;
}

#[test]
fn topic_names_are_validated_like_kafka() {
    use strata_broker::state::TopicError;
    let config = BrokerConfig {
        data_dir: PathBuf::from("/data"),
        ..BrokerConfig::default()
    };
    let broker =
        strata_broker::Broker::open(config, Arc::new(SimFs::new()), Arc::new(SystemClock)).unwrap();
    broker
        .create_topic("a.b", 1, -1, Default::default(), false)
        .unwrap();
    for bad in [
        "a_b",
        "",
        ".",
        "..",
        "has space",
        "slash/y",
        &"x".repeat(250),
        "__cluster_metadata",
    ] {
        let err = broker
            .create_topic(bad, 1, -1, Default::default(), false)
            .unwrap_err();
        assert!(matches!(err, TopicError::InvalidTopic(_)), "{bad:?}: {err}");
    }
    assert!(matches!(
        broker.create_topic("a.b", 1, -1, Default::default(), false),
        Err(TopicError::AlreadyExists(_))
    ));
    assert!(matches!(
        broker.create_topic("zero", 0, -1, Default::default(), false),
        Err(TopicError::InvalidPartitions(_))
    ));
    assert!(matches!(
        broker.create_partitions("a.b", 1, false),
        Err(TopicError::InvalidPartitions(_))
    ));
    broker.create_partitions("a.b", 4, false).unwrap();
    assert!(broker.partition("a.b", 3).is_some());
    broker
        .create_topic("dry", 2, -1, Default::default(), true)
        .unwrap();
    assert!(
        broker.image().topic("dry").is_none(),
        "validate_only changes nothing"
    );
}

/// A full disk (a write fails with ENOSPC halfway) is the data directory's failure, as in
/// Kafka: the produce fails, the broker stops at once (`serve` returns `Halted`, no clean
/// close), and the next start recovers the log from its files: every acknowledged record is
/// there, the half-written batch is not, and offsets go on densely.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_halts_the_broker_and_a_restart_keeps_every_acknowledged_record() {
    use std::sync::atomic::Ordering;
    let fs = SimFs::new();
    let broker = start(&fs).await;
    let mut client = Client::connect(&broker.addr).await.unwrap();
    client.create_topic("ledger", 1, &[]).await.unwrap();
    let mut acked = Vec::new();
    for i in 0..5 {
        let value = format!("entry-{i}");
        let offset = client
            .produce("ledger", 0, batch(std::slice::from_ref(&value)), -1)
            .await
            .unwrap();
        acked.push((offset, value));
    }

    fs.stats().fail_writes.store(true, Ordering::SeqCst);
    let err = client
        .produce("ledger", 0, batch(&["never".to_string()]), -1)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("code 56"), "KAFKA_STORAGE_ERROR: {err}");
    let outcome = tokio::time::timeout(Duration::from_secs(10), broker.task)
        .await
        .expect("the broker stops by itself")
        .unwrap();
    match outcome {
        Err(ServeError::Halted(reason)) => {
            assert!(reason.contains("ledger-0"), "{reason}")
        }
        other => panic!("expected a halt, got {other:?}"),
    }
    drop(client);
    fs.stats().fail_writes.store(false, Ordering::SeqCst);
    // The process is gone; the page cache is not.
    fs.crash(CrashMode::KeepAll);

    let broker = start(&fs).await;
    let mut client = Client::connect(&broker.addr).await.unwrap();
    assert_eq!(read_all(&mut client, "ledger").await, acked);
    let next = client
        .produce("ledger", 0, batch(&["after".to_string()]), -1)
        .await
        .unwrap();
    assert_eq!(next, acked.len() as i64);
    broker.stop().await;
}
