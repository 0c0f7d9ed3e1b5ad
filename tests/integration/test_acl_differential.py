"""The same ACLs on Apache Kafka (the oracle, scripts/kafka-peer from Maven Central, with its
StandardAuthorizer) and on Strata, and the same requests from one SASL/PLAIN user, alice,
through librdkafka: every outcome (the error code, or whether a topic is listed) must be the
same on both.

Each broker has a PLAINTEXT listener whose User:ANONYMOUS is a super user (to set things up)
and a SASL_PLAINTEXT listener alice uses, whose JAAS line lists her as a PLAIN user — the same
setting on both."""

import concurrent.futures
import pathlib
import subprocess
import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka import ConsumerGroupTopicPartitions
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType,
                                   AdminClient, ConfigResource, NewTopic, ResourcePatternType,
                                   ResourceType)

from conftest import Broker, free_port

ROOT = pathlib.Path(__file__).resolve().parents[2]
ALICE_PW = "alice-secret"
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"

L, P = ResourcePatternType.LITERAL, ResourcePatternType.PREFIXED
ALLOW, DENY = AclPermissionType.ALLOW, AclPermissionType.DENY
TOPIC, GROUP, CLUSTER, TXN = (ResourceType.TOPIC, ResourceType.GROUP, ResourceType.BROKER,
                              ResourceType.TRANSACTIONAL_ID)
O = AclOperation


def acl(op, rtype, name, pattern=L, perm=ALLOW, principal="User:alice", host="*"):
    return AclBinding(rtype, name, pattern, principal, host, op, perm)


# Each scenario: a name and the ACLs in force (alice's, or everyone's).
SCENARIOS = [
    ("no ACLs", []),
    ("write one topic", [acl(O.WRITE, TOPIC, "t-a")]),
    ("read a prefix and a group", [acl(O.READ, TOPIC, "t-", P), acl(O.READ, GROUP, "g-1")]),
    ("all topics but deny describe of one", [acl(O.ALL, TOPIC, "*"),
                                             acl(O.DESCRIBE, TOPIC, "t-b", perm=DENY)]),
    ("everyone may read, from another host only", [acl(O.READ, TOPIC, "t-a", principal="User:*",
                                                       host="10.9.9.9"),
                                                   acl(O.READ, GROUP, "*", principal="User:*")]),
    ("create under a prefix, describe configs, describe the cluster",
     [acl(O.CREATE, TOPIC, "new-", P), acl(O.DESCRIBE_CONFIGS, TOPIC, "t-a"),
      acl(O.DESCRIBE, CLUSTER, "kafka-cluster")]),
    ("idempotent and transactional writes", [acl(O.WRITE, TOPIC, "t-a"),
                                             acl(O.IDEMPOTENT_WRITE, CLUSTER, "kafka-cluster"),
                                             acl(O.WRITE, TXN, "tx-", P)]),
    ("deny wins over allow", [acl(O.ALL, TOPIC, "t-", P), acl(O.WRITE, TOPIC, "t-a", perm=DENY),
                              acl(O.ALL, GROUP, "*"), acl(O.READ, GROUP, "g-1", perm=DENY)]),
]


def _kafka_peer(base):
    """Kafka with a PLAINTEXT and a SASL_PLAINTEXT (PLAIN) listener and the authorizer on:
    (plaintext bootstrap, sasl bootstrap, data dir)."""
    plain, sasl, ctl = free_port(), free_port(), free_port()
    kdir = base / "kafka"
    jaas = ('org.apache.kafka.common.security.plain.PlainLoginModule required '
            f'user_alice="{ALICE_PW}";')
    sets = [
        f"listeners=PLAINTEXT://127.0.0.1:{plain},SASL_PLAINTEXT://127.0.0.1:{sasl},CONTROLLER://127.0.0.1:{ctl}",
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{plain},SASL_PLAINTEXT://127.0.0.1:{sasl}",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT",
        "inter.broker.listener.name=PLAINTEXT",
        "sasl.enabled.mechanisms=PLAIN",
        f"listener.name.sasl_plaintext.plain.sasl.jaas.config={jaas}",
        f"authorizer.class.name={AUTHORIZER}",
        "super.users=User:ANONYMOUS",
        "group.initial.rebalance.delay.ms=0",
        "auto.create.topics.enable=false",
    ]
    args = [str(ROOT / "scripts" / "kafka-peer"), "start", "--port", str(plain), "--data-dir", str(kdir),
            "--node-id", "1", "--voters", f"1@127.0.0.1:{ctl}", "--cluster-id", "AclDifferentialKafka"]
    for s in sets:
        args += ["--set", s]
    r = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return f"127.0.0.1:{plain}", f"127.0.0.1:{sasl}", kdir


