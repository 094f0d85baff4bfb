"""Real servers the benchmarks start: Mosquitto and VictoriaMetrics on loopback ports. The integration
tests reuse these launchers through `tests/servers.py` (one launcher, not two); what only tests need
lives there.

Both binaries come from Debian packages (`mosquitto`, `victoria-metrics`); a missing binary raises
`MissingBinary` naming the package to install.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

MOSQUITTO_BIN = "/usr/sbin/mosquitto"
VICTORIA_BIN = "/usr/bin/victoria-metrics"
START_TIMEOUT = 5.0


class _Server(Protocol):
    def start(self) -> None: ...


S = TypeVar("S", bound=_Server)


class MissingBinary(FileNotFoundError):
    """A server binary is not installed (the message names the Debian package)."""


class BenchFailed(RuntimeError):
    """A bench could not measure (a server or process did not start or failed): the reason, for the user."""


def _require_binary(path: str, package: str) -> None:
    if not os.access(path, os.X_OK):
        raise MissingBinary(f"{path} not found: install the Debian package {package!r} (apt-get install {package})")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_block(count: int) -> int:
    """First of `count` consecutive free ports (simulators take consecutive ports)."""
    for _ in range(100):
        base = free_port()
        if base + count <= 65536 and all(port_free(base + i) for i in range(1, count)):
            return base
    raise BenchFailed(f"no {count} consecutive free ports")


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def log_tail(path: Path, chars: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def stop_process(proc: subprocess.Popen[bytes] | None) -> None:
    """Terminate a child process, killing it if it does not end within 5 s."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc; 0.0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_with_retry(make: Callable[[int], S], attempts: int = 3) -> S:
    """Start `make(port)` on a free port; a port may be taken between the choice and the bind, so try
    a few."""
    last: Exception | None = None
    for _ in range(attempts):
        server = make(free_port())
        try:
            server.start()
            return server
        except BenchFailed as e:
            last = e
    raise BenchFailed(f"could not start server: {last}")


class MosquittoServer:
    """A Mosquitto broker on 127.0.0.1:`port`, configured for tests (anonymous, no persistence)."""

    def __init__(self, port: int, workdir: Path, *, persistence: bool = False, extra: list[str] | None = None) -> None:
        self.port = port
        self.workdir = workdir
        self.persistence = persistence  # keep sessions and queued messages across a restart
        self.extra = extra or []  # more config lines (TLS listeners, password and ACL files)
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
        while not port_open(self.port):
            if self.proc.poll() is not None:
                raise BenchFailed(f"mosquitto exited with {self.proc.returncode}: {log_tail(self._log)}")
            if time.monotonic() > deadline:
                self.stop()
                raise BenchFailed(f"mosquitto did not listen on {self.port} within {START_TIMEOUT} s")
            time.sleep(0.02)

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None


class VictoriaMetrics:
    """A single-node VictoriaMetrics on 127.0.0.1:`port`, with reads that see fresh writes at once.

    Data lives in `workdir/victoria-{port}`, so stop() and start() again keep it (a restart on the same
    port and data). `dedup=True` runs it with `-dedup.minScrapeInterval=1ms`: samples of one series
    with the same millisecond are kept once (by default VictoriaMetrics keeps every copy written).
    """

    def __init__(self, port: int, workdir: Path, *, dedup: bool = False) -> None:
        self.port = port
        self.workdir = workdir
        self.dedup = dedup
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = workdir / f"victoria-{port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.workdir / f"victoria-{self.port}"

    def start(self) -> None:
        _require_binary(VICTORIA_BIN, "victoria-metrics")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            VICTORIA_BIN,
            f"-storageDataPath={self.data_dir}",
            f"-httpListenAddr=127.0.0.1:{self.port}",
            "-retentionPeriod=100y",
            "-search.latencyOffset=0s",
            "-search.disableCache",
            "-search.maxExportSeries=10000000",  # counts read back every series (the default stops at 10,000)
            "-loggerLevel=ERROR",
        ]
        if self.dedup:
            args.append("-dedup.minScrapeInterval=1ms")
        with self._log.open("ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise BenchFailed(f"victoria-metrics exited with {self.proc.returncode}: {log_tail(self._log)}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=0.5) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise BenchFailed(f"victoria-metrics was not healthy on {self.port} within {START_TIMEOUT} s")
            time.sleep(0.05)

    def stop(self) -> None:
        stop_process(self.proc)
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
        with urllib.request.urlopen(f"{self.url}/api/v1/export?{query}", timeout=60) as r:
            body = r.read().decode()
        return [json.loads(line) for line in body.splitlines() if line.strip()]

    def count(self, match: str) -> int:
        """How many raw samples the series matching `match` hold."""
        return sum(len(s["values"]) for s in self.export(match))
