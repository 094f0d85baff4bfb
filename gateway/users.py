"""The edge's local users and API tokens: one JSON file (default `<data_dir>/users.json`, mode 0600).

Passwords are argon2id hashes, tokens SHA-256 hashes (`cloud_bridge.webauth`); the file also holds the
key that signs session cookies, the sessions logged out before they expire, and `last_epoch`: every user
added or changed takes the next session epoch from this file-wide counter, which only goes up, so a user
removed and added again never gets an epoch an earlier session of that name carries.
`edgegw user add|list|remove|token` edits it; the running agent reads it again whenever it changes, so a
user added while the agent runs can log in at once. A file that cannot be read fails closed (`UserError`:
the API answers 503, nobody is let in).

Roles, each including the one before: `viewer` (every page and read route), `engineer` (edit the tag map,
apply it, browse OPC UA, test-read Modbus), `admin` (the users page too).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from edge_config.models import GatewayConfig

# the password and token functions (argon2, and the web stack beside them) are imported where they are
# used: `edgegw user …` and every other command build their parser without loading them

Role = Literal["viewer", "engineer", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "engineer", "admin")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
MAX_REVOKED = 1000  # logged-out sessions kept in the file until they expire (the ones expiring first go first)


class UserError(ValueError):
    pass


def users_path(config: GatewayConfig) -> Path:
    return Path(config.auth.users_file or Path(config.gateway.data_dir) / "users.json")


def role_at_least(role: str, needed: Role) -> bool:
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)


@dataclass(frozen=True)
class User:
    name: str
    role: Role
    epoch: int  # a new one (from the file's counter) when the password changes: every earlier session ends
    tokens: int


class UserStore:
    """Reads and writes the users file; `reload_if_changed()` picks up edits made by another process."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int, int] | None = None
        self._data: dict[str, Any] = {"session_key": "", "users": {}}
        self.reload_if_changed()

    # ------------------------------------------------------------ reading

    def reload_if_changed(self) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._data = None, {"session_key": "", "users": {}}
            return
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self._stamp:
            return
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise UserError(f"cannot read the users file {self.path}: {e}") from None
        if not isinstance(data, dict) or not isinstance(data.get("users"), dict):
            raise UserError(f"cannot read the users file {self.path}: not a users file")
        self._data, self._stamp = data, stamp

    def users(self) -> list[User]:
        self.reload_if_changed()
        return [
            User(n, u["role"], int(u.get("epoch", 0)), len(u.get("tokens", {})))
            for n, u in sorted(self._data["users"].items())
        ]

    def __len__(self) -> int:
        self.reload_if_changed()
        return len(self._data["users"])

    def session_key(self) -> bytes:
        """The key that signs session cookies; created (and saved) the first time it is needed."""
        self.reload_if_changed()
        key = self._data.get("session_key")
        if not key:
            key = secrets.token_hex(32)
            self._data["session_key"] = key
            self._save()
        return bytes.fromhex(key)

    def login(self, name: str, password: str) -> User | None:
        self.reload_if_changed()
        u = self._data["users"].get(name)
        from cloud_bridge.webauth import check_password

        if not check_password(u["password"] if u else None, password) or u is None:
            return None
        return User(name, u["role"], int(u.get("epoch", 0)), len(u.get("tokens", {})))

    def user(self, name: str) -> User | None:
        self.reload_if_changed()
        u = self._data["users"].get(name)
        return None if u is None else User(name, u["role"], int(u.get("epoch", 0)), len(u.get("tokens", {})))

    # ------------------------------------------------------------ logged-out sessions (`SessionRevocations`)

    def revoked(self, nonce: str) -> bool:
        self.reload_if_changed()
        until = self._data.get("revoked_sessions", {}).get(nonce)
        return isinstance(until, (int, float)) and until > time.time()

    def revoke(self, nonce: str, until_s: float) -> None:
        """Remember a logged-out session until it would have expired (kept in the file: every process reading
        it, and the agent after a restart, refuse it too)."""
        self.reload_if_changed()
        now = time.time()
        kept = {
            n: u for n, u in self._data.get("revoked_sessions", {}).items() if isinstance(u, (int, float)) and u > now
        }
        kept[nonce] = until_s
        for n in sorted(kept, key=kept.__getitem__)[: max(0, len(kept) - MAX_REVOKED)]:
            del kept[n]
        self._data["revoked_sessions"] = kept
        self._save()

    def by_token(self, secret: str) -> User | None:
        """The user a token belongs to (its hash compared in constant time), or None."""
        from cloud_bridge.webauth import token_hash, token_id_of

        token_id = token_id_of(secret)
        if token_id is None:
            return None
        self.reload_if_changed()
        digest = token_hash(secret)
        for name, u in self._data["users"].items():
            kept = u.get("tokens", {}).get(token_id)
            if kept is not None and secrets.compare_digest(kept["sha256"], digest):
                return User(name, u["role"], int(u.get("epoch", 0)), len(u["tokens"]))
        return None

    # ------------------------------------------------------------ writing

    def add(self, name: str, role: str, password: str, *, replace: bool = False) -> None:
        if not _NAME.match(name):
            raise UserError(f"{name!r} is not a user name (letters, digits, _ . @ -; up to 64)")
        if role not in ROLES:
            raise UserError(f"role must be one of {', '.join(ROLES)}")
        self.reload_if_changed()
        users = self._data["users"]
        if name in users and not replace:
            raise UserError(f"user {name!r} exists (use --replace to set a new password and role)")
        old = users.get(name, {})
        users[name] = {
            "role": role,
            "password": _hash(password),
            "epoch": self._next_epoch(),
            "tokens": old.get("tokens", {}),
            "created_ms": old.get("created_ms", int(time.time() * 1000)),
        }
        self._save()

    def remove(self, name: str) -> None:
        self.reload_if_changed()
        if name not in self._data["users"]:
            raise UserError(f"no user {name!r}")
        self._next_epoch()  # the counter passes every epoch given out, this user's included
        del self._data["users"][name]
        self._save()

    def _next_epoch(self) -> int:
        """The next value of the file-wide epoch counter, which only goes up. A file written before the counter
        existed (epochs counted per user from 1, and from 1 again for a name removed and added again) gets a
        counter started at a random point above 2**32, beyond every epoch an earlier version gave out."""
        last = self._data.get("last_epoch")
        if not isinstance(last, int):
            last = (1 << 32) + secrets.randbelow(1 << 32)
        given = [int(u.get("epoch", 0)) for u in self._data["users"].values()]
        epoch = max([last, *given]) + 1
        self._data["last_epoch"] = epoch
        return epoch

    def add_token(self, name: str, label: str = "") -> str:
        """A new API token for `name`; the secret is returned once and only its hash is kept."""
        self.reload_if_changed()
        u = self._data["users"].get(name)
        if u is None:
            raise UserError(f"no user {name!r}")
        from cloud_bridge.webauth import new_token

        tok = new_token()
        u.setdefault("tokens", {})[tok.token_id] = {
            "sha256": tok.sha256,
            "label": label,
            "created_ms": int(time.time() * 1000),
        }
        self._save()
        return tok.secret

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(self._data, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        st = self.path.stat()
        self._stamp = (st.st_mtime_ns, st.st_size, st.st_ino)


def _hash(password: str) -> str:
    from cloud_bridge.webauth import hash_password

    return hash_password(password)
