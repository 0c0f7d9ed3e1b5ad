//! The leader epoch cache of one partition (Kafka's `LeaderEpochFileCache`): for each leader
//! epoch, the first offset written in it. It answers OffsetsForLeaderEpoch (KIP-101/279: a
//! follower or a consumer asks where an epoch ended, to find where its log diverged from the
//! leader's), and follows the log: truncating the log's end removes the epochs that started
//! past it, moving its start trims the ones before it.
//!
//! On disk: `<partition dir>/leader-epoch-checkpoint` in Kafka's format (`0`, a count, then
//! `epoch start_offset` lines), replaced atomically and synced whenever an entry is added
//! (before the first batch of the new epoch is written, so a crash leaves at worst an entry
//! at the log end, which truncation at open removes). A log without the file (every log
//! written before this existed, and every log still in its first epoch 0) has one implicit
//! entry: epoch 0 from the log start — batches carry epoch 0 until a leader change, so that
//! is exact, and the common case writes no file at all.

use std::path::Path;

use crate::error::Result;
use crate::{checkpoint, Fs};

pub const LEADER_EPOCH_FILE: &str = "leader-epoch-checkpoint";
/// A file with more entries than this is not trusted (a partition has few leader changes).
const ENTRIES_MAX: usize = 100_000;

/// Kafka's "undefined" epoch and offset, answered for an epoch past every known one.
pub const UNDEFINED_EPOCH: i32 = -1;
pub const UNDEFINED_OFFSET: i64 = -1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderEpochCache {
    /// (epoch, start offset), both strictly increasing.
    entries: Vec<(i32, i64)>,
    /// Whether `entries` came from (or must go to) the file; false while only the implicit
    /// epoch-0 entry exists.
    explicit: bool,
}

impl LeaderEpochCache {
    /// The cache of the log in `dir` whose first offset is `log_start_offset`; None if the
    /// file exists but cannot be trusted (the caller rebuilds it from the log's batches).
    pub fn load(fs: &dyn Fs, dir: &Path, log_start_offset: i64) -> Option<Self> {
        let path = dir.join(LEADER_EPOCH_FILE);
        if !fs.exists(&path) {
            return Some(Self::implicit(log_start_offset));
        }
        let parsed = (|| {
            let f = fs.open(&path, false).ok()?;
            let len = f.len().ok()?;
            if len > (ENTRIES_MAX as u64) * 42 {
                return None;
            }
            let mut buf = vec![0u8; len as usize];
            f.read_exact_at(&mut buf, 0).ok()?;
            let text = String::from_utf8(buf).ok()?;
            let mut lines = text.lines();
            if lines.next()? != "0" {
                return None;
            }
            let count: usize = lines.next()?.parse().ok()?;
            if count > ENTRIES_MAX {
                return None;
            }
            let mut entries = Vec::with_capacity(count);
            for line in lines.take(count) {
                let (e, o) = line.split_once(' ')?;
                let entry: (i32, i64) = (e.parse().ok()?, o.parse().ok()?);
                if entries
                    .last()
                    .is_some_and(|&(le, lo)| entry.0 <= le || entry.1 < lo)
                {
                    return None;
                }
                entries.push(entry);
            }
            (entries.len() == count).then_some(entries)
        })();
        match parsed {
            Some(entries) if !entries.is_empty() => Some(LeaderEpochCache {
                entries,
                explicit: true,
            }),
            // Every epoch was cut away (a replica that led without appending, then followed):
            // what a log with no epoch of its own has.
            Some(_) => Some(Self::implicit(log_start_offset)),
            None => None,
        }
    }

    /// Only the implicit entry: epoch 0 from the log start.
    pub fn implicit(log_start_offset: i64) -> Self {
        LeaderEpochCache {
            entries: vec![(0, log_start_offset)],
            explicit: false,
        }
    }

    /// Rebuilt from the epochs of the log's batches, in offset order (`(epoch, base offset)`
    /// of each), when the file was unusable.
    pub fn rebuild(batches: impl IntoIterator<Item = (i32, i64)>, log_start_offset: i64) -> Self {
        let mut cache = Self::implicit(log_start_offset);
        for (epoch, base) in batches {
            if epoch >= 0 {
                cache.assign(epoch, base);
            }
        }
        cache.explicit = true;
        cache
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|&(e, _)| e)
    }

    pub fn entries(&self) -> &[(i32, i64)] {
        &self.entries
    }

    /// Epoch `epoch` starts at `start_offset` (the log end, before its first batch). True if
    /// that is a new entry, which the caller then persists with [`LeaderEpochCache::write`].
    /// An epoch not above the latest changes nothing.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if self.latest_epoch().is_some_and(|l| epoch <= l) {
            return false;
        }
        self.entries.retain(|&(_, o)| o < start_offset);
        self.entries.push((epoch, start_offset));
        self.explicit = true;
        true
    }

    /// The log was truncated to end at `end_offset`: epochs that started at or past it go.
    /// True if anything changed.
    pub fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let before = self.entries.len();
        // the implicit entry (epoch 0 from the log start) always stays
        let keep_first = !self.explicit;
        let mut first = true;
        self.entries.retain(|&(_, o)| {
            let keep = o < end_offset || (first && keep_first);
            first = false;
            keep
        });
        self.entries.len() != before
    }

    /// The log now starts at `start_offset`: the entry covering it starts there, earlier
    /// ones go. True if anything changed.
    pub fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        let covering = self.entries.partition_point(|&(_, o)| o <= start_offset);
        if covering == 0 {
            return false;
        }
        let changed = covering > 1 || self.entries[covering - 1].1 != start_offset;
        self.entries.drain(..covering - 1);
        self.entries[0].1 = start_offset;
        changed
    }

    /// Kafka's OffsetsForLeaderEpoch answer for `requested`: the largest known epoch not
    /// above it and the offset where that epoch ended (the next epoch's start, or the log
    /// end for the latest); an epoch older than every known one ends where the first known
    /// starts; one newer than every known one is undefined.
    pub fn end_offset_for(&self, requested: i32, log_end_offset: i64) -> (i32, i64) {
        end_offset_for(&self.entries, requested, log_end_offset)
    }

    /// Persists the entries (atomically, synced), if there is anything beyond the implicit
    /// first epoch to keep.
    pub fn write(&self, fs: &dyn Fs, dir: &Path) -> Result<()> {
        if !self.explicit {
            return Ok(());
        }
        let mut body = format!("0\n{}\n", self.entries.len());
        for (e, o) in &self.entries {
            body.push_str(&format!("{e} {o}\n"));
        }
        checkpoint::write_atomically(fs, &dir.join(LEADER_EPOCH_FILE), &body)
    }
}

