"""Three Strata nodes on loopback forming one cluster through the metadata quorum (issue 12,
first slice): every node knows every broker and topic, partitions are spread over the
brokers, and real clients (librdkafka) produce, consume and commit offsets across them; the
metadata survives the loss and restart of the quorum's leader and a restart of every node.
(Replication between brokers is not built yet: each partition has one replica.)"""
import concurrent.futures
import signal
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import Broker, free_port


def start_cluster(tmp_path, n=3):
    ports = [free_port() for _ in range(n)]
    controller_ports = [free_port() for _ in range(n)]
    voters = ",".join(f"{i + 1}@127.0.0.1:{controller_ports[i]}" for i in range(n))
    nodes = [
        Broker(tmp_path / f"node{i + 1}", port=ports[i],
               extra_args=["--node-id", str(i + 1), "--controller-quorum-voters", voters])
        for i in range(n)
    ]
    start_all(nodes)
    return nodes


def start_all(nodes):
    # Each node waits for a quorum majority before it listens: start them together.
    with concurrent.futures.ThreadPoolExecutor(len(nodes)) as pool:
        list(pool.map(lambda b: b.start(timeout=60), nodes))


def bootstrap(nodes):
    return ",".join(b.bootstrap for b in nodes if b.proc and b.alive())


def wait_for(predicate, timeout=30, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def create_topic(admin, name, partitions):
    fs = admin.create_topics([NewTopic(name, partitions)], request_timeout=60)
    fs[name].result(60)


def leaders(admin, topic):
    md = admin.list_topics(timeout=10)
    t = md.topics.get(topic)
    if t is None or t.error is not None or not t.partitions:
        return None
    return {p.id: p.leader for p in t.partitions.values()}


def produce(bootstrap_servers, topic, count, prefix):
    acked = []
    errors = []

    def on_delivery(err, msg):
        if err:
            errors.append(err)
        else:
            acked.append((msg.partition(), msg.offset(), msg.key()))

    p = Producer({"bootstrap.servers": bootstrap_servers, "acks": "all",
                  "enable.idempotence": True, "linger.ms": 5})
    for i in range(count):
        p.produce(topic, key=f"{prefix}-{i}".encode(), value=f"{prefix}-value-{i}".encode(),
                  on_delivery=on_delivery)
    assert p.flush(60) == 0
    assert not errors, errors[:3]
    return acked


def consume_all(bootstrap_servers, topic, group, expected):
    c = Consumer({"bootstrap.servers": bootstrap_servers, "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    got = []
    deadline = time.time() + 60
    while len(got) < expected and time.time() < deadline:
        m = c.poll(1)
        if m is None or m.error():
            continue
        got.append((m.partition(), m.offset(), m.key()))
    c.commit(asynchronous=False)
    committed = c.committed([TopicPartition(topic, p) for p in {g[0] for g in got}], timeout=30)
    c.close()
    return got, committed


def test_three_nodes_share_metadata_and_serve_partitions_across_brokers(tmp_path):
    nodes = start_cluster(tmp_path)
    try:
        # Every node lists every broker, each with its own endpoint.
        for b in nodes:
            md = AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(timeout=10)
            assert {(x.id, x.port) for x in md.brokers.values()} == \
                {(i + 1, n.port) for i, n in enumerate(nodes)}
        # A topic created through one node is known to all, spread over all three brokers.
        create_topic(AdminClient({"bootstrap.servers": nodes[0].bootstrap}), "orders", 6)
        for b in nodes:
            admin = AdminClient({"bootstrap.servers": b.bootstrap})
            found = wait_for(lambda: leaders(admin, "orders"), what="the topic on every node")
            assert len(found) == 6
            assert set(found.values()) == {1, 2, 3}, found
        # librdkafka produces to each partition's leader and a group consumes everything,
        # with its coordinator on whichever broker leads its offsets partition.
        acked = produce(nodes[1].bootstrap, "orders", 600, "k")
        assert len(acked) == 600
        got, committed = consume_all(nodes[2].bootstrap, "orders", "billing", 600)
        assert sorted(got) == sorted(acked)
        # A key always maps to one partition, and offsets are dense per partition.
        by_partition = {}
        for p, o, _ in sorted(got):
            by_partition.setdefault(p, []).append(o)
        for p, offsets in by_partition.items():
            assert offsets == list(range(len(offsets))), p
        assert all(tp.error is None and tp.offset == len(by_partition[tp.partition])
                   for tp in committed), committed
    finally:
        for b in nodes:
            b.stop()


def test_metadata_survives_the_quorum_leader_dying_and_every_node_restarting(tmp_path):
    nodes = start_cluster(tmp_path)
    try:
        admin = AdminClient({"bootstrap.servers": bootstrap(nodes)})
        create_topic(admin, "before", 3)
        acked = produce(bootstrap(nodes), "before", 90, "b")
        # The quorum leader (the controller in Metadata) is killed; the others elect a new
        # one and keep taking metadata changes.
        md = admin.list_topics(timeout=10)
        controller = md.controller_id
        assert controller in (1, 2, 3)
        nodes[controller - 1].kill9()
        survivors = AdminClient({"bootstrap.servers": bootstrap(nodes)})
        create_topic(survivors, "after", 3)
        wait_for(lambda: survivors.list_topics(timeout=10).controller_id not in (-1, controller),
                 what="a new controller")
        # The dead node comes back, catches up, and every partition is served again.
        nodes[controller - 1].start(timeout=60)
        for b in nodes:
            a = AdminClient({"bootstrap.servers": b.bootstrap})
            wait_for(lambda: leaders(a, "after"), what="the new topic on the restarted node")
        produce(bootstrap(nodes), "after", 30, "a")
        # Every node stops and starts again: metadata and data come back.
        for b in nodes:
            b.stop()
        start_all(nodes)
        admin = AdminClient({"bootstrap.servers": bootstrap(nodes)})
        assert set(wait_for(lambda: leaders(admin, "after"), what="topics after restart")) == {0, 1, 2}
        got, _ = consume_all(bootstrap(nodes), "before", "audit", 90)
        assert sorted(got) == sorted(acked)
    finally:
        for b in nodes:
            b.stop()


def segment_bytes(node, topic, partition):
    d = node.data_dir / f"{topic}-{partition}"
    return b"".join(p.read_bytes() for p in sorted(d.glob("*.log")))


def test_three_replicas_hold_the_same_bytes_and_acks_all_waits_for_them(tmp_path):
    nodes = start_cluster(tmp_path)
    try:
        admin = AdminClient({"bootstrap.servers": bootstrap(nodes)})
        fs = admin.create_topics([NewTopic("replicated", 3, 3)], request_timeout=60)
        fs["replicated"].result(60)
        md = admin.list_topics(timeout=10).topics["replicated"]
        for p in md.partitions.values():
            assert sorted(p.replicas) == [1, 2, 3] and sorted(p.isrs) == [1, 2, 3], p
        acked = produce(bootstrap(nodes), "replicated", 900, "r")
        got, _ = consume_all(bootstrap(nodes), "replicated", "readers", 900)
        assert sorted(got) == sorted(acked)
        # Every replica holds the same bytes at the same offsets (follower fetch copies the
        # leader's batches as stored).
        for partition in range(3):
            leader_bytes = wait_for(
                lambda: (lambda bs: bs[0] if len(set(bs)) == 1 and bs[0] else None)(
                    [segment_bytes(n, "replicated", partition) for n in nodes]),
                what=f"identical replicas of partition {partition}")
            assert len(leader_bytes) > 0
        # A paused follower holds back acks=all (it is in the ISR), not acks=1.
        leader = md.partitions[0].leader
        follower = next(n for i, n in enumerate(nodes) if i + 1 != leader)
        follower.proc.send_signal(signal.SIGSTOP)
        try:
            results = {}
            for acks in ("all", "1"):
                p = Producer({"bootstrap.servers": bootstrap(nodes), "acks": acks,
                              "request.timeout.ms": 2000, "message.timeout.ms": 3000,
                              "retries": 0})
                out = []
                p.produce("replicated", partition=0, value=b"x",
                          on_delivery=lambda e, m: out.append(e))
                p.flush(10)
                results[acks] = out
            assert results["1"] == [None], results
            assert results["all"] and results["all"][0] is not None, results
        finally:
            follower.proc.send_signal(signal.SIGCONT)
        # Once it is back the same write completes.
        acked_after = produce(bootstrap(nodes), "replicated", 10, "after")
        assert len(acked_after) == 10
    finally:
        for b in nodes:
            b.stop()
