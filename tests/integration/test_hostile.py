"""Bad input fails alone (invariant 15): garbage, absurd lengths, unknown APIs and versions,
random payloads and corrupt batches close or fail only their own connection or request, and
the broker keeps serving everyone else."""
import os
import random
import socket
import struct
import threading
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kafka.record.default_records import DefaultRecordBatchBuilder

from conftest import read_frame, unique

SUPPORTED = {0: (3, 12), 1: (4, 12), 2: (1, 8), 3: (0, 12), 18: (0, 3), 19: (2, 7), 20: (1, 6), 22: (0, 4), 32: (1, 4), 37: (0, 3), 60: (0, 1)}


def connect(broker):
    s = socket.create_connection(("127.0.0.1", broker.port), timeout=5)
    return s


def closed_by_peer(s, timeout=5):
    """True if the broker closes the connection (EOF or reset) within the timeout."""
    s.settimeout(timeout)
    try:
        while True:
            data = s.recv(65536)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def header(api_key, version, correlation_id=7, client_id=b"hostile"):
    return struct.pack(">hhih", api_key, version, correlation_id, len(client_id)) + client_id


def frame(payload):
    return struct.pack(">i", len(payload)) + payload


def still_serving(broker):
    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    md = a.list_topics(timeout=10)
    assert md.brokers, "metadata still answered"
    assert broker.alive()


def test_garbage_and_absurd_lengths_close_only_that_connection(broker):
    cases = [
        b"\xde\xad\xbe\xef" * 250,  # garbage whose length prefix is negative
        frame(b"\x7f\xff" + os.urandom(998)),  # a whole frame of garbage (API key 32767)
        b"\x7f\xff\xff\xff" + os.urandom(996),  # garbage claiming a 2 GiB frame
        struct.pack(">i", 0x7FFFFFFF) + b"\x00" * 8,  # 2 GiB frame claimed
        struct.pack(">i", -5) + b"\x00" * 8,  # negative length
        frame(b"\x00\x01"),  # too short for a header
        frame(header(9999, 0)),  # unknown API key
        frame(header(3, 99)),  # Metadata v99
        frame(header(38, 0) + b"\x00" * 20),  # CreateDelegationToken: known to Kafka, not served here
        frame(header(3, 1) + struct.pack(">i", 0x7FFFFFFF)),  # array of 2^31-1 topics, no bytes
        frame(header(0, 3) + struct.pack(">hhi", -1, -1, 1000) + struct.pack(">i", 1) + struct.pack(">h", 0x7FFF)),
    ]
    bystander = connect(broker)
    for payload in cases:
        s = connect(broker)
        s.sendall(payload)
        assert closed_by_peer(s), payload[:16]
        s.close()
    still_serving(broker)
    # a connection opened before the garbage still works
    bystander.sendall(frame(header(18, 0)))
    body = read_frame(bystander)
    assert struct.unpack(">ih", body[:6]) == (7, 0)
    assert "panicked" not in broker.log_text()


def test_api_versions_too_new_gets_v0_answer(broker):
    s = connect(broker)
    s.sendall(frame(header(18, 99) + b"\x00\x00garbage-body-of-a-future-version"))
    body = read_frame(s)
    correlation, error, count = struct.unpack(">ihi", body[:10])
    assert (correlation, error) == (7, 35)  # UNSUPPORTED_VERSION
    keys = {struct.unpack(">hhh", body[10 + 6 * i : 16 + 6 * i])[0] for i in range(count)}
    assert {0, 1, 2, 3, 18}.issubset(keys)


def test_random_payloads_while_a_producer_keeps_working(broker):
    topic = unique("bystander")
    acked = []
    stop = threading.Event()

    def produce():
        p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 2})
        i = 0
        while not stop.is_set():
            p.produce(topic, value=b"%d" % i, on_delivery=lambda e, m: e is None and acked.append(m.offset()))
            p.poll(0.001)
            i += 1
            if i % 200 == 0:
                p.flush(10)
        p.flush(10)

    t = threading.Thread(target=produce)
    t.start()
    rng = random.Random(1234)
    deadline = time.time() + 4
    sent = 0
    while time.time() < deadline:
        key = rng.choice(list(SUPPORTED))
        lo, hi = SUPPORTED[key]
        version = rng.randint(lo, hi)
        body = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300)))
        s = connect(broker)
        s.sendall(frame(header(key, version, rng.randint(0, 1 << 30)) + body))
        closed_by_peer(s, timeout=0.5)
        s.close()
        sent += 1
    stop.set()
    t.join(30)
    assert sent > 50
    assert len(acked) > 100, "the producer kept being served"
    assert sorted(acked) == list(range(len(acked)))
    still_serving(broker)
    assert "panicked" not in broker.log_text()


