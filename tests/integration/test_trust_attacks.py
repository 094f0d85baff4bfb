"""A rogue gateway against real Mosquitto, PostgreSQL and VictoriaMetrics (README "Trust model").

The rogue holds valid credentials of its own (a registered gateway of another enterprise, with its own
key) and tries, before and while the victim sends:
- to publish as the victim's enterprise (a gateway id of its own under the victim's enterprise) and as
  the victim itself, taking the victim's next seqs first (so the victim's real messages would be
  dropped as duplicates);
- to set a retained "offline" status for the victim;
- to subscribe to the data and to the ingest group (it would read every tenant's data, and take
  messages away from the ingesters).

With the broker's ACL (written by `edgegw cloud gateway add --mosquitto-dir`) the broker refuses each.
With the ACL deliberately off (anonymous access) the ingester refuses what was published: nothing
unproven reaches a store, each refusal is dead-lettered with its reason and counted under the gateway it
claimed. (A read cannot be refused by the ingester: only the broker stops a rogue subscriber, and a rogue
in the ingest group would take its share of the stream, so that variant subscribes to the data only.) Either
way the victim's data lands intact: what the ledger and VictoriaMetrics hold is compared with what the
victim sent. Then the audit: intact, and it finds an edited ledger row and a deleted message.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy import delete, select, update

from cloud_bridge.cloud.ingest.ingester import Ingester
from cloud_bridge.cloud.ledger import schema
from cloud_bridge.cloud.ledger.sqldb import Database
from cloud_bridge.cloud.trust.audit import audit_period
from cloud_bridge.metrics.period import Period
from cloud_bridge.uplink.buffer import Buffer, Chain, Outgoing
from cloud_bridge.uplink.identity import load_or_create_identity
from cloud_bridge.uplink.publisher import Publisher
from cloud_bridge.wire.codec import (
    Event,
    Sample,
    Status,
    Topics,
    encode_data_body,
    encode_event_body,
    encode_status,
)
from cloud_bridge.wire.signing import chained_payload, chained_prefix, seal
from edge_config import load_cloud_config
from edge_config.models import MqttSection
from edge_config.timing import now_ms
from gateway.cli.main import main
from tests.ports import free_port
from tests.servers import MosquittoServer, VictoriaMetrics

pytestmark = pytest.mark.integration

PREFIX = "sf/v1"
ENT_V, GW_V = "ent-victim", "gw-victim"
ENT_R, GW_R = "ent-rogue", "gw-rogue"
MESSAGES = 30  # the victim's data messages
TAGS = ("speed", "temp", "picks")
FORGED_SEQS = range(1, 6)
DYNSEC_PLUGIN = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"  # Debian's mosquitto package


async def wait_until(cond: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        await asyncio.sleep(0.05)
    return cond()


def cloud_yaml(path: Path, broker: str, ledger: str, vm: str, *, acl: bool) -> Path:
    mqtt_section: dict[str, Any] = {"url": broker, "protocol": "5", "shared_group": "edgegw-ingest"}
    if acl:
        mqtt_section |= {"username": "ingest", "password": "ingest-secret"}
    doc = {
        "mqtt": mqtt_section,
        "influx": {"url": vm},
        "ledger": {"url": ledger},
        "trust": {"proof_timeout": "3s"},
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def enrol(cfg: Path, ent: str, gw: str, public_key: str, broker_dir: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """`edgegw cloud gateway add` as an operator runs it; returns the MQTT password it prints once."""
    capsys.readouterr()
    rc = main(
        [
            "cloud",
            "gateway",
            "add",
            ent,
            gw,
            "--public-key",
            public_key,
            "-c",
            str(cfg),
            "--mosquitto-dir",
            str(broker_dir),
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0, out
    return next(line.rsplit(": ", 1)[1] for line in out.splitlines() if "shown once" in line)


class Rogue:
    """A paho MQTT 5 client that records what the broker answers and what it receives."""

    def __init__(self, port: int, username: str | None, password: str | None) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="rogue", protocol=mqtt.MQTTv5)
        if username:
            self.client.username_pw_set(username, password)
        self.acks: dict[int, int] = {}
        self.subacks: list[int] = []
        self.received: list[str] = []
        self._lock = threading.Lock()
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = lambda c, u, mid, codes, p: self.subacks.extend(int(r.value) for r in codes)
        self.client.on_message = lambda c, u, m: self.received.append(m.topic)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        with self._lock:
            self.acks[mid] = int(getattr(reason, "value", 0))

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> int:
        """Publish QoS 1; the PUBACK's reason code (0 accepted, 0x87 not authorised)."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(5)
        deadline = time.monotonic() + 5
        while info.mid not in self.acks and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.acks[info.mid]

    def subscribe(self, *filters: str) -> None:
        props = Properties(PacketTypes.SUBSCRIBE)
        self.client.subscribe([(f, 1) for f in filters], properties=props)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


FUTURE_MS = 40 * 86_400_000  # the last message's clock is 40 days ahead (an OPC UA source clock gone wrong)


