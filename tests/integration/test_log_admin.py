"""DeleteRecords and DescribeLogDirs with real admin clients."""
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

from conftest import unique


def produce(bootstrap, topic, n):
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "batch.num.messages": 10})
    for i in range(n):
        p.produce(topic, value=f"v{i}".encode(), partition=0)
        p.poll(0)
    assert p.flush(30) == 0


def offsets(a, topic):
    tp = TopicPartition(topic, 0)
    early = a.list_offsets({tp: OffsetSpec.earliest()})[tp].result(30).offset
    late = a.list_offsets({tp: OffsetSpec.latest()})[tp].result(30).offset
    return early, late


def test_delete_records_moves_the_log_start_and_survives_restart(broker):
    """Invariants 2 and 4: records below the new log start are gone for consumers, offsets
    do not change, and the log start offset never goes back, also across a restart."""
    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    topic = unique("delrec")
    a.create_topics([NewTopic(topic, 1, 1, config={"segment.bytes": "4096"})])[topic].result(30)
    produce(broker.bootstrap, topic, 300)
    tp = TopicPartition(topic, 0, 123)
    result = a.delete_records([tp])[tp].result(30)
    assert result.low_watermark == 123
    assert offsets(a, topic) == (123, 300)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique("g"),
                  "auto.offset.reset": "earliest", "enable.partition.eof": True})
    c.assign([TopicPartition(topic, 0, 0)])  # below the log start: reset to earliest
    first = None
    deadline = time.time() + 10
    while first is None and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            first = (m.offset(), m.value())
    c.close()
    assert first == (123, b"v123")
    # Past the high watermark: refused; earlier than the log start: no-op.
    with pytest.raises(KafkaException) as e:
        a.delete_records([TopicPartition(topic, 0, 1000)])[TopicPartition(topic, 0, 1000)].result(30)
    assert e.value.args[0].code() == KafkaError.OFFSET_OUT_OF_RANGE
    back = TopicPartition(topic, 0, 10)
    assert a.delete_records([back])[back].result(30).low_watermark == 123
    broker.stop()
    broker.start()
    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    assert offsets(a, topic) == (123, 300), "the log start offset survives a restart"
    # -1: up to the high watermark.
    end = TopicPartition(topic, 0, -1)
    assert a.delete_records([end])[end].result(30).low_watermark == 300
    # Deleting the topic and creating it again starts from 0.
    a.delete_topics([topic])[topic].result(30)
    a.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    produce(broker.bootstrap, topic, 5)
    broker.stop()
    broker.start()
    assert offsets(AdminClient({"bootstrap.servers": broker.bootstrap}), topic) == (0, 5)


def test_describe_log_dirs_reports_partition_sizes(broker):
    from kafka.admin import KafkaAdminClient
    topic = unique("dirs")
    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    a.create_topics([NewTopic(topic, 2, 1)])[topic].result(30)
    produce(broker.bootstrap, topic, 100)
    k = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    result = k.describe_log_dirs()
    k.close()
    text = repr(result)
    assert str(broker.data_dir) in text, text[:500]
    dirs = result[0]["log_dirs"] if isinstance(result, list) else result
    flat = repr(dirs)
    assert topic in flat
    # partition 0 holds the 100 records, partition 1 nothing
    sizes = {}
    for d in (result[0]["log_dirs"] if isinstance(result, list) else []):
        for t in d["topics"]:
            if t["name"] == topic:
                for p in t["partitions"]:
                    sizes[p["partition_index"]] = p["partition_size"]
    assert sizes and sizes[0] > 1000 and sizes[1] == 0, sizes
