"""Real servers for integration tests: Mosquitto and VictoriaMetrics, each on a free loopback port.

Both binaries come from Debian packages (`mosquitto`, `victoria-metrics`); a missing binary fails
the test with the package to install rather than skipping it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ports import free_port

MOSQUITTO_BIN = "/usr/sbin/mosquitto"
VICTORIA_BIN = "/usr/bin/victoria-metrics"
START_TIMEOUT = 5.0


def _require_binary(path: str, package: str) -> None:
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} not found: install the Debian package {package!r} (apt-get install {package})")


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _tail(path: Path, chars: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def _stop_process(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


class MosquittoServer:
    """A Mosquitto broker on 127.0.0.1:`port`, configured for tests (anonymous, no persistence)."""

    def __init__(self, port: int, workdir: Path, *, persistence: bool = False, extra: list[str] | None = None) -> None:
        self.port = port
        self.workdir = workdir
        self.persistence = persistence  # keep sessions and queued messages across a restart
        self.extra = extra or []  # more config lines (TLS listeners, password files)
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = workdir / f"mosquitto-{port}.log"

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        _require_binary(MOSQUITTO_BIN, "mosquitto")
        self.workdir.mkdir(parents=True, exist_ok=True)
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "persistence true" if self.persistence else "persistence false",
            f"persistence_location {self.workdir}/",
            "max_inflight_messages 0",
            "max_queued_messages 100000",
            "set_tcp_nodelay true",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # otherwise Mosquitto drops to user 'mosquitto'
        lines += self.extra
        conf = self.workdir / f"mosquitto-{self.port}.conf"
        conf.write_text("\n".join(lines) + "\n")
        with self._log.open("wb") as log:
            self.proc = subprocess.Popen(
                [MOSQUITTO_BIN, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not _port_open(self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}: {_tail(self._log)}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mosquitto did not listen on {self.port} within {START_TIMEOUT} s")
            time.sleep(0.02)

    def stop(self) -> None:
        _stop_process(self.proc)
        self.proc = None


class VictoriaMetrics:
    """A single-node VictoriaMetrics on 127.0.0.1:`port`, with reads that see fresh writes at once."""

    def __init__(self, port: int, workdir: Path) -> None:
        self.port = port
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = workdir / f"victoria-{port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        _require_binary(VICTORIA_BIN, "victoria-metrics")
        data = self.workdir / f"victoria-{self.port}"
        data.mkdir(parents=True, exist_ok=True)
        args = [
            VICTORIA_BIN,
            f"-storageDataPath={data}",
            f"-httpListenAddr=127.0.0.1:{self.port}",
            "-retentionPeriod=100y",
            "-search.latencyOffset=0s",
            "-search.disableCache",
            "-loggerLevel=ERROR",
        ]
        with self._log.open("wb") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"victoria-metrics exited with {self.proc.returncode}: {_tail(self._log)}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=0.5) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"victoria-metrics was not healthy on {self.port} within {START_TIMEOUT} s")
            time.sleep(0.05)

    def stop(self) -> None:
        _stop_process(self.proc)
        self.proc = None

    def force_flush(self) -> None:
        """Make recently written samples searchable (VictoriaMetrics buffers them for ~1 s)."""
        try:
            with urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=10) as r:
                r.read()
        except urllib.error.HTTPError as e:
            if e.code != 404:  # an older VictoriaMetrics without the endpoint: reads just lag a little
                raise

    def export(self, match: str) -> list[dict[str, Any]]:
        """Raw samples of the series matching `match`.

        One dict per series: {"metric": {label: value}, "values": [...], "timestamps": [ms, ...]}.
        """
        self.force_flush()
        query = urllib.parse.urlencode({"match[]": match, "start": "0"})
        with urllib.request.urlopen(f"{self.url}/api/v1/export?{query}", timeout=10) as r:
            body = r.read().decode()
        return [json.loads(line) for line in body.splitlines() if line.strip()]

    def wait_for_samples(self, match: str, n: int, timeout: float = 10) -> list[dict[str, Any]]:
        """Poll `export(match)` until the series hold at least `n` values in total; fail after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            series = self.export(match)
            total = sum(len(s["values"]) for s in series)
            if total >= n:
                return series
            if time.monotonic() > deadline:
                raise AssertionError(f"{match}: {total} of {n} samples after {timeout} s")
            time.sleep(0.1)


def _start_with_retry(make: Any) -> Any:
    # A free port may be taken between free_port() and the server's bind: try a few.
    last: Exception | None = None
    for _ in range(3):
        server = make(free_port())
        try:
            server.start()
            return server
        except RuntimeError as e:
            last = e
    raise RuntimeError(f"could not start server: {last}")


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[MosquittoServer]:
    server: MosquittoServer = _start_with_retry(lambda port: MosquittoServer(port, tmp_path / "mosquitto"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def victoria(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    server: VictoriaMetrics = _start_with_retry(lambda port: VictoriaMetrics(port, tmp_path / "victoria"))
    try:
        yield server
    finally:
        server.stop()
