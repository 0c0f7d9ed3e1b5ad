//! `consume-1k`: read back what `produce-1k` wrote, from the beginning, at full speed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::{produce, Args, Outcome};

/// What a produce workload left behind for a consumer.
#[derive(Debug, Default, Clone)]
pub struct Produced {
    pub topic: String,
    pub partitions: i32,
    pub records: u64,
}

pub fn consumer(bootstrap: &str) -> Result<BaseConsumer> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "strata-bench")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "10485760")
        .set("fetch.wait.max.ms", "100")
        .set("queued.max.messages.kbytes", "1048576")
        .create()
        .context("consumer")
}

pub fn run(args: &Args, produced: &mut Produced) -> Result<Outcome> {
    if produced.records == 0 {
        eprintln!("   (no produce-1k data in this run: producing some first)");
        *produced = produce::run(args, "produce-1k", 1024, 8)?.1;
    }
    // Several consumers, each with its share of the partitions, stop together once the
    // total read reaches what was produced.
    let read = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let consumers = args.consumers.clamp(1, produced.partitions.max(1) as usize);
    let start = Instant::now();
    let give_up = start + args.duration() * 6 + Duration::from_secs(30);
    let mut threads = Vec::new();
    for k in 0..consumers {
        let c = consumer(&args.bootstrap)?;
        let mut tpl = TopicPartitionList::new();
        for p in (0..produced.partitions).filter(|p| *p as usize % consumers == k) {
            tpl.add_partition_offset(&produced.topic, p, Offset::Beginning)?;
        }
        c.assign(&tpl)?;
        let (read, bytes, errors, target) = (
            read.clone(),
            bytes.clone(),
            errors.clone(),
            produced.records,
        );
        threads.push(std::thread::spawn(move || {
            while read.load(Ordering::Relaxed) < target && Instant::now() < give_up {
                match c.poll(Duration::from_millis(100)) {
                    Some(Ok(m)) => {
                        read.fetch_add(1, Ordering::Relaxed);
                        bytes.fetch_add(m.payload_len() as u64, Ordering::Relaxed);
                    }
                    Some(Err(_)) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    None => {}
                }
            }
        }));
    }
    for t in threads {
        let _ = t.join();
    }
    let (records, bytes, errors) = (
        read.load(Ordering::Relaxed),
        bytes.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
    );
    if records < produced.records {
        bail!(
            "read {records} of {} records before giving up",
            produced.records
        );
    }
    Ok(Outcome::throughput(
        "consume-1k",
        records,
        bytes,
        start.elapsed().as_secs_f64(),
        errors,
    ))
}
