//! Validation of produced batches and scanning of stored ones.

use crate::{crc_of, BatchHeader, RecordsError, BATCH_HEADER_BYTES, LOG_OVERHEAD_BYTES};

/// Where one batch sits in a buffer, with its parsed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSpan {
    pub position: usize,
    pub header: BatchHeader,
}

impl BatchSpan {
    pub fn len(&self) -> usize {
        self.header.total_bytes()
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

/// The batches of one partition's produce data, all validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducedBatches {
    pub spans: Vec<BatchSpan>,
    pub records: i64,
}

/// Which batches are valid: a producer's hold exactly `last_offset_delta + 1` records; stored
/// ones may hold fewer (the log cleaner removes records but keeps each batch's offset range).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Produced,
    Stored,
}

/// Validates one batch whose bytes are exactly `batch`.
fn validate_one(batch: &[u8], header: &BatchHeader, origin: Origin) -> Result<(), RecordsError> {
    if header.magic != 2 {
        return Err(RecordsError::UnsupportedMagic(header.magic));
    }
    let computed = crc_of(batch);
    if computed != header.crc {
        return Err(RecordsError::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    header.compression()?;
    let counts_ok = match origin {
        Origin::Produced => {
            header.records_count >= 1 && header.last_offset_delta == header.records_count - 1
        }
        Origin::Stored => {
            header.records_count >= 0
                && i64::from(header.records_count) <= i64::from(header.last_offset_delta) + 1
        }
    };
    if header.last_offset_delta < 0 || !counts_ok {
        return Err(RecordsError::CountMismatch {
            records_count: header.records_count,
            last_offset_delta: header.last_offset_delta,
        });
    }
    if header.base_timestamp >= 0
        && header.max_timestamp >= 0
        && header.max_timestamp < header.base_timestamp
    {
        return Err(RecordsError::InvalidTimestamp {
            base: header.base_timestamp,
            max: header.max_timestamp,
        });
    }
    Ok(())
}

/// Checks that `buf` is a sequence of whole, valid v2 batches, as a producer must send. No
/// record is decoded: the work is per batch (header checks) plus one CRC pass over the bytes.
pub fn validate_produce(buf: &[u8]) -> Result<ProducedBatches, RecordsError> {
    let mut out = ProducedBatches::default();
    let mut position = 0;
    while position < buf.len() {
        let rest = &buf[position..];
        if rest.len() < LOG_OVERHEAD_BYTES + 5 {
            return Err(RecordsError::Truncated {
                needed: BATCH_HEADER_BYTES,
                available: rest.len(),
            });
        }
        // magic first, so an old message-set gets a precise error rather than "truncated"
        let magic = rest[16] as i8;
        if magic != 2 {
            return Err(RecordsError::UnsupportedMagic(magic));
        }
        let header = BatchHeader::parse(rest)?;
        let length = i64::from(header.batch_length);
        if length < (BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES) as i64 {
            return Err(RecordsError::InvalidLength {
                length,
                minimum: BATCH_HEADER_BYTES,
            });
        }
        let total = header.total_bytes();
        if total > rest.len() {
            return Err(RecordsError::Truncated {
                needed: total,
                available: rest.len(),
            });
        }
        validate_one(&rest[..total], &header, Origin::Produced)?;
        if header.is_control() {
            return Err(RecordsError::ControlBatchFromProducer);
        }
        out.records += i64::from(header.records_count);
        out.spans.push(BatchSpan { position, header });
        position += total;
    }
    if out.spans.is_empty() {
        return Err(RecordsError::Empty);
    }
    Ok(out)
}

/// Why a scan of stored bytes stopped before the end of the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanStop {
    /// Every byte belonged to a whole, valid batch.
    End,
    /// The bytes from `position` on do not hold a whole batch (a torn write, or simply a
    /// read that ended mid-batch).
    Incomplete { position: usize },
    /// The batch at `position` is invalid (bad CRC, length, magic, or offset).
    Corrupt {
        position: usize,
        error: RecordsError,
    },
}

/// Scans stored batches for recovery: each must be whole, pass its CRC and start at or after
/// `expected_offset` (the previous batch's next offset; after compaction whole batches may be
/// gone), except the first when `None`. A stored batch may hold fewer records than its
/// offset range (the cleaner removed some).
pub fn scan_batches(buf: &[u8], mut expected_offset: Option<i64>) -> (Vec<BatchSpan>, ScanStop) {
    let mut spans = Vec::new();
    let mut position = 0;
    while position < buf.len() {
        let rest = &buf[position..];
        let header = match BatchHeader::parse(rest) {
            Ok(h) => h,
            Err(_) => return (spans, ScanStop::Incomplete { position }),
        };
        let length = i64::from(header.batch_length);
        if length < (BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES) as i64 {
            let error = RecordsError::InvalidLength {
                length,
                minimum: BATCH_HEADER_BYTES,
            };
            return (spans, ScanStop::Corrupt { position, error });
        }
        let total = header.total_bytes();
        if total > rest.len() {
            return (spans, ScanStop::Incomplete { position });
        }
        if let Err(error) = validate_one(&rest[..total], &header, Origin::Stored) {
            return (spans, ScanStop::Corrupt { position, error });
        }
        if let Some(expected) = expected_offset {
            // Offsets only grow; a compacted log has gaps where whole batches were removed.
            if header.base_offset < expected {
                let error = RecordsError::Decode(format!(
                    "batch at offset {} where {} was expected",
                    header.base_offset, expected
                ));
                return (spans, ScanStop::Corrupt { position, error });
            }
        }
        expected_offset = Some(header.next_offset());
        spans.push(BatchSpan { position, header });
        position += total;
    }
    (spans, ScanStop::End)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{set_base_offset, set_log_append_time, BatchBuilder, Compression, Record};
    use bytes::Bytes;

    fn batch(n: usize) -> Vec<u8> {
        let mut b = BatchBuilder::new(Compression::None);
        for i in 0..n {
            b.push(Record {
                key: Some(Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from(format!("v{i}"))),
                timestamp_ms: 1000 + i as i64,
                ..Default::default()
            });
        }
        b.build().unwrap().to_vec()
    }

    #[test]
    fn accepts_valid_batches_and_counts_records() {
        let mut buf = batch(3);
        buf.extend(batch(2));
        let v = validate_produce(&buf).unwrap();
        assert_eq!(v.spans.len(), 2);
        assert_eq!(v.records, 5);
        assert_eq!(v.spans[1].position, batch(3).len());
    }

    #[test]
    fn rejects_flipped_bit_with_crc_mismatch() {
        let mut buf = batch(3);
        let last = buf.len() - 1;
        buf[last] ^= 1;
        assert!(matches!(
            validate_produce(&buf),
            Err(RecordsError::CrcMismatch { .. })
        ));
    }

    #[test]
    fn rejects_old_magic_truncation_count_mismatch_and_empty() {
        let mut old = batch(1);
        old[16] = 1;
        assert_eq!(
            validate_produce(&old),
            Err(RecordsError::UnsupportedMagic(1))
        );
        let full = batch(2);
        assert!(matches!(
            validate_produce(&full[..full.len() - 1]),
            Err(RecordsError::Truncated { .. })
        ));
        let mut lying = batch(2);
        lying[57..61].copy_from_slice(&5i32.to_be_bytes());
        assert!(matches!(
            validate_produce(&lying),
            Err(RecordsError::CrcMismatch { .. }) | Err(RecordsError::CountMismatch { .. })
        ));
        assert_eq!(validate_produce(&[]), Err(RecordsError::Empty));
    }

    #[test]
    fn broker_owned_fields_do_not_break_the_crc() {
        let mut buf = batch(2);
        set_base_offset(&mut buf, 42);
        crate::set_partition_leader_epoch(&mut buf, 7);
        set_log_append_time(&mut buf, 99_999);
        let v = validate_produce(&buf).unwrap();
        assert_eq!(v.spans[0].header.base_offset, 42);
        assert_eq!(v.spans[0].header.max_timestamp, 99_999);
        assert_eq!(
            v.spans[0].header.timestamp_type(),
            crate::TimestampType::LogAppendTime
        );
        let recs = crate::decode_records(Bytes::from(buf)).unwrap();
        assert_eq!(recs[1].offset, 43);
        assert_eq!(recs[1].timestamp_ms, 99_999);
    }

    #[test]
    fn scan_stops_at_torn_tail_and_offset_gaps() {
        let mut a = batch(2);
        set_base_offset(&mut a, 0);
        let mut b = batch(1);
        set_base_offset(&mut b, 2);
        let mut buf = a.clone();
        buf.extend(&b);
        let (spans, stop) = scan_batches(&buf, Some(0));
        assert_eq!((spans.len(), stop), (2, ScanStop::End));
        let (spans, stop) = scan_batches(&buf[..buf.len() - 3], Some(0));
        assert_eq!(
            (spans.len(), stop),
            (1, ScanStop::Incomplete { position: a.len() })
        );
        let (spans, stop) = scan_batches(&buf, Some(5));
        assert!(spans.is_empty() && matches!(stop, ScanStop::Corrupt { position: 0, .. }));
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = validate_produce(&bytes);
            let _ = scan_batches(&bytes, None);
        }
    }
}
