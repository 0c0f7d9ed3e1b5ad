//! KIP-848 consumer groups as a state machine: joins, reconciliation with revocation before
//! hand-over, epoch fencing, static members, expiry — and a property test that no partition
//! is ever owned by two members while every partition ends up owned.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use strata_group::*;
use uuid::Uuid;

const T: Uuid = Uuid::from_u128(7);

fn topics(partitions: i32) -> Vec<TopicInfo> {
    vec![TopicInfo {
        name: "t".into(),
        id: T,
        partitions,
    }]
}

fn coordinator() -> Coordinator {
    let mut c = Coordinator::new(GroupConfig {
        consumer_session_timeout_ms: 10_000,
        ..GroupConfig::default()
    });
    c.finish_loading(0);
    c
}

fn hb(member: &str, epoch: i32, owned: Option<&BTreeSet<i32>>) -> ConsumerHeartbeat {
    ConsumerHeartbeat {
        group_id: "g".into(),
        member_id: member.into(),
        member_epoch: epoch,
        group_instance_id: None,
        rack_id: None,
        rebalance_timeout_ms: 30_000,
        subscribed_topic_names: (epoch == 0).then(|| vec!["t".to_string()]),
        server_assignor: None,
        owned: owned.map(|o| vec![(T, o.iter().copied().collect())]),
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
    }
}

thread_local! {
    /// Every record the coordinator asked to persist, in order (for the replay test).
    static LOG: std::cell::RefCell<Vec<Effect>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn record(effects: Vec<Effect>) {
    LOG.with(|l| l.borrow_mut().extend(effects));
}

/// What a client believes it owns, as librdkafka would track it.
#[derive(Debug, Clone, Default)]
struct Client {
    id: String,
    epoch: i32,
    owned: BTreeSet<i32>,
}

impl Client {
    fn heartbeat(&mut self, c: &mut Coordinator, parts: i32, now: i64) -> Result<()> {
        let owned = (self.epoch > 0).then_some(&self.owned);
        let (result, effects) =
            c.consumer_heartbeat(hb(&self.id, self.epoch, owned), &topics(parts), now);
        record(effects);
        match result {
            Ok(r) => {
                self.epoch = r.member_epoch;
                if let Some(a) = r.assignment {
                    self.owned = a
                        .into_iter()
                        .filter(|(t, _)| *t == T)
                        .flat_map(|(_, ps)| ps)
                        .collect();
                }
                Ok(())
            }
            Err(e) => {
                // Fenced or unknown: the client drops everything and rejoins.
                self.epoch = 0;
                self.owned.clear();
                Err(e)
            }
        }
    }
}

fn join(c: &mut Coordinator, id: &str, parts: i32, now: i64) -> Client {
    let mut client = Client {
        id: id.into(),
        ..Client::default()
    };
    client.heartbeat(c, parts, now).unwrap();
    client
}

fn assert_disjoint(clients: &[&Client]) {
    let mut seen = BTreeMap::new();
    for cl in clients {
        for p in &cl.owned {
            if let Some(other) = seen.insert(*p, cl.id.clone()) {
                panic!("partition {p} owned by both {other} and {}", cl.id);
            }
        }
    }
}

#[test]
fn single_member_gets_everything() {
    let mut c = coordinator();
    let a = join(&mut c, "a", 4, 0);
    assert_eq!(a.owned, BTreeSet::from([0, 1, 2, 3]));
    assert_eq!(a.epoch, 1);
    let d = c.consumer_describe("g").unwrap().unwrap();
    assert_eq!(
        (d.state, d.group_epoch, d.assignment_epoch),
        ("Stable", 1, 1)
    );
    assert_eq!(c.list().unwrap()[0].group_type, "consumer");
}

#[test]
fn second_member_waits_for_revocation_before_hand_over() {
    let mut c = coordinator();
    let mut a = join(&mut c, "a", 4, 0);
    let mut b = join(&mut c, "b", 4, 10);
    // b joined at epoch 2 but a still owns everything: b gets nothing yet.
    assert_eq!(b.epoch, 2);
    assert!(b.owned.is_empty());
    assert_eq!(
        c.consumer_describe("g").unwrap().unwrap().state,
        "Reconciling"
    );
    // a's next heartbeat tells it to revoke two partitions; its epoch stays until it has.
    a.heartbeat(&mut c, 4, 20).unwrap();
    assert_eq!(a.owned.len(), 2);
    assert_eq!(a.epoch, 1);
    assert_disjoint(&[&a, &b]);
    // b still cannot have them: a has not confirmed.
    b.heartbeat(&mut c, 4, 30).unwrap();
    assert!(b.owned.is_empty());
    // a confirms (heartbeat reporting what it owns now) and moves to epoch 2.
    a.heartbeat(&mut c, 4, 40).unwrap();
    assert_eq!(a.epoch, 2);
    b.heartbeat(&mut c, 4, 50).unwrap();
    assert_eq!(b.owned.len(), 2);
    assert_disjoint(&[&a, &b]);
    assert_eq!(c.consumer_describe("g").unwrap().unwrap().state, "Stable");
}

#[test]
fn stale_and_fenced_epochs() {
    let mut c = coordinator();
    let a = join(&mut c, "a", 2, 0);
    // A heartbeat from the future or far past is fenced.
    let err = c
        .consumer_heartbeat(hb("a", 7, Some(&a.owned)), &topics(2), 5)
        .0
        .unwrap_err();
    assert!(matches!(
        err,
        GroupError::FencedMemberEpoch { got: 7, current: 1 }
    ));
    // Unknown member.
    let err = c
        .consumer_heartbeat(hb("zz", 1, None), &topics(2), 5)
        .0
        .unwrap_err();
    assert_eq!(err, GroupError::UnknownMemberId);
    // Offset commits carry the member epoch.
    let commit = |epoch| CommitRequest {
        group_id: "g".into(),
        generation_id_or_member_epoch: epoch,
        member_id: "a".into(),
        group_instance_id: None,
        topics: vec![(
            "t".into(),
            vec![CommitPartition {
                partition: 0,
                offset: 0,
                leader_epoch: -1,
                metadata: None,
            }],
        )],
    };
    let hw = |_: &str, _: i32| Some(10);
    assert!(matches!(
        c.commit_offsets(commit(0), 6, &hw).0,
        Err(GroupError::StaleMemberEpoch { .. })
    ));
    assert!(c.commit_offsets(commit(1), 6, &hw).0.is_ok());
    // A classic member cannot join a group in use by KIP-848 members.
    let e = c.join(
        JoinRequest {
            group_id: "g".into(),
            member_id: String::new(),
            group_instance_id: None,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Default::default())],
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 10_000,
            client_id: "c".into(),
            client_host: "h".into(),
            require_known_member_id: false,
        },
        1,
        7,
    );
    assert!(matches!(
        &e[0],
        Effect::Join { response, .. } if matches!(response.error, Some(GroupError::GroupIdInUseByOtherProtocol(_)))
    ));
}

