//! The transaction coordinator state machine: every transition, fencing of zombies and of
//! late requests (KIP-890 / KAFKA-17754), timeouts, retries.

use proptest::prelude::*;
use strata_txn::*;

fn ids() -> impl FnMut() -> i64 {
    let mut next = 1000;
    move || {
        next += 1;
        next
    }
}

/// (producer id, epoch, commit, partitions) of each marker effect.
type Marker = (i64, i16, bool, Vec<(String, i32)>);

fn markers(effects: &[TxnEffect]) -> Vec<Marker> {
    effects
        .iter()
        .filter_map(|e| match e {
            TxnEffect::WriteMarkers {
                producer_id,
                producer_epoch,
                commit,
                partitions,
                ..
            } => Some((
                *producer_id,
                *producer_epoch,
                *commit,
                partitions.iter().cloned().collect(),
            )),
            _ => None,
        })
        .collect()
}

fn tp(t: &str, p: i32) -> (String, i32) {
    (t.to_string(), p)
}

#[test]
fn commit_flow_for_a_classic_client() {
    let mut c = TxnCoordinator::new(TxnConfig::default());
    let mut alloc = ids();
    let (r, e) = c.init_producer_id("tx", 60_000, 0, &mut alloc);
    let (pid, epoch) = r.unwrap();
    assert_eq!(epoch, 0);
    assert!(matches!(e[0], TxnEffect::Persist(_)));
    c.add_partitions("tx", pid, epoch, &[tp("a", 0), tp("b", 1)], 10)
        .0
        .unwrap();
    assert_eq!(c.get("tx").unwrap().state, TxnState::Ongoing);
    assert!(c.verify("tx", pid, epoch, "a", 0).is_ok());
    assert!(c.verify("tx", pid, epoch, "a", 1).is_err(), "not added");
    assert!(c.verify("tx", pid, epoch + 1, "a", 0).is_err());
    let (r, e) = c.end_txn("tx", pid, epoch, true, false, 20);
    r.unwrap();
    assert_eq!(c.get("tx").unwrap().state, TxnState::PrepareCommit);
    assert_eq!(
        markers(&e),
        vec![(pid, epoch, true, vec![tp("a", 0), tp("b", 1)])]
    );
    // While markers are written, the producer must wait.
    assert_eq!(
        c.end_txn("tx", pid, epoch, true, false, 21).0,
        Err(TxnError::ConcurrentTransactions)
    );
    assert_eq!(
        c.add_partitions("tx", pid, epoch, &[tp("a", 0)], 21).0,
        Err(TxnError::ConcurrentTransactions)
    );
    let (next, _) = c.complete("tx", 22, &mut alloc);
    assert_eq!(next, Some((pid, epoch)), "classic clients keep their epoch");
    assert_eq!(c.get("tx").unwrap().state, TxnState::CompleteCommit);
    assert!(
        c.verify("tx", pid, epoch, "a", 0).is_err(),
        "nothing open any more"
    );
    // A retried EndTxn(commit) succeeds without new markers; an abort now is refused.
    let (r, e) = c.end_txn("tx", pid, epoch, true, false, 23);
    assert_eq!(r, Ok(()));
    assert!(markers(&e).is_empty());
    assert_eq!(
        c.end_txn("tx", pid, epoch, false, false, 23).0,
        Err(TxnError::InvalidTxnState(TxnState::CompleteCommit))
    );
    // The next transaction starts from scratch.
    c.add_partitions("tx", pid, epoch, &[tp("c", 0)], 30)
        .0
        .unwrap();
    let (_, e) = c.end_txn("tx", pid, epoch, false, false, 31);
    assert_eq!(markers(&e), vec![(pid, epoch, false, vec![tp("c", 0)])]);
}

