//! The `__transaction_state` record format. Key: int16 version 0, string transactional id
//! (Kafka's TransactionLogKey). Value (Strata's layout, version 100 so it cannot be mistaken
//! for Kafka's TransactionLogValue v0/v1): int64 producer id, int16 epoch, int16 previous epoch,
//! int8 bump-on-complete, int32 timeout ms, int8 state, int32 partition count, per partition
//! string topic + int32 partition, int64 start ms, int64 last update ms. A null value
//! (tombstone) removes the id. Decoding is bounded by the record's bytes.

use crate::{TxnMetadata, TxnState};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("undecodable __transaction_state record: {0}")]
pub struct CodecError(pub String);

fn put_str(b: &mut Vec<u8>, s: &str) {
    let len = s.len().min(i16::MAX as usize);
    b.extend_from_slice(&(len as i16).to_be_bytes());
    b.extend_from_slice(&s.as_bytes()[..len]);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if n > self.0.len() {
            return Err(CodecError(format!(
                "needs {n} bytes, {} left",
                self.0.len()
            )));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn i8(&mut self) -> Result<i8, CodecError> {
        Ok(self.take(1)?[0] as i8)
    }
    fn i16(&mut self) -> Result<i16, CodecError> {
        Ok(i16::from_be_bytes(self.take(2)?.try_into().expect("2")))
    }
    fn i32(&mut self) -> Result<i32, CodecError> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn i64(&mut self) -> Result<i64, CodecError> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn str(&mut self) -> Result<String, CodecError> {
        let len = self.i16()?;
        if len < 0 {
            return Err(CodecError("null string".into()));
        }
        String::from_utf8(self.take(len as usize)?.to_vec())
            .map_err(|_| CodecError("string is not UTF-8".into()))
    }
}

pub fn encode_key(transactional_id: &str) -> Vec<u8> {
    let mut b = Vec::with_capacity(4 + transactional_id.len());
    b.extend_from_slice(&0i16.to_be_bytes());
    put_str(&mut b, transactional_id);
    b
}

pub fn decode_key(bytes: &[u8]) -> Result<String, CodecError> {
    let mut r = Reader(bytes);
    match r.i16()? {
        0 => r.str(),
        v => Err(CodecError(format!("unknown key version {v}"))),
    }
}

fn state_code(s: TxnState) -> i8 {
    match s {
        TxnState::Empty => 0,
        TxnState::Ongoing => 1,
        TxnState::PrepareCommit => 2,
        TxnState::PrepareAbort => 3,
        TxnState::CompleteCommit => 4,
        TxnState::CompleteAbort => 5,
    }
}

pub fn encode_value(m: &TxnMetadata) -> Vec<u8> {
    let mut b = Vec::with_capacity(48 + m.partitions.len() * 16);
    b.extend_from_slice(&100i16.to_be_bytes());
    b.extend_from_slice(&m.producer_id.to_be_bytes());
    b.extend_from_slice(&m.producer_epoch.to_be_bytes());
    b.extend_from_slice(&m.prev_producer_epoch.to_be_bytes());
    b.push(m.bump_on_complete as u8);
    b.extend_from_slice(&m.timeout_ms.to_be_bytes());
    b.push(state_code(m.state) as u8);
    b.extend_from_slice(&(m.partitions.len() as i32).to_be_bytes());
    for (topic, partition) in &m.partitions {
        put_str(&mut b, topic);
        b.extend_from_slice(&partition.to_be_bytes());
    }
    b.extend_from_slice(&m.start_ms.to_be_bytes());
    b.extend_from_slice(&m.last_update_ms.to_be_bytes());
    b
}

pub fn decode_value(transactional_id: &str, bytes: &[u8]) -> Result<TxnMetadata, CodecError> {
    let mut r = Reader(bytes);
    let version = r.i16()?;
    if version != 100 {
        return Err(CodecError(format!("unknown value version {version}")));
    }
    let producer_id = r.i64()?;
    let producer_epoch = r.i16()?;
    let prev_producer_epoch = r.i16()?;
    let bump_on_complete = r.i8()? != 0;
    let timeout_ms = r.i32()?;
    let state = match r.i8()? {
        0 => TxnState::Empty,
        1 => TxnState::Ongoing,
        2 => TxnState::PrepareCommit,
        3 => TxnState::PrepareAbort,
        4 => TxnState::CompleteCommit,
        5 => TxnState::CompleteAbort,
        s => return Err(CodecError(format!("unknown state {s}"))),
    };
    let count = r.i32()?;
    // Each partition takes at least 6 bytes: a larger count is corrupt.
    if count < 0 || count as usize > r.0.len() / 6 {
        return Err(CodecError(format!("partition count {count} is impossible")));
    }
    let mut partitions = std::collections::BTreeSet::new();
    for _ in 0..count {
        let topic = r.str()?;
        partitions.insert((topic, r.i32()?));
    }
    Ok(TxnMetadata {
        transactional_id: transactional_id.to_string(),
        producer_id,
        producer_epoch,
        prev_producer_epoch,
        bump_on_complete,
        timeout_ms,
        state,
        partitions,
        start_ms: r.i64()?,
        last_update_ms: r.i64()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let m = TxnMetadata {
            transactional_id: "tx-ü".into(),
            producer_id: 1234,
            producer_epoch: 7,
            prev_producer_epoch: 6,
            bump_on_complete: true,
            timeout_ms: 60_000,
            state: TxnState::PrepareCommit,
            partitions: [("a".to_string(), 0), ("b".to_string(), 3)]
                .into_iter()
                .collect(),
            start_ms: 10,
            last_update_ms: 20,
        };
        assert_eq!(
            decode_key(&encode_key(&m.transactional_id)).unwrap(),
            m.transactional_id
        );
        let v = encode_value(&m);
        assert_eq!(decode_value(&m.transactional_id, &v).unwrap(), m);
        for n in 0..v.len() {
            assert!(decode_value("x", &v[..n]).is_err(), "truncated at {n}");
        }
        let mut huge = v[..20].to_vec();
        huge.extend_from_slice(&i32::MAX.to_be_bytes());
        assert!(decode_value("x", &huge).is_err());
    }
}
