//! `strata cluster status`: the cluster as Metadata and DescribeQuorum describe it — its id,
//! the metadata quorum (leader, epoch, high watermark, each voter's lag), the controller,
//! the live brokers (endpoint, rack) and partition health (offline: no leader, e.g. still
//! recovering after a restart; under-replicated: fewer in-sync replicas than replicas;
//! under-min-ISR: fewer than `min.insync.replicas`, so acks=all writes are refused).

use clap::Subcommand;
use strata_client::Client;

use crate::cli::{runtime, Conn};

#[derive(Subcommand)]
pub enum ClusterCommand {
    /// Cluster id, controller, brokers and partition health.
    Status {
        #[command(flatten)]
        conn: Conn,
    },
}

pub fn run_cluster(cmd: ClusterCommand) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        match cmd {
            ClusterCommand::Status { conn } => {
                let mut client = Client::connect(&conn.bootstrap).await?;
                let md = client.metadata(None).await?;
                println!(
                    "cluster {}\tcontroller {}",
                    md.cluster_id.as_deref().unwrap_or("?"),
                    md.controller_id.0
                );
                print_quorum(&mut client).await;
                println!("brokers:");
                println!("  id\tendpoint\track");
                for b in &md.brokers {
                    println!(
                        "  {}\t{}:{}\t{}",
                        b.node_id.0,
                        b.host.as_str(),
                        b.port,
                        b.rack.as_deref().unwrap_or("-")
                    );
                }
                let (mut total, mut offline, mut under_replicated, mut under_min_isr) =
                    (0, Vec::new(), Vec::new(), Vec::new());
                for t in &md.topics {
                    let name = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
                    // Its min.insync.replicas, asked only when some partition lacks a replica.
                    let mut min_isr: Option<usize> = None;
                    for p in &t.partitions {
                        total += 1;
                        if p.error_code != 0 || p.leader_id.0 < 0 {
                            offline.push(format!("{name}-{}", p.partition_index));
                        } else if p.isr_nodes.len() < p.replica_nodes.len() {
                            under_replicated.push(format!("{name}-{}", p.partition_index));
                            if min_isr.is_none() {
                                min_isr = Some(topic_min_isr(&mut client, &name).await);
                            }
                            if min_isr.is_some_and(|m| p.isr_nodes.len() < m) {
                                // acks=all writes are refused here.
                                under_min_isr.push(format!("{name}-{}", p.partition_index));
                            }
                        }
                    }
                }
                println!(
                    "partitions: {total} in {} topic(s), {} offline, {} under-replicated, {} under-min-ISR",
                    md.topics.len(),
                    offline.len(),
                    under_replicated.len(),
                    under_min_isr.len()
                );
                for (what, list) in [
                    ("offline", &offline),
                    ("under-replicated", &under_replicated),
                    ("under-min-ISR", &under_min_isr),
                ] {
                    for p in list.iter().take(20) {
                        println!("  {what}: {p}");
                    }
                    if list.len() > 20 {
                        println!("  ... and {} more {what}", list.len() - 20);
                    }
                }
            }
        }
        Ok(())
    })
}

/// The metadata quorum as its leader reports it (DescribeQuorum): leader, epoch, high
/// watermark, and each voter's log end offset and lag.
async fn print_quorum(client: &mut Client) {
    use kafka_protocol::messages::describe_quorum_request as dq;
    use kafka_protocol::messages::{DescribeQuorumRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let request = DescribeQuorumRequest::default().with_topics(vec![dq::TopicData::default()
        .with_topic_name(TopicName(StrBytes::from_static_str("__cluster_metadata")))
        .with_partitions(vec![dq::PartitionData::default().with_partition_index(0)])]);
    let answer = client.send(request, 2).await;
    let partition = match &answer {
        Ok(r) if r.error_code == 0 => r.topics.first().and_then(|t| t.partitions.first()),
        _ => None,
    };
    let Some(p) = partition else {
        match answer {
            Ok(r) => println!(
                "quorum: unavailable ({})",
                r.error_message.as_deref().unwrap_or("error")
            ),
            Err(e) => println!("quorum: unavailable ({e})"),
        }
        return;
    };
    println!(
        "quorum: leader {}\tepoch {}\thigh watermark {}",
        p.leader_id.0, p.leader_epoch, p.high_watermark
    );
    let lag = |end: i64| {
        if end < 0 {
            "?".to_string()
        } else {
            (p.high_watermark - end).max(0).to_string()
        }
    };
    println!("  voter\tlog end\tlag");
    for v in &p.current_voters {
        println!(
            "  {}\t{}\t{}",
            v.replica_id.0,
            v.log_end_offset,
            lag(v.log_end_offset)
        );
    }
    if !p.observers.is_empty() {
        println!("  observer (broker-only)\tlog end\tlag");
        for v in &p.observers {
            println!(
                "  {}\t{}\t{}",
                v.replica_id.0,
                v.log_end_offset,
                lag(v.log_end_offset)
            );
        }
    }
}

/// A topic's min.insync.replicas (1 if it cannot be read).
async fn topic_min_isr(client: &mut Client, topic: &str) -> usize {
    client
        .describe_topic_configs(topic)
        .await
        .ok()
        .and_then(|configs| {
            configs
                .into_iter()
                .find(|(k, _, _)| k == "min.insync.replicas")
                .and_then(|(_, v, _)| v.parse().ok())
        })
        .unwrap_or(1)
}
