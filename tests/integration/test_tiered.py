"""Tiered storage (issue 16) with real clients: a topic with remote.storage.enable keeps only
its newest segments on local disk, its older ones in the object store (here the file-system
store, `file:///…`), and librdkafka and kafka-python read it all from offset 0."""
import json
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import Broker


import os
import subprocess
import sys

import pytest

from conftest import STRATA_BIN, free_port


def tiered_broker(tmp_path, url, extra="", env=None):
    config = f"""
"remote.log.storage.system.enable" = true
"remote.log.storage.url" = "{url}"
"remote.log.manager.task.interval.ms" = 200
"log.retention.check.interval.ms" = 200
{extra}
"""
    return Broker(tmp_path / "data", config_text=config, env=env).start()


class FileStore:
    """The file-system store: objects are files under a directory."""

    def __init__(self, tmp_path):
        self.dir = tmp_path / "remote"
        self.url = f"file://{self.dir}"
        self.extra, self.env = "", None

    def objects(self, suffix):
        return [str(p) for p in self.dir.rglob(f"*{suffix}") if p.is_file()]

    def close(self):
        pass


class S3Store:
    """An S3-compatible server on loopback (moto's), with a bucket for the broker."""

    def __init__(self, tmp_path, create_bucket=True):
        import boto3
        port = free_port()
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-p", str(port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        endpoint = f"http://127.0.0.1:{port}"
        creds = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                 "AWS_DEFAULT_REGION": "us-east-1"}
        self.env = {**os.environ, **creds}
        self.s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                               aws_access_key_id="test", aws_secret_access_key="test")
        wait_for(lambda: self._up(), timeout=30, what="the S3 server")
        if create_bucket:
            self.s3.create_bucket(Bucket="tiers")
        self.url = "s3://tiers/strata"
        self.extra = f'"remote.log.storage.s3.endpoint" = "{endpoint}"\n"remote.log.storage.s3.region" = "us-east-1"'

    def _up(self):
        try:
            self.s3.list_buckets()
            return True
        except Exception:  # noqa: BLE001 - not listening yet
            return False

    def objects(self, suffix):
        keys = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket="tiers", Prefix="strata/"):
            keys += [o["Key"] for o in page.get("Contents", []) if o["Key"].endswith(suffix)]
        return keys

    def close(self):
        self.proc.terminate()
        self.proc.wait(10)


