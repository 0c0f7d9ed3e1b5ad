"""Apache Kafka's own command-line tools (kafka-tools 4.x from Maven Central, run with
`java -cp`, no tarball) against Strata: what operators type, and the Verifiable* clients that
Kafka's system tests drive."""
import json
import os
import pathlib
import re
import subprocess
import time

import pytest

from conftest import Broker, unique

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def classpath():
    out = subprocess.run([str(ROOT / "scripts" / "kafka-peer"), "classpath"], check=True,
                         capture_output=True, text=True, timeout=600)
    return out.stdout.strip()


@pytest.fixture(scope="module")
def tbroker(tmp_path_factory):
    b = Broker(tmp_path_factory.mktemp("tools") / "data",
               config_text="group_initial_rebalance_delay_ms = 0\n").start()
    yield b
    b.stop()


def tool(classpath, main, *args, stdin=None, timeout=120, check=True):
    cmd = ["java", "-Xmx256m", "-XX:TieredStopAtLevel=1", "-Dorg.slf4j.simpleLogger.defaultLogLevel=error",
           "-cp", classpath, main, *args]
    r = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"{main} {args} exited {r.returncode}:\n{r.stdout}\n{r.stderr}")
    return r


def test_topics_configs_console_and_groups(classpath, tbroker):
    bs = tbroker.bootstrap
    topic = unique("tools")
    tool(classpath, "org.apache.kafka.tools.TopicCommand", "--bootstrap-server", bs, "--create",
         "--topic", topic, "--partitions", "3", "--replication-factor", "1", "--config", "retention.ms=86400000")
    listed = tool(classpath, "org.apache.kafka.tools.TopicCommand", "--bootstrap-server", bs, "--list").stdout
    assert topic in listed.split()
    described = tool(classpath, "org.apache.kafka.tools.TopicCommand", "--bootstrap-server", bs,
                     "--describe", "--topic", topic).stdout
    assert "PartitionCount: 3" in described and "retention.ms=86400000" in described, described
    tool(classpath, "org.apache.kafka.tools.TopicCommand", "--bootstrap-server", bs, "--alter",
         "--topic", topic, "--partitions", "4")
    assert "PartitionCount: 4" in tool(classpath, "org.apache.kafka.tools.TopicCommand", "--bootstrap-server",
                                       bs, "--describe", "--topic", topic).stdout

    tool(classpath, "org.apache.kafka.tools.ConfigCommand", "--bootstrap-server", bs, "--alter",
         "--entity-type", "topics", "--entity-name", topic, "--add-config", "compression.type=zstd,segment.ms=3600000")
    cfg = tool(classpath, "org.apache.kafka.tools.ConfigCommand", "--bootstrap-server", bs, "--describe",
               "--entity-type", "topics", "--entity-name", topic).stdout
    assert "compression.type=zstd" in cfg and "segment.ms=3600000" in cfg, cfg
    tool(classpath, "org.apache.kafka.tools.ConfigCommand", "--bootstrap-server", bs, "--alter",
         "--entity-type", "topics", "--entity-name", topic, "--delete-config", "segment.ms")
    cfg = tool(classpath, "org.apache.kafka.tools.ConfigCommand", "--bootstrap-server", bs, "--describe",
               "--entity-type", "topics", "--entity-name", topic).stdout
    assert "segment.ms=3600000" not in cfg

    lines = "".join(f"k{i}:v{i}\n" for i in range(30))
    tool(classpath, "org.apache.kafka.tools.ConsoleProducer", "--bootstrap-server", bs, "--topic", topic,
         "--reader-property", "parse.key=true", "--reader-property", "key.separator=:", stdin=lines)
    group = unique("tools-g")
    out = tool(classpath, "org.apache.kafka.tools.consumer.ConsoleConsumer", "--bootstrap-server", bs,
               "--topic", topic, "--group", group, "--from-beginning", "--max-messages", "30",
               "--formatter-property", "print.key=true", "--formatter-property", "key.separator=:",
               "--timeout-ms", "30000").stdout
    assert sorted(l for l in out.split() if re.fullmatch(r"k\d+:v\d+", l)) == sorted(f"k{i}:v{i}" for i in range(30)), out

    desc = tool(classpath, "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand", "--bootstrap-server", bs,
                "--describe", "--group", group).stdout
    rows = [l.split() for l in desc.splitlines() if l.startswith(group)]
    assert len(rows) == 4, desc
    # GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG ...
    assert sum(int(r[3]) for r in rows if r[3] != "-") == 30 and all(r[5] in ("0", "-") for r in rows), desc
    listed = tool(classpath, "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand", "--bootstrap-server",
                  bs, "--list").stdout
    assert group in listed.split()
    reset = tool(classpath, "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand", "--bootstrap-server", bs,
                 "--reset-offsets", "--group", group, "--topic", topic, "--to-earliest", "--execute").stdout
    assert topic in reset
    desc = tool(classpath, "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand", "--bootstrap-server", bs,
                "--describe", "--group", group).stdout
    rows = [l.split() for l in desc.splitlines() if l.startswith(group)]
    assert sum(int(r[5]) for r in rows if r[5] != "-") == 30, desc
    tool(classpath, "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand", "--bootstrap-server", bs,
         "--delete", "--group", group)
    tool(classpath, "org.apache.kafka.tools.TopicCommand", "--bootstrap-server", bs, "--delete", "--topic", topic)
    deadline = time.time() + 10
    while time.time() < deadline:
        if topic not in tool(classpath, "org.apache.kafka.tools.TopicCommand", "--bootstrap-server", bs,
                             "--list").stdout.split():
            break
        time.sleep(0.5)
    else:
        raise AssertionError("topic not deleted")


