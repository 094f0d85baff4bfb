"""Modbus TCP simulator: serves equipment models with pymodbus 3.16's simulator API.

An equipment model has a tag map in the config contract's format (`tags`), raw register-level
values by tag name (`raw_values()`) and `step(now)`. The server lays the tags out once as
`SimData` blocks (unmapped addresses answer ILLEGAL DATA ADDRESS) and, before each request, steps
the model and writes its current values into the registers the request reads.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pymodbus.constants import ExcCodes
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimAction, SimData, SimDevice

from edge_config.modbus import Table, parse_address
from edge_config.modbus_codec import encode
from edge_config.models import ModbusTag

RawValue = bool | int | float | str
Image = dict[Table, dict[int, int]]  # table -> address -> register value (0/1 for bit tables)

# function code -> table it touches
_FC_TABLE = {1: Table.COIL, 5: Table.COIL, 15: Table.COIL, 2: Table.DISCRETE_INPUT, 4: Table.INPUT_REGISTER}
_FC_TABLE.update(dict.fromkeys((3, 6, 16, 22, 23), Table.HOLDING_REGISTER))


class EquipmentModel(Protocol):
    """What the simulator serves: a tag map and values that move with time."""

    @property
    def tags(self) -> Sequence[Mapping[str, Any]]: ...

    def step(self, now: float) -> None: ...

    def raw_values(self) -> Mapping[str, RawValue]: ...


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    table: Table
    offset: int
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
                _Field(tag.name, addr.table, addr.offset, tag.type, order, tag.bit, tag.length)
            )
            used[addr.table].update(range(addr.offset, addr.offset + tag.register_count))
        # mapped addresses (registers, or bits), sorted
        self.addresses: dict[Table, list[int]] = {t: sorted(a) for t, a in used.items()}

    def render(self, values: Mapping[str, RawValue], table: Table) -> dict[int, int]:
        """Registers (or bits as 0/1) of `table` for the given raw values."""
        out: dict[int, int] = {}
        for f in self.fields[table]:
            value = values[f.name]
            if table.is_bit:
                out[f.offset] = 1 if value else 0
            elif f.type == "bool" and f.bit is not None:
                mask = 1 << f.bit
                out[f.offset] = (out.get(f.offset, 0) & ~mask) | (mask if value else 0)
            else:
                regs = encode(value, f.type, f.byte_order, f.bit, f.length)
                for i, r in enumerate(regs):
                    out[f.offset + i] = r
        return out

    def render_all(self, values: Mapping[str, RawValue]) -> Image:
        return {t: self.render(values, t) for t in Table if self.fields[t]}

    def simdata(
        self, values: Mapping[str, RawValue]
    ) -> tuple[list[SimData], list[SimData], list[SimData], list[SimData]]:
        """SimData blocks for (coils, discrete inputs, holding registers, input registers)."""
        return (
            self._bit_simdata(values, Table.COIL),
            self._bit_simdata(values, Table.DISCRETE_INPUT),
            self._register_simdata(values, Table.HOLDING_REGISTER),
            self._register_simdata(values, Table.INPUT_REGISTER),
        )

    def _bit_simdata(self, values: Mapping[str, RawValue], table: Table) -> list[SimData]:
        # pymodbus keeps bits in 16-bit words and checks addresses per word, so bits next to mapped
        # ones in the same word read as False; the action refuses requests starting outside the map.
        image = self.render(values, table)
        used = self.addresses[table]
        first, last = (used[0], used[-1]) if used else (0, 15)
        bits = [bool(image.get(a, 0)) for a in range(first, last + 1)]
        return [SimData(first, values=bits, datatype=DataType.BITS)]

    def _register_simdata(self, values: Mapping[str, RawValue], table: Table) -> list[SimData]:
        # one read-only block per run of mapped registers: the gaps answer ILLEGAL DATA ADDRESS
        used = self.addresses[table]
        if not used:
            return [SimData(0, datatype=DataType.INVALID)]
        image = self.render(values, table)
        blocks: list[SimData] = []
        run = [used[0]]
        for a in [*used[1:], -2]:
            if a == run[-1] + 1:
                run.append(a)
                continue
            regs = [image.get(x, 0) for x in run]
            blocks.append(SimData(run[0], values=regs, datatype=DataType.REGISTERS, readonly=True))
            run = [a]
        return blocks


class ModbusTcpSimulator:
    """Serves one equipment model (or several, on consecutive unit ids) over Modbus TCP.

    `clock` gives the time passed to `model.step`; tests pass a fixed clock to freeze the model.
    """

    def __init__(
        self,
        model: EquipmentModel | Sequence[EquipmentModel],
        host: str = "127.0.0.1",
        port: int = 5020,
        unit_id: int = 1,
        clock: Callable[[], float] = time.monotonic,
        byte_order: str = "ABCD",
    ) -> None:
        self.models: list[EquipmentModel] = list(model) if isinstance(model, Sequence) else [model]
        self.host, self.port, self.unit_id = host, port, unit_id
        self.clock = clock
        self.maps = [RegisterMap(m.tags, byte_order) for m in self.models]
        self.request_count = 0  # requests received, answered or refused
        self._server: ModbusTcpServer | None = None

    @property
    def model(self) -> EquipmentModel:
        return self.models[0]

    @property
    def running(self) -> bool:
        return self._server is not None

    def registers(self, index: int = 0) -> Image:
        """The current register image of model `index` (unit id `unit_id + index`)."""
        return self.maps[index].render_all(self.models[index].raw_values())

    async def start(self) -> None:
        """Listen; returns once the port accepts connections."""
        if self._server is not None:
            return
        now = self.clock()
        devices = []
        for i, (model, rmap) in enumerate(zip(self.models, self.maps, strict=True)):
            model.step(now)
            devices.append(
                SimDevice(id=self.unit_id + i, simdata=rmap.simdata(model.raw_values()), action=self._action(i))
            )
        server = ModbusTcpServer(devices, address=(self.host, self.port), trace_pdu=self._trace)
        try:
            await server.serve_forever(background=True)
        except RuntimeError as exc:
            raise OSError(f"cannot listen on {self.host}:{self.port} (port in use?)") from exc
        self._server = server

    async def stop(self) -> None:
        """Stop listening and drop every connection; the port can be bound again at once."""
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()
            await asyncio.sleep(0)  # let the transports finish closing

    async def __aenter__(self) -> ModbusTcpSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------ pymodbus hooks

    def _trace(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if not sending:
            self.request_count += 1
        return pdu

    def _action(self, index: int) -> SimAction:
        model, rmap = self.models[index], self.maps[index]

        async def action(
            function_code: int,
            start_address: int,
            address: int,
            count: int,
            registers: list[int],
            set_values: list[int] | list[bool] | None,
        ) -> ExcCodes | None:
            table = _FC_TABLE.get(function_code)
            if table is None:
                return ExcCodes.ILLEGAL_FUNCTION
            used = rmap.addresses[table]
            if table.is_bit and (not used or not used[0] <= address <= used[-1]):
                return ExcCodes.ILLEGAL_ADDRESS
            model.step(self.clock())
            image = rmap.render(model.raw_values(), table)
            if table.is_bit:
                # `registers` holds 16 bits per word; `start_address` is a word index
                for bit_addr, v in image.items():
                    i, mask = bit_addr // 16 - start_address, 1 << (bit_addr % 16)
                    registers[i] = (registers[i] | mask) if v else (registers[i] & ~mask)
            else:
                for addr, v in image.items():
                    registers[addr - start_address] = v
            return None

        return action
