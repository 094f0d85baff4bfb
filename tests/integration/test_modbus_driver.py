"""ModbusTcpDriver against the loom simulator over real loopback sockets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from drivers.base import Driver, DriverError
from drivers.modbus import make_driver
from drivers.modbus.driver import ModbusDriver as ModbusTcpDriver
from edge_config.modbus import parse_address
from edge_config.modbus_codec import decode
from edge_config.models import ModbusRtuDevice, ModbusTcpDevice
from simulators.loom import LOOM_TAGS, AirJetLoom, loom_device_config
from simulators.modbus_server import Image, ModbusTcpSimulator
from simulators.workshop import Workshop, WorkshopSpec
from tests.ports import free_port, free_port_block

pytestmark = pytest.mark.integration


class Clock:
    """A clock the test moves by hand, so the model holds still between requests."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def sim(clock: Clock) -> AsyncIterator[ModbusTcpSimulator]:
    s = ModbusTcpSimulator(AirJetLoom(seed=11), port=free_port(), clock=clock)
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


def device(port: int, timeout: str = "1s", extra_tags: list[dict[str, Any]] | None = None) -> ModbusTcpDevice:
    cfg = loom_device_config("loom-01", "喷气织机 1#", "127.0.0.1", port)
    cfg["connection"]["timeout"] = timeout
    cfg["tags"] += extra_tags or []
    return ModbusTcpDevice.model_validate(cfg)


def expected(image: Image, dev: ModbusTcpDevice) -> dict[str, Any]:
    """Decode the simulator's register image the way the config says."""
    out: dict[str, Any] = {}
    for tag in dev.tags:
        addr = parse_address(tag.address)
        words = image[addr.table]
        if addr.table.is_bit:
            out[tag.name] = bool(words[addr.offset])
            continue
        regs = [words[addr.offset + i] for i in range(tag.register_count)]
        out[tag.name] = decode(regs, tag.type, tag.byte_order or dev.connection.byte_order, tag.bit)
    return out


async def test_reads_every_tag_as_the_model_holds_it(sim: ModbusTcpSimulator) -> None:
    dev = device(sim.port)
    drv = ModbusTcpDriver(dev)
    assert isinstance(drv, Driver)
    await drv.connect()
    try:
        before = time.time()
        readings = await drv.read()
    finally:
        await drv.close()
    assert [r.tag for r in readings] == [t.name for t in dev.tags]
    assert all(r.quality == "good" and r.error == "" for r in readings), readings
    assert all(before * 1000 - 1 <= r.ts <= time.time() * 1000 + 1 for r in readings)
    got = {r.tag: r.value for r in readings}
    assert got == expected(sim.registers(), dev)
    # and the raw values mean what the model says, once scaled
    loom = sim.model
    assert isinstance(loom, AirJetLoom)
    assert isinstance(got["speed"], int)
    assert got["speed"] * 0.1 == pytest.approx(loom.speed_rpm, abs=0.05)
    assert got["run_state"] == loom.run_state
    assert got["picks_total"] == int(loom.picks)
    assert got["energy_kwh"] == pytest.approx(loom.energy_kwh, rel=1e-6)
    assert got["style"] == loom.style
    assert got["motor_on"] is (loom.run_state == 1)


async def test_one_request_per_planned_block(sim: ModbusTcpSimulator) -> None:
    drv = ModbusTcpDriver(device(sim.port))
    # loom map: one discrete input, holding registers 0..19, input registers 0..6
    assert [(b.table.value, b.start, b.count) for b in drv.blocks] == [
        ("di", 0, 1),
        ("hr", 0, 20),
        ("ir", 0, 7),
    ]
    await drv.connect()
    try:
        before = sim.request_count
        for _ in range(5):
            await drv.read()
        assert sim.request_count - before == 5 * len(drv.blocks)
    finally:
        await drv.close()


async def test_values_move_with_time(sim: ModbusTcpSimulator, clock: Clock) -> None:
    drv = ModbusTcpDriver(device(sim.port))
    await drv.connect()
    try:
        first = {r.tag: r.value for r in await drv.read()}
        clock.now += 600.0
        second = {r.tag: r.value for r in await drv.read()}
    finally:
        await drv.close()
    assert isinstance(first["picks_total"], int) and isinstance(second["picks_total"], int)
    assert second["picks_total"] > first["picks_total"]
    assert isinstance(first["energy_kwh"], float) and isinstance(second["energy_kwh"], float)
    assert second["energy_kwh"] > first["energy_kwh"]
    assert second["run_hours"] != first["run_hours"]


