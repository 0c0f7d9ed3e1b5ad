#!/usr/bin/env python3
"""produce-1k over PLAINTEXT, SSL and SASL_SSL (SCRAM-SHA-512) on one broker, in the same
run: what TLS and authentication cost (issue 14's benchmark row).

    python3 bench/security.py [--seconds 10] [--strata target/release/strata]

One `strata serve` with three listeners (certificates made with the openssl CLI, the SCRAM
user with `strata format --add-scram`); for each listener in turn, a librdkafka producer
(confluent-kafka: Debian's librdkafka lacks nothing here, strata-bench's bundled build has no
TLS) sends 1 KiB records with acks=all for --seconds. Prints one JSON object: MB/s and broker
CPU-seconds per GB for each, and each one's ratio to PLAINTEXT.
"""
import argparse
import json
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(d):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=bench-ca", cwd=d)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=localhost", cwd=d)
    (d / "server.ext").write_text("basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-out", "server.pem", "-extfile", "server.ext", cwd=d)
    (d / "keystore.pem").write_text((d / "server.pem").read_text() + (d / "server.key").read_text())


def cpu_seconds(pid):
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def produce_1k(conf, topic, seconds, pid):
    from confluent_kafka import Producer

    acked = [0]

    def on_delivery(err, msg):
        if err is None:
            acked[0] += 1

    p = Producer({**conf, "acks": "all", "linger.ms": 5, "batch.size": 1048576, "compression.type": "none",
                  "queue.buffering.max.kbytes": 1048576, "queue.buffering.max.messages": 2000000})
    value = b"x" * 1024
    # Warm up (connections, TLS handshakes, authentication, metadata).
    p.produce(topic, value=value, on_delivery=on_delivery)
    p.flush(30)
    acked[0] = 0
    cpu0, t0 = cpu_seconds(pid), time.time()
    end = t0 + seconds
    while time.time() < end:
        for _ in range(1000):
            try:
                p.produce(topic, value=value, on_delivery=on_delivery)
            except BufferError:
                p.poll(0.001)
        p.poll(0)
    p.flush(60)
    elapsed, cpu = time.time() - t0, cpu_seconds(pid) - cpu0
    gb = acked[0] * 1024 / 1e9
    return {"mb_per_s": round(acked[0] * 1024 / 1e6 / elapsed, 1), "records": acked[0],
            "broker_cpu_s_per_gb": round(cpu / gb, 2) if gb else None}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--strata", default=str(ROOT / "target" / "release" / "strata"))
    args = ap.parse_args()
    from confluent_kafka.admin import AdminClient, NewTopic

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="strata-security-bench-"))
    make_pki(tmp)
    data = tmp / "data"
    subprocess.run([args.strata, "format", "--data-dir", str(data), "--add-scram",
                    "SCRAM-SHA-512=[name=bench,password=bench-secret]"], check=True, capture_output=True)
    plain, ssl, sasl_ssl = free_port(), free_port(), free_port()
    cfg = tmp / "broker.toml"
    cfg.write_text(f'listeners = "PLAINTEXT://127.0.0.1:{plain},SSL://127.0.0.1:{ssl},SASL_SSL://127.0.0.1:{sasl_ssl}"\n'
                   f'"ssl.keystore.location" = "{tmp / "keystore.pem"}"\n'
                   '"sasl.enabled.mechanisms" = "SCRAM-SHA-512"\n')
    log = open(tmp / "broker.log", "wb")
    proc = subprocess.Popen([args.strata, "serve", "--data-dir", str(data), "--config", str(cfg)],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(200):
            if (tmp / "broker.log").read_text(errors="replace").count("listening on") >= 3:
                break
            time.sleep(0.1)
        tls = {"ssl.ca.location": str(tmp / "ca.pem")}
        confs = {
            "plaintext": {"bootstrap.servers": f"127.0.0.1:{plain}"},
            "ssl": {"bootstrap.servers": f"127.0.0.1:{ssl}", "security.protocol": "SSL", **tls},
            "sasl_ssl": {"bootstrap.servers": f"127.0.0.1:{sasl_ssl}", "security.protocol": "SASL_SSL",
                         "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "bench",
                         "sasl.password": "bench-secret", **tls},
        }
        admin = AdminClient(confs["plaintext"])
        results = {}
        for name, conf in confs.items():
            topic = f"security-{name}"
            admin.create_topics([NewTopic(topic, 4, 1)])[topic].result(30)
            results[name] = produce_1k(conf, topic, args.seconds, proc.pid)
            print(f"== {name}: {results[name]}", file=sys.stderr)
        base = results["plaintext"]["mb_per_s"]
        for name in ("ssl", "sasl_ssl"):
            results[name]["ratio_to_plaintext"] = round(results[name]["mb_per_s"] / base, 2) if base else None
        results["seconds"] = args.seconds
        print(json.dumps(results))
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
        subprocess.run(["rm", "-rf", str(tmp)])


if __name__ == "__main__":
    main()
