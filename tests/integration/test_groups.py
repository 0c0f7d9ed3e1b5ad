"""Consumer groups with real clients: librdkafka (confluent-kafka) with the classic protocol
and KIP-848 (`group.protocol=consumer`), and kafka-python."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition, ConsumerGroupTopicPartitions
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import Broker, STRATA_BIN, unique

GROUP_CONFIG = """
group_initial_rebalance_delay_ms = 300
group_consumer_heartbeat_interval_ms = 500
group_consumer_session_timeout_ms = 6000
"""

PROTOCOLS = ["classic", "consumer"]


@pytest.fixture
def gbroker(tmp_path):
    b = Broker(tmp_path / "data", config_text=GROUP_CONFIG).start()
    yield b
    b.stop()
    assert "panicked" not in b.log_text(), b.log_text()[-3000:]


def create_topic(bootstrap, name, partitions):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(30)


def produce(bootstrap, topic, n, start=0, partitions=None):
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(start, start + n):
        kwargs = {"partition": i % partitions} if partitions else {}
        p.produce(topic, key=str(i).encode(), value=str(i).encode(), **kwargs)
    assert p.flush(30) == 0


def consumer_config(bootstrap, group, protocol, **extra):
    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    }
    if protocol == "consumer":
        conf["group.protocol"] = "consumer"
    else:
        conf["session.timeout.ms"] = 6000
        conf["heartbeat.interval.ms"] = 500
    conf.update(extra)
    return conf


class Member:
    """One consumer, tracking what it is assigned and what it received."""

    def __init__(self, conf, topic):
        self.assigned = set()
        self.assign_calls = 0
        self.records = []
        self.c = Consumer(conf)
        self.c.subscribe([topic], on_assign=self._on_assign, on_revoke=self._on_revoke)

    def _on_assign(self, consumer, partitions):
        self.assign_calls += 1
        self.assigned |= {p.partition for p in partitions}

    def _on_revoke(self, consumer, partitions):
        # Commit what was processed before giving partitions away.
        if self.records:
            try:
                consumer.commit(asynchronous=False)
            except KafkaException:
                pass
        self.assigned -= {p.partition for p in partitions}

    def poll(self, timeout=0.02):
        # A batch per call: with several members polled in turn, one record per call
        # would be limited by the others' idle timeouts.
        for m in self.c.consume(num_messages=1000, timeout=timeout):
            if not m.error():
                self.records.append((m.partition(), m.offset(), m.value()))


def poll_until(members, predicate, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        for m in members:
            m.poll()
        if predicate():
            return
    raise AssertionError(
        f"timed out: assigned={[sorted(m.assigned) for m in members]} "
        f"received={[len(m.records) for m in members]}"
    )


def split_without_overlap(members, partitions):
    sets = [m.assigned for m in members]
    union = set().union(*sets)
    return union == set(range(partitions)) and sum(len(s) for s in sets) == partitions


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("n", [2, 3, 5])
def test_members_split_partitions_consume_once_and_resume(gbroker, protocol, n):
    bs = gbroker.bootstrap
    topic, group, parts = unique(f"grp{n}"), unique("g"), 10
    create_topic(bs, topic, parts)
    members = [Member(consumer_config(bs, group, protocol), topic) for _ in range(n)]
    # Every member gets something (10 partitions, at most 5 members), none twice.
    poll_until(members, lambda: split_without_overlap(members, parts) and all(m.assigned for m in members))
    produce(bs, topic, 2000, partitions=parts)
    poll_until(members, lambda: sum(len(m.records) for m in members) >= 2000)
    for _ in range(20):
        for m in members:
            m.poll()
    got = [(p, o) for m in members for (p, o, _) in m.records]
    assert len(got) == 2000 and len(set(got)) == 2000, "each record exactly once"
    assert sorted(int(v) for m in members for (_, _, v) in m.records) == list(range(2000))
    # Each member only got records of its own partitions.
    for m in members:
        assert {p for (p, _, _) in m.records} <= m.assigned
    for m in members:
        m.c.commit(asynchronous=False)
    for m in members:
        m.c.close()
    # The restarted group resumes at the committed offsets: nothing again, nothing skipped.
    produce(bs, topic, 500, start=2000, partitions=parts)
    members = [Member(consumer_config(bs, group, protocol), topic) for _ in range(n)]
    poll_until(members, lambda: sum(len(m.records) for m in members) >= 500)
    time.sleep(1)
    for _ in range(20):
        for m in members:
            m.poll()
    values = sorted(int(v) for m in members for (_, _, v) in m.records)
    assert values == list(range(2000, 2500))
    for m in members:
        m.c.close()


CHILD = textwrap.dedent(
    """
    import sys, time
    from confluent_kafka import Consumer
    bs, group, topic, protocol, instance = sys.argv[1:6]
    conf = {"bootstrap.servers": bs, "group.id": group, "auto.offset.reset": "earliest",
            "enable.auto.commit": False}
    if protocol == "consumer":
        conf["group.protocol"] = "consumer"
    else:
        conf["session.timeout.ms"] = 6000
        conf["heartbeat.interval.ms"] = 500
    if instance != "-":
        conf["group.instance.id"] = instance
    c = Consumer(conf)
    c.subscribe([topic])
    held = None
    while True:
        c.poll(0.1)
        # The whole assignment after every change (callbacks see only increments under
        # the consumer protocol).
        now = sorted(p.partition for p in c.assignment())
        if now != held:
            held = now
            print("HOLDS", ",".join(str(p) for p in now), flush=True)
    """
)


class Child:
    """A consumer in another process (so it can be killed with SIGKILL); `held` is its whole
    assignment as last reported."""

    def __init__(self, bs, group, topic, protocol, instance="-"):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, bs, group, topic, protocol, instance],
            stdout=subprocess.PIPE,
        )
        os.set_blocking(self.proc.stdout.fileno(), False)
        self.held, self.buf = set(), ""

    def poll(self):
        chunk = self.proc.stdout.read()
        if not chunk:
            return
        self.buf += chunk.decode()
        *lines, self.buf = self.buf.split("\n")
        for line in lines:
            if line.startswith("HOLDS"):
                self.held = {int(p) for p in line[len("HOLDS"):].strip().split(",") if p}

    def wait_until(self, predicate, timeout=30, polling=()):
        """Poll the child (and our own members: a member gives partitions up only from its
        poll loop) until predicate() holds."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            self.poll()
            for m in polling:
                m.poll()
            if predicate():
                return
            time.sleep(0.01)
        raise AssertionError(f"timed out: child holds {sorted(self.held)}")

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_killed_member_partitions_move_after_session_timeout(gbroker, protocol):
    bs = gbroker.bootstrap
    topic, group, parts = unique("kill"), unique("g"), 6
    create_topic(bs, topic, parts)
    child = Child(bs, group, topic, protocol)
    try:
        child.wait_until(lambda: child.held)
        me = Member(consumer_config(bs, group, protocol), topic)
        poll_until([me], lambda: 0 < len(me.assigned) < parts)
        child.kill()
        killed_at = time.time()
        poll_until([me], lambda: me.assigned == set(range(parts)), timeout=40)
        waited = time.time() - killed_at
        # Not before the 6 s session timeout (less a heartbeat), well before 40 s.
        assert waited > 4, waited
        me.c.close()
    finally:
        child.proc.kill()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_static_member_restart_keeps_partitions_without_rebalance(gbroker, protocol):
    bs = gbroker.bootstrap
    topic, group, parts = unique("static"), unique("g"), 6
    create_topic(bs, topic, parts)
    extra = {"group.instance.id": "other"}
    me = Member(consumer_config(bs, group, protocol, **extra), topic)
    child = Child(bs, group, topic, protocol, instance="static-1")
    try:
        # Both hold partitions, none twice, all of them: the group has settled.
        child.wait_until(
            lambda: me.assigned and child.held and me.assigned.isdisjoint(child.held)
            and len(me.assigned) + len(child.held) == parts,
            timeout=60, polling=[me])
        first = set(child.held)
        calls, mine = me.assign_calls, set(me.assigned)
        for _ in range(40):
            me.poll()
        # Kill -9 the static member and restart it at once.
        child.kill()
        child = Child(bs, group, topic, protocol, instance="static-1")
        try:
            child.wait_until(lambda: child.held == first, polling=[me])
        except AssertionError:
            raise AssertionError(f"the static member gets {sorted(first)} back, holds {sorted(child.held)}")
        # Beyond the session timeout: the other member never saw a rebalance.
        deadline = time.time() + 8
        while time.time() < deadline:
            me.poll()
        assert me.assign_calls == calls and me.assigned == mine
        me.c.close()
    finally:
        child.proc.kill()