def wait_for(predicate, timeout=60, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def produce_records(bootstrap, topic, count, start=0, **conf):
    """Records {"i": n, "pad": ...} of about 1 KiB, n from `start`, acks=all, in batches well
    below segment.bytes (a batch larger than a segment is refused); every one acknowledged."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                  "batch.size": 16384, **conf})
    errors = []
    for i in range(start, start + count):
        p.produce(topic, value=json.dumps({"i": i, "pad": "x" * 900}),
                  on_delivery=lambda err, msg: err and errors.append(err))
    assert p.flush(60) == 0 and not errors, errors[:3]


def replay(bootstrap, topic, count, group="replay", timeout=60, **conf):
    """Reads `topic` from its start with librdkafka until `count` records came (or the
    timeout): their (offset, "i") in order."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False, **conf})
    c.subscribe([topic])
    got = []
    deadline = time.time() + timeout
    while len(got) < count and time.time() < deadline:
        m = c.poll(1)
        if m is not None and not m.error():
            got.append((m.offset(), json.loads(m.value())["i"]))
    c.close()
    return got

def local_segments(data_dir, topic):
    return sorted((data_dir / f"{topic}-0").glob("*.log"))


@pytest.mark.parametrize("store", [FileStore, S3Store], ids=["file", "s3"])
def test_a_tiered_topic_is_read_whole_from_the_object_store_and_local_disk(tmp_path, store):
    remote = store(tmp_path)
    b = tiered_broker(tmp_path, remote.url, remote.extra, remote.env)
    try:
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        admin.create_topics([NewTopic("history", 1, 1, config={
            "remote.storage.enable": "true",
            "segment.bytes": "65536",
            "local.retention.bytes": "131072",
        })])["history"].result(30)
        # A compacted topic cannot be tiered (Kafka's rule).
        bad = admin.create_topics([NewTopic("compacted", 1, 1, config={
            "remote.storage.enable": "true", "cleanup.policy": "compact"})])["compacted"]
        try:
            bad.result(30)
            raise AssertionError("a compacted topic was tiered")
        except Exception as e:  # noqa: BLE001 - the client's KafkaException
            assert "compacted" in str(e), e
        count = 3000
        produce_records(b.bootstrap, "history", count)
        # Far more than local.retention.bytes was written: the older segments are copied,
        # then deleted locally.
        def trimmed():
            segs = local_segments(tmp_path / "data", "history")
            try:
                size = sum(f.stat().st_size for f in segs)
            except FileNotFoundError:
                return False  # deleted while listed
            return int(segs[0].stem) > 0 and size <= 131072 + 2 * 65536 and int(segs[0].stem)
        first_local = wait_for(trimmed, what="local retention down to local.retention.bytes")
        copies = remote.objects(".manifest.json")
        assert len(copies) >= 5, copies
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "probe"})
        lo, hi = c.get_watermark_offsets(TopicPartition("history", 0), timeout=10)
        c.close()
        assert (lo, hi) == (0, count), (lo, hi, first_local)
        # The CLI shows where the log starts (in the object store) and where its local part does.
        d = subprocess.run([STRATA_BIN, "topic", "describe", "history", "--bootstrap", b.bootstrap],
                           capture_output=True, text=True, timeout=60).stdout
        assert "log_start_offset\tlocal_log_start_offset\thigh_watermark\tlocal_bytes\tremote_bytes" in d, d
        row = [line.split("\t") for line in d.splitlines() if line.startswith("0\t")][0]
        assert row[5] == "0" and int(row[6]) >= first_local and row[7] == str(count), row
        # Local and remote bytes (DescribeLogDirs: the data directory, then the store).
        local_bytes, remote_bytes = int(row[8]), int(row[9])
        assert 0 < local_bytes <= 131072 + 3 * 65536, row
        assert remote_bytes >= (first_local - 200) * 900, row
        # librdkafka from the start: every record, in order.
        got = replay(b.bootstrap, "history", count, group="replay")
        assert [o for o, _ in got] == list(range(count))
        assert [i for _, i in got] == list(range(count))
        # kafka-python too.
        from kafka import KafkaConsumer
        kc = KafkaConsumer("history", bootstrap_servers=b.bootstrap, auto_offset_reset="earliest",
                           enable_auto_commit=False, group_id=None, consumer_timeout_ms=10000)
        offsets = [m.offset for m in kc]
        kc.close()
        assert offsets == list(range(count)), (len(offsets), offsets[:3])
        if store is FileStore:
            java_reads_it_whole(b.bootstrap, "history", count)
        # Deleting the topic deletes its copies.
        admin.delete_topics(["history"])["history"].result(30)
        wait_for(lambda: not remote.objects(".log"), what="the copies deleted")
    finally:
        b.stop()
        remote.close()
    assert "panicked" not in b.log_text()


_classpath = []


