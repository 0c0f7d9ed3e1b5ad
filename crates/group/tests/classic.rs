//! The classic group protocol as a state machine: every transition, late and duplicate
//! requests, generation and instance fencing — no sockets, time passed in.

use bytes::Bytes;
use strata_group::codec;
use strata_group::*;

const HW: i64 = 1000;

fn hw(_: &str, p: i32) -> Option<i64> {
    (p < 4).then_some(HW)
}

fn config(delay: i64) -> GroupConfig {
    GroupConfig {
        initial_rebalance_delay_ms: delay,
        offsets_retention_check_interval_ms: 1000,
        ..GroupConfig::default()
    }
}

fn coordinator(delay: i64) -> Coordinator {
    let mut c = Coordinator::new(config(delay));
    c.finish_loading(0);
    c
}

fn join_req(member: &str, instance: Option<&str>) -> JoinRequest {
    JoinRequest {
        group_id: "g".into(),
        member_id: member.into(),
        group_instance_id: instance.map(Into::into),
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::from_static(b"meta"))],
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 30_000,
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        require_known_member_id: true,
    }
}

fn joins(effects: &[Effect]) -> Vec<(Token, JoinResponse)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Join { token, response } => Some((*token, response.clone())),
            _ => None,
        })
        .collect()
}

fn syncs(effects: &[Effect]) -> Vec<(Token, SyncResponse)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Sync { token, response } => Some((*token, response.clone())),
            _ => None,
        })
        .collect()
}

fn persisted(effects: &[Effect]) -> Vec<(Bytes, Option<Bytes>)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Persist { key, value, .. } => Some((key.clone(), value.clone())),
            _ => None,
        })
        .collect()
}

fn sync_req(member: &str, generation: i32, assignments: Vec<(String, Bytes)>) -> SyncRequest {
    SyncRequest {
        group_id: "g".into(),
        member_id: member.into(),
        generation_id: generation,
        group_instance_id: None,
        protocol_type: Some("consumer".into()),
        protocol_name: Some("range".into()),
        assignments,
    }
}

/// KIP-394 round trip: the first JoinGroup gets MEMBER_ID_REQUIRED and an id.
fn member_id_for(c: &mut Coordinator, token: Token, now: i64) -> String {
    let e = c.join(join_req("", None), token, now);
    let j = joins(&e);
    assert_eq!(j.len(), 1);
    assert_eq!(j[0].1.error, Some(GroupError::MemberIdRequired));
    j[0].1.member_id.clone()
}

/// One member joins and syncs: generation 1, Stable.
fn stable_single(c: &mut Coordinator) -> String {
    let id = member_id_for(c, 1, 0);
    let e = c.join(join_req(&id, None), 2, 0);
    let j = joins(&e);
    assert_eq!(j.len(), 1, "{e:?}");
    let r = &j[0].1;
    assert_eq!((r.error.clone(), r.generation_id), (None, 1));
    assert_eq!(r.leader, id);
    assert_eq!(r.members.len(), 1);
    let e = c.sync(
        sync_req(&id, 1, vec![(id.clone(), Bytes::from_static(b"A"))]),
        3,
        0,
    );
    assert_eq!(syncs(&e)[0].1.assignment, Bytes::from_static(b"A"));
    assert_eq!(c.classic_state("g"), Some((ClassicState::Stable, 1)));
    id
}

#[test]
fn first_member_join_sync_stable() {
    let mut c = coordinator(0);
    let id = stable_single(&mut c);
    assert_eq!(c.heartbeat("g", &id, 1, None, 100), Ok(()));
    let d = c.describe("g").unwrap().unwrap();
    assert_eq!(d.state, "Stable");
    assert_eq!(d.protocol, "range");
    assert_eq!(d.members[0].assignment, Bytes::from_static(b"A"));
}

