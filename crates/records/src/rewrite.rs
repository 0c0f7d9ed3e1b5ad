//! Rewriting a stored batch with some of its records removed (the log cleaner). What Kafka
//! keeps, this keeps: the batch's base offset and last offset delta (so offsets never move
//! and a batch still covers the same offset range), partition leader epoch, attributes
//! (compression codec, timestamp type, transactional and control flags), base and max
//! timestamps, producer id, epoch and base sequence (so idempotent producers' sequence
//! arithmetic still holds). Only the record count, the records, the length and the CRC
//! change. Compressed batches are decompressed and recompressed with the same codec.
//!
//! [`recompress`] is the other rewrite: a produced batch re-encoded with the topic's
//! `compression.type` (Kafka's broker-side compression), every field but the codec bits,
//! length and CRC kept.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::compression::{self as codec, Compressor, Decompressor};
use kafka_protocol::records::RecordBatchDecoder;

use crate::batch::{crc_of, BatchHeader, Compression, BATCH_HEADER_BYTES};
use crate::RecordsError;

/// One record of a batch, as the filter sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordView {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(Bytes, Option<Bytes>)>,
}

/// What filtering did to a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filtered {
    /// Every record kept: the stored bytes can be copied as they are.
    Unchanged,
    /// Some records removed: the batch as rewritten (possibly with no records left, when the
    /// caller asked to keep an empty batch).
    Rewritten(Vec<u8>),
    /// Every record removed and the batch dropped.
    Dropped,
}

/// Most bytes one batch's records may take once decompressed. A batch is at most
/// `max.message.bytes` compressed (1 MiB by default); a compression bomb (gzip inflates up to
/// ~1000×, zstd and lz4 further) is refused at this size instead of being inflated. Kafka's
/// `max.decompressed.message.bytes` defaults to 2 GiB; Strata is stricter.
pub const DECOMPRESSED_BATCH_BYTES_MAX: usize = 128 << 20;

/// The records of one batch (decompressed, at most [`DECOMPRESSED_BATCH_BYTES_MAX`]).
pub fn batch_records(batch: &[u8]) -> Result<Vec<RecordView>, RecordsError> {
    batch_records_bounded(batch, DECOMPRESSED_BATCH_BYTES_MAX)
}

/// Decompresses a batch's records section, refusing to produce more than `max` bytes.
/// Snappy needs no bound: its format cannot expand more than ~21× its input.
pub fn decompress_bounded(
    data: &mut Bytes,
    codec: kafka_protocol::records::Compression,
    max: usize,
) -> anyhow::Result<Bytes> {
    use kafka_protocol::records::Compression as C;
    use std::io::Read;
    let mut out = Vec::new();
    let input = data.as_ref();
    let read = |r: &mut dyn Read, out: &mut Vec<u8>| -> anyhow::Result<()> {
        r.take(max as u64 + 1).read_to_end(out)?;
        Ok(())
    };
    match codec {
        C::None => return Ok(data.clone()),
        C::Gzip => read(&mut flate2::read::GzDecoder::new(input), &mut out)?,
        C::Lz4 => read(&mut lz4::Decoder::new(input)?, &mut out)?,
        C::Zstd => read(&mut zstd::stream::read::Decoder::new(input)?, &mut out)?,
        C::Snappy => {
            return codec::Snappy::decompress(data, |b: &mut Bytes| -> anyhow::Result<Bytes> {
                Ok(b.clone())
            })
        }
    }
    if out.len() > max {
        anyhow::bail!("batch decompresses to more than {max} bytes");
    }
    Ok(Bytes::from(out))
}

/// [`batch_records`] with a chosen decompression bound.
pub fn batch_records_bounded(batch: &[u8], max: usize) -> Result<Vec<RecordView>, RecordsError> {
    let mut buf = Bytes::copy_from_slice(batch);
    let set = RecordBatchDecoder::decode_with_custom_compression(
        &mut buf,
        Some(|data: &mut Bytes, codec| decompress_bounded(data, codec, max)),
    )
    .map_err(|e| RecordsError::Decode(e.to_string()))?;
    Ok(set
        .records
        .into_iter()
        .map(|r| RecordView {
            offset: r.offset,
            timestamp: r.timestamp,
            key: r.key,
            value: r.value,
            headers: r
                .headers
                .into_iter()
                .map(|(k, v)| (Bytes::copy_from_slice(k.as_bytes()), v))
                .collect(),
        })
        .collect())
}

