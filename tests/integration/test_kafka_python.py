"""kafka-python (pure Python, its own protocol code): produce, consume, admin."""
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewPartitions, NewTopic
from kafka.errors import TopicAlreadyExistsError, UnknownTopicOrPartitionError

from conftest import unique


def test_admin_produce_consume(broker):
    a = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    topic = unique("kp")
    a.create_topics([NewTopic(topic, 3, 1, topic_configs={"retention.ms": "3600000"})])
    with pytest.raises(TopicAlreadyExistsError):
        a.create_topics([NewTopic(topic, 3, 1)], raise_errors=True)
    configs = a.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all")
    assert configs["topic"][topic]["retention.ms"]["value"] == "3600000"

    p = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    futures = [p.send(topic, key=b"k%d" % (i % 7), value=b"v%d" % i) for i in range(600)]
    p.flush()
    meta = [f.get(10) for f in futures]
    per_partition = {}
    for m in meta:
        per_partition.setdefault(m.partition, []).append(m.offset)
    for offsets in per_partition.values():
        assert offsets == list(range(len(offsets)))

    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=3000)
    c.assign([TopicPartition(topic, i) for i in range(3)])
    c.seek_to_beginning()
    got = list(c)
    assert sorted(r.value for r in got) == sorted(b"v%d" % i for i in range(600))
    c.close()

    a.create_partitions({topic: NewPartitions(5)})
    a.delete_topics([topic])
    with pytest.raises(UnknownTopicOrPartitionError):
        a.delete_topics([topic], raise_errors=True)
    a.close()


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compressed_round_trip(broker, codec):
    topic = unique(f"kp-{codec}")
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, compression_type=codec, acks=1)
    for i in range(200):
        p.send(topic, value=b"%s-%d" % (codec.encode(), i))
    p.flush()
    c = KafkaConsumer(topic, bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=3000, group_id=None)
    values = [r.value for r in c]
    assert values == [b"%s-%d" % (codec.encode(), i) for i in range(200)]
