"""The HTTP admin listener (issue 17): Prometheus metrics scraped and parsed by the official
Python client's parser, health and readiness, and the /v1 admin API against its OpenAPI
file, on one broker and on a three-node cluster."""
import base64
import json
import time

import pytest
import requests
from confluent_kafka import ConsumerGroupTopicPartitions, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from prometheus_client.parser import text_string_to_metric_families

from conftest import Broker, free_port


def http_broker(tmp_path, config_text=None):
    port = free_port()
    b = Broker(tmp_path / "data", config_text=config_text,
               extra_args=["--http-listen", f"127.0.0.1:{port}"]).start()
    b.http = f"http://127.0.0.1:{port}"
    return b


def scrape(b):
    """The metrics as Prometheus reads them: {(name, labels as a sorted tuple): value}, and the
    families' types."""
    r = requests.get(f"{b.http}/metrics", timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4"), r.headers
    samples, types = {}, {}
    for family in text_string_to_metric_families(r.text):
        types[family.name] = family.type
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples, types


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))))


def test_metrics_health_and_the_topic_api_on_one_broker(tmp_path):
    b = http_broker(tmp_path)
    try:
        assert requests.get(f"{b.http}/healthz", timeout=10).json() == {"status": "ok"}
        assert requests.get(f"{b.http}/readyz", timeout=10).status_code == 200
        spec = requests.get(f"{b.http}/v1/openapi.json", timeout=10).json()
        assert spec["openapi"].startswith("3.") and "/v1/topics" in spec["paths"], spec.keys()

        # Topics through the API.
        r = requests.post(f"{b.http}/v1/topics", json={"name": "orders", "partitions": 3}, timeout=30)
        assert r.status_code == 201, r.text
        created = r.json()
        assert created["name"] == "orders" and len(created["partitions"]) == 3, created
        assert requests.post(f"{b.http}/v1/topics", json={"name": "orders"}, timeout=30).status_code == 409
        bad = requests.post(f"{b.http}/v1/topics", json={"name": "no spaces"}, timeout=30)
        assert bad.status_code == 400 and bad.json()["message"], bad.text
        assert requests.post(f"{b.http}/v1/topics", data=b"{not json", timeout=30).status_code == 400
        unknown_field = requests.post(f"{b.http}/v1/topics", json={"name": "x", "colour": "red"}, timeout=30)
        assert unknown_field.status_code == 400, unknown_field.text
        huge = requests.post(f"{b.http}/v1/topics", data=b"x" * (2 << 20), timeout=30)
        assert huge.status_code == 413, huge.status_code
        names = [t["name"] for t in requests.get(f"{b.http}/v1/topics", timeout=10).json()]
        assert "orders" in names, names
        described = requests.get(f"{b.http}/v1/topics/orders", timeout=10).json()
        assert [p["partition"] for p in described["partitions"]] == [0, 1, 2], described
        assert requests.get(f"{b.http}/v1/topics/nope", timeout=10).status_code == 404
        assert requests.put(f"{b.http}/v1/topics", timeout=10).status_code == 405
        assert requests.get(f"{b.http}/v1/nothing", timeout=10).status_code == 404

        # Traffic: 100 records of 100 bytes to partition 0, 60 consumed and committed.
        p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all"})
        for i in range(100):
            p.produce("orders", value=b"v" * 100, partition=0)
        assert p.flush(30) == 0
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "billing",
                      "enable.auto.commit": False})
        c.assign([TopicPartition("orders", 0, 0)])
        got = 0
        deadline = time.time() + 30
        while got < 60 and time.time() < deadline:
            for m in c.consume(60 - got, 1):
                if not m.error():
                    got += 1
        c.commit(offsets=[TopicPartition("orders", 0, 60)], asynchronous=False)
        c.close()

        samples, types = scrape(b)
        assert value(samples, "kafka_server_brokertopicmetrics_messagesin_total", topic="orders") == 100
        assert value(samples, "kafka_server_brokertopicmetrics_bytesin_total", topic="orders") >= 100 * 100
        assert value(samples, "kafka_server_brokertopicmetrics_bytesout_total", topic="orders") >= 60 * 100
        assert value(samples, "kafka_network_requestmetrics_requests_total", request="Produce") >= 1
        assert types["kafka_network_requestmetrics_totaltime_seconds"] == "histogram"
        produce_count = value(samples, "kafka_network_requestmetrics_totaltime_seconds_count", request="Produce")
        assert produce_count >= 1
        assert value(samples, "kafka_network_requestmetrics_totaltime_seconds_bucket",
                     request="Produce", le="+Inf") == produce_count
        assert value(samples, "kafka_log_log_logendoffset", topic="orders", partition="0") == 100
        assert value(samples, "kafka_log_log_size", topic="orders", partition="0") > 100 * 100
        assert value(samples, "kafka_consumergroup_current_offset", consumergroup="billing",
                     topic="orders", partition="0") == 60
        assert value(samples, "kafka_consumergroup_lag", consumergroup="billing",
                     topic="orders", partition="0") == 40
        assert value(samples, "kafka_server_replicamanager_leadercount") >= 3
        assert value(samples, "kafka_controller_controllerstats_leaderelections_total") >= 3
        assert value(samples, "kafka_server_replicamanager_underreplicatedpartitions") == 0
        assert value(samples, "kafka_controller_kafkacontroller_activecontrollercount") == 1
        assert value(samples, "kafka_controller_kafkacontroller_offlinepartitionscount") == 0
        assert value(samples, "kafka_server_socket_server_metrics_connection_creation_total",
                     listener="PLAINTEXT") >= 2
        assert value(samples, "kafka_log_logflushstats_logflush_seconds_count") >= 1
        for part in ["requestqueuetime", "throttletime", "responsesendtime"]:
            family = f"kafka_network_requestmetrics_{part}_seconds"
            assert types[family] == "histogram", family
            assert value(samples, f"{family}_count", request="Produce") == produce_count, family

        groups = requests.get(f"{b.http}/v1/groups", timeout=10).json()
        assert any(g["group_id"] == "billing" for g in groups), groups
        billing = requests.get(f"{b.http}/v1/groups/billing", timeout=10).json()
        assert billing["offsets"] == [{"topic": "orders", "partition": 0, "committed_offset": 60,
                                       "log_end_offset": 100, "lag": 40, "member_id": None}], billing
        assert billing["state"] == "Empty" and billing["members"] == [], billing
        assert requests.get(f"{b.http}/v1/groups/nobody", timeout=10).status_code == 404

        # Offsets reset through the API (the group has no members), as Kafka's tools see them.
        r = requests.post(f"{b.http}/v1/groups/billing/offsets", json={"topic": "orders", "partitions": [0], "offset": 10},
                          timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["offsets"] == [{"partition": 0, "offset": 10}], r.text
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        committed = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions("billing")])["billing"].result(20)
        assert [(tp.partition, tp.offset) for tp in committed.topic_partitions if tp.partition == 0] == [(0, 10)]
        assert requests.post(f"{b.http}/v1/groups/billing/offsets", json={"topic": "orders"},
                             timeout=30).status_code == 400
        assert requests.post(f"{b.http}/v1/groups/billing/offsets", json={"topic": "nope", "to": "latest"},
                             timeout=30).status_code == 404
        r = requests.post(f"{b.http}/v1/groups/billing/offsets", json={"topic": "orders", "partitions": [0],
                                                                          "to": "latest"}, timeout=30)
        assert r.json()["offsets"] == [{"partition": 0, "offset": 100}], r.text

        # Messages: a page of the newest, from an offset, from a time; one produced with headers.
        page = requests.get(f"{b.http}/v1/topics/orders/records?partition=0&limit=5", timeout=30).json()
        assert [m["offset"] for m in page["records"]] == [95, 96, 97, 98, 99], page
        assert len(base64.b64decode(page["records"][0]["value"])) == 100, page
        page = requests.get(f"{b.http}/v1/topics/orders/records?partition=0&offset=7&limit=2", timeout=30).json()
        assert [m["offset"] for m in page["records"]] == [7, 8], page
        r = requests.post(f"{b.http}/v1/topics/orders/records",
                          json={"key": "k", "value": "hello", "headers": {"h": "v"}, "partition": 1}, timeout=30)
        assert r.status_code == 201, r.text
        produced = r.json()
        assert produced["partition"] == 1 and produced["offset"] == 0, produced
        page = requests.get(f"{b.http}/v1/topics/orders/records?timestamp={produced['timestamp']}", timeout=30).json()
        assert [(m["partition"], base64.b64decode(m["key"]), base64.b64decode(m["value"]),
                 [(h["key"], base64.b64decode(h["value"])) for h in m["headers"]]) for m in page["records"]] == \
            [(1, b"k", b"hello", [("h", b"v")])], page
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "reader", "auto.offset.reset": "earliest"})
        c.assign([TopicPartition("orders", 1, 0)])
        m = c.poll(20)
        assert m is not None and m.value() == b"hello" and m.headers() == [("h", b"v")], m
        c.close()
        for bad in ["limit=0", "partition=9", "offset=-3", "colour=red"]:
            r = requests.get(f"{b.http}/v1/topics/orders/records?{bad}", timeout=30)
            assert r.status_code in (400, 404), (bad, r.status_code)
        assert requests.post(f"{b.http}/v1/topics/orders/records", json={"value": "x", "partition": 9},
                             timeout=30).status_code == 400
        assert requests.get(f"{b.http}/v1/topics/nope/records", timeout=30).status_code == 404

        # Configs and partitions.
        r = requests.patch(f"{b.http}/v1/topics/orders/configs", json={"configs": {"retention.ms": "3600000"}},
                           timeout=30)
        assert r.status_code == 200 and r.json()["configs"]["retention.ms"] == "3600000", r.text
        assert requests.patch(f"{b.http}/v1/topics/orders/configs", json={"configs": {"retention.ms": "soon"}},
                              timeout=30).status_code == 400
        r = requests.patch(f"{b.http}/v1/topics/orders/configs", json={"configs": {"retention.ms": None}},
                           timeout=30)
        assert "retention.ms" not in r.json()["configs"], r.text
        r = requests.post(f"{b.http}/v1/topics/orders/partitions", json={"count": 4}, timeout=30)
        assert r.status_code == 200 and len(r.json()["partitions"]) == 4, r.text
        assert requests.post(f"{b.http}/v1/topics/orders/partitions", json={"count": 2},
                             timeout=30).status_code == 400

        stats = requests.get(f"{b.http}/v1/stats", timeout=10).json()
        assert stats["messages_in"] >= 101 and stats["partitions"] >= 4 and stats["offline"] == 0, stats
        assert requests.get(f"{b.http}/v1/acls", timeout=10).json() == {"authorizer": False, "acls": []}
        assert requests.get(f"{b.http}/v1/quotas", timeout=10).json() == []
        assert requests.get(f"{b.http}/v1/transactions", timeout=10).json() == []
        r = requests.post(f"{b.http}/v1/sql/ksql", json={"ksql": "SHOW STREAMS;"}, timeout=10)
        assert r.status_code == 503, r.text  # this broker runs without SQL

        # Deleting through the API: the topic and its series go.
        assert requests.delete(f"{b.http}/v1/topics/orders", timeout=30).status_code == 204
        assert requests.get(f"{b.http}/v1/topics/orders", timeout=10).status_code == 404
        assert requests.delete(f"{b.http}/v1/topics/orders", timeout=30).status_code == 404
        samples, _ = scrape(b)
        assert value(samples, "kafka_log_log_logendoffset", topic="orders", partition="0") is None
    finally:
        b.stop()
    assert "panicked" not in b.log_text()


