use clap::{Args, Subcommand};

#[derive(Subcommand)]
pub enum TopicCommand {
    Create,
}
#[derive(Args)]
pub struct ProduceArgs {}
#[derive(Args)]
pub struct ConsumeArgs {}
pub fn run_topic(_: TopicCommand) -> anyhow::Result<()> {
    anyhow::bail!("todo")
}
pub fn run_produce(_: ProduceArgs) -> anyhow::Result<()> {
    anyhow::bail!("todo")
}
pub fn run_consume(_: ConsumeArgs) -> anyhow::Result<()> {
    anyhow::bail!("todo")
}
