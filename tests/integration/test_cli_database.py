"""Commands on a ledger database that cannot be used (PostgreSQL refusing, a SQLite path that cannot be
made): one line with the reason, exit 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.ports import free_port

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("command", ["ingest", "serve"])
@pytest.mark.parametrize("ledger", ["postgresql", "sqlite"])
def test_a_ledger_that_cannot_be_used_is_said_in_one_line(tmp_path: Path, command: str, ledger: str) -> None:
    """A PostgreSQL nobody listens on, or a SQLite file under a file: one line naming the ledger (its
    password left out) and why, exit 2 (both commands ended in a traceback: `serve` from uvicorn's start-up,
    exit 3)."""
    (tmp_path / "a-file").write_text("")
    url = (
        f"postgresql://ingest:s3cret@127.0.0.1:{free_port()}/test"
        if ledger == "postgresql"
        else f"sqlite:///{tmp_path}/a-file/ledger.db"
    )
    cloud = tmp_path / "cloud.yaml"
    cloud.write_text(f'ledger: {{url: "{url}"}}\n', encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-m", "gateway.cli", command, "-c", str(cloud)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith(f"edgegw {command}: the ledger ") and "cannot be used: " in out.stderr
    assert "Traceback" not in out.stderr and "s3cret" not in out.stderr
    assert ("Connection refused" if ledger == "postgresql" else "a-file: File exists") in out.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["evidence", "export", "--enterprise", "ent-1", "--from", "2026-01-01", "--to", "2026-01-02", "-o", "pack"],
        ["evidence", "audit", "--enterprise", "ent-1", "--from", "2026-01-01", "--to", "2026-01-02"],
        ["cloud", "user", "list"],
        ["cloud", "gateway", "list"],
    ],
)
def test_commands_on_a_database_that_does_not_answer_say_so(tmp_path: Path, argv: list[str]) -> None:
    """Every command on the ledger, PostgreSQL refusing: the driver's reason in one line, exit 2 (not 1, which
    for `evidence` means the evidence failed its check); each ended in SQLAlchemy's traceback."""
    cloud = tmp_path / "cloud.yaml"
    cloud.write_text(f'ledger: {{url: "postgresql://postgres@127.0.0.1:{free_port()}/test"}}\n', encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-m", "gateway.cli", *argv, "-c", str(cloud)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith(f"edgegw {argv[0]}: the database cannot be used: connection failed")
    assert "Connection refused" in out.stderr and "Traceback" not in out.stderr
