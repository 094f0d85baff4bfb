"""Modbus TCP over loopback: reconnect after a power cycle or a reset, units behind one gateway,
poll groups, slow and silent devices, answers that must not be taken (another unit's, a malformed exception)."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from cloud_bridge.uplink.buffer import Outgoing
from cloud_bridge.wire.codec import Topics, decode_data, envelope
from drivers.base import DriverError
from drivers.modbus import BusPool, ModbusDriver
from edge_config.models import ModbusTcpDevice
from gateway.channel import DeviceChannel, DeviceState
from gateway.normalize import Normalizer, TagSpec
from gateway.poller import poll_loop
from simulators.loom import AirJetLoom, loom_device_config
from simulators.modbus_server import ModbusTcpSimulator, StaticModel
from tests.integration.rtu import Recorder, poll_for
from tests.ports import free_port

pytestmark = pytest.mark.integration


def loom(port: int, unit: int = 1, interval: str = "200ms", **connection: Any) -> ModbusTcpDevice:
    cfg = loom_device_config(f"loom-{unit}", f"织机 {unit}#", "127.0.0.1", port, unit_id=unit)
    cfg["poll_interval"] = interval
    cfg["connection"] |= {"timeout": "300ms", "backoff_max": "500ms"} | connection
    return ModbusTcpDevice.model_validate(cfg)


def first_good_after(rec: Recorder, t: float) -> float:
    return min(x for x in rec.good_times() if x > t)


async def test_a_device_stopped_and_restarted_is_read_again_within_two_intervals_plus_the_backoff() -> None:
    port = free_port()
    sim = ModbusTcpSimulator(AirJetLoom(seed=3), port=port)
    await sim.start()
    rec = Recorder("loom-1")
    loop = asyncio.get_running_loop()
    marks: dict[str, float] = {}

    async def power_cycle() -> None:
        await asyncio.sleep(0.6)
        await sim.stop()
        marks["off"] = loop.time()
        await asyncio.sleep(1.5)  # long enough for the backoff to reach its cap
        await sim.start()
        marks["on"] = loop.time()

    cycle = asyncio.create_task(power_cycle())
    try:
        await poll_for([(ModbusDriver(loom(port), BusPool()), rec)], 3.5)
        await cycle
    finally:
        await sim.stop()
    assert [online for _, online, _ in rec.status] == [True, False, True]
    assert f"127.0.0.1:{port}" in rec.status[1][2]
    back = first_good_after(rec, marks["on"]) - marks["on"]
    assert back <= 2 * 0.2 + 0.5 * 1.2 + 0.4  # two intervals, the capped backoff with jitter, a loaded machine
    assert not [t for t in rec.good_times() if marks["off"] < t < marks["on"]]


async def test_a_connection_reset_is_recovered() -> None:
    port = free_port()
    async with ModbusTcpSimulator(AirJetLoom(seed=3), port=port) as sim:
        rec = Recorder("loom-1")
        loop = asyncio.get_running_loop()
        resets: list[float] = []

        async def reset_twice() -> None:
            for _ in range(2):
                await asyncio.sleep(0.7)
                assert sim.drop_connections() == 1
                resets.append(loop.time())

        task = asyncio.create_task(reset_twice())
        await poll_for([(ModbusDriver(loom(port), BusPool()), rec)], 2.5)
        await task
    for t in resets:
        assert first_good_after(rec, t) - t <= 2 * 0.2 + 0.5 * 1.2 + 0.4
    assert rec.status[-1][1] is True


async def test_units_behind_one_tcp_gateway_share_one_connection() -> None:
    port = free_port()
    looms = {1: AirJetLoom(seed=1), 2: AirJetLoom(seed=2), 3: AirJetLoom(seed=3)}
    async with ModbusTcpSimulator(looms, port=port) as sim:
        pool = BusPool()
        units = (1, 2, 3, 9)  # nothing answers behind the gateway for unit 9
        recs = {u: Recorder(f"loom-{u}") for u in units}
        connections: list[int] = []

        async def watch() -> None:
            for _ in range(8):
                await asyncio.sleep(0.15)
                connections.append(len(sim.connections))

        watcher = asyncio.create_task(watch())
        await poll_for([(ModbusDriver(loom(port, u), pool), recs[u]) for u in units], 1.5)
        await watcher
    assert set(connections) == {1}  # one connection for all four units, never dropped
    for u in (1, 2, 3):
        assert [online for _, online, _ in recs[u].status] == [True] and len(recs[u].good_times()) >= 3
    assert recs[9].status[0][1:] == (
        False,
        f"exception 11 (gateway target device failed to respond) for unit 9 at 127.0.0.1:{port}",
    )


async def test_poll_groups_read_each_tag_at_its_interval() -> None:
    port = free_port()
    cfg = loom_device_config("loom-1", "织机", "127.0.0.1", port)
    cfg["poll_interval"] = "600ms"
    for tag in cfg["tags"]:
        if tag["name"] in ("speed", "run_state"):
            tag["interval"] = "100ms"
    dev = ModbusTcpDevice.model_validate(cfg)
    drv = ModbusDriver(dev, BusPool())
    assert drv.poll_intervals == (0.1, 0.6)
    assert [(b.table.value, b.start, b.count) for b in drv.groups[0].planned] == [("hr", 0, 2)]
    async with ModbusTcpSimulator(AirJetLoom(seed=5), port=port) as sim:
        sim.trace = []
        rec = Recorder("loom-1")
        await poll_for([(drv, rec)], 1.5)
    fast = sum(1 for _, _, pdu in sim.trace if pdu == bytes.fromhex("03 0000 0002"))
    slow = sum(1 for _, _, pdu in sim.trace if pdu == bytes.fromhex("03 0002 0012"))  # hr:2..19
    assert 8 <= fast <= 16 and 2 <= slow <= 4  # 15 and 3 on an idle machine
    assert rec.state.overruns <= fast // 3
    speed_scans = sum(1 for _, rs in rec.scans if any(r.tag == "speed" for r in rs))
    energy_scans = sum(1 for _, rs in rec.scans if any(r.tag == "energy_kwh" for r in rs))
    assert speed_scans == fast and energy_scans == slow


async def test_slow_and_silent_devices() -> None:
    port = free_port()
    async with ModbusTcpSimulator(AirJetLoom(seed=3), port=port) as sim:
        drv = ModbusDriver(loom(port), BusPool())
        await drv.connect()
        try:
            sim.faults().delay = 0.1  # slower than usual, within the 300 ms timeout
            assert all(r.quality == "good" for r in await drv.read())
            sim.faults().delay = 0.0
            sim.faults().silent = True  # a PLC that stopped answering
            with pytest.raises(DriverError, match=f"no response from unit 1 at 127.0.0.1:{port} within 0.3s"):
                await drv.read()
            sim.faults().silent = False
            await drv.close()
            await drv.connect()  # a fresh connection: the old one may be half open
            assert all(r.quality == "good" for r in await drv.read())
        finally:
            await drv.close()


async def test_a_nan_register_is_a_bad_sample_and_the_device_keeps_being_read() -> None:
    """A meter answering NaN for "not available": through the real poll loop and channel, the tag goes
    out bad (JSON cannot carry NaN) and the device's loop carries on to the next value."""
    tags = [
        {"name": "power", "address": "hr:0", "type": "float32"},
        {"name": "count", "address": "hr:2", "type": "uint16"},
    ]
    model = StaticModel(tags, {"power": float("nan"), "count": 1})
    port = free_port()
    dev = ModbusTcpDevice.model_validate(
        {
            "id": "meter-1",
            "driver": "modbus_tcp",
            "connection": {"host": "127.0.0.1", "port": port},
            "poll_interval": "100ms",
            "tags": tags,
        }
    )
    messages: list[Outgoing] = []
    normalizer = Normalizer([TagSpec(t.name, t.type) for t in dev.tags])
    topics = Topics("sf/v1", "ent-1", "gw-1")
    ch = DeviceChannel(DeviceState(dev.id, dev.name, dev.driver), topics, normalizer, messages.extend)
    async with ModbusTcpSimulator(model, port=port):
        stop = asyncio.Event()
        task = asyncio.create_task(poll_loop(ch, ModbusDriver(dev, BusPool()), 0.1, stop))
        await asyncio.sleep(0.5)
        model.values |= {"power": 12.5, "count": 2}
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.wait_for(task, 5)
    samples = [
        (s.tag, s.v, s.q)
        for m in messages
        if m.kind == "data"
        for s in decode_data(envelope("gw-1", m.dev, 1, False, m.body)).samples
    ]
    assert samples == [("power", 0, "bad"), ("count", 1, "good"), ("power", 12.5, "good"), ("count", 2, "good")]
    assert ch.state.online and ch.state.scans >= 8


