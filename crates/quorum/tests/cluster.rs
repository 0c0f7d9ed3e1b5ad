//! Three quorum members on loopback: writes from any member reach every image, conflicting
//! changes are refused the same way everywhere, the quorum survives its leader's loss, and
//! members that restart (from their log, or from a snapshot) come back with the same image.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use strata_cluster::{MetadataImage, MetadataRecord};
use strata_quorum::transport::{JaasUsers, Sasl, Transport};
use strata_quorum::{Quorum, QuorumConfig, QuorumError};
use strata_security::{Mechanism, ScramMechanism};
use strata_storage::{Clock, Fs, RealFs, SystemClock};
use uuid::Uuid;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Cluster {
    _dirs: Vec<tempfile::TempDir>,
    paths: Vec<PathBuf>,
    voters: BTreeMap<u64, String>,
    nodes: Vec<Option<Arc<Quorum>>>,
    /// Each member's controller-listener security (plaintext unless a test sets it).
    transports: BTreeMap<u64, Arc<Transport>>,
}

impl Cluster {
    async fn start() -> Self {
        Self::start_secured(BTreeMap::new()).await
    }

    /// Three members, each with its transport (plaintext for those not named).
    async fn start_secured(transports: BTreeMap<u64, Arc<Transport>>) -> Self {
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let voters: BTreeMap<u64, String> = (1..=3)
            .map(|id| (id, format!("127.0.0.1:{}", free_port())))
            .collect();
        let mut c = Self {
            paths: dirs.iter().map(|d| d.path().to_path_buf()).collect(),
            _dirs: dirs,
            voters,
            nodes: vec![None, None, None],
            transports,
        };
        for id in 1..=3 {
            c.start_node(id).await;
        }
        c
    }

    async fn start_node(&mut self, id: u64) {
        let fs: Arc<dyn Fs> = Arc::new(RealFs);
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let mut config = QuorumConfig::new(
            id,
            self.voters.clone(),
            self.voters[&id].clone(),
            self.paths[id as usize - 1].clone(),
        );
        config.heartbeat_ms = 100;
        config.election_timeout_min_ms = 400;
        config.election_timeout_max_ms = 800;
        if let Some(t) = self.transports.get(&id) {
            config.transport = t.clone();
        }
        self.nodes[id as usize - 1] = Some(Quorum::start(fs, clock, config).await.unwrap());
    }

    async fn stop_node(&mut self, id: u64) {
        if let Some(q) = self.nodes[id as usize - 1].take() {
            q.shutdown().await;
        }
    }

    fn node(&self, id: u64) -> &Arc<Quorum> {
        self.nodes[id as usize - 1].as_ref().unwrap()
    }

