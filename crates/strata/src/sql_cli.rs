//! `strata sql`: a terminal client for the SQL engine's REST API (ksqlDB's), like ksqlDB's
//! own CLI. Statements end with `;` and may span lines; SELECTs go to `/query-stream` and
//! their rows print as a table (a push query's rows as they arrive, until its LIMIT or
//! Ctrl-C); every other statement goes to `/ksql` and its answer prints as a table or a
//! message. SET / UNSET change the properties sent with later statements, as in ksqlDB's
//! CLI. With `-f FILE`, or with statements piped in, it runs them and stops at the first
//! error (exit status 1).
//!
//! Line editing and history (`~/.strata_sql_history`) come from rustyline.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Write};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

#[derive(clap::Args)]
pub struct SqlArgs {
    /// The SQL engine's REST API (`strata serve --sql-listen`)
    #[arg(long, default_value = "http://127.0.0.1:8088")]
    pub server: String,
    /// Run the statements in this file, then exit
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<std::path::PathBuf>,
    /// Run these statements, then exit
    #[arg(short = 'e', long = "execute", value_name = "SQL")]
    pub execute: Option<String>,
    /// Log in as this user (HTTP Basic, for `strata serve --sql-auth basic`; as ksqlDB's
    /// CLI `-u`); the password comes from STRATA_SQL_PASSWORD
    #[arg(short = 'u', long = "user", value_name = "USER")]
    pub user: Option<String>,
}

pub fn run_sql(args: SqlArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let authority = args
        .server
        .trim_end_matches('/')
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("--server must be an http:// address, got {}", args.server))?
        .to_string();
    let authorization = match &args.user {
        Some(user) => {
            let password = std::env::var("STRATA_SQL_PASSWORD")
                .map_err(|_| anyhow!("--user {user}: set STRATA_SQL_PASSWORD to the password"))?;
            Some(format!(
                "Basic {}",
                strata_sql::format::base64_encode(format!("{user}:{password}").as_bytes())
            ))
        }
        None => None,
    };
    let mut session = Session {
        authority,
        authorization,
        properties: BTreeMap::new(),
        variables: BTreeMap::new(),
        script_depth: 0,
    };
    let script = match (&args.file, &args.execute) {
        (Some(path), _) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
        ),
        (None, Some(sql)) => Some(sql.clone()),
        (None, None) if !std::io::stdin().is_terminal() => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            Some(text)
        }
        (None, None) => None,
    };
    match script {
        Some(text) => {
            let (statements, rest) = strata_sql::split_statements(&text);
            if !rest.trim().is_empty() {
                bail!("the last statement does not end with ';': {}", rest.trim());
            }
            for statement in statements {
                rt.block_on(session.run(&statement))?;
            }
            Ok(())
        }
        None => interactive(&rt, &mut session),
    }
}

