//! `strata quota set|remove|list`: client quotas through AlterClientQuotas /
//! DescribeClientQuotas (what `kafka-configs --entity-type users|clients|ips` does).

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use strata_client::{check, Client};

use crate::cli::{print_list, runtime, Conn, Output};

#[derive(Subcommand)]
pub enum QuotaCommand {
    /// Set quotas of an entity: KEY=VALUE (producer_byte_rate, consumer_byte_rate,
    /// request_percentage, controller_mutation_rate; connection_creation_rate for --ip).
    Set {
        #[command(flatten)]
        entity: EntityArgs,
        #[arg(required = true, value_name = "KEY=VALUE")]
        quotas: Vec<String>,
    },
    /// Remove quotas of an entity by key.
    Remove {
        #[command(flatten)]
        entity: EntityArgs,
        #[arg(required = true, value_name = "KEY")]
        keys: Vec<String>,
    },
    /// List every quota (or those of the entity types given).
    List {
        #[command(flatten)]
        entity: EntityArgs,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

#[derive(Args)]
pub struct EntityArgs {
    /// A user (the name in its principal, User:NAME)
    #[arg(long, conflicts_with = "user_default")]
    user: Option<String>,
    /// The default quota of every user
    #[arg(long)]
    user_default: bool,
    /// A client id
    #[arg(long, conflicts_with = "client_id_default")]
    client_id: Option<String>,
    /// The default quota of every client id
    #[arg(long)]
    client_id_default: bool,
    /// A client IP address (connection_creation_rate)
    #[arg(long, conflicts_with = "ip_default")]
    ip: Option<String>,
    /// The default of every IP address
    #[arg(long)]
    ip_default: bool,
    #[command(flatten)]
    conn: Conn,
}

impl EntityArgs {
    /// (type, name or None for the default)
    fn entity(&self) -> Vec<(&'static str, Option<String>)> {
        let mut e = Vec::new();
        if self.user.is_some() || self.user_default {
            e.push(("user", self.user.clone()));
        }
        if self.client_id.is_some() || self.client_id_default {
            e.push(("client-id", self.client_id.clone()));
        }
        if self.ip.is_some() || self.ip_default {
            e.push(("ip", self.ip.clone()));
        }
        e
    }
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn show(name: &Option<StrBytes>) -> String {
    name.as_ref()
        .map_or("<default>".to_string(), |n| n.to_string())
}

async fn alter(
    conn: &Conn,
    entity: Vec<(&'static str, Option<String>)>,
    ops: Vec<alter_client_quotas_request::OpData>,
) -> anyhow::Result<()> {
    if entity.is_empty() {
        bail!("name the entity: --user/--user-default, --client-id/--client-id-default, --ip/--ip-default");
    }
    let req = AlterClientQuotasRequest::default().with_entries(vec![
        alter_client_quotas_request::EntryData::default()
            .with_entity(
                entity
                    .iter()
                    .map(|(t, n)| {
                        alter_client_quotas_request::EntityData::default()
                            .with_entity_type(s(t))
                            .with_entity_name(n.as_deref().map(s))
                    })
                    .collect(),
            )
            .with_ops(ops),
    ]);
    let mut client = Client::connect(&conn.bootstrap).await?;
    let resp = client.send(req, 1).await?;
    for e in &resp.entries {
        check(e.error_code, "AlterClientQuotas", e.error_message.as_ref())?;
    }
    Ok(())
}

pub fn run_quota(cmd: QuotaCommand) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        match cmd {
            QuotaCommand::Set { entity, quotas } => {
                let mut ops = Vec::new();
                for q in &quotas {
                    let (k, v) = q
                        .split_once('=')
                        .with_context(|| format!("'{q}' is not KEY=VALUE"))?;
                    let value: f64 = v
                        .parse()
                        .with_context(|| format!("'{v}' is not a number"))?;
                    ops.push(
                        alter_client_quotas_request::OpData::default()
                            .with_key(s(k))
                            .with_value(value),
                    );
                }
                alter(&entity.conn, entity.entity(), ops).await?;
                println!("quotas set: {}", quotas.join(", "));
            }
            QuotaCommand::Remove { entity, keys } => {
                let ops = keys
                    .iter()
                    .map(|k| {
                        alter_client_quotas_request::OpData::default()
                            .with_key(s(k))
                            .with_remove(true)
                    })
                    .collect();
                alter(&entity.conn, entity.entity(), ops).await?;
                println!("quotas removed: {}", keys.join(", "));
            }
            QuotaCommand::List { entity, output } => {
                let components = entity
                    .entity()
                    .into_iter()
                    .map(|(t, n)| {
                        describe_client_quotas_request::ComponentData::default()
                            .with_entity_type(s(t))
                            .with_match_type(if n.is_some() { 0 } else { 2 })
                            .with_match(n.as_deref().map(s))
                    })
                    .collect();
                let req = DescribeClientQuotasRequest::default().with_components(components);
                let mut client = Client::connect(&entity.conn.bootstrap).await?;
                let resp = client.send(req, 1).await?;
                check(
                    resp.error_code,
                    "DescribeClientQuotas",
                    resp.error_message.as_ref(),
                )?;
                let rows = resp
                    .entries
                    .unwrap_or_default()
                    .iter()
                    .map(|e| {
                        let name: Vec<String> = e
                            .entity
                            .iter()
                            .map(|x| format!("{}={}", x.entity_type.as_str(), show(&x.entity_name)))
                            .collect();
                        let values: Vec<String> = e
                            .values
                            .iter()
                            .map(|v| format!("{}={}", v.key.as_str(), v.value))
                            .collect();
                        // The entity's name is null for a default (every user, client id...).
                        let json = serde_json::json!({
                            "entity": e.entity.iter().map(|x| serde_json::json!({
                                "type": x.entity_type.as_str(),
                                "name": x.entity_name.as_ref().map(|n| n.as_str()),
                            })).collect::<Vec<_>>(),
                            "quotas": e.values.iter()
                                .map(|v| (v.key.to_string(), serde_json::json!(v.value)))
                                .collect::<serde_json::Map<_, _>>(),
                        });
                        (format!("{}\t{}", name.join(","), values.join(",")), json)
                    })
                    .collect();
                print_list(output, "ENTITY\tQUOTAS", rows);
            }
        }
        Ok(())
    })
}
