//! Strata's storage engine: partition logs made of segments, as Kafka lays them out.
//!
//! Layers, bottom up: [`index`] (sparse offset and time indexes) → [`segment`] (one `.log`
//! file plus its indexes; [`segment::ActiveSegment`] takes appends, [`segment::SealedSegment`]
//! is immutable) → [`log::Log`] (the ordered segments of one partition: append, read,
//! roll, retention, recovery) → [`partition::Partition`] (a log shared between threads, with
//! group commit and the high watermark).
//!
//! This crate knows nothing of sockets or Kafka requests: it speaks record batches, offsets
//! and its own [`StorageError`]. File system and clock come in through [`fs::Fs`] and
//! [`clock::Clock`] so tests can lose unsynced writes, tear writes, flip bits and move time.

pub mod checkpoint;
pub mod cleaner;
pub mod clock;
pub mod config;
pub mod error;
pub mod fs;
pub mod index;
pub mod leader_epoch;
pub mod log;
pub mod log_manager;
pub mod meta;
pub mod partition;
pub mod producer_state;
pub mod replica_fetch;
pub mod segment;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{LogConfig, TimestampType};
pub use error::StorageError;
pub use fs::{Fs, FsFile, RealFs, SimFs};
pub use log::{AppendInfo, FetchData, Log, RecoveryHint, SegmentFiles};
pub use log_manager::{LogManager, RecoveryState};
pub use meta::MetaProperties;
pub use partition::{FilesystemSync, IsolatedSlice, Partition};
pub use producer_state::{ProducerState, SequenceCheck, SequenceError};
pub use replica_fetch::{FetchPosition, LeaderAnswer};
