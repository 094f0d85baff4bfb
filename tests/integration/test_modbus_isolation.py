"""Bad-address isolation over real sockets (Modbus TCP) and a socat pty pair (Modbus RTU)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from drivers.base import DriverError
from drivers.modbus import BusPool, ModbusDriver
from edge_config.models import ModbusRtuDevice, ModbusTcpDevice
from simulators.modbus_rtu import ModbusRtuSimulator
from simulators.modbus_server import ModbusSimulator, ModbusTcpSimulator, StaticModel
from tests.integration.rtu import pty_pair
from tests.ports import free_port

pytestmark = pytest.mark.integration

TAGS = [{"name": f"r{a}", "address": f"hr:{a}", "type": "uint16"} for a in range(30)]
TAGS.append({"name": "total", "address": "hr:30", "type": "float64"})
VALUES: dict[str, Any] = {f"r{a}": 1000 + a for a in range(30)} | {"total": 12.5}


class Rig:
    """A simulator and a device config pointing at it, over TCP or RTU."""

    def __init__(self, sim: ModbusSimulator, connection: dict[str, Any], driver: str) -> None:
        self.sim = sim
        self.connection = connection
        self.driver = driver

    def device(self, **connection: Any) -> ModbusTcpDevice | ModbusRtuDevice:
        cfg = {
            "id": "meter",
            "driver": self.driver,
            "connection": self.connection | {"timeout": "1s", "bad_retry": "500ms"} | connection,
            "tags": TAGS,
        }
        if self.driver == "modbus_tcp":
            return ModbusTcpDevice.model_validate(cfg)
        return ModbusRtuDevice.model_validate(cfg)


@pytest.fixture(params=["tcp", "rtu"])
async def rig(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Rig]:
    async with AsyncExitStack() as stack:
        model = StaticModel(TAGS, VALUES)
        if request.param == "tcp":
            port = free_port()
            sim: ModbusSimulator = await stack.enter_async_context(ModbusTcpSimulator(model, port=port))
            yield Rig(sim, {"host": "127.0.0.1", "port": port}, "modbus_tcp")
        else:
            master, slave = stack.enter_context(pty_pair(tmp_path))
            sim = await stack.enter_async_context(ModbusRtuSimulator(model, port=slave, baudrate=19200))
            yield Rig(sim, {"port": master, "baudrate": 19200}, "modbus_rtu")


async def scan(drv: ModbusDriver, sim: ModbusSimulator) -> tuple[dict[str, Any], int]:
    """One scan: readings by tag, and how many requests reached the device."""
    sim.trace = []
    readings = await drv.read()
    requests = len(sim.trace)
    sim.trace = None
    return {r.tag: r for r in readings}, requests


async def test_illegal_address_in_the_middle_of_a_block_leaves_its_neighbours_good(rig: Rig) -> None:
    rig.sim.faults().refuse("hr:12")
    drv = ModbusDriver(rig.device(), BusPool())
    assert len(drv.blocks) == 1  # hr:0..33 in one request
    await drv.connect()
    try:
        got, requests = await scan(drv, rig.sim)
        assert got["r12"].quality == "bad" and got["r12"].value is None
        assert got["r12"].error == "exception 2 (illegal data address)"
        for name in ("r11", "r13"):
            assert got[name].quality == "good" and got[name].value == VALUES[name]
        assert all(r.value == VALUES[t] for t, r in got.items() if t != "r12")
        assert requests <= 1 + 2 * 6  # the block, then a binary search

        # the split plan is kept: the next scans do not search again
        for _ in range(3):
            got, requests = await scan(drv, rig.sim)
            assert requests == 2 == len(drv.pieces)
            assert [t for t, r in got.items() if r.quality == "bad"] == ["r12"]
    finally:
        await drv.close()


async def test_refused_tags_are_retried_rarely_and_come_back(rig: Rig) -> None:
    rig.sim.faults().refuse("hr:20")
    drv = ModbusDriver(rig.device(), BusPool())
    await drv.connect()
    try:
        await scan(drv, rig.sim)
        rig.sim.trace = []
        loop = asyncio.get_running_loop()
        started = loop.time()
        scans = 0
        while loop.time() - started < 1.3 and scans < 200:  # bad_retry is 500 ms
            await drv.read()
            scans += 1
            await asyncio.sleep(0.02)
        retries = sum(1 for _, _, pdu in rig.sim.trace if pdu == bytes.fromhex("03 0014 0001"))
        assert 1 <= retries <= 3 < scans  # about every 500 ms, not every scan

        rig.sim.faults().clear()  # the address answers again
        for _ in range(100):
            got, _ = await scan(drv, rig.sim)
            if got["r20"].quality == "good":
                break
            await asyncio.sleep(0.05)
        assert got["r20"].value == VALUES["r20"]
        got, requests = await scan(drv, rig.sim)
        assert requests == 1 and all(r.quality == "good" for r in got.values())
    finally:
        await drv.close()


async def test_an_unmapped_gap_inside_a_block_is_read_around(rig: Rig) -> None:
    """A tag map that bridges a hole the device does not have: the hole becomes a barrier."""
    drv = ModbusDriver(_with_extra_tag(rig, {"name": "far", "address": "hr:40", "type": "uint16"}), BusPool())
    assert len(drv.blocks) == 1  # hr:0..40, bridging the unmapped hr:34..39 (max_gap 16)
    await drv.connect()
    try:
        got, _ = await scan(drv, rig.sim)
        assert got["far"].quality == "bad"  # the simulator has no hr:40: refused, alone
        assert all(r.quality == "good" for t, r in got.items() if t != "far")
        got, requests = await scan(drv, rig.sim)
        assert requests == 1  # hr:0..33 only; hr:40 waits for its retry
    finally:
        await drv.close()


def _with_extra_tag(rig: Rig, tag: dict[str, Any]) -> ModbusTcpDevice | ModbusRtuDevice:
    dev = rig.device()
    data = dev.model_dump()
    data["tags"].append(tag)
    return type(dev).model_validate(data)


async def test_a_device_that_chokes_on_large_requests(rig: Rig) -> None:
    rig.sim.faults().max_count = 10
    drv = ModbusDriver(rig.device(), BusPool())
    await drv.connect()
    try:
        got, _ = await scan(drv, rig.sim)
        assert all(r.quality == "good" for r in got.values())
        got, requests = await scan(drv, rig.sim)
        assert all(p.count <= 10 for p in drv.pieces) and requests == len(drv.pieces) <= 5
        # a lower limit in the config avoids the search altogether
        drv2 = ModbusDriver(rig.device(max_registers=10), BusPool())
        assert len(drv2.blocks) == 4
    finally:
        await drv.close()


class Clock:
    """The driver's clock, moved by the test: retries fall due when the test says, not by waiting."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_a_device_whose_every_tag_is_refused_is_still_asked_every_scan(rig: Rig) -> None:
    """With every tag refused and no retry due, each scan still reads one refused tag (the smallest) as a
    probe: a device that then goes silent fails its next scan, as any other would, instead of looking
    alive on scans that sent nothing."""
    for a in range(31):  # hr:0..29 and the float64 at hr:30
        rig.sim.faults().refuse(f"hr:{a}")
    drv = ModbusDriver(rig.device(bad_retry="1h"), BusPool(), clock=Clock())
    await drv.connect()
    try:
        changes = await drv.read_changes()
        assert changes.read == changes.bad == len(TAGS) and not drv.pieces
        for _ in range(3):
            rig.sim.trace = []
            changes = await drv.read_changes()
            assert [pdu for _, _, pdu in rig.sim.trace] == [bytes.fromhex("03 0000 0001")]  # r0, alone
            assert changes.read == changes.bad == len(TAGS)
        rig.sim.faults().silent = True  # the device dies; on TCP the connection stays open
        with pytest.raises(DriverError, match="no response from unit 1"):
            await drv.read_changes()
    finally:
        await drv.close()


