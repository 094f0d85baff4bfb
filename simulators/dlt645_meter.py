"""DL/T 645-2007 energy meters as slaves on a simulated serial line (`simulators.modbus_rtu`).

A meter answers read requests (control 0x11) for its address with the values of an energy meter
model (a machine's `EnergyMeter`: forward active energy, phase voltages and currents, active
power, power factor, frequency, its clock and address), an error answer (0xD1, "no data requested")
for a data item it does not have, and the broadcast address read (0x13) when it is alone on the
line. Answers start with two wake-up bytes (0xFE), as many meters send.

The frame handling here is written apart from the driver's (`drivers.dlt645.protocol`): the two do
not share a bug; both follow the hand-worked frames in the tests. Value encoding (BCD, formats) is
`edge_config.dlt645`'s, shared as the Modbus register codec is.

Faults per meter (`faults`): silent (a dead meter), a delay, garbled answers (a bad checksum), data
items refused with an error answer, a clock skew.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from edge_config.dlt645 import BROADCAST_ADDRESS, DATA_ITEMS, encode_value, parse_di
from simulators.faults import LineFaults

NO_DATA = 0x02  # error bit 1: no data requested (the meter has no such item)
ANSWER_WAKEUP = b"\xfe\xfe"


class MeterSource(Protocol):
    """What a meter shows: a machine (its `meter` and `clock_skew`), stepped to the line's clock."""

    clock_skew: float

    def step(self, now: float) -> None: ...


@dataclass
class MeterFaults(LineFaults):
    """A meter's faults: a garbled answer has a bad checksum; `exception=DI` refuses a data item."""

    refused: set[int] = field(default_factory=set)  # DIs answered with an error

    def refuse_text(self, arg: str) -> None:
        self.refused.add(parse_di(arg))

    def clear_refusals(self) -> None:
        self.refused.clear()


class SimMeter:
    """One meter: its address, where its values come from, its faults."""

    def __init__(self, address: str, source: Any, seed: int = 1) -> None:
        self.address = address
        self.source = source
        self.faults = MeterFaults()
        self.requests = 0
        self._rng = random.Random(seed)

    def garble(self) -> bool:
        return self.faults.corrupt > 0 and self._rng.random() < self.faults.corrupt

    def value(self, di: int) -> float | str | None:
        """The meter's value for a data item, None if it has no such item. A meter on a large load sits
        behind current transformers (the machine's `METER_CT`, e.g. 300 for 1500/5 A): it shows secondary
        currents, powers and energy, and the gateway multiplies them back (the tag's `scale`)."""
        m = self.source.meter
        ct = getattr(self.source, "METER_CT", 1)
        phase_v = m.voltage / math.sqrt(3)
        now = datetime.fromtimestamp(time.time() + self.source.clock_skew)
        energy = m.energy_kwh / ct % 1_000_000  # the register rolls over at 999999.99
        values: dict[int, float | str] = {
            0x00000000: energy,
            0x00010000: energy,
            0x00020000: 0.0,
            0x02010100: phase_v,
            0x02010200: phase_v * 1.002,
            0x02010300: phase_v * 0.998,
            0x02020100: m.current / ct,
            0x02020200: m.current / ct * 1.01,
            0x02020300: m.current / ct * 0.99,
            0x02030000: m.power_kw / ct,
            0x02060000: m.power_factor,
            0x02800002: m.frequency,
            0x04000101: f"{now:%Y-%m-%d}-{now.isoweekday() % 7}",
            0x04000102: f"{now:%H:%M:%S}",
            0x04000401: self.address,
        }
        return values.get(di)


def _sum(data: bytes) -> int:
    return sum(data) & 0xFF


def _frame(address: str, control: int, data: bytes) -> bytes:
    body = b"\x68" + bytes.fromhex(address)[::-1] + bytes((0x68, control, len(data)))
    body += bytes((b + 0x33) & 0xFF for b in data)
    return ANSWER_WAKEUP + body + bytes((_sum(body), 0x16))


def parse_request(frame: bytes) -> tuple[str, int, bytes] | None:
    """(address, control, data) of a request frame, None when it is not a well-formed one."""
    i = 0
    while i < len(frame) and frame[i] == 0xFE:
        i += 1
    f = frame[i:]
    if len(f) < 12 or f[0] != 0x68 or f[7] != 0x68 or f[-1] != 0x16 or len(f) != 12 + f[9]:
        return None
    if _sum(f[:-2]) != f[-2]:
        return None
    address = f[1:7][::-1].hex().upper()
    return address, f[8], bytes((b - 0x33) & 0xFF for b in f[10:-2])


class MeterLine:
    """The DL/T 645 meters on a serial line: which one answers a request, and what."""

    def __init__(self, meters: Mapping[str, Any], clock: Callable[[], float] = time.time) -> None:
        self.meters = {a: m if isinstance(m, SimMeter) else SimMeter(a, m, seed=i + 1)
                       for i, (a, m) in enumerate(meters.items())}  # fmt: skip
        self.clock = clock
        self.bad_frames = 0

    def answer(self, frame: bytes) -> tuple[bytes | None, float]:
        """The answer frame to a request (None: nobody answers) and the delay before it."""
        parsed = parse_request(frame)
        if parsed is None:
            self.bad_frames += 1
            return None, 0.0
        address, control, data = parsed
        if address == BROADCAST_ADDRESS:
            if control != 0x13 or len(self.meters) != 1:
                return None, 0.0  # several meters would all answer at once: nothing readable
            lone = next(iter(self.meters.values()))
            return self._send(lone, 0x93, bytes.fromhex(lone.address)[::-1])
        meter = self.meters.get(address)
        if meter is None:
            return None, 0.0
        meter.requests += 1
        if meter.faults.silent:
            return None, 0.0
        if control != 0x11 or len(data) != 4:
            return self._send(meter, 0xD1, bytes((0x01,)))  # other error
        di = int.from_bytes(data, "little")
        meter.source.step(self.clock())
        value = None if di in meter.faults.refused else meter.value(di)
        item = DATA_ITEMS.get(di)
        if value is None or item is None:
            return self._send(meter, 0xD1, bytes((NO_DATA,)))
        return self._send(meter, 0x91, data + encode_value(value, item.format))

    @staticmethod
    def _send(meter: SimMeter, control: int, data: bytes) -> tuple[bytes, float]:
        out = _frame(meter.address, control, data)
        if meter.garble():
            out = out[:-2] + bytes(((out[-2] + 1) & 0xFF,)) + out[-1:]  # a bad checksum
        return out, meter.faults.delay