def java_tool(main, *args):
    """Runs one of Kafka's Java tools (kafka-tools from Maven Central) and returns its output."""
    import pathlib
    if not _classpath:
        root = pathlib.Path(__file__).resolve().parents[2]
        _classpath.append(subprocess.run([str(root / "scripts" / "kafka-peer"), "classpath"],
                                         check=True, capture_output=True, text=True,
                                         timeout=600).stdout.strip())
    r = subprocess.run(["java", "-Xmx256m", "-XX:TieredStopAtLevel=1",
                        "-Dorg.slf4j.simpleLogger.defaultLogLevel=error", "-cp", _classpath[0],
                        main, *args], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, f"{main} exited {r.returncode}:\n{r.stderr[-2000:]}"
    return r.stdout


def java_reads_it_whole(bootstrap, topic, count):
    """The Java client (Kafka's console consumer) reads every record from offset 0, and
    Kafka's log-dirs tool sees the object store as a second log directory."""
    import re
    tool = java_tool
    out = tool("org.apache.kafka.tools.consumer.ConsoleConsumer", "--bootstrap-server", bootstrap,
               "--topic", topic, "--from-beginning", "--max-messages", str(count),
               "--formatter-property", "print.offset=true", "--timeout-ms", "60000")
    offsets = [int(m) for m in re.findall(r"Offset:(\d+)", out)]
    values = [json.loads(line[line.index("{"):])["i"] for line in out.splitlines() if "{" in line]
    assert offsets == list(range(count)), (len(offsets), offsets[:3])
    assert values == list(range(count))
    dirs = tool("org.apache.kafka.tools.LogDirsCommand", "--bootstrap-server", bootstrap,
                "--describe", "--topic-list", topic)
    payload = json.loads(next(line for line in dirs.splitlines() if line.startswith("{")))
    sizes = {d["logDir"]: d["partitions"][0]["size"] for b in payload["brokers"]
             for d in b["logDirs"] if d["partitions"]}
    assert len(sizes) == 2 and all(v > 0 for v in sizes.values()), payload
    assert any(d.startswith("file://") for d in sizes), payload


def test_remote_reads_keep_to_the_fetch_bandwidth_limit(tmp_path):
    """remote.log.manager.fetch.max.bytes.per.second (KIP-956) bounds what remote reads
    take from the store: a replay of ~1.8 MB from the store at 256 KiB/s takes at least the
    time the limit says, and still gets every record."""
    remote = FileStore(tmp_path)
    rate = 256 << 10
    b = tiered_broker(tmp_path, remote.url, f"""
"remote.log.manager.fetch.max.bytes.per.second" = {rate}
"remote.log.reader.chunk.bytes" = 65536
""")
    try:
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        admin.create_topics([NewTopic("slow", 1, 1, config={
            "remote.storage.enable": "true", "segment.bytes": "65536",
            "local.retention.bytes": "65536"})])["slow"].result(30)
        count = 2000
        produce_records(b.bootstrap, "slow", count)

        def local_start():
            segs = local_segments(tmp_path / "data", "slow")
            return segs and int(segs[0].stem) >= 1500 and int(segs[0].stem)
        first_local = wait_for(local_start, what="local retention")
        remote_bytes = first_local * 930  # about a record's share of its batch
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "slow",
                      "auto.offset.reset": "earliest", "enable.auto.commit": False})
        c.subscribe(["slow"])
        got = []
        started = time.time()
        deadline = started + 90
        while len(got) < count and time.time() < deadline:
            m = c.poll(1)
            if m is not None and not m.error():
                got.append(json.loads(m.value())["i"])
        took = time.time() - started
        c.close()
        assert got == list(range(count)), (len(got), got[:3])
        # One second's worth may go at once (the bucket starts full).
        least = (remote_bytes - rate) / rate
        assert took >= 0.8 * least, f"{remote_bytes} remote bytes read in {took:.1f} s at {rate} B/s"
    finally:
        b.stop()
    assert "panicked" not in b.log_text()


