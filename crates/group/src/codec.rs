//! The `__consumer_offsets` record format, as Kafka writes it (non-flexible schemas, big
//! endian): every record's key starts with an int16 version saying what it is.
//!
//! | key version | key fields                      | value                                   |
//! |-------------|---------------------------------|-----------------------------------------|
//! | 0, 1        | group, topic, partition (int32) | OffsetCommitValue v3, or null (deleted) |
//! | 2           | group                           | GroupMetadataValue v3, or null (deleted)|
//! | 100         | group                           | a KIP-848 consumer group's whole state (Strata's own layout, see `consumer.rs`), or null |
//!
//! Key version 100 is Strata's: Kafka's own KIP-848 records (versions 3-16) split a group into
//! many keyed records; one record per group is simpler and small enough for the group sizes
//! consumers have (it is rewritten only when the group's state changes, not per heartbeat).
//! OffsetCommitValue v3: offset int64, leader_epoch int32, metadata string, commit_timestamp int64.
//! GroupMetadataValue v3: protocol_type string, generation int32, protocol nullable string,
//! leader nullable string, current_state_timestamp int64, members [member_id, group_instance_id
//! (nullable), client_id, client_host, rebalance_timeout int32, session_timeout int32,
//! subscription bytes, assignment bytes].
//!
//! A null value is a tombstone: latest record per key wins, so replaying the topic from the
//! start rebuilds the state. Decoding is bounded by the record's bytes.

use bytes::{BufMut, Bytes, BytesMut};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKey {
    Offset {
        group: String,
        topic: String,
        partition: i32,
    },
    Group {
        group: String,
    },
    ConsumerGroup {
        group: String,
    },
}

impl RecordKey {
    pub fn group(&self) -> &str {
        match self {
            RecordKey::Offset { group, .. }
            | RecordKey::Group { group }
            | RecordKey::ConsumerGroup { group } => group,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub current_state_timestamp: i64,
    pub members: Vec<StoredMember>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("undecodable __consumer_offsets record: {0}")]
pub struct CodecError(pub String);

pub(crate) fn put_str(b: &mut BytesMut, s: &str) {
    let len = s.len().min(i16::MAX as usize);
    b.put_i16(len as i16);
    b.put_slice(&s.as_bytes()[..len]);
}

pub(crate) fn put_nullable_str(b: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(b, s),
        None => b.put_i16(-1),
    }
}

fn put_bytes(b: &mut BytesMut, v: &[u8]) {
    b.put_i32(v.len() as i32);
    b.put_slice(v);
}

pub fn encode_key(key: &RecordKey) -> Bytes {
    let mut b = BytesMut::new();
    match key {
        RecordKey::Offset {
            group,
            topic,
            partition,
        } => {
            b.put_i16(1);
            put_str(&mut b, group);
            put_str(&mut b, topic);
            b.put_i32(*partition);
        }
        RecordKey::Group { group } => {
            b.put_i16(2);
            put_str(&mut b, group);
        }
        RecordKey::ConsumerGroup { group } => {
            b.put_i16(100);
            put_str(&mut b, group);
        }
    }
    b.freeze()
}

pub fn encode_offset_value(v: &OffsetValue) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(3);
    b.put_i64(v.offset);
    b.put_i32(v.leader_epoch);
    put_str(&mut b, &v.metadata);
    b.put_i64(v.commit_timestamp);
    b.freeze()
}

pub fn encode_group_value(v: &GroupValue) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(3);
    put_str(&mut b, &v.protocol_type);
    b.put_i32(v.generation);
    put_nullable_str(&mut b, v.protocol.as_deref());
    put_nullable_str(&mut b, v.leader.as_deref());
    b.put_i64(v.current_state_timestamp);
    b.put_i32(v.members.len() as i32);
    for m in &v.members {
        put_str(&mut b, &m.member_id);
        put_nullable_str(&mut b, m.group_instance_id.as_deref());
        put_str(&mut b, &m.client_id);
        put_str(&mut b, &m.client_host);
        b.put_i32(m.rebalance_timeout_ms);
        b.put_i32(m.session_timeout_ms);
        put_bytes(&mut b, &m.subscription);
        put_bytes(&mut b, &m.assignment);
    }
    b.freeze()
}

/// A bounded reader over one record's bytes.
pub(crate) struct Reader<'a> {
    pub(crate) buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if n > self.buf.len() {
            return Err(CodecError(format!(
                "needs {n} bytes, {} left",
                self.buf.len()
            )));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    pub(crate) fn i16(&mut self) -> Result<i16, CodecError> {
        Ok(i16::from_be_bytes(self.take(2)?.try_into().unwrap()))
    }
    pub(crate) fn i32(&mut self) -> Result<i32, CodecError> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().unwrap()))
    }
    pub(crate) fn i64(&mut self) -> Result<i64, CodecError> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into().unwrap()))
    }
    pub(crate) fn nullable_str(&mut self) -> Result<Option<String>, CodecError> {
        let len = self.i16()?;
        if len < 0 {
            return Ok(None);
        }
        let raw = self.take(len as usize)?;
        String::from_utf8(raw.to_vec())
            .map(Some)
            .map_err(|_| CodecError("string is not UTF-8".into()))
    }
    pub(crate) fn str(&mut self) -> Result<String, CodecError> {
        self.nullable_str()?
            .ok_or_else(|| CodecError("null where a string is required".into()))
    }
    pub(crate) fn bytes(&mut self) -> Result<Bytes, CodecError> {
        let len = self.i32()?;
        if len < 0 {
            return Ok(Bytes::new());
        }
        Ok(Bytes::copy_from_slice(self.take(len as usize)?))
    }
}

