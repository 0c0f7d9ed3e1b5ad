//! Building batches: for the metadata log, our CLI producer and tests. The broker itself never
//! builds data batches; it stores what producers send.

use bytes::{Bytes, BytesMut};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression as WireCompression, Record as WireRecord, RecordBatchEncoder, RecordEncodeOptions,
    TimestampType as WireTimestampType,
};

use crate::{Compression, RecordsError};

/// One record to put in a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
    pub timestamp_ms: i64,
}

/// Builds one RecordBatch v2 (offsets relative to 0; the broker assigns real ones).
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    compression: Compression,
    records: Vec<Record>,
    /// (producer id, epoch) of a transactional batch written by a coordinator.
    transactional: Option<(i64, i16)>,
    /// (producer id, epoch, base sequence) of an idempotent producer's batch.
    idempotent: Option<(i64, i16, i32)>,
}

impl BatchBuilder {
    pub fn new(compression: Compression) -> Self {
        Self {
            compression,
            records: Vec::new(),
            transactional: None,
            idempotent: None,
        }
    }

    /// Makes the batch an idempotent producer's, its records numbered from `base_sequence`
    /// (what a client's producer sends; used by tests and the simulation).
    pub fn idempotent(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
    ) -> &mut Self {
        self.idempotent = Some((producer_id, producer_epoch, base_sequence));
        self
    }

    /// Makes the batch transactional for `producer_id`/`producer_epoch`, with no sequence
    /// (base sequence -1): what a coordinator writes on a producer's behalf.
    pub fn transactional(&mut self, producer_id: i64, producer_epoch: i16) -> &mut Self {
        self.transactional = Some((producer_id, producer_epoch));
        self
    }

    pub fn push(&mut self, record: Record) -> &mut Self {
        self.records.push(record);
        self
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn build(&self) -> Result<Bytes, RecordsError> {
        if self.records.is_empty() {
            return Err(RecordsError::Empty);
        }
        let wire: Vec<WireRecord> = self
            .records
            .iter()
            .enumerate()
            .map(|(i, r)| WireRecord {
                transactional: self.transactional.is_some(),
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: self
                    .idempotent
                    .map_or(self.transactional.map_or(-1, |t| t.0), |t| t.0),
                producer_epoch: self
                    .idempotent
                    .map_or(self.transactional.map_or(-1, |t| t.1), |t| t.1),
                timestamp_type: WireTimestampType::Creation,
                offset: i as i64,
                // the encoder batches records whose offset-sequence difference is constant;
                // base_sequence comes out as -1 (no producer id), as Kafka expects
                sequence: self.idempotent.map_or(i as i32 - 1, |t| t.2 + i as i32),
                timestamp: r.timestamp_ms,
                key: r.key.clone(),
                value: r.value.clone(),
                headers: r
                    .headers
                    .iter()
                    .map(|(k, v)| (StrBytes::from_string(k.clone()), v.clone()))
                    .collect(),
            })
            .collect();
        let compression = match self.compression {
            Compression::None => WireCompression::None,
            Compression::Gzip => WireCompression::Gzip,
            Compression::Snappy => WireCompression::Snappy,
            Compression::Lz4 => WireCompression::Lz4,
            Compression::Zstd => WireCompression::Zstd,
        };
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &wire,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .map_err(|e| RecordsError::Decode(e.to_string()))?;
        Ok(buf.freeze())
    }
}
