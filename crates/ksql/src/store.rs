//! A persistent aggregation task's local state store: its groups in an embedded database
//! file (redb: pure Rust, no C++ to build, ACID commits) beside the broker's data, with the
//! changelog offset they cover. [`crate::groups`] keeps the groups here and caches a
//! bounded number in memory, so the state may be far larger than memory.
//!
//! The changelog topic stays the source of truth; the store holds the state between
//! passes and makes a restart cheap: a restart reads only the changelog's tail from the
//! recorded offset.
//!
//! # On disk
//! `<data-dir>/sql-state/<task id>.redb`, two tables: `groups` (state key → the group's
//! state as the changelog holds it, JSON; a windowed aggregation's stream time under the
//! empty key) and `meta` (`changelog_offset`: every changelog record below it is in
//! `groups`; `flushed_at_ms`: the wall-clock time of that commit).
//!
//! # Recovery
//! - Changes are written only after the task's transaction committed them to the
//!   changelog, in one database transaction with the offset they reach, so the file is
//!   never ahead of the changelog; a crash loses at most the changes since the last flush,
//!   which the changelog's tail gives back.
//! - A file whose offset is outside the changelog (below its start, past its end: the
//!   topic was recreated) or older than the changelog's `delete.retention.ms` (compaction
//!   may have dropped a tombstone the tail would have needed) is not trusted: it is
//!   cleared (groups and offset in one commit) and refilled from the changelog's start.
//! - A file that cannot be opened is removed and created again. A read or write that
//!   fails drops the store: the task starts over from its changelog with its groups in
//!   memory, and stays so until it is restarted.
//!
//! # Write amplification
//! redb is a copy-on-write B-tree: each commit rewrites the pages it touches. Changes are
//! therefore batched (one commit per flush: every 5 s, or when the cache's capacity of
//! changes is waiting; the last value of each key only), so a hot group costs one page
//! write per flush, not one per record.

use std::path::{Path, PathBuf};

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

const GROUPS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("groups");
const META: TableDefinition<&str, i64> = TableDefinition::new("meta");
/// A join store's input positions: `topic\0partition` → every record below it is in.
const POSITIONS: TableDefinition<&str, i64> = TableDefinition::new("positions");
const CHANGELOG_OFFSET: &str = "changelog_offset";
const FLUSHED_AT: &str = "flushed_at_ms";
/// redb's page cache per store (its default, 1 GiB, would defeat the bounded group cache).
const STORE_CACHE_BYTES: usize = 32 << 20;

/// A store failure (reported and survived: the query goes on from its changelog).
#[derive(Debug, thiserror::Error)]
#[error("state store {path}: {message}")]
pub struct StoreError {
    path: String,
    message: String,
}

/// Where a store stands: every changelog record below `changelog_offset` is in it, as of
/// the wall-clock time `flushed_at_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreMeta {
    pub changelog_offset: i64,
    pub flushed_at_ms: i64,
}

pub struct StateStore {
    db: redb::Database,
    path: PathBuf,
}

/// The file of a query's store under `dir`.
pub fn store_path(dir: &Path, query_id: &str) -> PathBuf {
    dir.join(format!("{query_id}.redb"))
}

/// The name of a task's join store (its stream–table join's table rows,
/// [`crate::join_rows`]), beside its aggregation store.
pub fn join_store_name(task_id: &str) -> String {
    format!("{task_id}.join")
}

/// Removes a task's stores (its query was terminated): the aggregation's and the join's.
pub fn remove(dir: &Path, query_id: &str) {
    remove_file(&store_path(dir, query_id));
    remove_file(&store_path(dir, &join_store_name(query_id)));
}

/// Removes one store file (it could not be opened, or its task is gone).
pub fn remove_file(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), error = %e, "could not remove a SQL state store");
        }
    }
}

/// Where a join store stands: for each input partition it covers (topic, partition),
/// every record below the position is in it, as of the wall-clock time `flushed_at_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorePositions {
    pub positions: std::collections::BTreeMap<(String, i32), i64>,
    pub flushed_at_ms: i64,
}

