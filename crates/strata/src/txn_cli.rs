//! `strata txn list|describe`: transactional ids, their state, open transactions' partitions
//! and age (ListTransactions + DescribeTransactions).

use anyhow::Context;
use clap::Subcommand;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use strata_client::{check, Client, Router};

use crate::cli::{runtime, Conn};

#[derive(Subcommand)]
pub enum TxnCommand {
    /// Transactional ids with their producer, state, and (open ones) age and partitions.
    List {
        /// Only transactions in progress (Ongoing, PrepareCommit, PrepareAbort).
        #[arg(long)]
        open: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// One transactional id: producer id and epoch, state, timeout, age, partitions.
    Describe {
        transactional_id: String,
        #[command(flatten)]
        conn: Conn,
    },
}

const OPEN_STATES: &[&str] = &["Ongoing", "PrepareCommit", "PrepareAbort"];

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn age(t: &describe_transactions_response::TransactionState) -> String {
    if OPEN_STATES.contains(&t.transaction_state.as_str()) && t.transaction_start_time_ms >= 0 {
        format!(
            "{:.1}s",
            (now_ms() - t.transaction_start_time_ms).max(0) as f64 / 1000.0
        )
    } else {
        "-".into()
    }
}

fn partitions(t: &describe_transactions_response::TransactionState) -> String {
    let list: Vec<String> = t
        .topics
        .iter()
        .flat_map(|topic| {
            topic
                .partitions
                .iter()
                .map(move |p| format!("{}-{p}", topic.topic.as_str()))
        })
        .collect();
    if list.is_empty() {
        "-".into()
    } else {
        list.join(",")
    }
}

async fn describe(
    client: &mut Client,
    ids: Vec<String>,
) -> anyhow::Result<Vec<describe_transactions_response::TransactionState>> {
    let mut req = DescribeTransactionsRequest::default();
    req.transactional_ids = ids
        .into_iter()
        .map(|id| TransactionalId(StrBytes::from_string(id)))
        .collect();
    Ok(client.send(req, 0).await?.transaction_states)
}

pub fn run_txn(cmd: TxnCommand) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        match cmd {
            TxnCommand::List { open, conn } => {
                // Each broker lists and describes the transactions it coordinates.
                let mut bootstrap = Client::connect(&conn.bootstrap).await?;
                let md = bootstrap.metadata(Some(vec![])).await?;
                let mut described = Vec::new();
                for b in &md.brokers {
                    let addr = format!("{}:{}", b.host.as_str(), b.port);
                    let mut client = Client::connect(&addr).await?;
                    let mut req = ListTransactionsRequest::default();
                    if open {
                        req.state_filters = OPEN_STATES
                            .iter()
                            .map(|s| StrBytes::from_static_str(s))
                            .collect();
                    }
                    let resp = client.send(req, 1).await?;
                    check(resp.error_code, "ListTransactions", None)?;
                    let ids: Vec<String> = resp
                        .transaction_states
                        .iter()
                        .map(|t| t.transactional_id.to_string())
                        .collect();
                    if !ids.is_empty() {
                        described.extend(describe(&mut client, ids).await?);
                    }
                }
                described
                    .sort_by(|a, b| a.transactional_id.as_str().cmp(b.transactional_id.as_str()));
                println!("TRANSACTIONAL-ID\tPRODUCER-ID\tEPOCH\tSTATE\tAGE\tPARTITIONS");
                for t in described.iter().filter(|t| t.error_code == 0) {
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}",
                        t.transactional_id.as_str(),
                        t.producer_id.0,
                        t.producer_epoch,
                        t.transaction_state.as_str(),
                        age(t),
                        partitions(t)
                    );
                }
            }
            TxnCommand::Describe {
                transactional_id,
                conn,
            } => {
                let mut router = Router::connect(&conn.bootstrap).await?;
                let client = router.coordinator(1, &transactional_id).await?;
                let described = describe(client, vec![transactional_id.clone()]).await?;
                let t = described
                    .first()
                    .context("empty DescribeTransactions response")?;
                check(
                    t.error_code,
                    format!("transactional id {transactional_id}"),
                    None,
                )?;
                println!("transactional id: {}", t.transactional_id.as_str());
                println!("producer id:      {}", t.producer_id.0);
                println!("producer epoch:   {}", t.producer_epoch);
                println!("state:            {}", t.transaction_state.as_str());
                println!("timeout:          {} ms", t.transaction_timeout_ms);
                println!("age:              {}", age(t));
                println!("partitions:       {}", partitions(t));
            }
        }
        Ok(())
    })
}
