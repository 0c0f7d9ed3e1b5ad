"""ksqlDB REST clients we did not write, against the SQL listener: `ksqldb-client` (npm, HTTP/2
like ksqlDB's own Java client) and `ksqldb` (PyPI; HTTP/1.1 for statements, HTTP/2 for
/query-stream and /inserts-stream). ksqlDB's Java and Go clients are not served by Maven
Central or the Go module proxy, and PyPI's `ksql` (ksql-python) no longer builds."""
import asyncio
import json
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
        host, port = b.sql.removeprefix("http://").split(":")
        suffix = unique("n").replace("-", "_")
        r = subprocess.run(["node", str(JS_DIR / "session.js"), host, port, suffix],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        seen = json.loads(r.stdout.strip().splitlines()[-1])
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
    finally:
        b.stop()


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
