"""Subscription planning (pure): timing, poll groups, deadband filters, and the OPC UA config rules."""

from __future__ import annotations

from typing import Any

import pytest
from asyncua import ua

from drivers.opcua.driver import data_change_filter
from drivers.opcua.plan import chunks, make_plan, stale_after, subscription_timing
from edge_config import ConfigError, GatewayConfig, load_text
from edge_config.models import OpcUaDevice

# (publishing s, keepalive s) -> (publishing ms, keepalive count, lifetime count)
TIMING = [
    ((1.0, 5.0), (1000.0, 5, 20)),
    ((0.5, 5.0), (500.0, 10, 40)),
    ((0.1, 5.0), (100.0, 50, 200)),
    ((10.0, 5.0), (10000.0, 1, 4)),  # never fewer than one keep-alive per publish
    ((0.3, 1.0), (300.0, 4, 16)),  # rounded up: a keep-alive at most every 1.2 s
    ((0.0, 5.0), (1.0, 5000, 20000)),
]


@pytest.mark.parametrize(("given", "expected"), TIMING)
def test_subscription_timing(given: tuple[float, float], expected: tuple[float, int, int]) -> None:
    t = subscription_timing(*given)
    assert (t.publishing_ms, t.keepalive_count, t.lifetime_count) == expected
    assert t.lifetime_count >= 3 * t.keepalive_count  # OPC 10000-4 §5.13.2


@pytest.mark.parametrize(
    ("publishing_ms", "keepalive_count", "seconds"),
    [(1000.0, 5, 15.0), (100.0, 50, 15.0), (100.0, 1, 2.0), (500.0, 2, 3.0)],
)
def test_stale_after_is_three_keepalive_periods(publishing_ms: float, keepalive_count: int, seconds: float) -> None:
    assert stale_after(publishing_ms, keepalive_count) == seconds


def device(tags: list[dict[str, Any]], **conn: Any) -> OpcUaDevice:
    return OpcUaDevice.model_validate(
        {"id": "r1", "driver": "opcua", "poll_interval": "2s",
         "connection": {"endpoint": "opc.tcp://127.0.0.1:4840", **conn}, "tags": tags}
    )  # fmt: skip


def test_plan_splits_modes_and_groups_poll_intervals() -> None:
    dev = device(
        [
            {"name": "a", "node": "ns=2;s=A", "sampling_interval": "500ms", "deadband": 0.5},
            {"name": "b", "node": "ns=2;s=B", "eu_range_deadband": 2.0, "queue_size": 5},
            {"name": "c", "node": "ns=2;i=3", "mode": "poll"},
            {"name": "d", "node": "ns=2;i=4", "mode": "poll", "sampling_interval": "10s"},
            {"name": "e", "node": "ns=2;i=5", "mode": "poll"},
        ]
    )
    plan = make_plan(dev)
    assert [(m.tag.name, m.tag.index, m.sampling_ms, m.queue_size, m.deadband) for m in plan.monitored] == [
        ("a", 0, 500.0, 1, ("absolute", 0.5)),
        ("b", 1, 2000.0, 5, ("percent", 2.0)),
    ]
    assert [(g.interval, [t.name for t in g.tags]) for g in plan.poll_groups] == [(2.0, ["c", "e"]), (10.0, ["d"])]
    assert [t.name for t in plan.refs] == ["a", "b", "c", "d", "e"]  # one TagRef per tag, shared by both modes
    assert plan.monitored[0].tag is plan.refs[0] and plan.poll_groups[0].tags[0] is plan.refs[2]
    assert plan.timing is not None
    assert plan.timing.publishing_ms == 500.0  # the shortest sampling interval, unless configured


def test_subscribed_tags_with_the_same_settings_share_one_group() -> None:
    tags = [{"name": f"t{i}", "node": f"ns=2;i={i}"} for i in range(1000)]
    tags[500] = {"name": "slow", "node": "ns=2;i=500", "sampling_interval": "5s"}
    plan = make_plan(device(tags))
    assert [(g.sampling_ms, len(g.tags)) for g in plan.groups] == [(2000.0, 999), (5000.0, 1)]
    assert [m.tag.index for m in plan.monitored] == list(range(1000))  # the device's order, whatever the groups


