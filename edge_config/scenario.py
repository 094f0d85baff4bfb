"""Simulator scenarios: scripted timelines (a YAML file) and fault specs (`loom-02:offline@30s+20s`).

Pure notation and models; the simulators (`simulators.workshop`) play them. A timeline file:

    repeat: false                 # play again from the start at the end
    segments:                     # every device (unless it has its own list under `devices`)
      - {for: 20m, state: running, rate: 0.9}          # rate: share of the nominal production rate
      - {for: 90s, state: idle}                        # a micro-stop
      - {for: 30m, state: running, reject: 0.05}       # reject: share of production rejected
      - {for: 5m, state: setup, events: [counter_reset]}
      - {for: 1m, state: running, faults: [offline]}   # the device does not answer for that minute
    devices:
      filler-01: [{for: 1h, state: running}]

Durations are model time (a scenario run 480 times faster plays a 8 h shift in a minute).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from edge_config.durations import Duration, parse_duration
from edge_config.models import Frozen, Slug, StateName

FAULT_KINDS: dict[str, str] = {
    "offline": "the device answers nothing (a TCP device closes its port), then comes back",
    "slow": "answers come late: slow=DURATION (Modbus, DL/T 645)",
    "exception": "a Modbus exception at an address: exception=hr:5[:CODE] (DL/T 645: exception=DI)",
    "corrupt": "a share of the answers is garbled: corrupt[=SHARE] (default every answer)",
    "restart": "the OPC UA server restarts (down for the fault's +DURATION)",
    "counter_reset": "the counters go back to 0",
    "rollover": "the counters jump to just below their register's maximum and wrap",
    "skew": "the device's clock runs off: skew=90s or skew=-90s (OPC UA source timestamps, DL/T 645 clock)",
}
EVENT_KINDS = ("counter_reset", "rollover")  # faults that happen at an instant
_NEEDS_ARG = ("slow", "exception", "skew")
_SPEC = re.compile(r"^(?P<device>[^:@+]+):(?P<fault>[^@+]+?)(?:@(?P<at>[^+]+))?(?:\+(?P<for>.+))?$")


@dataclass(frozen=True, slots=True)
class Fault:
    """A fault kind and its argument as given (`slow`, `2s`)."""

    kind: str
    arg: str = ""

    def __str__(self) -> str:
        return f"{self.kind}={self.arg}" if self.arg else self.kind

    @property
    def seconds(self) -> float:
        """The argument as a duration (slow), signed for skew."""
        text = self.arg.strip()
        sign = -1.0 if text.startswith("-") else 1.0
        return sign * parse_duration(text.lstrip("+-"))

    @property
    def share(self) -> float:
        return float(self.arg) if self.arg else 1.0


def parse_fault(text: str) -> Fault:
    """`offline`, `slow=2s`, `exception=hr:5:2`, `corrupt=0.3`, `skew=-90s`; ValueError with the reason."""
    kind, _, arg = text.strip().partition("=")
    kind = kind.strip().replace("-", "_")
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault {kind!r} (one of {', '.join(FAULT_KINDS)})")
    fault = Fault(kind, arg.strip())
    if kind in _NEEDS_ARG and not fault.arg:
        raise ValueError(f"fault {kind} needs a value: {FAULT_KINDS[kind]}")
    if kind in ("slow", "skew"):
        try:
            fault.seconds  # noqa: B018 - validates
        except ValueError:
            raise ValueError(f"fault {kind}={fault.arg}: not a duration (use 2s, 500ms, -90s)") from None
    if kind == "corrupt" and fault.arg:
        try:
            ok = 0.0 < float(fault.arg) <= 1.0
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"fault corrupt={fault.arg}: the share of answers is a number in (0, 1]")
    if kind not in _NEEDS_ARG and kind != "corrupt" and fault.arg:
        raise ValueError(f"fault {kind} takes no value")
    return fault


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """A fault on a device from `at` seconds after the start, for `seconds` (None: to the end)."""

    device: str
    fault: Fault
    at: float = 0.0
    seconds: float | None = None


def parse_fault_spec(text: str) -> FaultSpec:
    """`DEVICE:FAULT[=ARG][@START][+DURATION]`, e.g. `loom-02:offline@30s+20s`, `reactor-01:skew=-90s`."""
    m = _SPEC.match(text.strip())
    if not m:
        raise ValueError(
            f"{text!r} is not a fault (DEVICE:FAULT[=VALUE][@START][+DURATION], e.g. loom-02:offline@30s+20s)"
        )
    fault = parse_fault(m.group("fault"))
    try:
        at = parse_duration(m.group("at")) if m.group("at") else 0.0
        seconds = parse_duration(m.group("for")) if m.group("for") else None
    except ValueError as exc:
        raise ValueError(f"{text!r}: {exc}") from None
    return FaultSpec(m.group("device").strip(), fault, at, seconds)


# ---------------------------------------------------------------- timeline files


class TimelineSegment(Frozen):
    """One interval of a scripted timeline (model time)."""

    seconds: Duration = Field(alias="for", description="how long: 90s, 20m, 1h")
    state: StateName
    rate: float = Field(1.0, ge=0, le=2, description="share of the nominal production rate while running")
    reject: float | None = Field(None, ge=0, le=1, description="share of the production rejected")
    events: list[Literal["counter_reset", "rollover"]] = Field(default_factory=list)
    faults: list[str] = Field(default_factory=list, description="faults during the interval: offline, slow=2s, …")

    @field_validator("seconds")
    @classmethod
    def _positive(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("must be above 0")
        return v

    @field_validator("faults")
    @classmethod
    def _check_faults(cls, v: list[str]) -> list[str]:
        for text in v:
            fault = parse_fault(text)
            if fault.kind in EVENT_KINDS:
                raise ValueError(f"{fault.kind} is an event: list it under events:")
        return v


class Timeline(Frozen):
    """A timeline file: segments every device plays, or its own under `devices`."""

    repeat: bool = False
    segments: list[TimelineSegment] = Field(default_factory=list)
    devices: dict[Slug, list[TimelineSegment]] = Field(default_factory=dict)

    def for_device(self, device_id: str) -> list[TimelineSegment]:
        return self.devices.get(device_id, self.segments)

    @property
    def length(self) -> float:
        return sum(s.seconds for s in self.segments)


def load_timeline(path: str | Path) -> Timeline:
    """Load a timeline file; ConfigError with `file:line: path: message` for every mistake."""
    from edge_config.loader import ConfigError, ConfigIssue, load_file

    tl = load_file(path, Timeline)
    if not tl.segments and not tl.devices:
        raise ConfigError([ConfigIssue(str(path), 1, "segments", "a timeline needs segments (or devices:)")])
    return tl
