"""The gateway with OPC UA devices, end to end on real parts: OPC UA simulator → gateway (subscriber,
normalization, buffer, publisher) → Mosquitto; and a server restart in the middle."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from edge_config.models import GatewayConfig
from gateway.agent import Agent
from simulators.workshop import Workshop, WorkshopSpec
from tests.ports import free_port
from tests.servers import MosquittoServer

pytestmark = pytest.mark.integration
PREFIX = "sf/v1/ent-ua/gw-ua"


class Spy:
    """Records (receipt time, topic, payload) of everything under the gateway's topics."""

    def __init__(self, port: int) -> None:
        self.messages: list[tuple[float, str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="ua-spy", protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"{PREFIX}/#", qos=1)
        self.client.loop_start()
        assert ready.wait(5), "spy could not subscribe"

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((time.time(), msg.topic, json.loads(msg.payload)))

    def of(self, suffix: str) -> list[tuple[float, dict[str, Any]]]:
        with self._lock:
            return [(t, p) for t, topic, p in self.messages if topic.endswith(suffix)]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


async def wait_for(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.1)


async def test_restart_of_the_server_offline_then_online_and_values_flow_again(
    tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    port = free_port()
    workshop = Workshop(WorkshopSpec(industry="chemicals", protocol="opcua", opcua_port=port), pki_dir=str(tmp_path))
    await workshop.start()
    sim = workshop.opcua_servers[0]
    devices = workshop.device_configs()
    for d in devices:
        d["connection"].update(timeout="2s", keepalive="1s", reconnect_max_delay="3s")
    cfg = GatewayConfig.model_validate(
        {
            "gateway": {"id": "gw-ua", "enterprise_id": "ent-ua", "data_dir": str(tmp_path / "edge")},
            "mqtt": {"url": mosquitto.url, "protocol": "5"},
            "devices": devices,
        }
    )
    spy = Spy(mosquitto.port)
    stop = asyncio.Event()
    agent = Agent(cfg)
    task = asyncio.create_task(agent.run(stop, serve_api=False))
    try:
        reactor_data = "reactor-01/data"
        await wait_for(lambda: len(spy.of(reactor_data)) >= 2 and spy.of("column-01/data"), 15, "data from both")
        first = spy.of(reactor_data)[0][1]
        assert first["units"]["temperature"] == "°C" and first["units"]["pressure"] == "MPa"
        temps = [s["v"] for _, p in spy.of(reactor_data) for s in p["samples"] if s["tag"] == "temperature"]
        assert temps and all(20 <= t <= 200 for t in temps)
        assert spy.of("reactor-01/status")[-1][1]["online"] is True
        assert "subscribed" in spy.of("reactor-01/status")[-1][1]["reason"]

        await sim.restart(down_for=2.0)
        back = time.time()
        await wait_for(
            lambda: any(t > back and any(s["ts"] > back * 1000 for s in p["samples"]) for t, p in spy.of(reactor_data)),
            15,
            "values after the restart",
        )
        took = min(t for t, p in spy.of(reactor_data) if t > back and any(s["ts"] > back * 1000 for s in p["samples"]))
        print(f"values flow again {took - back:.1f} s after the restart")
        assert took - back < 15.0
        statuses = [p for _, p in spy.of("reactor-01/status")]
        assert [s["online"] for s in statuses] == [True, False, True]
        assert "connection lost" in statuses[1]["reason"] or "network error" in statuses[1]["reason"]
        events = [e["kind"] for _, p in spy.of("reactor-01/events") for e in p["events"]]
        assert [k for k in events if k in ("online", "offline")] == ["online", "offline", "online"]
        state = agent.runtime.devices["reactor-01"]
        assert state.online and state.bad_readings == 0
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await workshop.stop()
        spy.close()
