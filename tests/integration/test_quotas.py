"""Client quotas (issue 14): a producer limited to 1 MB/s measures about 1 MB/s while an
unlimited one on the same broker is not slowed; a consumer's byte rate likewise; quotas set
and listed with `strata quota` and Kafka's own ConfigCommand (kafka-configs), which also
describes SCRAM users through DescribeClientQuotas."""

import json
import pathlib
import subprocess
import threading
import time

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import STRATA_BIN, Broker, unique

ROOT = pathlib.Path(__file__).resolve().parents[2]
MB = 1024 * 1024
# A short quota window, so the rate settles within the test (Kafka's: 11 x 1 s).
CONFIG = '"quota.window.num" = 3\n"quota.window.size.seconds" = 1\n'


def strata(b, *args, check=True):
    r = subprocess.run([STRATA_BIN, "quota", *args, "--bootstrap", b.bootstrap], capture_output=True, text=True)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def produce_for(bootstrap, topic, client_id, seconds, out):
    """Produces 10 KB records as fast as the broker lets `client_id`; records into `out`
    (time, acknowledged bytes) pairs."""
    acked = [0]

    def on_delivery(err, msg):
        if err is None:
            acked[0] += len(msg.value())

    p = Producer({"bootstrap.servers": bootstrap, "client.id": client_id, "linger.ms": 5,
                  "queue.buffering.max.kbytes": 2048, "acks": 1})
    value = b"x" * 10_000
    end = time.time() + seconds
    while time.time() < end:
        try:
            p.produce(topic, value=value, on_delivery=on_delivery)
        except BufferError:
            p.poll(0.01)
        p.poll(0)
        out.append((time.time(), acked[0]))
    p.flush(30)


def rate_between(samples, t0, t1):
    """Acknowledged bytes per second between times t0 and t1."""
    before = max((b for t, b in samples if t <= t0), default=0)
    after = max((b for t, b in samples if t <= t1), default=0)
    return (after - before) / (t1 - t0)


def test_a_limited_producer_gets_its_quota_and_does_not_slow_an_unlimited_one(tmp_path):
    b = Broker(tmp_path / "data", config_text=CONFIG).start()
    try:
        topic = unique("quota")
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(10)
        strata(b, "set", "--client-id", "slow", f"producer_byte_rate={MB}")
        listed = strata(b, "list").stdout
        assert f"client-id=slow\tproducer_byte_rate={MB}" in listed, listed

        slow, fast = [], []
        threads = [threading.Thread(target=produce_for, args=(b.bootstrap, topic, c, 12, out))
                   for c, out in (("slow", slow), ("fast", fast))]
        start = time.time()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # After the first window, the limited producer runs at its quota.
        slow_rate = rate_between(slow, start + 4, start + 11)
        fast_rate = rate_between(fast, start + 4, start + 11)
        assert 0.7 * MB <= slow_rate <= 1.35 * MB, f"limited: {slow_rate / MB:.2f} MB/s"
        assert fast_rate >= 3 * slow_rate, f"unlimited: {fast_rate / MB:.2f} MB/s vs {slow_rate / MB:.2f}"

        # A consumer quota: reading the topic back at 1 MB/s.
        strata(b, "set", "--client-id-default", f"consumer_byte_rate={MB}")
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": unique("g"), "client.id": "reader",
                      "auto.offset.reset": "earliest",
                      "max.partition.fetch.bytes": 256 * 1024})
        c.subscribe([topic])
        got, first = 0, None
        end = time.time() + 8
        while time.time() < end:
            m = c.poll(0.2)
            if m is not None and m.error() is None:
                first = first or time.time()
                got += len(m.value())
        c.close()
        assert got > 2 * MB, f"read only {got} bytes"
        read_rate = got / (time.time() - first)
        assert read_rate <= 2.0 * MB, f"consumer: {read_rate / MB:.2f} MB/s"

        strata(b, "remove", "--client-id", "slow", "producer_byte_rate")
        assert "client-id=slow" not in strata(b, "list").stdout
        bad = strata(b, "set", "--client-id", "x", "producer_byte_rate=-5", check=False)
        assert bad.returncode == 1 and "positive" in bad.stderr, bad.stderr
        bad = strata(b, "set", "--ip", "10.0.0.1", "producer_byte_rate=5", check=False)
        assert bad.returncode == 1 and "Invalid configuration key" in bad.stderr, bad.stderr
    finally:
        b.stop()
    assert "panicked" not in b.log_text()


