"""Modbus simulator: serves equipment models over Modbus TCP (and RTU, `simulators.modbus_rtu`).

An equipment model has a tag map in the config contract's format (`tags`: any types and byte
orders), raw register-level values by tag name (`raw_values()`) and `step(now)`. Each unit id
serves one model: before every request the model is stepped and the requested registers rendered
from its current values. Unmapped registers answer ILLEGAL DATA ADDRESS, as most PLCs do; coils
and discrete inputs read as 0 between the first and the last mapped bit.

Faults can be injected per unit while the server runs (`faults(unit)`): an exception at chosen
addresses, exceptions to the next few reads (`glitches`), a delay before answering, dropped answers,
a dead unit, a limit on the request size; the
TCP server can also drop every connection (`drop_connections`) or stop and start again on the same
port (a PLC power cycle).

The protocol code here is deliberately independent of `drivers/`: the driver and the simulator do
not share a bug, and both are also tested against pymodbus.
"""

from __future__ import annotations

import asyncio
import bisect
import random
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from edge_config.modbus import Table, parse_address
from edge_config.modbus_codec import encode
from edge_config.models import ModbusTag
from simulators.faults import LineFaults

RawValue = bool | int | float | str
Image = dict[Table, dict[int, int]]  # table -> address -> register value (0/1 for bit tables)

FUNCTION_TABLE = {1: Table.COIL, 2: Table.DISCRETE_INPUT, 3: Table.HOLDING_REGISTER, 4: Table.INPUT_REGISTER}
ILLEGAL_FUNCTION, ILLEGAL_ADDRESS, ILLEGAL_VALUE, GATEWAY_TARGET_FAILED = 1, 2, 3, 11


class EquipmentModel(Protocol):
    """What the simulator serves: a tag map and values that move with time."""

    @property
    def tags(self) -> Sequence[Mapping[str, Any]]: ...

    def step(self, now: float) -> None: ...

    def raw_values(self) -> Mapping[str, RawValue]: ...


class StaticModel:
    """Any register map with values set by hand (`values[name] = ...`); they change only when set."""

    def __init__(self, tags: Sequence[Mapping[str, Any]], values: Mapping[str, RawValue] | None = None) -> None:
        self._tags = [dict(t) for t in tags]
        self.values: dict[str, RawValue] = {t["name"]: _zero(t) for t in self._tags}
        self.values.update(values or {})

    @property
    def tags(self) -> Sequence[Mapping[str, Any]]:
        return self._tags

    def step(self, now: float) -> None:
        pass

    def raw_values(self) -> Mapping[str, RawValue]:
        return self.values


def _zero(tag: Mapping[str, Any]) -> RawValue:
    t = tag.get("type", "uint16")
    return False if t == "bool" else "" if t == "string" else 0.0 if t.startswith("float") else 0


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    table: Table
    offset: int
    count: int
    type: str
    byte_order: str
    bit: int | None
    length: int | None


class RegisterMap:
    """Where each tag of a tag map lives, and how to render values into registers."""

    def __init__(self, tags: Sequence[Mapping[str, Any]], byte_order: str = "ABCD") -> None:
        self.fields: dict[Table, list[_Field]] = {t: [] for t in Table}
        used: dict[Table, set[int]] = {t: set() for t in Table}
        for raw in tags:
            tag = ModbusTag.model_validate(dict(raw))
            addr = parse_address(tag.address)
            order = tag.byte_order or byte_order
            self.fields[addr.table].append(
                _Field(tag.name, addr.table, addr.offset, tag.register_count, tag.type, order, tag.bit, tag.length)
            )
            used[addr.table].update(range(addr.offset, addr.offset + tag.register_count))
        for fields in self.fields.values():
            fields.sort(key=lambda f: f.offset)
        self._starts = {t: [f.offset for f in fs] for t, fs in self.fields.items()}
        self._longest = {t: max((f.count for f in fs), default=1) for t, fs in self.fields.items()}
        # mapped addresses (registers, or bits), sorted, and as a mask for range checks
        self.addresses: dict[Table, list[int]] = {t: sorted(a) for t, a in used.items()}
        self._mask: dict[Table, bytearray] = {}
        for t, addrs in self.addresses.items():
            mask = bytearray(addrs[-1] + 1 if addrs else 0)
            if t.is_bit and addrs:
                # coil and input areas are whole: unmapped bits between mapped ones read as 0
                mask[addrs[0] :] = b"\x01" * (len(mask) - addrs[0])
            for a in addrs:
                mask[a] = 1
            self._mask[t] = mask

    def mapped(self, table: Table, start: int, count: int) -> bool:
        """Is every address of [start, start+count) used by some tag (for bits: between the first and last)?"""
        mask = self._mask[table]
        return start + count <= len(mask) and mask.count(0, start, start + count) == 0

    def render(
        self, values: Mapping[str, RawValue], table: Table, start: int = 0, count: int | None = None
    ) -> dict[int, int]:
        """Registers (or bits as 0/1) of `table` for the given raw values; only tags touching the range."""
        fields = self.fields[table]
        if count is not None:
            starts = self._starts[table]
            lo = bisect.bisect_left(starts, start - self._longest[table] + 1)
            hi = bisect.bisect_left(starts, start + count)
            fields = fields[lo:hi]
        out: dict[int, int] = {}
        for f in fields:
            value = values[f.name]
            if table.is_bit:
                out[f.offset] = 1 if value else 0
            elif f.type == "bool" and f.bit is not None:
                mask = 1 << f.bit
                out[f.offset] = (out.get(f.offset, 0) & ~mask) | (mask if value else 0)
            else:
                for i, r in enumerate(encode(value, f.type, f.byte_order, f.bit, f.length)):
                    out[f.offset + i] = r
        return out

    def render_all(self, values: Mapping[str, RawValue]) -> Image:
        return {t: self.render(values, t) for t in Table if self.fields[t]}


