"""DL/T 645-2007 meters over a socat pty: three meters and a Modbus RTU unit on one bus, one meter dead."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from drivers.base import DriverError
from drivers.bus import BusPool
from drivers.dlt645 import Dlt645Driver
from drivers.modbus import ModbusDriver
from edge_config.models import Dlt645Device, ModbusRtuDevice
from edge_config.scenario import Fault
from simulators.device_config import METER_TAGS, device_config
from simulators.equipment import Machine
from simulators.loom import AirJetLoom
from simulators.modbus_rtu import ModbusRtuSimulator
from simulators.power import CoilWindingMachine
from tests.integration.rtu import Recorder, poll_for, pty_pair

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
        scans, garbled = [], 0
        try:
            for _ in range(20):
                try:
                    scans.append(await drv.read())
                except DriverError as exc:  # garbled twice in a row: the scan fails, the meter stays
                    assert "garbled answer from meter 000000000001" in str(exc)
                    garbled += 1
            faults.lift("corrupt")
            address = await drv.read_address()  # the one meter on the line answers the broadcast
        finally:
            await drv.close()
    assert address == "000000000001"
    assert len(scans) >= 12 and drv.requests > 6 * len(scans) + 2 * garbled  # garbled answers were asked again
    for readings in scans:
        by_tag = {r.tag: r for r in readings}
        assert by_tag["frequency"].quality == "bad"
        assert by_tag["frequency"].error == "meter error 0x02 (no data requested 无请求数据)"
        assert all(r.quality == "good" for r in readings if r.tag != "frequency")
        assert by_tag["energy_kwh"].value == pytest.approx(round(m.meter.energy_kwh, 2))