def victim_messages(t0: int) -> list[tuple[list[Sample], Event | None]]:
    """What the victim sends: MESSAGES data messages (3 tags each), the last one stamped 40 days ahead;
    an online event goes first."""
    out: list[tuple[list[Sample], Event | None]] = [
        ([Sample(tag, float(i * 10 + k), t0 + i * 1000 + k) for k, tag in enumerate(TAGS)], None)
        for i in range(MESSAGES - 1)
    ]
    return [*out, ([Sample(tag, 1.0, t0 + FUTURE_MS + k) for k, tag in enumerate(TAGS)], None)]


def forged(rogue_key: Any, ent: str, gw: str, seq: int, t0: int) -> tuple[str, bytes]:
    """A data message in the chained format claiming (ent, gw, seq): values no victim sends."""
    topics = Topics(PREFIX, ent, gw)
    body = encode_data_body([Sample(tag, 999.0, t0 + seq * 1000) for tag in TAGS])
    return topics.data("loom-01"), chained_payload(chained_prefix(ent, gw, "loom-01", seq, bytes(32), body), False)


@pytest.mark.parametrize("acl", [True, False], ids=["broker-acl", "acl-off"])
async def test_a_rogue_gateway_is_refused_and_the_victims_data_lands_intact(
    tmp_path: Path, pg_url: str, victoria: VictoriaMetrics, acl: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    broker_dir = tmp_path / "broker"
    port = free_port()
    cfg_path = cloud_yaml(tmp_path / "cloud.yaml", f"mqtt://127.0.0.1:{port}", pg_url, victoria.url, acl=acl)
    victim_id = load_or_create_identity(tmp_path / "victim")
    rogue_id = load_or_create_identity(tmp_path / "rogue")
    victim_pw = enrol(cfg_path, ENT_V, GW_V, victim_id.public_key, broker_dir, capsys)
    rogue_pw = enrol(cfg_path, ENT_R, GW_R, rogue_id.public_key, broker_dir, capsys)
    dynsec = json.loads((broker_dir / "dynamic-security.json").read_text())
    victim_role = next(r for r in dynsec["roles"] if r["rolename"] == f"gateway:{ENT_V}.{GW_V}")
    assert victim_role["acls"] == [
        {"acltype": "publishClientSend", "topic": f"{PREFIX}/{ENT_V}/{GW_V}/#", "allow": True}
    ]
    extra = (
        [
            "allow_anonymous false",
            f"plugin {DYNSEC_PLUGIN}",
            f"plugin_opt_config_file {broker_dir / 'dynamic-security.json'}",
        ]
        if acl
        else []
    )
    broker = MosquittoServer(port, tmp_path / "mosquitto", extra=extra)
    broker.start()
    cloud_cfg = load_cloud_config(cfg_path)
    ingester = Ingester(cloud_cfg)
    ingester.start()
    rogue = Rogue(port, f"{ENT_R}.{GW_R}" if acl else None, rogue_pw if acl else None)
    t0 = now_ms() - 60_000
    try:
        assert ingester.wait_subscribed(10)

        # the rogue reads: the data, and (with the ACL) the ingest group. Without the ACL nothing but the
        # broker can stop it: in the group it would take its share of the stream away from the ingesters
        rogue.subscribe(f"{PREFIX}/#", *([f"$share/edgegw-ingest/{PREFIX}/#"] if acl else []))
        # the rogue writes first: the victim's next seqs, and as a gateway of the victim's enterprise
        codes = [rogue.publish(*forged(rogue_id.key, ENT_V, GW_V, seq, t0)) for seq in FORGED_SEQS]
        codes.append(rogue.publish(*forged(rogue_id.key, ENT_V, GW_R, 1, t0)))
        assert all(c == (0x87 if acl else 0) for c in codes), codes  # not authorised (ACL), or taken (no ACL)

        # the victim: the real buffer and publisher, chained and signed
        topics = Topics(PREFIX, ENT_V, GW_V)
        buffer = Buffer(
            tmp_path / "victim" / "buffer.db", chain=Chain(ENT_V, GW_V, victim_id.key, topics.checkpoint, every=8)
        )
        sent = victim_messages(t0)
        buffer.enqueue(
            [
                Outgoing(
                    "events", topics.events("loom-01"), "loom-01", encode_event_body([Event("online", t0, "connected")])
                )
            ]
        )
        for samples, _ in sent:
            buffer.enqueue(
                [Outgoing("data", topics.data("loom-01"), "loom-01", encode_data_body(samples), samples=len(samples))]
            )
        publisher = Publisher(
            MqttSection(
                url=broker.url,
                protocol="5",
                username=f"{ENT_V}.{GW_V}" if acl else None,
                password=victim_pw if acl else None,
            ),
            topics,
            buffer,
            version="test",
        )
        stop = asyncio.Event()
        task = asyncio.create_task(publisher.run(stop))
        assert await wait_until(lambda: buffer.depth().messages == 0, 20), "the victim's messages are acknowledged"
        assert await wait_until(lambda: ingester.stats.data_messages >= MESSAGES, 20), ingester.stats

        # the rogue says the victim is offline (retained), signed with its own key
        status_topic = topics.status
        fake = seal(rogue_id.key, status_topic, encode_status(Status(False, now_ms() + 1000, version="rogue")))
        assert rogue.publish(status_topic, fake, retain=True) == (0x87 if acl else 0)
        await asyncio.sleep(1.0)
        assert ingester.wait_idle(10)
        db = Database(pg_url)
        st = schema.device_status.c
        gw_status = db.rows(select(schema.device_status).where(st.ent == ENT_V, st.gw == GW_V, st.dev == ""))
        assert gw_status and gw_status[0]["online"] is True, "no other gateway can set the victim's status"
        stop.set()
        await task
        if not acl:  # the forged messages were held, then refused when the victim's checkpoint came
            assert await wait_until(lambda: ingester.stats.refused >= len(FORGED_SEQS) + 2, 15), ingester.stats
        assert ingester.wait_idle(10)
    finally:
        rogue.close()
        ingester.stop()
        broker.stop()

    # the broker let the rogue read nothing (with the ACL), and refused its subscriptions
    if acl:
        assert rogue.received == [], "the ACL lets no gateway read"
        assert len(rogue.subacks) == 2 and all(code == 0x87 for code in rogue.subacks), rogue.subacks
    else:
        assert rogue.received, "without the ACL a gateway reads every tenant's data: only the broker can stop that"

    # the victim's data landed intact: every seq once, every value as sent, nothing forged
    r = schema.received_seqs.c
    ranges = [
        (x["first_seq"], x["last_seq"])
        for x in db.rows(select(r.first_seq, r.last_seq).where(r.ent == ENT_V, r.gw == GW_V))
    ]
    assert ranges == [(1, MESSAGES + 1)], "every message of the victim, once"
    a = schema.device_hours.c
    counted = sum(int(x["samples"]) for x in db.rows(select(a.samples).where(a.ent == ENT_V)))
    assert counted == (MESSAGES - 1) * len(TAGS), "the samples from the future are kept out of the evidence"
    ds = schema.device_stats.c
    [stats] = db.rows(select(schema.device_stats).where(ds.ent == ENT_V))
    assert stats["last_seen"] == max(s.ts for batch, _ in sent[:-1] for s in batch), "last seen never moves ahead"
    # VictoriaMetrics itself drops samples stamped days ahead ("too big timestamp"); InfluxDB would keep them
    expected = {(s.tag, s.ts): s.v for batch, _ in sent[:-1] for s in batch}
    landed: dict[tuple[str, int], float] = {}
    for series in victoria.export('{__name__="sf_v",ent="' + ENT_V + '"}'):
        assert series["metric"]["gw"] == GW_V, "nothing under the victim's enterprise but the victim"
        for ts, v in zip(series["timestamps"], series["values"], strict=True):
            landed[(series["metric"]["tag"], ts)] = v
    assert landed == expected
    assert not db.rows(select(r.first_seq).where(r.ent == ENT_V, r.gw == GW_R))

    # refusals: dead-lettered with a reason, counted under the gateway they claimed
    tc = schema.trust_counts.c
    counts = {(x["gw"], x["what"]): x["count"] for x in db.rows(select(schema.trust_counts).where(tc.ent == ENT_V))}
    assert counts.pop((GW_V, "future:samples")) == len(TAGS), "flagged and counted"
    if acl:
        assert counts == {}, "the broker refused everything: the ingester saw none of it"
    else:
        assert counts[(GW_V, "refused:mismatch")] == len(FORGED_SEQS)
        assert counts[(GW_R, "refused:unregistered")] == 1
        assert counts[(GW_V, "refused:signature")] == 1
        reasons = [x["reason"] for x in db.rows(select(schema.dead_letters))]
        assert sum("is not the message" in x for x in reasons) == len(FORGED_SEQS)
        assert all("Traceback" not in x for x in reasons)
    assert not db.rows(select(schema.unproven)), "nothing left waiting"

    # the audit: intact; then an edited evidence row and a deleted message are found
    period = Period(t0 - 3_600_000, now_ms() + 3_600_000, now_ms(), "Asia/Shanghai")
    report = audit_period(db, ENT_V, period)
    assert report.intact, report.findings
    assert report.gateways[0].verified_messages == MESSAGES + 1
    ev = schema.device_events.c
    db.execute(update(schema.device_events).where(ev.ent == ENT_V).values(kind="offline"))
    mb = schema.message_bodies.c
    db.execute(delete(schema.message_bodies).where(mb.ent == ENT_V, mb.seq == 7))
    report = audit_period(db, ENT_V, period)
    kinds = {(f.kind, f.seq, f.table) for f in report.findings}
    assert not report.intact
    assert ("missing_message", 7, None) in kinds
    assert ("evidence_altered", None, "device_events") in kinds
    assert any(
        f.kind in ("evidence_altered", "evidence_inserted") and f.table == "device_activity" for f in report.findings
    ), "the deleted message's samples are still counted in its hour: found"
    db.close()
