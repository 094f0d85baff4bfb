"""The command line: exit codes and messages of `edgegw config ...`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.cli import main
from tests.ports import free_port

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


def test_an_unusable_data_dir_is_named_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A data_dir under a file (or where it cannot be made): `run` and `user add` name the path, exit 2 (both
    ended in a traceback: NotADirectoryError from the users file, FileNotFoundError from mkdir)."""
    (tmp_path / "a-file").write_text("")
    cfg = tmp_path / "gw.yaml"
    data_dir = tmp_path / "a-file" / "data"
    cfg.write_text(
        f"gateway: {{id: gw-1, enterprise_id: ent-1, data_dir: {data_dir}}}\n"
        "devices:\n  - {id: m1, name: m1, driver: modbus_tcp, connection: {host: 127.0.0.1, port: 1},"
        " tags: [{name: t, address: hr:0}]}\n",
        encoding="utf-8",
    )
    assert main(["run", "-c", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"edgegw run: {data_dir}") and "Not a directory" in err and "Traceback" not in err
    assert main(["user", "add", "bob", "--role", "admin", "--token", "-c", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"edgegw user: {data_dir}") and "Not a directory" in err


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
    for beyond in ("99999999999999999999999", "-5", "0"):  # the first raised OverflowError from SQLite
        assert main(["buffer", "dead-letters", "-c", str(cfg), "--replay", beyond]) == 2
        assert "--replay takes 'all' or ids like 3,7" in capsys.readouterr().err
    for argv in (["buffer", "dead-letters", "-c", str(cfg), "--limit", "0"], ["opcua", "browse", "x", "--depth", "-1"]):
        with pytest.raises(SystemExit):
            main(argv)
        assert "is out of range" in capsys.readouterr().err
    assert main(["buffer", "dead-letters", "-c", str(cfg), "--replay", "all"]) == 0
    assert "1 messages" in capsys.readouterr().out
    assert main(["buffer", "status", "-c", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "2 messages" in out and "0 (0 bytes" in out


# ---------------------------------------------------------------- simulate and demo: bad input, clear errors


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--protocol", "rtu"], "protocol rtu needs a serial port (--serial /dev/ttyUSB1, or --serial pty"),
        (["--devices", "two"], "--devices 'two': a number"),
        (["--devices", "0"], "devices must be 1 or more"),
        (["--industry", "power", "--port", "65535", "--devices", "3"], "6 Modbus TCP ports from 65535: beyond"),
        (["--industry", "all", "--protocol", "opcua", "--opcua-port", "65535", "--shards", "2"], "OPC UA ports from"),
        (["--meters"], "DL/T 645 meters are on a serial line: they need protocol rtu"),
        (["--fault", "loom-01:offlin"], "unknown fault 'offlin'"),
        (["--fault", "loom-09:offline"], "no device 'loom-09'"),
        (["--fault", "loom"], "'loom' is not a fault (DEVICE:FAULT[=VALUE][@START][+DURATION]"),
        (
            ["--industry", "chemicals", "--protocol", "opcua", "--fault", "reactor-01:slow=2s"],
            "reactor-01: fault slow is not possible over opcua",
        ),
        (["--fault", "loom-01:exception=xx:5"], "loom-01: 'xx' is not a Modbus address"),
    ],
)
def test_simulate_says_what_is_wrong(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--speed", "0"], "argument --speed: 0 must be more than 0"),
        (["--speed", "nan"], "argument --speed: nan is not a finite number"),  # was "cannot convert float NaN"
        (["--port", "70000"], "argument --port: 70,000 is out of range: 1…65,535"),  # was an OverflowError
        (["--point-change", "2"], "argument --point-change: 2 is not a share: 0…1"),  # was accepted
        (["--stats-every", "0"], "argument --stats-every: 0 must be more than 0"),
        (["--shards", "0"], "argument --shards: 0 is out of range: 1…64"),
        (["--seconds", "-5"], "argument --seconds: -5 must be more than 0"),
    ],
)
def test_simulate_options_are_bounded(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["simulate", *argv])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_simulate_refuses_an_unknown_industry(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["simulate", "--industry", "foo"])
    assert e.value.code == 2
    assert "invalid choice: 'foo'" in capsys.readouterr().err


def test_simulate_timeline_errors_name_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    timeline = tmp_path / "t.yaml"
    timeline.write_text("segments:\n  - {for: 10m, state: running}\n  - {for: 1m, state: broken}\n")
    assert main(["simulate", "--timeline", str(timeline)]) == 2
    assert f"{timeline}:3: segments[1].state: 'broken'" in capsys.readouterr().err


def test_demo_refuses_an_unknown_industry(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--industry", "mining", "--api", f"127.0.0.1:{free_port()}"]) == 2
    assert "unknown industry 'mining'" in capsys.readouterr().out


def test_a_fault_for_every_device_goes_to_those_that_can_show_it() -> None:
    from edge_config.scenario import parse_fault_spec
    from simulators.workshop import Workshop, WorkshopSpec

    ws = Workshop(WorkshopSpec(industry="all", faults=[parse_fault_spec("*:slow=1s@5s+10s")]))
    assert {d for _, d, _, _ in ws.schedule} == {d.id for d in ws.devices if d.protocol == "modbus"}
    assert all((at, str(f), s) == (5.0, "slow=1s", 10.0) for at, _, f, s in ws.schedule)


@pytest.mark.parametrize(
    "argv",
    [
        ["serve", "-c", "cloud.yaml", "--listen", "127.0.0.1:99999"],  # was an OverflowError from bind()
        ["serve", "-c", "cloud.yaml", "--listen", "abc"],
        ["ingest", "-c", "cloud.yaml", "--metrics-listen", "127.0.0.1:0"],
        ["demo", "--api", "bad"],  # was a ValueError from int()
        ["simulate", "--api", ":8080"],
    ],
)
def test_listen_addresses_are_checked_before_a_command_runs(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "is not host:port (a port 1…65535)" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "--seconds", "nan"], "argument --seconds: nan is not a finite number"),  # ran for ever
        (["demo", "--seconds", "-1"], "argument --seconds: -1 must be more than 0"),  # ran and stopped at once
        (["demo", "--looms", "0"], "argument --looms: 0 is out of range: at least 1"),
    ],
)
def test_demo_options_are_bounded(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_a_config_listen_address_has_the_same_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cloud = tmp_path / "cloud.yaml"
    cloud.write_text('api:\n  listen: "127.0.0.1:70000"\n', encoding="utf-8")
    assert main(["config", "validate", "--cloud", str(cloud)]) == 2
    err = capsys.readouterr().err
    assert "cloud.yaml:2: api.listen" in err and "is not host:port (a port 1…65535)" in err
