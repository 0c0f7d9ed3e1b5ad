"""Debian's kcat (librdkafka 2.0.2, the "old client" that mis-parses default-valued tagged
fields, so it also checks that we omit them)."""
import shutil
import subprocess
import time

import pytest

from conftest import unique

pytestmark = pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat not installed (scripts/test installs it)")


def kcat(broker, *args, input=None, timeout=30):
    r = subprocess.run(["kcat", "-b", broker.bootstrap, *args], input=input, capture_output=True, timeout=timeout)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout.decode()


def test_metadata_listing(broker):
    topic = unique("kc-meta")
    kcat(broker, "-t", topic, "-P", input=b"x\n")
    out = kcat(broker, "-L")
    assert f'topic "{topic}" with 1 partitions' in out
    assert "broker 1 at 127.0.0.1" in out


def test_keyed_and_unkeyed_round_trip_with_every_codec(broker):
    topic = unique("kc")
    lines = "".join(f"k{i % 5}:v{i}\n" for i in range(100)).encode()
    kcat(broker, "-t", topic, "-P", "-K:", input=lines)
    for codec in ["gzip", "snappy", "lz4", "zstd"]:
        kcat(broker, "-t", topic, "-P", "-z", codec, input=f"{codec}-1\n{codec}-2\n".encode())
    out = kcat(broker, "-t", topic, "-C", "-e", "-f", "%k|%s|%o\\n")
    rows = [r.split("|") for r in out.strip().split("\n")]
    assert [int(r[2]) for r in rows] == list(range(108)), "dense offsets"
    assert rows[:100] == [[f"k{i % 5}", f"v{i}", str(i)] for i in range(100)]
    assert [r[1] for r in rows[100:]] == [f"{c}-{n}" for c in ["gzip", "snappy", "lz4", "zstd"] for n in (1, 2)]


def test_offsets_by_timestamp(broker):
    topic = unique("kc-ts")
    kcat(broker, "-t", topic, "-P", input=b"early\n")
    time.sleep(0.05)
    mark = int(time.time() * 1000)
    time.sleep(0.05)
    kcat(broker, "-t", topic, "-P", input=b"late\n")
    out = kcat(broker, "-t", topic, "-C", "-e", "-o", f"s@{mark}", "-f", "%s\\n")
    assert out.split() == ["late"]


def test_balanced_consumer_group_commits_and_resumes(broker):
    """kcat -G: librdkafka 2.0.2's classic group protocol (JoinGroup v5-era) and commits."""
    topic, group = unique("kc-grp"), unique("kcg")
    kcat(broker, "-t", topic, "-P", input="".join(f"m{i}\n" for i in range(50)).encode())
    first = kcat(broker, "-G", group, "-X", "auto.offset.reset=earliest", "-c", "50", topic)
    assert first.split() == [f"m{i}" for i in range(50)]
    kcat(broker, "-t", topic, "-P", input=b"late\n")
    # The group resumes at its committed offset: only the new record.
    again = kcat(broker, "-G", group, "-X", "auto.offset.reset=earliest", "-e", topic)
    assert again.split() == ["late"]