#[test]
fn leave_and_session_expiry_free_partitions() {
    let mut c = coordinator();
    let mut a = join(&mut c, "a", 4, 0);
    let mut b = join(&mut c, "b", 4, 0);
    for t in 1..5 {
        a.heartbeat(&mut c, 4, t).unwrap();
        b.heartbeat(&mut c, 4, t).unwrap();
    }
    assert_eq!(a.owned.len() + b.owned.len(), 4);
    // b leaves: a gets everything on its next heartbeat.
    c.consumer_heartbeat(hb("b", -1, None), &topics(4), 10)
        .0
        .unwrap();
    a.heartbeat(&mut c, 4, 11).unwrap();
    assert_eq!(a.owned.len(), 4);
    // b rejoins, then stops heartbeating: after the session timeout a has all again.
    let mut b = join(&mut c, "b", 4, 12);
    for t in (100..9_000).step_by(1000) {
        a.heartbeat(&mut c, 4, t).unwrap();
        c.tick(t);
    }
    b.heartbeat(&mut c, 4, 9_100).unwrap();
    a.heartbeat(&mut c, 4, 9_200).unwrap();
    assert_eq!(b.owned.len(), 2);
    for t in (9_300..22_000).step_by(1000) {
        a.heartbeat(&mut c, 4, t).unwrap();
        c.tick(t);
    }
    assert_eq!(a.owned.len(), 4);
    assert_eq!(
        c.consumer_heartbeat(hb("b", b.epoch, Some(&b.owned)), &topics(4), 22_001)
            .0
            .unwrap_err(),
        GroupError::UnknownMemberId
    );
}

