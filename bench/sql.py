#!/usr/bin/env python3
"""SQL engine workloads (issue 15's benchmark rows), each compared with a baseline measured
in the same run on the same broker:

- consume-1k: strata-bench's consume-1k (1 KiB records it produces first) on this broker,
  the issue's baseline for the filter query (when target/release/strata-bench exists);
- consume: librdkafka (confluent-kafka) reads the input topic from the start: the records/s
  a plain Python consumer gets over the same ~100-byte JSON records;
- filter: CREATE STREAM … AS SELECT with a WHERE and a projection over the same records,
  timed from the statement until the query committed the topic's end: records/s in and out;
- window: a TUMBLING (1 minute) COUNT and SUM per key over --keys distinct keys;
- join: a stream–table LEFT JOIN of the orders with a customers table of --keys rows
  (loaded first), records/s of the orders stream;
- pull: pull queries by key on a table of one row per order (--records rows, a GROUP BY
  over the order id), from --clients keep-alive HTTP/1.1 connections: queries/s and
  p50/p99 latency. The load comes from `strata-bench --workload sql-pull` (Rust, one
  thread per connection) when target/release/strata-bench exists, else from Python
  threads, which then bound the figure from below. Either shares the two cores with the
  broker.

- restore (`--only restore`, a broker of its own): a GROUP BY over --keys keys fed
  --records records, the broker killed (-9) and restarted: the seconds until the query has
  its state back, from its local state store and the changelog's tail, against the same
  restart with the store deleted (the whole changelog read), in the same run.

- join-restore (`--only join-restore`, a broker of its own): a stream–table join over a
  table of --keys rows, the broker killed (-9) and restarted: the seconds until the join has
  its table back, from its join store (and the table's records past the store's
  positions), against the same restart with the store deleted (the table read whole).

- spill (`--only spill`, two brokers of their own, one after the other): the same GROUP BY
  over --keys keys fed --records records, read from the start, with every group cached
  in memory (a cache of twice the keys) and with a tenth of them cached (`--sql-state-cache-groups`,
  the rest in the task's state store on disk): records/s and the broker's peak resident
  memory of each, and their ratio.

    python3 bench/sql.py [--records 1000000] [--keys 100000] [--seconds 10] [--strata BIN]
                         [--only filter|restore|spill|join-restore] [--perf perf.data]

Prints one JSON object.
"""
import argparse
import http.client
import json
import os
import pathlib
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ksql(base, text, props=None):
    c = http.client.HTTPConnection(base, timeout=60)
    c.request("POST", "/ksql", json.dumps({"ksql": text, "streamsProperties": props or {}}),
              {"content-type": "application/json"})
    r = c.getresponse()
    body = r.read()
    if r.status != 200:
        raise RuntimeError(f"{text}: {body[:300]!r}")
    return json.loads(body)


def wait_sql(base, attempts=300):
    """Until the SQL engine answers."""
    for _ in range(attempts):
        try:
            ksql(base, "SHOW STREAMS;")
            return
        except (OSError, RuntimeError):
            time.sleep(0.1)


def wait_committed(bootstrap, group, topic, partitions, ends, timeout=600):
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        deadline = time.time() + timeout
        while time.time() < deadline:
            got = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
            if all(tp.offset >= ends[tp.partition] for tp in got):
                return time.time()
            time.sleep(0.05)
        raise RuntimeError(f"{group} did not reach the end of {topic}")
    finally:
        c.close()


