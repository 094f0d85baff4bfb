"""Normalization: a driver's raw `Reading` becomes a wire `Sample` (scale, offset, deadband, quality).

Pure logic, no I/O. `Normalizer` reports by exception: a tag's sample is sent when its quality
changes, when its value moves by the deadband (absolute, or percent of the last value sent) or, for
bools and strings, changes at all, and at least every heartbeat (the longest silence, per tag).
A driver that itself reports only changed tags (`drivers.base.Changes`) gets its heartbeats from
`beat`, which looks at the tags the scan read but did not hand over.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cloud_bridge.wire.codec import Sample, wire_text
from drivers.base import Quality, RawValue, Reading, TagSet, shared

Value = bool | int | float | str

DEFAULT_HEARTBEAT_S = 60.0
_AS_IS = (bool, str)  # values that are neither scaled nor compared by deadband


@dataclass(frozen=True, slots=True)
class TagSpec:
    name: str
    type: str | None
    scale: float = 1.0
    offset: float = 0.0
    unit: str | None = None
    deadband: float | None = None  # absolute, in engineering units
    deadband_percent: float | None = None  # of the last value sent
    heartbeat_s: float | None = None  # longest silence; None: the normalizer's default


def scale_value(raw: bool | int | float | str, spec: TagSpec) -> bool | int | float | str:
    """Engineering value = raw × scale + offset; bools and strings pass through untouched."""
    if isinstance(raw, bool | str):
        return raw
    if spec.type == "float32" and isinstance(raw, float):
        raw = float(f"{raw:.7g}")  # a float32 carries about 7 significant digits; don't invent more
    if spec.scale == 1.0 and spec.offset == 0.0:
        return raw
    value = raw * spec.scale + spec.offset
    return float(f"{value:.12g}")  # drop binary noise such as 900.1000000000001


def to_sample(reading: Reading, spec: TagSpec) -> Sample:
    """The sample of a reading. No value, or a value that is not a finite number (a float register
    holding NaN, as many meters do for "not available"), is a bad sample with the placeholder 0.
    Text is cut at a NUL and made valid for the wire (`wire_text`); text too long for it is bad."""
    if reading.value is None:
        return Sample(reading.tag, 0, reading.ts, "bad" if reading.quality == "good" else reading.quality)
    v = scale_value(reading.value, spec)
    if isinstance(v, float) and not math.isfinite(v):
        return Sample(reading.tag, 0, reading.ts, "bad")
    if isinstance(v, str):
        text = wire_text(v)
        return (
            Sample(reading.tag, 0, reading.ts, "bad")
            if text is None
            else Sample(reading.tag, text, reading.ts, reading.quality)
        )
    return Sample(reading.tag, v, reading.ts, reading.quality)


def changed(
    new: Sample,
    last: Sample | None,
    deadband: float | None,
    heartbeat_ms: int,
    deadband_percent: float | None = None,
) -> bool:
    """Report-by-exception: is `new` worth sending given the last sample sent for the tag?"""
    if last is None or new.q != last.q or new.ts - last.ts >= heartbeat_ms:
        return True
    a, b = new.v, last.v
    if isinstance(a, bool | str) or isinstance(b, bool | str):
        return a != b
    if math.isnan(a) or math.isnan(b):
        return not (math.isnan(a) and math.isnan(b))
    diff = abs(a - b)
    if diff == 0:
        return False
    if deadband:
        return diff >= deadband
    if deadband_percent:
        return diff >= abs(b) * deadband_percent / 100.0
    return True


make_sample = Sample  # a NamedTuple: built directly, cheaply


class _TagState:
    __slots__ = ("deadband", "float32", "heartbeat_ms", "percent", "quality", "raw", "sample", "scaled", "spec", "ts")

    def __init__(self, spec: TagSpec, heartbeat_ms: int) -> None:
        self.spec = spec
        self.heartbeat_ms = shared(heartbeat_ms)
        self.float32 = spec.type == "float32"
        self.scaled = spec.scale != 1.0 or spec.offset != 0.0
        self.deadband = spec.deadband or 0.0
        self.percent = 0.0 if spec.deadband else (spec.deadband_percent or 0.0)
        self.raw: RawValue = None  # the last reading's value and quality, sent or not
        self.quality: Quality = "good"
        self.sample: Sample | None = None  # the last sample sent
        self.ts = 0  # when `raw` and `quality` were read (the last change, or heartbeat)


def _engineering(t: _TagState, raw: RawValue, q: Quality) -> tuple[Value, Quality]:
    """The engineering value and quality of a raw reading (as scale_value / to_sample)."""
    if raw is None:
        return 0, "bad" if q == "good" else q
    if raw.__class__ is str:
        text = wire_text(raw)
        return (0, "bad") if text is None else (text, q)
    if isinstance(raw, _AS_IS):
        return raw, q
    v = raw
    if t.float32 and isinstance(v, float):
        v = float(f"{v:.7g}")
    if t.scaled:
        v = float(f"{v * t.spec.scale + t.spec.offset:.12g}")
    if type(v) is float and not math.isfinite(v):
        return 0, "bad"  # NaN or infinity: no value (the wire and the stores carry finite numbers only)
    return v, q


class Normalizer:
    """Turns each scan's readings into the samples worth publishing.

    `apply` does what `to_sample` and `changed` say (tests hold it to them), with the per-tag facts
    worked out once and a sample made only when it is sent: it runs for every tag of every scan.
    """

    def __init__(self, specs: Iterable[TagSpec], heartbeat_s: float = DEFAULT_HEARTBEAT_S) -> None:
        self.specs = {s.name: s for s in specs}
        self.heartbeat_ms = int(heartbeat_s * 1000)
        self._tags = {n: _TagState(s, int((s.heartbeat_s or heartbeat_s) * 1000)) for n, s in self.specs.items()}

    def current(self) -> list[tuple[str, Value | None, str, int, str | None]]:
        """Every tag in config order as (name, engineering value, quality, ts, unit) from its last reading:
        quality `none` for a tag not read yet, value None when bad (the console's live values)."""
        out: list[tuple[str, Value | None, str, int, str | None]] = []
        for name, t in self._tags.items():
            if t.sample is None:  # the first reading of a tag is always sent
                out.append((name, None, "none", 0, t.spec.unit))
                continue
            v, q = _engineering(t, t.raw, t.quality)
            out.append((name, None if q == "bad" else v, q, t.ts, t.spec.unit))
        return out

    def units(self) -> dict[str, str]:
        return {s.name: s.unit for s in self.specs.values() if s.unit}

    def apply(self, readings: Sequence[Reading]) -> list[Sample]:
        out: list[Sample] = []
        tags = self._tags
        new = tuple.__new__
        for r in readings:
            t = tags.get(r.tag)
            if t is None:
                continue
            raw, q, ts, last = r.value, r.quality, r.ts, t.sample
            # the same raw value and quality as the last reading, and no heartbeat due: nothing to do
            if last is not None and raw == t.raw and q == t.quality and ts - last.ts < t.heartbeat_ms:
                continue
            t.raw, t.quality, t.ts = raw, q, ts
            v: Value
            if raw.__class__ is int and not t.scaled:
                v = raw  # the common case, as _engineering gives it
            else:
                v, q = _engineering(t, raw, q)
            # report by exception (as `changed`)
            if last is not None and q == last.q and ts - last.ts < t.heartbeat_ms:
                b = last.v
                if isinstance(v, _AS_IS) or isinstance(b, _AS_IS):
                    if v == b:
                        continue
                else:  # finite numbers: _engineering turns NaN and infinity into bad samples
                    diff = abs(v - b)
                    if diff == 0:
                        continue
                    if t.deadband:
                        if diff < t.deadband:
                            continue
                    elif t.percent and diff < abs(b) * t.percent / 100.0:
                        continue
            sample = new(Sample, (r.tag, v, ts, q))  # Sample(...) without its Python __new__
            t.sample = sample
            out.append(sample)
        return out

    def beat(self, ts: int, covered: Iterable[TagSet]) -> list[Sample]:
        """Heartbeats for a scan reported by exception (after `apply` of its changed readings).

        Every tag in `covered` was read at `ts` and, if not among the readings, read as before: those
        silent for most of their heartbeat are sent again with their current value. Heartbeats are
        gathered: a tag is re-sent up to a quarter of its heartbeat early, and a set of tags is looked
        at no more than once per quarter heartbeat, not on every scan. The longest silence stays below
        the heartbeat plus one scan interval, as with `apply`'s own check.
        """
        out: list[Sample] = []
        tags = self._tags
        for tagset in covered:
            if ts < tagset.beat_due:
                continue
            due = ts + self.heartbeat_ms  # the next look, at the latest
            quarter = self.heartbeat_ms // 4
            for name in tagset.names:
                t = tags.get(name)
                if t is None or t.sample is None:
                    continue  # never sent: its first reading sends it
                early = t.heartbeat_ms - t.heartbeat_ms // 4
                if ts - t.sample.ts >= early:
                    v, q = _engineering(t, t.raw, t.quality)
                    t.sample = make_sample(name, v, ts, q)
                    out.append(t.sample)
                due = min(due, t.sample.ts + early)
                quarter = min(quarter, t.heartbeat_ms // 4)
            # not before a quarter heartbeat: a tag due meanwhile waits at most that, within its heartbeat
            tagset.beat_due = max(due, ts + quarter)
        return out
