//! ksqlDB's REST API over HTTP/1.1 and HTTP/2 (h2c): `POST /ksql`, `POST /query` (v1,
//! a chunked JSON array), `POST /query-stream` (v2: delimited lines, or a JSON array when
//! the client accepts only `application/json`), `POST /close-query`, `GET /info`,
//! `GET /healthcheck`. Request bodies are bounded before they are read.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value as J};
use strata_sql::format::json_text;
use strata_sql::value::Value;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::engine::{Engine, QueryPlan, KSQL_VERSION};
use crate::run::{run_push, Reset};

/// The largest request body accepted (statements, query requests).
pub const REQUEST_BYTES_MAX: usize = 1 << 20;
/// Rows buffered per push query before the reader waits for the client.
const ROWS_BUFFERED: usize = 256;

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// A response body fed from a channel (push query results as they come).
struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

pub struct Server {
    engine: Arc<Engine>,
    /// Running push queries by id, for /close-query.
    push: Mutex<BTreeMap<String, watch::Sender<bool>>>,
    next_push: AtomicU64,
    /// Push queries from the latest offsets share one scan of each topic.
    scans: Arc<crate::run::SharedScans>,
    /// Set: every request but /healthcheck carries credentials the broker takes.
    auth: Option<crate::auth::BasicAuth>,
}

fn full(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(body.into()).boxed())
        .expect("valid response")
}

fn json_response(status: StatusCode, body: &J) -> Response<Body> {
    full(status, "application/json", body.to_string())
}

fn error(status: StatusCode, code: u32, message: impl Into<String>) -> Response<Body> {
    json_response(
        status,
        &json!({"@type": "generic_error", "error_code": code, "message": message.into()}),
    )
}

fn properties(v: &J) -> BTreeMap<String, String> {
    v.as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().map_or_else(|| v.to_string(), str::to_string),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A row as a JSON array, values written as ksqlDB's JSON writes them.
/// A query's text with the request's `sessionVariables` substituted.
fn with_variables(text: &str, variables: &J) -> String {
    let variables: BTreeMap<String, String> = properties(variables)
        .into_iter()
        .map(|(k, v)| (k.to_ascii_uppercase(), v))
        .collect();
    if variables.is_empty() {
        text.to_string()
    } else {
        strata_sql::substitute_variables(text, &variables)
    }
}

fn row_json(values: &[Value]) -> String {
    let mut out = String::from("[");
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&json_text(v));
    }
    out.push(']');
    out
}

impl Server {
    pub fn new(engine: Arc<Engine>) -> Arc<Server> {
        Server::with_auth(engine, None)
    }

    /// `new`, requiring HTTP Basic credentials when `auth` is set ([`crate::auth`]).
    pub fn with_auth(engine: Arc<Engine>, auth: Option<crate::auth::BasicAuth>) -> Arc<Server> {
        Arc::new(Server {
            engine,
            push: Mutex::new(BTreeMap::new()),
            next_push: AtomicU64::new(1),
            scans: Arc::default(),
            auth,
        })
    }

