"""The hash chain and its checkpoints, end to end without a broker: the gateway's key, the buffer chaining
in its seq transaction, the publisher's bytes and order, and the ingester proving, holding, releasing
and refusing (a real SQLite ledger; messages handed to `handle_batch` as the MQTT worker would)."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from sqlalchemy import select

from cloud_bridge.cloud.ingest.ingester import Ingester
from cloud_bridge.cloud.ledger import schema
from cloud_bridge.cloud.ledger.sqldb import Database
from cloud_bridge.cloud.trust.broker import hash_parts, mosquitto_hash
from cloud_bridge.cloud.trust.registry import Registry, RegistryError
from cloud_bridge.uplink.buffer import Buffer, Chain, Outgoing, Pending
from cloud_bridge.uplink.identity import load_identity, load_or_create_identity
from cloud_bridge.uplink.publisher import Publisher
from cloud_bridge.wire import signing
from cloud_bridge.wire.codec import Sample, Status, Topics, decode_data, encode_data_body, encode_status
from cloud_bridge.wire.signing import (
    GENESIS,
    SignatureError,
    chain_hash,
    decode_checkpoint,
    parse_public_key,
    public_key_text,
    seal,
    signed_part,
    unseal,
    verify_sealed,
)
from edge_config.models import CloudConfig, IngestMqttSection, LedgerSection, MqttSection, TrustSection

ENT, GW = "ent-1", "gw-1"
TOPICS = Topics("sf/v1", ENT, GW)
T0 = 1_700_000_000_000  # the ingester takes timestamps from 2000-01-01 (codec.EARLIEST_MS)


def test_the_identity_is_made_once_private_and_kept(tmp_path: Path) -> None:
    ident = load_or_create_identity(tmp_path)
    assert stat.S_IMODE(ident.path.stat().st_mode) == 0o600
    again = load_or_create_identity(tmp_path)
    assert again.fingerprint == ident.fingerprint and again.public_key == ident.public_key
    assert "PRIVATE" not in repr(ident) and ident.fingerprint[:32] in repr(ident)
    ident.path.chmod(0o644)
    assert load_identity(tmp_path) is not None and stat.S_IMODE(ident.path.stat().st_mode) == 0o600
    assert parse_public_key(ident.public_key) is not None


def test_a_sealed_payload_is_bound_to_its_bytes_and_its_topic(tmp_path: Path) -> None:
    key = load_or_create_identity(tmp_path).key
    pub = parse_public_key(public_key_text(key))
    payload = seal(key, TOPICS.status, encode_status(Status(True, 5, version="1")))
    verify_sealed(pub, TOPICS.status, payload)
    assert json.loads(payload)["online"] is True  # still the status every consumer reads
    with pytest.raises(SignatureError):
        verify_sealed(pub, TOPICS.status, payload.replace(b"true", b"false"))
    with pytest.raises(SignatureError):
        verify_sealed(pub, "sf/v1/ent-1/gw-2/status", payload)  # moved to another gateway's topic
    with pytest.raises(SignatureError):
        verify_sealed(pub, TOPICS.status, encode_status(Status(True, 5, version="1")))  # unsigned


@pytest.mark.parametrize("library", ["libsodium", "cryptography"])
def test_both_verifiers_accept_the_gateways_signatures_and_refuse_any_change(
    library: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cloud verifies with libsodium (PyNaCl) and falls back to `cryptography` without it: both take a
    gateway's signature and refuse it once anything signed, the topic, the key or the signature's length
    changed."""
    if library == "cryptography":
        monkeypatch.setattr(signing, "_sodium_verify", lambda: None)
    else:
        assert signing._sodium_verify() is not None, "PyNaCl is in the cloud extra"
    key = load_or_create_identity(tmp_path / "a").key
    other = parse_public_key(public_key_text(load_or_create_identity(tmp_path / "b").key))
    pub = parse_public_key(public_key_text(key))
    payload = seal(key, TOPICS.status, encode_status(Status(True, 5, version="1")))
    verify_sealed(pub, TOPICS.status, payload)
    part, sig = unseal(payload) or (b"", b"")
    bad = {
        "changed": payload.replace(b"true", b"false"),
        "moved": payload,  # checked against another gateway's topic below
        "other key": payload,
        "flipped bit": part + b',"sig":"' + base64.b64encode(sig[:-1] + bytes([sig[-1] ^ 1])) + b'"}',
        "short": part + b',"sig":"' + base64.b64encode(sig[:63]) + b'"}',
        "long": part + b',"sig":"' + base64.b64encode(sig + b"\0") + b'"}',
        "empty": part + b',"sig":""}',
    }
    for what, p in bad.items():
        topic = "sf/v1/ent-1/gw-2/status" if what == "moved" else TOPICS.status
        with pytest.raises(SignatureError):
            verify_sealed(other if what == "other key" else pub, topic, p)


