//! `strata group list|describe|delete|reset-offsets`: consumer groups, their members and
//! assignments, committed offsets and lag per partition.

use anyhow::{bail, Context};
use clap::Subcommand;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use strata_client::groups::{describe_group, list_groups, reset_offsets, GroupView, ResetTo};
use strata_client::{check, Router};

use crate::cli::{runtime, Conn, Output};

#[derive(Subcommand)]
pub enum GroupCommand {
    /// List groups with their type and state.
    List {
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
        #[command(flatten)]
        conn: Conn,
    },
    /// Members, assignments, committed offsets and lag per partition.
    Describe {
        group: String,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
        #[command(flatten)]
        conn: Conn,
    },
    /// Delete a group with no members, and its committed offsets.
    Delete {
        group: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Move a group's committed offsets (the group must have no active members).
    ResetOffsets {
        group: String,
        #[arg(long)]
        topic: String,
        /// Only this partition (default: all of the topic's)
        #[arg(long)]
        partition: Option<i32>,
        #[arg(long, group = "to")]
        to_earliest: bool,
        #[arg(long, group = "to")]
        to_latest: bool,
        #[arg(long, group = "to", value_name = "OFFSET")]
        to_offset: Option<i64>,
        #[command(flatten)]
        conn: Conn,
    },
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn print_group(view: &GroupView) {
    let epoch = view
        .group_epoch
        .map(|e| format!("  epoch {e}"))
        .unwrap_or_default();
    println!(
        "group {}  state {}  type {}  assignor {}{epoch}  members {}",
        view.group_id,
        view.state,
        view.group_type,
        view.protocol,
        view.members.len()
    );
    if !view.members.is_empty() {
        println!("MEMBER\tINSTANCE\tCLIENT\tHOST\tASSIGNMENT");
        for m in &view.members {
            let a: Vec<String> = m
                .assignment
                .iter()
                .map(|tp| {
                    let ps: Vec<String> = tp.partitions.iter().map(i32::to_string).collect();
                    format!("{}:{}", tp.topic, ps.join(","))
                })
                .collect();
            println!(
                "{}\t{}\t{}\t{}\t{}",
                m.member_id,
                m.group_instance_id.as_deref().unwrap_or("-"),
                m.client_id,
                m.client_host,
                a.join(" ")
            );
        }
    }
    let dash = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
    println!("TOPIC\tPARTITION\tCOMMITTED\tLOG-END\tLAG\tMEMBER");
    for o in &view.offsets {
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}",
            o.topic,
            o.partition,
            dash(o.committed_offset),
            dash(o.log_end_offset),
            dash(o.lag),
            o.member_id.as_deref().unwrap_or("-")
        );
    }
}

pub fn run_group(cmd: GroupCommand) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        match cmd {
            GroupCommand::List { output, conn } => {
                let mut router = Router::connect(&conn.bootstrap).await?;
                let groups = list_groups(&mut router).await?;
                if output == Output::Json {
                    println!("{}", serde_json::to_string(&groups)?);
                    return Ok(());
                }
                println!("GROUP\tTYPE\tSTATE\tPROTOCOL-TYPE");
                for g in groups {
                    println!(
                        "{}\t{}\t{}\t{}",
                        g.group_id, g.group_type, g.state, g.protocol_type
                    );
                }
            }
            GroupCommand::Describe {
                group,
                output,
                conn,
            } => {
                let mut router = Router::connect(&conn.bootstrap).await?;
                let view = describe_group(&mut router, &group).await?;
                if output == Output::Json {
                    println!("{}", serde_json::to_string(&view)?);
                } else {
                    print_group(&view);
                }
            }
            GroupCommand::Delete { group, conn } => {
                let mut router = Router::connect(&conn.bootstrap).await?;
                let client = router.coordinator(0, &group).await?;
                let mut req = DeleteGroupsRequest::default();
                req.groups_names.push(GroupId(s(&group)));
                let resp = client.send(req, 2).await?;
                let r = resp
                    .results
                    .first()
                    .context("empty DeleteGroups response")?;
                check(r.error_code, format!("group {group}"), None)?;
                println!("deleted group {group}");
            }
            GroupCommand::ResetOffsets {
                group,
                topic,
                partition,
                to_earliest,
                to_latest,
                to_offset,
                conn,
            } => {
                let to = match (to_earliest, to_latest, to_offset) {
                    (true, _, _) => ResetTo::Earliest,
                    (_, true, _) => ResetTo::Latest,
                    (_, _, Some(o)) => ResetTo::Offset(o),
                    _ => bail!("say where to: --to-earliest, --to-latest or --to-offset N"),
                };
                let mut router = Router::connect(&conn.bootstrap).await?;
                let planned =
                    reset_offsets(&mut router, &group, &topic, partition.map(|p| vec![p]), to)
                        .await?;
                println!("TOPIC\tPARTITION\tNEW-OFFSET");
                for (p, o) in planned {
                    println!("{topic}\t{p}\t{o}");
                }
            }
        }
        Ok(())
    })
}