#[test]
fn load_in_progress_until_finished() {
    let mut c = Coordinator::new(config(0));
    let e = c.join(join_req("", None), 1, 0);
    assert_eq!(
        joins(&e)[0].1.error,
        Some(GroupError::CoordinatorLoadInProgress)
    );
    assert_eq!(
        c.heartbeat("g", "m", 1, None, 0),
        Err(GroupError::CoordinatorLoadInProgress)
    );
    assert_eq!(
        c.fetch_offsets("g", None, None),
        Err(GroupError::CoordinatorLoadInProgress)
    );
    c.finish_loading(0);
    assert_eq!(
        joins(&c.join(join_req("", None), 2, 0))[0].1.error,
        Some(GroupError::MemberIdRequired)
    );
}

#[test]
fn invalid_requests() {
    let mut c = coordinator(0);
    let mut r = join_req("", None);
    r.group_id = String::new();
    assert_eq!(
        joins(&c.join(r, 1, 0))[0].1.error,
        Some(GroupError::InvalidGroupId)
    );
    let mut r = join_req("", None);
    r.session_timeout_ms = 10;
    assert!(matches!(
        joins(&c.join(r, 1, 0))[0].1.error,
        Some(GroupError::InvalidSessionTimeout { .. })
    ));
    // Unknown member of a group that does not exist.
    assert_eq!(
        joins(&c.join(join_req("nobody", None), 1, 0))[0].1.error,
        Some(GroupError::UnknownMemberId)
    );
    assert_eq!(
        c.heartbeat("g", "nobody", 1, None, 0),
        Err(GroupError::UnknownMemberId)
    );
}

#[test]
fn second_member_triggers_rebalance_and_follower_waits_for_leader() {
    let mut c = coordinator(0);
    let a = stable_single(&mut c);
    let b = member_id_for(&mut c, 10, 5);
    let e = c.join(join_req(&b, None), 11, 5);
    assert!(joins(&e).is_empty(), "b waits for a to rejoin");
    assert_eq!(
        c.classic_state("g"),
        Some((ClassicState::PreparingRebalance, 1))
    );
    assert_eq!(
        c.heartbeat("g", &a, 1, None, 6),
        Err(GroupError::RebalanceInProgress)
    );
    // A protocol mismatch is refused.
    let mut bad = join_req("", None);
    bad.protocols = vec![("other".into(), Bytes::new())];
    bad.require_known_member_id = false;
    assert!(matches!(
        joins(&c.join(bad, 12, 6))[0].1.error,
        Some(GroupError::InconsistentGroupProtocol(_))
    ));
    let e = c.join(join_req(&a, None), 13, 7);
    let j = joins(&e);
    assert_eq!(j.len(), 2);
    for (_, r) in &j {
        assert_eq!(r.generation_id, 2);
        assert_eq!(r.leader, a, "the old leader stays leader");
    }
    let leader_resp = j.iter().find(|(t, _)| *t == 13).unwrap();
    assert_eq!(leader_resp.1.members.len(), 2);
    assert!(j
        .iter()
        .find(|(t, _)| *t == 11)
        .unwrap()
        .1
        .members
        .is_empty());
    // Follower syncs first: no answer until the leader's assignment.
    assert!(syncs(&c.sync(sync_req(&b, 2, vec![]), 14, 8)).is_empty());
    // Heartbeats in CompletingRebalance are fine; commits are told to wait.
    assert_eq!(c.heartbeat("g", &b, 2, None, 8), Ok(()));
    let commit = CommitRequest {
        group_id: "g".into(),
        generation_id_or_member_epoch: 2,
        member_id: b.clone(),
        group_instance_id: None,
        topics: vec![],
    };
    assert_eq!(
        c.commit_offsets(commit, 8, &hw).0,
        Err(GroupError::RebalanceInProgress)
    );
    let e = c.sync(
        sync_req(
            &a,
            2,
            vec![
                (a.clone(), Bytes::from_static(b"A")),
                (b.clone(), Bytes::from_static(b"B")),
            ],
        ),
        15,
        9,
    );
    let s = syncs(&e);
    assert_eq!(s.len(), 2);
    assert_eq!(
        s.iter().find(|(t, _)| *t == 14).unwrap().1.assignment,
        Bytes::from_static(b"B")
    );
    assert_eq!(
        s.iter().find(|(t, _)| *t == 15).unwrap().1.assignment,
        Bytes::from_static(b"A")
    );
    // The group record is persisted with the sync.
    assert_eq!(persisted(&e).len(), 1);
    assert_eq!(c.classic_state("g"), Some((ClassicState::Stable, 2)));
    // A late sync from the old generation.
    assert!(matches!(
        syncs(&c.sync(sync_req(&b, 1, vec![]), 16, 10))[0].1.error,
        Some(GroupError::IllegalGeneration { got: 1, current: 2 })
    ));
    assert!(matches!(
        c.heartbeat("g", &b, 1, None, 10),
        Err(GroupError::IllegalGeneration { .. })
    ));
}

