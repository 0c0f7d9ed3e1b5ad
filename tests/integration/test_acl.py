"""ACLs (issue 14) with real clients: Kafka's standard authorizer semantics on Strata, seen
through librdkafka (confluent-kafka) as SASL users, managed with AdminClient's
Create/Describe/DeleteAcls, `strata acl` and Kafka's own AclCommand (kafka-acls).

The broker has a PLAINTEXT listener on loopback for local administration (User:ANONYMOUS is
a super user there, a common Kafka setup) and a SASL_PLAINTEXT listener for alice and bob."""

import json
import os
import pathlib
import subprocess
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType,
                                   AdminClient, NewTopic, ResourcePatternType, ResourceType)

from conftest import STRATA_BIN, Broker, free_port, unique, wait_http_ok

ROOT = pathlib.Path(__file__).resolve().parents[2]
USERS = {"admin": "admin-secret", "alice": "alice-secret", "bob": "bob-secret"}


def start_acl_broker(tmp, extra_config="", extra_args=()):
    """A broker with an authorizer and USERS as SCRAM-SHA-256 users (admin a super user, as
    is User:ANONYMOUS on its PLAINTEXT listener) on a SASL_PLAINTEXT listener at
    `b.sasl_port`."""
    data = tmp / "data"
    args = [STRATA_BIN, "format", "--data-dir", str(data)]
    for user, pw in USERS.items():
        args += ["--add-scram", f"SCRAM-SHA-256=[name={user},password={pw}]"]
    subprocess.run(args, check=True, capture_output=True)
    plain, sasl = free_port(), free_port()
    config = f"""
listeners = "PLAINTEXT://127.0.0.1:{plain},SASL_PLAINTEXT://127.0.0.1:{sasl}"
"authorizer.class.name" = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
"super.users" = "User:ANONYMOUS;User:admin"
group_initial_rebalance_delay_ms = 0
""" + extra_config
    b = Broker(data, port=plain, config_text=config, extra_args=list(extra_args)).start()
    b.sasl_port = sasl
    return b


@pytest.fixture(scope="module")
def abroker(tmp_path_factory):
    b = start_acl_broker(tmp_path_factory.mktemp("acl"))
    yield b
    b.stop()
    assert "panicked" not in b.log_text()


def as_user(b, user, **extra):
    return {"bootstrap.servers": f"127.0.0.1:{b.sasl_port}", "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": user, "sasl.password": USERS[user],
            "log_level": 0, **extra}


def super_admin(b):
    return AdminClient({"bootstrap.servers": b.bootstrap})


def allow(principal, op, rtype, name, pattern=ResourcePatternType.LITERAL, perm=AclPermissionType.ALLOW,
          host="*"):
    return AclBinding(rtype, name, pattern, principal, host, op, perm)


def create_acls(b, *bindings):
    admin = super_admin(b)
    for f in admin.create_acls(list(bindings)).values():
        f.result(10)


def delete_all_acls(b):
    f = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY,
                         AclPermissionType.ANY)
    admin = super_admin(b)
    admin.delete_acls([f])[f].result(10)


def make_topic(b, name, partitions=1):
    admin = super_admin(b)
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(10)


def produce_error(conf, topic, n=3, **pconf):
    """The first delivery error producing to `topic` as `conf`, or None if all succeed."""
    errors = []
    p = Producer({**conf, "message.timeout.ms": 8000, **pconf})
    for i in range(n):
        p.produce(topic, value=f"v{i}", on_delivery=lambda e, m: errors.append(e))
    p.flush(15)
    return next((e for e in errors if e is not None), None)


