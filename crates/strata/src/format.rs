//! `strata format`: gives a data directory its identity (`meta.properties`: cluster id, node
//! id, directory id) before the first start, as Kafka's `kafka-storage format` does. A
//! directory already formatted is refused (also for the same identity, unless
//! `--ignore-formatted`), so a typo can never re-label a node's data.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use strata_storage::{MetaProperties, RealFs};

#[derive(Args)]
pub struct FormatArgs {
    /// Data directory to format
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// The cluster's id (letters, digits, '-' and '_'); a random one is made and printed if
    /// absent
    #[arg(long, value_name = "ID")]
    cluster_id: Option<String>,
    /// This node's id
    #[arg(long, value_name = "N", default_value_t = 1)]
    node_id: i32,
    /// Succeed without writing if the directory already has exactly this identity
    #[arg(long)]
    ignore_formatted: bool,
    /// A SCRAM user the cluster starts with, in Kafka's syntax (repeatable):
    /// 'SCRAM-SHA-256=[name=admin,password=admin-secret]' (also iterations=N, or
    /// salt=…,saltedpassword=… in base64 instead of password=). Added at the first start
    /// unless the cluster already has a credential for that user and mechanism.
    #[arg(long, value_name = "CREDENTIAL")]
    add_scram: Vec<String>,
}

pub fn run(args: FormatArgs) -> anyhow::Result<()> {
    let cluster_id = match args.cluster_id {
        Some(id) => id,
        None => uuid::Uuid::new_v4().simple().to_string(),
    };
    if cluster_id.is_empty()
        || cluster_id.len() > 64
        || !cluster_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        bail!("cluster id '{cluster_id}' must be 1 to 64 letters, digits, '-' or '_'");
    }
    if args.node_id < 0 {
        bail!("node id {} must not be negative", args.node_id);
    }
    let scram = args
        .add_scram
        .iter()
        .map(|a| strata_broker::bootstrap::parse_add_scram(a).map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<_>>>()
        .context("--add-scram")?;
    let dir = &args.data_dir;
    if dir.exists() && !dir.is_dir() {
        bail!("{} exists and is not a directory", dir.display());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let fs = RealFs;
    if let Some(existing) = MetaProperties::read(&fs, dir)? {
        if let Some(why) = existing.mismatch(dir, &cluster_id, args.node_id) {
            bail!("{why}: it is already formatted");
        }
        if args.ignore_formatted {
            println!(
                "{} is already formatted for cluster {cluster_id} as node {}",
                dir.display(),
                args.node_id
            );
            return Ok(());
        }
        bail!(
            "{} is already formatted (use --ignore-formatted to accept that)",
            dir.display()
        );
    }
    if !scram.is_empty() {
        strata_broker::bootstrap::write(&fs, dir, &scram)?;
    }
    MetaProperties {
        cluster_id: cluster_id.clone(),
        node_id: args.node_id,
        directory_id: uuid::Uuid::new_v4().to_string(),
    }
    .write(&fs, dir)?;
    println!(
        "formatted {} for cluster {cluster_id} as node {}",
        dir.display(),
        args.node_id
    );
    Ok(())
}