#[test]
fn duplicate_join_in_same_generation_is_answered_with_it() {
    let mut c = coordinator(0);
    let a = stable_single(&mut c);
    // A follower-style rejoin from the leader with unchanged protocols in Stable triggers
    // a rebalance (the leader may want a new assignment)...
    let e = c.join(join_req(&a, None), 20, 1);
    let j = joins(&e);
    assert_eq!(j[0].1.generation_id, 2);
    // ...and a duplicate JoinGroup during CompletingRebalance gets the same generation.
    let e = c.join(join_req(&a, None), 21, 2);
    assert_eq!(joins(&e)[0].1.generation_id, 2);
    assert_eq!(
        c.classic_state("g"),
        Some((ClassicState::CompletingRebalance, 2))
    );
}

#[test]
fn initial_rebalance_delay_waits_for_more_members() {
    let mut c = coordinator(3000);
    let a = member_id_for(&mut c, 1, 0);
    assert!(joins(&c.join(join_req(&a, None), 2, 0)).is_empty());
    let b = member_id_for(&mut c, 3, 1000);
    assert!(joins(&c.join(join_req(&b, None), 4, 1000)).is_empty());
    assert!(
        joins(&c.tick(3500)).is_empty(),
        "extended by b's join to 4000"
    );
    let e = c.tick(4000);
    let j = joins(&e);
    assert_eq!(j.len(), 2);
    assert!(j.iter().all(|(_, r)| r.generation_id == 1));
}

#[test]
fn session_timeout_removes_member_and_rebalances() {
    let mut c = coordinator(0);
    let a = stable_single(&mut c);
    let b = member_id_for(&mut c, 10, 0);
    c.join(join_req(&b, None), 11, 0);
    c.join(join_req(&a, None), 12, 0);
    c.sync(sync_req(&a, 2, vec![]), 13, 0);
    c.sync(sync_req(&b, 2, vec![]), 14, 0);
    assert_eq!(c.classic_state("g"), Some((ClassicState::Stable, 2)));
    // a keeps heartbeating, b goes silent.
    for t in (1000..=10_000).step_by(1000) {
        assert_eq!(c.heartbeat("g", &a, 2, None, t), Ok(()));
        c.tick(t);
    }
    // b's session (10 s) ran out at t=10000.
    assert_eq!(
        c.heartbeat("g", &b, 2, None, 10_001),
        Err(GroupError::UnknownMemberId)
    );
    assert_eq!(
        c.heartbeat("g", &a, 2, None, 10_001),
        Err(GroupError::RebalanceInProgress)
    );
    let e = c.join(join_req(&a, None), 30, 10_002);
    let j = joins(&e);
    assert_eq!(j[0].1.generation_id, 3);
    assert_eq!(j[0].1.members.len(), 1);
}

