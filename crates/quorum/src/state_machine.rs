//! The metadata image as raft's state machine.
//!
//! Each normal entry is one [`MetaBatch`]: its records are applied to a copy of the image
//! and the copy replaces it only if every record applied, so a batch is all-or-nothing and
//! the checks inside `MetadataImage::apply` (a topic name taken, a partition out of order, a
//! stale broker epoch) decide the same way on every node, whatever the proposer believed.
//! Every applied entry publishes the new image (with its index) on a watch channel; the
//! broker's replica manager follows it.
//!
//! The state machine is in memory; snapshots are persistent (`snapshot.json` in the quorum
//! directory, replaced atomically): at start raft installs the last snapshot and applies the
//! committed entries after it again.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures_util::TryStreamExt;
use openraft::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, RaftSnapshotBuilder};
use serde::{Deserialize, Serialize};
use strata_cluster::{MetadataError, MetadataImage};
use strata_storage::Fs;
use tokio::sync::watch;

use crate::{Applied, MetaBatch, Rejected, TypeConfig};

type C = TypeConfig;

const SNAPSHOT_FILE: &str = "snapshot.json";

/// The image as of an applied raft index (`None`: nothing applied yet).
#[derive(Debug, Clone, Default)]
pub struct Published {
    pub index: Option<u64>,
    pub image: Arc<MetadataImage>,
}

#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMetaOf<C>,
    image: MetadataImage,
}

struct Inner {
    last_applied: Option<LogIdOf<C>>,
    membership: StoredMembershipOf<C>,
    image: Arc<MetadataImage>,
}

/// Cheap to clone: every clone is the same state machine.
#[derive(Clone)]
pub struct StateMachine {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    inner: Arc<Mutex<Inner>>,
    published: Arc<watch::Sender<Published>>,
}

fn invalid(path: &Path, e: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: {e}", path.display()),
    )
}

impl StateMachine {
    pub fn new(fs: Arc<dyn Fs>, dir: &Path) -> Self {
        let (tx, _) = watch::channel(Published::default());
        Self {
            fs,
            dir: dir.to_path_buf(),
            inner: Arc::new(Mutex::new(Inner {
                last_applied: None,
                membership: StoredMembershipOf::<C>::default(),
                image: Arc::new(MetadataImage::default()),
            })),
            published: Arc::new(tx),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Follows every applied change.
    pub fn subscribe(&self) -> watch::Receiver<Published> {
        self.published.subscribe()
    }

    pub fn image(&self) -> Arc<MetadataImage> {
        self.lock().image.clone()
    }

    fn publish(&self, inner: &Inner) {
        self.published.send_replace(Published {
            index: inner.last_applied.as_ref().map(|l| l.index()),
            image: inner.image.clone(),
        });
    }

    fn read_snapshot(&self) -> io::Result<Option<SnapshotFile>> {
        let path = self.dir.join(SNAPSHOT_FILE);
        if !self.fs.exists(&path) {
            return Ok(None);
        }
        let f = self.fs.open(&path, false)?;
        let mut buf = vec![0u8; f.len()? as usize];
        f.read_exact_at(&mut buf, 0)?;
        serde_json::from_slice(&buf)
            .map(Some)
            .map_err(|e| invalid(&path, e))
    }

    fn write_snapshot(&self, body: &[u8]) -> io::Result<()> {
        let path = self.dir.join(SNAPSHOT_FILE);
        let tmp = self.dir.join(format!("{SNAPSHOT_FILE}.tmp"));
        let f = self.fs.open(&tmp, true)?;
        f.set_len(0)?;
        f.write_all_at(body, 0)?;
        f.sync_data()?;
        self.fs.rename(&tmp, &path)?;
        self.fs.sync_dir(&self.dir)
    }
}

fn rejected(e: MetadataError) -> Rejected {
    Rejected {
        topic_exists: matches!(e, MetadataError::TopicExists(_)),
        message: e.to_string(),
    }
}

/// Applies one batch to a copy of `image`: the new image, or why the batch was refused.
pub fn apply_batch(image: &MetadataImage, batch: &MetaBatch) -> Result<MetadataImage, Rejected> {
    let mut next = image.clone();
    for r in &batch.records {
        next.apply(r).map_err(rejected)?;
    }
    Ok(next)
}

impl RaftSnapshotBuilder<C> for StateMachine {
    type SnapshotData = io::Cursor<Vec<u8>>;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<C, Self::SnapshotData>, io::Error> {
        let (meta, image) = {
            let inner = self.lock();
            (
                SnapshotMetaOf::<C> {
                    last_log_id: inner.last_applied,
                    last_membership: inner.membership.clone(),
                },
                inner.image.clone(),
            )
        };
        let body = serde_json::to_vec(&SnapshotFile {
            meta: meta.clone(),
            image: (*image).clone(),
        })
        .map_err(io::Error::other)?;
        self.write_snapshot(&body)?;
        let data = serde_json::to_vec(&*image).map_err(io::Error::other)?;
        Ok(SnapshotOf::<C, Self::SnapshotData> {
            meta,
            snapshot: io::Cursor::new(data),
        })
    }
}

impl RaftStateMachine<C> for StateMachine {
    type SnapshotData = io::Cursor<Vec<u8>>;
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogIdOf<C>>, StoredMembershipOf<C>), io::Error> {
        let inner = self.lock();
        Ok((inner.last_applied, inner.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: futures_util::Stream<Item = Result<EntryResponder<C>, io::Error>> + Unpin + Send,
    {
        while let Some((entry, responder)) = entries.try_next().await? {
            let mut inner = self.lock();
            inner.last_applied = Some(entry.log_id());
            let response = match &entry.payload {
                EntryPayload::Blank => Applied::default(),
                EntryPayload::Normal(batch) => match apply_batch(&inner.image, batch) {
                    Ok(next) => {
                        inner.image = Arc::new(next);
                        Applied::default()
                    }
                    Err(r) => Applied { rejected: Some(r) },
                },
                EntryPayload::Membership(m) => {
                    inner.membership =
                        StoredMembershipOf::<C>::new(Some(entry.log_id()), m.clone());
                    Applied::default()
                }
            };
            self.publish(&inner);
            drop(inner);
            if let Some(responder) = responder {
                responder.send(response);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf<C>,
        snapshot: Self::SnapshotData,
    ) -> Result<(), io::Error> {
        let data = snapshot.into_inner();
        let image: MetadataImage =
            serde_json::from_slice(&data).map_err(|e| invalid(&self.dir.join(SNAPSHOT_FILE), e))?;
        let body = serde_json::to_vec(&SnapshotFile {
            meta: meta.clone(),
            image: image.clone(),
        })
        .map_err(io::Error::other)?;
        self.write_snapshot(&body)?;
        let mut inner = self.lock();
        inner.last_applied = meta.last_log_id;
        inner.membership = meta.last_membership.clone();
        inner.image = Arc::new(image);
        self.publish(&inner);
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<SnapshotOf<C, Self::SnapshotData>>, io::Error> {
        let Some(file) = self.read_snapshot()? else {
            return Ok(None);
        };
        let data = serde_json::to_vec(&file.image).map_err(io::Error::other)?;
        Ok(Some(SnapshotOf::<C, Self::SnapshotData> {
            meta: file.meta,
            snapshot: io::Cursor::new(data),
        }))
    }
}