    /// Serves connections from `listener` until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "SQL listener: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let server = self.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let server = server.clone();
                    async move { Ok::<_, Infallible>(server.handle(req).await) }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                );
                let _ = builder
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    async fn handle(self: &Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_string();
        let method = req.method().clone();
        let accept = req
            .headers()
            .get("accept")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let forwarded = req.headers().contains_key(FORWARDED_HEADER);
        let authorization = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if let (Some(auth), false) = (&self.auth, path == "/healthcheck") {
            match auth.check(authorization.as_deref()).await {
                crate::auth::Verdict::User(user) => {
                    tracing::debug!(%user, %path, "SQL request authenticated");
                }
                crate::auth::Verdict::Refused => {
                    tracing::info!(%path, "SQL request refused: no valid credentials");
                    let mut r = error(StatusCode::UNAUTHORIZED, 40100, "Unauthorized");
                    r.headers_mut().insert(
                        "www-authenticate",
                        hyper::header::HeaderValue::from_static("Basic realm=\"KsqlServer-Props\""),
                    );
                    return r;
                }
                crate::auth::Verdict::Unavailable(why) => {
                    return error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        50300,
                        format!("Credentials could not be checked: {why}"),
                    )
                }
            }
        }
        let tasks: Option<std::collections::BTreeSet<String>> = req
            .headers()
            .get(TASKS_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(',').map(str::to_string).collect());
        match (method, path.as_str()) {
            (Method::GET, "/info") => json_response(
                StatusCode::OK,
                &json!({"KsqlServerInfo": {
                    "version": KSQL_VERSION,
                    "kafkaClusterId": "strata",
                    "ksqlServiceId": "default_",
                    "serverStatus": "RUNNING",
                }}),
            ),
            (Method::GET, "/healthcheck") => json_response(
                StatusCode::OK,
                &json!({"isHealthy": true, "details": {
                    "metastore": {"isHealthy": true},
                    "kafka": {"isHealthy": true},
                    "commandRunner": {"isHealthy": true},
                }}),
            ),
            (Method::POST, "/ksql") => match body_json(req).await {
                Err(r) => r,
                Ok(body) => {
                    let Some(text) = body["ksql"].as_str() else {
                        return error(StatusCode::BAD_REQUEST, 40000, "Missing the 'ksql' field");
                    };
                    let props = properties(&body["streamsProperties"]);
                    let variables = properties(&body["sessionVariables"]);
                    let caller = self.auth.as_ref().map(|auth| crate::auth::Caller {
                        auth,
                        authorization: authorization.as_deref(),
                    });
                    match self
                        .engine
                        .execute_as(text, &props, &variables, caller.as_ref())
                        .await
                    {
                        Ok(entities) => json_response(StatusCode::OK, &J::Array(entities)),
                        Err(e) => {
                            let status = match e.code {
                                40301 => StatusCode::FORBIDDEN,
                                50300 => StatusCode::SERVICE_UNAVAILABLE,
                                _ => StatusCode::BAD_REQUEST,
                            };
                            json_response(status, &e.body())
                        }
                    }
                }
            },
            (Method::POST, "/query") => match body_json(req).await {
                Err(r) => r,
                Ok(body) => {
                    let Some(text) = body["ksql"].as_str() else {
                        return error(StatusCode::BAD_REQUEST, 40000, "Missing the 'ksql' field");
                    };
                    let props = properties(&body["streamsProperties"]);
                    let text = with_variables(text, &body["sessionVariables"]);
                    if let Some(denied) = self.denied_query(&text, authorization.as_deref()).await {
                        return denied;
                    }
                    let origin = Origin {
                        path: "/query",
                        body: &body,
                        accept: &accept,
                        forwarded,
                        tasks: tasks.as_ref(),
                        authorization: authorization.as_deref(),
                    };
                    self.push_query(&text, &props, PushFormat::V1, origin).await
                }
            },
            (Method::POST, "/query-stream") => match body_json(req).await {
                Err(r) => r,
                Ok(body) => {
                    let Some(text) = body["sql"].as_str() else {
                        return error(StatusCode::BAD_REQUEST, 40000, "Missing the 'sql' field");
                    };
                    let props = properties(&body["properties"]);
                    let format =
                        if accept.contains("application/json") && !accept.contains("delimited") {
                            PushFormat::JsonArray
                        } else {
                            PushFormat::Delimited
                        };
                    let text = with_variables(text, &body["sessionVariables"]);
                    if let Some(denied) = self.denied_query(&text, authorization.as_deref()).await {
                        return denied;
                    }
                    let origin = Origin {
                        path: "/query-stream",
                        body: &body,
                        accept: &accept,
                        forwarded,
                        tasks: tasks.as_ref(),
                        authorization: authorization.as_deref(),
                    };
                    self.push_query(&text, &props, format, origin).await
                }
            },
            (Method::POST, "/inserts-stream") => {
                let json_array =
                    accept.contains("application/json") && !accept.contains("delimited");
                self.inserts_stream(req, json_array, authorization)
            }
            (Method::POST, "/close-query") => match body_json(req).await {
                Err(r) => r,
                Ok(body) => {
                    let id = body["queryId"].as_str().unwrap_or_default();
                    match self.push.lock().expect("push lock").remove(id) {
                        Some(stop) => {
                            let _ = stop.send(true);
                            full(StatusCode::OK, "application/json", "")
                        }
                        None => error(
                            StatusCode::BAD_REQUEST,
                            40004,
                            format!("No query with id {id}"),
                        ),
                    }
                }
            },
            (
                _,
                "/info" | "/healthcheck" | "/ksql" | "/query" | "/query-stream" | "/close-query"
                | "/inserts-stream",
            ) => error(StatusCode::METHOD_NOT_ALLOWED, 40500, "Method not allowed"),
            _ => error(
                StatusCode::NOT_FOUND,
                40400,
                format!("No such endpoint: {path}"),
            ),
        }
    }

    /// A query or PRINT the caller may not run: its answer (403, or 503 when the broker
    /// could not be asked). None when authorization is off or the caller may.
    async fn denied_query(
        &self,
        text: &str,
        authorization: Option<&str>,
    ) -> Option<Response<Body>> {
        let auth = self.auth.as_ref()?;
        let needs = self.engine.query_access(text).await;
        let denied = auth.require(authorization, &needs).await.err()?;
        let (code, message) = denied_code(denied);
        let status = if code == 40301 {
            StatusCode::FORBIDDEN
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        Some(error(status, code, message))
    }

    async fn push_query(
        self: &Arc<Self>,
        text: &str,
        props: &BTreeMap<String, String>,
        format: PushFormat,
        origin: Origin<'_>,
    ) -> Response<Body> {
        if let Ok(strata_sql::ast::Statement::Print {
            topic,
            from_beginning,
            interval,
            limit,
        }) = strata_sql::parse_statement(text)
        {
            return self.print(topic, from_beginning, interval, limit).await;
        }
        let (query, limit, names, types) = match self.engine.query_tasks(text, origin.tasks).await {
            Ok(QueryPlan::Push(p)) => *p,
            Ok(QueryPlan::Gather {
                names,
                types,
                sql_types,
                mut rows,
                remotes,
                limit,
            }) => {
                // Every other engine's share asked at once.
                let sql_types = Arc::new(sql_types);
                let asked: Vec<_> = remotes
                    .into_iter()
                    .map(|(addr, tasks)| {
                        let (text, props, types) =
                            (text.to_string(), props.clone(), sql_types.clone());
                        let authorization = origin.authorization.map(str::to_string);
                        tokio::spawn(async move {
                            gather(&addr, &text, &props, &tasks, &types, authorization).await
                        })
                    })
                    .collect();
                for answer in asked {
                    match answer.await.map_err(|e| e.to_string()).and_then(|a| a) {
                        Ok(more) => rows.extend(more),
                        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, 50000, e),
                    }
                }
                if let Some(l) = limit {
                    rows.truncate(usize::try_from(l).unwrap_or(0));
                }
                return pull_response(&names, &types, &rows, format, &self.next_push);
            }
            Ok(QueryPlan::Pull { names, types, rows }) => {
                return pull_response(&names, &types, &rows, format, &self.next_push)
            }
            Ok(QueryPlan::Remote(_)) if origin.forwarded => {
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    50000,
                    "The table's query moved while this pull query was forwarded: try again",
                )
            }
            Ok(QueryPlan::Remote(addr)) => return forward(&addr, &origin).await,
            Err(message) => {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    &json!({"@type": "statement_error", "error_code": 40001, "message": message, "statementText": text, "entities": []}),
                )
            }
        };
        let mut all = self.engine.properties.clone();
        all.extend(props.clone());
        let reset = Reset::from_properties(&all);
        let id = format!(
            "transient_{}_{}",
            query.source.name,
            self.next_push.fetch_add(1, Ordering::Relaxed)
        );
        let (stop_tx, stop_rx) = watch::channel(false);
        self.push
            .lock()
            .expect("push lock")
            .insert(id.clone(), stop_tx);
        let (rows_tx, mut rows_rx) = mpsc::channel(ROWS_BUFFERED);
        tokio::spawn(run_push(
            self.engine.bootstrap().to_string(),
            self.scans.clone(),
            query,
            reset,
            limit,
            rows_tx,
            stop_rx,
        ));
        let (out_tx, out_rx) = mpsc::channel::<Bytes>(ROWS_BUFFERED);
        let header = match format {
            PushFormat::V1 => {
                let schema = names
                    .iter()
                    .zip(&types)
                    .map(|(n, t)| format!("`{n}` {t}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                format!(
                    "[{},\n",
                    json!({"header": {"queryId": id, "schema": schema}})
                )
            }
            PushFormat::Delimited => format!(
                "{}\n",
                json!({"queryId": id, "columnNames": names, "columnTypes": types})
            ),
            PushFormat::JsonArray => format!(
                "[{}",
                json!({"queryId": id, "columnNames": names, "columnTypes": types})
            ),
        };
        let server = self.clone();
        tokio::spawn(async move {
            if out_tx.send(Bytes::from(header)).await.is_err() {
                server.push.lock().expect("push lock").remove(&id);
                return;
            }
            let mut error = None;
            while let Some(row) = rows_rx.recv().await {
                let chunk = match row {
                    Ok(values) => match format {
                        PushFormat::V1 => {
                            format!("{{\"row\":{{\"columns\":{}}}}},\n", row_json(&values))
                        }
                        PushFormat::Delimited => format!("{}\n", row_json(&values)),
                        PushFormat::JsonArray => format!(",{}", row_json(&values)),
                    },
                    Err(e) => {
                        error = Some(e);
                        break;
                    }
                };
                if out_tx.send(Bytes::from(chunk)).await.is_err() {
                    break;
                }
            }
            server.push.lock().expect("push lock").remove(&id);
            let end = match (format, error) {
                (PushFormat::V1, Some(e)) => format!(
                    "{}]\n",
                    json!({"errorMessage": {"@type": "generic_error", "error_code": 50000, "message": e}})
                ),
                (PushFormat::V1, None) => {
                    format!("{}]\n", json!({"finalMessage": "Limit Reached"}))
                }
                (PushFormat::Delimited, Some(e)) => format!(
                    "{}\n",
                    json!({"@type": "generic_error", "error_code": 50000, "message": e})
                ),
                (PushFormat::Delimited, None) => String::new(),
                (PushFormat::JsonArray, Some(e)) => format!(
                    ",{}]",
                    json!({"@type": "generic_error", "error_code": 50000, "message": e})
                ),
                (PushFormat::JsonArray, None) => "]".into(),
            };
            if !end.is_empty() {
                let _ = out_tx.send(Bytes::from(end)).await;
            }
        });
        let content_type = match format {
            PushFormat::Delimited => "application/vnd.ksqlapi.delimited.v1",
            _ => "application/json",
        };
        Response::builder()
            .status(StatusCode::OK)
            .header("content-type", content_type)
            .body(ChannelBody { rx: out_rx }.boxed())
            .expect("valid response")
    }
}

