"""SASL (issue 14) with real clients: PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 over
SASL_PLAINTEXT and SASL_SSL with librdkafka (confluent-kafka, kcat) and kafka-python; users
bootstrapped by `strata format --add-scram` and managed with AlterUserScramCredentials;
wrong passwords, unknown users, disabled mechanisms, requests before authentication and
oversized pre-authentication frames; KIP-368 re-authentication."""

import pathlib
import socket
import struct
import subprocess
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import (AdminClient, ScramCredentialInfo, ScramMechanism,
                                   UserScramCredentialDeletion, UserScramCredentialUpsertion)

from conftest import STRATA_BIN, Broker, free_port, unique
from test_security import _roundtrip as _tls_roundtrip
from test_security import pki  # noqa: F401  (the module's certificates fixture)

ADMIN_PW = "admin-secret"
MECHANISMS = "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512"


def _sasl_broker(tmp_path, extra="", ssl_pki=None, env=None, scram=("SCRAM-SHA-256", "SCRAM-SHA-512")):
    """A broker formatted with the admin user, with a PLAINTEXT listener (for setup) and a
    SASL_PLAINTEXT one (and SASL_SSL when `ssl_pki` is given)."""
    data = tmp_path / "data"
    args = [STRATA_BIN, "format", "--data-dir", str(data), "--cluster-id", "sasl-test"]
    for m in scram:
        args += ["--add-scram", f"{m}=[name=admin,password={ADMIN_PW}]"]
    r = subprocess.run(args, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "admin-secret" not in (data / "bootstrap.json").read_text(), "no password on disk"
    plain, sasl, sasl_ssl = free_port(), free_port(), free_port()
    listeners = f"PLAINTEXT://127.0.0.1:{plain},SASL_PLAINTEXT://127.0.0.1:{sasl}"
    tls = ""
    if ssl_pki is not None:
        listeners += f",SASL_SSL://127.0.0.1:{sasl_ssl}"
        tls = f"""
"ssl.keystore.location" = "{ssl_pki / 'keystore.pem'}"
"""
    config = f"""
listeners = "{listeners}"
"sasl.enabled.mechanisms" = "{MECHANISMS}"
{tls}{extra}
"""
    b = Broker(data, port=plain, config_text=config, env=env).start()
    b.sasl_port, b.sasl_ssl_port = sasl, sasl_ssl
    return b


def _conf(port, mechanism, user="admin", password=ADMIN_PW, protocol="SASL_PLAINTEXT", **extra):
    return {
        "bootstrap.servers": f"127.0.0.1:{port}",
        "security.protocol": protocol,
        "sasl.mechanism": mechanism,
        "sasl.username": user,
        "sasl.password": password,
        **extra,
    }


def _roundtrip(conf, topic, n=30):
    """Produces n records and reads them back through `conf` (test_security's helper)."""
    return _tls_roundtrip(conf, topic, n)


def _auth_fails(conf, timeout=1.5):
    """The KafkaError a librdkafka client gets when it cannot authenticate through `conf`."""
    errors = []
    admin = AdminClient({**conf, "error_cb": errors.append, "log_level": 0})
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=timeout)
    admin.poll(0.5)  # serves error_cb
    return errors


