"""strata-bench runs every workload end to end (a second each). A smoke test only: nothing
here asserts a speed; bench/RESULTS.md is where numbers live."""
import json
import os
import pathlib
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[2]
BENCH = os.environ.get("STRATA_BENCH_BIN", str(ROOT / "target" / "debug" / "strata-bench"))


def test_every_workload_runs_and_reports(broker, tmp_path):
    r = subprocess.run(
        [BENCH, "--bootstrap", broker.bootstrap, "--workload", "all", "--seconds", "1", "--many-partitions", "300",
         "--broker-pid", str(broker.proc.pid), "--scratch-dir", str(tmp_path), "--latency-mb-per-s", "5"],
        capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 0, r.stderr
    results = {o["workload"]: o for o in map(json.loads, r.stdout.strip().splitlines())}
    assert set(results) == {"limits", "produce-1k", "produce-100", "consume-1k", "e2e-latency", "partitions-10k",
                            "produce-txn"}
    assert results["limits"]["tcp_loopback_mb_per_s"] > 0 and results["limits"]["fdatasync_write_mb_per_s"] > 0
    for name in ["produce-1k", "produce-100", "partitions-10k", "e2e-latency", "produce-txn"]:
        assert results[name]["records"] > 0 and results[name]["errors"] == 0, results[name]
        assert results[name]["broker_peak_rss_mb"] > 0
    assert results["consume-1k"]["records"] == results["produce-1k"]["records"], "everything produced is read back"
    assert results["e2e-latency"]["latency"]["samples"] == results["e2e-latency"]["records"]
    assert results["partitions-10k"]["partitions"] == 300
    assert results["produce-txn"]["transactions_per_s"] > 0
    # the tool cleans up after itself
    from confluent_kafka.admin import AdminClient

    topics = AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(timeout=10).topics
    assert not [t for t in topics if t.startswith("strata-bench-")]
