"""DL/T 645-2007 meters over a socat pty: three meters and a Modbus RTU unit on one bus, one meter dead."""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from drivers.base import DriverError
from drivers.bus import BusPool
from drivers.dlt645 import Dlt645Driver
from drivers.dlt645.protocol import WAKE, build_frame, parse_frame
from drivers.modbus import ModbusDriver
from drivers.modbus.protocol import rtu_frame
from edge_config.dlt645 import DATA_ITEMS, encode_value
from edge_config.models import Dlt645Device, ModbusRtuDevice
from edge_config.scenario import Fault
from simulators.device_config import METER_TAGS, device_config
from simulators.equipment import Machine
from simulators.loom import AirJetLoom
from simulators.modbus_rtu import ModbusRtuSimulator
from simulators.power import CoilWindingMachine
from tests.integration.rtu import HostileLine, Pieces, Recorder, poll_for, pty_pair, trickle

pytestmark = pytest.mark.integration

LINE = {"baudrate": 9600, "parity": "N"}  # a pty refuses parity (EINVAL), so the line is 8N1 here


@pytest.fixture
def line(tmp_path: Path) -> Iterator[tuple[str, str]]:
    with pty_pair(tmp_path) as pair:
        yield pair


class FrozenClock:
    def __call__(self) -> float:
        return 1000.0


def meter(address: str, port: str, **connection: Any) -> Dlt645Device:
    return Dlt645Device.model_validate({
        "id": f"meter-{address[-1]}", "driver": "dlt645", "poll_interval": "200ms", "tags": METER_TAGS,
        "connection": {"port": port, "address": address, "timeout": "250ms", **LINE, **connection},
    })  # fmt: skip


def loom_unit(unit: int, port: str) -> ModbusRtuDevice:
    cfg = device_config(AirJetLoom(), f"loom-{unit}", "织机", {"port": port, "unit_id": unit, "timeout": "250ms",
                        **LINE}, "rtu", poll_interval="200ms")  # fmt: skip
    return ModbusRtuDevice.model_validate(cfg)


def expected(m: Machine) -> dict[str, float]:
    """What the meter of machine `m` shows, rounded to the formats' digits."""
    e = m.meter
    return {"energy_kwh": round(e.energy_kwh, 2), "voltage_a": round(e.voltage / math.sqrt(3), 1),
            "current_a": round(e.current, 3), "power_kw": round(e.power_kw, 4),
            "power_factor": round(e.power_factor, 3), "frequency": round(e.frequency, 2)}  # fmt: skip


async def test_three_meters_and_a_modbus_unit_share_one_bus_and_a_dead_meter_costs_little(
    line: tuple[str, str],
) -> None:
    gateway_end, device_end = line
    clock = FrozenClock()
    machines = {"000000000001": CoilWindingMachine(seed=1), "000000000002": CoilWindingMachine(seed=2)}
    loom = AirJetLoom(seed=7)
    # meters 1 and 2 answer, meter 3 is in the config but dead; unit 5 is a loom's controller
    async with ModbusRtuSimulator({5: loom}, port=device_end, baudrate=9600, clock=clock, meters=machines) as sim:
        for m in machines.values():
            m.step(clock())
        sim.trace = []
        pool = BusPool()
        devices = [meter(f"00000000000{i}", gateway_end, backoff_max="800ms") for i in (1, 2, 3)]
        drivers: list[Any] = [Dlt645Driver(d, pool) for d in devices]
        drivers.append(ModbusDriver(loom_unit(5, gateway_end), pool))
        recs = [Recorder(d.device_id) for d in drivers]
        await poll_for(list(zip(drivers, recs, strict=True)), 4.0)
        assert not pool.buses  # one bus, closed by the last driver out

    for i, address in enumerate(("000000000001", "000000000002")):
        good = [rs for _, rs in recs[i].scans if rs and all(r.quality == "good" for r in rs)]
        assert len(good) >= 8, recs[i].status  # 20 at 200 ms on an idle machine, less the dead meter's probes
        got = {r.tag: r.value for r in good[-1]}
        assert got == pytest.approx(expected(machines[address]))  # what arrived is what the meter showed
        assert [online for _, online, _ in recs[i].status] == [True]
    dead = recs[2]
    assert dead.status[0][1:] == (False, f"no response from meter 000000000003 at {gateway_end} within 0.25s")
    assert all(not online for _, online, _ in dead.status)
    loom_readings = {r.tag: r.value for r in recs[3].scans[-1][1]}
    assert loom_readings["picks_total"] == loom.raw_values()["picks_total"]
    assert loom_readings["run_state"] == loom.values()["run_state"]
    # the dead meter costs the others at most one timeout per probe: no gap beyond an interval and one timeout
    for rec in (recs[0], recs[1], recs[3]):
        times = rec.good_times()
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert max(gaps) <= 0.2 + 0.25 + 0.45, rec.state.id  # + slack for a loaded machine
    assert sim.bad_frames == 0 and sim.meters.bad_frames == 0  # never two frames on the line at once


