"""Invariant 1 (no lost acknowledged write) and 3 (dense offsets) across kill -9: a
librdkafka producer with acks=all runs while the broker is killed and restarted; afterwards
every acknowledged record is readable at its acknowledged offset."""
import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import Broker, unique


def read_everything(bootstrap, topic, partitions):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "verify", "enable.auto.commit": False, "enable.partition.eof": True})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out, eof = {}, set()
    deadline = time.time() + 60
    while len(eof) < partitions and time.time() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            if m.error().code() == -191:  # _PARTITION_EOF
                eof.add(m.partition())
                continue
            raise AssertionError(m.error())
        eof.discard(m.partition())
        out[(m.partition(), m.offset())] = m.value()
    c.close()
    assert len(eof) == partitions, "did not reach the end of every partition"
    return out


def test_kill9_during_acks_all_loses_nothing_acknowledged(tmp_path):
    broker = Broker(tmp_path / "data").start()
    topic = unique("crash")
    partitions = 3
    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    a.create_topics([NewTopic(topic, partitions, 1)])[topic].result(10)

    acked = {}
    lock = threading.Lock()
    stop = threading.Event()

    def on_delivery(err, msg):
        if err is None:
            with lock:
                key = (msg.partition(), msg.offset())
                assert key not in acked, f"offset {key} acknowledged twice"
                acked[key] = msg.value()

    def produce():
        p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 1, "message.timeout.ms": 20000, "reconnect.backoff.max.ms": 200})
        i = 0
        while not stop.is_set():
            try:
                p.produce(topic, key=b"%d" % (i % 17), value=b"record-%08d" % i, on_delivery=on_delivery)
                i += 1
            except BufferError:
                pass
            p.poll(0.0005)
        p.flush(30)

    t = threading.Thread(target=produce)
    t.start()
    try:
        for round_ in range(3):
            time.sleep(1.0)
            before = len(acked)
            broker.kill9()
            assert before > 0, "producer made progress before the kill"
            time.sleep(0.3)
            broker.start()
        time.sleep(1.5)
    finally:
        stop.set()
        t.join(60)
    stored = read_everything(broker.bootstrap, topic, partitions)
    broker.stop()
    assert len(acked) > 1000
    missing = [k for k, v in acked.items() if stored.get(k) != v]
    assert not missing, f"{len(missing)} acknowledged records lost or moved, e.g. {missing[:5]}"
    for p in range(partitions):
        offsets = sorted(o for (pp, o) in stored if pp == p)
        assert offsets == list(range(len(offsets))), "offsets dense after recovery"
    log = broker.log_text()
    assert "panicked" not in log
