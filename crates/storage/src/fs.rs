//! The file system, injected. [`RealFs`] is the OS; [`SimFs`] is an in-memory file system
//! that remembers what was synced, so a test can "lose power" ([`SimFs::crash`]), tear the
//! unsynced tail of a write, or flip a bit, and then check the recovery story.
//!
//! Directory operations (create, rename, remove) are treated as immediately durable by
//! `SimFs`; file contents are durable only up to the last `sync_data`.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// An open file: positioned reads and writes, data sync, and length changes.
#[allow(clippy::len_without_is_empty)] // a file length, not a collection
pub trait FsFile: Send + Sync {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// fdatasync: everything written so far survives power loss once this returns.
    fn sync_data(&self) -> io::Result<()>;
    fn len(&self) -> io::Result<u64>;
    fn set_len(&self, len: u64) -> io::Result<()>;

    /// Writes the concatenation of `bufs` at `offset` (a single pwritev where the OS allows),
    /// so batches can be written from where they arrived with only their headers patched.
    fn write_all_vectored_at(&self, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
        let mut at = offset;
        for b in bufs {
            self.write_all_at(b, at)?;
            at += b.len() as u64;
        }
        Ok(())
    }

    /// The OS file descriptor, where there is one, so a reader can hand a byte range to the
    /// kernel (sendfile) instead of copying it through user space.
    fn as_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        None
    }

    /// Reads exactly `buf.len()` bytes at `offset`, failing on a short file.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let mut done = 0;
        while done < buf.len() {
            let n = self.read_at(&mut buf[done..], offset + done as u64)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file ended early",
                ));
            }
            done += n;
        }
        Ok(())
    }
}

/// The file system operations storage needs, and nothing more.
pub trait Fs: Send + Sync + 'static {
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Immediate children of a directory (files and directories), in no particular order.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>>;
    fn is_dir(&self, path: &Path) -> bool;
    fn exists(&self, path: &Path) -> bool;
    /// Opens for reading and writing, creating the file if `create`.
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn FsFile>>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes directory entries (creations, renames) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Makes every file on the file system holding `path` durable at once (syncfs): one
    /// call instead of an fdatasync per file when a write touched many files.
    fn sync_filesystem(&self, path: &Path) -> io::Result<()>;
}

/// The operating system's file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

struct RealFile(std::fs::File);

impl FsFile for RealFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.0.read_at(buf, offset)
    }
    fn as_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        Some(std::os::fd::AsFd::as_fd(&self.0))
    }
    fn write_all_vectored_at(&self, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
        // At most IOV_MAX (1024 on Linux) slices per call; partial writes resume mid-slice.
        const IOV_MAX: usize = 1024;
        let (mut index, mut skip, mut at) = (0usize, 0usize, offset);
        while index < bufs.len() {
            if bufs[index].len() == skip {
                index += 1;
                skip = 0;
                continue;
            }
            let slices: Vec<io::IoSlice<'_>> = bufs[index..]
                .iter()
                .take(IOV_MAX)
                .enumerate()
                .map(|(k, b)| io::IoSlice::new(if k == 0 { &b[skip..] } else { b }))
                .collect();
            let mut written =
                nix::sys::uio::pwritev(&self.0, &slices, at as i64).map_err(io::Error::from)?;
            if written == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "pwritev wrote nothing",
                ));
            }
            at += written as u64;
            while written > 0 {
                let left = bufs[index].len() - skip;
                if written >= left {
                    written -= left;
                    index += 1;
                    skip = 0;
                } else {
                    skip += written;
                    written = 0;
                }
            }
        }
        Ok(())
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
}

impl Fs for RealFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        std::fs::read_dir(path)?
            .map(|e| e.map(|e| e.path()))
            .collect()
    }
    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn FsFile>> {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(path)?;
        Ok(Arc::new(RealFile(f)))
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::File::open(path)?.sync_all()
    }
    fn sync_filesystem(&self, path: &Path) -> io::Result<()> {
        let dir = std::fs::File::open(path)?;
        nix::unistd::syncfs(&dir).map_err(io::Error::from)
    }
}

#[derive(Default)]
struct SimFileState {
    /// What a reader sees now (the page cache).
    data: Vec<u8>,
    /// What survives a crash: the contents at the last sync.
    synced: Vec<u8>,
}

/// I/O counts of a `SimFs`, for tests that check how much work recovery or group commit did.
#[derive(Debug, Default)]
pub struct SimStats {
    pub bytes_read: AtomicU64,
    pub syncs: AtomicU64,
    /// While set, every `sync_data` fails (as fdatasync does with EIO).
    pub fail_syncs: std::sync::atomic::AtomicBool,
    /// While set, every write stores only its first half and fails with ENOSPC (a full
    /// disk, met in the middle of a write).
    pub fail_writes: std::sync::atomic::AtomicBool,
}

struct SimFile {
    state: Mutex<SimFileState>,
    stats: Arc<SimStats>,
}

impl SimFile {
    fn write_unchecked(&self, buf: &[u8], offset: u64) {
        let mut s = self.state.lock().expect("sim file lock");
        let end = offset as usize + buf.len();
        if s.data.len() < end {
            s.data.resize(end, 0);
        }
        s.data[offset as usize..end].copy_from_slice(buf);
    }
}

