//! The command-line client: topic admin, produce from stdin, consume to stdout.

use std::io::{BufRead, Write};
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::{Args, Subcommand};
use strata_client::{partition_for_key, Client, Router};
use strata_records::{decode_records, BatchBuilder, Compression, Record};

const DEFAULT_BOOTSTRAP: &str = "127.0.0.1:9092";
/// Lines per produced batch.
const PRODUCE_BATCH_RECORDS: usize = 1000;

#[derive(Args)]
pub struct Conn {
    /// Broker address
    #[arg(long, default_value = DEFAULT_BOOTSTRAP, value_name = "HOST:PORT", global = true)]
    pub bootstrap: String,
}

/// How a list or a description is printed: a table (tab-separated) or one JSON document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// Prints a list as a tab-separated table (`header`, then each row's line) or as one JSON
/// array of each row's object.
pub fn print_list(output: Output, header: &str, rows: Vec<(String, serde_json::Value)>) {
    match output {
        Output::Table => {
            println!("{header}");
            for (line, _) in rows {
                println!("{line}");
            }
        }
        Output::Json => println!(
            "{}",
            serde_json::Value::Array(rows.into_iter().map(|(_, v)| v).collect())
        ),
    }
}

#[derive(Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        name: String,
        #[arg(long, default_value_t = 1)]
        partitions: i32,
        /// Topic config, repeatable: --config retention.ms=60000
        #[arg(long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// List topics.
    List {
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
        #[command(flatten)]
        conn: Conn,
    },
    /// Show partitions, offsets and configs of a topic.
    Describe {
        name: String,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
        #[command(flatten)]
        conn: Conn,
    },
    /// Change a topic's configs live (or, with --cluster-default, every topic's default).
    AlterConfig {
        /// The topic (omit with --cluster-default)
        #[arg(required_unless_present = "cluster_default")]
        name: Option<String>,
        /// Set a config, repeatable: --set retention.ms=60000
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Remove a config (back to its default), repeatable
        #[arg(long = "delete", value_name = "KEY")]
        delete: Vec<String>,
        /// Alter the cluster-wide dynamic broker defaults (log.retention.ms, ...) instead
        #[arg(long, conflicts_with = "name")]
        cluster_default: bool,
        /// Only check the change
        #[arg(long)]
        validate_only: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Delete a topic.
    Delete {
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Args)]
pub struct ProduceArgs {
    topic: String,
    /// Read the lines from this file (default: stdin); a progress bar shows on a terminal
    #[arg(long, value_name = "PATH")]
    file: Option<std::path::PathBuf>,
    /// Split each line into key and value at the first occurrence of this string
    #[arg(long, value_name = "SEP")]
    key_separator: Option<String>,
    /// Send every record to this partition (default: by key hash, else round robin)
    #[arg(long)]
    partition: Option<i32>,
    /// 0, 1 or -1 (all)
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    acks: i16,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Args)]
pub struct ConsumeArgs {
    topic: String,
    /// Read only this partition (default: all)
    #[arg(long)]
    partition: Option<i32>,
    /// Start at the earliest offset (default: the end, like kafka-console-consumer)
    #[arg(long, conflicts_with = "offset")]
    from_beginning: bool,
    /// Start at this offset (in every partition read)
    #[arg(long)]
    offset: Option<i64>,
    /// Stop after this many records
    #[arg(long)]
    max_messages: Option<u64>,
    /// Stop once every partition read is at its end
    #[arg(long)]
    exit_at_end: bool,
    #[command(flatten)]
    conn: Conn,
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")
}

fn parse_configs(configs: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    configs
        .iter()
        .map(|c| match c.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => bail!("--config '{c}' is not KEY=VALUE"),
        })
        .collect()
}

async fn partition_count(client: &mut Client, topic: &str) -> anyhow::Result<i32> {
    let md = client.metadata(Some(vec![topic.to_string()])).await?;
    let t = md.topics.first().context("empty metadata response")?;
    strata_client::check(t.error_code, format!("topic {topic}"), None)?;
    Ok(t.partitions.len() as i32)
}

