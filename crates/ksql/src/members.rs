//! The SQL engines of a cluster share out the persistent queries' tasks through one consumer
//! group, `_strata_ksql_engines`, with Kafka's classic group protocol (JoinGroup, SyncGroup,
//! Heartbeat), as any Kafka client joins a group: each engine is a member; the leader
//! assigns every task to one member ([`assign`]); a member that stops heartbeating (a node
//! killed) leaves after the session timeout and its tasks move to the others. A task is a
//! whole query or, for a partition-local query, one of its input partitions
//! ([`crate::run::Task`]); below, "query" means task.
//!
//! Each task runs once: its transactional id is the same wherever it runs, so a new owner's
//! InitProducerId fences an old owner that has not noticed yet, and its outputs, state and
//! positions stay exactly-once across the move. The assignment also names every task's
//! owner by its SQL listener, where pull queries on its table are sent.
//!
//! Members tell the leader, in their JoinGroup metadata, their SQL address, the queries
//! they know (the command topic may reach engines at slightly different times) and those
//! they run (kept where they run, so a rebalance moves as few as it can). A member whose
//! known queries change joins again, which starts a rebalance. Engines join once the
//! command topic exists (the cluster's first statement).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::{
    join_group_request, sync_group_request, GroupId, HeartbeatRequest, JoinGroupRequest,
    SyncGroupRequest,
};
use kafka_protocol::protocol::StrBytes;
use serde_json::{json, Value as J};
use tokio::sync::watch;

use crate::log::{LogClient, LogError};

pub const ENGINES_GROUP: &str = "_strata_ksql_engines";
const PROTOCOL_TYPE: &str = "strata-ksql";
const PROTOCOL_NAME: &str = "queries";
const SESSION_TIMEOUT_MS: i32 = 10_000;
const REBALANCE_TIMEOUT_MS: i32 = 15_000;
const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(1000);
const RETRY_BACKOFF: Duration = Duration::from_millis(500);

/// What a member tells the leader.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberInfo {
    /// Its SQL listener (host:port).
    pub sql: String,
    /// The persistent queries it knows.
    pub known: BTreeSet<String>,
    /// Those it runs now.
    pub running: BTreeSet<String>,
}

impl MemberInfo {
    fn to_bytes(&self) -> Bytes {
        Bytes::from(
            json!({"sql": self.sql, "known": self.known, "running": self.running}).to_string(),
        )
    }

    fn from_bytes(b: &[u8]) -> MemberInfo {
        let j: J = serde_json::from_slice(b).unwrap_or(J::Null);
        let set = |k: &str| -> BTreeSet<String> {
            j[k].as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        MemberInfo {
            sql: j["sql"].as_str().unwrap_or_default().to_string(),
            known: set("known"),
            running: set("running"),
        }
    }
}

/// One member's share of an assignment, and where every query runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ownership {
    /// The group generation it belongs to (0: none yet).
    pub generation: i32,
    /// The queries this engine runs.
    pub mine: BTreeSet<String>,
    /// Each assigned query's engine, by its SQL listener.
    pub owners: BTreeMap<String, String>,
}

impl Ownership {
    fn to_bytes(&self) -> Bytes {
        Bytes::from(json!({"mine": self.mine, "owners": self.owners}).to_string())
    }