impl Server {
    /// `PRINT topic [FROM BEGINNING] [INTERVAL n] [LIMIT n]`: the topic's records as text
    /// lines, as ksqlDB prints them, until the limit or the client goes.
    async fn print(
        self: &Arc<Self>,
        topic: String,
        from_beginning: bool,
        interval: Option<i64>,
        limit: Option<i64>,
    ) -> Response<Body> {
        let (tx, rx) = mpsc::channel::<Bytes>(ROWS_BUFFERED);
        let bootstrap = self.engine.bootstrap().to_string();
        let mut log = crate::log::LogClient::new(&bootstrap);
        let partitions = match log.topics().await {
            Ok(t) => match t.get(&topic).or_else(|| t.get(&topic.to_ascii_lowercase())) {
                Some(&p) => p,
                None => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        40001,
                        format!("Could not find topic '{topic}', or the KSQL user does not have permissions to list the topic. Topic names are case-sensitive.\nTo list topics run: SHOW TOPICS;"),
                    )
                }
            },
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, 50000, e.to_string()),
        };
        let topic = if log
            .topics()
            .await
            .map(|t| t.contains_key(&topic))
            .unwrap_or(false)
        {
            topic
        } else {
            topic.to_ascii_lowercase()
        };
        tokio::spawn(async move {
            let mut at = Vec::new();
            for p in 0..partitions {
                match log
                    .offset(&topic, p, if from_beginning { -2 } else { -1 })
                    .await
                {
                    Ok(o) => at.push(o),
                    Err(e) => {
                        let _ = tx.send(Bytes::from(format!("{e}\n"))).await;
                        return;
                    }
                }
            }
            let every = interval.unwrap_or(1).max(1);
            let (mut seen, mut printed) = (0i64, 0i64);
            let mut header = false;
            loop {
                let mut any = false;
                for p in 0..partitions {
                    let records = match log.fetch_committed(&topic, p, at[p as usize]).await {
                        Ok((r, next)) => {
                            at[p as usize] = next;
                            r
                        }
                        Err(e) => {
                            let _ = tx.send(Bytes::from(format!("{e}\n"))).await;
                            return;
                        }
                    };
                    for r in records {
                        any = true;
                        seen += 1;
                        if (seen - 1) % every != 0 {
                            continue;
                        }
                        let mut text = String::new();
                        if !header {
                            header = true;
                            text.push_str(&format!(
                                "Key format: {}\nValue format: {}\n",
                                print_format(r.key.as_deref(), true),
                                print_format(r.value.as_deref(), false)
                            ));
                        }
                        let ts = strata_sql::eval::format_timestamp(r.timestamp_ms)
                            .replace('-', "/")
                            .replace('T', " ");
                        text.push_str(&format!(
                            "rowtime: {ts} Z, key: {}, value: {}, partition: {p}\n",
                            print_bytes(r.key.as_deref(), true),
                            print_bytes(r.value.as_deref(), false)
                        ));
                        if tx.send(Bytes::from(text)).await.is_err() {
                            return;
                        }
                        printed += 1;
                        if limit.is_some_and(|l| printed >= l) {
                            return;
                        }
                    }
                }
                if !any {
                    tokio::select! {
                        _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
                        _ = tx.closed() => return,
                    }
                }
            }
        });
        Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "text/plain")
            .body(ChannelBody { rx }.boxed())
            .expect("valid response")
    }

    /// `/inserts-stream`: the request body is a line `{"target": "NAME"}` then one JSON
    /// object per line, each a row to insert; each row is acknowledged on the response as
    /// it is written (`{"status":"ok","seq":N}`), or refused alone with ksqlDB's error
    /// body. Lines are bounded by REQUEST_BYTES_MAX; the stream itself is not.
    fn inserts_stream(
        self: &Arc<Self>,
        req: Request<Incoming>,
        json_array: bool,
        authorization: Option<String>,
    ) -> Response<Body> {
        let (tx, rx) = mpsc::channel::<Bytes>(ROWS_BUFFERED);
        let engine = self.engine.clone();
        let server = self.clone();
        let mut body = req.into_body();
        tokio::spawn(async move {
            let mut acks = Acks {
                tx,
                json_array,
                written: 0,
            };
            let mut buffer: Vec<u8> = Vec::new();
            let mut target: Option<String> = None;
            let mut seq = 0i64;
            let line_error = |seq: i64, code: u32, message: String| json!({"status": "error", "seq": seq, "error_code": code, "message": message});
            let mut finished = false;
            while !finished {
                let data = match body.frame().await {
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(d) => d,
                        Err(_) => continue,
                    },
                    Some(Err(_)) => return,
                    None => {
                        finished = true;
                        Bytes::from_static(b"\n")
                    }
                };
                buffer.extend_from_slice(&data);
                if buffer.len() > REQUEST_BYTES_MAX && !buffer.contains(&b'\n') {
                    acks.send(line_error(
                        seq,
                        40000,
                        format!("A row is larger than {REQUEST_BYTES_MAX} bytes"),
                    ))
                    .await;
                    acks.finish().await;
                    return;
                }
                while let Some(end) = buffer.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buffer.drain(..=end).collect();
                    if line.iter().all(|b| b.is_ascii_whitespace()) {
                        continue;
                    }
                    let parsed: Result<J, _> = serde_json::from_slice(&line);
                    let reply = match (&target, parsed) {
                        (_, Err(e)) => Some(line_error(
                            seq,
                            40000,
                            format!("Invalid JSON in inserts stream: {e}"),
                        )),
                        (None, Ok(first)) => match first.get("target").and_then(J::as_str) {
                            Some(t) => {
                                let t = t.to_ascii_uppercase();
                                if let Some(auth) = &server.auth {
                                    let needs = engine.insert_access(&t).await;
                                    if let Err(denied) =
                                        auth.require(authorization.as_deref(), &needs).await
                                    {
                                        let (code, message) = denied_code(denied);
                                        acks.send(line_error(seq, code, message)).await;
                                        acks.finish().await;
                                        return;
                                    }
                                }
                                target = Some(t);
                                None
                            }
                            None => {
                                acks.send(line_error(
                                    seq,
                                    40000,
                                    "No target in the inserts stream's first line".into(),
                                ))
                                .await;
                                acks.finish().await;
                                return;
                            }
                        },
                        (Some(t), Ok(J::Object(row))) => {
                            let r = match engine.insert_json(t, &row).await {
                                Ok(()) => json!({"status": "ok", "seq": seq}),
                                Err(e) => line_error(seq, 40000, e),
                            };
                            seq += 1;
                            Some(r)
                        }
                        (Some(_), Ok(_)) => {
                            let r = line_error(seq, 40000, "A row must be a JSON object".into());
                            seq += 1;
                            Some(r)
                        }
                    };
                    if let Some(r) = reply {
                        if !acks.send(r).await {
                            return;
                        }
                    }
                }
            }
            acks.finish().await;
        });
        let content_type = if json_array {
            "application/json"
        } else {
            "application/vnd.ksqlapi.delimited.v1"
        };
        Response::builder()
            .status(StatusCode::OK)
            .header("content-type", content_type)
            .body(ChannelBody { rx }.boxed())
            .expect("valid response")
    }
}

