//! Throughput workloads: several librdkafka producers at full speed, acks=all, linger 5 ms,
//! batches up to 1 MiB, no compression.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::ClientContext;

use crate::consume::Produced;
use crate::{admin, Args, Outcome};

#[derive(Default)]
pub struct Counts {
    pub records: AtomicU64,
    pub bytes: AtomicU64,
    pub errors: AtomicU64,
}

pub struct Counting(pub Arc<Counts>);

impl ClientContext for Counting {}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(m) => {
                self.0.records.fetch_add(1, Ordering::Relaxed);
                self.0
                    .bytes
                    .fetch_add(m.payload_len() as u64, Ordering::Relaxed);
            }
            Err(_) => {
                self.0.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

pub fn producer_config(bootstrap: &str, linger_ms: u32) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("linger.ms", linger_ms.to_string())
        .set("batch.size", "1048576")
        .set("batch.num.messages", "1000000")
        .set("message.max.bytes", "1048588")
        .set("queue.buffering.max.messages", "2000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("compression.type", "none")
        .set("enable.idempotence", "false");
    c
}

/// Sends `payload` to `partitions` (round robin when `Some`) until `deadline`, then flushes.
fn drive(
    producer: &BaseProducer<Counting>,
    topic: &str,
    payload: &[u8],
    partitions: Option<i32>,
    deadline: Instant,
) {
    let mut i: i64 = 0;
    while Instant::now() < deadline {
        for _ in 0..1000 {
            let mut record = BaseRecord::to(topic).payload(payload);
            if let Some(n) = partitions {
                record = record.partition((i % i64::from(n)) as i32);
            }
            match producer.send::<(), [u8]>(record) {
                Ok(()) => i += 1,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    producer.poll(Duration::from_millis(1));
                }
                Err(_) => {}
            }
        }
        producer.poll(Duration::ZERO);
    }
    let _ = producer.flush(Duration::from_secs(60));
}

fn run_producers(
    args: &Args,
    topic: &str,
    record_bytes: usize,
    partitions: Option<i32>,
    linger_ms: u32,
) -> Result<(Arc<Counts>, f64)> {
    let counts = Arc::new(Counts::default());
    let start = Instant::now();
    let deadline = start + args.duration();
    let threads: Vec<_> = (0..args.producers.max(1))
        .map(|_| {
            let producer: BaseProducer<Counting> = producer_config(&args.bootstrap, linger_ms)
                .create_with_context(Counting(counts.clone()))
                .context("producer")?;
            let topic = topic.to_string();
            Ok(std::thread::spawn(move || {
                drive(
                    &producer,
                    &topic,
                    &vec![b'x'; record_bytes],
                    partitions,
                    deadline,
                )
            }))
        })
        .collect::<Result<_>>()?;
    for t in threads {
        let _ = t.join();
    }
    Ok((counts, start.elapsed().as_secs_f64()))
}

/// `produce-1k` / `produce-100`: the topic is kept so `consume-1k` can read it back.
pub fn run(
    args: &Args,
    name: &str,
    record_bytes: usize,
    partitions: i32,
) -> Result<(Outcome, Produced)> {
    let topic = admin::create_topic(&args.bootstrap, name, partitions)?;
    let (counts, secs) = run_producers(args, &topic, record_bytes, None, 5)?;
    let records = counts.records.load(Ordering::Relaxed);
    let outcome = Outcome::throughput(
        name,
        records,
        counts.bytes.load(Ordering::Relaxed),
        secs,
        counts.errors.load(Ordering::Relaxed),
    );
    Ok((
        outcome,
        Produced {
            topic,
            partitions,
            records,
        },
    ))
}

