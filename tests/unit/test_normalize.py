"""Normalization: scale/offset, float32 precision, quality, deadband and heartbeat."""

from __future__ import annotations

import pytest

from cloud_bridge.wire import Sample
from drivers.base import Reading
from gateway.normalize import Normalizer, TagSpec, changed, scale_value, to_sample


@pytest.mark.parametrize(
    ("raw", "spec", "expected"),
    [
        (9001, TagSpec("speed", "uint16", scale=0.1), 900.1),
        (100, TagSpec("t", "int16", scale=0.5, offset=-10), 40.0),
        (7, TagSpec("n", "uint32"), 7),
        (123.45600128173828, TagSpec("e", "float32"), 123.456),
        (True, TagSpec("b", "bool", scale=10), True),
        ("AB", TagSpec("s", "string", scale=2), "AB"),
    ],
)
def test_scale_value(raw: int | float | bool | str, spec: TagSpec, expected: object) -> None:
    got = scale_value(raw, spec)
    assert got == expected and type(got) is type(expected)


def test_bad_reading_keeps_its_quality() -> None:
    s = to_sample(Reading("x", None, 5, "bad", "exception 2"), TagSpec("x", "uint16"))
    assert s == Sample("x", 0, 5, "bad")


def test_deadband_heartbeat_and_quality_change() -> None:
    last = Sample("x", 10.0, 0)
    assert not changed(Sample("x", 10.4, 1000), last, 0.5, 60_000)
    assert changed(Sample("x", 10.5, 1000), last, 0.5, 60_000)
    assert changed(Sample("x", 10.0, 60_000), last, 0.5, 60_000)  # heartbeat
    assert changed(Sample("x", 10.0, 1000, "uncertain"), last, 0.5, 60_000)
    assert not changed(Sample("x", 10.0, 1000), last, None, 60_000)
    assert changed(Sample("x", 10.1, 1000), last, None, 60_000)


def test_normalizer_reports_by_exception() -> None:
    n = Normalizer([TagSpec("a", "uint16", scale=0.1, unit="rpm", deadband=1.0), TagSpec("b", "uint16")])
    first = n.apply([Reading("a", 100, 0), Reading("b", 1, 0), Reading("unknown", 1, 0)])
    assert [s.tag for s in first] == ["a", "b"]
    assert n.apply([Reading("a", 105, 1000), Reading("b", 1, 1000)]) == []
    assert n.apply([Reading("a", 110, 2000), Reading("b", 2, 2000)]) == [
        Sample("a", 11.0, 2000),
        Sample("b", 2, 2000),
    ]
    assert n.units() == {"a": "rpm"}
