"""The benches that need no servers to compare against, seconds long (the figures of real runs are in the
README): `edgegw bench soak` runs the agent as users do, restarts the broker under it, samples the process
and says whether it stays flat; `edgegw bench buffer` measures the fsync per scan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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