def _strata(base):
    data = base / "strata" / "data"
    plain, sasl = free_port(), free_port()
    # The same JAAS line as Kafka's: alice is a PLAIN user of the SASL listener.
    config = f"""
listeners = "PLAINTEXT://127.0.0.1:{plain},SASL_PLAINTEXT://127.0.0.1:{sasl}"
"sasl.enabled.mechanisms" = "PLAIN"
"listener.name.sasl_plaintext.plain.sasl.jaas.config" = 'org.apache.kafka.common.security.plain.PlainLoginModule required user_alice="{ALICE_PW}";'
"authorizer.class.name" = "{AUTHORIZER}"
"super.users" = "User:ANONYMOUS"
group_initial_rebalance_delay_ms = 0
auto_create_topics_enable = false
"""
    b = Broker(data, port=plain, config_text=config).start()
    return b, f"127.0.0.1:{sasl}"


@pytest.fixture(scope="module")
def brokers(tmp_path_factory):
    """{"kafka": (admin bootstrap, alice bootstrap), "strata": (…)}."""
    base = tmp_path_factory.mktemp("acldiff")
    (base / "strata").mkdir()
    kafka_plain, kafka_sasl, kdir = _kafka_peer(base)
    strata, strata_sasl = _strata(base)
    try:
        pair = {"kafka": (kafka_plain, kafka_sasl), "strata": (strata.bootstrap, strata_sasl)}
        for admin_bs, _ in pair.values():
            admin = AdminClient({"bootstrap.servers": admin_bs})
            for t in ("t-a", "t-b"):
                admin.create_topics([NewTopic(t, 1, 1)])[t].result(30)
            p = Producer({"bootstrap.servers": admin_bs})
            for t in ("t-a", "t-b"):
                p.produce(t, value=b"seed")
            assert p.flush(30) == 0
        yield pair
    finally:
        strata.stop()
        subprocess.run([str(ROOT / "scripts" / "kafka-peer"), "stop", "--data-dir", str(kdir)], timeout=60)
    assert "panicked" not in strata.log_text()


def _alice(bs, **extra):
    return {"bootstrap.servers": bs, "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN",
            "sasl.username": "alice", "sasl.password": ALICE_PW, "log_level": 0, **extra}


def _name(e):
    return e.name() if hasattr(e, "name") else str(e)


def _future(f, timeout=15):
    try:
        f.result(timeout)
        return "NONE"
    except KafkaException as e:
        return _name(e.args[0])


def _produce(bs, topic, **extra):
    errors, fatal = [], []
    p = Producer(_alice(bs, **{"message.timeout.ms": 6000, "enable.idempotence": False, "acks": 1,
                               "error_cb": lambda e: fatal.append(e) if e.fatal() else None, **extra}))
    p.produce(topic, value=b"x", partition=0, on_delivery=lambda e, m: errors.append(e))
    try:
        p.flush(10)
        p.poll(0)  # serves error_cb
    except KafkaException as e:
        fatal.append(e.args[0])
    except SystemError as e:  # raised from inside a callback
        if isinstance(e.__cause__, KafkaException):
            fatal.append(e.__cause__.args[0])
    if fatal:
        return _name(fatal[0])
    return _name(errors[0]) if errors and errors[0] is not None else ("NONE" if errors else "TIMEOUT")


# librdkafka's consumer always looks up its group's coordinator, even when it only fetches
# assigned partitions: alice may describe this group in every scenario, so a fetch's outcome
# is the fetch's alone (not whichever of two refusals arrives first).
FETCH_GROUP = "fetch-probe"


