//! Fetch responses without copying record bytes through user space.
//!
//! A fetch response is mostly stored batches. Instead of reading them into memory and
//! copying them into the encoded response, the handler puts a 16-byte random marker where
//! each partition's records go, encodes the (now small) response with `kafka-protocol`, and
//! splits the frame at the markers: the writer sends the bytes around them and hands each
//! batch range to the kernel with sendfile (page cache → socket, no user-space copy).
//!
//! If the markers are not found exactly once per range (a 2^-128 chance of a collision with
//! other response bytes), or a file has no descriptor (the simulated file system), the
//! ranges are read and encoded the ordinary way.

use std::io;

use bytes::{BufMut, Bytes, BytesMut};
use strata_storage::segment::SegmentSlice;
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::tcp::OwnedWriteHalf;

/// One piece of a response frame.
pub enum Part {
    Bytes(Bytes),
    File(SegmentSlice),
}

impl std::fmt::Debug for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Part::Bytes(b) => write!(f, "Bytes({})", b.len()),
            Part::File(r) => write!(f, "File({}+{})", r.position, r.bytes),
        }
    }
}

/// A marker unique to one response.
pub fn new_marker() -> [u8; 16] {
    uuid::Uuid::new_v4().into_bytes()
}

/// Splits an encoded response frame at `marker` (one occurrence per range, in order) and puts
/// each range in its place, fixing the records length fields and the frame length. None if
/// the markers do not line up with the ranges.
pub fn splice(
    frame: Bytes,
    marker: &[u8; 16],
    flexible: bool,
    ranges: Vec<SegmentSlice>,
) -> Option<Vec<Part>> {
    let positions: Vec<usize> = find_all(&frame, marker);
    if positions.len() != ranges.len() {
        return None;
    }
    // The placeholder's length field: i32 16, or a compact uvarint 17 (one byte).
    let old_len_field = if flexible { 1 } else { 4 };
    let mut parts = Vec::with_capacity(ranges.len() * 2 + 1);
    let mut cursor = 0;
    let mut frame_len = frame.len() as i64 - 4;
    for (position, range) in positions.into_iter().zip(ranges) {
        let field_start = position.checked_sub(old_len_field)?;
        let expected: &[u8] = if flexible { &[17] } else { &[0, 0, 0, 16] };
        if &frame[field_start..position] != expected || field_start < cursor {
            return None;
        }
        let mut head = BytesMut::with_capacity(position - cursor + 5);
        head.extend_from_slice(&frame[cursor..field_start]);
        let before = head.len();
        if flexible {
            put_uvarint(&mut head, range.bytes as u64 + 1);
        } else {
            head.put_i32(i32::try_from(range.bytes).ok()?);
        }
        frame_len += (head.len() - before) as i64 - old_len_field as i64 + range.bytes as i64 - 16;
        parts.push(Part::Bytes(head.freeze()));
        parts.push(Part::File(range));
        cursor = position + 16;
    }
    parts.push(Part::Bytes(frame.slice(cursor..)));
    // the frame length prefix sits in the first part
    if let Some(Part::Bytes(first)) = parts.first_mut() {
        let mut fixed = BytesMut::from(&first[..]);
        fixed[0..4].copy_from_slice(&i32::try_from(frame_len).ok()?.to_be_bytes());
        *first = fixed.freeze();
    }
    Some(parts)
}

fn put_uvarint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

fn find_all(haystack: &[u8], needle: &[u8; 16]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 16 <= haystack.len() {
        if haystack[i] == needle[0] && &haystack[i..i + 16] == needle {
            out.push(i);
            i += 16;
        } else {
            i += 1;
        }
    }
    out
}

/// Writes the parts in order: bytes with write_all, file ranges with sendfile.
pub async fn write_parts(writer: &mut OwnedWriteHalf, parts: Vec<Part>) -> io::Result<()> {
    for part in parts {
        match part {
            Part::Bytes(b) => writer.write_all(&b).await?,
            Part::File(range) => send_file(writer, &range).await?,
        }
    }
    Ok(())
}