def query_id(base, sink):
    for q in ksql(base, "SHOW QUERIES;")[0]["queries"]:
        if q["sinks"] == [sink]:
            return q["id"]
    raise RuntimeError(f"no query writes {sink}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--strata", default=str(ROOT / "target" / "release" / "strata"))
    ap.add_argument("--only", choices=["filter", "restore", "spill", "join-restore"],
                    help="run only this workload")
    ap.add_argument("--perf", metavar="FILE", help="record a CPU profile of the broker during the filter query")
    args = ap.parse_args()
    if args.only == "restore":
        print(json.dumps(restore_bench(args)))
        return
    if args.only == "spill":
        print(json.dumps(spill_bench(args)))
        return
    if args.only == "join-restore":
        print(json.dumps(join_restore_bench(args)))
        return
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="strata-sql-bench-"))
    port, sql_port = free_port(), free_port()
    bootstrap, base = f"127.0.0.1:{port}", f"127.0.0.1:{sql_port}"
    log = open(tmp / "broker.log", "wb")
    proc = subprocess.Popen([args.strata, "serve", "--data-dir", str(tmp / "data"), "--listen", bootstrap,
                             "--sql-listen", base], stdout=log, stderr=subprocess.STDOUT)
    results = {"records": args.records, "keys": args.keys}
    try:
        wait_sql(base)
        bench_bin = ROOT / "target" / "release" / "strata-bench"
        if bench_bin.exists():
            # The baseline for the filter query: consume-1k (strata-bench, 1 KiB
            # records, which it produces first) on this same broker.
            r = subprocess.run([str(bench_bin), "--bootstrap", bootstrap, "--workload", "consume-1k",
                                "--seconds", str(args.seconds), "--broker-pid", str(proc.pid)],
                               capture_output=True, text=True, timeout=args.seconds * 4 + 120)
            if r.returncode != 0:
                raise RuntimeError(f"strata-bench consume-1k: {r.stderr[-2000:]}")
            o = json.loads([l for l in r.stdout.splitlines() if l.startswith("{")][-1])
            results["consume_1k_records_per_s"] = round(o["records_per_s"])
            print(f"== consume-1k: {results['consume_1k_records_per_s']} records/s", file=sys.stderr)
        partitions = 4
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic("orders", partitions, 1)])["orders"].result(30)
        # The input: JSON orders keyed by customer (a BIGINT key), --keys customers.
        p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.size": 1048576,
                      "queue.buffering.max.messages": 2000000, "queue.buffering.max.kbytes": 1048576})
        t0 = time.time()
        for i in range(args.records):
            key = (i % args.keys).to_bytes(8, "big")
            value = json.dumps({"oid": i, "item": f"item-{i % 1000}", "qty": i % 20, "price": (i % 97) + 0.5,
                                "region": "eu" if i % 3 else "us"})
            while True:
                try:
                    p.produce("orders", key=key, value=value, timestamp=1_700_000_000_000 + i)
                    break
                except BufferError:
                    p.poll(0.01)
            if i % 10000 == 0:
                p.poll(0)
        p.flush(120)
        results["load_s"] = round(time.time() - t0, 1)
        print(f"== loaded {args.records} records in {results['load_s']} s", file=sys.stderr)
        ends = {}
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": "probe"})
        for part in range(partitions):
            ends[part] = c.get_watermark_offsets(TopicPartition("orders", part), timeout=10)[1]
        c.close()

        # Baseline: a plain librdkafka consumer over the same records.
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": "baseline", "auto.offset.reset": "earliest",
                      "enable.auto.commit": False, "fetch.max.bytes": 52428800})
        c.assign([TopicPartition("orders", part, 0) for part in range(partitions)])
        got, t0 = 0, time.time()
        while got < args.records:
            got += sum(1 for m in c.consume(10000, 1.0) if not m.error())
        consume_s = time.time() - t0
        c.close()
        results["consume_records_per_s"] = round(args.records / consume_s)
        print(f"== consume: {results['consume_records_per_s']} records/s", file=sys.stderr)

        ksql(base, f"CREATE STREAM orders (customer BIGINT KEY, oid BIGINT, item STRING, qty INT, price DOUBLE, region STRING) "
                   f"WITH (kafka_topic='orders', value_format='JSON');")
        earliest = {"ksql.streams.auto.offset.reset": "earliest"}
        perf = None
        if args.perf:
            perf = subprocess.Popen(["perf", "record", "-F", "499", "-g", "-o", args.perf, "-p", str(proc.pid)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
        t0 = time.time()
        ksql(base, "CREATE STREAM big_eu AS SELECT customer, item, qty * price AS total FROM orders "
                   "WHERE region = 'eu' AND qty >= 10;", earliest)
        done = wait_committed(bootstrap, f"_strata_ksql_query_{query_id(base, 'BIG_EU')}", "orders", partitions, ends)
        filter_s = done - t0
        if perf:
            perf.send_signal(2)
            perf.wait(30)
        out_records = 0
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": "probe2"})
        for part in range(partitions):
            lo, hi = c.get_watermark_offsets(TopicPartition("BIG_EU", part), timeout=10)
            out_records += hi - lo
        c.close()
        results["filter_records_in_per_s"] = round(args.records / filter_s)
        results["filter_records_out_per_s"] = round(out_records / filter_s)  # (incl. transaction markers)
        results["filter_vs_consume"] = round(results["filter_records_in_per_s"] / results["consume_records_per_s"], 3)
        if "consume_1k_records_per_s" in results:
            results["filter_vs_consume_1k"] = round(
                results["filter_records_in_per_s"] / results["consume_1k_records_per_s"], 3)
        print(f"== filter: {results['filter_records_in_per_s']} in/s ({results['filter_vs_consume']}× consume, "
              f"{results.get('filter_vs_consume_1k')}× consume-1k)", file=sys.stderr)
        if args.only == "filter":
            print(json.dumps(results))
            return

        t0 = time.time()
        ksql(base, "CREATE TABLE per_minute AS SELECT customer, COUNT(*) AS n, SUM(qty) AS units FROM orders "
                   "WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY customer;", earliest)
        done = wait_committed(bootstrap, f"_strata_ksql_query_{query_id(base, 'PER_MINUTE')}", "orders", partitions,
                              ends)
        results["window_records_per_s"] = round(args.records / (done - t0))
        print(f"== window: {results['window_records_per_s']} records/s", file=sys.stderr)

        t0 = time.time()
        ksql(base, "CREATE TABLE totals AS SELECT customer, COUNT(*) AS n, SUM(qty) AS units FROM orders "
                   "GROUP BY customer;", earliest)
        done = wait_committed(bootstrap, f"_strata_ksql_query_{query_id(base, 'TOTALS')}", "orders", partitions,
                              ends)
        results["aggregate_records_per_s"] = round(args.records / (done - t0))

        # Stream–table join: customers (a table of --keys rows, loaded now) joined to
        # every order.
        admin.create_topics([NewTopic("customers", partitions, 1)])["customers"].result(30)
        for k in range(args.keys):
            while True:
                try:
                    p.produce("customers", key=k.to_bytes(8, "big"),
                              value=json.dumps({"name": f"customer-{k}", "tier": k % 4}), timestamp=1_600_000_000_000)
                    break
                except BufferError:
                    p.poll(0.01)
        p.flush(120)
        ksql(base, "CREATE TABLE customers (id BIGINT PRIMARY KEY, name STRING, tier INT) "
                   "WITH (kafka_topic='customers', value_format='JSON');")
        t0 = time.time()
        ksql(base, "CREATE STREAM enriched AS SELECT o.customer, oid, name, tier, qty * price AS total "
                   "FROM orders o LEFT JOIN customers c ON o.customer = c.id;", earliest)
        done = wait_committed(bootstrap, f"_strata_ksql_query_{query_id(base, 'ENRICHED')}", "orders", partitions,
                              ends)
        results["join_records_per_s"] = round(args.records / (done - t0))
        results["join_table_rows"] = args.keys
        print(f"== join: {results['join_records_per_s']} records/s", file=sys.stderr)

        # A table of one row per order, for pull queries.
        ksql(base, "CREATE TABLE by_order AS SELECT oid, LATEST_BY_OFFSET(qty) AS qty, LATEST_BY_OFFSET(item) AS item "
                   "FROM orders GROUP BY oid;", earliest)
        wait_committed(bootstrap, f"_strata_ksql_query_{query_id(base, 'BY_ORDER')}", "orders", partitions, ends)
        results["pull_rows"] = args.records
        if bench_bin.exists():
            r = subprocess.run([str(bench_bin), "--workload", "sql-pull", "--sql", base, "--pull-table", "BY_ORDER",
                                "--pull-key", "OID", "--pull-keys", str(args.records), "--consumers",
                                str(args.clients), "--seconds", str(args.seconds), "--broker-pid", str(proc.pid)],
                               capture_output=True, text=True, timeout=args.seconds + 120)
            if r.returncode != 0:
                raise RuntimeError(f"strata-bench sql-pull: {r.stderr[-2000:]}")
            o = json.loads([l for l in r.stdout.splitlines() if l.startswith("{")][-1])
            results["pull_queries_per_s"] = round(o["records_per_s"])
            results["pull_p50_ms"] = o["latency"]["p50_ms"]
            results["pull_p99_ms"] = o["latency"]["p99_ms"]
            results["pull_errors"] = o["errors"]
            results["pull_client"] = "strata-bench (Rust)"
            results["pull_broker_cores"] = round(o.get("broker_cpu_s", 0) / max(o["seconds"], 0.001), 2)
            print(f"== pull: {results['pull_queries_per_s']}/s p50 {results['pull_p50_ms']} ms "
                  f"p99 {results['pull_p99_ms']} ms", file=sys.stderr)
            print(json.dumps(results))
            return

        # Pull queries by key from keep-alive connections (Python: a lower bound).
        latencies, lock, stop = [], threading.Lock(), time.time() + args.seconds
        errors = [0]
        results["pull_client"] = "Python threads"

        def client():
            conn = http.client.HTTPConnection(base, timeout=10)
            mine = []
            while time.time() < stop:
                k = random.randrange(args.records)
                body = json.dumps({"sql": f"SELECT * FROM by_order WHERE oid = {k};", "properties": {}})
                t = time.perf_counter()
                conn.request("POST", "/query-stream", body, {"content-type": "application/json"})
                r = conn.getresponse()
                data = r.read()
                mine.append(time.perf_counter() - t)
                if r.status != 200 or data.count(b"\n") != 2:
                    errors[0] += 1
            with lock:
                latencies.extend(mine)

        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        latencies.sort()
        results["pull_queries_per_s"] = round(len(latencies) / args.seconds)
        results["pull_p50_ms"] = round(latencies[len(latencies) // 2] * 1000, 2)
        results["pull_p99_ms"] = round(latencies[int(len(latencies) * 0.99)] * 1000, 2)
        results["pull_errors"] = errors[0]
        print(f"== pull: {results['pull_queries_per_s']}/s p50 {results['pull_p50_ms']} ms "
              f"p99 {results['pull_p99_ms']} ms", file=sys.stderr)
        print(json.dumps(results))
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
        if os.environ.get("SQL_BENCH_KEEP_LOG"):
            subprocess.run(["cp", str(tmp / "broker.log"), os.environ["SQL_BENCH_KEEP_LOG"]])
        subprocess.run(["rm", "-rf", str(tmp)])


def restore_bench(args):
    """Restart time of an aggregation: local state store + changelog tail vs the changelog."""
    from confluent_kafka import Producer

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="strata-sql-restore-"))
    port, sql_port = free_port(), free_port()
    bootstrap, base = f"127.0.0.1:{port}", f"127.0.0.1:{sql_port}"
    argv = [args.strata, "serve", "--data-dir", str(tmp / "data"), "--listen", bootstrap, "--sql-listen", base]
    log_path = tmp / "broker.log"
    results = {"restore_records": args.records, "restore_keys": args.keys}
    proc = None

    def start():
        log = open(log_path, "ab")
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return p

    def restored_lines():
        return [l for l in log_path.read_text(errors="replace").splitlines() if "aggregate state restored" in l]

    def restart_timed(drop_store):
        nonlocal proc
        proc.kill()
        proc.wait(30)
        if drop_store:
            subprocess.run(["rm", "-rf", str(tmp / "data" / "sql-state")])
        seen = len(restored_lines())
        t0 = time.time()
        proc = start()
        while len(restored_lines()) <= seen:
            if time.time() - t0 > 600:
                raise RuntimeError("the query did not restore its state")
            time.sleep(0.01)
        line = restored_lines()[-1]
        field = lambda name: int(line.split(f"{name}=")[1].split()[0])
        return time.time() - t0, field("from_store"), field("replayed")

    try:
        proc = start()
        wait_sql(base)
        ksql(base, "CREATE STREAM clicks (user BIGINT KEY, n INT) WITH (kafka_topic='clicks', partitions=1, "
                   "value_format='JSON');")
        ksql(base, "CREATE TABLE totals AS SELECT user, COUNT(*) AS c, SUM(n) AS s FROM clicks GROUP BY user;",
             {"ksql.streams.auto.offset.reset": "earliest"})
        p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.size": 1048576,
                      "queue.buffering.max.messages": 2000000})
        for i in range(args.records):
            while True:
                try:
                    p.produce("clicks", key=(i % args.keys).to_bytes(8, "big"), value=json.dumps({"n": i % 10}))
                    break
                except BufferError:
                    p.poll(0.01)
        p.flush(120)
        qid = query_id(base, "TOTALS")
        wait_committed(bootstrap, f"_strata_ksql_query_{qid}", "clicks", 1, {0: args.records})
        time.sleep(6)  # the next pass flushes the store
        p.produce("clicks", key=(0).to_bytes(8, "big"), value=json.dumps({"n": 1}))
        p.flush(10)
        wait_committed(bootstrap, f"_strata_ksql_query_{qid}", "clicks", 1, {0: args.records + 1})
        time.sleep(2)  # the flush follows the commit
        s, from_store, replayed = restart_timed(drop_store=False)
        results.update(restore_store_s=round(s, 2), restore_store_groups=from_store,
                       restore_store_replayed=replayed)
        print(f"== restore with the store: {s:.2f} s ({from_store} groups from the store, {replayed} "
              f"changelog records)", file=sys.stderr)
        c, from_store, replayed = restart_timed(drop_store=True)
        results.update(restore_changelog_s=round(c, 2), restore_changelog_replayed=replayed)
        results["restore_store_vs_changelog"] = round(s / c, 3) if c else None
        print(f"== restore from the changelog: {c:.2f} s ({replayed} records): store/changelog "
              f"{results['restore_store_vs_changelog']}", file=sys.stderr)
        return results
    finally:
        if proc:
            proc.terminate()
            proc.wait(30)
        if os.environ.get("SQL_BENCH_KEEP_LOG"):
            subprocess.run(["cp", str(log_path), os.environ["SQL_BENCH_KEEP_LOG"]])
        subprocess.run(["rm", "-rf", str(tmp)])


