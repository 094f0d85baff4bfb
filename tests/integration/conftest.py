"""Real servers for integration tests: Mosquitto and VictoriaMetrics, each on a free loopback port.

Both binaries come from Debian packages (`mosquitto`, `victoria-metrics`); a missing binary fails
the test with the package to install rather than skipping it. The server classes live in
`gateway.bench.servers`, shared with the benchmarks.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.bench.servers import MosquittoServer, VictoriaMetrics, start_with_retry

__all__ = ["MosquittoServer", "VictoriaMetrics"]  # test modules import the server classes from here


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[MosquittoServer]:
    server: MosquittoServer = start_with_retry(lambda port: MosquittoServer(port, tmp_path / "mosquitto"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def victoria(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    server: VictoriaMetrics = start_with_retry(lambda port: VictoriaMetrics(port, tmp_path / "victoria"))
    try:
        yield server
    finally:
        server.stop()


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


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped after the test; skipped, with the
    reason shown, where no PostgreSQL answers."""
    reason = pg_unavailable()
    if reason:
        pytest.skip(reason)
    import psycopg

    schema = f"edgegw_test_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
