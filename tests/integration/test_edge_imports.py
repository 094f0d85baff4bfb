"""`edgegw run` with a Modbus-only config loads no module it does not use (memory, README "Memory"): no
console templates (Jinja2), no password hashing (argon2) before the first login, no Prometheus client
before the first scrape, no simulators, no spreadsheets, no OPC UA stack, no cloud-side packages, no
WebSocket or httptools protocol, no `cryptography` (the gateway's key signs through libcrypto). The agent
runs in its own process against a real Mosquitto and a Modbus simulator; once its device is scanned, the
process lists its modules, then /metrics is scraped and must work (its module loaded at that moment)."""

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
                "gateway.bench", "cryptography")  # fmt: skip

PROBE = r"""
import json, os, signal, sys, threading, time, urllib.request
from gateway.cli import main

config, listen, token, out = sys.argv[1:5]


def get(path):
    req = urllib.request.Request(f"http://{listen}{path}", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.status, r.read()


def watch():
    result = {"scanned": False}
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not result["scanned"]:
            try:
                result["scanned"] = all(d["online"] and d["scans"] > 0 for d in json.loads(get("/api/v1/devices")[1]))
            except OSError:
                pass
            time.sleep(0.2)
        result["modules"] = sorted(sys.modules)
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
            [sys.executable, "-c", PROBE, str(path), cfg["api"]["listen"], token, str(out)],
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