/// ksqlDB's error code and message for a denial.
fn denied_code(denied: crate::auth::Denied) -> (u32, String) {
    match denied {
        crate::auth::Denied::Topics(m) => (40301, m),
        crate::auth::Denied::Unavailable(why) => {
            (50300, format!("Topic access could not be checked: {why}"))
        }
    }
}

/// The acknowledgements of an inserts stream as they are written: one JSON object per line
/// (`application/vnd.ksqlapi.delimited.v1`), or the elements of one JSON array when the
/// client accepts only `application/json` (as ksqlDB answers each).
struct Acks {
    tx: mpsc::Sender<Bytes>,
    json_array: bool,
    written: usize,
}

impl Acks {
    /// False once the client is gone.
    async fn send(&mut self, ack: J) -> bool {
        let text = match (self.json_array, self.written) {
            (false, _) => format!("{ack}\n"),
            (true, 0) => format!("[{ack}"),
            (true, _) => format!(",{ack}"),
        };
        self.written += 1;
        self.tx.send(Bytes::from(text)).await.is_ok()
    }

    async fn finish(self) {
        if self.json_array {
            let end = if self.written == 0 { "[]" } else { "]" };
            let _ = self.tx.send(Bytes::from_static(end.as_bytes())).await;
        }
    }
}