#[test]
fn member_that_does_not_rejoin_is_dropped_at_rebalance_timeout() {
    let mut c = coordinator(0);
    let a = stable_single(&mut c);
    let b = member_id_for(&mut c, 10, 0);
    c.join(join_req(&b, None), 11, 0);
    // a keeps heartbeating (REBALANCE_IN_PROGRESS) but never rejoins.
    for t in (1000..30_000).step_by(1000) {
        assert_eq!(
            c.heartbeat("g", &a, 1, None, t),
            Err(GroupError::RebalanceInProgress)
        );
        assert!(joins(&c.tick(t)).is_empty());
    }
    let e = c.tick(30_000);
    let j = joins(&e);
    assert_eq!(j.len(), 1);
    assert_eq!(j[0].1.member_id, b);
    assert_eq!(j[0].1.leader, b);
    assert_eq!(
        c.heartbeat("g", &a, 1, None, 30_001),
        Err(GroupError::UnknownMemberId)
    );
}

#[test]
fn leader_that_never_syncs_is_removed_after_rebalance_timeout() {
    let mut c = coordinator(0);
    let a = member_id_for(&mut c, 1, 0);
    let b = member_id_for(&mut c, 2, 0);
    c.join(join_req(&a, None), 3, 0);
    c.join(join_req(&b, None), 4, 0);
    assert_eq!(
        c.classic_state("g"),
        Some((ClassicState::CompletingRebalance, 1))
    );
    c.sync(sync_req(&b, 1, vec![]), 5, 1);
    // The follower's pending sync is answered with REBALANCE_IN_PROGRESS when the leader
    // is dropped; the group rebalances without it.
    let e = c.tick(30_000);
    assert_eq!(syncs(&e)[0].1.error, Some(GroupError::RebalanceInProgress));
    assert_eq!(
        c.heartbeat("g", &a, 1, None, 30_001),
        Err(GroupError::UnknownMemberId)
    );
    let e = c.join(join_req(&b, None), 6, 30_002);
    assert_eq!(joins(&e)[0].1.leader, b);
}

#[test]
fn leave_group_batched_and_last_member_empties_group() {
    let mut c = coordinator(0);
    let a = stable_single(&mut c);
    let (r, e) = c.leave("g", &[(a.clone(), None), ("ghost".into(), None)], 5);
    let r = r.unwrap();
    assert_eq!(r[0], Ok(()));
    assert_eq!(r[1], Err(GroupError::UnknownMemberId));
    assert_eq!(c.classic_state("g"), Some((ClassicState::Empty, 2)));
    // The empty group is persisted.
    assert_eq!(persisted(&e).len(), 1);
    // A commit outside group management is now allowed.
    let commit = CommitRequest {
        group_id: "g".into(),
        generation_id_or_member_epoch: -1,
        member_id: String::new(),
        group_instance_id: None,
        topics: vec![(
            "t".into(),
            vec![CommitPartition {
                partition: 0,
                offset: 5,
                leader_epoch: -1,
                metadata: None,
            }],
        )],
    };
    assert_eq!(c.commit_offsets(commit, 6, &hw).0.unwrap()[0].1[0].1, None);
}

#[test]
fn static_member_rejoins_without_rebalance_and_fences_the_old_instance() {
    let mut c = coordinator(0);
    let e = c.join(join_req("", Some("inst-1")), 1, 0);
    let j = joins(&e);
    // Static members skip MEMBER_ID_REQUIRED.
    assert_eq!(j[0].1.error, None);
    let old = j[0].1.member_id.clone();
    c.sync(
        SyncRequest {
            group_instance_id: Some("inst-1".into()),
            ..sync_req(&old, 1, vec![(old.clone(), Bytes::from_static(b"A"))])
        },
        2,
        0,
    );
    assert_eq!(c.classic_state("g"), Some((ClassicState::Stable, 1)));
    // Restart: same instance id, unknown member id, same protocols.
    let e = c.join(join_req("", Some("inst-1")), 3, 5000);
    let r = &joins(&e)[0].1;
    assert_eq!(r.error, None);
    assert_eq!(r.generation_id, 1, "no rebalance");
    assert!(r.skip_assignment, "the leader must not reassign");
    let new = r.member_id.clone();
    assert_ne!(new, old);
    assert_eq!(c.classic_state("g"), Some((ClassicState::Stable, 1)));
    let e = c.sync(
        SyncRequest {
            group_instance_id: Some("inst-1".into()),
            ..sync_req(&new, 1, vec![])
        },
        4,
        5001,
    );
    assert_eq!(
        syncs(&e)[0].1.assignment,
        Bytes::from_static(b"A"),
        "keeps its assignment"
    );
    // The old process is a zombie now.
    assert_eq!(
        c.heartbeat("g", &old, 1, Some("inst-1"), 5002),
        Err(GroupError::FencedInstanceId("inst-1".into()))
    );
    let (r, _) = c.leave("g", &[(old.clone(), Some("inst-1".into()))], 5003);
    assert_eq!(
        r.unwrap()[0],
        Err(GroupError::FencedInstanceId("inst-1".into()))
    );
    let commit = CommitRequest {
        group_id: "g".into(),
        generation_id_or_member_epoch: 1,
        member_id: old,
        group_instance_id: Some("inst-1".into()),
        topics: vec![],
    };
    assert!(matches!(
        c.commit_offsets(commit, 5004, &hw).0,
        Err(GroupError::FencedInstanceId(_))
    ));
}