async def test_a_refused_item_is_bad_and_garbled_answers_are_retried(line: tuple[str, str]) -> None:
    gateway_end, device_end = line
    m = CoilWindingMachine(seed=3)
    async with ModbusRtuSimulator({}, port=device_end, clock=FrozenClock(), meters={"000000000001": m}) as sim:
        faults = sim.meter("000000000001").faults
        faults.apply(Fault("exception", "02800002"))  # the meter has no frequency
        faults.apply(Fault("corrupt", "0.2"))  # a noisy line: one answer in five garbled
        drv = Dlt645Driver(meter("000000000001", gateway_end), BusPool())
        await drv.connect()
        scans = []
        try:
            for _ in range(20):
                scans.append(await drv.read())  # the refused item is a valid answer: never offline
            faults.lift("corrupt")
            address = await drv.read_address()  # the one meter on the line answers the broadcast
        finally:
            await drv.close()
    assert address == "000000000001"
    assert len(scans) == 20 and drv.requests > 6 * len(scans)  # garbled answers were asked again
    garbled = 0
    for readings in scans:
        by_tag = {r.tag: r for r in readings}
        assert by_tag["frequency"].quality == "bad"
        assert by_tag["frequency"].error == "meter error 0x02 (no data requested 无请求数据)"
        for r in readings:  # garbled twice in a row: that item is bad, the others of the scan are read
            if r.tag != "frequency" and r.quality == "bad":
                assert r.error.startswith("garbled answer from meter 000000000001"), r
                garbled += 1
        if by_tag["energy_kwh"].quality == "good":
            assert by_tag["energy_kwh"].value == pytest.approx(round(m.meter.energy_kwh, 2))
    assert garbled < len(scans)  # one item in 25 on average


METER = "000000000001"
GOOD = {0x00010000: 1234.56, 0x02010100: 220.1, 0x02020100: 5.125, 0x02030000: 1.5}
NAMES = {"00010000": "energy_kwh", "02010100": "voltage_a", "02020100": "current_a", "02030000": "power_kw"}


def meter_answer(request: bytes, di: int | None = None) -> bytes:
    """A meter's good answer to a read request (for `di`, if given, whatever was asked)."""
    asked = int.from_bytes(parse_frame(request).data[:4], "little")
    di = asked if di is None else di
    value = encode_value(GOOD[di], DATA_ITEMS[di].format)
    return build_frame(METER, 0x91, di.to_bytes(4, "little") + value, wakeup=2)


def hostile_meter(port: str, *, tags: tuple[str, ...] = ("00010000",), timeout: str = "500ms") -> Dlt645Device:
    return Dlt645Device.model_validate({
        "id": "meter-1", "driver": "dlt645", "poll_interval": "1s",
        "tags": [{"name": NAMES[di], "di": di} for di in tags],
        "connection": {"port": port, "address": METER, "timeout": timeout, **LINE},
    })  # fmt: skip


async def test_a_meter_that_trickles_its_answer_does_not_hold_the_bus_and_its_late_answer_is_not_taken(
    line: tuple[str, str],
) -> None:
    """A meter that sends 16 wake-up bytes 0.3 s apart before its answer (timeout 0.5 s): each wake-up byte
    used to restart the wait, so the answer was taken after about 5 s, and a Modbus unit on the same line
    waited as long. Now the exchange ends at its one deadline: the answer is garbled (asked once more,
    then the meter has nothing valid: offline), and the unit behind it gets its turn."""
    gateway_end, device_end = line

    def answer(request: bytes) -> Pieces:
        if request.lstrip(bytes((WAKE,)))[:1] == b"\x68":  # the meter
            return [*trickle(bytes((WAKE,)) * 16, 0.3), (4.9, meter_answer(request)[2:])]
        return [(0.005, rtu_frame(1, bytes((3, 2, 0, 111))))]  # unit 1: hr:0 = 111

    unit = ModbusRtuDevice.model_validate({
        "id": "unit-1", "driver": "modbus_rtu", "poll_interval": "1s",
        "tags": [{"name": "a", "address": "hr:0", "type": "uint16"}],
        "connection": {"port": gateway_end, "unit_id": 1, "timeout": "500ms", **LINE},
    })  # fmt: skip
    with HostileLine(device_end, answer) as far:
        pool = BusPool()
        mdrv, udrv = Dlt645Driver(hostile_meter(gateway_end), pool), ModbusDriver(unit, pool)
        await mdrv.connect()
        await udrv.connect()
        t0 = time.monotonic()

        async def read_unit() -> tuple[Any, float]:
            await asyncio.sleep(0.05)  # asks while the meter has the bus: waits its turn
            readings = await udrv.read()
            return readings, time.monotonic() - t0

        try:
            meter_read, (unit_readings, unit_after) = await asyncio.gather(mdrv.read(), read_unit(),
                                                                           return_exceptions=True)  # fmt: skip
        finally:
            await mdrv.close()
            await udrv.close()
    assert isinstance(meter_read, DriverError), meter_read  # the late 1234.56 is not taken
    assert str(meter_read).startswith(f"garbled answer from meter {METER}"), meter_read
    assert "cut short" in str(meter_read)
    assert [(r.tag, r.value, r.quality) for r in unit_readings] == [("a", 111, "good")]  # the unit got its turn
    # two exchanges of the meter (0.5 s and the frames' time each), then the unit's: well before 4.9 s
    assert unit_after < 2 * 0.55 + 1.5, unit_after
    assert len(far.requests) == 3


