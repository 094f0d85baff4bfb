"""The Mosquitto config shipped in deploy/ persists what it acknowledges: messages queued for an ingester's
persistent session survive a broker crash (SIGKILL, no clean shutdown save)."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.ports import free_port
from tests.servers import MosquittoServer

pytestmark = pytest.mark.integration

SHIPPED = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto" / "edgegw.conf"


def persistence_lines(path: Path) -> list[str]:
    """The shipped config's store settings (the listeners and certificates are the site's own)."""
    keep = ("autosave_interval", "autosave_on_changes", "max_queued_messages")
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip().startswith(keep)]


def session(port: int, client_id: str) -> tuple[mqtt.Client, list[bytes]]:
    got: list[bytes] = []
    lock = threading.Lock()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)

    def on_message(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        with lock:
            got.append(msg.payload)

    c.on_message = on_message
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    c.connect("127.0.0.1", port, clean_start=False, properties=props)
    return c, got


def test_messages_acknowledged_for_an_offline_ingester_survive_a_broker_crash(tmp_path: Path) -> None:
    lines = persistence_lines(SHIPPED)
    assert "autosave_on_changes true" in lines
    broker = MosquittoServer(free_port(), tmp_path / "mq", persistence=True, extra=lines)
    broker.start()
    try:
        ingester, _ = session(broker.port, "edgegw-ingest-1")
        ingester.loop_start()
        ingester.subscribe("sf/v1/#", qos=1)[1]
        ingester.loop_stop()
        ingester.disconnect()  # offline: the broker queues for its session

        gw = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="gw", protocol=mqtt.MQTTv5)
        gw.connect("127.0.0.1", broker.port)
        gw.loop_start()
        sent = [f"seq {i}".encode() for i in range(200)]
        infos = [gw.publish("sf/v1/ent/gw/dev/data", p, qos=1) for p in sent]
        for info in infos:
            info.wait_for_publish(10)
        assert all(i.is_published() for i in infos), "every message acknowledged by the broker"
        gw.loop_stop()
        gw.disconnect()

        assert broker.proc is not None
        broker.proc.send_signal(signal.SIGKILL)  # a crash: no save on the way out
        broker.proc.wait(10)
        broker.start()

        ingester, got = session(broker.port, "edgegw-ingest-1")
        ingester.loop_start()
        deadline = threading.Event()
        for _ in range(100):
            if len(got) >= len(sent):
                break
            deadline.wait(0.1)
        ingester.loop_stop()
        ingester.disconnect()
        assert sorted(got) == sorted(sent), f"{len(got)} of {len(sent)} survived the crash"
    finally:
        broker.stop()
