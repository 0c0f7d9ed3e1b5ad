//! Messages over HTTP: `GET /v1/topics/{name}/records` reads a page of a topic (a message
//! browser's), `POST /v1/topics/{name}/records` produces one message. Both go through the
//! Kafka protocol as any client does (to each partition's leader, wherever it is), so quotas,
//! tiered reads and a cluster's routing apply as they do to Kafka's clients.
//!
//! Keys, values and header values travel base64-encoded (binary-safe, as Confluent's REST
//! Proxy does); a produce request may give them as text instead.

use std::collections::BTreeMap;

use base64::Engine as _;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};
use strata_client::{partition_for_key, ClientError, Router};
use strata_records::{decode_records, BatchBuilder, Compression, Record};

/// The most records one page holds.
pub const MAX_PAGE: usize = 500;
/// Fetches per partition for one page (each returns up to 1 MiB).
const MAX_FETCHES: usize = 16;

/// Where a page starts in each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The partition's first offset.
    Earliest,
    /// The last `limit` records before the high watermark (the newest).
    Latest,
    Offset(i64),
    /// The first record at or after this time (ms).
    Timestamp(i64),
}

#[derive(Debug)]
pub struct PageRequest {
    pub partition: Option<i32>,
    pub start: Start,
    pub limit: usize,
}

impl PageRequest {
    /// From the query string: `partition`, `offset` | `timestamp` | `position`
    /// (earliest, latest), `limit` (1..=500, default 50).
    pub fn parse(query: &str) -> Result<PageRequest, String> {
        let mut partition = None;
        let mut start = Start::Latest;
        let mut limit = 50usize;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let number = |what: &str| -> Result<i64, String> {
                v.parse::<i64>()
                    .map_err(|_| format!("{what} must be an integer (got '{v}')"))
            };
            match k {
                "partition" => {
                    let p = number("partition")?;
                    partition = Some(
                        i32::try_from(p)
                            .ok()
                            .filter(|p| *p >= 0)
                            .ok_or("partition must be 0 or more")?,
                    );
                }
                "offset" => {
                    let o = number("offset")?;
                    if o < 0 {
                        return Err("offset must be 0 or more".into());
                    }
                    start = Start::Offset(o);
                }
                "timestamp" => start = Start::Timestamp(number("timestamp")?),
                "position" => {
                    start = match v {
                        "earliest" => Start::Earliest,
                        "latest" => Start::Latest,
                        _ => return Err(format!("position is earliest or latest (got '{v}')")),
                    }
                }
                "limit" => {
                    let l = number("limit")?;
                    limit = usize::try_from(l)
                        .ok()
                        .filter(|l| (1..=MAX_PAGE).contains(l))
                        .ok_or(format!("limit must be 1 to {MAX_PAGE}"))?;
                }
                _ => return Err(format!("unknown query parameter '{k}'")),
            }
        }
        Ok(PageRequest {
            partition,
            start,
            limit,
        })
    }
}

fn b64(bytes: &Option<Bytes>) -> Value {
    bytes.as_ref().map_or(Value::Null, |b| {
        Value::String(base64::engine::general_purpose::STANDARD.encode(b))
    })
}

/// A page of `topic` (whose partitions number `partitions`): each partition read from its
/// start, the records merged by timestamp; `Latest` keeps the newest `limit` of them, the
/// others the oldest.
pub async fn read_page(
    router: &mut Router,
    topic: &str,
    partitions: i32,
    req: &PageRequest,
) -> Result<Value, ClientError> {
    let chosen: Vec<i32> = match req.partition {
        Some(p) => vec![p],
        None => (0..partitions).collect(),
    };
    let mut records: Vec<(i64, i32, i64, Value)> = Vec::new();
    let mut spans = Vec::new();
    for &p in &chosen {
        let earliest = router.list_offset(topic, p, -2).await?;
        let latest = router.list_offset(topic, p, -1).await?;
        let mut offset = match req.start {
            Start::Earliest => earliest,
            Start::Latest => (latest - req.limit as i64).max(earliest),
            Start::Offset(o) => o.max(earliest),
            Start::Timestamp(ts) => match router.list_offset(topic, p, ts).await? {
                -1 => latest,
                o => o,
            },
        };
        spans.push(json!({"partition": p, "log_start_offset": earliest,
                          "high_watermark": latest, "start_offset": offset}));
        let mut taken = 0;
        for _ in 0..MAX_FETCHES {
            if offset >= latest || taken >= req.limit {
                break;
            }
            let (bytes, _) = router.fetch(topic, p, offset, 0).await?;
            if bytes.is_empty() {
                break;
            }
            let decoded = decode_records(bytes).map_err(|e| ClientError::Kafka {
                context: format!("records of {topic}-{p}"),
                code: -1,
                message: e.to_string(),
            })?;
            let before = offset;
            for r in decoded {
                if r.offset < offset {
                    continue;
                }
                offset = r.offset + 1;
                if r.control || r.offset >= latest || taken >= req.limit {
                    continue;
                }
                taken += 1;
                let headers: Vec<Value> = r
                    .headers
                    .iter()
                    .map(|(k, v)| json!({"key": k, "value": b64(v)}))
                    .collect();
                records.push((
                    r.timestamp_ms,
                    p,
                    r.offset,
                    json!({"partition": p, "offset": r.offset, "timestamp": r.timestamp_ms,
                           "key": b64(&r.key), "value": b64(&r.value), "headers": headers}),
                ));
            }
            if offset == before {
                break; // nothing decodable past here (a batch larger than a fetch)
            }
        }
    }
    records.sort_by_key(|r| (r.0, r.1, r.2));
    if records.len() > req.limit {
        if req.start == Start::Latest {
            records.drain(..records.len() - req.limit);
        } else {
            records.truncate(req.limit);
        }
    }
    Ok(json!({
        "topic": topic,
        "partitions": spans,
        "records": records.into_iter().map(|r| r.3).collect::<Vec<_>>(),
    }))
}

