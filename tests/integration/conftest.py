"""Real servers for integration tests: Mosquitto and VictoriaMetrics, each on a free loopback port.

Both binaries come from Debian packages (`mosquitto`, `victoria-metrics`); a missing binary fails
the test with the package to install rather than skipping it. The server classes live in
`gateway.bench.servers`, shared with the benchmarks.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.bench.servers import MosquittoServer, VictoriaMetrics
from tests.ports import free_port

__all__ = ["MosquittoServer", "VictoriaMetrics"]  # test modules import the server classes from here


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
