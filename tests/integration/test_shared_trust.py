"""Held messages of a shared group: a gateway's checkpoint reaches one ingester, its messages another
(Mosquitto round-robins a shared subscription). The held messages must be recorded as soon as the
checkpoint is in the ledger, whichever ingester holds them, not after `trust.proof_timeout` (600 s here,
far beyond the waits), and exactly once. Real Mosquitto, a real PostgreSQL ledger shared by two ingesters."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lz4.block
import paho.mqtt.client as mqtt
import pytest
from sqlalchemy import func, select

from cloud_bridge.cloud.ingest.ingester import Ingester
from cloud_bridge.cloud.ledger import schema
from cloud_bridge.cloud.trust.registry import Registry
from cloud_bridge.uplink.buffer import Buffer, Chain, Outgoing
from cloud_bridge.uplink.identity import load_or_create_identity
from cloud_bridge.uplink.publisher import Publisher
from cloud_bridge.wire.codec import Sample, Topics, encode_data_body
from cloud_bridge.wire.signing import chain_hash, signed_part
from edge_config.models import CloudConfig, IngestMqttSection, LedgerSection, MqttSection, TrustSection
from tests.servers import MosquittoServer

ENT = "ent-1"
Wire = list[tuple[str, bytes]]  # (topic, payload) as the gateway publishes them, checkpoints first


def gateway(work: Path, gw: str, count: int) -> tuple[str, Wire, Wire, dict[int, bytes]]:
    """A gateway's public key, its checkpoints, its chained data messages, and the hash of each seq."""
    topics = Topics("sf/v1", ENT, gw)
    ident = load_or_create_identity(work / gw / "id")
    buf = Buffer(work / gw / "buffer.db", chain=Chain(ENT, gw, ident.key, topics.checkpoint, every=count))
    try:
        bodies = [encode_data_body([Sample("t", float(i), 1_700_000_000_000 + i)]) for i in range(count)]
        buf.enqueue([Outgoing("data", topics.data("d1"), "d1", body, samples=1) for body in bodies])
        pub = Publisher(MqttSection(), topics, buf, version="t")
        cps = [(c.topic, c.body) for c in buf.checkpoints()]
        msgs = [(r.topic, pub._payload(r)) for r in buf.peek(count + 10)]
        seqs = [r.seq or 0 for r in buf.peek(count + 10)]
    finally:
        buf.close()
    hashes = {}
    for seq, (_, payload) in zip(seqs, msgs, strict=True):
        part = signed_part(payload)
        assert part is not None
        hashes[seq] = chain_hash(part)
    return ident.public_key, cps, msgs, hashes


def ingester(broker: MosquittoServer | None, pg_url: str) -> Ingester:
    url = broker.url if broker is not None else "mqtt://127.0.0.1:1"  # None: driven directly, never connected
    config = CloudConfig(
        mqtt=IngestMqttSection(url=url, protocol="5", shared_group="edgegw-ingest", inflight=200),
        ledger=LedgerSection(url=pg_url),
        trust=TrustSection(proof_timeout=600),
    )
    return Ingester(config, retry_initial=0.01)


def message(topic: str, payload: bytes) -> mqtt.MQTTMessage:
    m = mqtt.MQTTMessage(topic=topic.encode())
    m.payload = payload
    return m


def publish(broker: MosquittoServer, wire: Wire) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="gateways", protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        for info in [client.publish(t, p, qos=1) for t, p in wire]:
            info.wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def recorded(ing: Ingester) -> dict[tuple[str, int], bytes]:
    """(gw, seq) → the chain hash the ledger kept with it (message_bodies), for every received message,
    read in one snapshot (REPEATABLE READ) while the ingesters may still be writing; the ledger keeps the
    received seqs as ranges, so the snapshot also gives how many they cover."""
    rs, b = schema.received_seqs.c, schema.message_bodies.c
    with ing.ledger.db.engine.connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        n = int(
            conn.execute(
                select(func.coalesce(func.sum(rs.last_seq - rs.first_seq + 1), 0)).where(rs.ent == ENT)
            ).scalar_one()
        )
        rows = conn.execute(select(b.gw, b.seq, b.body).where(b.ent == ENT)).mappings().all()
    assert n == len(rows), "a proof for every recorded chained message"
    return {(x["gw"], int(x["seq"])): chain_hash(lz4.block.decompress(bytes(x["body"]))) for x in rows}


