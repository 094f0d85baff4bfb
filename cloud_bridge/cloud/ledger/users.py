"""The cloud API's users, tokens and audit log, kept in the ledger database (SQLite or PostgreSQL).

Roles: `admin` (the platform: everything), `operator` (an enterprise's own people: read its evidence and
import its equipment ledger; enterprises required), `evaluator` (read-only: every enterprise, or the ones
assigned). Passwords (for the portal) are argon2id hashes, tokens SHA-256 hashes (`cloud_bridge.webauth`);
a token is shown once when made. Every read, export and import through the API is written to
`audit_log` (who, what, which enterprise) — never a secret.

Its own tables (`api_users`, `api_tokens`, `audit_log`, `auth_settings`) are declared in `schema.py`.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import delete, func, insert, select, update

from cloud_bridge.cloud.ledger.schema import USER_TABLES, api_tokens, api_users, audit_log, auth_settings, metadata
from cloud_bridge.cloud.ledger.sqldb import Database
from cloud_bridge.webauth import NewToken, check_password, hash_password, new_token, token_hash, token_id_of
from edge_config.timing import now_ms

CloudRole = Literal["admin", "operator", "evaluator"]
CLOUD_ROLES: tuple[CloudRole, ...] = ("admin", "operator", "evaluator")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
_ENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class CloudUserError(ValueError):
    pass


@dataclass(frozen=True)
class CloudUser:
    name: str
    role: CloudRole
    enterprises: tuple[str, ...]  # operator: theirs; evaluator: assigned (empty: all); admin: ignored
    epoch: int

    def may_read(self, ent: str) -> bool:
        if self.role == "admin" or (self.role == "evaluator" and not self.enterprises):
            return True
        return ent in self.enterprises

    def may_import(self, ent: str) -> bool:
        return self.role == "admin" or (self.role == "operator" and ent in self.enterprises)


def _now() -> int:
    return now_ms()


class CloudUsers:
    def __init__(self, db: Database) -> None:
        self.db = db
        db.create(metadata, USER_TABLES)

    def _user(self, row: dict[str, object]) -> CloudUser:
        ents = tuple(e for e in str(row["enterprises"]).split(",") if e)
        return CloudUser(str(row["name"]), row["role"], ents, int(row["epoch"]))  # type: ignore[arg-type,call-overload]

    def add(self, name: str, role: str, enterprises: list[str], password: str | None = None) -> NewToken:
        """A new user and their first API token (its secret is returned once)."""
        if not _NAME.match(name):
            raise CloudUserError(f"{name!r} is not a user name (letters, digits, _ . @ -; up to 64)")
        if role not in CLOUD_ROLES:
            raise CloudUserError(f"role must be one of {', '.join(CLOUD_ROLES)}")
        bad = [e for e in enterprises if not _ENT.match(e)]
        if bad:
            raise CloudUserError(f"not enterprise ids: {', '.join(bad)}")
        if role == "operator" and not enterprises:
            raise CloudUserError("an operator belongs to an enterprise: give --enterprise")
        found = self.db.rows(select(api_users.c.revoked).where(api_users.c.name == name))
        if found and found[0]["revoked"]:  # the row stays, so that no old session or token of the name comes back
            raise CloudUserError(f"user {name!r} was revoked: a name is not given again (the audit log keeps it); "
                                 "choose another name")  # fmt: skip
        if found:
            raise CloudUserError(f"user {name!r} exists: choose another name")
        hashed = hash_password(password) if password else None
        tok = new_token()
        with self.db.transaction() as conn:
            conn.execute(
                insert(api_users).values(
                    name=name, role=role, enterprises=",".join(enterprises), password=hashed, epoch=1, revoked=False,
                    created_ms=_now(),
                )
            )  # fmt: skip
            conn.execute(
                insert(api_tokens).values(token_id=tok.token_id, name=name, sha256=tok.sha256, created_ms=_now())
            )
        return tok

    def revoke(self, name: str) -> None:
        """The user can no longer log in; their tokens are deleted and their sessions end."""
        u = api_users.c
        with self.db.transaction() as conn:
            n = conn.execute(
                update(api_users)
                .where(u.name == name, u.revoked.is_(False))
                .values(revoked=True, epoch=u.epoch + 1, password=None)
            ).rowcount
            conn.execute(delete(api_tokens).where(api_tokens.c.name == name))
        if not n:
            raise CloudUserError(f"no active user {name!r}")

    def all_users(self) -> list[tuple[CloudUser, int, bool]]:
        """(user, tokens, revoked) for every user."""
        rows = self.db.rows(select(api_users).order_by(api_users.c.name))
        per_user = select(api_tokens.c.name, func.count().label("n")).group_by(api_tokens.c.name)
        counts = {r["name"]: r["n"] for r in self.db.rows(per_user)}
        return [(self._user(r), int(counts.get(r["name"], 0)), bool(r["revoked"])) for r in rows]

    def user(self, name: str) -> CloudUser | None:
        rows = self.db.rows(self._active(name))
        return self._user(rows[0]) if rows else None

    @staticmethod
    def _active(name: str) -> Any:
        return select(api_users).where(api_users.c.name == name, api_users.c.revoked.is_(False))

    def by_token(self, secret: str) -> CloudUser | None:
        token_id = token_id_of(secret)
        if token_id is None:
            return None
        t = api_tokens.c
        rows = self.db.rows(select(t.name, t.sha256).where(t.token_id == token_id))
        if not rows or not secrets.compare_digest(str(rows[0]["sha256"]), token_hash(secret)):
            return None
        return self.user(str(rows[0]["name"]))

    def login(self, name: str, password: str) -> CloudUser | None:
        rows = self.db.rows(self._active(name))
        stored = str(rows[0]["password"]) if rows and rows[0]["password"] else None
        if not check_password(stored, password) or not rows:
            return None
        return self._user(rows[0])

    def session_key(self) -> bytes:
        """The key that signs the portal's session cookies, shared by every `edgegw serve` on this ledger."""
        query = select(auth_settings.c.v).where(auth_settings.c.k == "session_key")
        rows = self.db.rows(query)
        if not rows:
            self.db.execute(self.db.upsert(auth_settings).values(k="session_key", v=secrets.token_hex(32)))
            rows = self.db.rows(query)
        return bytes.fromhex(str(rows[0]["v"]))

    def audit(self, user: str, action: str, enterprise: str = "", detail: str = "") -> None:
        self.db.execute(
            insert(audit_log).values(
                ts=_now(), user_name=user, action=action, enterprise=enterprise, detail=detail[:500]
            )
        )

    def audit_log(self, limit: int = 100) -> list[dict[str, object]]:
        a = audit_log.c
        return self.db.rows(
            select(a.ts, a.user_name, a.action, a.enterprise, a.detail).order_by(a.id.desc()).limit(limit)
        )
