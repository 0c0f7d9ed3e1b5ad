"""Live topic configuration with real clients: IncrementalAlterConfigs / AlterConfigs on
topics and on the broker (dynamic defaults), validated, persisted in the metadata log,
applied without a restart, and reported by DescribeConfigs with their source."""
import time

import pytest
from confluent_kafka import KafkaException, Producer, TopicPartition, Consumer
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   ConfigSource, NewTopic, OffsetSpec)

from conftest import Broker, unique

CONFIG = """
log_retention_check_interval_ms = 200
"""


@pytest.fixture
def cbroker(tmp_path):
    b = Broker(tmp_path / "data", config_text=CONFIG).start()
    yield b
    b.stop()
    assert "panicked" not in b.log_text(), b.log_text()[-3000:]


def admin(b):
    return AdminClient({"bootstrap.servers": b.bootstrap})


def incremental(a, kind, name, ops):
    entries = [ConfigEntry(k, v, incremental_operation=op) for k, op, v in ops]
    res = ConfigResource(kind, name, incremental_configs=entries)
    return a.incremental_alter_configs([res])[res].result(30)


def described(a, kind, name):
    res = ConfigResource(kind, name)
    return a.describe_configs([res])[res].result(30)


def earliest(a, topic):
    tp = TopicPartition(topic, 0)
    return a.list_offsets({tp: OffsetSpec.earliest()})[tp].result(30).offset


