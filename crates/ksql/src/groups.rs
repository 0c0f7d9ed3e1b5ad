//! A persistent aggregation's groups, as one task holds them: in its local state store on
//! disk ([`crate::store`]), with a bounded number cached in memory, so that the state may
//! be far larger than memory.
//!
//! Three layers, read in this order:
//! - **changes** not yet in the store (`dirty`: a group's new state, or None when it was
//!   deleted). The query's pass writes here; a flush, which runs only between passes once
//!   the pass's transaction is committed, writes them to the store with the changelog
//!   offset they reach, and they become clean. A pass that fails leaves uncommitted changes
//!   here: the task then restores, which drops them ([`TaskGroups::reset`]).
//! - **clean groups** read from the store lately, in two generations (`hot`, `cold`): a
//!   group read is moved to `hot`; when `hot` holds half the capacity it becomes `cold`
//!   and the old `cold` is dropped. That bounds memory to about `capacity` clean groups,
//!   keeping the recently used ones, with no per-read bookkeeping (a cheap LRU).
//! - **the store**: every group as of its last flush.
//!
//! Without a store (no state directory, or after a store failure) every group stays in
//! `dirty`: the state is in memory only, as the changelog restores it.
//!
//! A store that fails to read or write cannot be worked around in the middle of a pass
//! (its groups would be missing): the failure is recorded, the store dropped, and the task
//! takes it ([`TaskGroups::take_failure`]) to retry the pass from its changelog, in memory.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use strata_sql::aggregate::{GroupMap, GroupState};

use crate::store::{StateStore, StoreError, StoreMeta};

/// How groups are written to the store: the changelog's form.
pub trait StateCodec: Send + Sync {
    fn encode(&self, state: &GroupState) -> String;
    fn decode(&self, bytes: &[u8]) -> Option<GroupState>;
}

/// Clean groups cached per task when nothing else is said.
pub const DEFAULT_CACHE_GROUPS: usize = 100_000;

pub struct TaskGroups {
    store: Option<StateStore>,
    codec: Option<Arc<dyn StateCodec>>,
    dirty: BTreeMap<Vec<u8>, Option<GroupState>>,
    hot: HashMap<Vec<u8>, GroupState>,
    cold: HashMap<Vec<u8>, GroupState>,
    capacity: usize,
    failure: Option<StoreError>,
}

impl Default for TaskGroups {
    fn default() -> Self {
        TaskGroups::in_memory()
    }
}

impl TaskGroups {
    /// Groups held in memory only.
    pub fn in_memory() -> TaskGroups {
        TaskGroups {
            store: None,
            codec: None,
            dirty: BTreeMap::new(),
            hot: HashMap::new(),
            cold: HashMap::new(),
            capacity: DEFAULT_CACHE_GROUPS,
            failure: None,
        }
    }

    /// Groups in `store`, with at most about `capacity` clean ones cached.
    pub fn with_store(
        store: StateStore,
        codec: Arc<dyn StateCodec>,
        capacity: usize,
    ) -> TaskGroups {
        TaskGroups {
            store: Some(store),
            codec: Some(codec),
            capacity: capacity.max(2),
            ..TaskGroups::in_memory()
        }
    }

    pub fn has_store(&self) -> bool {
        self.store.is_some()
    }

    /// How many changes wait for a flush (with a store; without one, every group).
    pub fn dirty_len(&self) -> usize {
        self.dirty.len()
    }

    /// Whether enough changes wait that they should be flushed now rather than at the
    /// next interval (memory is bounded by the cache's capacity).
    pub fn flush_due(&self) -> bool {
        self.store.is_some() && self.dirty.len() >= self.capacity
    }

    /// Groups cached in memory (changes and clean groups).
    pub fn cached_len(&self) -> usize {
        self.dirty.len() + self.hot.len() + self.cold.len()
    }

    /// Drops what is not in the store: changes (which a failed pass may have left
    /// uncommitted) and cached groups. Without a store, that is everything.
    pub fn reset(&mut self) {
        self.dirty.clear();
        self.hot.clear();
        self.cold.clear();
    }

    /// Where the store stands, None without a store or when it covers nothing.
    pub fn store_meta(&mut self) -> Option<StoreMeta> {
        let store = self.store.as_ref()?;
        match store.meta() {
            Ok(m) => m,
            Err(e) => {
                self.fail(e);
                None
            }
        }
    }

    /// Empties the store, to be refilled from the changelog's start.
    pub fn clear(&mut self) {
        self.reset();
        if let Some(store) = &self.store {
            if let Err(e) = store.clear() {
                self.fail(e);
            }
        }
    }

    /// How many groups there are. Exact when no change waits for a flush (after a
    /// restore); otherwise the stored groups plus the changes.
    pub fn count(&mut self) -> u64 {
        let changes = self.dirty.values().filter(|v| v.is_some()).count() as u64;
        match &self.store {
            None => changes,
            Some(store) => match store.group_count() {
                Ok(n) => n + changes,
                Err(e) => {
                    self.fail(e);
                    changes
                }
            },
        }
    }