pub fn run_topic(cmd: TopicCommand) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        match cmd {
            TopicCommand::Create {
                name,
                partitions,
                configs,
                conn,
            } => {
                let configs = parse_configs(&configs)?;
                Client::connect(&conn.bootstrap)
                    .await?
                    .create_topic(&name, partitions, &configs)
                    .await?;
                println!("created topic {name} with {partitions} partition(s)");
            }
            TopicCommand::List { output, conn } => {
                let md = Client::connect(&conn.bootstrap)
                    .await?
                    .metadata(None)
                    .await?;
                let mut listed: Vec<(String, usize)> = md
                    .topics
                    .into_iter()
                    .map(|t| {
                        (
                            t.name.map(|n| n.0.to_string()).unwrap_or_default(),
                            t.partitions.len(),
                        )
                    })
                    .collect();
                listed.sort();
                match output {
                    Output::Table => {
                        for (name, partitions) in listed {
                            println!("{name}\t{partitions} partition(s)");
                        }
                    }
                    Output::Json => {
                        let topics: Vec<serde_json::Value> = listed
                            .into_iter()
                            .map(|(name, partitions)| {
                                serde_json::json!({"name": name, "partitions": partitions})
                            })
                            .collect();
                        println!("{}", serde_json::Value::Array(topics));
                    }
                }
            }
            TopicCommand::Describe { name, output, conn } => {
                let json = output == Output::Json;
                let mut rows = Vec::new();
                let mut client = Router::connect(&conn.bootstrap).await?;
                let md = client.any().metadata(Some(vec![name.clone()])).await?;
                let t = md
                    .topics
                    .into_iter()
                    .next()
                    .context("empty metadata response")?;
                strata_client::check(t.error_code, format!("topic {name}"), None)?;
                if !json {
                    println!(
                        "topic {name} id {} partitions {}",
                        t.topic_id,
                        t.partitions.len()
                    );
                    println!("partition\tleader\tleader_epoch\treplicas\tisr\tlog_start_offset\tlocal_log_start_offset\thigh_watermark\tlocal_bytes\tremote_bytes");
                }
                let ids = |v: &[kafka_protocol::messages::BrokerId]| {
                    v.iter().map(|b| b.0.to_string()).collect::<Vec<_>>().join(",")
                };
                for p in &t.partitions {
                    // Tiered storage: the log starts in the object store (earliest), the local
                    // log later (KIP-1005's earliest-local); the same without tiering.
                    let (start, local_start, end) = if p.error_code == 0 && p.leader_id.0 >= 0 {
                        (
                            client.list_offset(&name, p.partition_index, -2).await?.to_string(),
                            client.list_offset(&name, p.partition_index, -4).await?.to_string(),
                            client.list_offset(&name, p.partition_index, -1).await?.to_string(),
                        )
                    } else {
                        ("-".into(), "-".into(), "- (no leader)".into())
                    };
                    // The leader's log directories: the local one first, then (tiered
                    // storage) the object store.
                    let (mut local_bytes, mut remote_bytes) = ("-".to_string(), "0".to_string());
                    if p.error_code == 0 && p.leader_id.0 >= 0 {
                        let dirs = client
                            .leader(&name, p.partition_index)
                            .await?
                            .log_dir_sizes(&name, p.partition_index)
                            .await?;
                        for (i, (_, size)) in dirs.iter().enumerate() {
                            if i == 0 {
                                local_bytes = size.to_string();
                            } else {
                                remote_bytes = size.to_string();
                            }
                        }
                    }
                    if json {
                        let number = |v: &str| {
                            v.parse::<i64>()
                                .map_or(serde_json::Value::Null, serde_json::Value::from)
                        };
                        let list = |v: &[kafka_protocol::messages::BrokerId]| {
                            v.iter().map(|b| b.0).collect::<Vec<_>>()
                        };
                        rows.push(serde_json::json!({
                            "partition": p.partition_index,
                            "leader": p.leader_id.0,
                            "leader_epoch": p.leader_epoch,
                            "replicas": list(&p.replica_nodes),
                            "isr": list(&p.isr_nodes),
                            "log_start_offset": number(&start),
                            "local_log_start_offset": number(&local_start),
                            "high_watermark": number(&end),
                            "local_bytes": number(&local_bytes),
                            "remote_bytes": number(&remote_bytes),
                        }));
                        continue;
                    }
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                        p.partition_index,
                        p.leader_id.0,
                        p.leader_epoch,
                        ids(&p.replica_nodes),
                        ids(&p.isr_nodes),
                        start,
                        local_start,
                        end,
                        local_bytes,
                        remote_bytes
                    );
                }
                let configs = client.any().describe_topic_configs(&name).await?;
                let source_name = |source: i8| match source {
                    1 => "topic",
                    2 => "broker, dynamic",
                    3 => "cluster default, dynamic",
                    4 => "broker config file",
                    _ => "default",
                };
                if json {
                    let configs: serde_json::Map<String, serde_json::Value> = configs
                        .into_iter()
                        .map(|(k, v, source)| {
                            (k, serde_json::json!({"value": v, "source": source_name(source)}))
                        })
                        .collect();
                    println!(
                        "{}",
                        serde_json::json!({
                            "name": name,
                            "topic_id": t.topic_id.to_string(),
                            "partitions": rows,
                            "configs": configs,
                        })
                    );
                    return Ok(());
                }
                println!("configs (effective value, and where it comes from):");
                for (k, v, source) in configs {
                    println!("  {k}={v}\t({})", source_name(source));
                }
            }
            TopicCommand::AlterConfig {
                name,
                set,
                delete,
                cluster_default,
                validate_only,
                conn,
            } => {
                if set.is_empty() && delete.is_empty() {
                    bail!("nothing to change: give --set KEY=VALUE or --delete KEY");
                }
                let mut ops = Vec::new();
                for kv in &set {
                    let (k, v) = kv
                        .split_once('=')
                        .with_context(|| format!("--set {kv}: expected KEY=VALUE"))?;
                    ops.push((k.to_string(), 0i8, Some(v.to_string())));
                }
                for k in &delete {
                    ops.push((k.clone(), 1i8, None));
                }
                let (kind, resource) = match &name {
                    Some(n) => (2i8, n.clone()),
                    None => (4i8, String::new()),
                };
                let mut client = Client::connect(&conn.bootstrap).await?;
                client
                    .incremental_alter_configs(kind, &resource, &ops, validate_only)
                    .await?;
                let what = if cluster_default {
                    "cluster-wide defaults".to_string()
                } else {
                    format!("topic {resource}")
                };
                if validate_only {
                    println!("{what}: the change is valid (nothing stored)");
                } else {
                    println!("{what}: configs changed");
                }
            }
            TopicCommand::Delete { name, conn } => {
                Client::connect(&conn.bootstrap)
                    .await?
                    .delete_topic(&name)
                    .await?;
                println!("deleted topic {name}");
            }
        }
        Ok(())
    })
}