async def test_one_data_item_answered_wrongly_is_that_tags_bad_reading_the_meter_stays(
    line: tuple[str, str],
) -> None:
    """The meter answers the voltage's read with the energy's frame, every time: that tag is bad with the
    reason (after the one retry), energy and current are read and published, the meter stays online. It
    used to raise DriverError for the whole meter: offline, the good readings dropped."""
    gateway_end, device_end = line

    def answer(request: bytes) -> Pieces:
        asked = int.from_bytes(parse_frame(request).data[:4], "little")
        return [(0.005, meter_answer(request, 0x00010000 if asked == 0x02010100 else None))]

    device = hostile_meter(gateway_end, tags=("00010000", "02010100", "02020100"))
    device = device.model_copy(update={"poll_interval": 0.2})
    with HostileLine(device_end, answer):
        drv = Dlt645Driver(device, BusPool())
        rec = Recorder("meter-1")
        await poll_for([(drv, rec)], 1.5)
    assert [online for _, online, _ in rec.status] == [True]
    assert len(rec.scans) >= 3
    for _, readings in rec.scans:
        by_tag = {r.tag: r for r in readings}
        assert (by_tag["energy_kwh"].value, by_tag["energy_kwh"].quality) == (1234.56, "good")
        assert (by_tag["current_a"].value, by_tag["current_a"].quality) == (5.125, "good")
        assert by_tag["voltage_a"].quality == "bad"
        assert by_tag["voltage_a"].error == (f"garbled answer from meter {METER} at {gateway_end}: answer for "
                                             "another data item: 00010000, asked 02010100")  # fmt: skip


async def test_a_meter_that_answers_every_item_wrongly_is_offline(line: tuple[str, str]) -> None:
    """No item of the scan got a valid frame from the meter: DriverError, with the first item's reason; the
    scan stops at the second item in a row (the bus is not held for the others)."""
    gateway_end, device_end = line

    def answer(request: bytes) -> Pieces:
        return [(0.005, meter_answer(request, 0x02020100))]

    device = hostile_meter(gateway_end, tags=("00010000", "02010100", "02020100"))
    with HostileLine(device_end, answer) as far:
        drv = Dlt645Driver(device, BusPool())
        await drv.connect()
        try:
            with pytest.raises(DriverError) as err:
                await drv.read()
        finally:
            await drv.close()
    assert str(err.value) == (f"garbled answer from meter {METER} at {gateway_end}: answer for another data item: "
                              "02020100, asked 00010000")  # fmt: skip
    assert len(far.requests) == 4  # two items, each asked once more


async def test_items_left_unanswered_after_a_valid_answer_are_bad_and_two_in_a_row_end_the_scan(
    line: tuple[str, str],
) -> None:
    """The meter answers the energy, then nothing: voltage and current are bad (no response), the power is
    not asked (bad with that reason); the scan is published, the meter is not offline."""
    gateway_end, device_end = line

    def answer(request: bytes) -> Pieces:
        asked = int.from_bytes(parse_frame(request).data[:4], "little")
        return [(0.005, meter_answer(request))] if asked == 0x00010000 else []

    device = hostile_meter(gateway_end, tags=("00010000", "02010100", "02020100", "02030000"), timeout="200ms")
    with HostileLine(device_end, answer) as far:
        drv = Dlt645Driver(device, BusPool())
        await drv.connect()
        try:
            readings = await drv.read()
        finally:
            await drv.close()
    silent = f"no response from meter {METER} at {gateway_end} within 0.2s"
    assert [(r.tag, r.value, r.quality, r.error) for r in readings] == [
        ("energy_kwh", 1234.56, "good", ""),
        ("voltage_a", None, "bad", silent),
        ("current_a", None, "bad", silent),
        ("power_kw", None, "bad", silent),
    ]
    assert len(far.requests) == 3  # the power was not asked