def exception_at(arg: str) -> tuple[str, int]:
    """(address, exception code) of `hr:5`, `hr:5:4`, `40006` or `40006:4`; ValueError if it is neither."""
    head, _, tail = arg.rpartition(":")
    address, code = (head, tail) if head and head not in ("hr", "ir", "di", "co") else (arg, "")
    parse_address(address)
    if code and not code.isdigit():
        raise ValueError(f"exception={arg}: the code after the address is a number (e.g. hr:5:2)")
    return address, int(code) if code else ILLEGAL_ADDRESS


@dataclass
class Faults(LineFaults):
    """What a simulated unit does wrong; change it while the server runs. A garbled answer (`corrupt`) is
    a malformed PDU on TCP and a bad CRC on RTU."""

    exceptions: dict[tuple[Table, int], int] = field(default_factory=dict)  # address -> exception code
    drop: float = 0.0  # share of requests left unanswered (0..1)
    max_count: int | None = None  # larger reads answer ILLEGAL DATA VALUE: a device that chokes
    glitches: list[int] = field(default_factory=list)  # exception codes for the next reads, one each (busy, booting)

    def refuse(self, address: str, code: int = ILLEGAL_ADDRESS) -> None:
        """Answer `code` to any read that touches `address` (`hr:12`, `40013`)."""
        a = parse_address(address)
        self.exceptions[(a.table, a.offset)] = code

    def refuse_text(self, arg: str) -> None:
        """`hr:5`, `40006` or with the exception code `hr:5:4` (default ILLEGAL DATA ADDRESS)."""
        self.refuse(*exception_at(arg))

    def clear_refusals(self) -> None:
        self.exceptions.clear()

    def clear(self) -> None:
        self.exceptions.clear()
        self.delay = self.drop = self.corrupt = 0.0
        self.silent = False
        self.max_count = None
        self.glitches.clear()


class SimUnit:
    """One unit id: a model, its register map and its faults."""

    def __init__(self, unit_id: int, model: EquipmentModel, byte_order: str = "ABCD") -> None:
        self.unit_id = unit_id
        self.model = model
        self.map = RegisterMap(model.tags, byte_order)
        self.faults = Faults()
        self.requests = 0  # requests addressed to this unit, answered or not

    def registers(self) -> Image:
        return self.map.render_all(self.model.raw_values())


def exception_pdu(function: int, code: int) -> bytes:
    return bytes((function | 0x80, code))


