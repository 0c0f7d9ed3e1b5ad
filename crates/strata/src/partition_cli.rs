//! `strata partition reassign|reassignments|elect-leaders`: move replicas between brokers
//! (AlterPartitionReassignments, as `kafka-reassign-partitions.sh`), list moves in progress,
//! and put leadership back on each partition's preferred (first) replica (ElectLeaders, as
//! `kafka-leader-election.sh --election-type preferred`).

use clap::Subcommand;
use kafka_protocol::messages::{elect_leaders_request, ElectLeadersRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use strata_client::Client;

use crate::cli::{runtime, Conn};

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
        #[command(flatten)]
        conn: Conn,
    },
    /// Reassignments in progress.
    Reassignments {
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

pub fn run_partition(cmd: PartitionCommand) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        match cmd {
            PartitionCommand::Reassign {
                topic,
                partition,
                replicas,
                cancel,
                conn,
            } => {
                use kafka_protocol::messages::alter_partition_reassignments_request::{
                    ReassignablePartition, ReassignableTopic,
                };
                let mut client = Client::connect(&conn.bootstrap).await?;
                let target = (!cancel).then(|| {
                    replicas
                        .iter()
                        .map(|&r| kafka_protocol::messages::BrokerId(r))
                        .collect()
                });
                let req = kafka_protocol::messages::AlterPartitionReassignmentsRequest::default()
                    .with_timeout_ms(60_000)
                    .with_topics(vec![ReassignableTopic::default()
                        .with_name(TopicName(StrBytes::from_string(topic.clone())))
                        .with_partitions(vec![ReassignablePartition::default()
                            .with_partition_index(partition)
                            .with_replicas(target)])]);
                let resp = client.send(req, 0).await?;
                strata_client::check(resp.error_code, "reassign", resp.error_message.as_ref())?;
                for t in &resp.responses {
                    for p in &t.partitions {
                        strata_client::check(
                            p.error_code,
                            format!("reassign {topic}-{partition}"),
                            p.error_message.as_ref(),
                        )?;
                    }
                }
                if cancel {
                    println!("reassignment of {topic}-{partition} cancelled");
                } else {
                    println!("reassignment of {topic}-{partition} to {replicas:?} started");
                }
            }
            PartitionCommand::Reassignments { conn } => {
                let mut client = Client::connect(&conn.bootstrap).await?;
                let resp = client
                    .send(
                        kafka_protocol::messages::ListPartitionReassignmentsRequest::default()
                            .with_timeout_ms(60_000),
                        0,
                    )
                    .await?;
                strata_client::check(resp.error_code, "list reassignments", resp.error_message.as_ref())?;
                let ids = |v: &[kafka_protocol::messages::BrokerId]| {
                    v.iter().map(|b| b.0.to_string()).collect::<Vec<_>>().join(",")
                };
                println!("partition\treplicas\tadding\tremoving");
                for t in &resp.topics {
                    for p in &t.partitions {
                        println!(
                            "{}-{}\t{}\t{}\t{}",
                            t.name.0.as_str(),
                            p.partition_index,
                            ids(&p.replicas),
                            ids(&p.adding_replicas),
                            ids(&p.removing_replicas)
                        );
                    }
                }
            }
            PartitionCommand::ElectLeaders {
                topic,
                partition,
                leaderless,
                conn,
            } => {
                let mut client = Client::connect(&conn.bootstrap).await?;
                let topic_partitions = match &topic {
                    None => None,
                    Some(t) => {
                        let partitions = match partition {
                            Some(p) => vec![p],
                            None => client
                                .metadata(Some(vec![t.clone()]))
                                .await?
                                .topics
                                .iter()
                                .flat_map(|t| t.partitions.iter().map(|p| p.partition_index))
                                .collect(),
                        };
                        Some(vec![elect_leaders_request::TopicPartitions::default()
                            .with_topic(TopicName(StrBytes::from_string(t.clone())))
                            .with_partitions(partitions)])
                    }
                };
                let req = ElectLeadersRequest::default()
                    .with_election_type(if leaderless { 1 } else { 0 })
                    .with_topic_partitions(topic_partitions)
                    .with_timeout_ms(60_000);
                let resp = client.send(req, 2).await?;
                strata_client::check(resp.error_code, "elect leaders", None)?;
                let (mut elected, mut not_needed, mut failed) = (0, 0, 0);
                for t in &resp.replica_election_results {
                    for p in &t.partition_result {
                        match p.error_code {
                            0 => elected += 1,
                            84 => not_needed += 1,
                            code => {
                                failed += 1;
                                println!(
                                    "{}-{}: {}",
                                    t.topic.0.as_str(),
                                    p.partition_id,
                                    kafka_protocol::error::ResponseError::try_from_code(code)
                                        .map_or(format!("error {code}"), |e| format!("{e:?}"))
                                );
                            }
                        }
                    }
                }
                println!("elected {elected}, already led by the wanted replica {not_needed}, not possible {failed}");
            }
        }
        Ok(())
    })
}
