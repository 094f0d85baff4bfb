"""Normalization: a driver's raw `Reading` becomes a wire `Sample` (scale, offset, deadband, quality).

Pure logic, no I/O. `Normalizer` keeps the last reported value per tag for report-by-exception.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cloud_bridge.wire import Sample
from drivers.base import Reading

DEFAULT_HEARTBEAT_S = 60.0


@dataclass(frozen=True, slots=True)
class TagSpec:
    name: str
    type: str | None
    scale: float = 1.0
    offset: float = 0.0
    unit: str | None = None
    deadband: float | None = None


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


def changed(new: Sample, last: Sample | None, deadband: float | None, heartbeat_ms: int) -> bool:
    """Report-by-exception: is `new` worth sending given the last sample sent for the tag?"""
    if last is None or new.q != last.q or new.ts - last.ts >= heartbeat_ms:
        return True
    if isinstance(new.v, bool) or isinstance(last.v, bool) or isinstance(new.v, str) or isinstance(last.v, str):
        return new.v != last.v
    if not deadband:
        return new.v != last.v
    return abs(new.v - last.v) >= deadband


class Normalizer:
    """Turns each scan's readings into the samples worth publishing."""

    def __init__(self, specs: Iterable[TagSpec], heartbeat_s: float = DEFAULT_HEARTBEAT_S) -> None:
        self.specs = {s.name: s for s in specs}
        self.heartbeat_ms = int(heartbeat_s * 1000)
        self._last: dict[str, Sample] = {}

    def units(self) -> dict[str, str]:
        return {s.name: s.unit for s in self.specs.values() if s.unit}

    def apply(self, readings: Sequence[Reading]) -> list[Sample]:
        out: list[Sample] = []
        for r in readings:
            spec = self.specs.get(r.tag)
            if spec is None:
                continue
            sample = to_sample(r, spec)
            if changed(sample, self._last.get(r.tag), spec.deadband, self.heartbeat_ms):
                self._last[r.tag] = sample
                out.append(sample)
        return out