async def test_a_one_off_refusal_is_undone_at_the_next_retry(rig: Rig) -> None:
    """A device busy or booting refuses one read (exception 2, or 3): the block is read in pieces until
    bad_retry, when the refused read is tried whole again, and from then on in one request again; a
    reconnect tries it at once. A tag the device really refuses stays isolated across the retries."""
    clock = Clock()
    drv = ModbusDriver(rig.device(), BusPool(), clock=clock)  # bad_retry 500 ms
    await drv.connect()
    try:
        _, requests = await scan(drv, rig.sim)
        assert requests == 1
        for code in (2, 3, 2):
            rig.sim.faults().glitches = [code]
            got, _ = await scan(drv, rig.sim)
            assert all(r.quality == "good" for r in got.values())
            _, requests = await scan(drv, rig.sim)
            pieces = len(drv.pieces)
            assert requests == pieces > 1  # kept until the retry
            if code == 3:
                clock.now += 0.5  # the retry: the pieces, and the refused read whole again, as a test
                _, requests = await scan(drv, rig.sim)
                assert requests == pieces + 1
            else:
                await drv.close()  # a reconnect: the device may have restarted
                await drv.connect()
                await scan(drv, rig.sim)
            assert len(drv.pieces) == 1
            _, requests = await scan(drv, rig.sim)
            assert requests == 1

        rig.sim.faults().refuse("hr:12")  # a real refusal
        await scan(drv, rig.sim)
        for _ in range(3):
            clock.now += 0.5
            got, _ = await scan(drv, rig.sim)
            assert [t for t, r in got.items() if r.quality == "bad"] == ["r12"]
            _, requests = await scan(drv, rig.sim)
            assert requests == 2 == len(drv.pieces)
    finally:
        await drv.close()