    async fn leader(&self) -> u64 {
        for _ in 0..200 {
            for q in self.nodes.iter().flatten() {
                if let Some(l) = q.status().leader {
                    if self.nodes[l as usize - 1].is_some() {
                        return l;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no leader elected");
    }

    /// Waits until every running member's image satisfies `check`.
    async fn converge(&self, check: impl Fn(&MetadataImage) -> bool) {
        for _ in 0..200 {
            if self.nodes.iter().flatten().all(|q| check(&q.image())) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("members did not converge");
    }
}

fn topic(name: &str) -> Vec<MetadataRecord> {
    let topic_id = Uuid::new_v4();
    vec![
        MetadataRecord::Topic {
            name: name.into(),
            topic_id,
            configs: BTreeMap::new(),
        },
        MetadataRecord::Partition {
            topic_id,
            partition: 0,
            leader: 1,
            leader_epoch: 0,
            replicas: vec![1],
            isr: vec![1],
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_from_any_member_reach_every_image_and_survive_failover_and_restarts() {
    let mut c = Cluster::start().await;
    let leader = c.leader().await;
    let follower = (1..=3).find(|&id| id != leader).unwrap();

    // A write through a follower is forwarded to the leader, and visible on the follower
    // when it returns.
    c.node(follower).write(topic("a")).await.unwrap();
    assert!(c.node(follower).image().topic("a").is_some());
    c.converge(|i| i.topic("a").is_some()).await;

    // The same name again, from another member: refused by the image on every node alike.
    let other = (1..=3).find(|&id| id != follower).unwrap();
    match c.node(other).write(topic("a")).await {
        Err(QuorumError::Rejected(r)) => assert!(r.topic_exists, "{r}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    c.converge(|i| i.topics().count() == 1).await;

    // The leader goes away: the other two elect a new one and keep taking writes.
    c.stop_node(leader).await;
    let new_leader = c.leader().await;
    assert_ne!(new_leader, leader);
    let survivor = (1..=3).find(|&id| id != leader).unwrap();
    c.node(survivor).write(topic("b")).await.unwrap();

    // The old leader comes back from its log and catches up.
    c.start_node(leader).await;
    c.converge(|i| i.topic("a").is_some() && i.topic("b").is_some())
        .await;

    // Every member snapshots, writes go on, and everyone restarts: the images come back
    // from snapshot plus log.
    for id in 1..=3 {
        c.node(id).snapshot_now().await.unwrap();
    }
    let writer = c.leader().await;
    c.node(writer).write(topic("c")).await.unwrap();
    c.converge(|i| i.topics().count() == 3).await;
    let before = c.node(writer).image();
    for id in 1..=3 {
        c.stop_node(id).await;
    }
    for id in 1..=3 {
        c.start_node(id).await;
    }
    c.leader().await;
    c.converge(|i| *i == *before).await;
    let writer = c.leader().await;
    c.node(writer).write(topic("d")).await.unwrap();
    c.converge(|i| i.topics().count() == 4).await;
    for id in 1..=3 {
        c.stop_node(id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_majority_writes_fail_and_nothing_changes() {
    let mut c = Cluster::start().await;
    let leader = c.leader().await;
    c.node(leader).write(topic("x")).await.unwrap();
    let others: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();
    for &id in &others {
        c.stop_node(id).await;
    }
    let lone = c.nodes[leader as usize - 1].take().unwrap();
    // The write cannot commit without a second member (cut short here; alone it would fail
    // after the write timeout).
    let result = tokio::time::timeout(Duration::from_secs(5), lone.write(topic("y"))).await;
    assert!(
        !matches!(result, Ok(Ok(_))),
        "a write committed without a majority"
    );
    assert!(lone.image().topic("y").is_none());
    assert!(lone.image().topic("x").is_some());
    lone.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_caught_up_with_the_leader_shows_every_acknowledged_write() {
    let mut c = Cluster::start().await;
    let leader = c.leader().await;
    let followers: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();
    for round in 0..5 {
        // Writes acknowledged by the leader (applied there; followers learn the commit on
        // the next append or heartbeat)...
        let mut last = 0;
        for i in 0..10 {
            last = c
                .node(leader)
                .write(topic(&format!("t{round}-{i}")))
                .await
                .unwrap();
        }
        // ...are all in a follower's image once it caught up with the leader's read index,
        // at once, without waiting for the next heartbeat.
        for &f in &followers {
            let index = c
                .node(f)
                .catch_up_with_leader(std::time::Instant::now() + Duration::from_secs(5))
                .await
                .unwrap();
            assert!(
                index >= last,
                "read index {index} below the write at {last}"
            );
            let image = c.node(f).image();
            for i in 0..10 {
                assert!(
                    image.topic(&format!("t{round}-{i}")).is_some(),
                    "node {f} misses t{round}-{i} after catching up"
                );
            }
        }
    }
    // Without a leader there is nothing to catch up with: an error, not a wait forever.
    c.stop_node(leader).await;
    let f = followers[0];
    c.stop_node(followers[1]).await;
    let result = c
        .node(f)
        .catch_up_with_leader(std::time::Instant::now() + Duration::from_secs(3))
        .await;
    assert!(
        result.is_err(),
        "caught up with no majority alive: {result:?}"
    );
    c.stop_node(f).await;
}

/// SCRAM on the controller listener: members log in as `ctl` and check peers against
/// `users` (a JAAS line's `user_NAME="password"` entries).
fn scram(password: &str, users: &str) -> Arc<Transport> {
    Arc::new(Transport {
        sasl: Some(Sasl {
            mechanism: Mechanism::Scram(ScramMechanism::Sha256),
            user: "ctl".into(),
            password: password.into(),
            accepted: vec![Mechanism::Scram(ScramMechanism::Sha256)],
            credentials: Arc::new(JaasUsers::parse(users).with_scram()),
            failure_delay: Duration::ZERO,
        }),
        ..Transport::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_authenticate_each_other_and_one_with_other_credentials_is_shut_out() {
    // Members 1 and 2 share the controller credentials; member 3 was given other ones, so
    // it can neither log in to them nor let them log in to it.
    let good = scram("ctl-secret", r#"x required user_ctl="ctl-secret";"#);
    let odd = scram("other", r#"x required user_ctl="other";"#);
    let transports = BTreeMap::from([(1, good.clone()), (2, good), (3, odd)]);
    let mut c = Cluster::start_secured(transports).await;
    let leader = c.leader().await;
    assert_ne!(leader, 3, "member 3 cannot win a vote nobody can hear");
    c.node(leader).write(topic("secured")).await.unwrap();
    for id in [1, 2] {
        for _ in 0..200 {
            if c.node(id).image().topic("secured").is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(c.node(id).image().topic("secured").is_some(), "member {id}");
    }
    // Member 3 never receives the entry, however long the others keep trying.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(c.node(3).image().topic("secured").is_none());
    for id in 1..=3 {
        c.stop_node(id).await;
    }
}