def test_a_new_leader_goes_on_copying_where_the_old_one_stopped(tmp_path):
    """Three nodes sharing one object store: the leader copies, is killed -9, and the new
    leader (which knows the copies from cluster metadata) copies on from where they end:
    no range copied twice, none skipped, and a consumer reads everything from offset 0."""
    from test_cluster import FAST, bootstrap, leader_of, start_cluster
    remote = tmp_path / "remote"
    config = FAST + f"""
"remote.log.storage.system.enable" = true
"remote.log.storage.url" = "file://{remote}"
"remote.log.manager.task.interval.ms" = 200
"log.retention.check.interval.ms" = 200
"""
    nodes = start_cluster(tmp_path, config_text=config)

    def copies():
        # (base offset, segment id) of each finished copy, from the manifests' names
        out = []
        for m in remote.rglob("*.manifest.json"):
            base, _, rest = m.name.partition("-")
            out.append((int(base), rest.split(".")[0]))
        return sorted(out)

    try:
        admin = AdminClient({"bootstrap.servers": bootstrap(nodes)})
        admin.create_topics([NewTopic("ledger", 1, 3, config={
            "remote.storage.enable": "true", "segment.bytes": "65536",
            "local.retention.bytes": "131072", "min.insync.replicas": "2"})])["ledger"].result(30)
        produce_records(bootstrap(nodes), "ledger", 1500)
        first = wait_for(lambda: len(copies()) >= 5 and copies(), what="the leader's copies")
        leader = wait_for(lambda: leader_of(nodes, "ledger", 0), what="a leader")
        nodes[leader - 1].kill9()
        wait_for(lambda: leader_of(nodes, "ledger", 0, exclude=(leader,)) not in (None, -1, leader),
                 what="a new leader")
        produce_records(bootstrap(nodes), "ledger", 1500, start=1500)
        wait_for(lambda: len(copies()) >= len(first) + 10, what="the new leader's copies")
        bases = [b for b, _ in copies()]
        assert len(bases) == len(set(bases)), f"a range copied twice: {bases}"
        got = replay(bootstrap(nodes), "ledger", 3000, group="replay")
        assert [o for o, _ in got] == list(range(3000)), (len(got), got[:3])
        assert [i for _, i in got] == list(range(3000))
    finally:
        for b in nodes:
            b.stop()


def test_a_hung_object_store_holds_up_neither_produce_nor_local_consume(tmp_path):
    """The S3 server stops answering (SIGSTOP) while the broker copies: produce with
    acks=all and a consumer of the newest records go on as before; once the server answers
    again, copying resumes."""
    import signal
    remote = S3Store(tmp_path)
    b = tiered_broker(tmp_path, remote.url, remote.extra, remote.env)
    try:
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        admin.create_topics([NewTopic("live", 1, 1, config={
            "remote.storage.enable": "true", "segment.bytes": "65536",
            "local.retention.bytes": "131072"})])["live"].result(30)
        produce_records(b.bootstrap, "live", 1000)
        wait_for(lambda: len(remote.objects(".manifest.json")) >= 3, what="first copies")
        # Everything produced so far is copied (the last segment stays active).
        settled = wait_for(lambda: (n := len(remote.objects(".manifest.json"))) == len(
            remote.objects(".manifest.json")) and time.sleep(1) is None
            and n == len(remote.objects(".manifest.json")) and n, what="copies settled")
        remote.proc.send_signal(signal.SIGSTOP)
        try:
            started = time.time()
            produce_records(b.bootstrap, "live", 1000, start=1000)
            took = time.time() - started
            assert took < 20, f"produce took {took:.1f} s with the object store hung"
            c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "tail",
                          "enable.auto.commit": False})
            c.assign([TopicPartition("live", 0, 1500)])
            got = []
            deadline = time.time() + 20
            while len(got) < 500 and time.time() < deadline:
                m = c.poll(1)
                if m is not None and not m.error():
                    got.append(m.offset())
            c.close()
            assert got == list(range(1500, 2000)), (len(got), got[:3])
        finally:
            remote.proc.send_signal(signal.SIGCONT)
        # The second thousand records' segments could only be copied once it answered.
        wait_for(lambda: len(remote.objects(".manifest.json")) >= settled + 5, timeout=120,
                 what="copying resumed")
        assert "tiered storage" in b.log_text()
    finally:
        b.stop()
        remote.close()


