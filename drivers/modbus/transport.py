"""Modbus on a link: one TCP connection (`TcpLink`) or frames on a shared serial link (`rtu_transact`).

Both send a request PDU and return the response PDU, or raise `NoResponse` (the unit did not answer
in time; `BadFrame` when the answer was garbled) or `LinkDown` (the connection or port is gone).
Serialising requests is the bus's job (`drivers.bus`).

Modbus TCP is a small asyncio protocol: the request frame is built with one `struct` call, the
response is matched by transaction id (a late answer to a timed-out request is dropped) and must
carry the unit id asked (another unit's answer is garbled, `BadFrame`, as on RTU), and the timeout
is a timer handle, not a task. Modbus RTU frames go through `drivers.bus.SerialLink`, which
DL/T 645 meters on the same port share.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

from drivers.bus.serial import PortReader, Receive, SerialLink
from drivers.modbus.protocol import MBAP, BadFrame, LinkDown, NoResponse, rtu_check, rtu_frame

# ---------------------------------------------------------------- Modbus TCP


def _expire(waiter: asyncio.Future[bytes]) -> None:
    if not waiter.done():
        waiter.set_exception(NoResponse())


class TcpLink(asyncio.Protocol):
    """One Modbus TCP connection to `host:port`."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.name = f"{host}:{port}"
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._tid = 0
        self._unit = 0  # the unit id of the request waited for
        self._waiter: asyncio.Future[bytes] | None = None
        self._lost_reason = ""

    @property
    def is_open(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    async def open(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.create_connection(lambda: self, self.host, self.port), timeout)
        except ConnectionRefusedError:
            raise LinkDown(f"connection refused {self.name}") from None
        except socket.gaierror as exc:
            raise LinkDown(f"cannot resolve host {self.host!r}: {exc.strerror or exc}") from None
        except asyncio.TimeoutError:
            raise LinkDown(f"connection timed out after {timeout:g}s {self.name}") from None
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise LinkDown(f"{reason[:1].lower()}{reason[1:]} {self.name}") from None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        self._transport = transport
        self._buffer.clear()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._lost_reason = f"connection lost to {self.name}" + (f": {exc}" if exc else "")
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(LinkDown(self._lost_reason))

    def data_received(self, data: bytes) -> None:
        buf = self._buffer
        buf += data
        while len(buf) >= 8:
            tid, protocol, length, unit = MBAP.unpack_from(buf)
            if protocol != 0 or not 2 <= length <= 254:
                # not Modbus TCP, or out of step: nothing after this can be trusted
                buf.clear()
                if self._transport is not None:
                    self._transport.abort()
                return
            end = 6 + length
            if len(buf) < end:
                return
            waiter = self._waiter
            if waiter is not None and tid == self._tid and not waiter.done():
                if unit == self._unit:
                    waiter.set_result(bytes(buf[7:end]))
                else:  # another unit's registers (a TCP-to-RTU gateway's mix-up) are not this unit's values
                    waiter.set_exception(BadFrame(f"unexpected answer from unit {unit} to unit {self._unit}"))
            del buf[:end]  # anything else is a late answer to a request that timed out

    async def transact(self, unit: int, pdu: bytes, timeout: float) -> bytes:
        transport = self._transport
        if transport is None or transport.is_closing():
            raise LinkDown(self._lost_reason or f"not connected to {self.name}")
        loop = asyncio.get_running_loop()
        self._tid = tid = self._tid + 1 if self._tid < 0xFFFF else 1
        self._unit = unit
        waiter: asyncio.Future[bytes] = loop.create_future()
        self._waiter = waiter
        transport.write(MBAP.pack(tid, 0, len(pdu) + 1, unit) + pdu)
        timer = loop.call_later(timeout, _expire, waiter)
        try:
            return await waiter
        finally:
            timer.cancel()
            if self._waiter is waiter:
                self._waiter = None

    def close(self) -> None:
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()
        self._lost_reason = ""


# ---------------------------------------------------------------- Modbus RTU


def _rtu_answer(unit: int, function: int) -> Receive:
    """Take a Modbus RTU answer of `unit` to `function` off the line: its PDU."""

    def receive(r: PortReader) -> bytes:
        # every read waits at most until the exchange's one deadline: the timeout and the answer's
        # transmission time, as far as its length is known (5 bytes at least, an exception answer)
        head = r.read(1)
        if not head:
            raise NoResponse()
        r.expect(5)
        head += r.read(2)
        if len(head) < 3:
            raise BadFrame(f"answer from unit {unit} cut short after {len(head)} bytes")
        if head[0] != unit or head[1] & 0x7F != function:
            r.drain()
            raise BadFrame(f"unexpected answer {head.hex()} to unit {unit} function {function}")
        rest = 2 if head[1] & 0x80 else head[2] + 2
        r.expect(3 + rest)
        more = r.read(rest)
        frame = head + more
        if len(more) < rest or not rtu_check(frame):
            r.drain()
            raise BadFrame(f"bad CRC or short frame from unit {unit}")
        return frame[1:-2]

    return receive


async def rtu_transact(link: SerialLink, unit: int, pdu: bytes, timeout: float) -> bytes:
    """One Modbus RTU request on a serial link: the response PDU, or NoResponse/BadFrame/LinkDown."""
    return await link.exchange(rtu_frame(unit, pdu), _rtu_answer(unit, pdu[0]), timeout)
