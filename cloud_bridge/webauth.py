"""Authentication pieces both web applications use (the edge console and API, the cloud portal and API).

- Passwords: argon2id through argon2-cffi (`hash_password`, `check_password`): memory-hard, the first
  choice of OWASP's password storage guidance, a maintained library with wheels for every platform
  we install on; no parameters of ours to get wrong.
- API tokens: 32 random bytes shown once as `egw_<id>_<secret>`; only the SHA-256 of the whole token is
  kept (a token is random, so a fast hash is enough and a lookup by hash is possible); compared with
  `hmac.compare_digest`.
- Sessions: a cookie signed with a per-installation key (itsdangerous, HMAC-SHA256, timestamped), HttpOnly,
  SameSite=Strict, holding the user name and the user's session epoch (raised when a password changes
  or the user is removed, which ends every session of theirs).
- CSRF: every state-changing request that authenticates with the session cookie carries
  `X-CSRF-Token` (or the form field `csrf`), an HMAC of the session value under the same key; bearer-token
  requests carry no ambient authority and need none.

Nothing here logs a secret. It imports nothing of the cloud service or the uplink: the edge uses it too,
and FastAPI only when a request is refused, so `edgegw run` can use the pure parts (`is_loopback`, the
password and token hashes) before its web stack is loaded (`gateway.listen`).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING

from itsdangerous import BadSignature, URLSafeTimedSerializer

SESSION_COOKIE = "edgegw_session"
LANG_COOKIE = "edgegw_lang"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf"
TOKEN_PREFIX = "egw_"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_PASSWORD = 1024  # characters: bound the work a login can cause

if TYPE_CHECKING:
    from argon2 import PasswordHasher
    from fastapi import Request
    from starlette.types import ASGIApp, Message, Receive, Scope, Send


@cache
def _argon2() -> tuple[PasswordHasher, str]:
    """argon2id with the library's current defaults (RFC 9106 low-memory profile), and a real hash to verify
    against when the user does not exist, so a login takes as long either way. Made at the first password
    hashed or checked: the edge agent does not load argon2 before its first login."""
    from argon2 import PasswordHasher

    hasher = PasswordHasher()
    return hasher, hasher.hash("no such user")


def hash_password(password: str) -> str:
    if not password or len(password) > MAX_PASSWORD:
        raise ValueError(f"a password has 1 to {MAX_PASSWORD} characters")
    return _argon2()[0].hash(password)


def check_password(stored: str | None, password: str) -> bool:
    """True when `password` matches the stored argon2 hash; as slow for an unknown user (stored None)."""
    if len(password) > MAX_PASSWORD:
        return False
    from argon2.exceptions import InvalidHashError, VerificationError

    hasher, dummy = _argon2()
    try:
        return hasher.verify(stored or dummy, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class NewToken:
    """A token as created: `secret` is shown once and never stored; `token_id` and `sha256` are kept."""

    token_id: str
    secret: str
    sha256: str


def new_token() -> NewToken:
    token_id = secrets.token_hex(4)
    secret = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
    return NewToken(token_id, secret, token_hash(secret))


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def token_id_of(secret: str) -> str | None:
    """The id part of a token as presented (`egw_<id>_<secret>`), or None when it is not one of ours."""
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
        return None
    token_id, sep, rest = secret[len(TOKEN_PREFIX) :].partition("_")
    return token_id if sep and rest and len(token_id) == 8 else None


def same_secret(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    return (value.strip() or None) if scheme.lower() == "bearer" else None


@dataclass(frozen=True)
class SessionData:
    user: str
    epoch: int


@dataclass
class Sessions:
    """Signs and reads session cookies and derives their CSRF tokens from one secret key."""

    key: bytes
    max_age_s: float = 12 * 3600
    _serializer: URLSafeTimedSerializer = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._serializer = URLSafeTimedSerializer(self.key, salt="edgegw-session")

    def issue(self, user: str, epoch: int) -> str:
        return self._serializer.dumps({"u": user, "e": epoch, "n": secrets.token_hex(8)})

    def read(self, cookie: str | None) -> SessionData | None:
        if not cookie or len(cookie) > 4096:
            return None
        try:
            data = self._serializer.loads(cookie, max_age=int(self.max_age_s))
        except BadSignature:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("u"), str) or not isinstance(data.get("e"), int):
            return None
        return SessionData(data["u"], data["e"])

    def csrf(self, cookie: str) -> str:
        return hmac.new(self.key, b"csrf:" + cookie.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, cookie: str, presented: str | None) -> bool:
        return presented is not None and same_secret(self.csrf(cookie), presented)


def cookie_settings(secure: bool = False) -> dict[str, object]:
    """Keyword arguments of `Response.set_cookie` for the session cookie."""
    return {"httponly": True, "samesite": "strict", "secure": secure, "path": "/"}


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# ---------------------------------------------------------------- the web layer (FastAPI / Starlette)


class LoginRequired(Exception):
    """Raised by page routes with no valid session: the app answers with a redirect to its login page."""


class Forbidden(Exception):
    """Raised by page routes for a user whose role does not allow the page: the app answers 403 with a page."""


async def enforce_csrf(request: Request, sessions: Sessions) -> None:
    """403 unless a state-changing request made with the session cookie carries its CSRF token (header
    `X-CSRF-Token`, or the form field `csrf`)."""
    if request.method in SAFE_METHODS:
        return
    cookie = request.cookies.get(SESSION_COOKIE) or ""
    presented = request.headers.get(CSRF_HEADER)
    kind = request.headers.get("content-type", "")
    if presented is None and kind.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        value = (await request.form()).get(CSRF_FIELD)
        presented = value if isinstance(value, str) else None
    if not cookie or not sessions.csrf_ok(cookie, presented):
        from fastapi import HTTPException

        raise HTTPException(403, detail="CSRF token missing or wrong: reload the page and try again")


def wants_html(request: Request) -> bool:
    return not request.url.path.startswith("/api/") and request.url.path != "/metrics"


class BodyLimit:
    """ASGI middleware: a request body larger than `limit` bytes is refused with 413 before it is read
    whole (by its Content-Length, or as it streams in)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await self._refuse(send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    from fastapi import HTTPException

                    raise HTTPException(413, detail=f"request body larger than {self.limit >> 20} MB")
            return message

        await self.app(scope, limited, send)

    async def _refuse(self, send: Send) -> None:
        body = f'{{"detail":"request body larger than {self.limit >> 20} MB"}}'.encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
