"""A full disk for real: the gateway's data_dir on a small tmpfs that fills up while it collects (another
program's file takes the space). What the buffer refuses is counted (data) or held and written later
(events: an offline report made while the disk is full still arrives with its own time), collection goes
on, and it recovers by itself when the space returns. Checked against what reached the broker."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from edge_config.models import GatewayConfig
from edge_config.scenario import Fault
from gateway.agent import Agent
from simulators.workshop import Workshop, WorkshopSpec
from tests.ports import free_port_block
from tests.servers import MosquittoServer

pytestmark = pytest.mark.integration


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(path: Path) -> int:
    """Write zeros to `path` until the filesystem is full; returns the bytes written."""
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for size in (65536, 4096, 512, 1):  # big pieces, then the last scraps
            while True:
                try:
                    written += os.write(fd, b"\0" * size)
                except OSError as e:
                    assert e.errno == errno.ENOSPC
                    break
    finally:
        os.close(fd)
    return written


class Wire:
    def __init__(self, port: int) -> None:
        self.messages: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="disk-full-spy", protocol=mqtt.MQTTv5)
        self.client.on_message = self.on_message
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("sf/v1/ent-df/gw-df/+/+", qos=1)
        self.client.loop_start()
        assert ready.wait(5)

    def on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        body = json.loads(msg.payload)
        if "seq" in body:
            with self.lock:
                self.messages.append(body)

    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.messages)


async def until(cond: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        await asyncio.sleep(0.1)
    return bool(cond())


async def test_a_disk_that_fills_while_collecting(small_fs: Path, mosquitto: MosquittoServer) -> None:
    base = free_port_block(2)
    sims = Workshop(WorkshopSpec(industry="textiles", devices=[2, 0], port=base))
    await sims.start()
    devices = sims.device_configs()
    for d in devices:
        d["poll_interval"] = "200ms"
    cfg = GatewayConfig.model_validate(
        {
            "gateway": {"id": "gw-df", "enterprise_id": "ent-df", "data_dir": str(small_fs / "edge")},
            "mqtt": {"url": mosquitto.url, "protocol": "5"},
            "devices": devices,
        }
    )
    wire = Wire(mosquitto.port)
    agent = Agent(cfg)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop, serve_api=False))
    states = agent.runtime.devices
    filler = small_fs / "someone-elses.log"
    try:
        assert await until(lambda: all(s.samples_buffered > 0 for s in states.values()), 20)
        fill(filler)
        full_at = int(time.time() * 1000)
        assert await until(lambda: all(s.samples_lost > 0 for s in states.values()), 20), "the buffer refuses"
        scans_when_full = {k: s.scans for k, s in states.items()}
        await sims.inject(
            "loom-02", Fault("offline")
        )  # loom-02 loses power while the disk is full: its report must not be lost
        assert await until(lambda: not states["loom-02"].online, 20)
        # the report is held in memory if its write is refused (a small write may still find room in the
        # WAL's pages): either way it must arrive, with its time, below
        assert await until(lambda: states["loom-01"].scans >= scans_when_full["loom-01"] + 10, 20), "collection goes on"
        lost = {k: s.samples_lost for k, s in states.items()}

        filler.unlink()  # the space returns
        room_at = int(time.time() * 1000)
        buffered = states["loom-01"].samples_buffered
        assert await until(lambda: states["loom-01"].samples_buffered > buffered, 20), "it recovers by itself"
        assert agent.runtime.events_held == 0 and agent.runtime.events_lost == 0
        assert await until(lambda: agent.buffer.depth().messages == 0, 20)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await sims.stop()
    await asyncio.sleep(0.5)
    got = wire.snapshot()
    wire.client.loop_stop()
    wire.client.disconnect()

    seqs = sorted(m["seq"] for m in got)
    assert seqs == list(range(1, seqs[-1] + 1)), "no seq lost or used twice by the refused writes"
    data_samples = sum(len(m["samples"]) for m in got if "samples" in m)
    assert data_samples == sum(s.samples_buffered for s in states.values()), "all that was buffered arrived"
    assert all(lost[k] > 0 for k in lost) and sum(lost.values()) > 0, "what was refused is counted"
    offline = [e for m in got if m["dev"] == "loom-02" for e in m.get("events", []) if e["kind"] == "offline"]
    assert offline and full_at <= offline[0]["ts"] < room_at, "the offline report kept the time it happened"
