"""The benches that need no servers to compare against, seconds long (the figures of real runs are in the
README): `edgegw bench soak` runs the agent as users do, restarts the broker under it, samples the process
and says whether it stays flat; `edgegw bench buffer` measures the fsync per scan; `edgegw bench ledger-size`
measures the ledger's bytes per device-hour (SQLite, and the machine's PostgreSQL where it answers)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from cloud_bridge.cloud.ledger.schema import message_bodies
from cloud_bridge.cloud.ledger.sqldb import Database
from gateway.cli import main

pytestmark = pytest.mark.integration


def test_soak_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "soak.json"
    code = main(["bench", "soak", "--hours", "0.004", "--every", "1", "--broker-restart", "6", "--json", str(out)])
    assert code == 0, capsys.readouterr()
    r = json.loads(out.read_text())
    assert len(r["samples"]) >= 10 and r["broker_restarts"] >= 1
    assert r["devices_online"] == 4 and 0 < r["samples_published"] <= r["samples_read"]
    assert all(s["rss_mb"] > 0 and s["fds"] > 0 and s["threads"] >= 1 for s in r["samples"])
    assert "verdict" in capsys.readouterr().out


def test_buffer_bench_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "buffer.json"
    assert main(["bench", "buffer", "--scans", "200", "--dir", str(tmp_path / "d"), "--json", str(out)]) == 0
    full, normal = json.loads(out.read_text())
    assert (full["synchronous"], normal["synchronous"]) == ("FULL", "NORMAL")
    assert full["scans"] == normal["scans"] == 200 and full["ms_per_scan_p50"] > 0
    assert not list((tmp_path / "d").iterdir()), "the bench cleans up its files"
    assert "fsync" in capsys.readouterr().out


def test_city_bench_smoke(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    pg_url: str,  # skipped, with the reason, without PostgreSQL
) -> None:
    out = tmp_path / "city.json"
    argv = ["bench", "city", "--ingesters", "1", "--enterprises", "3", "--messages", "300", "--seconds", "2"]
    argv += ["--rate", "20", "--history-days", "2", "--history-every", "7200", "--calls", "1", "--json", str(out)]
    assert main(argv) == 0, capsys.readouterr()
    r = json.loads(out.read_text())
    drains, [live] = r["drain"], r["live"]
    assert [d["backlog"] for d in drains] == ["gateways", "broker"]  # both backlogs by default
    for drain in drains:
        assert drain["exactly_once"] and drain["in_ledger"] == drain["messages"] == 300 and drain["duplicates"] == 0
        assert drain["samples"] == 3000 and drain["scaling"] == 1.0
        assert drain["held"] == drain["released"] and sum(drain["batches"]) >= 1  # nothing left waiting for a proof
    assert live["ingester_us_per_message"] > 0 and live["postgres_us_per_message"] > 0
    assert live["exactly_once"] and live["messages"] > 0 and live["lag_ms_p50"] is not None
    api = r["api"]
    assert api["enterprises"] == 3 and api["from_days"] == 3 and api["devices"] == r["seed"]["devices"]
    assert api["evidence_status"] == 200 and api["pack_status"] == 200
    assert api["fill_rows"] > 0 and api["cold_computed_rows"] == 0  # the background fill ran before the first call
    assert r["ledger"] is None and r["workdir"] is None  # the database dropped, the files removed
    assert "exactly once" in capsys.readouterr().out


def test_ingest_bench_smoke_twice_on_one_ledger(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pg_url: str
) -> None:
    """`bench ingest` through a real broker, VictoriaMetrics and a PostgreSQL ledger, twice against the same
    ledger (the second run's messages are its own, not taken for the first's), with 11,000 series
    (VictoriaMetrics' export stops at 10,000 by default): every sample once in the ledger and the TSDB."""
    argv = ["bench", "ingest", "--phases", "one", "--messages", "1100", "--samples", "10", "--gateways", "11"]
    argv += ["--devices", "100", "--tags", "10", "--rounds", "1", "--ledger", pg_url]
    for k in range(2):
        out = tmp_path / f"ingest-{k}.json"
        assert main([*argv, "--json", str(out)]) == 0, capsys.readouterr()
        one = json.loads(out.read_text())["one"]
        assert one["victoria_samples"] == one["ledger_samples"] == 11_000, one
        assert one["ledger_messages"] == 1100 and one["duplicates"] == 0
    assert "exactly once" in capsys.readouterr().out


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_ledger_size_smoke(
    backend: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest
) -> None:
    out = tmp_path / "ledger.json"
    args = ["bench", "ledger-size", "--devices", "6", "--hours", "1", "--per-gateway", "3", "--json", str(out)]
    if backend == "postgresql":
        args += ["--ledger", request.getfixturevalue("pg_url")]
    assert main(args) == 0, capsys.readouterr()
    r = json.loads(out.read_text())
    assert r["exactly_once"] and r["recorded"] == 6 * 60 and r["ledger"] == backend
    assert r["after"]["chain_archive"] > r["before"]["chain_archive"]
    if backend == "sqlite":
        assert r["before"]["message_bodies"] > r["after"]["message_bodies"], "the archive step moved the bodies"
    else:  # a shared database: VACUUM FULL keeps the rows another session's open transaction may still see
        db = Database(args[-1])
        try:
            assert db.scalar(select(func.count()).select_from(message_bodies)) == 0, "the archive step moved them"
        finally:
            db.close()
    assert "received" not in r["after"] and r["after"]["received_seqs"] > 0
    text = capsys.readouterr().out
    assert "归档后 / after archive" in text and "bytes per device-hour" in text
    # a ledger that already holds tables is refused with a reason, not measured
    if backend == "postgresql":
        assert main(args) == 2
        assert "already holds ledger tables" in capsys.readouterr().out


@pytest.mark.parametrize("protocol", ["modbus", "opcua"])
def test_edge_memory_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str], protocol: str) -> None:
    """`bench edge --memory` runs the agent as users do (its identity made in data_dir/identity on the first
    start and kept between the points), over Modbus or OPC UA, and reports RSS and start-up per tag count."""
    out = tmp_path / "memory.json"
    args = ["bench", "edge", "--memory", "100,200", "--per-device", "100", "--settle", "1", "--memory-seconds", "1"]
    assert main([*args, "--protocol", protocol, "--json", str(out)]) == 0, capsys.readouterr()
    r = json.loads(out.read_text())
    assert r["protocol"] == protocol and [p["tags"] for p in r["points"]] == [100, 200]
    assert all(p["rss_mb"] > 10 and p["startup_s"] is not None and p["points_per_s"] > 0 for p in r["points"])
    assert "RSS MB" in capsys.readouterr().out
