//! Sparse indexes of one segment, kept in memory; written whole when the segment is sealed or
//! the broker shuts down cleanly, and for the active segment appended to at each recovery
//! point checkpoint (so a restart can find the checkpointed offset without a scan).
//!
//! On-disk formats (big-endian, no header), as Kafka's:
//! - `.index`: 8-byte entries `(relative_offset u32, position u32)`: the batch starting at
//!   `base_offset + relative_offset` begins at byte `position` of the `.log` file.
//! - `.timeindex`: 12-byte entries `(timestamp i64, relative_offset u32)`: every batch before
//!   `base_offset + relative_offset` has timestamps below `timestamp`, which is the largest
//!   timestamp seen up to and including that batch.
//!
//! Recovery: an index file is trusted only if its length is a whole number of entries, its
//! entries increase strictly, and every position lies inside the `.log` file; otherwise the
//! segment is scanned and the index rebuilt. A recovery starting mid-segment uses the longest
//! valid prefix ([`OffsetIndex::decode_prefix`]) and checks the batch its entry points at.
//! Indexes are derived data: losing one costs time, never records.

/// Offset index: relative offset → file position, one entry per `index.interval.bytes`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OffsetIndex {
    entries: Vec<(u32, u32)>,
}

impl OffsetIndex {
    pub const ENTRY_BYTES: usize = 8;

    pub fn append(&mut self, relative_offset: u32, position: u32) {
        if let Some(&(last_offset, last_position)) = self.entries.last() {
            assert!(
                relative_offset > last_offset && position > last_position,
                "offset index must increase"
            );
        }
        self.entries.push((relative_offset, position));
    }

    /// The entry with the largest relative offset not above `relative_offset`, or `(0, 0)`.
    pub fn lookup(&self, relative_offset: u32) -> (u32, u32) {
        let i = self.entries.partition_point(|&(o, _)| o <= relative_offset);
        if i == 0 {
            (0, 0)
        } else {
            self.entries[i - 1]
        }
    }

    /// The last entry, if any (where a tail scan of a trusted segment may start).
    pub fn last(&self) -> Option<(u32, u32)> {
        self.entries.last().copied()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn encode(&self) -> Vec<u8> {
        self.encode_from(0)
    }

    /// Decodes and checks an index file against the size of its `.log` file.
    pub fn decode(bytes: &[u8], log_bytes: u64) -> Option<Self> {
        let index = Self::decode_prefix(bytes, log_bytes);
        (index.len() * Self::ENTRY_BYTES == bytes.len()).then_some(index)
    }

    /// The longest prefix of whole entries that increase strictly and point inside the
    /// `.log` file: what a recovery starting mid-segment may use of an index written
    /// without a sync (a crash can leave it short, or with entries past a lost log tail).
    pub fn decode_prefix(bytes: &[u8], log_bytes: u64) -> Self {
        let mut index = Self::default();
        for chunk in bytes.chunks_exact(Self::ENTRY_BYTES) {
            let o = u32::from_be_bytes(chunk[0..4].try_into().expect("4 bytes"));
            let p = u32::from_be_bytes(chunk[4..8].try_into().expect("4 bytes"));
            let increasing = index
                .entries
                .last()
                .is_none_or(|&(lo, lp)| o > lo && p > lp);
            if u64::from(p) >= log_bytes || !increasing {
                break;
            }
            index.entries.push((o, p));
        }
        index
    }

    /// Drops every entry after `relative_offset`.
    pub fn keep_through(&mut self, relative_offset: u32) {
        let keep = self.entries.partition_point(|&(o, _)| o <= relative_offset);
        self.entries.truncate(keep);
    }

    /// The on-disk bytes of the entries from the `from`-th on.
    pub fn encode_from(&self, from: usize) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(self.entries.len().saturating_sub(from) * Self::ENTRY_BYTES);
        for &(o, p) in self.entries.iter().skip(from) {
            out.extend_from_slice(&o.to_be_bytes());
            out.extend_from_slice(&p.to_be_bytes());
        }
        out
    }
}

/// Time index: largest timestamp so far → relative offset of the batch that reached it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimeIndex {
    entries: Vec<(i64, u32)>,
}

impl TimeIndex {
    pub const ENTRY_BYTES: usize = 12;

    /// Records that the batch at `relative_offset` raised the segment's max timestamp to
    /// `timestamp`; ignored unless both increase.
    pub fn maybe_append(&mut self, timestamp: i64, relative_offset: u32) {
        match self.entries.last() {
            Some(&(t, o)) if timestamp <= t || relative_offset <= o => {}
            _ => self.entries.push((timestamp, relative_offset)),
        }
    }

    /// Entries held (each `ENTRY_BYTES` on disk).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The last entry: the largest timestamp the index knows, and where it was reached.
    pub fn last(&self) -> Option<(i64, u32)> {
        self.entries.last().copied()
    }

