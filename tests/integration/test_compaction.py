"""Compacted topics with real clients: the latest value per key survives cleaning with its
original offset, tombstones delete keys after delete.retention.ms, keyless records are
refused, cleanup.policy changes live, and kill -9 during cleaning loses nothing."""
import random
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic

from conftest import Broker, free_port, unique

CLEANER_CONFIG = """
log_cleaner_backoff_ms = 100
"""

TOPIC_CONFIG = {
    "cleanup.policy": "compact",
    "segment.bytes": "16384",
    "min.cleanable.dirty.ratio": "0.01",
    "delete.retention.ms": "2000",
}


@pytest.fixture
def cbroker(tmp_path):
    http = free_port()
    b = Broker(tmp_path / "data", config_text=CLEANER_CONFIG,
               extra_args=["--http-listen", f"127.0.0.1:{http}"]).start()
    b.http = f"http://127.0.0.1:{http}"
    yield b
    b.stop()
    assert "panicked" not in b.log_text(), b.log_text()[-3000:]


def create(bootstrap, name, config, partitions=1):
    a = AdminClient({"bootstrap.servers": bootstrap})
    a.create_topics([NewTopic(name, partitions, 1, config=config)])[name].result(30)


def produce(bootstrap, topic, records):
    """records: (key, value or None); returns {offset: (key, value)} as acknowledged."""
    acked = {}

    def on_delivery(err, msg):
        assert err is None, err
        acked[msg.offset()] = (msg.key().decode(), None if msg.value() is None else msg.value().decode())

    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True,
                  "batch.size": 8000})
    for k, v in records:
        p.produce(topic, key=k.encode(), value=None if v is None else v.encode(), partition=0,
                  on_delivery=on_delivery)
        p.poll(0)
    assert p.flush(60) == 0
    return acked


def read_all(bootstrap, topic):
    """{offset: (key, value)} of everything in partition 0."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("r"), "enable.auto.commit": False,
                  "enable.partition.eof": True})
    c.assign([TopicPartition(topic, 0, 0)])
    out = {}
    deadline = time.time() + 30
    while time.time() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                break
            raise AssertionError(m.error())
        out[m.offset()] = (m.key().decode(), None if m.value() is None else m.value().decode())
    c.close()
    return out


def latest(written):
    """key -> (offset, value) of the last write of each key."""
    out = {}
    for offset in sorted(written):
        k, v = written[offset]
        out[k] = (offset, v)
    return out


def compacted_as_expected(stored, written, tombstones_gone):
    """Everything stored is what was written at that offset; each key's latest is there;
    nothing older is, except in the active segment (the tail the cleaner never touches)."""
    for offset, kv in stored.items():
        if written.get(offset) != kv:
            return False, f"offset {offset} holds {kv}, written {written.get(offset)}"
    last = latest(written)
    for k, (offset, v) in last.items():
        if v is None and tombstones_gone:
            if offset in stored and not k.startswith("f-"):
                return False, f"tombstone of {k} still there"
        elif offset not in stored:
            return False, f"latest of {k} at {offset} lost"
    stale = [o for o, (k, _) in stored.items() if last[k][0] != o and not k.startswith("f-")]
    if stale:
        return False, f"{len(stale)} superseded records still stored, e.g. offset {stale[0]}"
    return True, ""


def wait_compacted(bootstrap, topic, written, tombstones_gone, timeout=40):
    deadline = time.time() + timeout
    why = ""
    while time.time() < deadline:
        ok, why = compacted_as_expected(read_all(bootstrap, topic), written, tombstones_gone)
        if ok:
            return
        time.sleep(0.5)
    raise AssertionError(f"not compacted in {timeout}s: {why}")


def filler(n, tag):
    return [(f"f-{tag}-{i}", "x" * 100) for i in range(n)]


def test_latest_value_per_key_with_tombstones_and_offsets_kept(cbroker):
    """Issue 6's first done-when: 20 rounds of values for 200 keys plus tombstones."""
    topic = unique("compact")
    create(cbroker.bootstrap, topic, TOPIC_CONFIG)
    records = [(f"k{k}", f"v{r}-{k}") for r in range(20) for k in range(200)]
    records += [(f"k{k}", None) for k in range(0, 200, 10)]  # tombstones for 20 keys
    written = produce(cbroker.bootstrap, topic, records)
    written.update(produce(cbroker.bootstrap, topic, filler(300, "a")))  # roll past them
    wait_compacted(cbroker.bootstrap, topic, written, tombstones_gone=False)
    stored = read_all(cbroker.bootstrap, topic)
    live = {k for o, (k, v) in stored.items() if v is not None and k.startswith("k")}
    assert len(live) == 180
    # After delete.retention.ms, the next cleaning drops the tombstones.
    time.sleep(2.5)
    written.update(produce(cbroker.bootstrap, topic, filler(300, "b")))
    wait_compacted(cbroker.bootstrap, topic, written, tombstones_gone=True)
    assert "log cleaned" in cbroker.log_text()
    # The cleaner's progress in the metrics (Prometheus' parser reads them).
    from prometheus_client.parser import text_string_to_metric_families
    import requests
    samples = {s.name: s.value for f in text_string_to_metric_families(
        requests.get(cbroker.http + "/metrics", timeout=10).text) for s in f.samples if not s.labels}
    assert samples["kafka_log_logcleaner_passes_total"] >= 2, samples
    assert samples["kafka_log_logcleaner_records_removed_total"] >= 19 * 200, samples
    assert samples["kafka_log_logcleaner_read_bytes_total"] > samples["kafka_log_logcleaner_written_bytes_total"]
    assert 0 <= samples["kafka_log_logcleaner_cleaner_recopy_percent"] <= 100, samples
    assert samples["kafka_log_logcleaner_last_run_timestamp_seconds"] > time.time() - 120


