"""The Modbus driver (TCP and RTU): a device's tags in poll groups, read in planned blocks.

Tags are grouped by poll interval (the tag's `interval`, else the device's `poll_interval`); each
group is planned on its own into the fewest requests (`plan.py`) and read block by block
(`blocks.py`, which also isolates refused addresses). `read(groups)` reads the groups that are due;
scheduling them is the poller's job.

Devices that share a link share a bus (`drivers.bus`): every unit id (and DL/T 645 meter) on one serial
port, and every unit id behind one TCP host:port (a TCP-to-RTU gateway), go through one connection,
one request at a time.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from drivers.base import Changes, DriverError, Reading, shared, without_tags
from drivers.bus import Bus, BusClient, BusPool, LineSettings, Link, SerialLink
from drivers.modbus.blocks import AllReadings, BlockState, ChangedReadings, Limits, Piece, Sink, TagRef
from drivers.modbus.plan import Block, plan_blocks
from drivers.modbus.protocol import UNIT_DOWN_CODES, DeviceException, exception_text, read_payload
from drivers.modbus.transport import TcpLink, rtu_transact
from edge_config.modbus import parse_address
from edge_config.models import ModbusRtuDevice, ModbusTcpDevice
from edge_config.timing import now_ms

__all__ = ["ModbusDriver", "PollGroup", "exception_text"]


@dataclass
class PollGroup:
    """Tags read together at one interval."""

    interval: float
    tags: tuple[str, ...]
    blocks: list[BlockState]

    @property
    def planned(self) -> list[Block]:
        return [b.block for b in self.blocks]


class ModbusDriver:
    """A polled Modbus device (the `Driver` protocol of drivers.base), over TCP or RTU.

    `read()` reads every group, `read([i, ...])` only those groups; both return one Reading per tag
    read, in config order, with bad quality for tags the device refuses. `read_changes` reads the
    same way and reports by exception: only the tags whose value changed since its previous scan.
    A device that does not answer at all raises DriverError; call `connect` again (after a backoff)
    to retry.
    """

    def __init__(
        self,
        device: ModbusTcpDevice | ModbusRtuDevice,
        pool: BusPool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.device = without_tags(device)  # the tags live on as compact per-tag state below
        self.device_id: str = device.id
        conn = device.connection
        self.unit = conn.unit_id
        self.timeout = conn.timeout
        self.backoff_max = conn.backoff_max
        self._clock = clock
        if isinstance(device, ModbusTcpDevice):
            host, port = device.connection.host, device.connection.port
            self.bus_key = f"tcp://{host}:{port}"
            self.endpoint = f"{host}:{port}"
            self._settings: tuple[object, ...] = ("tcp",)
            self._make_link: Callable[[], Link] = lambda: TcpLink(host, port)
            self._tcp = True
        else:
            line = LineSettings.of(device.connection)
            self.bus_key = line.key
            self.endpoint = line.port
            self._settings = line.settings
            self._make_link = line.link
            self._tcp = False
        self._where = f"unit {self.unit} at {self.endpoint}"
        self._client = BusClient(self.device_id, self.endpoint, self.timeout, pool)
        self._names = [shared(t.name) for t in device.tags]
        self.groups = self._plan_groups(device)

    @property
    def poll_intervals(self) -> tuple[float, ...]:
        """The interval of each poll group; `read` takes indexes into this."""
        return tuple(g.interval for g in self.groups)

    @property
    def blocks(self) -> list[Block]:
        """The planned blocks of every group (what one scan of everything sends, with no bad addresses)."""
        return [b for g in self.groups for b in g.planned]

    @property
    def pieces(self) -> list[Piece]:
        """The requests one scan of everything sends now (after isolation, if any)."""
        return [p for g in self.groups for b in g.blocks for p in b.pieces]

    @property
    def bus(self) -> Bus | None:
        return self._client.bus

    @property
    def requests(self) -> int:
        """Requests sent, isolation and retries included."""
        return self._client.requests

    def _plan_groups(self, device: ModbusTcpDevice | ModbusRtuDevice) -> list[PollGroup]:
        conn = device.connection
        limits = Limits(conn.max_registers, conn.max_bits, conn.max_gap, conn.bad_retry)
        by_interval: dict[float, list[TagRef]] = {}
        for i, tag in enumerate(device.tags):
            addr = parse_address(tag.address)
            ref = TagRef(
                i,
                shared(tag.name),
                addr.table,
                addr.offset,
                tag.register_count,
                "bool" if addr.table.is_bit else shared(tag.type),
                shared(tag.byte_order or conn.byte_order),
                tag.bit,
                tag.length,
            )
            by_interval.setdefault(tag.interval or device.poll_interval, []).append(ref)
        groups = []
        for interval in sorted(by_interval):
            refs = by_interval[interval]
            by_name = {r.name: r for r in refs}
            blocks = plan_blocks([r.span for r in refs], limits.max_registers, limits.max_gap, limits.max_bits)
            states = [BlockState(b, [by_name[n] for n in b.tags], limits, device.id) for b in blocks]
            groups.append(PollGroup(interval, tuple(r.name for r in refs), states))
        return groups

    # ------------------------------------------------------------ Driver protocol

    async def connect(self) -> None:
        """Join the bus and open its link if nobody has; DriverError with the reason if it cannot be opened.

        The next scan by exception reports every tag (a scan cut short by an error may have seen changes
        that were never reported).
        """
        for group in self.groups:
            for state in group.blocks:
                state.forget()
        await self._client.join(self.bus_key, self._make_link, self._settings, tcp=self._tcp)

    async def read(self, groups: Sequence[int] | None = None) -> list[Reading]:
        sink = AllReadings(len(self._names), now_ms())
        await self._scan(groups, sink)
        return sink.readings()

    async def read_changes(self, groups: Sequence[int] | None = None) -> Changes:
        """The scan reported by exception (see `drivers.base.Changes`); the poller reads this way."""
        sink = ChangedReadings(now_ms())
        await self._scan(groups, sink)
        return sink.changes

    async def _scan(self, groups: Sequence[int] | None, sink: Sink) -> None:
        bus = self._client.bus
        if bus is None:
            raise DriverError(f"not connected to {self.endpoint}")
        if not bus.is_open:
            raise DriverError(f"connection lost to {self.endpoint}")
        now = self._clock()
        states = [s for g in (self.groups if groups is None else [self.groups[i] for i in groups]) for s in g.blocks]
        probe = None
        if not any(state.sends(now) for state in states):
            # every tag of this scan is refused and no retry is due: a scan that sent nothing would say the
            # device answers while it may be dead, so its smallest refused piece is read as a probe
            candidates = [(p.count, i) for i, state in enumerate(states) if (p := state.smallest_refused())]
            probe = min(candidates)[1] if candidates else None
        for i, state in enumerate(states):
            await state.read(self._request, sink, now, probe=i == probe)

    async def close(self) -> None:
        await self._client.leave()

    # ------------------------------------------------------------ one request

    def _exchange(self, pdu: bytes) -> Callable[[Link], Awaitable[bytes]]:
        """One request on this device's link: a TCP connection, or a serial line it may share."""
        unit, timeout = self.unit, self.timeout

        async def exchange(link: Link) -> bytes:
            if isinstance(link, SerialLink):
                return await rtu_transact(link, unit, pdu, timeout)
            assert isinstance(link, TcpLink)
            return await link.transact(unit, pdu, timeout)

        return exchange

    async def _request(self, piece: Piece) -> bytes:
        """The data bytes of one read; DeviceException for a refusal; DriverError when the unit is down."""
        try:
            return await self._client.ask(
                self._exchange(piece.pdu), lambda response: read_payload(piece.function, piece.size, response),
                self._where,
            )  # fmt: skip
        except DeviceException as exc:
            if exc.code in UNIT_DOWN_CODES:
                raise DriverError(f"{exception_text(exc.code)} for {self._where}") from None
            raise
