//! `strata acl add|list|remove`: ACLs through CreateAcls / DescribeAcls / DeleteAcls, with
//! Kafka's vocabulary (`kafka-acls` users will recognise every word).

use anyhow::bail;
use clap::{Args, Subcommand};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use strata_client::{check, Client};
use strata_security::acl::{Operation, PatternType, Permission, ResourceType, CLUSTER_NAME};

use crate::cli::{print_list, runtime, Conn, Output};

#[derive(Subcommand)]
pub enum AclCommand {
    /// Add ACLs: one per operation given.
    Add(AclArgs),
    /// List ACLs (all, or those matching the given resource / principal).
    List {
        #[command(flatten)]
        args: AclArgs,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Remove the ACLs matching the given resource, principal, host, operations and
    /// permission (what is not given matches anything).
    Remove(AclArgs),
}

#[derive(Args)]
pub struct AclArgs {
    /// The principal, e.g. User:alice (User:* is everyone)
    #[arg(long)]
    principal: Option<String>,
    /// The client host the ACL applies to ('*' for any)
    #[arg(long)]
    host: Option<String>,
    /// Operation, repeatable: read, write, create, delete, alter, describe, cluster-action,
    /// describe-configs, alter-configs, idempotent-write, all
    #[arg(long = "operation", value_name = "OP")]
    operations: Vec<String>,
    /// A DENY ACL (default: ALLOW)
    #[arg(long)]
    deny: bool,
    /// The resource: a topic
    #[arg(long, group = "resource")]
    topic: Option<String>,
    /// The resource: a consumer group
    #[arg(long, group = "resource")]
    group: Option<String>,
    /// The resource: a transactional id
    #[arg(long, group = "resource")]
    transactional_id: Option<String>,
    /// The resource: the cluster
    #[arg(long, group = "resource")]
    cluster: bool,
    /// literal (default for add), prefixed, or for list/remove also any, match
    #[arg(long, value_name = "TYPE")]
    pattern: Option<String>,
    #[command(flatten)]
    conn: Conn,
}

impl AclArgs {
    fn resource(&self) -> (ResourceType, Option<String>) {
        if let Some(t) = &self.topic {
            (ResourceType::Topic, Some(t.clone()))
        } else if let Some(g) = &self.group {
            (ResourceType::Group, Some(g.clone()))
        } else if let Some(t) = &self.transactional_id {
            (ResourceType::TransactionalId, Some(t.clone()))
        } else if self.cluster {
            (ResourceType::Cluster, Some(CLUSTER_NAME.to_string()))
        } else {
            (ResourceType::Any, None)
        }
    }

    fn operations(&self) -> anyhow::Result<Vec<Operation>> {
        self.operations
            .iter()
            .map(|o| match Operation::parse(o) {
                Some(op) => Ok(op),
                None => bail!("unknown operation '{o}'"),
            })
            .collect()
    }

