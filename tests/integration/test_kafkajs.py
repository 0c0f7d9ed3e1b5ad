"""KafkaJS (pure JavaScript, non-flexible protocol versions only): admin, produce, and a
consumer group."""
import json
import pathlib
import shutil
import subprocess
import time

import pytest
from confluent_kafka import Consumer, TopicPartition

from conftest import unique

JS_DIR = pathlib.Path(__file__).resolve().parents[1] / "kafkajs"

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node not installed (scripts/test installs it)")


def test_kafkajs_admin_and_gzip_produce(broker):
    assert (JS_DIR / "node_modules" / "kafkajs").exists(), "run scripts/test (it runs npm ci in tests/kafkajs)"
    topic = unique("js")
    r = subprocess.run(["node", str(JS_DIR / "produce_and_admin.mjs"), broker.bootstrap, topic, "300"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    seen = json.loads(r.stdout.strip().splitlines()[-1])
    assert seen["created"] is True and seen["createdAgain"] is False
    assert seen["partitions"] == 2
    assert all(p["errorCode"] == 0 for p in seen["produced"])
    assert sum(int(w["high"]) for w in seen["highWatermarks"]) == 300
    assert seen["retentionMs"] == "3600000"

    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "unused", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, 0) for p in range(2)])
    values = []
    deadline = time.time() + 20
    while len(values) < 300 and time.time() < deadline:
        m = c.poll(0.2)
        if m is not None and not m.error():
            values.append(m.value().decode())
    c.close()
    assert sorted(values) == sorted(f"js-{i}" for i in range(300))


def test_kafkajs_consumer_group_reads_and_commits(broker):
    assert (JS_DIR / "node_modules" / "kafkajs").exists(), "run scripts/test (it runs npm ci in tests/kafkajs)"
    topic, group = unique("jsg"), unique("jsgroup")
    r = subprocess.run(["node", str(JS_DIR / "produce_and_admin.mjs"), broker.bootstrap, topic, "100"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(["node", str(JS_DIR / "consume_group.mjs"), broker.bootstrap, topic, group, "100"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    seen = json.loads(r.stdout.strip().splitlines()[-1])["seen"]
    assert sorted(s["value"] for s in seen) == sorted(f"js-{i}" for i in range(100))
    # KafkaJS committed what it processed: the group's offsets are at the end.
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
    committed = c.committed([TopicPartition(topic, p) for p in range(2)], timeout=10)
    c.close()
    assert sum(tp.offset for tp in committed) == 100
