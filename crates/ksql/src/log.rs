//! The engine's view of the log: the few Kafka requests it needs, sent over the Kafka
//! protocol to the brokers like any other client's (the stable API between the SQL engine
//! and the broker). One `LogClient` per task; each keeps its own connections.

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::messages::{
    offset_commit_request, offset_fetch_request, GroupId, OffsetCommitRequest, OffsetFetchRequest,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use strata_client::{check, ClientError, Router};
use strata_records::{decode_records, BatchBuilder, Compression, DecodedRecord, Record};

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{0}")]
    Records(String),
}

pub struct LogClient {
    bootstrap: String,
    router: Option<Router>,
}

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

impl LogClient {
    pub fn new(bootstrap: &str) -> Self {
        Self {
            bootstrap: bootstrap.to_string(),
            router: None,
        }
    }

    /// The router, connected on first use and again after a failure.
    async fn router(&mut self) -> Result<&mut Router, ClientError> {
        if self.router.is_none() {
            self.router = Some(Router::connect(&self.bootstrap).await?);
        }
        Ok(self.router.as_mut().expect("connected above"))
    }

    /// Drops the connections after an error that says they are broken or point at the
    /// wrong broker (a leader or coordinator moved), so the next call asks afresh.
    fn settle<T, E: Into<LogError>>(&mut self, r: Result<T, E>) -> Result<T, LogError> {
        let r = r.map_err(Into::into);
        if let Err(LogError::Client(e)) = &r {
            if matches!(e, ClientError::Io(_) | ClientError::Connect { .. }) || e.is_stale_route() {
                self.router = None;
            }
        }
        r
    }

    /// Sends a group request to `group`'s coordinator (at most version `ours`).
    pub async fn coordinator_request<R: kafka_protocol::protocol::Request>(
        &mut self,
        group: &str,
        request: R,
        ours: i16,
    ) -> Result<R::Response, LogError> {
        let r = async {
            self.router()
                .await?
                .coordinator(0, group)
                .await?
                .send(request, ours)
                .await
        }
        .await;
        self.settle(r)
    }

    /// Every topic's partition count.
    pub async fn topics(&mut self) -> Result<BTreeMap<String, i32>, LogError> {
        let r = async {
            let md = self.router().await?.any().metadata(None).await?;
            Ok::<_, LogError>(
                md.topics
                    .iter()
                    .filter(|t| t.error_code == 0)
                    .filter_map(|t| {
                        t.name
                            .as_ref()
                            .map(|n| (n.0.to_string(), t.partitions.len() as i32))
                    })
                    .collect(),
            )
        }
        .await;
        self.settle(r)
    }

    pub async fn create_topic(
        &mut self,
        name: &str,
        partitions: i32,
        configs: &[(String, String)],
    ) -> Result<(), LogError> {
        let r = async {
            self.router()
                .await?
                .any()
                .create_topic(name, partitions, configs)
                .await
        }
        .await;
        self.settle(r)
    }

    /// Creates an internal topic unless it exists: every engine that runs a statement
    /// creates its internal topics, the one that made it and those following it through
    /// the command topic alike, so another may have just created it (TOPIC_ALREADY_EXISTS).
    pub async fn ensure_topic(
        &mut self,
        name: &str,
        partitions: i32,
        configs: &[(String, String)],
    ) -> Result<(), LogError> {
        match self.create_topic(name, partitions, configs).await {
            Err(LogError::Client(ClientError::Kafka { code: 36, .. })) => Ok(()),
            other => other,
        }
    }

    pub async fn delete_topic(&mut self, name: &str) -> Result<(), LogError> {
        let r = async { self.router().await?.any().delete_topic(name).await }.await;
        self.settle(r)
    }

    /// Deletes `topic`-`partition`'s records below `before` (DeleteRecords to its leader):
    /// how an internal topic's consumed records are purged.
    pub async fn delete_records(
        &mut self,
        topic: &str,
        partition: i32,
        before: i64,
    ) -> Result<(), LogError> {
        use kafka_protocol::messages::delete_records_request::{
            DeleteRecordsPartition, DeleteRecordsTopic,
        };
        let r = async {
            let request = kafka_protocol::messages::DeleteRecordsRequest::default()
                .with_topics(vec![DeleteRecordsTopic::default()
                    .with_name(kafka_protocol::messages::TopicName(s(topic)))
                    .with_partitions(vec![DeleteRecordsPartition::default()
                        .with_partition_index(partition)
                        .with_offset(before)])])
                .with_timeout_ms(30_000);
            let resp = self
                .router()
                .await?
                .leader(topic, partition)
                .await?
                .send(request, 2)
                .await?;
            for t in resp.topics {
                for p in t.partitions {
                    check(p.error_code, format!("{topic}-{partition}"), None)?;
                }
            }
            Ok::<_, LogError>(())
        }
        .await;
        self.settle(r)
    }

