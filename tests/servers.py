"""Real servers for the integration tests, in one place: the Mosquitto and VictoriaMetrics launchers the
benchmarks use (`gateway.bench.servers`, reused rather than written twice), the machine's PostgreSQL,
and the helpers only tests need (waiting for samples with a failing assertion)."""

from __future__ import annotations

import socket
import time
from typing import Any

from gateway.bench.servers import MosquittoServer, VictoriaMetrics, start_with_retry, stop_process

__all__ = [
    "PG_URL",
    "MosquittoServer",
    "VictoriaMetrics",
    "pg_unavailable",
    "start_with_retry",
    "stop_process",
    "wait_for_samples",
]

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def pg_unavailable() -> str | None:
    """Why the machine's PostgreSQL cannot be used, or None when it answers."""
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            pass
    except OSError as e:
        return f"no PostgreSQL on 127.0.0.1:5432 ({e})"
    try:
        import psycopg

        with psycopg.connect(PG_URL, connect_timeout=3):
            return None
    except Exception as e:  # any driver or auth failure means: cannot test here
        return f"PostgreSQL at {PG_URL} refused: {e}"


def wait_for_samples(vm: VictoriaMetrics, match: str, n: int, timeout: float = 10) -> list[dict[str, Any]]:
    """Poll `vm.export(match)` until the series hold at least `n` values in total; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        series = vm.export(match)
        total = sum(len(s["values"]) for s in series)
        if total >= n:
            return series
        if time.monotonic() > deadline:
            raise AssertionError(f"{match}: {total} of {n} samples after {timeout} s")
        time.sleep(0.1)
