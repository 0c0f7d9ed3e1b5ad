//! Where new partitions' replicas go (Kafka's rack-aware assignment, simplified): brokers are
//! ordered so that racks alternate (the first broker of each rack, then the second of each,
//! …), and a partition takes `replication_factor` consecutive brokers of that order, starting
//! one further for each partition from a start picked by the caller. With as many racks as
//! replicas, every replica of a partition is on a different rack; leaders (the first replica)
//! spread evenly over the brokers. Brokers without a rack count as one rack of their own.

use std::collections::BTreeMap;

/// The rack-alternating order of `brokers` (node id, rack), racks and nodes sorted.
pub fn rack_alternating(brokers: &[(i32, Option<String>)]) -> Vec<i32> {
    let mut by_rack: BTreeMap<Option<&str>, Vec<i32>> = BTreeMap::new();
    for (node, rack) in brokers {
        by_rack.entry(rack.as_deref()).or_default().push(*node);
    }
    for nodes in by_rack.values_mut() {
        nodes.sort_unstable();
        nodes.dedup();
    }
    let deepest = by_rack.values().map(Vec::len).max().unwrap_or(0);
    (0..deepest)
        .flat_map(|i| {
            by_rack
                .values()
                .filter_map(move |nodes| nodes.get(i).copied())
        })
        .collect()
}

/// The replicas of `partition`: `replication_factor` consecutive brokers of the
/// rack-alternating order from `start + partition` (at most the number of brokers).
pub fn replicas_for(
    brokers: &[(i32, Option<String>)],
    start: usize,
    partition: i32,
    replication_factor: usize,
) -> Vec<i32> {
    let order = rack_alternating(brokers);
    if order.is_empty() {
        return Vec::new();
    }
    let first = start.wrapping_add(partition.max(0) as usize) % order.len();
    (0..replication_factor.min(order.len()))
        .map(|i| order[(first + i) % order.len()])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brokers(list: &[(i32, Option<&str>)]) -> Vec<(i32, Option<String>)> {
        list.iter()
            .map(|(n, r)| (*n, r.map(str::to_string)))
            .collect()
    }

    #[test]
    fn racks_alternate() {
        let b = brokers(&[
            (1, Some("a")),
            (2, Some("a")),
            (3, Some("b")),
            (4, Some("b")),
            (5, Some("c")),
            (6, Some("c")),
        ]);
        assert_eq!(rack_alternating(&b), vec![1, 3, 5, 2, 4, 6]);
    }

    #[test]
    fn every_replica_of_a_partition_is_on_another_rack() {
        let b = brokers(&[
            (1, Some("a")),
            (2, Some("a")),
            (3, Some("b")),
            (4, Some("b")),
            (5, Some("c")),
            (6, Some("c")),
        ]);
        let rack = |n: i32| b.iter().find(|x| x.0 == n).unwrap().1.clone();
        let mut leaders = BTreeMap::new();
        for p in 0..60 {
            let r = replicas_for(&b, 7, p, 3);
            assert_eq!(r.len(), 3);
            let racks: std::collections::BTreeSet<_> = r.iter().map(|n| rack(*n)).collect();
            assert_eq!(racks.len(), 3, "partition {p}: {r:?}");
            *leaders.entry(r[0]).or_insert(0) += 1;
        }
        // Leaders spread evenly over the six brokers.
        assert_eq!(leaders.len(), 6);
        assert!(leaders.values().all(|&c| c == 10), "{leaders:?}");
    }

    #[test]
    fn without_racks_replicas_are_consecutive_and_capped() {
        let b = brokers(&[(3, None), (1, None), (2, None)]);
        assert_eq!(replicas_for(&b, 0, 0, 3), vec![1, 2, 3]);
        assert_eq!(replicas_for(&b, 0, 1, 2), vec![2, 3]);
        assert_eq!(replicas_for(&b, 5, 0, 9), vec![3, 1, 2]);
        assert!(replicas_for(&[], 0, 0, 3).is_empty());
    }

    #[test]
    fn uneven_racks_still_spread() {
        // Two brokers in rack a, one in b: RF 2 always spans both racks when it can.
        let b = brokers(&[(1, Some("a")), (2, Some("a")), (3, Some("b"))]);
        assert_eq!(rack_alternating(&b), vec![1, 3, 2]);
        let r = replicas_for(&b, 0, 0, 2);
        assert_eq!(r, vec![1, 3]);
    }
}