/// Marks a request one engine sends another (a pull query for a table the other runs): it
/// is answered there, never sent on.
const FORWARDED_HEADER: &str = "x-strata-forwarded";

/// Names the tasks of a table's query whose rows an engine gathering a scan asks another
/// for (comma-separated task ids): the other answers from those alone.
const TASKS_HEADER: &str = "x-strata-tasks";

/// A query request as it came, to send on to the engine that can answer it.
struct Origin<'a> {
    path: &'static str,
    body: &'a J,
    accept: &'a str,
    forwarded: bool,
    /// Set on a scan's share asked by another engine ([`TASKS_HEADER`]).
    tasks: Option<&'a std::collections::BTreeSet<String>>,
    /// The client's credentials, passed on with what is forwarded.
    authorization: Option<&'a str>,
}

/// One request to another engine's SQL listener (marked forwarded): its status and body.
async fn send(
    addr: &str,
    path: &str,
    body: &J,
    accept: &str,
    headers: &[(&str, String)],
) -> Result<(hyper::http::response::Parts, Bytes), String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut request = Request::post(path)
        .header("host", addr)
        .header("content-type", "application/json")
        .header(FORWARDED_HEADER, "1");
    if !accept.is_empty() {
        request = request.header("accept", accept);
    }
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| e.to_string())?;
    let response = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        sender.send_request(request),
    )
    .await
    .map_err(|_| "no answer in 30 s".to_string())?
    .map_err(|e| e.to_string())?;
    let (parts, body) = response.into_parts();
    let bytes = Limited::new(body, REQUEST_BYTES_MAX * 64)
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((parts, bytes))
}

