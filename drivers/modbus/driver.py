"""Modbus TCP driver: reads a device's tags in planned blocks and decodes them into Readings."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from drivers.base import DriverError, Reading
from drivers.modbus.plan import Block, plan_blocks
from edge_config.modbus import Table, parse_address
from edge_config.modbus_codec import decode
from edge_config.models import ModbusTcpDevice

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    7: "negative acknowledge",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}

# pymodbus client method per table (function codes 1, 2, 3, 4)
_READ_METHOD = {
    Table.COIL: "read_coils",
    Table.DISCRETE_INPUT: "read_discrete_inputs",
    Table.HOLDING_REGISTER: "read_holding_registers",
    Table.INPUT_REGISTER: "read_input_registers",
}


def exception_text(code: int) -> str:
    """`exception 2 (illegal data address)` for a Modbus exception code."""
    return f"exception {code} ({EXCEPTION_NAMES.get(code, 'unknown')})"


@dataclass(frozen=True, slots=True)
class _TagSlot:
    """Where one tag sits in a block's response and how to decode it."""

    index: int  # position of the tag in the device config
    name: str
    rel: int  # offset in the block
    count: int
    type: str
    byte_order: str
    bit: int | None


class ModbusTcpDriver:
    """A polled Modbus TCP device (the `Driver` protocol of drivers.base).

    The block plan is made once here; `read` sends one request per block and decodes straight from
    the responses. Reconnecting is the caller's job: after a DriverError call `connect` again.
    """

    def __init__(self, device: ModbusTcpDevice) -> None:
        self.device = device
        self.device_id: str = device.id
        conn = device.connection
        self._host, self._port, self._unit = conn.host, conn.port, conn.unit_id
        self._timeout = conn.timeout
        self._names = [t.name for t in device.tags]
        spans = []
        where: dict[str, tuple[int, int]] = {}  # tag name -> (config index, offset)
        for i, tag in enumerate(device.tags):
            addr = parse_address(tag.address)
            spans.append((tag.name, addr.table, addr.offset, tag.register_count))
            where[tag.name] = (i, addr.offset)
        self.blocks: list[Block] = plan_blocks(spans, max_registers=conn.max_registers, max_gap=conn.max_gap)
        self._slots: list[tuple[Block, tuple[_TagSlot, ...]]] = []
        for block in self.blocks:
            slots = []
            for name in block.tags:
                i, offset = where[name]
                tag = device.tags[i]
                order = tag.byte_order or conn.byte_order
                slots.append(_TagSlot(i, name, offset - block.start, tag.register_count, tag.type, order, tag.bit))
            self._slots.append((block, tuple(slots)))
        self._client: AsyncModbusTcpClient | None = None
        # per block: the bound read method of the current client, the block, its tags
        self._requests: list[tuple[Callable[..., Awaitable[Any]], Block, tuple[_TagSlot, ...]]] = []

    @property
    def endpoint(self) -> str:
        return f"{self._host}:{self._port}"

    async def connect(self) -> None:
        """Open the TCP connection; raise DriverError with the reason when the device cannot be reached."""
        await self.close()
        client = AsyncModbusTcpClient(
            self._host,
            port=self._port,
            timeout=self._timeout,
            retries=0,  # fail fast: the gateway's scheduler retries with backoff
            reconnect_delay=0,  # no reconnecting behind our back
            name=self.device_id,
        )
        loop = asyncio.get_running_loop()
        started = loop.time()
        if not await client.connect():
            client.close()
            raise DriverError(await self._why_not_connected(loop.time() - started))
        self._client = client
        self._requests = [(getattr(client, _READ_METHOD[block.table]), block, slots) for block, slots in self._slots]

    async def read(self) -> list[Reading]:
        """One Reading per tag, in config order; bad quality for the blocks the device refused."""
        client = self._client
        if client is None:
            raise DriverError(f"not connected to {self.endpoint}")
        if not client.connected:
            self._drop()
            raise DriverError(f"connection lost to {self.endpoint}")
        ts = int(time.time() * 1000)
        out: list[Reading | None] = [None] * len(self._names)
        for request, block, slots in self._requests:
            try:
                rr = await request(block.start, count=block.count, device_id=self._unit)
            except (ModbusException, OSError, asyncio.TimeoutError) as exc:
                self._drop()
                raise DriverError(self._request_failure(exc)) from exc
            error = ""
            if rr.isError():
                error = exception_text(int(getattr(rr, "exception_code", 0)))
            elif len(rr.bits if block.table.is_bit else rr.registers) < block.count:
                error = f"short response to a read of {block.count} from {block.table.value}:{block.start}"
            if error:
                for s in slots:
                    out[s.index] = Reading(s.name, None, ts, "bad", error)
            elif block.table.is_bit:
                bits = rr.bits
                for s in slots:
                    out[s.index] = Reading(s.name, bool(bits[s.rel]), ts)
            else:
                regs = rr.registers
                for s in slots:
                    try:
                        value = decode(regs[s.rel : s.rel + s.count], s.type, s.byte_order, s.bit)
                    except (ValueError, IndexError) as exc:
                        out[s.index] = Reading(s.name, None, ts, "bad", f"cannot decode: {exc}")
                        continue
                    out[s.index] = Reading(s.name, value, ts)
        return [r for r in out if r is not None]

    async def close(self) -> None:
        self._drop()

    # ------------------------------------------------------------ helpers

    def _drop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
            self._requests = []

    def _request_failure(self, exc: BaseException) -> str:
        if isinstance(exc, ConnectionException | OSError):
            return f"connection lost to {self.endpoint}"
        if isinstance(exc, asyncio.TimeoutError) or (isinstance(exc, ModbusIOException) and "No response" in str(exc)):
            return f"no response from {self.endpoint} within {self._timeout:g}s"
        return f"request to {self.endpoint} failed: {exc}"

    async def _why_not_connected(self, elapsed: float) -> str:
        """pymodbus only says connect() failed; find out why in words an engineer can act on."""
        if elapsed >= self._timeout * 0.9:
            return f"connection timed out after {self._timeout:g}s {self.endpoint}"
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(self._host, self._port), timeout=self._timeout)
        except ConnectionRefusedError:
            return f"connection refused {self.endpoint}"
        except socket.gaierror as exc:
            return f"cannot resolve host {self._host!r}: {exc.strerror or exc}"
        except asyncio.TimeoutError:
            return f"connection timed out after {self._timeout:g}s {self.endpoint}"
        except OSError as exc:
            reason = exc.strerror or str(exc)
            return f"{reason[:1].lower()}{reason[1:]} {self.endpoint}"
        writer.close()
        return f"could not connect to {self.endpoint}"