def test_kill_9_while_copying_leaves_no_partial_copy_and_loses_nothing(tmp_path):
    """The broker is killed (-9) again and again while it copies: after restarts every copy
    in the store is whole (a copy cut short is deleted by the next pass), no range is copied
    twice, and every record is read from offset 0."""
    import random
    remote = FileStore(tmp_path)
    b = tiered_broker(tmp_path, remote.url)
    try:
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        admin.create_topics([NewTopic("crashy", 1, 1, config={
            "remote.storage.enable": "true", "segment.bytes": "65536",
            "local.retention.bytes": "131072"})])["crashy"].result(30)
        produce_records(b.bootstrap, "crashy", 3000)
        rng = random.Random(7)
        for _ in range(5):
            time.sleep(rng.uniform(0.05, 0.4))
            b.kill9()
            b.start()

        def settled():
            whole = {o.rsplit(".manifest.json", 1)[0] for o in remote.objects(".manifest.json")}
            logs = {o.rsplit(".log", 1)[0] for o in remote.objects(".log")}
            return logs == whole and len(whole) >= 40 and whole
        whole = wait_for(settled, timeout=90, what="every copy whole")
        bases = sorted(int(w.rsplit("/", 1)[1].split("-")[0]) for w in whole)
        assert len(bases) == len(set(bases)), f"a range copied twice: {bases}"
        got = [i for _, i in replay(b.bootstrap, "crashy", 3000, group="replay")]
        assert got == list(range(3000)), (len(got), got[:3])
    finally:
        b.stop()


def test_kill_9_while_deleting_copies_leaves_no_orphans(tmp_path):
    """Retention deletes copies and the broker is killed (-9) meanwhile; then the topic is
    deleted and the broker killed at once. After restarts: every copy left is whole, the log
    starts at the first of them and reads to its end, and once the topic is gone so is
    every object it had (the orphan sweep at start deletes what the crash left)."""
    import random
    import uuid
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource
    remote = FileStore(tmp_path)
    b = tiered_broker(tmp_path, remote.url, '"remote.log.orphan.min.age.ms" = 0')
    try:
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        admin.create_topics([NewTopic("doomed", 1, 1, config={
            "remote.storage.enable": "true", "segment.bytes": "65536",
            "local.retention.bytes": "131072"})])["doomed"].result(30)
        produce_records(b.bootstrap, "doomed", 3000)
        wait_for(lambda: len(remote.objects(".manifest.json")) >= 40, what="copies")
        # Keep about 1 MB in all: retention deletes most copies; kill -9 while it does.
        res = ConfigResource(ConfigResource.Type.TOPIC, "doomed", incremental_configs=[
            ConfigEntry("retention.bytes", "1000000",
                        incremental_operation=AlterConfigOpType.SET)])
        admin.incremental_alter_configs([res])[res].result(30)
        time.sleep(random.Random(3).uniform(0.05, 0.3))
        b.kill9()
        b.start()

        def settled():
            whole = {o.rsplit(".manifest.json", 1)[0] for o in remote.objects(".manifest.json")}
            anything = {o.rsplit(".", 1)[0] for o in remote.objects("")
                        if not o.endswith(".manifest.json")}
            anything = {a.rsplit(".", 1)[0] if a.endswith(".leader-epoch-checkpoint") else a
                        for a in anything}
            return whole and anything == whole and len(whole) <= 20 and whole
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "after",
                      "auto.offset.reset": "earliest", "enable.auto.commit": False})

        def done():
            # No partial copy, and the log starts at the first copy in the store (read
            # between two listings that agree: retention may still be deleting).
            first = settled()
            lo, hi = c.get_watermark_offsets(TopicPartition("doomed", 0), timeout=10)
            bases = first and sorted(int(w.rsplit("/", 1)[1].split("-")[0]) for w in first)
            return first and settled() == first and lo == bases[0] and hi == 3000 and lo
        lo = wait_for(done, timeout=60, what="retention's deletions finished, no partial copy")
        c.subscribe(["doomed"])
        got = []
        deadline = time.time() + 60
        while len(got) < 3000 - lo and time.time() < deadline:
            m = c.poll(1)
            if m is not None and not m.error():
                got.append(m.offset())
        c.close()
        assert got == list(range(lo, 3000)), (len(got), got[:3])
        # The topic is deleted and the broker killed at once; a copy of a topic deleted
        # long ago is planted too (what a crash during its deletion would have left).
        admin.delete_topics(["doomed"])["doomed"].result(30)
        b.kill9()
        planted = remote.dir / f"gone-{uuid.uuid4()}" / "0"
        planted.mkdir(parents=True)
        copy_id = uuid.uuid4()
        for suffix in ("log", "index", "manifest.json"):
            (planted / f"{0:020}-{copy_id}.{suffix}").write_bytes(b"x")
        b.start()
        wait_for(lambda: not remote.objects(""), timeout=60, what="every object deleted")
        assert "orphaned copy deleted" in b.log_text()
    finally:
        b.stop()
    assert "panicked" not in b.log_text()


