"""Config for OEE and evidence: shift calendar, time zone, OEE settings, history, cloud enterprises —
every mistake names the file, the line and the field path."""

from __future__ import annotations

import pytest

from edge_config import ConfigError, load_text
from edge_config.models import CloudConfig, GatewayConfig

GOOD = """\
gateway: {id: gw-1, enterprise_id: ent-1}
timezone: Asia/Shanghai
shifts:
  - name: A
    start: 8:00
    end: "20:00"
    days: [mon, tue, wed, thu, fri]
    breaks:
      - {start: "12:00", end: "12:30", name: lunch}
  - name: B
    start: 20:00
    end: 08:00
    days: [mon, tue, wed, thu, fri]
    breaks:
      - {start: "23:30", end: "00:30"}
history: {snapshot_interval: 30s, local_interval: 5s, retention: 168h}
devices:
  - id: press-01
    driver: modbus_tcp
    connection: {host: 127.0.0.1, port: 5020}
    tags:
      - {name: run_state, address: "hr:0"}
      - {name: total, address: "hr:1", type: uint32}
      - {name: rejects, address: "hr:3"}
    oee:
      state_tag: run_state
      states: {running: [1], idle: [0], fault: [2, 5], setup: [3], planned_stop: [4]}
      total_count_tag: total
      reject_count_tag: rejects
      ideal_cycle_time: 1.5s
      micro_stop: 90s
      micro_stop_loss: availability
"""


def errors_of(text: str, model: type = GatewayConfig) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_text(text, model, "gateway.yaml")
    return [str(i) for i in info.value.issues]


def test_the_good_calendar() -> None:
    cfg = load_text(GOOD, GatewayConfig, "gateway.yaml")
    a, b = cfg.shifts
    assert (a.start, a.end, b.start, b.end) == ("08:00", "20:00", "20:00", "08:00")  # YAML's 8:00 is 480 min
    assert a.span == (480, 1200) and b.span == (1200, 1920)
    assert a.break_spans == ((720, 750),) and b.break_spans == ((1410, 1470),)
    assert a.weekdays == frozenset(range(5))
    assert cfg.history.snapshot_interval == 30 and cfg.history.retention == 168 * 3600
    oee = cfg.devices[0].oee
    assert oee is not None and oee.micro_stop_loss == "availability" and oee.micro_stop == 90


def test_defaults_one_24h_shift_in_shanghai() -> None:
    cfg = GatewayConfig.model_validate({"gateway": {"id": "g", "enterprise_id": "e"}})
    assert cfg.timezone == "Asia/Shanghai" and cfg.shifts == []
    assert cfg.history.snapshot_interval == 60 and cfg.history.local_interval == 10


