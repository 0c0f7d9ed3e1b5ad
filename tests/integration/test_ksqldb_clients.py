"""ksqlDB REST clients we did not write, against the SQL listener: `ksqldb-client` (npm, HTTP/2
like ksqlDB's own Java client) and `ksqldb` (PyPI; HTTP/1.1 for statements, HTTP/2 for
/query-stream and /inserts-stream). ksqlDB's Java and Go clients are not served by Maven
Central or the Go module proxy, and PyPI's `ksql` (ksql-python) no longer builds."""
import asyncio
import json
import os
import pathlib
import shutil
import subprocess
import time

import pytest

from conftest import unique
from test_sql import ksql, sql_broker

JS_DIR = pathlib.Path(__file__).resolve().parents[1] / "ksqldb-clients"


@pytest.mark.skipif(shutil.which("node") is None, reason="node not installed (scripts/test installs it)")
def test_the_node_ksqldb_client_runs_statements_inserts_push_and_pull_queries(tmp_path):
    assert (JS_DIR / "node_modules" / "ksqldb-client").exists(), \
        "run scripts/test (it runs npm ci in tests/ksqldb-clients)"
    b = sql_broker(tmp_path)
    try:
        check_node_session(b.sql)
    finally:
        b.stop()


def node_session(url, env=None):
    """What session.js saw (and the suffix of the names it made) against `url`."""
    host, port = url.removeprefix("http://").split(":")
    suffix = unique("n").replace("-", "_")
    r = subprocess.run(["node", str(JS_DIR / "session.js"), host, port, suffix],
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, **(env or {})})
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1]), suffix


def check_node_session(url, env=None):
    """Runs session.js against `url` and checks all it saw."""
    seen, suffix = node_session(url, env)
    up = suffix.upper()
    assert seen["createStatus"] == 200 and seen["createError"] is None
    assert seen["tableStatus"] == 200
    assert seen["inserts"] == [200] * 6
    # The push query saw every row inserted after it started, in order, and ended
    # when the client closed it by the id from its header.
    assert seen["pushed"] == [{"SENSOR": f"s{i % 2}", "READING": i + 1} for i in range(6)]
    assert seen["pushQueryId"] and seen["closeError"] is None
    assert seen["pushEnded"] == "ended"
    # The pull query answers from the aggregate's table: s1 had readings 2, 4, 6.
    assert seen["pulled"] == {"columnNames": ["SENSOR", "N", "TOTAL"],
                              "rows": [{"SENSOR": "s1", "N": 3, "TOTAL": 12}]}
    assert f"READINGS_{up}" in seen["streams"]
    assert f"TOTALS_{up}" in seen["tables"]
    assert f"readings_{suffix}".lower() in [t.lower() for t in seen["topics"]]
    assert any(f"TOTALS_{suffix}" in q for q in seen["queries"])
    assert seen["described"] == ["SENSOR STRING", "READING INTEGER"]
    # A statement ksqlDB refuses is refused with its status and message.
    assert seen["badStatus"] == 400
    assert seen["badMessage"] == "SELECT column 'NOPE' cannot be resolved."


