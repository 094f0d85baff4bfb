"""The cloud API's users, tokens and audit log, kept in the ledger database (SQLite or PostgreSQL).

Roles: `admin` (the platform: everything), `operator` (an enterprise's own people: read its evidence and
import its equipment ledger; enterprises required), `evaluator` (read-only: every enterprise, or the ones
assigned). Passwords (for the portal) are argon2id hashes, tokens SHA-256 hashes (`cloud_bridge.webauth`);
a token is shown once when made. Every read, export and import through the API is written to
`audit_log` (who, what, which enterprise) — never a secret.

Its own tables (`api_users`, `api_tokens`, `audit_log`, `auth_settings`), made with the `Database` API.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from typing import Literal

from cloud_bridge.cloud.ledger.sqldb import Database
from cloud_bridge.webauth import NewToken, check_password, hash_password, new_token, token_hash, token_id_of

CloudRole = Literal["admin", "operator", "evaluator"]
CLOUD_ROLES: tuple[CloudRole, ...] = ("admin", "operator", "evaluator")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
_ENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS api_users (
        name TEXT PRIMARY KEY, role TEXT NOT NULL, enterprises TEXT NOT NULL, password TEXT,
        epoch BIGINT NOT NULL, revoked BOOLEAN NOT NULL, created_ms BIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS api_tokens (
        token_id TEXT PRIMARY KEY, name TEXT NOT NULL, sha256 TEXT NOT NULL, created_ms BIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS audit_log (
        id INTEGER PRIMARY KEY, ts BIGINT NOT NULL, user_name TEXT NOT NULL, action TEXT NOT NULL,
        enterprise TEXT NOT NULL, detail TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS audit_log_ts ON audit_log (ts)",
    "CREATE TABLE IF NOT EXISTS auth_settings (k TEXT PRIMARY KEY, v TEXT NOT NULL)",
)


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
    return int(time.time() * 1000)


class CloudUsers:
    def __init__(self, db: Database) -> None:
        self.db = db
        db.migrate(SCHEMA)

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
        if self.db.rows("SELECT name FROM api_users WHERE name = ?", (name,)):
            raise CloudUserError(f"user {name!r} exists (revoke it first, or choose another name)")
        hashed = hash_password(password) if password else None
        tok = new_token()
        with self.db.transaction() as cur:
            cur.execute(
                "INSERT INTO api_users (name, role, enterprises, password, epoch, revoked, created_ms)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (name, role, ",".join(enterprises), hashed, 1, False, _now()),
            )
            cur.execute(
                "INSERT INTO api_tokens (token_id, name, sha256, created_ms) VALUES (?, ?, ?, ?)",
                (tok.token_id, name, tok.sha256, _now()),
            )
        return tok

    def revoke(self, name: str) -> None:
        """The user can no longer log in; their tokens are deleted and their sessions end."""
        with self.db.transaction() as cur:
            n = cur.execute(
                "UPDATE api_users SET revoked = ?, epoch = epoch + 1, password = NULL WHERE name = ? AND revoked = ?",
                (True, name, False),
            )
            cur.execute("DELETE FROM api_tokens WHERE name = ?", (name,))
        if not n:
            raise CloudUserError(f"no active user {name!r}")

    def all_users(self) -> list[tuple[CloudUser, int, bool]]:
        """(user, tokens, revoked) for every user."""
        rows = self.db.rows("SELECT * FROM api_users ORDER BY name")
        counts = {r["name"]: r["n"] for r in self.db.rows("SELECT name, COUNT(*) AS n FROM api_tokens GROUP BY name")}
        return [(self._user(r), int(counts.get(r["name"], 0)), bool(r["revoked"])) for r in rows]

    def user(self, name: str) -> CloudUser | None:
        rows = self.db.rows("SELECT * FROM api_users WHERE name = ? AND revoked = ?", (name, False))
        return self._user(rows[0]) if rows else None

    def by_token(self, secret: str) -> CloudUser | None:
        token_id = token_id_of(secret)
        if token_id is None:
            return None
        rows = self.db.rows("SELECT name, sha256 FROM api_tokens WHERE token_id = ?", (token_id,))
        if not rows or not secrets.compare_digest(str(rows[0]["sha256"]), token_hash(secret)):
            return None
        return self.user(str(rows[0]["name"]))

    def login(self, name: str, password: str) -> CloudUser | None:
        rows = self.db.rows("SELECT * FROM api_users WHERE name = ? AND revoked = ?", (name, False))
        stored = str(rows[0]["password"]) if rows and rows[0]["password"] else None
        if not check_password(stored, password) or not rows:
            return None
        return self._user(rows[0])

    def session_key(self) -> bytes:
        """The key that signs the portal's session cookies, shared by every `edgegw serve` on this ledger."""
        rows = self.db.rows("SELECT v FROM auth_settings WHERE k = ?", ("session_key",))
        if not rows:
            self.db.execute(
                "INSERT INTO auth_settings (k, v) VALUES (?, ?) ON CONFLICT (k) DO NOTHING",
                ("session_key", secrets.token_hex(32)),
            )
            rows = self.db.rows("SELECT v FROM auth_settings WHERE k = ?", ("session_key",))
        return bytes.fromhex(str(rows[0]["v"]))

    def audit(self, user: str, action: str, enterprise: str = "", detail: str = "") -> None:
        self.db.execute(
            "INSERT INTO audit_log (ts, user_name, action, enterprise, detail) VALUES (?, ?, ?, ?, ?)",
            (_now(), user, action, enterprise, detail[:500]),
        )

    def audit_log(self, limit: int = 100) -> list[dict[str, object]]:
        return self.db.rows(
            "SELECT ts, user_name, action, enterprise, detail FROM audit_log ORDER BY id DESC LIMIT ?", (limit,)
        )
