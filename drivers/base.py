"""What every driver is and what it emits.

A driver never knows MQTT. It turns a device's registers or nodes into `Reading`s and reports
failures as quality and status, never by raising through the pipeline.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, Protocol, TypeVar, runtime_checkable

T = TypeVar("T")
Quality = Literal["good", "uncertain", "bad"]
RawValue = bool | int | float | str | None


class Reading(NamedTuple):
    """A decoded, unscaled value of one tag, as the device gave it.

    A NamedTuple: immutable, and cheap to build (drivers make one per tag per scan)."""

    tag: str
    value: RawValue
    ts: int  # UTC epoch ms when the value was read (or the source timestamp)
    quality: Quality = "good"
    error: str = ""  # why quality is not good, e.g. "exception 2 (illegal data address)"


@dataclass(frozen=True, slots=True)
class DriverStatus:
    online: bool
    reason: str = ""


class DriverError(Exception):
    """Raised by `connect`/`read` when the device cannot be reached at all (the whole device is down)."""


class NoAnswer(DriverError):
    """A request the device did not answer in time (`drivers.bus.BusClient.ask`)."""


class GarbledAnswer(DriverError):
    """A request the device answered garbled, and again when asked once more (`drivers.bus.BusClient.ask`):
    something is on the line, but that request's answer cannot be used."""


@runtime_checkable
class Driver(Protocol):
    """A polled device: `connect`, then `read` once per scan, `close` at the end.

    `read` returns one Reading per configured tag (bad quality for the tags it could not read)
    and raises DriverError only when the device as a whole does not answer.
    """

    device_id: str

    async def connect(self) -> None: ...

    async def read(self) -> Sequence[Reading]: ...

    async def close(self) -> None: ...


class TagSet:
    """Names of tags a driver reads together (a Modbus request's tags); a scan that reports only
    changes lists the sets it read, so the unchanged tags in them can still be heartbeat.

    `beat_due` belongs to the consumer (the normalizer): when, in epoch ms, a tag of the set may next
    need a heartbeat.
    """

    __slots__ = ("beat_due", "names")

    def __init__(self, names: Sequence[str]) -> None:
        self.names = tuple(names)
        self.beat_due = 0


@dataclass(slots=True)
class Changes:
    """One scan, reported by exception: the readings that differ (value or quality) from the driver's
    previous reading of the same tags, and what the scan covered.

    Every tag in `covered` was read at `ts`; those not in `readings` read the same as last time. The
    counts include the unchanged tags, so completeness statistics stay true.
    """

    readings: list[Reading]
    ts: int
    read: int = 0  # tags read in the scan, changed or not
    bad: int = 0  # of which not good
    covered: list[TagSet] = field(default_factory=list)


@runtime_checkable
class ChangeDriver(Protocol):
    """A polled driver that can report a scan by exception (`read_changes`); the poller prefers it.

    The first scan after `connect` reports every tag. `read` still returns every tag.
    """

    async def read_changes(self, groups: Sequence[int] | None = None) -> Changes: ...


Emit = Callable[[Sequence[Reading]], None]
StatusSink = Callable[[DriverStatus], None]


@runtime_checkable
class SubscribingDriver(Protocol):
    """A device that pushes values (OPC UA subscriptions): `start(emit, status)` then `stop()`.

    `start` connects and subscribes, and returns once values flow (or raises DriverError). From then
    on the driver calls `emit(readings)` with batches, and `status(DriverStatus(...))` when its state
    changes; an offline status means it has stopped delivering (session lost, subscription dead):
    the caller then calls `stop()` and, after a backoff, `start` again.
    """

    device_id: str

    async def start(self, emit: Emit, status: StatusSink | None = None) -> None: ...

    async def stop(self) -> None: ...


_SHARED: dict[tuple[type, object], object] = {}


def shared(value: T) -> T:
    """One object for equal scalars of one type (a tag's type name, unit, scale, heartbeat...), and the
    interned string for a name: per-tag state of 100,000 tags would otherwise hold 100,000 equal copies
    (each tag's model parsed its own). Not for values read from devices: those come and go."""
    if isinstance(value, str) and value.__class__ is str:
        return sys.intern(value)  # type: ignore[return-value]
    if value is None or value.__class__ is bool:
        return value
    return _SHARED.setdefault((value.__class__, value), value)  # type: ignore[return-value]


def without_tags(device: Any, keep: Collection[str] = ()) -> Any:
    """A validated device model (edge_config.models.*Device) without its tag list, but the tags named in
    `keep`: what a driver or the runtime keeps once the per-tag state is built. A tag model weighs about
    1 KB; 100,000 of them kept for the life of the process would be most of the agent's memory."""
    return device.model_copy(update={"tags": [t for t in device.tags if t.name in keep]})
