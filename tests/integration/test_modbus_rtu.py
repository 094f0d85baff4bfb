"""Modbus RTU over a socat pty pair: several unit ids on one port, one bus scheduler, a dead slave."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from drivers.base import DriverError
from drivers.modbus import BusPool, ModbusDriver
from drivers.modbus.protocol import rtu_frame
from edge_config.models import ModbusRtuDevice
from simulators.loom import AirJetLoom, loom_device_config
from simulators.modbus_rtu import ModbusRtuSimulator
from tests.integration.rtu import HostileLine, Pieces, Recorder, poll_for, pty_pair, trickle

pytestmark = pytest.mark.integration


@pytest.fixture
def line(tmp_path: Path) -> Iterator[tuple[str, str]]:
    with pty_pair(tmp_path) as pair:
        yield pair


def loom(unit: int, port: str, interval: str = "100ms", **connection: Any) -> ModbusRtuDevice:
    cfg = loom_device_config(f"loom-{unit}", f"织机 {unit}#", "unused", 0)
    cfg["driver"] = "modbus_rtu"
    cfg["poll_interval"] = interval
    cfg["connection"] = {"port": port, "unit_id": unit, "baudrate": 19200, "timeout": "250ms"} | connection
    return ModbusRtuDevice.model_validate(cfg)


class FrozenClock:
    def __call__(self) -> float:
        return 1000.0


async def test_several_units_on_one_port_share_one_bus(line: tuple[str, str]) -> None:
    master, slave = line
    looms = {1: AirJetLoom(seed=1), 2: AirJetLoom(seed=2, target_rpm=1100.0), 7: AirJetLoom(seed=7)}
    async with ModbusRtuSimulator(looms, port=slave, baudrate=19200, clock=FrozenClock()) as sim:
        pool = BusPool()
        drivers = [ModbusDriver(loom(u, master), pool) for u in (1, 2, 7)]
        for d in drivers:
            await d.connect()
        try:
            assert len(pool.buses) == 1 and drivers[0].bus is drivers[2].bus  # one port, opened once
            for unit, d in zip((1, 2, 7), drivers, strict=True):
                readings = await d.read()
                assert all(r.quality == "good" for r in readings)
                got = {r.tag: r.value for r in readings}
                raw = looms[unit].raw_values()
                for name in ("speed", "run_state", "picks_total", "warp_stops", "style", "motor_on"):
                    assert got[name] == raw[name], (unit, name)
        finally:
            for d in drivers:
                await d.close()
        assert not pool.buses  # the last one out closed the port
        assert sim.bad_frames == 0


async def test_a_dead_slave_delays_the_others_by_at_most_one_timeout_per_backoff_period(
    line: tuple[str, str],
) -> None:
    master, slave = line
    # units 1 and 2 answer; unit 3 is on the config but not on the bus
    async with ModbusRtuSimulator({1: AirJetLoom(seed=1), 2: AirJetLoom(seed=2)}, port=slave, baudrate=19200) as sim:
        sim.trace = []
        pool = BusPool()
        recs = {u: Recorder(f"loom-{u}") for u in (1, 2, 3)}
        drivers = {u: ModbusDriver(loom(u, master, backoff_max="800ms"), pool) for u in (1, 2, 3)}
        seconds = 4.0
        await poll_for([(drivers[u], recs[u]) for u in (1, 2, 3)], seconds)

    dead = [t for t, unit, _ in sim.trace if unit == 3]
    # backoff from 0.1 s doubling to 0.8 s (±20%), one timeout per attempt: about 7 attempts in 4 s
    assert 2 <= len(dead) <= 12
    late = [t for t in dead if t - dead[0] > 1.6]  # once the backoff has reached its cap
    assert len(late) <= (seconds - 1.6) / (0.8 * 0.8) + 1
    assert recs[3].status[0][1:] == (False, f"no response from unit 3 at {master} within 0.25s")
    assert all(not online for _, online, _ in recs[3].status)
    for u in (1, 2):
        times = recs[u].good_times()
        assert len(times) >= 12  # 40 at 100 ms on an idle machine, minus the probes' timeouts
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert max(gaps) <= 0.1 + 0.25 + 0.35  # an interval and at most one timeout (+ a loaded machine)
        assert [online for _, online, _ in recs[u].status] == [True]
    assert sim.bad_frames == 0  # never two requests on the line at once


async def test_a_slave_that_comes_back_is_read_again_by_itself(line: tuple[str, str]) -> None:
    master, slave = line
    async with ModbusRtuSimulator({1: AirJetLoom(seed=1), 2: AirJetLoom(seed=2)}, port=slave, baudrate=19200) as sim:
        sim.faults(2).silent = True  # powered off
        pool = BusPool()
        recs = {u: Recorder(f"loom-{u}") for u in (1, 2)}
        drivers = {u: ModbusDriver(loom(u, master, backoff_max="500ms"), pool) for u in (1, 2)}

        async def power_on_later() -> float:
            await asyncio.sleep(1.5)
            sim.faults(2).silent = False
            return asyncio.get_running_loop().time()

        powered = asyncio.create_task(power_on_later())
        await poll_for([(drivers[u], recs[u]) for u in (1, 2)], 3.0)
        on_at = await powered
    statuses = [(online, reason) for _, online, reason in recs[2].status]
    assert statuses[0][0] is False and statuses[-1] == (True, "responding")
    back_at = recs[2].status[-1][0]
    assert back_at - on_at <= 0.5 * 1.2 + 0.25 + 0.1 + 0.5  # one backoff period, a timeout, an interval, slack


async def test_inter_frame_silence_is_kept(line: tuple[str, str]) -> None:
    master, slave = line
    async with ModbusRtuSimulator({1: AirJetLoom(seed=1), 2: AirJetLoom(seed=2)}, port=slave, baudrate=19200) as sim:
        sim.trace = []
        pool = BusPool()
        recs = {u: Recorder(f"loom-{u}") for u in (1, 2)}
        drivers = {u: ModbusDriver(loom(u, master, interval="20ms", silence="40ms"), pool) for u in (1, 2)}
        await poll_for([(drivers[u], recs[u]) for u in (1, 2)], 1.2)
    requests = [t for t, _, _ in sim.trace]
    answers = sim.answered_at
    assert len(requests) >= 6
    # every request after the first came at least the silence after the answer before it
    gaps = []
    for t in requests[1:]:
        before = [a for a in answers if a < t]
        if before:
            gaps.append(t - before[-1])
    assert gaps and min(gaps) >= 0.035


async def test_an_answer_trickled_past_the_deadline_is_not_taken_and_the_bus_moves_on(
    line: tuple[str, str],
) -> None:
    """Unit 2 sends its answer a byte every 0.1 s (0.7 s for 7 bytes, timeout 0.5 s). The rest of a frame
    used to get the whole timeout again, so the answer was taken after about 0.6 s; now the exchange
    ends at its one deadline (the timeout and the frames' transmission time): garbled, and unit 1 is read."""
    gateway_end, device_end = line

    def answer(request: bytes) -> Pieces:
        unit = request[0]
        frame = rtu_frame(unit, bytes((3, 2, 0, 111 * unit)))
        return trickle(frame, 0.1) if unit == 2 else [(0.005, frame)]

    def device(unit: int) -> ModbusRtuDevice:
        return ModbusRtuDevice.model_validate({
            "id": f"unit-{unit}", "driver": "modbus_rtu", "poll_interval": "1s",
            "tags": [{"name": "a", "address": "hr:0", "type": "uint16"}],
            "connection": {"port": gateway_end, "unit_id": unit, "baudrate": 19200, "timeout": "500ms"},
        })  # fmt: skip

    with HostileLine(device_end, answer) as far:
        pool = BusPool()
        slow, fast = ModbusDriver(device(2), pool), ModbusDriver(device(1), pool)
        await slow.connect()
        await fast.connect()
        try:
            with pytest.raises(DriverError) as err:
                await slow.read()
            readings = await fast.read()
        finally:
            await slow.close()
            await fast.close()
    assert str(err.value).startswith(f"garbled answer from unit 2 at {gateway_end}"), err.value  # not taken
    assert "cut short" in str(err.value) or "bad CRC or short frame" in str(err.value)
    assert [(r.tag, r.value, r.quality) for r in readings] == [("a", 111, "good")]
    assert [r[0] for r in far.requests] == [2, 2, 1]  # asked once more, then the bus moved on
