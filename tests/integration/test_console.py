"""The web console end to end (issue 17): Debian's headless Chromium driven by playwright-core
(tests/console/console.mjs) against a running broker and a three-node cluster. The pages
load; a topic is created and a message produced and then seen in the message browser (with
offset and time seek, JSON and hex decoding); a consumer group's lag appears; a SQL push
query shows rows as they arrive. Screenshots of each main page are saved under
target/console-screenshots/ (artifacts, not committed)."""
import os
import pathlib
import shutil
import subprocess
import time

import pytest
import requests
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import Broker, free_port

ROOT = pathlib.Path(__file__).resolve().parents[2]
DRIVER = ROOT / "tests" / "console" / "console.mjs"
SHOTS = ROOT / "target" / "console-screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def lagging_group(bootstrap, group, topic, rf=1):
    """A group that committed 30 of 50 records on each of 2 partitions: lag 40 in all."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=rf)])[topic].result(60)
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(100):
        p.produce(topic, value=f"v{i}".encode(), partition=i % 2)
    assert p.flush(30) == 0
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    c.commit(offsets=[TopicPartition(topic, 0, 30), TopicPartition(topic, 1, 30)], asynchronous=False)
    c.close()


def drive(url, shots, **expect):
    assert (ROOT / "tests" / "console" / "node_modules" / "playwright-core").exists(), \
        "run scripts/test (it installs playwright-core from npm into tests/console)"
    assert os.path.exists(CHROMIUM), "run scripts/test (it installs Debian's chromium)"
    env = {**os.environ, "CONSOLE_URL": url, "SCREENSHOTS": str(shots), "CHROMIUM": CHROMIUM,
           **{k.upper(): str(v) for k, v in expect.items()}}
    r = subprocess.run(["node", str(DRIVER)], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
    for page in ["overview", "topics", "topic", "security"]:
        assert (shots / f"{page}.png").stat().st_size > 10_000, page


def test_the_console_on_one_broker(tmp_path):
    http, sql = free_port(), free_port()
    # With an authorizer (the console's caller, User:ANONYMOUS, a super user), so ACLs can be
    # managed from the console; the cluster runs without one.
    config = ('"authorizer.class.name" = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"\n'
              '"super.users" = "User:ANONYMOUS"\n')
    b = Broker(tmp_path / "data", config_text=config,
               extra_args=["--http-listen", f"127.0.0.1:{http}", "--sql-listen", f"127.0.0.1:{sql}"]).start()
    try:
        url = f"http://127.0.0.1:{http}"
        page = requests.get(url + "/", timeout=10)
        assert page.status_code == 200 and "/console/app.js" in page.text, page.text
        assert requests.get(url + "/console/app.js", timeout=10).headers["content-type"].startswith("text/javascript")
        assert requests.get(url + "/console/nope.js", timeout=10).status_code == 404
        deadline = time.time() + 30
        while requests.get(url + "/v1/sql/info", timeout=10).status_code != 200:
            assert time.time() < deadline, "the SQL engine did not start"
            time.sleep(0.2)
        lagging_group(b.bootstrap, "console-readers", "console-orders")
        drive(url, SHOTS / "single", brokers=1, group="console-readers", lag=40, sql=1,
              topic="console-made", replication=1, authorizer=1)
        for page in ["group", "sql"]:
            assert (SHOTS / "single" / f"{page}.png").exists(), page
    finally:
        b.stop()
    assert "panicked" not in b.log_text()


def test_the_console_on_a_three_node_cluster(tmp_path):
    from test_admin_http import http_cluster
    sql = free_port()
    nodes = http_cluster(tmp_path, extra_args=lambda i: ["--sql-listen", f"127.0.0.1:{sql}"] if i == 1 else [])
    try:
        # The group's offsets and partitions live on whichever nodes lead them; the console
        # is the second node's (which also runs the SQL engine).
        lagging_group(nodes[0].bootstrap, "cluster-readers", "cluster-orders", rf=3)
        url = nodes[1].http
        deadline = time.time() + 60
        while requests.get(url + "/v1/sql/info", timeout=10).status_code != 200:
            assert time.time() < deadline, "the SQL engine did not start"
            time.sleep(0.2)
        drive(url, SHOTS / "cluster", brokers=3, group="cluster-readers", lag=40, sql=1,
              topic="cluster-made", replication=3)
    finally:
        for b in nodes:
            b.stop()
    for b in nodes:
        assert "panicked" not in b.log_text()