def consume(conf, topic, group, n, timeout=20):
    """(values read, first error) consuming `topic` in `group`."""
    c = Consumer({**conf, "group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    got, error = [], None
    deadline = time.time() + timeout
    while len(got) < n and time.time() < deadline and error is None:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            if m.error().code() != KafkaError._PARTITION_EOF:
                error = m.error()
            continue
        got.append(m.value().decode())
    if error is None and got:
        c.commit(asynchronous=False)
    c.close()
    return got, error


def test_no_acl_means_no_access_and_acls_open_exactly_what_they_name(abroker):
    b = abroker
    delete_all_acls(b)
    orders, payments = unique("orders-"), unique("payments")
    make_topic(b, orders)
    make_topic(b, payments)
    alice = as_user(b, "alice")
    # Authenticated but no ACL: nothing visible, nothing writable (allow.everyone.if.no.acl.found
    # defaults to false with an authorizer).
    md = AdminClient(alice).list_topics(timeout=10)
    assert orders not in md.topics and payments not in md.topics
    err = produce_error(alice, orders, **{"enable.idempotence": False})
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err

    # WRITE on the prefix "orders-": produce there (idempotently: WRITE on a topic is enough
    # for InitProducerId, KIP-679), and nowhere else.
    create_acls(b, allow("User:alice", AclOperation.WRITE, ResourceType.TOPIC, "orders-",
                         ResourcePatternType.PREFIXED))
    assert produce_error(alice, orders, **{"enable.idempotence": True}) is None
    err = produce_error(alice, payments, **{"enable.idempotence": False})
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err
    # WRITE implies DESCRIBE: the topic shows in metadata now, payments does not.
    md = AdminClient(alice).list_topics(timeout=10)
    assert orders in md.topics and payments not in md.topics

    # Reading needs READ on the topic and on the group.
    group = unique("g")
    got, err = consume(alice, orders, group, 3)
    assert err is not None and err.code() in (KafkaError.TOPIC_AUTHORIZATION_FAILED,
                                              KafkaError.GROUP_AUTHORIZATION_FAILED), err
    create_acls(b, allow("User:alice", AclOperation.READ, ResourceType.TOPIC, orders))
    got, err = consume(alice, orders, group, 3)
    assert err is not None and err.code() == KafkaError.GROUP_AUTHORIZATION_FAILED, err
    create_acls(b, allow("User:alice", AclOperation.READ, ResourceType.GROUP, group))
    got, err = consume(alice, orders, group, 3)
    assert err is None and got == ["v0", "v1", "v2"], (got, err)

    # bob has none of alice's rights.
    err = produce_error(as_user(b, "bob"), orders, **{"enable.idempotence": False})
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED

    # A DENY wins over every ALLOW: DENY READ on all topics for everyone.
    create_acls(b, allow("User:*", AclOperation.READ, ResourceType.TOPIC, "*", perm=AclPermissionType.DENY))
    got, err = consume(alice, orders, unique("g2"), 3)
    assert err is not None, got
    assert produce_error(alice, orders, **{"enable.idempotence": False}) is None, "WRITE not denied"
    assert "authorization denied" in b.log_text()


def test_admin_operations_need_their_acls(abroker):
    b = abroker
    delete_all_acls(b)
    alice = AdminClient(as_user(b, "alice"))
    name = unique("adm")
    with pytest.raises(KafkaException) as e:
        alice.create_topics([NewTopic(name, 1, 1)])[name].result(10)
    assert e.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # CREATE on the cluster lets her create any topic; deleting needs DELETE on it.
    create_acls(b, allow("User:alice", AclOperation.CREATE, ResourceType.BROKER, "kafka-cluster"))
    alice.create_topics([NewTopic(name, 1, 1)])[name].result(10)
    with pytest.raises(KafkaException) as e:
        alice.delete_topics([name])[name].result(10)
    assert e.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    create_acls(b, allow("User:alice", AclOperation.DELETE, ResourceType.TOPIC, name))
    alice.delete_topics([name])[name].result(10)
    # ACL management needs ALTER / DESCRIBE on the cluster.
    # (librdkafka drops DescribeAcls' top-level error; kafka-python reports it.)
    from kafka.admin import ACLFilter, KafkaAdminClient, ResourcePatternFilter
    from kafka.admin import ACLOperation, ACLPermissionType, ACLResourcePatternType
    from kafka.admin import ResourceType as KResourceType
    from kafka.errors import ClusterAuthorizationFailedError
    kp = KafkaAdminClient(bootstrap_servers=f"127.0.0.1:{b.sasl_port}", security_protocol="SASL_PLAINTEXT",
                          sasl_mechanism="SCRAM-SHA-256", sasl_plain_username="alice",
                          sasl_plain_password=USERS["alice"])
    with pytest.raises(ClusterAuthorizationFailedError):
        kp.describe_acls(ACLFilter(principal=None, host="*", operation=ACLOperation.ANY,
                                   permission_type=ACLPermissionType.ANY,
                                   resource_pattern=ResourcePatternFilter(KResourceType.ANY, None,
                                                                          ACLResourcePatternType.ANY)))
    kp.close()
    with pytest.raises(KafkaException):
        for f in alice.create_acls([allow("User:alice", AclOperation.ALL, ResourceType.TOPIC, "*")]).values():
            f.result(10)
    # The super user (admin over SASL) describes them all, grouped per resource.
    admin = AdminClient(as_user(b, "admin"))
    listed = admin.describe_acls(AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY,
                                                  "User:alice", None, AclOperation.ANY,
                                                  AclPermissionType.ANY)).result(10)
    assert sorted((a.restype, a.name, a.operation) for a in listed) == sorted([
        (ResourceType.BROKER, "kafka-cluster", AclOperation.CREATE),
        (ResourceType.TOPIC, name, AclOperation.DELETE)])


def test_transactions_need_the_transactional_id(abroker):
    b = abroker
    delete_all_acls(b)
    topic, tid = unique("tx"), unique("tid")
    make_topic(b, topic)
    create_acls(b, allow("User:alice", AclOperation.WRITE, ResourceType.TOPIC, topic))
    conf = as_user(b, "alice", **{"transactional.id": tid})
    p = Producer(conf)
    with pytest.raises(KafkaException) as e:
        p.init_transactions(10)
    assert e.value.args[0].code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, e.value
    create_acls(b, allow("User:alice", AclOperation.WRITE, ResourceType.TRANSACTIONAL_ID, tid),
                allow("User:alice", AclOperation.DESCRIBE, ResourceType.TRANSACTIONAL_ID, tid))
    p = Producer(conf)
    p.init_transactions(10)
    p.begin_transaction()
    p.produce(topic, value=b"in-txn")
    p.commit_transaction(10)


def test_strata_acl_cli_and_kafka_acls(abroker):
    b = abroker
    delete_all_acls(b)

    def strata(*args):
        r = subprocess.run([STRATA_BIN, "acl", *args, "--bootstrap", b.bootstrap], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return r.stdout

    out = strata("add", "--principal", "User:bob", "--operation", "read", "--operation", "describe",
                 "--topic", "logs-", "--pattern", "prefixed")
    assert "added 2 ACL(s)" in out, out
    listed = strata("list", "--principal", "User:bob")
    assert "TOPIC:logs-\tPREFIXED\tUser:bob\t*\tREAD\tALLOW" in listed, listed
    assert "DESCRIBE" in listed
    # kafka-acls (Kafka's AclCommand) sees them and adds one through the SASL listener as admin.
    cp = subprocess.run([str(ROOT / "scripts" / "kafka-peer"), "classpath"], check=True, capture_output=True,
                        text=True, timeout=600).stdout.strip()
    props = b.data_dir.parent / "admin.properties"
    props.write_text("security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-256\n"
                     "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
                     'username="admin" password="admin-secret";\n')
    java = ["java", "-Xmx256m", "-XX:TieredStopAtLevel=1", "-cp", cp, "org.apache.kafka.tools.AclCommand",
            "--bootstrap-server", f"127.0.0.1:{b.sasl_port}", "--command-config", str(props)]
    r = subprocess.run(java + ["--list", "--topic", "logs-", "--resource-pattern-type", "prefixed"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "User:bob" in r.stdout and "READ" in r.stdout, r.stdout
    r = subprocess.run(java + ["--add", "--allow-principal", "User:bob", "--operation", "Read", "--group", "bobs"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "GROUP:bobs\tLITERAL\tUser:bob\t*\tREAD\tALLOW" in strata("list", "--group", "bobs")
    out = strata("remove", "--principal", "User:bob", "--topic", "logs-", "--pattern", "prefixed",
                 "--operation", "read")
    assert "removed 1 ACL(s)" in out, out
    listed = strata("list", "--principal", "User:bob")
    assert "READ\tALLOW" in listed and "TOPIC:logs-\tPREFIXED\tUser:bob\t*\tREAD" not in listed, listed
    bad = subprocess.run([STRATA_BIN, "acl", "add", "--principal", "bob", "--operation", "read", "--topic", "x",
                          "--bootstrap", b.bootstrap], capture_output=True, text=True)
    assert bad.returncode == 1 and "principal" in bad.stderr, bad.stderr


def test_without_an_authorizer_the_acl_apis_say_security_disabled(tmp_path):
    from kafka.admin import ACL, KafkaAdminClient, ResourcePattern
    from kafka.admin import ACLOperation, ACLPermissionType, ACLResourcePatternType
    from kafka.admin import ResourceType as KResourceType

    b = Broker(tmp_path / "data").start()
    try:
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        binding = allow("User:alice", AclOperation.READ, ResourceType.TOPIC, "t")
        with pytest.raises(KafkaException) as e:
            admin.create_acls([binding])[binding].result(10)
        assert e.value.args[0].code() == KafkaError.SECURITY_DISABLED
        kp = KafkaAdminClient(bootstrap_servers=b.bootstrap)
        result = kp.create_acls([ACL("User:alice", "*", ACLOperation.READ, ACLPermissionType.ALLOW,
                                     ResourcePattern(KResourceType.TOPIC, "t", ACLResourcePatternType.LITERAL))])
        assert result["failed"] and "SecurityDisabled" in repr(result["failed"]), result
        kp.close()
    finally:
        b.stop()


def test_authorized_operations_are_reported_when_asked(abroker):
    """Metadata / DescribeCluster with include_*_authorized_operations (KIP-430): the
    operations this principal may perform, as the authorizer decides them."""
    from confluent_kafka import TopicCollection

    b = abroker
    delete_all_acls(b)
    topic = unique("ops")
    make_topic(b, topic)
    create_acls(b, allow("User:alice", AclOperation.WRITE, ResourceType.TOPIC, topic),
                allow("User:alice", AclOperation.DESCRIBE_CONFIGS, ResourceType.TOPIC, topic),
                allow("User:alice", AclOperation.DESCRIBE, ResourceType.BROKER, "kafka-cluster"))
    alice = AdminClient(as_user(b, "alice"))
    d = alice.describe_topics(TopicCollection([topic]), include_authorized_operations=True)[topic].result(10)
    assert sorted(o.name for o in d.authorized_operations) == ["DESCRIBE", "DESCRIBE_CONFIGS", "WRITE"], \
        d.authorized_operations
    c = alice.describe_cluster(include_authorized_operations=True).result(10)
    assert [o.name for o in c.authorized_operations] == ["DESCRIBE"], c.authorized_operations
    admin = AdminClient(as_user(b, "admin"))
    d = admin.describe_topics(TopicCollection([topic]), include_authorized_operations=True)[topic].result(10)
    assert len(d.authorized_operations) == 8, "a super user may do everything to a topic"


def test_the_cli_authenticates_with_a_command_config(abroker):
    """`strata … --command-config F` takes Kafka client properties: through the SASL listener
    as admin (a super user) it manages ACLs; as alice it is refused."""
    b = abroker
    delete_all_acls(b)
    props = b.data_dir.parent / "cli-admin.properties"
    props.write_text("security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-256\n"
                     "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
                     'username="admin" password="admin-secret";\n')
    sasl = f"127.0.0.1:{b.sasl_port}"
    r = subprocess.run([STRATA_BIN, "acl", "add", "--principal", "User:bob", "--operation", "read",
                        "--topic", "cli", "--bootstrap", sasl, "--command-config", str(props)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([STRATA_BIN, "acl", "list", "--bootstrap", sasl, "--command-config", str(props)],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "TOPIC:cli\tLITERAL\tUser:bob" in r.stdout, r.stdout + r.stderr
    r = subprocess.run([STRATA_BIN, "acl", "list", "--topic", "cli", "--output", "json", "--bootstrap", sasl,
                        "--command-config", str(props)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [{"resource_type": "TOPIC", "resource_name": "cli", "pattern_type": "LITERAL",
                                     "principal": "User:bob", "host": "*", "operation": "READ",
                                     "permission": "ALLOW"}], r.stdout
    alice = b.data_dir.parent / "cli-alice.properties"
    alice.write_text("security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-256\n"
                     "sasl.username=alice\nsasl.password=alice-secret\n")
    r = subprocess.run([STRATA_BIN, "acl", "list", "--bootstrap", sasl, "--command-config", str(alice)],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "not allowed (Kafka error code 31)" in r.stderr, r.stderr
    wrong = b.data_dir.parent / "cli-wrong.properties"
    wrong.write_text("security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-256\n"
                     "sasl.username=alice\nsasl.password=nope\n")
    r = subprocess.run([STRATA_BIN, "acl", "list", "--bootstrap", sasl, "--command-config", str(wrong)],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "invalid credentials" in r.stderr, r.stderr


def test_sql_statements_queries_and_inserts_are_checked_against_the_users_topic_acls(tmp_path):
    """With `--sql-auth basic` on a broker with ACLs, each SQL request runs only if the
    user's own Kafka ACLs allow what it does to the topics it touches (ksqlDB's topic access
    validator): READ on what a statement, query or PRINT reads, WRITE on what it writes,
    CREATE for a topic it makes, DELETE for DROP … DELETE TOPIC — else 403 with error code
    40301 and ksqlDB's message. What is allowed runs, as the engine's principal."""
    import requests

    data = tmp_path / "data"
    args = [STRATA_BIN, "format", "--data-dir", str(data)]
    for user, pw in USERS.items():
        args += ["--add-scram", f"SCRAM-SHA-256=[name={user},password={pw}]"]
    subprocess.run(args, check=True, capture_output=True)
    plain, sasl, sql_port = free_port(), free_port(), free_port()
    config = f"""
listeners = "PLAINTEXT://127.0.0.1:{plain},SASL_PLAINTEXT://127.0.0.1:{sasl}"
"authorizer.class.name" = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
"super.users" = "User:ANONYMOUS;User:admin"
"sasl.enabled.mechanisms" = "SCRAM-SHA-256"
"""
    b = Broker(data, port=plain, config_text=config,
               extra_args=["--sql-listen", f"127.0.0.1:{sql_port}", "--sql-auth", "basic"]).start()
    url = f"http://127.0.0.1:{sql_port}"
    creds = {u: (u, pw) for u, pw in USERS.items()}
    try:
        wait_http_ok(url + "/healthcheck")

        def post(path, body, user):
            return requests.post(url + path, json=body, auth=creds[user], timeout=30,
                                 headers={"accept": "application/json"})

        def ksql(text, user, **props):
            return post("/ksql", {"ksql": text, "streamsProperties": props}, user)

        def denied(r, op, topic):
            assert r.status_code == 403, r.text
            body = r.json()
            assert body["error_code"] == 40301, body
            assert body["message"] == f"Authorization denied to {op} on topic(s): [{topic}]", body

        for name in ("orders", "clicks"):
            r = ksql(f"CREATE STREAM {name} (id STRING KEY, v INT) "
                     f"WITH (kafka_topic='{name}', partitions=1, value_format='JSON');", "admin")
            assert r.status_code == 200, r.text
        assert ksql("INSERT INTO orders (id, v) VALUES ('o1', 7);", "admin").status_code == 200
        create_acls(b,
                    allow("User:alice", AclOperation.READ, ResourceType.TOPIC, "orders"),
                    allow("User:alice", AclOperation.ALL, ResourceType.TOPIC, "ALICE_",
                          pattern=ResourcePatternType.PREFIXED))

        # Reads: alice may read orders, not clicks; bob reads nothing.
        r = post("/query-stream", {"sql": "SELECT * FROM orders EMIT CHANGES LIMIT 1;",
                                   "properties": {"auto.offset.reset": "earliest"}}, "alice")
        assert r.status_code == 200 and r.json()[1:] == [["o1", 7]], r.text
        denied(post("/query-stream", {"sql": "SELECT * FROM clicks EMIT CHANGES;", "properties": {}}, "alice"),
               "Read", "clicks")
        denied(post("/query", {"ksql": "PRINT 'orders' FROM BEGINNING LIMIT 1;"}, "bob"), "Read", "orders")
        # A persistent query needs READ on its sources and CREATE (or WRITE) on its sink.
        r = ksql("CREATE STREAM alice_big AS SELECT * FROM orders WHERE v > 5;", "alice",
                 **{"ksql.streams.auto.offset.reset": "earliest"})
        assert r.status_code == 200, r.text
        denied(ksql("CREATE STREAM stolen AS SELECT * FROM clicks;", "alice"), "Read", "clicks")
        denied(ksql("CREATE STREAM other AS SELECT * FROM orders;", "alice"), "Create", "OTHER")
        denied(ksql("CREATE STREAM bobs (id STRING KEY) WITH (kafka_topic='bobs', partitions=1, "
                    "value_format='JSON');", "bob"), "Create", "bobs")
        # Writes.
        denied(ksql("INSERT INTO clicks (id, v) VALUES ('c', 1);", "alice"), "Write", "clicks")
        assert ksql("INSERT INTO alice_big (id, v) VALUES ('a2', 9);", "alice").status_code == 200
        r = requests.post(url + "/inserts-stream", auth=creds["alice"], timeout=30,
                          data=json.dumps({"target": "clicks"}) + "\n" + json.dumps({"ID": "c", "V": 1}) + "\n")
        acks = [json.loads(x) for x in r.text.splitlines() if x.strip()]
        assert acks[0]["error_code"] == 40301 and "Write on topic(s): [clicks]" in acks[0]["message"], acks
        # Deleting a topic needs DELETE on it; dropping the stream alone does not.
        denied(ksql("DROP STREAM clicks DELETE TOPIC;", "alice"), "Delete", "clicks")
        # The allowed query runs (as the engine's principal): o1 went through, a2 was inserted.
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": unique("g"), "auto.offset.reset": "earliest",
                      "isolation.level": "read_committed"})
        c.subscribe(["ALICE_BIG"])
        got, deadline = set(), time.time() + 30
        while got != {b"o1", b"a2"} and time.time() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                got.add(m.key())
        c.close()
        assert got == {b"o1", b"a2"}
    finally:
        b.stop()
    assert "panicked" not in b.log_text()


def test_cli_manages_scram_users_that_librdkafka_then_logs_in_as(abroker):
    """`strata user set|list|remove`: a user made with the CLI (password from the
    environment, salted by the CLI) logs in with librdkafka; removed, it no longer can."""
    b = abroker
    bs = ["--bootstrap", b.bootstrap]

    def strata(*args, env=None):
        return subprocess.run([STRATA_BIN, "user", *args, *bs], capture_output=True, text=True, timeout=30,
                              env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)

    r = strata("set", "carol", env={"STRATA_USER_PASSWORD": "carol-secret"})
    assert r.returncode == 0 and "SCRAM-SHA-256 credentials set" in r.stdout, r.stdout + r.stderr
    listed = json.loads(strata("list", "--output", "json").stdout)
    assert {"name": "carol", "credentials": [{"mechanism": "SCRAM-SHA-256", "iterations": 4096}]} in listed, listed
    assert "carol\tSCRAM-SHA-256(iterations=4096)" in strata("list").stdout
    login = {"bootstrap.servers": f"127.0.0.1:{b.sasl_port}", "security.protocol": "SASL_PLAINTEXT",
             "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": "carol", "sasl.password": "carol-secret"}
    carol = AdminClient(login)
    carol.list_topics(timeout=10)
    # No password, or a bad mechanism: refused before anything is sent.
    r = strata("set", "dave")
    assert r.returncode == 1 and "no password" in r.stderr, r.stderr
    r = strata("set", "dave", "--mechanism", "SCRAM-SHA-1", env={"STRATA_USER_PASSWORD": "x"})
    assert r.returncode == 1 and "unknown mechanism" in r.stderr, r.stderr
    r = strata("remove", "carol")
    assert r.returncode == 0 and "removed SCRAM-SHA-256" in r.stdout, r.stdout + r.stderr
    with pytest.raises(KafkaException):
        AdminClient({**login, "log_level": 0}).list_topics(timeout=5)
    r = strata("remove", "carol")
    assert r.returncode == 1 and "no SCRAM user 'carol'" in r.stderr, r.stderr
