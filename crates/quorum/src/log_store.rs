//! The raft log on Strata's own segment log.
//!
//! On disk (`<dir>/`, see [`crate::QUORUM_DIR`]):
//! - the segments of a storage [`Log`], exactly as a partition's, holding **one record batch
//!   per raft entry at offset = entry index** (the record's value is the entry as JSON), so
//!   raft's truncation and purge are the log's own `truncate_to` and `delete_records_before`;
//! - `raft-state.json`: the vote, the committed log id and the last purged log id, replaced
//!   atomically (written to a temporary file, synced, renamed, directory synced).
//!
//! Durability: `append` writes the entries and returns at once (they are readable); a task
//! then syncs the segment and only then tells raft they are flushed. Syncs are shared: one
//! fdatasync covers every append made before it (group commit), and an append already covered
//! by an earlier sync reports at once.
//!
//! Recovery: the segment log recovers as any log (torn tails cut by CRC); the log's start is
//! moved back past the last purged entry; an entry index that does not match its offset is
//! reported as corruption rather than served.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use openraft::alias::{EntryOf, LogIdOf, VoteOf};
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use serde::{Deserialize, Serialize};
use strata_records::{decode_records, BatchBuilder, Compression, Record};
use strata_storage::{Clock, Fs, Log, LogConfig, StorageError};

use crate::TypeConfig;

type C = TypeConfig;

pub(crate) const STATE_FILE: &str = "raft-state.json";
/// Bytes read per step when entries are read back.
const READ_BYTES: usize = 1 << 20;

/// What raft keeps beside its entries.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct RaftState {
    vote: Option<VoteOf<C>>,
    committed: Option<LogIdOf<C>>,
    purged: Option<LogIdOf<C>>,
}

struct Inner {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    log: Mutex<Log>,
    state: Mutex<RaftState>,
    /// Held while a sync runs, so concurrent appends share one.
    flush: tokio::sync::Mutex<()>,
}

/// The raft log storage (cheap to clone: every clone is the same log).
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Inner>,
}

fn io_err(e: impl std::error::Error + Send + Sync + 'static) -> io::Error {
    io::Error::other(e)
}

fn storage_err(e: StorageError) -> io::Error {
    io::Error::other(e)
}

impl LogStore {
    /// Opens (creating if absent) the raft log in `dir`.
    pub fn open(fs: Arc<dyn Fs>, clock: Arc<dyn Clock>, dir: &Path) -> io::Result<Self> {
        let config = LogConfig {
            segment_bytes: 64 << 20,
            // One change may be large: a topic of 100,000 partitions is ≈ 20 MB of records.
            max_message_bytes: 48 << 20,
            retention_ms: -1,
            // Synced here (see `append`), not by the log's own policy: in relaxed mode the
            // log's high watermark is its end, so entries are readable as soon as written.
            flush_messages: i64::MAX,
            flush_ms: i64::MAX,
            ..LogConfig::default()
        };
        let mut log = Log::open(fs.clone(), clock, dir, config).map_err(storage_err)?;
        let state = read_state(fs.as_ref(), dir)?;
        if let Some(purged) = &state.purged {
            let next = purged.index() as i64 + 1;
            if next > log.log_end_offset() {
                log.truncate_fully_and_start_at(next).map_err(storage_err)?;
            } else {
                log.delete_records_before(next).map_err(storage_err)?;
            }
        }
        Ok(Self {
            inner: Arc::new(Inner {
                fs,
                dir: dir.to_path_buf(),
                log: Mutex::new(log),
                state: Mutex::new(state),
                flush: tokio::sync::Mutex::new(()),
            }),
        })
    }

    fn log(&self) -> MutexGuard<'_, Log> {
        self.inner.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn state(&self) -> MutexGuard<'_, RaftState> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes the persistent state and writes it (synced) before returning.
    fn update_state(&self, change: impl FnOnce(&mut RaftState)) -> io::Result<()> {
        let mut state = self.state();
        let mut next = state.clone();
        change(&mut next);
        write_state(self.inner.fs.as_ref(), &self.inner.dir, &next)?;
        *state = next;
        Ok(())
    }

    /// The entries with offsets in `[start, end)`.
    fn read_range(&self, start: u64, end: u64) -> io::Result<Vec<EntryOf<C>>> {
        let log = self.log();
        let mut offset = (start as i64).max(log.log_start_offset());
        let end = (end.min(i64::MAX as u64) as i64).min(log.log_end_offset());
        let mut out = Vec::new();
        while offset < end {
            let data = log.read(offset, READ_BYTES).map_err(storage_err)?;
            let records = decode_records(data.records).map_err(io_err)?;
            if records.is_empty() {
                break;
            }
            for r in records {
                if r.offset < offset {
                    continue;
                }
                if r.offset >= end {
                    return Ok(out);
                }
                let value = r.value.unwrap_or_default();
                let entry: EntryOf<C> = serde_json::from_slice(&value).map_err(io_err)?;
                if entry.index() as i64 != r.offset {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "raft entry {} stored at offset {} of {}",
                            entry.index(),
                            r.offset,
                            self.inner.dir.display()
                        ),
                    ));
                }
                out.push(entry);
                offset = r.offset + 1;
            }
        }
        Ok(out)
    }

    /// Syncs everything appended so far unless a sync already covered `upto`.
    async fn sync_through(&self, upto: i64) -> io::Result<()> {
        let _flush = self.inner.flush.lock().await;
        let (file, end) = {
            let log = self.log();
            if log.recovery_point() >= upto {
                return Ok(());
            }
            log.flush_target()
        };
        let synced = tokio::task::spawn_blocking(move || file.sync_data())
            .await
            .map_err(io_err)?;
        let mut log = self.log();
        match synced {
            Ok(()) => {
                log.mark_flushed(end);
                Ok(())
            }
            Err(e) => {
                log.mark_failed();
                Err(e)
            }
        }
    }

    /// The log end offset (the next entry's index) and the log start offset.
    pub fn offsets(&self) -> (i64, i64) {
        let log = self.log();
        (log.log_end_offset(), log.log_start_offset())
    }

    /// Clean close of the segment log.
    pub fn close(&self) -> io::Result<()> {
        self.log().close().map_err(storage_err)
    }
}