class ModbusSimulator:
    """Units by id and how they answer read requests; the transport is the subclass's business."""

    def __init__(
        self,
        models: EquipmentModel | Sequence[EquipmentModel] | Mapping[int, EquipmentModel],
        unit_id: int = 1,
        clock: Callable[[], float] = time.monotonic,
        byte_order: str = "ABCD",
        seed: int = 1,
    ) -> None:
        if isinstance(models, Mapping):
            by_unit = dict(models)
        elif isinstance(models, Sequence):
            by_unit = {unit_id + i: m for i, m in enumerate(models)}
        else:
            by_unit = {unit_id: models}
        self.units = {u: SimUnit(u, m, byte_order) for u, m in by_unit.items()}
        self.unit_id = min(self.units, default=unit_id)  # a serial line may carry only DL/T 645 meters
        self.clock = clock
        self.request_count = 0  # requests received, answered or not
        # set to a list to record (monotonic time, unit id, request PDU) of every request
        self.trace: list[tuple[float, int, bytes]] | None = None
        self._rng = random.Random(seed)

    @property
    def models(self) -> list[EquipmentModel]:
        return [u.model for u in self.units.values()]

    @property
    def model(self) -> EquipmentModel:
        return self.units[self.unit_id].model

    def faults(self, unit: int | None = None) -> Faults:
        return self.units[self.unit_id if unit is None else unit].faults

    def registers(self, index: int = 0) -> Image:
        """The current register image of the `index`-th unit (in unit id order)."""
        return list(self.units.values())[index].registers()

    def answer(self, unit_id: int, pdu: bytes, *, missing: int | None) -> tuple[bytes | None, float]:
        """The response PDU to a request (None: no answer) and how long to wait before sending it.

        `missing` is the exception to answer for an unknown unit id (None: stay silent, as on RTU).
        """
        self.request_count += 1
        if self.trace is not None:
            self.trace.append((time.monotonic(), unit_id, pdu))
        unit = self.units.get(unit_id)
        if unit is None:
            return (None if missing is None else exception_pdu(pdu[0] if pdu else 0, missing)), 0.0
        unit.requests += 1
        f = unit.faults
        if f.silent or (f.drop and self._rng.random() < f.drop):
            return None, 0.0
        return self._read(unit, pdu), f.delay

    def garble(self, unit_id: int) -> bool:
        """Should this answer of `unit_id` go out garbled (its `corrupt` share)?"""
        unit = self.units.get(unit_id)
        return unit is not None and unit.faults.corrupt > 0 and self._rng.random() < unit.faults.corrupt

    def _read(self, unit: SimUnit, pdu: bytes) -> bytes:
        function = pdu[0] if pdu else 0
        table = FUNCTION_TABLE.get(function)
        if table is None or len(pdu) != 5:
            return exception_pdu(function, ILLEGAL_FUNCTION)
        _, start, count = struct.unpack(">BHH", pdu)
        if unit.faults.glitches:
            return exception_pdu(function, unit.faults.glitches.pop(0))
        limit = 2000 if table.is_bit else 125
        max_count = unit.faults.max_count
        if not 1 <= count <= limit or (max_count is not None and count > max_count):
            return exception_pdu(function, ILLEGAL_VALUE)
        if start + count > 65536 or not unit.map.mapped(table, start, count):
            return exception_pdu(function, ILLEGAL_ADDRESS)
        for (t, a), code in unit.faults.exceptions.items():
            if t is table and start <= a < start + count:
                return exception_pdu(function, code)
        unit.model.step(self.clock())
        image = unit.map.render(unit.model.raw_values(), table, start, count)
        if table.is_bit:
            data = bytearray((count + 7) // 8)
            for i in range(count):
                if image.get(start + i):
                    data[i >> 3] |= 1 << (i & 7)
            return bytes((function, len(data))) + bytes(data)
        regs = [image.get(a, 0) for a in range(start, start + count)]
        return struct.pack(f">BB{count}H", function, 2 * count, *regs)


class _TcpConnection(asyncio.Protocol):
    def __init__(self, sim: ModbusTcpSimulator) -> None:
        self.sim = sim
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.sim.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.sim.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        while len(buf) >= 8:
            tid, protocol, length, unit = struct.unpack_from(">HHHB", buf)
            if protocol != 0 or not 2 <= length <= 254:
                if self.transport is not None:
                    self.transport.abort()
                return
            if len(buf) < 6 + length:
                return
            pdu = bytes(buf[7 : 6 + length])
            del buf[: 6 + length]
            response, delay = self.sim.answer(unit, pdu, missing=GATEWAY_TARGET_FAILED)
            if response is None:
                continue
            if self.sim.garble(unit):  # the byte count is off: the PDU does not parse
                response = response[:1] + bytes(((response[1] + 2) & 0xFF,)) + response[2:]
            frame = struct.pack(">HHHB", tid, 0, len(response) + 1, unit) + response
            if delay > 0:
                asyncio.get_running_loop().call_later(delay, self._send, frame)
            else:
                self._send(frame)

    def _send(self, frame: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(frame)


class ModbusTcpSimulator(ModbusSimulator):
    """Serves one equipment model (or several, on consecutive unit ids, or by unit id) over Modbus TCP.

    `clock` gives the time passed to `model.step`; tests pass a fixed clock to freeze the model.
    """

    def __init__(
        self,
        model: EquipmentModel | Sequence[EquipmentModel] | Mapping[int, EquipmentModel],
        host: str = "127.0.0.1",
        port: int = 5020,
        unit_id: int = 1,
        clock: Callable[[], float] = time.monotonic,
        byte_order: str = "ABCD",
    ) -> None:
        super().__init__(model, unit_id, clock, byte_order)
        self.host, self.port = host, port
        self.connections: set[_TcpConnection] = set()
        self._server: asyncio.Server | None = None

    @property
    def running(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        """Listen; returns once the port accepts connections."""
        if self._server is not None:
            return
        now = self.clock()
        for unit in self.units.values():
            unit.model.step(now)
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                lambda: _TcpConnection(self), self.host, self.port, reuse_address=True
            )
        except OSError as exc:
            raise OSError(f"cannot listen on {self.host}:{self.port} (port in use?): {exc.strerror}") from exc

    def drop_connections(self) -> int:
        """Reset every client connection (the server keeps listening); returns how many were dropped."""
        dropped = list(self.connections)
        for conn in dropped:
            if conn.transport is not None:
                conn.transport.abort()
        return len(dropped)

    async def stop(self) -> None:
        """Stop listening and drop every connection; the port can be bound again at once."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        self.drop_connections()
        await server.wait_closed()
        await asyncio.sleep(0)  # let the transports finish closing

    async def __aenter__(self) -> ModbusTcpSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