def test_every_mechanism_with_librdkafka_kcat_and_kafka_python(tmp_path):
    b = _sasl_broker(tmp_path)
    try:
        topic = unique("sasl")
        want = [f"v{i}" for i in range(30)]
        for mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
            conf = _conf(b.sasl_port, mechanism)
            md = AdminClient(conf).list_topics(timeout=10)
            # The SASL listener advertises itself, not the PLAINTEXT one.
            assert [(x.host, x.port) for x in md.brokers.values()] == [("127.0.0.1", b.sasl_port)]
            t = f"{topic}-{mechanism.lower()}"
            assert _roundtrip(conf, t) == want, mechanism
        # kcat (Debian's librdkafka) reads one of them with SCRAM-SHA-512.
        out = subprocess.run(
            ["kcat", "-b", f"127.0.0.1:{b.sasl_port}", "-X", "security.protocol=SASL_PLAINTEXT",
             "-X", "sasl.mechanisms=SCRAM-SHA-512", "-X", "sasl.username=admin",
             "-X", f"sasl.password={ADMIN_PW}", "-C", "-t", f"{topic}-plain", "-e", "-f", "%s\n"],
            capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == want
        # kafka-python with SCRAM-SHA-256 and PLAIN.
        from kafka import KafkaConsumer, KafkaProducer

        for mechanism in ("SCRAM-SHA-256", "PLAIN"):
            kp = dict(bootstrap_servers=f"127.0.0.1:{b.sasl_port}", security_protocol="SASL_PLAINTEXT",
                      sasl_mechanism=mechanism, sasl_plain_username="admin",
                      sasl_plain_password=ADMIN_PW)
            t = unique("kp")
            p = KafkaProducer(**kp, acks="all")
            for i in range(10):
                p.send(t, f"k{i}".encode())
            p.flush(30)
            p.close()
            c = KafkaConsumer(t, **kp, auto_offset_reset="earliest", consumer_timeout_ms=5000)
            assert [m.value.decode() for m in c] == [f"k{i}" for i in range(10)], mechanism
            c.close()
    finally:
        b.stop()
    assert "panicked" not in b.log_text()


def test_failures_are_refused_audited_and_leave_the_broker_serving(tmp_path):
    b = _sasl_broker(tmp_path, scram=("SCRAM-SHA-512",))
    try:
        started = time.time()
        errors = _auth_fails(_conf(b.sasl_port, "SCRAM-SHA-512", password="wrong"))
        assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), errors
        assert "invalid credentials" in str(errors[0]), errors
        # An unknown user fails the same way (no enumeration), and so does PLAIN.
        for mech, user in (("SCRAM-SHA-512", "nobody"), ("PLAIN", "nobody"), ("PLAIN", "admin")):
            pw = "wrong" if user == "admin" else ADMIN_PW
            errors = _auth_fails(_conf(b.sasl_port, mech, user=user, password=pw))
            assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), (mech, user, errors)
        # The admin has no SCRAM-SHA-256 credential: that mechanism fails for them.
        errors = _auth_fails(_conf(b.sasl_port, "SCRAM-SHA-256"))
        assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), errors
        assert time.time() - started >= 0.5, "each failure is delayed (100 ms by default)"
        log = b.log_text()
        assert log.count("authentication failed") >= 5, log[-2000:]
        assert "SCRAM-SHA-512" in log and "admin-secret" not in log

        # Raw sockets: a request other than ApiVersions/SaslHandshake before authenticating
        # closes the connection without an answer; so does a frame above 512 KiB.
        metadata_v1 = struct.pack(">hhih", 3, 1, 7, 1) + b"x" + struct.pack(">i", -1)
        for payload in (struct.pack(">i", len(metadata_v1)) + metadata_v1,
                        struct.pack(">i", 600_000) + b"\0" * 64):
            with socket.create_connection(("127.0.0.1", b.sasl_port), timeout=10) as s:
                s.sendall(payload)
                assert s.recv(100) == b"", "closed without an answer"
        # A SaslHandshake on the PLAINTEXT listener is answered ILLEGAL_SASL_STATE (34).
        handshake = struct.pack(">hhih", 17, 1, 9, 1) + b"x" + struct.pack(">h", 5) + b"PLAIN"
        with socket.create_connection(("127.0.0.1", b.port), timeout=10) as s:
            s.sendall(struct.pack(">i", len(handshake)) + handshake)
            size = struct.unpack(">i", s.recv(4))[0]
            body = s.recv(size)
            assert struct.unpack(">ih", body[:6]) == (9, 34), body
        # Still serving, with the right password.
        assert _roundtrip(_conf(b.sasl_port, "SCRAM-SHA-512"), unique("after"), n=5) == [f"v{i}" for i in range(5)]
    finally:
        b.stop()
    assert "panicked" not in b.log_text()


def test_users_are_managed_with_alter_and_describe_user_scram_credentials(tmp_path):
    b = _sasl_broker(tmp_path, scram=("SCRAM-SHA-512",))
    try:
        admin = AdminClient(_conf(b.sasl_port, "SCRAM-SHA-512"))
        described = admin.describe_user_scram_credentials(["admin"])["admin"].result(10)
        assert [(i.mechanism, i.iterations) for i in described.scram_credential_infos] == \
            [(ScramMechanism.SCRAM_SHA_512, 4096)]
        futures = admin.alter_user_scram_credentials([
            UserScramCredentialUpsertion("alice", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 8192),
                                         b"alice-secret"),
            UserScramCredentialUpsertion("bob", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 100),
                                         b"bob-secret"),
            UserScramCredentialDeletion("carol", ScramMechanism.SCRAM_SHA_256),
        ])
        futures["alice"].result(10)
        for user, words in (("bob", "4096"), ("carol", "does not exist")):
            with pytest.raises(KafkaException) as e:
                futures[user].result(10)
            assert words in str(e.value), (user, e.value)
        everyone = admin.describe_user_scram_credentials().result(10)
        assert sorted(everyone) == ["admin", "alice"]
        assert [(i.mechanism, i.iterations) for i in everyone["alice"].scram_credential_infos] == \
            [(ScramMechanism.SCRAM_SHA_256, 8192)]
        with pytest.raises(KafkaException):
            admin.describe_user_scram_credentials(["nobody"])["nobody"].result(10)

        # alice authenticates at once, with SCRAM and with PLAIN.
        for mech in ("SCRAM-SHA-256", "PLAIN"):
            conf = _conf(b.sasl_port, mech, user="alice", password="alice-secret")
            assert AdminClient(conf).list_topics(timeout=10).brokers
        # A restart keeps her (credentials are cluster metadata).
        b.stop()
        b.start()
        conf = _conf(b.sasl_port, "SCRAM-SHA-256", user="alice", password="alice-secret")
        assert AdminClient(conf).list_topics(timeout=10).brokers
        assert not (tmp_path / "data" / "bootstrap.json").exists(), "bootstrap applied once"
        # Deleted: she can no longer authenticate.
        admin = AdminClient(_conf(b.sasl_port, "SCRAM-SHA-512"))
        admin.alter_user_scram_credentials(
            [UserScramCredentialDeletion("alice", ScramMechanism.SCRAM_SHA_256)])["alice"].result(10)
        _auth_fails(conf)
    finally:
        b.stop()
    assert "panicked" not in b.log_text()


