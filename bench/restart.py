#!/usr/bin/env python3
"""Restart after kill -9 with a large log: fill a fresh broker with --gb of data (durable
mode, strata-bench produce-1k), kill -9 it, start it again and time until it serves a
metadata request and a fetch. Prints one JSON line."""
import argparse
import json
import pathlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from confluent_kafka import Consumer, TopicPartition

ROOT = pathlib.Path(__file__).resolve().parents[1]
STRATA = ROOT / "target" / "release" / "strata"
BENCH = ROOT / "target" / "release" / "strata-bench"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(data, port, log):
    p = subprocess.Popen([STRATA, "serve", "--data-dir", data, "--listen", f"127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    return p


def size_gb(path):
    return sum(f.stat().st_size for f in pathlib.Path(path).rglob("*.log")) / 1e9


def serving(port, topic):
    c = Consumer({"bootstrap.servers": f"127.0.0.1:{port}", "group.id": "restart", "enable.auto.commit": False})
    try:
        md = c.list_topics(topic, timeout=0.5)
        if topic not in md.topics or md.topics[topic].error:
            return False
        c.assign([TopicPartition(topic, 0, 0)])
        m = c.poll(2.0)
        return m is not None and not m.error()
    except Exception:
        return False
    finally:
        c.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gb", type=float, default=10)
    a = ap.parse_args()
    data = tempfile.mkdtemp(prefix="strata-restart-")
    port = free_port()
    log = open(pathlib.Path(data).parent / "strata-restart.log", "ab")
    broker = start(data, port, log)
    time.sleep(1)
    while size_gb(data) < a.gb:
        subprocess.run([BENCH, "--bootstrap", f"127.0.0.1:{port}", "--workload", "produce-1k", "--seconds", "10", "--keep"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    gb = size_gb(data)
    topic = next(d.name.rsplit("-", 1)[0] for d in pathlib.Path(data).iterdir() if d.name.startswith("strata-bench-produce-1k"))
    broker.send_signal(signal.SIGKILL)
    broker.wait()
    started = time.monotonic()
    broker = start(data, port, log)
    while not serving(port, topic):
        if time.monotonic() - started > 300:
            raise SystemExit("not serving after 300 s")
        time.sleep(0.05)
    secs = time.monotonic() - started
    broker.send_signal(signal.SIGTERM)
    broker.wait()
    shutil.rmtree(data)
    print(json.dumps({"log_gb": round(gb, 2), "seconds_to_serve": round(secs, 2)}))


if __name__ == "__main__":
    main()