#[test]
fn kip890_epoch_bump_fences_a_late_end_txn() {
    let mut c = TxnCoordinator::new(TxnConfig::default());
    let mut alloc = ids();
    let (pid, e0) = c.init_producer_id("tx", 60_000, 0, &mut alloc).0.unwrap();
    c.add_partitions("tx", pid, e0, &[tp("a", 0)], 1).0.unwrap();
    c.end_txn("tx", pid, e0, true, true, 2).0.unwrap();
    let (next, _) = c.complete("tx", 3, &mut alloc);
    let (_, e1) = next.unwrap();
    assert_eq!(e1, e0 + 1);
    // A retry of the first EndTxn is still answered OK...
    assert_eq!(c.end_txn("tx", pid, e0, true, true, 4).0, Ok(()));
    // ...but once the next transaction is open, a late EndTxn from the first one cannot
    // decide it (KAFKA-17754).
    c.add_partitions("tx", pid, e1, &[tp("b", 0)], 5).0.unwrap();
    let (r, e) = c.end_txn("tx", pid, e0, true, true, 6);
    assert!(matches!(r, Err(TxnError::ProducerFenced { .. })));
    assert!(markers(&e).is_empty());
    assert_eq!(c.get("tx").unwrap().state, TxnState::Ongoing);
    // Writes under the old epoch are not verified.
    assert!(c.verify("tx", pid, e0, "b", 0).is_err());
    assert!(c.verify("tx", pid, e1, "b", 0).is_ok());
}

#[test]
fn a_second_instance_fences_the_first_and_aborts_its_transaction() {
    let mut c = TxnCoordinator::new(TxnConfig::default());
    let mut alloc = ids();
    let (pid, e0) = c.init_producer_id("tx", 60_000, 0, &mut alloc).0.unwrap();
    c.add_partitions("tx", pid, e0, &[tp("a", 0)], 1).0.unwrap();
    // The new instance starts: the open transaction is aborted under the new epoch.
    let (r, e) = c.init_producer_id("tx", 60_000, 2, &mut alloc);
    let (pid2, e1) = r.unwrap();
    assert_eq!((pid2, e1), (pid, e0 + 1));
    assert_eq!(markers(&e), vec![(pid, e1, false, vec![tp("a", 0)])]);
    c.complete("tx", 3, &mut alloc);
    assert_eq!(c.get("tx").unwrap().state, TxnState::CompleteAbort);
    // The zombie is fenced everywhere.
    assert!(matches!(
        c.add_partitions("tx", pid, e0, &[tp("a", 0)], 4).0,
        Err(TxnError::ProducerFenced { .. })
    ));
    assert!(matches!(
        c.end_txn("tx", pid, e0, true, false, 4).0,
        Err(TxnError::ProducerFenced { .. })
    ));
    // The new instance works.
    c.add_partitions("tx", pid, e1, &[tp("a", 0)], 5).0.unwrap();
    // Unknown producer ids are refused.
    assert_eq!(
        c.add_partitions("tx", 42, e1, &[tp("a", 0)], 5).0,
        Err(TxnError::InvalidProducerIdMapping(42))
    );
}

#[test]
fn timed_out_transactions_are_aborted_and_the_producer_fenced() {
    let mut c = TxnCoordinator::new(TxnConfig::default());
    let mut alloc = ids();
    let (pid, e0) = c.init_producer_id("tx", 1_000, 0, &mut alloc).0.unwrap();
    c.add_partitions("tx", pid, e0, &[tp("a", 0)], 100)
        .0
        .unwrap();
    assert!(markers(&c.tick(1_099, &mut alloc)).is_empty());
    let e = c.tick(1_100, &mut alloc);
    assert_eq!(markers(&e), vec![(pid, e0 + 1, false, vec![tp("a", 0)])]);
    c.complete("tx", 1_101, &mut alloc);
    assert!(matches!(
        c.end_txn("tx", pid, e0, true, false, 1_200).0,
        Err(TxnError::ProducerFenced { .. })
    ));
}

