//! DeleteRecords (advance a partition's log start offset) and DescribeLogDirs (what each
//! partition takes on disk, and the data directory's space).

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::*;
use tracing::warn;

use super::str;
use crate::errors;
use crate::Broker;

/// Runs on a blocking thread: each change is checkpointed (synced) before the answer.
pub fn delete_records(broker: &Arc<Broker>, r: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let mut resp = DeleteRecordsResponse::default();
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
                    Some(partition) => match broker.delete_records(&partition, p.offset) {
                        Ok(start) => rp.low_watermark = start,
                        Err(e) => {
                            warn!(topic = %t.name.as_str(), partition = p.partition_index, error = %e, "delete records refused");
                            rp.error_code = errors::storage_error_code(&e);
                        }
                    },
                }
            }
            rt.partitions.push(rp);
        }
        resp.topics.push(rt);
    }
    resp
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
    let mut by_topic: BTreeMap<String, Vec<describe_log_dirs_response::DescribeLogDirsPartition>> =
        BTreeMap::new();
    for p in broker.all_partitions() {
        if let Some(w) = &wanted {
            if !w.get(&p.topic).is_some_and(|ps| ps.contains(&p.partition)) {
                continue;
            }
        }
        let mut dp = describe_log_dirs_response::DescribeLogDirsPartition::default();
        dp.partition_index = p.partition;
        dp.partition_size = p.log().size_bytes() as i64;
        dp.offset_lag = 0;
        by_topic.entry(p.topic.clone()).or_default().push(dp);
    }
    let mut result = describe_log_dirs_response::DescribeLogDirsResult::default();
    result.log_dir = str(&broker.config.data_dir.display().to_string());
    let (total, usable) = space(&broker.config.data_dir);
    result.total_bytes = total;
    result.usable_bytes = usable;
    for (name, mut partitions) in by_topic {
        partitions.sort_by_key(|p| p.partition_index);
        let mut t = describe_log_dirs_response::DescribeLogDirsTopic::default();
        t.name = TopicName(str(&name));
        t.partitions = partitions;
        result.topics.push(t);
    }
    DescribeLogDirsResponse::default().with_results(vec![result])
}
