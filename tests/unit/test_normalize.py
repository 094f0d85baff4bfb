"""Normalization: scale/offset, float32 precision, quality, deadband and heartbeat."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud_bridge.wire.codec import Sample, decode_data, encode_data_body, envelope
from drivers.base import Reading, TagSet
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
    assert all(type(s) is Sample for s in first) and first[1] == Sample("b", 1, 0, "good")
    assert n.apply([Reading("a", 105, 1000), Reading("b", 1, 1000)]) == []
    assert n.apply([Reading("a", 110, 2000), Reading("b", 2, 2000)]) == [
        Sample("a", 11.0, 2000),
        Sample("b", 2, 2000),
    ]
    assert n.units() == {"a": "rpm"}


def test_percent_deadband_is_of_the_last_value_sent() -> None:
    last = Sample("x", 200.0, 0)
    assert not changed(Sample("x", 203.9, 1000), last, None, 60_000, deadband_percent=2.0)
    assert changed(Sample("x", 204.0, 1000), last, None, 60_000, deadband_percent=2.0)
    assert changed(Sample("x", 196.0, 1000), last, None, 60_000, deadband_percent=2.0)
    # from zero, any change is a change
    assert changed(Sample("x", 0.001, 1000), Sample("x", 0.0, 0), None, 60_000, deadband_percent=50.0)
    assert not changed(Sample("x", 0.0, 1000), Sample("x", 0.0, 0), None, 60_000, deadband_percent=50.0)


def test_nan_and_bools_and_strings() -> None:
    nan = float("nan")
    assert not changed(Sample("x", nan, 1), Sample("x", nan, 0), 1.0, 60_000)
    assert changed(Sample("x", 1.0, 1), Sample("x", nan, 0), 1.0, 60_000)
    assert changed(Sample("x", True, 1), Sample("x", False, 0), 5.0, 60_000)
    assert not changed(Sample("x", "A", 1), Sample("x", "A", 0), None, 60_000)


def test_heartbeat_per_tag() -> None:
    n = Normalizer([TagSpec("fast", "uint16", heartbeat_s=2.0), TagSpec("slow", "uint16")], heartbeat_s=10.0)
    sent = []
    for t in range(0, 12_001, 500):  # every 0.5 s for 12 s, values never change
        sent += [(s.tag, s.ts) for s in n.apply([Reading("fast", 1, t), Reading("slow", 1, t)])]
    assert [ts for tag, ts in sent if tag == "fast"] == [0, 2000, 4000, 6000, 8000, 10000, 12000]
    assert [ts for tag, ts in sent if tag == "slow"] == [0, 10000]


def test_deadband_measures_from_the_last_value_sent_not_the_last_read() -> None:
    # slow creep: each step is inside the deadband, the sum is not
    n = Normalizer([TagSpec("t", "uint16", scale=0.1, deadband=1.0)])
    sent = [s.v for i, raw in enumerate([100, 103, 106, 109, 112, 112, 115]) for s in n.apply([Reading("t", raw, i)])]
    assert sent == [10.0, 11.2]


def test_quality_changes_are_sent_at_once() -> None:
    n = Normalizer([TagSpec("t", "uint16", deadband=100.0)])
    assert [s.q for s in n.apply([Reading("t", 5, 0)])] == ["good"]
    assert [s.q for s in n.apply([Reading("t", None, 1, "bad", "exception 2")])] == ["bad"]
    assert n.apply([Reading("t", None, 2, "bad", "exception 2")]) == []
    assert [(s.v, s.q) for s in n.apply([Reading("t", 5, 3)])] == [(5, "good")]


SPECS = {
    "float64": TagSpec("t", "float64", scale=0.5),
    "float32": TagSpec("t", "float32"),
    "scaled_uint": TagSpec("t", "uint16", scale=0.1, offset=-5.0),
    "bool": TagSpec("t", "bool"),
    "string": TagSpec("t", "string"),
}
RAWS = {
    "float64": st.one_of(st.integers(0, 20).map(float), st.sampled_from([1.5, 2.5, float("nan")])),
    "float32": st.sampled_from([123.45600128173828, 123.456, 0.0, -2.5, float("nan")]),
    "scaled_uint": st.integers(0, 30),
    "bool": st.booleans(),
    "string": st.sampled_from(["", "A", "AB", "A\x00B", "A\ud800", "x" * 4097]),
}


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[TagSpec, list[tuple[object, int, str]]]:
    kind = draw(st.sampled_from(sorted(SPECS)))
    spec = SPECS[kind]
    deadband = draw(st.sampled_from([None, 0.0, 2.0]))
    percent = None if deadband else draw(st.sampled_from([None, 10.0]))
    spec = TagSpec(spec.name, spec.type, spec.scale, spec.offset, None, deadband, percent)
    raw = st.one_of(RAWS[kind], st.none())
    quality = st.sampled_from(["good", "good", "uncertain"])
    steps = draw(st.lists(st.tuples(raw, st.integers(0, 3_000), quality), max_size=40))
    return spec, steps


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_the_normalizer_does_what_to_sample_and_changed_say(
    scenario: tuple[TagSpec, list[tuple[object, int, str]]],
) -> None:
    """`apply` (inlined for speed) gives exactly what `to_sample` and `changed` give, tag kind by tag kind."""
    spec, steps = scenario
    n = Normalizer([spec], heartbeat_s=5.0)
    last: Sample | None = None
    ts = 0
    for raw, dt, q in steps:
        ts += dt
        r = Reading("t", raw, ts, q if raw is not None else "bad")  # type: ignore[arg-type]
        got = n.apply([r])
        sample = to_sample(r, spec)
        want = changed(sample, last, spec.deadband, 5000, spec.deadband_percent)
        if want:
            last = sample
        assert repr(got) == repr([sample] if want else []), (raw, ts)  # repr: nan == nan
        assert all(type(a.v) is type(b.v) for a, b in zip(got, [sample], strict=False))


def test_made_samples_are_ordinary_samples() -> None:
    from gateway.normalize import make_sample

    s = make_sample("t", 1.5, 7, "good")
    assert s == Sample("t", 1.5, 7, "good") and type(s) is Sample and hash(s) == hash(Sample("t", 1.5, 7))


def test_beat_heartbeats_the_unchanged_tags_a_scan_covered() -> None:
    n = Normalizer(
        [
            TagSpec("fast", "uint16", scale=0.1, heartbeat_s=2.0),
            TagSpec("slow", "uint16"),
            TagSpec("elsewhere", "uint16", heartbeat_s=1.0),  # in a poll group this scan did not read
        ],
        heartbeat_s=10.0,
    )
    covered = [TagSet(["fast", "slow"])]
    sent = n.apply([Reading("fast", 15, 0), Reading("slow", 1, 0), Reading("elsewhere", 2, 0)])
    sent += n.beat(0, covered)
    assert covered[0].beat_due == 1500  # nothing to look at before then
    for t in range(500, 12_001, 500):  # the values never change: the driver hands over no readings
        sent += n.beat(t, covered)
    # a quarter heartbeat early, so tags due about together go together and the set is looked at rarely
    assert [(s.ts, s.v) for s in sent if s.tag == "fast"] == [(t, 1.5) for t in range(0, 12_001, 1500)]
    assert [s.ts for s in sent if s.tag == "slow"] == [0, 7500]
    assert [s.ts for s in sent if s.tag == "elsewhere"] == [0]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 6), st.booleans()), min_size=1, max_size=60),
    st.sampled_from([None, 2.0]),
)
def test_changes_and_beats_send_every_change_and_keep_the_heartbeat(
    steps: list[tuple[int, bool]], deadband: float | None
) -> None:
    """A driver reporting by exception + `beat`: whatever `changed` says must go goes at once, every
    sample carries the current value, and no tag is silent for a heartbeat (scans every quarter)."""
    spec = TagSpec("t", "uint16", scale=0.5, deadband=deadband, heartbeat_s=4.0)
    n = Normalizer([spec])
    covered = [TagSet(["t"])]
    previous: tuple[object, str] | None = None
    last: Sample | None = None
    for i, (raw, bad) in enumerate(steps):
        ts = i * 1000
        reading = Reading("t", None, ts, "bad", "exception 4") if bad else Reading("t", raw, ts)
        handed = [reading] if (reading.value, reading.quality) != previous else []
        previous = (reading.value, reading.quality)
        out = n.apply(handed) + n.beat(ts, covered)
        now = to_sample(reading, spec)
        if changed(now, last, deadband, 4000):
            assert out == [now]
        assert all(s == now for s in out) and len(out) <= 1
        last = out[-1] if out else last
        assert last is not None and ts - last.ts < 4000


def test_nan_and_infinity_are_bad_samples_not_values() -> None:
    """Meters often answer NaN (0xFFFFFFFF) for "not available"; neither JSON nor the stores carry it."""
    n = Normalizer([TagSpec("p", "float32"), TagSpec("big", "float64", scale=1e300)])
    nan, inf = float("nan"), float("inf")
    assert n.apply([Reading("p", nan, 0), Reading("big", 1e300, 0)]) == [
        Sample("p", 0, 0, "bad"),
        Sample("big", 0, 0, "bad"),
    ]
    assert n.apply([Reading("p", nan, 1000), Reading("big", 1e300, 1000)]) == []  # still bad: nothing new
    assert n.apply([Reading("p", -inf, 2000)]) == []
    assert n.apply([Reading("p", 12.5, 3000)]) == [Sample("p", 12.5, 3000, "good")]
    assert to_sample(Reading("p", nan, 5), TagSpec("p", "float32")) == Sample("p", 0, 5, "bad")


def test_text_is_made_fit_for_the_wire() -> None:
    """A NUL or an unpaired surrogate would make the ingester refuse the whole message."""
    n = Normalizer([TagSpec("recipe", "string"), TagSpec("n", "uint16")])
    out = n.apply([Reading("recipe", "RECIPE-7\x00\x00\x03", 0), Reading("n", 1, 0)])
    assert out == [Sample("recipe", "RECIPE-7", 0), Sample("n", 1, 0)]
    msg = decode_data(envelope("gw-1", "dev-1", 1, False, encode_data_body(out)))  # the ingester takes it
    assert msg.samples == tuple(out)
    assert n.apply([Reading("recipe", "A\ud800", 1)]) == [Sample("recipe", "A\ufffd", 1)]
    assert n.apply([Reading("recipe", "x" * 5000, 2)]) == [Sample("recipe", 0, 2, "bad")]


def test_current_gives_each_tags_last_reading_as_the_console_shows_it() -> None:
    from gateway.live import LiveValue, LiveValues

    specs = [TagSpec("speed", "uint16", scale=0.1, unit="rpm", deadband=5.0), TagSpec("temp", "float32"),
             TagSpec("never", "uint16")]  # fmt: skip
    norm = Normalizer(specs)
    norm.apply([Reading("speed", 1000, 1_000), Reading("temp", None, 1_000, "bad", "timeout")])
    norm.apply([Reading("speed", 1010, 2_000)])  # within the deadband: not sent, but it is the last reading
    assert LiveValues(norm).values() == [
        LiveValue("speed", 101.0, "good", 2_000, "rpm"),
        LiveValue("temp", None, "bad", 1_000, None),
        LiveValue("never", None, "none", 0, None),
    ]
