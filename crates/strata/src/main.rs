//! `strata`: the broker (`strata serve`) and a command-line client for it.

mod cli;
mod serve;

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
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker.
    Serve(serve::ServeArgs),
    /// Create, list, describe and delete topics.
    #[command(subcommand)]
    Topic(cli::TopicCommand),
    /// Produce lines from stdin to a topic.
    Produce(cli::ProduceArgs),
    /// Consume records from a topic and print them.
    Consume(cli::ConsumeArgs),
}

fn main() {
    let args = Args::parse();
    let result = match args.command {
        Command::Serve(a) => serve::run(a),
        Command::Topic(c) => cli::run_topic(c),
        Command::Produce(a) => cli::run_produce(a),
        Command::Consume(a) => cli::run_consume(a),
    };
    if let Err(e) = result {
        eprintln!("strata: {e:#}");
        std::process::exit(1);
    }
}
