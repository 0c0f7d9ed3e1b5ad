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


def test_transactions_commit_abort_and_fencing(broker):
    """kafka-python's own transaction and read_committed code (invariants 9 and 10):
    commit, abort, commit; read_committed sees only committed records, read_uncommitted all;
    a second producer with the same transactional.id fences the first."""
    from kafka.errors import KafkaError
    a = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    topic = unique("kp-txn")
    a.create_topics([NewTopic(topic, 2, 1)])
    a.close()
    txn_id = unique("kp-tx")
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id=txn_id)
    p.init_transactions()
    for tag, commit in (("c1", True), ("a", False), ("c2", True)):
        p.begin_transaction()
        for i in range(20):
            p.send(topic, value=f"{tag}-{i}".encode(), partition=i % 2)
        p.flush()
        if commit:
            p.commit_transaction()
        else:
            p.abort_transaction()

    def read(isolation):
        c = KafkaConsumer(bootstrap_servers=broker.bootstrap, isolation_level=isolation,
                          auto_offset_reset="earliest", consumer_timeout_ms=1500)
        c.assign([TopicPartition(topic, 0), TopicPartition(topic, 1)])
        c.seek_to_beginning()
        values = sorted(m.value.decode() for m in c)
        c.close()
        return values

    committed = sorted(f"{t}-{i}" for t in ("c1", "c2") for i in range(20))
    assert read("read_committed") == committed
    assert read("read_uncommitted") == sorted(committed + [f"a-{i}" for i in range(20)])

    p.begin_transaction()
    p.send(topic, value=b"zombie", partition=0)
    p.flush()
    newer = KafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id=txn_id)
    newer.init_transactions()
    with pytest.raises(KafkaError):
        p.commit_transaction()
    newer.close()
    assert read("read_committed") == committed, "the zombie's transaction was aborted"


def test_transaction_operator_apis(broker):
    """kafka-python's admin client (what `kafka-transactions.sh` does): ListTransactions,
    DescribeTransactions and DescribeProducers show an open transaction and where it holds
    the last stable offset; an operator's abort (WriteTxnMarkers) releases the partition."""
    from confluent_kafka import Producer
    from kafka.admin import AbortTransactionSpec
    a = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    topic = unique("kp-ops")
    a.create_topics([NewTopic(topic, 2, 1)])
    txn_id = unique("ops-tx")
    p = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": txn_id})
    p.init_transactions(30)
    p.begin_transaction()
    p.produce(topic, value=b"x", partition=1)
    assert p.flush(30) == 0
    listed = [t for ts in a.list_transactions().values() for t in ts if t.transactional_id == txn_id]
    assert [t.state.value for t in listed] == ["Ongoing"]
    described = a.describe_transactions([txn_id])[txn_id]
    assert described.topic_partitions == {TopicPartition(topic, 1)}
    assert described.transaction_start_time_ms > 0
    tp = TopicPartition(topic, 1)
    producer = a.describe_producers([tp])[tp].active_producers[0]
    assert producer.producer_id == described.producer_id
    assert producer.current_transaction_start_offset == 0

    a.abort_transaction(AbortTransactionSpec(tp, producer.producer_id, producer.producer_epoch))
    producer = a.describe_producers([tp])[tp].active_producers[0]
    assert producer.current_transaction_start_offset == -1
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, isolation_level="read_committed",
                      auto_offset_reset="earliest", consumer_timeout_ms=1500)
    c.assign([tp])
    c.seek_to_end()
    assert c.position(tp) == 2, "the last stable offset moved past the aborted record and its marker"
    c.close()
    a.close()
