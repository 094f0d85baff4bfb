"""Normalization: a driver's raw `Reading` becomes a wire `Sample` (scale, offset, deadband, quality).

Pure logic, no I/O. `Normalizer` reports by exception: a tag's sample is sent when its quality
changes, when its value moves by the deadband (absolute, or percent of the last value sent) or, for
bools and strings, changes at all, and at least every heartbeat (the longest silence, per tag).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cloud_bridge.wire import Sample
from drivers.base import RawValue, Reading

DEFAULT_HEARTBEAT_S = 60.0


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
    if reading.value is None:
        return Sample(reading.tag, 0, reading.ts, "bad" if reading.quality == "good" else reading.quality)
    return Sample(reading.tag, scale_value(reading.value, spec), reading.ts, reading.quality)


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


class _TagState:
    __slots__ = ("heartbeat_ms", "quality", "raw", "sample", "spec")

    def __init__(self, spec: TagSpec, heartbeat_ms: int) -> None:
        self.spec = spec
        self.heartbeat_ms = heartbeat_ms
        self.raw: RawValue = None  # the last reading's value and quality, sent or not
        self.quality = ""
        self.sample: Sample | None = None  # the last sample sent


class Normalizer:
    """Turns each scan's readings into the samples worth publishing."""

    def __init__(self, specs: Iterable[TagSpec], heartbeat_s: float = DEFAULT_HEARTBEAT_S) -> None:
        self.specs = {s.name: s for s in specs}
        self.heartbeat_ms = int(heartbeat_s * 1000)
        self._tags = {name: _TagState(s, int((s.heartbeat_s or heartbeat_s) * 1000)) for name, s in self.specs.items()}

    def units(self) -> dict[str, str]:
        return {s.name: s.unit for s in self.specs.values() if s.unit}

    def apply(self, readings: Sequence[Reading]) -> list[Sample]:
        out: list[Sample] = []
        tags = self._tags
        for r in readings:
            t = tags.get(r.tag)
            if t is None:
                continue
            last = t.sample
            # the same raw value and quality as the last reading, and no heartbeat due: nothing to do
            if last is not None and r.value == t.raw and r.quality == t.quality and r.ts - last.ts < t.heartbeat_ms:
                continue
            t.raw, t.quality = r.value, r.quality
            spec = t.spec
            sample = to_sample(r, spec)
            if changed(sample, last, spec.deadband, t.heartbeat_ms, spec.deadband_percent):
                t.sample = sample
                out.append(sample)
        return out