def test_keyless_records_are_refused_on_a_compacted_topic(cbroker):
    topic = unique("keyless")
    create(cbroker.bootstrap, topic, TOPIC_CONFIG)
    errors = []
    p = Producer({"bootstrap.servers": cbroker.bootstrap, "linger.ms": 0})
    p.produce(topic, value=b"no key", partition=0, on_delivery=lambda e, m: errors.append(e))
    p.flush(30)
    assert errors and errors[0] is not None and errors[0].code() == KafkaError.INVALID_RECORD, errors
    assert "without key" in cbroker.log_text()


def test_cleanup_policy_changes_live(cbroker):
    """Issue 6's third done-when for cleanup.policy: delete -> compact on a live topic."""
    topic = unique("to-compact")
    create(cbroker.bootstrap, topic, {"segment.bytes": "16384", "min.cleanable.dirty.ratio": "0.01"})
    written = produce(cbroker.bootstrap, topic, [(f"k{k % 50}", f"v{k}") for k in range(2000)])
    written.update(produce(cbroker.bootstrap, topic, filler(200, "a")))
    time.sleep(1)
    assert len(read_all(cbroker.bootstrap, topic)) == len(written), "delete policy: nothing compacted"
    a = AdminClient({"bootstrap.servers": cbroker.bootstrap})
    res = ConfigResource("topic", topic, incremental_configs=[
        ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.SET)])
    a.incremental_alter_configs([res])[res].result(30)
    wait_compacted(cbroker.bootstrap, topic, written, tombstones_gone=False)
    d = ConfigResource("topic", topic)
    c = a.describe_configs([d])[d].result(30)["cleanup.policy"]
    assert (c.value, c.source) == ("compact", 1)