#[test]
fn offsets_commit_fetch_and_validation() {
    let mut c = coordinator(0);
    let a = stable_single(&mut c);
    let meta = "x".repeat(5000);
    let commit = CommitRequest {
        group_id: "g".into(),
        generation_id_or_member_epoch: 1,
        member_id: a.clone(),
        group_instance_id: None,
        topics: vec![(
            "t".into(),
            vec![
                CommitPartition {
                    partition: 0,
                    offset: 10,
                    leader_epoch: 3,
                    metadata: Some("exact: ü \u{1F600}".into()),
                },
                CommitPartition {
                    partition: 1,
                    offset: 11,
                    leader_epoch: -1,
                    metadata: Some(meta),
                },
                CommitPartition {
                    partition: 2,
                    offset: HW + 1,
                    leader_epoch: -1,
                    metadata: None,
                },
                CommitPartition {
                    partition: 9,
                    offset: 1,
                    leader_epoch: -1,
                    metadata: None,
                },
            ],
        )],
    };
    let (r, e) = c.commit_offsets(commit.clone(), 50, &hw);
    let r = &r.unwrap()[0].1;
    assert_eq!(r[0].1, None);
    assert!(matches!(
        r[1].1,
        Some(GroupError::OffsetMetadataTooLarge { .. })
    ));
    // past the high watermark: stored as committed, as Kafka does (invariant 12)
    assert_eq!(r[2].1, None);
    assert_eq!(r[3].1, Some(GroupError::UnknownTopicOrPartition));
    assert_eq!(
        persisted(&e).len(),
        2,
        "only the accepted offsets are written"
    );
    let f = c
        .fetch_offsets("g", Some(&[("t".into(), vec![0, 1])]), None)
        .unwrap();
    let v = f[0].offset.clone().unwrap();
    assert_eq!(
        (v.offset, v.leader_epoch, v.metadata.as_str()),
        (10, 3, "exact: ü \u{1F600}")
    );
    assert_eq!(f[1].offset, None);
    assert_eq!(c.fetch_offsets("g", None, None).unwrap().len(), 2);
    // Unknown group: nothing committed, no error.
    assert_eq!(c.fetch_offsets("other", None, None).unwrap(), vec![]);
    // Wrong generation / unknown member.
    let stale = CommitRequest {
        generation_id_or_member_epoch: 0,
        ..commit.clone()
    };
    assert!(matches!(
        c.commit_offsets(stale, 51, &hw).0,
        Err(GroupError::IllegalGeneration { .. })
    ));
    let unknown = CommitRequest {
        member_id: "x".into(),
        ..commit.clone()
    };
    assert_eq!(
        c.commit_offsets(unknown, 51, &hw).0,
        Err(GroupError::UnknownMemberId)
    );
    // A group-management commit to a group that does not exist.
    let missing = CommitRequest {
        group_id: "nope".into(),
        ..commit
    };
    assert!(matches!(
        c.commit_offsets(missing, 51, &hw).0,
        Err(GroupError::IllegalGeneration { .. })
    ));
}