impl FsFile for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let s = self.state.lock().expect("sim file lock");
        let start = (offset as usize).min(s.data.len());
        let n = buf.len().min(s.data.len() - start);
        buf[..n].copy_from_slice(&s.data[start..start + n]);
        self.stats.bytes_read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if self.stats.fail_writes.load(Ordering::SeqCst) {
            self.write_unchecked(&buf[..buf.len() / 2], offset);
            return Err(io::Error::from_raw_os_error(28)); // ENOSPC
        }
        self.write_unchecked(buf, offset);
        Ok(())
    }
    fn sync_data(&self) -> io::Result<()> {
        let mut s = self.state.lock().expect("sim file lock");
        if self.stats.fail_syncs.load(Ordering::SeqCst) {
            return Err(io::Error::other("injected fdatasync failure (EIO)"));
        }
        s.synced = s.data.clone();
        self.stats.syncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.state.lock().expect("sim file lock").data.len() as u64)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.state
            .lock()
            .expect("sim file lock")
            .data
            .resize(len as usize, 0);
        Ok(())
    }
}

/// How a simulated power loss treats data written but not synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// Every unsynced byte is lost.
    LoseUnsynced,
    /// The first `keep` unsynced bytes past the synced length survive (a torn write);
    /// overwrites of synced bytes are lost.
    Torn { keep: usize },
    /// Everything written survives (the process died; the OS did not).
    KeepAll,
}

/// An in-memory file system with power-loss semantics, for tests.
///
/// A file's bytes survive a power loss up to its last `sync_data`; its *name* — a creation,
/// a removal, a rename — survives only once its directory was synced (`sync_dir`, or a
/// `sync_filesystem` of everything): a power loss puts every directory's entries back as they
/// were at its last sync (a file created since vanishes, one removed since comes back, a rename
/// is undone). Directories themselves are durable when created or removed (the data
/// directory's partition directories are not what this models).
#[derive(Default, Clone)]
pub struct SimFs {
    files: Arc<Mutex<HashMap<PathBuf, Arc<SimFile>>>>,
    /// File names as a power loss would leave them (as of each directory's last sync).
    durable_names: Arc<Mutex<HashMap<PathBuf, Arc<SimFile>>>>,
    dirs: Arc<Mutex<BTreeSet<PathBuf>>>,
    stats: Arc<SimStats>,
}

impl SimFs {
    pub fn new() -> Self {
        Self::default()
    }

    /// Simulates a crash: every file keeps what `mode` says survives; after a power loss
    /// (not [`CrashMode::KeepAll`]) every directory's entries are back as of its last sync.
    pub fn crash(&self, mode: CrashMode) {
        if mode != CrashMode::KeepAll {
            let durable = self.durable_names.lock().expect("sim fs lock").clone();
            let dirs = self.dirs.lock().expect("sim fs lock");
            *self.files.lock().expect("sim fs lock") = durable
                .into_iter()
                .filter(|(p, _)| p.parent().is_some_and(|d| dirs.contains(d)))
                .collect();
        } else {
            *self.durable_names.lock().expect("sim fs lock") =
                self.files.lock().expect("sim fs lock").clone();
        }
        for file in self.files.lock().expect("sim fs lock").values() {
            let mut s = file.state.lock().expect("sim file lock");
            match mode {
                CrashMode::KeepAll => {}
                CrashMode::LoseUnsynced => s.data = s.synced.clone(),
                CrashMode::Torn { keep } => {
                    let synced_len = s.synced.len();
                    let extra: Vec<u8> = s
                        .data
                        .get(synced_len..)
                        .unwrap_or(&[])
                        .iter()
                        .take(keep)
                        .copied()
                        .collect();
                    let mut next = s.synced.clone();
                    next.extend(extra);
                    s.data = next;
                }
            }
            s.synced = s.data.clone();
        }
    }

    /// Flips one bit of a file's contents, synced and unsynced alike (media corruption).
    pub fn flip_bit(&self, path: &Path, byte: usize, bit: u8) {
        let files = self.files.lock().expect("sim fs lock");
        let file = files.get(path).expect("flip_bit: no such file");
        let mut s = file.state.lock().expect("sim file lock");
        s.data[byte] ^= 1 << bit;
        if byte < s.synced.len() {
            s.synced[byte] ^= 1 << bit;
        }
    }

    /// Bytes read and data syncs so far, across all files.
    pub fn stats(&self) -> &SimStats {
        &self.stats
    }

    /// Every file path, for tests that look for a file by name.
    pub fn file_paths(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = self
            .files
            .lock()
            .expect("sim fs lock")
            .keys()
            .cloned()
            .collect();
        v.sort();
        v
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} not found", path.display()),
    )
}