def test_retention_change_takes_effect_live_and_persists(cbroker):
    a = admin(cbroker)
    topic = unique("live")
    a.create_topics([NewTopic(topic, 1, 1, config={"segment.bytes": "2048"})])[topic].result(30)
    p = Producer({"bootstrap.servers": cbroker.bootstrap, "linger.ms": 0, "batch.num.messages": 5})
    for i in range(200):
        p.produce(topic, value=b"x" * 100, partition=0)
        p.poll(0)
    assert p.flush(30) == 0
    time.sleep(0.5)
    assert earliest(a, topic) == 0, "the default retention keeps everything"
    incremental(a, "topic", topic, [("retention.ms", AlterConfigOpType.SET, "1")])
    deadline = time.time() + 10
    while earliest(a, topic) == 0 and time.time() < deadline:
        time.sleep(0.2)
    assert earliest(a, topic) > 0, "retention.ms applied without a restart"
    c = described(a, "topic", topic)
    assert c["retention.ms"].value == "1"
    assert c["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert c["segment.bytes"].value == "2048"
    # Persisted: the same after a restart.
    cbroker.stop()
    cbroker.start()
    a = admin(cbroker)
    c = described(a, "topic", topic)
    assert c["retention.ms"].value == "1" and c["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    # DELETE goes back to the broker default.
    incremental(a, "topic", topic, [("retention.ms", AlterConfigOpType.DELETE, None)])
    c = described(a, "topic", topic)
    assert c["retention.ms"].value == "604800000"
    assert c["retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value


def test_invalid_values_are_refused_with_a_message_and_change_nothing(cbroker):
    a = admin(cbroker)
    topic = unique("invalid")
    a.create_topics([NewTopic(topic, 1, 1, config={"retention.ms": "5000"})])[topic].result(30)
    for key, value in [("retention.ms", "soon"), ("segment.bytes", "1"), ("no.such.config", "1"),
                       ("message.timestamp.type", "Whenever")]:
        with pytest.raises(KafkaException) as e:
            incremental(a, "topic", topic, [(key, AlterConfigOpType.SET, value)])
        err = e.value.args[0]
        assert err.name() == "INVALID_CONFIG", err
        assert key in err.str(), err.str()
    with pytest.raises(KafkaException) as e:
        incremental(a, "topic", topic, [("retention.ms", AlterConfigOpType.APPEND, "1")])
    assert e.value.args[0].name() == "INVALID_CONFIG"
    assert described(a, "topic", topic)["retention.ms"].value == "5000"
    with pytest.raises(KafkaException) as e:
        incremental(a, "topic", unique("missing"), [("retention.ms", AlterConfigOpType.SET, "1")])
    assert e.value.args[0].name() == "UNKNOWN_TOPIC_OR_PART"
    # validate_only checks without storing.
    res = ConfigResource("topic", topic, incremental_configs=[
        ConfigEntry("retention.ms", "7000", incremental_operation=AlterConfigOpType.SET)])
    a.incremental_alter_configs([res], validate_only=True)[res].result(30)
    assert described(a, "topic", topic)["retention.ms"].value == "5000"


def test_broker_dynamic_defaults_apply_to_topics_without_their_own(cbroker):
    a = admin(cbroker)
    plain, own = unique("plain"), unique("own")
    a.create_topics([NewTopic(plain, 1, 1), NewTopic(own, 1, 1, config={"retention.bytes": "999999"})])
    time.sleep(0.5)
    # The cluster-wide default is resource name "", which neither client library can send;
    # it is covered by the broker's own tests. This broker's dynamic config:
    incremental(a, "broker", "1", [("log.retention.bytes", AlterConfigOpType.SET, "123456789")])
    c = described(a, "topic", plain)["retention.bytes"]
    assert (c.value, c.source) == ("123456789", ConfigSource.DYNAMIC_BROKER_CONFIG.value)
    assert "log.retention.bytes" in c.synonyms  # (the client keys synonyms by name)
    assert described(a, "topic", own)["retention.bytes"].value == "999999"
    incremental(a, "broker", "1", [("log.retention.bytes", AlterConfigOpType.SET, "222222222")])
    b = described(a, "broker", "1")["log.retention.bytes"]
    assert (b.value, b.is_read_only) == ("222222222", False)
    with pytest.raises(KafkaException) as e:
        incremental(a, "broker", "1", [("node.id", AlterConfigOpType.SET, "7")])
    assert e.value.args[0].name() == "INVALID_CONFIG"
    # A topic created now starts with the dynamic default.
    later = unique("later")
    a.create_topics([NewTopic(later, 1, 1)])[later].result(30)
    assert described(a, "topic", later)["retention.bytes"].value == "222222222"


def test_alter_configs_replaces_the_whole_set(cbroker):
    """The older AlterConfigs (confluent-kafka's alter_configs sends it as is): keys not
    given go back to their defaults. kafka-python's alter_configs works too (it sends
    IncrementalAlterConfigs)."""
    a = admin(cbroker)
    topic = unique("alter")
    a.create_topics([NewTopic(topic, 1, 1, config={"retention.ms": "1000", "segment.ms": "60000"})])[topic].result(30)
    res = ConfigResource("topic", topic, set_config={"retention.ms": "2000"})
    a.alter_configs([res])[res].result(30)
    c = described(a, "topic", topic)
    assert c["retention.ms"].value == "2000"
    assert c["segment.ms"].source == ConfigSource.DEFAULT_CONFIG.value, "AlterConfigs replaces the whole set"

    from kafka.admin import ConfigResource as KConfigResource, ConfigResourceType, KafkaAdminClient
    k = KafkaAdminClient(bootstrap_servers=cbroker.bootstrap)
    k.alter_configs([KConfigResource(ConfigResourceType.TOPIC, topic, configs={"segment.ms": "70000"})])
    k.close()
    c = described(a, "topic", topic)
    assert (c["retention.ms"].value, c["segment.ms"].value) == ("2000", "70000")


def test_cli_alter_config_and_describe_show_effective_values_and_sources(cbroker):
    import subprocess
    from conftest import STRATA_BIN

    def strata(*args):
        r = subprocess.run([STRATA_BIN, *args, "--bootstrap", cbroker.bootstrap],
                           capture_output=True, text=True, timeout=30)
        return r.returncode, r.stdout + r.stderr

    topic = unique("cli-cfg")
    assert strata("topic", "create", topic)[0] == 0
    rc, out = strata("topic", "alter-config", topic, "--set", "retention.ms=86400000", "--set", "segment.ms=3600000")
    assert rc == 0, out
    # The cluster-wide default (resource ""), which Kafka's client libraries cannot send.
    rc, out = strata("topic", "alter-config", "--cluster-default", "--set", "log.retention.bytes=987654321")
    assert rc == 0, out
    rc, out = strata("topic", "describe", topic)
    assert rc == 0, out
    assert "retention.ms=86400000\t(topic)" in out, out
    assert "retention.bytes=987654321\t(cluster default, dynamic)" in out, out
    assert "max.message.bytes=1048588\t(default)" in out, out
    rc, out = strata("topic", "alter-config", topic, "--delete", "segment.ms")
    assert rc == 0, out
    assert "segment.ms=604800000\t(default)" in strata("topic", "describe", topic)[1]
    rc, out = strata("topic", "alter-config", topic, "--set", "retention.ms=never")
    assert rc != 0 and "retention.ms" in out, out
    rc, out = strata("topic", "alter-config", "--cluster-default", "--set", "node.id=4")
    assert rc != 0 and "node.id" in out, out
