//! Replica fetchers: how a follower copies its leaders' logs (Kafka's ReplicaFetcherThread).
//!
//! One task per leader broker fetches, with Kafka's own Fetch request (v12, `replica_id` =
//! this node), every partition this node follows from that leader: `fetch_offset` = the
//! follower's log end offset, which it has synced before asking (so the leader counts it as
//! durable here: an acks=all write is acknowledged only once it is on disk on every in-sync
//! replica), and `last_fetched_epoch` = the latest leader epoch in its log. The answer's
//! batches are appended as the leader stored them (`Log::append_replicated`), synced, and the
//! follower's high watermark follows the leader's (capped at what it has synced).
//!
//! Divergence (KIP-279): when the leader answers with a diverging epoch, the follower cuts its
//! log at the smaller of the leader's end for that epoch and its own, then fetches again from
//! there. A fetch offset below the leader's log start empties the log and starts it there.
//!
//! A supervisor (every 200 ms) starts a fetcher for each leader that some local follower
//! partition names; a fetcher with nothing left to follow stops.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::{fetch_request, BrokerId, FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use strata_client::Client;
use strata_storage::{FetchPosition, LeaderAnswer, Partition};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::handlers::fetch::topic_name;
use crate::{errors, Broker};

/// How long a follower's fetch waits at the leader for new data.
const FETCH_MAX_WAIT_MS: i32 = 500;
/// Bytes per partition per fetch.
const PARTITION_MAX_BYTES: i32 = 4 << 20;
/// A fetch that gets no answer within this is abandoned (the connection is dropped).
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
const RETRY_BACKOFF: Duration = Duration::from_millis(300);
/// The Fetch version followers send (ReplicaState with the broker epoch, KIP-903).
const FETCH_VERSION: i16 = 15;

/// Starts and reaps one fetcher per leader broker until `stop`.
pub(crate) async fn supervise(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let mut running: HashMap<i32, tokio::task::JoinHandle<()>> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        running.retain(|_, task| !task.is_finished());
        let mut leaders: Vec<i32> = followed(&broker).into_keys().collect();
        leaders.retain(|l| !running.contains_key(l));
        for leader in leaders {
            info!(leader, "starting a replica fetcher");
            running.insert(
                leader,
                tokio::spawn(fetch_from(broker.clone(), leader, stop.clone())),
            );
        }
    }
    for task in running.values() {
        task.abort();
    }
}

/// The partitions this node follows, by leader.
fn followed(broker: &Broker) -> BTreeMap<i32, Vec<Arc<Partition>>> {
    let mut by_leader: BTreeMap<i32, Vec<Arc<Partition>>> = BTreeMap::new();
    for p in broker.all_partitions() {
        let leader = p.leader_id();
        if !p.is_leader() && leader >= 0 {
            by_leader.entry(leader).or_default().push(p);
        }
    }
    by_leader
}

