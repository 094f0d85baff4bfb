"""The zh-CN / English labels: one table, and it names everything the metrics can report."""

from __future__ import annotations

import ast
import inspect
import typing

import pytest

from cloud_bridge.metrics import areas, oee
from cloud_bridge.metrics.labels import DOMAIN_AREAS, FLAGS, GROUPS, STATES, Label, label
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
    assert set(typing.get_args(Domain)) == set(DOMAIN_AREAS)
    assert areas(["energy", "production"]) == [
        {"domain": "production", "zh": "生产管控", "en": "production control"},
        {"domain": "energy", "zh": "能耗管理", "en": "energy management"},
    ]


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
