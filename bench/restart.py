#!/usr/bin/env python3
"""Restart after kill -9, worst case: a broker is filled with --gb of log (strata-bench
produce-1k, acks=all), then killed --kills times at random moments while produce-1k keeps
writing (one kill right after a segment roll, before the next recovery point checkpoint
could run), each time restarted and timed until it serves every partition of every topic
(Metadata shows a leader for all, and a fetch returns records). Strata runs in durable mode
(its default); with --peer kafka (default when scripts/kafka-peer can run), Apache Kafka gets
the same data volume and the same kills (its time includes the JVM start, since that is
part of its time to serve). Prints one JSON line; a failing restart raises."""
import argparse
import json
import os
import pathlib
import random
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time

from confluent_kafka import Consumer, TopicPartition

ROOT = pathlib.Path(__file__).resolve().parents[1]
STRATA = ROOT / "target" / "release" / "strata"
BENCH = ROOT / "target" / "release" / "strata-bench"
KAFKA_PEER = ROOT / "scripts" / "kafka-peer"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log_gb(path):
    return sum(f.stat().st_size for f in pathlib.Path(path).rglob("*.log") if f.is_file()) / 1e9


def segment_files(path):
    return {str(f) for f in pathlib.Path(path).rglob("*.log") if f.name[:20].isdigit()}


def serving(port):
    """True once every partition of every bench topic has a leader and one fetch works."""
    c = Consumer({"bootstrap.servers": f"127.0.0.1:{port}", "group.id": "restart",
                  "enable.auto.commit": False, "socket.connection.setup.timeout.ms": 1000})
    try:
        md = c.list_topics(timeout=0.5)
        topics = [t for name, t in md.topics.items() if name.startswith("strata-bench-")]
        if not topics:
            return False
        for t in topics:
            if t.error or not t.partitions:
                return False
            if any(p.error or p.leader < 0 for p in t.partitions.values()):
                return False
        first = max(topics, key=lambda t: t.topic)
        c.assign([TopicPartition(first.topic, 0, 0)])
        m = c.poll(2.0)
        return m is not None and not m.error()
    except Exception:
        return False
    finally:
        c.close()


class Strata:
    name = "strata"

    def __init__(self, data, port, log):
        self.data, self.port, self.log, self.proc = data, port, log, None

    def start(self):
        self.proc = subprocess.Popen([STRATA, "serve", "--data-dir", self.data, "--listen", f"127.0.0.1:{self.port}"],
                                     stdout=self.log, stderr=subprocess.STDOUT)

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait()

    def log_dir(self):
        return self.data


class Kafka:
    name = "kafka"

    def __init__(self, data, port, log):
        self.data, self.port, self.log, self.proc = data, port, log, None

    def start(self):
        # kafka-peer returns once Kafka logs "started"; serving() decides when it serves.
        self.proc = subprocess.Popen([KAFKA_PEER, "start", "--port", str(self.port), "--data-dir", self.data,
                                      "--heap", "1g"], stdout=self.log, stderr=subprocess.STDOUT)

    def pid(self):
        try:
            return int(pathlib.Path(self.data, "kafka.pid").read_text())
        except (OSError, ValueError):
            return None

    def kill(self):
        pid = self.pid()
        if pid:
            os.kill(pid, signal.SIGKILL)
            while pathlib.Path(f"/proc/{pid}").exists():
                time.sleep(0.01)
        if self.proc:
            self.proc.wait()

    def stop(self):
        subprocess.run([KAFKA_PEER, "stop", "--data-dir", self.data], stdout=self.log, stderr=subprocess.STDOUT)

    def log_dir(self):
        return os.path.join(self.data, "logs")


def produce(port, seconds):
    return subprocess.Popen([BENCH, "--bootstrap", f"127.0.0.1:{port}", "--workload", "produce-1k",
                             "--seconds", str(seconds), "--keep"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def time_restart(broker):
    started = time.monotonic()
    broker.start()
    while not serving(broker.port):
        if time.monotonic() - started > 600:
            raise SystemExit(f"{broker.name}: not serving 600 s after restart")
        time.sleep(0.02)
    return time.monotonic() - started


def run(broker, gb, kills, rng):
    broker.start()
    deadline = time.monotonic() + 120
    while not serving_or_empty(broker.port):
        if time.monotonic() > deadline:
            raise SystemExit(f"{broker.name} did not start")
        time.sleep(0.1)
    while log_gb(broker.log_dir()) < gb:
        p = produce(broker.port, 10)
        p.wait()
    filled = log_gb(broker.log_dir())
    times = []
    for k in range(kills):
        writer = produce(broker.port, 60)
        if k == 0:
            # Right after a segment roll: wait for a new segment file, then kill at once
            # (the recovery point checkpoint runs at most once a second).
            before = segment_files(broker.log_dir())
            time.sleep(2)
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and not (segment_files(broker.log_dir()) - before):
                time.sleep(0.005)
            moment = "after a segment roll"
        else:
            delay = rng.uniform(1.0, 12.0)
            time.sleep(delay)
            moment = f"{delay:.1f} s into produce"
        broker.kill()
        writer.kill()
        writer.wait()
        secs = time_restart(broker)
        times.append({"moment": moment, "seconds_to_serve": round(secs, 3),
                      "log_gb": round(log_gb(broker.log_dir()), 2)})
        print(json.dumps({"broker": broker.name, **times[-1]}), file=__import__("sys").stderr)
    broker.stop()
    secs = [t["seconds_to_serve"] for t in times]
    return {"log_gb_filled": round(filled, 2), "kills": times, "max_seconds": max(secs),
            "median_seconds": round(statistics.median(secs), 3)}


def serving_or_empty(port):
    c = Consumer({"bootstrap.servers": f"127.0.0.1:{port}", "group.id": "restart"})
    try:
        c.list_topics(timeout=0.5)
        return True
    except Exception:
        return False
    finally:
        c.close()


def kafka_available():
    return shutil.which("java") and shutil.which("mvn") and KAFKA_PEER.exists()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gb", type=float, default=10)
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--peer", choices=["kafka", "none"], default="kafka" if kafka_available() else "none")
    a = ap.parse_args()
    out = {"seed": a.seed, "target_max_seconds": 2.0}
    for kind in ["strata"] + (["kafka"] if a.peer == "kafka" else []):
        data = tempfile.mkdtemp(prefix=f"{kind}-restart-")
        log = open(pathlib.Path(data).parent / f"{kind}-restart.log", "ab")
        broker = (Strata if kind == "strata" else Kafka)(data, free_port(), log)
        try:
            out[kind] = run(broker, a.gb, a.kills, random.Random(a.seed))
        finally:
            try:
                broker.kill()
            except Exception:
                pass
            shutil.rmtree(data, ignore_errors=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
