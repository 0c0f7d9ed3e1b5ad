//! `strata cluster status`: the cluster as Metadata describes it — its id, the controller,
//! the live brokers (endpoint, rack) and partition health (offline: no leader, e.g. still
//! recovering after a restart; under-replicated: fewer in-sync replicas than replicas).

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
                let md = Client::connect(&conn.bootstrap)
                    .await?
                    .metadata(None)
                    .await?;
                println!(
                    "cluster {}\tcontroller {}",
                    md.cluster_id.as_deref().unwrap_or("?"),
                    md.controller_id.0
                );
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
                let (mut total, mut offline, mut under_replicated) = (0, Vec::new(), Vec::new());
                for t in &md.topics {
                    let name = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
                    for p in &t.partitions {
                        total += 1;
                        if p.error_code != 0 || p.leader_id.0 < 0 {
                            offline.push(format!("{name}-{}", p.partition_index));
                        } else if p.isr_nodes.len() < p.replica_nodes.len() {
                            under_replicated.push(format!("{name}-{}", p.partition_index));
                        }
                    }
                }
                println!(
                    "partitions: {total} in {} topic(s), {} offline, {} under-replicated",
                    md.topics.len(),
                    offline.len(),
                    under_replicated.len()
                );
                for (what, list) in [
                    ("offline", &offline),
                    ("under-replicated", &under_replicated),
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
