//! Runs the log cleaner (`strata_storage::cleaner`) in the background: one pass at a time on
//! the compacted log that most needs it — dirty ratio at least `min.cleanable.dirty.ratio`,
//! or dirty records older than `max.compaction.lag.ms` — planned and swapped under the
//! partition lock, read and written without it, so producers are not stalled. After each
//! pass a log line gives what it did, and every compacted log's first dirty offset is
//! written to `<data-dir>/cleaner-offset-checkpoint` (Kafka's name, by the storage
//! `LogManager`), so a restart resumes where cleaning stopped instead of remapping from the
//! log start.

use std::sync::Arc;
use std::time::Duration;

use strata_storage::cleaner::CleanStats;
use strata_storage::Partition;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::Broker;

impl Broker {
    /// The compacted log to clean next, if any needs it.
    fn dirtiest_log(&self) -> Option<Arc<Partition>> {
        let now = self.clock.now_ms();
        let mut best: Option<(bool, f64, Arc<Partition>)> = None;
        for p in self.all_partitions() {
            let (ratio, overdue, due) = {
                let log = p.log();
                let config = log.config();
                if !config.cleanup_compact {
                    continue;
                }
                let (dirty, total) = log.dirty_bytes();
                if dirty == 0 || total == 0 {
                    continue;
                }
                let ratio = dirty as f64 / total as f64;
                let overdue = log.oldest_dirty_timestamp().is_some_and(|t| {
                    t >= 0 && t < now.saturating_sub(config.max_compaction_lag_ms)
                });
                let due = ratio * 1e6 >= f64::from(config.min_cleanable_dirty_ratio_ppm);
                (ratio, overdue, due)
            };
            if !(due || overdue) {
                continue;
            }
            let better = match &best {
                None => true,
                Some((o, r, _)) => (overdue, ratio) > (*o, *r),
            };
            if better {
                best = Some((overdue, ratio, p));
            }
        }
        best.map(|(_, _, p)| p)
    }

    /// One cleaning pass, if a log needs one (blocking). The pass is planned and swapped
    /// under the partition's lock and does its reading and writing without it.
    pub fn clean_once(&self) -> Option<(Arc<Partition>, CleanStats)> {
        let partition = self.dirtiest_log()?;
        let job = partition.log().plan_clean()?;
        let out = match job.run_cancellable(&self.config.cleaner_config(), self.shutdown_flag()) {
            Ok(out) => out,
            Err(strata_storage::StorageError::CleaningCancelled) => {
                // Its `cleaning/` directory is discarded at the next pass or start.
                info!(topic = %partition.topic, partition = partition.partition, "cleaning pass cancelled by shutdown");
                return None;
            }
            Err(e) => {
                warn!(topic = %partition.topic, partition = partition.partition, error = %e, "cleaning failed");
                self.metrics
                    .cleaner
                    .failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return None;
            }
        };
        let finished = partition.log().finish_clean(out);
        let stats = match finished {
            Ok(Some(stats)) => stats,
            Ok(None) => {
                info!(topic = %partition.topic, partition = partition.partition, "cleaning pass discarded: segments changed meanwhile");
                return None;
            }
            Err(e) => {
                warn!(topic = %partition.topic, partition = partition.partition, error = %e, "could not swap in cleaned segments");
                return None;
            }
        };
        info!(
            topic = %partition.topic,
            partition = partition.partition,
            bytes_read = stats.bytes_read,
            bytes_written = stats.bytes_written,
            keys = stats.keys,
            records_removed = stats.records_removed,
            segments_rewritten = stats.segments_rewritten,
            first_dirty = stats.first_dirty,
            cleaned_to = stats.mapped_end,
            duration_ms = stats.duration_ms,
            "log cleaned"
        );
        self.metrics.cleaner.record(&stats);
        self.checkpoint_cleaner_offsets();
        Some((partition, stats))
    }

    /// Writes every compacted log's first dirty offset (`cleaner-offset-checkpoint`).
    pub fn checkpoint_cleaner_offsets(&self) {
        if let Err(e) = self
            .log_manager()
            .checkpoint_cleaner_offsets(&self.all_partitions())
        {
            warn!(error = %e, "could not write the cleaner checkpoint");
        }
    }
}

/// The cleaner's loop: a pass whenever a log needs one, else a nap of
/// `log.cleaner.backoff.ms`. Stops at shutdown (after the pass in progress).
pub async fn cleaner_work(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    if !broker.config.log_cleaner_enable {
        return;
    }
    let backoff = Duration::from_millis(broker.config.log_cleaner_backoff_ms.max(10));
    loop {
        if *stop.borrow() {
            return;
        }
        let b = broker.clone();
        let cleaned = tokio::task::spawn_blocking(move || b.clean_once().is_some())
            .await
            .unwrap_or(false);
        if cleaned {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
    }
}
