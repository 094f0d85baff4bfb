"""A serial port (RS-485) carrying one request frame and its answer at a time, whatever the protocol.

`SerialLink.exchange(frame, receive, timeout)` keeps the inter-frame silence, drops anything left
on the line (a late answer to an earlier request must not be taken for this one), sends the frame
and hands a `PortReader` to the protocol's `receive` to take the answer off the line: Modbus RTU
(`drivers.modbus.transport`) and DL/T 645 (`drivers.dlt645.driver`) frames share one port this way.
pyserial's blocking calls run in one worker thread per port, which works the same on Linux and
Windows; a pty pair from `socat` stands in for a real RS-485 adapter in tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from drivers.bus.errors import LinkDown, LinkError


def char_time(baudrate: int, bytesize: int = 8, parity: str = "N", stopbits: int = 1) -> float:
    """Seconds one character takes on the line: start bit, data bits, parity bit, stop bits."""
    return (1 + bytesize + (0 if parity == "N" else 1) + stopbits) / baudrate


def rtu_silence(baudrate: int, bytesize: int = 8, parity: str = "N", stopbits: int = 1) -> float:
    """Inter-frame silence: 3.5 characters, and 1.75 ms above 19,200 baud (Modbus over serial line, 2.5.1.1)."""
    if baudrate > 19200:
        return 0.00175
    return 3.5 * char_time(baudrate, bytesize, parity, stopbits)


@dataclass(frozen=True, slots=True)
class LineSettings:
    """A serial line as devices on it share it: the port and its character format, and the silence."""

    port: str
    baudrate: int = 9600
    bytesize: int = 8
    parity: str = "N"
    stopbits: int = 1
    silence: float | None = None  # None: 3.5 characters (at least 1.75 ms)

    @classmethod
    def of(cls, connection: Any) -> LineSettings:
        """The line of a Modbus RTU or DL/T 645 connection config."""
        c = connection
        return cls(c.port, c.baudrate, c.bytesize, c.parity, c.stopbits, c.silence)

    @property
    def key(self) -> str:
        """The bus key: every device on this port shares one bus, whatever its protocol."""
        return f"serial://{self.port}"

    @property
    def gap(self) -> float:
        if self.silence is not None:
            return self.silence
        return rtu_silence(self.baudrate, self.bytesize, self.parity, self.stopbits)

    @property
    def char_time(self) -> float:
        return char_time(self.baudrate, self.bytesize, self.parity, self.stopbits)

    @property
    def settings(self) -> tuple[object, ...]:
        """What devices on one port must agree on."""
        return (self.baudrate, self.bytesize, self.parity, self.stopbits, self.gap)

    def link(self) -> SerialLink:
        return SerialLink(self)


# a USB-serial adapter hands over what it received up to its latency timer later (FTDI's default: 16 ms): an
# answer that came within the timeout on the wire must not be lost to that
ADAPTER_LATENCY_S = 0.02


class PortReader:
    """The receiving side of one exchange, in the link's worker thread.

    The exchange has one absolute deadline, counted once from its start (just before the request
    went out): the request's transmission time, the answer timeout (plus `ADAPTER_LATENCY_S`), and the answer's own
    transmission time at the line's baud rate as far as the protocol knows its length (`expect`).
    Every read waits at most until then, however the answer trickles in: a device that sends its
    bytes slowly cannot hold the shared bus beyond it, and an answer not complete by then is not
    taken (no response, or a garbled answer)."""

    def __init__(self, ser: Any, line: LineSettings, timeout: float, start: float | None = None,
                 sent: int = 0) -> None:  # fmt: skip
        self.ser = ser
        self.line = line
        self.timeout = timeout
        self.start = time.monotonic() if start is None else start
        self._base = self.start + sent * line.char_time + timeout + ADAPTER_LATENCY_S
        self.deadline = self._base

    def expect(self, n: int) -> None:
        """The answer is (at least) `n` bytes long in all, wake-up bytes included: allow their
        transmission time once, on top of the timeout (the deadline never moves earlier)."""
        self.deadline = max(self.deadline, self._base + n * self.line.char_time)

    def read(self, n: int) -> bytes:
        """Up to `n` bytes, waiting at most until the exchange's deadline (bytes that came by then are
        taken even if this thread was late to look)."""
        ser = self.ser
        buf = b""
        while len(buf) < n:
            left = self.deadline - time.monotonic()
            ser.timeout = max(left, 0)  # past the deadline: only what is already in
            buf += ser.read(n - len(buf))
            if left <= 0:
                break
        return buf

    def drain(self) -> None:
        """Read and drop bytes until the line has been quiet for a silence period, but not beyond the
        exchange's deadline (plus one silence period): a babbling device does not hold the bus either."""
        ser = self.ser
        gap = max(self.line.gap, 0.002)
        end = max(self.deadline, time.monotonic()) + gap
        while (left := end - time.monotonic()) > 0:
            ser.timeout = min(gap, left)
            if not ser.read(256):
                return


Receive = Callable[[PortReader], bytes]


class SerialLink:
    """One serial port. Every call into pyserial runs in this link's single worker thread."""

    def __init__(self, line: LineSettings) -> None:
        self.line = line
        self.name = line.port
        self.port = line.port
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
            self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"serial {self.port}")
        await asyncio.get_running_loop().run_in_executor(self._worker, self._open)

    def _open(self) -> None:
        import serial  # pyserial

        ln = self.line
        options: dict[str, Any] = {"baudrate": ln.baudrate, "bytesize": ln.bytesize, "parity": ln.parity,
                                   "stopbits": ln.stopbits}  # fmt: skip
        if os.name == "posix":
            options["exclusive"] = True  # a second process on the same port would garble both
        try:
            self._serial = serial.serial_for_url(self.port, timeout=0, write_timeout=5, **options)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise LinkDown(f"cannot open serial port {self.port}: {exc}") from None
        self._quiet_until = time.monotonic() + ln.gap

    async def exchange(self, frame: bytes, receive: Receive, timeout: float) -> bytes:
        """Send `frame`, then `receive(reader)` the answer (NoResponse/BadFrame from it); LinkDown if the
        port fails."""
        worker = self._worker
        if self._serial is None or worker is None:
            raise LinkDown(f"serial port {self.port} is not open")
        return await asyncio.get_running_loop().run_in_executor(worker, self._exchange, frame, receive, timeout)

    def _exchange(self, frame: bytes, receive: Receive, timeout: float) -> bytes:
        ser = self._serial
        if ser is None:
            raise LinkDown(f"serial port {self.port} is not open")
        try:
            wait = self._quiet_until - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            ser.reset_input_buffer()  # a late answer to an earlier request must not be taken for this one
            start = time.monotonic()  # the exchange's one deadline counts from here (`PortReader`)
            ser.write(frame)
            ser.flush()
            try:
                return receive(PortReader(ser, self.line, timeout, start, len(frame)))
            finally:
                self._quiet_until = time.monotonic() + self.line.gap
        except LinkError:  # the answer's business (no answer, a garbled one)
            raise
        except Exception as exc:  # pyserial's and the OS's (termios.error is not an OSError): the port failed
            self._close_now()
            raise LinkDown(f"serial port {self.port} failed: {exc!r}") from None

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
