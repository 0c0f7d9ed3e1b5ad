//! The data directory's identity (meta.properties): written at the first start (or by
//! `strata format`), checked at every start, so a directory is never served as another
//! cluster's or another node's. Directories from before identities existed open unchanged.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata_broker::state::TopicError;
use strata_broker::{Broker, BrokerConfig};
use strata_storage::{Fs, MetaProperties, SimFs, SystemClock};

fn config(cluster: &str, node: i32) -> BrokerConfig {
    BrokerConfig {
        data_dir: PathBuf::from("/data"),
        cluster_id: cluster.into(),
        node_id: node,
        ..BrokerConfig::default()
    }
}

fn open(fs: &SimFs, c: BrokerConfig) -> Result<Broker, TopicError> {
    Broker::open(c, Arc::new(fs.clone()), Arc::new(SystemClock))
}

#[test]
fn a_directory_serves_only_its_own_cluster_and_node() {
    let fs = SimFs::new();
    let b = open(&fs, config("c1", 1)).unwrap();
    b.create_topic("t", 1, -1, Default::default(), false)
        .unwrap();
    b.close();
    drop(b);
    let meta = MetaProperties::read(&fs, Path::new("/data"))
        .unwrap()
        .unwrap();
    assert_eq!((meta.cluster_id.as_str(), meta.node_id), ("c1", 1));
    assert!(!meta.directory_id.is_empty());

    let err = open(&fs, config("c1", 2))
        .err()
        .expect("another node id is refused");
    assert!(err.to_string().contains("belongs to node 1"), "{err}");
    let err = open(&fs, config("c2", 1))
        .err()
        .expect("another cluster is refused");
    assert!(err.to_string().contains("belongs to cluster 'c1'"), "{err}");
    let b = open(&fs, config("c1", 1)).unwrap();
    assert!(
        b.partition("t", 0).is_some(),
        "the right identity opens it, data intact"
    );
    b.close();
    drop(b);

    // A directory written before identities existed: adopted as this node's, data kept.
    fs.remove_file(Path::new("/data/meta.properties")).unwrap();
    let b = open(&fs, config("c9", 7)).unwrap();
    assert!(b.partition("t", 0).is_some());
    let meta = MetaProperties::read(&fs, Path::new("/data"))
        .unwrap()
        .unwrap();
    assert_eq!((meta.cluster_id.as_str(), meta.node_id), ("c9", 7));
    assert_ne!(meta.directory_id, "", "a fresh directory id");
}
