"""The command line as a plant engineer uses it: `edgegw simulate … --write-config gw.yaml`, then
`edgegw run -c gw.yaml` just works; `edgegw demo --industry X` shows data flowing end to end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from edge_config import load_gateway_config
from gateway.users import UserStore, users_path
from tests.integration.conftest import MosquittoServer
from tests.ports import free_port, free_port_block

pytestmark = pytest.mark.integration

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def edgegw(*args: str, log: Path) -> subprocess.Popen[bytes]:
    out = log.open("wb")
    return subprocess.Popen([sys.executable, "-m", "gateway.cli", *args], stdout=out, stderr=subprocess.STDOUT, env=ENV)


def stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    return proc.wait(30)


def devices(api: str, token: str) -> list[dict[str, Any]]:
    request = urllib.request.Request(f"http://{api}/api/v1/devices", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=5) as r:
        result: list[dict[str, Any]] = json.loads(r.read())
        return result


def wait_for(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout:g} s")


@pytest.mark.parametrize(
    "options",
    [
        ["--industry", "food", "--devices", "2", "--protocol", "rtu", "--serial", "pty", "--meters"],
        ["--industry", "power", "--protocol", "opcua", "--shards", "2"],
    ],
    ids=["rtu-with-meters", "opcua-in-2-shards"],
)
def test_simulate_writes_a_config_that_edgegw_run_reads(
    options: list[str], tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    config = tmp_path / "gw.yaml"
    api = f"127.0.0.1:{free_port()}"
    sim = edgegw("simulate", *options, "--port", str(free_port_block(4)), "--opcua-port", str(free_port_block(2)),
                 "--speed", "60", "--write-config", str(config), "--mqtt", mosquitto.url, "--api", api,
                 "--data-dir", str(tmp_path / "edge"), log=tmp_path / "sim.log")  # fmt: skip
    gw = None
    try:
        wait_for(config.exists, 60, "the config written")
        cfg = load_gateway_config(config)  # as written
        users = UserStore(users_path(cfg))  # the edge API answers to users only
        users.add("reader", "viewer", "a-long-password")
        token = users.add_token("reader")
        gw = edgegw("run", "-c", str(config), log=tmp_path / "gw.log")
        ids = {d.id for d in cfg.devices}

        def publishing() -> set[str]:
            return {d["id"] for d in devices(api, token) if d["online"] and d["samples_published"] > 0}

        wait_for(lambda: publishing() == ids, 40, "every device online and published")
    finally:
        if gw is not None:
            assert stop(gw) == 0, (tmp_path / "gw.log").read_text()
        assert stop(sim) == 0, (tmp_path / "sim.log").read_text()
    assert "Traceback" not in (tmp_path / "sim.log").read_text()


@pytest.mark.parametrize(
    "industry", ["power", "chemicals", "nonferrous", "food", "new_materials", "all"]
)  # textiles: test_end_to_end
def test_demo_of_every_industry_shows_data_end_to_end(industry: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "demo", "--industry", industry, "--seconds", "8",
         "--api", f"127.0.0.1:{free_port()}", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=120, env=ENV, check=False,
    )  # fmt: skip
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "data flowed end to end" in out
    online, total = out.split("在线设备 / devices online      :")[1].split()[0:3:2]
    assert online == total