pub fn run_produce(args: ProduceArgs) -> anyhow::Result<()> {
    if !matches!(args.acks, -1..=1) {
        bail!("--acks must be 0, 1 or -1");
    }
    runtime()?.block_on(async move {
        // Each partition's batches go to its leader (any broker of a cluster bootstraps).
        let mut client = Router::connect(&args.conn.bootstrap).await?;
        let partitions = partition_count(client.any(), &args.topic).await?;
        if let Some(p) = args.partition {
            if p < 0 || p >= partitions {
                bail!(
                    "partition {p} does not exist: topic {} has {partitions}",
                    args.topic
                );
            }
        }
        let mut batches: Vec<BatchBuilder> = (0..partitions)
            .map(|_| BatchBuilder::new(Compression::None))
            .collect();
        let mut round_robin = 0i32;
        let mut sent = 0u64;
        let (mut input, total, source): (Box<dyn BufRead>, Option<u64>, String) = match &args.file {
            Some(path) => {
                let file = std::fs::File::open(path)
                    .with_context(|| format!("cannot open {}", path.display()))?;
                let len = file.metadata().ok().map(|m| m.len());
                (
                    Box::new(std::io::BufReader::new(file)),
                    len,
                    path.display().to_string(),
                )
            }
            // Stdin redirected from a file has a size too.
            None => (
                Box::new(std::io::stdin().lock()),
                std::fs::metadata("/proc/self/fd/0")
                    .ok()
                    .filter(|m| m.is_file())
                    .map(|m| m.len()),
                "stdin".to_string(),
            ),
        };
        let progress = crate::progress::bar(
            total,
            crate::progress::Unit::Bytes,
            &format!("producing to {}", args.topic),
            false,
        );
        let mut line = String::new();
        loop {
            line.clear();
            let read = input
                .read_line(&mut line)
                .with_context(|| format!("reading {source}"))?;
            if read == 0 {
                break;
            }
            progress.inc(read as u64);
            if line.ends_with('\n') {
                line.pop();
                if line.ends_with('\r') {
                    line.pop();
                }
            }
            let (key, value) = match &args.key_separator {
                Some(sep) => match line.split_once(sep.as_str()) {
                    Some((k, v)) => (Some(Bytes::from(k.to_string())), Bytes::from(v.to_string())),
                    None => (None, Bytes::from(line.clone())),
                },
                None => (None, Bytes::from(line.clone())),
            };
            let partition = match (args.partition, &key) {
                (Some(p), _) => p,
                (None, Some(k)) => partition_for_key(k, partitions),
                (None, None) => {
                    round_robin = (round_robin + 1) % partitions;
                    round_robin
                }
            };
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            batches[partition as usize].push(Record {
                key,
                value: Some(value),
                timestamp_ms: now,
                ..Default::default()
            });
            if batches[partition as usize].len() >= PRODUCE_BATCH_RECORDS {
                sent += flush(
                    &mut client,
                    &args.topic,
                    partition,
                    &mut batches[partition as usize],
                    args.acks,
                )
                .await?;
            }
        }
        for p in 0..partitions {
            sent += flush(
                &mut client,
                &args.topic,
                p,
                &mut batches[p as usize],
                args.acks,
            )
            .await?;
        }
        progress.finish_and_clear();
        eprintln!("produced {sent} record(s) to {}", args.topic);
        Ok(())
    })
}

