//! Fetch with long polling: answer as soon as `min_bytes` are available, else when
//! `max_wait_ms` runs out, waking whenever a high watermark moves.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{fetch_response, FetchRequest, FetchResponse, ProducerId};
use strata_storage::segment::SegmentSlice;
use strata_storage::IsolatedSlice;
use tokio::time::Instant;

use crate::authorizer::Authz;
use crate::errors;
use crate::zero_copy::new_marker;
use crate::Broker;
use strata_security::acl::Operation;

/// A partition whose fetch offset lies in a copy in the object store (tiered storage,
/// below the local log start): read after the pass over the local logs.
struct RemoteRead {
    topic: usize,
    partition: usize,
    objects: strata_tiered::SegmentObjects,
    offset: i64,
    limit: usize,
    /// read_committed: the aborted transactions overlapping the read go with it.
    read_committed: bool,
}

/// The finished copy holding `offset` of a tiered partition, and the partition's log start
/// (its first copy's), if the offset is in one.
fn remote_copy(
    broker: &Broker,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Option<(strata_tiered::SegmentObjects, i64)> {
    broker.tiering.as_ref()?;
    let image = broker.image();
    let t = image.topic(topic)?;
    let p = t.partitions.get(&partition)?;
    let start = p.copied_segments().next()?.base_offset;
    let copy = p.copy_holding(offset)?;
    Some((
        strata_tiered::SegmentObjects {
            topic: t.name.clone(),
            topic_id: t.topic_id,
            partition,
            base_offset: copy.base_offset,
            id: copy.id,
        },
        start,
    ))
}

/// A fetch response ready to encode: records of partitions with data are either a marker
/// (to be replaced by a sendfile'd range, see `zero_copy`) or the bytes themselves.
pub struct Prepared {
    pub response: FetchResponse,
    pub marker: [u8; 16],
    pub ranges: Vec<SegmentSlice>,
}

impl Prepared {
    /// Puts the ranges' bytes in place of the markers (the copying path).
    pub fn fill_records(mut self) -> std::io::Result<FetchResponse> {
        let mut ranges = self.ranges.into_iter();
        for t in &mut self.response.responses {
            for p in &mut t.partitions {
                if p.records.as_deref() == Some(&self.marker[..]) {
                    let range = ranges.next().expect("one range per marker");
                    p.records = Some(range.read()?);
                }
            }
        }
        Ok(self.response)
    }
}

pub async fn handle(
    broker: &Arc<Broker>,
    req: FetchRequest,
    version: i16,
    authz: &Authz,
) -> Prepared {
    let mut prepared = wait_and_read(broker, req, version, authz).await;
    if version >= 12 {
        name_current_leaders(broker, &mut prepared.response);
    }
    prepared
}

/// KIP-951: a partition refused because this broker does not lead it (or no longer in the
/// epoch the client named) carries the leader and epoch this broker knows.
fn name_current_leaders(broker: &Broker, response: &mut FetchResponse) {
    let image = broker.image();
    for t in &mut response.responses {
        let name = topic_name(&image, &t.topic.0, &t.topic_id);
        for p in &mut t.partitions {
            if p.error_code != errors::NOT_LEADER_OR_FOLLOWER
                && p.error_code != errors::FENCED_LEADER_EPOCH
            {
                continue;
            }
            // the leader's id and epoch only: no endpoint, so no listener
            if let Some(leader) = broker.current_leader(&name, p.partition_index, "") {
                p.current_leader = fetch_response::LeaderIdAndEpoch::default()
                    .with_leader_id(kafka_protocol::messages::BrokerId(leader.leader_id))
                    .with_leader_epoch(leader.leader_epoch);
            }
        }
    }
}

async fn wait_and_read(
    broker: &Arc<Broker>,
    req: FetchRequest,
    version: i16,
    authz: &Authz,
) -> Prepared {
    let wait_ms = req
        .max_wait_ms
        .clamp(0, broker.config.fetch_max_wait_ms_max);
    let deadline = Instant::now() + Duration::from_millis(wait_ms as u64);
    loop {
        let notified = broker.data_arrived.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let (mut resp, bytes, errored, remote) =
            read_once(broker, &req, version, new_marker(), authz);
        if !remote.is_empty() {
            // Tiered storage: read from the object store (on its own pool, waiting at most
            // remote.fetch.max.wait.ms), and answer at once.
            let tiering = broker.tiering.clone().expect("remote reads need tiering");
            let reads = remote
                .iter()
                .map(|r| (r.objects.clone(), r.offset, r.limit))
                .collect();
            for (r, result) in remote.iter().zip(tiering.fetch(reads).await) {
                let data = &mut resp.response.responses[r.topic].partitions[r.partition];
                match result {
                    Ok(Some((records, aborted))) => {
                        broker
                            .metrics
                            .topic(&r.objects.topic)
                            .bytes_out
                            .fetch_add(records.len() as u64, std::sync::atomic::Ordering::Relaxed);
                        data.records = Some(records);
                        if r.read_committed {
                            data.aborted_transactions = Some(
                                aborted
                                    .into_iter()
                                    .map(|a| {
                                        fetch_response::AbortedTransaction::default()
                                            .with_producer_id(ProducerId(a.producer_id))
                                            .with_first_offset(a.first_offset)
                                    })
                                    .collect(),
                            );
                        }
                    }
                    Ok(None) => data.records = Some(Bytes::new()),
                    Err(e) => {
                        tracing::warn!(topic = %r.objects.topic, partition = r.objects.partition, offset = r.offset, error = %e, "remote fetch failed");
                        data.error_code = errors::KAFKA_STORAGE_ERROR;
                    }
                }
            }
            return resp;
        }
        if bytes >= req.min_bytes.max(0) as usize
            || errored
            || Instant::now() >= deadline
            || broker.is_shutting_down()
        {
            return resp;
        }
        let _waiting = crate::metrics::Gauged::new(&broker.metrics.fetch_purgatory);
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// One pass over the requested partitions. Returns the response, its record bytes, and
/// whether any partition had an error (which answers at once, as Kafka does).
fn read_once(
    broker: &Broker,
    req: &FetchRequest,
    version: i16,
    marker: [u8; 16],
    authz: &Authz,
) -> (Prepared, usize, bool, Vec<RemoteRead>) {
    let mut ranges = Vec::new();
    let mut remote = Vec::new();
    let mut budget = (req.max_bytes.max(0) as usize).min(broker.config.fetch_max_bytes);
    let mut total = 0usize;
    let mut errored = false;
    let mut topics = Vec::with_capacity(req.topics.len());
    // A follower replicating (replica id ≥ 0) reads up to the log end offset, and its fetch
    // offset tells the leader what it holds (synced).
    let replica = if req.replica_state.replica_id.0 >= 0 {
        req.replica_state.replica_id.0
    } else {
        req.replica_id.0
    };
    // KIP-903: a follower names its broker epoch (v15); a fetch from an earlier incarnation
    // of that broker (still in flight when it restarted) does not count as its progress.
    let stale_replica = replica >= 0
        && req.replica_state.replica_epoch >= 0
        && broker
            .image()
            .broker(replica)
            .is_some_and(|b| b.broker_epoch != req.replica_state.replica_epoch);
    // Followers need CLUSTER_ACTION, consumers READ on each topic (as Kafka).
    let replica_denied = replica >= 0 && !authz.cluster(Operation::ClusterAction);
    let image = (version >= 13).then(|| broker.image());
    let mut high_watermark_moved = false;
    for t in &req.topics {
        // v13+ names topics by id only.
        let name = match &image {
            None => t.topic.0.as_str(),
            Some(image) => match image.topic_by_id(&t.topic_id) {
                Some(topic) => topic.name.as_str(),
                None => {
                    errored = true;
                    let partitions = t
                        .partitions
                        .iter()
                        .map(|p| {
                            refused(
                                PartitionData::default().with_partition_index(p.partition),
                                errors::UNKNOWN_TOPIC_ID,
                            )
                        })
                        .collect();
                    topics.push(
                        FetchableTopicResponse::default()
                            .with_topic(t.topic.clone())
                            .with_topic_id(t.topic_id)
                            .with_partitions(partitions),
                    );
                    continue;
                }
            },
        };
        let mut partitions = Vec::with_capacity(t.partitions.len());
        let denied = replica_denied || (replica < 0 && !authz.topic(Operation::Read, name));
        for p in &t.partitions {
            let mut data = PartitionData::default().with_partition_index(p.partition);
            if denied {
                errored = true;
                partitions.push(refused(data, errors::TOPIC_AUTHORIZATION_FAILED));
                continue;
            }
            let Some(partition) = broker.partition(name, p.partition) else {
                errored = true;
                partitions.push(refused(
                    data,
                    broker.missing_partition_error(name, p.partition),
                ));
                continue;
            };
            // KIP-74: the first partition with data returns at least one batch, even past
            // the limits; after that a batch that does not fit is left for the next fetch.
            let limit = (p.partition_max_bytes.max(0) as usize).min(budget);
            let epoch_error =
                errors::leader_epoch_check(p.current_leader_epoch, partition.leader_epoch());
            if epoch_error != errors::NONE {
                errored = true;
                partitions.push(refused(data, epoch_error));
                continue;
            }
            if !partition.is_leader() {
                errored = true;
                partitions.push(refused(data, errors::NOT_LEADER_OR_FOLLOWER));
                continue;
            }
            let read_committed = req.isolation_level == 1;
            let mut throttle: Option<u64> = None;
            // Only a replica of the partition (as the metadata says) fetches as one: its fetch
            // offset moves the high watermark. (Inter-broker authentication comes with the
            // security work; until then this keeps a stray replica id from counting.)
            if replica >= 0 && (stale_replica || !is_replica(broker, name, p.partition, replica)) {
                errored = true;
                partitions.push(refused(data, errors::NOT_LEADER_OR_FOLLOWER));
                continue;
            }
            let found = if replica >= 0 {
                // KIP-279: a follower whose last epoch ends earlier here (or is unknown
                // here) diverged: it is told where that epoch ends and truncates.
                if let Some((epoch, end)) =
                    partition.diverging_epoch(p.last_fetched_epoch, p.fetch_offset)
                {
                    errored = true;
                    let log = partition.log();
                    partitions.push(
                        data.with_high_watermark(log.high_watermark())
                            .with_last_stable_offset(log.last_stable_offset())
                            .with_log_start_offset(log.log_start_offset())
                            .with_diverging_epoch(
                                fetch_response::EpochEndOffset::default()
                                    .with_epoch(epoch)
                                    .with_end_offset(end),
                            )
                            .with_records(Some(Bytes::new())),
                    );
                    continue;
                }
                throttle = leader_throttle(broker, name, p.partition);
                // A throttled partition gets at most one second of its rate per fetch.
                let limit = throttle.map_or(limit, |rate| limit.min(rate as usize));
                // Counted only once the offset is known valid (at most the log end).
                let found = partition.slice_replica(p.fetch_offset, limit, total == 0);
                if found.is_ok() {
                    high_watermark_moved |=
                        partition.follower_fetched(replica, p.fetch_offset, p.log_start_offset);
                }
                found
            } else {
                partition.slice_isolated(p.fetch_offset, limit, total == 0, read_committed)
            };
            match found {
                Ok(IsolatedSlice {
                    range,
                    high_watermark: hw,
                    last_stable_offset,
                    log_start_offset: log_start,
                    aborted,
                    ..
                }) => {
                    // A throttled partition over the leader's budget gets no records now.
                    let range = match (throttle, range) {
                        (Some(rate), Some(range)) => {
                            let now = std::time::Instant::now();
                            let quotas = &broker.replication_quotas.leader;
                            if quotas.allows(rate, now) {
                                quotas.record(rate, range.bytes as u64, now);
                                Some(range)
                            } else {
                                None
                            }
                        }
                        (_, range) => range,
                    };
                    let records = match range {
                        Some(range) => {
                            total += range.bytes;
                            let stats = broker.metrics.topic(name);
                            let counter = if replica < 0 {
                                &stats.bytes_out
                            } else {
                                &stats.replication_bytes_out
                            };
                            counter.fetch_add(
                                range.bytes as u64,
                                std::sync::atomic::Ordering::Relaxed,
                            );
                            budget = budget.saturating_sub(range.bytes);
                            if range.file.as_fd().is_some() {
                                ranges.push(range);
                                Bytes::copy_from_slice(&marker)
                            } else {
                                match range.read() {
                                    Ok(bytes) => bytes,
                                    Err(e) => {
                                        errored = true;
                                        tracing::warn!(topic = name, partition = p.partition, error = %e, "fetch read failed");
                                        partitions.push(
                                            data.with_error_code(errors::KAFKA_STORAGE_ERROR)
                                                .with_records(Some(Bytes::new())),
                                        );
                                        continue;
                                    }
                                }
                            }
                        }
                        None => Bytes::new(),
                    };
                    data = data
                        .with_high_watermark(hw)
                        .with_last_stable_offset(last_stable_offset)
                        .with_log_start_offset(log_start)
                        .with_records(Some(records));
                    if read_committed {
                        data = data.with_aborted_transactions(Some(
                            aborted
                                .into_iter()
                                .map(|(producer_id, first_offset)| {
                                    fetch_response::AbortedTransaction::default()
                                        .with_producer_id(ProducerId(producer_id))
                                        .with_first_offset(first_offset)
                                })
                                .collect(),
                        ));
                    }
                }
                Err(e) => {
                    if !matches!(e, strata_storage::StorageError::OffsetOutOfRange { .. }) {
                        broker
                            .metrics
                            .topic(name)
                            .failed_fetch
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    let log = partition.log();
                    let (hw, lso) = (log.high_watermark(), log.log_start_offset());
                    let stable = log.last_stable_offset();
                    drop(log);
                    let below_local =
                        matches!(e, strata_storage::StorageError::OffsetOutOfRange { .. })
                            && p.fetch_offset < lso;
                    if let (true, Some((objects, start))) = (
                        replica < 0 && below_local,
                        remote_copy(broker, name, p.partition, p.fetch_offset),
                    ) {
                        remote.push(RemoteRead {
                            topic: topics.len(),
                            partition: partitions.len(),
                            objects,
                            offset: p.fetch_offset,
                            limit,
                            read_committed,
                        });
                        partitions.push(
                            data.with_high_watermark(hw)
                                .with_last_stable_offset(stable)
                                .with_log_start_offset(start)
                                .with_records(Some(Bytes::new())),
                        );
                        continue;
                    }
                    errored = true;
                    let code = errors::storage_error_code(&e);
                    data = data
                        .with_error_code(code)
                        .with_high_watermark(hw)
                        .with_last_stable_offset(hw)
                        .with_log_start_offset(lso)
                        .with_records(Some(Bytes::new()));
                }
            }
            partitions.push(data);
        }
        topics.push(
            FetchableTopicResponse::default()
                .with_topic(t.topic.clone())
                .with_topic_id(t.topic_id)
                .with_partitions(partitions),
        );
    }
    if high_watermark_moved {
        // acks=all produces and long-polling consumers waiting on it.
        broker.data_arrived.notify_waiters();
    }
    let response = FetchResponse::default().with_responses(topics);
    (
        Prepared {
            response,
            marker,
            ranges,
        },
        total,
        errored,
        remote,
    )
}

/// A Fetch topic's name: as given (up to v12), or (v13+, named by id) the image's name for
/// its id; empty when the image has no such topic.
pub(crate) fn topic_name(
    image: &strata_cluster::MetadataImage,
    name: &str,
    id: &uuid::Uuid,
) -> String {
    if !name.is_empty() {
        return name.to_string();
    }
    image
        .topic_by_id(id)
        .map(|topic| topic.name.clone())
        .unwrap_or_default()
}

/// The leader-side replication rate limiting this partition, if it is throttled here.
fn leader_throttle(broker: &Broker, topic: &str, partition: i32) -> Option<u64> {
    let image = broker.image();
    let node = broker.config.node_id;
    let rate = crate::throttle::rate(&image, node, crate::throttle::LEADER_RATE)?;
    let configs = &image.topic(topic)?.configs;
    crate::throttle::throttled(configs, crate::throttle::LEADER_REPLICAS, partition, node)
        .then_some(rate)
}

/// Whether the current metadata image lists `replica` among `topic`-`partition`'s replicas.
fn is_replica(broker: &Broker, topic: &str, partition: i32, replica: i32) -> bool {
    broker
        .image()
        .topic(topic)
        .and_then(|t| t.partitions.get(&partition))
        .is_some_and(|p| p.replicas.contains(&replica))
}

/// A partition answered with an error alone: no offsets, no records.
fn refused(data: PartitionData, code: i16) -> PartitionData {
    data.with_error_code(code)
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
        .with_records(Some(Bytes::new()))
}