/// A message to produce. Key, value and header values are text unless `encoding` is
/// "base64".
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRecord {
    #[serde(default)]
    pub partition: Option<i32>,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, Option<String>>,
    #[serde(default)]
    pub encoding: Option<String>,
}

impl NewRecord {
    fn bytes(&self, text: &Option<String>) -> Result<Option<Bytes>, String> {
        let Some(t) = text else { return Ok(None) };
        match self.encoding.as_deref() {
            None | Some("text") => Ok(Some(Bytes::from(t.clone()))),
            Some("base64") => base64::engine::general_purpose::STANDARD
                .decode(t)
                .map(|b| Some(Bytes::from(b)))
                .map_err(|e| format!("not base64: {e}")),
            Some(other) => Err(format!("encoding is text or base64 (got '{other}')")),
        }
    }

    /// The batch to send and its partition: the one given, else the key's (murmur2, as
    /// Kafka's default partitioner), else one chosen by the clock.
    pub fn build(&self, partitions: i32, now_ms: i64) -> Result<(i32, Bytes), String> {
        if let Some(e) = self
            .encoding
            .as_deref()
            .filter(|e| !["text", "base64"].contains(e))
        {
            return Err(format!("encoding is text or base64 (got '{e}')"));
        }
        let key = self.bytes(&self.key)?;
        let value = self.bytes(&self.value)?;
        let mut headers = Vec::new();
        for (k, v) in &self.headers {
            headers.push((k.clone(), self.bytes(v)?));
        }
        let partition = match (self.partition, &key) {
            (Some(p), _) if p < 0 || p >= partitions => {
                return Err(format!(
                    "partition {p} does not exist (the topic has {partitions})"
                ))
            }
            (Some(p), _) => p,
            (None, Some(k)) => partition_for_key(k, partitions),
            (None, None) => (now_ms.rem_euclid(i64::from(partitions.max(1)))) as i32,
        };
        let mut batch = BatchBuilder::new(Compression::None);
        batch.push(Record {
            key,
            value,
            headers,
            timestamp_ms: now_ms,
        });
        let bytes = batch.build().map_err(|e| e.to_string())?;
        Ok((partition, bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_requests_are_bounded_and_checked() {
        let r = PageRequest::parse("partition=2&offset=10&limit=5").unwrap();
        assert_eq!(
            (r.partition, r.start, r.limit),
            (Some(2), Start::Offset(10), 5)
        );
        assert_eq!(PageRequest::parse("").unwrap().start, Start::Latest);
        assert_eq!(
            PageRequest::parse("timestamp=123").unwrap().start,
            Start::Timestamp(123)
        );
        for bad in [
            "limit=0",
            "limit=501",
            "offset=-1",
            "partition=-1",
            "partition=x",
            "position=middle",
            "colour=red",
        ] {
            assert!(PageRequest::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_keyed_record_goes_to_its_keys_partition() {
        let r = NewRecord {
            partition: None,
            key: Some("21".into()),
            value: Some("v".into()),
            headers: BTreeMap::new(),
            encoding: None,
        };
        let (p, bytes) = r.build(7, 0).unwrap();
        assert_eq!(p, partition_for_key(b"21", 7));
        let decoded = decode_records(bytes).unwrap();
        assert_eq!(decoded[0].value.as_deref(), Some(&b"v"[..]));
        let bad = NewRecord {
            partition: Some(7),
            ..r
        };
        assert!(bad.build(7, 0).is_err());
        let b64 = NewRecord {
            partition: None,
            key: None,
            value: Some("aGk=".into()),
            headers: BTreeMap::from([("h".to_string(), Some("eA==".to_string()))]),
            encoding: Some("base64".into()),
        };
        let (_, bytes) = b64.build(1, 0).unwrap();
        let decoded = decode_records(bytes).unwrap();
        assert_eq!(decoded[0].value.as_deref(), Some(&b"hi"[..]));
        assert_eq!(decoded[0].headers[0].1.as_deref(), Some(&b"x"[..]));
    }
}
