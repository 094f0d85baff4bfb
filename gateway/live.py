"""The last reading of every tag, kept for the console's live values.

Sits between a device's channel and its OEE tracker (`ChannelObserver`): one dict assignment per reading
handed over (a Modbus scan hands over only the tags that changed), nothing else on the scan path; the
engineering value is worked out when a page asks (`values`), with the normalizer's own `to_sample`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from drivers.base import Reading
from gateway.channel import ChannelObserver
from gateway.normalize import TagSpec, to_sample


@dataclass(frozen=True)
class LiveValue:
    tag: str
    value: bool | int | float | str | None
    quality: str
    ts: int  # when the value last changed (or was last read bad)
    unit: str | None


class LiveValues:
    def __init__(self, inner: ChannelObserver, specs: Sequence[TagSpec]) -> None:
        self.inner = inner
        self.specs = {s.name: s for s in specs}
        self.last: dict[str, Reading] = {}

    def on_online(self, online: bool, ts: int, reason: str) -> None:
        self.inner.on_online(online, ts, reason)

    def on_scan(self, readings: Sequence[Reading], ts: int, read: int, good: int) -> None:
        last = self.last
        for r in readings:
            last[r.tag] = r
        self.inner.on_scan(readings, ts, read, good)

    def values(self) -> list[LiveValue]:
        """Every tag of the device in config order; one not read yet has no value and quality `none`."""
        out = []
        for name, spec in self.specs.items():
            r = self.last.get(name)
            if r is None:
                out.append(LiveValue(name, None, "none", 0, spec.unit))
                continue
            s = to_sample(r, spec)
            out.append(LiveValue(name, None if s.q == "bad" else s.v, s.q, s.ts, spec.unit))
        return out
