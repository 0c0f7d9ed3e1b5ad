//! `strata cluster status`: the cluster as Metadata and DescribeQuorum describe it — its id,
//! the metadata quorum (leader, epoch, high watermark, each voter's lag), the controller,
//! the live brokers (endpoint, rack) and partition health (offline: no leader, e.g. still
//! recovering after a restart; under-replicated: fewer in-sync replicas than replicas;
//! under-min-ISR: fewer than `min.insync.replicas`, so acks=all writes are refused).

use clap::Subcommand;
use serde_json::{json, Value};
use strata_client::Client;

use crate::cli::{runtime, Conn, Output};

#[derive(Subcommand)]
pub enum ClusterCommand {
    /// Cluster id, controller, brokers and partition health.
    Status {
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
        #[command(flatten)]
        conn: Conn,
    },
}

/// How many partitions of each kind the table names (the JSON has them all).
const LISTED_PER_KIND: usize = 20;

pub fn run_cluster(cmd: ClusterCommand) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        match cmd {
            ClusterCommand::Status { output, conn } => {
                let mut client = Client::connect(&conn.bootstrap).await?;
                let status = status(&mut client).await?;
                match output {
                    Output::Json => println!("{status}"),
                    Output::Table => print_status(&status),
                }
            }
        }
        Ok(())
    })
}

/// The cluster as `--output json` prints it (and the table shows).
async fn status(client: &mut Client) -> anyhow::Result<Value> {
    let md = client.metadata(None).await?;
    let quorum = quorum(client).await;
    let brokers: Vec<Value> = md
        .brokers
        .iter()
        .map(|b| {
            json!({
                "id": b.node_id.0,
                "host": b.host.as_str(),
                "port": b.port,
                "rack": b.rack.as_deref(),
            })
        })
        .collect();
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
                    min_isr = Some(topic_min_isr(client, &name).await);
                }
                if min_isr.is_some_and(|m| p.isr_nodes.len() < m) {
                    // acks=all writes are refused here.
                    under_min_isr.push(format!("{name}-{}", p.partition_index));
                }
            }
        }
    }
    Ok(json!({
        "cluster_id": md.cluster_id.as_deref(),
        "controller": md.controller_id.0,
        "quorum": quorum,
        "brokers": brokers,
        "topics": md.topics.len(),
        "partitions": total,
        "offline": offline,
        "under_replicated": under_replicated,
        "under_min_isr": under_min_isr,
    }))
}

fn print_status(status: &Value) {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    println!(
        "cluster {}\tcontroller {}",
        status["cluster_id"].as_str().unwrap_or("?"),
        status["controller"]
    );
    let q = &status["quorum"];
    match q["error"].as_str() {
        Some(why) => println!("quorum: unavailable ({why})"),
        None => {
            println!(
                "quorum: leader {}\tepoch {}\thigh watermark {}",
                q["leader"], q["epoch"], q["high_watermark"]
            );
            for (title, key) in [
                ("  voter\tlog end\tlag", "voters"),
                ("  observer (broker-only)\tlog end\tlag", "observers"),
            ] {
                let members = q[key].as_array().cloned().unwrap_or_default();
                if key == "observers" && members.is_empty() {
                    continue;
                }
                println!("{title}");
                for m in members {
                    println!(
                        "  {}\t{}\t{}",
                        m["id"],
                        m["log_end_offset"],
                        m["lag"].as_i64().map_or("?".into(), |l| l.to_string())
                    );
                }
            }
        }
    }
    println!("brokers:");
    println!("  id\tendpoint\track");
    for b in status["brokers"].as_array().into_iter().flatten() {
        println!(
            "  {}\t{}:{}\t{}",
            b["id"],
            text(&b["host"]),
            b["port"],
            text(&b["rack"])
        );
    }
    let count = |key: &str| status[key].as_array().map_or(0, Vec::len);
    println!(
        "partitions: {} in {} topic(s), {} offline, {} under-replicated, {} under-min-ISR",
        status["partitions"],
        status["topics"],
        count("offline"),
        count("under_replicated"),
        count("under_min_isr")
    );
    for (what, key) in [
        ("offline", "offline"),
        ("under-replicated", "under_replicated"),
        ("under-min-ISR", "under_min_isr"),
    ] {
        let list = status[key].as_array().cloned().unwrap_or_default();
        for p in list.iter().take(LISTED_PER_KIND) {
            println!("  {what}: {}", text(p));
        }
        if list.len() > LISTED_PER_KIND {
            println!("  ... and {} more {what}", list.len() - LISTED_PER_KIND);
        }
    }
}

/// The metadata quorum as its leader reports it (DescribeQuorum): leader, epoch, high
/// watermark, and each voter's log end offset and lag; `{"error": why}` when it cannot be
/// asked.
async fn quorum(client: &mut Client) -> Value {
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
        let why = match answer {
            Ok(r) => r.error_message.as_deref().unwrap_or("error").to_string(),
            Err(e) => e.to_string(),
        };
        return json!({ "error": why });
    };
    let members = |list: &[kafka_protocol::messages::describe_quorum_response::ReplicaState]| {
        list.iter()
            .map(|v| {
                // A voter that has not reported its log end has no lag to show.
                let lag =
                    (v.log_end_offset >= 0).then(|| (p.high_watermark - v.log_end_offset).max(0));
                json!({
                    "id": v.replica_id.0,
                    "log_end_offset": v.log_end_offset,
                    "lag": lag,
                })
            })
            .collect::<Vec<_>>()
    };
    json!({
        "leader": p.leader_id.0,
        "epoch": p.leader_epoch,
        "high_watermark": p.high_watermark,
        "voters": members(&p.current_voters),
        "observers": members(&p.observers),
    })
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