def test_per_partition_series_can_be_turned_off(tmp_path):
    b = http_broker(tmp_path, config_text='"metrics.partition.level" = false\n')
    try:
        requests.post(f"{b.http}/v1/topics", json={"name": "wide", "partitions": 50},
                      timeout=30).raise_for_status()
        samples, _ = scrape(b)
        assert not [k for k in samples if ("partition", "0") in k[1]], "per-partition series"
        assert value(samples, "kafka_server_replicamanager_partitioncount") >= 50
    finally:
        b.stop()


def test_a_busy_or_explicit_http_address(tmp_path):
    """An explicit --http-listen that cannot be bound stops the start with a clear error;
    "none" turns the listener off."""
    import socket
    import subprocess
    from conftest import STRATA_BIN
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = subprocess.run([STRATA_BIN, "serve", "--data-dir", str(tmp_path / "d"),
                            "--listen", f"127.0.0.1:{free_port()}", "--sql-listen", "none",
                            "--http-listen", f"127.0.0.1:{port}"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode != 0 and f"127.0.0.1:{port}" in r.stderr, r.stderr[-2000:]


def http_cluster(tmp_path, n=3, extra_args=lambda i: []):
    """n nodes of a cluster, each with its HTTP listener (`node.http`), started and each
    knowing every broker. The caller stops them."""
    from test_cluster import FAST, start_all
    from confluent_kafka.admin import AdminClient
    ports = [free_port() for _ in range(n)]
    kafka_ports = [free_port() for _ in range(n)]
    controller_ports = [free_port() for _ in range(n)]
    voters = ",".join(f"{i + 1}@127.0.0.1:{controller_ports[i]}" for i in range(n))
    nodes = [Broker(tmp_path / f"node{i + 1}", port=kafka_ports[i], config_text=FAST,
                    extra_args=["--node-id", str(i + 1), "--controller-quorum-voters", voters,
                                "--http-listen", f"127.0.0.1:{ports[i]}", *extra_args(i)])
             for i in range(n)]
    for b, port in zip(nodes, ports):
        b.http = f"http://127.0.0.1:{port}"
    try:
        start_all(nodes)
        for b in nodes:
            deadline = time.time() + 30
            while len(AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(timeout=10).brokers) < n:
                assert time.time() < deadline, "not every broker known"
                time.sleep(0.2)
    except BaseException:
        for b in nodes:
            b.stop()
        raise
    return nodes


def test_the_api_answers_on_every_node_of_a_cluster(tmp_path):
    nodes = http_cluster(tmp_path)
    try:
        urls = [b.http for b in nodes]
        r = requests.post(f"{urls[0]}/v1/topics", json={"name": "spread", "partitions": 3,
                                                          "replication_factor": 3}, timeout=60)
        assert r.status_code == 201, r.text

        def seen_everywhere():
            return all(any(t["name"] == "spread" for t in requests.get(f"{u}/v1/topics", timeout=10).json())
                       for u in urls)
        deadline = time.time() + 30
        while not seen_everywhere():
            assert time.time() < deadline, "the topic did not reach every node"
            time.sleep(0.2)
        cluster = requests.get(f"{urls[1]}/v1/cluster", timeout=10).json()
        assert sorted(b["node_id"] for b in cluster["brokers"]) == [1, 2, 3], cluster
        # Each node's console counts the whole cluster: its peers' summaries over HTTP.
        before = requests.get(f"{urls[0]}/v1/stats?scope=cluster", timeout=30).json()
        assert sorted(n["node_id"] for n in before["nodes"]) == [1, 2, 3] and before["missing"] == [], before
        assert before["totals"]["leaders"] >= 3, before
        # Each node describes every partition's offsets and size, asking the other leaders.
        p = Producer({"bootstrap.servers": ",".join(b.bootstrap for b in nodes)})
        for i in range(30):
            p.produce("spread", value=b"v%d" % i, partition=i % 3)
        assert p.flush(30) == 0
        for u in urls:
            parts = requests.get(f"{u}/v1/topics/spread", timeout=30).json()["partitions"]
            assert [(x["high_watermark"], x["log_start_offset"]) for x in parts] == [(10, 0)] * 3, (u, parts)
            assert all(x["size_bytes"] > 0 for x in parts), (u, parts)
        # A group's lag is reported by its coordinator for every partition, the ones other
        # nodes lead included (their leaders asked at scrape time).
        c = Consumer({"bootstrap.servers": nodes[0].bootstrap, "group.id": "spread-readers",
                      "enable.auto.commit": False})
        c.commit(offsets=[TopicPartition("spread", i, 4) for i in range(3)], asynchronous=False)
        c.close()
        lag = {}
        for u in urls:
            for family in text_string_to_metric_families(requests.get(f"{u}/metrics", timeout=30).text):
                for sample in family.samples:
                    if sample.name == "kafka_consumergroup_lag" and sample.labels["consumergroup"] == "spread-readers":
                        lag[int(sample.labels["partition"])] = sample.value
        assert lag == {0: 6, 1: 6, 2: 6}, lag
        # The 30 messages went to three leaders; any one node counts them all.
        after = requests.get(f"{urls[1]}/v1/stats?scope=cluster", timeout=30).json()
        assert after["totals"]["messages_in"] - before["totals"]["messages_in"] == 30, (before, after)
        assert all(b["http"] for b in requests.get(f"{urls[2]}/v1/cluster", timeout=10).json()["brokers"])
        # A broker's configs are asked of that broker, from any node.
        other = requests.get(f"{urls[0]}/v1/brokers/3/configs", timeout=30)
        assert other.status_code == 200 and any(c["name"] == "node.id" or c["name"] == "log.dirs"
                                                or c["name"] == "log.retention.ms" for c in other.json()["configs"]), other.text
        assert requests.get(f"{urls[0]}/v1/stats?scope=nope", timeout=10).status_code == 400
        leaders = 0
        controllers = 0
        for u in urls:
            samples = {}
            for family in text_string_to_metric_families(requests.get(f"{u}/metrics", timeout=10).text):
                for s in family.samples:
                    samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
            leaders += value(samples, "kafka_server_replicamanager_leadercount")
            controllers += value(samples, "kafka_controller_kafkacontroller_activecontrollercount")
            assert value(samples, "kafka_server_replicamanager_partitioncount") >= 3
        assert controllers == 1, controllers
        assert leaders >= 3, leaders

        # Moving replicas and leaders: partition 0 down to two replicas, led by its second.
        before = requests.get(f"{urls[0]}/v1/topics/spread", timeout=30).json()["partitions"][0]["replicas"]
        target = [before[1], before[0]]
        r = requests.put(f"{urls[1]}/v1/topics/spread/partitions/0/replicas", json={"replicas": target}, timeout=60)
        assert r.status_code == 202, r.text
        deadline = time.time() + 60
        while requests.get(f"{urls[2]}/v1/topics/spread", timeout=30).json()["partitions"][0]["replicas"] != target:
            assert time.time() < deadline, "the reassignment did not finish"
            time.sleep(0.5)
        assert requests.get(f"{urls[0]}/v1/reassignments", timeout=30).json() == []
        r = requests.post(f"{urls[0]}/v1/elections", json={"topic": "spread", "partitions": [0]}, timeout=60)
        assert r.status_code == 200, r.text
        assert r.json()["elected"] + r.json()["not_needed"] == ["spread-0"], r.text
        deadline = time.time() + 30
        while requests.get(f"{urls[0]}/v1/topics/spread", timeout=30).json()["partitions"][0]["leader"] != target[0]:
            assert time.time() < deadline, "the preferred replica did not take the lead"
            time.sleep(0.5)
        # Refusals: an unknown broker, nothing to cancel, a bad election type.
        r = requests.put(f"{urls[0]}/v1/topics/spread/partitions/1/replicas", json={"replicas": [9]}, timeout=60)
        assert r.status_code == 400, r.text
        r = requests.delete(f"{urls[0]}/v1/topics/spread/partitions/1/reassignment", timeout=60)
        assert r.status_code == 404, r.text
        assert requests.post(f"{urls[0]}/v1/elections", json={"type": "unclean"}, timeout=30).status_code == 400
        # A follower dies: the leaders shrink their ISRs, and the metrics say so.
        def total(name, among=(0, 1, 2)):
            out = 0
            for i, (u, b) in enumerate(zip(urls, nodes)):
                if i not in among or not b.alive():
                    continue
                for family in text_string_to_metric_families(requests.get(f"{u}/metrics", timeout=10).text):
                    for s in family.samples:
                        if s.name == name:
                            out += s.value
            return out
        # (The move above shrank an ISR already: count the survivors' shrinks from here.)
        shrinks = total("kafka_server_replicamanager_isrshrinks_total", among=(0, 1))
        nodes[2].kill9()
        deadline = time.time() + 30
        while total("kafka_server_replicamanager_isrshrinks_total") < shrinks + 1:
            assert time.time() < deadline, "no ISR shrink counted"
            time.sleep(0.5)
        assert total("kafka_server_replicamanager_underreplicatedpartitions") >= 1
        # A dead node is named, not waited for forever (it stays registered until fenced).
        gone = requests.get(f"{urls[0]}/v1/stats?scope=cluster", timeout=30).json()
        assert 3 not in [n["node_id"] for n in gone["nodes"]], gone
    finally:
        for b in nodes:
            b.stop()


def test_the_api_keeps_to_its_openapi_file(tmp_path):
    """Schemathesis (contract tests generated from /v1/openapi.json): every response matches
    its documented status, schema and headers, invalid requests are refused, no request
    makes the server fail. Left out: accepting every schema-valid topic (the schema cannot
    say which config values or replica counts a broker takes), and the SQL passthrough (its
    contract is ksqlDB's REST API, tested with ksqlDB's own clients in test_ksqldb_clients;
    the console test drives it through this listener)."""
    import subprocess
    b = http_broker(tmp_path)
    try:
        r = subprocess.run(["schemathesis", "run", f"{b.http}/v1/openapi.json", "--checks", "all",
                            "--exclude-checks", "positive_data_acceptance",
                            "--exclude-path-regex", "^/v1/sql/",
                            "--max-examples", "40", "--request-timeout", "10", "--seed", "17"],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout[-8000:] + r.stderr[-2000:]
        # The broker stayed up and serves.
        assert requests.get(f"{b.http}/readyz", timeout=10).status_code == 200
    finally:
        b.stop()
    assert "panicked" not in b.log_text()


def test_logs_are_one_json_object_a_line_when_asked(tmp_path):
    import os
    b = Broker(tmp_path / "data", env={**os.environ, "STRATA_LOG_FORMAT": "json"}).start()
    try:
        from confluent_kafka.admin import AdminClient, NewTopic
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        admin.create_topics([NewTopic("audited", 2, 1)])["audited"].result(30)
    finally:
        b.stop()
    lines = [line for line in b.log_text().splitlines() if line.strip()]
    events = [json.loads(line) for line in lines]  # every line is JSON
    assert all({"timestamp", "level", "fields"} <= e.keys() for e in events), events[:2]
    created = [e for e in events if e["fields"].get("message") == "topic created"]
    assert created and created[0]["fields"]["topic"] == "audited", created
    assert created[0]["fields"]["partitions"] == 2, created


def test_cli_json_output_and_shell_completions(tmp_path):
    import subprocess
    from conftest import STRATA_BIN
    b = http_broker(tmp_path)
    try:
        requests.post(f"{b.http}/v1/topics", json={"name": "cli", "partitions": 2},
                      timeout=30).raise_for_status()

        def cli(*args):
            r = subprocess.run([STRATA_BIN, *args, "--bootstrap", b.bootstrap],
                               capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, r.stderr
            return r.stdout
        assert {"name": "cli", "partitions": 2} in json.loads(cli("topic", "list", "--output", "json"))
        described = json.loads(cli("topic", "describe", "cli", "--output", "json"))
        assert [p["partition"] for p in described["partitions"]] == [0, 1], described
        assert described["partitions"][0]["high_watermark"] == 0, described
        assert described["configs"]["cleanup.policy"] == {"value": "delete", "source": "default"}
        assert "partition\tleader" in cli("topic", "describe", "cli")  # the table stays the default
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "cli-group",
                      "enable.auto.commit": False})
        c.commit(offsets=[TopicPartition("cli", 0, 0)], asynchronous=False)
        c.close()
        groups = json.loads(cli("group", "list", "--output", "json"))
        assert any(g["group_id"] == "cli-group" for g in groups), groups
    finally:
        b.stop()
    script = subprocess.run([STRATA_BIN, "completions", "bash"], capture_output=True, text=True,
                            timeout=30).stdout
    done = subprocess.run(["bash", "-c", 'source /dev/stdin && complete -p strata'], input=script,
                          capture_output=True, text=True, timeout=30)
    assert "_strata" in done.stdout, done.stderr
    assert "topic" in script and "completions" in script


def basic_auth_broker(tmp_path, extra_args=()):
    """A broker with an authorizer, SCRAM users (test_acl's USERS; admin is a super user) on a
    SASL listener, and its HTTP API behind `--http-auth basic`: (broker, url, credentials by
    user)."""
    from test_acl import USERS, start_acl_broker

    http = free_port()
    b = start_acl_broker(tmp_path, extra_config='"sasl.enabled.mechanisms" = "SCRAM-SHA-256"\n',
                         extra_args=["--http-listen", f"127.0.0.1:{http}", "--http-auth", "basic", *extra_args])
    return b, f"http://127.0.0.1:{http}", {u: (u, pw) for u, pw in USERS.items()}


def test_http_basic_users_are_authorized_with_their_acls(tmp_path):
    """`--http-auth basic`: the API and console take HTTP Basic credentials that the broker's
    SASL listener takes (SCRAM here), and authorize each request with that user's ACLs, as
    their Kafka client would be: unlisted topics, 403 on what they may not do, allowed once
    an ACL says so. Probes, metrics and the OpenAPI file need no credentials."""
    from test_acl import allow, create_acls
    from confluent_kafka.admin import AclOperation, ResourceType

    b, url, creds = basic_auth_broker(tmp_path)
    try:
        for open_path in ["/healthz", "/readyz", "/metrics", "/v1/openapi.json"]:
            assert requests.get(url + open_path, timeout=10).status_code == 200, open_path
        for path in ["/", "/v1/topics", "/v1/cluster"]:
            r = requests.get(url + path, timeout=10)
            assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic"), (path, r.text)
        assert requests.get(url + "/v1/topics", auth=("alice", "wrong"), timeout=10).status_code == 401
        assert requests.get(url + "/", auth=creds["alice"], timeout=10).status_code == 200

        r = requests.post(url + "/v1/topics", json={"name": "secret", "partitions": 1}, auth=creds["admin"],
                          timeout=30)
        assert r.status_code == 201, r.text
        r = requests.post(url + "/v1/topics/secret/records", json={"value": "classified"}, auth=creds["admin"],
                          timeout=30)
        assert r.status_code == 201, r.text
        # alice may do nothing yet: the topic is not listed, reads and writes are refused.
        assert requests.get(url + "/v1/topics", auth=creds["alice"], timeout=10).json() == []
        r = requests.get(url + "/v1/topics/secret/records", auth=creds["alice"], timeout=10)
        assert r.status_code == 403 and "User:alice" in r.json()["message"], r.text
        assert requests.post(url + "/v1/topics", json={"name": "mine"}, auth=creds["alice"],
                             timeout=30).status_code == 403
        assert requests.delete(url + "/v1/topics/secret", auth=creds["alice"], timeout=30).status_code == 403
        assert requests.get(url + "/v1/acls", auth=creds["alice"], timeout=10).status_code == 403
        # READ on the topic: listed (READ implies DESCRIBE) and readable, still not writable.
        create_acls(b, allow("User:alice", AclOperation.READ, ResourceType.TOPIC, "secret"))
        deadline = time.time() + 10
        while requests.get(url + "/v1/topics/secret/records", auth=creds["alice"], timeout=10).status_code != 200:
            assert time.time() < deadline, "the ACL did not take effect"
            time.sleep(0.2)
        page = requests.get(url + "/v1/topics/secret/records", auth=creds["alice"], timeout=10).json()
        assert [base64.b64decode(m["value"]) for m in page["records"]] == [b"classified"], page
        assert [t["name"] for t in requests.get(url + "/v1/topics", auth=creds["alice"], timeout=10).json()] \
            == ["secret"]
        assert requests.post(url + "/v1/topics/secret/records", json={"value": "x"}, auth=creds["alice"],
                             timeout=30).status_code == 403
        acls = requests.get(url + "/v1/acls", auth=creds["admin"], timeout=10).json()
        assert acls["authorizer"] is True and acls["acls"][0]["principal"] == "User:alice", acls
    finally:
        b.stop()
    assert "panicked" not in b.log_text()


def test_acls_users_and_quotas_are_managed_over_http_as_kafka_admins_would(tmp_path):
    """Writes through the API land in the cluster metadata exactly as a Kafka admin client's
    would: a SCRAM user made over HTTP logs in with librdkafka, ACLs added and removed over HTTP
    are what confluent-kafka's describe_acls sees, quotas set over HTTP are what
    DescribeClientQuotas answers. Each write needs what Kafka asks (ALTER / ALTER_CONFIGS on the
    cluster): a plain user is refused."""
    from confluent_kafka.admin import AclBindingFilter, AclOperation, AclPermissionType, \
        ResourcePatternType, ResourceType
    from conftest import STRATA_BIN
    import subprocess

    b, url, creds = basic_auth_broker(tmp_path)
    sasl = f"127.0.0.1:{b.sasl_port}"

    def kafka_admin(user, password):
        return AdminClient({"bootstrap.servers": sasl, "security.protocol": "SASL_PLAINTEXT",
                            "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": user, "sasl.password": password})

    try:
        kadmin = kafka_admin("admin", creds["admin"][1])  # (kept: a dropped client fails its futures)
        # A user made over HTTP (the password salted by the API, as kafka-configs does).
        r = requests.put(url + "/v1/users/carol", json={"mechanism": "SCRAM-SHA-256", "password": "c-secret"},
                         auth=creds["admin"], timeout=30)
        assert r.status_code == 200 and r.json()["iterations"] == 4096, r.text
        users = requests.get(url + "/v1/users", auth=creds["admin"], timeout=10).json()
        assert {"name": "carol", "credentials": [{"mechanism": "SCRAM-SHA-256", "iterations": 4096}]} in users, users
        described = kadmin.describe_user_scram_credentials(["carol"])["carol"].result(10)
        assert [(i.mechanism.name, i.iterations) for i in described.scram_credential_infos] == \
            [("SCRAM_SHA_256", 4096)], described
        # carol logs in to the Kafka listener with librdkafka, and to the API.
        carol = kafka_admin("carol", "c-secret")
        carol.list_topics(timeout=10)
        assert requests.get(url + "/v1/topics", auth=("carol", "c-secret"), timeout=10).status_code == 200
        # ... but may not manage users, ACLs or quotas.
        for method, path, body in [("PUT", "/v1/users/mallory", {"mechanism": "SCRAM-SHA-256", "password": "x"}),
                                   ("POST", "/v1/acls", {"resource_type": "TOPIC", "resource_name": "t",
                                                         "principal": "User:carol", "operation": "READ"}),
                                   ("DELETE", "/v1/acls?principal=User%3Acarol", None),
                                   ("PUT", "/v1/quotas", {"entity": [{"type": "user", "name": "carol"}],
                                                          "set": {"producer_byte_rate": 1}})]:
            r = requests.request(method, url + path, json=body, auth=("carol", "c-secret"), timeout=30)
            assert r.status_code == 403 and "User:carol" in r.json()["message"], (method, path, r.text)
        # Bad credentials are refused with a reason.
        for body in [{"mechanism": "SCRAM-SHA-1", "password": "x"},
                     {"mechanism": "SCRAM-SHA-256", "password": "x", "iterations": 10},
                     {"mechanism": "SCRAM-SHA-256", "password": ""}]:
            r = requests.put(url + "/v1/users/dave", json=body, auth=creds["admin"], timeout=30)
            assert r.status_code == 400, (body, r.text)

        # An ACL added over HTTP is the one Kafka's API describes, and it lets carol read.
        r = requests.post(url + "/v1/acls", json={"resource_type": "topic", "resource_name": "carol-",
                                                  "pattern_type": "prefixed", "principal": "User:carol",
                                                  "operation": "read"}, auth=creds["admin"], timeout=30)
        assert r.status_code == 201, r.text
        assert r.json() == {"resource_type": "TOPIC", "resource_name": "carol-", "pattern_type": "PREFIXED",
                            "principal": "User:carol", "host": "*", "operation": "READ", "permission": "ALLOW"}
        everything = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                                      AclOperation.ANY, AclPermissionType.ANY)
        seen = kadmin.describe_acls(everything).result(10)
        assert [(a.name, a.resource_pattern_type, a.principal, a.operation) for a in seen] == \
            [("carol-", ResourcePatternType.PREFIXED, "User:carol", AclOperation.READ)], seen
        r = requests.post(url + "/v1/topics", json={"name": "carol-data", "partitions": 1}, auth=creds["admin"],
                          timeout=30)
        assert r.status_code == 201, r.text
        deadline = time.time() + 10
        while requests.get(url + "/v1/topics/carol-data", auth=("carol", "c-secret"), timeout=10).status_code != 200:
            assert time.time() < deadline, "the ACL did not take effect"
            time.sleep(0.2)
        r = requests.post(url + "/v1/acls", json={"resource_type": "nonsense", "resource_name": "x",
                                                  "principal": "User:carol", "operation": "read"},
                          auth=creds["admin"], timeout=30)
        assert r.status_code == 400 and "resource type" in r.json()["message"], r.text
        # Removing: a filter is required; what matched is answered.
        assert requests.delete(url + "/v1/acls", auth=creds["admin"], timeout=30).status_code == 400
        r = requests.delete(url + "/v1/acls?principal=User%3Acarol&permission=DENY", auth=creds["admin"], timeout=30)
        assert r.status_code == 200 and r.json() == {"deleted": []}, r.text
        r = requests.delete(url + "/v1/acls?principal=User%3Acarol&operation=READ", auth=creds["admin"], timeout=30)
        assert r.status_code == 200 and [a["resource_name"] for a in r.json()["deleted"]] == ["carol-"], r.text
        assert kadmin.describe_acls(everything).result(10) == []

        # Quotas: set and removed over HTTP, seen through DescribeClientQuotas (the CLI).
        r = requests.put(url + "/v1/quotas", json={"entity": [{"type": "user", "name": "carol"}],
                                                   "set": {"producer_byte_rate": 1024, "consumer_byte_rate": 2048}},
                         auth=creds["admin"], timeout=30)
        assert r.status_code == 200, r.text
        listed = subprocess.run([STRATA_BIN, "quota", "list", "--output", "json", "--bootstrap", b.bootstrap],
                                capture_output=True, text=True, timeout=30)
        assert json.loads(listed.stdout) == [{"entity": [{"type": "user", "name": "carol"}],
                                              "quotas": {"consumer_byte_rate": 2048.0,
                                                         "producer_byte_rate": 1024.0}}], listed.stdout
        r = requests.put(url + "/v1/quotas", json={"entity": [{"type": "user", "name": "carol"}],
                                                   "remove": ["producer_byte_rate"]}, auth=creds["admin"], timeout=30)
        assert r.status_code == 200 and r.json() == [{"entity": [{"type": "user", "name": "carol"}],
                                                      "values": {"consumer_byte_rate": 2048.0}}], r.text
        r = requests.put(url + "/v1/quotas", json={"entity": [{"type": "user", "name": "carol"}],
                                                   "set": {"no_such_quota": 1}}, auth=creds["admin"], timeout=30)
        assert r.status_code == 400, r.text

        # Deleting the user: its logins stop working; a second delete finds nothing.
        r = requests.delete(url + "/v1/users/carol", auth=creds["admin"], timeout=30)
        assert r.status_code == 200 and r.json() == {"name": "carol", "deleted": ["SCRAM-SHA-256"]}, r.text
        assert requests.get(url + "/v1/topics", auth=("carol", "c-secret"), timeout=10).status_code == 401
        assert requests.delete(url + "/v1/users/carol", auth=creds["admin"], timeout=30).status_code == 404
    finally:
        b.stop()
    assert "panicked" not in b.log_text()


def test_the_sql_passthrough_is_for_admins_while_the_engine_does_not_check_users(tmp_path):
    """`--http-auth basic` with the SQL engine's own checks off (`--sql-auth` not given): the
    engine would run any statement with its own rights, so the passthrough takes only callers
    allowed ALTER on the cluster, and says why to the others."""
    sql = free_port()
    b, url, creds = basic_auth_broker(tmp_path, extra_args=["--sql-listen", f"127.0.0.1:{sql}"])
    try:
        deadline = time.time() + 30
        while requests.get(url + "/v1/sql/info", auth=creds["admin"], timeout=10).status_code != 200:
            assert time.time() < deadline, "the SQL engine did not start"
            time.sleep(0.2)
        statement = {"ksql": "SHOW STREAMS;", "streamsProperties": {}}
        r = requests.post(url + "/v1/sql/ksql", json=statement, auth=creds["alice"], timeout=30)
        assert r.status_code == 403 and "--sql-auth basic" in r.json()["message"] \
            and "User:alice" in r.json()["message"], r.text
        r = requests.post(url + "/v1/sql/ksql", json=statement, auth=creds["admin"], timeout=30)
        assert r.status_code == 200 and r.json()[0]["@type"] == "streams", r.text
    finally:
        b.stop()


def test_broker_configs_are_read_and_changed_as_kafka_admins_see_them(tmp_path):
    """GET/PATCH /v1/brokers/{id}/configs: every config with its source, dynamic ones changed
    (per broker, or `default` for every broker), and what confluent-kafka's describe_configs
    sees agrees."""
    from confluent_kafka.admin import ConfigResource, ResourceType
    b = http_broker(tmp_path)
    try:
        configs = requests.get(f"{b.http}/v1/brokers/1/configs", timeout=30).json()["configs"]
        by_name = {c["name"]: c for c in configs}
        assert by_name["log.retention.ms"]["read_only"] is False, by_name["log.retention.ms"]
        assert by_name["log.retention.ms"]["source"] in ("DEFAULT_CONFIG", "STATIC_BROKER_CONFIG")
        # The cluster-wide default, then this broker's own value over it.
        r = requests.patch(f"{b.http}/v1/brokers/default/configs", json={"configs": {"log.retention.ms": "7200000"}},
                           timeout=30)
        assert r.status_code == 200, r.text
        r = requests.patch(f"{b.http}/v1/brokers/1/configs", json={"configs": {"log.retention.ms": "3600000"}},
                           timeout=30)
        assert r.status_code == 200, r.text
        mine = next(c for c in r.json()["configs"] if c["name"] == "log.retention.ms")
        assert (mine["value"], mine["source"]) == ("3600000", "DYNAMIC_BROKER_CONFIG"), mine
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        seen = admin.describe_configs([ConfigResource(ResourceType.BROKER, "1")])
        entry = list(seen.values())[0].result(10)["log.retention.ms"]
        assert entry.value == "3600000", entry
        # Removing this broker's value leaves the default's.
        r = requests.patch(f"{b.http}/v1/brokers/1/configs", json={"configs": {"log.retention.ms": None}}, timeout=30)
        mine = next(c for c in r.json()["configs"] if c["name"] == "log.retention.ms")
        assert (mine["value"], mine["source"]) == ("7200000", "DYNAMIC_DEFAULT_BROKER_CONFIG"), mine
        # Refusals: a config that cannot change at runtime, a bad value, an unknown broker.
        r = requests.patch(f"{b.http}/v1/brokers/1/configs", json={"configs": {"log.retention.ms": "soon"}},
                           timeout=30)
        assert r.status_code == 400, r.text
        assert requests.get(f"{b.http}/v1/brokers/9/configs", timeout=30).status_code == 404
        assert requests.get(f"{b.http}/v1/brokers/x/configs", timeout=30).status_code == 400
        assert requests.patch(f"{b.http}/v1/brokers/1/configs", json={"configs": {}}, timeout=30).status_code == 400
    finally:
        b.stop()