def held_rows(ing: Ingester) -> int:
    return int(ing.ledger.db.scalar(select(func.count()).select_from(schema.unproven)))


def wait_for(cond: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def test_the_ingester_storing_a_checkpoint_records_what_another_ingester_holds(
    tmp_path: Path, mosquitto: MosquittoServer, pg_url: str
) -> None:
    public, cps, msgs, hashes = gateway(tmp_path, "gw-1", 6)
    holder, keeper = ingester(mosquitto, pg_url), ingester(mosquitto, pg_url)
    try:
        Registry(holder.ledger.db).add(ENT, "gw-1", public)
        holder.handle_batch([message(t, p) for t, p in msgs])  # the messages came first, to the holder
        assert holder.stats.held == 6 and recorded(holder) == {} and held_rows(holder) == 6
        keeper.start()  # the holder never sweeps (no worker): only the keeper can settle them
        assert keeper.wait_subscribed()
        publish(mosquitto, cps)
        assert wait_for(lambda: held_rows(holder) == 0, 30), "held until the proof timeout"
        assert recorded(holder) == {("gw-1", seq): h for seq, h in hashes.items()}
        assert keeper.stats.released == 6 and keeper.stats.checkpoints == 1 and keeper.stats.refused == 0
        assert holder.ledger.total_samples() == 6
    finally:
        keeper.stop()
        holder.stop()


def test_two_ingesters_of_a_shared_group_record_every_message_once_without_waiting_for_the_timeout(
    tmp_path: Path, mosquitto: MosquittoServer, pg_url: str
) -> None:
    sent: dict[tuple[str, int], bytes] = {}
    wire: Wire = []
    ings = [ingester(mosquitto, pg_url) for _ in range(2)]
    registry = Registry(ings[0].ledger.db)
    for n in range(8):
        gw = f"gw-{n}"
        public, cps, msgs, hashes = gateway(tmp_path, gw, 25)
        registry.add(ENT, gw, public)
        wire += cps + msgs  # each gateway's checkpoint just before its messages, as the publisher sends them
        sent |= {(gw, seq): h for seq, h in hashes.items()}
    try:
        for ing in ings:
            ing.start()
            assert ing.wait_subscribed()
        publish(mosquitto, wire)
        assert wait_for(lambda: len(recorded(ings[0])) == len(sent) and held_rows(ings[0]) == 0, 60)
        assert recorded(ings[0]) == sent  # each message once, with the hash its gateway signed
        stats = [ing.stats for ing in ings]
        assert sum(s.messages for s in stats) >= len(wire) and all(s.messages > 0 for s in stats)
        assert sum(s.released for s in stats) == sum(s.held for s in stats)
        assert sum(s.refused + s.duplicates for s in stats) == 0
        assert ings[0].ledger.total_samples() == len(sent)
    finally:
        for ing in ings:
            ing.stop()


def test_a_message_whose_checkpoint_another_ingester_stored_is_never_held(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    public, cps, msgs, hashes = gateway(tmp_path, "gw-1", 6)
    keeper, other = ingester(None, pg_url), ingester(None, pg_url)
    try:
        Registry(keeper.ledger.db).add(ENT, "gw-1", public)
        keeper.handle_batch([message(t, p) for t, p in cps])
        other.handle_batch([message(t, p) for t, p in msgs[:3]])  # the checkpoint is in the ledger already
        assert other.stats.held == 0 and len(recorded(other)) == 3

        # The checkpoint lands while `late`'s batch is written (after its look-up found none): proven
        # before the batch is acknowledged, never held.
        late = ingester(None, pg_url)
        keeper.ledger.db.execute(schema.chain_checkpoints.delete())
        keeper.ledger.db.execute(schema.received_seqs.delete())
        keeper.ledger.db.execute(schema.message_bodies.delete())
        store = late._store

        def checkpoint_meanwhile(batch: list[Any], counts: dict[str, int]) -> None:
            store(batch, counts)
            if not keeper.ledger.db.rows(select(schema.chain_checkpoints.c.last_seq)):
                keeper.handle_batch([message(t, p) for t, p in cps])

        monkeypatch.setattr(late, "_store", checkpoint_meanwhile)
        late.handle_batch([message(t, p) for t, p in msgs])
        assert late.stats.held == 0 and held_rows(late) == 0
        assert recorded(late) == {("gw-1", seq): h for seq, h in hashes.items()}
        late.stop()
    finally:
        keeper.stop()
        other.stop()