pub fn decode_key(bytes: &[u8]) -> Result<RecordKey, CodecError> {
    let mut r = Reader { buf: bytes };
    match r.i16()? {
        0 | 1 => Ok(RecordKey::Offset {
            group: r.str()?,
            topic: r.str()?,
            partition: r.i32()?,
        }),
        2 => Ok(RecordKey::Group { group: r.str()? }),
        100 => Ok(RecordKey::ConsumerGroup { group: r.str()? }),
        v => Err(CodecError(format!("unknown key version {v}"))),
    }
}

pub fn decode_offset_value(bytes: &[u8]) -> Result<OffsetValue, CodecError> {
    let mut r = Reader { buf: bytes };
    let version = r.i16()?;
    match version {
        3 => Ok(OffsetValue {
            offset: r.i64()?,
            leader_epoch: r.i32()?,
            metadata: r.str()?,
            commit_timestamp: r.i64()?,
        }),
        0 | 1 => {
            // v0: offset, metadata, timestamp; v1 adds an expire timestamp.
            let offset = r.i64()?;
            let metadata = r.str()?;
            let commit_timestamp = r.i64()?;
            Ok(OffsetValue {
                offset,
                leader_epoch: -1,
                metadata,
                commit_timestamp,
            })
        }
        v => Err(CodecError(format!("unknown offset value version {v}"))),
    }
}

pub fn decode_group_value(bytes: &[u8]) -> Result<GroupValue, CodecError> {
    let mut r = Reader { buf: bytes };
    let version = r.i16()?;
    if version != 3 {
        return Err(CodecError(format!(
            "unsupported group value version {version}"
        )));
    }
    let protocol_type = r.str()?;
    let generation = r.i32()?;
    let protocol = r.nullable_str()?;
    let leader = r.nullable_str()?;
    let current_state_timestamp = r.i64()?;
    let count = r.i32()?;
    // Every member takes at least 20 bytes: a count larger than that is corrupt.
    if count < 0 || count as usize > r.buf.len() / 20 {
        return Err(CodecError(format!("member count {count} is impossible")));
    }
    let mut members = Vec::with_capacity(count as usize);
    for _ in 0..count {
        members.push(StoredMember {
            member_id: r.str()?,
            group_instance_id: r.nullable_str()?,
            client_id: r.str()?,
            client_host: r.str()?,
            rebalance_timeout_ms: r.i32()?,
            session_timeout_ms: r.i32()?,
            subscription: r.bytes()?,
            assignment: r.bytes()?,
        });
    }
    Ok(GroupValue {
        protocol_type,
        generation,
        protocol,
        leader,
        current_state_timestamp,
        members,
    })
}

/// Kafka's partition of `__consumer_offsets` for a group: `abs(groupId.hashCode) % n`, with
/// Java's String.hashCode over UTF-16 code units.
pub fn partition_for(group: &str, partitions: i32) -> i32 {
    let mut h: i32 = 0;
    for unit in group.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(unit as i32);
    }
    // Kafka's Utils.abs maps i32::MIN to 0.
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % partitions.max(1)
}

/// The topic names a classic consumer's subscription metadata (ConsumerProtocolSubscription,
/// any version) lists; `None` when the bytes are not a consumer subscription.
pub fn subscription_topics(metadata: &[u8]) -> Option<Vec<String>> {
    let mut r = Reader { buf: metadata };
    let _version = r.i16().ok()?;
    let count = r.i32().ok()?;
    if count < 0 || count as usize > r.buf.len() / 2 {
        return None;
    }
    let mut topics = Vec::with_capacity(count as usize);
    for _ in 0..count {
        topics.push(r.str().ok()?);
    }
    Some(topics)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let k = RecordKey::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 7,
        };
        assert_eq!(decode_key(&encode_key(&k)).unwrap(), k);
        let v = OffsetValue {
            offset: 42,
            leader_epoch: 3,
            metadata: "meta ü".into(),
            commit_timestamp: 1000,
        };
        assert_eq!(decode_offset_value(&encode_offset_value(&v)).unwrap(), v);
        let g = GroupValue {
            protocol_type: "consumer".into(),
            generation: 5,
            protocol: Some("range".into()),
            leader: None,
            current_state_timestamp: 9,
            members: vec![StoredMember {
                member_id: "m".into(),
                group_instance_id: Some("i".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 1,
                session_timeout_ms: 2,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        };
        assert_eq!(decode_group_value(&encode_group_value(&g)).unwrap(), g);
    }

    #[test]
    fn partition_matches_kafka() {
        // Java's String.hashCode: s[0]*31^(n-1) + ... + s[n-1]; Kafka takes abs() % n.
        assert_eq!(partition_for("", 50), 0);
        assert_eq!(partition_for("a", 50), 97 % 50);
        assert_eq!(partition_for("ab", 50), (97 * 31 + 98) % 50);
    }

    #[test]
    fn truncated_records_are_errors() {
        let g = encode_group_value(&GroupValue {
            protocol_type: "consumer".into(),
            generation: 1,
            protocol: None,
            leader: None,
            current_state_timestamp: 0,
            members: vec![],
        });
        for n in 0..g.len() {
            assert!(decode_group_value(&g[..n]).is_err());
        }
        // A huge member count is refused before anything is allocated for it.
        let mut bad = g[..g.len() - 4].to_vec();
        bad.extend_from_slice(&i32::MAX.to_be_bytes());
        assert!(decode_group_value(&bad).is_err());
    }
}