async fn fetch_from(broker: Arc<Broker>, leader: i32, stop: watch::Receiver<bool>) {
    let mut client: Option<Client> = None;
    loop {
        if *stop.borrow() || broker.is_shutting_down() {
            return;
        }
        let Some(partitions) = followed(&broker).remove(&leader) else {
            debug!(leader, "nothing left to follow from this leader");
            return;
        };
        let endpoint = broker
            .image()
            .broker(leader)
            .map(|b| format!("{}:{}", b.host, b.port));
        let Some(endpoint) = endpoint else {
            tokio::time::sleep(RETRY_BACKOFF).await;
            continue;
        };
        if client.is_none() {
            match Client::connect_secure(&endpoint, &broker.peer_security).await {
                Ok(c) => client = Some(c),
                Err(e) => {
                    debug!(leader, %endpoint, error = %e, "cannot reach the leader");
                    tokio::time::sleep(RETRY_BACKOFF).await;
                    continue;
                }
            }
        }
        // Throttled partitions (reassignment traffic) wait while over the follower budget.
        let throttle = follower_throttle(&broker, &partitions);
        let partitions: Vec<Arc<Partition>> = match &throttle {
            Some((rate, throttled))
                if !broker
                    .replication_quotas
                    .follower
                    .allows(*rate, std::time::Instant::now()) =>
            {
                partitions
                    .into_iter()
                    .filter(|p| !throttled.contains(&(p.topic.clone(), p.partition)))
                    .collect()
            }
            _ => partitions,
        };
        let c = client.as_mut().expect("connected above");
        // v15 (topic ids, the replica's broker epoch in ReplicaState) where the leader speaks
        // it; v12 otherwise (a leader not yet upgraded).
        let version = c
            .version(kafka_protocol::messages::ApiKey::Fetch, FETCH_VERSION)
            .unwrap_or(12)
            .max(12);
        let image = broker.image();
        let replica_epoch = broker
            .broker_epoch
            .load(std::sync::atomic::Ordering::SeqCst);
        // Where each partition fetches from (None: it does not fetch now); an answer is
        // applied only if the log still ends there.
        let positions: Vec<Option<FetchPosition>> = partitions
            .iter()
            .map(|p| p.replica_fetch_position())
            .collect();
        let mut request = fetch_request_for(
            broker.config.node_id,
            replica_epoch,
            &image,
            version,
            &partitions,
            &positions,
        );
        if let Some((rate, throttled)) = &throttle {
            // A throttled partition asks for at most one second of its rate at a time.
            let cap = (*rate).min(PARTITION_MAX_BYTES as u64) as i32;
            for t in &mut request.topics {
                let name = topic_name(&image, &t.topic.0, &t.topic_id);
                for p in &mut t.partitions {
                    if throttled.contains(&(name.clone(), p.partition)) {
                        p.partition_max_bytes = p.partition_max_bytes.min(cap.max(1));
                    }
                }
            }
        }
        if request.topics.is_empty() {
            tokio::time::sleep(RETRY_BACKOFF).await;
            continue;
        }
        let epochs: Vec<i32> = partitions.iter().map(|p| p.leader_epoch()).collect();
        let response = match tokio::time::timeout(FETCH_TIMEOUT, c.send_at(request, version)).await
        {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                debug!(leader, error = %e, "replica fetch failed");
                client = None;
                tokio::time::sleep(RETRY_BACKOFF).await;
                continue;
            }
            Err(_) => {
                client = None;
                continue;
            }
        };
        if let Some((rate, throttled)) = &throttle {
            let bytes: usize = response
                .responses
                .iter()
                .flat_map(|t| {
                    let name = topic_name(&image, &t.topic.0, &t.topic_id);
                    t.partitions
                        .iter()
                        .filter(move |d| throttled.contains(&(name.clone(), d.partition_index)))
                })
                .map(|d| d.records.as_ref().map_or(0, |r| r.len()))
                .sum();
            if bytes > 0 {
                broker.replication_quotas.follower.record(
                    *rate,
                    bytes as u64,
                    std::time::Instant::now(),
                );
            }
        }
        let durable = broker.clone();
        let applied = tokio::task::spawn_blocking(move || {
            let (moved, log_start_moved, started_over) =
                apply_response(leader, &image, partitions, epochs, positions, response);
            // A log start followed is durable before the next fetch reports it: the
            // leader's low watermark (DeleteRecords' answer) counts on it surviving a crash.
            if log_start_moved {
                if let Err(e) = durable.checkpoint_log_start_offsets() {
                    durable.halt(format!(
                        "could not write the log start offset checkpoint: {e}"
                    ));
                }
            }
            (moved, started_over)
        })
        .await
        .unwrap_or((false, Vec::new()));
        let (applied, started_over) = applied;
        // Tiered storage: a replica that started over takes the producer state there from
        // the copy that ends there, before it fetches anything more.
        for (partition, offset) in started_over {
            broker
                .restore_producer_state_from_copy(&partition, offset)
                .await;
        }
        if applied {
            broker.data_arrived.notify_waiters();
        }
    }
}

/// The follower-side replication rate and the partitions it limits here, if any are.
#[allow(clippy::type_complexity)]
fn follower_throttle(
    broker: &Broker,
    partitions: &[Arc<Partition>],
) -> Option<(u64, std::collections::BTreeSet<(String, i32)>)> {
    let image = broker.image();
    let node = broker.config.node_id;
    let rate = crate::throttle::rate(&image, node, crate::throttle::FOLLOWER_RATE)?;
    let throttled: std::collections::BTreeSet<(String, i32)> = partitions
        .iter()
        .filter(|p| {
            image.topic(&p.topic).is_some_and(|t| {
                crate::throttle::throttled(
                    &t.configs,
                    crate::throttle::FOLLOWER_REPLICAS,
                    p.partition,
                    node,
                )
            })
        })
        .map(|p| (p.topic.clone(), p.partition))
        .collect();
    (!throttled.is_empty()).then_some((rate, throttled))
}

