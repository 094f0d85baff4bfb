"""A device that goes down is reported offline on the wire and comes back by itself; others keep flowing."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from edge_config.models import GatewayConfig
from edge_config.scenario import Fault
from gateway.agent import Agent
from simulators.workshop import Workshop, WorkshopSpec
from tests.ports import free_port, free_port_block
from tests.servers import MosquittoServer

pytestmark = pytest.mark.integration


class Events:
    def __init__(self, port: int) -> None:
        self.items: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()
        ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fault-spy", protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("sf/v1/+/+/+/events", qos=1)
        self.client.subscribe("sf/v1/+/+/+/data", qos=1)
        self.client.loop_start()
        assert ready.wait(5)

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.items.append((msg.topic, json.loads(msg.payload)))

    def kinds(self, dev: str) -> list[str]:
        with self.lock:
            # online/offline only: OEE state changes and counter snapshots share the events topic
            return [
                e["kind"]
                for t, p in self.items
                if t.endswith(f"/{dev}/events")
                for e in p["events"]
                if e["kind"] in ("online", "offline")
            ]

    def data_count(self, dev: str, after: float = 0) -> int:
        with self.lock:
            return sum(1 for t, p in self.items if t.endswith(f"/{dev}/data") and p["samples"][0]["ts"] >= after * 1000)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


async def wait_until(cond: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        await asyncio.sleep(0.1)
    return bool(cond())


async def two_looms(tmp_path: Path, mosquitto: MosquittoServer, name: str) -> tuple[Workshop, Agent, Events]:
    """Two simulated looms, an agent for them (not started) and a spy on the broker."""
    base = free_port_block(2)
    sims = Workshop(WorkshopSpec(industry="textiles", devices=[2, 0], port=base))
    await sims.start()
    cfg = GatewayConfig.model_validate(
        {
            "gateway": {"id": f"gw-{name}", "enterprise_id": f"ent-{name}", "data_dir": str(tmp_path)},
            "mqtt": {"url": mosquitto.url},
            "api": {"listen": f"127.0.0.1:{free_port()}"},
            "devices": sims.device_configs(),
        }
    )
    return sims, Agent(cfg), Events(mosquitto.port)


@asynccontextmanager
async def running(agent: Agent, sims: Workshop, spy: Events) -> AsyncIterator[None]:
    """The agent runs inside the block; afterwards it, the spy and the simulators are stopped."""
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop, serve_api=False))
    try:
        yield
    finally:
        stop.set()
        await task
        spy.close()
        await sims.stop()


async def test_device_down_then_up_is_reported_and_recovers(tmp_path: Path, mosquitto: MosquittoServer) -> None:
    sims, agent, spy = await two_looms(tmp_path, mosquitto, "f")
    async with running(agent, sims, spy):
        assert await wait_until(lambda: spy.kinds("loom-01") == ["online"], 10)
        await sims.inject("loom-01", Fault("offline"))  # loom-01 loses power: its port closes
        assert await wait_until(lambda: spy.kinds("loom-01") == ["online", "offline"], 10)
        assert agent.runtime.devices["loom-01"].online is False
        reason = agent.runtime.devices["loom-01"].reason
        assert "127.0.0.1" in reason, reason
        # the other loom keeps its cadence while loom-01 is down
        t0 = time.time()
        assert await wait_until(lambda: spy.data_count("loom-02", after=t0) >= 2, 10)
        await sims.clear("loom-01", "offline")  # power back
        assert await wait_until(lambda: spy.kinds("loom-01") == ["online", "offline", "online"], 15)
        t1 = time.time()
        assert await wait_until(lambda: spy.data_count("loom-01", after=t1) >= 1, 10)
    assert spy.kinds("loom-02") == ["online"]


async def test_a_device_loop_that_fails_unexpectedly_is_restarted_and_the_others_go_on(
    tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    """A bug that escapes a device's loop (here: its driver cannot be made, once) reports that device
    offline with the error and starts its loop again; the other device never notices."""
    sims, agent, spy = await two_looms(tmp_path, mosquitto, "s")
    make = agent.runtime.driver_factory
    failed: list[str] = []

    def flaky(device: Any, **kw: Any) -> Any:
        if device.id == "loom-01" and not failed:
            failed.append(device.id)
            raise RuntimeError("driver construction bug")
        return make(device, **kw)

    agent.runtime.driver_factory = flaky
    agent.runtime.restart_delay = 1.0
    async with running(agent, sims, spy):
        assert await wait_until(lambda: spy.kinds("loom-01") == ["offline", "online"], 15), spy.kinds("loom-01")
        assert await wait_until(lambda: spy.data_count("loom-01") >= 1, 10)
    assert failed == ["loom-01"]
    assert spy.kinds("loom-02") == ["online"] and spy.data_count("loom-02") >= 1
    with spy.lock:
        reasons = [e["reason"] for t, p in spy.items if t.endswith("/loom-01/events") for e in p["events"]]
    assert "internal error: RuntimeError('driver construction bug')" in reasons
