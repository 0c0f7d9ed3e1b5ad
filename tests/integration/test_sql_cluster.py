"""The SQL engines of a three-node cluster: a statement on one node is seen by every node;
each persistent query's tasks (one per input partition when the query is partition-local,
else the whole query) run on exactly one engine each, shared out by the engines' consumer
group; a pull query on any node is answered by the engine holding the key's partition (a
scan gathers every engine's share); when a node is killed its tasks move to the others,
exactly once."""
import json
import re
import time

import requests
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from conftest import Broker, free_port, unique
from test_cluster import FAST, start_all, wait_for


def ksql(url, text, props=None, status=200):
    r = requests.post(url + "/ksql", json={"ksql": text, "streamsProperties": props or {}}, timeout=30)
    assert r.status_code == status, r.text
    return r.json()


def pull(url, text):
    r = requests.post(url + "/query-stream", json={"sql": text, "properties": {}},
                      headers={"accept": "application/json"}, timeout=30)
    return r.status_code, r.json()


def read_committed(bootstrap, topic, want, timeout=60):
    """(key, value) of `topic`'s committed records from the start: until `want` arrived
    (or `timeout`), then two more seconds for any extra (a duplicate would show)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("check"),
                  "auto.offset.reset": "earliest", "isolation.level": "read_committed",
                  "enable.auto.commit": False})
    c.subscribe([topic])
    got, deadline = [], time.time() + timeout
    while time.time() < deadline and len(got) < want:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append((m.key().decode(), json.loads(m.value())))
    end = time.time() + 2
    while time.time() < end:
        m = c.poll(0.2)
        if m is not None and not m.error():
            got.append((m.key().decode(), json.loads(m.value())))
    c.close()
    return got


def assigned(node):
    """The queries this node's engine was last assigned (from its log)."""
    lines = [l for l in node.log_text().splitlines() if "SQL engine: queries assigned" in l]
    if not lines:
        return None
    return set(re.findall(r'"([^"]+)"', lines[-1].split("queries=", 1)[1]))