    /// Relative offset from which a scan for the first record with timestamp ≥ `target` may
    /// start: the batch after every entry whose timestamp is below `target`.
    pub fn scan_start(&self, target: i64) -> u32 {
        let i = self.entries.partition_point(|&(t, _)| t < target);
        if i == 0 {
            0
        } else {
            self.entries[i - 1].1
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        self.encode_from(0)
    }

    /// The on-disk bytes of the entries from the `from`-th on.
    pub fn encode_from(&self, from: usize) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(self.entries.len().saturating_sub(from) * Self::ENTRY_BYTES);
        for &(t, o) in self.entries.iter().skip(from) {
            out.extend_from_slice(&t.to_be_bytes());
            out.extend_from_slice(&o.to_be_bytes());
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let index = Self::decode_prefix(bytes);
        (index.len() * Self::ENTRY_BYTES == bytes.len()).then_some(index)
    }

    /// The longest prefix of whole, strictly increasing entries (see
    /// [`OffsetIndex::decode_prefix`]).
    pub fn decode_prefix(bytes: &[u8]) -> Self {
        let mut index = Self::default();
        for chunk in bytes.chunks_exact(Self::ENTRY_BYTES) {
            let t = i64::from_be_bytes(chunk[0..8].try_into().expect("8 bytes"));
            let o = u32::from_be_bytes(chunk[8..12].try_into().expect("4 bytes"));
            if index
                .entries
                .last()
                .is_some_and(|&(lt, lo)| t <= lt || o <= lo)
            {
                break;
            }
            index.entries.push((t, o));
        }
        index
    }

    /// Drops every entry for a batch after `relative_offset`.
    pub fn keep_through(&mut self, relative_offset: u32) {
        let keep = self.entries.partition_point(|&(_, o)| o <= relative_offset);
        self.entries.truncate(keep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_lookup_finds_floor_entry() {
        let mut idx = OffsetIndex::default();
        idx.append(10, 4096);
        idx.append(20, 8192);
        assert_eq!(idx.lookup(0), (0, 0));
        assert_eq!(idx.lookup(9), (0, 0));
        assert_eq!(idx.lookup(10), (10, 4096));
        assert_eq!(idx.lookup(19), (10, 4096));
        assert_eq!(idx.lookup(1000), (20, 8192));
    }

    #[test]
    fn offset_index_round_trips_and_rejects_garbage() {
        let mut idx = OffsetIndex::default();
        idx.append(3, 100);
        idx.append(9, 300);
        let bytes = idx.encode();
        assert_eq!(OffsetIndex::decode(&bytes, 1000), Some(idx.clone()));
        assert_eq!(
            OffsetIndex::decode(&bytes[..7], 1000),
            None,
            "partial entry"
        );
        assert_eq!(
            OffsetIndex::decode(&bytes, 300),
            None,
            "position past the log"
        );
        let mut swapped = bytes[8..].to_vec();
        swapped.extend(&bytes[..8]);
        assert_eq!(OffsetIndex::decode(&swapped, 1000), None, "not increasing");
    }

    #[test]
    fn prefix_decoding_keeps_the_valid_entries_before_a_bad_one() {
        let mut idx = OffsetIndex::default();
        idx.append(3, 100);
        idx.append(9, 300);
        idx.append(12, 900);
        let bytes = idx.encode();
        let short = OffsetIndex::decode_prefix(&bytes, 500);
        assert_eq!(
            short.last(),
            Some((9, 300)),
            "entry past the log end dropped"
        );
        assert_eq!(
            OffsetIndex::decode_prefix(&bytes[..13], 1000).len(),
            1,
            "partial entry dropped"
        );
        let mut garbage = bytes[..8].to_vec();
        garbage.extend([0u8; 16]);
        assert_eq!(
            OffsetIndex::decode_prefix(&garbage, 1000).len(),
            1,
            "zeros stop it"
        );
        let mut kept = idx.clone();
        kept.keep_through(9);
        assert_eq!(kept.last(), Some((9, 300)));
        assert_eq!(idx.encode_from(1), bytes[8..].to_vec());

        let mut t = TimeIndex::default();
        t.maybe_append(100, 0);
        t.maybe_append(200, 10);
        t.maybe_append(300, 20);
        let tb = t.encode();
        let mut torn = tb[..24].to_vec();
        torn.extend([0u8; 12]);
        assert_eq!(TimeIndex::decode_prefix(&torn).last(), Some((200, 10)));
        t.keep_through(19);
        assert_eq!(t.last(), Some((200, 10)));
    }

    #[test]
    fn time_index_scan_start() {
        let mut t = TimeIndex::default();
        t.maybe_append(100, 0);
        t.maybe_append(50, 5); // not an increase: ignored
        t.maybe_append(200, 10);
        t.maybe_append(300, 20);
        assert_eq!(t.scan_start(50), 0);
        assert_eq!(t.scan_start(150), 0);
        assert_eq!(t.scan_start(201), 10);
        assert_eq!(t.scan_start(10_000), 20);
        assert_eq!(TimeIndex::decode(&t.encode()), Some(t));
    }
}