impl Fs for SimFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut dirs = self.dirs.lock().expect("sim fs lock");
        for ancestor in path.ancestors() {
            if !ancestor.as_os_str().is_empty() {
                dirs.insert(ancestor.to_path_buf());
            }
        }
        Ok(())
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        if !self.is_dir(path) {
            return Err(not_found(path));
        }
        let mut out: Vec<PathBuf> = Vec::new();
        for f in self.files.lock().expect("sim fs lock").keys() {
            if f.parent() == Some(path) {
                out.push(f.clone());
            }
        }
        for d in self.dirs.lock().expect("sim fs lock").iter() {
            if d.parent() == Some(path) {
                out.push(d.clone());
            }
        }
        Ok(out)
    }
    fn is_dir(&self, path: &Path) -> bool {
        self.dirs.lock().expect("sim fs lock").contains(path)
    }
    fn exists(&self, path: &Path) -> bool {
        self.is_dir(path) || self.files.lock().expect("sim fs lock").contains_key(path)
    }
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn FsFile>> {
        let mut files = self.files.lock().expect("sim fs lock");
        if let Some(f) = files.get(path) {
            return Ok(f.clone());
        }
        if !create {
            return Err(not_found(path));
        }
        let f = Arc::new(SimFile {
            state: Mutex::new(SimFileState::default()),
            stats: self.stats.clone(),
        });
        files.insert(path.to_path_buf(), f.clone());
        Ok(f)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.files
            .lock()
            .expect("sim fs lock")
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| not_found(path))
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.files
            .lock()
            .expect("sim fs lock")
            .retain(|p, _| !p.starts_with(path));
        self.dirs
            .lock()
            .expect("sim fs lock")
            .retain(|p| !p.starts_with(path));
        Ok(())
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut files = self.files.lock().expect("sim fs lock");
        if let Some(f) = files.remove(from) {
            files.insert(to.to_path_buf(), f);
            return Ok(());
        }
        drop(files);
        let mut dirs = self.dirs.lock().expect("sim fs lock");
        if !dirs.contains(from) {
            return Err(not_found(from));
        }
        let moved: Vec<PathBuf> = dirs
            .iter()
            .filter(|p| p.starts_with(from))
            .cloned()
            .collect();
        for p in moved {
            dirs.remove(&p);
            dirs.insert(to.join(p.strip_prefix(from).expect("prefix")));
        }
        drop(dirs);
        let mut files = self.files.lock().expect("sim fs lock");
        let moved: Vec<PathBuf> = files
            .keys()
            .filter(|p| p.starts_with(from))
            .cloned()
            .collect();
        for p in moved {
            let f = files.remove(&p).expect("present");
            files.insert(to.join(p.strip_prefix(from).expect("prefix")), f);
        }
        Ok(())
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let files = self.files.lock().expect("sim fs lock");
        let mut durable = self.durable_names.lock().expect("sim fs lock");
        durable.retain(|p, _| p.parent() != Some(path));
        for (p, f) in files.iter() {
            if p.parent() == Some(path) {
                durable.insert(p.clone(), f.clone());
            }
        }
        Ok(())
    }
    fn sync_filesystem(&self, _path: &Path) -> io::Result<()> {
        let files = self.files.lock().expect("sim fs lock");
        for file in files.values() {
            file.sync_data()?;
        }
        *self.durable_names.lock().expect("sim fs lock") = files.clone();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A power loss puts directory entries back as of each directory's last sync: a file
    /// created since vanishes (even with its data synced), a removal and a rename are
    /// undone; a process crash (KeepAll) keeps everything.
    #[test]
    fn names_survive_a_power_loss_only_after_their_directory_is_synced() {
        let fs = SimFs::new();
        let d = Path::new("/d");
        fs.create_dir_all(d).unwrap();
        let a = fs.open(&d.join("a"), true).unwrap();
        a.write_all_at(b"x", 0).unwrap();
        a.sync_data().unwrap();
        fs.crash(CrashMode::LoseUnsynced);
        assert!(
            !fs.exists(&d.join("a")),
            "created, synced, but never named durably"
        );

        let a = fs.open(&d.join("a"), true).unwrap();
        a.write_all_at(b"x", 0).unwrap();
        a.sync_data().unwrap();
        fs.sync_dir(d).unwrap();
        fs.rename(&d.join("a"), &d.join("b")).unwrap();
        fs.crash(CrashMode::LoseUnsynced);
        assert!(
            fs.exists(&d.join("a")) && !fs.exists(&d.join("b")),
            "rename undone"
        );

        fs.remove_file(&d.join("a")).unwrap();
        fs.crash(CrashMode::Torn { keep: 0 });
        assert!(fs.exists(&d.join("a")), "removal undone");

        fs.rename(&d.join("a"), &d.join("c")).unwrap();
        fs.crash(CrashMode::KeepAll);
        assert!(fs.exists(&d.join("c")), "a process crash loses nothing");
        fs.crash(CrashMode::LoseUnsynced);
        assert!(
            fs.exists(&d.join("c")),
            "and what it kept counts as durable after it"
        );

        fs.rename(&d.join("c"), &d.join("e")).unwrap();
        fs.sync_filesystem(d).unwrap();
        fs.crash(CrashMode::LoseUnsynced);
        assert!(fs.exists(&d.join("e")), "syncfs makes every name durable");
    }
}
