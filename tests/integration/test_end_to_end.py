"""Walking skeleton, end to end on real parts:
loom simulator (Modbus TCP) → gateway → Mosquitto → ingester → VictoriaMetrics + ledger.

Checks on the wire and in the stores that values, units and seq are right.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from cloud_bridge.cloud.ingest.ingester import Ingester
from cloud_bridge.cloud.ledger.writer import Ledger
from edge_config.models import CloudConfig, GatewayConfig
from gateway.agent import Agent
from gateway.users import UserStore, users_path
from simulators.workshop import Workshop, WorkshopSpec
from tests.ports import free_port
from tests.servers import MosquittoServer, VictoriaMetrics, wait_for_samples
from tests.trust import enrol

pytestmark = pytest.mark.integration


class WireSpy:
    """A plain MQTT subscriber that records every message under the prefix."""

    def __init__(self, url_port: int, client_id: str = "wire-spy") -> None:
        self.messages: list[tuple[str, dict[str, Any], bool]] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._ready.set()
        self.client.connect("127.0.0.1", url_port)
        self.client.subscribe("sf/v1/#", qos=1)
        self.client.loop_start()
        assert self._ready.wait(5), "spy could not subscribe"

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, json.loads(msg.payload), bool(msg.retain)))

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return [p for t, p, _ in self.messages if t.endswith("/" + kind)]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


async def test_loom_to_victoriametrics_and_ledger(
    tmp_path: Path, mosquitto: MosquittoServer, victoria: VictoriaMetrics
) -> None:
    sim_port = free_port()
    workshop = Workshop(WorkshopSpec(industry="textiles", devices=[1, 0], port=sim_port))  # one loom
    await workshop.start()
    gw_cfg = GatewayConfig.model_validate(
        {
            "gateway": {"id": "gw-e2e", "enterprise_id": "ent-e2e", "data_dir": str(tmp_path / "edge")},
            "mqtt": {"url": mosquitto.url, "protocol": "5"},
            "api": {"listen": f"127.0.0.1:{free_port()}"},
            "devices": workshop.device_configs(),
        }
    )
    ledger_path = tmp_path / "ledger.db"
    cloud_cfg = CloudConfig.model_validate(
        {
            "mqtt": {"url": mosquitto.url, "protocol": "5", "shared_group": "e2e"},
            "influx": {"url": victoria.url},
            "ledger": {"url": f"sqlite:///{ledger_path}"},
        }
    )
    spy = WireSpy(mosquitto.port)
    enrol(cloud_cfg.ledger.url, gw_cfg)
    ingester = Ingester(cloud_cfg)
    ingester.start()
    assert ingester.wait_subscribed(10)
    users = UserStore(users_path(gw_cfg))
    users.add("reader", "viewer", "a-long-password")
    token = users.add_token("reader")
    agent = Agent(gw_cfg)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        # the edge API answers while the gateway runs (to a viewer's token)
        await asyncio.sleep(4.5)
        url = f"http://{gw_cfg.api.listen}/api/v1/devices"
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
        devices = await asyncio.to_thread(lambda: json.loads(urllib.request.urlopen(request, timeout=5).read()))
        assert devices[0]["id"] == "loom-01" and devices[0]["online"] is True
        assert devices[0]["samples_published"] > 0
        health_url = f"http://{gw_cfg.api.listen}/api/v1/health"
        health = await asyncio.to_thread(lambda: json.loads(urllib.request.urlopen(health_url, timeout=5).read()))
        assert health["mqtt"]["connected"] is True and health["devices_online"] == 1
        assert set(health["buffer"]) >= {"messages", "bytes", "samples", "behind_ms", "dropped_messages"}
    finally:
        stop.set()
        await task
        await workshop.stop()
    assert ingester.wait_idle(10)
    await asyncio.sleep(0.5)
    ingester.stop()
    spy.close()

    data = spy.of_kind("data")
    events = spy.of_kind("events")
    assert len(data) >= 3 and events, "data and an online event must be on the wire"
    # seq: one counter per gateway across data and events, +1 per message, no gaps, no repeats
    seqs = sorted(p["seq"] for p in data + events)
    assert seqs == list(range(1, len(seqs) + 1))
    assert all(p["gw"] == "gw-e2e" and p["dev"] == "loom-01" and p["v"] == 1 for p in data)
    assert events[0]["events"][0]["kind"] == "online"
    # units travel with the data; the first message carries every tag
    first = data[0]
    assert first["units"]["speed"] == "rpm"
    assert first["units"]["energy_kwh"] == "kWh"
    tags = {s["tag"] for s in first["samples"]}
    assert {"speed", "run_state", "picks_total", "energy_kwh"} <= tags
    assert all(s["q"] == "good" for p in data for s in p["samples"])
    picks = [s["v"] for p in data for s in p["samples"] if s["tag"] == "picks_total"]
    assert picks == sorted(picks), "the pick counter only grows"
    for p in data:
        for s in p["samples"]:
            if s["tag"] == "speed":
                assert s["v"] == 0 or 500 <= s["v"] <= 1300
    # retained statuses: a newcomer learns the gateway went offline cleanly and the loom's last state
    late = WireSpy(mosquitto.port, "late-spy")
    await asyncio.sleep(0.5)
    late.close()
    retained = {t: p for t, p, r in late.messages if r}
    assert retained["sf/v1/ent-e2e/gw-e2e/status"]["online"] is False
    loom = dict(retained["sf/v1/ent-e2e/gw-e2e/loom-01/status"])
    assert loom.pop("sig")  # signed with the gateway's key (the ingester verifies it: test_trust_attacks)
    assert loom == {"online": True, "ts": loom["ts"], "reason": "responding"}

    # every numeric sample on the wire is in VictoriaMetrics, with the same value, time and unit
    wire_speed = {s["ts"]: s["v"] for p in data for s in p["samples"] if s["tag"] == "speed"}
    series = wait_for_samples(victoria, 'sf_v{dev="loom-01",tag="speed"}', len(wire_speed), timeout=15)
    assert len(series) == 1
    labels = series[0]["metric"]
    assert labels["unit"] == "rpm" and labels["gw"] == "gw-e2e" and labels["ent"] == "ent-e2e"
    stored = dict(zip(series[0]["timestamps"], series[0]["values"], strict=True))
    assert stored == pytest.approx(wire_speed)
    wire_numeric = sum(1 for p in data for s in p["samples"] if not isinstance(s["v"], str))
    all_series = wait_for_samples(victoria, '{__name__="sf_v",gw="gw-e2e"}', wire_numeric, timeout=15)
    assert sum(len(s["values"]) for s in all_series) == wire_numeric

    # the ledger holds every sample exactly once
    ledger = Ledger(f"sqlite:///{ledger_path}")
    try:
        assert ledger.total_samples() == sum(len(p["samples"]) for p in data)
        assert ledger.dead_letter_count() == 0
    finally:
        ledger.close()


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    api = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "demo",
            "--seconds",
            "20",
            "--api",
            api,
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
        check=False,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "data flowed end to end" in out
    # the banner (what comes before the summary) ends with the console's address and the demo user, who logs in
    banner = [line for line in out.split("演示摘要 / Demo summary")[0].splitlines() if line.strip()]
    assert banner[-2].startswith("  控制台 / console") and banner[-2].endswith(f": http://{api}/")
    assert banner[-1].startswith("  演示用户 / demo user") and banner[-1].endswith(" (admin)")
    name, password = banner[-1].split(": ", 1)[1].removesuffix(" (admin)").split(" / ")
    [users_file] = tmp_path.rglob("users.json")
    assert UserStore(users_file).login(name, password) is not None
    assert "在线设备 / devices online      : 3 / 3" in out
    ingested = int(out.split("已入库数据点 / samples ingested :")[1].split()[0])
    assert ingested > 0
