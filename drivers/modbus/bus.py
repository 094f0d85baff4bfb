"""The bus scheduler: units that share one link take turns, one request at a time.

Several unit ids on one serial port, or behind one TCP-to-RTU gateway, are one bus. Requests go
out in the order they were asked for (a FIFO lock), so a device that is due is served within one
request of every device ahead of it; the RTU link keeps the inter-frame silence between them.
A unit that does not answer costs the bus one timeout per attempt; backing it off is the poller's
job, so the others keep their cadence.

Buses are shared per event loop through a `BusPool`: the first driver that connects opens the
link, the last one to close shuts it. A serial port can only be opened once anyway.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from drivers.modbus.protocol import LinkDown, NoResponse
from drivers.modbus.transport import Link


@dataclass
class BusStats:
    requests: int = 0
    no_response: int = 0
    reconnects: int = 0


class ModbusBus:
    """One link shared by the units behind it."""

    def __init__(self, key: str, make_link: Callable[[], Link], settings: Hashable, *, tcp: bool) -> None:
        self.key = key
        self.settings = settings
        self.tcp = tcp
        self.users = 0
        self.stats = BusStats()
        self._make_link = make_link
        self._link: Link | None = None
        self._turn = asyncio.Lock()  # FIFO: waiters are woken in the order they came
        self._opening = asyncio.Lock()
        self._silent_in_a_row = 0

    @property
    def name(self) -> str:
        return self._link.name if self._link is not None else self.key

    @property
    def is_open(self) -> bool:
        return self._link is not None and self._link.is_open

    async def ensure_open(self, timeout: float) -> None:
        """Open the link unless it is open; raises LinkDown with the reason."""
        async with self._opening:
            if self.is_open:
                return
            self.drop()
            link = self._make_link()
            await link.open(timeout)
            self._link = link
            self._silent_in_a_row = 0
            self.stats.reconnects += 1

    async def transact(self, unit: int, pdu: bytes, timeout: float) -> bytes:
        """One request, when the bus is free. Raises NoResponse or LinkDown."""
        async with self._turn:
            link = self._link
            if link is None:
                raise LinkDown(f"not connected to {self.key}")
            self.stats.requests += 1
            try:
                response = await link.transact(unit, pdu, timeout)
            except LinkDown:
                self.drop()
                raise
            except NoResponse:
                self.stats.no_response += 1
                self._silent_in_a_row += 1
                # On TCP a connection nobody answers on may be half open (a PLC that lost power):
                # drop it when its only unit is silent, or when two requests in a row got nothing.
                if self.tcp and (self.users <= 1 or self._silent_in_a_row >= 2):
                    self.drop()
                raise
            self._silent_in_a_row = 0
            return response

    def drop(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            link.close()


class BusPool:
    """The buses of one event loop, by key (`tcp://host:port`, `rtu:///dev/ttyUSB0`)."""

    def __init__(self) -> None:
        self.buses: dict[str, ModbusBus] = {}

    def acquire(self, key: str, make_link: Callable[[], Link], settings: Hashable, *, tcp: bool) -> ModbusBus:
        """The bus for `key`, created on first use. ValueError if it is in use with other settings."""
        bus = self.buses.get(key)
        if bus is None:
            bus = self.buses[key] = ModbusBus(key, make_link, settings, tcp=tcp)
        elif bus.settings != settings:
            raise ValueError(f"{key} is already in use with other settings ({bus.settings} ≠ {settings})")
        bus.users += 1
        return bus

    def release(self, bus: ModbusBus) -> None:
        bus.users -= 1
        if bus.users <= 0:
            bus.drop()
            if self.buses.get(bus.key) is bus:
                del self.buses[bus.key]


_POOLS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, BusPool] = weakref.WeakKeyDictionary()


def loop_pool() -> BusPool:
    """The pool of the running event loop."""
    loop = asyncio.get_running_loop()
    pool = _POOLS.get(loop)
    if pool is None:
        pool = _POOLS[loop] = BusPool()
    return pool