def produce_v3(topic, records, acks=-1):
    body = struct.pack(">hhi", -1, acks, 5000)  # null transactional id, acks, timeout
    body += struct.pack(">i", 1) + struct.pack(">h", len(topic)) + topic.encode()
    body += struct.pack(">i", 1) + struct.pack(">i", 0) + struct.pack(">i", len(records)) + records
    return frame(header(0, 3) + body)


def produce_v3_error(s, topic, records):
    s.sendall(produce_v3(topic, records))
    body = read_frame(s)
    # correlation, topics[1], name, partitions[1], index, error_code, base_offset
    pos = 4 + 4
    (name_len,) = struct.unpack(">h", body[pos : pos + 2])
    pos += 2 + name_len + 4
    index, error, base = struct.unpack(">ihq", body[pos : pos + 14])
    return error, base


def batch(values):
    b = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=0, producer_id=-1, producer_epoch=-1, base_sequence=-1, batch_size=1 << 20)
    for i, v in enumerate(values):
        b.append(i, timestamp=int(time.time() * 1000), key=None, value=v, headers=[])
    return bytes(b.build())


def test_corrupt_batches_are_refused_and_store_nothing(broker):
    topic = unique("corrupt")
    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    a.create_topics([NewTopic(topic, 1, 1)])[topic].result(10)
    s = connect(broker)
    good = batch([b"a", b"b"])
    assert produce_v3_error(s, topic, good) == (0, 0)
    flipped = bytearray(good)
    flipped[-1] ^= 0xFF
    assert produce_v3_error(s, topic, bytes(flipped))[0] == 2  # CORRUPT_MESSAGE
    truncated = good[:-3]
    assert produce_v3_error(s, topic, truncated)[0] == 2
    old_magic = bytearray(good)
    old_magic[16] = 1
    assert produce_v3_error(s, topic, bytes(old_magic))[0] == 87  # INVALID_RECORD
    assert produce_v3_error(s, topic, good + bytes(flipped))[0] == 2, "one bad batch refuses the whole set"
    assert produce_v3_error(s, topic, good) == (0, 2), "nothing of the refused batches was stored"
    still_serving(broker)


def test_acks0_failure_closes_the_connection_as_kafka_does(broker):
    s = connect(broker)
    # acks=0 produce to a topic that does not exist: no response, the connection is closed
    body = struct.pack(">hhi", -1, 0, 5000) + struct.pack(">i", 1) + struct.pack(">h", 7) + b"missing"
    body += struct.pack(">i", 1) + struct.pack(">i", 0) + struct.pack(">i", 0)
    s.sendall(frame(header(0, 3) + body))
    assert closed_by_peer(s)
    still_serving(broker)


def test_a_stalled_half_frame_is_closed_after_the_idle_limit(broker_factory):
    b = broker_factory(config_text="connections_max_idle_ms = 500\n").start()
    s = connect(b)
    s.sendall(struct.pack(">i", 1000) + b"only-part-of-it")  # then silence
    assert closed_by_peer(s, timeout=10), "closed by connections.max.idle.ms"
    still_serving(b)


def status_kib(pid, field):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field}")


def test_a_thousand_connections_claiming_maximal_frames_leave_memory_bounded(tmp_path):
    """CVE-2022-34917's lesson: 500 unauthenticated SASL connections each announcing the
    largest pre-authentication frame, and 500 PLAINTEXT ones each announcing a 100 MB request
    and sending a few bytes of it, make the broker allocate next to nothing (room grows only
    with bytes received), and everyone else is served meanwhile."""
    from conftest import Broker, free_port

    plain, sasl = free_port(), free_port()
    config = (f'listeners = "PLAINTEXT://127.0.0.1:{plain},SASL_PLAINTEXT://127.0.0.1:{sasl}"\n'
              '"socket.request.max.bytes" = 104857600\n')
    b = Broker(tmp_path / "data", port=plain, config_text=config).start()
    socks = []
    try:
        still_serving(b)
        time.sleep(1)
        before = status_kib(b.proc.pid, "VmRSS"), status_kib(b.proc.pid, "VmSize")
        for i in range(1000):
            port, claim = (sasl, 524_288) if i % 2 == 0 else (plain, 104_857_600)
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(struct.pack(">i", claim) + b"\0" * 100)
            socks.append(s)
        time.sleep(2)
        rss_mib = (status_kib(b.proc.pid, "VmRSS") - before[0]) / 1024
        virtual_mib = (status_kib(b.proc.pid, "VmSize") - before[1]) / 1024
        # ~1,000 small buffers and connection tasks; announcing 50 GB claims none of it
        # (untouched allocations do not show in RSS, so the address space is checked too).
        assert rss_mib < 48, f"broker RSS grew {rss_mib:.0f} MiB for 1,000 idle half-frames"
        assert virtual_mib < 1024, f"broker reserved {virtual_mib:.0f} MiB for 1,000 idle half-frames"
        still_serving(b)
        p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 0})
        delivered = []
        p.produce(unique("alive"), value=b"x" * 200_000, on_delivery=lambda e, m: delivered.append(e))
        p.flush(30)
        assert delivered == [None], delivered
    finally:
        for s in socks:
            s.close()
        b.stop()
    assert "panicked" not in b.log_text()


