//! Small checkpoint files (`recovery-point`, `clean-shutdown`): one decimal number, written to
//! a temporary file, synced, and renamed over the old one, so a crash leaves either the old
//! or the new value, never a torn one. An unreadable checkpoint reads as absent, which only
//! makes recovery scan more.

use std::path::Path;

use crate::error::Result;
use crate::{Fs, StorageError};

pub fn write(fs: &dyn Fs, path: &Path, value: i64) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let body = format!("{value}\n");
    let f = fs.open(&tmp, true).map_err(|e| StorageError::io(&tmp, e))?;
    f.set_len(0).map_err(|e| StorageError::io(&tmp, e))?;
    f.write_all_at(body.as_bytes(), 0)
        .map_err(|e| StorageError::io(&tmp, e))?;
    f.sync_data().map_err(|e| StorageError::io(&tmp, e))?;
    fs.rename(&tmp, path)
        .map_err(|e| StorageError::io(path, e))?;
    if let Some(dir) = path.parent() {
        fs.sync_dir(dir).map_err(|e| StorageError::io(dir, e))?;
    }
    Ok(())
}

pub fn read(fs: &dyn Fs, path: &Path) -> Option<i64> {
    let f = fs.open(path, false).ok()?;
    let len = f.len().ok()?;
    if len > 32 {
        return None;
    }
    let mut buf = vec![0u8; len as usize];
    f.read_exact_at(&mut buf, 0).ok()?;
    std::str::from_utf8(&buf).ok()?.trim().parse().ok()
}
