"""`pip install edgegw` (no extras) is the edge agent: it reads a simulated loom over Modbus TCP and
publishes to a real Mosquitto, with none of the cloud, spreadsheet or simulator-only packages installed;
a cloud command says which extra to install instead of a traceback."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
import venv
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml

from simulators.workshop import Workshop, WorkshopSpec
from tests.ports import free_port
from tests.servers import MosquittoServer

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
NOT_IN_THE_EDGE = ("influxdb_client", "openpyxl", "amqtt", "psycopg", "sqlalchemy", "pymodbus")


@pytest.fixture(scope="module")
def edge_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with a plain `pip install .` of this checkout, pinned as deploy/install.sh pins it."""
    env_dir = tmp_path_factory.mktemp("edge-only") / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    pip = subprocess.run(
        # with the pins deploy/install.sh uses: they must resolve and be enough
        [
            str(env_dir / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "-c",
            str(ROOT / "deploy" / "constraints.txt"),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert pip.returncode == 0, pip.stdout[-3000:] + pip.stderr[-3000:]
    return env_dir


def test_the_plain_install_has_none_of_the_extras(edge_venv: Path) -> None:
    probe = "import importlib.util, json; print(json.dumps({m: importlib.util.find_spec(m) is not None for m in %r}))"
    out = subprocess.run(
        [str(edge_venv / "bin" / "python"), "-c", probe % (NOT_IN_THE_EDGE,)],
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
    )
    assert json.loads(out.stdout) == dict.fromkeys(NOT_IN_THE_EDGE, False)


def test_a_cloud_command_names_the_extra_to_install(edge_venv: Path, tmp_path: Path) -> None:
    cloud = tmp_path / "cloud.yaml"
    cloud.write_text("mqtt: {url: mqtt://127.0.0.1:1}\n")
    proc = subprocess.run(
        [str(edge_venv / "bin" / "edgegw"), "ingest", "-c", str(cloud)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert "pip install 'edgegw[cloud]'" in proc.stderr
    assert "Traceback" not in proc.stderr


async def test_the_plain_install_runs_the_agent_and_publishes(
    edge_venv: Path, tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    sim_port = free_port()
    sims = Workshop(WorkshopSpec(industry="textiles", devices=[2, 0], port=sim_port))
    await sims.start()
    cfg = {
        "gateway": {"id": "gw-edge-only", "enterprise_id": "ent-edge", "data_dir": str(tmp_path / "data")},
        "mqtt": {"url": mosquitto.url, "protocol": "5"},
        "api": {"listen": f"127.0.0.1:{free_port()}"},
        "devices": sims.device_configs(),
    }
    (tmp_path / "gw.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    seen: dict[str, set[str]] = {}
    lock = threading.Lock()

    def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic.endswith("/data"):
            body = json.loads(msg.payload)
            with lock:
                seen.setdefault(body["dev"], set()).update(s["tag"] for s in body["samples"])

    spy = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="edge-only-spy", protocol=mqtt.MQTTv5)
    spy.on_message = on_message
    spy.connect("127.0.0.1", mosquitto.port)
    spy.subscribe("sf/v1/ent-edge/gw-edge-only/#", qos=1)
    spy.loop_start()
    agent = subprocess.Popen(
        [str(edge_venv / "bin" / "edgegw"), "run", "-c", str(tmp_path / "gw.yaml")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    try:
        expected = {d["id"]: {t["name"] for t in d["tags"]} for d in cfg["devices"]}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and agent.poll() is None:
            with lock:
                if all(seen.get(dev, set()) >= tags for dev, tags in expected.items()):
                    break
            await asyncio.sleep(0.2)
        with lock:
            got = {dev: set(tags) for dev, tags in seen.items()}
        assert agent.poll() is None, agent.communicate()[0].decode(errors="replace")[-3000:]
        assert got == expected, "every tag of every simulated device arrived over MQTT"
    finally:
        agent.terminate()
        out = agent.communicate(timeout=30)[0].decode(errors="replace")
        spy.loop_stop()
        spy.disconnect()
        await sims.stop()
    assert agent.returncode == 0, out[-3000:]
    assert "Traceback" not in out


def test_the_pins_cover_every_package_of_the_plain_install(edge_venv: Path) -> None:
    freeze = subprocess.run(
        [str(edge_venv / "bin" / "python"), "-m", "pip", "freeze", "--exclude", "edgegw"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    pins = (ROOT / "deploy" / "constraints.txt").read_text()

    def names(text: str) -> set[str]:
        return {ln.split("==")[0].lower().replace("_", "-") for ln in text.splitlines() if "==" in ln}

    assert names(freeze) <= names(pins), f"not pinned: {sorted(names(freeze) - names(pins))}"