Answer = Callable[[int, bytes], tuple[int, bytes]]  # (unit, request PDU) -> (unit, response PDU)


@asynccontextmanager
async def answering(answer: Answer) -> AsyncIterator[tuple[int, list[tuple[int, bytes]]]]:
    """A Modbus TCP server on loopback that answers every request as `answer` says: its port, and the
    (unit, PDU) of every request it got."""
    got: list[tuple[int, bytes]] = []
    handlers: set[asyncio.Task[Any]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            while True:
                tid, _, length, unit = struct.unpack(">HHHB", await reader.readexactly(7))
                pdu = await reader.readexactly(length - 1)
                got.append((unit, pdu))
                to, response = answer(unit, pdu)
                writer.write(struct.pack(">HHHB", tid, 0, len(response) + 1, to) + response)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], got
    finally:
        server.close()
        await server.wait_closed()
        if handlers:  # each ends when its client has closed the connection
            await asyncio.wait(handlers, timeout=5)


def one_register(port: int, unit: int) -> ModbusTcpDevice:
    return ModbusTcpDevice.model_validate(
        {
            "id": f"press-{unit}",
            "driver": "modbus_tcp",
            "connection": {"host": "127.0.0.1", "port": port, "unit_id": unit, "timeout": "1s"},
            "tags": [{"name": "strokes", "address": "hr:0", "type": "uint16"}],
        }
    )