/// The rows another engine holds of a scan: its answer for `tasks`, in the delimited
/// form (a header line, then one JSON array per row), read back as values.
async fn gather(
    addr: &str,
    text: &str,
    props: &BTreeMap<String, String>,
    tasks: &[String],
    types: &[strata_sql::ast::SqlType],
    authorization: Option<String>,
) -> Result<Vec<Vec<Value>>, String> {
    let body = json!({"sql": text, "properties": props});
    let mut headers = vec![(TASKS_HEADER, tasks.join(","))];
    headers.extend(authorization.map(|a| ("authorization", a)));
    let (parts, bytes) = send(
        addr,
        "/query-stream",
        &body,
        "application/vnd.ksqlapi.delimited.v1",
        &headers,
    )
    .await
    .map_err(|e| format!("The engine at {addr} holding part of the table did not answer: {e}"))?;
    if !parts.status.is_success() {
        let message = serde_json::from_slice::<J>(&bytes)
            .ok()
            .and_then(|j| j["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
        return Err(format!(
            "The engine at {addr} holding part of the table: {message}"
        ));
    }
    let text = std::str::from_utf8(&bytes).map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    for line in text.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let values: Vec<J> = serde_json::from_str(line)
            .map_err(|e| format!("The engine at {addr} sent an unreadable row: {e}"))?;
        if values.len() != types.len() {
            return Err(format!(
                "The engine at {addr} sent a row of {} columns",
                values.len()
            ));
        }
        rows.push(
            values
                .iter()
                .zip(types)
                .map(|(v, t)| strata_sql::format::from_json(v, t).map_err(|e| e.to_string()))
                .collect::<Result<Vec<_>, _>>()?,
        );
    }
    Ok(rows)
}

/// Sends a pull query to the engine running its table's query and returns its answer.
async fn forward(addr: &str, origin: &Origin<'_>) -> Response<Body> {
    let headers: Vec<(&str, String)> = origin
        .authorization
        .map(|a| ("authorization", a.to_string()))
        .into_iter()
        .collect();
    let answer = send(addr, origin.path, origin.body, origin.accept, &headers)
        .await
        .map(|(parts, bytes)| Response::from_parts(parts, Full::new(bytes).boxed()));
    answer.unwrap_or_else(|e| {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            50000,
            format!("The engine at {addr} running the table's query did not answer: {e}"),
        )
    })
}