def test_sasl_ssl_with_plain_and_scram(tmp_path, pki):  # noqa: F811
    b = _sasl_broker(tmp_path, ssl_pki=pki)
    try:
        for mechanism in ("PLAIN", "SCRAM-SHA-512"):
            conf = _conf(b.sasl_ssl_port, mechanism, protocol="SASL_SSL",
                         **{"ssl.ca.location": str(pki / "ca.pem")})
            md = AdminClient(conf).list_topics(timeout=10)
            assert [(x.host, x.port) for x in md.brokers.values()] == [("127.0.0.1", b.sasl_ssl_port)]
            assert _roundtrip(conf, unique("ssl")) == [f"v{i}" for i in range(30)]
        out = subprocess.run(
            ["kcat", "-b", f"127.0.0.1:{b.sasl_ssl_port}", "-X", "security.protocol=SASL_SSL",
             "-X", f"ssl.ca.location={pki / 'ca.pem'}", "-X", "sasl.mechanisms=SCRAM-SHA-256",
             "-X", "sasl.username=admin", "-X", f"sasl.password={ADMIN_PW}", "-L"],
            capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert f"127.0.0.1:{b.sasl_ssl_port}" in out.stdout
    finally:
        b.stop()
    assert "panicked" not in b.log_text()


def test_sessions_are_reauthenticated_on_the_same_connection(tmp_path):
    """KIP-368: with connections.max.reauth.ms the broker tells the client its session
    lifetime; librdkafka re-authenticates before it ends and goes on consuming."""
    b = _sasl_broker(tmp_path, extra='"connections.max.reauth.ms" = 2000\n',
                     env={"STRATA_LOG": "info,strata_broker::sasl=debug"})
    try:
        conf = _conf(b.sasl_port, "SCRAM-SHA-256")
        topic = unique("reauth")
        p = Producer(conf)
        c = Consumer({**conf, "group.id": unique("g"), "auto.offset.reset": "earliest"})
        c.subscribe([topic])
        got = []
        end = time.time() + 7
        i = 0
        while time.time() < end:
            p.produce(topic, value=f"v{i}")
            p.poll(0)
            i += 1
            m = c.poll(0.2)
            if m is not None and m.error() is None:
                got.append(m.value().decode())
        assert p.flush(10) == 0
        deadline = time.time() + 15
        while len(got) < i and time.time() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                got.append(m.value().decode())
        c.close()
        assert got == [f"v{k}" for k in range(i)]
        log = b.log_text()
        assert "reauthentication=true" in log, log[-3000:]
        assert "expired" not in log, "no session ran out"
    finally:
        b.stop()
    assert "panicked" not in b.log_text()


def test_bad_sasl_configs_are_refused_at_start(tmp_path):
    port = free_port()
    for body, words in (
        ('"sasl.enabled.mechanisms" = "GSSAPI"', "GSSAPI is not supported yet"),
        ('"sasl.enabled.mechanisms" = "SCRAM-SHA-1"', "not a SASL mechanism"),
        ('"sasl.enabled.mechanisms" = ""', "is empty"),
    ):
        cfg = tmp_path / "bad.toml"
        cfg.write_text(f'listeners = "SASL_PLAINTEXT://127.0.0.1:{port}"\n{body}\n')
        r = subprocess.run([STRATA_BIN, "serve", "--data-dir", str(tmp_path / "d"), "--config", str(cfg)],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode != 0 and words in r.stderr, (body, r.stderr)
    r = subprocess.run([STRATA_BIN, "format", "--data-dir", str(tmp_path / "f"),
                        "--add-scram", "SCRAM-SHA-256=[name=a,password=b,iterations=10]"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "4096" in r.stderr, r.stderr


def test_java_client_and_kafka_configs_over_sasl_ssl(tmp_path, pki):  # noqa: F811
    """Kafka's own ConfigCommand creates a SCRAM user through AlterUserScramCredentials, and
    the Java client (ConsoleProducer / ConsoleConsumer) authenticates as them over SASL_SSL
    with a PEM truststore."""
    from test_kafka_tools import tool

    cp = subprocess.run([str(pathlib.Path(__file__).resolve().parents[2] / "scripts" / "kafka-peer"),
                         "classpath"], check=True, capture_output=True, text=True, timeout=600).stdout.strip()
    b = _sasl_broker(tmp_path, ssl_pki=pki)
    try:
        bs = f"127.0.0.1:{b.sasl_ssl_port}"

        def props(name, mechanism, user, password):
            f = tmp_path / f"{name}.properties"
            f.write_text(
                "security.protocol=SASL_SSL\n"
                f"sasl.mechanism={mechanism}\n"
                "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
                f'username="{user}" password="{password}";\n'
                "ssl.truststore.type=PEM\n"
                f"ssl.truststore.location={pki / 'ca.pem'}\n")
            return str(f)

        admin = props("admin", "SCRAM-SHA-512", "admin", ADMIN_PW)
        tool(cp, "org.apache.kafka.tools.ConfigCommand", "--bootstrap-server", bs, "--command-config", admin,
             "--alter", "--add-config", "SCRAM-SHA-256=[iterations=8192,password=carol-secret]",
             "--entity-type", "users", "--entity-name", "carol")
        carol = props("carol", "SCRAM-SHA-256", "carol", "carol-secret")
        topic = unique("java")
        lines = "".join(f"m{i}\n" for i in range(20))
        tool(cp, "org.apache.kafka.tools.ConsoleProducer", "--bootstrap-server", bs, "--topic", topic,
             "--producer.config", carol, stdin=lines)
        out = tool(cp, "org.apache.kafka.tools.consumer.ConsoleConsumer", "--bootstrap-server", bs,
                   "--topic", topic, "--consumer.config", carol, "--from-beginning", "--max-messages", "20",
                   "--timeout-ms", "30000").stdout
        assert [l for l in out.split() if l.startswith("m")] == [f"m{i}" for i in range(20)], out
        # A wrong password: the Java client reports the broker's authentication error.
        wrong = props("wrong", "SCRAM-SHA-256", "carol", "nope")
        r = tool(cp, "org.apache.kafka.tools.TopicCommand", "--bootstrap-server", bs, "--command-config", wrong,
                 "--list", check=False, timeout=120)
        assert r.returncode != 0 and "invalid credentials" in (r.stdout + r.stderr), r.stderr[-2000:]
    finally:
        b.stop()
    assert "panicked" not in b.log_text()


def test_credentials_are_cluster_metadata_on_three_nodes(tmp_path):
    """Only node 1 is formatted with the admin user; every node authenticates them, and a
    user made through one node can authenticate on the others at once."""
    from test_cluster import start_all, wait_for

    n = 3
    plain = [free_port() for _ in range(n)]
    sasl = [free_port() for _ in range(n)]
    controller = [free_port() for _ in range(n)]
    voters = ",".join(f"{i + 1}@127.0.0.1:{controller[i]}" for i in range(n))
    nodes = []
    for i in range(n):
        data = tmp_path / f"node{i + 1}" / "data"
        args = [STRATA_BIN, "format", "--data-dir", str(data), "--cluster-id", "sasl-cluster",
                "--node-id", str(i + 1)]
        if i == 0:
            args += ["--add-scram", f"SCRAM-SHA-512=[name=admin,password={ADMIN_PW}]"]
        subprocess.run(args, check=True, capture_output=True)
        config = (f'listeners = "PLAINTEXT://127.0.0.1:{plain[i]},SASL_PLAINTEXT://127.0.0.1:{sasl[i]}"\n'
                  f'"inter.broker.listener.name" = "PLAINTEXT"\n"sasl.enabled.mechanisms" = "{MECHANISMS}"\n')
        nodes.append(Broker(data, port=plain[i], config_text=config,
                            extra_args=["--node-id", str(i + 1), "--controller-quorum-voters", voters]))
    start_all(nodes)
    try:
        for i in range(n):
            wait_for(lambda: AdminClient(_conf(sasl[i], "SCRAM-SHA-512", log_level=0))
                     .list_topics(timeout=5).brokers, timeout=30, what=f"admin on node {i + 1}")
        md = AdminClient(_conf(sasl[1], "SCRAM-SHA-512")).list_topics(timeout=10)
        assert sorted(x.port for x in md.brokers.values()) == sorted(sasl), "SASL endpoints of all nodes"
        admin = AdminClient(_conf(sasl[2], "SCRAM-SHA-512"))
        admin.alter_user_scram_credentials([UserScramCredentialUpsertion(
            "dave", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), b"dave-secret")])["dave"].result(15)
        for i in range(n):
            conf = _conf(sasl[i], "SCRAM-SHA-256", user="dave", password="dave-secret", log_level=0)
            wait_for(lambda: AdminClient(conf).list_topics(timeout=5).brokers, timeout=20,
                     what=f"dave on node {i + 1}")
        topic = unique("cl")
        assert _roundtrip(_conf(sasl[0], "SCRAM-SHA-256", user="dave", password="dave-secret"), topic) == \
            [f"v{i}" for i in range(30)]
    finally:
        for b in nodes:
            b.stop()
    for b in nodes:
        assert "panicked" not in b.log_text()


def _jwt(key, kid, claims):
    """An RS256-signed JWT."""
    import base64
    import json

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    def b64(b):
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

    signed = b64(json.dumps({"alg": "RS256", "kid": kid, "typ": "JWT"}).encode()) + "." + \
        b64(json.dumps(claims).encode())
    sig = key.sign(signed.encode(), padding.PKCS1v15(), hashes.SHA256())
    return signed + "." + b64(sig)


def test_oauthbearer_tokens_are_checked_against_the_jwks(tmp_path):
    """KIP-768's broker side: a signed JWT from the identity provider authenticates as its
    subject; expired, foreign-signed and wrong-audience tokens do not."""
    import base64
    import json

    from cryptography.hazmat.primitives.asymmetric import rsa

    def b64int(i):
        return base64.urlsafe_b64encode(i.to_bytes((i.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()

    idp = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rogue = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pub = idp.public_key().public_numbers()
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{"kty": "RSA", "kid": "idp-1", "use": "sig", "alg": "RS256",
                                          "n": b64int(pub.n), "e": b64int(pub.e)}]}))
    extra = (f'"sasl.oauthbearer.jwks.endpoint.url" = "file://{jwks}"\n'
             '"sasl.oauthbearer.expected.audience" = "kafka"\n'
             '"sasl.oauthbearer.expected.issuer" = "https://idp.example"\n')
    global MECHANISMS
    saved, MECHANISMS = MECHANISMS, "SCRAM-SHA-256,OAUTHBEARER"
    try:
        b = _sasl_broker(tmp_path, extra=extra, env={"STRATA_LOG": "info,strata_broker::sasl=debug"})
    finally:
        MECHANISMS = saved
    try:
        now = int(time.time())
        good = {"sub": "svc-orders", "aud": "kafka", "iss": "https://idp.example", "iat": now, "exp": now + 600}

        def conf(token):
            return {"bootstrap.servers": f"127.0.0.1:{b.sasl_port}", "security.protocol": "SASL_PLAINTEXT",
                    "sasl.mechanism": "OAUTHBEARER", "log_level": 0,
                    "oauth_cb": lambda _cfg: (token, time.time() + 600)}

        topic = unique("oauth")
        assert _roundtrip(conf(_jwt(idp, "idp-1", good)), topic, n=10) == [f"v{i}" for i in range(10)]
        assert "principal=User:svc-orders" in b.log_text()
        for bad in (_jwt(idp, "idp-1", {**good, "exp": now - 600}),
                    _jwt(rogue, "idp-1", good),
                    _jwt(idp, "idp-1", {**good, "aud": "other"}),
                    _jwt(idp, "idp-2", good)):
            errors = _auth_fails(conf(bad))
            assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), errors
        log = b.log_text()
        assert "the token expired" in log and "signature does not verify" in log, log[-3000:]
        assert "not for this audience" in log and "no key with id 'idp-2'" in log
    finally:
        b.stop()
    assert "panicked" not in b.log_text()


def test_brokers_replicate_over_an_authenticated_encrypted_listener(tmp_path, pki):  # noqa: F811
    """Inter-broker traffic over SASL_SSL: replica fetches connect to the peers' INTERNAL
    listener with TLS (the CA in the truststore) and SCRAM as User:broker (sasl.jaas.config),
    and are authorized like any client (super.users here); acks=all on three replicas
    works only if they do."""
    from test_cluster import start_all, wait_for
    from confluent_kafka.admin import NewTopic

    n = 3
    plain = [free_port() for _ in range(n)]
    internal = [free_port() for _ in range(n)]
    controller = [free_port() for _ in range(n)]
    voters = ",".join(f"{i + 1}@127.0.0.1:{controller[i]}" for i in range(n))
    nodes = []
    for i in range(n):
        data = tmp_path / f"node{i + 1}" / "data"
        args = [STRATA_BIN, "format", "--data-dir", str(data), "--cluster-id", "secure-cluster",
                "--node-id", str(i + 1), "--add-scram", "SCRAM-SHA-512=[name=broker,password=broker-secret]"]
        subprocess.run(args, check=True, capture_output=True)
        config = f"""
listeners = "PLAINTEXT://127.0.0.1:{plain[i]},INTERNAL://127.0.0.1:{internal[i]}"
"listener.security.protocol.map" = "PLAINTEXT:PLAINTEXT,INTERNAL:SASL_SSL"
"inter.broker.listener.name" = "INTERNAL"
"ssl.keystore.location" = "{pki / 'keystore.pem'}"
"ssl.truststore.location" = "{pki / 'ca.pem'}"
"sasl.enabled.mechanisms" = "SCRAM-SHA-512"
"sasl.mechanism.inter.broker.protocol" = "SCRAM-SHA-512"
"sasl.jaas.config" = 'org.apache.kafka.common.security.scram.ScramLoginModule required username="broker" password="broker-secret";'
"authorizer.class.name" = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
"super.users" = "User:broker;User:ANONYMOUS"
broker_heartbeat_interval_ms = 300
broker_session_timeout_ms = 3000
"""
        nodes.append(Broker(data, port=plain[i], config_text=config,
                            env={"STRATA_LOG": "info,strata_broker::sasl=debug"},
                            extra_args=["--node-id", str(i + 1), "--controller-quorum-voters", voters]))
    start_all(nodes)
    try:
        bs = ",".join(f"127.0.0.1:{p}" for p in plain)
        admin = AdminClient({"bootstrap.servers": bs})
        wait_for(lambda: len(admin.list_topics(timeout=5).brokers) == n, what="all brokers")
        topic = unique("repl")
        admin.create_topics([NewTopic(topic, 3, 3)])[topic].result(20)
        got = _roundtrip({"bootstrap.servers": bs}, topic, n=60)
        assert sorted(got) == sorted(f"v{i}" for i in range(60))
        md = admin.list_topics(topic, timeout=10).topics[topic]
        assert all(len(p.isrs) == 3 for p in md.partitions.values()), "every replica keeps up"
        logs = "".join(b.log_text() for b in nodes)
        assert "principal=User:broker" in logs, "fetchers authenticated as the broker user"
        assert "listener=INTERNAL" in logs
    finally:
        for b in nodes:
            b.stop()
    for b in nodes:
        assert "panicked" not in b.log_text()


def _controller_config(pki, plain, controller, user="controller", password="ctl-secret"):  # noqa: F811
    """A node whose controller listener is SASL_SSL with SCRAM-SHA-256: it logs in to its
    peers as `user` and accepts the users of its JAAS line; only super users (or principals
    allowed CLUSTER_ACTION) may use the listener."""
    jaas = ("org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{user}" password="{password}" '
            'user_controller="ctl-secret" user_intruder="intruder-secret";')
    return f"""
listeners = "PLAINTEXT://127.0.0.1:{plain},CONTROLLER://127.0.0.1:{controller}"
"listener.security.protocol.map" = "PLAINTEXT:PLAINTEXT,CONTROLLER:SASL_SSL"
"ssl.keystore.location" = "{pki / 'keystore.pem'}"
"ssl.truststore.location" = "{pki / 'ca.pem'}"
"sasl.mechanism.controller.protocol" = "SCRAM-SHA-256"
"listener.name.controller.scram-sha-256.sasl.jaas.config" = '{jaas}'
"authorizer.class.name" = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
"super.users" = "User:controller;User:ANONYMOUS"
broker_heartbeat_interval_ms = 300
broker_session_timeout_ms = 3000
"""


def test_the_controller_listener_is_encrypted_authenticated_and_authorized(tmp_path, pki):  # noqa: F811
    """The metadata quorum's traffic (raft, forwarded metadata writes, the inter-broker
    calls transactions make) over CONTROLLER:SASL_SSL with SCRAM: the cluster forms, topics
    replicate and transactions commit; plaintext to the controller port gets no answer; a
    node that authenticates as a principal without CLUSTER_ACTION cannot join."""
    from test_cluster import start_all, wait_for
    from confluent_kafka.admin import NewTopic

    n = 3
    plain = [free_port() for _ in range(n)]
    controller = [free_port() for _ in range(n)]
    voters = ",".join(f"{i + 1}@127.0.0.1:{controller[i]}" for i in range(n))
    for i in range(n + 1):
        (tmp_path / f"node{i + 1}").mkdir()
    nodes = [Broker(tmp_path / f"node{i + 1}" / "data", port=plain[i],
                    config_text=_controller_config(pki, plain[i], controller[i]),
                    extra_args=["--node-id", str(i + 1), "--controller-quorum-voters", voters])
             for i in range(n)]
    start_all(nodes)
    rogue = None
    try:
        bs = ",".join(f"127.0.0.1:{p}" for p in plain)
        for b in nodes:
            assert 'Transport { tls: true, sasl: Some(Scram(Sha256)), admit: true }' in b.log_text()
        admin = AdminClient({"bootstrap.servers": bs})
        wait_for(lambda: len(admin.list_topics(timeout=5).brokers) == n, what="all brokers")
        topic = unique("ctl")
        admin.create_topics([NewTopic(topic, 3, 3)])[topic].result(30)
        got = _roundtrip({"bootstrap.servers": bs}, topic, n=60)
        assert sorted(got) == sorted(f"v{i}" for i in range(60))
        # A transaction over partitions led by every broker: its markers go from the
        # coordinator to the other leaders over the controller listener.
        p = Producer({"bootstrap.servers": bs, "transactional.id": unique("tx")})
        p.init_transactions(30)
        p.begin_transaction()
        for i in range(30):
            p.produce(topic, key=str(i), value=f"t{i}", partition=i % 3)
        p.commit_transaction(30)
        c = Consumer({"bootstrap.servers": bs, "group.id": unique("g"),
                      "auto.offset.reset": "earliest", "isolation.level": "read_committed"})
        c.subscribe([topic])
        seen = set()
        deadline = time.time() + 30
        while len(seen) < 30 and time.time() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is None and m.value().startswith(b"t"):
                seen.add(m.value())
        c.close()
        assert len(seen) == 30, "the committed transaction is visible on every partition"

        # Plaintext to a TLS controller port: no frame comes back.
        with socket.create_connection(("127.0.0.1", controller[0]), timeout=5) as s:
            s.sendall(struct.pack(">BI", 8, 2) + b"{}")  # a read-index request, unencrypted
            try:
                data = s.recv(64)
            except (ConnectionResetError, socket.timeout):
                data = b""
        assert data == b"" or data[0] == 0x15, f"a TLS alert at most, got {data!r}"

        # A broker-only node whose SCRAM login is valid but names a principal that is
        # neither a super user nor allowed CLUSTER_ACTION: refused by every voter.
        rp, rc = free_port(), free_port()
        rogue = Broker(tmp_path / "node4" / "data", port=rp,
                       config_text=_controller_config(pki, rp, rc, user="intruder",
                                                      password="intruder-secret"),
                       extra_args=["--node-id", "9", "--controller-quorum-voters", voters,
                                   "--process-roles", "broker"])
        try:
            rogue.start(timeout=8)
        except RuntimeError:
            pass  # it may never get far enough to listen
        wait_for(lambda: any("principal not allowed CLUSTER_ACTION" in b.log_text()
                             and "User:intruder" in b.log_text() for b in nodes),
                 timeout=20, what="the voters refusing User:intruder")
        assert len(admin.list_topics(timeout=5).brokers) == n, "the rogue never registered"
    finally:
        if rogue is not None:
            rogue.stop()
        for b in nodes:
            b.stop()
    for b in nodes:
        assert "panicked" not in b.log_text()


def test_oauthbearer_keys_are_fetched_over_https_and_follow_a_rotation(tmp_path, pki):  # noqa: F811
    """The JWKS from an HTTPS endpoint (KIP-768's usual setup; the CA in
    ssl.truststore.location): fetched at start, and fetched again when a token names a key
    id the broker lacks, so a key rotated at the identity provider is accepted on retry."""
    import base64
    import http.server
    import json
    import ssl
    import threading

    from cryptography.hazmat.primitives.asymmetric import rsa

    def jwk(key, kid):
        pub = key.public_key().public_numbers()

        def b64int(i):
            return base64.urlsafe_b64encode(i.to_bytes((i.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()
        return {"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": b64int(pub.n), "e": b64int(pub.e)}

    old, new = (rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2))
    served = {"keys": [jwk(old, "idp-1")]}
    gets = []

    class Jwks(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            gets.append(self.path)
            body = json.dumps(served).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Jwks)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki / "server.pem", pki / "server.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"https://127.0.0.1:{server.server_address[1]}/realms/kafka/certs"
    extra = (f'"sasl.oauthbearer.jwks.endpoint.url" = "{url}"\n'
             f'"ssl.truststore.location" = "{pki / "ca.pem"}"\n'
             '"sasl.oauthbearer.expected.audience" = "kafka"\n')
    global MECHANISMS
    saved, MECHANISMS = MECHANISMS, "SCRAM-SHA-256,OAUTHBEARER"
    try:
        b = _sasl_broker(tmp_path, extra=extra, env={"STRATA_LOG": "info,strata_broker::sasl=debug"})
    finally:
        MECHANISMS = saved
    try:
        assert gets == ["/realms/kafka/certs"], "fetched once at start"
        now = int(time.time())
        claims = {"sub": "svc-billing", "aud": "kafka", "iat": now, "exp": now + 600}

        def conf(token):
            return {"bootstrap.servers": f"127.0.0.1:{b.sasl_port}", "security.protocol": "SASL_PLAINTEXT",
                    "sasl.mechanism": "OAUTHBEARER", "log_level": 0,
                    "oauth_cb": lambda _cfg: (token, time.time() + 600)}

        topic = unique("https-jwks")
        assert _roundtrip(conf(_jwt(old, "idp-1", claims)), topic, n=5) == [f"v{i}" for i in range(5)]
        # The provider rotates to a new key: the first token signed with it names an unknown
        # key id, which makes the broker fetch again; a retry is accepted.
        served["keys"] = [jwk(new, "idp-2")]

        def accepted():
            try:
                AdminClient(conf(_jwt(new, "idp-2", claims))).list_topics(timeout=3)
                return True
            except KafkaException:
                return False
        from test_cluster import wait_for
        wait_for(accepted, timeout=30, what="the rotated key accepted")
        assert len(gets) >= 2
        log = b.log_text()
        assert "OAUTHBEARER keys fetched" in log and "OAUTHBEARER keys refreshed" in log, log[-2000:]
        assert "principal=User:svc-billing" in log
    finally:
        b.stop()
        server.shutdown()
    assert "panicked" not in b.log_text()


def test_the_sql_engine_works_on_a_node_with_only_an_authenticated_encrypted_listener(tmp_path, pki):  # noqa: F811
    """No PLAINTEXT listener: the SQL engine reaches its node through the inter-broker
    listener (SASL_SSL) as the node's own principal, with the node's truststore and JAAS
    login, under an authorizer that admits only super users; a persistent aggregation fed
    by a SASL_SSL client answers pull queries."""
    import json

    import requests

    data = tmp_path / "data"
    subprocess.run([STRATA_BIN, "format", "--data-dir", str(data),
                    "--add-scram", "SCRAM-SHA-512=[name=broker,password=broker-secret]",
                    "--add-scram", "SCRAM-SHA-512=[name=app,password=app-secret]"],
                   check=True, capture_output=True)
    port, sql_port = free_port(), free_port()
    config = f"""
listeners = "SASL_SSL://127.0.0.1:{port}"
"ssl.keystore.location" = "{pki / 'keystore.pem'}"
"ssl.truststore.location" = "{pki / 'ca.pem'}"
"sasl.enabled.mechanisms" = "SCRAM-SHA-512"
"sasl.mechanism.inter.broker.protocol" = "SCRAM-SHA-512"
"sasl.jaas.config" = 'org.apache.kafka.common.security.scram.ScramLoginModule required username="broker" password="broker-secret";'
"authorizer.class.name" = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
"super.users" = "User:broker;User:app"
group_initial_rebalance_delay_ms = 0
"""
    b = Broker(data, port=port, config_text=config,
               env={"STRATA_LOG": "info,strata_broker::sasl=debug"},
               extra_args=["--sql-listen", f"127.0.0.1:{sql_port}"]).start()
    url = f"http://127.0.0.1:{sql_port}"
    try:
        from test_cluster import wait_for

        def ksql(text, props=None):
            r = requests.post(url + "/ksql", json={"ksql": text, "streamsProperties": props or {}},
                              timeout=30)
            assert r.status_code == 200, r.text
            return r.json()

        def serving():
            try:
                return requests.get(url + "/info", timeout=2).ok
            except requests.ConnectionError:
                return False
        wait_for(serving, timeout=60, what="the SQL engine")
        topic = unique("secure_sql")
        ksql(f"CREATE STREAM clicks (user STRING KEY, n INT) "
             f"WITH (kafka_topic='{topic}', partitions=2, value_format='JSON');")
        ksql("CREATE TABLE totals AS SELECT user, COUNT(*) AS c FROM clicks GROUP BY user;",
             {"ksql.streams.auto.offset.reset": "earliest"})
        conf = {"bootstrap.servers": f"127.0.0.1:{port}", "security.protocol": "SASL_SSL",
                "ssl.ca.location": str(pki / "ca.pem"), "sasl.mechanism": "SCRAM-SHA-512",
                "sasl.username": "app", "sasl.password": "app-secret"}
        p = Producer(conf)
        for i in range(30):
            p.produce(topic, key=f"u{i % 3}".encode(), value=json.dumps({"n": i}))
        assert p.flush(30) == 0

        def count(user):
            r = requests.post(url + "/query-stream",
                              json={"sql": f"SELECT * FROM totals WHERE user = '{user}';", "properties": {}},
                              headers={"accept": "application/json"}, timeout=30)
            return r.json()[1:] if r.ok else None
        assert wait_for(lambda: count("u1") == [["u1", 10]], timeout=60, what="the aggregate's pull query")
        # The engine authenticated as the node's principal over the SASL_SSL listener.
        assert "principal=User:broker" in b.log_text()
    finally:
        b.stop()
    assert "panicked" not in b.log_text()
