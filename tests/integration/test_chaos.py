"""The chaos harness (scripts/chaos): its checker finds each kind of anomaly in a made-up
history (so a clean verdict means something), and two short seeded runs against a real
three-node cluster (kill -9, pauses, rolling restarts under an acks=all idempotent producer)
end with no anomaly — the CI smoke test; the campaign is in bench/CHAOS.md."""
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
    # Two readers disagreeing on an offset.
    live = [rec(0, 1, 5, reader="live")]
    assert "inconsistent" in check(sends + acks + live + clean, {"final": clean})


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
