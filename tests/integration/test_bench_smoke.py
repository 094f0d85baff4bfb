"""A seconds-long smoke of every `edgegw bench` (the figures of real runs are in the README): each runs the
path users run against real servers and simulators, gives its figures, and removes its work directory after
a clean run. `edgegw bench soak` runs the agent as users do, restarts the broker under it, samples the
process and says whether it stays flat; `edgegw bench buffer` measures the fsync per scan; `edgegw bench
ledger-size` measures the ledger's bytes per device-hour (SQLite, and the machine's PostgreSQL where it
answers); `edge`, `modbus`, `opcua`, `pipeline` and `simulators` as the README's Performance section runs
them, on a few devices for a few seconds."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from cloud_bridge.cloud.ledger.schema import message_bodies
from cloud_bridge.cloud.ledger.sqldb import Database
from gateway.cli import main

pytestmark = pytest.mark.integration


@pytest.fixture
def bench_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the benches, and the processes they start, make their temporary directories in this test (to
    see them removed)."""
    d = tmp_path / "bench-tmp"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    monkeypatch.setenv("TMPDIR", str(d))
    return d


def bench(tmp_path: Path, capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    """`edgegw bench ARGV --json FILE`, which must exit 0: the figures it wrote."""
    out = tmp_path / f"{argv[0]}.json"
    assert main(["bench", *argv, "--json", str(out)]) == 0, capsys.readouterr()
    return json.loads(out.read_text())


def test_soak_smoke(tmp_path: Path, bench_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "soak.json"
    code = main(["bench", "soak", "--hours", "0.004", "--every", "1", "--broker-restart", "6", "--json", str(out)])
    assert code == 0, capsys.readouterr()
    r = json.loads(out.read_text())
    assert len(r["samples"]) >= 10 and r["broker_restarts"] >= 1
    assert r["devices_online"] == 4 and 0 < r["samples_published"] <= r["samples_read"]
    assert all(s["rss_mb"] > 0 and s["fds"] > 0 and s["threads"] >= 1 for s in r["samples"])
    assert "verdict" in capsys.readouterr().out
    assert r["workdir"] is None and not list(bench_tmp.iterdir()), "a clean run removes its work directory"


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
def test_edge_memory_smoke(tmp_path: Path, bench_tmp: Path, capsys: pytest.CaptureFixture[str], protocol: str) -> None:
    """`bench edge --memory` runs the agent as users do (its identity made in data_dir/identity on the first
    start and kept between the points), over Modbus or OPC UA, and reports RSS and start-up per tag count."""
    args = ["edge", "--memory", "100,200", "--per-device", "100", "--settle", "1", "--memory-seconds", "1"]
    r = bench(tmp_path, capsys, *args, "--protocol", protocol)
    assert r["protocol"] == protocol and [p["tags"] for p in r["points"]] == [100, 200]
    assert all(p["rss_mb"] > 10 and p["startup_s"] is not None and p["points_per_s"] > 0 for p in r["points"])
    assert "RSS MB" in capsys.readouterr().out
    assert not list(bench_tmp.iterdir()), "a clean run removes its work directory"


def test_edge_bench_smoke(tmp_path: Path, bench_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`bench edge`: the agent (`edgegw run`) and the bare pymodbus + paho loop on the same simulators, at
    two change rates, each point counted at the broker."""
    args = ["edge", "--devices", "2", "--registers", "50", "--change", "0.1,1.0", "--seconds", "2", "--warmup", "2"]
    r = bench(tmp_path, capsys, *args)
    assert [x["change"] for x in r["runs"]] == [0.1, 1.0] and r["workload"]["tags"] == 52
    for run in r["runs"]:
        assert run["bare"]["points"] > 0 and run["gateway"]["points"] > 0, run
        assert run["bare"]["rss_mb"] > 10 and run["gateway"]["rss_mb"] > 10
    full = r["runs"][1]  # every tag changes every second: both deliver a scan's 52 points a second
    assert full["bare"]["points"] >= 52 and full["gateway"]["points"] >= 52, full
    assert "gateway ÷ bare" in capsys.readouterr().out
    assert not list(bench_tmp.iterdir()), "a clean run removes its work directory"


def test_modbus_bench_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`bench modbus`: the gateway's driver against bare pymodbus reading the same blocks of a simulator."""
    args = ["modbus", "--devices", "2", "--registers", "100", "--seconds", "1", "--rounds", "1", "--max-seconds", "1"]
    r = bench(tmp_path, capsys, *args)
    assert r["requests_per_scan"]["equal"], r["requests_per_scan"]
    for side in ("floor", "gateway"):
        # a scan reads one device's 100 registers
        assert r[side]["registers"] == r[side]["scans"] * 100 > 0 and r[side]["overruns"] == 0, r[side]
    assert r["gateway"]["samples"] > 0 and r["ratio"] is not None
    assert r["back_to_back"]["gateway"]["registers"] > 0
    assert "bare pymodbus" in capsys.readouterr().out


def test_opcua_bench_smoke(tmp_path: Path, bench_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`bench opcua`: the gateway's OPC UA path (subscription → buffer → MQTT) against bare asyncua clients."""
    [run] = bench(tmp_path, capsys, "opcua", "--nodes", "100", "--seconds", "2", "--warmup", "1")["runs"]
    assert run["nodes"] == 100 and run["gateway"]["online"], run
    for side in ("bare_client", "bare_floor", "gateway"):
        assert run[side]["notifications"] > 0, side
    assert run["gateway"]["samples_buffered"] > 0 and run["gateway"]["mqtt_samples_in_window"] > 0
    assert "gateway ÷ bare" in capsys.readouterr().out
    assert not list(bench_tmp.iterdir()), "the simulator process removed its PKI directory"


def test_pipeline_bench_smoke(tmp_path: Path, bench_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`bench pipeline`: buffer → MQTT → `edgegw ingest` → stores, live, sustained and after an outage."""
    args = ["pipeline", "--devices", "2", "--tags", "10", "--live-seconds", "3", "--sustained-seconds", "2"]
    r = bench(tmp_path, capsys, *args, "--outage", "3")
    assert r["live"]["all_ingested"] and r["live"]["samples"] > 0
    assert r["sustained"]["samples_s"] > 0 and r["sustained"]["all_ingested"]  # what the broker took, once
    assert r["buffer"]["backlog_samples"] == 3 * 2 * 10  # the outage's scans, all in the buffer
    assert r["drain"]["to_broker_s"] > 0 and r["drain"]["to_stores_s"] > 0, r["drain"]  # -1: never arrived
    assert "drain" in capsys.readouterr().out
    assert not list(bench_tmp.iterdir()), "a clean run removes its work directory"


def test_simulators_bench_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`bench simulators`: the pilot industries' machines over Modbus and OPC UA, read every second."""
    args = ["simulators", "--devices", "4", "--tags", "20", "--shards", "1", "--seconds", "2", "--warmup", "1"]
    modbus, opcua = bench(tmp_path, capsys, *args)["runs"]
    assert (modbus["protocol"], opcua["protocol"]) == ("modbus", "opcua")
    for run in (modbus, opcua):
        assert run["devices"] == 11 and run["tags"] > 11 * 10 and run["ticks"] > 0, run  # one machine of each kind
    assert modbus["reader"]["values_read_per_s"] > 0 and opcua["reader"]["notifications_per_s"] > 0
    assert "simulator CPU" in capsys.readouterr().out