async def test_unmapped_address_is_bad_and_the_rest_stays_good(sim: ModbusTcpSimulator) -> None:
    ghosts = [
        {"name": "ghost", "address": "hr:500", "type": "uint16"},
        {"name": "ghost_float", "address": "hr:502", "type": "float32"},
        {"name": "ghost_input", "address": "ir:300", "type": "uint16"},
    ]
    dev = device(sim.port, extra_tags=ghosts)
    drv = ModbusTcpDriver(dev)
    assert len(drv.blocks) == 5
    await drv.connect()
    try:
        readings = await drv.read()
    finally:
        await drv.close()
    by_tag = {r.tag: r for r in readings}
    for name in ("ghost", "ghost_float", "ghost_input"):
        r = by_tag[name]
        assert r.quality == "bad" and r.value is None
        assert r.error == "exception 2 (illegal data address)"
    good = [r for r in readings if not r.tag.startswith("ghost")]
    assert len(good) == len(LOOM_TAGS)
    assert all(r.quality == "good" for r in good)
    assert [r.tag for r in readings] == [t.name for t in dev.tags]


async def test_stop_makes_read_fail_and_restart_recovers(clock: Clock) -> None:
    port = free_port()
    sim = ModbusTcpSimulator(AirJetLoom(seed=4), port=port, clock=clock)
    await sim.start()
    drv = ModbusTcpDriver(device(port, timeout="500ms"))
    try:
        await drv.connect()
        assert len(await drv.read()) == len(LOOM_TAGS)

        await sim.stop()
        started = time.monotonic()
        with pytest.raises(DriverError) as info:
            await drv.read()
        assert time.monotonic() - started < 0.5 + 0.3
        assert "127.0.0.1:" + str(port) in str(info.value)
        # stays down until the caller connects again
        with pytest.raises(DriverError, match=f"connection lost to 127.0.0.1:{port}"):
            await drv.read()
        with pytest.raises(DriverError, match=f"connection refused 127.0.0.1:{port}"):
            await drv.connect()

        await sim.start()  # same port
        await drv.connect()
        readings = await drv.read()
        assert all(r.quality == "good" for r in readings)
    finally:
        await drv.close()
        await sim.stop()


async def test_read_right_after_stop_fails_fast_once_the_close_is_seen(clock: Clock) -> None:
    port = free_port()
    sim = ModbusTcpSimulator(AirJetLoom(seed=4), port=port, clock=clock)
    await sim.start()
    drv = ModbusTcpDriver(device(port, timeout="2s"))
    try:
        await drv.connect()
        await drv.read()
        await sim.stop()
        await asyncio.sleep(0.05)  # the client sees the FIN
        started = time.monotonic()
        with pytest.raises(DriverError, match="connection lost"):
            await drv.read()
        assert time.monotonic() - started < 0.5
    finally:
        await drv.close()


async def test_connect_refused_names_host_and_port() -> None:
    port = free_port()
    drv = ModbusTcpDriver(device(port))
    with pytest.raises(DriverError, match=f"^connection refused 127.0.0.1:{port}$"):
        await drv.connect()
    with pytest.raises(DriverError, match="not connected"):
        await drv.read()


async def test_two_units_on_one_port(clock: Clock) -> None:
    port = free_port()
    looms = [AirJetLoom(seed=1), AirJetLoom(seed=2, target_rpm=1100.0)]
    async with ModbusTcpSimulator(looms, port=port, unit_id=5, clock=clock) as sim:
        for i, unit in enumerate((5, 6)):
            cfg = loom_device_config(f"loom-{unit}", "x", "127.0.0.1", port, unit_id=unit)
            dev = ModbusTcpDevice.model_validate(cfg)
            drv = ModbusTcpDriver(dev)
            await drv.connect()
            try:
                got = {r.tag: r.value for r in await drv.read()}
            finally:
                await drv.close()
            assert got == expected(sim.registers(i), dev)


async def test_a_modbus_workshop_of_every_industry_reads_good() -> None:
    base = free_port_block(11)
    workshop = Workshop(WorkshopSpec(industry="all", protocol="modbus", port=base))
    devices = workshop.device_configs()
    assert [d["id"] for d in devices][:3] == ["loom-01", "spinning-01", "winder-01"]
    assert devices[0]["name"] == "喷气织机 1# / air-jet loom 1"
    assert [d["connection"]["port"] for d in devices] == list(range(base, base + 11))
    async with workshop:
        for d in devices:
            drv = make_driver(ModbusTcpDevice.model_validate(d))
            await drv.connect()
            try:
                readings = await drv.read()
            finally:
                await drv.close()
            assert all(r.quality == "good" for r in readings), d["id"]
            machine = workshop.device(d["id"]).machine
            got = {r.tag: r.value for r in readings}
            assert got["run_state"] == machine.values()["run_state"]
    with pytest.raises(ValueError, match="unknown industry"):
        Workshop(WorkshopSpec(industry="mining"))