fn interactive(rt: &tokio::runtime::Runtime, session: &mut Session) -> Result<()> {
    use rustyline::error::ReadlineError;
    let mut editor = rustyline::DefaultEditor::new()?;
    let history =
        std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".strata_sql_history"));
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    match rt.block_on(session.get("/info")) {
        Ok(info) => {
            println!(
            "Connected to {} ({} {}). Statements end with ';'. Ctrl-C stops a query, Ctrl-D exits.",
            session.authority,
            info["KsqlServerInfo"]["serverStatus"].as_str().unwrap_or("RUNNING"),
            info["KsqlServerInfo"]["version"].as_str().unwrap_or("")
        )
        }
        Err(e) => println!("warning: {} does not answer: {e:#}", session.authority),
    }
    let mut pending = String::new();
    loop {
        let prompt = if pending.trim().is_empty() {
            "strata> "
        } else {
            "     > "
        };
        match editor.readline(prompt) {
            Ok(line) => {
                let trimmed = line.trim();
                if pending.trim().is_empty()
                    && matches!(
                        trimmed.to_ascii_lowercase().as_str(),
                        "exit" | "quit" | "exit;" | "quit;"
                    )
                {
                    break;
                }
                pending.push_str(&line);
                pending.push('\n');
                let (statements, rest) = strata_sql::split_statements(&pending);
                if !statements.is_empty() {
                    let _ = editor.add_history_entry(pending.trim());
                }
                pending = rest;
                for statement in statements {
                    if let Err(e) = rt.block_on(session.run(&statement)) {
                        println!("{e:#}");
                    }
                }
            }
            Err(ReadlineError::Interrupted) => pending.clear(),
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(h) = &history {
        let _ = editor.save_history(h);
    }
    Ok(())
}

struct Session {
    authority: String,
    properties: BTreeMap<String, String>,
    /// The `Authorization` header sent with every request (`--user`).
    authorization: Option<String>,
    /// DEFINE's variables, sent with every statement (ksqlDB's sessionVariables).
    variables: BTreeMap<String, String>,
    /// How many RUN SCRIPTs are running inside each other.
    script_depth: usize,
}

fn words(statement: &str) -> Vec<String> {
    statement
        .trim_end_matches(';')
        .split_whitespace()
        .map(|w| w.to_ascii_uppercase())
        .collect()
}

fn unquote(s: &str) -> String {
    s.trim()
        .trim_end_matches(';')
        .trim()
        .trim_matches('\'')
        .to_string()
}

impl Session {
    async fn connect(&self) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .with_context(|| format!("cannot reach the SQL engine at {}", self.authority))?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        accept: &str,
    ) -> Result<hyper::Response<hyper::body::Incoming>> {
        let mut sender = self.connect().await?;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.authority)
            .header("content-type", "application/vnd.ksql.v1+json")
            .header("accept", accept);
        if let Some(a) = &self.authorization {
            req = req.header("authorization", a);
        }
        let req = req.body(Full::new(Bytes::from(body)))?;
        Ok(sender.send_request(req).await?)
    }

    async fn get(&self, path: &str) -> Result<Value> {
        let resp = self.request("GET", path, None, "application/json").await?;
        let bytes = resp.into_body().collect().await?.to_bytes();
        Ok(serde_json::from_slice(&bytes)?)
    }

    /// One statement: SET/UNSET here, SELECT through /query-stream, the rest through /ksql.
    async fn run(&mut self, statement: &str) -> Result<()> {
        let w = words(statement);
        match w.first().map(String::as_str) {
            Some("SET") => {
                let rest = statement.trim()[3..].trim().trim_end_matches(';');
                let (k, v) = rest
                    .split_once('=')
                    .ok_or_else(|| anyhow!("SET needs 'property'='value'"))?;
                let (k, v) = (unquote(k), unquote(v));
                println!("Successfully changed local property '{k}' to '{v}'.");
                self.properties.insert(k, v);
                Ok(())
            }
            Some("UNSET") => {
                let k = unquote(&statement.trim()[5..]);
                self.properties.remove(&k);
                println!("Successfully unset local property '{k}'.");
                Ok(())
            }
            Some("DEFINE") => {
                let rest = statement.trim()[6..].trim().trim_end_matches(';');
                let (k, v) = rest
                    .split_once('=')
                    .ok_or_else(|| anyhow!("DEFINE needs name = 'value'"))?;
                self.variables
                    .insert(k.trim().to_ascii_uppercase(), unquote(v).replace("''", "'"));
                Ok(())
            }
            Some("UNDEFINE") => {
                let k = statement.trim()[8..].trim().trim_end_matches(';').trim();
                self.variables.remove(&k.to_ascii_uppercase());
                Ok(())
            }
            Some("SELECT") => self.query(statement).await,
            Some("PRINT") => self.print(statement).await,
            Some("RUN") if w.get(1).map(String::as_str) == Some("SCRIPT") => {
                // As ksqlDB's CLI: the client reads the file and runs its statements.
                let rest = statement.trim()[3..].trim_start()[6..].trim();
                self.run_script(&unquote(rest)).await
            }
            _ => self.ksql(statement).await,
        }
    }

    /// RUN SCRIPT 'file': its statements one by one, stopping at the first that fails.
    async fn run_script(&mut self, path: &str) -> Result<()> {
        const MAX_DEPTH: usize = 8;
        if self.script_depth >= MAX_DEPTH {
            bail!("RUN SCRIPT nested more than {MAX_DEPTH} deep (a script that runs itself?)");
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow!("RUN SCRIPT cannot read '{path}': {e}"))?;
        let (statements, rest) = strata_sql::split_statements(&text);
        if !rest.trim().is_empty() {
            bail!(
                "the last statement of '{path}' does not end with ';': {}",
                rest.trim()
            );
        }
        self.script_depth += 1;
        let mut outcome = Ok(());
        for statement in statements {
            outcome = Box::pin(self.run(&statement)).await;
            if outcome.is_err() {
                break;
            }
        }
        self.script_depth -= 1;
        outcome
    }

    /// PRINT: the topic's records as the server prints them, until LIMIT or Ctrl-C.
    async fn print(&self, statement: &str) -> Result<()> {
        let body = json!({"ksql": statement, "streamsProperties": self.properties, "sessionVariables": self.variables});
        let resp = self
            .request("POST", "/query", Some(body), "text/plain")
            .await?;
        let ok = resp.status().is_success();
        let mut body = resp.into_body();
        if !ok {
            let bytes = body.collect().await?.to_bytes();
            let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            bail!("{}", answer["message"].as_str().unwrap_or("PRINT failed"));
        }
        let interrupted = tokio::signal::ctrl_c();
        tokio::pin!(interrupted);
        loop {
            let frame = tokio::select! {
                f = body.frame() => f,
                _ = &mut interrupted => break,
            };
            let Some(frame) = frame else { break };
            if let Some(data) = frame?.data_ref() {
                std::io::stdout().write_all(data)?;
                std::io::stdout().flush()?;
            }
        }
        println!("Topic printing ceased");
        Ok(())
    }

    async fn ksql(&self, statement: &str) -> Result<()> {
        let body = json!({"ksql": statement, "streamsProperties": self.properties, "sessionVariables": self.variables});
        let resp = self
            .request("POST", "/ksql", Some(body), "application/vnd.ksql.v1+json")
            .await?;
        let ok = resp.status().is_success();
        let bytes = resp.into_body().collect().await?.to_bytes();
        let answer: Value = serde_json::from_slice(&bytes)
            .with_context(|| format!("not JSON: {}", String::from_utf8_lossy(&bytes)))?;
        if !ok {
            bail!(
                "{}",
                answer["message"].as_str().unwrap_or(&answer.to_string())
            );
        }
        for entity in answer.as_array().into_iter().flatten() {
            print_entity(entity);
        }
        Ok(())
    }

    async fn query(&self, statement: &str) -> Result<()> {
        let body = json!({"sql": statement, "properties": self.properties, "sessionVariables": self.variables});
        let resp = self
            .request(
                "POST",
                "/query-stream",
                Some(body),
                "application/vnd.ksqlapi.delimited.v1",
            )
            .await?;
        let ok = resp.status().is_success();
        let mut body = resp.into_body();
        if !ok {
            let bytes = body.collect().await?.to_bytes();
            let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            bail!(
                "{}",
                answer["message"]
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned())
            );
        }
        let mut buffer = Vec::new();
        let mut header: Option<Vec<String>> = None;
        let mut table = Table::default();
        let mut streaming = false;
        let interrupted = tokio::signal::ctrl_c();
        tokio::pin!(interrupted);
        loop {
            let frame = tokio::select! {
                f = body.frame() => f,
                _ = &mut interrupted => {
                    println!("Query terminated");
                    return Ok(());
                }
            };
            let Some(frame) = frame else { break };
            let frame = frame?;
            let Some(data) = frame.data_ref() else {
                continue;
            };
            buffer.extend_from_slice(data);
            while let Some(end) = buffer.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line).trim().to_string();
                if line.is_empty() {
                    continue;
                }
                let v: Value =
                    serde_json::from_str(&line).with_context(|| format!("not JSON: {line}"))?;
                match (&header, v) {
                    (None, v) => {
                        let names: Vec<String> = v["columnNames"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|n| n.as_str().unwrap_or("").to_string())
                            .collect();
                        // A push query's rows print as they come, in fixed-width columns.
                        streaming = statement.to_ascii_uppercase().contains("EMIT");
                        if streaming {
                            let t = Table::streaming(&names);
                            t.print_header();
                            table = t;
                        } else {
                            table.header = names.clone();
                        }
                        header = Some(names);
                    }
                    (Some(_), Value::Array(cells)) => {
                        let row: Vec<String> = cells.iter().map(cell).collect();
                        if streaming {
                            table.print_row(&row);
                        } else {
                            table.rows.push(row);
                        }
                    }
                    (Some(_), v) if v.get("message").is_some() => {
                        bail!("{}", v["message"].as_str().unwrap_or(""));
                    }
                    _ => {}
                }
            }
        }
        if streaming {
            table.print_rule();
            println!("Limit Reached\nQuery terminated");
        } else {
            table.print();
        }
        Ok(())
    }
}

fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "null".to_string(),
        other => other.to_string(),
    }
}

#[derive(Default)]
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    widths: Vec<usize>,
}

impl Table {
    fn streaming(header: &[String]) -> Table {
        Table {
            header: header.to_vec(),
            rows: Vec::new(),
            widths: header.iter().map(|h| h.chars().count().max(18)).collect(),
        }
    }

    fn print_rule(&self) {
        let mut s = String::from("+");
        for w in &self.widths {
            s.push_str(&"-".repeat(w + 2));
            s.push('+');
        }
        println!("{s}");
    }

    fn print_row(&self, row: &[String]) {
        let mut s = String::from("|");
        for (i, w) in self.widths.iter().enumerate() {
            let c = row.get(i).map(String::as_str).unwrap_or("");
            s.push_str(&format!(" {c:<w$} |"));
        }
        println!("{s}");
        let _ = std::io::stdout().flush();
    }

    fn print_header(&self) {
        self.print_rule();
        self.print_row(&self.header);
        self.print_rule();
    }

    fn print(mut self) {
        if self.header.is_empty() {
            return;
        }
        self.widths = self
            .header
            .iter()
            .enumerate()
            .map(|(i, h)| {
                self.rows
                    .iter()
                    .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                    .chain([h.chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        self.print_header();
        for r in &self.rows {
            self.print_row(r);
        }
        self.print_rule();
    }
}

fn table_of(header: &[&str], rows: Vec<Vec<String>>) {
    Table {
        header: header.iter().map(|h| h.to_string()).collect(),
        rows,
        widths: Vec::new(),
    }
    .print();
}

fn text(v: &Value, key: &str) -> String {
    match &v[key] {
        Value::Null => String::new(),
        other => cell(other),
    }
}

/// Prints one of ksqlDB's response entities.
fn print_entity(e: &Value) {
    match e["@type"].as_str().unwrap_or("") {
        "function_names" => {
            let rows = e["functions"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|f| vec![text(f, "name"), text(f, "category")])
                .collect();
            table_of(&["Function Name", "Category"], rows);
        }
        "queryDescription" => {
            let d = &e["queryDescription"];
            println!("ID                   : {}", text(d, "id"));
            println!("Query type           : {}", text(d, "queryType"));
            println!("SQL                  : {}", text(d, "statementText"));
            println!("State                : {}", text(d, "state"));
            println!(
                "\nExecution plan\n--------------\n{}",
                text(d, "executionPlan")
            );
        }
        "currentStatus" => println!(
            "{}",
            e["commandStatus"]["message"].as_str().unwrap_or("done")
        ),
        "streams" | "tables" => {
            let key = if e.get("streams").is_some() {
                "streams"
            } else {
                "tables"
            };
            let rows = e[key]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| {
                    vec![
                        text(s, "name"),
                        text(s, "topic"),
                        text(s, "keyFormat"),
                        text(s, "valueFormat"),
                        text(s, "isWindowed"),
                    ]
                })
                .collect();
            table_of(
                &[
                    "Name",
                    "Kafka Topic",
                    "Key Format",
                    "Value Format",
                    "Windowed",
                ],
                rows,
            );
        }
        "queries" => {
            let rows = e["queries"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|q| {
                    vec![
                        text(q, "id"),
                        text(q, "state"),
                        q["sinks"].as_array().map_or(String::new(), |s| {
                            s.iter().map(cell).collect::<Vec<_>>().join(",")
                        }),
                        q["sinkKafkaTopics"].as_array().map_or(String::new(), |s| {
                            s.iter().map(cell).collect::<Vec<_>>().join(",")
                        }),
                        text(q, "queryString"),
                    ]
                })
                .collect();
            table_of(
                &[
                    "Query ID",
                    "Status",
                    "Sink Name",
                    "Sink Kafka Topic",
                    "Query String",
                ],
                rows,
            );
        }
        "kafka_topics" => {
            let rows = e["topics"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| {
                    let replicas = t["replicaInfo"]
                        .as_array()
                        .and_then(|r| r.first())
                        .map(cell)
                        .unwrap_or_default();
                    let partitions = t["replicaInfo"].as_array().map_or(0, |r| r.len());
                    vec![text(t, "name"), partitions.to_string(), replicas]
                })
                .collect();
            table_of(&["Kafka Topic", "Partitions", "Partition Replicas"], rows);
        }
        "properties" => {
            let mut rows: Vec<Vec<String>> = Vec::new();
            for p in e["properties"].as_array().into_iter().flatten() {
                rows.push(vec![text(p, "name"), text(p, "scope"), text(p, "value")]);
            }
            table_of(&["Property", "Scope", "Value"], rows);
        }
        "sourceDescription" => {
            let d = &e["sourceDescription"];
            println!();
            println!("Name                 : {}", text(d, "name"));
            println!("Type                 : {}", text(d, "type"));
            println!("Kafka topic          : {}", text(d, "topic"));
            println!("Key format           : {}", text(d, "keyFormat"));
            println!("Value format         : {}", text(d, "valueFormat"));
            let rows = d["fields"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|f| {
                    let mut t = text(&f["schema"], "type");
                    if f["type"].as_str() == Some("KEY") {
                        t.push_str("          (primary key)");
                    }
                    vec![text(f, "name"), t]
                })
                .collect();
            table_of(&["Field", "Type"], rows);
        }
        _ => match e.get("message").and_then(Value::as_str) {
            Some(m) => println!("{m}"),
            None => println!("{}", serde_json::to_string_pretty(e).unwrap_or_default()),
        },
    }
}