def test_delete_records_and_log_dirs(classpath, tbroker, tmp_path):
    bs = tbroker.bootstrap
    topic = unique("tools-dr")
    tool(classpath, "org.apache.kafka.tools.TopicCommand", "--bootstrap-server", bs, "--create",
         "--topic", topic, "--partitions", "1")
    tool(classpath, "org.apache.kafka.tools.ConsoleProducer", "--bootstrap-server", bs, "--topic", topic,
         stdin="".join(f"m{i}\n" for i in range(20)))
    spec = tmp_path / "delete.json"
    spec.write_text(json.dumps({"version": 1, "partitions": [{"topic": topic, "partition": 0, "offset": 12}]}))
    out = tool(classpath, "org.apache.kafka.tools.DeleteRecordsCommand", "--bootstrap-server", bs,
               "--offset-json-file", str(spec)).stdout
    assert "low_watermark: 12" in out, out
    dirs = tool(classpath, "org.apache.kafka.tools.LogDirsCommand", "--bootstrap-server", bs, "--describe",
                "--topic-list", topic).stdout
    payload = json.loads(next(l for l in dirs.splitlines() if l.startswith("{")))
    parts = [p for b in payload["brokers"] for d in b["logDirs"] for p in d["partitions"]]
    assert [p["partition"] for p in parts] == [f"{topic}-0"] and parts[0]["size"] > 0, payload


def test_transactions_tool(classpath, tbroker):
    from confluent_kafka import Producer

    bs = tbroker.bootstrap
    topic, txn_id = unique("tools-txn"), unique("tools-txn-id")
    tool(classpath, "org.apache.kafka.tools.TopicCommand", "--bootstrap-server", bs, "--create",
         "--topic", topic, "--partitions", "1")
    p = Producer({"bootstrap.servers": bs, "transactional.id": txn_id})
    p.init_transactions(20)
    p.begin_transaction()
    p.produce(topic, b"v")
    p.flush(20)
    listed = tool(classpath, "org.apache.kafka.tools.TransactionsCommand", "--bootstrap-server", bs, "list").stdout
    assert txn_id in listed and "Ongoing" in listed, listed
    described = tool(classpath, "org.apache.kafka.tools.TransactionsCommand", "--bootstrap-server", bs,
                     "describe", "--transactional-id", txn_id).stdout
    assert "Ongoing" in described and f"{topic}-0" in described, described
    producers = tool(classpath, "org.apache.kafka.tools.TransactionsCommand", "--bootstrap-server", bs,
                     "describe-producers", "--topic", topic, "--partition", "0").stdout
    assert "CurrentTransactionStartOffset" in producers and "\t0\t" in producers.replace("  ", "\t") or "0" in producers
    p.commit_transaction(20)
    described = tool(classpath, "org.apache.kafka.tools.TransactionsCommand", "--bootstrap-server", bs,
                     "describe", "--transactional-id", txn_id).stdout
    assert "CompleteCommit" in described, described


def test_verifiable_producer_and_consumer(classpath, tbroker):
    """The clients Kafka's system tests use: every acked record is consumed, in order, once."""
    bs = tbroker.bootstrap
    topic, group = unique("verifiable"), unique("verifiable-g")
    tool(classpath, "org.apache.kafka.tools.TopicCommand", "--bootstrap-server", bs, "--create",
         "--topic", topic, "--partitions", "2")
    out = tool(classpath, "org.apache.kafka.tools.VerifiableProducer", "--bootstrap-server", bs, "--topic", topic,
               "--max-messages", "1000", "--acks", "-1", "--producer.config", "/dev/null").stdout
    events = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    acked = [e for e in events if e["name"] == "producer_send_success"]
    assert len(acked) == 1000 and not [e for e in events if e["name"] == "producer_send_error"]
    shutdown = next(e for e in events if e["name"] == "shutdown_complete")
    assert shutdown is not None
    out = tool(classpath, "org.apache.kafka.tools.VerifiableConsumer", "--bootstrap-server", bs, "--topic", topic,
               "--group-id", group, "--max-messages", "1000", "--reset-policy", "earliest",
               "--consumer.config", "/dev/null", timeout=120).stdout
    events = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    consumed = [e for e in events if e["name"] == "records_consumed"]
    assert sum(e["count"] for e in consumed) == 1000
    commits = [e for e in events if e["name"] == "offsets_committed"]
    assert commits and all(e["success"] for e in commits), commits
    acked_by_partition = {}
    for e in acked:
        acked_by_partition.setdefault(e["partition"], []).append(e["offset"])
    for e in consumed:
        for p in e["partitions"]:
            assert p["minOffset"] <= p["maxOffset"]
    got = {}
    for e in consumed:
        for p in e["partitions"]:
            got.setdefault(p["partition"], 0)
            got[p["partition"]] += p["count"]
    assert got == {p: len(o) for p, o in acked_by_partition.items()}