#[test]
fn static_member_restart_keeps_assignment_and_fences_old_instance() {
    let mut c = coordinator();
    let mut a = join(&mut c, "a", 4, 0);
    let mut s = hb("s1", 0, None);
    s.group_instance_id = Some("inst".into());
    c.consumer_heartbeat(s.clone(), &topics(4), 1).0.unwrap();
    for t in 2..6 {
        a.heartbeat(&mut c, 4, t).unwrap();
        let mut h = hb(
            "s1",
            c.consumer_describe("g").unwrap().unwrap().members[1].member_epoch,
            None,
        );
        h.group_instance_id = Some("inst".into());
        c.consumer_heartbeat(h, &topics(4), t).0.unwrap();
    }
    let before = c.consumer_describe("g").unwrap().unwrap();
    let s_assigned = before
        .members
        .iter()
        .find(|m| m.member_id == "s1")
        .unwrap()
        .assignment
        .clone();
    assert!(!s_assigned.is_empty());
    // The process is killed and restarts with a new member id and the same instance id.
    let mut s2 = hb("s2", 0, None);
    s2.group_instance_id = Some("inst".into());
    let r = c.consumer_heartbeat(s2, &topics(4), 10).0.unwrap();
    let got: BTreeSet<i32> = r
        .assignment
        .unwrap()
        .into_iter()
        .flat_map(|(_, p)| p)
        .collect();
    assert_eq!(got, s_assigned[&T]);
    let after = c.consumer_describe("g").unwrap().unwrap();
    assert_eq!(after.group_epoch, before.group_epoch, "no rebalance");
    // The old instance is fenced for good.
    let mut old = hb("s1", 2, None);
    old.group_instance_id = Some("inst".into());
    assert_eq!(
        c.consumer_heartbeat(old, &topics(4), 11).0.unwrap_err(),
        GroupError::FencedInstanceId("inst".into())
    );
    // A static member leaving with epoch -2 keeps its place until it returns.
    let mut leave = hb("s2", -2, None);
    leave.group_instance_id = Some("inst".into());
    c.consumer_heartbeat(leave, &topics(4), 12).0.unwrap();
    let mut back = hb("s3", 0, None);
    back.group_instance_id = Some("inst".into());
    let r = c.consumer_heartbeat(back, &topics(4), 13).0.unwrap();
    let got: BTreeSet<i32> = r
        .assignment
        .unwrap()
        .into_iter()
        .flat_map(|(_, p)| p)
        .collect();
    assert_eq!(got, s_assigned[&T]);
}

#[test]
fn new_partitions_are_assigned() {
    let mut c = coordinator();
    let mut a = join(&mut c, "a", 2, 0);
    a.heartbeat(&mut c, 5, 1).unwrap();
    assert_eq!(a.owned, BTreeSet::from([0, 1, 2, 3, 4]));
    assert_eq!(a.epoch, 2);
}

#[test]
fn unknown_assignor_refused() {
    let mut c = coordinator();
    let mut h = hb("a", 0, None);
    h.server_assignor = Some("nope".into());
    assert_eq!(
        c.consumer_heartbeat(h, &topics(1), 0).0.unwrap_err(),
        GroupError::UnsupportedAssignor("nope".into())
    );
    let mut h = hb("a", 0, None);
    h.server_assignor = Some("range".into());
    c.consumer_heartbeat(h, &topics(3), 0).0.unwrap();
    assert_eq!(
        c.consumer_describe("g").unwrap().unwrap().assignor_name,
        "range"
    );
}

#[derive(Debug, Clone)]
enum Op {
    Join(usize),
    Heartbeat(usize),
    Leave(usize),
    /// The client vanishes; the session timeout passes.
    Kill(usize),
    Grow,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..5usize).prop_map(Op::Join),
        (0..5usize).prop_map(Op::Heartbeat),
        (0..5usize).prop_map(Op::Heartbeat),
        (0..5usize).prop_map(Op::Heartbeat),
        (0..5usize).prop_map(Op::Leave),
        (0..5usize).prop_map(Op::Kill),
        Just(Op::Grow),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Safety: two live clients never own the same partition. Liveness: once everyone
    /// heartbeats a few times with nothing changing, every partition is owned by exactly
    /// one client and the group is Stable.
    #[test]
    fn no_partition_owned_twice_and_convergence(ops in proptest::collection::vec(op(), 1..60)) {
        let mut c = coordinator();
        let mut clients: Vec<Option<Client>> = vec![None; 5];
        let mut parts = 6;
        let mut now = 0i64;
        let mut joins = 0;
        for op in ops {
            now += 10;
            match op {
                Op::Join(i) if clients[i].is_none() => {
                    joins += 1;
                    clients[i] = Some(join(&mut c, &format!("m{i}-{joins}"), parts, now));
                }
                Op::Heartbeat(i) => {
                    if let Some(cl) = clients[i].as_mut() {
                        if cl.heartbeat(&mut c, parts, now).is_err() {
                            cl.heartbeat(&mut c, parts, now).unwrap();
                        }
                    }
                }
                Op::Leave(i) => {
                    if let Some(cl) = clients[i].take() {
                        c.consumer_heartbeat(hb(&cl.id, -1, None), &topics(parts), now).0.unwrap();
                    }
                }
                Op::Kill(i) if clients[i].is_some() => {
                    clients[i] = None;
                    {
                        // Everyone else keeps heartbeating through the dead one's session.
                        for _ in 0..11 {
                            now += 1000;
                            for cl in clients.iter_mut().flatten() {
                                if cl.heartbeat(&mut c, parts, now).is_err() {
                                    cl.heartbeat(&mut c, parts, now).unwrap();
                                }
                            }
                            c.tick(now);
                        }
                    }
                }
                Op::Grow => parts += 1,
                _ => {}
            }
            let live: Vec<&Client> = clients.iter().flatten().collect();
            assert_disjoint(&live);
        }
        let live = clients.iter().flatten().count();
        for _ in 0..4 {
            now += 10;
            for cl in clients.iter_mut().flatten() {
                cl.heartbeat(&mut c, parts, now).unwrap();
            }
            let live: Vec<&Client> = clients.iter().flatten().collect();
            assert_disjoint(&live);
        }
        if live > 0 {
            let owned: BTreeSet<i32> = clients.iter().flatten().flat_map(|c| c.owned.clone()).collect();
            prop_assert_eq!(owned, (0..parts).collect::<BTreeSet<i32>>());
            prop_assert_eq!(c.consumer_describe("g").unwrap().unwrap().state, "Stable");
        }
    }
}

