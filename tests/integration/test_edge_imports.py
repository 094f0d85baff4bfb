"""`edgegw run` with a Modbus-only config loads no module it does not use (memory, README "Performance"):
no web stack (uvicorn, Starlette, FastAPI, the console's routes) before the API's first connection, no
console templates (Jinja2), no password hashing (argon2) before the first login, no Prometheus client
before the first scrape, no simulators, no spreadsheets, no OPC UA stack, no cloud-side packages, no
WebSocket or httptools protocol, no `cryptography` (the gateway's key signs through libcrypto). The agent
runs in its own process against a real Mosquitto and a Modbus simulator; once its device's values reach
the broker, the process lists its modules; then the API's first request must be answered (the connection
waits in the backlog while the web stack loads) with the device online, and /metrics is scraped and must
work (its module loaded at that moment)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.bench.edge import gateway_config, viewer_token, write_config
from gateway.bench.modbus import Simulators
from tests.servers import MosquittoServer

pytestmark = pytest.mark.integration

NOT_AT_START = ("jinja2", "argon2", "prometheus_client", "simulators", "openpyxl", "asyncua", "influxdb_client",
                "psycopg", "sqlalchemy", "websockets", "httptools", "matplotlib", "cloud_bridge.cloud",
                "gateway.bench", "uvicorn", "starlette", "fastapi", "anyio", "gateway.api",
                "cryptography", "msgspec")  # fmt: skip

PROBE = r"""
import json, os, signal, sys, threading, time, urllib.request
import paho.mqtt.client as mqtt
from gateway.cli import main

config, listen, token, out, broker_port = sys.argv[1:6]
published = threading.Event()


def get(path):
    req = urllib.request.Request(f"http://{listen}{path}", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.status, r.read()


def watch():
    result = {"scanned": False}
    try:
        # the device's values at the broker tell that it was scanned, without touching the API
        sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="probe")
        sub.on_connect = lambda c, *a: c.subscribe("sf/v1/+/+/+/data", 1)
        sub.on_message = lambda *a: published.set()
        sub.connect("127.0.0.1", int(broker_port))
        sub.loop_start()
        published.wait(60)
        sub.loop_stop()
        result["modules"] = sorted(sys.modules)
        devices = json.loads(get("/api/v1/devices")[1])  # the API's first connection loads the web stack
        result["scanned"] = published.is_set() and all(d["online"] and d["scans"] > 0 for d in devices)
        status, body = get("/metrics")
        result["metrics"] = status == 200 and b"edgegw_" in body
        result["prometheus_after"] = "prometheus_client" in sys.modules
    finally:
        with open(out, "w") as f:
            json.dump(result, f)
        os.kill(os.getpid(), signal.SIGTERM)


threading.Thread(target=watch, daemon=True).start()
sys.exit(main(["run", "-c", config]))
"""


def test_a_modbus_agent_loads_only_what_it_uses(tmp_path: Path, mosquitto: MosquittoServer) -> None:
    sims = Simulators(1, 20, 0.5)
    try:
        tags = [{"name": f"r{j:02d}", "address": f"hr:{j}", "type": "uint16"} for j in range(20)]
        cfg = gateway_config(tmp_path, mosquitto, sims.ports, tags, 0.5)
        path = write_config(tmp_path, cfg)
        token = viewer_token(tmp_path)
        out = tmp_path / "modules.json"
        proc = subprocess.run(
            [sys.executable, "-c", PROBE, str(path), cfg["api"]["listen"], token, str(out), str(mosquitto.port)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        sims.close()
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["scanned"], proc.stderr[-3000:]
    loaded = [m for m in result["modules"] if any(m == n or m.startswith(n + ".") for n in NOT_AT_START)]
    assert loaded == [], f"loaded at start: {loaded}"
    assert result["metrics"] and result["prometheus_after"]  # /metrics works, loading its client on the first scrape