def test_kill9_during_cleaning_never_loses_a_latest_value(tmp_path):
    """Issue 6's second done-when: the cleaner is throttled so passes take a while, and the
    broker is SIGKILLed at random moments while it cleans; each restart recovers, and in the
    end every key's latest value is there exactly once at its offset."""
    config = CLEANER_CONFIG + "log_cleaner_io_max_bytes_per_second = 400000.0\n"
    broker = Broker(tmp_path / "data", config_text=config).start()
    topic = unique("crash-compact")
    create(broker.bootstrap, topic, TOPIC_CONFIG)
    records = [(f"k{k}", f"v{r}-{k}-" + "y" * 200) for r in range(10) for k in range(300)]
    written = produce(broker.bootstrap, topic, records)
    written.update(produce(broker.bootstrap, topic, filler(200, "a")))
    rng = random.Random(6)
    pass_dirs = [tmp_path / "data" / f"{topic}-0" / d for d in ("cleaning", "cleaned")]
    kills = 0
    for i in range(4):
        if i % 2 == 0:
            # Every other kill lands while a pass is visibly under way (its work directory
            # exists), however slow the machine; the others land at random moments.
            deadline = time.time() + 30
            while not any(d.exists() for d in pass_dirs):
                assert time.time() < deadline, "no cleaning pass started in 30 s"
                time.sleep(0.005)
            time.sleep(rng.uniform(0, 0.05))
        else:
            time.sleep(rng.uniform(0.3, 1.5))
        broker.kill9()
        kills += 1
        broker.start()
        stored = read_all(broker.bootstrap, topic)
        # At any moment: only written records at their offsets, every latest value there.
        for offset, kv in stored.items():
            assert written[offset] == kv, f"offset {offset}: {kv} != {written[offset]}"
        for k, (offset, v) in latest(written).items():
            assert offset in stored, f"latest of {k} lost after kill {kills}"
    broker.stop()
    broker.config_text = CLEANER_CONFIG
    broker.start()
    try:
        wait_compacted(broker.bootstrap, topic, written, tombstones_gone=False, timeout=60)
        assert "log cleaned" in broker.log_text()
        log = broker.log_text()
        assert "unfinished cleaning pass" in log or "interrupted swap" in log, "no kill landed during a pass"
    finally:
        broker.stop()
    assert "panicked" not in broker.log_text()


def test_compacted_internal_topics_keep_group_and_transaction_state(tmp_path):
    """`__consumer_offsets` and `__transaction_state` are compacted like any topic: after
    thousands of plain and transactional commits (some aborted) are cleaned away, a kill -9
    and restart replay exactly the last committed offsets and the transactional id's state."""
    config = CLEANER_CONFIG + """
offsets_topic_num_partitions = 1
offsets_topic_segment_bytes = 16384
transaction_state_log_num_partitions = 1
transaction_state_log_segment_bytes = 16384
"""
    broker = Broker(tmp_path / "data", config_text=config).start()
    try:
        topic, group = unique("src"), unique("g")
        create(broker.bootstrap, topic, {}, partitions=3)
        produce_plain = Producer({"bootstrap.servers": broker.bootstrap})
        for i in range(4000):
            produce_plain.produce(topic, value=b"x", partition=i % 3)
        assert produce_plain.flush(30) == 0
        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                      "enable.auto.commit": False})
        for i in range(1, 1001):
            c.commit(offsets=[TopicPartition(topic, p, i) for p in range(3)], asynchronous=False)
        p = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": unique("tx")})
        p.init_transactions(30)
        for i in range(1001, 1201):
            p.begin_transaction()
            p.send_offsets_to_transaction([TopicPartition(topic, 0, i)], c.consumer_group_metadata(), 30)
            if i % 7 == 0:
                p.abort_transaction(30)
            else:
                p.commit_transaction(30)
        c.close()
        deadline = time.time() + 30
        text = ""
        while time.time() < deadline:
            text = broker.log_text()
            if "topic=__consumer_offsets" in text and "topic=__transaction_state" in text:
                break
            time.sleep(0.3)
        assert "log cleaned topic=__consumer_offsets" in text.replace('"', ""), "offsets never cleaned"
        assert "log cleaned topic=__transaction_state" in text.replace('"', ""), "transaction state never cleaned"
        broker.kill9()
        broker.start()
        check = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
        committed = check.committed([TopicPartition(topic, q) for q in range(3)], 30)
        check.close()
        assert [tp.offset for tp in committed] == [1200, 1000, 1000]
    finally:
        broker.stop()
    assert "panicked" not in broker.log_text()
