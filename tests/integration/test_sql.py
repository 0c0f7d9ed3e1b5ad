"""Streaming SQL through ksqlDB's REST API, fed and read by real Kafka clients
(librdkafka via confluent-kafka), over HTTP/1.1 (requests) and HTTP/2 (httpx, h2c)."""
import json
import struct
import threading
import time

import pytest
import requests
from confluent_kafka import Consumer, Producer

from conftest import Broker, free_port, unique


def sql_broker(tmp_path, name="data", extra=()):
    port = free_port()
    b = Broker(tmp_path / name, extra_args=["--sql-listen", f"127.0.0.1:{port}", *extra]).start()
    b.sql = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            if requests.get(b.sql + "/info", timeout=2).ok:
                return b
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the SQL engine did not start serving")


def ksql(b, text, props=None, status=200):
    r = requests.post(b.sql + "/ksql", json={"ksql": text, "streamsProperties": props or {}}, timeout=30)
    assert r.status_code == status, r.text
    return r.json()


def murmur2(data):
    """Kafka's murmur2 (Utils.murmur2), as a 32-bit unsigned value."""
    m, r = 0x5BD1E995, 24
    h = (0x9747B28C ^ len(data)) & 0xFFFFFFFF
    n = len(data) // 4
    for i in range(n):
        k = int.from_bytes(data[4 * i:4 * i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    rest = data[4 * n:]
    if len(rest) >= 3:
        h ^= rest[2] << 16
    if len(rest) >= 2:
        h ^= rest[1] << 8
    if len(rest) >= 1:
        h ^= rest[0]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def consume_all(bootstrap, topic, want, timeout=30):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("g"), "auto.offset.reset": "earliest",
                  "isolation.level": "read_committed"})
    c.subscribe([topic])
    out = []
    deadline = time.time() + timeout
    while len(out) < want and time.time() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        out.append(m)
    # Anything beyond what was expected would be a duplicate: wait a little for it.
    end = time.time() + 1.0
    while time.time() < end:
        m = c.poll(0.2)
        if m is not None and not m.error():
            out.append(m)
    c.close()
    return out


@pytest.fixture
def sqlb(tmp_path):
    b = sql_broker(tmp_path)
    yield b
    b.stop()
    assert "panicked" not in b.log_text(), b.log_text()[-3000:]


def test_info_and_healthcheck(sqlb):
    info = requests.get(sqlb.sql + "/info").json()
    assert info["KsqlServerInfo"]["serverStatus"] == "RUNNING"
    assert requests.get(sqlb.sql + "/healthcheck").json()["isHealthy"] is True


def test_a_producer_feeds_a_stream_and_a_persistent_query_filters_and_projects_it(sqlb):
    src = unique("orders")
    entities = ksql(sqlb, f"""
        CREATE STREAM orders (id INT KEY, item STRING, qty INT, price DECIMAL(6,2))
          WITH (kafka_topic='{src}', partitions=3, value_format='JSON');
        CREATE STREAM big_orders WITH (kafka_topic='{src}-big') AS
          SELECT id, UCASE(item) AS item, qty * price AS total FROM orders WHERE qty >= 10;
    """, {"ksql.streams.auto.offset.reset": "earliest"})
    assert entities[0]["commandStatus"]["message"] == "Stream created"
    query_id = entities[1]["commandStatus"]["queryId"]
    assert query_id.startswith("CSAS_BIG_ORDERS_")

    p = Producer({"bootstrap.servers": sqlb.bootstrap})
    for i in range(200):
        p.produce(src, key=struct.pack(">i", i), value=json.dumps({"item": f"w{i}", "qty": i % 20, "price": 1.25}))
    p.flush(10)

    out = consume_all(sqlb.bootstrap, f"{src}-big", 100)
    got = {struct.unpack(">i", m.key())[0]: json.loads(m.value()) for m in out}
    assert len(out) == 100, "each qualifying order once"
    assert got == {i: {"ITEM": f"W{i}", "TOTAL": (i % 20) * 1.25} for i in range(200) if i % 20 >= 10}
    # A key goes to the partition Kafka's default partitioner (murmur2) picks, as ksqlDB
    # writes it: the same partition a Java producer would choose.
    assert all(m.partition() == (murmur2(m.key()) & 0x7FFFFFFF) % 3 for m in out)
    queries = ksql(sqlb, "SHOW QUERIES;")[0]["queries"]
    assert [q["id"] for q in queries] == [query_id] and queries[0]["state"] == "RUNNING"
    described = ksql(sqlb, "DESCRIBE big_orders;")[0]["sourceDescription"]
    assert [(f["name"], f["schema"]["type"], f.get("type")) for f in described["fields"]] == [
        ("ID", "INTEGER", "KEY"), ("ITEM", "STRING", None), ("TOTAL", "DECIMAL", None)]
    assert described["topic"] == f"{src}-big" and described["partitions"] == 3


def test_push_queries_stream_rows_as_they_arrive_over_http1_and_http2(sqlb):
    src = unique("clicks")
    ksql(sqlb, f"CREATE STREAM clicks (user VARCHAR KEY, page VARCHAR) WITH (kafka_topic='{src}', partitions=1, value_format='JSON');")
    ksql(sqlb, "INSERT INTO clicks (user, page) VALUES ('ann', 'home');")

    rows, header = [], {}
    ready = threading.Event()

    def listen():
        with requests.post(sqlb.sql + "/query-stream", stream=True, timeout=30,
                           json={"sql": "SELECT user, page FROM clicks WHERE page != 'skip' EMIT CHANGES LIMIT 3;",
                                 "properties": {"auto.offset.reset": "earliest"}}) as r:
            assert r.status_code == 200
            lines = r.iter_lines()
            header.update(json.loads(next(lines)))
            ready.set()
            for line in lines:
                if line:
                    rows.append(json.loads(line))

    t = threading.Thread(target=listen)
    t.start()
    assert ready.wait(10)
    p = Producer({"bootstrap.servers": sqlb.bootstrap})
    for user, page in [("bob", "skip"), ("bob", "cart"), ("cy", "pay"), ("dee", "late")]:
        p.produce(src, key=user.encode(), value=json.dumps({"page": page}))
        p.flush(10)
    t.join(30)
    assert not t.is_alive(), "LIMIT 3 ends the response"
    assert header["columnNames"] == ["USER", "PAGE"] and header["columnTypes"] == ["STRING", "STRING"]
    assert rows == [["ann", "home"], ["bob", "cart"], ["cy", "pay"]]

    # The v1 endpoint: a JSON array of a header, rows and a final message.
    r = requests.post(sqlb.sql + "/query", timeout=30,
                      json={"ksql": "SELECT * FROM clicks EMIT CHANGES LIMIT 2;",
                            "streamsProperties": {"ksql.streams.auto.offset.reset": "earliest"}})
    body = json.loads(r.text)
    assert body[0]["header"]["schema"] == "`USER` STRING, `PAGE` STRING"
    assert [x["row"]["columns"] for x in body[1:3]] == [["ann", "home"], ["bob", "skip"]]
    assert body[3] == {"finalMessage": "Limit Reached"}

    # HTTP/2 over cleartext (prior knowledge), as ksqlDB's Java client speaks it.
    httpx = pytest.importorskip("httpx")
    with httpx.Client(http1=False, http2=True, timeout=30) as h2:
        r = h2.post(sqlb.sql + "/query-stream", headers={"accept": "application/json"},
                    json={"sql": "SELECT page FROM clicks EMIT CHANGES LIMIT 4;",
                          "properties": {"auto.offset.reset": "earliest"}})
        assert r.http_version == "HTTP/2"
        body = r.json()
        assert body[0]["columnNames"] == ["PAGE"]
        assert body[1:] == [["home"], ["skip"], ["cart"], ["pay"]]
        assert h2.get(sqlb.sql + "/info").json()["KsqlServerInfo"]["serverStatus"] == "RUNNING"


