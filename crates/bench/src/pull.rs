//! `sql-pull`: pull queries by key against the SQL engine's `/query-stream`, from
//! `--consumers` keep-alive HTTP/1.1 connections (one thread each), for `--seconds`:
//! queries/s and latency. The table and its key column are given (`--pull-table`,
//! `--pull-key`), keys drawn uniformly from `0..--pull-keys`. A reply that is not 200 or
//! does not hold exactly one row counts as an error.
//!
//! A plain blocking client over `std::net` (no HTTP library): the request is fixed but for
//! the key, the reply has a Content-Length, so the load generator costs little next to
//! the broker it measures.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{round, Args, Latency, Outcome};

struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    host: String,
}

impl Client {
    fn connect(addr: &str) -> Result<Client> {
        let s = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(Client {
            reader: BufReader::new(s.try_clone()?),
            writer: s,
            host: addr.to_string(),
        })
    }

    /// One POST; (status, body).
    fn post(&mut self, path: &str, body: &str) -> Result<(u16, Vec<u8>)> {
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.host,
            body.len()
        );
        self.writer.write_all(req.as_bytes())?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("bad status line {line:?}"))?;
        let mut length = None;
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse::<usize>().ok();
                }
            }
        }
        let Some(n) = length else {
            bail!("a reply without Content-Length")
        };
        if n > 1 << 20 {
            bail!("a reply of {n} bytes");
        }
        let mut body = vec![0; n];
        self.reader.read_exact(&mut body)?;
        Ok((status, body))
    }
}

pub fn run(args: &Args) -> Result<Outcome> {
    let Some(addr) = args.sql.clone() else {
        bail!("sql-pull needs --sql HOST:PORT")
    };
    let table = args.pull_table.clone();
    let key = args.pull_key.clone();
    let keys = args.pull_keys.max(1);
    let deadline = Instant::now() + args.duration();
    let started = Instant::now();
    let mut threads = Vec::new();
    for t in 0..args.consumers.max(1) {
        let (addr, table, key) = (addr.clone(), table.clone(), key.clone());
        threads.push(std::thread::spawn(move || -> Result<(Vec<f64>, u64)> {
            let mut client = Client::connect(&addr)?;
            let mut latencies = Vec::new();
            let mut errors = 0;
            // A cheap, per-thread pseudo-random sequence of keys (xorshift).
            let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ (t as u64 + 1);
            while Instant::now() < deadline {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let k = x % keys;
                let body = format!(
                    "{{\"sql\":\"SELECT * FROM {table} WHERE {key} = {k};\",\"properties\":{{}}}}"
                );
                let t0 = Instant::now();
                match client.post("/query-stream", &body) {
                    Ok((200, reply)) => {
                        latencies.push(t0.elapsed().as_secs_f64() * 1000.0);
                        // A header line and one row.
                        if reply.iter().filter(|&&b| b == b'\n').count() != 2 {
                            errors += 1;
                        }
                    }
                    Ok(_) => errors += 1,
                    Err(_) => {
                        errors += 1;
                        client = Client::connect(&addr)?;
                    }
                }
            }
            Ok((latencies, errors))
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for t in threads {
        let (l, e) = t
            .join()
            .map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
        latencies.extend(l);
        errors += e;
    }
    let secs = started.elapsed().as_secs_f64();
    latencies.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    let mut o = Outcome::throughput("sql-pull", latencies.len() as u64, 0, secs, errors);
    o.latency = Some(Latency {
        p50_ms: round(at(0.5), 3),
        p99_ms: round(at(0.99), 3),
        p999_ms: round(at(0.999), 3),
        max_ms: round(latencies.last().copied().unwrap_or(0.0), 3),
        samples: latencies.len(),
    });
    Ok(o)
}
