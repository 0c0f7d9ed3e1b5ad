//! Small checkpoint files (`recovery-point`, `clean-shutdown`): one decimal number, written to
//! a temporary file, synced, and renamed over the old one, so a crash leaves either the old
//! or the new value, never a torn one. An unreadable checkpoint reads as absent, which only
//! makes recovery scan more.

use std::path::Path;

use crate::error::Result;
use crate::{Fs, StorageError};

pub fn write(fs: &dyn Fs, path: &Path, value: i64) -> Result<()> {
    write_atomically(fs, path, &format!("{value}\n"))
}

/// Writes `body` to a temporary file, syncs it, renames it over `path` and syncs the
/// directory: a crash leaves the old contents or the new, never a mix.
pub fn write_atomically(fs: &dyn Fs, path: &Path, body: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
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

/// The offsets checkpoint of a data directory (Kafka's `recovery-point-offset-checkpoint`
/// format): a version line `0`, a count line, then `topic partition offset` per line.
pub fn write_offsets(fs: &dyn Fs, path: &Path, entries: &[(String, i32, i64)]) -> Result<()> {
    let mut body = format!("0\n{}\n", entries.len());
    for (topic, partition, offset) in entries {
        body.push_str(&format!("{topic} {partition} {offset}\n"));
    }
    write_atomically(fs, path, &body)
}

/// Reads an offsets checkpoint; a missing or malformed file reads as empty (recovery then
/// scans more, nothing is lost). Bounded: at most `entries_max` lines are read.
pub fn read_offsets(
    fs: &dyn Fs,
    path: &Path,
    entries_max: usize,
) -> std::collections::HashMap<(String, i32), i64> {
    let mut out = std::collections::HashMap::new();
    let Ok(f) = fs.open(path, false) else {
        return out;
    };
    let Ok(len) = f.len() else { return out };
    if len > (entries_max as u64) * 300 {
        return out;
    }
    let mut buf = vec![0u8; len as usize];
    if f.read_exact_at(&mut buf, 0).is_err() {
        return out;
    }
    let Ok(text) = std::str::from_utf8(&buf) else {
        return out;
    };
    let mut lines = text.lines();
    if lines.next() != Some("0") {
        return out;
    }
    let count: usize = match lines.next().and_then(|c| c.parse().ok()) {
        Some(c) => c,
        None => return out,
    };
    for line in lines.take(count.min(entries_max)) {
        let mut parts = line.split(' ');
        if let (Some(t), Some(p), Some(o), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        {
            if let (Ok(p), Ok(o)) = (p.parse(), o.parse()) {
                out.insert((t.to_string(), p), o);
            }
        }
    }
    if out.len() != count {
        out.clear(); // a torn or edited file: trust none of it
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SimFs;

    #[test]
    fn offsets_round_trip_and_bad_files_read_empty() {
        let fs = SimFs::new();
        let path = Path::new("/d/recovery-point-offset-checkpoint");
        fs.create_dir_all(Path::new("/d")).unwrap();
        let entries = vec![("a".to_string(), 0, 10), ("b.c".to_string(), 7, 0)];
        write_offsets(&fs, path, &entries).unwrap();
        let read = read_offsets(&fs, path, 100);
        assert_eq!(read.len(), 2);
        assert_eq!(read[&("a".to_string(), 0)], 10);
        let f = fs.open(path, false).unwrap();
        f.set_len(f.len().unwrap() - 3).unwrap(); // torn
        assert!(read_offsets(&fs, path, 100).is_empty());
        assert!(read_offsets(&fs, Path::new("/d/missing"), 100).is_empty());
    }
}