def join_restore_bench(args):
    """Restart time of a stream–table join over a --keys-row table: its join store plus the
    table's records past the store's positions vs the table read whole (store deleted)."""
    from confluent_kafka import Producer

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="strata-sql-join-restore-"))
    port, sql_port = free_port(), free_port()
    bootstrap, base = f"127.0.0.1:{port}", f"127.0.0.1:{sql_port}"
    argv = [args.strata, "serve", "--data-dir", str(tmp / "data"), "--listen", bootstrap, "--sql-listen", base]
    log_path = tmp / "broker.log"
    results = {"join_restore_table_rows": args.keys}
    proc = None

    def start():
        log = open(log_path, "ab")
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return p

    def rebuilt_lines():
        return [l for l in log_path.read_text(errors="replace").splitlines() if "join state rebuilt" in l]

    def restart_timed(drop_store):
        nonlocal proc
        proc.kill()
        proc.wait(30)
        if drop_store:
            subprocess.run(["rm", "-rf", str(tmp / "data" / "sql-state")])
        seen = len(rebuilt_lines())
        t0 = time.time()
        proc = start()
        while len(rebuilt_lines()) <= seen:
            if time.time() - t0 > 600:
                raise RuntimeError("the join did not rebuild its state")
            time.sleep(0.01)
        line = rebuilt_lines()[-1]
        return time.time() - t0, int(line.split("replayed=")[1].split()[0]), "from_store=true" in line

    try:
        proc = start()
        wait_sql(base)
        ksql(base, "CREATE TABLE customers (id BIGINT PRIMARY KEY, name STRING, tier INT) WITH "
                   "(kafka_topic='customers', partitions=1, value_format='JSON');")
        ksql(base, "CREATE STREAM orders (oid BIGINT KEY, customer BIGINT, amount INT) WITH "
                   "(kafka_topic='orders', partitions=1, value_format='JSON');")
        ksql(base, "CREATE STREAM enriched AS SELECT o.customer, oid, name, tier, amount "
                   "FROM orders o LEFT JOIN customers c ON o.customer = c.id;",
             {"ksql.streams.auto.offset.reset": "earliest"})
        p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.size": 1048576,
                      "queue.buffering.max.messages": 2000000})
        for i in range(args.keys):
            while True:
                try:
                    p.produce("customers", key=i.to_bytes(8, "big"),
                              value=json.dumps({"name": f"customer-{i}", "tier": i % 5}))
                    break
                except BufferError:
                    p.poll(0.01)
        p.flush(120)
        p.produce("orders", key=(0).to_bytes(8, "big"), value=json.dumps({"customer": 1, "amount": 1}))
        p.flush(10)
        qid = query_id(base, "ENRICHED")
        group = f"_strata_ksql_query_{qid}"
        wait_committed(bootstrap, group, "customers", 1, {0: args.keys})
        wait_committed(bootstrap, group, "orders", 1, {0: 1})
        time.sleep(7)  # committed rows reach the join store within 5 s
        s, replayed, from_store = restart_timed(drop_store=False)
        results.update(join_restore_store_s=round(s, 2), join_restore_store_replayed=replayed,
                       join_restore_from_store=from_store)
        print(f"== join restart with its store: {s:.2f} s ({replayed} table records read)", file=sys.stderr)
        t, replayed, _ = restart_timed(drop_store=True)
        results.update(join_restore_table_s=round(t, 2), join_restore_table_replayed=replayed)
        results["join_restore_store_vs_table"] = round(s / t, 3) if t else None
        print(f"== join restart reading its table: {t:.2f} s ({replayed} records): store/table "
              f"{results['join_restore_store_vs_table']}", file=sys.stderr)
        return results
    finally:
        if proc:
            proc.terminate()
            proc.wait(30)
        subprocess.run(["rm", "-rf", str(tmp)])