#[test]
fn requests_during_markers_and_invalid_input() {
    let mut c = TxnCoordinator::new(TxnConfig {
        max_timeout_ms: 10_000,
        ..TxnConfig::default()
    });
    let mut alloc = ids();
    assert_eq!(
        c.init_producer_id("", 1000, 0, &mut alloc).0,
        Err(TxnError::InvalidTransactionalId)
    );
    assert_eq!(
        c.init_producer_id("tx", 20_000, 0, &mut alloc).0,
        Err(TxnError::InvalidTransactionTimeout(20_000))
    );
    let (pid, e0) = c.init_producer_id("tx", 5_000, 0, &mut alloc).0.unwrap();
    c.add_partitions("tx", pid, e0, &[tp("a", 0)], 1).0.unwrap();
    c.end_txn("tx", pid, e0, true, false, 2).0.unwrap();
    assert_eq!(
        c.init_producer_id("tx", 5_000, 3, &mut alloc).0,
        Err(TxnError::ConcurrentTransactions)
    );
    // EndTxn with nothing open.
    c.complete("tx", 4, &mut alloc);
    let (pid, e) = c.init_producer_id("tx", 5_000, 5, &mut alloc).0.unwrap();
    assert_eq!(
        c.end_txn("tx", pid, e, true, false, 6).0,
        Err(TxnError::InvalidTxnState(TxnState::Empty))
    );
    // Aborting it is a no-op (found by scripts/chaos: librdkafka aborts after a failed
    // AddPartitionsToTxn and treats a refusal as fatal); the state stays Empty.
    assert_eq!(c.end_txn("tx", pid, e, false, false, 7), (Ok(()), vec![]));
    assert_eq!(c.get("tx").unwrap().state, TxnState::Empty);
    // A wrong epoch is still fenced.
    assert!(c.end_txn("tx", pid, e - 1, false, false, 8).0.is_err());
}

#[test]
fn an_exhausted_epoch_moves_to_a_new_producer_id() {
    let mut c = TxnCoordinator::new(TxnConfig::default());
    let mut alloc = ids();
    let (pid, _) = c.init_producer_id("tx", 1000, 0, &mut alloc).0.unwrap();
    let mut m = c.get("tx").unwrap().clone();
    m.producer_epoch = i16::MAX - 1;
    c.replay(m);
    let (pid2, e) = c.init_producer_id("tx", 1000, 1, &mut alloc).0.unwrap();
    assert_ne!(pid2, pid);
    assert_eq!(e, 0);
}

#[derive(Debug, Clone)]
enum Op {
    Init,
    Add(u8, i32),
    End(u8, bool),
    Complete,
    Tick(i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        Just(Op::Init),
        (0..3u8, 0..3i32).prop_map(|(who, p)| Op::Add(who, p)),
        (0..3u8, any::<bool>()).prop_map(|(who, c)| Op::End(who, c)),
        Just(Op::Complete),
        (0..3000i64).prop_map(Op::Tick),
    ]
}

proptest! {
    /// Whatever the order of requests from current and stale producer instances: markers
    /// are only ever written under the current epoch, for partitions of the transaction
    /// being ended, and only a request carrying the current epoch (or the timeout or a
    /// newer instance) can end a transaction.
    #[test]
    fn markers_only_for_the_current_transaction(ops in proptest::collection::vec(op(), 1..80), kip890 in any::<bool>()) {
        let mut c = TxnCoordinator::new(TxnConfig {
            max_timeout_ms: 2000,
            ..TxnConfig::default()
        });
        let mut alloc = ids();
        let mut now = 0;
        // Instances the client side has seen: (pid, epoch), newest last.
        let mut instances: Vec<(i64, i16)> = Vec::new();
        for op in ops {
            now += 10;
            let before = c.get("tx").cloned();
            let effects = match op {
                Op::Init => {
                    let (r, e) = c.init_producer_id("tx", 2000, now, &mut alloc);
                    if let Ok(i) = r { instances.push(i); }
                    e
                }
                Op::Add(who, p) => match instances.iter().rev().nth(who as usize) {
                    Some(&(pid, ep)) => c.add_partitions("tx", pid, ep, &[(String::from("t"), p)], now).1,
                    None => vec![],
                },
                Op::End(who, commit) => match instances.iter().rev().nth(who as usize) {
                    Some(&(pid, ep)) => {
                        let (r, e) = c.end_txn("tx", pid, ep, commit, kip890, now);
                        if r.is_ok() && !markers(&e).is_empty() {
                            let b = before.clone().unwrap();
                            prop_assert_eq!(b.state, TxnState::Ongoing);
                            prop_assert_eq!((pid, ep), (b.producer_id, b.producer_epoch));
                        }
                        e
                    }
                    None => vec![],
                },
                Op::Complete => {
                    let (next, e) = c.complete("tx", now, &mut alloc);
                    if let Some(i) = next { instances.push(i); }
                    e
                }
                Op::Tick(dt) => { now += dt; c.tick(now, &mut alloc) }
            };
            for (pid, ep, _, parts) in markers(&effects) {
                let m = c.get("tx").unwrap();
                prop_assert_eq!((pid, ep), (m.producer_id, m.producer_epoch));
                let b = before.clone().unwrap();
                prop_assert_eq!(b.state, TxnState::Ongoing);
                let added: Vec<(String, i32)> = b.partitions.iter().cloned().collect();
                prop_assert_eq!(parts, added);
            }
        }
    }
}

