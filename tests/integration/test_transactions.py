"""Transactions with a real client (librdkafka through confluent-kafka's transactional API):
commit / abort, read_committed versus read_uncommitted, consume-transform-produce with
send_offsets_to_transaction, zombie fencing, a coordinator killed mid-transaction, timeouts."""
import json
import pathlib
import subprocess
import threading
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import Broker, STRATA_BIN, unique

TXN_CONFIG = """
group_initial_rebalance_delay_ms = 0
transaction_abort_timed_out_transaction_cleanup_interval_ms = 200
transaction_state_log_num_partitions = 5
offsets_topic_num_partitions = 5
"""


@pytest.fixture
def tbroker(tmp_path):
    b = Broker(tmp_path / "data", config_text=TXN_CONFIG).start()
    yield b
    b.stop()
    assert "panicked" not in b.log_text(), b.log_text()[-3000:]


def create_topic(bootstrap, name, partitions):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(30)


def txn_producer(bootstrap, txn_id, **extra):
    conf = {"bootstrap.servers": bootstrap, "transactional.id": txn_id, "linger.ms": 5}
    conf.update(extra)
    return Producer(conf)


def read_all(bootstrap, topic, partitions, isolation, timeout=30):
    """Every record up to the end (read_committed: up to the last stable offset)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("reader"),
                  "isolation.level": isolation, "enable.auto.commit": False,
                  "enable.partition.eof": True})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out, eof = [], set()
    deadline = time.time() + timeout
    while len(eof) < partitions and time.time() < deadline:
        m = c.poll(0.2)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                eof.add(m.partition())
                continue
            raise AssertionError(m.error())
        eof.discard(m.partition())
        out.append(m.value().decode())
    c.close()
    assert len(eof) == partitions, "did not reach the end of every partition"
    return out


def produce_txn(p, topic, values, partitions, commit=True):
    p.begin_transaction()
    for i, v in enumerate(values):
        p.produce(topic, value=v.encode(), partition=i % partitions)
    # Sent and stored before the transaction ends (abort would otherwise purge them unsent).
    assert p.flush(30) == 0
    if commit:
        p.commit_transaction(30)
    else:
        p.abort_transaction(30)


def test_commit_abort_commit_read_committed_and_uncommitted(tbroker):
    """Issue 5's first done-when; invariant 10 (no aborted or uncommitted read under
    read_committed)."""
    topic = unique("txn")
    create_topic(tbroker.bootstrap, topic, 3)
    p = txn_producer(tbroker.bootstrap, unique("tx"))
    p.init_transactions(30)
    first = [f"c1-{i}" for i in range(50)]
    aborted = [f"a-{i}" for i in range(50)]
    second = [f"c2-{i}" for i in range(50)]
    produce_txn(p, topic, first, 3)
    produce_txn(p, topic, aborted, 3, commit=False)
    produce_txn(p, topic, second, 3)
    committed = read_all(tbroker.bootstrap, topic, 3, "read_committed")
    assert sorted(committed) == sorted(first + second), "read_committed sees exactly the committed records"
    everything = read_all(tbroker.bootstrap, topic, 3, "read_uncommitted")
    assert sorted(everything) == sorted(first + aborted + second)
    # Markers take offsets but are never delivered; per partition, order is kept.
    c2 = [v for v in committed if v.startswith("c2-")]
    assert len(c2) == 50


def test_open_transaction_is_invisible_to_read_committed_until_commit(tbroker):
    """Invariant 10: the last stable offset holds read_committed consumers back; a
    non-transactional record written after the open transaction waits behind it too."""
    topic = unique("lso")
    create_topic(tbroker.bootstrap, topic, 1)
    p = txn_producer(tbroker.bootstrap, unique("tx"))
    p.init_transactions(30)
    p.begin_transaction()
    for i in range(10):
        p.produce(topic, value=f"t-{i}".encode(), partition=0)
    assert p.flush(30) == 0
    plain = Producer({"bootstrap.servers": tbroker.bootstrap})
    plain.produce(topic, value=b"plain", partition=0)
    assert plain.flush(30) == 0
    assert read_all(tbroker.bootstrap, topic, 1, "read_committed") == []
    assert len(read_all(tbroker.bootstrap, topic, 1, "read_uncommitted")) == 11
    p.commit_transaction(30)
    assert sorted(read_all(tbroker.bootstrap, topic, 1, "read_committed")) == sorted(
        [f"t-{i}" for i in range(10)] + ["plain"])


def test_consume_transform_produce_with_an_aborted_attempt_is_exactly_once(tbroker):
    """Issue 5's second done-when; invariant 11 (records and offset commits of a transaction
    become visible together or not at all): every input appears once in the output, and the
    group's committed offsets end at the input's end, though one transaction was aborted and
    its batch retried."""
    src, dst, group = unique("in"), unique("out"), unique("ctp")
    create_topic(tbroker.bootstrap, src, 2)
    create_topic(tbroker.bootstrap, dst, 2)
    n = 300
    feed = Producer({"bootstrap.servers": tbroker.bootstrap})
    for i in range(n):
        feed.produce(src, value=str(i).encode(), partition=i % 2)
    assert feed.flush(30) == 0

    c = Consumer({"bootstrap.servers": tbroker.bootstrap, "group.id": group,
                  "isolation.level": "read_committed", "enable.auto.commit": False,
                  "auto.offset.reset": "earliest", "session.timeout.ms": 6000})
    c.subscribe([src])
    p = txn_producer(tbroker.bootstrap, unique("ctp-tx"))
    p.init_transactions(30)
    done, aborted_once = 0, False
    deadline = time.time() + 60
    while done < n and time.time() < deadline:
        msgs = c.consume(50, 1.0)
        msgs = [m for m in msgs if not m.error()]
        if not msgs:
            continue
        p.begin_transaction()
        for m in msgs:
            p.produce(dst, value=b"out-" + m.value(), partition=m.partition())
        p.send_offsets_to_transaction(c.position(c.assignment()), c.consumer_group_metadata(), 30)
        if not aborted_once and done > 100:
            # Abort this batch and rewind: its outputs and its offsets must both vanish.
            assert p.flush(30) == 0
            p.abort_transaction(30)
            aborted_once = True
            committed = c.committed(c.assignment(), 30)
            for tp in committed:
                c.seek(TopicPartition(tp.topic, tp.partition, max(tp.offset, 0)))
            continue
        p.commit_transaction(30)
        done += len(msgs)
    assert aborted_once
    assert done == n
    c.close()
    out = read_all(tbroker.bootstrap, dst, 2, "read_committed")
    assert sorted(out) == sorted(f"out-{i}" for i in range(n)), "each input exactly once"
    assert len(read_all(tbroker.bootstrap, dst, 2, "read_uncommitted")) > n, "the aborted batch is stored"
    check = Consumer({"bootstrap.servers": tbroker.bootstrap, "group.id": group})
    ends = check.committed([TopicPartition(src, 0), TopicPartition(src, 1)], 30)
    check.close()
    assert sorted(tp.offset for tp in ends) == [n // 2, n // 2], "offsets end at the input's end"


def test_second_producer_fences_the_first_and_aborts_its_transaction(tbroker):
    """Issue 5's fourth done-when; invariant 9 (fencing)."""
    topic = unique("fence")
    create_topic(tbroker.bootstrap, topic, 1)
    txn_id = unique("zombie")
    old = txn_producer(tbroker.bootstrap, txn_id)
    old.init_transactions(30)
    old.begin_transaction()
    for i in range(20):
        old.produce(topic, value=f"zombie-{i}".encode(), partition=0)
    assert old.flush(30) == 0
    new = txn_producer(tbroker.bootstrap, txn_id)
    new.init_transactions(30)
    with pytest.raises(KafkaException) as fenced:
        old.commit_transaction(30)
    err = fenced.value.args[0]
    assert err.fatal(), err
    assert err.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH), err
    # The zombie's transaction was aborted: read_committed is not held back by it and
    # never sees its records; the new instance works.
    produce_txn(new, topic, ["fresh"], 1)
    assert read_all(tbroker.bootstrap, topic, 1, "read_committed") == ["fresh"]
    assert len(read_all(tbroker.bootstrap, topic, 1, "read_uncommitted")) == 21