fn read_state(fs: &dyn Fs, dir: &Path) -> io::Result<RaftState> {
    let path = dir.join(STATE_FILE);
    if !fs.exists(&path) {
        return Ok(RaftState::default());
    }
    let f = fs.open(&path, false)?;
    let mut buf = vec![0u8; f.len()? as usize];
    f.read_exact_at(&mut buf, 0)?;
    serde_json::from_slice(&buf).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    })
}

fn write_state(fs: &dyn Fs, dir: &Path, state: &RaftState) -> io::Result<()> {
    let path = dir.join(STATE_FILE);
    let tmp = dir.join(format!("{STATE_FILE}.tmp"));
    let body = serde_json::to_vec(state).map_err(io_err)?;
    let f = fs.open(&tmp, true)?;
    f.set_len(0)?;
    f.write_all_at(&body, 0)?;
    f.sync_data()?;
    fs.rename(&tmp, &path)?;
    fs.sync_dir(dir)
}

fn bounds(range: &impl RangeBounds<u64>) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.saturating_add(1),
        Bound::Excluded(&e) => e,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

impl RaftLogReader<C> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<EntryOf<C>>, io::Error> {
        let (start, end) = bounds(&range);
        self.read_range(start, end)
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<C>>, io::Error> {
        Ok(self.state().vote)
    }
}

impl RaftLogStorage<C> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, io::Error> {
        let purged = self.state().purged;
        let (end, start) = self.offsets();
        let last = if end > start {
            self.read_range(end as u64 - 1, end as u64)?
                .pop()
                .map(|e| e.log_id())
        } else {
            None
        };
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last.or(purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &VoteOf<C>) -> Result<(), io::Error> {
        let vote = *vote;
        self.update_state(|s| s.vote = Some(vote))
    }

    async fn save_committed(&mut self, committed: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        // Not synced on its own: a committed id that is lost only means entries are applied
        // again from the snapshot after a restart, which raft does anyway.
        let mut state = self.state();
        if state.committed == committed {
            return Ok(());
        }
        state.committed = committed;
        let body = state.clone();
        drop(state);
        write_state(self.inner.fs.as_ref(), &self.inner.dir, &body)
    }

    async fn read_committed(&mut self) -> Result<Option<LogIdOf<C>>, io::Error> {
        Ok(self.state().committed)
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<C>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = EntryOf<C>> + Send,
        I::IntoIter: Send,
    {
        let mut end = None;
        {
            let mut log = self.log();
            for entry in entries {
                let index = entry.index() as i64;
                let leo = log.log_end_offset();
                if index != leo {
                    if index < leo {
                        // Raft truncates before overwriting; an overlap is cut here too.
                        log.truncate_to(index).map_err(storage_err)?;
                    } else if leo == log.log_start_offset() {
                        // An empty log (new, or everything purged) starts where raft says.
                        log.truncate_fully_and_start_at(index)
                            .map_err(storage_err)?;
                    } else {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidInput,
                            format!("raft entry {index} would leave a gap after {leo}"),
                        ));
                    }
                }
                let value = serde_json::to_vec(&entry).map_err(io_err)?;
                let mut builder = BatchBuilder::new(Compression::None);
                builder.push(Record {
                    value: Some(Bytes::from(value)),
                    timestamp_ms: 0,
                    ..Default::default()
                });
                let batch = builder.build().map_err(io_err)?;
                log.append(&batch, 0).map_err(storage_err)?;
                end = Some(log.log_end_offset());
            }
        }
        let Some(end) = end else {
            callback.io_completed(Ok(()));
            return Ok(());
        };
        let store = self.clone();
        tokio::spawn(async move {
            let result = store.sync_through(end).await;
            callback.io_completed(result);
        });
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        let from = last_log_id.map_or(0, |id| id.index() + 1) as i64;
        let mut log = self.log();
        if from < log.log_start_offset() {
            log.truncate_fully_and_start_at(from)
        } else {
            log.truncate_to(from)
        }
        .map_err(storage_err)
    }

    async fn purge(&mut self, log_id: LogIdOf<C>) -> Result<(), io::Error> {
        let next = log_id.index() as i64 + 1;
        // Recorded first: a crash between the two steps leaves entries raft no longer asks for.
        self.update_state(|s| {
            if s.purged.as_ref().is_none_or(|p| p.index() < log_id.index()) {
                s.purged = Some(log_id);
            }
        })?;
        let mut log = self.log();
        if next > log.log_end_offset() {
            log.truncate_fully_and_start_at(next)
        } else {
            log.delete_records_before(next).map(|_| ())
        }
        .map_err(storage_err)
    }
}