def chained_buffer(tmp_path: Path, every: int = 4, interval_ms: int = 60_000) -> Buffer:
    key = load_or_create_identity(tmp_path / "id").key
    return Buffer(tmp_path / "buffer.db", chain=Chain(ENT, GW, key, TOPICS.checkpoint, every, interval_ms))


def data(i: int) -> Outgoing:
    body = encode_data_body([Sample("t", float(i), T0 + i)])
    return Outgoing("data", TOPICS.data("d1"), "d1", body, samples=1)


def test_the_buffer_chains_in_its_seq_transaction_and_seals_before_sending(tmp_path: Path) -> None:
    buf = chained_buffer(tmp_path)
    pub = Publisher(MqttSection(), TOPICS, buf, version="t")
    buf.enqueue([data(i) for i in range(3)])
    assert buf.peek(10) == [] and buf.unsealed == 3, "nothing goes out before its checkpoint"
    buf.enqueue([data(3)])  # the 4th: sealed in the same transaction
    rows = buf.peek(10)
    assert [r.seq for r in rows] == [1, 2, 3, 4]
    [cp_row] = buf.checkpoints()
    cp = decode_checkpoint(cp_row.body)
    assert buf.chain is not None
    verify_sealed(parse_public_key(public_key_text(buf.chain.key)), TOPICS.checkpoint, cp_row.body)
    assert (cp.first, cp.last, cp.prev) == (1, 4, GENESIS)
    prev = GENESIS
    for row in rows:  # what the publisher sends hashes to what the checkpoint signs, hist or not
        for hist in (False, True):
            payload = pub._payload(Pending(row.id, row.kind, row.topic, row.dev, row.seq, row.body, False, 1,
                                           row.created_ms if not hist else -1, row.prev))  # fmt: skip
            part = signed_part(payload)
            assert part is not None and chain_hash(part) == cp.hash_of(row.seq or 0)
            msg = decode_data(payload)
            assert msg.prev == prev and msg.ent == ENT and msg.hist is hist
        prev = cp.hash_of(row.seq or 0) or b""
    # after a restart the chain goes on from its head; an idle gateway seals after the interval
    buf.close()
    buf = chained_buffer(tmp_path, interval_ms=1)
    buf.enqueue([data(4)])
    assert not buf.seal_if_due(now_ms=buf._unsealed_since), "not yet"
    assert buf.seal_if_due(now_ms=buf._unsealed_since + 1)
    second = decode_checkpoint(buf.checkpoints()[-1].body)
    assert (second.first, second.last, second.prev) == (5, 5, cp.head)


def test_the_publisher_sends_each_checkpoint_before_the_messages_it_covers(tmp_path: Path) -> None:
    buf = chained_buffer(tmp_path, every=2)
    pub = Publisher(MqttSection(), TOPICS, buf, version="t")
    buf.enqueue([data(0), data(1)])
    buf.enqueue([data(2), data(3)])

    class Wire:
        def __init__(self) -> None:
            self.topics: list[str] = []

        def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> mqtt.MQTTMessageInfo:
            self.topics.append(topic)
            info = mqtt.MQTTMessageInfo(len(self.topics))
            info.rc = mqtt.MQTT_ERR_SUCCESS
            return info

    wire = Wire()
    pub._client = wire
    pub.stats.connected = True
    pub._next_status = float("inf")
    assert pub._drain_once() == 6
    assert wire.topics[:2] == [TOPICS.checkpoint] * 2 and wire.topics[2:] == [TOPICS.data("d1")] * 4


# ---------------------------------------------------------------- the ingester's side


