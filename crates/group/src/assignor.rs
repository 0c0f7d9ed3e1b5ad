//! KIP-848 server-side assignors. Both are deterministic functions of the members'
//! subscriptions, the topics' partition counts and (for `uniform`) the previous target
//! assignment, which they keep where they can (sticky).

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

/// Partitions per topic id.
pub type Assignment = BTreeMap<Uuid, BTreeSet<i32>>;

#[derive(Debug, Clone)]
pub struct AssignorMember<'a> {
    pub member_id: &'a str,
    /// Topic ids the member subscribes to (that exist).
    pub topics: Vec<Uuid>,
    pub previous: Option<&'a Assignment>,
}

/// `topics`: partition count per topic id. Returns the target assignment per member.
pub fn assign(
    name: &str,
    members: &[AssignorMember<'_>],
    topics: &BTreeMap<Uuid, i32>,
) -> BTreeMap<String, Assignment> {
    match name {
        "range" => range(members, topics),
        _ => uniform(members, topics),
    }
}

/// Range: per topic, the members subscribed to it (sorted by id) get contiguous ranges;
/// the first `partitions % members` get one more.
pub fn range(
    members: &[AssignorMember<'_>],
    topics: &BTreeMap<Uuid, i32>,
) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = members
        .iter()
        .map(|m| (m.member_id.to_string(), Assignment::new()))
        .collect();
    for (&topic, &count) in topics {
        let mut subscribers: Vec<&str> = members
            .iter()
            .filter(|m| m.topics.contains(&topic))
            .map(|m| m.member_id)
            .collect();
        subscribers.sort_unstable();
        if subscribers.is_empty() {
            continue;
        }
        let n = subscribers.len() as i32;
        let (base, extra) = (count / n, count % n);
        let mut next = 0;
        for (i, m) in subscribers.iter().enumerate() {
            let take = base + i32::from((i as i32) < extra);
            if take > 0 {
                out.get_mut(*m)
                    .expect("member")
                    .entry(topic)
                    .or_default()
                    .extend(next..next + take);
            }
            next += take;
        }
    }
    out
}

/// Uniform: every partition of every subscribed topic goes to a subscribed member; the
/// counts per member differ by at most one where subscriptions allow; partitions stay with
/// their previous owner when that keeps the balance.
pub fn uniform(
    members: &[AssignorMember<'_>],
    topics: &BTreeMap<Uuid, i32>,
) -> BTreeMap<String, Assignment> {
    let ids: Vec<&str> = members.iter().map(|m| m.member_id).collect();
    let mut owner: BTreeMap<(Uuid, i32), usize> = BTreeMap::new();
    let mut counts = vec![0usize; members.len()];
    let eligible = |t: &Uuid| -> Vec<usize> {
        (0..members.len())
            .filter(|&i| members[i].topics.contains(t))
            .collect()
    };
    // Keep previous assignments that are still valid.
    for (i, m) in members.iter().enumerate() {
        if let Some(prev) = m.previous {
            for (t, ps) in prev {
                let Some(&count) = topics.get(t) else {
                    continue;
                };
                if !m.topics.contains(t) {
                    continue;
                }
                for &p in ps {
                    if p < count && !owner.contains_key(&(*t, p)) {
                        owner.insert((*t, p), i);
                        counts[i] += 1;
                    }
                }
            }
        }
    }
    // The rest go to the least loaded eligible member; partitions with fewer eligible
    // members first.
    let mut unassigned: Vec<(usize, Uuid, i32)> = Vec::new();
    for (&t, &count) in topics {
        let n = eligible(&t).len();
        if n == 0 {
            continue;
        }
        for p in 0..count {
            if !owner.contains_key(&(t, p)) {
                unassigned.push((n, t, p));
            }
        }
    }
    unassigned.sort();
    for (_, t, p) in unassigned {
        let e = eligible(&t);
        let best = *e
            .iter()
            .min_by_key(|&&i| (counts[i], ids[i]))
            .expect("eligible member");
        owner.insert((t, p), best);
        counts[best] += 1;
    }
    // Balance: move a partition from a member with two or more than an eligible one.
    let limit = owner.len() * members.len().max(1) + 1;
    for _ in 0..limit {
        let mut moved = false;
        let keys: Vec<(Uuid, i32)> = owner.keys().copied().collect();
        for key in keys {
            let from = owner[&key];
            let e = eligible(&key.0);
            if let Some(&to) = e
                .iter()
                .filter(|&&i| counts[i] + 1 < counts[from])
                .min_by_key(|&&i| (counts[i], ids[i]))
            {
                owner.insert(key, to);
                counts[from] -= 1;
                counts[to] += 1;
                moved = true;
            }
        }
        if !moved {
            break;
        }
    }
    let mut out: BTreeMap<String, Assignment> = ids
        .iter()
        .map(|id| (id.to_string(), Assignment::new()))
        .collect();
    for ((t, p), i) in owner {
        out.get_mut(ids[i])
            .expect("member")
            .entry(t)
            .or_default()
            .insert(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member<'a>(
        id: &'a str,
        topics: &[Uuid],
        prev: Option<&'a Assignment>,
    ) -> AssignorMember<'a> {
        AssignorMember {
            member_id: id,
            topics: topics.to_vec(),
            previous: prev,
        }
    }

    fn total(a: &Assignment) -> usize {
        a.values().map(BTreeSet::len).sum()
    }

    #[test]
    fn uniform_balances_and_covers_everything() {
        let (t1, t2) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let topics = BTreeMap::from([(t1, 7), (t2, 3)]);
        for n in 1..=6 {
            let names: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
            let members: Vec<_> = names.iter().map(|id| member(id, &[t1, t2], None)).collect();
            let out = uniform(&members, &topics);
            let sizes: Vec<usize> = out.values().map(total).collect();
            assert_eq!(sizes.iter().sum::<usize>(), 10);
            assert!(
                sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1,
                "{sizes:?}"
            );
            let mut seen = BTreeSet::new();
            for a in out.values() {
                for (t, ps) in a {
                    for p in ps {
                        assert!(seen.insert((*t, *p)), "partition assigned twice");
                    }
                }
            }
        }
    }

    #[test]
    fn uniform_is_sticky() {
        let t = Uuid::from_u128(1);
        let topics = BTreeMap::from([(t, 6)]);
        let first = uniform(&[member("a", &[t], None), member("b", &[t], None)], &topics);
        let (pa, pb) = (first["a"].clone(), first["b"].clone());
        let second = uniform(
            &[
                member("a", &[t], Some(&pa)),
                member("b", &[t], Some(&pb)),
                member("c", &[t], None),
            ],
            &topics,
        );
        // a and b each give up one partition; nothing else moves.
        assert!(second["a"][&t].is_subset(&pa[&t]));
        assert!(second["b"][&t].is_subset(&pb[&t]));
        assert_eq!(total(&second["c"]), 2);
    }

    #[test]
    fn uniform_respects_subscriptions() {
        let (t1, t2) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let topics = BTreeMap::from([(t1, 4), (t2, 4)]);
        let out = uniform(
            &[member("a", &[t1], None), member("b", &[t1, t2], None)],
            &topics,
        );
        assert!(!out["a"].contains_key(&t2));
        assert_eq!(out["b"][&t2].len(), 4);
    }

    #[test]
    fn range_splits_contiguously() {
        let t = Uuid::from_u128(1);
        let topics = BTreeMap::from([(t, 7)]);
        let out = range(
            &[
                member("b", &[t], None),
                member("a", &[t], None),
                member("c", &[t], None),
            ],
            &topics,
        );
        assert_eq!(out["a"][&t], BTreeSet::from([0, 1, 2]));
        assert_eq!(out["b"][&t], BTreeSet::from([3, 4]));
        assert_eq!(out["c"][&t], BTreeSet::from([5, 6]));
    }
}
