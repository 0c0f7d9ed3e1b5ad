//! `strata`: the broker (`strata serve`) and a command-line client for it.

mod acl_cli;
mod cli;
mod cluster_cli;
mod command_config;
mod format;
mod group_cli;
mod partition_cli;
mod progress;
mod quota_cli;
mod serve;
mod sql_cli;
mod txn_cli;
mod user_cli;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "strata",
    version,
    about = "Strata: a Kafka-compatible event streaming platform"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
    /// Kafka client properties for the CLI's connections (security.protocol, sasl.*,
    /// ssl.*), as Kafka's tools take them
    #[arg(long, global = true, value_name = "FILE")]
    command_config: Option<std::path::PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker.
    Serve(serve::ServeArgs),
    /// Give a data directory its cluster and node identity before the first start.
    Format(format::FormatArgs),
    /// The cluster: id, controller, brokers, partition health.
    #[command(subcommand)]
    Cluster(cluster_cli::ClusterCommand),
    /// Create, list, describe and delete topics.
    #[command(subcommand)]
    Topic(cli::TopicCommand),
    /// Consumer groups: list, describe (members, offsets, lag), delete, reset offsets.
    #[command(subcommand)]
    Group(group_cli::GroupCommand),
    /// Transactions: list transactional ids, describe one (state, partitions, age).
    #[command(subcommand)]
    Txn(txn_cli::TxnCommand),
    /// Partitions of a cluster: preferred-leader elections.
    #[command(subcommand)]
    Partition(partition_cli::PartitionCommand),
    /// ACLs: add, list and remove (with an authorizer configured).
    #[command(subcommand)]
    Acl(acl_cli::AclCommand),
    /// Client quotas: set, remove and list (byte rates per user / client id, KIP-13/55).
    #[command(subcommand)]
    Quota(quota_cli::QuotaCommand),
    /// SCRAM users: list, set a password, remove (KIP-554).
    #[command(subcommand)]
    User(user_cli::UserCommand),
    /// Produce lines from stdin to a topic.
    Produce(cli::ProduceArgs),
    /// Consume records from a topic and print them.
    Consume(cli::ConsumeArgs),
    /// The SQL engine's terminal client (ksqlDB's language, over its REST API).
    Sql(sql_cli::SqlArgs),
    /// Print a shell completion script: `strata completions bash > /etc/bash_completion.d/strata`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

fn main() {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp
                    | clap::error::ErrorKind::DisplayVersion
                    | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) =>
        {
            e.exit()
        }
        Err(e) => {
            // One line a user can act on, not a usage screen.
            let rendered = e.render().to_string();
            let first = rendered
                .lines()
                .next()
                .unwrap_or("invalid arguments")
                .trim_start_matches("error: ");
            eprintln!("strata: {first} (see 'strata --help')");
            std::process::exit(2);
        }
    };
    if let Some(path) = &args.command_config {
        match command_config::load(path) {
            Ok(security) => strata_client::set_default_security(security),
            Err(e) => {
                eprintln!("strata: {e:#}");
                std::process::exit(1);
            }
        }
    }
    let result = match args.command {
        Command::Serve(a) => serve::run(a),
        Command::Format(a) => format::run(a),
        Command::Cluster(c) => cluster_cli::run_cluster(c),
        Command::Topic(c) => cli::run_topic(c),
        Command::Group(c) => group_cli::run_group(c),
        Command::Txn(c) => txn_cli::run_txn(c),
        Command::Partition(c) => partition_cli::run_partition(c),
        Command::Acl(c) => acl_cli::run_acl(c),
        Command::Quota(c) => quota_cli::run_quota(c),
        Command::User(c) => user_cli::run_user(c),
        Command::Produce(a) => cli::run_produce(a),
        Command::Consume(a) => cli::run_consume(a),
        Command::Sql(a) => sql_cli::run_sql(a),
        Command::Completions { shell } => {
            let mut command = <Args as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "strata", &mut script);
            // A closed pipe (`| head`) ends the output quietly.
            let _ = std::io::Write::write_all(&mut std::io::stdout(), &script);
            Ok(())
        }
    };
    if let Err(e) = result {
        eprintln!("strata: {e:#}");
        std::process::exit(1);
    }
}
