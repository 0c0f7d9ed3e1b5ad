"""librdkafka through confluent-kafka (PyPI): produce, consume, admin, configs, offsets."""
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, NewTopic

from conftest import unique


def admin(b):
    return AdminClient({"bootstrap.servers": b.bootstrap})


def create(b, name, partitions=1, config=None):
    a = admin(b)  # keep the client alive until the future resolves
    fs = a.create_topics([NewTopic(name, partitions, 1, config=config or {})])
    fs[name].result(15)


def produce_all(b, topic, records, **conf):
    """Produces (key, value) records; returns delivery reports (partition, offset, key, value)."""
    p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 5, **conf})
    acked, errors = [], []

    def report(err, msg):
        if err:
            errors.append(err)
        else:
            acked.append((msg.partition(), msg.offset(), msg.key(), msg.value()))

    for k, v in records:
        while True:
            try:
                p.produce(topic, key=k, value=v, on_delivery=report)
                break
            except BufferError:
                p.poll(0.1)
    assert p.flush(30) == 0
    return acked, errors


def consume_all(b, topic, partitions, expected, timeout=20, **conf):
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "unused", "enable.auto.commit": False, **conf})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out = []
    deadline = time.time() + timeout
    while len(out) < expected and time.time() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        assert not m.error(), m.error()
        out.append((m.partition(), m.offset(), m.key(), m.value(), m.timestamp()))
    c.close()
    return out


@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_keyed_produce_consume_dense_offsets_and_key_order(broker, acks):
    topic = unique(f"keyed-acks{acks}")
    create(broker, topic, partitions=4)
    records = [(f"key-{i % 13}".encode(), f"value-{i}".encode()) for i in range(2000)]
    acked, errors = produce_all(broker, topic, records, acks=acks)
    assert not errors
    assert len(acked) == len(records)
    got = consume_all(broker, topic, 4, len(records))
    assert len(got) == len(records)
    assert sorted((k, v) for _, _, k, v, _ in got) == sorted(records)
    by_partition = {}
    for p, o, k, v, _ in got:
        by_partition.setdefault(p, []).append((o, k, v))
    key_partition = {}
    for p, recs in by_partition.items():
        assert [o for o, _, _ in recs] == list(range(len(recs))), "dense offsets from 0 in each partition"
        for _, k, _ in recs:
            assert key_partition.setdefault(k, p) == p, "a key always maps to one partition"
    for k in {k for k, _ in records}:
        sent = [v for kk, v in records if kk == k]
        seen = [v for _, _, kk, v, _ in sorted(got, key=lambda r: (r[0], r[1])) if kk == k]
        assert seen == sent, "per-key order kept"
    if acks != "0":
        assert sorted((p, o) for p, o, _, _ in acked) == sorted((p, o) for p, o, _, _, _ in got), "acknowledged offsets are where the records are"


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_every_compression_codec(broker, codec):
    topic = unique(codec)
    create(broker, topic, partitions=2)
    records = [(None, (f"{codec}-{i}-" + "x" * (i % 300)).encode()) for i in range(1500)]
    acked, errors = produce_all(broker, topic, records, **{"compression.type": codec, "acks": "all"})
    assert not errors and len(acked) == len(records)
    got = consume_all(broker, topic, 2, len(records))
    assert sorted(v for _, _, _, v, _ in got) == sorted(v for _, v in records)


def test_idempotent_producer_starts_and_writes(broker):
    topic = unique("idem")
    create(broker, topic)
    acked, errors = produce_all(broker, topic, [(b"k", b"v%d" % i) for i in range(100)], **{"enable.idempotence": True})
    assert not errors and [o for _, o, _, _ in acked] == list(range(100))


def test_large_messages_near_and_over_max_message_bytes(broker):
    big = unique("big")
    create(broker, big, config={"max.message.bytes": "2000000"})
    value = b"m" * 1_500_000
    acked, errors = produce_all(broker, big, [(b"k", value)], **{"message.max.bytes": 3_000_000, "compression.type": "none"})
    assert not errors and len(acked) == 1
    got = consume_all(broker, big, 1, 1, **{"fetch.max.bytes": 1_000_000, "max.partition.fetch.bytes": 100_000})
    assert got[0][3] == value, "a batch larger than the fetch limits is still returned whole (KIP-74)"

    small = unique("small")
    create(broker, small)  # default max.message.bytes 1048588
    acked, errors = produce_all(broker, small, [(b"k", value)], **{"message.max.bytes": 3_000_000, "compression.type": "none", "retries": 0})
    assert not acked
    assert errors and errors[0].code() == KafkaError.MSG_SIZE_TOO_LARGE, errors
    acked, errors = produce_all(broker, small, [(b"k", b"fine")])
    assert not errors and acked[0][1] == 0, "the refused batch stored nothing"


