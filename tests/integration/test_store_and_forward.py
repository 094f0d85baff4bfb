"""Store-and-forward on real parts: a broker outage and a SIGKILLed gateway lose nothing and double nothing.

simulated looms → gateway → Mosquitto → ingester → VictoriaMetrics + ledger. Every sample the
gateway buffered must arrive exactly once in the ledger and in VictoriaMetrics (counts and values
per tag).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from cloud_bridge.cloud.ingest.ingester import Ingester
from cloud_bridge.cloud.ledger.schema import received_seqs
from cloud_bridge.cloud.ledger.writer import Ledger
from cloud_bridge.uplink.buffer import Buffer, Outgoing
from edge_config.models import CloudConfig, GatewayConfig
from gateway.agent import Agent
from simulators.workshop import Workshop, WorkshopSpec
from tests.ports import free_port, free_port_block
from tests.servers import MosquittoServer, VictoriaMetrics
from tests.trust import enrol

pytestmark = pytest.mark.integration

OUTAGE_S = 30.0


def cloud_config(broker: str, vm: str, ledger: Path) -> CloudConfig:
    return CloudConfig.model_validate(
        {
            # a fixed client id: a persistent session, so the broker keeps its subscription through restarts
            "mqtt": {"url": broker, "protocol": "5", "shared_group": None, "client_id": "ingest-saf"},
            "influx": {"url": vm},
            "ledger": {"url": f"sqlite:///{ledger}"},
        }
    )


def looms(sim_base: int, count: int = 2) -> Workshop:
    return Workshop(WorkshopSpec(industry="textiles", devices=[count, 0], port=sim_base))


def gateway_dict(tmp: Path, broker: str, sim_base: int, count: int = 2) -> dict[str, Any]:
    return {
        "gateway": {"id": "gw-saf", "enterprise_id": "ent-saf", "data_dir": str(tmp / "edge")},
        "mqtt": {"url": broker, "protocol": "5"},
        "api": {"listen": f"127.0.0.1:{free_port()}"},
        "devices": looms(sim_base, count).device_configs(),
    }


async def wait_until(cond: Any, timeout: float, step: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        await asyncio.sleep(step)
    return bool(cond())


def vm_counts(
    victoria: VictoriaMetrics, gw: str, expect: Counter[tuple[str, str]] | None = None, timeout: float = 15
) -> tuple[Counter[tuple[str, str]], dict[tuple[str, str, int], float]]:
    """Samples per (dev, tag) in VictoriaMetrics; with `expect`, polls until they match (a fresh
    series can take about a second to show up in an export) or the timeout passes."""
    deadline = time.monotonic() + timeout
    while True:
        counts, values = _vm_read(victoria, gw)
        if expect is None or counts == expect or time.monotonic() > deadline:
            return counts, values
        time.sleep(0.5)


def _vm_read(victoria: VictoriaMetrics, gw: str) -> tuple[Counter[tuple[str, str]], dict[tuple[str, str, int], float]]:
    victoria.force_flush()
    counts: Counter[tuple[str, str]] = Counter()
    values: dict[tuple[str, str, int], float] = {}
    for series in victoria.export(f'{{__name__="sf_v",gw="{gw}"}}'):
        m = series["metric"]
        key = (m["dev"], m["tag"])
        counts[key] += len(series["values"])
        for ts, v in zip(series["timestamps"], series["values"], strict=True):
            values[(m["dev"], m["tag"], ts)] = v
    return counts, values


def ledger_counts(ledger: Ledger, devices: list[str]) -> Counter[tuple[str, str]]:
    counts: Counter[tuple[str, str]] = Counter()
    for dev in devices:
        for row in ledger.tag_stats(dev):
            counts[(dev, row["tag"])] += row["samples"]
    return counts


async def test_broker_outage_of_30s_loses_and_doubles_nothing(tmp_path: Path, victoria: VictoriaMetrics) -> None:
    broker = MosquittoServer(free_port(), tmp_path / "mq", persistence=True)
    broker.start()
    sim_base = free_port_block(2)
    sims = looms(sim_base)
    await sims.start()
    ledger_path = tmp_path / "ledger.db"
    enrol(f"sqlite:///{ledger_path}", gateway_dict(tmp_path, broker.url, sim_base))
    ingester = Ingester(cloud_config(broker.url, victoria.url, ledger_path))
    ingester.start()
    assert ingester.wait_subscribed(10)

    agent = Agent(GatewayConfig.model_validate(gateway_dict(tmp_path, broker.url, sim_base)))
    buffered: list[tuple[str, dict[str, Any]]] = []  # (dev, sample) for every sample written to the buffer
    enqueue = agent.runtime._enqueue

    def tap(messages: list[Outgoing]) -> None:
        for m in messages:
            if m.kind == "data":
                buffered.extend((m.dev, s) for s in json.loads(m.body)["samples"])
        enqueue(messages)

    agent.runtime._enqueue = tap  # type: ignore[method-assign]
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop, serve_api=False))
    try:
        assert await wait_until(lambda: ingester.stats.samples_ingested > 0, 15)
        broker.stop()  # the factory's uplink drops
        outage_start = len(buffered)
        await asyncio.sleep(OUTAGE_S)
        assert len(buffered) > outage_start, "the gateway keeps collecting during the outage"
        backlog = agent.publisher.backlog()  # what the API and the status topic report
        assert backlog["messages"] > 0 and backlog["samples"] > 0 and backlog["dropped_messages"] == 0
        assert backlog["behind_ms"] >= (OUTAGE_S - 5) * 1000
        broker.start()  # back, on the same port, with its persisted sessions
        assert await wait_until(lambda: agent.buffer.depth().messages == 0, 60), "the backlog drains"
        assert agent.publisher.stats.replayed > 0, "replayed messages are flagged hist"
    finally:
        stop.set()
        await task
        await sims.stop()
    assert await wait_until(lambda: ingester.stats.samples_ingested >= len(buffered), 30)
    assert ingester.wait_idle(10)
    ingester.stop()
    broker.stop()

    expected = Counter((dev, s["tag"]) for dev, s in buffered)
    ledger = Ledger(f"sqlite:///{ledger_path}")
    try:
        assert ledger_counts(ledger, ["loom-01", "loom-02"]) == expected
        assert ledger.dead_letter_count() == 0
    finally:
        ledger.close()
    numeric = Counter((dev, s["tag"]) for dev, s in buffered if not isinstance(s["v"], str))
    counts, values = vm_counts(victoria, "gw-saf", numeric)
    assert counts == numeric
    for dev, s in buffered:
        if not isinstance(s["v"], str):
            assert values[(dev, s["tag"], s["ts"])] == pytest.approx(float(s["v"]))


async def test_gateway_sigkill_and_restart_loses_and_doubles_nothing(
    tmp_path: Path, mosquitto: MosquittoServer, victoria: VictoriaMetrics
) -> None:
    sim_base = free_port_block(2)
    sims = looms(sim_base)
    await sims.start()
    ledger_path = tmp_path / "ledger.db"
    enrol(f"sqlite:///{ledger_path}", gateway_dict(tmp_path, mosquitto.url, sim_base))
    ingester = Ingester(cloud_config(mosquitto.url, victoria.url, ledger_path))
    ingester.start()
    assert ingester.wait_subscribed(10)
    cfg_path = tmp_path / "gateway.yaml"
    cfg_path.write_text(yaml.safe_dump(gateway_dict(tmp_path, mosquitto.url, sim_base), allow_unicode=True))
    cmd = [sys.executable, "-m", "gateway.cli", "run", "-c", str(cfg_path)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log = (tmp_path / "gw.log").open("wb")
    try:
        gw = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        assert await wait_until(lambda: ingester.stats.samples_ingested > 0, 20)
        await asyncio.sleep(3)
        gw.send_signal(signal.SIGKILL)  # no goodbye, no flush
        gw.wait(10)
        seq_at_kill = Buffer(tmp_path / "edge" / "buffer.db").next_seq()
        await asyncio.sleep(2)
        gw = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        await asyncio.sleep(6)
        gw.send_signal(signal.SIGTERM)
        assert gw.wait(20) == 0
    finally:
        log.close()
        await sims.stop()
    buffer = Buffer(tmp_path / "edge" / "buffer.db")
    assert buffer.depth().messages == 0, "a clean stop leaves nothing behind"
    last_seq = buffer.next_seq() - 1
    assert last_seq > seq_at_kill, "the restarted gateway continued the seq"
    assert await wait_until(lambda: ingester.stats.event_messages + ingester.stats.data_messages >= last_seq, 20)
    assert ingester.wait_idle(10)
    ingester.stop()

    ledger = Ledger(f"sqlite:///{ledger_path}")
    try:
        r = received_seqs.c
        ranges = [
            (row["first_seq"], row["last_seq"])
            for row in ledger.db.rows(select(r.first_seq, r.last_seq).where(r.gw == "gw-saf"))
        ]
        assert ranges == [(1, last_seq)], "every message once: no gap"
        assert ledger.received_count() == last_seq, "no repeat"
        expected = ledger_counts(ledger, ["loom-01", "loom-02"])
        assert sum(expected.values()) == ledger.total_samples() > 0
        strings = {(dev, r["tag"]) for dev in ("loom-01", "loom-02") for r in ledger.tag_stats(dev) if not _numeric(r)}
        online = [e["kind"] for e in ledger.events("loom-01")]
        assert online.count("online") == 2, "one online event per gateway start"
    finally:
        ledger.close()
    numeric = Counter({k: n for k, n in expected.items() if k not in strings})
    counts, _ = vm_counts(victoria, "gw-saf", numeric)
    assert counts == numeric, "VictoriaMetrics holds exactly what the ledger counted (strings stay in the ledger)"


def _numeric(tag_row: dict[str, Any]) -> bool:
    text = tag_row["last_value_text"]
    if text in ("true", "false"):
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True
