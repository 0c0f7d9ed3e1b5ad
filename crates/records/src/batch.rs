use crate::RecordsError;

/// Bytes before the records of a v2 batch.
pub const BATCH_HEADER_BYTES: usize = 61;
/// base_offset + batch_length: the part of the header not counted in `batch_length`.
pub const LOG_OVERHEAD_BYTES: usize = 12;

const CRC_OFFSET: usize = 17;
const ATTRIBUTES_OFFSET: usize = 21;
const MAX_TIMESTAMP_OFFSET: usize = 35;
const TIMESTAMP_TYPE_BIT: i16 = 1 << 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// The fixed 61-byte header of a RecordBatch v2, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn i64_at(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

impl BatchHeader {
    /// Parses the header from the first 61 bytes of `bytes`. Checks only that the bytes are
    /// there; the meaning of the fields is checked by `validate`.
    pub fn parse(bytes: &[u8]) -> Result<Self, RecordsError> {
        if bytes.len() < BATCH_HEADER_BYTES {
            return Err(RecordsError::Truncated {
                needed: BATCH_HEADER_BYTES,
                available: bytes.len(),
            });
        }
        Ok(Self {
            base_offset: i64_at(bytes, 0),
            batch_length: i32_at(bytes, 8),
            partition_leader_epoch: i32_at(bytes, 12),
            magic: bytes[16] as i8,
            crc: u32::from_be_bytes(bytes[17..21].try_into().expect("4 bytes")),
            attributes: i16_at(bytes, 21),
            last_offset_delta: i32_at(bytes, 23),
            base_timestamp: i64_at(bytes, 27),
            max_timestamp: i64_at(bytes, 35),
            producer_id: i64_at(bytes, 43),
            producer_epoch: i16_at(bytes, 51),
            base_sequence: i32_at(bytes, 53),
            records_count: i32_at(bytes, 57),
        })
    }

    /// Total size of the batch on disk and on the wire.
    pub fn total_bytes(&self) -> usize {
        LOG_OVERHEAD_BYTES + self.batch_length.max(0) as usize
    }

    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }

    pub fn compression(&self) -> Result<Compression, RecordsError> {
        match self.attributes & 0x7 {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            other => Err(RecordsError::UnknownCompression(other as u8)),
        }
    }

    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & TIMESTAMP_TYPE_BIT != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & (1 << 4) != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & (1 << 5) != 0
    }
}

/// CRC-32C over the part of a batch the CRC covers (attributes to the end).
pub fn crc_of(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[ATTRIBUTES_OFFSET..])
}

/// Writes the broker-assigned base offset. Outside the CRC, so the CRC stays valid.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Writes the leader epoch under which the batch was appended. Outside the CRC.
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[12..16].copy_from_slice(&epoch.to_be_bytes());
}

/// Marks the batch LogAppendTime with the broker's clock, as Kafka does: the timestamp type
/// bit is set and max_timestamp holds the append time; the CRC is recomputed because both
/// fields are covered by it.
pub fn set_log_append_time(batch: &mut [u8], now_ms: i64) {
    let (header, records) = batch.split_at_mut(BATCH_HEADER_BYTES);
    set_log_append_time_split(header, records, now_ms);
}

/// [`set_log_append_time`] for a batch held as its 61-byte header (written here) and its
/// records (only read, for the CRC): the produce path patches a copy of the header and
/// writes the records straight from the request.
pub fn set_log_append_time_split(header: &mut [u8], records: &[u8], now_ms: i64) {
    let attributes = i16_at(header, ATTRIBUTES_OFFSET) | TIMESTAMP_TYPE_BIT;
    header[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&attributes.to_be_bytes());
    header[MAX_TIMESTAMP_OFFSET..MAX_TIMESTAMP_OFFSET + 8].copy_from_slice(&now_ms.to_be_bytes());
    let crc = crc32c::crc32c_append(
        crc32c::crc32c(&header[ATTRIBUTES_OFFSET..BATCH_HEADER_BYTES]),
        records,
    );
    header[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
}

/// A transaction marker (control batch, transactional, one record) as the transaction
/// coordinator writes it: key = version 0, type (0 abort, 1 commit); value = version 0,
/// coordinator epoch. Offsets relative to 0, like any batch before it is appended.
pub fn control_batch(
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
    timestamp: i64,
) -> Vec<u8> {
    let mut record = Vec::with_capacity(16);
    record.push(0); // attributes
    record.push(0); // timestamp delta (varlong 0)
    record.push(0); // offset delta (varint 0)
    record.push(8); // key length 4, zigzag
    record.extend_from_slice(&0i16.to_be_bytes());
    record.extend_from_slice(&(commit as i16).to_be_bytes());
    record.push(12); // value length 6, zigzag
    record.extend_from_slice(&0i16.to_be_bytes());
    record.extend_from_slice(&coordinator_epoch.to_be_bytes());
    record.push(0); // no headers
    let mut b = Vec::with_capacity(BATCH_HEADER_BYTES + 1 + record.len());
    b.extend_from_slice(&0i64.to_be_bytes()); // base offset
    let batch_length = (BATCH_HEADER_BYTES - 12 + 1 + record.len()) as i32;
    b.extend_from_slice(&batch_length.to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
    b.push(2); // magic
    b.extend_from_slice(&0u32.to_be_bytes()); // crc, below
    b.extend_from_slice(&0x30i16.to_be_bytes()); // transactional | control
    b.extend_from_slice(&0i32.to_be_bytes()); // last offset delta
    b.extend_from_slice(&timestamp.to_be_bytes());
    b.extend_from_slice(&timestamp.to_be_bytes());
    b.extend_from_slice(&producer_id.to_be_bytes());
    b.extend_from_slice(&producer_epoch.to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    b.extend_from_slice(&1i32.to_be_bytes()); // records
    b.push((record.len() as u8) << 1); // record length, zigzag varint (< 64)
    b.extend_from_slice(&record);
    let crc = crc_of(&b);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// Whether a control batch is a commit (true) or abort (false) marker; `None` if its first
/// record is not a well-formed transaction marker.
pub fn control_type(batch: &[u8]) -> Option<bool> {
    let mut at = BATCH_HEADER_BYTES;
    let varint = |at: &mut usize| -> Option<i64> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = *batch.get(*at)?;
            *at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some((value >> 1) as i64 ^ -((value & 1) as i64));
            }
        }
        None
    };
    varint(&mut at)?; // record length
    at += 1; // attributes
    varint(&mut at)?; // timestamp delta
    varint(&mut at)?; // offset delta
    if varint(&mut at)? < 4 {
        return None;
    }
    let key = batch.get(at..at + 4)?;
    match i16::from_be_bytes([key[2], key[3]]) {
        0 => Some(false),
        1 => Some(true),
        _ => None,
    }
}

#[cfg(test)]
mod control_tests {
    use super::*;

    #[test]
    fn control_batches_parse_back() {
        for commit in [true, false] {
            let b = control_batch(42, 3, commit, 7, 1000);
            let h = BatchHeader::parse(&b).unwrap();
            assert!(h.is_control() && h.is_transactional());
            assert_eq!(
                (h.producer_id, h.producer_epoch, h.records_count),
                (42, 3, 1)
            );
            assert_eq!(h.total_bytes(), b.len());
            assert_eq!(h.crc, crc_of(&b));
            assert_eq!(control_type(&b), Some(commit));
            // kafka-protocol decodes it as a control record too.
            let recs = crate::decode_records(bytes::Bytes::from(b)).unwrap();
            assert!(recs[0].control);
        }
    }
}
