#!/usr/bin/env python3
"""Tiered storage workloads (issue 16's benchmark rows), each compared with a baseline
measured in the same run:

- produce-1k: librdkafka (confluent-kafka) produces --records 1 KiB records (acks=all) to a
  topic without tiering and to one with `remote.storage.enable` (file-system object store on
  the same disk), on one broker; records/s of each and their ratio. While the tiered topic
  is written, the broker copies its sealed segments: the copy throughput (bytes copied per
  second from the first to the last copy) is reported beside the produce throughput.
- consume-1k from remote: the tiered topic read from offset 0 once its older segments are
  only in the object store (local.retention.bytes keeps the newest few): cold (the broker
  just restarted: no copy's index cached) and warm (read again), against the same number of
  records read from the untiered topic's local log.

    python3 bench/tiered.py [--records 300000] [--strata BIN] [--store file|s3]

`--store s3` runs the same against an S3-compatible server on loopback (moto's, from PyPI,
in-memory: it measures the broker's request pattern and overheads, not a real S3's
latency).

Prints one JSON object.
"""
import argparse
import json
import pathlib
import re
import socket
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Server:
    """moto's S3 server on loopback with a bucket for the broker."""

    def __init__(self):
        import boto3
        port = free_port()
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-p", str(port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.endpoint = f"http://127.0.0.1:{port}"
        s3 = boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test")
        for _ in range(300):
            try:
                s3.create_bucket(Bucket="bench")
                break
            except Exception:  # noqa: BLE001 - not listening yet
                time.sleep(0.1)
        self.env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}

    def config(self):
        return f"""
"remote.log.storage.url" = "s3://bench/strata"
"remote.log.storage.s3.endpoint" = "{self.endpoint}"
"remote.log.storage.s3.region" = "us-east-1"
"""

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


class Strata:
    def __init__(self, binary, tmp, remote, s3=None, extra=""):
        self.binary, self.tmp, self.s3 = binary, tmp, s3
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.config = tmp / "strata.toml"
        store = s3.config() if s3 else f'"remote.log.storage.url" = "file://{remote}"\n'
        self.config.write_text(f"""
"remote.log.storage.system.enable" = true
{store}
"remote.log.manager.task.interval.ms" = 200
"log.retention.check.interval.ms" = 500
{extra}
""")
        self.log = tmp / "broker.log"
        self.proc = None

    def start(self):
        import os
        out = open(self.log, "ab")
        env = {**os.environ, **(self.s3.env if self.s3 else {})}
        self.proc = subprocess.Popen([self.binary, "serve", "--data-dir", str(self.tmp / "data"),
                                      "--listen", self.bootstrap, "--config", str(self.config)],
                                     stdout=out, stderr=subprocess.STDOUT, env=env)
        out.close()
        for _ in range(300):
            if "listening on" in self.log.read_text(errors="replace"):
                return
            time.sleep(0.1)
        raise RuntimeError("the broker did not start")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(60)


def produce(bootstrap, topic, records):
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                  "batch.size": 262144, "queue.buffering.max.messages": 1000000})
    value = b"v" * 1024
    errors = []
    t0 = time.time()
    for i in range(records):
        while True:
            try:
                p.produce(topic, value=value, on_delivery=lambda err, msg: err and errors.append(err))
                break
            except BufferError:
                p.poll(0.01)
    p.flush(120)
    took = time.time() - t0
    if errors:
        raise RuntimeError(f"produce to {topic}: {errors[:3]}")
    return records / took