def test_admin_create_delete_grow_and_errors(broker):
    a = admin(broker)
    name = unique("adm")
    a.create_topics([NewTopic(name, 2, 1)])[name].result(10)
    with pytest.raises(KafkaException) as e:
        a.create_topics([NewTopic(name, 2, 1)])[name].result(10)
    assert e.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS
    with pytest.raises(KafkaException) as e:
        a.create_topics([NewTopic("bad/name", 1, 1)])["bad/name"].result(10)
    assert e.value.args[0].code() == KafkaError.TOPIC_EXCEPTION
    rf = unique("rf")
    with pytest.raises(KafkaException) as e:
        a.create_topics([NewTopic(rf, 1, 3)])[rf].result(10)
    assert e.value.args[0].code() == KafkaError.INVALID_REPLICATION_FACTOR
    cfg = unique("cfg")
    with pytest.raises(KafkaException) as e:
        a.create_topics([NewTopic(cfg, 1, 1, config={"retention.ms": "soon"})])[cfg].result(10)
    assert e.value.args[0].code() == KafkaError.INVALID_CONFIG
    validate = unique("validate")
    a.create_topics([NewTopic(validate, 1, 1)], validate_only=True)[validate].result(10)
    assert validate not in a.list_topics(timeout=10).topics

    a.create_partitions([NewPartitions(name, 5)])[name].result(10)
    md = a.list_topics(name, timeout=10)
    assert len(md.topics[name].partitions) == 5
    with pytest.raises(KafkaException) as e:
        a.create_partitions([NewPartitions(name, 3)])[name].result(10)
    assert e.value.args[0].code() == KafkaError.INVALID_PARTITIONS
    acked, errors = produce_all(broker, name, [(None, b"to-new-partition")], **{"partitioner": "random"})
    assert not errors

    a.delete_topics([name])[name].result(10)
    assert name not in a.list_topics(timeout=10).topics
    with pytest.raises(KafkaException) as e:
        a.delete_topics([name])[name].result(10)
    assert e.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    # the name can be used again, and starts empty
    a.create_topics([NewTopic(name, 1, 1)])[name].result(10)
    acked, _ = produce_all(broker, name, [(None, b"again")])
    assert acked[0][1] == 0


def test_describe_configs_reports_values_and_sources(broker):
    name = unique("cfg")
    create(broker, name, config={"retention.ms": "123456", "message.timestamp.type": "LogAppendTime"})
    a = admin(broker)
    res = a.describe_configs([ConfigResource("topic", name)])
    configs = list(res.values())[0].result(10)
    assert configs["retention.ms"].value == "123456"
    assert configs["retention.ms"].source == 1  # DYNAMIC_TOPIC_CONFIG
    assert configs["segment.bytes"].source == 5  # DEFAULT_CONFIG
    assert configs["message.timestamp.type"].value == "LogAppendTime"


def test_log_append_time_and_offsets_for_times(broker):
    name = unique("lat")
    create(broker, name, config={"message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    produce_all(broker, name, [(None, b"a")], **{"acks": "all"})
    got = consume_all(broker, name, 1, 1)
    ts_type, ts = got[0][4]
    assert ts_type == 2 and before - 1000 <= ts <= int(time.time() * 1000) + 1000  # TIMESTAMP_LOG_APPEND_TIME

    name = unique("times")
    create(broker, name)
    p = Producer({"bootstrap.servers": broker.bootstrap})
    base = 1_700_000_000_000
    for i in range(10):
        p.produce(name, value=b"t%d" % i, timestamp=base + i * 1000)
        p.flush(10)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "unused"})
    q = lambda ts: c.offsets_for_times([TopicPartition(name, 0, ts)], 10)[0].offset
    assert q(0) == 0
    assert q(base + 3500) == 4
    assert q(base + 9000) == 9
    assert q(base + 99_000) == -1, "no record at or after the time: end offset -1"
    low, high = c.get_watermark_offsets(TopicPartition(name, 0), timeout=10)
    assert (low, high) == (0, 10)
    c.close()


def test_auto_create_on_metadata(broker):
    name = unique("auto")
    acked, errors = produce_all(broker, name, [(None, b"x")])
    assert not errors and acked[0][1] == 0
    assert name in admin(broker).list_topics(timeout=10).topics