/// How PRINT names a key's or value's format, guessed from the bytes as ksqlDB does.
fn print_format(bytes: Option<&[u8]>, key: bool) -> &'static str {
    match bytes {
        None => "¯\\_(ツ)_/¯ - no data processed",
        Some(b) if serde_json::from_slice::<J>(b).is_ok_and(|j| j.is_object() || j.is_array()) => {
            "JSON"
        }
        Some(b)
            if key
                && b.len() == 4
                && std::str::from_utf8(b).map_or(true, |s| s.chars().any(char::is_control)) =>
        {
            "KAFKA_INT"
        }
        Some(b)
            if key
                && b.len() == 8
                && std::str::from_utf8(b).map_or(true, |s| s.chars().any(char::is_control)) =>
        {
            "KAFKA_BIGINT"
        }
        Some(b) if std::str::from_utf8(b).is_ok() => "KAFKA_STRING",
        Some(_) => "HEX",
    }
}

/// A key or value as PRINT shows it.
fn print_bytes(bytes: Option<&[u8]>, key: bool) -> String {
    let Some(b) = bytes else {
        return "<null>".to_string();
    };
    match print_format(Some(b), key) {
        "KAFKA_INT" => i32::from_be_bytes(b.try_into().expect("4 bytes")).to_string(),
        "KAFKA_BIGINT" => i64::from_be_bytes(b.try_into().expect("8 bytes")).to_string(),
        "JSON" | "KAFKA_STRING" => String::from_utf8_lossy(b).into_owned(),
        _ => b.iter().map(|x| format!("{x:02x}")).collect(),
    }
}

