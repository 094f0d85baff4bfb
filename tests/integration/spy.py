"""What arrived at the broker: a plain MQTT subscriber to every topic under the prefix, and a gateway
running over a simulated workshop for the tests that compare it with what the source produced."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from edge_config.models import GatewayConfig
from gateway.agent import Agent
from simulators.workshop import Workshop


class Spy:
    """Records (arrival time, topic, payload) of every message under `sf/v1/#`."""

    def __init__(self, port: int, client_id: str = "spy") -> None:
        self.items: list[tuple[float, str, dict[str, Any]]] = []
        self.lock = threading.Lock()
        ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("sf/v1/#", qos=1)
        self.client.loop_start()
        assert ready.wait(5), "the spy could not subscribe"

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.items.append((time.time(), msg.topic, json.loads(msg.payload)))

    def of(self, dev: str, kind: str) -> list[tuple[float, dict[str, Any]]]:
        with self.lock:
            return [(t, p) for t, topic, p in self.items if topic.endswith(f"/{dev}/{kind}")]

    def samples(self, dev: str, tag: str | None = None, after: float = 0.0) -> list[dict[str, Any]]:
        """Samples of `dev` (of one tag) that arrived after `after` (epoch seconds)."""
        return [
            s for t, p in self.of(dev, "data") if t >= after for s in p["samples"] if tag is None or s["tag"] == tag
        ]

    def online(self, dev: str) -> list[bool]:
        """The device's online/offline events in order."""
        return [e["kind"] == "online" for _, p in self.of(dev, "events") for e in p["events"]
                if e["kind"] in ("online", "offline")]  # fmt: skip

    def reasons(self, dev: str) -> list[str]:
        return [e["reason"] for _, p in self.of(dev, "events") for e in p["events"] if e["kind"] == "offline"]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


async def wait_until(cond: Callable[[], Any], timeout: float, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what or 'condition'}: not within {timeout:g} s")
        await asyncio.sleep(0.1)


def gateway_config(ws: Workshop, tmp: Path, broker_url: str, connection: dict[str, Any] | None = None,
                   **device_overrides: Any) -> GatewayConfig:  # fmt: skip
    """The workshop's own gateway config, on this broker, with its data in `tmp` (and device settings changed)."""
    cfg = ws.gateway_config(gateway_id="gw-ws", enterprise_id="ent-ws", mqtt_url=broker_url,
                            data_dir=str(tmp / "edge"))  # fmt: skip
    for d in cfg["devices"]:
        d.update(device_overrides)
        d["connection"].update(connection or {})
    return GatewayConfig.model_validate(cfg)


@asynccontextmanager
async def gateway(config: GatewayConfig) -> AsyncIterator[Agent]:
    """The edge agent running inside the block."""
    agent = Agent(config)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop, serve_api=False))
    try:
        yield agent
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
