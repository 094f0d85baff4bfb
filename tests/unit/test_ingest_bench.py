"""`edgegw bench ingest`: the command is registered and the report reads right (no servers here;
the benchmark itself runs with `edgegw bench ingest`)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.bench.ingest import _width, report
from gateway.cli import build_parser


def test_bench_ingest_is_a_command() -> None:
    args = build_parser().parse_args(["bench", "ingest", "--messages", "100", "--samples", "10", "--json", "x.json"])
    assert (args.messages, args.samples, args.json) == (100, 10, "x.json")
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["bench", "ingest", "--help"])
    assert e.value.code == 0


def result(one: float, two: float, exactly_once: bool = True) -> dict[str, Any]:
    def run(rate: float, n: int) -> dict[str, Any]:
        return {
            "samples_s": rate,
            "samples": 500_000,
            "batches": 10,
            "shares": [500_000 // n] * n,
            "ingester_cpu_cores": [0.9 / n] * n,
            "mosquitto_cpu_cores": 0.01,
            "victoria_cpu_cores": 0.1,
        }

    return {
        "workload": {"messages": 5000, "samples_per_message": 100, "samples": 500_000},
        "machine": {"cpus": 2, "load_average": (0.5, 0.4, 0.3)},
        "floor": {"samples_s": 900_000.0},
        "core": {
            "samples_s": 140_000.0,
            "trust_overhead": 0.05,
            "cpu_us_per_sample": 6.3,
            "unchained_cpu_us_per_sample": 6.0,
        },
        "one": run(one, 1),
        "two": run(two, 2),
        "gain_two_over_one": two / one,
        "goal_met": one >= 100_000,
        "exactly_once": exactly_once,
    }


def test_report_is_bilingual_and_honest_about_the_goal() -> None:
    text = report(result(112_000, 150_000))
    assert "单入库进程 / one ingester" in text and "112,000 samples/s" in text
    assert "150,000 samples/s (×1.34)" in text and "250,000 / 250,000" in text
    assert "达到 / met" in text and "是 / yes" in text
    bad = report(result(80_000, 90_000, exactly_once=False))
    assert "未达到 / not met" in bad and "否 / NO" in bad
    # the values line up in one column on a terminal, CJK characters being two columns wide
    starts = {_width(line[: line.index(value)]) for line, value in zip(text.splitlines()[1:4], VALUES, strict=True)}
    assert len(starts) == 1


VALUES = ("5,000 messages", "2 CPUs", "900,000 samples/s")
