"""The bus scheduler: devices that share one link take turns, one transaction at a time.

Several Modbus unit ids and DL/T 645 meters on one serial port, or unit ids behind one TCP-to-RTU
gateway, are one bus. Transactions go out in the order they were asked for (a FIFO lock), so a
device that is due is served within one transaction of every device ahead of it; a serial link
keeps the inter-frame silence between them. A device that does not answer costs the bus one
timeout per attempt; backing it off is the poller's job, so the others keep their cadence.

A transaction is the protocol's business: `Bus.transact(exchange)` runs `exchange(link)` when it
is this caller's turn (a Modbus TCP request, a Modbus RTU frame, a DL/T 645 frame on the same port).

Buses are shared per event loop through a `BusPool`: the first driver that connects opens the
link, the last one to close shuts it. A serial port can only be opened once anyway.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from drivers.bus.errors import BadFrame, LinkDown, NoResponse

T = TypeVar("T")


class Link(Protocol):
    """What a bus needs from a TCP connection or a serial port."""

    name: str

    @property
    def is_open(self) -> bool: ...

    async def open(self, timeout: float) -> None: ...

    def close(self) -> None: ...


@dataclass
class BusStats:
    requests: int = 0
    no_response: int = 0
    reconnects: int = 0


class Bus:
    """One link shared by the devices behind it."""

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

    async def transact(self, exchange: Callable[[Any], Awaitable[T]]) -> T:
        """`exchange(link)` when the bus is free. Raises NoResponse or LinkDown (and whatever the
        exchange raises about the answer)."""
        async with self._turn:
            link = self._link
            if link is None:
                raise LinkDown(f"not connected to {self.key}")
            self.stats.requests += 1
            try:
                result = await exchange(link)
            except LinkDown:
                self.drop()
                raise
            except BadFrame:  # an answer came, garbled: the link is alive (not silence, nothing dropped)
                self._silent_in_a_row = 0
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
            return result

    def drop(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            link.close()


class BusPool:
    """The buses of one event loop, by key (`tcp://host:port`, `serial:///dev/ttyUSB0`)."""

    def __init__(self) -> None:
        self.buses: dict[str, Bus] = {}

    def acquire(self, key: str, make_link: Callable[[], Link], settings: Hashable, *, tcp: bool) -> Bus:
        """The bus for `key`, created on first use. ValueError if it is in use with other settings."""
        bus = self.buses.get(key)
        if bus is None:
            bus = self.buses[key] = Bus(key, make_link, settings, tcp=tcp)
        elif bus.settings != settings:
            raise ValueError(f"{key} is already in use with other settings ({bus.settings} ≠ {settings})")
        bus.users += 1
        return bus

    def release(self, bus: Bus) -> None:
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


class BusClient:
    """One device's place on a shared bus: joining it (opening the link if nobody has), one request at a
    time with a retry for a garbled answer, leaving it. Every failure comes out as a DriverError that
    says what happened to whom."""

    def __init__(self, device_id: str, endpoint: str, timeout: float, pool: BusPool | None = None) -> None:
        self.device_id = device_id
        self.endpoint = endpoint
        self.timeout = timeout
        self.requests = 0  # requests sent, retries included
        self._pool = pool
        self.bus: Bus | None = None

    async def join(self, key: str, make_link: Callable[[], Link], settings: Hashable, *, tcp: bool) -> None:
        """Join the bus for `key` and open its link unless it is open; DriverError with the reason."""
        from drivers.base import DriverError

        if self.bus is None:
            try:
                self.bus = (self._pool or loop_pool()).acquire(key, make_link, settings, tcp=tcp)
            except ValueError as exc:
                raise DriverError(f"{self.device_id}: {exc}") from None
        try:
            await self.bus.ensure_open(self.timeout)
        except LinkDown as exc:
            await self.leave()
            raise DriverError(str(exc)) from None

    async def leave(self) -> None:
        bus, self.bus = self.bus, None
        if bus is not None:
            (self._pool or loop_pool()).release(bus)

    async def ask(self, exchange: Callable[[Any], Awaitable[bytes]], answer: Callable[[bytes], T], where: str) -> T:
        """`answer(exchange(link))` when the bus is free: what `answer` makes of the reply (it raises
        BadFrame for a garbled one: asked once more). DriverError when the device does not answer (its
        subclasses NoAnswer for no answer in time, GarbledAnswer for a garbled answer twice)."""
        from drivers.base import DriverError, GarbledAnswer, NoAnswer

        bus = self.bus
        if bus is None:
            raise DriverError(f"not connected to {self.endpoint}")
        for attempt in (1, 2):
            self.requests += 1
            try:
                return answer(await bus.transact(exchange))
            except BadFrame as exc:
                if attempt == 1:
                    continue  # line noise: once more
                raise GarbledAnswer(f"garbled answer from {where}: {exc}") from None
            except NoResponse:
                raise NoAnswer(f"no response from {where} within {self.timeout:g}s") from None
            except LinkDown as exc:
                raise DriverError(str(exc) or f"connection lost to {self.endpoint}") from None
        raise AssertionError("unreachable")  # pragma: no cover
