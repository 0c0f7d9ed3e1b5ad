//! A copy's aborted transactions, in Kafka's `.txnindex` format: one 34-byte entry per
//! transaction, `int16 version (0), int64 producer id, int64 first offset, int64 last
//! offset (the abort marker's), int64 last stable offset` (the last is written as the last
//! offset; nothing here reads it). A read_committed fetch served from a copy gets the
//! entries overlapping what it read, so the consumer drops those records as it would from
//! local disk.

use bytes::Bytes;

const ENTRY: usize = 34;

/// An aborted transaction: its data lies in `[first_offset, last_offset)`, its abort
/// marker at `last_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedRange {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
}

/// The `.txnindex` bytes of `aborted`.
pub fn encode(aborted: &[AbortedRange]) -> Bytes {
    let mut b = Vec::with_capacity(aborted.len() * ENTRY);
    for a in aborted {
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&a.producer_id.to_be_bytes());
        b.extend_from_slice(&a.first_offset.to_be_bytes());
        b.extend_from_slice(&a.last_offset.to_be_bytes());
        b.extend_from_slice(&a.last_offset.to_be_bytes());
    }
    Bytes::from(b)
}

/// The entries of a `.txnindex`; a size that is not a whole number of entries or a
/// version other than 0 is an error.
pub fn decode(bytes: &[u8]) -> Result<Vec<AbortedRange>, String> {
    if !bytes.len().is_multiple_of(ENTRY) {
        return Err(format!(
            "{} bytes: not whole {ENTRY}-byte entries",
            bytes.len()
        ));
    }
    bytes
        .chunks_exact(ENTRY)
        .map(|e| {
            let int = |at: usize| i64::from_be_bytes(e[at..at + 8].try_into().expect("8 bytes"));
            let version = i16::from_be_bytes([e[0], e[1]]);
            if version != 0 {
                return Err(format!("entry version {version}"));
            }
            Ok(AbortedRange {
                producer_id: int(2),
                first_offset: int(10),
                last_offset: int(18),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_read_back_and_bad_ones_are_refused() {
        let aborted = vec![
            AbortedRange {
                producer_id: 7,
                first_offset: 10,
                last_offset: 20,
            },
            AbortedRange {
                producer_id: -1,
                first_offset: i64::MAX - 1,
                last_offset: i64::MAX,
            },
        ];
        let bytes = encode(&aborted);
        assert_eq!(bytes.len(), 68);
        assert_eq!(decode(&bytes).unwrap(), aborted);
        assert!(decode(&bytes[..33]).is_err());
        let mut bad = bytes.to_vec();
        bad[1] = 1;
        assert!(decode(&bad).is_err());
        assert_eq!(decode(&[]).unwrap(), vec![]);
    }
}