    /// Writes the changes to the store as covering the changelog below `changelog_offset`
    /// (call only when every change is committed). Without a store, nothing happens.
    pub fn flush(&mut self, changelog_offset: i64, now_ms: i64) {
        let (Some(store), Some(codec)) = (&self.store, &self.codec) else {
            return;
        };
        if self.dirty.is_empty() {
            return;
        }
        let encoded: Vec<(&[u8], Option<String>)> = self
            .dirty
            .iter()
            .map(|(k, v)| (k.as_slice(), v.as_ref().map(|st| codec.encode(st))))
            .collect();
        let written = store.apply(
            encoded
                .iter()
                .map(|(k, v)| (*k, v.as_deref().map(str::as_bytes))),
            changelog_offset,
            now_ms,
        );
        drop(encoded);
        match written {
            Ok(()) => {
                for (k, v) in std::mem::take(&mut self.dirty) {
                    if let Some(st) = v {
                        self.cache(k, st);
                    }
                }
            }
            Err(e) => self.fail(e),
        }
    }

    /// A store failure, if one happened since the last call: the task must start over
    /// (the store is already dropped, so it starts over in memory).
    pub fn take_failure(&mut self) -> Option<StoreError> {
        self.failure.take()
    }

    fn fail(&mut self, e: StoreError) {
        tracing::warn!(error = %e, "SQL state store failed: the task starts over from its changelog, in memory");
        self.store = None;
        self.codec = None;
        self.reset();
        self.failure.get_or_insert(e);
    }

    fn cache(&mut self, key: Vec<u8>, st: GroupState) {
        if self.hot.len() >= self.capacity / 2 {
            self.cold = std::mem::take(&mut self.hot);
        }
        self.hot.insert(key, st);
    }

    fn decode(&self, bytes: &[u8]) -> Option<GroupState> {
        self.codec.as_ref().and_then(|c| c.decode(bytes))
    }

    /// Merges the store's groups from `from` with the changes, in key order, until `f`
    /// answers false.
    fn merged(&mut self, from: &[u8], f: &mut dyn FnMut(&[u8], &GroupState) -> bool) {
        let Some(store) = &self.store else {
            for (k, v) in self.dirty.range(from.to_vec()..) {
                if let Some(st) = v {
                    if !f(k, st) {
                        return;
                    }
                }
            }
            return;
        };
        let mut changes = self.dirty.range(from.to_vec()..).peekable();
        let mut more = true;
        let codec = self.codec.as_ref();
        let scanned = store.scan(from, &mut |k, v| {
            // Changes before this stored key, then the change of this key, if any.
            while let Some((ck, cv)) = changes.next_if(|(ck, _)| ck.as_slice() <= k) {
                let replaces = ck.as_slice() == k;
                if let Some(st) = cv {
                    if !f(ck, st) {
                        more = false;
                        return false;
                    }
                }
                if replaces {
                    return true;
                }
            }
            match codec.and_then(|c| c.decode(v)) {
                Some(st) => {
                    more = f(k, &st);
                    more
                }
                None => true,
            }
        });
        if let Err(e) = scanned {
            self.fail(e);
            return;
        }
        if more {
            for (k, v) in changes {
                if let Some(st) = v {
                    if !f(k, st) {
                        return;
                    }
                }
            }
        }
    }
}

impl GroupMap for TaskGroups {
    fn get(&mut self, key: &[u8]) -> Option<GroupState> {
        if let Some(change) = self.dirty.get(key) {
            return change.clone();
        }
        if let Some(st) = self.hot.get(key) {
            return Some(st.clone());
        }
        if let Some(st) = self.cold.remove(key) {
            self.cache(key.to_vec(), st.clone());
            return Some(st);
        }
        let stored = match self.store.as_ref()?.get(key) {
            Ok(v) => v?,
            Err(e) => {
                self.fail(e);
                return None;
            }
        };
        let st = self.decode(&stored)?;
        self.cache(key.to_vec(), st.clone());
        Some(st)
    }

    fn insert(&mut self, key: Vec<u8>, state: GroupState) {
        self.hot.remove(&key);
        self.cold.remove(&key);
        self.dirty.insert(key, Some(state));
    }

    fn remove(&mut self, key: &[u8]) -> Option<GroupState> {
        let old = self.get(key);
        self.hot.remove(key);
        self.cold.remove(key);
        if self.store.is_some() {
            self.dirty.insert(key.to_vec(), None);
        } else {
            self.dirty.remove(key);
        }
        old
    }

    fn with_prefix(&mut self, prefix: &[u8]) -> Vec<(Vec<u8>, GroupState)> {
        let mut out = Vec::new();
        self.merged(prefix, &mut |k, st| {
            if !k.starts_with(prefix) {
                return false;
            }
            out.push((k.to_vec(), st.clone()));
            true
        });
        out
    }

