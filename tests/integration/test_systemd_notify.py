"""`edgegw run` under a service manager: READY once it runs, a watchdog ping every half WatchdogSec while
its event loop turns, STOPPING on SIGTERM — over a real Unix datagram socket, as systemd listens."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.ports import free_port
from tests.servers import MosquittoServer

pytestmark = pytest.mark.integration


def test_the_agent_notifies_ready_watchdog_and_stopping(tmp_path: Path, mosquitto: MosquittoServer) -> None:
    cfg = {
        "gateway": {"id": "gw-sd", "enterprise_id": "ent-sd", "data_dir": str(tmp_path / "data")},
        "mqtt": {"url": mosquitto.url},
        "api": {"listen": f"127.0.0.1:{free_port()}"},
        "devices": [
            {"id": "plc-1", "driver": "modbus_tcp", "connection": {"host": "127.0.0.1", "port": free_port()},
             "tags": [{"name": "t", "address": "40001"}]},
        ],
    }  # fmt: skip
    (tmp_path / "gw.yaml").write_text(yaml.safe_dump(cfg))
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(0.2)
    env = {**os.environ, "NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "1000000"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "run", "-c", str(tmp_path / "gw.yaml")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    got: list[str] = []

    def read_for(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                got.append(sock.recv(4096).decode())

    try:
        deadline = time.monotonic() + 20
        while "READY=1" not in got and proc.poll() is None and time.monotonic() < deadline:
            read_for(0.2)
        read_for(2.5)
        proc.send_signal(signal.SIGTERM)
        read_for(3.0)
        assert proc.wait(20) == 0, proc.stderr.read().decode() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
        sock.close()
    assert got and got[0] == "READY=1", got
    assert got.count("WATCHDOG=1") >= 4, "a ping every half second while it runs"
    assert got[-1] == "STOPPING=1"