#[test]
fn persisted_records_rebuild_the_state() {
    let mut c = coordinator(0);
    let mut log: Vec<(Bytes, Option<Bytes>)> = Vec::new();
    // Build a stable two-member group with offsets, recording every persisted record.
    let a = member_id_for(&mut c, 1, 0);
    let b = member_id_for(&mut c, 2, 0);
    log.extend(persisted(&c.join(join_req(&a, None), 3, 0)));
    log.extend(persisted(&c.join(join_req(&b, None), 4, 0)));
    log.extend(persisted(&c.sync(sync_req(&b, 1, vec![]), 5, 0)));
    log.extend(persisted(&c.sync(
        sync_req(
            &a,
            1,
            vec![
                (a.clone(), Bytes::from_static(b"A")),
                (b.clone(), Bytes::from_static(b"B")),
            ],
        ),
        6,
        0,
    )));
    let commit = CommitRequest {
        group_id: "g".into(),
        generation_id_or_member_epoch: 1,
        member_id: a.clone(),
        group_instance_id: None,
        topics: vec![(
            "t".into(),
            vec![CommitPartition {
                partition: 0,
                offset: 7,
                leader_epoch: 0,
                metadata: Some("m".into()),
            }],
        )],
    };
    log.extend(persisted(&c.commit_offsets(commit.clone(), 10, &hw).1));
    let commit2 = CommitRequest {
        topics: vec![(
            "t".into(),
            vec![CommitPartition {
                partition: 0,
                offset: 9,
                leader_epoch: 0,
                metadata: Some("m2".into()),
            }],
        )],
        ..commit
    };
    log.extend(persisted(&c.commit_offsets(commit2, 11, &hw).1));
    // A simple-consumer group that is later deleted.
    let simple = CommitRequest {
        group_id: "gone".into(),
        generation_id_or_member_epoch: -1,
        member_id: String::new(),
        group_instance_id: None,
        topics: vec![(
            "t".into(),
            vec![CommitPartition {
                partition: 1,
                offset: 1,
                leader_epoch: -1,
                metadata: None,
            }],
        )],
    };
    log.extend(persisted(&c.commit_offsets(simple, 12, &hw).1));
    let (r, e) = c.delete_group("gone");
    r.unwrap();
    log.extend(persisted(&e));

    let mut restarted = Coordinator::new(config(0));
    for (k, v) in &log {
        restarted.replay(k, v.as_deref()).unwrap();
    }
    restarted.finish_loading(100);
    assert_eq!(
        restarted.classic_state("g"),
        Some((ClassicState::Stable, 1))
    );
    assert_eq!(restarted.classic_state("gone"), None);
    let f = restarted.fetch_offsets("g", None, None).unwrap();
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].offset.as_ref().unwrap().offset, 9, "latest wins");
    assert_eq!(f[0].offset.as_ref().unwrap().metadata, "m2");
    // Members carry on in the same generation, with their assignments.
    assert_eq!(restarted.heartbeat("g", &a, 1, None, 200), Ok(()));
    let e = restarted.sync(sync_req(&b, 1, vec![]), 20, 201);
    assert_eq!(syncs(&e)[0].1.assignment, Bytes::from_static(b"B"));
}

