"""The publisher over TLS with a client certificate and a username/password, against a real Mosquitto."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from cloud_bridge.uplink.buffer import Buffer, Outgoing
from cloud_bridge.uplink.publisher import Publisher
from cloud_bridge.wire.codec import Sample, Topics, encode_data_body
from edge_config.models import MqttSection
from tests.integration.tls import TlsFiles, make_ca
from tests.ports import free_port
from tests.servers import MosquittoServer

pytestmark = pytest.mark.integration


@pytest.fixture
def tls_broker(tmp_path: Path) -> Any:
    files = make_ca(tmp_path / "pki")
    passwd = tmp_path / "passwd"
    passwd.touch()
    subprocess.run(["mosquitto_passwd", "-b", str(passwd), "gw-tls", "s3cret-pass"], check=True)
    tls_port = free_port()
    broker = MosquittoServer(
        free_port(),
        tmp_path / "mq",
        extra=[
            f"password_file {passwd}",
            f"listener {tls_port} 127.0.0.1",
            f"cafile {files.ca}",
            f"certfile {files.server_cert}",
            f"keyfile {files.server_key}",
            "require_certificate true",
        ],
    )
    broker.start()
    yield broker, tls_port, files
    broker.stop()


async def publish_one(settings: MqttSection, tmp: Path, timeout: float = 8) -> Publisher:
    buffer = Buffer(tmp / f"buf-{time.monotonic_ns()}.db")
    buffer.enqueue(
        [Outgoing("data", "sf/v1/ent-t/gw-tls/dev-1/data", "dev-1", encode_data_body([Sample("t", 1.5, 1)]), samples=1)]
    )
    pub = Publisher(settings, Topics("sf/v1", "ent-t", "gw-tls"), buffer, version="test")
    stop = asyncio.Event()
    task = asyncio.create_task(pub.run(stop))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and buffer.depth().messages:
        await asyncio.sleep(0.1)
    stop.set()
    await task
    return pub


def subscribe(port: int) -> tuple[mqtt.Client, list[dict[str, Any]]]:
    got: list[dict[str, Any]] = []
    ready = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="tls-spy", protocol=mqtt.MQTTv5)
    c.on_message = lambda cl, u, m: got.append(json.loads(m.payload)) if m.topic.endswith("/data") else None
    c.on_subscribe = lambda *a: ready.set()
    c.connect("127.0.0.1", port)
    c.subscribe("sf/v1/#", qos=1)
    c.loop_start()
    assert ready.wait(5)
    return c, got


def tls_settings(port: int, files: TlsFiles, **over: Any) -> MqttSection:
    base: dict[str, Any] = {
        "url": f"mqtts://127.0.0.1:{port}",
        "username": "gw-tls",
        "password": "s3cret-pass",
        "tls": {"ca_file": str(files.ca), "cert_file": str(files.client_cert), "key_file": str(files.client_key)},
    }
    base.update(over)
    return MqttSection.model_validate(base)


async def test_tls_with_client_certificate_and_password_delivers(tmp_path: Path, tls_broker: Any) -> None:
    broker, tls_port, files = tls_broker
    spy, got = subscribe(broker.port)
    try:
        pub = await publish_one(tls_settings(tls_port, files), tmp_path)
        assert pub.stats.acked == 1 and pub.stats.connects == 1
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert got and got[0]["samples"][0]["v"] == 1.5 and got[0]["gw"] == "gw-tls"
    finally:
        spy.loop_stop()


async def test_wrong_password_is_refused_and_nothing_is_lost(tmp_path: Path, tls_broker: Any) -> None:
    _, tls_port, files = tls_broker
    pub = await publish_one(tls_settings(tls_port, files, password="wrong"), tmp_path, timeout=3)
    assert pub.stats.acked == 0 and pub.stats.connects == 0
    assert "refused" in pub.stats.last_error or "disconnected" in pub.stats.last_error
    assert pub.buffer.depth().messages == 1, "the message waits in the buffer"


async def test_untrusted_server_certificate_is_refused(tmp_path: Path, tls_broker: Any) -> None:
    _, tls_port, files = tls_broker
    other = make_ca(tmp_path / "other-pki", "another CA")
    settings = tls_settings(
        tls_port,
        files,
        tls={"ca_file": str(other.ca), "cert_file": str(files.client_cert), "key_file": str(files.client_key)},
    )
    pub = await publish_one(settings, tmp_path, timeout=3)
    assert pub.stats.connects == 0 and pub.buffer.depth().messages == 1


async def test_message_the_broker_refuses_is_dead_lettered_and_does_not_block(tmp_path: Path) -> None:
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite sf/v1/ent-t/gw-tls/#\ntopic read $SYS/#\n")
    broker = MosquittoServer(free_port(), tmp_path / "mq", extra=[f"acl_file {acl}"])
    broker.start()
    try:
        buffer = Buffer(tmp_path / "buf.db")
        body = encode_data_body([Sample("t", 2.5, 1)])
        buffer.enqueue(
            [
                Outgoing("data", "sf/v1/ent-t/other-gw/dev-1/data", "dev-1", body, samples=1),  # not ours to write
                Outgoing("data", "sf/v1/ent-t/gw-tls/dev-1/data", "dev-1", body, samples=1),
            ]
        )
        pub = Publisher(MqttSection(url=broker.url), Topics("sf/v1", "ent-t", "gw-tls"), buffer, version="t")
        stop = asyncio.Event()
        task = asyncio.create_task(pub.run(stop))
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and buffer.depth().messages:
            await asyncio.sleep(0.1)
        stop.set()
        await task
        assert buffer.depth().messages == 0, "the refused message does not block the queue"
        assert pub.stats.acked == 1 and pub.stats.rejected == 1
        assert buffer.dead_letter_count() == 1
        assert "not authorized" in pub.stats.last_error.lower()
    finally:
        broker.stop()
