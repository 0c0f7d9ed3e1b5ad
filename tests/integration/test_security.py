"""Listeners and TLS (issue 14) with real clients: librdkafka (confluent-kafka, kcat) and
kafka-python over SSL and mTLS, bad certificates and plaintext on a TLS port.

Certificates are made for each test run with the openssl CLI: a CA, a server certificate for
127.0.0.1/localhost, a client certificate, and a second CA nobody trusts."""

import socket
import subprocess
import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from conftest import Broker, free_port, unique


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _issue(d, name, ca, subject, san=None):
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", subject, cwd=d)
    # Extensions make a v3 certificate (webpki, like most modern verifiers, refuses v1).
    lines = ["basicConstraints=CA:FALSE"]
    lines.append(f"subjectAltName={san}" if san else "extendedKeyUsage=clientAuth")
    (d / f"{name}.ext").write_text("\n".join(lines) + "\n")
    ext = ["-extfile", f"{name}.ext"]
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-days", "2", "-out", f"{name}.pem", *ext, cwd=d)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    for ca in ("ca", "rogue-ca"):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{ca}.key", "-out",
                 f"{ca}.pem", "-days", "2", "-subj", f"/CN={ca}", cwd=d)
    _issue(d, "server", "ca", "/CN=localhost", san="DNS:localhost,IP:127.0.0.1")
    _issue(d, "alice", "ca", "/C=DE/O=Acme/OU=eng/CN=alice")
    _issue(d, "mallory", "rogue-ca", "/CN=mallory")
    (d / "keystore.pem").write_text((d / "server.pem").read_text() + (d / "server.key").read_text())
    # A renewed server certificate (same CA and names), for reloading.
    _issue(d, "server2", "ca", "/CN=localhost", san="DNS:localhost,IP:127.0.0.1")
    (d / "keystore2.pem").write_text((d / "server2.pem").read_text() + (d / "server2.key").read_text())
    return d


def _secure_broker(tmp_path, pki, client_auth="none", env=None, extra=""):
    plain, tls = free_port(), free_port()
    config = f"""
listeners = "PLAINTEXT://127.0.0.1:{plain},SSL://127.0.0.1:{tls}"
"ssl.keystore.type" = "PEM"
"ssl.keystore.location" = "{pki / 'keystore.pem'}"
"ssl.truststore.location" = "{pki / 'ca.pem'}"
"ssl.client.auth" = "{client_auth}"
{extra}"""
    b = Broker(tmp_path / "data", port=plain, config_text=config, env=env).start()
    b.tls_port = tls
    return b


def _ssl_conf(pki, port, cert=None, ca="ca.pem"):
    conf = {
        "bootstrap.servers": f"127.0.0.1:{port}",
        "security.protocol": "SSL",
        "ssl.ca.location": str(pki / ca),
    }
    if cert:
        conf["ssl.certificate.location"] = str(pki / f"{cert}.pem")
        conf["ssl.key.location"] = str(pki / f"{cert}.key")
    return conf


