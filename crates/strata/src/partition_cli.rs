//! `strata partition elect-leaders`: leadership back to each partition's preferred (first)
//! replica, as `kafka-leader-election.sh --election-type preferred` does (ElectLeaders).

use clap::Subcommand;
use kafka_protocol::messages::{elect_leaders_request, ElectLeadersRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use strata_client::Client;

use crate::cli::{runtime, Conn};

#[derive(Subcommand)]
pub enum PartitionCommand {
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
