"""A bench that cannot measure says why in one line and exits 1: no traceback (gateway/cli/bench.py)."""

from __future__ import annotations

import argparse

import pytest

from gateway.bench.servers import BenchFailed, MissingBinary
from gateway.cli.bench import later


def _fails(args: argparse.Namespace) -> int:
    raise BenchFailed("mosquitto did not listen on 1883 within 5.0 s")


def _missing(args: argparse.Namespace) -> int:
    raise MissingBinary("/usr/bin/victoria-metrics not found: install the Debian package 'victoria-metrics'")


def _bug(args: argparse.Namespace) -> int:
    raise KeyError("a bug")


def test_a_failed_bench_is_one_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.Namespace(bench_command="ingest")
    assert later(__name__, "_fails")(args) == 1
    assert capsys.readouterr().err == "edgegw bench ingest: mosquitto did not listen on 1883 within 5.0 s\n"
    assert later(__name__, "_missing")(args) == 1
    assert "install the Debian package 'victoria-metrics'" in capsys.readouterr().err


def test_a_bug_still_raises() -> None:
    with pytest.raises(KeyError):  # only a bench's own failure is turned into a message
        later(__name__, "_bug")(argparse.Namespace(bench_command="ingest"))
