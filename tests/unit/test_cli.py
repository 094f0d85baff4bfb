"""The command line: exit codes and messages of `edgegw config ...`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.cli import main

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_config_validate_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "validate", str(DEPLOY / "gateway.example.yaml")]) == 0
    assert "valid" in capsys.readouterr().out


def test_config_validate_reports_every_error_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    text = (DEPLOY / "gateway.example.yaml").read_text(encoding="utf-8")
    bad.write_text(text.replace('"hr:2"', '"4x0001"').replace("poll_interval: 1s", "poll_interval: soon"))
    good = DEPLOY / "gateway.example.yaml"
    assert main(["config", "validate", str(good), str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2
    assert all(line.startswith(f"{bad}:") for line in err)
    assert any("devices[0].tags[2].address" in line for line in err)
    assert any("devices[0].poll_interval" in line for line in err)


def test_config_validate_cloud(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "validate", "--cloud", str(DEPLOY / "cloud.example.yaml")]) == 0


def test_config_schema_is_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert "devices" in schema["properties"]


def test_run_with_a_bad_config_exits_2_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "gw.yaml"
    bad.write_text("gateway: {id: x}\n")
    assert main(["run", "-c", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "gateway.enterprise_id: required field is missing" in err and "Traceback" not in err


def test_a_missing_extra_is_named_with_no_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without influxdb-client (the 'cloud' extra) `edgegw ingest` says what to install."""
    import sys

    cloud = tmp_path / "cloud.yaml"
    cloud.write_text("mqtt: {url: mqtt://127.0.0.1:1}\n")
    for name in [m for m in sys.modules if m.startswith(("influxdb_client", "cloud_bridge.cloud.ingest"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "influxdb_client", None)  # import influxdb_client → ModuleNotFoundError
    assert main(["ingest", "-c", str(cloud)]) == 2
    err = capsys.readouterr().err
    assert "pip install 'edgegw[cloud]'" in err and "influxdb_client" in err


def test_buffer_commands_list_and_replay_dead_letters(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cloud_bridge.uplink.buffer import Buffer, Outgoing

    cfg = tmp_path / "gw.yaml"
    cfg.write_text(
        (DEPLOY / "gateway.example.yaml").read_text(encoding="utf-8").replace("./data", str(tmp_path / "data")),
        encoding="utf-8",
    )
    assert main(["buffer", "status", "-c", str(cfg)]) == 2, "no buffer yet"
    b = Buffer(tmp_path / "data" / "buffer.db")
    b.enqueue([Outgoing("data", "sf/v1/e/g/d/data", "d", b"{}", samples=1) for _ in range(2)])
    b.dead_letter([b.peek(1)[0].id], "broker rejected it: Not authorized")
    b.close()
    capsys.readouterr()
    assert main(["buffer", "dead-letters", "-c", str(cfg)]) == 0
    assert "seq=1" in capsys.readouterr().out
    assert main(["buffer", "dead-letters", "-c", str(cfg), "--replay", "x"]) == 2
    assert main(["buffer", "dead-letters", "-c", str(cfg), "--replay", "all"]) == 0
    assert "1 messages" in capsys.readouterr().out
    assert main(["buffer", "status", "-c", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "2 messages" in out and "0 (0 bytes" in out
