"""The edge API's OEE endpoint over the gateway's own history: numbers, the default window (current shift),
and errors with reasons."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient

from cloud_bridge.metrics.calendar import local_ms
from edge_config.models import GatewayConfig
from gateway.api.app import create_app
from gateway.oee.history import OeeHistory
from gateway.users import UserStore
from simulators.scripted import scripted_device_config

TZ = "Asia/Shanghai"
T0 = local_ms(date(2024, 5, 1), 0, TZ)
H = 3_600_000


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    meter = scripted_device_config("meter-01", "127.0.0.1", 5021, ideal_cycle_time=1.0)
    meter.pop("oee")
    cfg = GatewayConfig.model_validate(
        {
            "gateway": {"id": "gw-1", "enterprise_id": "ent-1", "data_dir": str(tmp_path)},
            "shifts": [
                {"name": "A", "start": "08:00", "end": "16:00"},
                {"name": "B", "start": "16:00", "end": "08:00"},
            ],
            "devices": [scripted_device_config("press-01", "127.0.0.1", 5020, ideal_cycle_time=0.5), meter],
        }
    )
    history = OeeHistory(tmp_path / "oee_history.db")
    history.record_online("press-01", T0 + 7 * H, True, "ok")
    history.record_state("press-01", T0 + 8 * H, "running")
    history.record_state("press-01", T0 + 10 * H, "fault")
    history.record_state("press-01", T0 + 11 * H, "running")
    history.record_counts("press-01", T0 + 8 * H, 1000, None, 0)
    history.record_counts("press-01", T0 + 12 * H, 1000 + 21_600, None, 216)
    users = UserStore(tmp_path / "users.json")
    users.add("viewer", "viewer", "pw")
    token = users.add_token("viewer")
    agent = SimpleNamespace(config=cfg, runtime=SimpleNamespace(trackers={}, history=history, devices={}), users=users)
    with TestClient(create_app(agent), headers={"Authorization": f"Bearer {token}"}) as c:  # type: ignore[arg-type]
        yield c
    history.close()


def test_oee_for_a_window(client: TestClient) -> None:
    r = client.get(
        "/api/v1/metrics/oee", params={"device": "press-01", "from": "2024-05-01T08:00", "to": "2024-05-01T12:00"}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    # 4 h planned busy, 1 h fault: A = 0.75; 21 600 parts in 3 h at 0.5 s ideal: P = 1; 1 % rejects
    assert body["availability"] == pytest.approx(0.75)
    assert body["performance"] == pytest.approx(1.0)
    assert body["quality"] == pytest.approx(0.99)
    assert body["oee"] == pytest.approx(0.7425)
    assert body["time_s"]["fault"] == 3600 and body["losses_s"]["fault"] == 3600
    assert body["from"] == "2024-05-01T08:00:00+08:00" and body["to"] == "2024-05-01T12:00:00+08:00"
    assert [s["shift"] for s in body["shifts"]] == ["A"]
    assert body["micro_stop_loss"] == "performance" and body["gateway"] == "gw-1"


def test_default_window_is_the_current_shift(client: TestClient) -> None:
    r = client.get("/api/v1/metrics/oee", params={"device": "press-01"})
    assert r.status_code == 200, r.text
    assert r.json()["shift"].split()[-1] in ("A", "B")


@pytest.mark.parametrize(
    ("params", "status", "reason"),
    [
        ({"device": "nope"}, 404, "no device 'nope'"),
        ({"device": "meter-01"}, 404, "has no oee: settings"),
        ({"device": "press-01", "from": "yesterday"}, 422, "bad window: 'yesterday' is not a date"),
        (
            {"device": "press-01", "from": "2024-05-02", "to": "2024-05-01T12:00"},
            422,
            "bad window: the window must end",
        ),
        ({}, 422, "device"),
    ],
)
def test_errors_have_reasons(client: TestClient, params: dict[str, str], status: int, reason: str) -> None:
    r = client.get("/api/v1/metrics/oee", params=params)
    assert r.status_code == status
    assert reason in r.text


def test_demo_summary_lines_show_live_oee(tmp_path: Path) -> None:
    from gateway.cli.demo import oee_lines

    cfg = GatewayConfig.model_validate(
        {
            "gateway": {"id": "gw-1", "enterprise_id": "ent-1", "data_dir": str(tmp_path)},
            "shifts": [{"name": "A", "start": "08:00", "end": "16:00"}],
            "devices": [scripted_device_config("press-01", "127.0.0.1", 5020, ideal_cycle_time=0.5)],
        }
    )
    h = OeeHistory(tmp_path / "oee_history.db")
    h.record_online("press-01", T0 + 8 * H, True, "ok")
    h.record_state("press-01", T0 + 8 * H, "running")
    h.record_state("press-01", T0 + 9 * H, "fault")
    h.record_state("press-01", T0 + 10 * H, "running")
    h.record_counts("press-01", T0 + 8 * H, 0, None, 0)
    h.record_counts("press-01", T0 + 12 * H, 21_600, None, 216)
    h.touch(T0 + 12 * H, force=True)  # the gateway stopped at noon
    h.close()
    agent = SimpleNamespace(config=cfg, runtime=SimpleNamespace(trackers={}))
    lines = oee_lines(agent, now_ms=T0 + 13 * H)  # type: ignore[arg-type]
    assert lines[0].endswith("current shift 2024-05-01 A (so far):")
    assert lines[1].startswith("  - press-01: A  75.0%  P 100.0%  Q  99.0%  OEE  74.2%")


def test_a_damaged_history_file_is_moved_aside_and_rebuilt(tmp_path: Path) -> None:
    path = tmp_path / "oee_history.db"
    path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4096)  # a header, then garbage: cannot be opened
    h = OeeHistory(path)
    assert h.moved_aside is not None and h.moved_aside.exists()
    h.record_state("loom-01", 1000, "running")
    assert h.window("loom-01", 0, 2000).states == [(1000, "running")]
    h.close()
    assert OeeHistory(path).moved_aside is None, "the rebuilt file opens cleanly next time"


@pytest.mark.parametrize(
    ("start", "why"),
    [
        ("1900-01-01", "out of range"),
        ("0001-01-01", "out of range"),
        ("9999-12-31T23:59", "out of range"),
        ("99999999999999999999", "out of range"),
        ("2001-01-01", "at most 31 days"),
    ],
)
def test_windows_out_of_range_or_too_long_are_refused_with_a_reason(client: TestClient, start: str, why: str) -> None:
    r = client.get("/api/v1/metrics/oee", params={"device": "press-01", "from": start})
    assert r.status_code == 422 and why in r.json()["detail"], r.text