async fn send_file(writer: &mut OwnedWriteHalf, range: &SegmentSlice) -> io::Result<()> {
    let Some(in_fd) = range.file.as_fd() else {
        let bytes = range.read()?;
        return writer.write_all(&bytes).await;
    };
    let stream = writer.as_ref();
    let mut offset = range.position as i64;
    let end = offset + range.bytes as i64;
    while offset < end {
        stream.writable().await?;
        let count = (end - offset) as usize;
        let sent = stream.try_io(Interest::WRITABLE, || {
            nix::sys::sendfile::sendfile(stream, in_fd, Some(&mut offset), count)
                .map_err(io::Error::from)
        });
        match sent {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "segment file shorter than the range being sent",
                ))
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::{ApiKey, FetchResponse, TopicName};
    use kafka_protocol::protocol::StrBytes;
    use strata_storage::{Fs, SimFs};

    /// Splicing then concatenating gives exactly the frame the copying path would encode.
    #[test]
    fn spliced_frames_decode_to_the_stored_bytes() {
        let fs = SimFs::new();
        let file = fs.open(std::path::Path::new("/seg.log"), true).unwrap();
        let stored: Vec<u8> = (0..300u32).map(|i| (i % 251) as u8).collect();
        file.write_all_at(&stored, 0).unwrap();
        let ranges = vec![
            SegmentSlice {
                file: file.clone(),
                position: 10,
                bytes: 200,
            },
            SegmentSlice {
                file: file.clone(),
                position: 0,
                bytes: 5,
            },
        ];
        for version in [4i16, 11, 12] {
            let marker = new_marker();
            let partition = |i: i32| {
                PartitionData::default()
                    .with_partition_index(i)
                    .with_high_watermark(9)
                    .with_records(Some(Bytes::copy_from_slice(&marker)))
            };
            let empty = PartitionData::default()
                .with_partition_index(7)
                .with_records(Some(Bytes::new()));
            let topic = FetchableTopicResponse::default()
                .with_topic(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(vec![partition(0), empty, partition(1)]);
            let resp = FetchResponse::default().with_responses(vec![topic]);
            let frame = strata_protocol::encode_response(5, ApiKey::Fetch, version, &resp).unwrap();
            let flexible = ApiKey::Fetch.request_header_version(version) >= 2;
            let parts = splice(frame, &marker, flexible, ranges.clone()).expect("markers found");
            let mut whole = Vec::new();
            for part in parts {
                match part {
                    Part::Bytes(b) => whole.extend_from_slice(&b),
                    Part::File(r) => whole.extend_from_slice(&r.read().unwrap()),
                }
            }
            let declared = i32::from_be_bytes(whole[0..4].try_into().unwrap()) as usize;
            assert_eq!(declared, whole.len() - 4, "v{version}: frame length fixed");
            let (cid, decoded) = strata_protocol::decode_response_frame::<FetchResponse>(
                Bytes::from(whole).slice(4..),
                ApiKey::Fetch,
                version,
            )
            .unwrap();
            assert_eq!(cid, 5);
            let ps = &decoded.responses[0].partitions;
            assert_eq!(
                ps[0].records.as_deref(),
                Some(&stored[10..210]),
                "v{version}"
            );
            assert_eq!(ps[1].records.as_deref(), Some(&[][..]));
            assert_eq!(ps[2].records.as_deref(), Some(&stored[0..5]));
            assert_eq!(ps[2].high_watermark, 9);
        }
    }

    #[test]
    fn missing_markers_fall_back() {
        let fs = SimFs::new();
        let file = fs.open(std::path::Path::new("/seg.log"), true).unwrap();
        let range = SegmentSlice {
            file,
            position: 0,
            bytes: 1,
        };
        assert!(splice(
            Bytes::from_static(&[0, 0, 0, 4, 1, 2, 3, 4]),
            &[3; 16],
            false,
            vec![range]
        )
        .is_none());
    }

    #[test]
    fn uvarint_matches_kafka_encoding() {
        let mut b = BytesMut::new();
        put_uvarint(&mut b, 17);
        put_uvarint(&mut b, 300);
        assert_eq!(&b[..], &[17, 0xac, 0x02]);
    }

    #[test]
    fn find_all_finds_non_overlapping_markers() {
        let m = [9u8; 16];
        let mut hay = vec![1, 2, 3];
        hay.extend_from_slice(&m);
        hay.push(4);
        hay.extend_from_slice(&m);
        assert_eq!(find_all(&hay, &m), vec![3, 20]);
        assert!(find_all(&hay[..10], &m).is_empty());
    }
}