def test_plan_without_subscribed_tags_has_no_subscription() -> None:
    plan = make_plan(device([{"name": "c", "node": "i=2258", "mode": "poll"}], publishing_interval="100ms"))
    assert plan.timing is None and not plan.monitored


def test_configured_publishing_interval_wins() -> None:
    plan = make_plan(device([{"name": "a", "node": "ns=2;s=A"}], publishing_interval="100ms", keepalive="2s"))
    assert plan.timing is not None
    assert (plan.timing.publishing_ms, plan.timing.keepalive_count) == (100.0, 20)


def test_data_change_filters() -> None:
    assert data_change_filter(None) is None
    absolute = data_change_filter(("absolute", 0.5))
    assert absolute is not None
    assert (absolute.DeadbandType, absolute.DeadbandValue) == (ua.DeadbandType.Absolute, 0.5)
    assert absolute.Trigger == ua.DataChangeTrigger.StatusValue
    percent = data_change_filter(("percent", 2.0))
    assert percent is not None
    assert (percent.DeadbandType, percent.DeadbandValue) == (ua.DeadbandType.Percent, 2.0)


def test_chunks() -> None:
    assert [list(c) for c in chunks([1, 2, 3, 4, 5], 2)] == [[1, 2], [3, 4], [5]]
    assert list(chunks([], 3)) == []


# config rules: (connection / tag overrides, path, message)
BAD = [
    ({"security_policy": "Basic256Sha256"}, "devices[0].connection.security_mode",
     "security_mode must be None with policy None, and Sign or SignAndEncrypt otherwise"),
    ({"security_mode": "Sign"}, "devices[0].connection.security_mode", "security_mode must be None with policy None"),
    ({"user_certificate": "u.der"}, "devices[0].connection.user_private_key",
     "user_certificate and user_private_key go together"),
    ({"user_certificate": "u.der", "user_private_key": "u.pem", "username": "x"},
     "devices[0].connection.user_certificate", "use either username/password or user_certificate"),
    ({"password": "x"}, "devices[0].connection.password", "password without username"),
    ({"endpoint": "http://plc"}, "devices[0].connection.endpoint", "is not an OPC UA endpoint"),
    ({"security_policy": "Basic128Rsa15", "security_mode": "Sign"}, "devices[0].connection.security_policy",
     "'Basic128Rsa15': input should be"),
]  # fmt: skip


@pytest.mark.parametrize(("override", "path", "message"), BAD)
def test_connection_rules(override: dict[str, str], path: str, message: str) -> None:
    conn = {"endpoint": "opc.tcp://127.0.0.1:4840", **override}
    text = "gateway: {id: g, enterprise_id: e}\ndevices:\n  - id: r1\n    driver: opcua\n"
    text += "    connection: " + repr(conn).replace("'", '"') + "\n"
    text += '    tags:\n      - {name: t, node: "ns=2;s=T"}\n'
    with pytest.raises(ConfigError) as err:
        load_text(text, GatewayConfig, "gateway.yaml")
    issue = err.value.issues[0]
    assert (issue.line, issue.path) == (5, path)
    assert message in issue.message


@pytest.mark.parametrize(
    ("tag", "message"),
    [
        ({"mode": "poll", "eu_range_deadband": 1.0}, "eu_range_deadband: only for mode subscribe"),
        ({"deadband": 1.0, "eu_range_deadband": 1.0}, "not together with deadband"),
        ({"eu_range_deadband": 150}, "less than or equal to 100"),
        ({"mode": "push"}, "Input should be 'subscribe' or 'poll'"),
    ],
)
def test_tag_rules(tag: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as err:
        device([{"name": "t", "node": "ns=2;s=T", **tag}])
    assert message in str(err.value)
