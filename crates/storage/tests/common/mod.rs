//! Helpers shared by the storage integration tests: a simulated file system and clock, and
//! batches from idempotent / transactional producers.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use strata_records::{crc_of, BatchBuilder, Compression, Record};
use strata_storage::{Clock, Fs, Log, LogConfig, ManualClock, SimFs};

pub struct World {
    pub fs: SimFs,
    pub clock: Arc<ManualClock>,
}

impl World {
    pub fn new() -> Self {
        Self {
            fs: SimFs::new(),
            clock: Arc::new(ManualClock::new(1_000_000)),
        }
    }

    pub fn open(&self, config: LogConfig) -> Log {
        let fs: Arc<dyn Fs> = Arc::new(self.fs.clone());
        let clock: Arc<dyn Clock> = self.clock.clone();
        Log::open(fs, clock, Path::new("/data/t-0"), config).unwrap()
    }

    /// A log in `/data/<dir>` (a second partition of the same world).
    pub fn open_at(&self, dir: &str, config: LogConfig) -> Log {
        let fs: Arc<dyn Fs> = Arc::new(self.fs.clone());
        let clock: Arc<dyn Clock> = self.clock.clone();
        Log::open(fs, clock, &Path::new("/data").join(dir), config).unwrap()
    }

    pub fn open_managed(&self, config: LogConfig, hint: strata_storage::RecoveryHint) -> Log {
        let fs: Arc<dyn Fs> = Arc::new(self.fs.clone());
        let clock: Arc<dyn Clock> = self.clock.clone();
        Log::open_managed(fs, clock, Path::new("/data/t-0"), config, hint).unwrap()
    }
}

/// Syncs everything appended, as an acks=all produce waits for.
pub fn sync(log: &mut Log) {
    let (file, end) = log.flush_target();
    file.sync_data().unwrap();
    log.mark_flushed(end);
}

/// A batch of `n` records from producer `pid`/`epoch` starting at sequence `seq`
/// (pid -1: not idempotent).
pub fn producer_batch(pid: i64, epoch: i16, seq: i32, n: usize, transactional: bool) -> Vec<u8> {
    let mut b = BatchBuilder::new(Compression::None);
    for i in 0..n {
        b.push(Record {
            value: Some(Bytes::from(format!(
                "{pid}-{epoch}-{}",
                seq.max(0) as usize + i
            ))),
            timestamp_ms: 1_000_000,
            ..Default::default()
        });
    }
    let mut bytes = b.build().unwrap().to_vec();
    bytes[43..51].copy_from_slice(&pid.to_be_bytes());
    bytes[51..53].copy_from_slice(&epoch.to_be_bytes());
    bytes[53..57].copy_from_slice(&seq.to_be_bytes());
    if transactional {
        bytes[22] |= 0x10;
    }
    let crc = crc_of(&bytes);
    bytes[17..21].copy_from_slice(&crc.to_be_bytes());
    bytes
}
