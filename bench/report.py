#!/usr/bin/env python3
"""Turns strata-bench JSON lines (bench/out/{durable,relaxed,kafka-default,kafka-durable}.jsonl)
into bench/RESULTS.md: Strata's numbers against their limits, then Strata / Apache Kafka ratios
from the same run."""
import datetime
import json
import os
import pathlib
import platform
import sys

args = [a for a in sys.argv[1:] if not a.startswith("--")]
out = pathlib.Path(args[0] if args else "bench/out")


def load(mode):
    path = out / f"{mode}.jsonl"
    if not path.exists():
        return {}
    return {
        json.loads(l)["workload"]: json.loads(l) for l in path.read_text().splitlines() if l.strip()
    }


def mem_gib():
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 / 1024
    return 0


def cpu_model():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def pct(x, limit):
    return f"{100 * x / limit:.0f}%" if limit else "–"


TARGETS = {
    "produce-1k": "≥ 50% of fdatasync'd writes; ≤ 0.5 broker CPU-s/GB",
    "produce-100": "≥ 2,500,000 records/s",
    "consume-1k": "≥ 50% of loopback TCP",
    "e2e-latency": "p99 ≤ 5 ms, p99.9 ≤ 20 ms at 50 MB/s",
    "partitions-10k": "≥ 50% of produce-1k; RSS ≤ 1 GiB",
    "produce-txn": "(no target) commit every 100 ms; compare with produce-1k",
}

lines = [
    "# Benchmark results",
    "",
    f"Machine: {os.cpu_count()} cores ({cpu_model()}), {mem_gib():.0f} GiB RAM, {platform.system()} {platform.release()}; "
    f"broker and benchmark share the cores. Date: {datetime.date.today().isoformat()}.",
    "Made by `scripts/bench` (librdkafka via `strata-bench`). *durable*: Strata's default, fsync before every "
    "acknowledgement (group commit). *relaxed*: `flush.messages` at Kafka's default (no fsync per write).",
    "",
]
for mode in ["durable", "relaxed"]:
    r = load(mode)
    if not r:
        continue
    lim = r.get("limits", {})
    tcp, disk = lim.get("tcp_loopback_mb_per_s"), lim.get("fdatasync_write_mb_per_s")
    lines += [f"## {mode}", "", f"Limits measured in the same run: loopback TCP **{tcp} MB/s**, sequential writes with fdatasync per MiB **{disk} MB/s**.", ""]
    lines += ["| workload | records/s | MB/s | ratio to its limit | latency p50 / p99 / p99.9 / max (ms) | broker peak RSS (MB) | broker CPU-s/GB | broker CPU (cores busy) | target |", "|---|---|---|---|---|---|---|---|---|"]
    p1k = r.get("produce-1k", {}).get("mb_per_s")
    for name in ["produce-1k", "produce-100", "consume-1k", "e2e-latency", "partitions-10k", "produce-txn"]:
        w = r.get(name)
        if not w:
            lines.append(f"| {name} | failed | | | | | | | {TARGETS[name]} |")
            continue
        ratio = {
            "produce-1k": f"{pct(w['mb_per_s'], disk)} of fdatasync'd writes",
            "produce-100": f"{pct(w['mb_per_s'], disk)} of fdatasync'd writes",
            "consume-1k": f"{pct(w['mb_per_s'], tcp)} of loopback TCP",
            "e2e-latency": "(fixed rate)",
            "partitions-10k": f"{pct(w['mb_per_s'], p1k)} of produce-1k",
            "produce-txn": f"{pct(w['mb_per_s'], p1k)} of produce-1k, {w.get('transactions_per_s')} txn/s",
        }[name]
        lat = w.get("latency")
        lat_s = f"{lat['p50_ms']} / {lat['p99_ms']} / {lat['p999_ms']} / {lat['max_ms']}" if lat else ""
        cpu = w.get("broker_cpu_s_per_gb", "")
        cores = f"{w['broker_cpu_s'] / w['seconds']:.2f}" if w.get("broker_cpu_s") is not None and w["seconds"] else ""
        lines.append(f"| {name} | {w['records_per_s']:,.0f} | {w['mb_per_s']} | {ratio} | {lat_s} | {w.get('broker_peak_rss_mb', '')} | {cpu} | {cores} | {TARGETS[name]} |")
    lines.append("")
