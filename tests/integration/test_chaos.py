"""The chaos harness (scripts/chaos): its checkers find each kind of anomaly in made-up
histories (so a clean verdict means something), its network partitions really cut links,
and two short seeded runs against a real three-node cluster (process, clock and — where
network namespaces work — network faults under an acks=all idempotent producer and a
transactional one) end with no anomaly — the CI smoke test; the campaign is in
bench/CHAOS.md."""
import importlib.machinery
import importlib.util
import json
import os
import pathlib
import subprocess
import sys

from conftest import STRATA_BIN

ROOT = pathlib.Path(__file__).resolve().parents[2]


def chaos_module():
    loader = importlib.machinery.SourceFileLoader("chaos", str(ROOT / "scripts" / "chaos"))
    spec = importlib.util.spec_from_loader("chaos", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_the_checker_finds_every_kind_of_anomaly():
    check = chaos_module().check
    sends = [{"op": "send", "value": v, "key": f"k{v % 2}"} for v in range(6)]
    acks = [{"op": "ack", "value": 0, "partition": 0, "offset": 0},
            {"op": "ack", "value": 1, "partition": 0, "offset": 1},
            {"op": "ack", "value": 2, "partition": 0, "offset": 2}]

    def rec(p, o, v, reader="final"):
        return {"op": "read", "reader": reader, "partition": p, "offset": o, "value": v,
                "key": f"k{v % 2}"}
    clean = [rec(0, 0, 0), rec(0, 1, 1), rec(0, 2, 2), rec(0, 3, 3)]
    assert not check(sends + acks + clean, {"final": clean})
    # Value 1 acknowledged at offset 1, but offset 1 holds another value (and 1 is gone).
    lost = [rec(0, 0, 0), rec(0, 1, 3), rec(0, 2, 2)]
    found = check(sends + acks + lost, {"final": lost})
    assert "lost" in found and "inconsistent" not in found
    # Stored twice; an offset going backwards; a value nobody sent; key k0 out of order.
    dup = clean + [rec(0, 4, 2)]
    assert "duplicate" in check(sends + acks + dup, {"final": dup})
    back = [rec(0, 0, 0), rec(0, 2, 2), rec(0, 1, 1)]
    assert "non-monotonic" in check(sends + acks + back, {"final": back})
    phantom = clean + [rec(0, 4, 99)]
    assert "phantom" in check(sends + acks + phantom, {"final": phantom})
    swapped = [rec(0, 0, 2), rec(0, 1, 1), rec(0, 2, 0)]
    assert "key-order" in check(sends + swapped, {"final": swapped})
    # Acknowledged without an offset (librdkafka's "persisted"): kept if in its partition.
    unknown = [{"op": "ack", "value": 3, "partition": 0, "offset": None}]
    assert not check(sends + acks + unknown, {"final": clean})
    assert "lost" in check(sends + acks + unknown, {"final": clean[:3]})
    # Two readers disagreeing on an offset.
    live = [rec(0, 1, 5, reader="live")]
    assert "inconsistent" in check(sends + acks + live + clean, {"final": clean})


def test_the_transaction_checker_finds_every_kind_of_anomaly():
    check_txn = chaos_module().check_txn
    ops = [{"op": "txn-begin", "txn": 0, "values": [0, 1]},
           {"op": "txn-end", "txn": 0, "outcome": "committed"},
           {"op": "txn-begin", "txn": 1, "values": [2, 3]},
           {"op": "txn-end", "txn": 1, "outcome": "aborted"},
           {"op": "txn-begin", "txn": 2, "values": [4, 5]},
           {"op": "txn-end", "txn": 2, "outcome": "unknown"}]

    def rec(p, o, v, reader="final"):
        return {"op": "txn-read", "reader": reader, "partition": p, "offset": o, "value": v,
                "key": None}
    clean = [rec(0, 0, 0), rec(1, 0, 1)]
    assert not check_txn(ops, {"final": clean})
    # An unknown transaction is fine all-visible or all-invisible, not half.
    assert not check_txn(ops, {"final": clean + [rec(0, 3, 4), rec(1, 3, 5)]})
    assert "partial" in check_txn(ops, {"final": clean + [rec(0, 3, 4)]})
    assert "aborted-read" in check_txn(ops, {"final": clean + [rec(0, 1, 2)]})
    assert "lost" in check_txn(ops, {"final": [rec(0, 0, 0)]})
    assert "duplicate" in check_txn(ops, {"final": clean + [rec(0, 5, 0)]})
    assert "phantom" in check_txn(ops, {"final": clean + [rec(0, 5, 77)]})
    assert "non-monotonic" in check_txn(ops, {"final": [rec(0, 1, 0), rec(0, 0, 1)]})
    assert "inconsistent" in check_txn(ops, {"a": clean, "b": [rec(0, 0, 1), rec(1, 0, 0)]})
    assert "stuck" in check_txn(ops + [{"op": "txn-stuck", "seconds": 120}], {"final": clean})


def test_the_group_checker_finds_every_kind_of_anomaly():
    check_group = chaos_module().check_group

    def read(m, p, o):
        return {"op": "group-read", "member": m, "partition": p, "offset": o}
    base = [{"op": "group-assign", "member": 0, "partitions": [0]},
            read(0, 0, 0), read(0, 0, 1),
            {"op": "group-commit", "member": 0, "partition": 0, "offset": 2},
            {"op": "group-revoke", "member": 0, "partitions": [0]},
            {"op": "group-assign", "member": 1, "partitions": [0]}]

    def fetched(o):
        return {"op": "group-fetched", "member": 1, "partition": 0, "offset": o}
    assert not check_group(base + [fetched(2), read(1, 0, 2), read(1, 0, 3),
                                   {"op": "group-final", "partition": 0, "offset": 4}])
    # The coordinator handed the new owner an offset below the acknowledged commit.
    assert "fetch-below-commit" in check_group(base + [fetched(1), read(1, 0, 1)])
    # "None committed" (-1001) is wrong once a commit was acknowledged, fine before.
    assert "fetch-below-commit" in check_group(base + [fetched(-1001)])
    assert not check_group([{"op": "group-assign", "member": 1, "partitions": [0]},
                            fetched(-1001), read(1, 0, 0)])
    # The coordinator was right, the client started below it anyway.
    found = check_group(base + [fetched(2), read(1, 0, 1)])
    assert "poll-before-commit" in found and "fetch-below-commit" not in found
    assert "non-monotonic-poll" in check_group(base + [fetched(2), read(1, 0, 3), read(1, 0, 3)])
    assert "commit-lost" in check_group(base + [{"op": "group-final", "partition": 0,
                                                 "offset": 1}])
    # No commit acknowledged: "none" at the end is right.
    assert not check_group([{"op": "group-final", "partition": 0, "offset": -1001}])


def test_network_partitions_really_cut_links(tmp_path):
    """The harness's netns hosts: a cut drops packets one way only, a split both ways, a
    heal restores everything (so a partition fault is never a silent no-op)."""
    import pytest
    chaos = chaos_module()
    if not chaos.Network.netns_works():
        pytest.skip("needs root, ip netns and nft (scripts/chaos falls back to loopback)")
    net = chaos.Network("netns", 3)

    def reaches(src, dst, port=19999):
        server = subprocess.Popen(
            net.prefix(dst) + [sys.executable, "-c",
                               "import socket; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET,"
                               " socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', %d)); s.listen();"
                               " s.settimeout(3); c, _ = s.accept()" % port])
        try:
            client = subprocess.run(
                net.prefix(src) + [sys.executable, "-c",
                                   "import socket, sys, time\n"
                                   "for _ in range(10):\n"
                                   "    try:\n"
                                   "        socket.create_connection(('%s', %d), timeout=1); sys.exit(0)\n"
                                   "    except ConnectionRefusedError: time.sleep(0.1)\n"
                                   "    except OSError: sys.exit(1)\n"
                                   "sys.exit(1)" % (net.host(dst), port)],
                timeout=20)
            return client.returncode == 0
        finally:
            server.kill()
            server.wait()
    net.setup()
    try:
        assert reaches(1, 2) and reaches(2, 1)
        net.cut(1, 2)  # packets from 1 dropped at 2: a TCP handshake fails both ways
        assert not reaches(1, 2)
        assert reaches(1, 3) and reaches(3, 2)
        net.heal()
        assert reaches(1, 2)
        net.split([1], [2, 3])
        assert not reaches(2, 1) and not reaches(1, 3) and reaches(2, 3)
        net.heal()
        assert reaches(3, 1)
    finally:
        net.teardown()


def test_a_full_disk_really_refuses_writes(tmp_path):
    """The harness's per-node disk: filled, not one more byte fits; freed, writes work again
    (so the disk-full fault is never a silent no-op)."""
    import errno
    import pytest
    chaos = chaos_module()
    if not chaos.Disk.works():
        pytest.skip("needs root to mount a tmpfs")
    disk = chaos.Disk(tmp_path / "disk")
    disk.mount()
    try:
        probe = disk.path / "data" / "probe"
        probe.write_bytes(b"x" * 4096)
        assert disk.fill() > 0
        with pytest.raises(OSError) as refused:
            with open(probe, "ab", buffering=0) as f:
                f.write(b"y" * 8192)
        assert refused.value.errno == errno.ENOSPC
        disk.free()
        with open(probe, "ab", buffering=0) as f:
            f.write(b"z" * 8192)
    finally:
        disk.unmount()
    assert not disk.path.exists()


def test_two_short_seeded_runs_find_no_anomaly(tmp_path):
    out = tmp_path / "chaos"
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "chaos"), "--runs", "2",
                        "--seed", "7", "--minutes", "0.25", "--out", str(out)],
                       capture_output=True, text=True, timeout=600,
                       env={**os.environ, "STRATA_BIN": STRATA_BIN})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for seed in (7, 8):
        verdict = json.loads((out / f"run-{seed}" / "verdict.json").read_text())
        assert verdict["valid"], verdict
        assert sum(verdict["faults"].values()) >= 3, verdict
        assert verdict["acknowledged"] > 1000, verdict
        # Progress, not throughput: a 15-second run commits a few dozen on an idle machine.
        assert verdict["transactions"].get("committed", 0) > 5, verdict
        assert verdict["group_commits"] > 20, verdict


