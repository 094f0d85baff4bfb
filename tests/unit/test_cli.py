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


# ---------------------------------------------------------------- simulate and demo: bad input, clear errors


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--protocol", "rtu"], "protocol rtu needs a serial port (--serial /dev/ttyUSB1, or --serial pty"),
        (["--devices", "two"], "--devices 'two': a number"),
        (["--devices", "0"], "devices must be 1 or more"),
        (["--speed", "0"], "--speed must be above 0"),
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