def test_push_queries_from_latest_share_one_scan_of_their_source(sqlb):
    """Twenty push queries from the latest offsets of one stream, with two different
    filters, read it through one shared scan; each gets exactly its own rows, in order."""
    src = unique("ticks")
    ksql(sqlb, f"CREATE STREAM ticks (sym VARCHAR KEY, px INT) WITH (kafka_topic='{src}', partitions=2, value_format='JSON');")
    n, results, ready = 20, {}, threading.Barrier(21)

    def listen(i):
        where = "px % 2 = 0" if i % 2 == 0 else "px % 2 = 1"
        with requests.post(sqlb.sql + "/query-stream", stream=True, timeout=60,
                           json={"sql": f"SELECT sym, px FROM ticks WHERE {where} EMIT CHANGES LIMIT 50;",
                                 "properties": {}}) as r:
            assert r.status_code == 200
            lines = r.iter_lines()
            next(lines)
            ready.wait(30)
            results[i] = [json.loads(line) for line in lines if line]

    threads = [threading.Thread(target=listen, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    ready.wait(30)
    time.sleep(0.5)  # every subscriber attached to the scan
    p = Producer({"bootstrap.servers": sqlb.bootstrap})
    for px in range(100):
        p.produce(src, key=b"s", value=json.dumps({"px": px}))
    p.flush(10)
    for t in threads:
        t.join(60)
    assert all(not t.is_alive() for t in threads)
    for i in range(n):
        want = [["s", px] for px in range(100) if px % 2 == i % 2]
        assert results[i] == want, i
    started = [l for l in sqlb.log_text().splitlines() if "shared scan started" in l and src in l]
    assert len(started) == 1, started


def test_a_push_query_is_closed_by_close_query(sqlb):
    src = unique("ticks")
    ksql(sqlb, f"CREATE STREAM ticks (n INT) WITH (kafka_topic='{src}', partitions=1, value_format='JSON');")
    with requests.post(sqlb.sql + "/query-stream", stream=True, timeout=30,
                       json={"sql": "SELECT * FROM ticks EMIT CHANGES;", "properties": {}}) as r:
        lines = r.iter_lines()
        query_id = json.loads(next(lines))["queryId"]
        c = requests.post(sqlb.sql + "/close-query", json={"queryId": query_id}, timeout=10)
        assert c.status_code == 200
        assert list(x for x in lines if x) == [], "the response ends once the query is closed"
    c = requests.post(sqlb.sql + "/close-query", json={"queryId": query_id}, timeout=10)
    assert c.status_code == 400


def test_streams_and_persistent_queries_survive_kill_9(tmp_path):
    b = sql_broker(tmp_path)
    try:
        src = unique("events")
        ksql(b, f"""
            CREATE STREAM events (id BIGINT KEY, v INT) WITH (kafka_topic='{src}', partitions=2, value_format='JSON');
            CREATE STREAM doubled AS SELECT id, v * 2 AS v2 FROM events;
        """, {"ksql.streams.auto.offset.reset": "earliest"})
        p = Producer({"bootstrap.servers": b.bootstrap})
        for i in range(50):
            p.produce(src, key=struct.pack(">q", i), value=json.dumps({"v": i}))
        p.flush(10)
        assert len(consume_all(b.bootstrap, "DOUBLED", 50)) >= 50
        b.kill9()
        b.start()
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                requests.get(b.sql + "/info", timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        assert [q["sinks"] for q in ksql(b, "SHOW QUERIES;")[0]["queries"]] == [["DOUBLED"]]
        assert {s["name"] for s in ksql(b, "SHOW STREAMS;")[0]["streams"]} == {"EVENTS", "DOUBLED"}
        p = Producer({"bootstrap.servers": b.bootstrap})
        for i in range(50, 80):
            p.produce(src, key=struct.pack(">q", i), value=json.dumps({"v": i}))
        p.flush(10)
        out = consume_all(b.bootstrap, "DOUBLED", 80)
        got = {struct.unpack(">q", m.key())[0]: json.loads(m.value())["V2"] for m in out}
        assert got == {i: 2 * i for i in range(80)}, "every input's output, after the restart too"
    finally:
        b.stop()


def test_terminate_drop_and_delete_topic(sqlb):
    src = unique("raw")
    ksql(sqlb, f"""
        CREATE STREAM raw (v STRING) WITH (kafka_topic='{src}', partitions=1, value_format='DELIMITED');
        CREATE STREAM copy AS SELECT * FROM raw;
    """)
    err = ksql(sqlb, "DROP STREAM raw;", status=400)
    assert err["@type"] == "statement_error" and "The following queries read from this source" in err["message"]
    qid = ksql(sqlb, "SHOW QUERIES;")[0]["queries"][0]["id"]
    assert ksql(sqlb, f"TERMINATE {qid};")[0]["commandStatus"]["message"] == "Query terminated."
    ksql(sqlb, "DROP STREAM copy DELETE TOPIC;")
    topics = {t["name"] for t in ksql(sqlb, "SHOW TOPICS;")[0]["topics"]}
    assert "COPY" not in topics and src in topics
    assert ksql(sqlb, "DROP STREAM IF EXISTS copy;")[0]["commandStatus"]["status"] == "SUCCESS"


def test_bad_requests_get_ksqldb_errors_and_the_engine_keeps_serving(sqlb):
    err = ksql(sqlb, "SELEC 1;", status=400)
    assert err["@type"] == "statement_error" and err["message"].startswith("line 1:1: Syntax Error")
    err = ksql(sqlb, "CREATE STREAM s (a INT) WITH (kafka_topic='nope', value_format='JSON');", status=400)
    assert "Topic 'nope' does not exist" in err["message"]
    # The statements before a failing one ran; their entities come with the error.
    src = unique("ok")
    err = ksql(sqlb, f"CREATE STREAM ok (a INT) WITH (kafka_topic='{src}', partitions=1, value_format='JSON'); DROP STREAM missing;", status=400)
    assert len(err["entities"]) == 1 and "missing" in err["message"].lower()
    err = ksql(sqlb, "SELECT * FROM ok EMIT CHANGES;", status=400)
    assert "/query" in err["message"]
    r = requests.post(sqlb.sql + "/ksql", data=b"{not json", timeout=10)
    assert r.status_code == 400 and r.json()["@type"] == "generic_error"
    r = requests.post(sqlb.sql + "/ksql", data=b"x" * (2 << 20), timeout=10)
    assert r.status_code == 413
    r = requests.post(sqlb.sql + "/query-stream", json={"sql": "SELECT * FROM missing EMIT CHANGES;"}, timeout=10)
    assert r.status_code == 400 and "MISSING does not exist" in r.json()["message"]
    assert requests.get(sqlb.sql + "/nowhere", timeout=10).status_code == 404
    assert ksql(sqlb, "SHOW STREAMS;")[0]["streams"][0]["name"] == "OK"


def latest_per_key(messages):
    out = {}
    for m in messages:
        out[m.key().decode()] = None if m.value() is None else json.loads(m.value())
    return out


def test_a_group_by_table_keeps_its_state_across_kill_9(tmp_path):
    b = sql_broker(tmp_path)
    try:
        src = unique("pageviews")
        ksql(b, f"""
            CREATE STREAM pageviews (page STRING KEY, user STRING, ms INT)
              WITH (kafka_topic='{src}', partitions=2, value_format='JSON');
            CREATE TABLE page_stats AS SELECT page, COUNT(*) AS views, SUM(ms) AS total_ms,
              COUNT_DISTINCT(user) AS users, LATEST_BY_OFFSET(user) AS last_user
              FROM pageviews GROUP BY page HAVING COUNT(*) < 1000;
        """, {"ksql.streams.auto.offset.reset": "earliest"})
        pages = ["home", "cart", "pay"]
        p = Producer({"bootstrap.servers": b.bootstrap})
        for i in range(60):
            p.produce(src, key=pages[i % 3].encode(), value=json.dumps({"user": f"u{i % 7}", "ms": i}))
        p.flush(10)
        first = latest_per_key(consume_all(b.bootstrap, "PAGE_STATS", 60))
        assert first["home"]["VIEWS"] == 20 and first["home"]["TOTAL_MS"] == sum(range(0, 60, 3))
        b.kill9()
        b.start()
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                requests.get(b.sql + "/info", timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        p = Producer({"bootstrap.servers": b.bootstrap})
        for i in range(60, 90):
            p.produce(src, key=pages[i % 3].encode(), value=json.dumps({"user": f"u{i % 7}", "ms": i}))
        p.flush(10)
        final = latest_per_key(consume_all(b.bootstrap, "PAGE_STATS", 90))
        for k, page in enumerate(pages):
            mine = [i for i in range(90) if i % 3 == k]
            assert final[page] == {
                "VIEWS": 30, "TOTAL_MS": sum(mine), "USERS": len({i % 7 for i in mine}),
                "LAST_USER": f"u{mine[-1] % 7}",
            }, "the counts carry on from the changelog after the restart"
    finally:
        b.stop()


def test_an_aggregation_restarts_from_its_local_state_store_and_the_changelog_tail(tmp_path):
    """The groups come back from the store file (flushed every 5 s) and only the changelog
    records written after its last flush are read again; the results are those of an
    engine that never stopped. A store that cannot be trusted is rebuilt from the
    changelog."""
    b = sql_broker(tmp_path)
    try:
        src = unique("clicks")
        ksql(b, f"""
            CREATE STREAM clicks (user STRING KEY, n INT)
              WITH (kafka_topic='{src}', partitions=1, value_format='JSON');
            CREATE TABLE click_totals AS SELECT user, COUNT(*) AS c, SUM(n) AS s
              FROM clicks GROUP BY user;
        """, {"ksql.streams.auto.offset.reset": "earliest"})
        p = Producer({"bootstrap.servers": b.bootstrap})
        users = 2000
        for i in range(users):
            p.produce(src, key=f"u{i}".encode(), value=json.dumps({"n": i}))
        p.flush(10)
        consume_all(b.bootstrap, "CLICK_TOTALS", users)
        p.produce(src, key=b"u1999", value=json.dumps({"n": 1}))
        p.flush(10)
        consume_all(b.bootstrap, "CLICK_TOTALS", users + 1)
        time.sleep(8)  # committed changes reach the store within 5 s (6 when idle)
        stores = list((tmp_path / "data" / "sql-state").glob("*.redb"))
        assert len(stores) == 1, stores
        # The store as it is now; put back after the kill, so the changes made from here on
        # are only in the changelog (an idle query flushes its store within seconds too).
        flushed = stores[0].read_bytes()
        for i in range(10):
            p.produce(src, key=f"u{i}".encode(), value=json.dumps({"n": 1}))
        p.flush(10)
        consume_all(b.bootstrap, "CLICK_TOTALS", users + 11)
        b.kill9()
        stores[0].write_bytes(flushed)
        b.start()
        p = Producer({"bootstrap.servers": b.bootstrap})
        p.produce(src, key=b"u0", value=json.dumps({"n": 5}))
        p.flush(10)
        final = latest_per_key(consume_all(b.bootstrap, "CLICK_TOTALS", users + 12))
        assert final["u0"] == {"C": 3, "S": 0 + 1 + 5}
        assert final["u5"] == {"C": 2, "S": 5 + 1}
        assert final["u1999"] == {"C": 2, "S": 1999 + 1}
        assert final["u1998"] == {"C": 1, "S": 1998}
        restored = [line for line in b.log_text().splitlines() if "aggregate state restored" in line]
        last = restored[-1]
        field = lambda name: int(last.split(f"{name}=")[1].split()[0])
        assert field("from_store") >= users - 10, last
        assert field("replayed") == 10, f"only the tail past the store's offset is read: {last}"
        # A store file that is not a store: removed, and the state rebuilt from the changelog.
        b.stop()
        stores[0].write_bytes(b"not a database")
        b.start()
        p = Producer({"bootstrap.servers": b.bootstrap})
        p.produce(src, key=b"u0", value=json.dumps({"n": 100}))
        p.flush(10)
        final = latest_per_key(consume_all(b.bootstrap, "CLICK_TOTALS", users + 13))
        assert final["u0"] == {"C": 4, "S": 106}
        last = [line for line in b.log_text().splitlines() if "aggregate state restored" in line][-1]
        assert field("from_store") == 0 and field("replayed") >= users, last
        # TERMINATE removes the store.
        qid = [q["id"] for q in ksql(b, "SHOW QUERIES;")[0]["queries"]][0]
        ksql(b, f"TERMINATE {qid};")
        assert not list((tmp_path / "data" / "sql-state").glob("*.redb"))
    finally:
        b.stop()


def test_aggregations_larger_than_their_cache_keep_their_groups_on_disk_and_stay_exact(tmp_path):
    """Each task caches 40 groups; plain, tumbling and session aggregations of 1,200 keys
    keep the rest in their state store on disk. Outputs, pull-query lookups and scans are
    exact, across a kill -9 (the restore streams the changelog into the store, never
    holding the state in memory) and after it."""
    b = sql_broker(tmp_path, extra=["--sql-state-cache-groups", "40"])
    try:
        src = unique("events")
        ksql(b, f"""
            CREATE STREAM events (k STRING KEY, n INT) WITH (kafka_topic='{src}', partitions=1, value_format='JSON');
            CREATE TABLE totals AS SELECT k, COUNT(*) AS c, SUM(n) AS s FROM events GROUP BY k;
            CREATE TABLE per_min AS SELECT k, COUNT(*) AS c FROM events WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY k;
            CREATE TABLE sessions AS SELECT k, COUNT(*) AS c FROM events WINDOW SESSION (60 SECONDS) GROUP BY k;
        """, {"ksql.streams.auto.offset.reset": "earliest"})
        keys, base = 1200, 1_700_000_040_000
        sent = []  # (key, n, timestamp)

        def produce(rounds):
            p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 5})
            for r in rounds:
                for i in range(keys):
                    ts = base + i * 10 + {0: 0, 1: 30_000, 2: 200_000}[r]
                    sent.append((f"k{i}", i + r, ts))
                    p.produce(src, key=f"k{i}".encode(), value=json.dumps({"n": i + r}), timestamp=ts)
            p.flush(30)

        def check():
            want = len(sent)
            totals = latest_per_key(consume_all(b.bootstrap, "TOTALS", want, timeout=60))
            expected = {}
            for k, n, _ in sent:
                c, s = expected.get(k, (0, 0))
                expected[k] = (c + 1, s + n)
            assert totals == {k: {"C": c, "S": s} for k, (c, s) in expected.items()}
            per_min = {}
            for m in consume_all(b.bootstrap, "PER_MIN", want, timeout=60):
                per_min[(m.key()[:-8].decode(), struct.unpack(">q", m.key()[-8:])[0])] = json.loads(m.value())["C"]
            windows = {}
            for k, _, ts in sent:
                w = (k, ts - ts % 60_000)
                windows[w] = windows.get(w, 0) + 1
            assert per_min == windows
            live = {}
            for m in consume_all(b.bootstrap, "SESSIONS", want, timeout=60):
                end, start = struct.unpack(">qq", m.key()[-16:])  # SessionKeySchema: end, then start
                live[(m.key()[:-16].decode(), start, end)] = None if m.value() is None else json.loads(m.value())["C"]
            sessions = {}
            for k in expected:
                times = sorted(ts for kk, _, ts in sent if kk == k)
                runs = [[times[0]]]
                for t in times[1:]:
                    if t - runs[-1][-1] <= 60_000:
                        runs[-1].append(t)
                    else:
                        runs.append([t])
                for run in runs:
                    sessions[(k, run[0], run[-1])] = len(run)
            assert {w: c for w, c in live.items() if c is not None} == sessions
            # Pull queries: lookups through the store, and a whole scan.
            for k in ("k0", "k599", "k1199"):
                r = requests.post(b.sql + "/query-stream", json={"sql": f"SELECT * FROM totals WHERE k = '{k}';"}, timeout=10)
                assert [json.loads(x) for x in r.text.splitlines() if x][1:] == [[k, *expected[k]]], r.text
            r = requests.post(b.sql + "/query-stream", json={"sql": "SELECT * FROM totals;"}, timeout=30)
            rows = [json.loads(x) for x in r.text.splitlines() if x][1:]
            assert sorted(map(tuple, rows)) == sorted((k, c, s) for k, (c, s) in expected.items())

        produce([0, 1])
        check()
        b.kill9()
        b.start()
        wait_sql(b)
        produce([2])
        check()
        restored = [line for line in b.log_text().splitlines()
                    if "aggregate state restored" in line and "CTAS_TOTALS" in line]
        field = lambda line, name: int(line.split(f"{name}=")[1].split()[0])
        assert restored and field(restored[-1], "groups") == keys, restored
        assert field(restored[-1], "cached") <= 40, restored[-1]
    finally:
        b.stop()
    assert "panicked" not in b.log_text()


def test_pull_queries_read_the_materialized_table(sqlb):
    src = unique("payments")
    ksql(sqlb, f"""
        CREATE STREAM payments (account STRING KEY, amount INT) WITH (kafka_topic='{src}', partitions=2, value_format='JSON');
        CREATE TABLE balances AS SELECT account, SUM(amount) AS balance, COUNT(*) AS n FROM payments GROUP BY account;
        CREATE TABLE plain (id INT PRIMARY KEY, v INT) WITH (kafka_topic='{src}-plain', partitions=1, value_format='JSON');
    """, {"ksql.streams.auto.offset.reset": "earliest"})
    p = Producer({"bootstrap.servers": sqlb.bootstrap})
    for i in range(100):
        p.produce(src, key=f"acct{i % 10}".encode(), value=json.dumps({"amount": i}))
    p.flush(10)
    consume_all(sqlb.bootstrap, "BALANCES", 100)

    def pull(sql, accept=None):
        headers = {"accept": accept} if accept else {}
        r = requests.post(sqlb.sql + "/query-stream", json={"sql": sql, "properties": {}}, headers=headers, timeout=10)
        return r

    r = pull("SELECT * FROM balances WHERE account = 'acct3';")
    assert r.status_code == 200, r.text
    lines = [json.loads(x) for x in r.text.splitlines() if x]
    assert lines[0]["columnNames"] == ["ACCOUNT", "BALANCE", "N"]
    assert lines[1:] == [["acct3", sum(range(3, 100, 10)), 10]]
    assert [json.loads(x) for x in pull("SELECT * FROM balances WHERE account = 'nobody';").text.splitlines() if x][1:] == []
    # A full scan with a WHERE on a value column, as a JSON array.
    body = pull("SELECT account, balance FROM balances WHERE balance > 500;", "application/json").json()
    assert sorted(map(tuple, body[1:])) == sorted(
        (f"acct{k}", sum(range(k, 100, 10))) for k in range(10) if sum(range(k, 100, 10)) > 500)
    # The v1 endpoint answers pull queries too.
    v1 = requests.post(sqlb.sql + "/query", json={"ksql": "SELECT balance FROM balances WHERE account = 'acct0';"}, timeout=10).json()
    assert v1[0]["header"]["schema"] == "`BALANCE` INTEGER" and v1[1]["row"]["columns"] == [sum(range(0, 100, 10))]
    r = pull(f"SELECT * FROM payments;")
    assert r.status_code == 400 and "Pull queries are not supported on streams" in r.json()["message"]
    r = pull("SELECT * FROM plain WHERE id = 1;")
    assert r.status_code == 400 and "isn't queryable" in r.json()["message"]


def test_a_tumbling_window_count_keys_rows_by_window_start(sqlb):
    src = unique("readings")
    ksql(sqlb, f"""
        CREATE STREAM readings (sensor STRING KEY, temp DOUBLE) WITH (kafka_topic='{src}', partitions=1, value_format='JSON');
        CREATE TABLE per_minute AS SELECT sensor, WINDOWSTART AS ws, WINDOWEND AS we, COUNT(*) AS n, MAX(temp) AS hottest
          FROM readings WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY sensor;
    """, {"ksql.streams.auto.offset.reset": "earliest"})
    p = Producer({"bootstrap.servers": sqlb.bootstrap})
    base = 1_700_000_040_000  # a minute boundary
    for i, (sensor, offset_s, temp) in enumerate([("a", 1, 20.5), ("a", 30, 21.0), ("b", 59, 5.0), ("a", 61, 19.0)]):
        p.produce(src, key=sensor.encode(), value=json.dumps({"temp": temp}), timestamp=base + offset_s * 1000)
    p.flush(10)
    out = consume_all(sqlb.bootstrap, "PER_MINUTE", 4)
    rows = [(m.key()[:-8].decode(), struct.unpack(">q", m.key()[-8:])[0], json.loads(m.value()), m.timestamp()[1]) for m in out]
    assert rows == [
        ("a", base, {"WS": base, "WE": base + 60_000, "N": 1, "HOTTEST": 20.5}, base + 1000),
        ("a", base, {"WS": base, "WE": base + 60_000, "N": 2, "HOTTEST": 21.0}, base + 30_000),
        ("b", base, {"WS": base, "WE": base + 60_000, "N": 1, "HOTTEST": 5.0}, base + 59_000),
        ("a", base + 60_000, {"WS": base + 60_000, "WE": base + 120_000, "N": 1, "HOTTEST": 19.0}, base + 61_000),
    ]


def test_a_persistent_aggregation_is_exactly_once_across_kill_9(tmp_path):
    """Outputs, state and input positions commit in one transaction: a read_committed
    consumer sees each key's count go 1, 2, 3, … with no repeat and no gap, however the
    broker dies."""
    b = sql_broker(tmp_path)
    try:
        src = unique("clicks")
        ksql(b, f"""
            CREATE STREAM clicks (user STRING KEY, n INT) WITH (kafka_topic='{src}', partitions=2, value_format='JSON');
            CREATE TABLE click_counts AS SELECT user, COUNT(*) AS c FROM clicks GROUP BY user;
        """, {"ksql.streams.auto.offset.reset": "earliest"})
        users = [f"u{i}" for i in range(5)]
        sent = 0
        for phase in range(3):
            p = Producer({"bootstrap.servers": b.bootstrap, "enable.idempotence": True, "linger.ms": 5})
            for i in range(400):
                p.produce(src, key=users[(sent + i) % 5].encode(), value=json.dumps({"n": sent + i}))
            assert p.flush(30) == 0
            sent += 400
            time.sleep(0.05 * phase)  # die at different points of the query's work
            b.kill9()
            b.start()
            deadline = time.time() + 30
            while time.time() < deadline:
                try:
                    requests.get(b.sql + "/info", timeout=2)
                    break
                except requests.ConnectionError:
                    time.sleep(0.1)
        out = consume_all(b.bootstrap, "CLICK_COUNTS", sent, timeout=60)
        counts = {}
        for m in out:
            counts.setdefault(m.key().decode(), []).append(json.loads(m.value())["C"])
        for u in users:
            assert counts.get(u) == list(range(1, sent // 5 + 1)), \
                f"{u}: {len(counts.get(u, []))} updates, repeats or gaps: {counts.get(u, [])[:20]}…"
    finally:
        b.stop()


def test_a_pass_larger_than_a_batch_is_written_in_several(sqlb):
    """One pass of a query can read megabytes; its transaction is cut into batches under
    max.message.bytes (a single batch was refused, and the query retried forever)."""
    src = unique("docs")
    ksql(sqlb, f"""
        CREATE STREAM docs (id STRING KEY, body STRING) WITH (kafka_topic='{src}', partitions=1, value_format='JSON');
        CREATE TABLE latest_docs AS SELECT id, LATEST_BY_OFFSET(body) AS body, COUNT(*) AS versions FROM docs GROUP BY id;
    """, {"ksql.streams.auto.offset.reset": "earliest"})
    p = Producer({"bootstrap.servers": sqlb.bootstrap, "linger.ms": 50, "batch.size": 1000000})
    for i in range(12000):
        p.produce(src, key=f"d{i % 3000}".encode(), value=json.dumps({"body": f"{i:06d}" + "x" * 400}))
    p.flush(30)
    final = latest_per_key(consume_all(sqlb.bootstrap, "LATEST_DOCS", 12000, timeout=90))
    assert len(final) == 3000
    assert all(v["VERSIONS"] == 4 for v in final.values())
    assert final["d7"]["BODY"].startswith(f"{9007:06d}")


def wait_sql(b, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if requests.get(b.sql + "/info", timeout=2).ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the SQL engine did not come back")


def test_a_stream_table_join_enriches_each_order_once_across_kill_9(tmp_path):
    """Orders (a stream) looked up in customers (a table) as each order arrives, with
    librdkafka feeding both; after kill -9 the join's table is rebuilt from its topic up to
    the committed position and no order is joined twice or lost."""
    b = sql_broker(tmp_path)
    try:
        orders, customers = unique("orders"), unique("customers")
        ksql(b, f"""
            CREATE TABLE customers (id INT PRIMARY KEY, name STRING)
              WITH (kafka_topic='{customers}', partitions=2, value_format='JSON');
            CREATE STREAM orders (oid INT KEY, customer INT, amount INT)
              WITH (kafka_topic='{orders}', partitions=2, value_format='JSON');
            CREATE STREAM enriched AS SELECT o.customer, oid, name, amount
              FROM orders o LEFT JOIN customers c ON o.customer = c.id;
        """, {"ksql.streams.auto.offset.reset": "earliest"})
        p = Producer({"bootstrap.servers": b.bootstrap})
        for c in range(10):
            p.produce(customers, key=struct.pack(">i", c), value=json.dumps({"name": f"c{c}"}), timestamp=1000)
        p.flush(10)
        for i in range(100):
            p.produce(orders, key=struct.pack(">i", i), value=json.dumps({"customer": i % 12, "amount": i}),
                      timestamp=2000 + i)
        p.flush(10)
        assert len(consume_all(b.bootstrap, "ENRICHED", 100)) == 100
        b.kill9()
        b.start()
        wait_sql(b)
        # A renamed customer: later orders see the new name.
        p = Producer({"bootstrap.servers": b.bootstrap})
        p.produce(customers, key=struct.pack(">i", 3), value=json.dumps({"name": "renamed"}), timestamp=5000)
        p.flush(10)
        time.sleep(1)
        for i in range(100, 150):
            p.produce(orders, key=struct.pack(">i", i), value=json.dumps({"customer": i % 12, "amount": i}),
                      timestamp=6000 + i)
        p.flush(10)
        out = consume_all(b.bootstrap, "ENRICHED", 150)
        rows = [(struct.unpack(">i", m.key())[0], json.loads(m.value())) for m in out]
        assert sorted(r["OID"] for _, r in rows) == list(range(150)), "each order joined exactly once"
        for key, r in rows:
            i = r["OID"]
            assert key == i % 12 and r["AMOUNT"] == i
            want = None if i % 12 >= 10 else ("renamed" if i % 12 == 3 and i >= 100 else f"c{i % 12}")
            assert r["NAME"] == want, (i, r)
        # The output is keyed by the join key and placed as Kafka's partitioner places it.
        assert all(m.partition() == (murmur2(m.key()) & 0x7FFFFFFF) % 2 for m in out)
        # The table's rows are in each task's join store (flushed every 5 s) with the table
        # positions they cover: a restart reads only the table's records past them. The
        # store is put back as it was before three renames, so those are the tail.
        time.sleep(7)
        stores = sorted((tmp_path / "data" / "sql-state").glob("*.join.redb"))
        assert stores, "no join store"  # one per task holding the table
        flushed = [f.read_bytes() for f in stores]
        for c in (0, 1, 2):
            p.produce(customers, key=struct.pack(">i", c), value=json.dumps({"name": f"new{c}"}),
                      timestamp=7000)
        p.flush(10)
        time.sleep(1)
        p.produce(orders, key=struct.pack(">i", 150), value=json.dumps({"customer": 0, "amount": 1}),
                  timestamp=8000)
        p.flush(10)
        by_oid = {json.loads(m.value())["OID"]: json.loads(m.value()) for m in consume_all(b.bootstrap, "ENRICHED", 151)}
        assert by_oid[150]["NAME"] == "new0", by_oid.get(150)
        b.kill9()
        for f, data in zip(stores, flushed):
            f.write_bytes(data)
        b.start()
        wait_sql(b)
        p = Producer({"bootstrap.servers": b.bootstrap})
        for i, c in enumerate((0, 1, 2, 4)):
            p.produce(orders, key=struct.pack(">i", 151 + i), value=json.dumps({"customer": c, "amount": 1}),
                      timestamp=9000 + i)
        p.flush(10)
        out = consume_all(b.bootstrap, "ENRICHED", 155)
        names = {json.loads(m.value())["OID"]: json.loads(m.value())["NAME"] for m in out}
        assert [names[151 + i] for i in range(4)] == ["new0", "new1", "new2", "c4"], names
        rebuilt = [line for line in b.log_text().splitlines()
                   if "join state rebuilt" in line][-len(stores):]
        assert all("from_store=true" in line for line in rebuilt), rebuilt
        replayed = sum(int(line.split("replayed=")[1].split()[0]) for line in rebuilt)
        assert replayed == 3, f"only the renames past the stores' positions are read: {rebuilt}"
    finally:
        b.stop()


def test_a_stream_stream_join_rebuilds_only_its_windows_after_kill_9(tmp_path):
    """A windowed stream–stream join restarted by kill -9 reads its inputs again only as far
    back as its windows reach (found with ListOffsets by timestamp), yet still joins a right
    record arriving after the restart with a left record from before it, exactly once."""
    b = sql_broker(tmp_path)
    try:
        left, right = unique("left"), unique("right")
        ksql(b, f"""
            CREATE STREAM l (id INT KEY, v STRING) WITH (kafka_topic='{left}', partitions=2, value_format='JSON');
            CREATE STREAM r (id INT KEY, v STRING) WITH (kafka_topic='{right}', partitions=2, value_format='JSON');
            CREATE STREAM pairs AS SELECT l.id, l.v AS lv, r.v AS rv FROM l
              JOIN r WITHIN 1 SECOND GRACE PERIOD 1 SECOND ON l.id = r.id;
        """, {"ksql.streams.auto.offset.reset": "earliest"})
        p = Producer({"bootstrap.servers": b.bootstrap})
        # (Times near now: records older than retention.ms may be deleted at the restart.)
        now = int(time.time() * 1000)
        # Old history: 200 pairs far outside any window that matters after the restart.
        for i in range(200):
            p.produce(left, key=struct.pack(">i", i), value=json.dumps({"v": f"old-l{i}"}), timestamp=now - 3_600_000 + i)
            p.produce(right, key=struct.pack(">i", i), value=json.dumps({"v": f"old-r{i}"}), timestamp=now - 3_600_000 + i)
        p.flush(10)
        # Recent: left records waiting for their right partners, and right records that
        # match nothing (they move the right side's stream time on).
        for i in range(1000, 1020):
            p.produce(left, key=struct.pack(">i", i), value=json.dumps({"v": f"l{i}"}), timestamp=now + i - 1000)
        for i in range(2000, 2005):
            p.produce(right, key=struct.pack(">i", i), value=json.dumps({"v": f"r{i}"}), timestamp=now + i - 1000)
        p.flush(10)
        assert len(consume_all(b.bootstrap, "PAIRS", 200)) == 200
        # Wait for the query to commit its positions past the recent records.
        [query] = [q["id"] for q in ksql(b, "SHOW QUERIES;")[0]["queries"] if q["sinks"] == ["PAIRS"]]
        from confluent_kafka import TopicPartition
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": f"_strata_ksql_query_{query}"})
        tps = [TopicPartition(t, part) for t in (left, right) for part in (0, 1)]
        ends = [c.get_watermark_offsets(tp, timeout=10)[1] for tp in tps]
        deadline = time.time() + 30
        while any(tp.offset < end for tp, end in zip(c.committed(tps, timeout=10), ends)) and time.time() < deadline:
            time.sleep(0.1)
        c.close()
        b.kill9()
        b.start()
        wait_sql(b)
        p = Producer({"bootstrap.servers": b.bootstrap})
        for i in range(1000, 1020):
            p.produce(right, key=struct.pack(">i", i), value=json.dumps({"v": f"r{i}"}), timestamp=now + i - 500)
        # An old key again, inside no window of its old left record.
        p.produce(right, key=struct.pack(">i", 7), value=json.dumps({"v": "late"}), timestamp=now + 600)
        p.flush(10)
        out = consume_all(b.bootstrap, "PAIRS", 220)
        rows = sorted((struct.unpack(">i", m.key())[0], json.loads(m.value())["LV"], json.loads(m.value())["RV"])
                      for m in out)
        want = sorted([(i, f"old-l{i}", f"old-r{i}") for i in range(200)]
                      + [(i, f"l{i}", f"r{i}") for i in range(1000, 1020)])
        assert rows == want
        rebuilt = [line for line in b.log_text().splitlines() if "join state rebuilt" in line]
        assert rebuilt, "the restarted join logs how it rebuilt its state"
        replayed = int(rebuilt[-1].split("replayed=")[1].split()[0])
        assert 25 <= replayed < 100, f"only the windows' records are read again: {rebuilt[-1]}"
    finally:
        b.stop()


def test_stream_stream_and_table_table_joins(sqlb):
    clicks, views, left, right = (unique(n) for n in ("clicks", "views", "lt", "rt"))
    ksql(sqlb, f"""
        CREATE STREAM views (user STRING KEY, page STRING) WITH (kafka_topic='{views}', partitions=1, value_format='JSON');
        CREATE STREAM clicks (user STRING KEY, button STRING) WITH (kafka_topic='{clicks}', partitions=1, value_format='JSON');
        CREATE STREAM view_clicks AS SELECT v.user, page, button FROM views v
          JOIN clicks c WITHIN 10 SECONDS ON v.user = c.user;
        CREATE TABLE lt (id INT PRIMARY KEY, a STRING) WITH (kafka_topic='{left}', partitions=1, value_format='JSON');
        CREATE TABLE rt (id INT PRIMARY KEY, b STRING) WITH (kafka_topic='{right}', partitions=1, value_format='JSON');
        CREATE TABLE both_sides AS SELECT lt.id, a, b FROM lt JOIN rt ON lt.id = rt.id;
    """, {"ksql.streams.auto.offset.reset": "earliest"})
    p = Producer({"bootstrap.servers": sqlb.bootstrap})
    p.produce(views, key=b"ann", value=json.dumps({"page": "home"}), timestamp=10_000)
    p.produce(clicks, key=b"ann", value=json.dumps({"button": "buy"}), timestamp=15_000)
    p.produce(clicks, key=b"bob", value=json.dumps({"button": "buy"}), timestamp=15_000)
    p.produce(clicks, key=b"ann", value=json.dumps({"button": "late"}), timestamp=30_000)  # outside the window
    p.produce(left, key=struct.pack(">i", 1), value=json.dumps({"a": "x"}), timestamp=1)
    p.produce(right, key=struct.pack(">i", 1), value=json.dumps({"b": "y"}), timestamp=2)
    p.produce(right, key=struct.pack(">i", 2), value=json.dumps({"b": "z"}), timestamp=3)
    p.flush(10)
    time.sleep(0.5)
    p.produce(left, key=struct.pack(">i", 1), value=None, timestamp=4)
    p.flush(10)
    out = consume_all(sqlb.bootstrap, "VIEW_CLICKS", 1)
    assert [(m.key(), json.loads(m.value()), m.timestamp()[1]) for m in out] == [
        (b"ann", {"PAGE": "home", "BUTTON": "buy"}, 15_000)]
    out = consume_all(sqlb.bootstrap, "BOTH_SIDES", 2)
    assert [(struct.unpack(">i", m.key())[0], m.value() and json.loads(m.value())) for m in out] == [
        (1, {"A": "x", "B": "y"}), (1, None)], "the row, then its deletion when the left side went"


def test_strata_sql_runs_scripts_and_streams_a_push_query_until_ctrl_c(sqlb, tmp_path):
    import signal
    import subprocess
    from conftest import STRATA_BIN
    topic = unique("readings")
    script = tmp_path / "setup.sql"
    script.write_text(f"""
        -- a comment; with a semicolon
        CREATE STREAM readings (sensor STRING KEY, temp DOUBLE)
          WITH (kafka_topic='{topic}', partitions=1, value_format='JSON');
        INSERT INTO readings (sensor, temp) VALUES ('s1', 20.5);
        INSERT INTO readings (sensor, temp) VALUES ('s2', 18.0);
        INSERT INTO readings (sensor, temp) VALUES ('s1', 21.5);
        SET 'auto.offset.reset'='earliest';
        CREATE TABLE peaks AS SELECT sensor, MAX(temp) AS peak, COUNT(*) AS n FROM readings GROUP BY sensor;
        SHOW TABLES;
    """)
    cli = [STRATA_BIN, "sql", "--server", sqlb.sql]
    # RUN SCRIPT: the client reads the file (as ksqlDB's CLI does).
    outer = tmp_path / "outer.sql"
    outer.write_text(f"RUN SCRIPT '{script}';\n")
    r = subprocess.run(cli + ["-e", f"RUN SCRIPT '{outer}';"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "Stream created" in r.stdout and "Created query with ID CTAS_PEAKS_" in r.stdout
    assert "| PEAKS " in r.stdout
    # A pull query from stdin, as a table.
    deadline = time.time() + 20
    while True:
        r = subprocess.run(cli, input="SELECT sensor, peak, n FROM peaks WHERE sensor = 's1';",
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        if "| s1     | 21.5 | 2 |" in r.stdout or time.time() > deadline:
            break
        time.sleep(0.3)
    assert r.stdout.splitlines() == [
        "+--------+------+---+", "| SENSOR | PEAK | N |", "+--------+------+---+",
        "| s1     | 21.5 | 2 |", "+--------+------+---+"]
    # An error: the message, exit status 1.
    r = subprocess.run(cli + ["-e", "SELECT * FROM nope;"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "NOPE does not exist" in r.stderr
    # A push query streams rows as they arrive until Ctrl-C.
    push = subprocess.Popen(cli + ["-e", "SET 'auto.offset.reset'='earliest'; SELECT sensor, temp FROM readings EMIT CHANGES;"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    try:
        while sum("| s1 " in l or "| s2 " in l for l in lines) < 3:
            line = push.stdout.readline()
            assert line, push.stderr.read()
            lines.append(line)
        p = Producer({"bootstrap.servers": sqlb.bootstrap})
        p.produce(topic, key=b"s3", value=json.dumps({"TEMP": 9.5}))
        p.flush(10)
        while "| s3 " not in lines[-1]:
            line = push.stdout.readline()
            assert line, push.stderr.read()
            lines.append(line)
        push.send_signal(signal.SIGINT)
        rest, _ = push.communicate(timeout=10)
    finally:
        push.kill()
    assert "Query terminated" in rest and push.returncode == 0


def test_inserts_stream_writes_rows_and_acknowledges_each(sqlb):
    topic = unique("inserted")
    ksql(sqlb, f"CREATE STREAM inserted (id INT KEY, name STRING, tags ARRAY<STRING>) "
               f"WITH (kafka_topic='{topic}', partitions=1, value_format='JSON');")

    def lines():
        yield b'{"target": "inserted"}\n'
        yield b'{"ID": 1, "NAME": "a", "TAGS": ["x"]}\n{"id": 2, "name": "b"}\n'
        yield b'{"ID": "not an int", "NAME": "c"}\n'
        yield b'{"ID": 3, "NOPE": 1}\n'
        yield b'{"ID": 4, "NAME": "d", "ROWTIME": 12345}'

    r = requests.post(sqlb.sql + "/inserts-stream", data=lines(), timeout=30)
    assert r.status_code == 200
    acks = [json.loads(l) for l in r.text.splitlines() if l.strip()]
    assert [(a["seq"], a["status"]) for a in acks] == [
        (0, "ok"), (1, "ok"), (2, "error"), (3, "error"), (4, "ok")], acks
    assert "NOPE" in acks[3]["message"]
    out = consume_all(sqlb.bootstrap, topic, 3)
    assert [(struct.unpack(">i", m.key())[0], json.loads(m.value())) for m in out] == [
        (1, {"NAME": "a", "TAGS": ["x"]}), (2, {"NAME": "b", "TAGS": None}), (4, {"NAME": "d", "TAGS": None})]
    assert out[2].timestamp()[1] == 12345
    # An unknown target: refused on the first row.
    r = requests.post(sqlb.sql + "/inserts-stream", data=b'{"target": "nope"}\n{"ID": 1}\n', timeout=30)
    assert json.loads(r.text.splitlines()[0])["status"] == "error"


def test_insert_into_select_variables_explain_functions_and_print(sqlb):
    a, b, merged = unique("a"), unique("b"), unique("merged")
    out = ksql(sqlb, f"""
        DEFINE suffix = '{merged}';
        CREATE STREAM a (id INT KEY, v STRING) WITH (kafka_topic='{a}', partitions=1, value_format='JSON');
        CREATE STREAM b (id INT KEY, v STRING) WITH (kafka_topic='{b}', partitions=1, value_format='JSON');
        CREATE STREAM merged WITH (kafka_topic='${{suffix}}') AS SELECT id, v FROM a;
        INSERT INTO merged SELECT id, UCASE(v) AS v FROM b;
    """, {"ksql.streams.auto.offset.reset": "earliest"})
    insert_id = out[-1]["commandStatus"]["queryId"]
    assert insert_id.startswith("INSERTQUERY_")
    # A result whose columns differ from the target's is refused.
    err = ksql(sqlb, "INSERT INTO merged SELECT id, v, v AS w FROM b;", status=400)
    assert "Incompatible schema between results and sink" in err["message"]
    p = Producer({"bootstrap.servers": sqlb.bootstrap})
    p.produce(a, key=struct.pack(">i", 1), value=json.dumps({"V": "from a"}))
    p.produce(b, key=struct.pack(">i", 2), value=json.dumps({"V": "from b"}))
    p.flush(10)
    got = consume_all(sqlb.bootstrap, merged, 2)
    assert sorted(json.loads(m.value())["V"] for m in got) == ["FROM B", "from a"]
    # Variables from the request body as well.
    r = requests.post(sqlb.sql + "/ksql", json={"ksql": "DESCRIBE ${src};", "sessionVariables": {"src": "merged"}})
    assert r.status_code == 200 and r.json()[0]["sourceDescription"]["topic"] == merged
    described = ksql(sqlb, f"EXPLAIN {insert_id};")[0]["queryDescription"]
    assert described["id"] == insert_id and described["sources"] == ["B"] and described["sinks"] == ["MERGED"]
    assert described["state"] == "RUNNING" and merged in described["executionPlan"]
    planned = ksql(sqlb, "EXPLAIN CREATE STREAM x AS SELECT id, v FROM a WHERE id > 1;")[0]["queryDescription"]
    assert [f["name"] for f in planned["fields"]] == ["ID", "V"]
    functions = {f["name"]: f["type"] for f in ksql(sqlb, "SHOW FUNCTIONS;")[0]["functions"]}
    assert functions["UCASE"] == "SCALAR" and functions["COUNT"] == "AGGREGATE"
    described = ksql(sqlb, "DESCRIBE FUNCTION correlation;")[0]
    assert described["@type"] == "describe_function" and described["name"] == "CORRELATION"
    assert described["type"] == "AGGREGATE"
    r = requests.post(sqlb.sql + "/ksql", json={"ksql": "DESCRIBE FUNCTION nope;"}, timeout=30)
    assert r.status_code == 400 and "Can't find any functions with the name 'NOPE'" in r.json()["message"]
    # PRINT streams the topic's records as text.
    r = requests.post(sqlb.sql + "/query", json={"ksql": f"PRINT '{merged}' FROM BEGINNING LIMIT 2;"}, timeout=30)
    lines = r.text.splitlines()
    assert lines[0] == "Key format: KAFKA_INT" and lines[1] == "Value format: JSON", lines
    assert sorted(l.split(", key: ")[1].split(",")[0] for l in lines[2:]) == ["1", "2"]
    assert all(l.startswith("rowtime: ") and l.endswith("partition: 0") for l in lines[2:])


def test_an_aggregation_over_a_stream_table_join(sqlb):
    users, clicks = unique("users"), unique("clicks")
    ksql(sqlb, f"""
        CREATE TABLE users (id STRING PRIMARY KEY, region STRING) WITH (kafka_topic='{users}', partitions=1, value_format='JSON');
        CREATE STREAM clicks (user STRING KEY, page STRING) WITH (kafka_topic='{clicks}', partitions=1, value_format='JSON');
        CREATE TABLE per_region AS SELECT u.region, COUNT(*) AS n, COLLECT_SET(page) AS pages
          FROM clicks c JOIN users u ON c.user = u.id GROUP BY u.region;
    """, {"ksql.streams.auto.offset.reset": "earliest"})
    p = Producer({"bootstrap.servers": sqlb.bootstrap})
    for user, region in (("ann", "eu"), ("bob", "us"), ("cyd", "eu")):
        p.produce(users, key=user.encode(), value=json.dumps({"REGION": region}), timestamp=1)
    p.flush(10)
    time.sleep(0.5)
    for i, user in enumerate(["ann", "bob", "cyd", "ann", "dan"]):
        p.produce(clicks, key=user.encode(), value=json.dumps({"PAGE": f"p{i}"}), timestamp=10 + i)
    p.flush(10)
    out = consume_all(sqlb.bootstrap, "PER_REGION", 4)
    last = {}
    for m in out:
        last[m.key().decode()] = json.loads(m.value())
    assert last == {"eu": {"N": 3, "PAGES": ["p0", "p2", "p3"]}, "us": {"N": 1, "PAGES": ["p1"]}}, last
    deadline = time.time() + 10
    while True:
        r = requests.post(sqlb.sql + "/query-stream", json={"sql": "SELECT * FROM per_region WHERE region = 'eu';"})
        rows = [json.loads(l) for l in r.text.splitlines()[1:]]
        if rows == [["eu", 3, ["p0", "p2", "p3"]]] or time.time() > deadline:
            break
        time.sleep(0.2)
    assert rows == [["eu", 3, ["p0", "p2", "p3"]]]
