//! `e2e-latency`: 1 KiB records at a fixed rate; latency from the produce call to receipt by
//! a consumer in the same process (the send time travels in the record).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use crate::{admin, consume, produce, round, Args, Latency, Outcome};

const PARTITIONS: i32 = 8;
/// Send time of warm-up records, which are not measured.
const WARM_UP_MARK: u64 = u64::MAX;

pub fn run(args: &Args) -> Result<Outcome> {
    let topic = admin::create_topic(&args.bootstrap, "latency", PARTITIONS)?;
    let base = Instant::now();
    let consumer = consume::consumer(&args.bootstrap)?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(&topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let done = Arc::new(AtomicBool::new(false));
    let stop = done.clone();
    let warmed = Arc::new(AtomicBool::new(false));
    let warmed_seen = warmed.clone();
    let reader = std::thread::spawn(move || {
        let mut micros: Vec<u32> = Vec::new();
        let mut quiet_since = Instant::now();
        loop {
            match consumer.poll(Duration::from_millis(10)) {
                Some(Ok(m)) => {
                    if let Some(p) = m.payload().filter(|p| p.len() >= 8) {
                        let sent = u64::from_be_bytes(p[..8].try_into().expect("8 bytes"));
                        if sent == WARM_UP_MARK {
                            warmed_seen.store(true, Ordering::Relaxed);
                            continue;
                        }
                        let now = base.elapsed().as_micros() as u64;
                        micros
                            .push(now.saturating_sub(sent / 1000).min(u64::from(u32::MAX)) as u32);
                    }
                    quiet_since = Instant::now();
                }
                _ => {
                    if stop.load(Ordering::Relaxed)
                        && quiet_since.elapsed() > Duration::from_secs(2)
                    {
                        return micros;
                    }
                }
            }
        }
    });
    let counts = Arc::new(produce::Counts::default());
    let producer: BaseProducer<produce::Counting> = produce::producer_config(&args.bootstrap, 1)
        .create_with_context(produce::Counting(counts.clone()))
        .context("producer")?;
    // Warm up: connections, metadata and the consumer's first fetch happen before the
    // clock starts, so start-up does not show as tail latency.
    let mut payload = vec![b'x'; 1024];
    payload[..8].copy_from_slice(&WARM_UP_MARK.to_be_bytes());
    for _ in 0..100 {
        let _ = producer.send(BaseRecord::<(), [u8]>::to(&topic).payload(&payload));
    }
    let _ = producer.flush(Duration::from_secs(30));
    let wait = Instant::now();
    while !warmed.load(Ordering::Relaxed) && wait.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    let rate = args.latency_mb_per_s * 1e6 / 1024.0; // records per second
    let start = Instant::now();
    let mut sent: u64 = 0;
    while start.elapsed() < args.duration() {
        let due = (start.elapsed().as_secs_f64() * rate) as u64;
        while sent < due {
            let t = base.elapsed().as_nanos() as u64;
            payload[..8].copy_from_slice(&t.to_be_bytes());
            match producer.send(BaseRecord::<(), [u8]>::to(&topic).payload(&payload)) {
                Ok(()) => sent += 1,
                Err(_) => {
                    producer.poll(Duration::from_millis(1));
                }
            }
        }
        producer.poll(Duration::ZERO);
        std::thread::sleep(Duration::from_micros(200));
    }
    let _ = producer.flush(Duration::from_secs(30));
    let secs = start.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let mut micros = reader.join().unwrap_or_default();
    micros.sort_unstable();
    let pct = |q: f64| -> f64 {
        if micros.is_empty() {
            return 0.0;
        }
        let i = ((micros.len() as f64 * q).ceil() as usize).clamp(1, micros.len()) - 1;
        round(f64::from(micros[i]) / 1000.0, 3)
    };
    let mut o = Outcome::throughput(
        "e2e-latency",
        sent,
        sent * 1024,
        secs,
        counts.errors.load(Ordering::Relaxed),
    );
    o.latency = Some(Latency {
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        p999_ms: pct(0.999),
        max_ms: pct(1.0),
        samples: micros.len(),
    });
    Ok(o)
}