#[test]
fn consumer_group_survives_restart_by_replay() {
    LOG.with(|l| l.borrow_mut().clear());
    let mut c = coordinator();
    let mut a = join(&mut c, "a", 4, 0);
    let mut b = join(&mut c, "b", 4, 1);
    for t in 2..6 {
        a.heartbeat(&mut c, 4, t).unwrap();
        b.heartbeat(&mut c, 4, t).unwrap();
    }
    let before = c.consumer_describe("g").unwrap().unwrap();
    assert_eq!(before.state, "Stable");
    // Heartbeats that change nothing persist nothing.
    LOG.with(|l| l.borrow_mut().clear());
    a.heartbeat(&mut c, 4, 7).unwrap();
    assert!(LOG.with(|l| l.borrow().is_empty()));
    // Rebuild from every record written (the join records were cleared: redo from scratch).
    LOG.with(|l| l.borrow_mut().clear());
    let mut c = coordinator();
    let mut a = join(&mut c, "a", 4, 0);
    let mut b = join(&mut c, "b", 4, 1);
    for t in 2..6 {
        a.heartbeat(&mut c, 4, t).unwrap();
        b.heartbeat(&mut c, 4, t).unwrap();
    }
    let before = c.consumer_describe("g").unwrap().unwrap();
    let mut restarted = Coordinator::new(GroupConfig::default());
    LOG.with(|l| {
        for e in l.borrow().iter() {
            if let Effect::Persist { key, value, .. } = e {
                restarted.replay(key, value.as_deref()).unwrap();
            }
        }
    });
    restarted.finish_loading(100);
    assert_eq!(restarted.consumer_describe("g").unwrap().unwrap(), before);
    // Members carry on with their epochs, no rejoin.
    let (ea, eb) = (a.epoch, b.epoch);
    a.heartbeat(&mut restarted, 4, 101).unwrap();
    b.heartbeat(&mut restarted, 4, 101).unwrap();
    assert_eq!((a.epoch, b.epoch), (ea, eb));
    assert_disjoint(&[&a, &b]);
}

proptest! {
    /// Whatever bytes a damaged `__consumer_offsets` record holds, replay fails cleanly or
    /// succeeds; it never panics or allocates from an unchecked count.
    #[test]
    fn replay_of_arbitrary_bytes_never_panics(
        key_version in prop_oneof![Just(0i16), Just(1), Just(2), Just(100), any::<i16>()],
        group in "[a-z]{0,8}",
        value in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut key = key_version.to_be_bytes().to_vec();
        key.extend_from_slice(&(group.len() as i16).to_be_bytes());
        key.extend_from_slice(group.as_bytes());
        key.extend_from_slice(&[0, 1, b't', 0, 0, 0, 0]);
        let mut c = Coordinator::new(GroupConfig::default());
        let _ = c.replay(&key, Some(&value));
        // A valid-looking value with a huge count is refused, not allocated.
        let mut v = vec![0u8, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        v.extend_from_slice(&i32::MAX.to_be_bytes());
        let _ = c.replay(&key, Some(&v));
        c.finish_loading(0);
        let _ = c.list();
    }
}
