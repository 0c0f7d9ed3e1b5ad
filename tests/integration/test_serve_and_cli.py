"""The `strata` binary as a user meets it: flags, config file, errors, shutdown, and the CLI."""
import json
import signal
import socket
import subprocess

import pytest

from conftest import STRATA_BIN, Broker, free_port, unique


def run(*args, input=None, timeout=30):
    return subprocess.run([STRATA_BIN, *args], input=input, capture_output=True, timeout=timeout, text=True)


def test_bad_flag_is_one_clear_line():
    r = run("serve", "--bogus")
    assert r.returncode == 2
    lines = [l for l in r.stderr.strip().splitlines() if l]
    assert len(lines) == 1 and "--bogus" in lines[0], r.stderr


def test_bad_listen_and_unusable_data_dir(tmp_path):
    r = run("serve", "--listen", "nonsense", "--data-dir", str(tmp_path / "d"))
    assert r.returncode == 1 and "HOST:PORT" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    r = run("serve", "--data-dir", str(not_a_dir), "--listen", f"127.0.0.1:{free_port()}")
    assert r.returncode == 1 and "not a directory" in r.stderr


def test_port_in_use(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = run("serve", "--data-dir", str(tmp_path / "d"), "--listen", f"127.0.0.1:{port}")
    assert r.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in r.stderr and "in use" in r.stderr.lower(), r.stderr


def test_config_file_with_flags_overriding(tmp_path, broker_factory):
    port = free_port()
    b = broker_factory(config_text=f'num_partitions = 3\nlisten = "127.0.0.1:1"\nadvertised_listener = "localhost:{port}"\n', port=port)
    b.start()  # --listen flag wins over the file's listen
    r = run("produce", "auto-created", "--bootstrap", b.bootstrap, input="x\n")
    assert r.returncode != 0  # no auto-create from the CLI (metadata asks without it)
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": b.bootstrap})
    md = p.list_topics("made-by-metadata", timeout=10)
    assert len(md.topics["made-by-metadata"].partitions) == 3
    assert md.brokers[1].host == "localhost" and md.brokers[1].port == port
    bad = tmp_path / "bad.toml"
    bad.write_text("no_such_setting = 1\n")
    r = run("serve", "--config", str(bad))
    assert r.returncode == 1 and "no_such_setting" in r.stderr


def test_sigterm_is_clean_and_data_survives(tmp_path):
    b = Broker(tmp_path / "data").start()
    assert run("topic", "create", "keep", "--partitions", "2", "--bootstrap", b.bootstrap).returncode == 0
    assert run("produce", "keep", "--key-separator", ":", "--bootstrap", b.bootstrap, input="a:1\nb:2\nc:3\n").returncode == 0
    b.proc.send_signal(signal.SIGTERM)
    assert b.proc.wait(20) == 0
    assert "shutdown complete" in b.log_text()
    b.start()
    r = run("consume", "keep", "--from-beginning", "--exit-at-end", "--bootstrap", b.bootstrap)
    assert r.returncode == 0
    rows = sorted(line.split("\t")[2:] for line in r.stdout.strip().splitlines())
    assert rows == [["a", "1"], ["b", "2"], ["c", "3"]]
    b.stop()


def test_cli_topic_lifecycle_and_consume_of_compressed_data(broker):
    bs = ("--bootstrap", broker.bootstrap)
    name = unique("cli")
    r = run("topic", "create", name, "--partitions", "3", "--config", "retention.ms=60000", *bs)
    assert r.returncode == 0, r.stderr
    assert name in run("topic", "list", *bs).stdout
    d = run("topic", "describe", name, *bs).stdout
    assert "partitions 3" in d and "retention.ms=60000\t(topic)" in d
    r = run("topic", "create", name, *bs)
    assert r.returncode == 1 and "already exists" in r.stderr
    r = run("topic", "create", unique("x"), "--config", "bogus=1", *bs)
    assert r.returncode == 1 and "bogus" in r.stderr
    lines = "".join(f"user{i % 4}|event{i}\n" for i in range(40))
    r = run("produce", name, "--key-separator", "|", *bs, input=lines)
    assert r.returncode == 0 and "produced 40" in r.stderr
    out = run("consume", name, "--from-beginning", "--exit-at-end", *bs).stdout.strip().splitlines()
    assert len(out) == 40
    by_key = {}
    for line in out:
        p, offset, key, value = line.split("\t")
        by_key.setdefault(key, set()).add(p)
    assert all(len(ps) == 1 for ps in by_key.values()), "one partition per key"
    one = run("consume", name, "--partition", "0", "--offset", "0", "--max-messages", "1", *bs).stdout
    assert one.startswith("0\t0\t")
    # data written by librdkafka with compression reads back through our client
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": broker.bootstrap, "compression.type": "zstd"})
    z = unique("z")
    for i in range(5):
        p.produce(z, value=b"z%d" % i)
    p.flush(10)
    out = run("consume", z, "--from-beginning", "--exit-at-end", *bs).stdout.split()
    assert out[-1] == "z4" and len(out) == 15
    assert run("topic", "delete", name, *bs).returncode == 0
    assert name not in run("topic", "list", *bs).stdout
    r = run("consume", name, "--exit-at-end", *bs)
    assert r.returncode == 1 and "UnknownTopicOrPartition" in r.stderr


def on_a_terminal(*args, stdout=None, timeout=60):
    """Runs the CLI with its stderr (and stdout unless given) on a pseudo-terminal of 120
    columns; returns (exit code, what the terminal showed)."""
    import fcntl
    import os
    import pty
    import struct
    import termios
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    p = subprocess.Popen([STRATA_BIN, *args], stdin=subprocess.DEVNULL,
                         stdout=slave if stdout is None else stdout, stderr=slave)
    os.close(slave)
    shown = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the command closed the terminal
            break
        if not data:
            break
        shown.append(data)
    p.wait(timeout)
    os.close(master)
    return p.returncode, b"".join(shown).decode(errors="replace")


def test_producing_a_file_and_consuming_to_the_end_show_progress_on_a_terminal(broker, tmp_path):
    bs = ("--bootstrap", broker.bootstrap)
    name = unique("progress")
    assert run("topic", "create", name, "--partitions", "2", *bs).returncode == 0
    lines = tmp_path / "lines.txt"
    lines.write_text("".join(f"k{i % 7}:value {i} " + "x" * 100 + "\n" for i in range(20_000)))
    code, shown = on_a_terminal("produce", name, "--file", str(lines), "--key-separator", ":", *bs)
    assert code == 0, shown
    # A bar of the file's bytes, then the summary.
    assert f"producing to {name} [" in shown and "produced 20000 record(s)" in shown, shown[-2000:]
    # Consumed to a file, with the bar on the terminal; every record arrives once.
    with open(tmp_path / "out.txt", "w") as out:
        code, shown = on_a_terminal("consume", name, "--from-beginning", "--exit-at-end", *bs, stdout=out)
    assert code == 0, shown
    assert f"consuming {name} [" in shown and "/20,000 records" in shown, shown[-2000:]
    got = (tmp_path / "out.txt").read_text().splitlines()
    assert len(got) == 20_000 and len({tuple(l.split("\t")[:2]) for l in got}) == 20_000
    # Captured (not a terminal): only the summary, as before.
    r = run("produce", name, "--file", str(lines), *bs, timeout=120)
    assert r.returncode == 0 and r.stderr == f"produced 20000 record(s) to {name}\n", r.stderr
    r = run("produce", name, "--file", str(tmp_path / "missing"), *bs)
    assert r.returncode == 1 and "cannot open" in r.stderr and "missing" in r.stderr, r.stderr


def test_data_dir_is_locked_against_a_second_broker(broker):
    r = run("serve", "--data-dir", str(broker.data_dir), "--listen", f"127.0.0.1:{free_port()}")
    assert r.returncode == 1 and "in use by another strata process" in r.stderr, r.stderr
    assert broker.alive()


def test_foreign_directories_in_the_data_dir_are_left_alone(tmp_path):
    data = tmp_path / "data"
    (data / "my-notes").mkdir(parents=True)
    (data / "my-notes" / "todo.txt").write_text("keep me")
    (data / "stale-0").mkdir()
    (data / "stale-0" / "00000000000000000000.log").write_bytes(b"")
    b = Broker(data).start()
    b.stop()
    assert (data / "my-notes" / "todo.txt").read_text() == "keep me"
    assert not (data / "stale-0").exists(), "a partition directory of no known topic is cleaned up"


def test_format_gives_the_directory_its_identity_and_serve_keeps_to_it(tmp_path):
    data = tmp_path / "node"
    r = run("format", "--data-dir", str(data), "--cluster-id", "prod-eu-1", "--node-id", "3")
    assert r.returncode == 0, r.stderr
    meta = (data / "meta.properties").read_text()
    assert "cluster.id=prod-eu-1" in meta and "node.id=3" in meta and "version=1" in meta
    again = run("format", "--data-dir", str(data), "--cluster-id", "prod-eu-1", "--node-id", "3")
    assert again.returncode == 1 and "already formatted" in again.stderr
    assert run("format", "--data-dir", str(data), "--cluster-id", "prod-eu-1", "--node-id", "3",
               "--ignore-formatted").returncode == 0
    other = run("format", "--data-dir", str(data), "--cluster-id", "other", "--node-id", "3")
    assert other.returncode == 1 and "belongs to cluster 'prod-eu-1'" in other.stderr
    assert run("format", "--data-dir", str(tmp_path / "x"), "--cluster-id", "bad id!").returncode == 1

    # serve takes the identity from the directory: clients see its cluster id and node id.
    b = Broker(data).start()
    try:
        from confluent_kafka.admin import AdminClient

        md = AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(timeout=10)
        assert md.cluster_id == "prod-eu-1"
        assert list(md.brokers) == [3]
    finally:
        b.stop()
    # An explicit different node id is refused with one clear line.
    r = run("serve", "--data-dir", str(data), "--listen", f"127.0.0.1:{free_port()}", "--node-id", "4")
    assert r.returncode == 1 and "belongs to node 3" in r.stderr, r.stderr


def test_broker_registration_reports_rack_and_identity(broker_factory):
    b = broker_factory(config_text='broker_rack = "eu-1a"\n').start()
    from confluent_kafka.admin import AdminClient

    a = AdminClient({"bootstrap.servers": b.bootstrap})
    d = a.describe_cluster(request_timeout=10).result(10)
    assert [(n.id, n.port, n.rack) for n in d.nodes] == [(1, b.port, "eu-1a")]
    assert d.cluster_id and d.controller.id == 1
    # Every start registers the process anew (a new broker epoch); the log says so.
    b.stop()
    b.start()
    assert b.log_text().count("broker registered") == 2
    a = AdminClient({"bootstrap.servers": b.bootstrap})
    d = a.describe_cluster(request_timeout=10).result(10)
    assert [n.rack for n in d.nodes] == ["eu-1a"]
    # The CLI's view: brokers with their rack, partition health, replicas / ISR / epochs.
    bs = ("--bootstrap", b.bootstrap)
    name = unique("status")
    assert run("topic", "create", name, "--partitions", "2", *bs).returncode == 0
    status = run("cluster", "status", *bs)
    assert status.returncode == 0, status.stderr
    assert f"1\t127.0.0.1:{b.port}\teu-1a" in status.stdout, status.stdout
    assert "0 offline, 0 under-replicated" in status.stdout, status.stdout
    assert "quorum: leader 1\tepoch 0" in status.stdout, status.stdout
    status = json.loads(run("cluster", "status", "--output", "json", *bs).stdout)
    assert status["brokers"] == [{"id": 1, "host": "127.0.0.1", "port": b.port, "rack": "eu-1a"}], status
    assert status["quorum"]["leader"] == 1 and status["quorum"]["voters"][0]["id"] == 1, status
    assert status["offline"] == [] and status["under_replicated"] == [] and status["partitions"] >= 2, status
    d = run("topic", "describe", name, *bs).stdout
    assert "partition\tleader\tleader_epoch\treplicas\tisr" in d
    assert "\n0\t1\t0\t1\t1\t0\t0\t0\t0\t0\n" in d, d
