//! `strata txn list|describe`: transactional ids, their state, open transactions' partitions
//! and age (ListTransactions + DescribeTransactions).

use anyhow::Context;
use clap::Subcommand;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use strata_client::{check, Client, Router};

use crate::cli::{print_list, runtime, Conn, Output};

#[derive(Subcommand)]
pub enum TxnCommand {
    /// Transactional ids with their producer, state, and (open ones) age and partitions.
    List {
        /// Only transactions in progress (Ongoing, PrepareCommit, PrepareAbort).
        #[arg(long)]
        open: bool,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
        #[command(flatten)]
        conn: Conn,
    },
    /// One transactional id: producer id and epoch, state, timeout, age, partitions.
    Describe {
        transactional_id: String,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
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

/// How long an open transaction has been open, in ms.
fn age_ms(t: &describe_transactions_response::TransactionState) -> Option<i64> {
    (OPEN_STATES.contains(&t.transaction_state.as_str()) && t.transaction_start_time_ms >= 0)
        .then(|| (now_ms() - t.transaction_start_time_ms).max(0))
}

fn age(t: &describe_transactions_response::TransactionState) -> String {
    age_ms(t).map_or("-".into(), |ms| format!("{:.1}s", ms as f64 / 1000.0))
}

fn partition_list(t: &describe_transactions_response::TransactionState) -> Vec<String> {
    t.topics
        .iter()
        .flat_map(|topic| {
            topic
                .partitions
                .iter()
                .map(move |p| format!("{}-{p}", topic.topic.as_str()))
        })
        .collect()
}

fn partitions(t: &describe_transactions_response::TransactionState) -> String {
    let list = partition_list(t);
    if list.is_empty() {
        "-".into()
    } else {
        list.join(",")
    }
}

/// A transaction as `--output json` prints it.
fn to_json(t: &describe_transactions_response::TransactionState) -> serde_json::Value {
    serde_json::json!({
        "transactional_id": t.transactional_id.as_str(),
        "producer_id": t.producer_id.0,
        "producer_epoch": t.producer_epoch,
        "state": t.transaction_state.as_str(),
        "timeout_ms": t.transaction_timeout_ms,
        "age_ms": age_ms(t),
        "partitions": partition_list(t),
    })
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
            TxnCommand::List { open, output, conn } => {
                // Each broker lists and describes the transactions it coordinates.
                let mut router = Router::connect(&conn.bootstrap).await?;
                let mut described = Vec::new();
                for (_, addr) in router.brokers().await? {
                    let client = router.connection(&addr).await?;
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
                        described.extend(describe(client, ids).await?);
                    }
                }
                described
                    .sort_by(|a, b| a.transactional_id.as_str().cmp(b.transactional_id.as_str()));
                let rows = described
                    .iter()
                    .filter(|t| t.error_code == 0)
                    .map(|t| {
                        let line = format!(
                            "{}\t{}\t{}\t{}\t{}\t{}",
                            t.transactional_id.as_str(),
                            t.producer_id.0,
                            t.producer_epoch,
                            t.transaction_state.as_str(),
                            age(t),
                            partitions(t)
                        );
                        (line, to_json(t))
                    })
                    .collect();
                print_list(
                    output,
                    "TRANSACTIONAL-ID\tPRODUCER-ID\tEPOCH\tSTATE\tAGE\tPARTITIONS",
                    rows,
                );
            }
            TxnCommand::Describe {
                transactional_id,
                output,
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
                if output == Output::Json {
                    println!("{}", to_json(t));
                    return Ok(());
                }
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
