"""The DL/T 645-2007 driver: an energy meter on a serial bus, one read per data item.

The meter shares its port's bus (`drivers.bus`) with every other meter and Modbus RTU unit on it:
one frame at a time, the inter-frame silence kept, and a meter that does not answer costs the bus
one timeout per probe (the poller backs it off, as for a silent Modbus slave). An error answer
(control 0xD1) or a garbled answer to one data item marks only that tag bad; a meter that gives no
valid answer to any item of a scan is offline. Each exchange ends at one deadline (the timeout and the
frames' transmission time), however slowly the meter sends its bytes.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Sequence

from drivers.base import DriverError, GarbledAnswer, NoAnswer, Reading, without_tags
from drivers.bus import BadFrame, Bus, BusClient, BusPool, LineSettings, Link, NoResponse, PortReader, SerialLink
from drivers.dlt645.protocol import (
    END,
    START,
    WAKE,
    MeterError,
    address_answer,
    address_request,
    parse_frame,
    read_answer,
    read_request,
)
from edge_config.dlt645 import DataFormat, decode_value, parse_di
from edge_config.models import Dlt645Device

MAX_WAKE = 16  # wake-up bytes tolerated in front of an answer


def receive_frame(r: PortReader) -> bytes:
    """Take one DL/T 645 frame off the line (wake-up bytes in front allowed); NoResponse if nothing came.

    Every read waits at most until the exchange's one deadline (`PortReader`): the timeout and the
    answer's transmission time as its length becomes known, however slowly the bytes come."""
    first = r.read(1)
    if not first:
        raise NoResponse()
    skipped = 0
    while first[0] == WAKE:
        skipped += 1
        r.expect(skipped + 12)  # the wake-up bytes so far and the shortest frame after them
        first = r.read(1)
        if not first or skipped > MAX_WAKE:
            raise BadFrame("answer cut short after its wake-up bytes")
    if first[0] != START:
        r.drain()
        raise BadFrame(f"answer starts with {first.hex()}, not 68")
    r.expect(skipped + 12)
    head = r.read(9)  # address, 68, control, length
    if len(head) < 9:
        raise BadFrame(f"answer cut short after {1 + len(head)} bytes")
    r.expect(skipped + 12 + head[8])
    rest = r.read(head[8] + 2)  # data, checksum, 16
    frame = first + head + rest
    if len(rest) < head[8] + 2 or frame[-1] != END:
        r.drain()
        raise BadFrame("answer cut short or without its end byte")
    return frame


def value_bytes(address: str, di: int, raw: bytes) -> bytes:
    """The value bytes of a meter's answer to a read of `di` (MeterError, BadFrame)."""
    return read_answer(parse_frame(raw), address, di)


class Dlt645Driver:
    """A polled DL/T 645 meter (the `Driver` protocol of drivers.base)."""

    def __init__(self, device: Dlt645Device, pool: BusPool | None = None) -> None:
        self.device = without_tags(device)  # the tags live on as compact per-tag state below
        self.device_id: str = device.id
        c = device.connection
        self.address = c.address
        self.timeout = c.timeout
        self.backoff_max = c.backoff_max
        self.wakeup = c.wakeup
        self.line = LineSettings.of(c)
        self.endpoint = c.port
        self._where = f"meter {self.address} at {c.port}"
        self._client = BusClient(device.id, c.port, c.timeout, pool)
        self._items: list[tuple[str, int, DataFormat]] = [(t.name, parse_di(t.di), t.data_format) for t in device.tags]

    @property
    def bus(self) -> Bus | None:
        return self._client.bus

    @property
    def requests(self) -> int:
        return self._client.requests

    @property
    def poll_intervals(self) -> tuple[float, ...]:
        """One poll group: every tag at the device's interval."""
        return (self.device.poll_interval,)

    async def connect(self) -> None:
        """Join the port's bus and open it if nobody has; DriverError with the reason if it cannot be opened."""
        await self._client.join(self.line.key, self.line.link, self.line.settings, tcp=False)

    async def read(self, groups: Sequence[int] | None = None) -> Sequence[Reading]:
        """One reading per tag. An item the meter refuses (0xD1), answers garbled (another item's answer,
        a bad checksum: after the one retry) or leaves unanswered once it has answered another item of
        this scan is a bad reading with the reason; the other items are read and published.

        DriverError (the meter is offline) only when no item of the scan got a valid answer from the
        meter. The bus is not held by a meter that is not there: with no valid answer yet, the first
        item it does not answer, or the second item in a row it answers only garbled, ends the scan;
        after a valid answer, two items in a row it does not answer leave the rest of the scan unasked
        (bad, with that reason)."""
        ts = int(time.time() * 1000)
        out: list[Reading] = []
        answered = False  # an item of this scan got a valid frame from the meter
        failed: DriverError | None = None  # the scan's first item without one
        in_a_row = silent_in_a_row = 0  # items in a row without a valid frame / without any answer
        silence = ""  # why the rest of the scan is not asked
        for name, di, fmt in self._items:
            if silence:
                out.append(Reading(name, None, ts, "bad", silence))
                continue
            try:
                data = await self._client.ask(
                    self._exchange(read_request(self.address, di, self.wakeup)),
                    functools.partial(value_bytes, self.address, di),
                    self._where,
                )  # fmt: skip
                reading = Reading(name, decode_value(data, fmt), ts)
            except MeterError as exc:
                reading = Reading(name, None, ts, "bad", str(exc))
            except ValueError as exc:  # not BCD, or not the format's length
                reading = Reading(name, None, ts, "bad", f"cannot decode DI {di:08X}: {exc}")
            except (GarbledAnswer, NoAnswer) as exc:  # this item's answer: the other items may be fine
                failed = failed or exc
                in_a_row += 1
                silent_in_a_row = silent_in_a_row + 1 if isinstance(exc, NoAnswer) else 0
                if not answered and (silent_in_a_row or in_a_row >= 2):
                    raise failed from None
                if silent_in_a_row >= 2:
                    silence = str(exc)
                out.append(Reading(name, None, ts, "bad", str(exc)))
                continue
            answered, in_a_row, silent_in_a_row = True, 0, 0
            out.append(reading)
        if not answered and failed is not None:
            raise failed from None  # one item, garbled
        return out

    async def read_address(self) -> str:
        """The address of the one meter on the line (a broadcast address read, for commissioning)."""
        return await self._client.ask(
            self._exchange(address_request(self.wakeup)),
            lambda raw: address_answer(parse_frame(raw)),
            f"the meters on {self.endpoint} (address read)",
        )

    async def close(self) -> None:
        await self._client.leave()

    def _exchange(self, frame: bytes) -> Callable[[Link], Awaitable[bytes]]:
        timeout = self.timeout

        async def exchange(link: Link) -> bytes:
            assert isinstance(link, SerialLink)
            return await link.exchange(frame, receive_frame, timeout)

        return exchange