def _fetch(bs, topic):
    c = Consumer(_alice(bs, **{"group.id": FETCH_GROUP, "enable.auto.commit": False}))
    c.assign([TopicPartition(topic, 0, 0)])
    outcome = "TIMEOUT"
    # A topic alice may not describe gives the consumer nothing to report: TIMEOUT.
    deadline = time.time() + 3
    while time.time() < deadline:
        m = c.poll(0.3)
        if m is None:
            continue
        outcome = _name(m.error()) if m.error() else "NONE"
        break
    c.close()
    return outcome


def _commit(admin, topic, group):
    """OffsetCommit through the admin API (a consumer's commit waits out its whole timeout
    when the coordinator lookup is refused): the request's error, or the partition's."""
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, 1)])
    try:
        result = admin.alter_consumer_group_offsets([request])[group].result(15)
    except KafkaException as e:
        return _name(e.args[0])
    errors = [p.error for p in result.topic_partitions if p.error is not None]
    return _name(errors[0]) if errors else "NONE"


def _transactional(bs):
    p = Producer(_alice(bs, **{"transactional.id": "tx-1", "transaction.timeout.ms": 10000}))
    try:
        p.init_transactions(10)
        return "NONE"
    except KafkaException as e:
        return _name(e.args[0])


def _idempotent(bs):
    return _produce(bs, "t-a", **{"enable.idempotence": True, "acks": "all"})


def probes(bs, scenario_no):
    """Everything alice tries, and what came of it."""
    admin = AdminClient(_alice(bs))
    out = {}
    listed = admin.list_topics(timeout=10).topics
    out["listed"] = ",".join(sorted(t for t in listed if t in ("t-a", "t-b")))
    for t in ("t-a", "t-b"):
        md = admin.list_topics(topic=t, timeout=10).topics.get(t)
        out[f"metadata {t}"] = "ABSENT" if md is None else (_name(md.error) if md.error else "NONE")
        out[f"produce {t}"] = _produce(bs, t)
        out[f"fetch {t}"] = _fetch(bs, t)
    out["commit t-a in g-1"] = _commit(admin, "t-a", "g-1")
    resource = ConfigResource(ConfigResource.Type.TOPIC, "t-a")
    out["describe configs t-a"] = _future(list(admin.describe_configs([resource]).values())[0])
    name = f"new-{scenario_no}"
    out["create new-"] = _future(admin.create_topics([NewTopic(name, 1, 1)])[name])
    other = f"other-{scenario_no}"
    out["create other-"] = _future(admin.create_topics([NewTopic(other, 1, 1)])[other])
    out["describe group g-1"] = _future(admin.describe_consumer_groups(["g-1"])["g-1"])
    out["idempotent produce"] = _idempotent(bs)
    out["init transactions tx-1"] = _transactional(bs)
    return out


def _set_acls(admin_bs, bindings):
    admin = AdminClient({"bootstrap.servers": admin_bs})
    f = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY,
                         AclPermissionType.ANY)
    admin.delete_acls([f])[f].result(15)
    bindings = bindings + [acl(O.DESCRIBE, GROUP, FETCH_GROUP)]
    if bindings:
        for fut in admin.create_acls(bindings).values():
            fut.result(15)
    # Kafka's authorizer takes a new ACL from the metadata log a moment after CreateAcls
    # answers.
    want = len(bindings)
    deadline = time.time() + 10
    while len(admin.describe_acls(f).result(10)) != want and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)


@pytest.mark.parametrize("no", range(len(SCENARIOS)), ids=[s[0] for s in SCENARIOS])
def test_the_same_acls_give_the_same_outcomes_on_kafka_and_strata(brokers, no):
    _, bindings = SCENARIOS[no]
    for admin_bs, _ in brokers.values():
        _set_acls(admin_bs, bindings)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        runs = {k: pool.submit(probes, sasl_bs, no) for k, (_, sasl_bs) in brokers.items()}
        got = {k: f.result() for k, f in runs.items()}
    diff = {k: (got["kafka"][k], got["strata"][k]) for k in got["kafka"] if got["kafka"][k] != got["strata"][k]}
    assert not diff, f"(kafka, strata) differ: {diff}\nkafka: {got['kafka']}"
    # The scenarios are not vacuous: something is allowed and something refused somewhere.
    if no:
        assert set(got["kafka"].values()) - {"NONE"}, got["kafka"]
