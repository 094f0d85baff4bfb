"""A registered gateway's signed checkpoint that no JSON reader of Python takes (an integer of 5,000 digits:
`int()` refuses more than 4,300) against real Mosquitto, VictoriaMetrics and a SQLite ledger.

It used to stop the ingester for every tenant: the error escaped the trust checks, was taken for a ledger
outage and the batch retried for ever, and the broker redelivered the checkpoint after a restart. Now it
is refused (`refused:signature`, a dead letter) and another gateway's messages published after it land in
both stores; after a restart of the ingester (its persistent session) ingestion goes on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from sqlalchemy import select

from cloud_bridge.cloud.ingest.ingester import Ingester
from cloud_bridge.cloud.ledger import schema
from cloud_bridge.cloud.ledger.sqldb import Database
from cloud_bridge.cloud.trust.registry import Registry
from cloud_bridge.uplink.identity import Identity, load_or_create_identity
from cloud_bridge.wire.codec import Sample, Topics, encode_data_body
from cloud_bridge.wire.signing import (
    GENESIS,
    Checkpoint,
    chain_hash,
    chained_payload,
    chained_prefix,
    encode_checkpoint,
    seal,
)
from edge_config.models import CloudConfig
from edge_config.timing import now_ms
from tests.integration.test_ingest_faults import wait_until
from tests.servers import MosquittoServer, VictoriaMetrics, wait_for_samples

pytestmark = pytest.mark.integration

PREFIX, ENT = "sf/v1", "ent-h"


class Gateway:
    """Chains and signs as a real gateway does (cloud_bridge/wire/signing.py), publishing with paho."""

    def __init__(self, ident: Identity, gw: str, url_port: int) -> None:
        self.ident, self.gw, self.topics = ident, gw, Topics(PREFIX, ENT, gw)
        self.seq, self.prev, self.first, self.cprev = 0, GENESIS, 1, GENESIS
        self.hashes: list[bytes] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{gw}", protocol=mqtt.MQTTv5)
        self.client.connect("127.0.0.1", url_port)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(5)
        assert info.is_published()

    def data(self, value: float, ts: int) -> tuple[str, bytes]:
        self.seq += 1
        body = encode_data_body([Sample("speed", value, ts)])
        prefix = chained_prefix(ENT, self.gw, "d1", self.seq, self.prev, body)
        self.prev = chain_hash(prefix)
        self.hashes.append(self.prev)
        return self.topics.data("d1"), chained_payload(prefix, False)

    def checkpoint(self) -> tuple[str, bytes]:
        c = Checkpoint(ENT, self.gw, now_ms(), self.first, self.seq, self.cprev, tuple(self.hashes), "k")
        self.first, self.cprev, self.hashes = self.seq + 1, self.prev, []
        return self.topics.checkpoint, seal(self.ident.key, self.topics.checkpoint, encode_checkpoint(c))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def started() -> Iterator[list[Ingester]]:
    ingesters: list[Ingester] = []
    yield ingesters
    for ing in ingesters:
        ing.stop(drain_timeout=1)


def test_a_checkpoint_with_a_5000_digit_integer_stops_nobody(
    mosquitto: MosquittoServer, victoria: VictoriaMetrics, tmp_path: Path, started: list[Ingester]
) -> None:
    ledger_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    cfg = CloudConfig.model_validate(
        {
            "mqtt": {"url": mosquitto.url, "protocol": "5", "client_id": "ingest-hostile", "inflight": 100},
            "influx": {"url": victoria.url},
            "ledger": {"url": ledger_url},
            "trust": {"mode": "enforce", "proof_timeout": "1h"},
        }
    )
    registry = Registry(Database(ledger_url))
    idents = {gw: load_or_create_identity(tmp_path / gw) for gw in ("gw-rogue", "gw-good")}
    for gw, ident in idents.items():
        registry.add(ENT, gw, ident.public_key)
    port = int(mosquitto.url.rsplit(":", 1)[1])
    rogue, good = (Gateway(idents[gw], gw, port) for gw in ("gw-rogue", "gw-good"))

    def start() -> Ingester:
        ing = Ingester(cfg, retry_initial=0.05, retry_max=0.5)
        ing.start()
        started.append(ing)
        assert ing.wait_subscribed(10), "ingester did not subscribe"
        return ing

    def recorded(ing: Ingester) -> list[int]:
        r = schema.received_seqs.c
        rows = ing.ledger.db.rows(select(r.first_seq, r.last_seq).where(r.ent == ENT, r.gw == "gw-good"))
        return sorted(s for x in rows for s in range(int(x["first_seq"]), int(x["last_seq"]) + 1))

    try:
        ing = start()
        hostile = ('{{"v":1,"ent":"{}","gw":"gw-rogue","ts":{},"from":1,"to":1}}'.format(ENT, "1" * 5000)).encode()
        rogue.publish(rogue.topics.checkpoint, seal(rogue.ident.key, rogue.topics.checkpoint, hostile))
        t0 = now_ms() - 60_000
        msgs = [good.data(1.0, t0), good.data(2.0, t0 + 1000)]
        good.publish(*good.checkpoint())
        for m in msgs:
            good.publish(*m)
        wait_until(lambda: recorded(ing) == [1, 2], 20, "the good gateway's messages after the hostile checkpoint")
        letters = ing.ledger.dead_letters()
        assert [(x["topic"], x["reason"][:20]) for x in letters] == [(rogue.topics.checkpoint, "checkpoint: not JSON")]
        assert ing.trust is not None
        counts = {(x["gw"], x["what"]): x["count"] for x in ing.trust.counts(ENT)}
        assert counts == {("gw-rogue", "refused:signature"): 1}
        wait_for_samples(victoria, f'sf_v{{ent="{ENT}",gw="gw-good"}}', 2)

        # a restart (the persistent session redelivers what was not acknowledged): ingestion goes on
        ing.stop(drain_timeout=5)
        started.remove(ing)
        rogue.publish(rogue.topics.checkpoint, seal(rogue.ident.key, rogue.topics.checkpoint, hostile))
        ing = start()
        m = good.data(3.0, t0 + 2000)
        good.publish(*good.checkpoint())
        good.publish(*m)
        wait_until(lambda: recorded(ing) == [1, 2, 3], 20, "the good gateway's message after a restart")
        wait_until(lambda: len(ing.ledger.dead_letters()) == 2, 10, "the second hostile checkpoint refused")
        wait_for_samples(victoria, f'sf_v{{ent="{ENT}",gw="gw-good"}}', 3)
    finally:
        rogue.close()
        good.close()