    fn for_each(&mut self, f: &mut dyn FnMut(&[u8], &GroupState) -> bool) {
        self.merged(b"", f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_sql::aggregate::Acc;

    /// A group's state is its count, written as its decimal text.
    struct Counts;

    impl StateCodec for Counts {
        fn encode(&self, st: &GroupState) -> String {
            match st.accs.first() {
                Some(Acc::Count(n)) => n.to_string(),
                _ => String::new(),
            }
        }

        fn decode(&self, bytes: &[u8]) -> Option<GroupState> {
            let n = std::str::from_utf8(bytes).ok()?.parse().ok()?;
            Some(count(n))
        }
    }

    fn count(n: i64) -> GroupState {
        GroupState {
            accs: vec![Acc::Count(n)],
            timestamp: 0,
        }
    }

    fn n(st: Option<GroupState>) -> Option<i64> {
        match st?.accs.first() {
            Some(Acc::Count(n)) => Some(*n),
            _ => None,
        }
    }

    fn dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("strata-groups-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn all(g: &mut TaskGroups) -> Vec<(Vec<u8>, i64)> {
        let mut out = Vec::new();
        g.for_each(&mut |k, st| {
            out.push((k.to_vec(), n(Some(st.clone())).unwrap()));
            true
        });
        out
    }

    /// Many more groups than the cache holds: each is read back right, scans merge the
    /// store with unflushed changes (deletions included), memory stays near the capacity,
    /// and a reopened store has them all.
    #[test]
    fn groups_outgrow_the_cache_and_stay_exact() {
        let d = dir("outgrow");
        let store = StateStore::open(&d, "Q").unwrap();
        let mut g = TaskGroups::with_store(store, Arc::new(Counts), 100);
        let key = |i: usize| format!("k{i:05}").into_bytes();
        for round in 0..3i64 {
            for i in 0..1000 {
                let old = n(g.get(&key(i))).unwrap_or(0);
                assert_eq!(old, round, "group {i} in round {round}");
                g.insert(key(i), count(old + 1));
                if g.flush_due() {
                    g.flush(round * 1000 + i as i64, 0);
                }
                assert!(g.cached_len() <= 200, "{} cached", g.cached_len());
            }
        }
        // Unflushed: a deletion and a new group, seen by reads and scans.
        g.remove(&key(5));
        g.insert(b"k00005x".to_vec(), count(7));
        assert_eq!(n(g.get(&key(5))), None);
        let scanned = all(&mut g);
        assert_eq!(scanned.len(), 1000);
        assert!(scanned.windows(2).all(|w| w[0].0 < w[1].0), "in key order");
        assert_eq!(scanned[5], (b"k00005x".to_vec(), 7));
        assert!(scanned
            .iter()
            .filter(|(k, _)| k != b"k00005x")
            .all(|(_, c)| *c == 3));
        assert_eq!(
            g.with_prefix(b"k00005")
                .into_iter()
                .map(|(k, _)| k)
                .collect::<Vec<_>>(),
            vec![b"k00005x".to_vec()]
        );
        g.flush(5000, 0);
        drop(g);
        let store = StateStore::open(&d, "Q").unwrap();
        assert_eq!(store.meta().unwrap().unwrap().changelog_offset, 5000);
        let mut g = TaskGroups::with_store(store, Arc::new(Counts), 100);
        assert_eq!(g.count(), 1000);
        assert_eq!(n(g.get(b"k00999")), Some(3));
        assert_eq!(n(g.get(&key(5))), None);
        let _ = std::fs::remove_dir_all(&d);
    }

    /// Changes dropped by a reset (a pass that did not commit) never reach the store.
    #[test]
    fn a_reset_drops_unflushed_changes() {
        let d = dir("reset");
        let store = StateStore::open(&d, "Q").unwrap();
        let mut g = TaskGroups::with_store(store, Arc::new(Counts), 10);
        g.insert(b"a".to_vec(), count(1));
        g.flush(1, 0);
        g.insert(b"a".to_vec(), count(2));
        g.remove(b"a");
        g.insert(b"b".to_vec(), count(5));
        g.reset();
        assert_eq!(n(g.get(b"a")), Some(1));
        assert_eq!(n(g.get(b"b")), None);
        assert_eq!(all(&mut g), vec![(b"a".to_vec(), 1)]);
        let _ = std::fs::remove_dir_all(&d);
    }

    /// In memory, every group stays and a flush changes nothing.
    #[test]
    fn without_a_store_groups_stay_in_memory() {
        let mut g = TaskGroups::in_memory();
        for i in 0..10 {
            g.insert(vec![i], count(i as i64));
        }
        g.remove(&[3]);
        g.flush(10, 0);
        assert_eq!(g.count(), 9);
        assert_eq!(n(g.get(&[4])), Some(4));
        assert_eq!(all(&mut g).len(), 9);
    }
}