WORKLOADS = ["produce-1k", "produce-100", "consume-1k", "e2e-latency", "partitions-10k", "produce-txn"]
kafka = {m: load(f"kafka-{m}") for m in ["default", "durable"]}
if any(kafka.values()):
    strata = {m: load(m) for m in ["durable", "relaxed"]}

    def num(w, key):
        return w.get(key) if w else None

    def ratio(a, b, fmt="{:.2f}×"):
        return fmt.format(a / b) if a is not None and b else "–"

    def throughput(w):
        return num(w, "records_per_s") if w and not w.get("latency") else None

    def p99(w):
        return (w or {}).get("latency", {}).get("p99_ms") if w and w.get("latency") else None

    lines += [
        "## Strata vs Apache Kafka (same machine, same run)",
        "",
        "Apache Kafka 4.4.0 from Maven Central (`scripts/kafka-peer`: KRaft, one combined node, "
        "Kafka's default 1 GiB heap, G1), driven by the same `strata-bench` workloads right after Strata. "
        "*Kafka default*: no fsync per write (its default). *Kafka durable*: `log.flush.interval.messages=1`, "
        "an fsync per write as Strata does by default. Ratios > 1 favour Strata for throughput; "
        "for p99, CPU-s/GB and RSS, < 1 favours Strata. Before any broker starts, `scripts/bench` fills most free "
        "memory with a scratch file's page cache and keeps it: this VM hands freed memory back to its host, and "
        "first writes into such pages cost several times a normal copy, which otherwise fell on whichever broker ran first.",
        "",
        "| workload | Strata durable | Kafka default | Kafka durable | Strata durable / Kafka default | Strata durable / Kafka durable | Strata relaxed / Kafka default |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in WORKLOADS:
        sd, sr = strata["durable"].get(name), strata["relaxed"].get(name)
        kd, kf = kafka["default"].get(name), kafka["durable"].get(name)
        if name == "e2e-latency":
            cell = lambda w: f"p99 {p99(w)} ms" if p99(w) is not None else "failed"
            lines.append(f"| {name} (p99) | {cell(sd)} | {cell(kd)} | {cell(kf)} | {ratio(p99(sd), p99(kd))} | {ratio(p99(sd), p99(kf))} | {ratio(p99(sr), p99(kd))} |")
            continue
        cell = lambda w: f"{throughput(w):,.0f} rec/s" if throughput(w) is not None else "failed"
        lines.append(f"| {name} | {cell(sd)} | {cell(kd)} | {cell(kf)} | {ratio(throughput(sd), throughput(kd))} | {ratio(throughput(sd), throughput(kf))} | {ratio(throughput(sr), throughput(kd))} |")
    lines += ["", "Broker resources per workload (CPU-seconds per GB moved, peak RSS):", "",
              "| workload | Strata durable CPU-s/GB | Kafka default CPU-s/GB | ratio | Strata durable peak RSS (MB) | Kafka default peak RSS (MB) | ratio |",
              "|---|---|---|---|---|---|---|"]
    for name in WORKLOADS:
        sd, kd = strata["durable"].get(name), kafka["default"].get(name)
        c1, c2 = num(sd, "broker_cpu_s_per_gb"), num(kd, "broker_cpu_s_per_gb")
        r1, r2 = num(sd, "broker_peak_rss_mb"), num(kd, "broker_peak_rss_mb")
        lines.append(f"| {name} | {c1 if c1 is not None else '–'} | {c2 if c2 is not None else '–'} | {ratio(c1, c2)} | {r1 if r1 is not None else '–'} | {r2 if r2 is not None else '–'} | {ratio(r1, r2)} |")
    lines.append("")
    targets = [
        ("produce-1k, produce-100, consume-1k, partitions-10k: Strata durable ≥ 1.0× Kafka default",
         all((throughput(strata["durable"].get(n)) or 0) >= (throughput(kafka["default"].get(n)) or float("inf"))
             for n in ["produce-1k", "produce-100", "consume-1k", "partitions-10k"])),
        ("e2e p99 ≤ Kafka default's", (p99(strata["durable"].get("e2e-latency")) or float("inf"))
         <= (p99(kafka["default"].get("e2e-latency")) or 0)),
    ] + [
        (f"broker CPU-s/GB ≤ 0.5× Kafka default's ({n})",
         (num(strata["durable"].get(n), "broker_cpu_s_per_gb") or float("inf"))
         <= 0.5 * (num(kafka["default"].get(n), "broker_cpu_s_per_gb") or 0))
        for n in ["produce-1k", "produce-100"]
    ] + [
        ("peak RSS ≤ 0.25× Kafka default's (every workload)",
         all((num(strata["durable"].get(n), "broker_peak_rss_mb") or float("inf"))
             <= 0.25 * (num(kafka["default"].get(n), "broker_peak_rss_mb") or 0) for n in WORKLOADS)),
    ]
    lines += ["Targets (issue 11):", ""] + [f"- {'met' if ok else '**missed**'}: {t}" for t, ok in targets] + [""]

def rf3_section():
    rf3 = {"strata": load("strata-rf3"), "kafka": load("kafka-rf3")}
    if not rf3["strata"]:
        return []
    single = load("durable")
    lines = []
    lines += ["## Replicated: three local nodes, 3 replicas per partition", "",
              "Three `strata serve` processes (one metadata quorum, each node fsyncing before it acknowledges or "
              "reports a fetch offset, so an acks=all record is on disk on all three) beside three Apache Kafka "
              "KRaft nodes (its defaults: no fsync), all on this one 2-core machine with the clients. "
              "Topics with replication factor 3; acks=all. Broker CPU/RSS columns are omitted: each figure would be "
              "one node of three.", "",
              "| workload | Strata RF3 | Strata RF1 (single node, above) | Kafka RF3 | Strata RF3 / Kafka RF3 |",
              "|---|---|---|---|---|"]
    for name in ["produce-1k", "e2e-latency"]:
        s3, s1, k3 = rf3["strata"].get(name), single.get(name), rf3["kafka"].get(name)
        if name == "e2e-latency":
            cell = lambda w: f"p99 {w['latency']['p99_ms']} ms" if w and w.get("latency") else "–"
            r = (f"{s3['latency']['p99_ms'] / k3['latency']['p99_ms']:.2f}×"
                 if s3 and k3 and s3.get("latency") and k3.get("latency") and k3["latency"]["p99_ms"] else "–")
            lines.append(f"| {name} (p99) | {cell(s3)} | {cell(s1)} | {cell(k3)} | {r} |")
        else:
            cell = lambda w: f"{w['records_per_s']:,.0f} rec/s ({w['mb_per_s']} MB/s)" if w and w.get("records_per_s") else "–"
            r = f"{s3['records_per_s'] / k3['records_per_s']:.2f}×" if s3 and k3 and k3.get("records_per_s") else "–"
            lines.append(f"| {name} | {cell(s3)} | {cell(s1)} | {cell(k3)} | {r} |")
    lines += ["", "Target (issue 12): ≥ 1.0× Kafka RF3 throughput, p99 ≤ Kafka RF3's.", ""]
    return lines


def security_section():
    path = out / "security.json"
    if not path.exists():
        return []
    r = json.loads(path.read_text())
    lines = ["## Security: produce-1k over TLS and SASL_SSL", "",
             f"One Strata broker with three listeners, produce-1k (1 KiB records, acks=all, {r['seconds']:g} s each, "
             "librdkafka through confluent-kafka) through each in turn; TLS is rustls (TLS 1.3), SASL_SSL adds "
             "SCRAM-SHA-512. One Python-driven producer shares the cores with the broker, so absolute MB/s are "
             "below strata-bench's produce-1k; the ratios are what this row measures.", "",
             "| listener | MB/s | broker CPU-s/GB | vs PLAINTEXT |", "|---|---|---|---|"]
    for name, label in (("plaintext", "PLAINTEXT"), ("ssl", "SSL"), ("sasl_ssl", "SASL_SSL")):
        x = r[name]
        ratio = "1.00×" if name == "plaintext" else f"{x['ratio_to_plaintext']:.2f}×"
        lines.append(f"| {label} | {x['mb_per_s']} | {x['broker_cpu_s_per_gb']} | {ratio} |")
    return lines + [""]


def sql_section():
    path = out / "sql.json"
    if not path.exists():
        return []
    r = json.loads(path.read_text())
    import time as _time
    measured = _time.strftime("%Y-%m-%d", _time.gmtime(path.stat().st_mtime))
    lines = ["## SQL engine", "",
             f"Measured {measured}. bench/sql.py on one Strata broker with its SQL engine: {r['records']:,} JSON orders (4 partitions, "
             f"{r['keys']:,} keys) loaded first; each query reads them all from the start; every query is "
             "exactly-once (read_committed input; outputs, state and positions in one transaction per pass). "
             "Pull queries come from keep-alive HTTP/1.1 clients (strata-bench's, in Rust, when built; else "
             "Python threads) sharing the two cores with the broker.", "",
             "| workload | result | target |", "|---|---|---|",
             f"| consume (librdkafka, baseline) | {r['consume_records_per_s']:,} records/s | |",
             f"| filter/projection CSAS | {r['filter_records_in_per_s']:,} records/s in "
             f"({r['filter_vs_consume']:.2f}× the Python consumer) | ≥ 0.5× consume-1k (see below) |",
             f"| tumbling 1 min COUNT/SUM by key | {r['window_records_per_s']:,} records/s | |",
             f"| GROUP BY COUNT/SUM ({r['keys']:,} keys) | {r['aggregate_records_per_s']:,} records/s | |",
             (f"| stream–table LEFT JOIN ({r['join_table_rows']:,}-row table) | {r['join_records_per_s']:,} records/s | |"
              if "join_records_per_s" in r else "| stream–table join | (not measured) | |"),
             f"| pull query by key ({r['pull_rows']:,}-row table; load from {r.get('pull_client', 'Python threads')}) "
             f"| {r['pull_queries_per_s']:,}/s, "
             f"p50 {r['pull_p50_ms']} ms, p99 {r['pull_p99_ms']} ms ({r['pull_errors']} errors) | "
             "≥ 20,000/s, p99 ≤ 5 ms (1M rows) |", ""]
    consume_1k = r.get("consume_1k_records_per_s")
    durable = out / "strata-durable.jsonl"
    if consume_1k is None and durable.exists():
        for line in durable.read_text().splitlines():
            try:
                o = json.loads(line)
            except ValueError:
                continue
            if o.get("workload") == "consume-1k":
                consume_1k = o["records_per_s"]
    if consume_1k:
        ratio = r["filter_records_in_per_s"] / consume_1k
        lines += [f"The issue's filter target is relative to consume-1k (strata-bench, 1 KiB records, on the "
                  f"same broker in the same run): {consume_1k:,.0f} records/s, so the filter query ran at "
                  f"**{ratio:.2f}×** (target ≥ 0.5×: {'met' if ratio >= 0.5 else 'not met'}). Each record is "
                  "decoded from JSON, evaluated and encoded again, and every pass is a transaction, on the "
                  "same two cores as the broker. The Python consumer above is the like-for-like client "
                  "baseline (same ~100-byte JSON records).", ""]
    conf = out / "sql-conformance.txt"
    if conf.exists():
        text = conf.read_text().strip().splitlines()
        last = text[-1]
        reasons = next((l for l in text if l.startswith("failure reasons:")), "")
        lines += [f"ksqlDB QTT conformance (`scripts/sql-conformance`, feasible cases of the corpus): **{last}**"
                  + (f" ({reasons})" if reasons else "") + ".", ""]
    return lines


if "--only-sql" in sys.argv:
    print("\n".join(sql_section()))
    sys.exit(0)

if "--only-security" in sys.argv:
    print("\n".join(security_section()))
    sys.exit(0)

if "--only-rf3" in sys.argv:
    print("\n".join(rf3_section()))
    sys.exit(0)
lines += rf3_section()
lines += security_section()
lines += sql_section()

cleaner = out / "cleaner.json"
if cleaner.exists():
    c = json.loads(cleaner.read_text())
    lines += ["## Produce while the log cleaner works", "",
              f"{c['dirty_gb']} GB dirty partition: produce-1k {c['produce_1k_mb_per_s_while_cleaning']} MB/s while cleaning, "
              f"{c['produce_1k_mb_per_s_cleaner_idle_before']} / {c['produce_1k_mb_per_s_cleaner_idle_after']} MB/s idle before / after: "
              f"ratio **{c['ratio']}** to the idle mean (target ≥ 0.70).", ""]
restart = out / "restart.json"
if restart.exists():
    r = json.loads(restart.read_text())
    s = r["strata"]
    lines += ["## Restart after kill -9 under sustained produce", "",
              f"{s['log_gb_filled']} GB of log" + (f" ({r['kafka']['log_gb_filled']} GB for Kafka)" if "kafka" in r else "")
              + f", then {len(s['kills'])} kills at random moments while produce-1k "
              f"(acks=all) keeps writing (seed {r['seed']}; the first right after a segment roll); time from "
              "process start until every partition has a leader and a fetch returns records "
              "(Kafka's includes its JVM start). The log keeps growing between kills (GB column), faster on "
              "Strata since it produces faster.", "",
              "| broker | max s | median s | each kill (moment: seconds, GB then) |", "|---|---|---|---|"]
    for name in ["strata", "kafka"]:
        if name in r:
            b = r[name]
            each = "; ".join(f"{k['moment']}: {k['seconds_to_serve']} ({k['log_gb']} GB)" for k in b["kills"])
            lines.append(f"| {name} | {b['max_seconds']} | {b['median_seconds']} | {each} |")
    met = s["max_seconds"] <= r["target_max_seconds"] and ("kafka" not in r or s["max_seconds"] <= r["kafka"]["max_seconds"])
    lines += ["", f"Target: max ≤ {r['target_max_seconds']} s and ≤ Kafka's: **{'met' if met else 'missed'}**.", ""]
lines += [
    "Notes: the fdatasync limit is one writer syncing every MiB; the broker's group commit syncs larger",
    "ranges, so produce can exceed it. This VM's disk varies between runs (400-800 MB/s seen). \"cores busy\"",
    "is broker CPU-seconds per second of the workload: the rest of the 2 cores went to the librdkafka clients.",
    "",
]
print("\n".join(lines))