def test_24h_shift_and_midnight_end() -> None:
    cfg = GatewayConfig.model_validate(
        {
            "gateway": {"id": "g", "enterprise_id": "e"},
            "shifts": [{"name": "all", "start": "00:00", "end": "00:00"}],
        }
    )
    assert cfg.shifts[0].span == (0, 1440)
    cfg = GatewayConfig.model_validate(
        {"gateway": {"id": "g", "enterprise_id": "e"}, "shifts": [{"name": "d", "start": "16:00", "end": "24:00"}]}
    )
    assert cfg.shifts[0].span == (960, 1440)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            '    end: "20:00"',
            '    end: "25:00"',
            "gateway.yaml:6: shifts[0].end: '25:00' is not a time of day (00:00 to 24:00)",
        ),
        (
            "    start: 8:00",
            "    start: 8h",
            "gateway.yaml:5: shifts[0].start: '8h' is not a time of day (use HH:MM, e.g. 08:00)",
        ),
        ("    start: 8:00", "    start: 24:00", "gateway.yaml:5: shifts[0].start: 24:00 is the end of a day"),
        (
            '{start: "12:00", end: "12:30", name: lunch}',
            '{start: "07:00", end: "07:30", name: lunch}',
            "gateway.yaml:9: shifts[0].breaks[0]: break 07:00-07:30 is not inside the shift 08:00-20:00",
        ),
        (
            "    end: 08:00",
            "    end: 09:00",
            "gateway.yaml:4: shifts[0]: shifts overlap: 'B' starting mon and 'A' starting tue",
        ),
        ("  - name: B", "  - name: A", "gateway.yaml:10: shifts[1].name: shift name 'A' appears twice"),
        (
            '    days: [mon, tue, wed, thu, fri]\n    breaks:\n      - {start: "12',
            '    days: [mon, tues]\n    breaks:\n      - {start: "12',
            "gateway.yaml:7: shifts[0].days[1]: 'tues': input should be",
        ),
        (
            "timezone: Asia/Shanghai",
            "timezone: China/Beijing",
            "gateway.yaml:2: timezone: 'China/Beijing' is not an IANA time zone",
        ),
        (
            "reject_count_tag: rejects",
            "reject_count_tag: rejects\n      good_count_tag: total",
            "gateway.yaml:29: devices[0].oee.reject_count_tag: give good_count_tag or reject_count_tag, not both",
        ),
        (
            "fault: [2, 5]",
            "fault: [2, 1]",
            "gateway.yaml:27: devices[0].oee.states.fault: value 1 is in both running and fault",
        ),
        ("states: {running: [1], ", "states: {", "gateway.yaml:27: devices[0].oee.states: states needs running"),
        (
            "ideal_cycle_time: 1.5s",
            "ideal_cycle_time: 0s",
            "gateway.yaml:30: devices[0].oee.ideal_cycle_time: ideal_cycle_time must be above 0",
        ),
        (
            "micro_stop_loss: availability",
            "micro_stop_loss: quality",
            "gateway.yaml:32: devices[0].oee.micro_stop_loss: 'quality': input should be",
        ),
        (
            "snapshot_interval: 30s",
            "snapshot_interval: 0s",
            "gateway.yaml:16: history.snapshot_interval: snapshot_interval must be above 0",
        ),
        (
            "snapshot_interval: 30s",
            "snapshot_interval: 10m",
            "gateway.yaml:16: history.snapshot_interval: snapshot_interval is at most 5m",
        ),
        (
            "reject_count_tag: rejects",
            "reject_count_tag: scrap",
            "gateway.yaml:29: devices[0].oee.reject_count_tag: 'scrap' is not a tag of this device",
        ),
    ],
)
def test_calendar_and_oee_errors(old: str, new: str, expected: str) -> None:
    assert old in GOOD
    errors = errors_of(GOOD.replace(old, new, 1))
    assert any(e.startswith(expected) for e in errors), errors


CLOUD = """\
ledger: {url: "sqlite:///./x.db"}
timezone: Asia/Shanghai
shifts:
  - {name: day, start: "08:00", end: "17:00", breaks: [{start: "12:00", end: "13:00"}]}
enterprises:
  - id: ent-0001
    name: 昌吉某纺织有限公司
    shifts:
      - {name: A, start: "08:00", end: "20:00"}
      - {name: B, start: "20:00", end: "08:00"}
  - id: ent-0002
    timezone: Asia/Urumqi
"""


def test_cloud_calendars_per_enterprise() -> None:
    cfg = load_text(CLOUD, CloudConfig, "cloud.yaml")
    tz, shifts = cfg.calendar("ent-0001")
    assert tz == "Asia/Shanghai" and [s.name for s in shifts] == ["A", "B"]
    tz, shifts = cfg.calendar("ent-0002")
    assert tz == "Asia/Urumqi" and [s.name for s in shifts] == ["day"]
    tz, shifts = cfg.calendar("unknown")
    assert tz == "Asia/Shanghai" and [s.name for s in shifts] == ["day"]
    assert cfg.enterprise("ent-0001") is not None and cfg.enterprise("ent-0001").name == "昌吉某纺织有限公司"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "  - id: ent-0002",
            "  - id: ent-0001",
            "cloud.yaml:11: enterprises[1].id: enterprise id 'ent-0001' appears twice",
        ),
        ('end: "08:00"}', 'end: "09:00"}', "cloud.yaml:9: enterprises[0].shifts[0]: shifts overlap"),
        (
            "timezone: Asia/Urumqi",
            "timezone: Urumqi",
            "cloud.yaml:12: enterprises[1].timezone: 'Urumqi' is not an IANA time zone",
        ),
    ],
)
def test_cloud_calendar_errors(old: str, new: str, expected: str) -> None:
    assert old in CLOUD
    errors = errors_of(CLOUD.replace(old, new, 1), CloudConfig)
    errors = [e.replace("gateway.yaml", "cloud.yaml") for e in errors]
    assert any(e.startswith(expected) for e in errors), errors