def test_a_duplicate_written_under_a_bumped_epoch_is_the_clients(tmp_path):
    """Duplicates are split by the producer epochs stored with them: two copies under one
    epoch are the broker's anomaly (its deduplication failed); a later copy under a higher
    epoch of the same producer id is librdkafka sending again after an epoch bump (#4953)."""
    import struct
    chaos = chaos_module()

    def batch(base, pid, epoch, seq):
        rest = (struct.pack(">ib", 0, 2) + b"\0" * 4 + struct.pack(">hi", 0, 0)
                + struct.pack(">qq", 0, 0) + struct.pack(">qhii", pid, epoch, seq, 1))
        return struct.pack(">qi", base, len(rest)) + rest
    part = tmp_path / "chaos-0"
    part.mkdir()
    (part / "00000000000000000000.log").write_bytes(
        batch(10, 1, 0, 10) + batch(11, 1, 1, 0) + batch(12, 1, 1, 1) + batch(13, 1, 1, 2))
    assert chaos.batch_producers(part)[11] == (1, 1, 0)
    bumped = {"value": 7, "at": [[0, 10], [0, 11]]}
    same_epoch = {"value": 8, "at": [[0, 12], [0, 13]]}
    broker, client = chaos.split_duplicates([bumped, same_epoch], lambda p: part)
    assert [d["value"] for d in client] == [7]
    assert [d["value"] for d in broker] == [8]