/// `partitions-10k`: 1 KiB records spread over every partition of many topics.
pub fn run_many_partitions(args: &Args) -> Result<Outcome> {
    let total = args.many_partitions.max(1);
    let per_topic = total.min(1000);
    let topics = (total + per_topic - 1) / per_topic;
    let names: Vec<String> = (0..topics)
        .map(|t| admin::create_topic(&args.bootstrap, &format!("many{t}"), per_topic))
        .collect::<Result<_>>()?;
    let counts = Arc::new(Counts::default());
    let start = Instant::now();
    let deadline = start + args.duration();
    // one producer per topic group, each cycling over its topics' partitions
    let producers = args.producers.max(1);
    let threads: Vec<_> = (0..producers)
        .map(|k| {
            let producer: BaseProducer<Counting> = producer_config(&args.bootstrap, 5)
                .create_with_context(Counting(counts.clone()))
                .context("producer")?;
            let mine: Vec<String> = names.iter().skip(k).step_by(producers).cloned().collect();
            Ok(std::thread::spawn(move || {
                let payload = vec![b'x'; 1024];
                let mut i: i64 = 0;
                while Instant::now() < deadline && !mine.is_empty() {
                    for _ in 0..1000 {
                        let topic = &mine[(i as usize / per_topic as usize) % mine.len()];
                        let record = BaseRecord::<(), [u8]>::to(topic)
                            .payload(&payload)
                            .partition((i % i64::from(per_topic)) as i32);
                        match producer.send(record) {
                            Ok(()) => i += 1,
                            Err(_) => {
                                producer.poll(Duration::from_millis(1));
                            }
                        }
                    }
                    producer.poll(Duration::ZERO);
                }
                let _ = producer.flush(Duration::from_secs(60));
            }))
        })
        .collect::<Result<_>>()?;
    for t in threads {
        let _ = t.join();
    }
    let secs = start.elapsed().as_secs_f64();
    let mut o = Outcome::throughput(
        "partitions-10k",
        counts.records.load(Ordering::Relaxed),
        counts.bytes.load(Ordering::Relaxed),
        secs,
        counts.errors.load(Ordering::Relaxed),
    );
    o.partitions = Some(topics * per_topic);
    Ok(o)
}

/// How long each transaction of `produce-txn` stays open.
const TXN_INTERVAL: Duration = Duration::from_millis(100);

/// `produce-txn`: produce-1k's load from transactional producers (one transactional id each,
/// idempotence on), committing every 100 ms — the exactly-once path: AddPartitionsToTxn,
/// verified transactional appends, EndTxn with markers. Compare with produce-1k of the same run.
pub fn run_transactional(args: &Args) -> Result<Outcome> {
    let topic = admin::create_topic(&args.bootstrap, "produce-txn", 8)?;
    let counts = Arc::new(Counts::default());
    let transactions = Arc::new(AtomicU64::new(0));
    // Producers get their transactional ids (and the broker its transaction log) before the
    // clock starts: a broker that creates `__transaction_state` on first use is not charged
    // for it.
    let producers: Vec<BaseProducer<Counting>> = (0..args.producers.max(1))
        .map(|k| {
            let mut config = producer_config(&args.bootstrap, 5);
            config
                .set("enable.idempotence", "true")
                .set(
                    "transactional.id",
                    format!("strata-bench-{}-{k}", std::process::id()),
                )
                .set("max.in.flight.requests.per.connection", "5");
            let producer: BaseProducer<Counting> = config
                .create_with_context(Counting(counts.clone()))
                .context("transactional producer")?;
            producer
                .init_transactions(Duration::from_secs(120))
                .context("init_transactions")?;
            Ok(producer)
        })
        .collect::<Result<_>>()?;
    let start = Instant::now();
    let deadline = start + args.duration();
    let threads: Vec<_> = producers
        .into_iter()
        .map(|producer| {
            let (topic, transactions) = (topic.clone(), transactions.clone());
            Ok(std::thread::spawn(move || -> Result<()> {
                let payload = vec![b'x'; 1024];
                while Instant::now() < deadline {
                    producer.begin_transaction()?;
                    let end = (Instant::now() + TXN_INTERVAL).min(deadline);
                    while Instant::now() < end {
                        for _ in 0..100 {
                            match producer
                                .send::<(), [u8]>(BaseRecord::to(&topic).payload(&payload))
                            {
                                Ok(()) => {}
                                Err((
                                    KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull),
                                    _,
                                )) => {
                                    producer.poll(Duration::from_millis(1));
                                }
                                Err((e, _)) => return Err(e.into()),
                            }
                        }
                        producer.poll(Duration::ZERO);
                    }
                    producer.commit_transaction(Duration::from_secs(60))?;
                    transactions.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            }))
        })
        .collect::<Result<_>>()?;
    for t in threads {
        t.join()
            .map_err(|_| anyhow::anyhow!("producer thread panicked"))??;
    }
    let secs = start.elapsed().as_secs_f64();
    let mut o = Outcome::throughput(
        "produce-txn",
        counts.records.load(Ordering::Relaxed),
        counts.bytes.load(Ordering::Relaxed),
        secs,
        counts.errors.load(Ordering::Relaxed),
    );
    o.transactions_per_s = Some(crate::round(
        transactions.load(Ordering::Relaxed) as f64 / secs,
        1,
    ));
    Ok(o)
}
