"""`edgegw bench soak`'s report: a run that read nothing gives no verdict (an idle agent is always flat)."""

from __future__ import annotations

from gateway.bench.soak import flatness, report


def result(samples_read: int) -> dict[str, object]:
    samples = [{"t_s": float(t), "rss_mb": 45.0, "fds": 16.0, "threads": 2.0, "cpu_s": 0.5} for t in range(20)]
    return {
        "settings": {"hours": 0.01, "every_s": 1, "poll": "100ms", "looms": 4, "broker_restart_s": 0},
        "broker_restarts": 0,
        "samples_read": samples_read,
        "samples_published": samples_read,
        "devices_online": 4 if samples_read else 0,
        "samples": samples,
        "verdict": flatness(samples),
        "workdir": "/tmp/w",
    }


def test_an_idle_run_gets_no_verdict() -> None:
    idle = report(result(0))
    assert "no sample read" in idle and "结论 / verdict" not in idle and "/tmp/w" in idle
    busy = report(result(1000))
    assert "结论 / verdict: 平稳 / flat" in busy and "no sample read" not in busy