async def test_an_answer_from_another_unit_is_not_taken_for_this_units_values() -> None:
    """A TCP-to-RTU gateway that mixes units up: unit 1's request answered, with the right transaction
    id, by unit 2 and its registers. Asked again, then the scan fails as a garbled answer: the device
    goes offline, 9999 is never this unit's value. Unit 3, answered as itself, reads on the same link.
    Alone on its connection, the unit fails the same way (the connection is not dropped before the retry)."""

    def mixed_up(unit: int, pdu: bytes) -> tuple[int, bytes]:
        return (2, bytes.fromhex("03 02 270F")) if unit == 1 else (unit, bytes.fromhex("03 02 002A"))

    async with answering(mixed_up) as (port, got):
        pool = BusPool()
        unit1, unit3 = ModbusDriver(one_register(port, 1), pool), ModbusDriver(one_register(port, 3), pool)
        await unit1.connect()
        await unit3.connect()
        try:
            with pytest.raises(DriverError) as info:
                await unit1.read()
            assert str(info.value) == (
                f"garbled answer from unit 1 at 127.0.0.1:{port}: unexpected answer from unit 2 to unit 1"
            )
            assert [u for u, _ in got] == [1, 1]  # asked once more, as for any garbled answer
            (reading,) = await unit3.read()  # the connection answers: it is kept
            assert (reading.value, reading.quality) == (42, "good")
        finally:
            await unit1.close()
            await unit3.close()
        alone = ModbusDriver(one_register(port, 1), BusPool())
        await alone.connect()
        try:
            got.clear()
            with pytest.raises(DriverError, match=r"garbled answer from unit 1 .*: unexpected answer from unit 2"):
                await alone.read()
            assert len(got) == 2
        finally:
            await alone.close()


async def test_a_malformed_exception_answer_is_garbled_not_a_refusal() -> None:
    """`83 02` and four more bytes is no exception 2: the tag is not refused (no isolation, no bad_retry
    wait) and the scan fails as a garbled answer; the next good answer reads at once."""
    answers = {"mode": "junk"}

    def answer(unit: int, pdu: bytes) -> tuple[int, bytes]:
        junk = answers["mode"] == "junk"
        return unit, bytes.fromhex("83 02 DEAD BEEF" if junk else "03 02 0007")

    async with answering(answer) as (port, got):
        drv = ModbusDriver(one_register(port, 1), BusPool())
        await drv.connect()
        try:
            with pytest.raises(DriverError, match=r"garbled answer from unit 1 .*malformed exception answer"):
                await drv.read()
            assert len(got) == 2 and not drv.groups[0].blocks[0].bad
            answers["mode"] = "good"
            got.clear()
            (reading,) = await drv.read()
            assert (reading.value, reading.quality) == (7, "good") and len(got) == 1
        finally:
            await drv.close()
