//! DeleteRecords (advance a partition's log start offset) and DescribeLogDirs (what each
//! partition takes on disk, and the data directory's space).

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::*;
use tracing::warn;

use super::str;
use crate::errors;
use crate::Broker;

/// Runs on a blocking thread: each change is checkpointed (synced) on the leader, then the
/// answer waits, as Kafka's DelayedDeleteRecords does, until every in-sync replica's log
/// start reached it (the low watermark; followers follow the leader's from their fetch
/// answers), so records an answer says are deleted stay deleted whichever replica leads
/// next. Past the request's timeout a partition is answered REQUEST_TIMED_OUT (deleted on
/// the leader; its followers follow when they next fetch). With fewer in-sync replicas than
/// `min.insync.replicas` the low watermark is unknown (a replica out of the ISR may be
/// elected), so, as a produce with acks=all, such a partition is answered
/// NOT_ENOUGH_REPLICAS at once: before anything is deleted if it is so when the request
/// comes, else as soon as the ISR shrinks below it (deleted on the leader, not confirmed).
pub fn delete_records(broker: &Arc<Broker>, r: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let mut resp = DeleteRecordsResponse::default();
    // (topic index, partition index) in the response, the partition, the offset to reach.
    let mut waiting = Vec::new();
    for t in &r.topics {
        let mut rt = delete_records_response::DeleteRecordsTopicResult::default();
        rt.name = t.name.clone();
        for p in &t.partitions {
            let mut rp = delete_records_response::DeleteRecordsPartitionResult::default();
            rp.partition_index = p.partition_index;
            rp.low_watermark = -1;
            if crate::state::is_internal_topic(&t.name) {
                // Their records are the coordinators' state.
                rp.error_code = errors::INVALID_TOPIC;
            } else {
                match broker.partition(&t.name, p.partition_index) {
                    None => {
                        rp.error_code = broker.missing_partition_error(&t.name, p.partition_index)
                    }
                    // Only the leader moves the log start; its followers follow it.
                    Some(partition) if !partition.is_leader() => {
                        rp.error_code = errors::NOT_LEADER_OR_FOLLOWER
                    }
                    Some(partition) if below_min_isr(&partition) => {
                        rp.error_code = errors::NOT_ENOUGH_REPLICAS
                    }
                    Some(partition) => {
                        let epoch = partition.leader_epoch();
                        match broker.delete_records(&partition, p.offset) {
                            Ok(start) => waiting.push((
                                resp.topics.len(),
                                rt.partitions.len(),
                                partition,
                                epoch,
                                start,
                            )),
                            Err(e) => {
                                warn!(topic = %t.name.as_str(), partition = p.partition_index, error = %e, "delete records refused");
                                rp.error_code = errors::storage_error_code(&e);
                            }
                        }
                    }
                }
            }
            rt.partitions.push(rp);
        }
        resp.topics.push(rt);
    }
    let timeout = std::time::Duration::from_millis(r.timeout_ms.clamp(0, 300_000) as u64);
    let deadline = std::time::Instant::now() + timeout;
    loop {
        waiting.retain(|(t, i, partition, epoch, target)| {
            let rp = &mut resp.topics[*t].partitions[*i];
            let Some(low) = partition.low_watermark(*epoch) else {
                rp.error_code = errors::NOT_LEADER_OR_FOLLOWER;
                return false;
            };
            if low < *target {
                if below_min_isr(partition) {
                    rp.error_code = errors::NOT_ENOUGH_REPLICAS;
                    return false;
                }
                return true;
            }
            rp.low_watermark = low;
            false
        });
        if waiting.is_empty() {
            break;
        }
        if std::time::Instant::now() >= deadline {
            for (t, i, partition, epoch, target) in waiting {
                warn!(topic = %partition.topic, partition = partition.partition, target, low_watermark = partition.low_watermark(epoch), "delete records: in-sync replicas did not follow in time");
                resp.topics[t].partitions[i].error_code = errors::REQUEST_TIMED_OUT;
            }
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    resp
}

/// Fewer in-sync replicas than `min.insync.replicas`: no low watermark can be known.
fn below_min_isr(partition: &strata_storage::Partition) -> bool {
    let (isr, min_isr) = partition.isr();
    isr.len() < min_isr
}

/// The data directory's size and free space, -1 where the file system will not say.
fn space(dir: &std::path::Path) -> (i64, i64) {
    match nix::sys::statvfs::statvfs(dir) {
        Ok(s) => {
            let block = s.fragment_size() as i64;
            (
                (s.blocks() as i64).saturating_mul(block),
                (s.blocks_available() as i64).saturating_mul(block),
            )
        }
        Err(_) => (-1, -1),
    }
}

pub fn describe_log_dirs(
    broker: &Arc<Broker>,
    r: DescribeLogDirsRequest,
) -> DescribeLogDirsResponse {
    // topic -> partitions asked for (None: every partition of every topic)
    let wanted: Option<BTreeMap<String, Vec<i32>>> = r.topics.as_ref().map(|ts| {
        ts.iter()
            .map(|t| (t.topic.to_string(), t.partitions.clone()))
            .collect()
    });
    let (total, usable) = space(&broker.config.data_dir);
    let mut results = vec![log_dir(
        broker,
        &broker.config.data_dir.display().to_string(),
        (total, usable),
        wanted.as_ref(),
        |p| Some(p.log().size_bytes() as i64),
    )];
    // Tiered storage's object store as one more log directory: the bytes of each hosted
    // tiered partition's finished copies, from the cluster metadata. Its total and usable
    // bytes are unknown (-1): a store has no fixed size.
    if let Some(tiering) = &broker.tiering {
        let image = broker.image();
        results.push(log_dir(
            broker,
            tiering.storage.url(),
            (-1, -1),
            wanted.as_ref(),
            |p| {
                if !p.log().config().remote_storage_enable {
                    return None;
                }
                let meta = image.topic(&p.topic)?.partitions.get(&p.partition)?;
                Some(meta.copied_segments().map(|c| c.size_bytes as i64).sum())
            },
        ));
    }
    DescribeLogDirsResponse::default().with_results(results)
}

/// One log directory's answer: the hosted partitions asked for that `size` gives a size.
fn log_dir(
    broker: &Broker,
    name: &str,
    (total_bytes, usable_bytes): (i64, i64),
    wanted: Option<&BTreeMap<String, Vec<i32>>>,
    size: impl Fn(&strata_storage::Partition) -> Option<i64>,
) -> describe_log_dirs_response::DescribeLogDirsResult {
    let mut by_topic: BTreeMap<String, Vec<describe_log_dirs_response::DescribeLogDirsPartition>> =
        BTreeMap::new();
    for p in broker.all_partitions() {
        if let Some(w) = wanted {
            if !w.get(&p.topic).is_some_and(|ps| ps.contains(&p.partition)) {
                continue;
            }
        }
        let Some(bytes) = size(&p) else { continue };
        let mut dp = describe_log_dirs_response::DescribeLogDirsPartition::default();
        dp.partition_index = p.partition;
        dp.partition_size = bytes;
        dp.offset_lag = 0;
        by_topic.entry(p.topic.clone()).or_default().push(dp);
    }
    let mut result = describe_log_dirs_response::DescribeLogDirsResult::default();
    result.log_dir = str(name);
    result.total_bytes = total_bytes;
    result.usable_bytes = usable_bytes;
    for (name, mut partitions) in by_topic {
        partitions.sort_by_key(|p| p.partition_index);
        let mut t = describe_log_dirs_response::DescribeLogDirsTopic::default();
        t.name = TopicName(str(&name));
        t.partitions = partitions;
        result.topics.push(t);
    }
    result
}
