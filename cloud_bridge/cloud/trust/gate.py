"""The ingester's trust checks: is this message provably from a registered, unrevoked gateway?

For every message the topic, the envelope and the registry must agree: the topic's enterprise and
gateway must be a registered, active gateway, and the envelope's `ent`/`gw`/`dev` must be the topic's.
Then, by kind:

- **checkpoint**: its signature must verify with that gateway's registered key; it is kept
  (`chain_checkpoints`) and its hashes become the *trusted hashes* of its seqs.
- **data / events** (chained): the SHA-256 of the message's signed part must be the trusted hash of its
  seq. Equal: proven, recorded. Different: refused (it is not what the gateway signed; a copy that
  took the seq first, or an edited one). No trusted hash yet: held in `unproven` (acknowledged, kept
  out of every store) until the checkpoint covering it arrives, and refused after
  `trust.proof_timeout`. A message without the chain fields is refused.
- **status / meta** (retained, no seq): the signature must verify for that topic with the registered key;
  anything else is ignored (dead-lettered with the reason), so no gateway can set another's status.

Every refusal is dead-lettered with its reason and counted per claimed gateway (`trust_counts`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, bindparam, delete, exists, func, or_, select, update

from cloud_bridge.cloud.ledger.schema import TRUST_TABLES, chain_checkpoints, metadata, trust_counts, unproven
from cloud_bridge.cloud.ledger.sqldb import Database, execute_many
from cloud_bridge.cloud.trust import archive
from cloud_bridge.cloud.trust.registry import Registry
from cloud_bridge.wire.signing import Checkpoint, SignatureError, decode_checkpoint, verify_sealed
from edge_config.timing import now_ms

Key = tuple[str, str, int]
CLAIM_MS = 60_000  # a held message claimed by an ingester that then died is taken by another after this
_CACHED_CHECKPOINTS = 16  # per gateway: the fast path finds the checkpoint sent just before its messages
RELEASE_LIMIT = 2000  # held messages claimed by one sweep
_GATEWAYS_PER_QUERY = 200  # gateways whose checkpoints one query of `trusted` reads


@dataclass(frozen=True, slots=True)
class Refusal:
    what: str  # unregistered | signature | unchained | mismatch | unproven | mismatch-topic
    reason: str


@dataclass(frozen=True, slots=True)
class Held:
    """A chained message waiting for its checkpoint."""

    ent: str
    gw: str
    seq: int
    h: bytes
    topic: str
    payload: bytes
    received_ms: int


class TrustGate:
    def __init__(self, db: Database, *, proof_timeout_s: float, registry: Registry | None = None) -> None:
        self.db = db
        db.create(metadata, TRUST_TABLES)
        self.registry = registry if registry is not None else Registry(db)
        self.proof_timeout_ms = int(proof_timeout_s * 1000)
        self._lock = threading.Lock()
        self._checkpoints: OrderedDict[tuple[str, str], list[Checkpoint]] = OrderedDict()
        self._latest: dict[tuple[str, str], Checkpoint] = {}
        self._upsert_checkpoint = db.upsert(chain_checkpoints)
        self._hold = db.upsert(unproven)
        u = unproven.c
        held_key = and_(
            u.ent == bindparam("k_ent"), u.gw == bindparam("k_gw"), u.seq == bindparam("k_seq"), u.h == bindparam("k_h")
        )
        self._claim = update(unproven).where(held_key).values(claimed_by=bindparam("by"), claimed_ms=bindparam("at"))
        self._forget = delete(unproven).where(held_key)
        tc = trust_counts.c
        self._count = db.upsert(
            trust_counts,
            lambda x: {"count": tc.count + x.count, "last_ms": x.last_ms, "last_reason": x.last_reason},
        )

    # ------------------------------------------------------------ per message

    def gateway(self, ent: str, gw: str) -> Refusal | None:
        rec = self.registry.active(ent, gw)
        if rec is None:
            return Refusal("unregistered", f"gateway {ent}/{gw} is not registered, or was revoked")
        return None

    def check_sealed(self, ent: str, gw: str, topic: str, payload: bytes) -> Refusal | None:
        """A status or metadata payload: signed for this topic by the gateway's registered key?"""
        rec = self.registry.active(ent, gw)
        if rec is None:
            return Refusal("unregistered", f"gateway {ent}/{gw} is not registered, or was revoked")
        try:
            verify_sealed(self.registry.public_key(rec), topic, payload)
        except SignatureError as e:
            return Refusal("signature", f"not signed by {ent}/{gw}'s registered key ({e}): ignored")
        return None

    def check_checkpoint(self, ent: str, gw: str, topic: str, payload: bytes) -> Checkpoint | Refusal:
        refusal = self.check_sealed(ent, gw, topic, payload)
        if refusal is not None:
            return refusal
        try:
            c = decode_checkpoint(payload)
        except (ValueError, TypeError, RecursionError) as e:  # SignatureError; anything else malformed, too
            return Refusal("signature", f"checkpoint: {e}"[:500])
        if (c.ent, c.gw) != (ent, gw):
            return Refusal("mismatch-topic", f"checkpoint of {c.ent}/{c.gw} on {ent}/{gw}'s topic")
        return c

    # ------------------------------------------------------------ checkpoints and trusted hashes

    def keep_checkpoints(self, items: Sequence[tuple[Checkpoint, str, bytes]]) -> None:
        """Store verified checkpoints (idempotent) and remember them for the messages that follow."""
        if not items:
            return
        now = now_ms()
        rows = [
            {
                "ent": c.ent,
                "gw": c.gw,
                "last_seq": c.last,
                "first_seq": c.first,
                "ts": c.ts,
                "prev": c.prev,
                "hashes": b"".join(c.hashes),
                "key": c.key,
                "topic": topic,
                "payload": payload,
                "received_ms": now,
            }
            for c, topic, payload in items
        ]
        with self.db.transaction() as conn:
            conn.execute(self._upsert_checkpoint, rows)
        for c, _, _ in items:
            self._remember(c)

    def _remember(self, c: Checkpoint) -> None:
        with self._lock:
            lst = self._checkpoints.setdefault((c.ent, c.gw), [])
            if any(x.last == c.last for x in lst):
                return
            lst.append(c)
            self._latest[(c.ent, c.gw)] = c
            if len(lst) > _CACHED_CHECKPOINTS:
                del lst[0]
            self._checkpoints.move_to_end((c.ent, c.gw))
            while len(self._checkpoints) > 10_000:
                old, _ = self._checkpoints.popitem(last=False)
                self._latest.pop(old, None)

    def _cached(self, ent: str, gw: str, seq: int) -> bytes | None:
        latest = self._latest.get((ent, gw))  # the fast path: the checkpoint sent just before
        if latest is not None and latest.first <= seq <= latest.last:
            return latest.hashes[seq - latest.first]
        with self._lock:
            for c in reversed(self._checkpoints.get((ent, gw), ())):
                h = c.hash_of(seq)
                if h is not None:
                    return h
        return None

    def trusted(self, keys: Iterable[Key]) -> dict[Key, bytes]:
        """The signed hash of each key whose checkpoint is known (cache first, then the ledger)."""
        found: dict[Key, bytes] = {}
        missing: dict[tuple[str, str], list[int]] = {}
        for ent, gw, seq in keys:
            h = self._cached(ent, gw, seq)
            if h is not None:
                found[(ent, gw, seq)] = h
            else:
                missing.setdefault((ent, gw), []).append(seq)
        cc = chain_checkpoints.c
        gateways = list(missing.items())
        for i in range(0, len(gateways), _GATEWAYS_PER_QUERY):  # stored by any ingester: one query per chunk
            ranges = [
                and_(cc.ent == ent, cc.gw == gw, cc.last_seq >= min(seqs), cc.first_seq <= max(seqs))
                for (ent, gw), seqs in gateways[i : i + _GATEWAYS_PER_QUERY]
            ]
            rows = self.db.rows(
                select(cc.ent, cc.gw, cc.first_seq, cc.last_seq, cc.ts, cc.prev, cc.hashes, cc.key).where(or_(*ranges))
            )
            for r in rows:
                c = _checkpoint(r)
                self._remember(c)
                for seq in missing[(c.ent, c.gw)]:
                    h = c.hash_of(seq)
                    if h is not None:
                        found[(c.ent, c.gw, seq)] = h
        # checkpoints already moved into the chain archive (a message long after its checkpoint): one cheap
        # look per chunk of gateways first, as most messages missing a proof are ahead of their checkpoint
        late = {k: lo for k, seqs in gateways if (lo := [s for s in seqs if (*k, s) not in found])}
        for (ent, gw), seqs in archive.gateways_covering(self.db, late).items():
            self._take(archive.checkpoints_covering(self.db, ent, gw, min(seqs), max(seqs)), ent, gw, seqs, found)
        return found

    def _take(self, rows: list[dict[str, Any]], ent: str, gw: str, seqs: list[int], found: dict[Key, bytes]) -> None:
        for r in rows:
            c = _checkpoint(r)
            self._remember(c)
            for seq in seqs:
                h = c.hash_of(seq)
                if h is not None:
                    found[(ent, gw, seq)] = h

    # ------------------------------------------------------------ messages waiting for their proof

    def hold(self, items: Sequence[Held]) -> None:
        if items:
            with self.db.transaction() as conn:
                conn.execute(
                    self._hold,
                    [
                        {
                            "ent": i.ent,
                            "gw": i.gw,
                            "seq": i.seq,
                            "h": i.h,
                            "topic": i.topic,
                            "payload": i.payload,
                            "received_ms": i.received_ms,
                        }
                        for i in items
                    ],
                )

    def releasable(self, me: str, limit: int = RELEASE_LIMIT) -> tuple[list[Held], list[Held]]:
        """(held messages a checkpoint now covers, held messages past the proof timeout), each claimed for
        ingester `me`: the ingesters of a shared group settle a held message once, not each of them (a
        claim lapses after CLAIM_MS, should its ingester die meanwhile). Whoever stored the checkpoint:
        the query looks at every checkpoint in the ledger. One transaction, two statements: the rows are
        read locked in key order, skipping those another ingester is claiming (PostgreSQL; SQLite has
        one writer), then claimed."""
        u, cc = unproven.c, chain_checkpoints.c
        now = now_ms()
        free = or_(u.claimed_by.is_(None), u.claimed_ms < now - CLAIM_MS, u.claimed_by == me)
        covered = exists().where(cc.ent == u.ent, cc.gw == u.gw, cc.first_seq <= u.seq, cc.last_seq >= u.seq)
        pick = (
            select(u.ent, u.gw, u.seq, u.h, u.topic, u.payload, u.received_ms, covered.label("covered"))
            .where(free, or_(covered, u.received_ms < now - self.proof_timeout_ms))
            .order_by(u.ent, u.gw, u.seq, u.h)
            .limit(limit)
            .with_for_update(of=unproven, skip_locked=True)
        )
        with self.db.transaction() as conn:
            rows = [dict(r) for r in conn.execute(pick).mappings()]
            claims = [{"k_ent": r["ent"], "k_gw": r["gw"], "k_seq": r["seq"], "k_h": r["h"]} for r in rows]
            execute_many(conn, self._claim, [{**c, "by": me, "at": now} for c in claims])
        return [_held(r) for r in rows if r["covered"]], [_held(r) for r in rows if not r["covered"]]

    def any_held(self) -> bool:
        return bool(self.db.rows(select(unproven.c.seq).limit(1)))

    def held_counts(self) -> dict[tuple[str, str], int]:
        """Messages waiting for their proof, per claimed gateway."""
        u = unproven.c
        rows = self.db.rows(select(u.ent, u.gw, func.count().label("n")).group_by(u.ent, u.gw))
        return {(r["ent"], r["gw"]): int(r["n"]) for r in rows}

    def forget(self, items: Iterable[Held]) -> None:
        rows = [{"k_ent": i.ent, "k_gw": i.gw, "k_seq": i.seq, "k_h": i.h} for i in items]
        if rows:
            with self.db.transaction() as conn:
                execute_many(conn, self._forget, rows)

    # ------------------------------------------------------------ counts per claimed gateway

    def count(self, counts: dict[tuple[str, str, str], tuple[int, str]]) -> None:
        """Add to `trust_counts`: (ent, gw, what) → (n, last reason)."""
        if not counts:
            return
        now = now_ms()
        rows = [
            {"ent": e, "gw": g, "what": w, "count": n, "last_ms": now, "last_reason": reason[:500]}
            for (e, g, w), (n, reason) in sorted(counts.items())
        ]
        with self.db.transaction() as conn:
            conn.execute(self._count, rows)

    def counts(self, ent: str | None = None) -> list[dict[str, Any]]:
        tc = trust_counts.c
        q = select(trust_counts).order_by(tc.ent, tc.gw, tc.what)
        if ent is not None:
            q = q.where(tc.ent == ent)
        return self.db.rows(q)


def _checkpoint(r: dict[str, Any]) -> Checkpoint:
    blob = bytes(r["hashes"])
    hashes = tuple(blob[i : i + 32] for i in range(0, len(blob), 32))
    return Checkpoint(
        r["ent"], r["gw"], int(r["ts"]), int(r["first_seq"]), int(r["last_seq"]), bytes(r["prev"]), hashes, r["key"]
    )


def _held(r: dict[str, Any]) -> Held:
    return Held(r["ent"], r["gw"], int(r["seq"]), bytes(r["h"]), r["topic"], bytes(r["payload"]), int(r["received_ms"]))