/// [`LeaderEpochCache::end_offset_for`] over any (epoch, start offset) entries in epoch
/// order (tiered storage joins the copies' epochs to the local ones).
pub fn end_offset_for(entries: &[(i32, i64)], requested: i32, log_end_offset: i64) -> (i32, i64) {
    if requested == UNDEFINED_EPOCH {
        return (UNDEFINED_EPOCH, UNDEFINED_OFFSET);
    }
    if entries.last().map(|&(e, _)| e) == Some(requested) {
        return (requested, log_end_offset);
    }
    let higher = entries.iter().find(|&&(e, _)| e > requested);
    let floor = entries.iter().rev().find(|&&(e, _)| e <= requested);
    match (floor, higher) {
        (_, None) => (UNDEFINED_EPOCH, UNDEFINED_OFFSET),
        (None, Some(&(_, start))) => (requested, start),
        (Some(&(e, _)), Some(&(_, start))) => (e, start),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SimFs;

    #[test]
    fn answers_as_kafka_does() {
        let fs = SimFs::new();
        let dir = Path::new("/p");
        fs.create_dir_all(dir).unwrap();
        let mut c = LeaderEpochCache::load(&fs, dir, 0).unwrap();
        assert_eq!(
            c.entries(),
            &[(0, 0)],
            "implicit epoch 0 from the log start"
        );
        assert_eq!(c.end_offset_for(0, 50), (0, 50));
        assert!(c.assign(2, 50));
        assert!(!c.assign(1, 60), "an older epoch changes nothing");
        assert!(c.assign(5, 80));
        c.write(&fs, dir).unwrap();
        let c = LeaderEpochCache::load(&fs, dir, 0).unwrap();
        assert_eq!(c.entries(), &[(0, 0), (2, 50), (5, 80)]);
        assert_eq!(c.end_offset_for(5, 100), (5, 100), "latest: the log end");
        assert_eq!(c.end_offset_for(2, 100), (2, 80));
        assert_eq!(
            c.end_offset_for(3, 100),
            (2, 80),
            "unknown epoch: the floor's end"
        );
        assert_eq!(
            c.end_offset_for(9, 100),
            (UNDEFINED_EPOCH, UNDEFINED_OFFSET)
        );
        assert_eq!(
            c.end_offset_for(-1, 100),
            (UNDEFINED_EPOCH, UNDEFINED_OFFSET)
        );
        let mut later = LeaderEpochCache::load(&fs, dir, 0).unwrap();
        later.truncate_from_start(60);
        assert_eq!(later.entries(), &[(2, 60), (5, 80)]);
        assert_eq!(
            later.end_offset_for(1, 100),
            (1, 60),
            "older than all: the first start"
        );
        let mut cut = LeaderEpochCache::load(&fs, dir, 0).unwrap();
        assert!(cut.truncate_from_end(80));
        assert_eq!(cut.entries(), &[(0, 0), (2, 50)]);
        assert!(!cut.truncate_from_end(80));
    }

    #[test]
    fn a_torn_or_unordered_file_is_not_trusted_and_a_rebuild_is_exact() {
        let fs = SimFs::new();
        let dir = Path::new("/p");
        fs.create_dir_all(dir).unwrap();
        for body in ["0\n2\n1 5\n", "0\n2\n3 5\n1 9\n", "1\n1\n1 5\n", "garbage"] {
            let f = fs.open(&dir.join(LEADER_EPOCH_FILE), true).unwrap();
            f.set_len(0).unwrap();
            f.write_all_at(body.as_bytes(), 0).unwrap();
            assert!(LeaderEpochCache::load(&fs, dir, 7).is_none(), "{body:?}");
        }
        let rebuilt = LeaderEpochCache::rebuild([(0, 7), (0, 9), (3, 12), (3, 20), (4, 30)], 7);
        assert_eq!(rebuilt.entries(), &[(0, 7), (3, 12), (4, 30)]);
    }

    /// A replica that led epoch 2 without appending, then followed and cut the epoch away,
    /// writes a checkpoint with no entries: read back, that is the implicit epoch 0 (not an
    /// unusable file to rebuild, as every such restart used to log).
    #[test]
    fn a_checkpoint_with_every_epoch_cut_away_reads_as_the_implicit_one() {
        let fs = SimFs::new();
        let dir = Path::new("/p");
        fs.create_dir_all(dir).unwrap();
        let mut c = LeaderEpochCache::load(&fs, dir, 0).unwrap();
        assert!(c.assign(2, 0));
        c.write(&fs, dir).unwrap();
        assert!(c.truncate_from_end(0));
        assert!(c.entries().is_empty());
        c.write(&fs, dir).unwrap();
        let loaded = LeaderEpochCache::load(&fs, dir, 0).expect("usable");
        assert_eq!(loaded.entries(), &[(0, 0)]);
    }
}