/// A pull query's whole answer, in the endpoint's format.
fn pull_response(
    names: &[String],
    types: &[String],
    rows: &[Vec<Value>],
    format: PushFormat,
    ids: &AtomicU64,
) -> Response<Body> {
    let id = format!("query_{}", ids.fetch_add(1, Ordering::Relaxed));
    let mut out = String::new();
    match format {
        PushFormat::V1 => {
            let schema = names
                .iter()
                .zip(types)
                .map(|(n, t)| format!("`{n}` {t}"))
                .collect::<Vec<_>>()
                .join(", ");
            out.push('[');
            out.push_str(&json!({"header": {"queryId": id, "schema": schema}}).to_string());
            for r in rows {
                out.push_str(&format!(",\n{{\"row\":{{\"columns\":{}}}}}", row_json(r)));
            }
            out.push_str("]\n");
        }
        PushFormat::Delimited => {
            out.push_str(
                &json!({"queryId": id, "columnNames": names, "columnTypes": types}).to_string(),
            );
            out.push('\n');
            for r in rows {
                out.push_str(&row_json(r));
                out.push('\n');
            }
        }
        PushFormat::JsonArray => {
            out.push('[');
            out.push_str(
                &json!({"queryId": id, "columnNames": names, "columnTypes": types}).to_string(),
            );
            for r in rows {
                out.push(',');
                out.push_str(&row_json(r));
            }
            out.push(']');
        }
    }
    let content_type = match format {
        PushFormat::Delimited => "application/vnd.ksqlapi.delimited.v1",
        _ => "application/json",
    };
    full(StatusCode::OK, content_type, out)
}

#[derive(Debug, Clone, Copy)]
enum PushFormat {
    /// `/query`: a JSON array of `{"header"}`, `{"row"}`s and a final message.
    V1,
    /// `/query-stream`, `application/vnd.ksqlapi.delimited.v1`: a header line, then a
    /// JSON array per row, one per line.
    Delimited,
    /// `/query-stream` with `Accept: application/json`: one JSON array.
    JsonArray,
}

/// The request body as JSON, read up to [`REQUEST_BYTES_MAX`].
async fn body_json(req: Request<Incoming>) -> Result<J, Response<Body>> {
    let bytes = Limited::new(req.into_body(), REQUEST_BYTES_MAX)
        .collect()
        .await
        .map_err(|e| {
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                41300,
                format!("Cannot read the request body (at most {REQUEST_BYTES_MAX} bytes): {e}"),
            )
        })?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            40000,
            format!("The request body is not valid JSON: {e}"),
        )
    })
}