def consume(bootstrap, topic, start, count):
    from confluent_kafka import Consumer, TopicPartition
    # librdkafka pauses fetching for fetch.queue.backoff.ms (1 s by default) whenever its
    # queue holds queued.min.messages: a broker that answers faster than Python drains gets
    # whole-second stalls that measure the client, not the broker.
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{time.time()}",
                  "enable.auto.commit": False, "fetch.max.bytes": 52428800,
                  "queued.min.messages": 1000000, "fetch.queue.backoff.ms": 10})
    c.assign([TopicPartition(topic, 0, start)])
    got, t0 = 0, time.time()
    deadline = t0 + 300
    while got < count and time.time() < deadline:
        got += sum(1 for m in c.consume(10000, 1.0) if not m.error())
    took = time.time() - t0
    c.close()
    if got < count:
        raise RuntimeError(f"read {got} of {count} from {topic}")
    return count / took


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=300_000)
    ap.add_argument("--strata", default=str(ROOT / "target" / "release" / "strata"))
    ap.add_argument("--store", choices=["file", "s3"], default="file")
    ap.add_argument("--keep", action="store_true", help="keep the data and the broker's log")
    ap.add_argument("--broker-config", default="",
                    help='extra broker config lines, e.g. \'"remote.log.reader.chunk.bytes" = 4194304\'')
    args = ap.parse_args()
    from confluent_kafka.admin import AdminClient, NewTopic

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="strata-tiered-bench-"))
    remote = tmp / "remote"
    s3 = S3Server() if args.store == "s3" else None
    b = Strata(args.strata, tmp, remote, s3, args.broker_config)
    results = {"records": args.records, "store": args.store}
    try:
        b.start()
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        common = {"segment.bytes": str(16 << 20)}
        admin.create_topics([
            NewTopic("plain", 1, 1, config=common),
            NewTopic("tiered", 1, 1, config={**common, "remote.storage.enable": "true",
                                              "local.retention.bytes": str(32 << 20)}),
        ])["tiered"].result(30)
        time.sleep(1)
        results["produce_plain_records_per_s"] = round(produce(b.bootstrap, "plain", args.records))
        results["produce_tiered_records_per_s"] = round(produce(b.bootstrap, "tiered", args.records))
        results["produce_tiered_vs_plain"] = round(
            results["produce_tiered_records_per_s"] / results["produce_plain_records_per_s"], 3)
        print(f"== produce-1k: plain {results['produce_plain_records_per_s']}/s, tiered "
              f"{results['produce_tiered_records_per_s']}/s ({results['produce_tiered_vs_plain']}x)",
              file=sys.stderr)
        # Every sealed segment copied, then the older ones gone from local disk.
        total = args.records * 1024
        deadline = time.time() + 300
        while time.time() < deadline:
            local = sum(f.stat().st_size for f in (tmp / "data" / "tiered-0").glob("*.log"))
            if local <= (32 << 20) + 2 * (16 << 20):
                break
            time.sleep(0.5)
        copies = re.findall(r"(\S+Z) .*tiered storage: segment copied.* bytes=(\d+)",
                            b.log.read_text(errors="replace"))
        copied_bytes = sum(int(n) for _, n in copies)
        if len(copies) >= 2:
            from datetime import datetime
            ts = [datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp() for t, _ in copies]
            span = max(ts[-1] - ts[0], 1e-3)
            results["copy_mb_per_s"] = round(copied_bytes / span / 1e6, 1)
        results["copied_segments"] = len(copies)
        results["copied_mb"] = round(copied_bytes / 1e6, 1)
        local_start = int(sorted((tmp / "data" / "tiered-0").glob("*.log"))[0].stem)
        results["remote_records"] = local_start
        print(f"== copied {len(copies)} segments ({results['copied_mb']} MB, "
              f"{results.get('copy_mb_per_s')} MB/s); {local_start} records only remote", file=sys.stderr)
        # Read what is only in the object store: cold (after a restart), then warm; and the
        # same count from the untiered topic's local log.
        count = local_start
        b.stop()
        b.start()
        results["consume_remote_cold_records_per_s"] = round(consume(b.bootstrap, "tiered", 0, count))
        results["consume_remote_warm_records_per_s"] = round(consume(b.bootstrap, "tiered", 0, count))
        results["consume_local_records_per_s"] = round(consume(b.bootstrap, "plain", 0, count))
        for k in ("cold", "warm"):
            results[f"consume_remote_{k}_vs_local"] = round(
                results[f"consume_remote_{k}_records_per_s"] / results["consume_local_records_per_s"], 3)
        print(f"== consume-1k: remote cold {results['consume_remote_cold_records_per_s']}/s, warm "
              f"{results['consume_remote_warm_records_per_s']}/s, local "
              f"{results['consume_local_records_per_s']}/s", file=sys.stderr)
        print(json.dumps(results))
    finally:
        try:
            b.stop()
        except Exception:  # noqa: BLE001
            pass
        if s3:
            s3.stop()
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            subprocess.run(["rm", "-rf", str(tmp)])


if __name__ == "__main__":
    main()