#[test]
fn delete_groups_and_offsets() {
    let mut c = coordinator(0);
    let a = stable_single(&mut c);
    assert_eq!(
        c.delete_group("g").0,
        Err(GroupError::NonEmptyGroup("g".into()))
    );
    assert_eq!(
        c.delete_group("zzz").0,
        Err(GroupError::GroupIdNotFound("zzz".into()))
    );
    // OffsetDelete refuses topics the (consumer-protocol) group subscribes to.
    let sub = {
        let mut b = vec![0u8, 0, 0, 0, 0, 1, 0, 1, b't'];
        b.extend_from_slice(&[0, 0, 0, 0]);
        Bytes::from(b)
    };
    assert_eq!(
        codec::subscription_topics(&sub),
        Some(vec!["t".to_string()])
    );
    let mut r = join_req(&a, None);
    r.protocols = vec![("range".into(), sub)];
    c.join(r, 30, 1);
    c.sync(sync_req(&a, 2, vec![]), 31, 1);
    let commit = CommitRequest {
        group_id: "g".into(),
        generation_id_or_member_epoch: 2,
        member_id: a.clone(),
        group_instance_id: None,
        topics: vec![
            (
                "t".into(),
                vec![CommitPartition {
                    partition: 0,
                    offset: 1,
                    leader_epoch: -1,
                    metadata: None,
                }],
            ),
            (
                "u".into(),
                vec![CommitPartition {
                    partition: 0,
                    offset: 1,
                    leader_epoch: -1,
                    metadata: None,
                }],
            ),
        ],
    };
    c.commit_offsets(commit, 2, &hw).0.unwrap();
    let (r, e) = c.delete_offsets("g", &[("t".into(), vec![0]), ("u".into(), vec![0])]);
    let r = r.unwrap();
    assert_eq!(r[0].1[0].1, Some(GroupError::GroupSubscribedToTopic));
    assert_eq!(r[1].1[0].1, None);
    assert_eq!(persisted(&e).len(), 1);
    // Topic deletion drops the topic's offsets.
    let e = c.topic_deleted("t");
    assert_eq!(persisted(&e).len(), 1);
    assert_eq!(c.fetch_offsets("g", None, None).unwrap(), vec![]);
    // Empty group deleted with its offsets.
    c.leave("g", &[(a, None)], 3).0.unwrap();
    let (r, e) = c.delete_group("g");
    assert_eq!(r, Ok(()));
    assert!(persisted(&e).iter().all(|(_, v)| v.is_none()));
    assert!(c.list().unwrap().is_empty());
}

#[test]
fn offsets_of_empty_groups_expire_after_retention() {
    let mut c = Coordinator::new(GroupConfig {
        offsets_retention_ms: 60_000,
        offsets_retention_check_interval_ms: 1000,
        ..config(0)
    });
    c.finish_loading(0);
    let commit = CommitRequest {
        group_id: "g".into(),
        generation_id_or_member_epoch: -1,
        member_id: String::new(),
        group_instance_id: None,
        topics: vec![(
            "t".into(),
            vec![CommitPartition {
                partition: 0,
                offset: 1,
                leader_epoch: -1,
                metadata: None,
            }],
        )],
    };
    c.commit_offsets(commit, 1000, &hw).0.unwrap();
    c.tick(60_000);
    assert_eq!(c.fetch_offsets("g", None, None).unwrap().len(), 1);
    let e = c.tick(62_000);
    assert!(!persisted(&e).is_empty());
    assert_eq!(c.fetch_offsets("g", None, None).unwrap(), vec![]);
}

#[test]
fn list_groups_reports_state_and_type() {
    let mut c = coordinator(0);
    stable_single(&mut c);
    let l = c.list().unwrap();
    assert_eq!(l.len(), 1);
    assert_eq!(
        (l[0].state, l[0].group_type, l[0].protocol_type.as_str()),
        ("Stable", "classic", "consumer")
    );
}