/// Keeps the records `keep` accepts. A batch left with no records is dropped unless
/// `keep_empty` (the cleaner keeps a producer's last batch so its sequence state survives).
pub fn filter_batch(
    batch: &[u8],
    keep_empty: bool,
    mut keep: impl FnMut(&RecordView) -> bool,
) -> Result<Filtered, RecordsError> {
    let header = BatchHeader::parse(batch)?;
    if header.is_control() {
        return Ok(Filtered::Unchanged);
    }
    let records = batch_records(&batch[..header.total_bytes()])?;
    let total = records.len();
    let kept: Vec<RecordView> = records.into_iter().filter(|r| keep(r)).collect();
    if kept.len() == total {
        return Ok(Filtered::Unchanged);
    }
    if kept.is_empty() && !keep_empty {
        return Ok(Filtered::Dropped);
    }
    let codec = (header.compression()?, Level::default());
    Ok(Filtered::Rewritten(encode_like(
        &header, batch, &kept, codec,
    )?))
}

/// Kafka's compression levels (`compression.gzip.level`, `compression.lz4.level`,
/// `compression.zstd.level`); each applies only when the broker compresses with that codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Level {
    /// -1 (the codec's default, 6) or 1..=9
    pub gzip: i32,
    /// 1..=17
    pub lz4: i32,
    /// -131072..=22
    pub zstd: i32,
}

impl Default for Level {
    /// Kafka's defaults.
    fn default() -> Self {
        Level {
            gzip: -1,
            lz4: 9,
            zstd: 3,
        }
    }
}

impl Level {
    /// Checks a level against Kafka's range for its codec; the error names the config.
    pub fn check(codec: Compression, level: i32) -> Result<(), String> {
        let (name, ok) = match codec {
            Compression::Gzip => (
                "compression.gzip.level",
                level == -1 || (1..=9).contains(&level),
            ),
            Compression::Lz4 => ("compression.lz4.level", (1..=17).contains(&level)),
            Compression::Zstd => ("compression.zstd.level", (-131072..=22).contains(&level)),
            Compression::None | Compression::Snappy => return Ok(()),
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "Invalid value {level} for configuration {name}: out of range"
            ))
        }
    }
}

/// `batch` (one whole produced batch) re-encoded with `codec` at `level`. Offsets, sequence
/// numbers, timestamps, producer and flags are kept; only the codec bits, length, records
/// section and CRC change.
pub fn recompress(batch: &[u8], codec: Compression, level: Level) -> Result<Vec<u8>, RecordsError> {
    let header = BatchHeader::parse(batch)?;
    let records = batch_records(&batch[..header.total_bytes()])?;
    encode_like(&header, batch, &records, (codec, level))
}

fn compress(
    codec: Compression,
    level: Level,
    body: &[u8],
    out: &mut Vec<u8>,
) -> anyhow::Result<()> {
    use std::io::Write;
    match codec {
        Compression::None => out.extend_from_slice(body),
        Compression::Gzip => {
            let level = match level.gzip {
                -1 => flate2::Compression::default(),
                l => flate2::Compression::new(l.clamp(1, 9) as u32),
            };
            let mut e = flate2::write::GzEncoder::new(out, level);
            e.write_all(body)?;
            e.finish()?;
        }
        Compression::Snappy => {
            let mut tmp = BytesMut::new();
            codec::Snappy::compress(&mut tmp, |b: &mut BytesMut| -> anyhow::Result<()> {
                b.put_slice(body);
                Ok(())
            })?;
            out.extend_from_slice(&tmp);
        }
        Compression::Lz4 => {
            // Kafka's framing: the LZ4 frame format with independent blocks
            let mut e = lz4::EncoderBuilder::new()
                .level(level.lz4.clamp(1, 17) as u32)
                .block_mode(lz4::BlockMode::Independent)
                .build(out)?;
            e.write_all(body)?;
            let (_, r) = e.finish();
            r?;
        }
        Compression::Zstd => zstd::stream::copy_encode(body, out, level.zstd)?,
    }
    Ok(())
}

