"""Serial line simulator: Modbus RTU units (`ModbusSimulator`) and DL/T 645 meters on one port.

One serial port, many unit ids and meters, as on an RS-485 bus: a request for a unit id or meter
address nobody serves (or one made `silent`) gets no answer, so the master times out. A frame that
starts with 0xFE (the DL/T 645 wake-up byte, never a Modbus unit id) is a meter's; one that starts
with 0x68 is a Modbus request to unit 104 when its CRC says so, a meter's otherwise. pyserial's
blocking calls run in a reader thread; answers are computed on the event loop that owns the models
(delays included), so the models are never touched from two threads.

In tests the port is one end of a `socat` pty pair; a pty ignores the baud rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from simulators.dlt645_meter import MeterLine, SimMeter
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
        meters: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(models, unit_id, clock, byte_order)
        self.meters = MeterLine(meters or {}, clock)  # address -> a machine (its energy meter) or a SimMeter
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

    def meter(self, address: str) -> SimMeter:
        return self.meters.meters[address]

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
                got = self._read_frame(ser)
            except Exception:  # the port went away
                return
            if got is None:
                continue
            kind, frame = got
            if kind == "modbus" and frame[0] == 0:
                continue  # broadcast: never answered
            future = asyncio.run_coroutine_threadsafe(self._answer(kind, frame), self._loop)  # type: ignore[arg-type]
            try:
                out = future.result(timeout=30)
            except Exception:
                continue
            if out is not None and not self._stop.is_set():
                with contextlib.suppress(Exception):
                    ser.write(out)
                    ser.flush()
                    if self.trace is not None:
                        self.answered_at.append(time.monotonic())

    async def _answer(self, kind: str, frame: bytes) -> bytes | None:
        """The bytes to send back (None: stay silent), after the fault's delay."""
        if kind == "dlt645":
            out, delay = self.meters.answer(frame)
        else:
            unit, pdu = frame[0], frame[1:-2]
            response, delay = self.answer(unit, pdu, missing=None)
            out = None
            if response is not None:
                out = with_crc(bytes((unit,)) + response)
                if self.garble(unit):
                    out = out[:-1] + bytes((out[-1] ^ 0xA5,))  # a bad CRC
        if out is not None and delay > 0:
            await asyncio.sleep(delay)
        return out

    def _read_frame(self, ser: Any) -> tuple[str, bytes] | None:
        """One request frame: ("modbus", frame with a good CRC) or ("dlt645", frame); None when there is
        nothing yet, or garbage that was dropped."""
        ser.timeout = 0.05
        head = ser.read(2)
        if len(head) < 2:
            if head:
                self._resync(ser)
            return None
        ser.timeout = 0.5
        if head[0] == 0xFE:
            return self._read_dlt645(ser, head)
        function = head[1]
        if function in _FIXED_LENGTH:
            frame = head + ser.read(_FIXED_LENGTH[function] - 2)
            if head[0] == 0x68 and not self._crc_ok(frame) and len(frame) == 8 and frame[7] == 0x68:
                return self._read_dlt645(ser, frame)  # unit 104 or a meter: the CRC tells
        elif function in (15, 16):
            more = ser.read(5)  # start, count, byte count
            frame = head + more + (ser.read(more[4] + 2) if len(more) == 5 else b"")
        elif head[0] == 0x68:
            return self._read_dlt645(ser, head)
        else:
            self._resync(ser)
            return None
        if not self._crc_ok(frame):
            self.bad_frames += 1
            self._resync(ser)
            return None
        return "modbus", frame

    @staticmethod
    def _crc_ok(frame: bytes) -> bool:
        return len(frame) >= 4 and crc16(frame[:-2]) == int.from_bytes(frame[-2:], "little")

    def _read_dlt645(self, ser: Any, got: bytes) -> tuple[str, bytes] | None:
        """The rest of a DL/T 645 frame begun with `got` (wake-up bytes, then 68 A0..A5 68 C L DATA CS 16)."""
        buf = bytearray(got)
        while buf and buf[0] == 0xFE:
            del buf[0]
        while not buf:
            b = ser.read(1)
            if not b:
                return None
            if b[0] != 0xFE:
                buf += b
        if buf[0] != 0x68:
            self._resync(ser)
            return None
        if len(buf) < 10:
            buf += ser.read(10 - len(buf))
        if len(buf) < 10:
            self._resync(ser)
            return None
        need = 12 + buf[9] - len(buf)
        if need > 0:
            buf += ser.read(need)
        return "dlt645", bytes(buf)

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
