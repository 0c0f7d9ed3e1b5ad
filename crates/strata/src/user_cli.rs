//! `strata user list|set|remove`: SCRAM users through DescribeUserScramCredentials /
//! AlterUserScramCredentials (KIP-554), what `kafka-configs --entity-type users
//! --alter --add-config 'SCRAM-SHA-256=[password=…]'` does. The password is salted here
//! and only the salted form is sent, as Kafka's admin client does.

use anyhow::bail;
use clap::Subcommand;
use kafka_protocol::messages::*;
use strata_client::{check, Client};
use strata_security::{ScramMechanism, SCRAM_ITERATIONS_MAX, SCRAM_ITERATIONS_MIN};

use crate::cli::{print_list, runtime, Conn, Output};

#[derive(Subcommand)]
pub enum UserCommand {
    /// SCRAM users and their mechanisms (never a secret).
    List {
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
        #[command(flatten)]
        conn: Conn,
    },
    /// Create a user, or change their password, for one mechanism. The password is read
    /// from the STRATA_USER_PASSWORD environment variable, else from stdin's first line
    /// (never from the command line, where other users could see it).
    Set {
        name: String,
        /// SCRAM-SHA-256 or SCRAM-SHA-512
        #[arg(long, default_value = "SCRAM-SHA-256")]
        mechanism: String,
        #[arg(long, default_value_t = 4096)]
        iterations: u32,
        #[command(flatten)]
        conn: Conn,
    },
    /// Remove a user's credential for one mechanism (default: every one they have).
    Remove {
        name: String,
        #[arg(long)]
        mechanism: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
}

fn mechanism(name: &str) -> anyhow::Result<ScramMechanism> {
    match ScramMechanism::parse(name) {
        Some(m) => Ok(m),
        None => bail!("unknown mechanism '{name}' (SCRAM-SHA-256 or SCRAM-SHA-512)"),
    }
}

/// (user, [(mechanism, iterations)]) of every SCRAM user.
async fn users(client: &mut Client) -> anyhow::Result<Vec<(String, Vec<(String, i32)>)>> {
    let resp = client
        .send(
            DescribeUserScramCredentialsRequest::default().with_users(None),
            0,
        )
        .await?;
    check(
        resp.error_code,
        "DescribeUserScramCredentials",
        resp.error_message.as_ref(),
    )?;
    let mut out: Vec<(String, Vec<(String, i32)>)> = resp
        .results
        .iter()
        .map(|r| {
            let creds = r
                .credential_infos
                .iter()
                .map(|c| {
                    let name = ScramMechanism::from_code(c.mechanism)
                        .map_or_else(|| format!("mechanism {}", c.mechanism), |m| m.name().into());
                    (name, c.iterations)
                })
                .collect();
            (r.user.to_string(), creds)
        })
        .collect();
    out.sort();
    Ok(out)
}

async fn alter(
    client: &mut Client,
    request: AlterUserScramCredentialsRequest,
) -> anyhow::Result<()> {
    let resp = client.send(request, 0).await?;
    for r in &resp.results {
        check(
            r.error_code,
            format!("user {}", r.user.as_str()),
            r.error_message.as_ref(),
        )?;
    }
    Ok(())
}

fn read_password() -> anyhow::Result<String> {
    if let Ok(p) = std::env::var("STRATA_USER_PASSWORD") {
        return Ok(p);
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

pub fn run_user(cmd: UserCommand) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        match cmd {
            UserCommand::List { output, conn } => {
                let mut client = Client::connect(&conn.bootstrap).await?;
                let rows = users(&mut client)
                    .await?
                    .into_iter()
                    .map(|(user, creds)| {
                        let line = format!(
                            "{user}\t{}",
                            creds
                                .iter()
                                .map(|(m, i)| format!("{m}(iterations={i})"))
                                .collect::<Vec<_>>()
                                .join(",")
                        );
                        let json = serde_json::json!({
                            "name": user,
                            "credentials": creds.iter()
                                .map(|(m, i)| serde_json::json!({"mechanism": m, "iterations": i}))
                                .collect::<Vec<_>>(),
                        });
                        (line, json)
                    })
                    .collect();
                print_list(output, "USER\tCREDENTIALS", rows);
            }
            UserCommand::Set {
                name,
                mechanism: m,
                iterations,
                conn,
            } => {
                let m = mechanism(&m)?;
                if !(SCRAM_ITERATIONS_MIN..=SCRAM_ITERATIONS_MAX).contains(&iterations) {
                    bail!("--iterations must be {SCRAM_ITERATIONS_MIN} to {SCRAM_ITERATIONS_MAX}");
                }
                let password = read_password()?;
                if password.is_empty() {
                    bail!("no password: set STRATA_USER_PASSWORD or give it on stdin");
                }
                let request = strata_client::users::set_password(&name, m, &password, iterations);
                let mut client = Client::connect(&conn.bootstrap).await?;
                alter(&mut client, request).await?;
                println!("user {name}: {} credentials set", m.name());
            }
            UserCommand::Remove {
                name,
                mechanism: m,
                conn,
            } => {
                let mut client = Client::connect(&conn.bootstrap).await?;
                let mechanisms = match m {
                    Some(m) => vec![mechanism(&m)?],
                    None => {
                        let all = users(&mut client).await?;
                        let Some((_, creds)) = all.into_iter().find(|(u, _)| *u == name) else {
                            bail!("no SCRAM user '{name}'");
                        };
                        creds
                            .iter()
                            .filter_map(|(m, _)| ScramMechanism::parse(m))
                            .collect()
                    }
                };
                let request = strata_client::users::remove(&name, &mechanisms);
                alter(&mut client, request).await?;
                println!(
                    "user {name}: removed {}",
                    mechanisms
                        .iter()
                        .map(|m| m.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        Ok(())
    })
}