    /// Appends records to one partition with acks=all; returns the first one's offset.
    pub async fn produce(
        &mut self,
        topic: &str,
        partition: i32,
        records: Vec<Record>,
    ) -> Result<i64, LogError> {
        let mut builder = BatchBuilder::new(Compression::None);
        for r in records {
            builder.push(r);
        }
        let batch = builder
            .build()
            .map_err(|e| LogError::Records(format!("cannot build a batch: {e}")))?;
        let r = async {
            self.router()
                .await?
                .produce(topic, partition, batch, -1)
                .await
        }
        .await;
        self.settle(r)
    }

    /// Records from `offset` on (data records only), and the high watermark.
    pub async fn fetch(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_wait_ms: i32,
    ) -> Result<(Vec<DecodedRecord>, i64), LogError> {
        let r = async {
            let (bytes, hw): (Bytes, i64) = self
                .router()
                .await?
                .fetch(topic, partition, offset, max_wait_ms)
                .await?;
            let records = decode_records(bytes)
                .map_err(|e| LogError::Records(format!("undecodable records: {e}")))?;
            Ok::<_, LogError>((
                records
                    .into_iter()
                    .filter(|r| !r.control && r.offset >= offset)
                    .collect(),
                hw,
            ))
        }
        .await;
        self.settle(r)
    }

    /// ListOffsets: -1 latest, -2 earliest.
    pub async fn offset(&mut self, topic: &str, partition: i32, at: i64) -> Result<i64, LogError> {
        let r = async { self.router().await?.list_offset(topic, partition, at).await }.await;
        self.settle(r)
    }

    /// The last stable offset of a partition: the end of what read_committed readers see.
    pub async fn last_stable_offset(
        &mut self,
        topic: &str,
        partition: i32,
    ) -> Result<i64, LogError> {
        let r = async {
            self.router()
                .await?
                .list_offset_isolated(topic, partition, -1, true)
                .await
        }
        .await;
        self.settle(r)
    }

    /// A partition's high watermark (its end as a read_uncommitted consumer sees it: past
    /// the last stable offset while a transaction is open there).
    pub async fn high_watermark(&mut self, topic: &str, partition: i32) -> Result<i64, LogError> {
        let r = async {
            self.router()
                .await?
                .list_offset_isolated(topic, partition, -1, false)
                .await
        }
        .await;
        self.settle(r)
    }

    /// The offsets `group` committed for `topics`, by partition (of `partition` alone when
    /// given). An offset an open transaction holds is an error (retriable: the
    /// transaction's end decides it), not an answer that may be stale.
    pub async fn committed(
        &mut self,
        group: &str,
        topics: &[String],
        partition: Option<i32>,
    ) -> Result<BTreeMap<(String, i32), i64>, LogError> {
        let r = async {
            let mut req = OffsetFetchRequest::default();
            let mut g = offset_fetch_request::OffsetFetchRequestGroup::default();
            g.group_id = GroupId(s(group));
            g.member_epoch = -1;
            g.topics = None;
            // Offsets a transaction still holds are not answered (UNSTABLE_OFFSET_COMMIT,
            // retried by the caller) rather than answered stale.
            req.require_stable = true;
            req.groups.push(g);
            let resp = self
                .router()
                .await?
                .coordinator(0, group)
                .await?
                .send(req, 8)
                .await?;
            let mut out = BTreeMap::new();
            for g in resp.groups {
                check(g.error_code, format!("group {group}"), None)?;
                for t in g.topics {
                    let name = t.name.0.as_str().to_string();
                    if !topics.contains(&name) {
                        continue;
                    }
                    for p in t.partitions {
                        if partition.is_some_and(|want| want != p.partition_index) {
                            continue;
                        }
                        if p.error_code == UNSTABLE_OFFSET_COMMIT {
                            // A transaction still holds an offset of it: its end decides.
                            return Err(LogError::Records(format!(
                                "group {group}: {name}-{} has a transaction's offset pending",
                                p.partition_index
                            )));
                        }
                        if p.committed_offset >= 0 {
                            out.insert((name.clone(), p.partition_index), p.committed_offset);
                        }
                    }
                }
            }
            Ok::<_, LogError>(out)
        }
        .await;
        self.settle(r)
    }