def test_read_committed_skips_aborted_transactions_read_from_the_store(tmp_path):
    """Transactions committed and aborted in turn on a tiered topic: once their segments
    are only in the store, a read_committed consumer from offset 0 gets exactly the
    committed records (each copy carries its aborted transactions, Kafka's .txnindex), and
    a read_uncommitted one gets them all."""
    remote = FileStore(tmp_path)
    b = tiered_broker(tmp_path, remote.url)
    try:
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        admin.create_topics([NewTopic("txns", 1, 1, config={
            "remote.storage.enable": "true", "segment.bytes": "65536",
            "local.retention.bytes": "65536"})])["txns"].result(30)
        p = Producer({"bootstrap.servers": b.bootstrap, "transactional.id": "tiered-txn",
                      "linger.ms": 5})
        p.init_transactions(30)
        committed, everything = [], []
        for t in range(40):
            p.begin_transaction()
            for i in range(25):
                n = t * 25 + i
                p.produce("txns", value=json.dumps({"n": n, "pad": "x" * 900}))
                everything.append(n)
            if t % 3 == 1:
                p.flush(30)  # written, then aborted (not purged unsent)
                p.abort_transaction(30)
            else:
                p.commit_transaction(30)
                committed += list(range(t * 25, t * 25 + 25))
        wait_for(lambda: (segs := local_segments(tmp_path / "data", "txns"))
                 and int(segs[0].stem) > 700, what="local retention past most transactions")
        assert remote.objects(".txnindex"), "no copy has aborted transactions"

        def read(isolation, want):
            c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": f"r-{isolation}",
                          "auto.offset.reset": "earliest", "enable.auto.commit": False,
                          "isolation.level": isolation})
            c.subscribe(["txns"])
            got = []
            deadline = time.time() + 60
            while len(got) < want and time.time() < deadline:
                m = c.poll(1)
                if m is not None and not m.error():
                    got.append(json.loads(m.value())["n"])
            # Nothing more comes.
            end = time.time() + 2
            while time.time() < end:
                m = c.poll(0.5)
                if m is not None and not m.error():
                    got.append(json.loads(m.value())["n"])
            c.close()
            return got
        assert read("read_committed", len(committed)) == committed
        assert read("read_uncommitted", len(everything)) == everything
    finally:
        b.stop()
    assert "panicked" not in b.log_text()