async fn flush(
    client: &mut Router,
    topic: &str,
    partition: i32,
    batch: &mut BatchBuilder,
    acks: i16,
) -> anyhow::Result<u64> {
    if batch.is_empty() {
        return Ok(0);
    }
    let n = batch.len() as u64;
    let bytes = batch.build()?;
    *batch = BatchBuilder::new(Compression::None);
    if acks == 0 {
        bail!("--acks 0 is not supported by the CLI (it waits for each response)");
    }
    client.produce(topic, partition, bytes, acks).await?;
    Ok(n)
}

pub fn run_consume(args: ConsumeArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        let mut client = Router::connect(&args.conn.bootstrap).await?;
        let count = partition_count(client.any(), &args.topic).await?;
        let partitions: Vec<i32> = match args.partition {
            Some(p) if p >= 0 && p < count => vec![p],
            Some(p) => bail!(
                "partition {p} does not exist: topic {} has {count}",
                args.topic
            ),
            None => (0..count).collect(),
        };
        let mut positions = Vec::new();
        // Consuming to the end: how many offsets lie between the start and the end as it is
        // now, for the progress bar (shown on a terminal when the records go elsewhere).
        let mut to_read = 0u64;
        for &p in &partitions {
            let start = match (args.offset, args.from_beginning) {
                (Some(o), _) => o,
                (None, true) => client.list_offset(&args.topic, p, -2).await?,
                (None, false) => client.list_offset(&args.topic, p, -1).await?,
            };
            if args.exit_at_end {
                let end = client.list_offset(&args.topic, p, -1).await?;
                to_read += (end - start).max(0) as u64;
            }
            positions.push((p, start, false));
        }
        let progress = if args.exit_at_end {
            crate::progress::bar(
                Some(to_read),
                crate::progress::Unit::Records,
                &format!("consuming {}", args.topic),
                true,
            )
        } else {
            indicatif::ProgressBar::hidden()
        };
        let mut printed = 0u64;
        let stdout = std::io::stdout();
        loop {
            for (p, offset, at_end) in positions.iter_mut() {
                let wait = if partitions.len() == 1 { 500 } else { 50 };
                let (records, hw) = client.fetch(&args.topic, *p, *offset, wait).await?;
                for r in decode_records(records)? {
                    if r.offset < *offset || r.control {
                        continue;
                    }
                    let key = r
                        .key
                        .map(|k| String::from_utf8_lossy(&k).into_owned())
                        .unwrap_or_default();
                    let value = r
                        .value
                        .map(|v| String::from_utf8_lossy(&v).into_owned())
                        .unwrap_or_else(|| "<null>".into());
                    let mut out = stdout.lock();
                    writeln!(out, "{p}\t{}\t{key}\t{value}", r.offset)?;
                    // Offsets, not records: a transaction's markers and compacted gaps count.
                    progress.inc((r.offset + 1 - *offset) as u64);
                    *offset = r.offset + 1;
                    printed += 1;
                    if args.max_messages.is_some_and(|m| printed >= m) {
                        return Ok(());
                    }
                }
                *at_end = *offset >= hw;
            }
            if args.exit_at_end && positions.iter().all(|(_, _, e)| *e) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
}
