//! `limits`: this machine's ceilings, measured in the same run so every other figure can be
//! read as a ratio: a raw TCP sink on loopback, and sequential writes with fdatasync per MiB.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

use anyhow::{Context, Result};

use crate::{round, Args, Outcome};

const CHUNK: usize = 1 << 20;

fn tcp_loopback_mb_per_s(args: &Args) -> Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let sink = std::thread::spawn(move || -> u64 {
        let (mut s, _) = listener.accept().expect("accept");
        let mut buf = vec![0u8; CHUNK];
        let mut total = 0u64;
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        total
    });
    let mut out = TcpStream::connect(addr)?;
    let buf = vec![7u8; CHUNK];
    let start = Instant::now();
    while start.elapsed() < args.duration() / 2 {
        out.write_all(&buf)?;
    }
    drop(out);
    let bytes = sink.join().map_err(|_| anyhow::anyhow!("sink thread"))?;
    Ok(bytes as f64 / start.elapsed().as_secs_f64() / 1e6)
}

fn fdatasync_mb_per_s(args: &Args) -> Result<f64> {
    let path = args
        .scratch_dir
        .join(format!(".strata-bench-limit-{}", std::process::id()));
    let mut f =
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let buf = vec![7u8; CHUNK];
    let start = Instant::now();
    let mut bytes = 0u64;
    while start.elapsed() < args.duration() / 2 && bytes < 8 << 30 {
        f.write_all(&buf)?;
        f.sync_data()?;
        bytes += CHUNK as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    drop(f);
    let _ = std::fs::remove_file(&path);
    Ok(bytes as f64 / secs / 1e6)
}

pub fn run(args: &Args) -> Result<Outcome> {
    let tcp = tcp_loopback_mb_per_s(args)?;
    let disk = fdatasync_mb_per_s(args)?;
    Ok(Outcome {
        workload: "limits".into(),
        seconds: round(args.seconds, 3),
        tcp_loopback_mb_per_s: Some(round(tcp, 1)),
        fdatasync_write_mb_per_s: Some(round(disk, 1)),
        ..Outcome::default()
    })
}
