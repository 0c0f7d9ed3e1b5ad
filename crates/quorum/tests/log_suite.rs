//! openraft's own conformance suite for log storage and state machines, run against the raft
//! log on Strata's segment log and the metadata image state machine.

use std::path::Path;
use std::sync::Arc;

use openraft::testing::log::{StoreBuilder, Suite};
use openraft::StorageError;
use strata_quorum::{LogStore, StateMachine, TypeConfig};
use strata_storage::{Clock, Fs, ManualClock, SimFs};

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, ()> for Builder {
    async fn build(&self) -> Result<((), LogStore, StateMachine), StorageError<TypeConfig>> {
        let fs: Arc<dyn Fs> = Arc::new(SimFs::new());
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(0));
        let dir = Path::new("/meta/quorum");
        fs.create_dir_all(dir).unwrap();
        let log = LogStore::open(fs.clone(), clock, dir).unwrap();
        Ok(((), log, StateMachine::new(fs, dir)))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_log_storage_suite_passes() {
    Suite::test_all(Builder).await.unwrap();
}
