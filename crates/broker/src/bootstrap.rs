//! What `strata format` leaves for a node's first start (Kafka's `bootstrap.checkpoint`):
//! SCRAM credentials from `--add-scram`, so the first admin can authenticate before any
//! user exists.
//!
//! On disk: `<data-dir>/bootstrap.json`, a JSON array of metadata records (salts and keys,
//! never passwords), written atomically by `strata format`. At start, once the node is
//! registered (its metadata log or the quorum is writable), every credential in it that the
//! cluster does not have yet for that user and mechanism is committed, and the file is
//! renamed `bootstrap.json.applied`. A credential an admin has set since is never
//! overwritten, so a node formatted later with the same flags changes nothing; a crash
//! before the rename applies the same file again, which is then a no-op.

use std::path::Path;

use strata_cluster::MetadataRecord;
use strata_security::{ScramCredential, ScramMechanism, SCRAM_ITERATIONS_MIN};
use strata_storage::{Fs, StorageError};
use tracing::info;

use crate::state::TopicError;
use crate::Broker;

pub const BOOTSTRAP_FILE: &str = "bootstrap.json";
const APPLIED_FILE: &str = "bootstrap.json.applied";
/// Far more than any list of users typed on a command line.
const BOOTSTRAP_BYTES_MAX: u64 = 4 << 20;

/// Writes the bootstrap records of data directory `dir` (`strata format`).
pub fn write(fs: &dyn Fs, dir: &Path, records: &[MetadataRecord]) -> Result<(), StorageError> {
    let body = serde_json::to_string_pretty(records).expect("records serialize");
    strata_storage::checkpoint::write_atomically(fs, &dir.join(BOOTSTRAP_FILE), &body)
}

/// One `--add-scram` argument in Kafka's syntax:
/// `SCRAM-SHA-256=[name=alice,password=alice-secret]`, optionally with `iterations=N`, or
/// with `salt=…,saltedpassword=…` (base64) instead of the password. Values may be quoted.
pub fn parse_add_scram(arg: &str) -> Result<MetadataRecord, String> {
    let (mechanism, rest) = arg
        .split_once('=')
        .ok_or_else(|| format!("'{arg}': expected MECHANISM=[name=…,password=…]"))?;
    let mechanism = ScramMechanism::parse(mechanism.trim())
        .ok_or_else(|| format!("'{mechanism}' is not SCRAM-SHA-256 or SCRAM-SHA-512"))?;
    let body = rest
        .trim()
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .ok_or_else(|| format!("'{arg}': the settings go in [ ]"))?;
    let mut fields = std::collections::BTreeMap::new();
    for pair in split_unquoted(body)? {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("'{pair}' is not key=value"))?;
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v);
        if fields.insert(k.trim().to_string(), v.to_string()).is_some() {
            return Err(format!("'{k}' is given twice"));
        }
    }
    let name = fields
        .remove("name")
        .filter(|n| !n.is_empty())
        .ok_or("a user needs a name=")?;
    let iterations = match fields.remove("iterations") {
        Some(i) => i
            .parse::<u32>()
            .map_err(|_| format!("iterations '{i}' is not a number"))?,
        None => SCRAM_ITERATIONS_MIN,
    };
    let credential = match (
        fields.remove("password"),
        fields.remove("salt"),
        fields.remove("saltedpassword"),
    ) {
        (Some(p), None, None) => ScramCredential::from_password(mechanism, &p, iterations),
        (None, Some(salt), Some(salted)) => {
            let decode = |what: &str, v: &str| {
                data_encoding::BASE64
                    .decode(v.as_bytes())
                    .map_err(|_| format!("{what} is not base64"))
            };
            ScramCredential::from_salted_password(
                mechanism,
                decode("salt", &salt)?,
                &decode("saltedpassword", &salted)?,
                iterations,
            )
        }
        _ => return Err("give either password= or both salt= and saltedpassword=".into()),
    };
    if let Some(k) = fields.keys().next() {
        return Err(format!("unknown setting '{k}'"));
    }
    if let Some(why) = credential.invalid() {
        return Err(why);
    }
    Ok(MetadataRecord::ScramCredential {
        user: name,
        mechanism: mechanism.name().to_string(),
        salt: credential.salt,
        stored_key: credential.stored_key,
        server_key: credential.server_key,
        iterations,
    })
}

