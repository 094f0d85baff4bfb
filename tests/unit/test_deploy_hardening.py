"""What deploy/ ships for the industrial PC: a hardened systemd unit that systemd accepts, an install
script that pins versions and keeps configs private, secrets read from files."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from edge_config import ConfigError, load_text
from edge_config.models import GatewayConfig

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNIT = DEPLOY / "systemd" / "edgegw.service"


def directives(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_the_unit_is_hardened_and_watched() -> None:
    d = directives(UNIT.read_text())
    for key, value in {
        "Type": "notify",
        "CapabilityBoundingSet": "",
        "ProtectKernelTunables": "true",
        "ProtectKernelModules": "true",
        "ProtectKernelLogs": "true",
        "ProtectClock": "true",
        "RestrictNamespaces": "true",
        "SystemCallFilter": "@system-service",
        "DevicePolicy": "closed",
        "UMask": "0077",
        "NoNewPrivileges": "true",
        "ProtectSystem": "strict",
    }.items():
        assert d.get(key) == [value], key
    assert d["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]
    assert {"char-ttyUSB rw", "char-ttyS rw"} <= set(d["DeviceAllow"])
    assert d["MemoryMax"] and d["WatchdogSec"]


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here")
    unit = tmp_path / "edgegw.service"
    # the paths of an installed gateway do not exist on a test machine: point them at ones that do
    text = UNIT.read_text().replace("/opt/edgegw/.venv/bin/edgegw", "/bin/true")
    unit.write_text(text.replace("User=edgegw", "User=root").replace("Group=edgegw", "Group=root"))
    r = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "edgegw.service" not in r.stderr, r.stderr  # no warnings about our unit


def test_the_install_script_pins_versions_and_keeps_configs_private() -> None:
    script = (DEPLOY / "install.sh").read_text()
    assert "-c deploy/constraints.txt" in script
    assert "install -m 0640 -o root -g edgegw /dev/stdin /etc/edgegw/gateway.yaml" in script
    assert "install -m 0600" in script and "/etc/edgegw/edgegw.env" in script
    r = subprocess.run(["bash", "-n", str(DEPLOY / "install.sh")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


CONFIG = """\
gateway: {{id: g, enterprise_id: e}}
mqtt:
  url: mqtt://127.0.0.1:1883
  username: gw
  password_file: {mqtt_file}
devices:
  - id: r1
    driver: opcua
    connection:
      endpoint: opc.tcp://127.0.0.1:4840
      username: operator
      password_file: {opcua_file}
    tags:
      - {{name: t, node: "ns=2;s=T"}}
"""


def test_passwords_come_from_files(tmp_path: Path) -> None:
    (tmp_path / "mqtt").write_text("mqtt-secret\n")
    (tmp_path / "opcua").write_text("opcua-secret")
    cfg = load_text(CONFIG.format(mqtt_file=tmp_path / "mqtt", opcua_file=tmp_path / "opcua"), GatewayConfig)
    assert cfg.mqtt.password == "mqtt-secret"
    assert cfg.devices[0].connection.password == "opcua-secret"  # type: ignore[union-attr]


def test_a_password_file_that_cannot_be_read_is_a_config_error_at_its_line(tmp_path: Path) -> None:
    (tmp_path / "mqtt").write_text("x")
    text = CONFIG.format(mqtt_file=tmp_path / "mqtt", opcua_file=tmp_path / "missing")
    with pytest.raises(ConfigError) as err:
        load_text(text, GatewayConfig, "gateway.yaml")
    [issue] = err.value.issues
    assert (issue.line, issue.path) == (12, "devices[0].connection.password_file")
    assert "cannot read" in issue.message and "missing" in issue.message