fn fetch_request_for(
    node_id: i32,
    replica_epoch: i64,
    image: &strata_cluster::MetadataImage,
    version: i16,
    partitions: &[Arc<Partition>],
    positions: &[Option<FetchPosition>],
) -> FetchRequest {
    let mut by_topic: BTreeMap<&str, Vec<fetch_request::FetchPartition>> = BTreeMap::new();
    for (p, at) in partitions.iter().zip(positions) {
        // The fetch offset tells the leader what this replica holds on disk.
        let Some(at) = at else {
            continue;
        };
        by_topic.entry(p.topic.as_str()).or_default().push(
            fetch_request::FetchPartition::default()
                .with_partition(p.partition)
                .with_current_leader_epoch(p.leader_epoch())
                .with_fetch_offset(at.fetch_offset)
                .with_last_fetched_epoch(at.last_fetched_epoch)
                .with_log_start_offset(at.log_start_offset)
                .with_partition_max_bytes(PARTITION_MAX_BYTES),
        );
    }
    let topics = by_topic
        .into_iter()
        .filter_map(|(topic, partitions)| {
            let t = fetch_request::FetchTopic::default().with_partitions(partitions);
            if version >= 13 {
                // Named by id; a topic the image no longer has is not fetched.
                let id = image.topic(topic)?.topic_id;
                Some(t.with_topic_id(id))
            } else {
                Some(t.with_topic(TopicName(StrBytes::from_string(topic.to_string()))))
            }
        })
        .collect();
    let request = if version >= 15 {
        FetchRequest::default().with_replica_state(
            fetch_request::ReplicaState::default()
                .with_replica_id(BrokerId(node_id))
                .with_replica_epoch(replica_epoch),
        )
    } else {
        FetchRequest::default().with_replica_id(BrokerId(node_id))
    };
    request
        .with_max_wait_ms(FETCH_MAX_WAIT_MS)
        .with_min_bytes(1)
        .with_max_bytes(64 << 20)
        .with_session_epoch(-1)
        .with_topics(topics)
}

/// Appends, truncates and syncs what one fetch brought. Whether any high watermark or log
/// moved (waiting fetches are woken), and whether any log start offset moved.
/// Also the partitions that started over at the leader's log start (behind it), with
/// that offset.
fn apply_response(
    leader: i32,
    image: &strata_cluster::MetadataImage,
    partitions: Vec<Arc<Partition>>,
    epochs: Vec<i32>,
    positions: Vec<Option<FetchPosition>>,
    response: kafka_protocol::messages::FetchResponse,
) -> (bool, bool, Vec<(Arc<Partition>, i64)>) {
    let mut moved = false;
    let mut log_start_moved = false;
    let mut started_over = Vec::new();
    for t in response.responses {
        // v13+ answers name topics by id.
        let name = topic_name(image, &t.topic.0, &t.topic_id);
        if name.is_empty() {
            continue;
        }
        for data in t.partitions {
            let Some(((p, &epoch), &Some(asked))) = partitions
                .iter()
                .zip(&epochs)
                .zip(&positions)
                .find(|((p, _), _)| p.topic == name && p.partition == data.partition_index)
            else {
                continue;
            };
            // Leadership moved since the request: what this leader sent is not to be kept.
            if p.is_leader() || p.leader_id() != leader || p.leader_epoch() != epoch {
                continue;
            }
            let log_start = p.log().log_start_offset();
            let result = apply_partition(p, asked, &data);
            let (start, end) = {
                let log = p.log();
                (log.log_start_offset(), log.log_end_offset())
            };
            log_start_moved |= start != log_start;
            if data.error_code == errors::OFFSET_OUT_OF_RANGE && start != log_start && start == end
            {
                started_over.push((p.clone(), start));
            }
            match result {
                Ok(changed) => moved |= changed,
                Err(e) => {
                    warn!(topic = %p.topic, partition = p.partition, error = %e, "replicating from the leader failed");
                }
            }
        }
    }
    (moved, log_start_moved, started_over)
}

fn apply_partition(
    p: &Partition,
    asked: FetchPosition,
    data: &kafka_protocol::messages::fetch_response::PartitionData,
) -> Result<bool, strata_storage::StorageError> {
    let answer = match data.error_code {
        errors::NONE if data.diverging_epoch.epoch >= 0 => LeaderAnswer::Diverging {
            epoch: data.diverging_epoch.epoch,
            end_offset: data.diverging_epoch.end_offset,
        },
        errors::NONE => LeaderAnswer::Records {
            records: data.records.as_deref(),
            high_watermark: data.high_watermark,
            log_start_offset: data.log_start_offset,
        },
        errors::OFFSET_OUT_OF_RANGE => LeaderAnswer::OutOfRange {
            log_start_offset: data.log_start_offset,
            high_watermark: data.high_watermark,
        },
        code => {
            debug!(topic = %p.topic, partition = p.partition, code, "leader refused the replica fetch");
            return Ok(false);
        }
    };
    p.apply_leader_answer(asked, answer)
}