/// Splits at commas outside double quotes.
fn split_unquoted(s: &str) -> Result<Vec<&str>, String> {
    let (mut out, mut start, mut quoted) = (Vec::new(), 0, false);
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if quoted {
        return Err(format!("unbalanced quotes in '{s}'"));
    }
    out.push(&s[start..]);
    Ok(out.into_iter().filter(|p| !p.trim().is_empty()).collect())
}

impl Broker {
    /// Commits the data directory's bootstrap records the cluster lacks, then marks the file
    /// applied (see the module documentation).
    pub(crate) fn apply_bootstrap(&self) -> Result<(), TopicError> {
        let dir = &self.config.data_dir;
        let path = dir.join(BOOTSTRAP_FILE);
        if !self.fs.exists(&path) {
            return Ok(());
        }
        let io = |e: std::io::Error| TopicError::Storage(StorageError::io(&path, e));
        let f = self.fs.open(&path, false).map_err(io)?;
        let len = f.len().map_err(io)?;
        if len > BOOTSTRAP_BYTES_MAX {
            return Err(io(std::io::Error::other(format!(
                "{len} bytes is too large for a bootstrap file"
            ))));
        }
        let mut buf = vec![0u8; len as usize];
        f.read_exact_at(&mut buf, 0).map_err(io)?;
        let records: Vec<MetadataRecord> = serde_json::from_slice(&buf)
            .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
        let metadata = self.metadata();
        let image = metadata.image();
        let missing: Vec<MetadataRecord> = records
            .into_iter()
            .filter(|r| match r {
                MetadataRecord::ScramCredential {
                    user, mechanism, ..
                } => image.scram_credential(user, mechanism).is_none(),
                _ => false,
            })
            .collect();
        if missing.is_empty() {
            drop(metadata);
        } else {
            let users: Vec<String> = missing
                .iter()
                .filter_map(|r| match r {
                    MetadataRecord::ScramCredential {
                        user, mechanism, ..
                    } => Some(format!("{user} ({mechanism})")),
                    _ => None,
                })
                .collect();
            self.commit_metadata(metadata, &missing)?;
            info!(credentials = %users.join(", "), "bootstrap SCRAM credentials added");
        }
        self.fs.rename(&path, &dir.join(APPLIED_FILE)).map_err(io)?;
        self.fs.sync_dir(dir).map_err(io)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_scram_in_kafkas_syntax() {
        let r = parse_add_scram("SCRAM-SHA-512=[name=admin,password=\"a,b=c\"]").unwrap();
        let MetadataRecord::ScramCredential {
            user,
            mechanism,
            salt,
            stored_key,
            iterations,
            ..
        } = r
        else {
            panic!()
        };
        assert_eq!(
            (user.as_str(), mechanism.as_str(), iterations),
            ("admin", "SCRAM-SHA-512", 4096)
        );
        let c = ScramCredential {
            mechanism: ScramMechanism::Sha512,
            salt,
            stored_key,
            server_key: vec![0; 64],
            iterations,
        };
        assert!(c.verifies_password(b"a,b=c"));
        let r = parse_add_scram(
            "SCRAM-SHA-256=[name=alice,iterations=8192,salt=\"MWx2NHBkbnc0ZndxN25vdGN4bTB5eTFrN3E=\",saltedpassword=\"mT0yyUUxnlJaC99HXgRTSYlbuqa4FSGtJCJfTMvjYCE=\"]",
        )
        .unwrap();
        assert!(matches!(
            r,
            MetadataRecord::ScramCredential {
                iterations: 8192,
                ..
            }
        ));
        for bad in [
            "SCRAM-SHA-1=[name=a,password=b]",
            "SCRAM-SHA-256=name=a,password=b",
            "SCRAM-SHA-256=[password=b]",
            "SCRAM-SHA-256=[name=a]",
            "SCRAM-SHA-256=[name=a,password=b,iterations=100]",
            "SCRAM-SHA-256=[name=a,password=b,colour=red]",
            "SCRAM-SHA-256=[name=a,password=\"b]",
            "SCRAM-SHA-256=[name=a,name=b,password=c]",
            "SCRAM-SHA-256=[name=a,salt=AAAA]",
        ] {
            assert!(parse_add_scram(bad).is_err(), "{bad}");
        }
    }
}