def test_transaction_timeout_aborts_and_fences(tbroker):
    """Invariant 14: the last stable offset is not stuck behind an abandoned transaction
    longer than its timeout; the producer that let it time out is fenced (invariant 9)."""
    topic = unique("timeout")
    create_topic(tbroker.bootstrap, topic, 1)
    p = txn_producer(tbroker.bootstrap, unique("slow"), **{"transaction.timeout.ms": 1500})
    p.init_transactions(30)
    p.begin_transaction()
    p.produce(topic, value=b"late", partition=0)
    assert p.flush(30) == 0
    time.sleep(3)
    # Aborted by the coordinator: the LSO moved past it.
    other = txn_producer(tbroker.bootstrap, unique("other"))
    other.init_transactions(30)
    produce_txn(other, topic, ["on-time"], 1)
    assert read_all(tbroker.bootstrap, topic, 1, "read_committed") == ["on-time"]
    with pytest.raises(KafkaException):
        p.commit_transaction(30)


FAKETIME_LIB = next(iter(sorted(pathlib.Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))), None)


@pytest.mark.skipif(FAKETIME_LIB is None, reason="needs Debian's libfaketime (scripts/test installs it)")
def test_a_wall_clock_step_on_the_coordinator_does_not_time_out_a_transaction(tmp_path):
    """Found by scripts/chaos (bench/CHAOS.md, finding 4): a wall-clock jump on the
    coordinator's node made its sweep see an open transaction as hours old and abort it,
    fencing a healthy producer (Kafka does this too). Timeouts run on the monotonic clock."""
    clock = tmp_path / "faketime"
    clock.write_text("+0\n")
    env = {"LD_PRELOAD": str(FAKETIME_LIB), "FAKETIME_TIMESTAMP_FILE": str(clock),
           "FAKETIME_CACHE_DURATION": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    b = Broker(tmp_path / "data", config_text=TXN_CONFIG, env=env).start()
    try:
        topic = unique("clockstep")
        create_topic(b.bootstrap, topic, 1)
        p = txn_producer(b.bootstrap, unique("steady"), **{"transaction.timeout.ms": 20000})
        p.init_transactions(30)
        p.begin_transaction()
        p.produce(topic, value=b"kept", partition=0)
        assert p.flush(30) == 0
        clock.write_text("+7200\n")  # two hours ahead; libfaketime re-reads it every second
        time.sleep(3)
        p.commit_transaction(30)
        assert read_all(b.bootstrap, topic, 1, "read_committed") == ["kept"]
    finally:
        b.stop()


def test_coordinator_killed_mid_transaction_then_commit(tbroker):
    """Invariants 1 and 11: kill -9 with a transaction open (its partitions and offsets recorded in
    __transaction_state): after restart the producer commits it and read_committed sees it
    exactly once."""
    topic = unique("restart")
    create_topic(tbroker.bootstrap, topic, 2)
    p = txn_producer(tbroker.bootstrap, unique("tx"), **{"message.timeout.ms": 30000})
    p.init_transactions(30)
    produce_txn(p, topic, [f"before-{i}" for i in range(20)], 2)
    p.begin_transaction()
    for i in range(20):
        p.produce(topic, value=f"during-{i}".encode(), partition=i % 2)
    assert p.flush(30) == 0
    tbroker.kill9()
    tbroker.start()
    p.commit_transaction(60)
    produce_txn(p, topic, [f"after-{i}" for i in range(20)], 2)
    got = read_all(tbroker.bootstrap, topic, 2, "read_committed")
    expected = [f"{w}-{i}" for w in ("before", "during", "after") for i in range(20)]
    assert sorted(got) == sorted(expected)


def test_coordinator_killed_after_abort_restart_keeps_it_aborted(tbroker):
    """An aborted transaction stays aborted across kill -9 (markers and the aborted
    transaction list are rebuilt from the log)."""
    topic = unique("abort-restart")
    create_topic(tbroker.bootstrap, topic, 1)
    p = txn_producer(tbroker.bootstrap, unique("tx"))
    p.init_transactions(30)
    produce_txn(p, topic, ["a1", "a2"], 1, commit=False)
    produce_txn(p, topic, ["c1"], 1)
    tbroker.kill9()
    tbroker.start()
    assert read_all(tbroker.bootstrap, topic, 1, "read_committed") == ["c1"]
    assert sorted(read_all(tbroker.bootstrap, topic, 1, "read_uncommitted")) == ["a1", "a2", "c1"]


def test_offsets_in_an_open_transaction_are_unstable_until_it_commits(tbroker):
    """KIP-447: a read_committed consumer's OffsetFetch (require_stable) does not return an
    offset an open transaction is about to replace; after the commit it gets the new one."""
    src, group = unique("stable"), unique("stable-g")
    create_topic(tbroker.bootstrap, src, 1)
    feed = Producer({"bootstrap.servers": tbroker.bootstrap})
    for i in range(10):
        feed.produce(src, value=b"x", partition=0)
    assert feed.flush(30) == 0
    c = Consumer({"bootstrap.servers": tbroker.bootstrap, "group.id": group,
                  "isolation.level": "read_committed", "enable.auto.commit": False})
    c.assign([TopicPartition(src, 0, 0)])
    p = txn_producer(tbroker.bootstrap, unique("tx"))
    p.init_transactions(30)
    p.begin_transaction()
    p.send_offsets_to_transaction([TopicPartition(src, 0, 7)], c.consumer_group_metadata(), 30)
    with pytest.raises(KafkaException):
        c.committed([TopicPartition(src, 0)], 2)  # retried UNSTABLE_OFFSET_COMMIT until timeout
    p.commit_transaction(30)
    assert c.committed([TopicPartition(src, 0)], 10)[0].offset == 7
    c.close()


def test_cli_lists_and_describes_open_transactions(tbroker):
    topic = unique("cli")
    create_topic(tbroker.bootstrap, topic, 2)
    txn_id = unique("cli-tx")
    p = txn_producer(tbroker.bootstrap, txn_id)
    p.init_transactions(30)
    p.begin_transaction()
    p.produce(topic, value=b"x", partition=1)
    assert p.flush(30) == 0
    out = subprocess.run([STRATA_BIN, "txn", "list", "--bootstrap", tbroker.bootstrap],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    line = next(l for l in out.stdout.splitlines() if txn_id in l)
    assert "Ongoing" in line
    out = subprocess.run([STRATA_BIN, "txn", "describe", txn_id, "--bootstrap", tbroker.bootstrap],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "Ongoing" in out.stdout and f"{topic}-1" in out.stdout, out.stdout
    assert "age" in out.stdout
    # The same as JSON, for scripts.
    out = subprocess.run([STRATA_BIN, "txn", "list", "--output", "json", "--bootstrap", tbroker.bootstrap],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    listed = next(t for t in json.loads(out.stdout) if t["transactional_id"] == txn_id)
    assert listed["state"] == "Ongoing" and listed["partitions"] == [f"{topic}-1"], listed
    assert listed["age_ms"] >= 0 and listed["producer_id"] >= 0, listed
    out = subprocess.run([STRATA_BIN, "txn", "describe", txn_id, "--output", "json", "--bootstrap",
                          tbroker.bootstrap], capture_output=True, text=True, timeout=30)
    described = json.loads(out.stdout)
    assert described["state"] == "Ongoing" and described["producer_epoch"] == listed["producer_epoch"], described
    p.commit_transaction(30)
    out = subprocess.run([STRATA_BIN, "txn", "describe", txn_id, "--bootstrap", tbroker.bootstrap],
                         capture_output=True, text=True, timeout=30)
    assert "CompleteCommit" in out.stdout, out.stdout


def test_transactional_producer_across_kill9_commits_each_transaction_exactly_once(tmp_path):
    """Invariants 7 and 11 across crashes: transactions of 20 records are committed in a loop while the broker is killed
    (SIGKILL) and restarted three times. The client does what librdkafka documents: retry a
    retriable commit, abort and redo the transaction after an abortable error. read_committed
    then holds every transaction the client saw committed exactly once, all 20 records of
    each, and nothing of any other attempt."""
    broker = Broker(tmp_path / "data", config_text=TXN_CONFIG).start()
    topic = unique("txn-crash")
    create_topic(broker.bootstrap, topic, 3)
    committed, errors = [], []
    stop = threading.Event()

    def run():
        p = txn_producer(broker.bootstrap, unique("crash-tx"),
                         **{"message.timeout.ms": 30000, "reconnect.backoff.max.ms": 200})
        p.init_transactions(60)
        n = 0
        while not stop.is_set():
            try:
                p.begin_transaction()
                for i in range(20):
                    p.produce(topic, value=f"{n}-{i}".encode(), partition=i % 3)
                while True:
                    try:
                        p.commit_transaction(30)
                        break
                    except KafkaException as e:
                        if not e.args[0].retriable():
                            raise
                committed.append(n)
                n += 1
            except KafkaException as e:
                err = e.args[0]
                if err.txn_requires_abort():
                    p.abort_transaction(60)  # redo transaction n
                    continue
                errors.append(str(err))
                return

    t = threading.Thread(target=run)
    t.start()
    try:
        for _ in range(3):
            time.sleep(1.5)
            broker.kill9()
            time.sleep(0.3)
            broker.start()
        time.sleep(2)
    finally:
        stop.set()
        t.join(120)
    try:
        assert not errors, errors
        assert len(committed) >= 10, committed
        got = read_all(broker.bootstrap, topic, 3, "read_committed", timeout=60)
        assert len(got) == len(set(got)), f"{len(got) - len(set(got))} records twice"
        txns = {}
        for v in got:
            n, i = v.split("-")
            txns.setdefault(int(n), set()).add(int(i))
        for n in committed:
            assert txns.get(n) == set(range(20)), f"transaction {n} incomplete: {sorted(txns.get(n, []))}"
        # Only the last attempt's transaction may be committed without the client seeing it.
        assert set(txns) - set(committed) <= {max(committed) + 1}
        for n, records in txns.items():
            assert records == set(range(20)), f"transaction {n} is torn"
    finally:
        broker.stop()
    assert "panicked" not in broker.log_text()
