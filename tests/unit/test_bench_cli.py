"""A bench that cannot measure says why in one line and exits 1: no traceback (gateway/cli/bench.py)."""

from __future__ import annotations

import argparse

import pytest

from gateway.bench.servers import BenchFailed, MissingBinary
from gateway.cli.bench import later
from gateway.cli.main import build_parser


def _fails(args: argparse.Namespace) -> int:
    raise BenchFailed("mosquitto did not listen on 1883 within 5.0 s")


def _missing(args: argparse.Namespace) -> int:
    raise MissingBinary("/usr/bin/victoria-metrics not found: install the Debian package 'victoria-metrics'")


def _bug(args: argparse.Namespace) -> int:
    raise KeyError("a bug")


def test_a_failed_bench_is_one_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.Namespace(command="bench", bench_command="ingest")
    assert later(__name__, "_fails")(args) == 1
    assert capsys.readouterr().err == "edgegw bench ingest: mosquitto did not listen on 1883 within 5.0 s\n"
    assert later(__name__, "_missing")(args) == 1
    assert "install the Debian package 'victoria-metrics'" in capsys.readouterr().err


def test_a_bug_still_raises() -> None:
    with pytest.raises(KeyError):  # only a bench's own failure is turned into a message
        later(__name__, "_bug")(argparse.Namespace(command="bench", bench_command="ingest"))


BAD_OPTIONS = [
    (["ingest", "--messages", "0"], "--messages: 0 is out of range: 1…90,000"),
    (["ingest", "--messages", "100000"], "--messages: 100,000 is out of range: 1…90,000"),
    (["ingest", "--samples", "ten"], "--samples: 'ten' is not a whole number"),
    (["city", "--rate", "inf"], "--rate: inf is not a finite number"),
    (["city", "--seconds", "-1"], "--seconds: -1 must be 0 or more"),
    (["edge", "--devices", "0"], "--devices: 0 is out of range: at least 1"),
    (["edge", "--memory", "1000,abc"], "--memory: 'abc' is not a whole number"),
    (["edge", "--change", "0.1,2"], "--change: 2 is not a share: 0…1"),
    (["edge", "--registers", "70000"], "--registers: 70,000 is out of range: 1…65,536"),
    (["opcua", "--nodes", "0"], "--nodes: 0 is out of range: at least 1"),
    (["soak", "--hours", "-1"], "--hours: -1 must be more than 0"),
    (["soak", "--every", "nan"], "--every: nan is not a finite number"),
    (["buffer", "--scans", "0"], "--scans: 0 is out of range: at least 1"),
    (["simulators", "--seconds", "0"], "--seconds: 0 must be more than 0"),
    (["simulators", "--point-change", "1.5"], "--point-change: 1.5 is not a share: 0…1"),
    (["pipeline", "--devices", "0"], "--devices: 0 is out of range: at least 1"),
    (["modbus", "--change", "-0.1"], "--change: -0.1 is not a share: 0…1"),
    (["ledger-size", "--hours", "0"], "--hours: 0 is out of range: at least 1"),
]


@pytest.mark.parametrize(("argv", "why"), BAD_OPTIONS)
def test_bench_options_are_bounded_before_a_bench_runs(
    argv: list[str], why: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each of these ran before and ended in a traceback (a division by zero, an empty median, an index
    error, a simulator that never printed) or a hang; now argparse refuses them, naming the option."""
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["bench", *argv])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {why}" in err and "Traceback" not in err


def test_lists_are_bounded_too() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "edge", "--memory", ",".join(["1000"] * 101)])
    args = build_parser().parse_args(["bench", "edge", "--memory", "1000, 10000", "--change", "0,1"])
    assert (args.memory, args.change) == ("1000, 10000", "0,1")  # kept as written, for the bench to split
