"""Links: one TCP connection or one serial port, carrying one Modbus request at a time.

`transact(unit, pdu, timeout)` sends a request PDU and returns the response PDU, or raises
`NoResponse` (the unit did not answer in time; `BadFrame` when the answer was garbled) or `LinkDown`
(the connection or port is gone). Serialising requests is the bus's job (`drivers.modbus.bus`).

Modbus TCP is a small asyncio protocol: the request frame is built with one `struct` call, the
response is matched by transaction id (a late answer to a timed-out request is dropped), and the
timeout is a timer handle, not a task. Modbus RTU runs pyserial's blocking calls in one worker
thread per port, which works the same on Linux and Windows; a pty pair from `socat` stands in for a
real RS-485 adapter in tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

from drivers.modbus.protocol import MBAP, BadFrame, LinkDown, NoResponse, rtu_check, rtu_frame


class Link(Protocol):
    """What a bus needs from a TCP connection or a serial port."""

    name: str

    @property
    def is_open(self) -> bool: ...

    async def open(self, timeout: float) -> None: ...

    async def transact(self, unit: int, pdu: bytes, timeout: float) -> bytes: ...

    def close(self) -> None: ...


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
            tid, protocol, length, _unit = MBAP.unpack_from(buf)
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
                waiter.set_result(bytes(buf[7:end]))
            del buf[:end]  # anything else is a late answer to a request that timed out

    async def transact(self, unit: int, pdu: bytes, timeout: float) -> bytes:
        transport = self._transport
        if transport is None or transport.is_closing():
            raise LinkDown(self._lost_reason or f"not connected to {self.name}")
        loop = asyncio.get_running_loop()
        self._tid = tid = self._tid + 1 if self._tid < 0xFFFF else 1
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


class RtuLink:
    """One serial port in RTU mode. Every call into pyserial runs in this link's single worker thread."""

    def __init__(
        self,
        port: str,
        *,
        baudrate: int = 9600,
        bytesize: int = 8,
        parity: str = "N",
        stopbits: int = 1,
        silence: float = 0.004,
        char_time: float = 0.00104,
    ) -> None:
        self.name = port
        self.port = port
        self.settings = {"baudrate": baudrate, "bytesize": bytesize, "parity": parity, "stopbits": stopbits}
        self.silence = silence
        self.char_time = char_time
        self._serial: Any = None
        self._quiet_until = 0.0  # monotonic time before which the line must stay silent
        self._worker: ThreadPoolExecutor | None = None
        self._closing: Future[None] | None = None  # the previous worker closing the port

    @property
    def is_open(self) -> bool:
        return self._serial is not None and self._worker is not None

    async def open(self, timeout: float) -> None:
        if self._closing is not None:
            await asyncio.wrap_future(self._closing)  # the port is locked until the old worker lets go
            self._closing = None
        if self._worker is None:
            self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"rtu {self.port}")
        await asyncio.get_running_loop().run_in_executor(self._worker, self._open)

    def _open(self) -> None:
        import serial  # pyserial

        options: dict[str, Any] = dict(self.settings)
        if os.name == "posix":
            options["exclusive"] = True  # a second process on the same port would garble both
        try:
            self._serial = serial.serial_for_url(self.port, timeout=0, write_timeout=5, **options)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise LinkDown(f"cannot open serial port {self.port}: {exc}") from None
        self._quiet_until = time.monotonic() + self.silence

    async def transact(self, unit: int, pdu: bytes, timeout: float) -> bytes:
        worker = self._worker
        if self._serial is None or worker is None:
            raise LinkDown(f"serial port {self.port} is not open")
        return await asyncio.get_running_loop().run_in_executor(worker, self._transact, unit, pdu, timeout)

    def _transact(self, unit: int, pdu: bytes, timeout: float) -> bytes:
        import serial  # pyserial

        ser = self._serial
        if ser is None:
            raise LinkDown(f"serial port {self.port} is not open")
        try:
            wait = self._quiet_until - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            ser.reset_input_buffer()  # a late answer to an earlier request must not be taken for this one
            frame = rtu_frame(unit, pdu)
            ser.write(frame)
            ser.flush()
            try:
                return self._receive(ser, unit, pdu[0], timeout)
            finally:
                self._quiet_until = time.monotonic() + self.silence
        except (serial.SerialException, OSError) as exc:
            self._close_now()
            raise LinkDown(f"serial port {self.port} failed: {exc}") from None

    def _receive(self, ser: Any, unit: int, function: int, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        head = self._read(ser, 3, deadline)
        if len(head) < 3:
            if head:
                raise BadFrame(f"answer from unit {unit} cut short after {len(head)} bytes")
            raise NoResponse()
        # the rest of the frame follows without pause: allow its transmission time, twice over
        if head[0] != unit or head[1] & 0x7F != function:
            self._drain(ser)
            raise BadFrame(f"unexpected answer {head.hex()} to unit {unit} function {function}")
        rest = 2 if head[1] & 0x80 else head[2] + 2
        more = self._read(ser, rest, time.monotonic() + max(0.05, 2 * rest * self.char_time) + timeout)
        frame = head + more
        if len(more) < rest or not rtu_check(frame):
            self._drain(ser)
            raise BadFrame(f"bad CRC or short frame from unit {unit}")
        return frame[1:-2]

    @staticmethod
    def _read(ser: Any, n: int, deadline: float) -> bytes:
        buf = b""
        while len(buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ser.timeout = left
            chunk = ser.read(n - len(buf))
            if chunk:
                buf += chunk
        return buf

    def _drain(self, ser: Any) -> None:
        """Read and drop bytes until the line has been quiet for a silence period."""
        ser.timeout = max(self.silence, 0.002)
        for _ in range(256):
            if not ser.read(256):
                return

    def _close_now(self) -> None:
        ser, self._serial = self._serial, None
        if ser is not None:
            with contextlib.suppress(Exception):
                ser.close()

    def close(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            self._closing = worker.submit(self._close_now)
            worker.shutdown(wait=False)
        else:
            self._close_now()
