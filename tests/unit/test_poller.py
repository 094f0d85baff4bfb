"""Poll groups: the schedule (pure), and the loop with an in-memory driver (overruns, backoff)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence

import pytest

from drivers.base import DriverError, Reading
from gateway.poller import GroupSchedule, next_slot, poll_loop


def test_next_slot_counts_missed_slots_and_does_not_queue_them() -> None:
    assert next_slot(10.0, 9.5, 1.0) == (10.0, 0)
    assert next_slot(10.0, 10.2, 1.0) == (11.0, 1)
    assert next_slot(10.0, 12.5, 1.0) == (13.0, 3)


def test_group_schedule() -> None:
    s = GroupSchedule([1.0, 0.25, 5.0], now=100.0)
    assert s.due(100.0) == [0, 1, 2]  # everything at start
    assert s.done([0, 1, 2], 100.01) == 0
    assert s.next_wake() == 100.25
    assert s.due(100.2) == []
    assert s.due(100.25) == [1]
    assert s.done([1], 100.26) == 0
    # a scan that starts late and ends at 101.6: group 1 missed 100.75, 101.0, 101.25, 101.5; group 0 none
    assert s.due(101.0) == [0, 1]
    assert s.done([0, 1], 101.6) == 4
    assert s.next_due[:2] == [102.0, 101.75]
    s.reset(200.0)
    assert s.due(200.0) == [0, 1, 2]
    with pytest.raises(ValueError):
        GroupSchedule([1.0, 0.0], 0.0)


class State:
    def __init__(self) -> None:
        self.id = "dev"
        self.scans = 0
        self.overruns = 0


class Channel:
    """Records what the poll loop reports."""

    def __init__(self) -> None:
        self.state = State()
        self.readings: list[tuple[float, list[Reading]]] = []
        self.status: list[tuple[bool, str]] = []

    def set_online(self, online: bool, reason: str) -> None:
        if not self.status or self.status[-1][0] != online:
            self.status.append((online, reason))

    def emit(self, readings: Sequence[Reading]) -> int:
        self.readings.append((time.monotonic(), list(readings)))
        return len(readings)


class GroupedFake:
    """Two groups: 'fast' every 50 ms, 'slow' every 200 ms; reading takes `cost` seconds."""

    poll_intervals = (0.05, 0.2)
    backoff_max = 0.1

    def __init__(self, cost: float = 0.0, fail: int = 0) -> None:
        self.cost = cost
        self.fail = fail  # the first `fail` connects fail
        self.connects = 0
        self.reads: list[tuple[int, ...]] = []

    async def connect(self) -> None:
        self.connects += 1
        if self.connects <= self.fail:
            raise DriverError("connection refused 127.0.0.1:1")

    async def read(self, groups: Sequence[int] | None = None) -> list[Reading]:
        groups = tuple(groups if groups is not None else (0, 1))
        self.reads.append(groups)
        if self.cost:
            await asyncio.sleep(self.cost)
        return [Reading(("fast", "slow")[g], 1, 0) for g in groups]

    async def close(self) -> None:
        pass


async def run_for(driver: GroupedFake, channel: Channel, seconds: float) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(poll_loop(channel, driver, 1.0, stop))  # type: ignore[arg-type]
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.wait_for(task, 5)


async def test_groups_are_read_at_their_own_intervals() -> None:
    drv, ch = GroupedFake(), Channel()
    await run_for(drv, ch, 1.0)
    fast = sum(1 for g in drv.reads if 0 in g)
    slow = sum(1 for g in drv.reads if 1 in g)
    assert 8 <= fast <= 22 and 3 <= slow <= 6  # 20 and 5 on an idle machine
    assert fast > 2 * slow
    assert drv.reads[0] == (0, 1)  # everything at the start
    assert ch.state.overruns == 0 or ch.state.overruns < fast // 4  # a loaded machine may miss a few


async def test_overruns_are_counted_not_queued() -> None:
    drv, ch = GroupedFake(cost=0.12), Channel()  # each scan takes longer than the fast interval
    await run_for(drv, ch, 0.8)
    assert ch.state.overruns >= len(drv.reads)  # every scan overran the 50 ms group
    assert len(drv.reads) <= 8  # back to back at most: missed slots are not made up
    # scans never overlap: one read at a time, each starts after the previous ended
    times = [t for t, _ in ch.readings]
    assert all(b - a >= 0.1 for a, b in itertools.pairwise(times))


async def test_a_failing_device_is_reported_and_retried_with_backoff() -> None:
    drv, ch = GroupedFake(fail=3), Channel()
    await run_for(drv, ch, 1.0)
    assert ch.status[0] == (False, "connection refused 127.0.0.1:1")
    assert ch.status[1] == (True, "responding")
    assert drv.connects == 4 and drv.reads


async def test_a_driver_bug_is_reported_as_this_device_failing() -> None:
    class Buggy(GroupedFake):
        async def read(self, groups: Sequence[int] | None = None) -> list[Reading]:
            raise KeyError("oops")

    drv, ch = Buggy(), Channel()
    await run_for(drv, ch, 0.3)
    assert ch.status == [(False, "internal error: KeyError('oops')")]
    assert drv.connects >= 2  # and retried


async def test_a_scan_the_channel_cannot_handle_is_lost_and_the_loop_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    class Fragile(Channel):
        def emit(self, readings: Sequence[Reading]) -> int:
            if len(self.readings) == 1 and not getattr(self, "failed", False):
                self.failed = True
                raise ValueError("a bug past the driver")
            return super().emit(readings)

    drv, ch = GroupedFake(), Fragile()
    await run_for(drv, ch, 0.5)
    assert "device dev: a scan could not be handled; its values are lost" in caplog.text
    assert len(ch.readings) >= 4 and len(drv.reads) == len(ch.readings) + 1
