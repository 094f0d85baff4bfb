"""Hot reload under load, through the console's own path (a tag sheet imported into the draft, then Apply, over
HTTP with an engineer's token), with four simulated looms (their own process) polled every 100 ms and a real
Mosquitto:

- every message the buffer gave out (the seqs `Buffer.enqueue` returned), before, during and after the
  reload, reached a subscriber exactly once, and the seqs are contiguous;
- the buffer, the publisher and the seq counter are the same objects and go on; the changed loom comes back
  with its new tags only;
- the other looms' tasks are not touched and go on scanning in every second of the reload; their scans per
  second and missed slots are printed (no timing is asserted).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest

from cloud_bridge.uplink.buffer import Outgoing
from cloud_bridge.wire.mqtt import host_port, make_client
from edge_config.models import GatewayConfig
from gateway.agent import Agent
from gateway.reload import config_text
from simulators.workshop import Workshop, WorkshopSpec
from tests.integration.test_opcua_gateway import wait_for
from tests.ports import free_port, free_port_block, port_free
from tests.servers import MosquittoServer

pytestmark = pytest.mark.integration
LOOMS = 4
CHANGED = "loom-02"
NEW_TAGS = (
    "name,address,type,scale,unit\nspeed,hr:0,uint16,0.1,rpm\nrun_state,hr:1,uint16,,\npicks_total,hr:2,uint32,,\n"
    "mispicks,hr:18,uint32,,\n"  # the loom's OEE settings name it (its reject counter)
)


class Subscriber:
    """Every data and events message of the gateway, as a plain MQTT client receives it (QoS 1)."""

    def __init__(self, url: str) -> None:
        self.messages: list[dict[str, Any]] = []
        self.client = make_client(url, "5", f"test-sub-{time.monotonic_ns()}", None, None, None)
        self.client.on_message = self._on_message
        self.ready = False
        self.client.on_subscribe = lambda *_a: setattr(self, "ready", True)
        self.client.connect(*host_port(url))
        self.client.subscribe([("sf/v1/ent-1/gw-1/+/data", 1), ("sf/v1/ent-1/gw-1/+/events", 1)])
        self.client.loop_start()

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        self.messages.append(json.loads(message.payload))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def test_reload_under_load_keeps_every_message_and_the_cadence(
    tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    base = free_port_block(LOOMS)
    # the looms in a process of their own: the agent's event loop is the gateway's alone, as in a plant
    sims = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "simulate", "--industry", "textiles", "--devices", f"{LOOMS},0",
         "--port", str(base)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    await wait_for(lambda: all(not port_free(base + i) for i in range(LOOMS)), 30, "the simulated looms")
    devices = Workshop(WorkshopSpec(industry="textiles", devices=[LOOMS, 0], port=base)).device_configs()
    for d in devices:
        d["poll_interval"] = "100ms"
    port = free_port()
    cfg = GatewayConfig.model_validate(
        {
            "gateway": {"id": "gw-1", "enterprise_id": "ent-1", "data_dir": str(tmp_path / "edge")},
            "mqtt": {"url": mosquitto.url},
            "api": {"listen": f"127.0.0.1:{port}"},
            "devices": devices,
        }
    )
    cfg_file = tmp_path / "gateway.yaml"
    cfg_file.write_text(config_text(cfg), encoding="utf-8")
    agent = Agent(cfg, config_path=cfg_file)
    agent.users.add("eng", "engineer", "eng-pw")
    token = agent.users.add_token("eng")

    given: list[int] = []  # every seq the buffer gave out, in order
    enqueue = agent.buffer.enqueue

    def tap(messages: list[Outgoing], now_ms: int | None = None) -> list[int | None]:
        seqs = enqueue(messages, now_ms)
        given.extend(s for s in seqs if s is not None)
        return seqs

    agent.buffer.enqueue = tap  # type: ignore[method-assign]
    sub = Subscriber(mosquitto.url)
    await wait_for(lambda: sub.ready, 30, "the subscription")
    buffer, publisher = agent.buffer, agent.publisher
    others = [d["id"] for d in devices if d["id"] != CHANGED]
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    per_second: list[dict[str, int]] = []
    try:
        rt = agent.runtime
        await wait_for(
            lambda: all(rt.devices[i].online and rt.devices[i].scans >= 10 for i in rt.devices), 30, "all online"
        )
        tasks = {i: rt.device_task(i) for i in others}
        seq_before = len(given)

        async def sample_scans(seconds: int) -> None:
            for _ in range(seconds):
                before = {i: rt.devices[i].scans for i in others}
                await asyncio.sleep(1)
                per_second.append({i: rt.devices[i].scans - before[i] for i in others})

        sampling = asyncio.create_task(sample_scans(4))
        await asyncio.sleep(1.5)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"}
        ) as http:
            r = await http.post(
                f"/editor/devices/{CHANGED}/tags", files={"sheet": ("tags.csv", NEW_TAGS.encode(), "text/csv")}
            )
            assert r.status_code == 303, r.text
            r = await http.post("/editor/apply")
            assert r.status_code == 200 and 'class="flash ok"' in r.text, r.text
        assert [t.name for d in agent.full_config().devices if d.id == CHANGED for t in d.tags] == [
            "speed",
            "run_state",
            "picks_total",
            "mispicks",
        ]
        assert CHANGED in cfg_file.read_text(encoding="utf-8") and "energy_kwh" in cfg_file.read_text(encoding="utf-8")
        await sampling
        await wait_for(
            lambda: rt.devices[CHANGED].online and rt.devices[CHANGED].scans >= 5, 30, "the changed loom back"
        )
        seq_after_reload = len(given)
        await wait_for(lambda: len(given) > seq_after_reload + 20, 30, "messages after the reload")
        assert len(given) > seq_before
        for i in others:
            assert rt.device_task(i) is tasks[i], f"{i}'s task was restarted"
            assert all(s[i] > 0 for s in per_second), f"{i} stopped scanning in some second: {per_second}"
        assert agent.buffer is buffer and agent.publisher is publisher
    finally:
        stop.set()
        await task
        sims.terminate()
        sims.wait(10)
    # missed slots are printed, not asserted: at 100 ms on a shared 2-core machine they come from the
    # machine's load as much as from the reload (no timing asserts)
    print("scans per second of the unaffected looms across the reload:", per_second)
    print("their missed scan slots:", {i: rt.devices[i].overruns for i in others})
    try:
        await wait_for(
            lambda: len({m["seq"] for m in sub.messages}) >= len(set(given)), 30, "every message at the subscriber"
        )
    finally:
        sub.close()
    received = Counter(m["seq"] for m in sub.messages)
    assert sorted(received) == sorted(given), "what reached the subscriber is what the buffer gave out"
    assert all(n == 1 for n in received.values()), [s for s, n in received.items() if n > 1]
    assert sorted(given) == list(range(min(given), max(given) + 1)), "seq is contiguous"
    after = [m for m in sub.messages if m["dev"] == CHANGED and "samples" in m and m["seq"] > given[seq_after_reload]]
    assert after and {s["tag"] for m in after for s in m["samples"]} <= {"speed", "run_state", "picks_total"}