def test_cooperative_sticky_incremental_rebalance(gbroker):
    bs = gbroker.bootstrap
    topic, group, parts = unique("coop"), unique("g"), 8
    create_topic(bs, topic, parts)
    conf = consumer_config(bs, group, "classic", **{"partition.assignment.strategy": "cooperative-sticky"})
    a = Member(conf, topic)
    poll_until([a], lambda: a.assigned == set(range(parts)))
    produce(bs, topic, 400, partitions=parts)
    poll_until([a], lambda: len(a.records) >= 400)
    a.c.commit(asynchronous=False)
    before = set(a.assigned)
    b = Member(conf, topic)
    poll_until([a, b], lambda: split_without_overlap([a, b], parts) and len(b.assigned) == 4)
    # Incremental: a kept a subset of what it had and was never left with nothing.
    assert a.assigned < before and len(a.assigned) == 4
    produce(bs, topic, 400, start=400, partitions=parts)
    poll_until([a, b], lambda: len(a.records) + len(b.records) >= 800)
    values = sorted(int(v) for m in (a, b) for (_, _, v) in m.records)
    assert values == list(range(800)), "nothing lost or repeated across the incremental rebalance"
    a.c.close()
    b.c.close()


def test_commits_with_metadata_survive_broker_restart(tmp_path):
    b = Broker(tmp_path / "data", config_text=GROUP_CONFIG).start()
    try:
        bs = b.bootstrap
        topic, group = unique("restart"), unique("g")
        create_topic(bs, topic, 3)
        produce(bs, topic, 30, partitions=3)
        c = Consumer(consumer_config(bs, group, "classic"))
        meta = "metadata kept exactly: ü €  {\"json\": [1, 2]}"
        offsets = [TopicPartition(topic, p, 5 + p, metadata=meta) for p in range(3)]
        c.commit(offsets=offsets, asynchronous=False)
        c.close()
        b.stop()
        b = Broker(tmp_path / "data", port=b.port, config_text=GROUP_CONFIG).start()
        c = Consumer(consumer_config(bs, group, "classic"))
        got = c.committed([TopicPartition(topic, p) for p in range(3)], timeout=20)
        assert [(t.partition, t.offset) for t in got] == [(0, 5), (1, 6), (2, 7)]
        assert all(t.metadata == meta for t in got), [t.metadata for t in got]
        # And consumption resumes there.
        c.subscribe([topic])
        seen = []
        deadline = time.time() + 30
        while len(seen) < 30 - 18 and time.time() < deadline:
            m = c.poll(0.2)
            if m is not None and not m.error():
                seen.append((m.partition(), m.offset()))
        assert sorted(seen) == sorted((p, o) for p in range(3) for o in range(5 + p, 10))
        c.close()
        # Kill -9 right after a commit: the acknowledged commit is there after restart.
        c = Consumer(consumer_config(bs, group, "classic"))
        c.commit(offsets=[TopicPartition(topic, 0, 9)], asynchronous=False)
        b.kill9()
        b = Broker(tmp_path / "data", port=b.port, config_text=GROUP_CONFIG).start()
        c2 = Consumer(consumer_config(bs, group, "classic"))
        assert c2.committed([TopicPartition(topic, 0)], timeout=20)[0].offset == 9
        c2.close()
    finally:
        b.stop()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_auto_offset_reset(gbroker, protocol):
    bs = gbroker.bootstrap
    topic = unique("reset")
    create_topic(bs, topic, 1)
    produce(bs, topic, 10)
    got = {}
    for reset in ["earliest", "latest"]:
        c = Consumer(consumer_config(bs, unique("g"), protocol, **{"auto.offset.reset": reset}))
        c.subscribe([topic])
        seen = []
        deadline = time.time() + 6
        produced_more = False
        while time.time() < deadline:
            m = c.poll(0.2)
            if c.assignment() and not produced_more and reset == "latest":
                # Once positioned at the end, new records are the only ones seen.
                time.sleep(1)
                produce(bs, topic, 1, start=100)
                produced_more = True
            if m is not None and not m.error():
                seen.append(int(m.value()))
            if (reset == "earliest" and len(seen) >= 10) or 100 in seen:
                break
        got[reset] = seen
        c.close()
    assert got["earliest"][:10] == list(range(10))
    assert got["latest"] == [100]