impl StateStore {
    /// Opens (or creates) a query's store under `dir`.
    pub fn open(dir: &Path, query_id: &str) -> Result<StateStore, StoreError> {
        let path = store_path(dir, query_id);
        let fail = |e: &dyn std::fmt::Display| StoreError {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(|e| fail(&e))?;
        let db = redb::Builder::new()
            .set_cache_size(STORE_CACHE_BYTES)
            .create(&path)
            .map_err(|e| fail(&e))?;
        Ok(StateStore { db, path })
    }

    pub(crate) fn error(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError {
            path: self.path.display().to_string(),
            message: e.to_string(),
        }
    }

    /// Where the store stands, None when it was never flushed (or was cleared).
    pub fn meta(&self) -> Result<Option<StoreMeta>, StoreError> {
        let read = self.db.begin_read().map_err(|e| self.error(e))?;
        let meta = match read.open_table(META) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.error(e)),
        };
        let get = |k: &str| -> Result<Option<i64>, StoreError> {
            Ok(meta.get(k).map_err(|e| self.error(e))?.map(|v| v.value()))
        };
        let (Some(changelog_offset), Some(flushed_at_ms)) =
            (get(CHANGELOG_OFFSET)?, get(FLUSHED_AT)?)
        else {
            return Ok(None);
        };
        Ok(Some(StoreMeta {
            changelog_offset,
            flushed_at_ms,
        }))
    }

    /// One group's stored state.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let read = self.db.begin_read().map_err(|e| self.error(e))?;
        let table = match read.open_table(GROUPS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.error(e)),
        };
        let value = table.get(key).map_err(|e| self.error(e))?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    /// Calls `f` with the stored groups from `from` on, in key order, until it answers
    /// false (one read transaction: a consistent view).
    pub fn scan(
        &self,
        from: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        let read = self.db.begin_read().map_err(|e| self.error(e))?;
        let table = match read.open_table(GROUPS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
            Err(e) => return Err(self.error(e)),
        };
        for entry in table.range(from..).map_err(|e| self.error(e))? {
            let (k, v) = entry.map_err(|e| self.error(e))?;
            if !f(k.value(), v.value()) {
                break;
            }
        }
        Ok(())
    }

    /// How many groups are stored.
    pub fn group_count(&self) -> Result<u64, StoreError> {
        let read = self.db.begin_read().map_err(|e| self.error(e))?;
        match read.open_table(GROUPS) {
            Ok(t) => t.len().map_err(|e| self.error(e)),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
            Err(e) => Err(self.error(e)),
        }
    }

    /// Empties the store (groups and where it stood), in one durable commit: it then
    /// covers nothing, and a restore reads the changelog from its start.
    pub fn clear(&self) -> Result<(), StoreError> {
        let write = self.db.begin_write().map_err(|e| self.error(e))?;
        write.delete_table(GROUPS).map_err(|e| self.error(e))?;
        write.delete_table(META).map_err(|e| self.error(e))?;
        write.delete_table(POSITIONS).map_err(|e| self.error(e))?;
        write.commit().map_err(|e| self.error(e))
    }

    /// Where a join store stands, None when it was never flushed (or was cleared).
    pub fn positions(&self) -> Result<Option<StorePositions>, StoreError> {
        let read = self.db.begin_read().map_err(|e| self.error(e))?;
        let (meta, table) = match (read.open_table(META), read.open_table(POSITIONS)) {
            (Ok(m), Ok(t)) => (m, t),
            (Err(redb::TableError::TableDoesNotExist(_)), _)
            | (_, Err(redb::TableError::TableDoesNotExist(_))) => return Ok(None),
            (Err(e), _) | (_, Err(e)) => return Err(self.error(e)),
        };
        let Some(flushed_at_ms) = meta.get(FLUSHED_AT).map_err(|e| self.error(e))? else {
            return Ok(None);
        };
        let mut positions = std::collections::BTreeMap::new();
        for entry in table.iter().map_err(|e| self.error(e))? {
            let (k, v) = entry.map_err(|e| self.error(e))?;
            let key = k.value();
            let parsed = key
                .rsplit_once('\0')
                .and_then(|(t, p)| Some((t.to_string(), p.parse::<i32>().ok()?)));
            let Some(tp) = parsed else {
                return Err(self.error(format!("bad position key {key:?}")));
            };
            positions.insert(tp, v.value());
        }
        Ok(Some(StorePositions {
            positions,
            flushed_at_ms: flushed_at_ms.value(),
        }))
    }

    /// Applies changes (a key's row, or None: deleted) and records that every record of
    /// each input partition below its position is in the store (those positions replace
    /// the ones recorded before), in one durable commit.
    pub fn apply_at<'a>(
        &self,
        changes: impl IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>,
        positions: &std::collections::BTreeMap<(String, i32), i64>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let write = self.db.begin_write().map_err(|e| self.error(e))?;
        write.delete_table(POSITIONS).map_err(|e| self.error(e))?;
        {
            let mut table = write.open_table(GROUPS).map_err(|e| self.error(e))?;
            for (k, v) in changes {
                match v {
                    Some(v) => {
                        table.insert(k, v).map_err(|e| self.error(e))?;
                    }
                    None => {
                        table.remove(k).map_err(|e| self.error(e))?;
                    }
                }
            }
            let mut at = write.open_table(POSITIONS).map_err(|e| self.error(e))?;
            for ((topic, partition), offset) in positions {
                at.insert(format!("{topic}\0{partition}").as_str(), *offset)
                    .map_err(|e| self.error(e))?;
            }
            let mut meta = write.open_table(META).map_err(|e| self.error(e))?;
            meta.insert(FLUSHED_AT, now_ms).map_err(|e| self.error(e))?;
        }
        write.commit().map_err(|e| self.error(e))
    }

    /// Applies changes (a key's state, or None: deleted) and records that every changelog
    /// record below `changelog_offset` is in the store, in one durable commit.
    pub fn apply<'a>(
        &self,
        changes: impl IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>,
        changelog_offset: i64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let write = self.db.begin_write().map_err(|e| self.error(e))?;
        {
            let mut table = write.open_table(GROUPS).map_err(|e| self.error(e))?;
            for (k, v) in changes {
                match v {
                    Some(v) => {
                        table.insert(k, v).map_err(|e| self.error(e))?;
                    }
                    None => {
                        table.remove(k).map_err(|e| self.error(e))?;
                    }
                }
            }
            let mut meta = write.open_table(META).map_err(|e| self.error(e))?;
            meta.insert(CHANGELOG_OFFSET, changelog_offset)
                .map_err(|e| self.error(e))?;
            meta.insert(FLUSHED_AT, now_ms).map_err(|e| self.error(e))?;
        }
        write.commit().map_err(|e| self.error(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("strata-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn stored(s: &StateStore) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut all = Vec::new();
        s.scan(b"", &mut |k, v| {
            all.push((k.to_vec(), v.to_vec()));
            true
        })
        .unwrap();
        all
    }

    #[test]
    fn changes_and_their_offset_survive_a_reopen_and_clear_empties() {
        let d = dir("reopen");
        let s = StateStore::open(&d, "Q1").unwrap();
        assert!(s.meta().unwrap().is_none(), "never flushed");
        assert_eq!(s.get(b"a").unwrap(), None);
        s.apply(
            [
                (&b"a"[..], Some(&b"1"[..])),
                (b"b", Some(b"2")),
                (b"c", Some(b"3")),
            ],
            10,
            1000,
        )
        .unwrap();
        s.apply([(&b"b"[..], None), (b"a", Some(&b"4"[..]))], 17, 2000)
            .unwrap();
        drop(s);
        let s = StateStore::open(&d, "Q1").unwrap();
        assert_eq!(
            s.meta().unwrap(),
            Some(StoreMeta {
                changelog_offset: 17,
                flushed_at_ms: 2000
            })
        );
        assert_eq!(
            stored(&s),
            vec![
                (b"a".to_vec(), b"4".to_vec()),
                (b"c".to_vec(), b"3".to_vec())
            ]
        );
        assert_eq!(s.get(b"c").unwrap(), Some(b"3".to_vec()));
        assert_eq!(s.group_count().unwrap(), 2);
        let mut from_b = Vec::new();
        s.scan(b"b", &mut |k, _| {
            from_b.push(k.to_vec());
            true
        })
        .unwrap();
        assert_eq!(from_b, vec![b"c".to_vec()]);
        s.clear().unwrap();
        assert!(
            s.meta().unwrap().is_none(),
            "a cleared store covers nothing"
        );
        assert!(stored(&s).is_empty());
        s.apply([(&b"z"[..], Some(&b"9"[..]))], 30, 3000).unwrap();
        assert_eq!(stored(&s), vec![(b"z".to_vec(), b"9".to_vec())]);
        drop(s);
        let j = StateStore::open(&d, &join_store_name("Q1")).unwrap();
        assert_eq!(j.positions().unwrap(), None, "never flushed");
        let at =
            std::collections::BTreeMap::from([(("t".to_string(), 0), 5), (("t".into(), 3), 9)]);
        j.apply_at([(&b"k"[..], Some(&b"row"[..]))], &at, 4000)
            .unwrap();
        let later = std::collections::BTreeMap::from([(("t".to_string(), 3), 12)]);
        j.apply_at([(&b"k"[..], None)], &later, 5000).unwrap();
        drop(j);
        let j = StateStore::open(&d, &join_store_name("Q1")).unwrap();
        assert_eq!(
            j.positions().unwrap(),
            Some(StorePositions {
                positions: later,
                flushed_at_ms: 5000
            })
        );
        assert!(stored(&j).is_empty());
        j.clear().unwrap();
        assert_eq!(j.positions().unwrap(), None);
        drop(j);
        remove(&d, "Q1");
        assert!(!store_path(&d, "Q1").exists());
        assert!(!store_path(&d, &join_store_name("Q1")).exists());
        let _ = std::fs::remove_dir_all(&d);
    }
}
