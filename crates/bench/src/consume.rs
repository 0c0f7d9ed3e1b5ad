//! `consume-1k`: read back what `produce-1k` wrote, from the beginning, at full speed.

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
    let c = consumer(&args.bootstrap)?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..produced.partitions {
        tpl.add_partition_offset(&produced.topic, p, Offset::Beginning)?;
    }
    c.assign(&tpl)?;
    let start = Instant::now();
    let give_up = start + args.duration() * 6 + Duration::from_secs(30);
    let (mut records, mut bytes, mut errors) = (0u64, 0u64, 0u64);
    while records < produced.records {
        if Instant::now() > give_up {
            bail!(
                "read {records} of {} records before giving up",
                produced.records
            );
        }
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                records += 1;
                bytes += m.payload_len() as u64;
            }
            Some(Err(_)) => errors += 1,
            None => {}
        }
    }
    Ok(Outcome::throughput(
        "consume-1k",
        records,
        bytes,
        start.elapsed().as_secs_f64(),
        errors,
    ))
}
