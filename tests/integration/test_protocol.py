"""Protocol details checked on the wire, byte by byte."""
import socket
import struct

from confluent_kafka.admin import AdminClient, NewTopic

from conftest import read_frame, unique


def frame(payload):
    return struct.pack(">i", len(payload)) + payload


def request(api_key, version, body, correlation_id=11):
    return frame(struct.pack(">hhih", api_key, version, correlation_id, 4) + b"test" + body)


def list_offsets_v4(s, topic, epoch, timestamp=-1):
    body = struct.pack(">ib", -1, 0) + struct.pack(">i", 1) + struct.pack(">h", len(topic)) + topic.encode()
    body += struct.pack(">i", 1) + struct.pack(">iiq", 0, epoch, timestamp)
    s.sendall(request(2, 4, body))
    r = read_frame(s)
    pos = 4 + 4 + 4  # correlation, throttle, topics count
    (n,) = struct.unpack(">h", r[pos : pos + 2])
    pos += 2 + n + 4
    partition, error, ts, offset, leader_epoch = struct.unpack(">ihqqi", r[pos : pos + 26])
    return error, offset, leader_epoch


def test_leader_epoch_fencing_kip_320(broker):
    topic = unique("epoch")
    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    a.create_topics([NewTopic(topic, 1, 1)])[topic].result(10)
    s = socket.create_connection(("127.0.0.1", broker.port))
    assert list_offsets_v4(s, topic, -1) == (0, 0, 0), "no epoch given: answered, with our epoch 0"
    assert list_offsets_v4(s, topic, 0) == (0, 0, 0)
    assert list_offsets_v4(s, topic, 3)[0] == 75, "UNKNOWN_LEADER_EPOCH for a newer epoch than ours"


def test_api_versions_v3_response_omits_default_tagged_fields(broker):
    """librdkafka 2.0.2 (Debian's kcat) mis-parses default-valued tagged fields; Kafka omits them."""
    s = socket.create_connection(("127.0.0.1", broker.port))
    # ApiVersions v3 request header v2: key, version, correlation, client id, tagged fields (0)
    body = b"\x06strat\x041.0\x00"  # compact client_software_name / version + no tags
    s.sendall(frame(struct.pack(">hhih", 18, 3, 5, 4) + b"test" + b"\x00" + body))
    r = read_frame(s)
    assert struct.unpack(">ih", r[:6]) == (5, 0)
    # compact array of api keys: each key 2+2+2 bytes + 1 tag byte; then throttle + 1 tag byte
    count = r[6] - 1
    end_of_keys = 7 + count * 7
    assert len(r) == end_of_keys + 4 + 1, "no supported/finalized features or other tagged fields sent"
    assert r[-1] == 0
