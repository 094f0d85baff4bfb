"""The console's live values: every tag's last reading, as the device's normalizer holds it.

Nothing is kept for it on the scan path: the normalizer already keeps each tag's last raw value, quality
and read time (to report by exception); the engineering value is worked out when a page asks (`values`).
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.normalize import Normalizer


@dataclass(frozen=True)
class LiveValue:
    tag: str
    value: bool | int | float | str | None
    quality: str
    ts: int  # when the value last changed (or was last read bad)
    unit: str | None


class LiveValues:
    def __init__(self, normalizer: Normalizer) -> None:
        self.normalizer = normalizer

    def values(self) -> list[LiveValue]:
        """Every tag of the device in config order; one not read yet has no value and quality `none`."""
        return [LiveValue(*row) for row in self.normalizer.current()]