#[test]
fn kip360_epoch_bump_only_from_the_current_instance() {
    let mut c = TxnCoordinator::new(TxnConfig::default());
    let mut alloc = ids();
    let (pid, e0) = c.init_producer_id("tx", 60_000, 0, &mut alloc).0.unwrap();
    let (_, e1) = c
        .init_producer_id_from("tx", 60_000, Some((pid, e0)), 1, &mut alloc)
        .0
        .unwrap();
    assert_eq!(e1, e0 + 1);
    // A zombie still on epoch e0 - 1 or another producer id is fenced.
    let (r, e) = c.init_producer_id_from("tx", 60_000, Some((pid + 1, e1)), 2, &mut alloc);
    assert!(matches!(r, Err(TxnError::ProducerFenced { .. })));
    assert!(e.is_empty());
    // The instance that just bumped may retry with the epoch it had.
    assert!(c
        .init_producer_id_from("tx", 60_000, Some((pid, e0)), 3, &mut alloc)
        .0
        .is_ok());
}

#[test]
fn idle_transactional_ids_expire_but_open_transactions_do_not() {
    let config = TxnConfig {
        transactional_id_expiration_ms: 1000,
        ..TxnConfig::default()
    };
    let mut c = TxnCoordinator::new(config);
    let mut alloc = ids();
    c.init_producer_id("idle", 60_000, 0, &mut alloc).0.unwrap();
    let (pid, epoch) = c.init_producer_id("busy", 60_000, 0, &mut alloc).0.unwrap();
    c.add_partitions("busy", pid, epoch, &[tp("a", 0)], 0)
        .0
        .unwrap();
    let e = c.tick(1500, &mut alloc);
    assert!(e.contains(&TxnEffect::Remove("idle".into())));
    assert!(c.get("idle").is_none());
    assert!(
        c.get("busy").is_some(),
        "an open transaction times out, it does not expire"
    );
}

#[test]
fn unfinished_transactions_are_found_after_a_restart() {
    let mut c = TxnCoordinator::new(TxnConfig::default());
    let mut alloc = ids();
    let (pid, epoch) = c.init_producer_id("tx", 60_000, 0, &mut alloc).0.unwrap();
    c.add_partitions("tx", pid, epoch, &[tp("a", 0)], 0)
        .0
        .unwrap();
    let (_, effects) = c.end_txn("tx", pid, epoch, true, false, 1);
    // The coordinator stops after persisting PrepareCommit: replay that record.
    let prepared = effects
        .iter()
        .find_map(|e| match e {
            TxnEffect::Persist(m) => Some(m.clone()),
            _ => None,
        })
        .unwrap();
    let mut restarted = TxnCoordinator::new(TxnConfig::default());
    restarted.replay(prepared);
    let again = restarted.unfinished();
    assert_eq!(markers(&again), vec![(pid, epoch, true, vec![tp("a", 0)])]);
    restarted.complete("tx", 2, &mut alloc).0.unwrap();
    assert_eq!(restarted.get("tx").unwrap().state, TxnState::CompleteCommit);
    assert!(restarted.unfinished().is_empty());
}