def test_one_address_cannot_take_every_connection(tmp_path):
    """KIP-402 / KIP-612: max.connections.per.ip closes connections over the limit at once,
    a closed one gives its place back, and a connection_creation_rate quota on IPs refuses a
    burst of new connections beyond the rate; a client within the limits is served."""
    from conftest import Broker

    b = Broker(tmp_path / "data", config_text='"max.connections.per.ip" = 5\n').start()
    try:
        def ask(s):
            s.sendall(frame(header(18, 0)))
            return struct.unpack(">ih", read_frame(s)[:6]) == (7, 0)

        held = [socket.create_connection(("127.0.0.1", b.port), timeout=5) for _ in range(5)]
        assert all(ask(s) for s in held)
        extra = socket.create_connection(("127.0.0.1", b.port), timeout=5)
        assert closed_by_peer(extra), "the sixth connection from one address is closed"
        held.pop().close()
        time.sleep(0.2)
        again = socket.create_connection(("127.0.0.1", b.port), timeout=5)
        assert ask(again), "a freed place is taken again"
        held.append(again)
        assert "max.connections.per.ip 5 of 127.0.0.1 reached" in b.log_text()
        for s in held:
            s.close()
        time.sleep(0.2)

        import subprocess
        from conftest import STRATA_BIN
        r = subprocess.run([STRATA_BIN, "quota", "set", "--ip-default", "connection_creation_rate=2",
                            "--bootstrap", b.bootstrap], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        time.sleep(1.2)  # the bucket fills to one second's worth
        burst = [socket.create_connection(("127.0.0.1", b.port), timeout=5) for _ in range(4)]
        refused = sum(closed_by_peer(s, timeout=1) for s in burst)
        for s in burst:
            s.close()
        assert refused >= 1, "a burst beyond 2/s is refused"
        assert "connection_creation_rate" in b.log_text()
    finally:
        b.stop()
    assert "panicked" not in b.log_text()


def test_listener_and_broker_wide_connection_limits(tmp_path):
    """KIP-402: listener.name.<l>.max.connections caps one listener without touching the
    others; once the broker-wide max.connections is reached, client listeners refuse new
    connections while the inter-broker listener still takes them (brokers must reach each
    other)."""
    from conftest import Broker, free_port

    internal, external = free_port(), free_port()
    config = f"""
listeners = "INTERNAL://127.0.0.1:{internal},EXTERNAL://127.0.0.1:{external}"
"listener.security.protocol.map" = "INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT"
"inter.broker.listener.name" = "INTERNAL"
"listener.name.external.max.connections" = "3"
"max.connections" = 5
"""
    b = Broker(tmp_path / "data", port=internal, config_text=config).start()
    held = []
    try:
        def ask(s):
            s.sendall(frame(header(18, 0)))
            return struct.unpack(">ih", read_frame(s)[:6]) == (7, 0)

        def open_on(port):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            held.append(s)
            return s

        assert all(ask(open_on(external)) for _ in range(3))
        assert closed_by_peer(open_on(external)), "a fourth EXTERNAL connection is closed"
        assert "max.connections 3 of listener EXTERNAL reached" in b.log_text()
        # The other listener is not limited by EXTERNAL's cap: two more fill the broker.
        assert all(ask(open_on(internal)) for _ in range(2))
        held[0].close()  # EXTERNAL has a free place; an INTERNAL connection fills the broker
        time.sleep(0.2)
        assert ask(open_on(internal))
        assert closed_by_peer(open_on(external)), "broker-wide max.connections refuses clients"
        assert "max.connections reached" in b.log_text()
        # The inter-broker listener is protected.
        assert ask(open_on(internal)), "the inter-broker listener still takes connections"
    finally:
        for s in held:
            s.close()
        b.stop()
    assert "panicked" not in b.log_text()
