"""Modbus RTU simulator: the units of `ModbusSimulator` answering on a serial port path.

One serial port, many unit ids, as on an RS-485 bus: a request for a unit id nobody serves (or a
unit made `silent`) gets no answer, so the master times out. pyserial's blocking calls run in a
reader thread; answers are computed on the event loop that owns the models (delays included), so
the models are never touched from two threads.

In tests the port is one end of a `socat` pty pair; a pty ignores the baud rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from simulators.modbus_server import EquipmentModel, ModbusSimulator

# request length by function code for the frames a master may send (unit + PDU + CRC)
_FIXED_LENGTH = {1: 8, 2: 8, 3: 8, 4: 8, 5: 8, 6: 8}


def crc16(data: bytes) -> int:
    """Modbus CRC-16 (reflected 0xA001, initial 0xFFFF), computed bit by bit."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def with_crc(body: bytes) -> bytes:
    return body + crc16(body).to_bytes(2, "little")


class ModbusRtuSimulator(ModbusSimulator):
    """Serves equipment models on unit ids of one serial port (`port`: a device path or pyserial URL)."""

    def __init__(
        self,
        models: EquipmentModel | Sequence[EquipmentModel] | Mapping[int, EquipmentModel],
        port: str,
        unit_id: int = 1,
        baudrate: int = 9600,
        clock: Callable[[], float] = time.monotonic,
        byte_order: str = "ABCD",
    ) -> None:
        super().__init__(models, unit_id, clock, byte_order)
        self.port = port
        self.baudrate = baudrate
        self.bad_frames = 0
        self.answered_at: list[float] = []  # monotonic time each answer was on its way (with `trace` set)
        self._serial: Any = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    async def start(self) -> None:
        if self._thread is not None:
            return
        import serial  # pyserial

        self._loop = asyncio.get_running_loop()
        now = self.clock()
        for unit in self.units.values():
            unit.model.step(now)
        self._serial = await self._loop.run_in_executor(
            None, lambda: serial.serial_for_url(self.port, baudrate=self.baudrate, timeout=0.05)
        )
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, name=f"rtu-sim {self.port}", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        await asyncio.get_running_loop().run_in_executor(None, thread.join, 5.0)
        with contextlib.suppress(Exception):
            self._serial.close()
        self._serial = None

    async def __aenter__(self) -> ModbusRtuSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------ the reader thread

    def _serve(self) -> None:
        ser = self._serial
        while not self._stop.is_set():
            try:
                frame = self._read_frame(ser)
            except Exception:  # the port went away
                return
            if frame is None:
                continue
            unit, pdu = frame[0], frame[1:-2]
            if unit == 0:
                continue  # broadcast: never answered
            future = asyncio.run_coroutine_threadsafe(self._answer(unit, pdu), self._loop)  # type: ignore[arg-type]
            try:
                response = future.result(timeout=30)
            except Exception:
                continue
            if response is not None and not self._stop.is_set():
                with contextlib.suppress(Exception):
                    ser.write(with_crc(bytes((unit,)) + response))
                    ser.flush()
                    if self.trace is not None:
                        self.answered_at.append(time.monotonic())

    async def _answer(self, unit: int, pdu: bytes) -> bytes | None:
        response, delay = self.answer(unit, pdu, missing=None)
        if response is not None and delay > 0:
            await asyncio.sleep(delay)
        return response

    def _read_frame(self, ser: Any) -> bytes | None:
        """One request frame with a good CRC, or None (nothing yet, or garbage that was dropped)."""
        ser.timeout = 0.05
        head = ser.read(2)
        if len(head) < 2:
            if head:
                self._resync(ser)
            return None
        function = head[1]
        ser.timeout = 0.5
        if function in _FIXED_LENGTH:
            frame = head + ser.read(_FIXED_LENGTH[function] - 2)
        elif function in (15, 16):
            more = ser.read(5)  # start, count, byte count
            frame = head + more + (ser.read(more[4] + 2) if len(more) == 5 else b"")
        else:
            self._resync(ser)
            return None
        if len(frame) < 4 or crc16(frame[:-2]) != int.from_bytes(frame[-2:], "little"):
            self.bad_frames += 1
            self._resync(ser)
            return None
        return frame

    @staticmethod
    def _resync(ser: Any) -> None:
        """Drop bytes until the line has been quiet for a while: the next byte starts a frame."""
        ser.timeout = 0.01
        for _ in range(1000):
            if not ser.read(256):
                return


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m simulators.modbus_rtu --port /dev/ttyUSB1 --units 1,2,3`: air-jet looms on a serial line."""
    import argparse
    import signal

    from simulators.loom import AirJetLoom

    p = argparse.ArgumentParser(prog="python -m simulators.modbus_rtu", description="Modbus RTU 模拟器 / simulator")
    p.add_argument("--port", required=True, help="serial port or pty path (one end of a socat pair)")
    p.add_argument("--units", default="1", help="unit ids, comma separated (default 1)")
    p.add_argument("--baudrate", type=int, default=9600)
    args = p.parse_args(argv)
    units = [int(u) for u in args.units.split(",")]

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):  # Windows
                loop.add_signal_handler(sig, stop.set)
        looms = {u: AirJetLoom(seed=u) for u in units}
        async with ModbusRtuSimulator(looms, port=args.port, baudrate=args.baudrate):
            print(f"模拟织机 / simulated looms, units {args.units} on {args.port} at {args.baudrate} baud")
            print("按 Ctrl-C 停止 / press Ctrl-C to stop", flush=True)
            await stop.wait()

    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
