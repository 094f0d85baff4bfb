"""The publisher against the faults of real links, on a real Mosquitto (behind a misbehaving proxy where
the fault is the network's): a broker that never acknowledges, transient and permanent refusals, a
damaged buffer row, a start while the broker is down. Each test compares the seqs that reached a
subscriber with the seqs the buffer gave out."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from cloud_bridge.uplink.buffer import Buffer, Outgoing
from cloud_bridge.uplink.publisher import Publisher
from cloud_bridge.wire.codec import Sample, Topics, encode_data_body
from edge_config.models import MqttSection
from tests.mqtt_proxy import MqttProxy
from tests.ports import free_port
from tests.servers import MosquittoServer

pytestmark = pytest.mark.integration

TOPICS = Topics("sf/v1", "ent-pf", "gw-pf")


class Spy:
    """Records (seq, hist) of every data and event message of the gateway, straight from the broker."""

    def __init__(self, port: int) -> None:
        self.got: list[tuple[int, bool]] = []
        self._lock = threading.Lock()
        ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"spy-{port}", protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"{TOPICS.root}/+/data", qos=1)
        self.client.subscribe(f"{TOPICS.root}/+/events", qos=1)
        self.client.loop_start()
        assert ready.wait(5)

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        body = json.loads(msg.payload)
        with self._lock:
            self.got.append((body["seq"], body["hist"]))

    def seqs(self) -> set[int]:
        with self._lock:
            return {s for s, _ in self.got}

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def spy(mosquitto: MosquittoServer) -> Iterator[Spy]:
    s = Spy(mosquitto.port)
    yield s
    s.close()


def scans(n: int, ts: int = 1_700_000_000_000) -> list[Outgoing]:
    return [
        Outgoing("data", TOPICS.data("dev-1"), "dev-1", encode_data_body([Sample("t", i, ts + i)]), samples=1)
        for i in range(n)
    ]


async def until(cond: Any, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        await asyncio.sleep(0.05)
    return bool(cond())


class Running:
    """A publisher draining a real buffer, in a task."""

    def __init__(self, tmp: Path, url: str, **mqtt_settings: Any) -> None:
        self.buffer = Buffer(tmp / "buffer.db")
        settings = MqttSection(url=url, inflight=20, **mqtt_settings)
        self.publisher = Publisher(settings, TOPICS, self.buffer, version="test", status_interval=3600)
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def enqueue(self, n: int) -> list[int]:
        seqs = [s for s in self.buffer.enqueue(scans(n)) if s is not None]
        self.publisher.wake()
        return seqs

    async def __aenter__(self) -> Running:
        self.task = asyncio.create_task(self.publisher.run(self.stop))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        if self.task is not None:
            await asyncio.wait_for(self.task, 15)
        self.buffer.close()


async def test_a_broker_that_never_acknowledges_is_left_and_everything_arrives_after_the_reconnect(
    tmp_path: Path, mosquitto: MosquittoServer, spy: Spy
) -> None:
    proxy = MqttProxy(mosquitto.port, wedge_connections=1).start()
    try:
        async with Running(tmp_path, proxy.url, ack_timeout=3.0) as run:
            assert await until(lambda: run.publisher.stats.connected, 10)
            seqs = run.enqueue(50)
            states = set()
            assert await until(lambda: states.add(run.publisher.health()["state"]) or "stalled" in states, 10)
            assert not spy.seqs(), "nothing passes the wedged connection"
            assert await until(lambda: spy.seqs() >= set(seqs), 30), f"arrived {sorted(spy.seqs())}"
            assert await until(lambda: run.buffer.depth().messages == 0, 10)
            assert run.publisher.stats.stalls >= 1 and proxy.swallowed > 0
            assert run.publisher.health()["state"] == "connected"
    finally:
        proxy.stop()
    assert spy.seqs() == set(seqs)


async def test_a_transient_refusal_is_sent_again_and_nothing_is_dead_lettered(
    tmp_path: Path, mosquitto: MosquittoServer, spy: Spy
) -> None:
    proxy = MqttProxy(mosquitto.port).start()
    try:
        async with Running(tmp_path, proxy.url) as run:
            assert await until(lambda: run.publisher.stats.connected, 10)
            await asyncio.sleep(0.3)  # the birth status has been acknowledged
            proxy.nack_code, proxy.nacks_left = 0x97, 5  # quota exceeded
            seqs = run.enqueue(40)
            assert await until(lambda: run.buffer.depth().messages == 0, 60)
            assert spy.seqs() == set(seqs)
            assert run.publisher.stats.nacked == 5 and proxy.nacked == 5
            assert run.buffer.dead_letter_count() == 0 and run.publisher.stats.rejected == 0
    finally:
        proxy.stop()


async def test_a_permanent_refusal_is_dead_lettered_listed_and_replayed(
    tmp_path: Path, mosquitto: MosquittoServer, spy: Spy
) -> None:
    proxy = MqttProxy(mosquitto.port).start()
    try:
        async with Running(tmp_path, proxy.url) as run:
            assert await until(lambda: run.publisher.stats.connected, 10)
            await asyncio.sleep(0.3)  # the birth status has been acknowledged
            proxy.nack_code, proxy.nacks_left = 0x87, 3  # not authorised
            seqs = run.enqueue(20)
            assert await until(lambda: run.buffer.depth().messages == 0 and run.buffer.dead_letter_count() == 3, 30)
            dead = run.buffer.dead_letters()
            assert len(dead) == 3 and all("Not authorized" in d.reason for d in dead)
            assert run.buffer.depth().dead_letter_bytes == sum(d.bytes for d in dead) > 0
            before = len(spy.got)
            assert run.buffer.replay_dead_letters() == 3
            run.publisher.wake()
            assert await until(lambda: run.buffer.depth().messages == 0 and len(spy.got) == before + 3, 30)
            assert run.buffer.dead_letter_count() == 0
            assert {s for s, _ in spy.got[before:]} == {d.seq for d in dead}
    finally:
        proxy.stop()
    assert spy.seqs() == set(seqs)


async def test_a_damaged_row_is_quarantined_and_the_drain_goes_on(
    tmp_path: Path, mosquitto: MosquittoServer, spy: Spy
) -> None:
    buffer = Buffer(tmp_path / "buffer.db")
    seqs = [s for s in buffer.enqueue(scans(10)) if s is not None]
    buffer.close()
    db = sqlite3.connect(tmp_path / "buffer.db")
    db.execute("UPDATE outbox SET body = x'00112233' WHERE seq = ?", (seqs[4],))  # passes quick_check
    db.commit()
    db.close()
    async with Running(tmp_path, mosquitto.url) as run:
        assert await until(lambda: spy.seqs() >= set(seqs) - {seqs[4]}, 20)
        depth = run.buffer.depth()
        assert depth.messages == 0 and depth.quarantined == 1
        [dead] = run.buffer.dead_letters()
        assert dead.seq == seqs[4] and dead.reason.startswith("damaged")
    assert spy.seqs() == set(seqs) - {seqs[4]}


async def test_what_waited_for_a_broker_that_was_down_at_start_is_hist_and_what_follows_is_live(
    tmp_path: Path,
) -> None:
    broker = MosquittoServer(free_port(), tmp_path / "mq")  # not started yet: the gateway starts into an outage
    async with Running(tmp_path, broker.url) as run:
        await asyncio.sleep(0.5)
        waited = run.enqueue(5)
        await asyncio.sleep(1.5)  # a connect attempt has failed by now
        broker.start()
        spy = Spy(broker.port)
        try:
            assert await until(lambda: spy.seqs() >= set(waited), 30)
            assert await until(lambda: run.publisher.stats.connected, 5)
            live = run.enqueue(5)
            assert await until(lambda: spy.seqs() >= set(live), 10)
            hist = dict(spy.got)
            assert all(hist[s] for s in waited), "waited through the outage: hist"
            assert not any(hist[s] for s in live), "went out as read: live"
        finally:
            spy.close()
            broker.stop()


async def test_a_publisher_that_fails_is_started_again_and_health_shows_it(
    tmp_path: Path, mosquitto: MosquittoServer, spy: Spy
) -> None:
    from edge_config.models import GatewayConfig
    from gateway.agent import Agent
    from simulators.workshop import Workshop, WorkshopSpec

    sim_port = free_port()
    sims = Workshop(WorkshopSpec(industry="textiles", devices=[1, 0], port=sim_port))
    await sims.start()
    cfg = GatewayConfig.model_validate(
        {
            "gateway": {"id": "gw-pf", "enterprise_id": "ent-pf", "data_dir": str(tmp_path / "edge")},
            "mqtt": {"url": mosquitto.url, "protocol": "5"},
            "devices": sims.device_configs(),
        }
    )
    agent = Agent(cfg)
    real_drain, failures = agent.publisher._drain_once, [0]

    def drain_that_fails_once() -> int:
        if failures[0] == 0 and agent.buffer.depth().messages > 0:
            failures[0] += 1
            raise RuntimeError("injected fault in the drain loop")
        return real_drain()

    agent.publisher._drain_once = drain_that_fails_once  # type: ignore[method-assign]
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop, serve_api=False))
    try:
        assert await until(lambda: agent.publisher.stats.crashes == 1, 20)
        health = agent.publisher.health()
        assert health["crashes"] == 1 and "injected fault" in health["last_crash"]
        assert await until(lambda: len(spy.seqs()) >= 3, 20), "data flows again after the restart"
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        await sims.stop()
    assert agent.backlog_at_stop is not None and agent.backlog_at_stop.messages == 0
    assert spy.seqs() == set(range(1, max(spy.seqs()) + 1)), "no seq lost across the restart"
