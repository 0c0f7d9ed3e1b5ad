#!/usr/bin/env python3
"""A simple produce/consume throughput measurement with librdkafka (confluent-kafka).

Not the benchmark suite (that is `strata-bench`, a later issue): one Python producer process
and one consumer, so the client is often the bottleneck. Usage:
    bench/quick_throughput.py HOST:PORT [--records N] [--size BYTES] [--partitions P] [--acks all]
Prints one JSON line per phase.
"""
import argparse
import json
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bootstrap")
    ap.add_argument("--records", type=int, default=500_000)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--acks", default="all")
    a = ap.parse_args()
    topic = f"quick-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": a.bootstrap})
    admin.create_topics([NewTopic(topic, a.partitions, 1)])[topic].result(10)
    value = b"x" * a.size
    p = Producer({"bootstrap.servers": a.bootstrap, "acks": a.acks, "linger.ms": 5, "batch.size": 1_000_000,
                  "queue.buffering.max.messages": 1_000_000, "queue.buffering.max.kbytes": 2_000_000, "compression.type": "none"})
    start = time.perf_counter()
    for i in range(a.records):
        while True:
            try:
                p.produce(topic, value=value, partition=i % a.partitions)
                break
            except BufferError:
                p.poll(0.001)
    assert p.flush(120) == 0
    secs = time.perf_counter() - start
    print(json.dumps({"phase": "produce", "acks": a.acks, "records": a.records, "record_bytes": a.size, "seconds": round(secs, 3),
                      "records_per_s": round(a.records / secs), "mb_per_s": round(a.records * a.size / secs / 1e6, 1)}))
    c = Consumer({"bootstrap.servers": a.bootstrap, "group.id": "quick", "enable.auto.commit": False, "fetch.max.bytes": 52428800,
                  "max.partition.fetch.bytes": 10485760})
    c.assign([TopicPartition(topic, i, 0) for i in range(a.partitions)])
    start = time.perf_counter()
    n = 0
    while n < a.records:
        for m in c.consume(10000, 1.0):
            if not m.error():
                n += 1
    secs = time.perf_counter() - start
    c.close()
    print(json.dumps({"phase": "consume", "records": n, "seconds": round(secs, 3), "records_per_s": round(n / secs),
                      "mb_per_s": round(n * a.size / secs / 1e6, 1)}))
    admin.delete_topics([topic])[topic].result(10)


if __name__ == "__main__":
    main()