    /// Commits `offsets` of `topic` for `group` (a group without members, as ksqlDB's
    /// queries' positions are owned by the engine).
    pub async fn commit(
        &mut self,
        group: &str,
        topic: &str,
        offsets: &BTreeMap<i32, i64>,
    ) -> Result<(), LogError> {
        let r = async {
            let mut rt = offset_commit_request::OffsetCommitRequestTopic::default();
            rt.name = TopicName(s(topic));
            for (&p, &o) in offsets {
                let mut rp = offset_commit_request::OffsetCommitRequestPartition::default();
                rp.partition_index = p;
                rp.committed_offset = o;
                rp.committed_leader_epoch = -1;
                rp.committed_metadata = Some(StrBytes::default());
                rt.partitions.push(rp);
            }
            let mut req = OffsetCommitRequest::default();
            req.group_id = GroupId(s(group));
            req.generation_id_or_member_epoch = -1;
            req.retention_time_ms = -1;
            req.topics.push(rt);
            let resp = self
                .router()
                .await?
                .coordinator(0, group)
                .await?
                .send(req, 8)
                .await?;
            for t in &resp.topics {
                for p in &t.partitions {
                    check(p.error_code, format!("commit for {group}"), None)?;
                }
            }
            Ok::<_, LogError>(())
        }
        .await;
        self.settle(r)
    }
}

/// The largest batch a transaction writes (records beyond it go in further batches).
/// OffsetFetch's answer for an offset an open transaction holds (KIP-447).
const UNSTABLE_OFFSET_COMMIT: i16 = 88;
const BATCH_BYTES_TARGET: usize = 256 * 1024;

/// A transactional producer's identity (from InitProducerId).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnProducer {
    pub producer_id: i64,
    pub epoch: i16,
}

/// Kafka errors a transactional call waits out and tries again: COORDINATOR_LOAD_IN_PROGRESS,
/// COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR, CONCURRENT_TRANSACTIONS.
fn retriable_txn_error(e: &LogError) -> bool {
    matches!(
        e,
        LogError::Client(ClientError::Kafka {
            code: 14 | 15 | 16 | 51,
            ..
        })
    )
}

impl LogClient {
    /// Records from `offset` on as a read_committed consumer sees them: up to the last
    /// stable offset, without aborted transactions' records or control batches; and the
    /// offset to fetch from next (past the batches read, including those skipped, so a
    /// reader moves on over a stretch of aborted records or markers).
    pub async fn fetch_committed(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<(Vec<DecodedRecord>, i64), LogError> {
        use kafka_protocol::messages::{fetch_request, FetchRequest};
        let r = async {
            let p = fetch_request::FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20);
            let t = fetch_request::FetchTopic::default()
                .with_topic(TopicName(s(topic)))
                .with_partitions(vec![p]);
            let req = FetchRequest::default()
                .with_max_wait_ms(0)
                .with_min_bytes(1)
                .with_max_bytes(16 << 20)
                .with_isolation_level(1)
                .with_topics(vec![t])
                .with_session_epoch(-1);
            let resp = self
                .router()
                .await?
                .leader(topic, partition)
                .await?
                .send(req, 11)
                .await?;
            check(resp.error_code, "fetch", None)?;
            let data = resp
                .responses
                .into_iter()
                .flat_map(|t| t.partitions)
                .next()
                .ok_or_else(|| LogError::Records(format!("empty fetch of {topic}-{partition}")))?;
            check(
                data.error_code,
                format!("fetch {topic}-{partition} at offset {offset}"),
                None,
            )?;
            let mut aborted: Vec<(i64, i64)> = data
                .aborted_transactions
                .unwrap_or_default()
                .iter()
                .map(|a| (a.first_offset, a.producer_id.0))
                .collect();
            aborted.sort();
            let mut aborting = std::collections::BTreeSet::new();
            let mut next_aborted = 0;
            let mut out = Vec::new();
            let mut next = offset;
            let mut buf = data.records.unwrap_or_default();
            while buf.len() >= strata_records::BATCH_HEADER_BYTES {
                let header = strata_records::BatchHeader::parse(&buf)
                    .map_err(|e| LogError::Records(e.to_string()))?;
                let total = header.total_bytes();
                if total > buf.len() {
                    break;
                }
                let batch = buf.split_to(total);
                next = next.max(header.last_offset() + 1);
                while next_aborted < aborted.len()
                    && aborted[next_aborted].0 <= header.last_offset()
                {
                    aborting.insert(aborted[next_aborted].1);
                    next_aborted += 1;
                }
                if header.is_control() {
                    if strata_records::control_type(&batch) == Some(false) {
                        aborting.remove(&header.producer_id);
                    }
                    continue;
                }
                if header.is_transactional() && aborting.contains(&header.producer_id) {
                    continue;
                }
                out.extend(
                    decode_records(batch)
                        .map_err(|e| LogError::Records(format!("undecodable records: {e}")))?
                        .into_iter()
                        .filter(|r| !r.control && r.offset >= offset),
                );
            }
            Ok::<_, LogError>((out, next))
        }
        .await;
        self.settle(r)
    }