/// A cluster member coordinates only the groups of the `__consumer_offsets` partitions it
/// leads: others get NOT_COORDINATOR; losing a partition drops its groups from memory, and
/// replaying its records when leading it again brings them back.
#[test]
fn a_coordinator_serves_only_the_groups_of_the_partitions_it_owns() {
    let mut c = Coordinator::new(config(0));
    c.set_offsets_topic_partitions(4);
    let mine = c.partition_for("g");
    c.set_owned(Some([mine].into_iter().collect()));
    c.finish_loading(0);
    let other = (0..100)
        .map(|i| format!("other-{i}"))
        .find(|g| c.partition_for(g) != mine)
        .unwrap();
    let commit = |group: &str| CommitRequest {
        group_id: group.into(),
        generation_id_or_member_epoch: -1,
        member_id: String::new(),
        group_instance_id: None,
        topics: vec![(
            "t".into(),
            vec![CommitPartition {
                partition: 0,
                offset: 42,
                leader_epoch: -1,
                metadata: None,
            }],
        )],
    };
    let (result, effects) = c.commit_offsets(commit("g"), 1, &hw);
    assert!(result.is_ok());
    assert_eq!(
        c.commit_offsets(commit(&other), 1, &hw).0,
        Err(GroupError::NotCoordinator)
    );
    assert_eq!(
        c.fetch_offsets(&other, None, None).err(),
        Some(GroupError::NotCoordinator)
    );

    // Leadership of the partition moves away: the group is gone from memory here.
    c.unload_partition(mine);
    assert_eq!(
        c.fetch_offsets("g", None, None).err(),
        Some(GroupError::NotCoordinator)
    );
    // It comes back: the records replayed, the committed offset is there again.
    for (key, value) in persisted(&effects) {
        c.replay(&key, value.as_deref()).unwrap();
    }
    c.finish_loading_partition(mine, 2);
    let fetched = c.fetch_offsets("g", None, None).unwrap();
    assert_eq!(
        fetched
            .iter()
            .map(|f| f.offset.as_ref().map(|o| o.offset))
            .collect::<Vec<_>>(),
        vec![Some(42)]
    );
}

/// Between the metadata making this node a partition's leader (FindCoordinator already
/// points clients here) and its groups being loaded, requests for those groups get
/// COORDINATOR_LOAD_IN_PROGRESS, which clients retry here, not NOT_COORDINATOR, which some
/// (librdkafka's committed()) surface as a failure. Groups of partitions led elsewhere still
/// get NOT_COORDINATOR.
#[test]
fn a_partition_led_but_not_yet_loaded_answers_load_in_progress() {
    use std::sync::atomic::{AtomicI32, Ordering};
    use std::sync::Arc;
    let mut c = Coordinator::new(config(0));
    c.set_offsets_topic_partitions(4);
    let mine = c.partition_for("g");
    let other = (0..100)
        .map(|i| format!("other-{i}"))
        .find(|g| c.partition_for(g) != mine)
        .unwrap();
    c.set_owned(Some(Default::default()));
    let led = Arc::new(AtomicI32::new(-1));
    let hint = led.clone();
    c.set_leader_hint(Arc::new(move |p| p == hint.load(Ordering::SeqCst)));
    c.finish_loading(0);
    assert_eq!(
        c.fetch_offsets("g", None, None).err(),
        Some(GroupError::NotCoordinator)
    );
    led.store(mine, Ordering::SeqCst);
    assert_eq!(
        c.fetch_offsets("g", None, None).err(),
        Some(GroupError::CoordinatorLoadInProgress)
    );
    assert_eq!(
        c.fetch_offsets(&other, None, None).err(),
        Some(GroupError::NotCoordinator)
    );
    c.finish_loading_partition(mine, 1);
    assert!(c.fetch_offsets("g", None, None).is_ok());
}

/// A coordinator losing the group's partition answers the requests waiting there
/// NOT_COORDINATOR at once (the members go to the new coordinator instead of waiting out
/// their rebalance timeout).
#[test]
fn unloading_a_partition_answers_its_waiting_joins() {
    let mut c = Coordinator::new(config(3_000));
    c.set_offsets_topic_partitions(4);
    let mine = c.partition_for("g");
    c.set_owned(Some([mine].into_iter().collect()));
    c.finish_loading(0);
    let id = member_id_for(&mut c, 1, 0);
    // The initial rebalance delay holds this join.
    assert!(joins(&c.join(join_req(&id, None), 2, 0)).is_empty());
    let answers = c.unload_partition(mine);
    let j = joins(&answers);
    assert_eq!(j.len(), 1);
    assert_eq!(
        (j[0].0, j[0].1.error.clone()),
        (2, Some(GroupError::NotCoordinator))
    );
    // Nothing is left to answer later.
    assert!(joins(&c.tick(10_000)).is_empty());
}