def test_admin_list_describe_delete_groups_and_offsets(gbroker):
    bs = gbroker.bootstrap
    admin = AdminClient({"bootstrap.servers": bs})
    topic, group = unique("adm"), unique("g")
    create_topic(bs, topic, 2)
    produce(bs, topic, 20, partitions=2)
    m = Member(consumer_config(bs, group, "classic", **{"client.id": "adm-client"}), topic)
    poll_until([m], lambda: len(m.records) >= 20)
    m.c.commit(asynchronous=False)
    listed = admin.list_consumer_groups().result(20)
    ids = {g.group_id: g for g in listed.valid}
    assert group in ids and str(ids[group].state).endswith("STABLE")
    d = admin.describe_consumer_groups([group])[group].result(20)
    assert len(d.members) == 1 and d.members[0].client_id == "adm-client"
    assert {tp.partition for tp in d.members[0].assignment.topic_partitions} == {0, 1}
    # Deleting a group with members is refused.
    with pytest.raises(KafkaException) as e:
        admin.delete_consumer_groups([group])[group].result(20)
    assert "NON_EMPTY_GROUP" in str(e.value)
    offsets = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(20)
    assert sorted((tp.partition, tp.offset) for tp in offsets.topic_partitions) == [(0, 10), (1, 10)]
    m.c.close()
    # Now empty: alter offsets, then delete.
    admin.alter_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, 3)])]
    )[group].result(20)
    offsets = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(20)
    assert sorted((tp.partition, tp.offset) for tp in offsets.topic_partitions) == [(0, 3), (1, 10)]
    admin.delete_consumer_groups([group])[group].result(20)
    assert group not in {g.group_id for g in admin.list_consumer_groups().result(20).valid}
    with pytest.raises(KafkaException) as e:
        admin.delete_consumer_groups([group])[group].result(20)
    assert "GROUP_ID_NOT_FOUND" in str(e.value)


