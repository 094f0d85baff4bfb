"""The broker's side of tenancy: per-gateway credentials and ACLs for Mosquitto (README "Trust model"
shows the EMQX equivalent).

Every gateway gets its own user (`{ent}.{gw}`) that may publish only under `{prefix}/{ent}/{gw}/#` and
subscribe to nothing; the ingester's user (cloud.yaml `mqtt.username`) may subscribe to `{prefix}/#` and
its shared group, and publish nothing. Whatever is not granted is denied.

Two forms: the **dynamic-security plugin's** config (`dynsec_config`, the one to use) and the
`password_file` + `acl_file` pair. The second is weaker on Mosquitto 2.0: its ACL is checked when a
message is delivered, not when a client subscribes, so a gateway may still *join the ingest group's
shared subscription* (it receives nothing, but the broker hands it its share of the stream, which the
ingesters then never see). The dynamic-security plugin checks subscriptions (tested).
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any

PBKDF2_ITERATIONS = 101  # what mosquitto_passwd 2.0 writes


def mosquitto_hash(password: str, *, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS) -> str:
    """A password as Mosquitto 2.0's password file keeps it: `$7$iterations$salt$PBKDF2-SHA512` (base64)."""
    salt = salt if salt is not None else secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def hash_parts(hashed: str) -> tuple[str, str, int]:
    """(salt, hash, iterations) of a `$7$` password hash, as the dynamic-security config keeps them."""
    _, seven, iterations, salt, digest = hashed.split("$")
    if seven != "7":
        raise ValueError("not a $7$ (PBKDF2-SHA512) password hash")
    return salt, digest, int(iterations)


def _client(user: str, hashed: str, role: str) -> dict[str, Any]:
    salt, digest, iterations = hash_parts(hashed)
    return {
        "username": user,
        "password": digest,
        "salt": salt,
        "iterations": iterations,
        "roles": [{"rolename": role}],
    }


def _acl(kind: str, topic: str) -> dict[str, Any]:
    return {"acltype": kind, "topic": topic, "allow": True}


def dynsec_config(
    prefix: str,
    gateways: Iterable[tuple[str, str, str, str]],
    ingest: tuple[str, str] | None,
    shared_group: str | None,
) -> dict[str, Any]:
    """Mosquitto's dynamic-security config: `gateways` as (user, password hash, ent, gw), `ingest` as
    (user, password hash). Everything not granted is denied (defaultACLAccess)."""
    clients: list[dict[str, Any]] = []
    roles: list[dict[str, Any]] = []
    if ingest is not None:
        filters = [f"{prefix}/#"] + ([f"$share/{shared_group}/{prefix}/#"] if shared_group else [])
        acls = [_acl("subscribePattern", f) for f in filters] + [_acl("publishClientReceive", f"{prefix}/#")]
        roles.append({"rolename": "edgegw-ingest", "acls": acls})
        clients.append(_client(ingest[0], ingest[1], "edgegw-ingest"))
    for user, hashed, ent, gw in gateways:
        role = f"gateway:{user}"
        roles.append({"rolename": role, "acls": [_acl("publishClientSend", f"{prefix}/{ent}/{gw}/#")]})
        clients.append(_client(user, hashed, role))
    return {
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": False,
            "subscribe": False,
            "unsubscribe": True,
        },
        "clients": clients,
        "groups": [],
        "roles": roles,
    }


def acl_text(prefix: str, gateways: Iterable[tuple[str, str, str]], ingest_user: str | None) -> str:
    """The ACL file: `gateways` as (broker user, ent, gw)."""
    lines = ["# written by `edgegw cloud gateway`: do not edit (it is rewritten from the registry)", ""]
    if ingest_user:
        lines += [f"user {ingest_user}", f"topic read {prefix}/#", ""]
    for user, ent, gw in gateways:
        lines += [f"user {user}", f"topic write {prefix}/{ent}/{gw}/#", ""]
    return "\n".join(lines)


def password_text(users: Iterable[tuple[str, str]]) -> str:
    return "".join(f"{user}:{hashed}\n" for user, hashed in users if hashed)


def write_private(path: Path, text: str) -> None:
    """Atomically, mode 0600 (the password file holds hashes; the ACL says who may do what)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
