"""`edgegw bench ingest`: the command is registered and the report reads right (no servers here;
the benchmark itself runs with `edgegw bench ingest`)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.bench.ingest import Spread, _bodies, _goal_met, _width, plain_payloads, report
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
            "messages_s": rate / 100,
            "cpu_us_per_message": 900.0,
            "samples": 500_000,
            "batches": 10,
            "shares": [500_000 // n] * n,
            "ingester_cpu_cores": [0.9 / n] * n,
            "mosquitto_cpu_cores": 0.01,
            "victoria_cpu_cores": 0.1,
        }

    return {
        "workload": {
            "messages": 5000,
            "samples_per_message": 100,
            "samples": 500_000,
            "gateways": 1,
            "devices": 20,
            "tags": 100,
            "ledger": "sqlite",
        },
        "machine": {"cpus": 2, "load_average": (0.5, 0.4, 0.3)},
        "floor": {"samples_s": 900_000.0},
        "core": {
            "samples_s": 140_000.0,
            "messages_s": 1_400.0,
            "cpu_us_per_message": 640.0,
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
    assert "112,000 samples/s, 1,120 messages/s" in text and "900 µs (ingester process)" in text
    assert "260 µs per message (process − core)" in text  # MQTT receive: process CPU less the core's
    assert "150,000 samples/s, 1,500 messages/s (×1.34)" in text and "250,000 / 250,000" in text
    assert "达到 / met" in text and "是 / yes" in text
    bad = report(result(80_000, 90_000, exactly_once=False))
    assert "未达到 / not met" in bad and "否 / NO" in bad
    # the values line up in one column on a terminal, CJK characters being two columns wide
    starts = {_width(line[: line.index(value)]) for line, value in zip(text.splitlines()[1:4], VALUES, strict=True)}
    assert len(starts) == 1


VALUES = ("5,000 messages", "2 CPUs", "900,000 samples/s")


def test_small_messages_meet_the_goal_by_messages() -> None:
    r = result(90_000, 95_000)
    r["one"]["messages_s"] = 10_500.0
    assert "达到 / met" in report({**r, "goal_met": _goal_met(r["one"])})
    r["one"]["messages_s"] = 9_000.0
    assert "未达到 / not met" in report({**r, "goal_met": _goal_met(r["one"])})


def test_a_profile_is_reported_per_step() -> None:
    steps = {"decode": 40.0, "trust": 30.0, "ledger": 120.0, "other": 10.0, "total": 200.0}
    text = report({**result(1, 1), "profile": {"breakdown_us_per_message": steps}})
    assert "decode 40, trust 30, ledger 120, other 10 (total 200, under cProfile)" in text


def test_the_spread_covers_gateways_devices_and_moving_tag_windows() -> None:
    spread = Spread(gateways=3, devices=2, tags=5)
    bodies = _bodies(12, 2, 1000, spread)
    assert list(bodies) == ["gw-bench-0000", "gw-bench-0001", "gw-bench-0002"]
    first = bodies["gw-bench-0000"]  # messages 0, 3, 6, 9: devices in turn, the tag window moving each round
    assert [dev for dev, _ in first] == ["dev-00", "dev-01", "dev-00", "dev-01"]
    tags = [[s["tag"] for s in json.loads(body)["samples"]] for _, body in first]
    assert tags == [["tag_000", "tag_001"], ["tag_000", "tag_001"], ["tag_002", "tag_003"], ["tag_002", "tag_003"]]
    plain = plain_payloads("ent-x", 6, 2, 1000, spread)
    assert [t.split("/")[3] for t, _ in plain[:3]] == ["gw-bench-0000", "gw-bench-0001", "gw-bench-0002"]
    with pytest.raises(ValueError, match="fewer than --samples"):
        Spread(tags=3).check(10)
    with pytest.raises(ValueError, match="at least 1"):
        Spread(gateways=0).check(10)


def test_bad_phases_or_spread_are_clear_errors(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["bench", "ingest", "--phases", "core,nope", "--samples", "10"])
    assert args.func(args) == 2
    assert "unknown phases ['nope']" in capsys.readouterr().err
    args = build_parser().parse_args(["bench", "ingest", "--samples", "10", "--tags", "5"])
    assert args.func(args) == 2
    assert "--tags 5 is fewer than --samples 10" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["", "gateway", "gateways,brokers", ","])
def test_bench_city_refuses_an_unknown_backlog(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.bench.city import cmd_city_bench

    args = build_parser().parse_args(["bench", "city", "--backlog", bad])
    assert cmd_city_bench(args) == 2  # before any server starts
    assert "--backlog" in capsys.readouterr().err