def test_kafka_configs_manages_user_and_client_quotas(tmp_path):
    from test_kafka_tools import tool

    cp = subprocess.run([str(ROOT / "scripts" / "kafka-peer"), "classpath"], check=True, capture_output=True,
                        text=True, timeout=600).stdout.strip()
    b = Broker(tmp_path / "data").start()
    try:
        cc = "org.apache.kafka.tools.ConfigCommand"
        bs = b.bootstrap
        tool(cp, cc, "--bootstrap-server", bs, "--alter", "--add-config",
             "producer_byte_rate=2048,consumer_byte_rate=4096", "--entity-type", "users", "--entity-name", "alice")
        tool(cp, cc, "--bootstrap-server", bs, "--alter", "--add-config", "request_percentage=50",
             "--entity-type", "clients", "--entity-default")
        tool(cp, cc, "--bootstrap-server", bs, "--alter", "--add-config",
             "SCRAM-SHA-256=[iterations=4096,password=pw]", "--entity-type", "users", "--entity-name", "alice")
        out = tool(cp, cc, "--bootstrap-server", bs, "--describe", "--entity-type", "users",
                   "--entity-name", "alice").stdout
        assert "producer_byte_rate=2048.0" in out and "consumer_byte_rate=4096.0" in out, out
        assert "SCRAM-SHA-256=iterations=4096" in out, out
        out = tool(cp, cc, "--bootstrap-server", bs, "--describe", "--entity-type", "clients",
                   "--entity-default").stdout
        assert "request_percentage=50.0" in out, out
        listed = strata(b, "list").stdout
        assert "user=alice\tconsumer_byte_rate=4096,producer_byte_rate=2048" in listed, listed
        assert "client-id=<default>\trequest_percentage=50" in listed, listed
        # The same as JSON: a default entity's name is null.
        entries = json.loads(strata(b, "list", "--output", "json").stdout)
        assert {"entity": [{"type": "user", "name": "alice"}],
                "quotas": {"consumer_byte_rate": 4096.0, "producer_byte_rate": 2048.0}} in entries, entries
        assert {"entity": [{"type": "client-id", "name": None}],
                "quotas": {"request_percentage": 50.0}} in entries, entries
        tool(cp, cc, "--bootstrap-server", bs, "--alter", "--delete-config", "producer_byte_rate",
             "--entity-type", "users", "--entity-name", "alice")
        assert "producer_byte_rate" not in strata(b, "list", "--user", "alice").stdout
    finally:
        b.stop()
    assert "panicked" not in b.log_text()


def test_a_request_percentage_quota_throttles_a_client_flooding_requests(tmp_path):
    """KIP-124: a client whose requests keep the broker busy beyond its request_percentage is
    slowed (its connection waits), while another client on the same broker is not."""
    import socket
    import struct

    from conftest import read_frame

    b = Broker(tmp_path / "data", config_text=CONFIG).start()
    try:
        strata(b, "set", "--client-id", "greedy", "request_percentage=0.5")

        def metadata_requests(client_id, seconds):
            cid = client_id.encode()
            body = struct.pack(">hhih", 3, 1, 7, len(cid)) + cid + struct.pack(">i", -1)
            s = socket.create_connection(("127.0.0.1", b.port), timeout=10)
            n, end = 0, time.time() + seconds
            while time.time() < end:
                s.sendall(struct.pack(">i", len(body)) + body)
                read_frame(s)
                n += 1
            s.close()
            return n / seconds

        polite = metadata_requests("polite", 4)
        greedy = metadata_requests("greedy", 6)
        assert greedy * 3 < polite, f"greedy {greedy:.0f}/s vs polite {polite:.0f}/s"
        assert metadata_requests("polite", 2) > 3 * greedy, "the other client is not slowed"
    finally:
        b.stop()
    assert "panicked" not in b.log_text()
