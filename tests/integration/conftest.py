"""Fixtures that run the real `strata` binary and point real Kafka clients at it."""
import os
import pathlib
import signal
import random
import socket
import subprocess
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
STRATA_BIN = os.environ.get("STRATA_BIN", str(ROOT / "target" / "debug" / "strata"))


def _ephemeral_range():
    try:
        lo, hi = open("/proc/sys/net/ipv4/ip_local_port_range").read().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999


_given = set()


def free_port():
    """A port free now and outside the kernel's ephemeral range, so no outgoing connection
    (a client's, or a broker's to its peers) can take it before the broker binds it; never
    the same one twice in a run."""
    lo, hi = _ephemeral_range()
    candidates = [p for p in range(10000, 65000) if not lo <= p <= hi]
    for _ in range(200):
        port = random.choice(candidates)
        if port in _given:
            continue
        _given.add(port)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """A `strata serve` process on a free port with its own data directory."""

    def __init__(self, data_dir, port=None, extra_args=(), config_text=None, env=None):
        self.data_dir = pathlib.Path(data_dir)
        self.env = None if env is None else {**os.environ, **env}
        self.port = port or free_port()
        self.extra_args = list(extra_args)
        self.config_text = config_text
        self.proc = None
        self.log_path = self.data_dir.parent / f"strata-{self.port}.log"

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    def start(self, timeout=30):
        args = [STRATA_BIN, "serve", "--data-dir", str(self.data_dir)]
        if self.config_text is None or "listeners" not in self.config_text:
            args += ["--listen", self.bootstrap]
        if self.config_text is not None:
            cfg = self.data_dir.parent / f"strata-{self.port}.toml"
            cfg.write_text(self.config_text)
            args += ["--config", str(cfg)]
        args += self.extra_args
        if not any(a.startswith("--http-listen") for a in self.extra_args):
            # The HTTP admin listener's default address likewise: tests of it give theirs.
            args += ["--http-listen", "none"]
        if not any(a.startswith("--sql-listen") for a in self.extra_args):
            # The SQL engine's default address is shared by every broker of a test run:
            # tests that use SQL give their own.
            args += ["--sql-listen", "none"]
        self.log = open(self.log_path, "ab")
        seen = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"strata exited with {self.proc.returncode}: {self.log_path.read_text()[-2000:]}")
            if "listening on" in self.log_path.read_bytes()[seen:].decode(errors="replace"):
                return self
            time.sleep(0.05)
        raise RuntimeError("strata did not start listening in time")

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.log.close()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if getattr(self, "log", None):
            self.log.close()

    def alive(self):
        return self.proc.poll() is None

    def log_text(self):
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path / "data").start()
    yield b
    b.stop()
    assert "panicked" not in b.log_text(), b.log_text()[-3000:]


@pytest.fixture
def broker_factory(tmp_path):
    started = []

    def make(**kwargs):
        b = Broker(tmp_path / f"data{len(started)}", **kwargs)
        started.append(b)
        return b

    yield make
    for b in started:
        b.stop()


def unique(prefix):
    return f"{prefix}-{time.time_ns() % 10**9}"


def read_frame(sock):
    """Reads one size-prefixed Kafka response frame; fails if the broker closes instead."""
    sock.settimeout(5)
    buf = b""
    while len(buf) < 4:
        chunk = sock.recv(4 - len(buf))
        assert chunk, "connection closed by the broker"
        buf += chunk
    n = int.from_bytes(buf, "big", signed=True)
    body = b""
    while len(body) < n:
        chunk = sock.recv(n - len(body))
        assert chunk, "connection closed by the broker"
        body += chunk
    return body


def wait_http_ok(url, timeout=30):
    """Waits until GET `url` answers 2xx (a server starting up)."""
    import urllib.error
    import urllib.request
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if 200 <= r.status < 300:
                    return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")