def ingester(tmp_path: Path, max_unproven: int = 10_000) -> Ingester:
    config = CloudConfig(
        mqtt=IngestMqttSection(url="mqtt://127.0.0.1:1", inflight=1000),
        ledger=LedgerSection(url=f"sqlite:///{tmp_path}/ledger.db"),
        trust=TrustSection(proof_timeout=600, max_unproven=max_unproven),
    )
    return Ingester(config, retry_initial=0.01)


def message(topic: str, payload: bytes) -> mqtt.MQTTMessage:
    m = mqtt.MQTTMessage(topic=topic.encode())
    m.payload = payload
    return m


def wire_messages(buf: Buffer) -> tuple[list[mqtt.MQTTMessage], list[mqtt.MQTTMessage]]:
    """(checkpoints, data messages) as the publisher would send them."""
    pub = Publisher(MqttSection(), TOPICS, buf, version="t")
    cps = [message(c.topic, c.body) for c in buf.checkpoints()]
    return cps, [message(r.topic, pub._payload(r)) for r in buf.peek(100)]


def recorded(ing: Ingester) -> list[int]:
    r = schema.received_seqs.c
    rows = ing.ledger.db.rows(select(r.first_seq, r.last_seq).where(r.ent == ENT, r.gw == GW))
    return sorted(s for x in rows for s in range(int(x["first_seq"]), int(x["last_seq"]) + 1))


def test_messages_before_their_checkpoint_are_held_then_recorded(tmp_path: Path) -> None:
    buf = chained_buffer(tmp_path / "edge")
    buf.enqueue([data(i) for i in range(4)])
    cps, msgs = wire_messages(buf)
    ing = ingester(tmp_path)
    try:
        Registry(ing.ledger.db).add(ENT, GW, load_or_create_identity(tmp_path / "edge" / "id").public_key)
        ing.handle_batch(msgs)  # e.g. the checkpoint went to another ingester of the group
        assert recorded(ing) == [] and ing.stats.held == 4 and ing.ledger.total_samples() == 0
        ing.handle_batch(cps)
        ing.sweep(force=True)
        assert recorded(ing) == [1, 2, 3, 4] and ing.stats.released == 4
        assert not ing.ledger.db.rows(select(schema.unproven))
        ing.handle_batch(cps + msgs)  # redelivered: duplicates, nothing twice
        assert recorded(ing) == [1, 2, 3, 4] and ing.ledger.total_samples() == 4
    finally:
        ing.ledger.close()


def test_a_flood_of_unproven_messages_is_bounded(tmp_path: Path) -> None:
    buf = chained_buffer(tmp_path / "edge", every=100)
    buf.enqueue([data(i) for i in range(5)])
    buf.seal_if_due(force=True)
    _, msgs = wire_messages(buf)  # their checkpoint never comes
    ing = ingester(tmp_path, max_unproven=3)
    try:
        Registry(ing.ledger.db).add(ENT, GW, load_or_create_identity(tmp_path / "edge" / "id").public_key)
        ing.handle_batch(msgs)
        assert ing.stats.held == 3 and ing.stats.refused == 2
        assert len(ing.ledger.db.rows(select(schema.unproven))) == 3
    finally:
        ing.ledger.close()


