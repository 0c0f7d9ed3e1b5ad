//! A persistent aggregation's local state store: its groups in an embedded database file
//! (redb: pure Rust, no C++ to build, ACID commits) beside the broker's data, with the
//! changelog offset they cover.
//!
//! The changelog topic stays the source of truth; the store only makes a restart cheap.
//! Without it a query re-reads its whole changelog; with it, it loads the file and reads
//! only the changelog's tail from the recorded offset.
//!
//! # On disk
//! `<data-dir>/sql-state/<query id>.redb`, two tables: `groups` (state key → the group's
//! state as the changelog holds it, JSON) and `meta` (`changelog_offset`: every changelog
//! record below it is in `groups`; `flushed_at_ms`: the wall-clock time of that commit).
//!
//! # Recovery
//! - Changes are written only after the query's transaction committed them to the
//!   changelog, in one database transaction with the offset they reach, so the file is
//!   never ahead of the changelog; a crash loses at most the changes since the last flush,
//!   which the changelog's tail gives back.
//! - A file whose offset is outside the changelog (below its start, past its end: the
//!   topic was recreated) or older than the changelog's `delete.retention.ms` (compaction
//!   may have dropped a tombstone the tail would have needed) is not trusted: the query
//!   restores from the changelog's start and rewrites the file.
//! - A file that cannot be opened or read is removed and rebuilt the same way; a store
//!   error never stops the query (it runs on from the changelog alone).
//!
//! # Write amplification
//! redb is a copy-on-write B-tree: each commit rewrites the pages it touches. Changes are
//! therefore batched (one commit per flush interval, the last value of each key only), so
//! a hot group costs one page write per interval, not one per record.

use std::path::{Path, PathBuf};

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

const GROUPS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("groups");
const META: TableDefinition<&str, i64> = TableDefinition::new("meta");
const CHANGELOG_OFFSET: &str = "changelog_offset";
const FLUSHED_AT: &str = "flushed_at_ms";

/// A store failure (reported and survived: the query goes on from its changelog).
#[derive(Debug, thiserror::Error)]
#[error("state store {path}: {message}")]
pub struct StoreError {
    path: String,
    message: String,
}

/// What a store holds: its groups and the changelog offset and time they were flushed at.
pub struct Snapshot {
    pub groups: Vec<(Vec<u8>, Vec<u8>)>,
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

/// Removes a query's store (its query was terminated).
pub fn remove(dir: &Path, query_id: &str) {
    let path = store_path(dir, query_id);
    if let Err(e) = std::fs::remove_file(&path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), error = %e, "could not remove a SQL state store");
        }
    }
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
        let db = redb::Database::create(&path).map_err(|e| fail(&e))?;
        Ok(StateStore { db, path })
    }

    fn error(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError {
            path: self.path.display().to_string(),
            message: e.to_string(),
        }
    }

    /// The store's contents, None when it was never flushed.
    pub fn load(&self) -> Result<Option<Snapshot>, StoreError> {
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
        let table = read.open_table(GROUPS).map_err(|e| self.error(e))?;
        let mut groups = Vec::new();
        for entry in table.iter().map_err(|e| self.error(e))? {
            let (k, v) = entry.map_err(|e| self.error(e))?;
            groups.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(Some(Snapshot {
            groups,
            changelog_offset,
            flushed_at_ms,
        }))
    }

    /// Applies changes (a key's state, or None: deleted) and records that every changelog
    /// record below `changelog_offset` is in the store, in one durable commit. `replace`:
    /// the changes are the whole state (what was stored before is cleared first).
    pub fn apply<'a>(
        &self,
        changes: impl IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>,
        changelog_offset: i64,
        now_ms: i64,
        replace: bool,
    ) -> Result<(), StoreError> {
        let write = self.db.begin_write().map_err(|e| self.error(e))?;
        {
            if replace {
                write.delete_table(GROUPS).map_err(|e| self.error(e))?;
            }
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

    #[test]
    fn changes_and_their_offset_survive_a_reopen_and_replace_clears() {
        let d = dir("reopen");
        let s = StateStore::open(&d, "Q1").unwrap();
        assert!(s.load().unwrap().is_none(), "never flushed");
        s.apply(
            [
                (&b"a"[..], Some(&b"1"[..])),
                (b"b", Some(b"2")),
                (b"c", Some(b"3")),
            ],
            10,
            1000,
            false,
        )
        .unwrap();
        s.apply(
            [(&b"b"[..], None), (b"a", Some(&b"4"[..]))],
            17,
            2000,
            false,
        )
        .unwrap();
        drop(s);
        let s = StateStore::open(&d, "Q1").unwrap();
        let snap = s.load().unwrap().unwrap();
        assert_eq!(snap.changelog_offset, 17);
        assert_eq!(snap.flushed_at_ms, 2000);
        assert_eq!(
            snap.groups,
            vec![
                (b"a".to_vec(), b"4".to_vec()),
                (b"c".to_vec(), b"3".to_vec())
            ]
        );
        s.apply([(&b"z"[..], Some(&b"9"[..]))], 30, 3000, true)
            .unwrap();
        assert_eq!(
            s.load().unwrap().unwrap().groups,
            vec![(b"z".to_vec(), b"9".to_vec())]
        );
        drop(s);
        remove(&d, "Q1");
        assert!(!store_path(&d, "Q1").exists());
        let _ = std::fs::remove_dir_all(&d);
    }
}
