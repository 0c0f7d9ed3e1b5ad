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


def test_idempotent_producer_across_kill9_stores_every_record_once_in_order(tmp_path):
    """Issue 5's done-when for idempotence (invariants 7 and 8): an idempotent librdkafka
    producer keeps retrying while the broker is killed (SIGKILL) and restarted; every
    acknowledged record is stored exactly once, and each partition holds the producer's
    records in the order it sent them."""
    broker = Broker(tmp_path / "data").start()
    topic = unique("idem")
    partitions = 3
    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    a.create_topics([NewTopic(topic, partitions, 1)])[topic].result(10)

    acked = {}
    lock = threading.Lock()
    stop = threading.Event()
    errors = []

    def on_delivery(err, msg):
        with lock:
            if err is None:
                acked[msg.value()] = (msg.partition(), msg.offset())
            else:
                errors.append(str(err))

    def produce():
        p = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True,
                      "linger.ms": 2, "message.timeout.ms": 60000, "reconnect.backoff.max.ms": 200,
                      "max.in.flight.requests.per.connection": 5})
        i = 0
        while not stop.is_set():
            try:
                p.produce(topic, partition=i % partitions, value=b"%010d" % i, on_delivery=on_delivery)
                i += 1
            except BufferError:
                p.poll(0.01)
            p.poll(0)
        assert p.flush(60) == 0

    t = threading.Thread(target=produce)
    t.start()
    try:
        for _ in range(3):
            time.sleep(1.0)
            broker.kill9()
            time.sleep(0.3)
            broker.start()
        time.sleep(2)
    finally:
        stop.set()
        t.join(90)
    stored = read_everything(broker.bootstrap, topic, partitions)
    broker.stop()
    assert not errors, errors[:5]
    assert len(acked) > 1000
    values = list(stored.values())
    dupes = len(values) - len(set(values))
    assert dupes == 0, f"{dupes} records stored twice"
    missing = [v for v, where in acked.items() if stored.get(where) != v]
    assert not missing, f"{len(missing)} acknowledged records lost or moved"
    for p in range(partitions):
        seq = [int(stored[k]) for k in sorted(k for k in stored if k[0] == p)]
        assert seq == sorted(seq), f"partition {p} out of order"