def test_make_driver_gives_the_same_driver_for_rtu() -> None:
    rtu = ModbusRtuDevice.model_validate(
        {
            "id": "press-1",
            "driver": "modbus_rtu",
            "connection": {"port": "/dev/ttyUSB0", "unit_id": 3, "baudrate": 19200},
            "tags": [{"name": "t", "address": "40001"}],
        }
    )
    drv = make_driver(rtu)
    assert isinstance(drv, ModbusTcpDriver) and isinstance(drv, Driver)
    assert drv.bus_key == "serial:///dev/ttyUSB0" and drv.unit == 3  # the bus DL/T 645 meters share


# ---------------------------------------------------------------- the full data model over a socket

VALUES: dict[str, Any] = {
    "int16": -12345,
    "uint16": 54321,
    "int32": -123456789,
    "uint32": 3_000_000_000,
    "int64": -81985529216486896,
    "uint64": 0xFEDCBA9876543210,
    "float32": -1234.5,  # exact in float32
    "float64": 123.456,
}


def full_model_tags() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every type in every byte order (holding registers, explicit addresses), the same in input
    registers with Modicon numbers, bits of a register, a string, coils and discrete inputs."""
    tags: list[dict[str, Any]] = []
    values: dict[str, Any] = {}
    hr = ir = 0
    for order in ("ABCD", "BADC", "CDAB", "DCBA"):
        for type_, value in VALUES.items():
            n = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2}.get(type_, 4)
            name = f"{type_}_{order}"
            tags.append({"name": name, "address": f"hr:{hr}", "type": type_, "byte_order": order})
            tags.append({"name": f"ir_{name}", "address": f"{30001 + ir}", "type": type_, "byte_order": order})
            values[name] = values[f"ir_{name}"] = value
            hr += n
            ir += n
    tags += [
        {"name": "bit0", "address": f"hr:{hr}", "type": "bool", "bit": 0},
        {"name": "bit15", "address": f"{40001 + hr}", "type": "bool", "bit": 15},
        {"name": "bit7", "address": f"hr:{hr}", "type": "bool", "bit": 7},
        {"name": "text", "address": f"hr:{hr + 1}", "type": "string", "length": 5},
        {"name": "device_order", "address": f"hr:{hr + 6}", "type": "float32"},  # the device's CDAB
        {"name": "coil_a", "address": "00001", "type": "bool"},
        {"name": "coil_b", "address": "co:9", "type": "bool"},
        {"name": "input_a", "address": "10003", "type": "bool"},
    ]
    values.update(bit0=True, bit15=True, bit7=False, text="PUMP-7", device_order=2.5)
    values.update(coil_a=True, coil_b=True, input_a=True)
    return tags, values


async def test_every_type_and_byte_order_over_tcp() -> None:
    from simulators.modbus_server import StaticModel

    tags, values = full_model_tags()
    port = free_port()
    async with ModbusTcpSimulator(StaticModel(tags, values), port=port, byte_order="CDAB"):
        dev = ModbusTcpDevice.model_validate(
            {
                "id": "all-types",
                "driver": "modbus_tcp",
                "connection": {"host": "127.0.0.1", "port": port, "byte_order": "CDAB"},
                "tags": tags,
            }
        )
        drv = ModbusTcpDriver(dev)
        assert sorted({b.table.value for b in drv.blocks}) == ["co", "di", "hr", "ir"]  # FC 1, 2, 3, 4
        await drv.connect()
        try:
            got = {r.tag: r.value for r in await drv.read()}
        finally:
            await drv.close()
    assert got == values
    assert all(type(got[k]) is type(v) for k, v in values.items())


async def test_scans_by_exception_hand_over_what_changed(sim: ModbusTcpSimulator, clock: Clock) -> None:
    """read_changes over the wire: every tag first, then only what moved; the changes rebuild what a
    full read gives; a reconnect reports everything again."""
    drv = ModbusTcpDriver(device(sim.port))
    await drv.connect()
    try:
        first = await drv.read_changes()
        assert sorted(r.tag for r in first.readings) == sorted(r.tag for r in await drv.read())
        held = await drv.read_changes()  # the model holds still: nothing to hand over
        assert held.readings == [] and held.read == len(first.readings) and held.bad == 0
        assert sorted(n for s in held.covered for n in s.names) == sorted(r.tag for r in first.readings)
        clock.now += 600.0
        moved = await drv.read_changes()
        seen = {r.tag: r.value for r in first.readings} | {r.tag: r.value for r in moved.readings}
        assert {"picks_total", "energy_kwh"} <= {r.tag for r in moved.readings}
        assert "style" not in {r.tag for r in moved.readings}
        assert seen == {r.tag: r.value for r in await drv.read()}
        await drv.close()
        await drv.connect()
        assert len((await drv.read_changes()).readings) == len(first.readings)
    finally:
        await drv.close()
