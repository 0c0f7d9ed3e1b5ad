//! Reading records out of stored batches (decompressing where needed). Used off the produce
//! path only: ListOffsets by timestamp, the metadata log, our CLI consumer.

use bytes::Bytes;
use kafka_protocol::records::RecordBatchDecoder;

use crate::RecordsError;

/// A record with its absolute offset and the timestamp a consumer would see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedRecord {
    pub offset: i64,
    pub timestamp_ms: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
    pub control: bool,
}

/// Decodes every record of the whole batches in `bytes`. LogAppendTime batches report the
/// batch's max timestamp for every record, as Kafka consumers see them.
pub fn decode_records(bytes: Bytes) -> Result<Vec<DecodedRecord>, RecordsError> {
    let mut buf = bytes;
    let mut out = Vec::new();
    while !buf.is_empty() {
        let header = crate::BatchHeader::parse(&buf)?;
        let total = header.total_bytes();
        if total > buf.len() {
            break; // a partial batch at the end of a fetch response is normal
        }
        let mut one = buf.split_to(total);
        let max = crate::rewrite::DECOMPRESSED_BATCH_BYTES_MAX;
        let set = RecordBatchDecoder::decode_with_custom_compression(
            &mut one,
            Some(|data: &mut Bytes, codec| crate::rewrite::decompress_bounded(data, codec, max)),
        )
        .map_err(|e| RecordsError::Decode(e.to_string()))?;
        let log_append = header.timestamp_type() == crate::TimestampType::LogAppendTime;
        for r in set.records {
            out.push(DecodedRecord {
                offset: r.offset,
                timestamp_ms: if log_append {
                    header.max_timestamp
                } else {
                    r.timestamp
                },
                key: r.key,
                value: r.value,
                headers: r
                    .headers
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
                control: r.control,
            });
        }
    }
    Ok(out)
}