def test_sql_engines_share_queries_follow_statements_route_pull_queries_and_fail_over(tmp_path):
    n = 3
    ports = [free_port() for _ in range(n)]
    controller_ports = [free_port() for _ in range(n)]
    sql_ports = [free_port() for _ in range(n)]
    voters = ",".join(f"{i + 1}@127.0.0.1:{controller_ports[i]}" for i in range(n))
    nodes = [
        Broker(tmp_path / f"node{i + 1}", port=ports[i], config_text=FAST,
               extra_args=["--node-id", str(i + 1), "--controller-quorum-voters", voters,
                           "--sql-listen", f"127.0.0.1:{sql_ports[i]}"])
        for i in range(n)
    ]
    urls = [f"http://127.0.0.1:{p}" for p in sql_ports]
    start_all(nodes)
    try:
        for b in nodes:
            wait_for(lambda: len(AdminClient({"bootstrap.servers": b.bootstrap})
                                 .list_topics(timeout=10).brokers) == n, what="all brokers known")
        def serving(url):
            try:
                return requests.get(url + "/info", timeout=2).ok
            except requests.ConnectionError:
                return False
        for url in urls:
            wait_for(lambda: serving(url), timeout=60, what="the SQL engines")
        topic = unique("clicks")
        ksql(urls[0], f"CREATE STREAM clicks (user STRING KEY, n INT) "
                      f"WITH (kafka_topic='{topic}', partitions=3, value_format='JSON');")
        ksql(urls[0], "CREATE TABLE totals AS SELECT user, COUNT(*) AS c, SUM(n) AS s FROM clicks GROUP BY user;",
             {"ksql.streams.auto.offset.reset": "earliest"})
        ksql(urls[1], "CREATE STREAM big AS SELECT user, n FROM clicks WHERE n >= 5;",
             {"ksql.streams.auto.offset.reset": "earliest"})
        # Grouped by a value column: records of a group come from every partition, so a
        # repartitioning task per input partition writes each record to the partition of
        # its group in an internal topic, and an aggregating task per partition reads it.
        ksql(urls[2], "CREATE TABLE by_n AS SELECT n, COUNT(*) AS c FROM clicks GROUP BY n;",
             {"ksql.streams.auto.offset.reset": "earliest"})
        # A join on both inputs' keys: partition p of one meets partition p of the other.
        users_topic = unique("users")
        ksql(urls[0], f"CREATE TABLE users (id STRING PRIMARY KEY, region STRING) "
                      f"WITH (kafka_topic='{users_topic}', partitions=3, value_format='JSON');")
        ksql(urls[1], "CREATE STREAM enriched AS SELECT c.user AS user, c.n AS n, u.region AS region "
                      "FROM clicks c JOIN users u ON c.user = u.id;",
             {"ksql.streams.auto.offset.reset": "earliest"})
        # A table aggregated by a value column: its changes go through a repartition topic
        # carrying the row each replaces, so a row that changes region leaves the old one.
        ksql(urls[2], "CREATE TABLE per_region AS SELECT region, COUNT(*) AS c FROM users GROUP BY region;",
             {"ksql.streams.auto.offset.reset": "earliest"})
        # A stream–table join on a stream column that is not its key: the orders (keyed
        # by order id) and the users table both go through repartition topics, placed by
        # user id with Kafka's partitioner (librdkafka, which wrote the users, places keys
        # otherwise), and a task per partition joins them.
        orders_topic = unique("orders")
        ksql(urls[0], f"CREATE STREAM orders (oid STRING KEY, uid STRING, amount INT) "
                      f"WITH (kafka_topic='{orders_topic}', partitions=3, value_format='JSON');")
        ksql(urls[1], "CREATE STREAM order_regions AS SELECT o.uid AS uid, o.oid AS oid, o.amount AS amount, "
                      "u.region AS region FROM orders o JOIN users u ON o.uid = u.id;",
             {"ksql.streams.auto.offset.reset": "earliest"})
        # A stream–stream join on value columns: both streams go through repartition
        # topics placed by order id, a task per partition joins them within the window,
        # and what the windows no longer need is purged from both topics.
        shipments_topic, deliveries_topic = unique("shipments"), unique("deliveries")
        ksql(urls[2], f"CREATE STREAM shipments (sid STRING KEY, oid STRING) "
                      f"WITH (kafka_topic='{shipments_topic}', partitions=3, value_format='JSON');")
        ksql(urls[2], f"CREATE STREAM deliveries (did STRING KEY, oid STRING) "
                      f"WITH (kafka_topic='{deliveries_topic}', partitions=3, value_format='JSON');")
        ksql(urls[0], "CREATE STREAM delivered AS SELECT s.oid AS oid, s.sid AS sid, d.did AS did "
                      "FROM shipments s JOIN deliveries d WITHIN 5 SECONDS GRACE PERIOD 1 SECOND "
                      "ON s.oid = d.oid;",
             {"ksql.streams.auto.offset.reset": "earliest"})
        # Every engine follows the statements made on the others.
        for url in urls:
            wait_for(lambda: {s["name"] for s in ksql(url, "SHOW STREAMS;")[0]["streams"]} >= {"CLICKS", "BIG"},
                     what="every engine knows the streams")
            wait_for(lambda: len(ksql(url, "SHOW QUERIES;")[0]["queries"]) == 7, what="every engine knows the queries")
        queries = {q["id"] for q in ksql(urls[2], "SHOW QUERIES;")[0]["queries"]}
        totals_id = next(q for q in queries if q.startswith("CTAS_TOTALS"))
        by_n_id = next(q for q in queries if q.startswith("CTAS_BY_N"))
        big_id = next(q for q in queries if q.startswith("CSAS_BIG"))
        enriched_id = next(q for q in queries if q.startswith("CSAS_ENRICHED"))
        region_id = next(q for q in queries if q.startswith("CTAS_PER_REGION"))
        orders_id = next(q for q in queries if q.startswith("CSAS_ORDER_REGIONS"))
        delivered_id = next(q for q in queries if q.startswith("CSAS_DELIVERED"))
        tasks = ({f"{q}#{p}" for q in (totals_id, big_id, by_n_id, enriched_id, region_id, orders_id,
                                       delivered_id) for p in range(3)}
                 | {f"{q}#r{p}" for q in (by_n_id, region_id, orders_id, delivered_id) for p in range(3)}
                 | {f"{q}#t{p}" for q in (orders_id, delivered_id) for p in range(3)})

        def owners():
            shares = [assigned(b) if b.alive() else None for b in nodes]
            live = [s for s in shares if s is not None]
            union = set().union(*live) if live else set()
            if union != tasks or sum(len(s) for s in live) != len(tasks):
                return None  # not settled: a task unassigned or assigned twice
            return shares
        shares = wait_for(owners, timeout=60, what="each task assigned to exactly one engine")
        # Thirty-nine tasks over three engines: thirteen each.
        assert all(len(s) == 13 for s in shares), shares
        # The table's partitions are spread: no engine holds all of TOTALS.
        assert all(sum(t.startswith(totals_id + "#") for t in s) < 3 for s in shares), shares
        owner = next(i for i, s in enumerate(shares) if any(t.startswith(totals_id + "#") for t in s))
        # EXPLAIN names each task, the partition it reads and the engine running it.
        explained = ksql(urls[2], f"EXPLAIN {by_n_id};")[0]["queryDescription"]
        tasks_seen = {t["taskId"]: t for t in explained["tasksMetadata"]}
        assert set(tasks_seen) == {f"{by_n_id}#{p}" for p in range(3)} | {f"{by_n_id}#r{p}" for p in range(3)}
        assert tasks_seen[f"{by_n_id}#r1"]["topicPartitions"] == [{"topic": topic, "partition": 1}]
        assert tasks_seen[f"{by_n_id}#2"]["topicPartitions"] == [
            {"topic": f"_strata_ksql_{by_n_id}_repartition", "partition": 2}]
        hosts = {u.removeprefix("http://") for u in urls}
        assert all(t["host"] in hosts for t in tasks_seen.values()), tasks_seen
        assert set(explained["ksqlHostQueryStatus"]) <= hosts and len(explained["ksqlHostQueryStatus"]) >= 2

        bootstrap = ",".join(b.bootstrap for b in nodes)
        p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
        users = [f"u{i}" for i in range(60)]
        for i, u in enumerate(users):
            p.produce(users_topic, key=u.encode(), value=json.dumps({"region": f"r{i % 4}"}))
        p.flush(30)
        time.sleep(1)  # the table side is read before the clicks that look it up
        for round_ in range(3):
            for u in users:
                p.produce(topic, key=u.encode(), value=json.dumps({"n": round_ * 3}))
        for i in range(90):
            p.produce(orders_topic, key=f"o{i}".encode(), value=json.dumps({"uid": users[i % 60], "amount": i}))
        # Shipped and delivered two minutes ago, 5 ms apart; ten orders shipped now, not
        # yet delivered (the join's window holds them through the kill).
        shipped_at = int(time.time() * 1000)
        long_ago = shipped_at - 120_000
        def shipped(i, at):
            p.produce(shipments_topic, key=f"s{i}".encode(), value=json.dumps({"oid": f"o{i}"}), timestamp=at)
        def delivered(i, at):
            p.produce(deliveries_topic, key=f"d{i}".encode(), value=json.dumps({"oid": f"o{i}"}), timestamp=at)
        # Then at once shipments two minutes later: whichever repartitioning runs ahead,
        # the join waits for the other input's (its records may come after those of a
        # later time), so none of the pairs is judged late.
        for i in range(90):
            shipped(i, long_ago + 10 * i)
            delivered(i, long_ago + 10 * i + 5)
        p.flush(30)
        for i in range(90, 100):
            shipped(i, shipped_at + i)
        p.flush(30)

        def table_rows(url, user):
            status, body = pull(url, f"SELECT * FROM totals WHERE user = '{user}';")
            return body[1:] if status == 200 and isinstance(body, list) else None
        # A pull query on any engine is answered by the one holding the key's partition;
        # a scan gathers every engine's share.
        for url in urls:
            # (librdkafka's default partitioner is not Kafka's: a key not in the partition
            # Kafka's would pick is looked for in the others.)
            for u in ("u7", "u8", "u9", "u30"):
                assert wait_for(lambda: table_rows(url, u) == [[u, 3, 9]], timeout=60,
                                what=f"a pull query for {u} through {url}")
            assert table_rows(url, "nobody") == []
            def scan():
                status, body = pull(url, "SELECT * FROM totals;")
                return sorted(map(tuple, body[1:])) if status == 200 else body
            assert wait_for(lambda: scan() == sorted((u, 3, 9) for u in users), timeout=60,
                            what=f"a scan through {url}")
            status, body = pull(url, "SELECT * FROM totals LIMIT 7;")
            assert status == 200 and len(body) == 8, body
            assert wait_for(lambda: pull(url, "SELECT * FROM by_n WHERE n = 3;")[1][1:] == [[3, 60]],
                            timeout=60, what=f"a pull query on the repartitioned table through {url}")
            assert wait_for(lambda: sorted(map(tuple, pull(url, "SELECT * FROM per_region;")[1][1:]))
                            == [(f"r{k}", 15) for k in range(4)], timeout=60,
                            what=f"the table aggregated by region through {url}")

        # Committed (pull queries read the engine's state as it processes).
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("probe"),
                      "auto.offset.reset": "earliest", "isolation.level": "read_committed"})
        c.subscribe(["TOTALS"])
        seen, deadline = 0, time.time() + 60
        while seen < 3 * len(users) and time.time() < deadline:
            m = c.poll(0.5)
            seen += m is not None and not m.error()
        c.close()
        assert seen == 3 * len(users), f"{seen} committed updates before the kill"
        got = read_committed(bootstrap, "DELIVERED", 90)
        assert len(got) == 90, sorted(int(k[1:]) for k, _ in got)

        # The owner dies: its queries move to the live engines, which carry on exactly once.
        nodes[owner].kill9()
        live_urls = [u for i, u in enumerate(urls) if i != owner]
        moved = {t for t in shares[owner] if t.startswith(totals_id + "#")}
        wait_for(lambda: owners() is not None, timeout=90, what="the dead engine's tasks reassigned")
        p = Producer({"bootstrap.servers": ",".join(b.bootstrap for b in nodes if b.alive()),
                      "enable.idempotence": True})
        for u in users:
            p.produce(topic, key=u.encode(), value=json.dumps({"n": 1}))
        for i in range(90, 120):
            p.produce(orders_topic, key=f"o{i}".encode(), value=json.dumps({"uid": users[i % 60], "amount": i}))
        # The ten shipped before the kill are delivered (5 ms later, by their time): they
        # meet shipments the new owners rebuilt from the repartition topic.
        for i in range(90, 100):
            delivered(i, shipped_at + i + 5)
        p.flush(30)
        live = ",".join(b.bootstrap for b in nodes if b.alive())
        got = read_committed(live, "DELIVERED", 100)
        assert len(got) == 100, sorted(int(k[1:]) for k, _ in got)
        for i in range(100, 120):
            now = int(time.time() * 1000)
            shipped(i, now)
            delivered(i, now + 5)
        p.flush(30)
        for url in live_urls:
            assert wait_for(lambda: table_rows(url, "u7") == [["u7", 4, 10]], timeout=90,
                            what=f"a pull query after the failover through {url}")
        # Exactly once through the move: one committed update per input record.
        live = ",".join(b.bootstrap for b in nodes if b.alive())
        updates = read_committed(live, "TOTALS", 4 * len(users))
        assert len(updates) == 4 * len(users), f"{len(updates)} updates for {4 * len(users)} records"
        counts = {}
        for user, v in updates:
            counts.setdefault(user, []).append(v["C"])
        assert all(sorted(cs) == [1, 2, 3, 4] for cs in counts.values()), counts
        for url in live_urls:
            # Each record counted once through the repartition topic across the failover.
            assert wait_for(lambda: sorted(map(tuple, pull(url, "SELECT * FROM by_n;")[1][1:]))
                            == [(0, 60), (1, 60), (3, 60), (6, 60)], timeout=90,
                            what=f"the repartitioned counts after the failover through {url}")
            status, body = pull(url, "SELECT * FROM totals;")
            assert status == 200 and sorted(map(tuple, body[1:])) == sorted((u, 4, 10) for u in users), body
        # What the aggregation after the repartition committed is purged from the
        # repartition topic (every 10 s, idle or not), on every partition.
        from confluent_kafka import TopicPartition
        probe = Consumer({"bootstrap.servers": live, "group.id": unique("wm")})
        repartition = f"_strata_ksql_{by_n_id}_repartition"
        def lows():
            return [probe.get_watermark_offsets(TopicPartition(repartition, p), timeout=10)[0]
                    for p in range(3)]
        wait_for(lambda: all(low > 0 for low in lows()), timeout=60,
                 what=f"the repartition topic purged (low watermarks {lows()})")
        # Every shipment met its delivery exactly once through the split stream–stream
        # join, across the kill.
        delivered = read_committed(live, "DELIVERED", 120)
        assert sorted((k, v["SID"], v["DID"]) for k, v in delivered) == sorted(
            (f"o{i}", f"s{i}", f"d{i}") for i in range(120)), f"{len(delivered)} delivered"
        # Both streams' repartition topics are purged below the windows' horizon: the
        # records of two minutes ago are gone, the recent ones are kept for the window.
        for internal in (f"_strata_ksql_{delivered_id}_repartition",
                         f"_strata_ksql_{delivered_id}_repartition_right"):
            def spans():
                return [probe.get_watermark_offsets(TopicPartition(internal, p), timeout=10)
                        for p in range(3)]
            wait_for(lambda: all(0 < low < high for low, high in spans()), timeout=60,
                     what=f"{internal} purged below the horizon ({spans()})")
        probe.close()
        # Every click enriched exactly once, by the engines running the join's partitions.
        joined = read_committed(live, "ENRICHED", 4 * len(users))
        assert sorted((u, v["N"]) for u, v in joined) == sorted(
            (u, n) for u in users for n in (0, 3, 6, 1)), f"{len(joined)} joined records"
        assert all(v["REGION"] == f"r{int(u[1:]) % 4}" for u, v in joined)
        # Every order joined exactly once through the repartitioned join, across the kill.
        orders = read_committed(live, "ORDER_REGIONS", 120)
        assert sorted(v["OID"] for _, v in orders) == sorted(f"o{i}" for i in range(120)), f"{len(orders)} orders"
        assert all(uid == users[int(v["OID"][1:]) % 60] and v["REGION"] == f"r{int(uid[1:]) % 4}"
                   for uid, v in orders), orders[:5]
        # Twenty users move to a new region, five from each: each leaves its old group
        # (its row carried through the repartition topic) and joins the new one; a user
        # deleted leaves its group.
        p = Producer({"bootstrap.servers": live, "enable.idempotence": True})
        for u in users[:20]:
            p.produce(users_topic, key=u.encode(), value=json.dumps({"region": "r9"}))
        p.produce(users_topic, key=b"u59", value=None)
        p.flush(30)
        want = [("r0", 10), ("r1", 10), ("r2", 10), ("r3", 9), ("r9", 20)]
        for url in live_urls:
            assert wait_for(lambda: sorted(map(tuple, pull(url, "SELECT * FROM per_region;")[1][1:])) == want,
                            timeout=90, what=f"the regions after the moves through {url}")
            assert pull(url, "SELECT * FROM per_region WHERE region = 'r9';")[1][1:] == [["r9", 20]]
        # The new owners took the moved tasks' state from their changelog partitions.
        restored = [l for i, b in enumerate(nodes) if i != owner for l in b.log_text().splitlines()
                    if "aggregate state restored" in l]
        for task in moved:
            assert any(task in l and "groups=0 " not in l for l in restored), (task, restored)
    finally:
        for b in nodes:
            b.stop()
        for b in nodes:
            assert "panicked" not in b.log_text()
