#!/usr/bin/env python3
"""Produce throughput while the log cleaner compacts a large dirty partition, against the
same broker's throughput with the cleaner idle, measured in the same run (issue 6's target:
>= 70%).

    python3 bench/cleaner.py [--gb 5] [--seconds 10]

Steps: start a release `strata serve`; fill a `cleanup.policy=delete` topic with --gb of keyed
1 KiB records over 100,000 keys (the cleaner has nothing to do); run strata-bench produce-1k
(baseline); switch the topic to `cleanup.policy=compact` live, which starts the cleaner on it;
run produce-1k again while it cleans; print both, the ratio, and the cleaner's own log lines.
Needs `cargo build --release -p strata -p strata-bench` and confluent-kafka.
"""
import argparse
import json
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
STRATA = ROOT / "target" / "release" / "strata"
BENCH = ROOT / "target" / "release" / "strata-bench"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def produce_1k(bootstrap, seconds, pid):
    out = subprocess.run([str(BENCH), "--bootstrap", bootstrap, "--workload", "produce-1k",
                          "--seconds", str(seconds), "--broker-pid", str(pid)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gb", type=float, default=5.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--throttle-mb", type=float, default=None,
                    help="log.cleaner.io.max.bytes.per.second in MB/s (default: unlimited, as Kafka)")
    args = ap.parse_args()
    from confluent_kafka import Producer

    data = pathlib.Path(tempfile.mkdtemp(prefix="strata-cleaner-bench-"))
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    log_path = data / "broker.log"
    cfg = data / "broker.toml"
    text = "log_cleaner_backoff_ms = 500\n"
    if args.throttle_mb:
        text += f"log_cleaner_io_max_bytes_per_second = {args.throttle_mb * 1e6}\n"
    cfg.write_text(text)
    log = open(log_path, "wb")
    broker = subprocess.Popen([str(STRATA), "serve", "--data-dir", str(data / "d"), "--listen", bootstrap,
                               "--config", str(cfg)], stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(100):
            if b"listening on" in log_path.read_bytes():
                break
            time.sleep(0.1)
        subprocess.run([str(STRATA), "topic", "create", "dirty", "--partitions", "1", "--bootstrap", bootstrap,
                        "--config", "segment.bytes=134217728", "--config", "retention.ms=-1"], check=True,
                       capture_output=True)
        p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.size": 1000000,
                      "queue.buffering.max.kbytes": 1048576, "acks": "all"})
        payload = b"x" * 1024
        n = int(args.gb * 1e9 / 1050)
        t0 = time.time()
        for i in range(n):
            while True:
                try:
                    p.produce("dirty", key=b"key-%06d" % (i % 100_000), value=payload, partition=0)
                    break
                except BufferError:
                    p.poll(0.05)
            if i % 10000 == 0:
                p.poll(0)
        assert p.flush(600) == 0
        fill_s = time.time() - t0
        print(f"filled {args.gb} GB ({n} records, 100000 keys) in {fill_s:.0f}s", file=sys.stderr)
        import os
        os.sync()  # the fill's writeback must not weigh on the baseline
        produce_1k(bootstrap, 3, broker.pid)  # warm-up, discarded
        os.sync()
        baseline = produce_1k(bootstrap, args.seconds, broker.pid)
        print(f"cleaner idle:     {baseline['mb_per_s']} MB/s", file=sys.stderr)
        subprocess.run([str(STRATA), "topic", "alter-config", "dirty", "--set", "cleanup.policy=compact",
                        "--bootstrap", bootstrap], check=True, capture_output=True)
        time.sleep(1)
        during = produce_1k(bootstrap, args.seconds, broker.pid)
        text = log_path.read_text(errors="replace")
        passes = [l for l in text.splitlines() if "log cleaned" in l and "topic=dirty" in l]
        print(f"cleaner cleaning: {during['mb_per_s']} MB/s", file=sys.stderr)
        # Let the pass finish for its figures.
        deadline = time.time() + 600
        while time.time() < deadline and not [l for l in log_path.read_text(errors="replace").splitlines()
                                              if "log cleaned" in l and "topic=dirty" in l]:
            time.sleep(1)
        passes = [l for l in log_path.read_text(errors="replace").splitlines() if "log cleaned" in l and "topic=dirty" in l]
        os.sync()
        after = produce_1k(bootstrap, args.seconds, broker.pid)  # idle again, after cleaning
        print(f"cleaner idle again: {after['mb_per_s']} MB/s", file=sys.stderr)
        idle = (baseline["mb_per_s"] + after["mb_per_s"]) / 2
        result = {
            "dirty_gb": args.gb,
            "cleaner_throttle_mb_per_s": args.throttle_mb,
            "produce_1k_mb_per_s_cleaner_idle_before": baseline["mb_per_s"],
            "produce_1k_mb_per_s_while_cleaning": during["mb_per_s"],
            "produce_1k_mb_per_s_cleaner_idle_after": after["mb_per_s"],
            "ratio": round(during["mb_per_s"] / idle, 3) if idle else None,
            "cleaning_overlapped_the_measurement": bool(passes) and int(dict(re.findall(r"(\w+)=(\S+)", passes[0])).get("duration_ms", "0")) > 1000 * args.seconds,
            "cleaner_passes": [dict(re.findall(r"(\w+)=(\S+)", l)) for l in passes],
        }
        print(json.dumps(result))
        print(f"ratio {result['ratio']} (target >= 0.70)", file=sys.stderr)
    finally:
        broker.terminate()
        broker.wait(60)
        log.close()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
