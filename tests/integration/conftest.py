"""Real servers for integration tests: Mosquitto and VictoriaMetrics, each on a free loopback port.

Both binaries come from Debian packages (`mosquitto`, `victoria-metrics`); a missing binary fails
the test with the package to install rather than skipping it. The servers are in `tests/servers.py`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import PG_URL, MosquittoServer, VictoriaMetrics, pg_unavailable, start_with_retry


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


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A ledger URL, once for each dialect: a SQLite file, then the machine's PostgreSQL (skipped without it)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
    else:
        yield request.getfixturevalue("pg_url")