fn codec_bits(codec: Compression) -> i16 {
    match codec {
        Compression::None => 0,
        Compression::Gzip => 1,
        Compression::Snappy => 2,
        Compression::Lz4 => 3,
        Compression::Zstd => 4,
    }
}

fn put_varint(b: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        b.push((z as u8) | 0x80);
        z >>= 7;
    }
    b.push(z as u8);
}

fn put_bytes(b: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        None => put_varint(b, -1),
        Some(v) => {
            put_varint(b, v.len() as i64);
            b.extend_from_slice(v);
        }
    }
}

/// A batch with `header`'s fields and `records` (offsets and timestamps relative to the
/// header's base offset and base timestamp).
fn encode_like(
    header: &BatchHeader,
    original: &[u8],
    records: &[RecordView],
    (codec, level): (Compression, Level),
) -> Result<Vec<u8>, RecordsError> {
    let mut body = Vec::new();
    let mut one = Vec::new();
    for r in records {
        one.clear();
        one.push(0); // record attributes
        put_varint(&mut one, r.timestamp - header.base_timestamp);
        put_varint(&mut one, r.offset - header.base_offset);
        put_bytes(&mut one, r.key.as_deref());
        put_bytes(&mut one, r.value.as_deref());
        put_varint(&mut one, r.headers.len() as i64);
        for (k, v) in &r.headers {
            put_bytes(&mut one, Some(k));
            put_bytes(&mut one, v.as_deref());
        }
        put_varint(&mut body, one.len() as i64);
        body.extend_from_slice(&one);
    }
    let mut out = Vec::with_capacity(BATCH_HEADER_BYTES + body.len());
    out.extend_from_slice(&original[..BATCH_HEADER_BYTES]);
    compress(codec, level, &body, &mut out)
        .map_err(|e| RecordsError::Decode(format!("compressing: {e}")))?;
    let batch_length = (out.len() - 12) as i32;
    out[8..12].copy_from_slice(&batch_length.to_be_bytes());
    let attributes = (i16::from_be_bytes([out[21], out[22]]) & !0x7) | codec_bits(codec);
    out[21..23].copy_from_slice(&attributes.to_be_bytes());
    out[57..61].copy_from_slice(&(records.len() as i32).to_be_bytes());
    let crc = crc_of(&out);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BatchBuilder, Record};

    fn batch(compression: crate::Compression) -> Vec<u8> {
        let mut b = BatchBuilder::new(compression);
        for i in 0..5 {
            b.push(Record {
                key: Some(Bytes::from(format!("k{i}"))),
                value: (i != 3).then(|| Bytes::from(format!("v{i}"))),
                headers: vec![("h".into(), Some(Bytes::from_static(b"x")))],
                timestamp_ms: 1000 + i,
            });
        }
        let mut bytes = b.build().unwrap().to_vec();
        crate::set_base_offset(&mut bytes, 100);
        bytes
    }

    #[test]
    fn decompression_is_bounded() {
        // 4 MiB of zeros compresses to a few KiB in every codec: refused past a 1 MiB bound
        // without being inflated, taken under a larger one.
        for compression in [
            crate::Compression::Gzip,
            crate::Compression::Lz4,
            crate::Compression::Zstd,
            crate::Compression::Snappy,
        ] {
            let mut b = BatchBuilder::new(compression);
            b.push(Record {
                key: Some(Bytes::from_static(b"k")),
                value: Some(Bytes::from(vec![0u8; 4 << 20])),
                headers: vec![],
                timestamp_ms: 1,
            });
            let bomb = b.build().unwrap().to_vec();
            assert!(
                bomb.len() < 1 << 20,
                "{compression:?} compressed to {}",
                bomb.len()
            );
            let small = batch_records_bounded(&bomb, 1 << 20);
            if compression != crate::Compression::Snappy {
                assert!(small.is_err(), "{compression:?} inflated past the bound");
            }
            let big = batch_records_bounded(&bomb, 8 << 20).unwrap();
            assert_eq!(big[0].value.as_ref().unwrap().len(), 4 << 20);
        }
    }

    #[test]
    fn recompressing_changes_only_the_codec() {
        let all = [
            crate::Compression::None,
            crate::Compression::Gzip,
            crate::Compression::Snappy,
            crate::Compression::Lz4,
            crate::Compression::Zstd,
        ];
        for from in all {
            let original = batch(from);
            let before = BatchHeader::parse(&original).unwrap();
            for to in all {
                for level in [
                    Level::default(),
                    Level {
                        gzip: 1,
                        lz4: 17,
                        zstd: -5,
                    },
                ] {
                    let new = recompress(&original, to, level).unwrap();
                    let after = BatchHeader::parse(&new).unwrap();
                    // still a batch a producer may send, with a right CRC
                    crate::validate_produce(&new).unwrap();
                    assert_eq!(after.compression().unwrap(), to);
                    assert_eq!(
                        (
                            after.attributes & !0x7,
                            after.base_offset,
                            after.last_offset_delta
                        ),
                        (
                            before.attributes & !0x7,
                            before.base_offset,
                            before.last_offset_delta
                        )
                    );
                    assert_eq!(
                        (after.producer_id, after.producer_epoch, after.base_sequence),
                        (
                            before.producer_id,
                            before.producer_epoch,
                            before.base_sequence
                        )
                    );
                    assert_eq!(
                        (
                            after.base_timestamp,
                            after.max_timestamp,
                            after.records_count
                        ),
                        (
                            before.base_timestamp,
                            before.max_timestamp,
                            before.records_count
                        )
                    );
                    assert_eq!(
                        batch_records(&new).unwrap(),
                        batch_records(&original).unwrap()
                    );
                }
            }
        }
        assert!(Level::check(crate::Compression::Gzip, 10).is_err());
        assert!(Level::check(crate::Compression::Lz4, 0).is_err());
        assert!(Level::check(crate::Compression::Zstd, 23).is_err());
        assert!(Level::check(crate::Compression::Zstd, -131072).is_ok());
    }

    #[test]
    fn removing_records_keeps_offsets_timestamps_and_codec() {
        for compression in [
            crate::Compression::None,
            crate::Compression::Gzip,
            crate::Compression::Snappy,
            crate::Compression::Lz4,
            crate::Compression::Zstd,
        ] {
            let original = batch(compression);
            let before = BatchHeader::parse(&original).unwrap();
            let Filtered::Rewritten(new) =
                filter_batch(&original, false, |r| r.offset != 100 && r.offset != 102).unwrap()
            else {
                panic!("expected a rewrite");
            };
            let after = BatchHeader::parse(&new).unwrap();
            let (spans, stop) = crate::scan_batches(&new, Some(100));
            assert_eq!(
                (spans.len(), stop),
                (1, crate::ScanStop::End),
                "a valid stored batch"
            );
            assert!(
                crate::validate_produce(&new).is_err(),
                "but not one a producer may send"
            );
            assert_eq!(after.base_offset, 100);
            assert_eq!(after.last_offset(), before.last_offset());
            assert_eq!(after.compression().unwrap(), compression);
            assert_eq!(
                (after.base_sequence, after.producer_id, after.max_timestamp),
                (
                    before.base_sequence,
                    before.producer_id,
                    before.max_timestamp
                )
            );
            let records = batch_records(&new).unwrap();
            let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
            assert_eq!(offsets, vec![101, 103, 104]);
            assert_eq!(records[0].timestamp, 1001);
            assert_eq!(records[1].value, None, "a tombstone stays a tombstone");
            assert_eq!(records[2].headers[0].1.as_deref(), Some(&b"x"[..]));
        }
    }

    #[test]
    fn unchanged_dropped_and_kept_empty() {
        let original = batch(crate::Compression::None);
        assert_eq!(
            filter_batch(&original, false, |_| true).unwrap(),
            Filtered::Unchanged
        );
        assert_eq!(
            filter_batch(&original, false, |_| false).unwrap(),
            Filtered::Dropped
        );
        let Filtered::Rewritten(empty) = filter_batch(&original, true, |_| false).unwrap() else {
            panic!("expected an empty batch");
        };
        let h = BatchHeader::parse(&empty).unwrap();
        assert_eq!(
            (h.base_offset, h.last_offset(), h.records_count),
            (100, 104, 0)
        );
        assert!(batch_records(&empty).unwrap().is_empty());
    }
}