def _roundtrip(conf, topic, n=50):
    """Produces n records and reads them back through `conf`; returns the values read."""
    p = Producer({**conf, "acks": "all", "enable.idempotence": True})
    for i in range(n):
        p.produce(topic, key=str(i), value=f"v{i}")
    assert p.flush(30) == 0, "every record delivered"
    c = Consumer({**conf, "group.id": unique("g"), "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got = []
    deadline = time.time() + 30
    while len(got) < n and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            got.append(m.value().decode())
    c.close()
    return got


def _refused(conf, timeout=8):
    """True if a librdkafka admin client cannot get metadata through `conf`."""
    admin = AdminClient({**conf, "socket.timeout.ms": 3000})
    try:
        admin.list_topics(timeout=timeout)
        return False
    except KafkaException:
        return True


def test_one_broker_serves_plaintext_and_ssl_listeners_each_advertising_its_own(tmp_path, pki):
    b = _secure_broker(tmp_path, pki)
    try:
        topic = unique("tls")
        conf = _ssl_conf(pki, b.tls_port)
        # Metadata through the SSL listener must name the SSL port: librdkafka connects to
        # the advertised endpoint for everything after bootstrap.
        md = AdminClient(conf).list_topics(timeout=10)
        assert [(x.host, x.port) for x in md.brokers.values()] == [("127.0.0.1", b.tls_port)]
        md = AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(timeout=10)
        assert [(x.host, x.port) for x in md.brokers.values()] == [("127.0.0.1", b.port)]
        got = _roundtrip(conf, topic)
        assert got == [f"v{i}" for i in range(50)]
        # The same records through the plaintext listener.
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": unique("g"), "auto.offset.reset": "earliest"})
        c.subscribe([topic])
        plain = []
        deadline = time.time() + 30
        while len(plain) < 50 and time.time() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                plain.append(m.value().decode())
        c.close()
        assert plain == got
        # kcat (Debian's librdkafka build) over SSL.
        out = subprocess.run(
            ["kcat", "-b", f"127.0.0.1:{b.tls_port}", "-X", "security.protocol=SSL",
             "-X", f"ssl.ca.location={pki / 'ca.pem'}", "-C", "-t", topic, "-e", "-f", "%s\n"],
            capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == got
    finally:
        b.stop()
    assert "panicked" not in b.log_text()


def test_kafka_python_over_ssl(tmp_path, pki):
    from kafka import KafkaConsumer, KafkaProducer

    b = _secure_broker(tmp_path, pki)
    try:
        topic = unique("kp-tls")
        common = dict(bootstrap_servers=f"127.0.0.1:{b.tls_port}", security_protocol="SSL",
                      ssl_cafile=str(pki / "ca.pem"))
        p = KafkaProducer(acks="all", **common)
        for i in range(20):
            p.send(topic, f"k{i}".encode())
        p.flush(30)
        p.close()
        c = KafkaConsumer(topic, auto_offset_reset="earliest", consumer_timeout_ms=5000, **common)
        got = [m.value.decode() for m in c]
        c.close()
        assert got == [f"k{i}" for i in range(20)]
    finally:
        b.stop()


def test_bad_certificates_and_plaintext_on_a_tls_port_fail_alone(tmp_path, pki):
    b = _secure_broker(tmp_path, pki)
    try:
        # A client that trusts another CA refuses the broker's certificate.
        assert _refused(_ssl_conf(pki, b.tls_port, ca="rogue-ca.pem"))
        # Plaintext Kafka on the TLS port: the handshake fails, that connection closes.
        with socket.create_connection(("127.0.0.1", b.tls_port), timeout=5) as s:
            # an ApiVersions v0 request frame
            s.sendall(bytes.fromhex("0000000d00120000000000010003616263"))
            s.settimeout(5)
            try:
                data = s.recv(1024)
                # rustls answers a non-TLS record with a TLS alert (or nothing) and closes
                assert data == b"" or data[0] == 0x15, data
            except ConnectionResetError:
                pass
        # A connection that never finishes its handshake does not stop others.
        idle = socket.create_connection(("127.0.0.1", b.tls_port), timeout=5)
        try:
            assert not _refused(_ssl_conf(pki, b.tls_port)), "good clients still served"
        finally:
            idle.close()
        assert b.alive()
        assert "authentication failed" in b.log_text()
    finally:
        b.stop()


def test_mutual_tls_requires_a_certificate_from_the_trusted_ca_and_names_the_principal(tmp_path, pki):
    b = _secure_broker(tmp_path, pki, client_auth="required",
                       env={"STRATA_LOG": "info,strata_broker::server=debug"})
    try:
        assert _refused(_ssl_conf(pki, b.tls_port)), "no client certificate"
        assert _refused(_ssl_conf(pki, b.tls_port, cert="mallory")), "certificate from an untrusted CA"
        got = _roundtrip(_ssl_conf(pki, b.tls_port, cert="alice"), unique("mtls"), n=10)
        assert got == [f"v{i}" for i in range(10)]
        # Kafka's DEFAULT principal: the subject as RFC 2253 writes it, most specific first.
        assert "principal=User:CN=alice,OU=eng,O=Acme,C=DE" in b.log_text()
    finally:
        b.stop()


def test_principal_mapping_rules_turn_the_subject_into_the_user(tmp_path, pki):
    """KIP-371: the first rule matching the whole distinguished name gives the user; a
    subject no rule matches cannot authenticate."""
    b = _secure_broker(tmp_path, pki, client_auth="required",
                       env={"STRATA_LOG": "info,strata_broker::server=debug"},
                       extra='"ssl.principal.mapping.rules" = "RULE:^CN=(.*?),OU=eng,.*$/$1/U"\n')
    try:
        assert not _refused(_ssl_conf(pki, b.tls_port, cert="alice"))
        assert "principal=User:ALICE" in b.log_text()
    finally:
        b.stop()
    b = _secure_broker(tmp_path, pki, client_auth="required",
                       extra='"ssl.principal.mapping.rules" = "RULE:^CN=(.*?),OU=ops,.*$/$1/"\n')
    try:
        assert _refused(_ssl_conf(pki, b.tls_port, cert="alice"))
        assert "no ssl.principal.mapping.rules rule matches CN=alice,OU=eng,O=Acme,C=DE" in b.log_text()
    finally:
        b.stop()


def test_requested_client_auth_accepts_clients_without_a_certificate(tmp_path, pki):
    b = _secure_broker(tmp_path, pki, client_auth="requested",
                       env={"STRATA_LOG": "info,strata_broker::server=debug"})
    try:
        assert not _refused(_ssl_conf(pki, b.tls_port))
        assert not _refused(_ssl_conf(pki, b.tls_port, cert="alice"))
        assert "principal=User:CN=alice,OU=eng,O=Acme,C=DE" in b.log_text()
        # The broker asks for a certificate from its trusted CAs; the client has none, so it
        # sends none and is served as ANONYMOUS, never as the rogue CA's subject.
        assert not _refused(_ssl_conf(pki, b.tls_port, cert="mallory"))
        assert "principal=User:ANONYMOUS" in b.log_text()
        assert "CN=mallory" not in b.log_text()
    finally:
        b.stop()


@pytest.mark.parametrize("config, message", [
    ('listeners = "SSL://127.0.0.1:{port}"\n', "ssl.keystore.location"),
    ('listeners = "SSL://127.0.0.1:{port}"\n"ssl.keystore.location" = "/nonexistent.pem"\n', "cannot read ssl.keystore.location"),
    ('listeners = "PLAINTEXT://127.0.0.1:{port}"\n"ssl.client.auth" = "maybe"\n', "ssl.client.auth"),
    ('listeners = "SASL_SSL://127.0.0.1:{port}"\n', "SASL"),
    ('listeners = "INTERNAL://127.0.0.1:{port}"\n', "listener.security.protocol.map"),
    ('"ssl.principal.mapping.rules" = "RULE:^CN=(.*/$1"\n', "ssl.principal.mapping.rules"),
])
def test_bad_listener_and_tls_settings_stop_the_start_with_the_reason(tmp_path, config, message):
    port = free_port()
    b = Broker(tmp_path / "data", port=port, config_text=config.format(port=port))
    with pytest.raises(RuntimeError) as e:
        b.start(timeout=20)
    assert message in str(e.value)


def _served_certificate(port):
    import ssl
    return ssl.PEM_cert_to_DER_cert(ssl.get_server_certificate(("127.0.0.1", port), timeout=10))


def _der(path):
    import ssl
    return ssl.PEM_cert_to_DER_cert(path.read_text())


def test_the_keystore_is_reloaded_through_alter_configs_without_a_restart(tmp_path, pki):
    """As in Kafka: setting the SSL listener's keystore location (a dynamic per-broker config)
    swaps the certificate for new handshakes; a keystore that does not work is refused and
    the old one stays; the change survives a restart."""
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

    b = _secure_broker(tmp_path, pki)
    try:
        assert _served_certificate(b.tls_port) == _der(pki / "server.pem")
        admin = AdminClient({"bootstrap.servers": b.bootstrap})

        def set_keystore(path):
            res = ConfigResource("broker", "1", incremental_configs=[
                ConfigEntry("listener.name.ssl.ssl.keystore.location", str(path),
                            incremental_operation=AlterConfigOpType.SET)])
            admin.incremental_alter_configs([res])[res].result(15)

        set_keystore(pki / "keystore2.pem")
        assert _served_certificate(b.tls_port) == _der(pki / "server2.pem")
        with pytest.raises(KafkaException) as e:
            set_keystore(pki / "missing.pem")
        assert "do not work" in str(e.value), e.value
        assert _served_certificate(b.tls_port) == _der(pki / "server2.pem")
        topic = unique("reload")
        assert _roundtrip(_ssl_conf(pki, b.tls_port), topic, n=5) == [f"v{i}" for i in range(5)]
        b.stop()
        b.start()
        assert _served_certificate(b.tls_port) == _der(pki / "server2.pem"), "kept across a restart"
    finally:
        b.stop()
    assert "panicked" not in b.log_text()


def test_each_tls_listener_can_have_its_own_keystore_and_client_auth(tmp_path, pki):
    """Kafka's per-listener TLS settings: `listener.name.<l>.ssl.*` in the file gives one
    listener its own keystore and ssl.client.auth while another keeps the broker-wide ones;
    a dynamic change prefixed with one listener's name changes that listener only."""
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

    plain, tls, mtls = free_port(), free_port(), free_port()
    config = f"""
listeners = "PLAINTEXT://127.0.0.1:{plain},SSL://127.0.0.1:{tls},MTLS://127.0.0.1:{mtls}"
"listener.security.protocol.map" = "PLAINTEXT:PLAINTEXT,SSL:SSL,MTLS:SSL"
"ssl.keystore.location" = "{pki / 'keystore.pem'}"
"listener.name.mtls.ssl.keystore.location" = "{pki / 'keystore2.pem'}"
"listener.name.mtls.ssl.truststore.location" = "{pki / 'ca.pem'}"
"listener.name.mtls.ssl.client.auth" = "required"
"""
    b = Broker(tmp_path / "data", port=plain, config_text=config).start()
    try:
        assert _served_certificate(tls) == _der(pki / "server.pem")
        assert _served_certificate(mtls) == _der(pki / "server2.pem")
        topic = unique("per-listener")
        assert _roundtrip(_ssl_conf(pki, tls), topic, n=5) == [f"v{i}" for i in range(5)]
        assert _refused(_ssl_conf(pki, mtls)), "MTLS requires a client certificate"
        assert not _refused(_ssl_conf(pki, mtls, cert="alice"))
        # A dynamic keystore for MTLS only.
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        res = ConfigResource("broker", "1", incremental_configs=[
            ConfigEntry("listener.name.mtls.ssl.keystore.location", str(pki / "keystore.pem"),
                        incremental_operation=AlterConfigOpType.SET)])
        admin.incremental_alter_configs([res])[res].result(15)
        assert _served_certificate(mtls) == _der(pki / "server.pem")
        assert _served_certificate(tls) == _der(pki / "server.pem"), "SSL untouched"
        assert _refused(_ssl_conf(pki, mtls)), "client auth kept on MTLS"
    finally:
        b.stop()
    assert "panicked" not in b.log_text()
    # A per-listener setting Strata does not take is refused with the reason.
    bad = config + '"listener.name.mtls.ssl.cipher.suites" = "x"\n'
    b2 = Broker(tmp_path / "data2", port=free_port(), config_text=bad.replace(str(plain), str(free_port())))
    with pytest.raises(RuntimeError) as e:
        b2.start()
    assert "cannot be set per listener" in str(e.value)


def test_an_encrypted_private_key_opens_with_ssl_key_password(tmp_path, pki):
    """Kafka's PEM keystores may hold an encrypted PKCS#8 key with ssl.key.password (PBES2,
    as `openssl pkcs8 -topk8 -v2 aes-256-cbc` writes it): the right password serves TLS; a
    wrong or missing one stops the start with the reason."""
    d = tmp_path / "keys"
    d.mkdir()
    subprocess.run(["openssl", "pkcs8", "-topk8", "-v2", "aes-256-cbc", "-in", str(pki / "server.key"),
                    "-out", str(d / "server-enc.key"), "-passout", "pass:key pw"], check=True, capture_output=True)
    assert "ENCRYPTED PRIVATE KEY" in (d / "server-enc.key").read_text()
    keystore = d / "keystore-enc.pem"
    keystore.write_text((pki / "server.pem").read_text() + (d / "server-enc.key").read_text())

    def broker(name, password_line):
        plain, tls = free_port(), free_port()
        config = f"""
listeners = "PLAINTEXT://127.0.0.1:{plain},SSL://127.0.0.1:{tls}"
"ssl.keystore.location" = "{keystore}"
{password_line}
"""
        b = Broker(tmp_path / name, port=plain, config_text=config)
        b.tls_port = tls
        return b

    b = broker("good", '"ssl.key.password" = "key pw"').start()
    try:
        topic = unique("enc")
        assert _roundtrip(_ssl_conf(pki, b.tls_port), topic, n=5) == [f"v{i}" for i in range(5)]
    finally:
        b.stop()
    for name, line, why in [("wrong", '"ssl.key.password" = "nope"', "does not decrypt"),
                            ("none", "", "set ssl.key.password")]:
        with pytest.raises(RuntimeError) as e:
            broker(name, line).start(timeout=20)
        assert why in str(e.value), e.value


def test_jks_and_pkcs12_stores_as_keytool_writes_them(tmp_path, pki):
    """Kafka's default store types: a JKS keystore (with its own key password) and a PKCS12
    truststore made by Java's keytool, and the other way round; the type may be left out
    (Kafka's default is JKS: the file is recognized by its content); a wrong store password
    stops the start with the reason."""
    import shutil
    if shutil.which("keytool") is None:
        pytest.skip("keytool (Java) is not installed")
    d = tmp_path / "stores"
    d.mkdir()

    def run(*args):
        r = subprocess.run(args, cwd=d, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr

    run("openssl", "pkcs12", "-export", "-in", str(pki / "server.pem"), "-inkey", str(pki / "server.key"),
        "-out", "openssl.p12", "-passout", "pass:store-pw", "-name", "broker")
    run("keytool", "-importkeystore", "-srckeystore", "openssl.p12", "-srcstoretype", "PKCS12",
        "-srcstorepass", "store-pw", "-destkeystore", "broker.jks", "-deststoretype", "JKS",
        "-deststorepass", "store-pw", "-destkeypass", "key-pw", "-noprompt")
    run("keytool", "-importkeystore", "-srckeystore", "openssl.p12", "-srcstoretype", "PKCS12",
        "-srcstorepass", "store-pw", "-destkeystore", "broker.p12", "-deststoretype", "PKCS12",
        "-deststorepass", "store-pw", "-noprompt")
    for kind, name in (("JKS", "trust.jks"), ("PKCS12", "trust.p12")):
        run("keytool", "-importcert", "-noprompt", "-alias", "ca", "-file", str(pki / "ca.pem"),
            "-keystore", name, "-storetype", kind, "-storepass", "trust-pw")

    def broker(name, lines):
        plain, tls = free_port(), free_port()
        config = f'listeners = "PLAINTEXT://127.0.0.1:{plain},SSL://127.0.0.1:{tls}"\n' + \
            '"ssl.client.auth" = "required"\n' + "\n".join(lines) + "\n"
        b = Broker(tmp_path / name, port=plain, config_text=config)
        b.tls_port = tls
        return b

    setups = {
        "jks-keystore": [f'"ssl.keystore.location" = "{d / "broker.jks"}"', '"ssl.keystore.type" = "JKS"',
                         '"ssl.keystore.password" = "store-pw"', '"ssl.key.password" = "key-pw"',
                         f'"ssl.truststore.location" = "{d / "trust.p12"}"', '"ssl.truststore.type" = "PKCS12"',
                         '"ssl.truststore.password" = "trust-pw"'],
        "untyped": [f'"ssl.keystore.location" = "{d / "broker.p12"}"', '"ssl.keystore.password" = "store-pw"',
                    f'"ssl.truststore.location" = "{d / "trust.jks"}"', '"ssl.truststore.password" = "trust-pw"'],
    }
    for name, lines in setups.items():
        b = broker(name, lines).start()
        try:
            assert _served_certificate(b.tls_port) == _der(pki / "server.pem"), name
            topic = unique(name)
            conf = _ssl_conf(pki, b.tls_port, cert="alice")
            assert _roundtrip(conf, topic, n=5) == [f"v{i}" for i in range(5)], name
        finally:
            b.stop()
        assert "panicked" not in b.log_text()
    bad = [line.replace('"store-pw"', '"wrong"') for line in setups["jks-keystore"]]
    with pytest.raises(RuntimeError) as e:
        broker("wrong", bad).start(timeout=20)
    assert "integrity check failed" in str(e.value), e.value
    bad = [line.replace('"key-pw"', '"wrong"') for line in setups["jks-keystore"]]
    with pytest.raises(RuntimeError) as e:
        broker("wrong-key", bad).start(timeout=20)
    assert "does not open it" in str(e.value), e.value
