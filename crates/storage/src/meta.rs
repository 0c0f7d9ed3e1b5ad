//! The data directory's identity: `meta.properties` (Kafka's file and format, version 1):
//!
//! ```text
//! version=1
//! cluster.id=<cluster id>
//! node.id=<node id>
//! directory.id=<this directory's id>
//! ```
//!
//! Written once (atomically: temporary file, sync, rename, directory sync) by `strata format`
//! or by the first start, and checked at every start so a directory is never opened as part
//! of another cluster or as another node. Read with a size bound; unknown keys are kept out,
//! malformed files are an error, never guessed at.

use std::path::Path;

use crate::error::Result;
use crate::{checkpoint, Fs, StorageError};

/// The file's name (Kafka's).
pub const META_PROPERTIES: &str = "meta.properties";
/// Larger files are not identity files.
const META_BYTES_MAX: u64 = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaProperties {
    pub cluster_id: String,
    pub node_id: i32,
    pub directory_id: String,
}

impl MetaProperties {
    pub fn encode(&self) -> String {
        format!(
            "#\n# written by strata; do not edit\nversion=1\ncluster.id={}\nnode.id={}\ndirectory.id={}\n",
            self.cluster_id, self.node_id, self.directory_id
        )
    }

    /// Parses the file's text: `version=1` and the three keys are required.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let (mut version, mut cluster_id, mut node_id, mut directory_id) = (None, None, None, None);
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(format!("line '{line}' is not key=value"));
            };
            let value = value.trim().to_string();
            match key.trim() {
                "version" => version = Some(value),
                "cluster.id" => cluster_id = Some(value),
                "node.id" => {
                    node_id = Some(
                        value
                            .parse::<i32>()
                            .map_err(|_| format!("node.id '{value}' is not a number"))?,
                    )
                }
                "directory.id" => directory_id = Some(value),
                _ => {}
            }
        }
        if version.as_deref() != Some("1") {
            return Err(format!(
                "version {} is not supported (1 is)",
                version.as_deref().unwrap_or("(missing)")
            ));
        }
        let cluster_id = cluster_id
            .filter(|c| !c.is_empty())
            .ok_or("cluster.id is missing")?;
        let node_id = node_id.ok_or("node.id is missing")?;
        if node_id < 0 {
            return Err(format!("node.id {node_id} is negative"));
        }
        Ok(MetaProperties {
            cluster_id,
            node_id,
            directory_id: directory_id.unwrap_or_default(),
        })
    }

    /// The identity of data directory `dir`, or None if it has none yet.
    pub fn read(fs: &dyn Fs, dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(META_PROPERTIES);
        if !fs.exists(&path) {
            return Ok(None);
        }
        let f = fs
            .open(&path, false)
            .map_err(|e| StorageError::io(&path, e))?;
        let len = f.len().map_err(|e| StorageError::io(&path, e))?;
        let bad = |why: String| {
            StorageError::io(
                &path,
                std::io::Error::new(std::io::ErrorKind::InvalidData, why),
            )
        };
        if len > META_BYTES_MAX {
            return Err(bad(format!(
                "{len} bytes is too large for an identity file"
            )));
        }
        let mut buf = vec![0u8; len as usize];
        f.read_exact_at(&mut buf, 0)
            .map_err(|e| StorageError::io(&path, e))?;
        let text = String::from_utf8(buf).map_err(|_| bad("not UTF-8".into()))?;
        Self::parse(&text).map(Some).map_err(bad)
    }

    /// Writes the identity of `dir`, durably (old file or new after a crash, never a mix).
    pub fn write(&self, fs: &dyn Fs, dir: &Path) -> Result<()> {
        checkpoint::write_atomically(fs, &dir.join(META_PROPERTIES), &self.encode())
    }

    /// Why `self` (the directory's identity) cannot serve as `cluster_id` / `node_id`, if
    /// it cannot.
    pub fn mismatch(&self, dir: &Path, cluster_id: &str, node_id: i32) -> Option<String> {
        if self.cluster_id != cluster_id {
            return Some(format!(
                "data directory {} belongs to cluster '{}', not '{cluster_id}'",
                dir.display(),
                self.cluster_id
            ));
        }
        if self.node_id != node_id {
            return Some(format!(
                "data directory {} belongs to node {}, not node {node_id}",
                dir.display(),
                self.node_id
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SimFs;

    #[test]
    fn round_trips_and_refuses_what_it_cannot_trust() {
        let fs = SimFs::new();
        let dir = Path::new("/d");
        fs.create_dir_all(dir).unwrap();
        assert_eq!(MetaProperties::read(&fs, dir).unwrap(), None);
        let m = MetaProperties {
            cluster_id: "c1".into(),
            node_id: 3,
            directory_id: "x".into(),
        };
        m.write(&fs, dir).unwrap();
        assert_eq!(MetaProperties::read(&fs, dir).unwrap(), Some(m.clone()));
        assert!(m.mismatch(dir, "c1", 3).is_none());
        assert!(m.mismatch(dir, "c2", 3).unwrap().contains("cluster 'c1'"));
        assert!(m.mismatch(dir, "c1", 4).unwrap().contains("node 3"));
        // Kafka's own file reads too (its comment line and key order).
        let kafka = "#\n#Mon Nov 30\nnode.id=1\ndirectory.id=abc\nversion=1\ncluster.id=AbCd\n";
        assert_eq!(MetaProperties::parse(kafka).unwrap().cluster_id, "AbCd");
        for bad in [
            "version=0\ncluster.id=a\nnode.id=1\n",
            "version=1\nnode.id=1\n",
            "version=1\ncluster.id=a\nnode.id=x\n",
            "version=1\ncluster.id=a\nnode.id=-1\n",
            "version=1\ncluster.id=a\nnode.id=1\ngarbage\n",
        ] {
            assert!(MetaProperties::parse(bad).is_err(), "{bad:?}");
        }
    }
}
