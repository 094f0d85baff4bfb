"""gateway.subscriber: start, report, restart with backoff — with a scripted subscribing driver."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from cloud_bridge.uplink.buffer import Outgoing
from cloud_bridge.wire.codec import Topics
from drivers.base import DriverError, DriverStatus, Emit, Reading, StatusSink, SubscribingDriver
from gateway.channel import DeviceChannel, DeviceState
from gateway.normalize import Normalizer, TagSpec
from gateway.subscriber import subscribe_loop


class ScriptedDriver:
    """Each start follows the next step of the script: 'fail', 'online', 'silent' (no status) or 'lose'."""

    def __init__(self, script: Sequence[str]) -> None:
        self.device_id = "r1"
        self.script = list(script)
        self.starts = 0
        self.stops = 0
        self.sinks: list[StatusSink | None] = []

    async def start(self, emit: Emit, status: StatusSink | None = None) -> None:
        step = self.script[min(self.starts, len(self.script) - 1)]
        self.starts += 1
        self.sinks.append(status)
        if step == "fail":
            raise DriverError("connection refused")
        if step == "crash":
            raise RuntimeError("driver bug")
        if status is not None and step != "silent":
            status(DriverStatus(True, f"connected #{self.starts}"))
        emit([Reading("temp", 20.0 + self.starts, 1000 * self.starts)])
        if step == "lose" and status is not None:
            loop = asyncio.get_running_loop()
            loop.call_later(0.05, status, DriverStatus(False, "subscription stopped publishing"))

    async def stop(self) -> None:
        self.stops += 1


def channel() -> tuple[DeviceChannel, list[Outgoing]]:
    out: list[Outgoing] = []
    state = DeviceState("r1", "反应釜 1#", "opcua")
    ch = DeviceChannel(state, Topics("sf/v1", "ent", "gw"), Normalizer([TagSpec("temp", None)]), out.extend)
    return ch, out


def status_events(out: list[Outgoing]) -> list[tuple[bool, str]]:
    import json

    return [(json.loads(m.body)["online"], json.loads(m.body)["reason"]) for m in out if m.kind == "status"]


async def run_until(stop: asyncio.Event, task: asyncio.Task[None], cond: object, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond() and loop.time() < deadline:  # type: ignore[operator]
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 5)


def test_scripted_driver_is_a_subscribing_driver() -> None:
    assert isinstance(ScriptedDriver(["online"]), SubscribingDriver)


async def test_online_with_the_drivers_reason_and_offline_at_stop() -> None:
    ch, out = channel()
    drv, stop = ScriptedDriver(["online"]), asyncio.Event()
    task = asyncio.create_task(subscribe_loop(ch, drv, stop, backoff_base=0.01))
    await run_until(stop, task, lambda: ch.state.samples_buffered >= 1)
    assert status_events(out) == [(True, "connected #1")]
    assert (drv.starts, drv.stops) == (1, 1)
    assert ch.state.online


async def test_failed_starts_are_retried_with_backoff_and_reported_once() -> None:
    ch, out = channel()
    drv, stop = ScriptedDriver(["fail", "fail", "online"]), asyncio.Event()
    task = asyncio.create_task(subscribe_loop(ch, drv, stop, backoff_base=0.01, backoff_cap=0.05))
    await run_until(stop, task, lambda: ch.state.online)
    assert status_events(out) == [(False, "connection refused"), (True, "connected #3")]
    assert drv.starts == 3 and drv.stops == 3  # stop after each failed start too


async def test_lost_session_goes_offline_then_online_again() -> None:
    ch, out = channel()
    drv, stop = ScriptedDriver(["lose", "online"]), asyncio.Event()
    task = asyncio.create_task(subscribe_loop(ch, drv, stop, backoff_base=0.01, backoff_cap=0.05))
    await run_until(stop, task, lambda: drv.starts >= 2 and ch.state.online)
    assert status_events(out) == [
        (True, "connected #1"),
        (False, "subscription stopped publishing"),
        (True, "connected #2"),
    ]
    assert ch.state.samples_buffered == 2


async def test_a_driver_that_reports_nothing_is_online_once_started() -> None:
    ch, out = channel()
    drv, stop = ScriptedDriver(["silent"]), asyncio.Event()
    task = asyncio.create_task(subscribe_loop(ch, drv, stop))
    await run_until(stop, task, lambda: ch.state.online)
    assert status_events(out) == [(True, "subscribed")]


async def test_a_crashing_driver_is_reported_not_raised() -> None:
    ch, out = channel()
    drv, stop = ScriptedDriver(["crash", "online"]), asyncio.Event()
    task = asyncio.create_task(subscribe_loop(ch, drv, stop, backoff_base=0.01, backoff_cap=0.05))
    await run_until(stop, task, lambda: ch.state.online)
    assert status_events(out)[0] == (False, "RuntimeError: driver bug")


async def test_late_reports_from_a_finished_run_are_ignored() -> None:
    ch, out = channel()
    drv, stop = ScriptedDriver(["lose", "online"]), asyncio.Event()
    task = asyncio.create_task(subscribe_loop(ch, drv, stop, backoff_base=0.01, backoff_cap=0.05))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while not (drv.starts >= 2 and ch.state.online) and loop.time() < deadline:
        await asyncio.sleep(0.01)
    old_sink = drv.sinks[0]
    assert old_sink is not None
    old_sink(DriverStatus(False, "late news from the first session"))
    await asyncio.sleep(0.05)
    assert ch.state.online and len(status_events(out)) == 3
    stop.set()
    await asyncio.wait_for(task, 5)
