"""The zh-CN / English labels: one table, and it names everything the metrics can report."""

from __future__ import annotations

import ast
import inspect
import typing

import pytest

from cloud_bridge.metrics import DEFAULT_AREAS, TaggedDevice, area_coverage, evidence, oee
from cloud_bridge.metrics.labels import (
    COLLECTION_AREAS,
    DOMAIN_AREAS,
    FLAGS,
    GROUPS,
    NOT_NETWORKED,
    STATES,
    Label,
    label,
)
from cloud_bridge.metrics.timeline import ALL_STATES
from edge_config.models import Domain


def test_every_state_has_a_label() -> None:
    assert set(STATES) == {*ALL_STATES, "micro_stops"}


def test_every_flag_the_oee_maths_raises_has_a_label() -> None:
    raised = {
        node.args[0].value
        for node in ast.walk(ast.parse(inspect.getsource(oee)))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "append"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "flags"
        and isinstance(node.args[0], ast.Constant)
    }
    assert len(raised) >= 10 and raised == set(FLAGS)


def test_every_tag_domain_has_a_business_area() -> None:
    assert set(typing.get_args(Domain)) == set(DOMAIN_AREAS) <= set(COLLECTION_AREAS)


def test_the_indicators_fourteen_business_areas_in_their_order() -> None:
    """The 2024 manufacturing sheet's 数据采集 item: 无 and these 14 (labels.COLLECTION_AREAS_SOURCE)."""
    assert [lb.zh for lb in COLLECTION_AREAS.values()] == [
        "产品设计", "工艺设计", "营销管理", "售后服务", "计划排程", "生产管控", "质量管理",
        "设备管理", "安全生产", "能耗管理", "采购管理", "仓储物流", "财务管理", "人力资源",
    ]  # fmt: skip
    assert [s.key for s in DEFAULT_AREAS] == list(COLLECTION_AREAS)
    covered = area_coverage(
        DEFAULT_AREAS,
        [
            TaggedDevice("loom-1", [("picks", "production"), ("kwh", "energy"), ("x", None)], True, True),
            TaggedDevice("meter-9", [("kwh", "energy")], True, False),
            TaggedDevice("press-2", [("temp", "quality")], False, False),
        ],
    )
    by_key = {c.spec.key: c for c in covered}
    assert len(covered) == 14 and by_key["production"].counted and by_key["production"].tags == ("loom-1/picks",)
    assert (
        by_key["energy"].devices == ("loom-1", "meter-9")
        and by_key["energy"].devices_with_data == by_key["energy"].devices
    )
    assert by_key["quality"].tags and not by_key["quality"].devices_with_data and not by_key["quality"].counted
    assert not by_key["finance"].tags and not by_key["finance"].counted


def test_every_reason_a_device_is_not_networked_has_a_label() -> None:
    reasons = {evidence.NO_GOOD_DATA, evidence.ONLINE_BELOW, evidence.COMPLETENESS_BELOW}
    assert reasons == set(NOT_NETWORKED)


def test_labels_are_whole() -> None:
    for group, table in GROUPS.items():
        for name, lb in table.items():
            assert isinstance(lb, Label) and lb.zh.strip() and lb.en.strip(), f"{group}.{name}"


def test_lookup() -> None:
    assert label("state.planned_stop") == ("计划停机", "planned stop")
    assert str(label("state.running")) == "运行 / running"
    assert label("text.note.online_rate").format(devices=2).en.endswith("2 connected devices")
    with pytest.raises(KeyError):
        label("flag.from_the_future")
    with pytest.raises(KeyError):
        label("nogroup.running")
    assert label("flag.from_the_future", strict=False) == ("from_the_future", "from_the_future")