def test_the_rest_api_takes_the_brokers_sasl_users_with_http_basic(tmp_path):
    """`strata serve --sql-auth basic`: the REST API takes HTTP Basic credentials that the
    broker's SASL listener takes (its SCRAM users), as ksqlDB's BASIC authentication:
    statements, inserts and pull queries with them, 401 without them or with a wrong
    password (but /healthcheck), and `strata sql -u` logs in as ksqlDB's CLI does. (Neither
    third-party client can log in: `ksqldb-client` 1.0.5 never sends its `authorization`
    option and would append a space to the password; PyPI `ksqldb` 1.0.1 fails building
    the header. Plain HTTP clients stand in for them.)"""
    import requests

    from conftest import STRATA_BIN, Broker, free_port, wait_http_ok
    data = tmp_path / "data"
    subprocess.run([STRATA_BIN, "format", "--data-dir", str(data),
                    "--add-scram", "SCRAM-SHA-256=[name=analyst,password=analyst-secret]"],
                   check=True, capture_output=True)
    plain, sasl, sql_port = free_port(), free_port(), free_port()
    config = f"""
listeners = "PLAINTEXT://127.0.0.1:{plain},SASL_PLAINTEXT://127.0.0.1:{sasl}"
"sasl.enabled.mechanisms" = "SCRAM-SHA-256"
"""
    b = Broker(data, port=plain, config_text=config,
               extra_args=["--sql-listen", f"127.0.0.1:{sql_port}", "--sql-auth", "basic"]).start()
    url = f"http://127.0.0.1:{sql_port}"
    good, bad = ("analyst", "analyst-secret"), ("analyst", "nope")
    try:
        wait_http_ok(url + "/healthcheck")

        def post(path, body, auth=None):
            return requests.post(url + path, json=body, auth=auth, timeout=30,
                                 headers={"accept": "application/json"})
        r = post("/ksql", {"ksql": "SHOW STREAMS;"})
        assert r.status_code == 401 and r.json()["error_code"] == 40100, r.text
        assert r.headers["www-authenticate"].startswith("Basic")
        assert post("/ksql", {"ksql": "SHOW STREAMS;"}, bad).status_code == 401
        assert post("/query-stream", {"sql": "SELECT 1 FROM x;"}, bad).status_code == 401
        assert requests.get(url + "/info", timeout=10).status_code == 401
        assert requests.get(url + "/info", timeout=10, auth=good).status_code == 200
        s = unique("auth").replace("-", "_").upper()
        r = post("/ksql", {"ksql": f"CREATE STREAM R_{s} (ID STRING KEY, V INT) "
                                   f"WITH (kafka_topic='r_{s.lower()}', partitions=1, value_format='JSON');"}, good)
        assert r.status_code == 200, r.text
        r = post("/ksql", {"ksql": f"CREATE TABLE T_{s} AS SELECT ID, SUM(V) AS S FROM R_{s} GROUP BY ID;",
                           "streamsProperties": {"ksql.streams.auto.offset.reset": "earliest"}}, good)
        assert r.status_code == 200, r.text
        for v in (1, 2, 3):
            r = post("/ksql", {"ksql": f"INSERT INTO R_{s} (ID, V) VALUES ('a', {v});"}, good)
            assert r.status_code == 200, r.text

        def pulled():
            r = post("/query-stream", {"sql": f"SELECT * FROM T_{s} WHERE ID = 'a';", "properties": {}}, good)
            return r.json()[1:] if r.ok else r.text
        deadline = time.time() + 30
        while time.time() < deadline and pulled() != [["a", 6]]:
            time.sleep(0.2)
        assert pulled() == [["a", 6]]
        # strata sql logs in as ksqlDB's CLI does (-u, the password from the environment).
        env = {**os.environ, "STRATA_SQL_PASSWORD": "analyst-secret"}
        r = subprocess.run([STRATA_BIN, "sql", "--server", url, "-u", "analyst", "-e", "SHOW STREAMS;"],
                           capture_output=True, text=True, timeout=30, env=env)
        assert r.returncode == 0 and f"R_{s}" in r.stdout, r.stdout + r.stderr
        env["STRATA_SQL_PASSWORD"] = "nope"
        r = subprocess.run([STRATA_BIN, "sql", "--server", url, "-u", "analyst", "-e", "SHOW STREAMS;"],
                           capture_output=True, text=True, timeout=30, env=env)
        assert f"R_{s}" not in r.stdout and "Unauthorized" in r.stdout + r.stderr, r.stdout + r.stderr
    finally:
        b.stop()
    assert "panicked" not in b.log_text()


def test_the_python_ksqldb_client_runs_statements_inserts_push_and_pull_queries(tmp_path):
    from ksqldb import KSQLdbClient

    b = sql_broker(tmp_path)
    try:
        c = KSQLdbClient(b.sql)
        s = unique("p").replace("-", "_").upper()
        created = c.ksql(f"CREATE STREAM P_{s} (ID STRING KEY, V INT) "
                         f"WITH (kafka_topic='p_{s.lower()}', partitions=1, value_format='JSON');")
        assert created[0]["commandStatus"]["status"] == "SUCCESS"
        table = c.ksql(f"CREATE TABLE T_{s} AS SELECT ID, SUM(V) AS S FROM P_{s} GROUP BY ID;",
                       stream_properties={"ksql.streams.auto.offset.reset": "earliest"})
        assert table[0]["commandStatus"]["queryId"].startswith("CTAS_")

        async def push():
            gen = c.query_async(f"SELECT ID, V FROM P_{s} EMIT CHANGES;", timeout=30)
            header = await gen.__anext__()
            acks = c.inserts_stream(f"P_{s}", [{"ID": "a", "V": 1}, {"ID": "b", "V": 2}, {"ID": "a", "V": 3}])
            rows = []
            async for row in gen:
                rows.append(row)
                if len(rows) == 3:
                    break
            closed = c.close_query(header["queryId"])
            await gen.aclose()
            return header, acks, rows, closed

        header, acks, rows, closed = asyncio.run(push())
        assert header["columnNames"] == ["ID", "V"] and header["columnTypes"] == ["STRING", "INTEGER"]
        assert acks == [{"status": "ok", "seq": i} for i in range(3)]
        assert rows == [["a", 1], ["b", 2], ["a", 3]]
        assert closed is True
        deadline = time.time() + 20
        pulled = None
        while time.time() < deadline:
            pulled = c.query_sync(f"SELECT * FROM T_{s} WHERE ID = 'a';")
            if len(pulled) > 1 and pulled[1] == ["a", 4]:
                break
            time.sleep(0.1)
        assert pulled[0]["columnNames"] == ["ID", "S"]
        assert pulled[1:] == [["a", 4]]
        # An error entity as ksqlDB writes it: the client raises on its status.
        with pytest.raises(Exception) as refused:
            c.ksql(f"DROP STREAM NOT_THERE_{s};")
        assert "400" in str(refused.value)
        assert ksql(b, "SHOW STREAMS;")[0]["streams"]
    finally:
        b.stop()