def test_offsets_of_deleted_topic_are_dropped(gbroker):
    bs = gbroker.bootstrap
    admin = AdminClient({"bootstrap.servers": bs})
    topic, keep, group = unique("gone"), unique("keep"), unique("g")
    create_topic(bs, topic, 1)
    create_topic(bs, keep, 1)
    produce(bs, topic, 5)
    produce(bs, keep, 5)
    c = Consumer(consumer_config(bs, group, "classic"))
    c.commit(offsets=[TopicPartition(topic, 0, 5), TopicPartition(keep, 0, 4)], asynchronous=False)
    c.close()
    admin.delete_topics([topic])[topic].result(20)
    offsets = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(20)
    assert [(tp.topic, tp.offset) for tp in offsets.topic_partitions] == [(keep, 4)]


def test_commit_past_high_watermark_is_stored_as_kafka_does(gbroker):
    # Kafka accepts an offset past the log end (invariant 12): the consumer's
    # auto.offset.reset deals with it when it fetches, and clients rely on that.
    bs = gbroker.bootstrap
    topic, group = unique("hw"), unique("g")
    create_topic(bs, topic, 1)
    produce(bs, topic, 5)
    c = Consumer(consumer_config(bs, group, "classic"))
    c.commit(offsets=[TopicPartition(topic, 0, 1000, metadata="ahead")], asynchronous=False)
    assert c.committed([TopicPartition(topic, 0)], timeout=10)[0].offset == 1000
    c.close()
    # a member resuming from there is out of range and resets (earliest): it reads all 5
    c = Consumer({**consumer_config(bs, group, "classic"), "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got, deadline = [], time.time() + 30
    while len(got) < 5 and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append(m.offset())
    c.close()
    assert got == [0, 1, 2, 3, 4]


def test_kafka_python_group(gbroker):
    import threading

    from kafka import KafkaConsumer
    from kafka.structs import OffsetAndMetadata, TopicPartition as KTP

    bs = gbroker.bootstrap
    topic, group, parts = unique("kp"), unique("g"), 4
    create_topic(bs, topic, parts)
    produce(bs, topic, 400, partitions=parts)
    consumers = [
        KafkaConsumer(topic, bootstrap_servers=bs, group_id=group, auto_offset_reset="earliest",
                      enable_auto_commit=False)
        for _ in range(2)
    ]
    got = [[], []]
    stop = threading.Event()

    # One thread per consumer, as applications run them: kafka-python completes a join
    # only inside poll(), so one thread alternating short polls between two consumers
    # makes the leader miss its own join and rebalance again and again.
    def run(i):
        while not stop.is_set():
            for batch in consumers[i].poll(timeout_ms=500).values():
                got[i].extend((r.partition, r.offset) for r in batch)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    deadline = time.time() + 60
    while time.time() < deadline and not (
        sum(map(len, got)) >= 400 and all(c.assignment() for c in consumers)
    ):
        time.sleep(0.1)
    stop.set()
    for t in threads:
        t.join(10)
    # Everything read (a rebalance before the group settled may re-deliver uncommitted
    # records: auto-commit is off here, and exactly-once is tested with librdkafka above).
    assert len(set(got[0] + got[1])) == 400
    assignments = [c.assignment() for c in consumers]
    assert assignments[0].isdisjoint(assignments[1])
    assert len(assignments[0] | assignments[1]) == parts
    consumers[0].commit({KTP(topic, 0): OffsetAndMetadata(100, "kp-meta", -1)})
    assert consumers[1].committed(KTP(topic, 0), metadata=True).metadata == "kp-meta"
    for c in consumers:
        c.close()


def test_group_cli_shows_lag_while_producing(gbroker):
    bs = gbroker.bootstrap
    topic, group, parts = unique("lag"), unique("g"), 2
    create_topic(bs, topic, parts)
    produce(bs, topic, 100, partitions=parts)
    m = Member(consumer_config(bs, group, "classic"), topic)
    poll_until([m], lambda: len(m.records) >= 100)
    m.c.commit(offsets=[TopicPartition(topic, 0, 30), TopicPartition(topic, 1, 50)], asynchronous=False)
    produce(bs, topic, 10, start=100, partitions=parts)
    out = subprocess.run([STRATA_BIN, "group", "describe", group, "--bootstrap", bs],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    rows = {}
    for line in out.stdout.splitlines():
        cols = line.split()
        if len(cols) >= 5 and cols[0] == topic:
            rows[int(cols[1])] = (int(cols[2]), int(cols[3]), int(cols[4]))
    # partition: (committed, log end, lag)
    assert rows == {0: (30, 55, 25), 1: (50, 55, 5)}, out.stdout
    assert "Stable" in out.stdout
    listed = subprocess.run([STRATA_BIN, "group", "list", "--bootstrap", bs],
                            capture_output=True, text=True, timeout=30)
    assert group in listed.stdout
    m.c.close()
    # reset-offsets on the now-empty group, then delete it.
    r = subprocess.run([STRATA_BIN, "group", "reset-offsets", group, "--topic", topic,
                        "--to-earliest", "--bootstrap", bs], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    c = Consumer(consumer_config(bs, unique("probe"), "classic"))
    admin = AdminClient({"bootstrap.servers": bs})
    offsets = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(20)
    assert sorted((tp.partition, tp.offset) for tp in offsets.topic_partitions) == [(0, 0), (1, 0)]
    c.close()
    d = subprocess.run([STRATA_BIN, "group", "delete", group, "--bootstrap", bs],
                       capture_output=True, text=True, timeout=30)
    assert d.returncode == 0, d.stderr
    assert group not in subprocess.run([STRATA_BIN, "group", "list", "--bootstrap", bs],
                                       capture_output=True, text=True, timeout=30).stdout


def test_sigterm_answers_pending_join_and_exits(tmp_path):
    b = Broker(tmp_path / "data", config_text=GROUP_CONFIG).start()
    bs = b.bootstrap
    topic, group = unique("term"), unique("g")
    create_topic(bs, topic, 2)
    a = Member(consumer_config(bs, group, "classic"), topic)
    poll_until([a], lambda: a.assigned == {0, 1})
    # b's JoinGroup now waits for a to rejoin, which it will not (a never polls again):
    # up to a's rebalance timeout (max.poll.interval.ms, 5 minutes).
    other = Member(consumer_config(bs, group, "classic"), topic)
    deadline = time.time() + 2
    while time.time() < deadline:
        other.poll()
    t0 = time.time()
    b.proc.send_signal(signal.SIGTERM)
    b.proc.wait(20)
    assert time.time() - t0 < 10, "shutdown waited for the rebalance"
    assert b.proc.returncode == 0
    assert "shutdown complete" in b.log_text()
    b.stop()


def test_kip848_group_survives_broker_restart_without_rebalance(tmp_path):
    b = Broker(tmp_path / "data", config_text=GROUP_CONFIG).start()
    try:
        bs = b.bootstrap
        topic, group, parts = unique("k848r"), unique("g"), 4
        create_topic(bs, topic, parts)
        members = [Member(consumer_config(bs, group, "consumer"), topic) for _ in range(2)]
        poll_until(members, lambda: split_without_overlap(members, parts) and all(m.assigned for m in members))
        for _ in range(20):
            for m in members:
                m.poll()
        calls = [m.assign_calls for m in members]
        assigned = [set(m.assigned) for m in members]
        epoch_before = [l for l in subprocess.run(
            [STRATA_BIN, "group", "describe", group, "--bootstrap", bs],
            capture_output=True, text=True, timeout=30).stdout.splitlines() if "epoch" in l]
        b.kill9()
        b = Broker(tmp_path / "data", port=b.port, config_text=GROUP_CONFIG).start()
        produce(bs, topic, 200, partitions=parts)
        poll_until(members, lambda: sum(len(m.records) for m in members) >= 200)
        assert [m.assign_calls for m in members] == calls, "no rebalance after the restart"
        assert [m.assigned for m in members] == assigned
        epoch_after = [l for l in subprocess.run(
            [STRATA_BIN, "group", "describe", group, "--bootstrap", bs],
            capture_output=True, text=True, timeout=30).stdout.splitlines() if "epoch" in l]
        assert epoch_after == epoch_before, (epoch_before, epoch_after)
        values = sorted(int(v) for m in members for (_, _, v) in m.records)
        assert values == list(range(200))
        for m in members:
            m.c.close()
    finally:
        b.stop()


def test_offsets_topic_is_internal_and_its_partitioning_survives_a_config_change(tmp_path):
    b = Broker(tmp_path / "data", config_text=GROUP_CONFIG).start()
    try:
        bs = b.bootstrap
        admin = AdminClient({"bootstrap.servers": bs})
        topic = unique("part")
        create_topic(bs, topic, 1)
        produce(bs, topic, 10)
        groups = [unique(f"g{i}") for i in range(20)]

        def commit_all(offset):
            for g in groups:
                c = Consumer(consumer_config(bs, g, "classic"))
                c.commit(offsets=[TopicPartition(topic, 0, offset)], asynchronous=False)
                c.close()

        def committed_all():
            res = []
            for g in groups:
                r = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(g)])[g].result(20)
                res.append(r.topic_partitions[0].offset)
            return res

        commit_all(3)
        # Users cannot create (or re-create with another partition count) the internal topic.
        with pytest.raises(KafkaException) as e:
            admin.create_topics([NewTopic("__consumer_offsets", 3, 1)])["__consumer_offsets"].result(20)
        assert "prohibited" in str(e.value) or "INVALID" in str(e.value)
        b.stop()
        # A different configured partition count must not move groups to other partitions.
        b = Broker(tmp_path / "data", port=b.port,
                   config_text=GROUP_CONFIG + "offsets_topic_num_partitions = 7\n").start()
        admin = AdminClient({"bootstrap.servers": bs})
        commit_all(7)
        b.stop()
        b = Broker(tmp_path / "data", port=b.port,
                   config_text=GROUP_CONFIG + "offsets_topic_num_partitions = 7\n").start()
        admin = AdminClient({"bootstrap.servers": bs})
        assert committed_all() == [7] * len(groups)
    finally:
        b.stop()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_members_join_and_leave_mid_stream_nothing_lost_or_repeated(gbroker, protocol):
    """A producer keeps writing while a third member joins and one leaves: the group reads
    every record exactly once (members commit in their revoke callback)."""
    import threading

    bs = gbroker.bootstrap
    topic, group, parts, total = unique("churn"), unique("g"), 6, 3000
    create_topic(bs, topic, parts)
    a = Member(consumer_config(bs, group, protocol), topic)
    b = Member(consumer_config(bs, group, protocol), topic)
    poll_until([a, b], lambda: split_without_overlap([a, b], parts) and a.assigned and b.assigned)

    def producer():
        p = Producer({"bootstrap.servers": bs, "linger.ms": 5})
        for i in range(total):
            p.produce(topic, partition=i % parts, value=str(i).encode())
            if i % 100 == 0:
                p.poll(0)
                time.sleep(0.1)
        assert p.flush(30) == 0

    t = threading.Thread(target=producer)
    t.start()
    members = [a, b]
    deadline = time.time() + 1.0
    while time.time() < deadline:
        for m in members:
            m.poll()
    c = Member(consumer_config(bs, group, protocol), topic)
    members.append(c)
    deadline = time.time() + 1.0
    while time.time() < deadline:
        for m in members:
            m.poll()
    members.remove(b)
    # b leaves while a and c keep polling (close commits in its revoke callback).
    closer = threading.Thread(target=b.c.close)
    closer.start()
    while closer.is_alive():
        for m in members:
            m.poll()
    t.join(60)
    poll_until(members, lambda: len({v for m in (a, b, c) for (_, _, v) in m.records}) >= total, timeout=60)
    for _ in range(20):
        for m in members:
            m.poll()
    values = [int(v) for m in (a, b, c) for (_, _, v) in m.records]
    assert sorted(set(values)) == list(range(total)), "nothing lost"
    dupes = len(values) - len(set(values))
    assert dupes == 0, f"{dupes} records read twice"
    for m in members:
        m.c.close()
