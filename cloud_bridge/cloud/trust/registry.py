"""The gateway registry: which gateway of which enterprise holds which public key, in the ledger database.

`edgegw cloud gateway add ENT GW --public-key ed25519:…` registers a gateway (the key comes from
`edgegw identity show` on the gateway), gives it MQTT credentials (the password is shown once and kept
only as the broker's PBKDF2-SHA512 hash) and, with `--mosquitto-dir`, writes the broker's password and
ACL files. Giving a registered gateway a new key marks the old one `replaced` (its checkpoints stay
verifiable); `revoke` ends the gateway: its messages are refused from then on and the broker files no
longer let it in.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import insert, select, tuple_, update

from cloud_bridge.cloud.ledger.schema import TRUST_TABLES, gateway_keys, metadata
from cloud_bridge.cloud.ledger.sqldb import Database
from cloud_bridge.cloud.trust.broker import mosquitto_hash
from cloud_bridge.wire.signing import fingerprint, forgeable, parse_public_key
from edge_config.timing import now_ms

_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class RegistryError(ValueError):
    pass


@dataclass(frozen=True)
class GatewayKey:
    ent: str
    gw: str
    fingerprint: str
    public_key: str
    status: str
    mqtt_user: str
    added_ms: int
    revoked_ms: int | None

    def key(self) -> Ed25519PublicKey:
        return parse_public_key(self.public_key)


def mqtt_user(ent: str, gw: str) -> str:
    """The broker user of a gateway: unique across enterprises (gateway ids are unique only within one)."""
    return f"{ent}.{gw}"


class Registry:
    """Reads are cached for `ttl` seconds (the ingester asks for every message); writes go straight through."""

    def __init__(self, db: Database, *, ttl: float = 5.0) -> None:
        self.db = db
        db.create(metadata, TRUST_TABLES)
        self.ttl = ttl
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], GatewayKey | None] = {}
        self._keys: dict[str, Ed25519PublicKey] = {}
        self._loaded = 0.0

    # ------------------------------------------------------------ writes

    def add(self, ent: str, gw: str, public_key: str) -> tuple[GatewayKey, str]:
        """Register (or re-key) a gateway; returns its record and a new MQTT password (shown once)."""
        for what, v in (("enterprise", ent), ("gateway", gw)):
            if not _SLUG.match(v):
                raise RegistryError(f"{v!r} is not a {what} id (an ASCII slug)")
        try:
            key = parse_public_key(public_key)
        except ValueError as e:
            raise RegistryError(str(e)) from None
        if forgeable(key):
            raise RegistryError(
                "not a key a gateway makes: a small-order or non-canonical Ed25519 point, under which signatures "
                "can be forged (register the key `edgegw identity show` prints)"
            )
        fp = fingerprint(key)
        k = gateway_keys.c
        password = secrets.token_urlsafe(24)
        now = now_ms()
        with self.db.transaction() as conn:
            taken = conn.execute(select(k.ent, k.gw).where(k.fingerprint == fp)).first()
            if taken is not None:
                raise RegistryError(f"this key is already registered for {taken[0]}/{taken[1]}")
            conn.execute(
                update(gateway_keys)
                .where(k.ent == ent, k.gw == gw, k.status == "active")
                .values(status="replaced", revoked_ms=now)
            )
            conn.execute(
                insert(gateway_keys).values(
                    ent=ent,
                    gw=gw,
                    fingerprint=fp,
                    public_key=f"ed25519:{public_key.strip().removeprefix('ed25519:')}",
                    status="active",
                    mqtt_user=mqtt_user(ent, gw),
                    mqtt_password=mosquitto_hash(password),
                    added_ms=now,
                    revoked_ms=None,
                )
            )
        self.invalidate()
        rec = self.active(ent, gw)
        assert rec is not None
        return rec, password

    def revoke(self, ent: str, gw: str) -> int:
        """End a gateway: every key of it revoked. Returns how many keys were active."""
        k = gateway_keys.c
        n = self.db.execute(
            update(gateway_keys)
            .where(k.ent == ent, k.gw == gw, k.status == "active")
            .values(status="revoked", revoked_ms=now_ms())
        )
        self.invalidate()
        if n == 0:
            raise RegistryError(f"no active gateway {ent}/{gw}")
        return n

    # ------------------------------------------------------------ reads

    def invalidate(self) -> None:
        with self._lock:
            self._cache.clear()
            self._loaded = 0.0

    def all(self) -> list[GatewayKey]:
        k = gateway_keys.c
        rows = self.db.rows(select(gateway_keys).order_by(k.ent, k.gw, k.added_ms))
        return [_record(r) for r in rows]

    def active(self, ent: str, gw: str) -> GatewayKey | None:
        """The gateway's active key, or None (not registered, or revoked)."""
        with self._lock:
            if time.monotonic() - self._loaded > self.ttl:
                self._cache.clear()
                self._loaded = time.monotonic()
            if (ent, gw) in self._cache:
                return self._cache[(ent, gw)]
        k = gateway_keys.c
        rows = self.db.rows(select(gateway_keys).where(k.ent == ent, k.gw == gw, k.status == "active"))
        rec = _record(rows[0]) if rows else None
        with self._lock:
            self._cache[(ent, gw)] = rec
        return rec

    def prefetch(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Bring the active keys of the (ent, gw) pairs not in the cache into it with one query per
        500 pairs (a batch from hundreds of gateways, after the cache expired: not one query each)."""
        with self._lock:
            if time.monotonic() - self._loaded > self.ttl:
                self._cache.clear()
                self._loaded = time.monotonic()
            missing = [pair for pair in dict.fromkeys(pairs) if pair not in self._cache]
        k = gateway_keys.c
        for i in range(0, len(missing), 500):
            chunk = missing[i : i + 500]
            rows = self.db.rows(select(gateway_keys).where(tuple_(k.ent, k.gw).in_(chunk), k.status == "active"))
            found = {(r["ent"], r["gw"]): _record(r) for r in rows}
            with self._lock:
                for pair in chunk:
                    self._cache[pair] = found.get(pair)

    def public_key(self, rec: GatewayKey) -> Ed25519PublicKey:
        key = self._keys.get(rec.fingerprint)
        if key is None:
            key = self._keys[rec.fingerprint] = rec.key()
        return key

    def key_by_fingerprint(self, ent: str, gw: str, fp: str) -> GatewayKey | None:
        """Any key the gateway ever had (the audit checks old checkpoints with the key that signed them)."""
        k = gateway_keys.c
        rows = self.db.rows(select(gateway_keys).where(k.ent == ent, k.gw == gw, k.fingerprint == fp))
        return _record(rows[0]) if rows else None

    def active_with_hash(self) -> list[tuple[GatewayKey, str]]:
        """Every active gateway with its broker password hash."""
        k = gateway_keys.c
        rows = self.db.rows(select(gateway_keys).where(k.status == "active").order_by(k.ent, k.gw))
        return [(_record(r), str(r["mqtt_password"] or "")) for r in rows]


def _record(r: dict[str, Any]) -> GatewayKey:
    names = ("ent", "gw", "fingerprint", "public_key", "status", "mqtt_user", "added_ms", "revoked_ms")
    return GatewayKey(*(r[n] for n in names))