def test_a_replica_starting_over_at_the_leaders_local_start_takes_its_producer_state(tmp_path):
    """A follower down while the leader wrote, copied and trimmed far past an idempotent
    producer's records comes back behind the leader's local log start: it starts over there
    and takes the producer state from the copy that ends there (Kafka's follower builds the
    same from remote storage), so it knows the producer as its leader does (Kafka's
    describe-producers tool, asked of that broker)."""
    import re
    from test_cluster import FAST, bootstrap, leader_of, start_cluster
    remote = tmp_path / "remote"
    nodes = start_cluster(tmp_path, config_text=FAST + f"""
"remote.log.storage.system.enable" = true
"remote.log.storage.url" = "file://{remote}"
"remote.log.manager.task.interval.ms" = 200
"log.retention.check.interval.ms" = 200
""")
    try:
        admin = AdminClient({"bootstrap.servers": bootstrap(nodes)})
        admin.create_topics([NewTopic("keyed", 1, 3, config={
            "remote.storage.enable": "true", "segment.bytes": "65536",
            "local.retention.bytes": "131072", "min.insync.replicas": "2"})])["keyed"].result(30)
        leader = wait_for(lambda: leader_of(nodes, "keyed", 0), what="a leader")
        follower = next(i + 1 for i in range(3) if i + 1 != leader)
        idem = Producer({"bootstrap.servers": bootstrap(nodes), "enable.idempotence": True,
                         "linger.ms": 5, "batch.size": 16384})
        errors = []
        for i in range(200):
            idem.produce("keyed", value=json.dumps({"i": i, "pad": "x" * 300}),
                         on_delivery=lambda err, msg: err and errors.append(err))
        assert idem.flush(30) == 0 and not errors, errors[:3]

        def producers(broker_id):
            out = java_tool("org.apache.kafka.tools.TransactionsCommand", "--bootstrap-server",
                            bootstrap(nodes), "describe-producers", "--topic", "keyed",
                            "--partition", "0", "--broker-id", str(broker_id))
            # ProducerId, ProducerEpoch, LatestCoordinatorEpoch, LastSequence, ...
            return {int(m[0]): int(m[1]) for m in
                    re.findall(r"^(\d+)\s+\d+\s+-?\d+\s+(\d+)", out, re.M)}, out
        on_leader, out = producers(leader)
        assert len(on_leader) == 1 and list(on_leader.values()) == [199], out
        nodes[follower - 1].kill9()
        produce_records(bootstrap(nodes), "keyed", 3000)

        def local_start():
            d = subprocess.run([STRATA_BIN, "topic", "describe", "keyed", "--bootstrap",
                                bootstrap(nodes).split(",")[0]], capture_output=True, text=True,
                               timeout=60).stdout
            row = [line.split("\t") for line in d.splitlines() if line.startswith("0\t")]
            return row and int(row[0][6]) > 500 and int(row[0][6])
        start = wait_for(local_start, what="the leader's local log start past the producer")
        nodes[follower - 1].start(timeout=60)

        def restored():
            log = nodes[follower - 1].log_text()
            return "producer state restored from the copy" in log
        wait_for(restored, timeout=60, what="the follower restoring producer state")
        on_follower, out = producers(follower)
        assert on_follower == on_leader, (out, on_leader, start)
    finally:
        for b in nodes:
            b.stop()


def test_an_object_store_that_errors_is_retried_while_produce_and_consume_go_on(tmp_path):
    """The S3 server answers every copy with an error (its bucket does not exist yet):
    produce with acks=all and consume go on, nothing local is deleted past local retention,
    the copier retries with backoff, and once the bucket exists the copies are made and every
    record reads from offset 0."""
    remote = S3Store(tmp_path, create_bucket=False)
    b = tiered_broker(tmp_path, remote.url, remote.extra, remote.env)
    try:
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        admin.create_topics([NewTopic("stuck", 1, 1, config={
            "remote.storage.enable": "true", "segment.bytes": "65536",
            "local.retention.bytes": "65536"})])["stuck"].result(30)
        started = time.time()
        produce_records(b.bootstrap, "stuck", 1500)
        assert time.time() - started < 30
        wait_for(lambda: b.log_text().count("tiered storage: will retry") >= 3,
                 what="copies failing and retried")
        # Nothing copied, so nothing deleted: the whole log is still local.
        assert int(local_segments(tmp_path / "data", "stuck")[0].stem) == 0
        remote.s3.create_bucket(Bucket="tiers")
        wait_for(lambda: (segs := local_segments(tmp_path / "data", "stuck"))
                 and int(segs[0].stem) > 1000, timeout=90, what="copies made, local disk trimmed")
        got = [i for _, i in replay(b.bootstrap, "stuck", 1500, group="after")]
        assert got == list(range(1500)), (len(got), got[:3])
    finally:
        b.stop()
        remote.close()
    assert "panicked" not in b.log_text()