def spill_bench(args):
    """A GROUP BY with all its groups in memory vs a tenth of them, the rest on disk."""
    from confluent_kafka import Producer

    results = {"spill_records": args.records, "spill_keys": args.keys}
    for label, cache in (("memory", max(args.keys * 2, 100_000)), ("disk", max(args.keys // 10, 2))):
        tmp = pathlib.Path(tempfile.mkdtemp(prefix="strata-sql-spill-"))
        port, sql_port = free_port(), free_port()
        bootstrap, base = f"127.0.0.1:{port}", f"127.0.0.1:{sql_port}"
        argv = [args.strata, "serve", "--data-dir", str(tmp / "data"), "--listen", bootstrap,
                "--sql-listen", base]
        argv += ["--sql-state-cache-groups", str(cache)]
        log = open(tmp / "broker.log", "wb")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_sql(base)
            ksql(base, "CREATE STREAM clicks (user BIGINT KEY, n INT) WITH (kafka_topic='clicks', partitions=1, "
                       "value_format='JSON');")
            p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.size": 1048576,
                          "queue.buffering.max.messages": 2000000})
            for i in range(args.records):
                # Keys spread so that consecutive records rarely share a group.
                key = ((i * 7919) % args.keys).to_bytes(8, "big")
                while True:
                    try:
                        p.produce("clicks", key=key, value=json.dumps({"n": i % 10}))
                        break
                    except BufferError:
                        p.poll(0.01)
            p.flush(120)
            t0 = time.time()
            ksql(base, "CREATE TABLE totals AS SELECT user, COUNT(*) AS c, SUM(n) AS s FROM clicks GROUP BY user;",
                 {"ksql.streams.auto.offset.reset": "earliest"})
            done = wait_committed(bootstrap, f"_strata_ksql_query_{query_id(base, 'TOTALS')}", "clicks", 1,
                                  {0: args.records})
            rate = args.records / (done - t0)
            peak_kib = 0
            for line in pathlib.Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak_kib = int(line.split()[1])
            results[f"spill_{label}_records_per_s"] = round(rate)
            results[f"spill_{label}_peak_rss_mib"] = round(peak_kib / 1024)
            results[f"spill_{label}_cache_groups"] = cache
            print(f"== GROUP BY, groups in {label} (cache {cache}): {rate:,.0f} records/s, "
                  f"peak RSS {peak_kib // 1024} MiB", file=sys.stderr)
        finally:
            proc.terminate()
            proc.wait(30)
            subprocess.run(["rm", "-rf", str(tmp)])
    results["spill_disk_vs_memory"] = round(
        results["spill_disk_records_per_s"] / results["spill_memory_records_per_s"], 3)
    return results


if __name__ == "__main__":
    main()