@pytest.mark.parametrize(
    ("raw", "forged"),
    [
        (bytes(32), range(1, 200)),  # y = 0: a point of order 4
        (bytes([1]) + bytes(31), range(1, 200)),  # the identity: order 1
    ],
    ids=["zero", "identity"],
)
def test_a_small_order_key_cannot_be_registered(tmp_path: Path, raw: bytes, forged: range) -> None:
    """Under a small-order key OpenSSL's verification (the fallback without PyNaCl) takes a signature nobody
    made: the identity point and S = 0, for every message under the identity key and about one in four under
    the all-zero key. libsodium refuses such keys; the registry refuses to register them (it took them)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    key = Ed25519PublicKey.from_public_bytes(raw)
    nobody = bytes([1]) + bytes(31) + bytes(32)
    taken = 0
    for i in forged:
        try:
            key.verify(nobody, b"a checkpoint nobody signed %d" % i)
            taken += 1
        except InvalidSignature:
            pass
    assert taken > 10, "why the registry refuses such a key: OpenSSL takes forged signatures under it"
    assert signing.forgeable(key)
    registry = Registry(Database(f"sqlite:///{tmp_path}/l.db"))
    with pytest.raises(RegistryError, match="small-order or non-canonical Ed25519 point"):
        registry.add(ENT, GW, "ed25519:" + base64.b64encode(raw).decode())
    real = load_or_create_identity(tmp_path / "id").public_key
    assert not signing.forgeable(signing.parse_public_key(real))
    registry.add(ENT, GW, real)


def test_unregistered_revoked_unchained_and_unsigned_are_refused_and_counted(tmp_path: Path) -> None:
    buf = chained_buffer(tmp_path / "edge")
    buf.enqueue([data(i) for i in range(4)])
    cps, msgs = wire_messages(buf)
    ing = ingester(tmp_path)
    registry = Registry(ing.ledger.db)
    public = load_or_create_identity(tmp_path / "edge" / "id").public_key
    try:
        ing.handle_batch(cps + msgs[:1])  # not registered
        registry.add(ENT, GW, public)
        ing.trust.registry.invalidate()  # type: ignore[union-attr]
        with pytest.raises(RegistryError):
            registry.add("ent-2", "gw-9", public)  # one key, one gateway
        unchained = Outgoing("data", "", "d1", encode_data_body([Sample("t", 1.0, T0 + 5)]))
        from cloud_bridge.wire.codec import envelope

        ing.handle_batch([message(TOPICS.data("d1"), envelope(GW, "d1", 99, False, unchained.body))])
        ing.handle_batch([message(TOPICS.status, encode_status(Status(False, T0 + 9, version="x")))])  # unsigned
        ing.handle_batch(cps + msgs[1:3])
        assert recorded(ing) == [2, 3]
        registry.revoke(ENT, GW)
        ing.trust.registry.invalidate()  # type: ignore[union-attr]
        ing.handle_batch(msgs[3:])
        assert recorded(ing) == [2, 3], "nothing from a revoked gateway"
        counts = {x["what"]: x["count"] for x in ing.trust.counts(ENT)}  # type: ignore[union-attr]
        assert counts == {
            "refused:unregistered": 3,  # a checkpoint, a message, and the message after the revocation
            "refused:unchained": 1,
            "refused:signature": 1,
        }
    finally:
        ing.ledger.close()


def test_the_brokers_password_hash_is_mosquittos() -> None:
    # the line `mosquitto_passwd -b FILE alice secret` wrote on this machine
    line = (
        "$7$101$BdD1jPGmgjV1BWjf$hNLSVc+txPLsDjSOsUFfsYMDWP9XQmzXtvoMidU5zF0BWX11hFxCfXecHL/ZuMD0zxYv+3xc8/"
        "RQ5IoPq1kzxQ=="
    )
    salt, _, _ = hash_parts(line)
    import base64

    assert mosquitto_hash("secret", salt=base64.b64decode(salt)) == line


def test_the_registry_prefetches_a_batchs_gateways_in_one_query(tmp_path: Path) -> None:
    from sqlalchemy import event

    from cloud_bridge.cloud.ledger.sqldb import Database

    db = Database(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        registry = Registry(db, ttl=60)
        keys = {gw: load_or_create_identity(tmp_path / gw).public_key for gw in ("gw-a", "gw-b", "gw-c")}
        for gw, key in keys.items():
            registry.add(ENT, gw, key)
        registry.revoke(ENT, "gw-c")
        registry.invalidate()
        queries: list[str] = []
        event.listen(db.engine, "before_cursor_execute", lambda *a: queries.append(a[2]))
        pairs = [(ENT, "gw-a"), (ENT, "gw-b"), (ENT, "gw-c"), ("ent-2", "gw-a"), (ENT, "gw-a")]
        registry.prefetch(pairs)
        assert len([q for q in queries if "gateway_keys" in q]) == 1
        found = {pair: registry.active(*pair) for pair in pairs}  # from the cache now
        assert len([q for q in queries if "gateway_keys" in q]) == 1
        assert {pair for pair, rec in found.items() if rec is not None} == {(ENT, "gw-a"), (ENT, "gw-b")}
        registry.prefetch(pairs)  # all known: no query
        assert len([q for q in queries if "gateway_keys" in q]) == 1
    finally:
        db.close()
