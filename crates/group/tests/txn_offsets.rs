//! Transactional offset commits (TxnOffsetCommit): pending until the transaction's marker,
//! visible as unstable meanwhile, committed or dropped by the marker, rebuilt by replay.

use strata_group::*;

fn hw(_: &str, _: i32) -> Option<i64> {
    Some(1000)
}

fn coordinator() -> Coordinator {
    let mut c = Coordinator::new(GroupConfig::default());
    c.finish_loading(0);
    c
}

fn commit(group: &str, offset: i64) -> CommitRequest {
    CommitRequest {
        group_id: group.into(),
        generation_id_or_member_epoch: -1,
        member_id: String::new(),
        group_instance_id: None,
        topics: vec![(
            "in".into(),
            vec![CommitPartition {
                partition: 0,
                offset,
                leader_epoch: -1,
                metadata: Some("txn".into()),
            }],
        )],
    }
}

fn committed(c: &Coordinator, group: &str) -> (Option<i64>, bool) {
    let f = c
        .fetch_offsets(group, Some(&[("in".into(), vec![0])]), None)
        .unwrap();
    (f[0].offset.as_ref().map(|v| v.offset), f[0].unstable)
}

#[test]
fn pending_until_the_commit_marker() {
    let mut c = coordinator();
    let (r, e) = c.commit_offsets(commit("g", 5), 1, &hw);
    r.unwrap();
    assert!(matches!(e[0], Effect::Persist { .. }));
    let (r, e) = c.txn_commit_offsets(commit("g", 9), 42, 3, 2, &hw);
    assert_eq!(r.unwrap()[0].1[0].1, None);
    match &e[0] {
        Effect::PersistTransactional {
            partition,
            producer_id,
            producer_epoch,
            ..
        } => {
            assert_eq!(*partition, c.partition_for("g"));
            assert_eq!((*producer_id, *producer_epoch), (42, 3));
        }
        other => panic!("expected a transactional record, got {other:?}"),
    }
    assert_eq!(committed(&c, "g"), (Some(5), true), "old offset, unstable");
    // A marker in another offsets partition, or for another producer, changes nothing.
    let p = c.partition_for("g");
    c.complete_transaction(p + 1, 42, true);
    c.complete_transaction(p, 41, true);
    assert_eq!(committed(&c, "g"), (Some(5), true));
    c.complete_transaction(p, 42, true);
    assert_eq!(committed(&c, "g"), (Some(9), false));
}

#[test]
fn dropped_at_the_abort_marker() {
    let mut c = coordinator();
    c.txn_commit_offsets(commit("g", 9), 42, 0, 1, &hw)
        .0
        .unwrap();
    assert_eq!(committed(&c, "g"), (None, true));
    c.complete_transaction(c.partition_for("g"), 42, false);
    assert_eq!(committed(&c, "g"), (None, false));
}

#[test]
fn member_information_is_checked_when_given() {
    let mut c = coordinator();
    // KIP-447: a stale generation from a member of a group it is not in is refused.
    let mut req = commit("g", 9);
    req.generation_id_or_member_epoch = 3;
    req.member_id = "m".into();
    let (r, e) = c.txn_commit_offsets(req, 42, 0, 1, &hw);
    assert!(r.is_err());
    assert!(e.is_empty());
    // An offset past the log end is taken, as Kafka does (invariant 12).
    let (r, _) = c.txn_commit_offsets(commit("g", 5000), 42, 0, 1, &hw);
    assert!(r.unwrap()[0].1[0].1.is_none());
}

#[test]
fn replay_rebuilds_pending_and_decided_offsets() {
    let mut c = coordinator();
    let p = c.partition_for("g");
    let mut log: Vec<(Option<i64>, Vec<u8>, Vec<u8>)> = Vec::new();
    let mut record = |e: Vec<Effect>| {
        for e in e {
            match e {
                Effect::PersistTransactional {
                    producer_id,
                    key,
                    value,
                    ..
                } => log.push((Some(producer_id), key.to_vec(), value.to_vec())),
                Effect::Persist {
                    key,
                    value: Some(value),
                    ..
                } => log.push((None, key.to_vec(), value.to_vec())),
                _ => {}
            }
        }
    };
    record(c.txn_commit_offsets(commit("g", 7), 1, 0, 1, &hw).1); // committed below
    record(c.txn_commit_offsets(commit("h", 8), 2, 0, 1, &hw).1); // aborted below
    record(c.txn_commit_offsets(commit("g", 9), 3, 0, 1, &hw).1); // still open
    let mut restarted = Coordinator::new(GroupConfig::default());
    for (pid, key, value) in &log {
        match pid {
            Some(pid) => restarted.replay_transactional(*pid, key, Some(value)),
            None => restarted.replay(key, Some(value)),
        }
        .unwrap();
    }
    restarted.complete_transaction(p, 1, true);
    restarted.complete_transaction(restarted.partition_for("h"), 2, false);
    restarted.finish_loading(10);
    assert_eq!(committed(&restarted, "g"), (Some(7), true));
    assert_eq!(committed(&restarted, "h"), (None, false));
}

/// Kafka keeps whichever record is later in the log: a plain commit after a transactional
/// one wins when the transaction commits; one before it loses.
#[test]
fn the_later_of_a_plain_and_a_transactional_commit_wins() {
    let mut c = coordinator();
    let p = c.partition_for("g");
    c.txn_commit_offsets(commit("g", 9), 42, 0, 1, &hw)
        .0
        .unwrap();
    c.commit_offsets(commit("g", 11), 2, &hw).0.unwrap();
    c.complete_transaction(p, 42, true);
    assert_eq!(committed(&c, "g"), (Some(11), false));

    c.commit_offsets(commit("g", 12), 3, &hw).0.unwrap();
    c.txn_commit_offsets(commit("g", 13), 43, 0, 4, &hw)
        .0
        .unwrap();
    c.complete_transaction(p, 43, true);
    assert_eq!(committed(&c, "g"), (Some(13), false));
}

/// An offset commit whose record was not stored is undone, with what it superseded; one
/// changed since by a later commit is left alone.
#[test]
fn an_unstored_commit_is_undone() {
    let mut c = coordinator();
    c.commit_offsets(commit("g", 5), 1, &hw).0.unwrap();
    c.take_offsets_undo();
    c.txn_commit_offsets(commit("g", 9), 42, 0, 1, &hw)
        .0
        .unwrap();
    let txn_undo = c.take_offsets_undo();
    c.commit_offsets(commit("g", 7), 2, &hw).0.unwrap(); // supersedes the pending 9
    assert_eq!(committed(&c, "g"), (Some(7), false));
    let undo = c.take_offsets_undo();
    c.revert_offsets(undo);
    assert_eq!(
        committed(&c, "g"),
        (Some(5), true),
        "back to 5, the pending 9 restored"
    );
    c.revert_offsets(txn_undo);
    assert_eq!(committed(&c, "g"), (Some(5), false));
    // A later commit wins over the undo of an earlier one.
    c.commit_offsets(commit("g", 11), 3, &hw).0.unwrap();
    let undo = c.take_offsets_undo();
    c.commit_offsets(commit("g", 12), 4, &hw).0.unwrap();
    c.revert_offsets(undo);
    assert_eq!(committed(&c, "g"), (Some(12), false));
}