    fn pattern(&self, default: PatternType) -> anyhow::Result<PatternType> {
        match &self.pattern {
            None => Ok(default),
            Some(p) => {
                PatternType::parse(p).ok_or_else(|| anyhow::anyhow!("unknown pattern type '{p}'"))
            }
        }
    }
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn print(output: Output, resources: &[describe_acls_response::DescribeAclsResource]) {
    let mut rows = Vec::new();
    for r in resources {
        let rt = ResourceType::from_code(r.resource_type).map_or("?", |t| t.name());
        let pt = PatternType::from_code(r.pattern_type).map_or("?", |t| t.name());
        for a in &r.acls {
            let operation = Operation::from_code(a.operation).map_or("?", |o| o.name());
            let permission = Permission::from_code(a.permission_type).map_or("?", |p| p.name());
            let line = format!(
                "{rt}:{}\t{pt}\t{}\t{}\t{operation}\t{permission}",
                r.resource_name.as_str(),
                a.principal.as_str(),
                a.host.as_str(),
            );
            let json = serde_json::json!({
                "resource_type": rt,
                "resource_name": r.resource_name.as_str(),
                "pattern_type": pt,
                "principal": a.principal.as_str(),
                "host": a.host.as_str(),
                "operation": operation,
                "permission": permission,
            });
            rows.push((line, json));
        }
    }
    print_list(
        output,
        "RESOURCE\tPATTERN\tPRINCIPAL\tHOST\tOPERATION\tPERMISSION",
        rows,
    );
}

pub fn run_acl(cmd: AclCommand) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        match cmd {
            AclCommand::Add(a) => {
                let (rt, name) = a.resource();
                let Some(name) = name else {
                    bail!("name the resource: --topic, --group, --transactional-id or --cluster");
                };
                let Some(principal) = &a.principal else {
                    bail!("--principal is required (e.g. User:alice)");
                };
                let ops = a.operations()?;
                if ops.is_empty() {
                    bail!("give at least one --operation");
                }
                let pattern = a.pattern(PatternType::Literal)?;
                let permission = if a.deny {
                    Permission::Deny
                } else {
                    Permission::Allow
                };
                let mut req = CreateAclsRequest::default();
                for op in &ops {
                    req.creations.push(
                        create_acls_request::AclCreation::default()
                            .with_resource_type(rt.code())
                            .with_resource_name(s(&name))
                            .with_resource_pattern_type(pattern.code())
                            .with_principal(s(principal))
                            .with_host(s(a.host.as_deref().unwrap_or("*")))
                            .with_operation(op.code())
                            .with_permission_type(permission.code()),
                    );
                }
                let mut client = Client::connect(&a.conn.bootstrap).await?;
                let resp = client.send(req, 3).await?;
                for (r, op) in resp.results.iter().zip(&ops) {
                    check(
                        r.error_code,
                        format!(
                            "ACL {} {} on {}:{name}",
                            permission.name(),
                            op.name(),
                            rt.name()
                        ),
                        r.error_message.as_ref(),
                    )?;
                }
                println!(
                    "added {} ACL(s): {} {principal} {} on {}:{name} ({})",
                    ops.len(),
                    permission.name(),
                    ops.iter().map(|o| o.name()).collect::<Vec<_>>().join(","),
                    rt.name(),
                    pattern.name()
                );
            }
            AclCommand::List { args: a, output } => {
                let (rt, name) = a.resource();
                let ops = a.operations()?;
                if ops.len() > 1 {
                    bail!("list takes at most one --operation");
                }
                let req = DescribeAclsRequest::default()
                    .with_resource_type_filter(rt.code())
                    .with_resource_name_filter(name.as_deref().map(s))
                    .with_pattern_type_filter(a.pattern(PatternType::Any)?.code())
                    .with_principal_filter(a.principal.as_deref().map(s))
                    .with_host_filter(a.host.as_deref().map(s))
                    .with_operation(ops.first().copied().unwrap_or(Operation::Any).code())
                    .with_permission_type(match (a.deny, ops.is_empty()) {
                        (true, _) => Permission::Deny.code(),
                        _ => Permission::Any.code(),
                    });
                let mut client = Client::connect(&a.conn.bootstrap).await?;
                let resp = client.send(req, 3).await?;
                check(resp.error_code, "DescribeAcls", resp.error_message.as_ref())?;
                print(output, &resp.resources);
            }
            AclCommand::Remove(a) => {
                let (rt, name) = a.resource();
                let mut ops = a.operations()?;
                if ops.is_empty() {
                    ops.push(Operation::Any);
                }
                let pattern = a.pattern(PatternType::Any)?;
                let mut req = DeleteAclsRequest::default();
                for op in &ops {
                    req.filters.push(
                        delete_acls_request::DeleteAclsFilter::default()
                            .with_resource_type_filter(rt.code())
                            .with_resource_name_filter(name.as_deref().map(s))
                            .with_pattern_type_filter(pattern.code())
                            .with_principal_filter(a.principal.as_deref().map(s))
                            .with_host_filter(a.host.as_deref().map(s))
                            .with_operation(op.code())
                            .with_permission_type(if a.deny {
                                Permission::Deny.code()
                            } else {
                                Permission::Any.code()
                            }),
                    );
                }
                let mut client = Client::connect(&a.conn.bootstrap).await?;
                let resp = client.send(req, 3).await?;
                let mut removed = 0;
                for r in &resp.filter_results {
                    check(r.error_code, "DeleteAcls", r.error_message.as_ref())?;
                    removed += r.matching_acls.len();
                }
                println!("removed {removed} ACL(s)");
            }
        }
        Ok(())
    })
}
