//! `strata partition reassign|reassignments|elect-leaders`: move replicas between brokers
//! (AlterPartitionReassignments, as `kafka-reassign-partitions.sh`), list moves in progress,
//! and put leadership back on each partition's preferred (first) replica (ElectLeaders, as
//! `kafka-leader-election.sh --election-type preferred`).

use clap::Subcommand;
use strata_client::{partitions, Client};

use crate::cli::{print_list, runtime, Conn, Output};

#[derive(Subcommand)]
pub enum PartitionCommand {
    /// Move a partition's replicas to other brokers (the first leads once it is done);
    /// --cancel stops a move in progress.
    Reassign {
        #[arg(long)]
        topic: String,
        #[arg(long)]
        partition: i32,
        /// The new replicas, e.g. 2,3,1
        #[arg(long, value_delimiter = ',', required_unless_present = "cancel")]
        replicas: Vec<i32>,
        #[arg(long)]
        cancel: bool,
        /// Wait until the move is done (a progress bar of the bytes the new replicas hold
        /// shows on a terminal)
        #[arg(long, conflicts_with = "cancel")]
        wait: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Reassignments in progress.
    Reassignments {
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
        #[command(flatten)]
        conn: Conn,
    },
    /// Elect leaders: the preferred replica (default), or for partitions without a leader an
    /// in-sync replica (--leaderless).
    ElectLeaders {
        /// Only this topic (default: every partition of every topic)
        #[arg(long)]
        topic: Option<String>,
        /// Only this partition of --topic
        #[arg(long, requires = "topic")]
        partition: Option<i32>,
        /// Elect only where there is no leader (Kafka's "unclean" type; Strata still picks
        /// only in-sync replicas)
        #[arg(long)]
        leaderless: bool,
        #[command(flatten)]
        conn: Conn,
    },
}

/// How often a waited-for reassignment is looked at.
const REASSIGNMENT_POLL: std::time::Duration = std::time::Duration::from_millis(500);

/// Waits until `topic`-`partition` has no reassignment in progress, drawing (on a terminal)
/// the bytes its slowest new replica holds against the leader's log; then its replicas and
/// in-sync replicas.
async fn wait_for_reassignment(
    client: &mut Client,
    topic: &str,
    partition: i32,
    target: &[i32],
) -> anyhow::Result<(Vec<i32>, Vec<i32>)> {
    use std::collections::HashMap;
    // The move may not be listed yet when first asked (the node answering has not applied
    // it): done is "not listed and the replicas are the target"; not listed with other
    // replicas for this long means it was cancelled or replaced.
    let unlisted_limit = std::time::Duration::from_secs(30);
    let mut unlisted_since: Option<std::time::Instant> = None;
    let progress = crate::progress::bar(
        Some(0),
        crate::progress::Unit::Bytes,
        &format!("copying {topic}-{partition}"),
        false,
    );
    let mut brokers: HashMap<i32, Client> = HashMap::new();
    loop {
        let moving = partitions::reassignments(client)
            .await?
            .into_iter()
            .find(|r| r.topic == topic && r.partition == partition);
        let md = client.metadata(Some(vec![topic.to_string()])).await?;
        let state = md
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .find(|p| p.partition_index == partition);
        let Some(moving) = moving else {
            let ids = |v: &[kafka_protocol::messages::BrokerId]| -> Vec<i32> {
                v.iter().map(|b| b.0).collect()
            };
            let (replicas, isr) = state.map_or((Vec::new(), Vec::new()), |p| {
                (ids(&p.replica_nodes), ids(&p.isr_nodes))
            });
            if replicas == target {
                return Ok((replicas, isr));
            }
            let since = *unlisted_since.get_or_insert_with(std::time::Instant::now);
            if since.elapsed() > unlisted_limit {
                anyhow::bail!(
                    "no move of {topic}-{partition} in progress, and its replicas are {replicas:?}, not {target:?} (cancelled or replaced?)"
                );
            }
            tokio::time::sleep(REASSIGNMENT_POLL).await;
            continue;
        };
        unlisted_since = None;
        // The leader's local log against the slowest new replica's (what it still has to
        // copy); sizes that cannot be asked just leave the bar where it was.
        let endpoints: HashMap<i32, String> = md
            .brokers
            .iter()
            .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
            .collect();
        if let Some(leader) = state.map(|p| p.leader_id.0).filter(|&l| l >= 0) {
            if let Some(total) =
                local_size(&mut brokers, &endpoints, leader, topic, partition).await
            {
                let mut copied = total;
                for b in &moving.adding {
                    if let Some(size) =
                        local_size(&mut brokers, &endpoints, *b, topic, partition).await
                    {
                        copied = copied.min(size);
                    }
                }
                progress.set_length(total);
                progress.set_position(copied);
            }
        }
        tokio::time::sleep(REASSIGNMENT_POLL).await;
    }
}

/// The size of `broker`'s local replica of `topic`-`partition` (None when it cannot be asked;
/// a broken connection is dropped and made again next time).
async fn local_size(
    brokers: &mut std::collections::HashMap<i32, Client>,
    endpoints: &std::collections::HashMap<i32, String>,
    broker: i32,
    topic: &str,
    partition: i32,
) -> Option<u64> {
    if let std::collections::hash_map::Entry::Vacant(e) = brokers.entry(broker) {
        e.insert(Client::connect(endpoints.get(&broker)?).await.ok()?);
    }
    let dirs = brokers
        .get_mut(&broker)?
        .log_dir_sizes(topic, partition)
        .await;
    if dirs.is_err() {
        brokers.remove(&broker);
    }
    Some(
        dirs.ok()?
            .first()
            .map_or(0, |(_, size)| (*size).max(0) as u64),
    )
}

pub fn run_partition(cmd: PartitionCommand) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        match cmd {
            PartitionCommand::Reassign {
                topic,
                partition,
                replicas,
                cancel,
                wait,
                conn,
            } => {
                let mut client = Client::connect(&conn.bootstrap).await?;
                let target = (!cancel).then_some(replicas.as_slice());
                partitions::reassign(&mut client, &topic, partition, target).await?;
                if cancel {
                    println!("reassignment of {topic}-{partition} cancelled");
                } else {
                    println!("reassignment of {topic}-{partition} to {replicas:?} started");
                }
                if wait {
                    let (replicas, isr) =
                        wait_for_reassignment(&mut client, &topic, partition, &replicas).await?;
                    println!(
                        "reassignment of {topic}-{partition} done: replicas {replicas:?}, in sync {isr:?}"
                    );
                }
            }
            PartitionCommand::Reassignments { output, conn } => {
                let mut client = Client::connect(&conn.bootstrap).await?;
                let list = |v: &[i32]| {
                    v.iter()
                        .map(|b| b.to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                };
                let rows = partitions::reassignments(&mut client)
                    .await?
                    .into_iter()
                    .map(|r| {
                        let line = format!(
                            "{}-{}\t{}\t{}\t{}",
                            r.topic,
                            r.partition,
                            list(&r.replicas),
                            list(&r.adding),
                            list(&r.removing)
                        );
                        (line, serde_json::to_value(&r).expect("serializes"))
                    })
                    .collect();
                print_list(output, "partition\treplicas\tadding\tremoving", rows);
            }
            PartitionCommand::ElectLeaders {
                topic,
                partition,
                leaderless,
                conn,
            } => {
                let mut client = Client::connect(&conn.bootstrap).await?;
                let wanted = match &topic {
                    None => None,
                    Some(t) => {
                        let indexes = match partition {
                            Some(p) => vec![p],
                            None => client
                                .metadata(Some(vec![t.clone()]))
                                .await?
                                .topics
                                .iter()
                                .flat_map(|t| t.partitions.iter().map(|p| p.partition_index))
                                .collect(),
                        };
                        Some(vec![(t.clone(), indexes)])
                    }
                };
                let done = partitions::elect_leaders(&mut client, leaderless, wanted).await?;
                for (p, why) in &done.failed {
                    println!("{p}: {why}");
                }
                println!(
                    "elected {}, already led by the wanted replica {}, not possible {}",
                    done.elected.len(),
                    done.not_needed.len(),
                    done.failed.len()
                );
            }
        }
        Ok(())
    })
}