    fn from_bytes(b: &[u8], generation: i32) -> Ownership {
        let j: J = serde_json::from_slice(b).unwrap_or(J::Null);
        Ownership {
            generation,
            mine: j["mine"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            owners: j["owners"]
                .as_object()
                .map(|o| {
                    o.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// The leader's assignment (pure): every query any member knows goes to one member. A query
/// stays with a member that runs it while that member has no more than its fair share
/// (⌈queries / members⌉); the rest go one by one to the member with the fewest, ties to the
/// lowest member id. By member id.
pub fn assign(members: &BTreeMap<String, MemberInfo>) -> BTreeMap<String, Ownership> {
    let mut out: BTreeMap<String, Ownership> = members
        .keys()
        .map(|m| (m.clone(), Ownership::default()))
        .collect();
    if members.is_empty() {
        return out;
    }
    let queries: BTreeSet<&String> = members.values().flat_map(|m| &m.known).collect();
    let fair = queries.len().div_ceil(members.len());
    let mut owner: BTreeMap<&String, &String> = BTreeMap::new();
    for q in &queries {
        let keeper = members
            .iter()
            .find(|(id, m)| m.running.contains(*q) && out[*id].mine.len() < fair);
        if let Some((id, _)) = keeper {
            out.get_mut(id).expect("a member").mine.insert((*q).clone());
            owner.insert(q, id);
        }
    }
    for q in &queries {
        if owner.contains_key(q) {
            continue;
        }
        let id = members
            .keys()
            .min_by_key(|id| (out[*id].mine.len(), (*id).clone()))
            .expect("members");
        out.get_mut(id).expect("a member").mine.insert((*q).clone());
        owner.insert(q, id);
    }
    let owners: BTreeMap<String, String> = owner
        .iter()
        .map(|(q, id)| ((*q).clone(), members[*id].sql.clone()))
        .collect();
    for o in out.values_mut() {
        o.owners = owners.clone();
    }
    out
}

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

/// Joins the engines' group and keeps this engine a member: publishes each assignment on
/// the returned channel; joins again when `info` changes. Runs until the channel's
/// receivers are all dropped.
pub fn start(bootstrap: &str, mut info: watch::Receiver<MemberInfo>) -> watch::Receiver<Ownership> {
    let (tx, rx) = watch::channel(Ownership::default());
    let bootstrap = bootstrap.to_string();
    tokio::spawn(async move {
        let mut log = LogClient::new(&bootstrap);
        // Not before the first statement: an unused engine leaves no trace in the cluster
        // (joining creates `__consumer_offsets`, best done once every broker is up).
        loop {
            match log.topics().await {
                Ok(t) if t.contains_key(crate::engine::COMMAND_TOPIC) => break,
                Ok(_) => {}
                Err(_) => log = LogClient::new(&bootstrap),
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(RETRY_BACKOFF).await;
        }
        let mut member_id = String::new();
        loop {
            if tx.is_closed() {
                return;
            }
            let me = info.borrow_and_update().clone();
            match membership_round(&mut log, &mut member_id, &me).await {
                Ok(ownership) => {
                    tracing::info!(
                        generation = ownership.generation,
                        queries = ?ownership.mine,
                        "SQL engine: queries assigned"
                    );
                    tx.send_replace(ownership.clone());
                    // Heartbeats until a rebalance, or until what this member knows changes.
                    loop {
                        tokio::select! {
                            _ = tokio::time::sleep(HEARTBEAT_INTERVAL) => {}
                            changed = info.changed() => {
                                if changed.is_err() {
                                    return;
                                }
                                break;
                            }
                        }
                        match heartbeat(&mut log, &member_id, ownership.generation).await {
                            Ok(0) => {}
                            Ok(27) => break, // REBALANCE_IN_PROGRESS
                            Ok(22 | 25) => {
                                // ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID: a new member.
                                member_id.clear();
                                break;
                            }
                            Ok(code) => {
                                tracing::debug!(code, "SQL engine: heartbeat refused");
                                log = LogClient::new(&bootstrap);
                                break;
                            }
                            Err(e) => {
                                tracing::debug!(error = %e, "SQL engine: heartbeat failed");
                                log = LogClient::new(&bootstrap);
                                tokio::time::sleep(RETRY_BACKOFF).await;
                                break;
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "SQL engine: joining the engines' group");
                    log = LogClient::new(&bootstrap);
                    tokio::time::sleep(RETRY_BACKOFF).await;
                }
            }
        }
    });
    rx
}

/// One JoinGroup + SyncGroup: this member's assignment.
async fn membership_round(
    log: &mut LogClient,
    member_id: &mut String,
    me: &MemberInfo,
) -> Result<Ownership, LogError> {
    loop {
        let mut protocol = join_group_request::JoinGroupRequestProtocol::default();
        protocol.name = s(PROTOCOL_NAME);
        protocol.metadata = me.to_bytes();
        let mut req = JoinGroupRequest::default();
        req.group_id = GroupId(s(ENGINES_GROUP));
        req.session_timeout_ms = SESSION_TIMEOUT_MS;
        req.rebalance_timeout_ms = REBALANCE_TIMEOUT_MS;
        req.member_id = s(member_id);
        req.protocol_type = s(PROTOCOL_TYPE);
        req.protocols.push(protocol);
        let resp = log.coordinator_request(ENGINES_GROUP, req, 7).await?;
        match resp.error_code {
            0 => {}
            79 => {
                // MEMBER_ID_REQUIRED: join again with the id the coordinator gave.
                *member_id = resp.member_id.to_string();
                continue;
            }
            25 => {
                member_id.clear();
                continue;
            }
            code => {
                return Err(LogError::Records(format!(
                    "JoinGroup refused: error {code}"
                )))
            }
        }
        *member_id = resp.member_id.to_string();
        let generation = resp.generation_id;
        let mut sync = SyncGroupRequest::default();
        sync.group_id = GroupId(s(ENGINES_GROUP));
        sync.generation_id = generation;
        sync.member_id = s(member_id);
        sync.protocol_type = Some(s(PROTOCOL_TYPE));
        sync.protocol_name = Some(s(PROTOCOL_NAME));
        if resp.leader == resp.member_id {
            let members: BTreeMap<String, MemberInfo> = resp
                .members
                .iter()
                .map(|m| (m.member_id.to_string(), MemberInfo::from_bytes(&m.metadata)))
                .collect();
            for (id, share) in assign(&members) {
                let mut a = sync_group_request::SyncGroupRequestAssignment::default();
                a.member_id = s(&id);
                a.assignment = share.to_bytes();
                sync.assignments.push(a);
            }
        }
        let resp = log.coordinator_request(ENGINES_GROUP, sync, 5).await?;
        match resp.error_code {
            0 => return Ok(Ownership::from_bytes(&resp.assignment, generation)),
            27 => continue, // REBALANCE_IN_PROGRESS: join again
            22 | 25 => {
                member_id.clear();
                continue;
            }
            code => {
                return Err(LogError::Records(format!(
                    "SyncGroup refused: error {code}"
                )))
            }
        }
    }
}

async fn heartbeat(log: &mut LogClient, member_id: &str, generation: i32) -> Result<i16, LogError> {
    let mut req = HeartbeatRequest::default();
    req.group_id = GroupId(s(ENGINES_GROUP));
    req.generation_id = generation;
    req.member_id = s(member_id);
    Ok(log
        .coordinator_request(ENGINES_GROUP, req, 4)
        .await?
        .error_code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(sql: &str, known: &[&str], running: &[&str]) -> MemberInfo {
        MemberInfo {
            sql: sql.into(),
            known: known.iter().map(|q| q.to_string()).collect(),
            running: running.iter().map(|q| q.to_string()).collect(),
        }
    }

    #[test]
    fn every_known_query_gets_one_owner_and_shares_are_even() {
        let members: BTreeMap<String, MemberInfo> = [
            ("a".to_string(), member("h1:1", &["Q1", "Q2"], &[])),
            (
                "b".to_string(),
                member("h2:1", &["Q1", "Q2", "Q3", "Q4"], &[]),
            ),
            ("c".to_string(), member("h3:1", &["Q5"], &[])),
        ]
        .into();
        let out = assign(&members);
        let all: Vec<&String> = out.values().flat_map(|o| &o.mine).collect();
        assert_eq!(all.len(), 5, "each of the five queries once: {out:?}");
        assert!(
            out.values().all(|o| (1..=2).contains(&o.mine.len())),
            "{out:?}"
        );
        for o in out.values() {
            assert_eq!(o.owners.len(), 5);
            for q in &o.mine {
                assert!(o.owners.contains_key(q));
            }
        }
        assert_eq!(
            out["a"].owners["Q1"],
            members[out
                .iter()
                .find(|(_, o)| o.mine.contains("Q1"))
                .map(|(id, _)| id)
                .unwrap()]
            .sql
        );
    }

    #[test]
    fn running_queries_stay_where_they_run_within_a_fair_share() {
        // b ran everything alone; a joins: b keeps its fair share, a gets the rest.
        let members: BTreeMap<String, MemberInfo> = [
            (
                "a".to_string(),
                member("h1:1", &["Q1", "Q2", "Q3", "Q4"], &[]),
            ),
            (
                "b".to_string(),
                member("h2:1", &["Q1", "Q2", "Q3", "Q4"], &["Q1", "Q2", "Q3", "Q4"]),
            ),
        ]
        .into();
        let out = assign(&members);
        assert_eq!(out["b"].mine, ["Q1", "Q2"].map(String::from).into());
        assert_eq!(out["a"].mine, ["Q3", "Q4"].map(String::from).into());
        // One member left: it takes everything.
        let alone: BTreeMap<String, MemberInfo> =
            [("a".to_string(), member("h1:1", &["Q1", "Q2"], &["Q2"]))].into();
        assert_eq!(assign(&alone)["a"].mine.len(), 2);
        assert!(assign(&BTreeMap::new()).is_empty());
    }

    #[test]
    fn member_info_and_ownership_survive_their_wire_form() {
        let m = member("h:1", &["Q1"], &["Q1"]);
        assert_eq!(MemberInfo::from_bytes(&m.to_bytes()), m);
        let o = Ownership {
            generation: 3,
            mine: ["Q1".to_string()].into(),
            owners: [("Q1".to_string(), "h:1".to_string())].into(),
        };
        assert_eq!(Ownership::from_bytes(&o.to_bytes(), 3), o);
        assert_eq!(MemberInfo::from_bytes(b"garbage"), MemberInfo::default());
    }
}
