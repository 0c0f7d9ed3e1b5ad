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

    /// Drops the connections after an error, so the next call starts afresh.
    fn settle<T, E: Into<LogError>>(&mut self, r: Result<T, E>) -> Result<T, LogError> {
        let r = r.map_err(Into::into);
        if matches!(
            r,
            Err(LogError::Client(
                ClientError::Io(_) | ClientError::Connect { .. }
            ))
        ) {
            self.router = None;
        }
        r
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

    pub async fn delete_topic(&mut self, name: &str) -> Result<(), LogError> {
        let r = async { self.router().await?.any().delete_topic(name).await }.await;
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

    /// The offsets `group` committed for `topic`, by partition.
    pub async fn committed(
        &mut self,
        group: &str,
        topic: &str,
    ) -> Result<BTreeMap<i32, i64>, LogError> {
        let r = async {
            let mut req = OffsetFetchRequest::default();
            let mut g = offset_fetch_request::OffsetFetchRequestGroup::default();
            g.group_id = GroupId(s(group));
            g.member_epoch = -1;
            g.topics = None;
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
                for t in g.topics.into_iter().filter(|t| t.name.0.as_str() == topic) {
                    for p in t.partitions {
                        if p.committed_offset >= 0 {
                            out.insert(p.partition_index, p.committed_offset);
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