    /// InitProducerId for `transactional_id`: fences any earlier instance and aborts the
    /// transaction it left open.
    pub async fn init_transactions(
        &mut self,
        transactional_id: &str,
    ) -> Result<TxnProducer, LogError> {
        use kafka_protocol::messages::{InitProducerIdRequest, ProducerId, TransactionalId};
        let mut attempts = 0;
        loop {
            let r = async {
                let req = InitProducerIdRequest::default()
                    .with_transactional_id(Some(TransactionalId(s(transactional_id))))
                    .with_transaction_timeout_ms(60_000)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1);
                let resp = self
                    .router()
                    .await?
                    .coordinator(1, transactional_id)
                    .await?
                    .send(req, 4)
                    .await?;
                check(
                    resp.error_code,
                    format!("InitProducerId {transactional_id}"),
                    None,
                )?;
                Ok::<_, LogError>(TxnProducer {
                    producer_id: resp.producer_id.0,
                    epoch: resp.producer_epoch,
                })
            }
            .await;
            match self.settle(r) {
                Err(e) if retriable_txn_error(&e) && attempts < 100 => {
                    attempts += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                r => return r,
            }
        }
    }

    /// One transaction: `batches` (topic, partition, records, base sequence) written,
    /// `offsets` (by topic and partition) committed for `group`, then committed as a whole.
    pub async fn commit_transaction(
        &mut self,
        transactional_id: &str,
        producer: TxnProducer,
        batches: Vec<(String, i32, Vec<Record>, i32)>,
        group: &str,
        offsets: &BTreeMap<(String, i32), i64>,
    ) -> Result<(), LogError> {
        use kafka_protocol::messages::{
            add_partitions_to_txn_request, produce_request, txn_offset_commit_request,
            AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, EndTxnRequest, ProduceRequest,
            ProducerId, TransactionalId, TxnOffsetCommitRequest,
        };
        let tid = || TransactionalId(s(transactional_id));
        let r = async {
            // AddPartitionsToTxn for every partition written.
            let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
            for (t, p, _, _) in &batches {
                let ps = by_topic.entry(t.as_str()).or_default();
                if !ps.contains(p) {
                    ps.push(*p);
                }
            }
            if !by_topic.is_empty() {
                let topics = by_topic
                    .iter()
                    .map(|(t, ps)| {
                        add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                            .with_name(TopicName(s(t)))
                            .with_partitions(ps.clone())
                    })
                    .collect();
                let req = AddPartitionsToTxnRequest::default()
                    .with_v3_and_below_transactional_id(tid())
                    .with_v3_and_below_producer_id(ProducerId(producer.producer_id))
                    .with_v3_and_below_producer_epoch(producer.epoch)
                    .with_v3_and_below_topics(topics);
                let resp = self
                    .router()
                    .await?
                    .coordinator(1, transactional_id)
                    .await?
                    .send_at(req, 3)
                    .await?;
                for t in resp.results_by_topic_v3_and_below {
                    for p in t.results_by_partition {
                        check(p.partition_error_code, "AddPartitionsToTxn", None)?;
                    }
                }
            }
            // Batches are cut well under the topics' max.message.bytes (1 MiB by default).
            let mut chunks = Vec::new();
            for (topic, partition, records, sequence) in batches {
                let mut seq = sequence;
                let mut chunk: Vec<Record> = Vec::new();
                let mut bytes = 0;
                for r in records {
                    let size = 32
                        + r.key.as_ref().map_or(0, |k| k.len())
                        + r.value.as_ref().map_or(0, |v| v.len());
                    if !chunk.is_empty() && bytes + size > BATCH_BYTES_TARGET {
                        let n = chunk.len() as i32;
                        chunks.push((topic.clone(), partition, std::mem::take(&mut chunk), seq));
                        seq = seq.wrapping_add(n);
                        bytes = 0;
                    }
                    bytes += size;
                    chunk.push(r);
                }
                if !chunk.is_empty() {
                    chunks.push((topic.clone(), partition, chunk, seq));
                }
            }
            for (topic, partition, records, sequence) in chunks {
                let mut builder = BatchBuilder::new(Compression::None);
                builder
                    .idempotent(producer.producer_id, producer.epoch, sequence)
                    .transactional(producer.producer_id, producer.epoch);
                for r in records {
                    builder.push(r);
                }
                let batch = builder
                    .build()
                    .map_err(|e| LogError::Records(format!("cannot build a batch: {e}")))?;
                let data = produce_request::PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(batch));
                let td = produce_request::TopicProduceData::default()
                    .with_name(TopicName(s(&topic)))
                    .with_partition_data(vec![data]);
                let req = ProduceRequest::default()
                    .with_transactional_id(Some(tid()))
                    .with_acks(-1)
                    .with_timeout_ms(30_000)
                    .with_topic_data(vec![td]);
                let resp = self
                    .router()
                    .await?
                    .leader(&topic, partition)
                    .await?
                    .send(req, 9)
                    .await?;
                for t in resp.responses {
                    for p in t.partition_responses {
                        check(
                            p.error_code,
                            format!("transactional produce to {topic}-{partition}"),
                            p.error_message.as_ref(),
                        )?;
                    }
                }
            }
            let req = AddOffsetsToTxnRequest::default()
                .with_transactional_id(tid())
                .with_producer_id(ProducerId(producer.producer_id))
                .with_producer_epoch(producer.epoch)
                .with_group_id(GroupId(s(group)));
            let resp = self
                .router()
                .await?
                .coordinator(1, transactional_id)
                .await?
                .send(req, 3)
                .await?;
            check(resp.error_code, "AddOffsetsToTxn", None)?;
            let mut by_topic: BTreeMap<&str, Vec<_>> = BTreeMap::new();
            for ((t, p), &o) in offsets {
                by_topic.entry(t.as_str()).or_default().push(
                    txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                        .with_partition_index(*p)
                        .with_committed_offset(o)
                        .with_committed_leader_epoch(-1),
                );
            }
            let topics: Vec<_> = by_topic
                .into_iter()
                .map(|(t, partitions)| {
                    txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                        .with_name(TopicName(s(t)))
                        .with_partitions(partitions)
                })
                .collect();
            let req = TxnOffsetCommitRequest::default()
                .with_transactional_id(tid())
                .with_group_id(GroupId(s(group)))
                .with_producer_id(ProducerId(producer.producer_id))
                .with_producer_epoch(producer.epoch)
                .with_generation_id(-1)
                .with_topics(topics);
            let resp = self
                .router()
                .await?
                .coordinator(0, group)
                .await?
                .send(req, 3)
                .await?;
            for t in resp.topics {
                for p in t.partitions {
                    check(p.error_code, "TxnOffsetCommit", None)?;
                }
            }
            let req = EndTxnRequest::default()
                .with_transactional_id(tid())
                .with_producer_id(ProducerId(producer.producer_id))
                .with_producer_epoch(producer.epoch)
                .with_committed(true);
            let resp = self
                .router()
                .await?
                .coordinator(1, transactional_id)
                .await?
                .send(req, 3)
                .await?;
            check(resp.error_code, "EndTxn", None)?;
            Ok::<_, LogError>(())
        }
        .await;
        self.settle(r)
    }
}
